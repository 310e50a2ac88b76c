package main

// group2: two franz-go members of one group (classic or KIP-848) through the second one's
// arrival. Member a reads what the topic holds and commits; b joins; once the two own disjoint
// partition sets that cover the topic, N more records are produced, and both read until all of
// them arrived. A member commits what it read before it gives a partition up (the revoke
// callback, with rebalances held while a poll's records are processed), so the partitions b
// takes are read from exactly where a stopped.
//
// Prints every record read as {"member", "phase", ...record}, each assignment change as
// {"member", "assigned"|"revoked"|"lost": {topic: [partitions]}}, the settled assignment,
// the group as kadm describes it with both members in it, and the committed offsets.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type member struct {
	name  string
	cl    *kgo.Client
	mu    sync.Mutex
	owned map[int32]bool
}

func (m *member) ownedSorted() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []int32
	for p := range m.owned {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func franzGroup2(ctx context.Context, o opts) error {
	var phaseMu sync.Mutex
	phase := 1
	seen := map[string]bool{} // phase 2 records by partition/offset, across both members
	total := 0

	newMember := func(name string) (*member, error) {
		m := &member{name: name, owned: map[int32]bool{}}
		change := func(kind string, add bool) func(context.Context, *kgo.Client, map[string][]int32) {
			return func(cctx context.Context, cl *kgo.Client, ps map[string][]int32) {
				if !add && kind == "revoked" {
					// Before giving partitions up: commit what was read of them.
					if err := cl.CommitUncommittedOffsets(cctx); err != nil {
						emit(map[string]any{"member": name, "commit_error": err.Error()})
					}
				}
				m.mu.Lock()
				for _, p := range ps[o.topic] {
					if add {
						m.owned[p] = true
					} else {
						delete(m.owned, p)
					}
				}
				m.mu.Unlock()
				if len(ps[o.topic]) > 0 {
					emit(map[string]any{"member": name, kind: map[string][]int32{o.topic: sortedInts(ps[o.topic])}})
				}
			}
		}
		cl, err := kgo.NewClient(append(franzGroupOpts(o),
			kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(change("assigned", true)),
			kgo.OnPartitionsRevoked(change("revoked", false)),
			kgo.OnPartitionsLost(change("lost", false)),
		)...)
		m.cl = cl
		return m, err
	}
	poll := func(m *member) {
		for ctx.Err() == nil {
			fs := m.cl.PollFetches(ctx)
			phaseMu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				key := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
				if phase == 2 && !seen[key] {
					seen[key] = true
				}
				total++
				emit(map[string]any{"member": m.name, "phase": phase, "record": fromFranz(r)})
			})
			phaseMu.Unlock()
			m.cl.AllowRebalance()
		}
	}
	waitFor := func(what string, cond func() bool) error {
		for !cond() {
			select {
			case <-ctx.Done():
				return fmt.Errorf("timed out waiting for %s", what)
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}

	a, err := newMember("a")
	if err != nil {
		return err
	}
	defer a.cl.Close()
	go poll(a)
	if err := waitFor(fmt.Sprintf("member a to read %d records", o.count), func() bool {
		phaseMu.Lock()
		defer phaseMu.Unlock()
		return total >= o.count
	}); err != nil {
		return err
	}
	if err := a.cl.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("a commit: %w", err)
	}

	b, err := newMember("b")
	if err != nil {
		return err
	}
	defer b.cl.Close()
	go poll(b)
	var settled map[string][]int32
	if err := waitFor("a and b to own disjoint partitions that cover the topic", func() bool {
		pa, pb := a.ownedSorted(), b.ownedSorted()
		all := map[int32]bool{}
		for _, p := range append(append([]int32{}, pa...), pb...) {
			all[p] = true
		}
		settled = map[string][]int32{"a": pa, "b": pb}
		return len(pa) > 0 && len(pb) > 0 && len(pa)+len(pb) == o.partitions && len(all) == o.partitions
	}); err != nil {
		return err
	}
	emit(map[string]any{"settled": settled})

	phaseMu.Lock()
	phase = 2
	phaseMu.Unlock()
	prod, err := kgo.NewClient(append(franzBase(o), kgo.DefaultProduceTopic(o.topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return err
	}
	defer prod.Close()
	var rs []*kgo.Record
	for i := 0; i < o.count; i++ {
		rs = append(rs, &kgo.Record{Partition: int32(i % o.partitions), Key: []byte(fmt.Sprintf("second-%d", i)), Value: []byte(fmt.Sprintf("after b joined #%d", i))})
	}
	if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if err := waitFor("both members to read the second records", func() bool {
		phaseMu.Lock()
		defer phaseMu.Unlock()
		return len(seen) >= o.count
	}); err != nil {
		return err
	}
	for _, m := range []*member{a, b} {
		if err := m.cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("%s commit: %w", m.name, err)
		}
	}
	return describeAndCommitted(ctx, o)
}
