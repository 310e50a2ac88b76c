package main

// segmentio/kafka-go: Writer, Reader (one per partition, or with a GroupID), and the Client's
// request-level admin calls. It has no idempotent or transactional producer and no KIP-848.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

const kafkaGoClientID = "fjord-compat-kafka-go"

func kafkaGoCodec(codec string) (kafka.Compression, error) {
	switch codec {
	case "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("unknown codec %q", codec)
}

func kafkaGoDialer() *kafka.Dialer {
	return &kafka.Dialer{ClientID: kafkaGoClientID, Timeout: 10 * time.Second, DualStack: true}
}

func fromKafkaGo(m kafka.Message) outRec {
	out := outRec{Partition: int32(m.Partition), Offset: m.Offset, Timestamp: m.Time.UnixMilli(), Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, header{h.Key, h.Value})
	}
	return out
}

func kafkaGoProduce(ctx context.Context, o opts, recs []inRec) ([]ack, error) {
	if o.idempotent {
		return nil, errors.New("kafka-go has no idempotent producer")
	}
	codec, err := kafkaGoCodec(o.codec)
	if err != nil {
		return nil, err
	}
	var acks kafka.RequiredAcks
	switch o.acks {
	case "all":
		acks = kafka.RequireAll
	case "1":
		acks = kafka.RequireOne
	case "0":
		acks = kafka.RequireNone
	default:
		return nil, fmt.Errorf("unknown acks %q", o.acks)
	}
	// Completion hands back each batch of one partition, in order, and the Balancer sees the
	// Message as given (so its Partition field picks the partition): queue each partition's
	// record indexes and pop them as batches complete.
	var mu sync.Mutex
	queue := map[int][]int{}
	out := make([]ack, len(recs))
	w := &kafka.Writer{
		Addr:         kafka.TCP(o.brokers),
		Topic:        o.topic,
		Balancer:     kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }),
		Compression:  codec,
		RequiredAcks: acks,
		// One batch per partition (a real test of the codec), sent without the 1 s default wait.
		BatchSize:    len(recs) + 1,
		BatchTimeout: 20 * time.Millisecond,
		Transport:    &kafka.Transport{ClientID: kafkaGoClientID},
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				i := queue[m.Partition][0]
				queue[m.Partition] = queue[m.Partition][1:]
				out[i] = ack{I: i, Partition: int32(m.Partition), Offset: m.Offset, Timestamp: ackTime(m.Time), Error: errString(err)}
			}
		},
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		m := kafka.Message{Partition: int(r.Partition), Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		if r.Timestamp != 0 {
			m.Time = time.UnixMilli(r.Timestamp)
		}
		queue[m.Partition] = append(queue[m.Partition], i)
		msgs[i] = m
	}
	werr := w.WriteMessages(ctx, msgs...)
	// Close waits for the Completion calls.
	if err := w.Close(); err != nil && werr == nil {
		werr = err
	}
	var perRecord kafka.WriteErrors
	if werr != nil && !errors.As(werr, &perRecord) {
		return nil, werr
	}
	return out, nil
}

func kafkaGoPartitions(ctx context.Context, brokers, topic string) ([]int, error) {
	cl := &kafka.Client{Addr: kafka.TCP(brokers), Transport: &kafka.Transport{ClientID: kafkaGoClientID}}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("%d topics in the metadata response", len(md.Topics))
	}
	if md.Topics[0].Error != nil {
		return nil, md.Topics[0].Error
	}
	var ps []int
	for _, p := range md.Topics[0].Partitions {
		ps = append(ps, p.ID)
	}
	sort.Ints(ps)
	return ps, nil
}

func kafkaGoConsume(ctx context.Context, o opts, c *collector) error {
	parts, err := kafkaGoPartitions(ctx, o.brokers, o.topic)
	if err != nil {
		return err
	}
	isolation := kafka.ReadUncommitted
	if o.isolation == "read_committed" {
		isolation = kafka.ReadCommitted
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, len(parts))
	var wg sync.WaitGroup
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{o.brokers}, Topic: o.topic, Partition: p, Dialer: kafkaGoDialer(),
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond, IsolationLevel: isolation,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(rctx)
				if err != nil {
					if rctx.Err() == nil {
						errs <- fmt.Errorf("partition %d: %w", p, err)
					}
					return
				}
				c.add(fromKafkaGo(m))
			}
		}()
	}
	defer wg.Wait()
	defer stop()
	select {
	case err := <-errs:
		return err
	case <-c.full:
		return nil
	case <-ctx.Done():
		return c.wait(ctx)
	}
}

func kafkaGoGroup(ctx context.Context, o opts, c *collector) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{o.brokers}, GroupID: o.group, Topic: o.topic, Dialer: kafkaGoDialer(),
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: 500 * time.Millisecond,
		// CommitMessages commits synchronously.
		CommitInterval: 0,
	})
	defer r.Close()
	var kept []kafka.Message
	for c.n() < c.want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return c.wait(ctx)
			}
			return err
		}
		if c.add(fromKafkaGo(m)) {
			kept = append(kept, m)
		}
	}
	if err := r.CommitMessages(ctx, kept...); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return describeAndCommitted(ctx, o)
}

type kafkaGoAdmin struct {
	cl *kafka.Client
}

func newKafkaGoAdmin(o opts) *kafkaGoAdmin {
	return &kafkaGoAdmin{&kafka.Client{Addr: kafka.TCP(o.brokers), Timeout: 20 * time.Second,
		Transport: &kafka.Transport{ClientID: kafkaGoClientID}}}
}

func (a *kafkaGoAdmin) close() {}

func (a *kafkaGoAdmin) createTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	var entries []kafka.ConfigEntry
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	res, err := a.cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries,
	}}})
	if err != nil {
		return err
	}
	return res.Errors[topic]
}

func (a *kafkaGoAdmin) describeTopic(ctx context.Context, topic string) (topicInfo, error) {
	md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return topicInfo{}, err
	}
	if len(md.Topics) != 1 {
		return topicInfo{}, fmt.Errorf("%d topics in the metadata response", len(md.Topics))
	}
	t := md.Topics[0]
	if t.Error != nil {
		return topicInfo{}, t.Error
	}
	ids := func(bs []kafka.Broker) []int32 {
		out := []int32{}
		for _, b := range bs {
			out = append(out, int32(b.ID))
		}
		return sortedInts(out)
	}
	var info topicInfo
	for _, p := range t.Partitions {
		if p.Error != nil {
			return info, fmt.Errorf("partition %d: %w", p.ID, p.Error)
		}
		info.Partitions = append(info.Partitions, partitionInfo{int32(p.ID), int32(p.Leader.ID), ids(p.Replicas), ids(p.Isr)})
	}
	sort.Slice(info.Partitions, func(i, j int) bool { return info.Partitions[i].Partition < info.Partitions[j].Partition })
	return info, nil
}

func (a *kafkaGoAdmin) listTopics(ctx context.Context) ([]string, error) {
	md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range md.Topics {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	return names, nil
}

func (a *kafkaGoAdmin) topicConfigs(ctx context.Context, topic string, keys []string) (map[string]string, error) {
	res, err := a.cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: keys,
	}}})
	if err != nil {
		return nil, err
	}
	if len(res.Resources) != 1 {
		return nil, fmt.Errorf("%d resources in the response", len(res.Resources))
	}
	if res.Resources[0].Error != nil {
		return nil, res.Resources[0].Error
	}
	out := map[string]string{}
	for _, e := range res.Resources[0].ConfigEntries {
		out[e.ConfigName] = e.ConfigValue
	}
	return out, nil
}

func (a *kafkaGoAdmin) createPartitions(ctx context.Context, topic string, total int) error {
	res, err := a.cl.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: int32(total)}}})
	if err != nil {
		return err
	}
	return res.Errors[topic]
}

func (a *kafkaGoAdmin) deleteTopic(ctx context.Context, topic string) error {
	res, err := a.cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return res.Errors[topic]
}

func (a *kafkaGoAdmin) offsets(ctx context.Context, topic string, at int64) (map[int32]int64, map[int32]int64, map[int32]int64, error) {
	parts, err := kafkaGoPartitions(ctx, a.cl.Addr.String(), topic)
	if err != nil {
		return nil, nil, nil, err
	}
	var reqs []kafka.OffsetRequest
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		if at >= 0 {
			reqs = append(reqs, kafka.TimeOffsetOf(p, time.UnixMilli(at)))
		}
	}
	res, err := a.cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, nil, err
	}
	earliest, latest := map[int32]int64{}, map[int32]int64{}
	var after map[int32]int64
	if at >= 0 {
		after = map[int32]int64{}
	}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, nil, nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		p := int32(po.Partition)
		earliest[p], latest[p] = po.FirstOffset, po.LastOffset
		if at >= 0 {
			after[p] = -1
			for off := range po.Offsets {
				after[p] = off
			}
		}
	}
	return earliest, latest, after, nil
}

func (a *kafkaGoAdmin) listGroups(ctx context.Context) (map[string]map[string]string, error) {
	res, err := a.cl.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := map[string]map[string]string{}
	for _, g := range res.Groups {
		out[g.GroupID] = map[string]string{"protocol_type": g.ProtocolType}
	}
	return out, nil
}

func (a *kafkaGoAdmin) describeGroup(ctx context.Context, group, protocol string) (groupInfo, error) {
	res, err := a.cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return groupInfo{}, err
	}
	if len(res.Groups) != 1 {
		return groupInfo{}, fmt.Errorf("%d groups in the response", len(res.Groups))
	}
	d := res.Groups[0]
	if d.Error != nil {
		return groupInfo{}, d.Error
	}
	// kafka-go's DescribeGroups shows neither the protocol type nor the protocol.
	g := groupInfo{State: d.GroupState, Members: []memberInfo{}}
	for _, m := range d.Members {
		mi := memberInfo{m.MemberID, m.ClientID, map[string][]int32{}}
		for _, t := range m.MemberAssignments.Topics {
			var ps []int32
			for _, p := range t.Partitions {
				ps = append(ps, int32(p))
			}
			mi.Assigned[t.Topic] = sortedInts(ps)
		}
		g.Members = append(g.Members, mi)
	}
	sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].MemberID < g.Members[j].MemberID })
	return g, nil
}

func (a *kafkaGoAdmin) committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	parts, err := kafkaGoPartitions(ctx, a.cl.Addr.String(), topic)
	if err != nil {
		return nil, err
	}
	res, err := a.cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := map[int32]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[int32(p.Partition)] = p.CommittedOffset
		}
	}
	return out, nil
}

func (a *kafkaGoAdmin) deleteGroup(ctx context.Context, group string) error {
	res, err := a.cl.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return err
	}
	return res.Errors[group]
}
