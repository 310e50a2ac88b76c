package main

// The transactional producers (franz-go's and sarama's) through one scenario.

import (
	"context"
	"fmt"
	"time"
)

type txnProducer interface {
	begin() error
	// produce sends recs in the open transaction and returns their offsets.
	produce(ctx context.Context, recs []inRec) ([]int64, error)
	end(ctx context.Context, commit bool) error
	close()
}

// runTxn: three transactions (commit, abort, commit) of 5 records on each of partitions 0 and 1,
// then a fourth left open while the last stable offsets and high watermarks are listed (kadm,
// whatever the producer), then aborted; and the offsets once its markers are written.
func runTxn(ctx context.Context, o opts) error {
	var tp txnProducer
	var err error
	switch o.client {
	case "franz":
		tp, err = newFranzTxnProducer(o)
	case "sarama":
		tp, err = newSaramaTxnProducer(o)
	default:
		return fmt.Errorf("%s has no transactional producer", o.client)
	}
	if err != nil {
		return err
	}
	defer tp.close()
	adm, err := newFranzAdmin(o)
	if err != nil {
		return err
	}
	defer adm.close()

	produce := func(name string) error {
		if err := tp.begin(); err != nil {
			return fmt.Errorf("begin %s: %w", name, err)
		}
		var recs []inRec
		for i := 0; i < 5; i++ {
			for p := int32(0); p < 2; p++ {
				recs = append(recs, inRec{Partition: p, Key: []byte(fmt.Sprintf("%s-%d-%d", name, p, i)), Value: []byte(fmt.Sprintf("txn %s #%d", name, i))})
			}
		}
		offsets, err := tp.produce(ctx, recs)
		if err != nil {
			return fmt.Errorf("produce %s: %w", name, err)
		}
		for i, r := range recs {
			emit(map[string]any{"txn": name, "partition": r.Partition, "offset": offsets[i], "key": string(r.Key)})
		}
		return nil
	}
	for _, t := range []struct {
		name   string
		commit bool
	}{{"a", true}, {"b", false}, {"c", true}} {
		if err := produce(t.name); err != nil {
			return err
		}
		if err := tp.end(ctx, t.commit); err != nil {
			return fmt.Errorf("end %s: %w", t.name, err)
		}
		emit(map[string]any{"ended": t.name, "commit": t.commit})
	}

	if err := produce("d"); err != nil {
		return err
	}
	_, lso, hwm, err := franzStableAndEnd(ctx, adm.adm, o.topic)
	if err != nil {
		return err
	}
	emit(map[string]any{"open": map[string]any{"last_stable": intKeyed(lso), "high_watermark": intKeyed(hwm)}})
	if err := tp.end(ctx, false); err != nil {
		return fmt.Errorf("end d: %w", err)
	}
	emit(map[string]any{"ended": "d", "commit": false})
	// The abort markers are written after EndTxn answers: the last stable offset catches up.
	for {
		same, lso, hwm, err := franzStableAndEnd(ctx, adm.adm, o.topic)
		if err != nil {
			return err
		}
		if same {
			emit(map[string]any{"closed": map[string]any{"last_stable": intKeyed(lso), "high_watermark": intKeyed(hwm)}})
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("last stable offsets %v never reached the high watermarks %v", lso, hwm)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
