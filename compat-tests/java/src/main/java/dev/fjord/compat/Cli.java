package dev.fjord.compat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicReferenceArray;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterPartitionReassignmentsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DeleteConsumerGroupOffsetsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListConsumerGroupsOptions;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A command-line face of the official Kafka Java client for Fjord's compatibility tests.
 *
 * <p>The Python tests run {@code java -cp ... dev.fjord.compat.Cli SUBCOMMAND --flag value ...}.
 * Every result is one JSON object per line on stdout, so a test can parse the output line by line
 * (and, for {@code consume}, see each record the moment it arrives). Byte strings (keys, values,
 * header values) are lowercase hex, {@code null} stays {@code null}: no test has to guess an
 * encoding. A failed Kafka call prints {@code {"error": "<ExceptionSimpleName>", "message": ...}}
 * and exits 2; a usage error exits 64. Nothing else is printed on stdout.
 *
 * <p>Every client is configured the way Fjord's current feature set needs: no auto commit, and
 * {@code enable.idempotence=false} (no InitProducerId yet). One request in flight per connection
 * keeps the order of a non-idempotent producer when it retries. Only the group subcommands
 * ({@code group-consume}, {@code commit}, {@code committed}, {@code admin-*group*}) use a group id;
 * the others never join or commit.
 */
public final class Cli {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    /** Exit code when a Kafka call failed; the error is on stdout as JSON. */
    private static final int EXIT_KAFKA_ERROR = 2;
    /** Exit code for bad command-line usage (sysexits EX_USAGE). */
    private static final int EXIT_USAGE = 64;

    private Cli() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            usage("missing subcommand");
        }
        Opts o = new Opts(argv);
        int rc;
        try {
            rc = switch (argv[0]) {
                case "produce" -> produce(o);
                case "stream-produce" -> streamProduce(o);
                case "consume" -> consume(o);
                case "offsets-for-times" -> offsetsForTimes(o);
                case "watermarks" -> watermarks(o);
                case "list-offsets" -> listOffsets(o);
                case "admin-create-topic" -> adminCreateTopic(o);
                case "admin-delete-topic" -> adminDeleteTopic(o);
                case "admin-list-topics" -> adminListTopics(o);
                case "admin-describe-topic" -> adminDescribeTopic(o);
                case "admin-create-partitions" -> adminCreatePartitions(o);
                case "admin-describe-configs" -> adminDescribeConfigs(o);
                case "admin-alter-configs" -> adminAlterConfigs(o);
                case "admin-delete-records" -> adminDeleteRecords(o);
                case "admin-describe-cluster" -> adminDescribeCluster(o);
                case "admin-describe-quorum" -> adminDescribeQuorum(o);
                case "admin-add-voter" -> adminAddVoter(o);
                case "admin-upgrade-feature" -> adminUpgradeFeature(o);
                case "admin-remove-voter" -> adminRemoveVoter(o);
                case "admin-describe-log-dirs" -> adminDescribeLogDirs(o);
                case "admin-reassign" -> adminReassign(o);
                case "admin-list-reassignments" -> adminListReassignments(o);
                case "group-consume" -> groupConsume(o);
                case "commit" -> commit(o);
                case "committed" -> committed(o);
                case "admin-list-groups" -> adminListGroups(o);
                case "admin-describe-groups" -> adminDescribeGroups(o);
                case "admin-group-offsets" -> adminGroupOffsets(o);
                case "admin-group-lag" -> adminGroupLag(o);
                case "admin-delete-group-offsets" -> adminDeleteGroupOffsets(o);
                case "admin-delete-groups" -> adminDeleteGroups(o);
                default -> {
                    usage("unknown subcommand " + argv[0]);
                    yield EXIT_USAGE;
                }
            };
        } catch (ExecutionException e) {
            printError(e.getCause());
            rc = EXIT_KAFKA_ERROR;
        } catch (org.apache.kafka.common.KafkaException e) {
            printError(e);
            rc = EXIT_KAFKA_ERROR;
        }
        OUT.flush();
        System.exit(rc);
    }

    // ---------------------------------------------------------------- produce

    /**
     * Produces records and prints one line per record, in input order, after all are settled:
     * {@code {"i": n, "partition": p, "offset": o, "timestamp": t}} or {@code {"i": n, "error": ...}}.
     *
     * <p>Records come from stdin as JSON lines ({@code --input -}):
     * {@code {"key": hex|null, "value": hex|null, "headers": [[name, hex|null], ...],
     * "partition": int|null, "timestamp": ms|null}}; absent fields are null. Without
     * {@code --input}, {@code --count N} generates records ({@code [--keyed] [--headers]
     * [--null-values] [--size BYTES]}), for use by hand.
     */
    private static int produce(Opts o) throws Exception {
        Properties p = common(o);
        p.put(ProducerConfig.ACKS_CONFIG, o.get("acks", "all"));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, o.get("codec", "none"));
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        p.put(ProducerConfig.LINGER_MS_CONFIG, o.get("linger-ms", "5"));
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, o.get("max-request-size", "1048576"));
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, o.get("buffer-memory", "67108864"));
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, o.get("request-timeout-ms", "15000"));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, o.get("delivery-timeout-ms", "30000"));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, o.get("max-block-ms", "20000"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        String topic = o.required("topic");

        List<ProducerRecord<byte[], byte[]>> records = o.has("input") ? readRecords(topic) : generate(o, topic);
        AtomicReferenceArray<String> results = new AtomicReferenceArray<>(records.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < records.size(); i++) {
                final int idx = i;
                try {
                    producer.send(records.get(i), (RecordMetadata md, Exception e) ->
                            results.set(idx, e != null ? errorJson(e, "\"i\":" + idx + ",")
                                    : "{\"i\":" + idx + ",\"partition\":" + md.partition() + ",\"offset\":" + md.offset()
                                    + ",\"timestamp\":" + md.timestamp() + "}"));
                } catch (org.apache.kafka.common.KafkaException e) {
                    results.set(idx, errorJson(e, "\"i\":" + idx + ","));
                }
            }
            producer.flush();
        }
        for (int i = 0; i < records.size(); i++) {
            String r = results.get(i);
            OUT.println(r != null ? r : "{\"i\":" + i + ",\"error\":\"NoCallback\",\"message\":\"send never completed\"}");
        }
        return 0;
    }

    /**
     * A long-running idempotent acks=all producer (the fault schedule's Java client): each stdin
     * line {@code {"partition": p, "value": "text"}} is sent at once, and each acknowledgement is
     * printed as it comes, {@code {"partition", "offset", "value"}} or {@code {"value", "error",
     * "message"}}. At the end of stdin it flushes and exits.
     */
    private static int streamProduce(Opts o) throws Exception {
        Properties p = common(o);
        p.remove(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, o.get("linger-ms", "5"));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, o.get("delivery-timeout-ms", "120000"));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, o.get("max-block-ms", "120000"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        String topic = o.required("topic");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (String line; (line = in.readLine()) != null; ) {
                if (line.isBlank()) {
                    continue;
                }
                Map<?, ?> m = (Map<?, ?>) new Json(line).parse();
                int partition = ((Number) m.get("partition")).intValue();
                String value = (String) m.get("value");
                String quoted = Json.quote(value);
                producer.send(new ProducerRecord<>(topic, partition, null, value.getBytes(StandardCharsets.UTF_8)),
                        (RecordMetadata md, Exception e) -> OUT.println(e != null
                                ? errorJson(e, "\"value\":" + quoted + ",")
                                : "{\"partition\":" + md.partition() + ",\"offset\":" + md.offset()
                                        + ",\"value\":" + quoted + "}"));
            }
            producer.flush();
        }
        return 0;
    }

    private static List<ProducerRecord<byte[], byte[]>> readRecords(String topic) throws Exception {
        List<ProducerRecord<byte[], byte[]>> out = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank()) {
                continue;
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) new Json(line).parse();
            RecordHeaders headers = new RecordHeaders();
            Object hs = m.get("headers");
            if (hs != null) {
                for (Object h : (List<?>) hs) {
                    List<?> pair = (List<?>) h;
                    headers.add((String) pair.get(0), unhex((String) pair.get(1)));
                }
            }
            Integer partition = m.get("partition") == null ? null : ((Number) m.get("partition")).intValue();
            Long ts = m.get("timestamp") == null ? null : ((Number) m.get("timestamp")).longValue();
            out.add(new ProducerRecord<>(topic, partition, ts, unhex((String) m.get("key")),
                    unhex((String) m.get("value")), headers));
        }
        return out;
    }

    private static List<ProducerRecord<byte[], byte[]>> generate(Opts o, String topic) {
        int count = Integer.parseInt(o.get("count", "1"));
        int size = Integer.parseInt(o.get("size", "0"));
        Integer partition = o.has("partition") ? Integer.valueOf(o.get("partition", "0")) : null;
        List<ProducerRecord<byte[], byte[]>> out = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            byte[] key = o.flag("keyed") ? ("key-" + i).getBytes(StandardCharsets.UTF_8) : null;
            byte[] value;
            if (o.flag("null-values") && i % 2 == 1) {
                value = null;
            } else if (size > 0) {
                value = new byte[size];
                for (int j = 0; j < size; j++) {
                    value[j] = (byte) ((i * 31 + j) % 251);
                }
            } else {
                value = ("value-" + i).getBytes(StandardCharsets.UTF_8);
            }
            RecordHeaders headers = new RecordHeaders();
            if (o.flag("headers")) {
                headers.add("h-index", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                headers.add("h-client", "java".getBytes(StandardCharsets.UTF_8));
            }
            out.add(new ProducerRecord<>(topic, partition, null, key, value, headers));
        }
        return out;
    }

    // ---------------------------------------------------------------- consume

    /**
     * Reads {@code --count} records from {@code --partition P} (or {@code all}) starting at
     * {@code --from-offset O} (or {@code earliest}/{@code latest}), printing each as it arrives,
     * and stops at the count or after {@code --timeout-ms}. Prints fewer lines on timeout: the test
     * decides whether that is a failure. {@code --announce} prints {@code {"polling": true}} once the first
     * fetch response came back, for tests that produce while the consumer waits.
     */
    private static int consume(Opts o) throws Exception {
        Properties p = consumerProps(o);
        String topic = o.required("topic");
        int count = Integer.parseInt(o.get("count", "1"));
        long deadline = System.nanoTime() + Duration.ofMillis(Long.parseLong(o.get("timeout-ms", "20000"))).toNanos();
        String from = o.get("from-offset", "earliest");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = partitions(c, topic, o.get("partition", "all"));
            c.assign(tps);
            switch (from) {
                case "earliest" -> c.seekToBeginning(tps);
                case "latest" -> c.seekToEnd(tps);
                default -> tps.forEach(tp -> c.seek(tp, Long.parseLong(from)));
            }
            int seen = 0;
            boolean announce = o.flag("announce");
            while (seen < count && System.nanoTime() < deadline) {
                var batch = c.poll(Duration.ofMillis(100));
                if (announce && fetchResponses(c) > 0) {
                    // A fetch response has come back (with nothing in it, on an empty partition):
                    // the consumer now waits in its next fetch.
                    OUT.println("{\"polling\":true}");
                    announce = false;
                }
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    if (seen >= count) {
                        break;
                    }
                    OUT.println(recordJson(r));
                    seen++;
                }
            }
            // Closing sends a last fetch that ends the fetch session, and a broker may hold that
            // fetch for fetch.max.wait.ms; nothing is committed, so do not wait for it.
            c.close(Duration.ofSeconds(1));
        }
        return 0;
    }

    /** Completed fetch requests so far (the fetch-total meter counts responses, not sends). */
    private static double fetchResponses(KafkaConsumer<?, ?> c) {
        for (var e : c.metrics().entrySet()) {
            if (e.getKey().name().equals("fetch-total") && e.getKey().group().equals("consumer-fetch-manager-metrics")) {
                return ((Number) e.getValue().metricValue()).doubleValue();
            }
        }
        return 0;
    }

    private static String recordJson(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder sb = new StringBuilder("{\"partition\":").append(r.partition())
                .append(",\"offset\":").append(r.offset())
                .append(",\"timestamp\":").append(r.timestamp())
                .append(",\"timestamp_type\":").append(Json.quote(r.timestampType().name))
                .append(",\"key\":").append(hexJson(r.key()))
                .append(",\"value\":").append(hexJson(r.value()))
                .append(",\"headers\":[");
        boolean first = true;
        for (Header h : r.headers()) {
            sb.append(first ? "" : ",").append('[').append(Json.quote(h.key())).append(',').append(hexJson(h.value())).append(']');
            first = false;
        }
        return sb.append("]}").toString();
    }

    // ---------------------------------------------------------------- offsets

    /** Consumer.offsetsForTimes: one line per partition, offset null when no record is that new. */
    private static int offsetsForTimes(Opts o) throws Exception {
        String topic = o.required("topic");
        long ts = Long.parseLong(o.required("timestamp"));
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerProps(o))) {
            Map<TopicPartition, Long> query = new LinkedHashMap<>();
            for (TopicPartition tp : partitions(c, topic, o.get("partition", "all"))) {
                query.put(tp, ts);
            }
            for (Map.Entry<TopicPartition, OffsetAndTimestamp> e : c.offsetsForTimes(query, Duration.ofSeconds(20)).entrySet()) {
                OffsetAndTimestamp ot = e.getValue();
                OUT.println("{\"partition\":" + e.getKey().partition() + ",\"offset\":" + (ot == null ? "null" : ot.offset())
                        + ",\"timestamp\":" + (ot == null ? "null" : ot.timestamp()) + "}");
            }
        }
        return 0;
    }

    /** Consumer.beginningOffsets / endOffsets: the low and high watermark of each partition. */
    private static int watermarks(Opts o) throws Exception {
        String topic = o.required("topic");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerProps(o))) {
            List<TopicPartition> tps = partitions(c, topic, o.get("partition", "all"));
            Map<TopicPartition, Long> lo = c.beginningOffsets(tps, Duration.ofSeconds(20));
            Map<TopicPartition, Long> hi = c.endOffsets(tps, Duration.ofSeconds(20));
            for (TopicPartition tp : tps) {
                OUT.println("{\"partition\":" + tp.partition() + ",\"low\":" + lo.get(tp) + ",\"high\":" + hi.get(tp) + "}");
            }
        }
        return 0;
    }

    /** Admin.listOffsets with {@code --spec earliest|latest|max-timestamp|<timestamp ms>}. */
    private static int listOffsets(Opts o) throws Exception {
        String topic = o.required("topic");
        String specName = o.required("spec");
        OffsetSpec spec = switch (specName) {
            case "earliest" -> OffsetSpec.earliest();
            case "latest" -> OffsetSpec.latest();
            case "max-timestamp" -> OffsetSpec.maxTimestamp();
            default -> OffsetSpec.forTimestamp(Long.parseLong(specName));
        };
        try (Admin a = Admin.create(common(o))) {
            Map<TopicPartition, OffsetSpec> q = new LinkedHashMap<>();
            for (TopicPartition tp : adminPartitions(a, topic, o.get("partition", "all"))) {
                q.put(tp, spec);
            }
            for (Map.Entry<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> e : a.listOffsets(q).all().get().entrySet()) {
                ListOffsetsResult.ListOffsetsResultInfo info = e.getValue();
                OUT.println("{\"partition\":" + e.getKey().partition() + ",\"offset\":" + info.offset()
                        + ",\"timestamp\":" + info.timestamp() + ",\"leader_epoch\":"
                        + info.leaderEpoch().map(String::valueOf).orElse("null") + "}");
            }
        }
        return 0;
    }

    // ---------------------------------------------------------------- admin

    /** {@code --topic T --partitions N [--replication-factor R] [--config k=v]... [--validate-only]}. */
    private static int adminCreateTopic(Opts o) throws Exception {
        String topic = o.required("topic");
        NewTopic nt = new NewTopic(topic, Integer.parseInt(o.get("partitions", "1")),
                Short.parseShort(o.get("replication-factor", "1")));
        nt.configs(keyValues(o.all("config")));
        try (Admin a = Admin.create(common(o))) {
            CreateTopicsResult r = a.createTopics(List.of(nt), new CreateTopicsOptions().validateOnly(o.flag("validate-only")));
            r.all().get();
            StringBuilder sb = new StringBuilder("{\"ok\":true,\"topic_id\":")
                    .append(Json.quote(r.topicId(topic).get().toString()))
                    .append(",\"num_partitions\":").append(r.numPartitions(topic).get())
                    .append(",\"replication_factor\":").append(r.replicationFactor(topic).get())
                    .append(",\"configs\":{");
            boolean first = true;
            for (ConfigEntry ce : r.config(topic).get().entries()) {
                sb.append(first ? "" : ",").append(Json.quote(ce.name())).append(':').append(Json.quote(ce.value()));
                first = false;
            }
            OUT.println(sb.append("}}"));
        }
        return 0;
    }

    private static int adminDeleteTopic(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            a.deleteTopics(List.of(o.required("topic"))).all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    private static int adminListTopics(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            StringBuilder sb = new StringBuilder("{\"topics\":[");
            boolean first = true;
            for (String t : a.listTopics().names().get()) {
                sb.append(first ? "" : ",").append(Json.quote(t));
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /** Admin.describeTopics: uses DescribeTopicPartitions (KIP-966) when the broker offers it. */
    private static int adminDescribeTopic(Opts o) throws Exception {
        String topic = o.required("topic");
        try (Admin a = Admin.create(common(o))) {
            TopicDescription d = a.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            StringBuilder sb = new StringBuilder("{\"name\":").append(Json.quote(d.name()))
                    .append(",\"topic_id\":").append(Json.quote(d.topicId().toString()))
                    .append(",\"internal\":").append(d.isInternal())
                    .append(",\"partitions\":[");
            boolean first = true;
            for (TopicPartitionInfo pi : d.partitions()) {
                sb.append(first ? "" : ",").append("{\"partition\":").append(pi.partition())
                        .append(",\"leader\":").append(pi.leader() == null ? "null" : pi.leader().id())
                        .append(",\"replicas\":").append(nodeIds(pi.replicas()))
                        .append(",\"isr\":").append(nodeIds(pi.isr())).append('}');
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /** {@code --topic T --total N}: grows the topic to N partitions. */
    private static int adminCreatePartitions(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            a.createPartitions(Map.of(o.required("topic"), NewPartitions.increaseTo(Integer.parseInt(o.required("total")))))
                    .all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    /**
     * {@code --topic T --move P=B1,B2,... [--move P=cancel]... [--keep-replication-factor]}:
     * Admin.alterPartitionReassignments (what kafka-reassign-partitions.sh --execute and --cancel
     * send). One line per partition: {@code {"partition": P, "ok": true}} or its error.
     */
    private static int adminReassign(Opts o) throws Exception {
        String topic = o.required("topic");
        Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new LinkedHashMap<>();
        for (String m : o.all("move")) {
            String[] pr = m.split("=", 2);
            TopicPartition tp = new TopicPartition(topic, Integer.parseInt(pr[0]));
            if (pr[1].equals("cancel")) {
                moves.put(tp, Optional.empty());
            } else {
                List<Integer> replicas = new ArrayList<>();
                for (String b : pr[1].split(",")) {
                    replicas.add(Integer.parseInt(b));
                }
                moves.put(tp, Optional.of(new NewPartitionReassignment(replicas)));
            }
        }
        AlterPartitionReassignmentsOptions opts = new AlterPartitionReassignmentsOptions()
                .allowReplicationFactorChange(!o.flag("keep-replication-factor"));
        try (Admin a = Admin.create(common(o))) {
            Map<TopicPartition, org.apache.kafka.common.KafkaFuture<Void>> results = a.alterPartitionReassignments(moves, opts).values();
            for (TopicPartition tp : moves.keySet()) {
                String prefix = "\"partition\":" + tp.partition() + ",";
                try {
                    results.get(tp).get();
                    OUT.println("{" + prefix + "\"ok\":true}");
                } catch (ExecutionException e) {
                    OUT.println(errorJson(e, prefix));
                }
            }
        }
        return 0;
    }

    /**
     * {@code [--topic T]}: Admin.listPartitionReassignments (kafka-reassign-partitions.sh
     * --verify), every partition that is moving, or those of T:
     * {@code {"reassignments": [{"topic", "partition", "replicas", "adding", "removing"}]}}.
     */
    private static int adminListReassignments(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            Map<TopicPartition, PartitionReassignment> found;
            String topic = o.get("topic", null);
            if (topic == null) {
                found = a.listPartitionReassignments().reassignments().get();
            } else {
                Set<TopicPartition> tps = new java.util.HashSet<>();
                for (TopicPartitionInfo pi : a.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions()) {
                    tps.add(new TopicPartition(topic, pi.partition()));
                }
                found = a.listPartitionReassignments(tps).reassignments().get();
            }
            StringBuilder sb = new StringBuilder("{\"reassignments\":[");
            boolean first = true;
            List<TopicPartition> moving = new ArrayList<>(found.keySet());
            moving.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
            for (TopicPartition tp : moving) {
                PartitionReassignment r = found.get(tp);
                sb.append(first ? "" : ",").append("{\"topic\":").append(Json.quote(tp.topic()))
                        .append(",\"partition\":").append(tp.partition())
                        .append(",\"replicas\":").append(r.replicas())
                        .append(",\"adding\":").append(r.addingReplicas())
                        .append(",\"removing\":").append(r.removingReplicas()).append('}');
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /** {@code --topic T} or {@code --broker ID}: every config entry with its value and source. */
    private static int adminDescribeConfigs(Opts o) throws Exception {
        ConfigResource res = resource(o);
        try (Admin a = Admin.create(common(o))) {
            Config cfg = a.describeConfigs(List.of(res), new org.apache.kafka.clients.admin.DescribeConfigsOptions()
                    .includeSynonyms(true)).all().get().get(res);
            StringBuilder sb = new StringBuilder("{\"configs\":{");
            boolean first = true;
            for (ConfigEntry ce : cfg.entries()) {
                sb.append(first ? "" : ",").append(Json.quote(ce.name())).append(":{\"value\":").append(Json.quote(ce.value()))
                        .append(",\"source\":").append(Json.quote(ce.source().name()))
                        .append(",\"default\":").append(ce.isDefault())
                        .append(",\"read_only\":").append(ce.isReadOnly())
                        .append(",\"sensitive\":").append(ce.isSensitive())
                        .append(",\"synonyms\":[");
                boolean firstSynonym = true;
                for (ConfigEntry.ConfigSynonym s : ce.synonyms()) {
                    sb.append(firstSynonym ? "" : ",").append('[').append(Json.quote(s.name())).append(',')
                            .append(Json.quote(s.value())).append(',').append(Json.quote(s.source().name())).append(']');
                    firstSynonym = false;
                }
                sb.append("]}");
                first = false;
            }
            OUT.println(sb.append("}}"));
        }
        return 0;
    }

    /**
     * IncrementalAlterConfigs: {@code --topic T | --broker ID (empty: the cluster default)
     * [--set k=v]... [--append k=v]... [--subtract k=v]... [--delete k]... [--validate-only]}.
     */
    private static int adminAlterConfigs(Opts o) throws Exception {
        ConfigResource res = resource(o);
        List<AlterConfigOp> ops = new ArrayList<>();
        keyValues(o.all("set")).forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.SET)));
        keyValues(o.all("append")).forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.APPEND)));
        keyValues(o.all("subtract")).forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.SUBTRACT)));
        for (String k : o.all("delete")) {
            ops.add(new AlterConfigOp(new ConfigEntry(k, null), AlterConfigOp.OpType.DELETE));
        }
        try (Admin a = Admin.create(common(o))) {
            a.incrementalAlterConfigs(Map.of(res, ops),
                    new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(o.has("validate-only"))).all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    /** {@code --topic T --partition P --before-offset O}: prints the new low watermark. */
    private static int adminDeleteRecords(Opts o) throws Exception {
        TopicPartition tp = new TopicPartition(o.required("topic"), Integer.parseInt(o.required("partition")));
        try (Admin a = Admin.create(common(o))) {
            DeletedRecords d = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(Long.parseLong(o.required("before-offset")))))
                    .lowWatermarks().get(tp).get();
            OUT.println("{\"low_watermark\":" + d.lowWatermark() + "}");
        }
        return 0;
    }

    /** Admin.describeMetadataQuorum (DescribeQuorum), what kafka-metadata-quorum.sh --status shows. */
    private static int adminDescribeQuorum(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            org.apache.kafka.clients.admin.QuorumInfo q = a.describeMetadataQuorum().quorumInfo().get();
            StringBuilder sb = new StringBuilder("{\"leader_id\":").append(q.leaderId())
                    .append(",\"leader_epoch\":").append(q.leaderEpoch())
                    .append(",\"high_watermark\":").append(q.highWatermark())
                    .append(",\"voters\":[");
            boolean first = true;
            for (org.apache.kafka.clients.admin.QuorumInfo.ReplicaState r : q.voters()) {
                sb.append(first ? "" : ",").append("{\"id\":").append(r.replicaId())
                        .append(",\"log_end_offset\":").append(r.logEndOffset())
                        .append(",\"last_fetch_ms\":").append(r.lastFetchTimestamp().orElse(-1L))
                        .append(",\"last_caught_up_ms\":").append(r.lastCaughtUpTimestamp().orElse(-1L))
                        .append("}");
                first = false;
            }
            sb.append("],\"observers\":").append(q.observers().size()).append(",\"observer_ids\":[");
            first = true;
            for (org.apache.kafka.clients.admin.QuorumInfo.ReplicaState r : q.observers()) {
                sb.append(first ? "" : ",").append(r.replicaId());
                first = false;
            }
            sb.append("],\"nodes\":[");
            first = true;
            for (java.util.Map.Entry<Integer, org.apache.kafka.clients.admin.QuorumInfo.Node> e : q.nodes().entrySet()) {
                sb.append(first ? "" : ",").append("{\"id\":").append(e.getKey()).append(",\"endpoints\":[");
                boolean f2 = true;
                for (org.apache.kafka.clients.admin.RaftVoterEndpoint ep : e.getValue().endpoints()) {
                    sb.append(f2 ? "" : ",").append(Json.quote(ep.name() + "://" + ep.host() + ":" + ep.port()));
                    f2 = false;
                }
                sb.append("]}");
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /**
     * {@code --id N --directory-id D --host H --port P [--listener CONTROLLER]}: Admin.addRaftVoter (what
     * kafka-metadata-quorum.sh add-controller sends), for an observer of the quorum.
     */
    private static int adminAddVoter(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            a.addRaftVoter(Integer.parseInt(o.required("id")), org.apache.kafka.common.Uuid.fromString(o.required("directory-id")),
                    Set.of(new org.apache.kafka.clients.admin.RaftVoterEndpoint(o.get("listener", "CONTROLLER"),
                            o.required("host"), Integer.parseInt(o.required("port"))))).all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    /** {@code --feature F --level L}: Admin.updateFeatures, an upgrade (kafka-features.sh upgrade). */
    private static int adminUpgradeFeature(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            a.updateFeatures(Map.of(o.required("feature"), new org.apache.kafka.clients.admin.FeatureUpdate(
                    Short.parseShort(o.required("level")), org.apache.kafka.clients.admin.FeatureUpdate.UpgradeType.UPGRADE)),
                    new org.apache.kafka.clients.admin.UpdateFeaturesOptions()).all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    /** {@code --id N --directory-id D}: Admin.removeRaftVoter (kafka-metadata-quorum.sh remove-controller). */
    private static int adminRemoveVoter(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            a.removeRaftVoter(Integer.parseInt(o.required("id")),
                    org.apache.kafka.common.Uuid.fromString(o.required("directory-id"))).all().get();
            OUT.println("{\"ok\":true}");
        }
        return 0;
    }

    private static int adminDescribeCluster(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            DescribeClusterResult r = a.describeCluster();
            Node controller = r.controller().get();
            StringBuilder sb = new StringBuilder("{\"cluster_id\":").append(Json.quote(r.clusterId().get()))
                    .append(",\"controller\":").append(nodeJson(controller))
                    .append(",\"nodes\":[");
            boolean first = true;
            for (Node n : r.nodes().get()) {
                sb.append(first ? "" : ",").append(nodeJson(n));
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /** {@code --broker ID}: every log dir with its error and the partitions it holds. */
    private static int adminDescribeLogDirs(Opts o) throws Exception {
        int broker = Integer.parseInt(o.get("broker", "1"));
        try (Admin a = Admin.create(common(o))) {
            Map<String, LogDirDescription> dirs = a.describeLogDirs(List.of(broker)).allDescriptions().get().get(broker);
            StringBuilder sb = new StringBuilder("{\"dirs\":{");
            boolean first = true;
            for (Map.Entry<String, LogDirDescription> d : dirs.entrySet()) {
                LogDirDescription desc = d.getValue();
                sb.append(first ? "" : ",").append(Json.quote(d.getKey())).append(":{\"error\":")
                        .append(desc.error() == null ? "null" : Json.quote(desc.error().getClass().getSimpleName()))
                        .append(",\"partitions\":{");
                first = false;
                boolean firstP = true;
                for (Map.Entry<TopicPartition, ReplicaInfo> rp : desc.replicaInfos().entrySet()) {
                    sb.append(firstP ? "" : ",").append(Json.quote(rp.getKey().toString()))
                            .append(":{\"size\":").append(rp.getValue().size())
                            .append(",\"offset_lag\":").append(rp.getValue().offsetLag())
                            .append(",\"future\":").append(rp.getValue().isFuture()).append('}');
                    firstP = false;
                }
                sb.append("}}");
            }
            OUT.println(sb.append("}}"));
        }
        return 0;
    }

    // ---------------------------------------------------------------- consumer groups

    /**
     * One member of a consumer group, for as long as stdin stays open: the Java face of
     * {@code groupworker.py}, printing the same JSON lines ({@code subscribed}, {@code assigned},
     * {@code revoked}, {@code lost}, {@code rec}, {@code committed}, {@code commit_failed},
     * {@code paused}, {@code resumed}, {@code closed}).
     *
     * <p>{@code --topic T --group G [--protocol classic|consumer] [--assignor A] [--instance-id ID]
     * [--session-ms N] [--heartbeat-ms N] [--metadata TEXT] [-X k=v]...}. With {@code classic} the
     * assignor is a client-side one ({@code range}, {@code roundrobin}, {@code sticky},
     * {@code cooperative-sticky}; default range) and the session and heartbeat settings apply; with
     * {@code consumer} (KIP-848) the broker assigns ({@code --assignor uniform|range} becomes
     * {@code group.remote.assignor}) and sets the session timeout and heartbeat interval itself.
     * After every poll that returned records the member commits synchronously the offset after
     * each partition's last record, with {@code --metadata} as commit metadata. Commands on stdin,
     * one per line: {@code pause}, {@code resume}, {@code close}; end of input means close, which
     * leaves the group (a static member only says it will be back).
     */
    private static int groupConsume(Opts o) throws Exception {
        String topic = o.required("topic");
        String protocol = o.get("protocol", "classic");
        String metadata = o.get("metadata", "");
        Properties p = consumerProps(o);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, o.required("group"));
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if ("classic".equals(protocol)) {
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, o.get("session-ms", "6000"));
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, o.get("heartbeat-ms", "500"));
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, switch (o.get("assignor", "range")) {
                case "range" -> org.apache.kafka.clients.consumer.RangeAssignor.class.getName();
                case "roundrobin" -> org.apache.kafka.clients.consumer.RoundRobinAssignor.class.getName();
                case "sticky" -> org.apache.kafka.clients.consumer.StickyAssignor.class.getName();
                case "cooperative-sticky" -> org.apache.kafka.clients.consumer.CooperativeStickyAssignor.class.getName();
                default -> {
                    usage("unknown assignor " + o.get("assignor", ""));
                    yield "";
                }
            });
        } else if (o.has("assignor")) {
            p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, o.get("assignor", "uniform"));
        }
        if (o.has("instance-id")) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, o.get("instance-id", ""));
        }
        p.putAll(keyValues(o.all("X")));

        ConcurrentLinkedQueue<String> commands = new ConcurrentLinkedQueue<>();
        Thread stdin = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                    if ("close".equals(line.trim())) {
                        break;
                    }
                    commands.add(line.trim());
                }
            } catch (java.io.IOException e) {
                // treated as end of input
            }
            commands.add("close");
        });
        stdin.setDaemon(true);

        Set<Integer> now = new TreeSet<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    OUT.println(assignmentEvent("revoked", "removed", ps, now, false));
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    OUT.println(assignmentEvent("assigned", "added", ps, now, true));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    OUT.println(assignmentEvent("lost", "removed", ps, now, false));
                }
            });
            OUT.println("{\"ev\":\"subscribed\"}");
            stdin.start();
            boolean closing = false;
            while (!closing) {
                for (String cmd; (cmd = commands.poll()) != null; ) {
                    switch (cmd) {
                        case "close" -> closing = true;
                        case "pause" -> {
                            c.pause(c.assignment());
                            OUT.println("{\"ev\":\"paused\",\"partitions\":" + partitionList(c.assignment()) + "}");
                        }
                        case "resume" -> {
                            c.resume(c.assignment());
                            OUT.println("{\"ev\":\"resumed\",\"partitions\":" + partitionList(c.assignment()) + "}");
                        }
                        default -> { }
                    }
                }
                if (closing) {
                    break;
                }
                ConsumerRecords<byte[], byte[]> batch = c.poll(Duration.ofMillis(200));
                Map<TopicPartition, OffsetAndMetadata> offsets = new LinkedHashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    OUT.println("{\"ev\":\"rec\",\"p\":" + r.partition() + ",\"o\":" + r.offset() + ",\"v\":"
                            + Json.quote(r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8)) + "}");
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1, metadata));
                }
                if (!offsets.isEmpty()) {
                    try {
                        c.commitSync(offsets);
                        StringBuilder sb = new StringBuilder("{\"ev\":\"committed\",\"offsets\":{");
                        boolean first = true;
                        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
                            sb.append(first ? "" : ",").append('"').append(e.getKey().partition()).append("\":").append(e.getValue().offset());
                            first = false;
                        }
                        OUT.println(sb.append("}}"));
                    } catch (org.apache.kafka.common.KafkaException e) {
                        OUT.println("{\"ev\":\"commit_failed\",\"error\":" + Json.quote(e.getClass().getSimpleName()) + "}");
                    }
                }
            }
        }
        OUT.println("{\"ev\":\"closed\"}");
        return 0;
    }

    private static String assignmentEvent(String ev, String field, Collection<TopicPartition> ps, Set<Integer> now, boolean add) {
        Set<Integer> changed = new TreeSet<>();
        for (TopicPartition tp : ps) {
            changed.add(tp.partition());
        }
        if (add) {
            now.addAll(changed);
        } else {
            now.removeAll(changed);
        }
        return "{\"ev\":\"" + ev + "\",\"" + field + "\":" + changed + ",\"now\":" + now + "}";
    }

    private static String partitionList(Collection<TopicPartition> tps) {
        Set<Integer> ps = new TreeSet<>();
        for (TopicPartition tp : tps) {
            ps.add(tp.partition());
        }
        return ps.toString();
    }

    /** Consumer settings for a member of {@code --group} that only assign()s: no subscribe, no join. */
    private static Properties simpleGroupProps(Opts o) {
        Properties p = consumerProps(o);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, o.required("group"));
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, o.get("protocol", "classic"));
        p.putAll(keyValues(o.all("X")));
        return p;
    }

    /**
     * A simple (assign()-mode) commit: {@code --group G --topic T --offset P=O... [--metadata TEXT]
     * [--protocol classic|consumer]}. The consumer has the group id but never subscribes; it
     * assigns the partitions and calls commitSync. Prints {@code {"ok": true}}.
     */
    private static int commit(Opts o) throws Exception {
        String topic = o.required("topic");
        String metadata = o.get("metadata", "");
        Map<TopicPartition, OffsetAndMetadata> offsets = new LinkedHashMap<>();
        keyValues(o.all("offset")).forEach((part, off) ->
                offsets.put(new TopicPartition(topic, Integer.parseInt(part)), new OffsetAndMetadata(Long.parseLong(off), metadata)));
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(simpleGroupProps(o))) {
            c.assign(offsets.keySet());
            c.commitSync(offsets, Duration.ofSeconds(20));
        }
        OUT.println("{\"ok\":true}");
        return 0;
    }

    /**
     * {@code --group G --topic T [--partition P|all] [--protocol classic|consumer]}: the group's
     * committed offsets as a consumer sees them (KafkaConsumer.committed, an OffsetFetch), one line
     * per partition: {@code {"partition": p, "offset": o|null, "metadata": s|null, "leader_epoch": e|null}}.
     */
    private static int committed(Opts o) throws Exception {
        String topic = o.required("topic");
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(simpleGroupProps(o))) {
            List<TopicPartition> tps = partitions(c, topic, o.get("partition", "all"));
            Map<TopicPartition, OffsetAndMetadata> got = c.committed(new java.util.HashSet<>(tps), Duration.ofSeconds(20));
            for (TopicPartition tp : tps) {
                OffsetAndMetadata om = got.get(tp);
                OUT.println("{\"partition\":" + tp.partition() + "," + offsetFields(om) + "}");
            }
        }
        return 0;
    }

    private static String offsetFields(OffsetAndMetadata om) {
        return om == null ? "\"offset\":null,\"metadata\":null,\"leader_epoch\":null"
                : "\"offset\":" + om.offset() + ",\"metadata\":" + Json.quote(om.metadata())
                + ",\"leader_epoch\":" + om.leaderEpoch().map(String::valueOf).orElse("null");
    }

    /**
     * Lists groups: {@code [--api list-groups|list-consumer-groups] [--states Stable,Empty,...]
     * [--types classic,consumer]}. {@code list-groups} (default) is Admin.listGroups with
     * ListGroupsOptions.forConsumerGroups(); {@code list-consumer-groups} the older
     * Admin.listConsumerGroups. Prints {@code {"groups": [{"group_id", "type", "protocol", "state"}, ...]}}.
     */
    @SuppressWarnings("deprecation")
    private static int adminListGroups(Opts o) throws Exception {
        Set<GroupState> states = new java.util.HashSet<>();
        for (String s : o.get("states", "").split(",")) {
            if (!s.isBlank()) {
                states.add(GroupState.parse(s.trim()));
            }
        }
        Set<GroupType> types = new java.util.HashSet<>();
        for (String t : o.get("types", "").split(",")) {
            if (!t.isBlank()) {
                types.add(GroupType.parse(t.trim()));
            }
        }
        try (Admin a = Admin.create(common(o))) {
            Collection<GroupListing> listings;
            if ("list-consumer-groups".equals(o.get("api", "list-groups"))) {
                ListConsumerGroupsOptions opts = new ListConsumerGroupsOptions().inGroupStates(states);
                if (!types.isEmpty()) {
                    opts.withTypes(types);
                }
                listings = new ArrayList<>();
                for (var l : a.listConsumerGroups(opts).all().get()) {
                    listings.add(new GroupListing(l.groupId(), l.type(), "consumer", l.groupState()));
                }
            } else {
                ListGroupsOptions opts = ListGroupsOptions.forConsumerGroups().inGroupStates(states);
                if (!types.isEmpty()) {
                    opts.withTypes(types);
                }
                listings = a.listGroups(opts).all().get();
            }
            StringBuilder sb = new StringBuilder("{\"groups\":[");
            boolean first = true;
            for (GroupListing l : listings) {
                sb.append(first ? "" : ",").append("{\"group_id\":").append(Json.quote(l.groupId()))
                        .append(",\"type\":").append(Json.quote(l.type().map(GroupType::toString).orElse(null)))
                        .append(",\"protocol\":").append(Json.quote(l.protocol()))
                        .append(",\"state\":").append(Json.quote(l.groupState().map(GroupState::toString).orElse(null)))
                        .append('}');
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /**
     * Admin.describeConsumerGroups for each {@code --group G}: one line per group,
     * {@code {"group_id", "state", "type", "assignor", "simple", "coordinator", "group_epoch",
     * "members": [{"member_id", "instance_id", "client_id", "host", "assignment": [[topic, p], ...],
     * "member_epoch"}]}} or {@code {"group_id", "error", "message"}}.
     */
    private static int adminDescribeGroups(Opts o) throws Exception {
        List<String> groups = o.all("group");
        try (Admin a = Admin.create(common(o))) {
            Map<String, KafkaFuture<ConsumerGroupDescription>> futures = a.describeConsumerGroups(groups).describedGroups();
            for (String g : groups) {
                ConsumerGroupDescription d;
                try {
                    d = futures.get(g).get();
                } catch (ExecutionException e) {
                    OUT.println(errorJson(e, "\"group_id\":" + Json.quote(g) + ","));
                    continue;
                }
                StringBuilder sb = new StringBuilder("{\"group_id\":").append(Json.quote(d.groupId()))
                        .append(",\"state\":").append(Json.quote(d.groupState().toString()))
                        .append(",\"type\":").append(Json.quote(d.type().toString()))
                        .append(",\"assignor\":").append(Json.quote(d.partitionAssignor()))
                        .append(",\"simple\":").append(d.isSimpleConsumerGroup())
                        .append(",\"coordinator\":").append(nodeJson(d.coordinator()))
                        .append(",\"group_epoch\":").append(d.groupEpoch().map(String::valueOf).orElse("null"))
                        .append(",\"members\":[");
                boolean first = true;
                for (MemberDescription m : d.members()) {
                    sb.append(first ? "" : ",").append("{\"member_id\":").append(Json.quote(m.consumerId()))
                            .append(",\"instance_id\":").append(Json.quote(m.groupInstanceId().orElse(null)))
                            .append(",\"client_id\":").append(Json.quote(m.clientId()))
                            .append(",\"host\":").append(Json.quote(m.host()))
                            .append(",\"member_epoch\":").append(m.memberEpoch().map(String::valueOf).orElse("null"))
                            .append(",\"assignment\":[");
                    boolean firstTp = true;
                    for (TopicPartition tp : m.assignment().topicPartitions()) {
                        sb.append(firstTp ? "" : ",").append('[').append(Json.quote(tp.topic())).append(',').append(tp.partition()).append(']');
                        firstTp = false;
                    }
                    sb.append("]}");
                    first = false;
                }
                OUT.println(sb.append("]}"));
            }
        }
        return 0;
    }

    /** Admin.listConsumerGroupOffsets for {@code --group G}: {@code {"offsets": [{"topic", "partition", "offset", "metadata", "leader_epoch"}]}}. */
    private static int adminGroupOffsets(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            Map<TopicPartition, OffsetAndMetadata> got = a.listConsumerGroupOffsets(o.required("group")).partitionsToOffsetAndMetadata().get();
            StringBuilder sb = new StringBuilder("{\"offsets\":[");
            boolean first = true;
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : sorted(got).entrySet()) {
                sb.append(first ? "" : ",").append("{\"topic\":").append(Json.quote(e.getKey().topic()))
                        .append(",\"partition\":").append(e.getKey().partition()).append(',')
                        .append(offsetFields(e.getValue())).append('}');
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    /**
     * Consumer lag of {@code --group G}, the way kafka-consumer-groups.sh computes it: the group's
     * committed offsets (listConsumerGroupOffsets) against each partition's latest offset
     * (listOffsets). Prints {@code {"lag": [{"topic", "partition", "committed", "end", "lag"}]}}.
     */
    private static int adminGroupLag(Opts o) throws Exception {
        try (Admin a = Admin.create(common(o))) {
            Map<TopicPartition, OffsetAndMetadata> committed = sorted(
                    a.listConsumerGroupOffsets(o.required("group")).partitionsToOffsetAndMetadata().get());
            Map<TopicPartition, OffsetSpec> q = new LinkedHashMap<>();
            committed.keySet().forEach(tp -> q.put(tp, OffsetSpec.latest()));
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = a.listOffsets(q).all().get();
            StringBuilder sb = new StringBuilder("{\"lag\":[");
            boolean first = true;
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
                long end = ends.get(e.getKey()).offset();
                long off = e.getValue().offset();
                sb.append(first ? "" : ",").append("{\"topic\":").append(Json.quote(e.getKey().topic()))
                        .append(",\"partition\":").append(e.getKey().partition())
                        .append(",\"committed\":").append(off).append(",\"end\":").append(end)
                        .append(",\"lag\":").append(end - off).append('}');
                first = false;
            }
            OUT.println(sb.append("]}"));
        }
        return 0;
    }

    private static <V> Map<TopicPartition, V> sorted(Map<TopicPartition, V> m) {
        Map<TopicPartition, V> out = new TreeMap<>((x, y) -> x.topic().equals(y.topic())
                ? Integer.compare(x.partition(), y.partition()) : x.topic().compareTo(y.topic()));
        out.putAll(m);
        return out;
    }

    /**
     * Admin.deleteConsumerGroupOffsets (OffsetDelete): {@code --group G --topic T --partition P...}.
     * Prints {@code {"partitions": {"P": null|"ErrorClass", ...}}}; a group-level error (the whole
     * request refused) is the usual error line and exit 2.
     */
    private static int adminDeleteGroupOffsets(Opts o) throws Exception {
        String topic = o.required("topic");
        Set<TopicPartition> tps = new java.util.LinkedHashSet<>();
        for (String part : o.all("partition")) {
            tps.add(new TopicPartition(topic, Integer.parseInt(part)));
        }
        try (Admin a = Admin.create(common(o))) {
            DeleteConsumerGroupOffsetsResult r = a.deleteConsumerGroupOffsets(o.required("group"), tps);
            StringBuilder sb = new StringBuilder("{\"partitions\":{");
            boolean first = true;
            for (TopicPartition tp : tps) {
                String err = null;
                try {
                    r.partitionResult(tp).get();
                } catch (ExecutionException e) {
                    err = e.getCause().getClass().getSimpleName();
                    if (!(e.getCause() instanceof org.apache.kafka.common.errors.ApiException)
                            || isGroupLevel(e.getCause())) {
                        throw e;
                    }
                }
                sb.append(first ? "" : ",").append('"').append(tp.partition()).append("\":").append(Json.quote(err));
                first = false;
            }
            OUT.println(sb.append("}}"));
        }
        return 0;
    }

    /** Errors that refuse a whole OffsetDelete rather than one partition of it. */
    private static boolean isGroupLevel(Throwable t) {
        return t instanceof org.apache.kafka.common.errors.GroupIdNotFoundException
                || t instanceof org.apache.kafka.common.errors.GroupNotEmptyException
                || t instanceof org.apache.kafka.common.errors.CoordinatorNotAvailableException
                || t instanceof org.apache.kafka.common.errors.NotCoordinatorException
                || t instanceof org.apache.kafka.common.errors.GroupAuthorizationException;
    }

    /** Admin.deleteConsumerGroups for each {@code --group G}: {@code {"groups": {"G": null|"ErrorClass"}}}. */
    private static int adminDeleteGroups(Opts o) throws Exception {
        List<String> groups = o.all("group");
        try (Admin a = Admin.create(common(o))) {
            Map<String, KafkaFuture<Void>> r = a.deleteConsumerGroups(groups).deletedGroups();
            StringBuilder sb = new StringBuilder("{\"groups\":{");
            boolean first = true;
            for (String g : groups) {
                String err = null;
                try {
                    r.get(g).get();
                } catch (ExecutionException e) {
                    err = e.getCause().getClass().getSimpleName();
                }
                sb.append(first ? "" : ",").append(Json.quote(g)).append(':').append(Json.quote(err));
                first = false;
            }
            OUT.println(sb.append("}}"));
        }
        return 0;
    }

    // ---------------------------------------------------------------- helpers

    /** Settings every client gets: the bootstrap, a client id, short timeouts, and {@code -X k=v} extras. */
    private static Properties common(Opts o) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, o.get("client-id", "fjord-compat-java"));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, o.get("request-timeout-ms", "15000"));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, o.get("api-timeout-ms", "30000"));
        // A broker that is down must fail the test quickly instead of retrying for minutes.
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "1000");
        p.putAll(keyValues(o.all("X")));
        return p;
    }

    private static Properties consumerProps(Opts o) {
        Properties p = common(o);
        p.remove(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, o.get("auto-offset-reset", "earliest"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        if (o.has("max-fetch-bytes")) {
            p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, o.get("max-fetch-bytes", ""));
            p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, o.get("max-fetch-bytes", ""));
        }
        p.putAll(keyValues(o.all("X")));
        return p;
    }

    private static List<TopicPartition> partitions(KafkaConsumer<?, ?> c, String topic, String which) {
        List<TopicPartition> tps = new ArrayList<>();
        if (!"all".equals(which)) {
            tps.add(new TopicPartition(topic, Integer.parseInt(which)));
            return tps;
        }
        List<PartitionInfo> infos = c.partitionsFor(topic, Duration.ofSeconds(20));
        for (PartitionInfo pi : infos) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        tps.sort((x, y) -> Integer.compare(x.partition(), y.partition()));
        return tps;
    }

    private static List<TopicPartition> adminPartitions(Admin a, String topic, String which) throws Exception {
        List<TopicPartition> tps = new ArrayList<>();
        if (!"all".equals(which)) {
            tps.add(new TopicPartition(topic, Integer.parseInt(which)));
            return tps;
        }
        for (TopicPartitionInfo pi : a.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions()) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        return tps;
    }

    private static ConfigResource resource(Opts o) {
        return o.has("broker") ? new ConfigResource(ConfigResource.Type.BROKER, o.get("broker", "1"))
                : new ConfigResource(ConfigResource.Type.TOPIC, o.required("topic"));
    }

    private static Map<String, String> keyValues(Collection<String> kvs) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String kv : kvs) {
            int eq = kv.indexOf('=');
            if (eq < 0) {
                usage("expected key=value, got " + kv);
            }
            m.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return m;
    }

    private static String nodeIds(List<Node> nodes) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < nodes.size(); i++) {
            sb.append(i == 0 ? "" : ",").append(nodes.get(i).id());
        }
        return sb.append(']').toString();
    }

    private static String nodeJson(Node n) {
        return n == null ? "null"
                : "{\"id\":" + n.id() + ",\"host\":" + Json.quote(n.host()) + ",\"port\":" + n.port() + ",\"rack\":" + Json.quote(n.rack()) + "}";
    }

    private static void printError(Throwable t) {
        OUT.println(errorJson(t, ""));
    }

    private static String errorJson(Throwable t, String prefix) {
        Throwable e = t;
        // Unwrap the futures' ExecutionException/KafkaException wrappers down to the Kafka error class.
        while ((e instanceof ExecutionException || e.getClass() == org.apache.kafka.common.KafkaException.class) && e.getCause() != null) {
            e = e.getCause();
        }
        return "{" + prefix + "\"error\":" + Json.quote(e.getClass().getSimpleName()) + ",\"message\":" + Json.quote(String.valueOf(e.getMessage())) + "}";
    }

    private static String hexJson(byte[] b) {
        if (b == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder(b.length * 2 + 2).append('"');
        for (byte x : b) {
            sb.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return sb.append('"').toString();
    }

    private static byte[] unhex(String s) {
        if (s == null) {
            return null;
        }
        if (s.length() % 2 != 0) {
            usage("odd-length hex string");
        }
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s, 2 * i, 2 * i + 2, 16);
        }
        return out;
    }

    private static void usage(String why) {
        System.err.println("fjord-compat-java: " + why);
        System.err.println("usage: Cli SUBCOMMAND --bootstrap HOST:PORT [--topic T] [flags]; see the Javadoc of each subcommand");
        System.exit(EXIT_USAGE);
    }

    /** {@code --name value} pairs (repeatable) and bare {@code --flag}s, after the subcommand. */
    private static final class Opts {
        private final Map<String, List<String>> values = new HashMap<>();

        Opts(String[] argv) {
            for (int i = 1; i < argv.length; i++) {
                if (!isName(argv[i])) {
                    usage("unexpected argument " + argv[i]);
                }
                String name = argv[i].replaceFirst("^--?", "");
                String value = (i + 1 < argv.length && !isName(argv[i + 1])) ? argv[++i] : null;
                values.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
            }
        }

        /** {@code --name} or {@code -X}; anything else (including {@code -1}) is a value. */
        private static boolean isName(String arg) {
            return arg.startsWith("--") || arg.equals("-X");
        }

        boolean has(String name) {
            return values.containsKey(name);
        }

        boolean flag(String name) {
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

    /** Just enough JSON: a parser for the produce input lines and a string quoter for the output. */
    private static final class Json {
        private final String s;
        private int i;

        Json(String s) {
            this.s = s;
        }

        static String quote(String v) {
            if (v == null) {
                return "null";
            }
            StringBuilder sb = new StringBuilder(v.length() + 2).append('"');
            for (char c : v.toCharArray()) {
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                    }
                }
            }
            return sb.append('"').toString();
        }

        Object parse() {
            Object v = value();
            ws();
            if (i != s.length()) {
                usage("trailing data in JSON input: " + s);
            }
            return v;
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        private Object value() {
            ws();
            if (i >= s.length()) {
                usage("truncated JSON input: " + s);
            }
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect('}');
                        return m;
                    }
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i) == ',') {
                        i++;
                    } else {
                        expect(']');
                        return l;
                    }
                }
            }
            if (c == '"') {
                return string();
            }
            if (s.startsWith("null", i)) {
                i += 4;
                return null;
            }
            if (s.startsWith("true", i)) {
                i += 4;
                return Boolean.TRUE;
            }
            if (s.startsWith("false", i)) {
                i += 5;
                return Boolean.FALSE;
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            String num = s.substring(start, i);
            if (num.isEmpty()) {
                usage("bad JSON input at " + start + ": " + s);
            }
            return num.contains(".") || num.contains("e") || num.contains("E") ? (Number) Double.valueOf(num) : (Number) Long.valueOf(num);
        }

        private String string() {
            expect('"');
            StringBuilder sb = new StringBuilder();
            while (s.charAt(i) != '"') {
                char c = s.charAt(i++);
                if (c == '\\') {
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n' -> sb.append('\n');
                        case 't' -> sb.append('\t');
                        case 'r' -> sb.append('\r');
                        case 'b' -> sb.append('\b');
                        case 'f' -> sb.append('\f');
                        case 'u' -> {
                            sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                            i += 4;
                        }
                        default -> sb.append(e);
                    }
                } else {
                    sb.append(c);
                }
            }
            i++;
            return sb.toString();
        }

        private void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) {
                usage("expected '" + c + "' at " + i + " in JSON input: " + s);
            }
            i++;
        }
    }
}
