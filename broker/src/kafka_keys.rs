//! Apache Kafka's configuration keys, as data: `kafka_configs.tsv`, generated from Kafka 4.4's
//! own `ConfigDef`s by `tools/kafka-configs` (`make kafka-configs`; `make check-kafka-configs`
//! compares it with the jars). Every broker key there is accepted at start, and every value is
//! checked with the type and validator Kafka checks it with, so that a configuration Kafka
//! accepts starts Fjord and one Kafka refuses stops it, naming the key.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Where a key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `server.properties` and dynamic broker configs.
    Broker,
    /// Topic configs (CreateTopics, AlterConfigs on a topic).
    Topic,
}

/// `ConfigDef.Type`, with the code DescribeConfigs v3+ reports (`ConfigType` in Kafka's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// BOOLEAN (1)
    Boolean = 1,
    /// STRING (2)
    String = 2,
    /// INT (3)
    Int = 3,
    /// SHORT (4)
    Short = 4,
    /// LONG (5)
    Long = 5,
    /// DOUBLE (6)
    Double = 6,
    /// LIST (7)
    List = 7,
    /// CLASS (8)
    Class = 8,
    /// PASSWORD (9): DescribeConfigs hides its value.
    Password = 9,
}

impl KeyType {
    /// Every type with its name as Kafka prints it.
    const NAMES: [(KeyType, &'static str); 9] = [
        (KeyType::Boolean, "BOOLEAN"),
        (KeyType::String, "STRING"),
        (KeyType::Int, "INT"),
        (KeyType::Short, "SHORT"),
        (KeyType::Long, "LONG"),
        (KeyType::Double, "DOUBLE"),
        (KeyType::List, "LIST"),
        (KeyType::Class, "CLASS"),
        (KeyType::Password, "PASSWORD"),
    ];

    /// The type's name as Kafka prints it.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("UNKNOWN", |(_, n)| n)
    }

    fn from_name(name: &str) -> Option<KeyType> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }
}

/// How a broker key can change without a restart in Kafka (the docs' "Update Mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Only at start.
    ReadOnly,
    /// Dynamically, per broker.
    PerBroker,
    /// Dynamically, for the whole cluster.
    ClusterWide,
}

/// One key of Kafka's config definitions.
#[derive(Debug, Clone)]
pub struct KafkaKey {
    /// The key.
    pub name: &'static str,
    /// Its type.
    pub kind: KeyType,
    /// Kafka's default as `ConfigDef.convertToString` prints it; `None` for no default.
    pub default: Option<String>,
    /// The validator, in the generator's form (tools/kafka-configs/README.md).
    validator: &'static str,
    /// Broker keys: the update mode; topic keys are all dynamic.
    pub update_mode: UpdateMode,
    /// Defined with `defineInternal`: accepted, left out of Kafka's docs and DescribeConfigs.
    pub internal: bool,
    /// Topic keys: the broker keys that supply the default, highest precedence first, each with
    /// the factor its value is multiplied by (`log.retention.hours` -> `retention.ms`: 3600000).
    pub synonyms: Vec<(&'static str, i64)>,
}

struct Keys {
    broker: BTreeMap<&'static str, KafkaKey>,
    topic: BTreeMap<&'static str, KafkaKey>,
}

static TSV: &str = include_str!("kafka_configs.tsv");

static KEYS: LazyLock<Keys> = LazyLock::new(|| parse(TSV));

/// Undoes the generator's escaping of `\t`, `\n`, `\r` and `\\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn parse(tsv: &'static str) -> Keys {
    let mut keys = Keys {
        broker: BTreeMap::new(),
        topic: BTreeMap::new(),
    };
    for line in tsv.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&'static str> = line.split('\t').collect();
        // The file is generated and checked in; a malformed line is a build mistake that the
        // unit tests below catch.
        let [scope, name, kind, default, validator, dynamic, internal, synonyms] = cols[..] else {
            panic!("kafka_configs.tsv: malformed line {line:?}");
        };
        let kind =
            KeyType::from_name(kind).unwrap_or_else(|| panic!("kafka_configs.tsv: unknown type {kind} for {name}"));
        let key = KafkaKey {
            name,
            kind,
            default: (default != "\\N").then(|| unescape(default)),
            validator,
            update_mode: match dynamic {
                "per-broker" => UpdateMode::PerBroker,
                "cluster-wide" | "-" => UpdateMode::ClusterWide,
                _ => UpdateMode::ReadOnly,
            },
            internal: internal == "true",
            synonyms: synonyms
                .split(',')
                .filter(|s| !s.is_empty() && *s != "-")
                .map(|s| match s.split_once('*') {
                    Some((n, f)) => (n, f.parse().unwrap_or(1)),
                    None => (s, 1),
                })
                .collect(),
        };
        match scope {
            "broker" => keys.broker.insert(name, key),
            _ => keys.topic.insert(name, key),
        };
    }
    keys
}

/// A broker key of Kafka's, `None` for one Kafka does not define.
pub fn broker(name: &str) -> Option<&'static KafkaKey> {
    KEYS.broker.get(name)
}

/// A topic key of Kafka's.
pub fn topic(name: &str) -> Option<&'static KafkaKey> {
    KEYS.topic.get(name)
}

/// Every key of a scope, in name order.
pub fn all(scope: Scope) -> impl Iterator<Item = &'static KafkaKey> {
    match scope {
        Scope::Broker => KEYS.broker.values(),
        Scope::Topic => KEYS.topic.values(),
    }
}

/// A number of a numeric type, parsed as Kafka parses it (`Integer.parseInt` of the trimmed
/// value and so on); `None` when it does not parse.
fn number(kind: KeyType, v: &str) -> Option<f64> {
    match kind {
        KeyType::Short => v.parse::<i16>().ok().map(f64::from),
        KeyType::Int => v.parse::<i32>().ok().map(f64::from),
        KeyType::Long => v.parse::<i64>().ok().map(|n| n as f64),
        KeyType::Double => v.parse::<f64>().ok(),
        _ => None,
    }
}

/// A LIST value's elements as Kafka splits them: an empty (or blank) value is the empty list,
/// otherwise comma-separated with whitespace around the commas dropped.
fn list_items(v: &str) -> Vec<&str> {
    if v.trim().is_empty() {
        Vec::new()
    } else {
        v.trim().split(',').map(str::trim).collect()
    }
}

impl KafkaKey {
    /// Checks `value` as Kafka's `ConfigDef` does: the type first, then the validator. The
    /// error says what is wrong, in Kafka's words where it has them.
    pub fn check(&self, value: &str) -> Result<(), String> {
        self.check_as(value, self.validator)
    }

    /// [`KafkaKey::check`] with `validator` (in the generator's form) in place of Kafka's: for
    /// the few keys Fjord deliberately checks more loosely.
    pub fn check_as(&self, value: &str, validator: &str) -> Result<(), String> {
        let v = value.trim();
        match self.kind {
            KeyType::Boolean if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") => {
                return Err("Expected value to be either true or false".into());
            }
            KeyType::Short | KeyType::Int | KeyType::Long | KeyType::Double if number(self.kind, v).is_none() => {
                return Err(format!("Not a number of type {}", self.kind.name()));
            }
            KeyType::Class if v.is_empty() => return Err("Expected a Class instance or class name".into()),
            _ => {}
        }
        check_validator(validator, self.kind, v)
    }
}

fn check_validator(validator: &str, kind: KeyType, v: &str) -> Result<(), String> {
    let (form, arg) = validator.split_once(':').unwrap_or((validator, ""));
    let one_of = |set: &str| set.split('|').collect::<Vec<_>>().join(", ");
    match form {
        "range" => {
            let n = number(kind, v).ok_or_else(|| format!("Not a number of type {}", kind.name()))?;
            let (min, max) = arg.split_once(':').unwrap_or((arg, ""));
            if let Ok(min) = min.parse::<f64>() {
                if n < min {
                    return Err(format!("Value must be at least {min}"));
                }
            }
            if let Ok(max) = max.parse::<f64>() {
                if n > max {
                    return Err(format!("Value must be no more than {max}"));
                }
            }
            Ok(())
        }
        "ranges" => {
            let n = number(kind, v).ok_or_else(|| format!("Not a number of type {}", kind.name()))?;
            let fits = arg.split('|').any(|r| {
                let (min, max) = r.split_once(':').unwrap_or((r, r));
                min.parse::<f64>().is_ok_and(|m| n >= m) && max.parse::<f64>().is_ok_and(|m| n <= m)
            });
            if fits {
                Ok(())
            } else {
                Err(format!("Value must be in one of the ranges {}", arg.replace('|', ", ")))
            }
        }
        "in" if !arg.split('|').any(|s| s == v) => Err(format!("String must be one of: {}", one_of(arg))),
        "in-ci" if !arg.split('|').any(|s| s.eq_ignore_ascii_case(v)) => {
            Err(format!("String must be one of (case insensitive): {}", one_of(arg)))
        }
        "list-in" | "list-in-nonempty" | "list-any" | "list-any-nonempty" => {
            let items = list_items(v);
            if form.ends_with("-nonempty") && items.is_empty() {
                return Err("Empty list is not allowed".into());
            }
            let mut seen = std::collections::BTreeSet::new();
            for item in &items {
                if item.is_empty() {
                    return Err("Empty elements are not allowed".into());
                }
                if !seen.insert(*item) {
                    return Err("Values must not be duplicated".into());
                }
                if form.starts_with("list-in") && !arg.split('|').any(|s| s == *item) {
                    return Err(format!("Invalid value {item}: must be one of {}", one_of(arg)));
                }
            }
            Ok(())
        }
        "non-empty" if v.is_empty() => Err("String must be non-empty".into()),
        "non-empty-no-ctrl" if v.is_empty() || v.chars().any(char::is_control) => {
            Err("String must be non-empty and without ISO control characters".into())
        }
        "list-max-size" => {
            let max: usize = arg.parse().unwrap_or(usize::MAX);
            if list_items(v).len() > max {
                Err(format!("exceeds maximum list size of {max}"))
            } else {
                Ok(())
            }
        }
        "throttled-replicas" => {
            let ok = v == "*"
                || list_items(v).iter().all(|item| {
                    item.is_empty()
                        || item
                            .split_once(':')
                            .is_some_and(|(p, b)| p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok())
                });
            if ok {
                Ok(())
            } else {
                Err("must be the literal '*' or a list of replicas in the format [partitionId]:[brokerId]".into())
            }
        }
        "all" => arg.split(';').try_for_each(|part| check_validator(part, kind, v)),
        // quorum-voters, quorum-bootstrap-servers: parsed (and checked) by the configuration
        // itself; non-null, other: nothing Kafka checks that a value from a file can fail.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_parses_into_both_scopes() {
        let brokers = all(Scope::Broker).count();
        let topics = all(Scope::Topic).count();
        assert!(brokers > 300, "{brokers} broker keys");
        assert!(topics > 30, "{topics} topic keys");
        let retention = topic("retention.ms").expect("retention.ms");
        assert_eq!(retention.default.as_deref(), Some("604800000"));
        assert_eq!(
            retention.synonyms,
            vec![
                ("log.retention.ms", 1),
                ("log.retention.minutes", 60_000),
                ("log.retention.hours", 3_600_000)
            ]
        );
        assert_eq!(broker("ssl.keystore.password").map(|k| k.kind), Some(KeyType::Password));
        assert_eq!(broker("listeners").map(|k| k.update_mode), Some(UpdateMode::PerBroker));
    }

    #[test]
    fn every_default_passes_its_own_check() {
        for key in all(Scope::Broker).chain(all(Scope::Topic)) {
            if let Some(d) = &key.default {
                assert_eq!(key.check(d), Ok(()), "{} default {d:?}", key.name);
            }
        }
    }

    #[test]
    fn values_kafka_refuses_are_refused() {
        let check = |k: &str, v: &str| broker(k).expect(k).check(v);
        assert!(check("num.io.threads", "8").is_ok());
        assert_eq!(check("num.io.threads", "0"), Err("Value must be at least 1".into()));
        assert!(check("num.io.threads", "eight").is_err());
        assert!(check("auto.create.topics.enable", "TRUE").is_ok());
        assert!(check("auto.create.topics.enable", "yes").is_err());
        assert!(check("compression.type", "zstd").is_ok());
        assert!(check("compression.type", "brotli").is_err());
        assert!(check("log.cleanup.policy", "compact, delete").is_ok());
        assert!(check("log.cleanup.policy", "compact,compact").is_err());
        assert!(check("log.cleanup.policy", "shred").is_err());
        assert!(check("process.roles", "").is_err());
        assert!(check("compression.gzip.level", "5").is_ok());
        assert!(check("compression.gzip.level", "0").is_err());
        assert!(check("log.cleaner.min.cleanable.ratio", "0.3").is_ok());
        assert!(check("log.cleaner.min.cleanable.ratio", "1.5").is_err());
        assert!(check("group.consumer.migration.policy", "upgrade").is_ok());
        assert!(check("group.consumer.migration.policy", "sideways").is_err());
        let replicas = topic("leader.replication.throttled.replicas").expect("key");
        assert!(replicas.check("*").is_ok() && replicas.check("0:1, 1:2").is_ok());
        assert!(replicas.check("0-1").is_err());
    }
}
