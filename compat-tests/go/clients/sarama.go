package main

// IBM/sarama with Config.Version at the newest Kafka version the pinned release names, so it
// picks its newest request versions: SyncProducer (plain and idempotent), partition consumers,
// ConsumerGroup, ClusterAdmin.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// saramaVersion is the newest Kafka version sarama v1.62.0 knows (sarama.MaxVersion).
var saramaVersion = sarama.V4_3_1_0

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = saramaVersion
	cfg.ClientID = "fjord-compat-sarama"
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

func saramaCodec(codec string) (sarama.CompressionCodec, error) {
	switch codec {
	case "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return sarama.CompressionNone, fmt.Errorf("unknown codec %q", codec)
}

func fromSarama(m *sarama.ConsumerMessage) outRec {
	out := outRec{Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp.UnixMilli(), Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, header{string(h.Key), h.Value})
	}
	return out
}

func saramaProduce(ctx context.Context, o opts, recs []inRec) ([]ack, error) {
	cfg := saramaConfig()
	codec, err := saramaCodec(o.codec)
	if err != nil {
		return nil, err
	}
	cfg.Producer.Compression = codec
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	// Gather each partition's records into one batch (a real test of the codec).
	cfg.Producer.Flush.Frequency = 20 * time.Millisecond
	switch o.acks {
	case "all":
		cfg.Producer.RequiredAcks = sarama.WaitForAll
	case "1":
		cfg.Producer.RequiredAcks = sarama.WaitForLocal
	case "0":
		cfg.Producer.RequiredAcks = sarama.NoResponse
	default:
		return nil, fmt.Errorf("unknown acks %q", o.acks)
	}
	// Idempotence needs it; without, it keeps a retried batch in order.
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Idempotent = o.idempotent
	p, err := sarama.NewSyncProducer([]string{o.brokers}, cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()

	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		m := &sarama.ProducerMessage{Topic: o.topic, Partition: r.Partition}
		// A nil Encoder is a null key or value; ByteEncoder(nil) would be too, but say so.
		if r.Key != nil {
			m.Key = sarama.ByteEncoder(r.Key)
		}
		if r.Value != nil {
			m.Value = sarama.ByteEncoder(r.Value)
		}
		for _, h := range r.Headers {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		if r.Timestamp != 0 {
			m.Timestamp = time.UnixMilli(r.Timestamp)
		}
		m.Metadata = i
		msgs[i] = m
	}
	sendErr := p.SendMessages(msgs)
	failed := map[int]error{}
	var perrs sarama.ProducerErrors
	if errors.As(sendErr, &perrs) {
		for _, pe := range perrs {
			failed[pe.Msg.Metadata.(int)] = pe.Err
		}
	} else if sendErr != nil {
		return nil, sendErr
	}
	acks := make([]ack, len(msgs))
	for i, m := range msgs {
		acks[i] = ack{I: i, Partition: m.Partition, Offset: m.Offset, Timestamp: ackTime(m.Timestamp), Error: errString(failed[i])}
	}
	return acks, nil
}

func saramaConsume(ctx context.Context, o opts, c *collector) error {
	cfg := saramaConfig()
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	if o.isolation == "read_committed" {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	consumer, err := sarama.NewConsumer([]string{o.brokers}, cfg)
	if err != nil {
		return err
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(o.topic)
	if err != nil {
		return err
	}
	errs := make(chan error, len(parts))
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(o.topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		defer pc.AsyncClose()
		go func() {
			for {
				select {
				case m, ok := <-pc.Messages():
					if !ok {
						return
					}
					c.add(fromSarama(m))
				case e, ok := <-pc.Errors():
					if ok {
						errs <- e
					}
					return
				case <-c.full:
					return
				}
			}
		}()
	}
	select {
	case err := <-errs:
		return err
	case <-c.full:
		return nil
	case <-ctx.Done():
		return c.wait(ctx)
	}
}

type saramaHandler struct {
	mu        sync.Mutex
	c         *collector
	committed chan struct{}
	once      sync.Once
	commitErr error
}

func (h *saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			// Keeping and marking under one lock: when the last record is kept, every kept
			// record is marked, and the commit covers exactly what was read.
			h.mu.Lock()
			if h.c.add(fromSarama(m)) {
				sess.MarkMessage(m, "")
			}
			full := h.c.n() == h.c.want
			h.mu.Unlock()
			if full {
				h.once.Do(func() {
					sess.Commit() // synchronous: AutoCommit is off
					close(h.committed)
				})
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

func saramaGroup(ctx context.Context, o opts, c *collector) error {
	cfg := saramaConfig()
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cg, err := sarama.NewConsumerGroup([]string{o.brokers}, o.group, cfg)
	if err != nil {
		return err
	}
	defer cg.Close()
	h := &saramaHandler{c: c, committed: make(chan struct{})}
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, 2)
	go func() {
		for gctx.Err() == nil {
			if err := cg.Consume(gctx, []string{o.topic}, h); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		for err := range cg.Errors() {
			select {
			case errs <- err:
			default:
			}
		}
	}()
	select {
	case <-h.committed:
	case err := <-errs:
		return err
	case <-ctx.Done():
		return c.wait(ctx)
	}
	select {
	case err := <-errs:
		return fmt.Errorf("after the commit: %w", err)
	default:
	}
	return describeAndCommitted(ctx, o)
}

type saramaAdmin struct {
	client sarama.Client
	adm    sarama.ClusterAdmin
}

func newSaramaAdmin(o opts) (*saramaAdmin, error) {
	client, err := sarama.NewClient([]string{o.brokers}, saramaConfig())
	if err != nil {
		return nil, err
	}
	adm, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return nil, err
	}
	return &saramaAdmin{client, adm}, nil
}

func (a *saramaAdmin) close() { a.adm.Close() }

func (a *saramaAdmin) createTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	entries := map[string]*string{}
	for k, v := range configs {
		entries[k] = &v
	}
	return a.adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1, ConfigEntries: entries}, false)
}

func (a *saramaAdmin) describeTopic(ctx context.Context, topic string) (topicInfo, error) {
	mds, err := a.adm.DescribeTopics([]string{topic})
	if err != nil {
		return topicInfo{}, err
	}
	if len(mds) != 1 {
		return topicInfo{}, fmt.Errorf("%d topics in the response", len(mds))
	}
	md := mds[0]
	if md.Err != sarama.ErrNoError {
		return topicInfo{}, md.Err
	}
	info := topicInfo{TopicID: fmt.Sprintf("%x", md.Uuid[:])}
	for _, p := range md.Partitions {
		if p.Err != sarama.ErrNoError {
			return info, fmt.Errorf("partition %d: %w", p.ID, p.Err)
		}
		info.Partitions = append(info.Partitions, partitionInfo{p.ID, p.Leader, sortedInts(p.Replicas), sortedInts(p.Isr)})
	}
	sort.Slice(info.Partitions, func(i, j int) bool { return info.Partitions[i].Partition < info.Partitions[j].Partition })
	return info, nil
}

func (a *saramaAdmin) listTopics(ctx context.Context) ([]string, error) {
	topics, err := a.adm.ListTopics()
	if err != nil {
		return nil, err
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	return names, nil
}

func (a *saramaAdmin) topicConfigs(ctx context.Context, topic string, keys []string) (map[string]string, error) {
	entries, err := a.adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: keys})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		out[e.Name] = e.Value
	}
	return out, nil
}

func (a *saramaAdmin) createPartitions(ctx context.Context, topic string, total int) error {
	return a.adm.CreatePartitions(topic, int32(total), nil, false)
}

func (a *saramaAdmin) deleteTopic(ctx context.Context, topic string) error {
	return a.adm.DeleteTopic(topic)
}

func (a *saramaAdmin) offsets(ctx context.Context, topic string, at int64) (map[int32]int64, map[int32]int64, map[int32]int64, error) {
	if err := a.client.RefreshMetadata(topic); err != nil {
		return nil, nil, nil, err
	}
	parts, err := a.client.Partitions(topic)
	if err != nil {
		return nil, nil, nil, err
	}
	earliest, latest := map[int32]int64{}, map[int32]int64{}
	var after map[int32]int64
	if at >= 0 {
		after = map[int32]int64{}
	}
	for _, p := range parts {
		if earliest[p], err = a.client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			return nil, nil, nil, err
		}
		if latest[p], err = a.client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			return nil, nil, nil, err
		}
		if at >= 0 {
			if after[p], err = a.client.GetOffset(topic, p, at); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return earliest, latest, after, nil
}

func (a *saramaAdmin) listGroups(ctx context.Context) (map[string]map[string]string, error) {
	groups, err := a.adm.ListConsumerGroups()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for g, pt := range groups {
		out[g] = map[string]string{"protocol_type": pt}
	}
	return out, nil
}

func (a *saramaAdmin) describeGroup(ctx context.Context, group, protocol string) (groupInfo, error) {
	ds, err := a.adm.DescribeConsumerGroups([]string{group})
	if err != nil {
		return groupInfo{}, err
	}
	if len(ds) != 1 {
		return groupInfo{}, fmt.Errorf("%d groups in the response", len(ds))
	}
	d := ds[0]
	if d.Err != sarama.ErrNoError {
		return groupInfo{}, d.Err
	}
	g := groupInfo{State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol, Members: []memberInfo{}}
	ids := make([]string, 0, len(d.Members))
	for id := range d.Members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		m := d.Members[id]
		mi := memberInfo{m.MemberId, m.ClientId, map[string][]int32{}}
		asg, err := m.GetMemberAssignment()
		if err != nil {
			return g, fmt.Errorf("member %s assignment: %w", id, err)
		}
		if asg != nil {
			for t, ps := range asg.Topics {
				mi.Assigned[t] = sortedInts(ps)
			}
		}
		g.Members = append(g.Members, mi)
	}
	return g, nil
}

func (a *saramaAdmin) committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	if err := a.client.RefreshMetadata(topic); err != nil {
		return nil, err
	}
	parts, err := a.client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	res, err := a.adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return nil, err
	}
	if res.Err != sarama.ErrNoError {
		return nil, res.Err
	}
	out := map[int32]int64{}
	for p, b := range res.Blocks[topic] {
		if b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("partition %d: %w", p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out, nil
}

func (a *saramaAdmin) deleteGroup(ctx context.Context, group string) error {
	return a.adm.DeleteConsumerGroup(group)
}

// saramaTxnProducer is sarama's transactional SyncProducer (BeginTxn, CommitTxn, AbortTxn).
type saramaTxnProducer struct {
	topic string
	p     sarama.SyncProducer
}

func newSaramaTxnProducer(o opts) (txnProducer, error) {
	cfg := saramaConfig()
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = o.txnID
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer([]string{o.brokers}, cfg)
	if err != nil {
		return nil, err
	}
	return &saramaTxnProducer{o.topic, p}, nil
}

func (t *saramaTxnProducer) begin() error { return t.p.BeginTxn() }
func (t *saramaTxnProducer) close()       { t.p.Close() }

func (t *saramaTxnProducer) end(ctx context.Context, commit bool) error {
	if commit {
		return t.p.CommitTxn()
	}
	return t.p.AbortTxn()
}

func (t *saramaTxnProducer) produce(ctx context.Context, recs []inRec) ([]int64, error) {
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = &sarama.ProducerMessage{Topic: t.topic, Partition: r.Partition, Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value)}
	}
	if err := t.p.SendMessages(msgs); err != nil {
		return nil, err
	}
	offsets := make([]int64, len(msgs))
	for i, m := range msgs {
		offsets[i] = m.Offset
	}
	return offsets, nil
}
