// Command clients drives the three Go Kafka client families (franz-go, IBM/sarama,
// segmentio/kafka-go) for compat-tests/test_go_clients.py. Each subcommand does one thing with
// one client and prints JSON lines on stdout; the Python test decides what is right.
//
//	clients produce  -client C -brokers B -topic T [-codec none] [-acks all] [-idempotent]   records on stdin
//	clients consume  -client C -brokers B -topic T -count N [-isolation read_committed]
//	clients group    -client C -brokers B -topic T -group G -count N [-protocol classic|consumer]
//	clients admin    -client C -brokers B -op OP [-topic T] [-group G] [-partitions N] [-config k=v,...]
//	clients txn      -client C -brokers B -topic T -txn-id ID            (franz-go, sarama)
//	clients txn-group -brokers B -topic IN -out OUT -group G -txn-id ID   (franz-go)
//	clients group2   -brokers B -topic T -group G -count N -partitions P [-protocol classic|consumer]   (franz-go)
//	clients kafka-go-conn -brokers B -topic T -partitions N
//
// C is franz, sarama or kafka-go. Records, in and out, are JSON objects with hex keys, values
// and header values (null for null): {"key", "value", "headers": [[name, value]], "partition",
// "timestamp", "offset"}. Every run ends with {"done": true, ...} and exit 0, or with
// {"error": "...", "error_code": N} (a Kafka error code when the client names one, -1 when
// not) and exit 1, so a test sees how far a client got.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
)

type opts struct {
	client, brokers, topic, out, group, protocol, codec, acks, isolation, op, txnID, config, keys string

	count, partitions int
	idempotent        bool
	at                int64
	timeout           time.Duration
}

// inRec is a record to produce; nil key/value/header value means null.
type inRec struct {
	Key       []byte
	Value     []byte
	Headers   []header
	Partition int32
	Timestamp int64 // 0: the client's clock
}

type header struct {
	Key   string
	Value []byte
}

// outRec is a record as a consumer returned it.
type outRec struct {
	Partition int32
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []header
}

type ack struct {
	I         int    `json:"i"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp *int64 `json:"timestamp"` // null: the client does not say which timestamp it sent
	Error     string `json:"error,omitempty"`
}

// ackTime is t in ms, or nil for the zero time (sarama and kafka-go leave a timestamp they
// filled in themselves unset in the message they hand back).
func ackTime(t time.Time) *int64 {
	if t.IsZero() || t.UnixMilli() <= 0 {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

var (
	outMu sync.Mutex
	out   = bufio.NewWriter(os.Stdout)
)

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	outMu.Lock()
	defer outMu.Unlock()
	out.Write(b)
	out.WriteByte('\n')
	out.Flush()
}

func hexOrNull(b []byte) *string {
	if b == nil {
		return nil
	}
	s := hex.EncodeToString(b)
	return &s
}

func unhex(s *string) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	b, err := hex.DecodeString(*s)
	if b == nil {
		b = []byte{}
	}
	return b, err
}

func (r outRec) MarshalJSON() ([]byte, error) {
	hs := make([][2]*string, 0, len(r.Headers))
	for _, h := range r.Headers {
		k := h.Key
		hs = append(hs, [2]*string{&k, hexOrNull(h.Value)})
	}
	return json.Marshal(map[string]any{
		"partition": r.Partition, "offset": r.Offset, "timestamp": r.Timestamp,
		"key": hexOrNull(r.Key), "value": hexOrNull(r.Value), "headers": hs,
	})
}

func readRecords() ([]inRec, error) {
	var recs []inRec
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var j struct {
			Key       *string      `json:"key"`
			Value     *string      `json:"value"`
			Headers   [][2]*string `json:"headers"`
			Partition int32        `json:"partition"`
			Timestamp *int64       `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			return nil, fmt.Errorf("record %d: %w", len(recs), err)
		}
		var r inRec
		var err error
		if r.Key, err = unhex(j.Key); err != nil {
			return nil, err
		}
		if r.Value, err = unhex(j.Value); err != nil {
			return nil, err
		}
		for _, h := range j.Headers {
			v, err := unhex(h[1])
			if err != nil {
				return nil, err
			}
			r.Headers = append(r.Headers, header{*h[0], v})
		}
		r.Partition = j.Partition
		if j.Timestamp != nil {
			r.Timestamp = *j.Timestamp
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// errorCode is the Kafka error code inside err, 0 for nil, -1 when the client gives none.
func errorCode(err error) int {
	if err == nil {
		return 0
	}
	var fe *kerr.Error
	if errors.As(err, &fe) {
		return int(fe.Code)
	}
	var se sarama.KError
	if errors.As(err, &se) {
		return int(se)
	}
	var ge kafka.Error
	if errors.As(err, &ge) {
		return int(ge)
	}
	return -1
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// intKeyed turns partition-keyed maps into JSON objects with sorted string keys.
func intKeyed[V any](m map[int32]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[fmt.Sprint(k)] = v
	}
	return out
}

func sortedInts(xs []int32) []int32 {
	out := append([]int32{}, xs...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func parseConfig(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clients produce|consume|group|admin|txn|txn-group [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	var o opts
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.StringVar(&o.client, "client", "franz", "franz, sarama or kafka-go")
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "bootstrap server")
	fs.StringVar(&o.topic, "topic", "", "topic")
	fs.StringVar(&o.out, "out", "", "output topic (txn-group)")
	fs.StringVar(&o.group, "group", "", "consumer group")
	fs.StringVar(&o.protocol, "protocol", "classic", "group protocol: classic or consumer (KIP-848)")
	fs.StringVar(&o.codec, "codec", "none", "none, gzip, snappy, lz4 or zstd")
	fs.StringVar(&o.acks, "acks", "all", "all, 1 or 0")
	fs.StringVar(&o.isolation, "isolation", "read_uncommitted", "read_uncommitted or read_committed")
	fs.StringVar(&o.op, "op", "", "admin operation")
	fs.StringVar(&o.txnID, "txn-id", "", "transactional id")
	fs.StringVar(&o.config, "config", "", "topic configs k=v,k=v (admin create)")
	fs.StringVar(&o.keys, "keys", "", "config names, comma separated (admin configs)")
	fs.IntVar(&o.count, "count", 0, "records to read")
	fs.IntVar(&o.partitions, "partitions", 1, "partitions (admin create, create-partitions)")
	fs.BoolVar(&o.idempotent, "idempotent", false, "idempotent producer")
	fs.Int64Var(&o.at, "at", -1, "a timestamp in ms (admin offsets: first offset at or after it)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	fs.Parse(os.Args[2:])

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

	var err error
	switch cmd {
	case "produce":
		err = runProduce(ctx, o)
	case "consume":
		err = runConsume(ctx, o)
	case "group":
		err = runGroup(ctx, o)
	case "admin":
		err = runAdmin(ctx, o)
	case "txn":
		err = runTxn(ctx, o)
	case "txn-group":
		err = franzTxnGroup(ctx, o)
	case "group2":
		err = franzGroup2(ctx, o)
	case "kafka-go-conn":
		err = kafkaGoConn(ctx, o)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		emit(map[string]any{"error": err.Error(), "error_code": errorCode(err)})
		os.Exit(1)
	}
	emit(map[string]any{"done": true})
}

func runProduce(ctx context.Context, o opts) error {
	recs, err := readRecords()
	if err != nil {
		return err
	}
	var acks []ack
	switch o.client {
	case "franz":
		acks, err = franzProduce(ctx, o, recs)
	case "sarama":
		acks, err = saramaProduce(ctx, o, recs)
	case "kafka-go":
		acks, err = kafkaGoProduce(ctx, o, recs)
	default:
		return fmt.Errorf("unknown client %q", o.client)
	}
	for _, a := range acks {
		emit(a)
	}
	return err
}

// collector keeps what a consumer read, up to count records, and says when it has them all.
type collector struct {
	mu   sync.Mutex
	want int
	got  []outRec
	full chan struct{}
	once sync.Once
}

func newCollector(want int) *collector {
	c := &collector{want: want, full: make(chan struct{})}
	if want <= 0 {
		close(c.full)
	}
	return c
}

// add keeps r unless count records are already there; it reports whether r was kept.
func (c *collector) add(r outRec) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) >= c.want {
		return false
	}
	c.got = append(c.got, r)
	emit(r)
	if len(c.got) == c.want {
		c.once.Do(func() { close(c.full) })
	}
	return true
}

func (c *collector) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *collector) wait(ctx context.Context) error {
	select {
	case <-c.full:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("read %d of %d records before the time limit", c.n(), c.want)
	}
}

func runConsume(ctx context.Context, o opts) error {
	c := newCollector(o.count)
	switch o.client {
	case "franz":
		return franzConsume(ctx, o, c)
	case "sarama":
		return saramaConsume(ctx, o, c)
	case "kafka-go":
		return kafkaGoConsume(ctx, o, c)
	}
	return fmt.Errorf("unknown client %q", o.client)
}

func runGroup(ctx context.Context, o opts) error {
	c := newCollector(o.count)
	switch o.client {
	case "franz":
		return franzGroup(ctx, o, c)
	case "sarama":
		if o.protocol != "classic" {
			return errors.New("sarama speaks the classic group protocol only")
		}
		return saramaGroup(ctx, o, c)
	case "kafka-go":
		if o.protocol != "classic" {
			return errors.New("kafka-go speaks the classic group protocol only")
		}
		return kafkaGoGroup(ctx, o, c)
	}
	return fmt.Errorf("unknown client %q", o.client)
}

// groupInfo is a described group, the same shape for every client.
type groupInfo struct {
	ErrorCode    int          `json:"error_code"`
	State        string       `json:"state"`
	ProtocolType string       `json:"protocol_type"`
	Protocol     string       `json:"protocol"`
	Members      []memberInfo `json:"members"`
}

type memberInfo struct {
	MemberID string             `json:"member_id"`
	ClientID string             `json:"client_id"`
	Assigned map[string][]int32 `json:"assigned"`
}

type topicInfo struct {
	ErrorCode  int             `json:"error_code"`
	TopicID    string          `json:"topic_id,omitempty"`
	Partitions []partitionInfo `json:"partitions"`
}

type partitionInfo struct {
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
}

// admin is what the admin subcommand asks of each client family.
type admin interface {
	createTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error
	describeTopic(ctx context.Context, topic string) (topicInfo, error)
	listTopics(ctx context.Context) ([]string, error)
	topicConfigs(ctx context.Context, topic string, keys []string) (map[string]string, error)
	createPartitions(ctx context.Context, topic string, total int) error
	deleteTopic(ctx context.Context, topic string) error
	// offsets: earliest, latest, and (at >= 0) the first offset at or after that timestamp.
	offsets(ctx context.Context, topic string, at int64) (earliest, latest, after map[int32]int64, err error)
	listGroups(ctx context.Context) (map[string]map[string]string, error)
	describeGroup(ctx context.Context, group, protocol string) (groupInfo, error)
	committed(ctx context.Context, group, topic string) (map[int32]int64, error)
	deleteGroup(ctx context.Context, group string) error
	close()
}

func newAdmin(o opts) (admin, error) {
	switch o.client {
	case "franz":
		return newFranzAdmin(o)
	case "sarama":
		return newSaramaAdmin(o)
	case "kafka-go":
		return newKafkaGoAdmin(o), nil
	}
	return nil, fmt.Errorf("unknown client %q", o.client)
}

func runAdmin(ctx context.Context, o opts) error {
	a, err := newAdmin(o)
	if err != nil {
		return err
	}
	defer a.close()
	res := map[string]any{"op": o.op}
	// Refusals are results here, not failures of the run: the test asserts their codes.
	code := func(err error) {
		res["error_code"] = errorCode(err)
		res["error"] = errString(err)
	}
	switch o.op {
	case "create":
		code(a.createTopic(ctx, o.topic, o.partitions, parseConfig(o.config)))
	case "describe":
		info, err := a.describeTopic(ctx, o.topic)
		if err != nil && errorCode(err) <= 0 {
			return err
		}
		if err != nil {
			info.ErrorCode = errorCode(err)
		}
		res["topic"] = info
	case "list-topics":
		names, err := a.listTopics(ctx)
		if err != nil {
			return err
		}
		res["topics"] = names
	case "configs":
		cfg, err := a.topicConfigs(ctx, o.topic, strings.Split(o.keys, ","))
		if err != nil {
			return err
		}
		res["configs"] = cfg
	case "create-partitions":
		code(a.createPartitions(ctx, o.topic, o.partitions))
	case "delete":
		code(a.deleteTopic(ctx, o.topic))
	case "offsets":
		earliest, latest, after, err := a.offsets(ctx, o.topic, o.at)
		if err != nil {
			return err
		}
		res["earliest"], res["latest"] = intKeyed(earliest), intKeyed(latest)
		if after != nil {
			res["after"] = intKeyed(after)
		}
	case "groups":
		groups, err := a.listGroups(ctx)
		if err != nil {
			return err
		}
		res["groups"] = groups
	case "describe-group":
		g, err := a.describeGroup(ctx, o.group, o.protocol)
		if err != nil && errorCode(err) <= 0 {
			return err
		}
		if err != nil {
			g.ErrorCode = errorCode(err)
		}
		res["group"] = g
	case "committed":
		offs, err := a.committed(ctx, o.group, o.topic)
		if err != nil {
			return err
		}
		res["offsets"] = intKeyed(offs)
	case "delete-group":
		code(a.deleteGroup(ctx, o.group))
	default:
		return fmt.Errorf("unknown admin op %q", o.op)
	}
	emit(res)
	return nil
}

// describeAndCommitted reports a live group member's view of its group, through the client
// family's own admin, before it leaves: {"describe": ..., "committed": ...}.
func describeAndCommitted(ctx context.Context, o opts) error {
	a, err := newAdmin(o)
	if err != nil {
		return err
	}
	defer a.close()
	g, err := a.describeGroup(ctx, o.group, o.protocol)
	if err != nil {
		return fmt.Errorf("describe group: %w", err)
	}
	offs, err := a.committed(ctx, o.group, o.topic)
	if err != nil {
		return fmt.Errorf("committed offsets: %w", err)
	}
	emit(map[string]any{"describe": g, "committed": intKeyed(offs)})
	return nil
}
