package dev.fjord.compat3;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Deque;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * kafka-clients 3.9 against a broker, for {@code test_java3_client.py}.
 *
 * <p>{@code java -cp ... dev.fjord.compat3.Java3 SUBCOMMAND --bootstrap HOST:PORT --flag value ...}.
 * Every result is one JSON object per line on stdout, {@code "ev"} naming its kind; byte strings
 * (keys, values, header values) are lowercase hex and {@code null} stays {@code null}. A failed
 * call ends the output with {@code {"ev":"error","error":SimpleClassName,"message":...}} and exit
 * code 2.
 *
 * <ul>
 *   <li>{@code produce-read --topic-prefix T --codecs none,gzip,... --partitions P --count N}: for
 *       each codec an idempotent producer (acks=all, 5 in flight) with that codec sends the N
 *       records of {@link #record} to {@code T-<codec>} ({@code ack} lines), then a consumer with
 *       no group reads every partition of that topic from the beginning to its end ({@code rec}
 *       lines).</li>
 *   <li>{@code group --topic T --group G --max N [--describe]}: a member of G (classic protocol)
 *       that processes N records, committing exactly the processed ones with commitSync after each
 *       poll, describes its own group while still in it, and leaves.</li>
 *   <li>{@code admin --topic NEW --group G}: create (twice), describe, describeConfigs, list and
 *       delete topic NEW; listConsumerGroups, describeConsumerGroups and
 *       listConsumerGroupOffsets of G.</li>
 *   <li>{@code txn --input I --output O --group G --txn-id X --count N --per-txn K --abort A}:
 *       consume-transform-produce of N input records, K per transaction, the offsets sent with
 *       sendOffsetsToTransaction; transaction number A (0-based) is aborted and its input
 *       re-processed after a seek back. Then O is read from the beginning with read_committed and
 *       with read_uncommitted.</li>
 * </ul>
 */
public final class Java3 {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
    private static final HexFormat HEX = HexFormat.of();
    /** Whatever a single step may take before the program gives up (the tests allow more). */
    private static final Duration STEP = Duration.ofSeconds(45);

    private Java3() {}

    public static void main(String[] argv) {
        int rc = 0;
        try {
            if (argv.length == 0) {
                throw new IllegalArgumentException("missing subcommand");
            }
            Opts o = new Opts(argv);
            switch (argv[0]) {
                case "produce-read" -> produceRead(o);
                case "group" -> group(o);
                case "admin" -> admin(o);
                case "txn" -> txn(o);
                default -> throw new IllegalArgumentException("unknown subcommand " + argv[0]);
            }
        } catch (Throwable e) {
            Throwable t = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            emit(new J().s("ev", "error").s("error", t.getClass().getSimpleName()).s("message", String.valueOf(t.getMessage())));
            rc = 2;
        }
        OUT.flush();
        System.exit(rc);
    }

    // ------------------------------------------------------------------ clients

    private static Properties base(Opts o) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return p;
    }

    private static KafkaProducer<byte[], byte[]> producer(Opts o, Map<String, String> settings) {
        Properties p = base(o);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "45000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "45000");
        p.putAll(settings);
        return new KafkaProducer<>(p);
    }

    private static KafkaConsumer<byte[], byte[]> consumer(Opts o, Map<String, String> settings) {
        Properties p = base(o);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.putAll(settings);
        return new KafkaConsumer<>(p);
    }

    /** A group member as the tests' brokers allow it: classic protocol, 6 s session, quick heartbeats. */
    private static Map<String, String> member(String group, String clientId, String isolation) {
        Map<String, String> s = new HashMap<>();
        s.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        s.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        s.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        s.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        s.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        s.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        return s;
    }

    private static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic) {
        List<TopicPartition> out = new ArrayList<>();
        for (PartitionInfo pi : c.partitionsFor(topic, STEP)) {
            out.add(new TopicPartition(topic, pi.partition()));
        }
        out.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
        return out;
    }

    // ------------------------------------------------------------------ produce-read

    /**
     * Record i of codec c; test_java3_client.py builds the same list. Null keys and values, an empty,
     * a null and a repeated header, records without headers, non-ASCII text and raw bytes, and
     * values long enough for the codecs to have something to compress.
     */
    static ProducerRecord<byte[], byte[]> record(String topic, String codec, int i, int partitions) {
        byte[] key = i % 4 == 3 ? null : ("k-" + i).getBytes(StandardCharsets.UTF_8);
        byte[] value = null;
        if (i % 5 != 4) {
            byte[] text = (codec + " #" + i + " blåbær→✓ " + "x".repeat(i * 7 % 50)).getBytes(StandardCharsets.UTF_8);
            byte[] tail = i % 3 == 0 ? new byte[] {0x00, (byte) 0xff, 0x10} : new byte[0];
            value = new byte[text.length + tail.length];
            System.arraycopy(text, 0, value, 0, text.length);
            System.arraycopy(tail, 0, value, text.length, tail.length);
        }
        RecordHeaders h = new RecordHeaders();
        if (i % 8 != 7) {
            h.add("h-index", String.valueOf(i).getBytes(StandardCharsets.UTF_8));
            h.add("h-codec", codec.getBytes(StandardCharsets.UTF_8));
            h.add("h-empty", new byte[0]);
            h.add("h-dup", "first".getBytes(StandardCharsets.UTF_8));
            h.add("h-dup", "second".getBytes(StandardCharsets.UTF_8));
            if (i % 6 == 0) {
                h.add("h-null", null);
            }
        }
        return new ProducerRecord<>(topic, i % partitions, null, key, value, h);
    }

    private static void produceRead(Opts o) throws Exception {
        String prefix = o.required("topic-prefix");
        int parts = Integer.parseInt(o.required("partitions"));
        int n = Integer.parseInt(o.required("count"));
        for (String codec : o.required("codecs").split(",")) {
            String topic = prefix + "-" + codec;
            // Small batches and a little linger: several multi-record batches per partition, more
            // than one in flight, so the sequence numbers and the codec both get exercised.
            Map<String, String> s = Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                    ProducerConfig.LINGER_MS_CONFIG, "5", ProducerConfig.BATCH_SIZE_CONFIG, "1024");
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> p = producer(o, s)) {
                for (int i = 0; i < n; i++) {
                    fs.add(p.send(record(topic, codec, i, parts)));
                }
                p.flush();
                for (int i = 0; i < n; i++) {
                    RecordMetadata md = fs.get(i).get();
                    emit(new J().s("ev", "ack").s("codec", codec).n("i", i).n("p", md.partition()).n("o", md.offset()));
                }
            }
            try (KafkaConsumer<byte[], byte[]> c = consumer(o, Map.of())) {
                for (ConsumerRecord<byte[], byte[]> r : readAll(c, topic, 0)) {
                    emit(rec(r).s("ev", "rec").s("codec", codec));
                }
            }
        }
    }

    /**
     * Everything of `topic` from the beginning up to the end offsets of the consumer's isolation
     * level, and at least `atLeast` records: right after commitTransaction returns the markers may
     * still be on their way, so the last stable offset can trail for a moment.
     */
    private static List<ConsumerRecord<byte[], byte[]>> readAll(KafkaConsumer<byte[], byte[]> c, String topic, int atLeast) {
        List<TopicPartition> tps = partitions(c, topic);
        c.assign(tps);
        c.seekToBeginning(tps);
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        long deadline = System.nanoTime() + STEP.toNanos();
        while (true) {
            Map<TopicPartition, Long> end = c.endOffsets(tps, STEP);
            boolean caughtUp = true;
            for (TopicPartition tp : tps) {
                caughtUp &= c.position(tp, STEP) >= end.get(tp);
            }
            if (caughtUp && out.size() >= atLeast) {
                return out;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException(topic + ": read " + out.size() + " records, end offsets " + end);
            }
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                out.add(r);
            }
        }
    }

    // ------------------------------------------------------------------ group

    private static void group(Opts o) throws Exception {
        String topic = o.required("topic");
        String groupId = o.required("group");
        int max = Integer.parseInt(o.required("max"));
        String clientId = o.get("client-id", "java3-member");
        String metadata = o.get("metadata", "java3");
        try (KafkaConsumer<byte[], byte[]> c = consumer(o, member(groupId, clientId, "read_uncommitted"))) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                    emit(new J().s("ev", "revoked").raw("partitions", partitionList(tps)));
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                    // position() here is where this member starts: the committed offset, if any.
                    StringBuilder sb = new StringBuilder("[");
                    for (TopicPartition tp : sorted(tps)) {
                        sb.append(sb.length() > 1 ? "," : "")
                                .append(new J().n("p", tp.partition()).n("position", c.position(tp)));
                    }
                    emit(new J().s("ev", "assigned").raw("partitions", sb.append(']').toString()));
                }
            });
            int processed = 0;
            long deadline = System.nanoTime() + STEP.toNanos();
            while (processed < max) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("processed " + processed + " of " + max + " records");
                }
                Map<TopicPartition, OffsetAndMetadata> commit = new TreeMap<>(Java3::compareTp);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    if (processed == max) {
                        break;  // fetched but not processed: neither committed nor reported
                    }
                    emit(rec(r).s("ev", "rec"));
                    commit.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1, metadata));
                    processed++;
                }
                if (!commit.isEmpty()) {
                    c.commitSync(commit, STEP);
                    emit(new J().s("ev", "commit").raw("offsets", offsetList(commit)));
                }
            }
            if (o.has("describe")) {
                try (Admin a = Admin.create(base(o))) {
                    ConsumerGroupDescription d = a.describeConsumerGroups(List.of(groupId)).all().get().get(groupId);
                    emit(groupJson(d).s("ev", "described"));
                }
            }
        }
        emit(new J().s("ev", "closed"));
    }

    // ------------------------------------------------------------------ admin

    private static void admin(Opts o) throws Exception {
        String topic = o.required("topic");
        String groupId = o.required("group");
        try (Admin a = Admin.create(base(o))) {
            Map<String, String> configs = Map.of("cleanup.policy", "compact", "retention.ms", "3600000");
            CreateTopicsResult cr = a.createTopics(List.of(new NewTopic(topic, 4, (short) 1).configs(configs)));
            cr.all().get();
            emit(new J().s("ev", "created").s("topic_id", cr.topicId(topic).get().toString())
                    .n("partitions", cr.numPartitions(topic).get()).n("replication_factor", cr.replicationFactor(topic).get()));
            try {
                a.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get();
                emit(new J().s("ev", "created-again"));
            } catch (ExecutionException e) {
                emit(new J().s("ev", "create-again").s("error", e.getCause().getClass().getSimpleName()));
            }
            // A new topic can reach the metadata a client asks for a moment after CreateTopics
            // answered (Kafka's brokers learn it from the controller); describe until it does.
            TopicDescription td = until("topic " + topic + " described",
                    () -> a.describeTopics(List.of(topic)).allTopicNames().get().get(topic));
            StringBuilder ps = new StringBuilder("[");
            for (TopicPartitionInfo pi : td.partitions()) {
                ps.append(ps.length() > 1 ? "," : "").append(new J().n("p", pi.partition()).n("leader", pi.leader().id())
                        .n("replicas", pi.replicas().size()).n("isr", pi.isr().size()));
            }
            emit(new J().s("ev", "described-topic").s("name", td.name()).s("topic_id", td.topicId().toString())
                    .b("internal", td.isInternal()).raw("partitions", ps.append(']').toString()));
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = a.describeConfigs(List.of(res)).all().get().get(res);
            J cj = new J();
            for (String k : new TreeMap<>(configs).keySet()) {
                cj.raw(k, new J().s("value", cfg.get(k).value()).s("source", cfg.get(k).source().name()).toString());
            }
            emit(new J().s("ev", "topic-configs").raw("configs", cj.toString()));
            emit(new J().s("ev", "listed-topics").b("present", a.listTopics().names().get().contains(topic)));

            for (ConsumerGroupListing l : a.listConsumerGroups().all().get()) {
                if (l.groupId().equals(groupId)) {
                    emit(new J().s("ev", "group-listing").s("group", l.groupId()).b("simple", l.isSimpleConsumerGroup())
                            .s("state", l.state().map(Enum::name).orElse(null))
                            .s("type", l.type().map(Enum::name).orElse(null)));
                }
            }
            ConsumerGroupDescription d = a.describeConsumerGroups(List.of(groupId)).all().get().get(groupId);
            emit(groupJson(d).s("ev", "group"));
            Map<TopicPartition, OffsetAndMetadata> offs = new TreeMap<>(Java3::compareTp);
            offs.putAll(a.listConsumerGroupOffsets(groupId).partitionsToOffsetAndMetadata().get());
            emit(new J().s("ev", "group-offsets").raw("offsets", offsetList(offs)));

            a.deleteTopics(List.of(topic)).all().get();
            emit(new J().s("ev", "deleted"));
            // As with creation, the brokers' metadata may trail the controller for a moment.
            until("topic " + topic + " gone", () -> !a.listTopics().names().get().contains(topic) ? true : null);
            try {
                a.describeTopics(List.of(topic)).allTopicNames().get();
                emit(new J().s("ev", "described-deleted"));
            } catch (ExecutionException e) {
                emit(new J().s("ev", "describe-deleted").s("error", e.getCause().getClass().getSimpleName()));
            }
        }
    }

    // ------------------------------------------------------------------ txn

    private static void txn(Opts o) throws Exception {
        String input = o.required("input");
        String output = o.required("output");
        String groupId = o.required("group");
        int total = Integer.parseInt(o.required("count"));
        int perTxn = Integer.parseInt(o.required("per-txn"));
        int abortAt = Integer.parseInt(o.get("abort", "-1"));
        Map<String, String> ps = Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, o.required("txn-id"),
                ProducerConfig.LINGER_MS_CONFIG, "0");
        try (KafkaConsumer<byte[], byte[]> c = consumer(o, member(groupId, "java3-ctp", "read_committed"));
             KafkaProducer<byte[], byte[]> p = producer(o, ps)) {
            p.initTransactions();
            emit(new J().s("ev", "ready"));
            c.subscribe(List.of(input));
            Deque<ConsumerRecord<byte[], byte[]>> buffered = new ArrayDeque<>();
            int done = 0;
            int attempt = 0;
            long deadline = System.nanoTime() + STEP.toNanos();
            while (done < total) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("committed " + done + " of " + total + " input records");
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    buffered.add(r);
                }
                while (buffered.size() >= Math.min(perTxn, total - done) && done < total) {
                    List<ConsumerRecord<byte[], byte[]>> chunk = new ArrayList<>();
                    while (chunk.size() < Math.min(perTxn, total - done)) {
                        chunk.add(buffered.poll());
                    }
                    int t = attempt++;
                    p.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new TreeMap<>(Java3::compareTp);
                    StringBuilder ins = new StringBuilder("[");
                    for (ConsumerRecord<byte[], byte[]> r : chunk) {
                        String v = new String(r.value(), StandardCharsets.UTF_8);
                        byte[] out = ("out:" + v + ":t" + t).getBytes(StandardCharsets.UTF_8);
                        p.send(new ProducerRecord<>(output, r.partition(), r.key(), out));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                        ins.append(ins.length() > 1 ? "," : "").append(new J().n("p", r.partition()).n("o", r.offset()).s("v", v));
                    }
                    p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                    if (t == abortAt) {
                        // abortTransaction drops batches not yet sent: flush first, so that the
                        // aborted records are in the log for read_committed to skip.
                        p.flush();
                        p.abortTransaction();
                        emit(new J().s("ev", "aborted").n("t", t).raw("inputs", ins.append(']').toString()));
                        // As an application does: back to the first unprocessed record of every
                        // partition, dropping what was fetched past it, and process it again.
                        Map<TopicPartition, Long> rewind = new HashMap<>();
                        for (Iterator<ConsumerRecord<byte[], byte[]>> it = concat(chunk, buffered); it.hasNext(); ) {
                            ConsumerRecord<byte[], byte[]> r = it.next();
                            rewind.merge(new TopicPartition(r.topic(), r.partition()), r.offset(), Math::min);
                        }
                        buffered.clear();
                        rewind.forEach(c::seek);
                        break;
                    }
                    p.commitTransaction();
                    done += chunk.size();
                    emit(new J().s("ev", "committed").n("t", t).raw("inputs", ins.append(']').toString()));
                }
            }
            Map<TopicPartition, OffsetAndMetadata> committed = new TreeMap<>(Java3::compareTp);
            committed.putAll(c.committed(c.assignment(), STEP));
            emit(new J().s("ev", "group-offsets").raw("offsets", offsetList(committed)));
        }
        for (String isolation : List.of("read_committed", "read_uncommitted")) {
            int atLeast = isolation.equals("read_committed") ? total : total + (abortAt >= 0 ? perTxn : 0);
            try (KafkaConsumer<byte[], byte[]> c = consumer(o, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
                for (ConsumerRecord<byte[], byte[]> r : readAll(c, output, atLeast)) {
                    emit(rec(r).s("ev", "out").s("isolation", isolation));
                }
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    interface Attempt<T> {
        T get() throws Exception;
    }

    /** Calls `f` until it returns non-null without throwing; the last failure if it never does. */
    private static <T> T until(String what, Attempt<T> f) throws Exception {
        long deadline = System.nanoTime() + STEP.toNanos();
        long backoff = 20;
        while (true) {
            Exception last = null;
            try {
                T v = f.get();
                if (v != null) {
                    return v;
                }
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) {
                    throw e;
                }
                last = e;
            }
            if (System.nanoTime() > deadline) {
                throw last != null ? last : new IllegalStateException("timed out waiting for " + what);
            }
            Thread.sleep(backoff);
            backoff = Math.min(backoff * 2, 500);
        }
    }

    private static <T> Iterator<T> concat(Collection<T> a, Collection<T> b) {
        List<T> all = new ArrayList<>(a);
        all.addAll(b);
        return all.iterator();
    }

    private static int compareTp(TopicPartition a, TopicPartition b) {
        int c = a.topic().compareTo(b.topic());
        return c != 0 ? c : Integer.compare(a.partition(), b.partition());
    }

    private static List<TopicPartition> sorted(Collection<TopicPartition> tps) {
        List<TopicPartition> out = new ArrayList<>(tps);
        out.sort(Java3::compareTp);
        return out;
    }

    private static String partitionList(Collection<TopicPartition> tps) {
        StringBuilder sb = new StringBuilder("[");
        for (TopicPartition tp : sorted(tps)) {
            sb.append(sb.length() > 1 ? "," : "").append(tp.partition());
        }
        return sb.append(']').toString();
    }

    private static String offsetList(Map<TopicPartition, OffsetAndMetadata> offsets) {
        StringBuilder sb = new StringBuilder("[");
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
            OffsetAndMetadata om = e.getValue();
            J j = new J().s("topic", e.getKey().topic()).n("p", e.getKey().partition());
            if (om == null) {
                j.raw("o", "null");
            } else {
                j.n("o", om.offset()).s("metadata", om.metadata());
            }
            sb.append(sb.length() > 1 ? "," : "").append(j);
        }
        return sb.append(']').toString();
    }

    private static J groupJson(ConsumerGroupDescription d) {
        StringBuilder ms = new StringBuilder("[");
        for (MemberDescription m : d.members()) {
            ms.append(ms.length() > 1 ? "," : "").append(new J().s("client_id", m.clientId())
                    .b("has_member_id", !m.consumerId().isEmpty())
                    .raw("assignment", partitionList(m.assignment().topicPartitions())));
        }
        Optional<String> type = Optional.ofNullable(d.type()).map(Enum::name);
        return new J().s("group", d.groupId()).s("state", d.state().name()).s("type", type.orElse(null))
                .b("simple", d.isSimpleConsumerGroup()).s("assignor", d.partitionAssignor())
                .n("coordinator", d.coordinator() == null ? -1 : d.coordinator().id()).raw("members", ms.append(']').toString());
    }

    private static J rec(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder hs = new StringBuilder("[");
        for (Header h : r.headers()) {
            hs.append(hs.length() > 1 ? "," : "").append('[').append(J.quote(h.key())).append(',').append(hex(h.value())).append(']');
        }
        return new J().n("p", r.partition()).n("o", r.offset()).raw("k", hex(r.key())).raw("v", hex(r.value()))
                .raw("h", hs.append(']').toString()).n("ts", r.timestamp());
    }

    private static String hex(byte[] b) {
        return b == null ? "null" : '"' + HEX.formatHex(b) + '"';
    }

    private static synchronized void emit(J j) {
        OUT.println(j);
    }

    /** One JSON object, built field by field (no JSON library on this class path). */
    static final class J {
        private final StringBuilder sb = new StringBuilder();

        J raw(String k, String json) {
            sb.append(sb.length() == 0 ? "" : ",").append(quote(k)).append(':').append(json);
            return this;
        }

        J s(String k, String v) {
            return raw(k, v == null ? "null" : quote(v));
        }

        J n(String k, long v) {
            return raw(k, Long.toString(v));
        }

        J b(String k, boolean v) {
            return raw(k, Boolean.toString(v));
        }

        static String quote(String s) {
            StringBuilder q = new StringBuilder("\"");
            for (char ch : s.toCharArray()) {
                switch (ch) {
                    case '"' -> q.append("\\\"");
                    case '\\' -> q.append("\\\\");
                    case '\n' -> q.append("\\n");
                    case '\r' -> q.append("\\r");
                    case '\t' -> q.append("\\t");
                    default -> {
                        if (ch < 0x20) {
                            q.append(String.format("\\u%04x", (int) ch));
                        } else {
                            q.append(ch);
                        }
                    }
                }
            }
            return q.append('"').toString();
        }

        @Override
        public String toString() {
            return "{" + sb + "}";
        }
    }

    /** {@code --name value} pairs after the subcommand; a flag followed by another flag is {@code true}. */
    static final class Opts {
        private final Map<String, String> values = new LinkedHashMap<>();

        Opts(String[] argv) {
            for (int i = 1; i < argv.length; i++) {
                if (!argv[i].startsWith("--")) {
                    throw new IllegalArgumentException("unexpected argument " + argv[i]);
                }
                String name = argv[i].substring(2);
                if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
                    values.put(name, argv[++i]);
                } else {
                    values.put(name, "true");
                }
            }
        }

        String required(String name) {
            String v = values.get(name);
            if (v == null) {
                throw new IllegalArgumentException("missing --" + name);
            }
            return v;
        }

        String get(String name, String dflt) {
            return values.getOrDefault(name, dflt);
        }

        boolean has(String name) {
            return values.containsKey(name);
        }
    }
}
