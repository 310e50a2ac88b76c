package dev.fjord.compat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.StreamsMetadata;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * A Kafka Streams word count for {@code test_streams.py} (and, with {@code -X group.protocol=streams},
 * {@code test_streams_groups.py}): lines from {@code --input}, split into
 * lower-case words, re-keyed by word (through the repartition topic {@code <app>-words-repartition})
 * and counted in the persistent (RocksDB) store {@code counts}, whose changelog is
 * {@code <app>-counts-changelog}; every count change goes to {@code --output} as word -> decimal
 * count. Exactly-once v2.
 *
 * <p>{@code java -cp ... dev.fjord.compat.Streams --bootstrap B --app-id A --input I --output O
 * --state-dir D [-X streams.config=value]...}. Prints one JSON object per line on stdout, flushed at
 * once, so the test waits on them:
 *
 * <ul>
 *   <li>{@code {"event":"state","from":S,"to":S}}: every KafkaStreams state change (RUNNING is the
 *       one to wait for);</li>
 *   <li>{@code {"event":"line","key":K}}: an input line being processed (its transaction commits
 *       within commit.interval.ms, 1 s);</li>
 *   <li>{@code {"event":"restore-start","topic","partition","store","start","end"}},
 *       {@code {"event":"restore-end",...,"restored":N}} and {@code "restore-suspended"}: the state
 *       restore listener, for every store partition restored from its changelog;</li>
 *   <li>{@code {"error":...}}: an uncaught exception in a stream thread (the client then shuts
 *       down), or a failure to start;</li>
 *   <li>{@code {"event":"metadata","clients":[{"host","port","active":["topic-p",...],
 *       "standby":[...],"stores":[...]}...]}}: the answer to a {@code metadata} line on stdin, what
 *       {@code KafkaStreams.metadataForAllStreamsClients()} knows of every instance with an
 *       {@code application.server} (Interactive Queries; with {@code group.protocol=streams} the
 *       broker sends it in the heartbeat responses);</li>
 *   <li>{@code {"event":"closed"}} after a clean close: stdin saying {@code stop} or closing.</li>
 * </ul>
 *
 * Logging goes through slf4j: the tests put slf4j-simple (target/lib/logging) in front and send
 * stderr to a file.
 */
public final class Streams {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    private Streams() {}

    private static synchronized void emit(String json) {
        OUT.println(json);
        OUT.flush();
    }

    private static String event(String name, Map<String, Object> fields) {
        StringBuilder sb = new StringBuilder("{\"event\":").append(Eos.quote(name));
        for (Map.Entry<String, Object> f : fields.entrySet()) {
            sb.append(',').append(Eos.quote(f.getKey())).append(':');
            Object v = f.getValue();
            sb.append(v instanceof Number ? v.toString() : Eos.quote(String.valueOf(v)));
        }
        return sb.append('}').toString();
    }

    private static Map<String, Object> fields(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    /** {"error": SimpleName, "chain": [the classes down the cause chain], "message": ...}. */
    private static String errorJson(Throwable t) {
        List<String> chain = new ArrayList<>();
        for (Throwable x = t; x != null && chain.size() < 8; x = x.getCause()) {
            chain.add(Eos.quote(x.getClass().getSimpleName()));
        }
        return "{\"error\":" + Eos.quote(t.getClass().getSimpleName()) + ",\"chain\":" + chain
                + ",\"message\":" + Eos.quote(String.valueOf(t.getMessage())) + "}";
    }

    /** The {@code metadata} event: every instance's host, port and partitions, sorted. */
    private static String metadataJson(KafkaStreams streams) {
        List<String> clients = new ArrayList<>();
        for (StreamsMetadata m : streams.metadataForAllStreamsClients()) {
            clients.add("{\"host\":" + Eos.quote(m.host()) + ",\"port\":" + m.port()
                    + ",\"active\":" + partitions(m.topicPartitions())
                    + ",\"standby\":" + partitions(m.standbyTopicPartitions())
                    + ",\"stores\":" + quoted(new TreeSet<>(m.stateStoreNames())) + "}");
        }
        Collections.sort(clients);
        return "{\"event\":\"metadata\",\"clients\":[" + String.join(",", clients) + "]}";
    }

    private static String partitions(Set<TopicPartition> tps) {
        Set<String> names = new TreeSet<>();
        for (TopicPartition tp : tps) {
            names.add(tp.topic() + "-" + tp.partition());
        }
        return quoted(names);
    }

    private static String quoted(Set<String> values) {
        List<String> out = new ArrayList<>();
        for (String v : values) {
            out.add(Eos.quote(v));
        }
        return "[" + String.join(",", out) + "]";
    }

    static Topology wordCount(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        KTable<String, Long> counts = b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                // Each input line as it is processed (its words then go to the repartition topic
                // inside the task's open transaction).
                .peek((k, line) -> emit(event("line", fields("key", String.valueOf(k)))))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
                .filter((k, word) -> !word.isEmpty())
                .groupBy((k, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()));
        counts.toStream()
                .mapValues(String::valueOf)
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return b.build();
    }

    public static void main(String[] argv) throws Exception {
        Opts o = new Opts(argv);
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.required("app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.required("bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, o.required("state-dir"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        // A transaction stays open up to a second after the records it carries were processed
        // (the test kills the app inside one).
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "1000");
        // Consumed repartition records deleted (DeleteRecords) every 500 ms instead of 30 s.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "500");
        // A test's restart must not wait out the killed instance: a short group session and
        // transaction timeout (its open transaction is aborted by the broker after that).
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "500");
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), "5000");
        for (String kv : o.all("X")) {
            int eq = kv.indexOf('=');
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }

        KafkaStreams streams;
        try {
            streams = new KafkaStreams(wordCount(o.required("input"), o.required("output")), p);
        } catch (Exception e) {
            emit(errorJson(e));
            System.exit(2);
            return;
        }
        streams.setStateListener((to, from) -> emit(event("state", fields("from", from, "to", to))));
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                emit(event("restore-start", fields("topic", tp.topic(), "partition", tp.partition(), "store", store,
                        "start", start, "end", end)));
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long restored) {}

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long restored) {
                emit(event("restore-end", fields("topic", tp.topic(), "partition", tp.partition(), "store", store,
                        "restored", restored)));
            }

            @Override
            public void onRestoreSuspended(TopicPartition tp, String store, long restored) {
                emit(event("restore-suspended", fields("topic", tp.topic(), "partition", tp.partition(),
                        "store", store, "restored", restored)));
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            emit(errorJson(e));
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        // Runs until stdin says stop or closes (a kill -9 needs no help); "metadata" asks for the
        // Interactive Queries view of all instances.
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.trim().equals("stop")) {
                break;
            }
            if (line.trim().equals("metadata")) {
                try {
                    emit(metadataJson(streams));
                } catch (RuntimeException e) {
                    // Not RUNNING or REBALANCING yet: StreamsNotStartedException and the like.
                    emit("{\"event\":\"metadata\",\"unavailable\":" + Eos.quote(e.getClass().getSimpleName()) + "}");
                }
            }
        }
        boolean closed = streams.close(Duration.ofSeconds(30));
        emit(event("closed", fields("clean", String.valueOf(closed))));
        System.exit(closed ? 0 : 1);
    }

    private static final class Opts {
        private final Map<String, List<String>> values = new LinkedHashMap<>();

        Opts(String[] argv) {
            for (int i = 0; i < argv.length; i++) {
                if (!argv[i].startsWith("--") && !argv[i].equals("-X") || i + 1 >= argv.length) {
                    usage("unexpected argument " + argv[i]);
                }
                values.computeIfAbsent(argv[i].replaceFirst("^--?", ""), k -> new ArrayList<>()).add(argv[++i]);
            }
        }

        String required(String name) {
            List<String> v = values.get(name);
            if (v == null) {
                usage("missing --" + name);
            }
            return v.get(v.size() - 1);
        }

        List<String> all(String name) {
            return values.getOrDefault(name, List.of());
        }
    }

    private static void usage(String why) {
        System.err.println("Streams: " + why + "\nusage: Streams --bootstrap B --app-id A --input I --output O "
                + "--state-dir D [-X key=value]...");
        System.exit(64);
    }
}
