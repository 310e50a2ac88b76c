// Command rebalance drives franz-go, a client that resets its fetch sessions (KIP-227) every
// time its assignment changes, through a consumer group rebalance while it fetches.
//
//	rebalance -brokers host:port -topic name -records N
//
// It creates the topic (4 partitions), produces N records, starts one group member, waits for
// it to read some of them, starts a second member (a rebalance: both reset their sessions with
// a full fetch naming the old session), produces N more, and waits until the two members
// together have read all 2N distinct records. It prints one JSON line with what it saw and
// exits 0 only if every record arrived within the time limit.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type result struct {
	Produced   int            `json:"produced"`
	Distinct   int            `json:"distinct"`
	PerMember  map[string]int `json:"per_member"`
	Rebalanced bool           `json:"rebalanced"`
	Error      string         `json:"error,omitempty"`
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap server")
	topic := flag.String("topic", "franz-rebalance", "topic to create and use")
	records := flag.Int("records", 2000, "records produced before and after the rebalance")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait for every record")
	flag.Parse()

	res := result{PerMember: map[string]int{}}
	err := run(*brokers, *topic, *records, *timeout, &res)
	if err != nil {
		res.Error = err.Error()
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if err != nil {
		os.Exit(1)
	}
}

func produce(ctx context.Context, cl *kgo.Client, topic string, from, n int) error {
	for i := from; i < from+n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return fmt.Errorf("produce %d: %w", i, err)
		}
	}
	return nil
}

func run(brokers, topic string, n int, timeout time.Duration, res *result) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 4, 1, nil, topic); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	if err := produce(ctx, admin, topic, 0, n); err != nil {
		return err
	}
	res.Produced = n

	var mu sync.Mutex
	seen := map[string]bool{}
	group := topic + "-group"
	member := func(name string, assigned chan<- struct{}) (*kgo.Client, error) {
		return kgo.NewClient(
			kgo.SeedBrokers(brokers),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchMaxWait(500*time.Millisecond),
			// Small fetches, so the backlog is not all read before the rebalance.
			kgo.FetchMaxPartitionBytes(4096),
			kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
				select {
				case assigned <- struct{}{}:
				default:
				}
			}),
		)
	}
	poll := func(name string, cl *kgo.Client) {
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				mu.Lock()
				seen[string(r.Key)] = true
				res.PerMember[name]++
				mu.Unlock()
			})
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	wait := func(want int) error {
		for count() < want {
			if ctx.Err() != nil {
				return fmt.Errorf("read %d of %d distinct records before the time limit", count(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}

	firstAssigned := make(chan struct{}, 1)
	a, err := member("a", firstAssigned)
	if err != nil {
		return err
	}
	defer a.Close()
	go poll("a", a)
	if err := wait(n / 10); err != nil {
		return err
	}

	secondAssigned := make(chan struct{}, 1)
	b, err := member("b", secondAssigned)
	if err != nil {
		return err
	}
	defer b.Close()
	go poll("b", b)
	select {
	case <-secondAssigned:
		res.Rebalanced = true
	case <-ctx.Done():
		return fmt.Errorf("the second member was never assigned partitions")
	}
	if err := produce(ctx, admin, topic, n, n); err != nil {
		return err
	}
	res.Produced = 2 * n
	err = wait(2 * n)
	res.Distinct = count()
	return err
}
