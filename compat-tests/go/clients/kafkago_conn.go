package main

// kafka-go's Conn, the connection-level API its README starts with: topic admin through the
// controller, partitions and offsets, and writing and reading one partition through its leader.
// Each step prints {"step": name, "error_code": N, ...}; a step that fails does not stop the
// next ones, so the test sees which of these a broker serves.

import (
	"context"

	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

func kafkaGoConn(ctx context.Context, o opts) error {
	d := kafkaGoDialer()
	step := func(name string, err error, extra map[string]any) {
		res := map[string]any{"step": name, "error_code": errorCode(err), "error": errString(err)}
		for k, v := range extra {
			res[k] = v
		}
		emit(res)
	}

	conn, err := d.DialContext(ctx, "tcp", o.brokers)
	if err != nil {
		return err
	}
	defer conn.Close()
	controller, err := conn.Controller()
	step("controller", err, map[string]any{"id": controller.ID})
	if err != nil {
		return nil
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	if err != nil {
		return err
	}
	defer cc.Close()

	err = cc.CreateTopics(kafka.TopicConfig{Topic: o.topic, NumPartitions: o.partitions, ReplicationFactor: 1})
	step("create-topics", err, nil)
	err = cc.CreateTopics(kafka.TopicConfig{Topic: o.topic, NumPartitions: o.partitions, ReplicationFactor: 1})
	step("create-topics-again", err, nil)

	var parts []kafka.Partition
	for {
		parts, err = conn.ReadPartitions(o.topic)
		if err != nil || len(parts) == o.partitions || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // a new topic's partitions show up in metadata shortly
	}
	ids := []int{}
	for _, p := range parts {
		ids = append(ids, p.ID)
	}
	step("read-partitions", err, map[string]any{"partitions": ids})

	leader, err := d.DialLeader(ctx, "tcp", o.brokers, o.topic, 0)
	step("dial-leader", err, nil)
	if err == nil {
		defer leader.Close()
		// Metadata names a new partition's leader before that broker serves it (Kafka answers
		// NOT_LEADER_OR_FOLLOWER for a moment); a Conn does not retry, so wait for it here.
		for {
			_, err = leader.ReadLastOffset()
			if c := errorCode(err); (c != 3 && c != 5 && c != 6) || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		step("leader-serves", err, nil)
		_, err = leader.WriteMessages(
			kafka.Message{Key: []byte("k0"), Value: []byte("conn #0"), Headers: []kafka.Header{{Key: "via", Value: []byte("conn")}}},
			kafka.Message{Key: []byte("k1"), Value: []byte("conn #1")},
		)
		step("write-messages", err, nil)
		_, _, off, _, err := leader.WriteCompressedMessagesAt(kafka.Zstd.Codec(), kafka.Message{Key: []byte("k2"), Value: []byte("conn #2 zstd")})
		step("write-compressed-at", err, map[string]any{"offset": off})
		first, last, err := leader.ReadOffsets()
		step("read-offsets", err, map[string]any{"first": first, "last": last})
		if _, err := leader.Seek(0, kafka.SeekAbsolute); err != nil {
			step("seek", err, nil)
		}
		leader.SetReadDeadline(time.Now().Add(5 * time.Second))
		batch := leader.ReadBatch(1, 1<<20)
		var got []outRec
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			got = append(got, fromKafkaGo(m))
		}
		err = batch.Close()
		recs := make([]any, len(got))
		for i, r := range got {
			recs[i] = r
		}
		step("read-batch", err, map[string]any{"records": recs})
	}

	err = cc.DeleteTopics(o.topic)
	step("delete-topics", err, nil)
	err = cc.DeleteTopics(o.topic)
	step("delete-topics-again", err, nil)
	return nil
}
