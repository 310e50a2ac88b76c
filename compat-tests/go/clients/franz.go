package main

// franz-go: kgo for producing, consuming (directly, in a classic or a KIP-848 group) and
// transactions; kadm for the admin calls.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func franzBase(o opts) []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(o.brokers), kgo.ClientID("fjord-compat-franz")}
}

func franzCodec(codec string) (kgo.CompressionCodec, error) {
	switch codec {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown codec %q", codec)
}

func franzIsolation(o opts) kgo.Opt {
	if o.isolation == "read_committed" {
		return kgo.FetchIsolationLevel(kgo.ReadCommitted())
	}
	return kgo.FetchIsolationLevel(kgo.ReadUncommitted())
}

func franzRecord(r inRec) *kgo.Record {
	kr := &kgo.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}
	for _, h := range r.Headers {
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	if r.Timestamp != 0 {
		kr.Timestamp = time.UnixMilli(r.Timestamp)
	}
	return kr
}

func fromFranz(r *kgo.Record) outRec {
	out := outRec{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, header{h.Key, h.Value})
	}
	return out
}

func franzProduce(ctx context.Context, o opts, recs []inRec) ([]ack, error) {
	codec, err := franzCodec(o.codec)
	if err != nil {
		return nil, err
	}
	kopts := append(franzBase(o),
		kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codec),
		// Long enough that each partition's records go out as one batch (a real test of the codec).
		kgo.ProducerLinger(20*time.Millisecond),
	)
	switch o.acks {
	case "all":
		kopts = append(kopts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		kopts = append(kopts, kgo.RequiredAcks(kgo.LeaderAck()))
	case "0":
		kopts = append(kopts, kgo.RequiredAcks(kgo.NoAck()))
	default:
		return nil, fmt.Errorf("unknown acks %q", o.acks)
	}
	if !o.idempotent {
		// kgo is idempotent by default; the plain producer keeps order with one request in flight.
		kopts = append(kopts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	acks := make([]ack, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Add(1)
		cl.Produce(ctx, franzRecord(r), func(kr *kgo.Record, err error) {
			defer wg.Done()
			acks[i] = ack{I: i, Partition: kr.Partition, Offset: kr.Offset, Timestamp: ackTime(kr.Timestamp), Error: errString(err)}
		})
	}
	wg.Wait()
	if o.idempotent {
		id, epoch, err := cl.ProducerID(ctx)
		if err != nil {
			return acks, fmt.Errorf("producer id: %w", err)
		}
		emit(map[string]any{"producer_id": id, "producer_epoch": epoch})
	}
	return acks, nil
}

// franzPoll feeds c from cl until it is full; errors a consumer retries by itself are skipped.
func franzPoll(ctx context.Context, cl *kgo.Client, c *collector, kept *[]*kgo.Record) error {
	for {
		select {
		case <-c.full:
			return nil
		default:
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return c.wait(ctx)
		}
		for _, fe := range fs.Errors() {
			if !kerr.IsRetriable(fe.Err) {
				return fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			if c.add(fromFranz(r)) && kept != nil {
				*kept = append(*kept, r)
			}
		})
	}
}

func franzConsume(ctx context.Context, o opts, c *collector) error {
	cl, err := kgo.NewClient(append(franzBase(o),
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		franzIsolation(o),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return franzPoll(ctx, cl, c, nil)
}

func franzGroupOpts(o opts) []kgo.Opt {
	kopts := append(franzBase(o),
		kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
	)
	if o.protocol == "consumer" {
		// KIP-848 needs the range or sticky balancer first; with any other kgo silently
		// falls back to the classic protocol (the test checks the group's type).
		kopts = append(kopts, kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer())
	}
	return kopts
}

func franzGroup(ctx context.Context, o opts, c *collector) error {
	cl, err := kgo.NewClient(append(franzGroupOpts(o), kgo.DisableAutoCommit())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var kept []*kgo.Record
	if err := franzPoll(ctx, cl, c, &kept); err != nil {
		return err
	}
	if err := cl.CommitRecords(ctx, kept...); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return describeAndCommitted(ctx, o)
}

// franzTxnProducer is kgo's transactional producer (BeginTransaction, EndTransaction).
type franzTxnProducer struct{ cl *kgo.Client }

func newFranzTxnProducer(o opts) (txnProducer, error) {
	cl, err := kgo.NewClient(append(franzBase(o),
		kgo.TransactionalID(o.txnID),
		kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	return &franzTxnProducer{cl}, err
}

func (t *franzTxnProducer) begin() error { return t.cl.BeginTransaction() }
func (t *franzTxnProducer) close()       { t.cl.Close() }

func (t *franzTxnProducer) end(ctx context.Context, commit bool) error {
	return t.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit))
}

func (t *franzTxnProducer) produce(ctx context.Context, recs []inRec) ([]int64, error) {
	rs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		rs[i] = franzRecord(r)
	}
	res := t.cl.ProduceSync(ctx, rs...)
	if err := res.FirstErr(); err != nil {
		return nil, err
	}
	offsets := make([]int64, len(rs))
	for i, r := range rs {
		offsets[i] = r.Offset
	}
	return offsets, nil
}

func franzStableAndEnd(ctx context.Context, adm *kadm.Client, topic string) (bool, map[int32]int64, map[int32]int64, error) {
	committed, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return false, nil, nil, fmt.Errorf("list last stable offsets: %w", err)
	}
	end, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = end.Error()
	}
	if err != nil {
		return false, nil, nil, fmt.Errorf("list end offsets: %w", err)
	}
	lso, hwm := map[int32]int64{}, map[int32]int64{}
	same := true
	committed.Each(func(l kadm.ListedOffset) { lso[l.Partition] = l.Offset })
	end.Each(func(l kadm.ListedOffset) {
		hwm[l.Partition] = l.Offset
		same = same && lso[l.Partition] == l.Offset
	})
	return same, lso, hwm, nil
}

// franzTxnGroup: a GroupTransactSession reads the input topic (one partition) in a group and
// writes "out:"+value to the output topic, three rounds of 10 records: commit, abort (the
// session rewinds to the committed offsets), commit again.
func franzTxnGroup(ctx context.Context, o opts) error {
	sess, err := kgo.NewGroupTransactSession(append(franzGroupOpts(o),
		kgo.TransactionalID(o.txnID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(o.out),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	for round, commit := range []bool{true, false, true} {
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("round %d begin: %w", round, err)
		}
		var offsets []int64
		for len(offsets) < 10 {
			fs := sess.PollRecords(ctx, 10-len(offsets))
			if ctx.Err() != nil {
				return fmt.Errorf("round %d: read %v before the time limit", round, offsets)
			}
			for _, fe := range fs.Errors() {
				if !kerr.IsRetriable(fe.Err) {
					return fmt.Errorf("round %d fetch: %w", round, fe.Err)
				}
			}
			var outs []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				offsets = append(offsets, r.Offset)
				outs = append(outs, &kgo.Record{Partition: 0, Key: r.Key, Value: append([]byte("out:"), r.Value...)})
			})
			if err := sess.ProduceSync(ctx, outs...).FirstErr(); err != nil {
				return fmt.Errorf("round %d produce: %w", round, err)
			}
		}
		committed, err := sess.End(ctx, kgo.TransactionEndTry(commit))
		if err != nil {
			return fmt.Errorf("round %d end: %w", round, err)
		}
		emit(map[string]any{"round": round, "in_offsets": offsets, "commit": commit, "committed": committed})
	}
	adm, err := newFranzAdmin(o)
	if err != nil {
		return err
	}
	defer adm.close()
	offs, err := adm.committed(ctx, o.group, o.topic)
	if err != nil {
		return err
	}
	emit(map[string]any{"committed": intKeyed(offs)})
	return nil
}

type franzAdmin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newFranzAdmin(o opts) (*franzAdmin, error) {
	cl, err := kgo.NewClient(franzBase(o)...)
	if err != nil {
		return nil, err
	}
	return &franzAdmin{cl, kadm.NewClient(cl)}, nil
}

func (a *franzAdmin) close() { a.cl.Close() }

func (a *franzAdmin) createTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	res, err := a.adm.CreateTopic(ctx, int32(partitions), 1, cfg, topic)
	if err != nil {
		return err
	}
	return res.Err
}

func (a *franzAdmin) describeTopic(ctx context.Context, topic string) (topicInfo, error) {
	tds, err := a.adm.ListTopics(ctx, topic)
	if err != nil {
		return topicInfo{}, err
	}
	td, ok := tds[topic]
	if !ok {
		return topicInfo{}, fmt.Errorf("%s missing from the metadata response", topic)
	}
	if td.Err != nil {
		return topicInfo{}, td.Err
	}
	info := topicInfo{TopicID: fmt.Sprintf("%x", td.ID[:])}
	for _, p := range td.Partitions.Sorted() {
		if p.Err != nil {
			return info, fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		}
		info.Partitions = append(info.Partitions, partitionInfo{p.Partition, p.Leader, sortedInts(p.Replicas), sortedInts(p.ISR)})
	}
	return info, nil
}

func (a *franzAdmin) listTopics(ctx context.Context) ([]string, error) {
	tds, err := a.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	return tds.Names(), nil
}

func (a *franzAdmin) topicConfigs(ctx context.Context, topic string, keys []string) (map[string]string, error) {
	rcs, err := a.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, err
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return nil, err
	}
	if rc.Err != nil {
		return nil, rc.Err
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := map[string]string{}
	for _, c := range rc.Configs {
		if want[c.Key] && c.Value != nil {
			out[c.Key] = *c.Value
		}
	}
	return out, nil
}

func (a *franzAdmin) createPartitions(ctx context.Context, topic string, total int) error {
	res, err := a.adm.UpdatePartitions(ctx, total, topic)
	if err != nil {
		return err
	}
	r, err := res.On(topic, nil)
	if err != nil {
		return err
	}
	return r.Err
}

func (a *franzAdmin) deleteTopic(ctx context.Context, topic string) error {
	res, err := a.adm.DeleteTopic(ctx, topic)
	if err != nil {
		return err
	}
	return res.Err
}

func (a *franzAdmin) offsets(ctx context.Context, topic string, at int64) (map[int32]int64, map[int32]int64, map[int32]int64, error) {
	collect := func(l kadm.ListedOffsets, err error) (map[int32]int64, error) {
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, err
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return out, nil
	}
	earliest, err := collect(a.adm.ListStartOffsets(ctx, topic))
	if err != nil {
		return nil, nil, nil, err
	}
	latest, err := collect(a.adm.ListEndOffsets(ctx, topic))
	if err != nil {
		return nil, nil, nil, err
	}
	if at < 0 {
		return earliest, latest, nil, nil
	}
	after, err := collect(a.adm.ListOffsetsAfterMilli(ctx, at, topic))
	return earliest, latest, after, err
}

func (a *franzAdmin) listGroups(ctx context.Context) (map[string]map[string]string, error) {
	groups, err := a.adm.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, g := range groups.Sorted() {
		out[g.Group] = map[string]string{"state": g.State, "protocol_type": g.ProtocolType, "type": g.GroupType}
	}
	return out, nil
}

func (a *franzAdmin) describeGroup(ctx context.Context, group, protocol string) (groupInfo, error) {
	if protocol == "consumer" {
		ds, err := a.adm.DescribeConsumerGroups(ctx, group)
		if err != nil {
			return groupInfo{}, err
		}
		d, ok := ds[group]
		if !ok {
			return groupInfo{}, fmt.Errorf("group %s missing from the response", group)
		}
		if d.Err != nil {
			return groupInfo{}, d.Err
		}
		g := groupInfo{State: d.State, ProtocolType: "consumer", Protocol: d.AssignorName, Members: []memberInfo{}}
		for _, m := range d.Members {
			g.Members = append(g.Members, memberInfo{m.MemberID, m.ClientID, topicsSet(m.Assignment)})
		}
		return g, nil
	}
	ds, err := a.adm.DescribeGroups(ctx, group)
	if err != nil {
		return groupInfo{}, err
	}
	d, ok := ds[group]
	if !ok {
		return groupInfo{}, fmt.Errorf("group %s missing from the response", group)
	}
	if d.Err != nil {
		return groupInfo{}, d.Err
	}
	g := groupInfo{State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol, Members: []memberInfo{}}
	for _, m := range d.Members {
		mi := memberInfo{m.MemberID, m.ClientID, map[string][]int32{}}
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				mi.Assigned[t.Topic] = sortedInts(t.Partitions)
			}
		}
		g.Members = append(g.Members, mi)
	}
	return g, nil
}

func topicsSet(s kadm.TopicsSet) map[string][]int32 {
	out := map[string][]int32{}
	for t, ps := range s {
		for p := range ps {
			out[t] = append(out[t], p)
		}
		sort.Slice(out[t], func(i, j int) bool { return out[t][i] < out[t][j] })
	}
	return out
}

func (a *franzAdmin) committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	res, err := a.adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p, r := range res[topic] {
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out, nil
}

func (a *franzAdmin) deleteGroup(ctx context.Context, group string) error {
	res, err := a.adm.DeleteGroup(ctx, group)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}
