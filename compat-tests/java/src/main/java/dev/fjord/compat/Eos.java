package dev.fjord.compat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The exactly-once side of the Java compat CLI: idempotent and transactional producers,
 * read_committed consumers and the transaction admin calls, for {@code test_eos*.py}.
 *
 * <p>{@code java -cp ... dev.fjord.compat.Eos SUBCOMMAND --flag value ... [-X key=value]...}. Every
 * result is one JSON object per line on stdout (flushed at once, so a test can react to a line
 * while the process runs). Keys and values are plain strings (the tests use ASCII). A failed call
 * prints {@code {"error": SimpleClassName, "chain": [every class down the cause chain], "message":
 * ...}}. Unlike {@link Cli}, producers here keep the client defaults: idempotence on, acks=all,
 * five requests in flight.
 *
 * <ul>
 *   <li>{@code produce --topic T --count N --tag S}: N keyed records ({@code key k-i}, value
 *       {@code S-i}, partition from the key), one ack line each, in order.</li>
 *   <li>{@code stream --topic T --partitions P}: sends {@code seq-<n>} to partition n % P until
 *       stdin says {@code stop} (or closes), with retries for ten minutes; one line per ack
 *       {@code {"seq","p","o"}} or failure, then {@code {"event":"done",...}}.</li>
 *   <li>{@code ctp --input I --output O --group G --txn-id X}: consume-transform-produce with
 *       transactions; {@code --hang-after-commits C} hangs inside transaction C+1 once its output
 *       is written (for a kill -9), else it exits when the input is used up.</li>
 *   <li>{@code session --txn-id X}: a transactional producer driven line by line from stdin
 *       ({@code init}, {@code begin}, {@code send TOPIC PARTITION COUNT PREFIX}, {@code commit},
 *       {@code abort}, {@code exit}), one result line per command.</li>
 *   <li>{@code end-offsets --topic T --isolation read_committed|read_uncommitted}</li>
 *   <li>{@code consume --topic T --isolation ...}: everything up to the end offsets of that
 *       isolation level, from the beginning.</li>
 *   <li>{@code admin-txns [--id X]}: listTransactions(), and describeTransactions(X).</li>
 * </ul>
 */
public final class Eos {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    private Eos() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            usage("missing subcommand");
        }
        Opts o = new Opts(argv);
        int rc;
        try {
            rc = switch (argv[0]) {
                case "produce" -> produce(o);
                case "stream" -> stream(o);
                case "ctp" -> ctp(o);
                case "session" -> session(o);
                case "end-offsets" -> endOffsets(o);
                case "consume" -> consume(o);
                case "admin-txns" -> adminTxns(o);
                default -> {
                    usage("unknown subcommand " + argv[0]);
                    yield 64;
                }
            };
        } catch (Exception e) {
            OUT.println(errorJson(e, ""));
            rc = 2;
        }
        OUT.flush();
        System.exit(rc);
    }

    // ------------------------------------------------------------------ configs

    private static Properties base(Opts o) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return p;
    }

    private static void extras(Opts o, Properties p) {
        for (String kv : o.all("X")) {
            int eq = kv.indexOf('=');
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
    }

    /** A producer with the client's defaults (idempotence on, acks=all, 5 in flight). */
    private static KafkaProducer<String, String> producer(Opts o, Map<String, String> settings) {
        Properties p = base(o);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.putAll(settings);
        extras(o, p);
        return new KafkaProducer<>(p);
    }

    private static KafkaConsumer<String, String> consumer(Opts o, String isolation, Map<String, String> settings) {
        Properties p = base(o);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.putAll(settings);
        extras(o, p);
        return new KafkaConsumer<>(p);
    }

    private static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic) {
        List<TopicPartition> out = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(20))) {
            out.add(new TopicPartition(topic, pi.partition()));
        }
        out.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
        return out;
    }

    // ------------------------------------------------------------------ produce

    private static int produce(Opts o) throws Exception {
        String topic = o.required("topic");
        int n = Integer.parseInt(o.required("count"));
        String tag = o.get("tag", "r");
        // Small batches and no linger: many batches, several in flight per partition.
        Map<String, String> s = Map.of(ProducerConfig.LINGER_MS_CONFIG, "0", ProducerConfig.BATCH_SIZE_CONFIG, "256");
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        try (KafkaProducer<String, String> p = producer(o, s)) {
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, "k-" + i, tag + "-" + i)));
            }
            p.flush();
            for (int i = 0; i < n; i++) {
                try {
                    RecordMetadata md = fs.get(i).get();
                    OUT.println("{\"i\":" + i + ",\"p\":" + md.partition() + ",\"o\":" + md.offset() + "}");
                } catch (ExecutionException e) {
                    OUT.println(errorJson(e, "\"i\":" + i + ","));
                }
            }
        }
        return 0;
    }

    /**
     * An idempotent producer that keeps sending while the broker dies and comes back: retries for
     * up to ten minutes per record, blocks instead of failing while the buffer is full.
     */
    private static int stream(Opts o) throws Exception {
        String topic = o.required("topic");
        int parts = Integer.parseInt(o.required("partitions"));
        long sleepEvery = Long.parseLong(o.get("sleep-every", "10"));
        Map<String, String> s = new HashMap<>();
        s.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        s.put(ProducerConfig.ACKS_CONFIG, "all");
        s.put(ProducerConfig.LINGER_MS_CONFIG, "2");
        s.put(ProducerConfig.BATCH_SIZE_CONFIG, "2048");
        s.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        s.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "600000");
        s.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "600000");
        s.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        AtomicBoolean stop = new AtomicBoolean();
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                    if (line.trim().equals("stop")) {
                        break;
                    }
                }
            } catch (Exception ignored) {
                // stdin gone: stop as well
            }
            stop.set(true);
        });
        reader.setDaemon(true);
        reader.start();
        AtomicLong acked = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        long sent = 0;
        try (KafkaProducer<String, String> p = producer(o, s)) {
            while (!stop.get()) {
                final long seq = sent;
                p.send(new ProducerRecord<>(topic, (int) (seq % parts), "s-" + seq, "seq-" + seq), (md, e) -> {
                    if (e != null) {
                        failed.incrementAndGet();
                        OUT.println(errorJson(e, "\"seq\":" + seq + ","));
                    } else {
                        acked.incrementAndGet();
                        OUT.println("{\"seq\":" + seq + ",\"p\":" + md.partition() + ",\"o\":" + md.offset() + "}");
                    }
                });
                sent++;
                if (sent % sleepEvery == 0) {
                    Thread.sleep(10);  // a steady stream, ~1000 records/s at most
                }
            }
            p.flush();
        }
        OUT.println("{\"event\":\"done\",\"sent\":" + sent + ",\"acked\":" + acked.get() + ",\"failed\":" + failed.get() + "}");
        return 0;
    }

    // ------------------------------------------------------------------ consume-transform-produce

    /**
     * Reads the input with a group (read_committed, no auto commit), writes {@code out:<value>} with
     * the same key to the same partition of the output, and commits the consumed offsets inside the
     * transaction. Lines: {@code {"event":"ready"}} after initTransactions, {@code {"event":
     * "committed","inputs":[...]}} per transaction, {@code {"event":"hanging","outputs":[...]}} when
     * it stops inside a transaction (--hang-after-commits), {@code {"event":"done"}} when every
     * input partition is consumed to its end.
     */
    private static int ctp(Opts o) throws Exception {
        String input = o.required("input");
        String output = o.required("output");
        int hangAfter = Integer.parseInt(o.get("hang-after-commits", "-1"));
        int perTxn = Integer.parseInt(o.get("per-txn", "10"));
        Map<String, String> ps = new HashMap<>();
        ps.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, o.required("txn-id"));
        ps.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, o.get("txn-timeout-ms", "60000"));
        Map<String, String> cs = new HashMap<>();
        cs.put(ConsumerConfig.GROUP_ID_CONFIG, o.required("group"));
        cs.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, String.valueOf(perTxn));
        cs.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, o.get("session-timeout-ms", "6000"));
        cs.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        try (KafkaProducer<String, String> p = producer(o, ps);
             KafkaConsumer<String, String> c = consumer(o, "read_committed", cs)) {
            p.initTransactions();
            OUT.println("{\"event\":\"ready\"}");
            List<TopicPartition> all = partitions(c, input);
            c.subscribe(List.of(input));
            int commits = 0;
            while (true) {
                ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) {
                    if (c.assignment().size() == all.size() && consumedAll(c, all)) {
                        OUT.println("{\"event\":\"done\",\"commits\":" + commits + "}");
                        return 0;
                    }
                    continue;
                }
                p.beginTransaction();
                List<String> ins = new ArrayList<>();
                List<String> outs = new ArrayList<>();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : recs) {
                    String v = "out:" + r.value();
                    p.send(new ProducerRecord<>(output, r.partition(), r.key(), v));
                    ins.add(r.value());
                    outs.add(v);
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                if (commits == hangAfter) {
                    p.flush();  // the output is in the log, inside the open transaction
                    OUT.println("{\"event\":\"hanging\",\"outputs\":" + strings(outs) + "}");
                    Thread.sleep(Long.MAX_VALUE);
                }
                p.commitTransaction();
                commits++;
                OUT.println("{\"event\":\"committed\",\"inputs\":" + strings(ins) + "}");
            }
        }
    }

    private static boolean consumedAll(KafkaConsumer<?, ?> c, List<TopicPartition> all) {
        Map<TopicPartition, Long> end = c.endOffsets(all);
        for (TopicPartition tp : all) {
            if (c.position(tp) < end.get(tp)) {
                return false;
            }
        }
        return true;
    }

    // ------------------------------------------------------------------ scripted transactional producer

    private static int session(Opts o) throws Exception {
        Map<String, String> ps = new HashMap<>();
        ps.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, o.required("txn-id"));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<String, String> p = producer(o, ps)) {
            OUT.println("{\"op\":\"start\",\"ok\":true}");
            for (String line; (line = in.readLine()) != null; ) {
                String[] a = line.trim().split("\t");
                String op = a[0];
                if (op.isEmpty()) {
                    continue;
                }
                if (op.equals("exit")) {
                    break;
                }
                String prefix = "\"op\":" + quote(op) + ",";
                try {
                    switch (op) {
                        case "init" -> p.initTransactions();
                        case "begin" -> p.beginTransaction();
                        case "commit" -> p.commitTransaction();
                        case "abort" -> p.abortTransaction();
                        case "send" -> {
                            String topic = a[1];
                            int part = Integer.parseInt(a[2]);
                            int count = Integer.parseInt(a[3]);
                            List<Future<RecordMetadata>> fs = new ArrayList<>();
                            for (int i = 0; i < count; i++) {
                                fs.add(p.send(new ProducerRecord<>(topic, part, a[4] + "-" + i, a[4] + "-" + i)));
                            }
                            p.flush();
                            StringBuilder sb = new StringBuilder("[");
                            for (Future<RecordMetadata> f : fs) {
                                sb.append(sb.length() > 1 ? "," : "").append(f.get().offset());
                            }
                            prefix += "\"offsets\":" + sb.append("]") + ",";
                        }
                        default -> throw new IllegalArgumentException("unknown op " + op);
                    }
                    OUT.println("{" + prefix + "\"ok\":true}");
                } catch (Exception e) {
                    OUT.println(errorJson(e, prefix));
                }
            }
        }
        return 0;
    }

    // ------------------------------------------------------------------ reading

    private static int endOffsets(Opts o) throws Exception {
        String topic = o.required("topic");
        try (KafkaConsumer<String, String> c = consumer(o, o.required("isolation"), Map.of())) {
            for (Map.Entry<Integer, Long> e : byPartition(c.endOffsets(partitions(c, topic))).entrySet()) {
                OUT.println("{\"p\":" + e.getKey() + ",\"o\":" + e.getValue() + "}");
            }
        }
        return 0;
    }

    private static Map<Integer, Long> byPartition(Map<TopicPartition, Long> m) {
        Map<Integer, Long> out = new TreeMap<>();
        m.forEach((tp, v) -> out.put(tp.partition(), v));
        return out;
    }

    /** Every record from the beginning up to the end offsets of the isolation level, one line each. */
    private static int consume(Opts o) throws Exception {
        String topic = o.required("topic");
        long deadline = System.currentTimeMillis() + Long.parseLong(o.get("timeout-ms", "30000"));
        try (KafkaConsumer<String, String> c = consumer(o, o.required("isolation"), Map.of())) {
            List<TopicPartition> all = partitions(c, topic);
            c.assign(all);
            c.seekToBeginning(all);
            Map<TopicPartition, Long> end = c.endOffsets(all);
            while (true) {
                boolean done = true;
                for (TopicPartition tp : all) {
                    done &= c.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new org.apache.kafka.common.errors.TimeoutException("not at the end offsets " + end);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    OUT.println("{\"p\":" + r.partition() + ",\"o\":" + r.offset() + ",\"k\":" + quote(r.key())
                            + ",\"v\":" + quote(r.value()) + "}");
                }
            }
            StringBuilder sb = new StringBuilder("{");
            for (TopicPartition tp : all) {
                sb.append(sb.length() > 1 ? "," : "").append(quote(String.valueOf(tp.partition()))).append(':').append(end.get(tp));
            }
            OUT.println("{\"end\":" + sb.append("}") + "}");
        }
        return 0;
    }

    // ------------------------------------------------------------------ admin

    private static int adminTxns(Opts o) throws Exception {
        try (Admin a = Admin.create(base(o))) {
            StringBuilder sb = new StringBuilder("[");
            for (TransactionListing l : a.listTransactions().all().get()) {
                sb.append(sb.length() > 1 ? "," : "").append("{\"id\":").append(quote(l.transactionalId()))
                        .append(",\"state\":").append(quote(l.state().toString()))
                        .append(",\"producer_id\":").append(l.producerId()).append("}");
            }
            OUT.println("{\"listed\":" + sb.append("]") + "}");
            if (o.has("id")) {
                String id = o.required("id");
                TransactionDescription d = a.describeTransactions(List.of(id)).description(id).get();
                StringBuilder tps = new StringBuilder("[");
                for (TopicPartition tp : d.topicPartitions()) {
                    tps.append(tps.length() > 1 ? "," : "").append(quote(tp.topic() + "-" + tp.partition()));
                }
                OUT.println("{\"described\":{\"id\":" + quote(id) + ",\"state\":" + quote(d.state().toString())
                        + ",\"producer_id\":" + d.producerId() + ",\"producer_epoch\":" + d.producerEpoch()
                        + ",\"coordinator\":" + d.coordinatorId() + ",\"timeout_ms\":" + d.transactionTimeoutMs()
                        + ",\"start_ms\":" + (d.transactionStartTimeMs().isPresent() ? d.transactionStartTimeMs().getAsLong() : "null")
                        + ",\"partitions\":" + tps.append("]") + "}}");
            }
        }
        return 0;
    }

    // ------------------------------------------------------------------ output helpers

    private static String errorJson(Throwable t, String prefix) {
        List<String> chain = new ArrayList<>();
        Throwable e = t;
        while (e instanceof ExecutionException && e.getCause() != null) {
            e = e.getCause();
        }
        Throwable top = e;
        for (Throwable x = e; x != null && chain.size() < 8; x = x.getCause()) {
            chain.add(quote(x.getClass().getSimpleName()));
        }
        return "{" + prefix + "\"error\":" + quote(top.getClass().getSimpleName()) + ",\"chain\":" + chain
                + ",\"message\":" + quote(String.valueOf(top.getMessage())) + "}";
    }

    private static String strings(Collection<String> xs) {
        StringBuilder sb = new StringBuilder("[");
        for (String x : xs) {
            sb.append(sb.length() > 1 ? "," : "").append(quote(x));
        }
        return sb.append("]").toString();
    }

    static String quote(String v) {
        if (v == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder(v.length() + 2).append('"');
        for (char ch : v.toCharArray()) {
            switch (ch) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    private static void usage(String why) {
        System.err.println("usage: Eos produce|stream|ctp|session|end-offsets|consume|admin-txns --bootstrap HOST:PORT ...: " + why);
        System.exit(64);
    }

    /** {@code --name value} pairs and repeated {@code -X key=value}. */
    private static final class Opts {
        private final Map<String, List<String>> values = new LinkedHashMap<>();

        Opts(String[] argv) {
            for (int i = 1; i < argv.length; i++) {
                if (!argv[i].startsWith("--") && !argv[i].equals("-X")) {
                    usage("unexpected argument " + argv[i]);
                }
                String name = argv[i].replaceFirst("^--?", "");
                String value = i + 1 < argv.length && !argv[i + 1].startsWith("--") && !argv[i + 1].equals("-X") ? argv[++i] : null;
                values.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
            }
        }

        boolean has(String name) {
            return values.containsKey(name);
        }

        String get(String name, String dflt) {
            List<String> v = values.get(name);
            return v == null || v.get(v.size() - 1) == null ? dflt : v.get(v.size() - 1);
        }

        String required(String name) {
            String v = get(name, null);
            if (v == null) {
                usage("missing --" + name);
            }
            return v;
        }

        List<String> all(String name) {
            List<String> out = new ArrayList<>();
            for (String v : values.getOrDefault(name, List.of())) {
                if (v != null) {
                    out.add(v);
                }
            }
            return out;
        }
    }
}
