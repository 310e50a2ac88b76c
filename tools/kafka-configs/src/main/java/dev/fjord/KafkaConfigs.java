package dev.fjord;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.stream.Collectors;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.ConfigKey;
import org.apache.kafka.common.config.ConfigDef.Type;
import org.apache.kafka.common.config.ConfigDef.Validator;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.server.config.AbstractKafkaConfig;
import org.apache.kafka.server.config.ConfigSynonym;
import org.apache.kafka.server.config.DynamicBrokerConfig;
import org.apache.kafka.server.config.QuotaConfig;
import org.apache.kafka.server.config.ServerTopicConfigSynonyms;
import org.apache.kafka.storage.internals.log.LogConfig;

/**
 * Prints, as TSV on stdout, every broker and topic configuration key of the Apache Kafka on the
 * classpath, read from Kafka's own ConfigDefs (tools/kafka-configs/README.md describes the
 * columns). {@code --stats} also prints, on stderr, how many keys each validator class has.
 *
 * <p>Sources, as of Kafka 4.4:
 * <ul>
 * <li>broker: {@code AbstractKafkaConfig.CONFIG_DEF} (which {@code kafka.server.KafkaConfig.configDef}
 *     is) plus {@code QuotaConfig.brokerQuotaConfigs()}, the dynamic-only broker keys
 *     ({@code leader.replication.throttled.rate}, ...): the same union as Kafka's broker docs
 *     ({@code KafkaConfig.main}) and its dynamic broker config validation ({@code DynamicConfig.Broker}).
 * <li>dynamic: {@code DynamicBrokerConfig.dynamicConfigUpdateModes()}, what the docs' "Update Mode"
 *     column is printed from; a key it does not name is read-only.
 * <li>topic: {@code LogConfig}'s ConfigDef; synonyms from {@code ServerTopicConfigSynonyms}.
 * </ul>
 */
public final class KafkaConfigs {
    private static final String NULL = "\\N";

    public static void main(String[] args) throws Exception {
        boolean stats = List.of(args).contains("--stats");
        Map<String, Integer> census = new TreeMap<>();

        Map<String, ConfigKey> broker = new TreeMap<>(AbstractKafkaConfig.CONFIG_DEF.configKeys());
        QuotaConfig.brokerQuotaConfigs().configKeys().forEach(broker::putIfAbsent);
        Map<String, ConfigKey> topic = new TreeMap<>(LogConfig.configDefCopy().configKeys());

        Map<String, String> modes = DynamicBrokerConfig.dynamicConfigUpdateModes();
        for (String name : modes.keySet()) {
            require(broker.containsKey(name), "dynamic broker config " + name + " is not a broker key");
        }
        Map<String, List<ConfigSynonym>> synonyms = ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS;
        for (Map.Entry<String, List<ConfigSynonym>> e : synonyms.entrySet()) {
            require(topic.containsKey(e.getKey()), "synonyms for " + e.getKey() + ", not a topic key");
            for (ConfigSynonym s : e.getValue()) {
                require(broker.containsKey(s.name()), "synonym " + s.name() + " is not a broker key");
            }
        }

        StringBuilder out = new StringBuilder("scope\tname\ttype\tdefault\tvalidator\tdynamic\tinternal\tsynonyms\n");
        for (ConfigKey key : broker.values()) {
            String mode = modes.getOrDefault(key.name, "read-only");
            require(Set.of("read-only", "per-broker", "cluster-wide").contains(mode), "update mode " + mode);
            row(out, "broker", key, mode, "-", census);
        }
        for (ConfigKey key : topic.values()) {
            List<ConfigSynonym> syn = synonyms.getOrDefault(key.name, List.of());
            String s = syn.isEmpty() ? "-"
                : syn.stream().map(KafkaConfigs::synonym).collect(Collectors.joining(","));
            row(out, "topic", key, "-", s, census);
        }
        System.out.print(out);
        System.out.flush();

        if (stats) {
            long internal = broker.values().stream().filter(k -> k.internalConfig).count();
            long topicInternal = topic.values().stream().filter(k -> k.internalConfig).count();
            System.err.printf("broker keys: %d (%d internal), topic keys: %d (%d internal)%n",
                broker.size(), internal, topic.size(), topicInternal);
            System.err.println("validator classes (keys; nested validators counted too):");
            census.forEach((cls, n) -> System.err.printf("  %4d  %s%n", n, cls));
        }
    }

    private static void row(StringBuilder out, String scope, ConfigKey key, String dynamic, String synonyms,
                            Map<String, Integer> census) {
        out.append(scope).append('\t')
            .append(esc(key.name)).append('\t')
            .append(key.type.name()).append('\t')
            .append(defaultOf(key)).append('\t')
            .append(esc(validator(key.validator, key.type, census))).append('\t')
            .append(dynamic).append('\t')
            .append(key.internalConfig).append('\t')
            .append(synonyms).append('\n');
    }

    private static String defaultOf(ConfigKey key) {
        if (!key.hasDefault() || key.defaultValue == null) return NULL;
        // ConfigDef.convertToString prints a Password as "[hidden]"; the TSV wants the value.
        if (key.defaultValue instanceof Password) return esc(((Password) key.defaultValue).value());
        return esc(ConfigDef.convertToString(key.defaultValue, key.type));
    }

    /**
     * The validator in machine-readable form:
     * <pre>
     *   -                          none
     *   range:MIN:MAX              ConfigDef.Range, inclusive; MIN or MAX empty when unbounded
     *   ranges:MIN:MAX|MIN:MAX...  a numeric LambdaValidator, its accepted set found by probing it
     *   in:a|b|c                   ConfigDef.ValidString, exact match
     *   in-ci:A|B|C                ConfigDef.CaseInsensitiveValidString: the value, upper-cased
     *                              (Locale.ROOT), is one of these (kept upper-case, sorted)
     *   list-in:a|b|c              ConfigDef.ValidList.in(...): every element one of these
     *   list-any                   ConfigDef.ValidList.anyNonDuplicateValues(...): any elements
     *   ...-nonempty               (suffix of either) the list may not be empty
     *   non-empty                  ConfigDef.NonEmptyString (null is accepted, "" is not)
     *   non-empty-no-ctrl          ConfigDef.NonEmptyStringWithoutControlChars
     *   non-null                   ConfigDef.NonNullValidator
     *   list-max-size:N            ConfigDef.ListSize
     *   quorum-voters              each element id@host:port (QuorumConfig.parseVoterConnections)
     *   quorum-bootstrap-servers   each element host:port (QuorumConfig.parseBootstrapServer)
     *   throttled-replicas         "*", or each element (trimmed) partitionId:brokerId or empty
     *   all:V1;V2                  ConfigDef.CompositeValidator, every part must pass
     *   other:TEXT                 anything else: its toString()
     * </pre>
     * A ValidList in Kafka 4.4 ({@code ensureValid}) always rejects duplicate elements and empty
     * ("") elements, whatever its flags; its isEmptyAllowed flag decides whether the empty list
     * is accepted (the -nonempty suffix) and its isNullAllowed flag whether null is: null is not
     * written here, because only a default can be null (a value set from a string never is), and
     * ConfigKey's constructor already checks the default against the validator.
     */
    private static String validator(Validator v, Type type, Map<String, Integer> census) {
        if (v == null) {
            census.merge("(none)", 1, Integer::sum);
            return "-";
        }
        census.merge(v.getClass().getName(), 1, Integer::sum);
        if (v instanceof ConfigDef.Range) {
            Number min = (Number) field(v, "min");
            Number max = (Number) field(v, "max");
            return "range:" + (min == null ? "" : min) + ":" + (max == null ? "" : max);
        }
        if (v instanceof ConfigDef.ValidString) {
            return "in:" + alternatives((List<?>) field(v, "validStrings"));
        }
        if (v instanceof ConfigDef.CaseInsensitiveValidString) {
            return "in-ci:" + alternatives(new TreeSet<>((Collection<?>) field(v, "validStrings")));
        }
        if (v instanceof ConfigDef.ValidList) {
            ConfigDef.ValidString inner = (ConfigDef.ValidString) field(v, "validString");
            List<?> allowed = (List<?>) field(inner, "validStrings");
            boolean emptyAllowed = (Boolean) field(v, "isEmptyAllowed");
            String form = allowed.isEmpty() ? "list-any" : "list-in";
            if (!emptyAllowed) form += "-nonempty";
            return allowed.isEmpty() ? form : form + ":" + alternatives(allowed);
        }
        if (v instanceof ConfigDef.NonEmptyString) return "non-empty";
        if (v instanceof ConfigDef.NonEmptyStringWithoutControlChars) return "non-empty-no-ctrl";
        if (v instanceof ConfigDef.NonNullValidator) return "non-null";
        if (v instanceof ConfigDef.ListSize) return "list-max-size:" + field(v, "maxSize");
        if (v instanceof ConfigDef.CompositeValidator) {
            List<String> parts = new ArrayList<>();
            for (Object part : (List<?>) field(v, "validators")) {
                parts.add(validator((Validator) part, type, census));
            }
            return "all:" + String.join(";", parts);
        }
        if (v instanceof ConfigDef.LambdaValidator) {
            String probed = probe(v, type);
            if (probed != null) return probed;
        }
        switch (v.getClass().getName()) {
            case "org.apache.kafka.raft.QuorumConfig$ControllerQuorumVotersValidator":
                return "quorum-voters";
            case "org.apache.kafka.raft.QuorumConfig$ControllerQuorumBootstrapServersValidator":
                return "quorum-bootstrap-servers";
            case "org.apache.kafka.storage.internals.log.ThrottledReplicaListValidator":
                return "throttled-replicas";
            default:
                return "other:" + v;
        }
    }

    private static String alternatives(Collection<?> values) {
        for (Object s : values) {
            require(!s.toString().contains("|") && !s.toString().contains(";"), "valid string with | or ;: " + s);
        }
        return values.stream().map(Object::toString).collect(Collectors.joining("|"));
    }

    /**
     * The integers a numeric LambdaValidator accepts, as inclusive ranges: every value in
     * [-2^17-2, 2^17+2] (covering every bounded number in Kafka's config definitions, zstd's -2^17
     * among them), then around every power of two up to the type's limits; accepted samples next
     * to each other are taken as one range. Null when it is not numeric, or accepts no sample.
     */
    private static String probe(Validator v, Type type) {
        final long lo, hi;
        final Function<Long, Object> box;
        switch (type) {
            case SHORT: lo = Short.MIN_VALUE; hi = Short.MAX_VALUE; box = n -> (short) (long) n; break;
            case INT: lo = Integer.MIN_VALUE; hi = Integer.MAX_VALUE; box = n -> (int) (long) n; break;
            case LONG: lo = Long.MIN_VALUE; hi = Long.MAX_VALUE; box = n -> n; break;
            default: return null;
        }
        TreeSet<Long> samples = new TreeSet<>();
        long dense = (1L << 17) + 2;
        for (long n = Math.max(lo, -dense); n <= Math.min(hi, dense); n++) samples.add(n);
        for (int bit = 17; bit < 64; bit++) {
            long p = 1L << bit;
            for (long n : new long[] {p - 1, p, p + 1, -p - 1, -p, -p + 1}) {
                if (n >= lo && n <= hi) samples.add(n);
            }
        }
        samples.add(lo);
        samples.add(hi);
        List<String> ranges = new ArrayList<>();
        Long start = null, last = null;
        for (long n : samples) {
            boolean ok;
            try {
                v.ensureValid("probe", box.apply(n));
                ok = true;
            } catch (RuntimeException e) {
                ok = false;
            }
            if (ok && start == null) start = n;
            if (!ok && start != null) {
                ranges.add(bound(start, lo) + ":" + bound(last, hi));
                start = null;
            }
            last = n;
        }
        if (start != null) ranges.add(bound(start, lo) + ":" + bound(last, hi));
        if (ranges.isEmpty()) return null;
        return ranges.size() == 1 ? "range:" + ranges.get(0) : "ranges:" + String.join("|", ranges);
    }

    private static String bound(long n, long limit) {
        return n == limit ? "" : Long.toString(n);
    }

    /** name, or name*factor when ConfigSynonym's converter scales the value (hours to ms, ...). */
    private static String synonym(ConfigSynonym s) {
        Function<String, String> c = s.converter();
        long factor = Long.parseLong(c.apply("1"));
        for (long n : new long[] {0, 2, 7, 1000}) {
            require(Long.parseLong(c.apply(Long.toString(n))) == n * factor,
                "converter of synonym " + s.name() + " is not a multiplication");
        }
        return factor == 1 ? s.name() : s.name() + "*" + factor;
    }

    private static Object field(Object o, String name) {
        for (Class<?> c = o.getClass(); c != null; c = c.getSuperclass()) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f.get(o);
            } catch (NoSuchFieldException e) {
                // look in the superclass
            } catch (IllegalAccessException e) {
                throw new IllegalStateException(e);
            }
        }
        throw new IllegalStateException(o.getClass().getName() + " has no field " + name
            + "; Kafka changed it, update KafkaConfigs.validator");
    }

    private static String esc(String s) {
        return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r");
    }

    private static void require(boolean ok, String what) {
        if (!ok) throw new IllegalStateException(what);
    }
}
