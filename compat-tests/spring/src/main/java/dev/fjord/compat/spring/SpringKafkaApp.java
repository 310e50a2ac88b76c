package dev.fjord.compat.spring;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.MapPropertySource;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.config.KafkaListenerEndpointRegistry;
import org.springframework.kafka.core.ConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.core.ProducerFactory;
import org.springframework.kafka.listener.ConsumerAwareRebalanceListener;
import org.springframework.kafka.support.SendResult;
import org.springframework.kafka.transaction.KafkaTransactionManager;

/**
 * One round of a Spring Kafka application, for {@code test_spring_kafka.py}: a plain Spring
 * context (no Boot) with a transactional {@link KafkaTemplate}, a consume-transform-produce
 * {@code @KafkaListener} whose container runs each record in a transaction of a
 * {@link KafkaTransactionManager}, and a downstream {@code @KafkaListener} reading the output with
 * read_committed in a group of its own.
 *
 * <p>{@code java -cp ... dev.fjord.compat.spring.SpringKafkaApp --bootstrap B --input I --output O
 * --group G --downstream-group D --txn-prefix X --round R --per-txn M --partitions P [--fail-once V]}:
 * <ol>
 *   <li>executeInTransaction three times, M records each to I (record i to partition i % P): values
 *       {@code rR-a<i>} committed, {@code rR-x<i>} aborted (the callback throws), {@code rR-c<i>}
 *       committed ({@code produced} lines, with offsets);</li>
 *   <li>starts both containers, the transforming one with two consumers: each input {@code v}
 *       becomes {@code out:v#<attempt>} with the same key in the same partition of O
 *       ({@code ctp} lines); input V fails once after its output is sent (a rolled-back
 *       transaction, {@code ctp-fail}); the downstream one prints what it reads ({@code down});</li>
 *   <li>once both listeners have seen the 2M committed records, closes the context (the
 *       containers stop as they do on an application's shutdown) and prints {@code stopped}.</li>
 * </ol>
 * Every line is one JSON object on stdout; a failure ends with {@code {"ev":"error",...}} and
 * exit code 2. Spring's and the client's warnings go to stderr.
 */
public final class SpringKafkaApp {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    private SpringKafkaApp() {}

    public static void main(String[] argv) {
        int rc = 0;
        try {
            run(opts(argv));
        } catch (Throwable e) {
            emit(new J().s("ev", "error").s("error", e.getClass().getSimpleName()).s("message", String.valueOf(e.getMessage())));
            rc = 2;
        }
        OUT.flush();
        System.exit(rc);
    }

    private static void run(Map<String, Object> o) throws Exception {
        int round = Integer.parseInt((String) o.get("fjord.round"));
        int perTxn = Integer.parseInt((String) o.get("fjord.per-txn"));
        int partitions = Integer.parseInt((String) o.get("fjord.partitions"));
        String input = (String) o.get("fjord.input");
        try (AnnotationConfigApplicationContext ctx = new AnnotationConfigApplicationContext()) {
            ctx.getEnvironment().getPropertySources().addFirst(new MapPropertySource("fjord", o));
            ctx.register(AppConfig.class);
            ctx.refresh();

            @SuppressWarnings("unchecked")
            KafkaTemplate<String, String> template = ctx.getBean(KafkaTemplate.class);
            produce(template, input, "r" + round + "-a", perTxn, partitions, false);
            produce(template, input, "r" + round + "-x", perTxn, partitions, true);
            produce(template, input, "r" + round + "-c", perTxn, partitions, false);

            Progress progress = ctx.getBean(Progress.class);
            KafkaListenerEndpointRegistry registry = ctx.getBean(KafkaListenerEndpointRegistry.class);
            registry.getListenerContainer("ctp").start();
            registry.getListenerContainer("down").start();
            if (!progress.transformed.await(60, TimeUnit.SECONDS) || !progress.downstream.await(60, TimeUnit.SECONDS)) {
                throw new IllegalStateException("listeners still waiting for " + progress.transformed.getCount()
                        + " transformed and " + progress.downstream.getCount() + " downstream records");
            }
        }
        emit(new J().s("ev", "stopped"));
    }

    /**
     * One executeInTransaction of n records; with `abort` the callback throws once they are sent
     * (and flushed: an abort drops batches not yet sent, and the test wants these in the log).
     */
    private static void produce(KafkaTemplate<String, String> template, String topic, String prefix, int n,
                                int partitions, boolean abort) throws Exception {
        List<CompletableFuture<SendResult<String, String>>> sent = new ArrayList<>();
        try {
            template.executeInTransaction(t -> {
                for (int i = 0; i < n; i++) {
                    sent.add(t.send(topic, i % partitions, "k-" + prefix + i, prefix + i));
                }
                if (abort) {
                    t.flush();
                    throw new AbortRequested();
                }
                return null;
            });
        } catch (AbortRequested expected) {
            // executeInTransaction aborted the transaction and rethrew the callback's exception
        }
        StringBuilder rs = new StringBuilder("[");
        for (CompletableFuture<SendResult<String, String>> f : sent) {
            SendResult<String, String> r = f.get(30, TimeUnit.SECONDS);
            rs.append(rs.length() > 1 ? "," : "").append(new J().n("p", r.getRecordMetadata().partition())
                    .n("o", r.getRecordMetadata().offset()).s("v", r.getProducerRecord().value()));
        }
        emit(new J().s("ev", "produced").s("outcome", abort ? "aborted" : "committed").raw("records", rs.append(']').toString()));
    }

    static final class AbortRequested extends RuntimeException {
        AbortRequested() {
            super("abort requested", null, false, false);
        }
    }

    /** The counts main() waits for: the round's committed inputs, once each per listener. */
    static final class Progress {
        final CountDownLatch transformed;
        final CountDownLatch downstream;

        Progress(int expected) {
            transformed = new CountDownLatch(expected);
            downstream = new CountDownLatch(expected);
        }
    }

    @Configuration
    @EnableKafka
    static class AppConfig {
        @Value("${fjord.bootstrap}")
        String bootstrap;

        @Bean
        Progress progress(@Value("${fjord.per-txn}") int perTxn) {
            return new Progress(2 * perTxn);
        }

        @Bean
        ProducerFactory<String, String> producerFactory(@Value("${fjord.txn-prefix}") String txnPrefix) {
            Map<String, Object> p = new HashMap<>();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
            p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
            DefaultKafkaProducerFactory<String, String> pf = new DefaultKafkaProducerFactory<>(p);
            pf.setTransactionIdPrefix(txnPrefix);
            return pf;
        }

        @Bean
        KafkaTemplate<String, String> kafkaTemplate(ProducerFactory<String, String> pf) {
            return new KafkaTemplate<>(pf);
        }

        @Bean
        KafkaTransactionManager<String, String> kafkaTransactionManager(ProducerFactory<String, String> pf) {
            return new KafkaTransactionManager<>(pf);
        }

        @Bean
        ConsumerFactory<String, String> consumerFactory() {
            Map<String, Object> c = new HashMap<>();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            // What the test broker allows (group.min.session.timeout.ms=1000): quick rebalances.
            c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 6000);
            c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
            c.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
            return new DefaultKafkaConsumerFactory<>(c);
        }

        /** Records in transactions of the KafkaTransactionManager, two consumers, started by main(). */
        @Bean
        ConcurrentKafkaListenerContainerFactory<String, String> ctpFactory(
                ConsumerFactory<String, String> cf, KafkaTransactionManager<String, String> tm) {
            ConcurrentKafkaListenerContainerFactory<String, String> f = base(cf, "ctp");
            f.setConcurrency(2);
            f.getContainerProperties().setKafkaAwareTransactionManager(tm);
            return f;
        }

        @Bean
        ConcurrentKafkaListenerContainerFactory<String, String> downstreamFactory(ConsumerFactory<String, String> cf) {
            return base(cf, "down");
        }

        private static ConcurrentKafkaListenerContainerFactory<String, String> base(ConsumerFactory<String, String> cf, String name) {
            ConcurrentKafkaListenerContainerFactory<String, String> f = new ConcurrentKafkaListenerContainerFactory<>();
            f.setConsumerFactory(cf);
            f.setAutoStartup(false);
            // The default 5 s poll is also how long a stop waits for a consumer thread.
            f.getContainerProperties().setPollTimeout(500);
            f.getContainerProperties().setConsumerRebalanceListener(new ConsumerAwareRebalanceListener() {
                @Override
                public void onPartitionsAssigned(Consumer<?, ?> consumer, Collection<TopicPartition> tps) {
                    // position() here is where the consumer starts: the group's committed offset.
                    StringBuilder sb = new StringBuilder("[");
                    for (TopicPartition tp : tps) {
                        sb.append(sb.length() > 1 ? "," : "").append(new J().n("p", tp.partition()).n("position", consumer.position(tp)));
                    }
                    emit(new J().s("ev", name + "-assigned").raw("partitions", sb.append(']').toString()));
                }
            });
            return f;
        }

        @Bean
        Listeners listeners(KafkaTemplate<String, String> template, Progress progress) {
            return new Listeners(template, progress);
        }
    }

    public static class Listeners {
        private final KafkaTemplate<String, String> template;
        private final Progress progress;
        private final Map<String, Integer> attempts = new ConcurrentHashMap<>();

        @Value("${fjord.output}")
        String output;

        @Value("${fjord.fail-once:}")
        String failOnce;

        Listeners(KafkaTemplate<String, String> template, Progress progress) {
            this.template = template;
            this.progress = progress;
        }

        /** The send joins the container's transaction, which also carries this record's offset. */
        @KafkaListener(id = "ctp", topics = "${fjord.input}", groupId = "${fjord.group}", containerFactory = "ctpFactory")
        public void transform(ConsumerRecord<String, String> r) {
            int attempt = attempts.merge(r.value(), 1, Integer::sum);
            template.send(output, r.partition(), r.key(), "out:" + r.value() + "#" + attempt);
            J line = new J().n("p", r.partition()).n("o", r.offset()).s("k", r.key()).s("v", r.value()).n("attempt", attempt);
            if (attempt == 1 && r.value().equals(failOnce)) {
                emit(line.s("ev", "ctp-fail"));
                // The rollback drops batches not yet sent: flush, so that the rolled-back output
                // is in the log for read_committed readers to skip.
                template.flush();
                throw new IllegalStateException("failing " + r.value() + " once");
            }
            emit(line.s("ev", "ctp"));
            progress.transformed.countDown();
        }

        @KafkaListener(id = "down", topics = "${fjord.output}", groupId = "${fjord.downstream-group}",
                containerFactory = "downstreamFactory")
        public void downstream(ConsumerRecord<String, String> r) {
            emit(new J().s("ev", "down").n("p", r.partition()).n("o", r.offset()).s("k", r.key()).s("v", r.value()));
            progress.downstream.countDown();
        }
    }

    // ------------------------------------------------------------------ helpers

    /** {@code --name value} pairs as the {@code fjord.name} properties the configuration reads. */
    private static Map<String, Object> opts(String[] argv) {
        Map<String, Object> o = new HashMap<>();
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got " + List.of(argv));
            }
            o.put("fjord." + argv[i].substring(2), argv[i + 1]);
        }
        return o;
    }

    private static synchronized void emit(J j) {
        OUT.println(j);
    }

    /** One JSON object, built field by field. */
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

        static String quote(String s) {
            StringBuilder q = new StringBuilder("\"");
            for (char ch : s.toCharArray()) {
                switch (ch) {
                    case '"' -> q.append("\\\"");
                    case '\\' -> q.append("\\\\");
                    case '\n' -> q.append("\\n");
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
}
