//! Dynamic broker configs, as Kafka has them in KRaft mode: IncrementalAlterConfigs and
//! AlterConfigs on BROKER resources store values in the cluster metadata, under `""` for every
//! broker and under a node id for one. They take effect without a restart, and rank as Kafka
//! ranks them: a topic's own override, then this broker's dynamic value, then the cluster's,
//! then the properties file, then Kafka's default.
//!
//! What Fjord acts on at once: every broker default of a topic config (`log.retention.ms`,
//! `message.max.bytes`, `min.insync.replicas`, `log.segment.bytes`, `log.cleanup.policy`, the
//! cleaner's topic defaults, ...), the cleaner's own settings (`log.cleaner.threads`,
//! `log.cleaner.backoff.ms`, `log.cleaner.io.max.bytes.per.second`,
//! `log.cleaner.dedupe.buffer.size`, `log.cleaner.io.buffer.load.factor`) and Fjord's
//! `log.dir.min.free.bytes`. The other keys Kafka lets change are accepted, stored and
//! described, like the static keys Fjord does not act on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;

use crate::config::{CleanerConfig, Config};
use crate::kafka_keys::{self, KeyType, Scope, UpdateMode};

/// Fjord's own keys that may change at run time, cluster-wide.
pub const FJORD_DYNAMIC_KEYS: &[&str] = &["log.dir.min.free.bytes"];

/// Where a config value comes from (DescribeConfigs `ConfigSource`, Kafka's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic = 1,
    /// Set dynamically for this broker.
    DynamicBroker = 2,
    /// Set dynamically for every broker (the `""` resource).
    DynamicDefaultBroker = 3,
    /// Set in the broker's properties.
    StaticBroker = 4,
    /// Kafka's default.
    Default = 5,
}

/// The settings that change at run time, as they are now.
#[derive(Debug)]
pub struct Live {
    /// Broker-level defaults of topic configs, by topic key (as [`Config::topic_defaults`]).
    pub topic_defaults: Arc<BTreeMap<String, String>>,
    /// The log cleaner's settings.
    pub cleaner: CleanerConfig,
    /// `log.dir.min.free.bytes`.
    pub min_free_bytes: Option<u64>,
}

/// Dynamic configs by resource (`""` or a node id), as the metadata holds them.
type ByResource = BTreeMap<String, BTreeMap<String, String>>;

/// [`Live`] for the metadata's dynamic configs, computed again only when they change.
#[derive(Debug, Default)]
pub struct LiveCache(Mutex<Option<(ByResource, Arc<Live>)>>);

impl LiveCache {
    pub fn get(&self, config: &Config, meta: &ClusterMetadata) -> Arc<Live> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((source, live)) = cached.as_ref() {
            if *source == meta.broker_configs {
                return live.clone();
            }
        }
        let live = Arc::new(compute(config, meta));
        *cached = Some((meta.broker_configs.clone(), live.clone()));
        live
    }
}

/// The dynamic layers that apply to `node_id`, highest precedence first.
pub fn layers(meta: &ClusterMetadata, node_id: i32) -> [(Option<&BTreeMap<String, String>>, ConfigSource); 2] {
    [
        (
            meta.broker_configs.get(&node_id.to_string()),
            ConfigSource::DynamicBroker,
        ),
        (meta.broker_configs.get(""), ConfigSource::DynamicDefaultBroker),
    ]
}

/// A broker key's value scaled to its topic key's unit (`log.retention.hours` to ms).
fn scaled(value: &str, factor: i64) -> String {
    if factor == 1 {
        return value.trim().to_string();
    }
    match value.trim().parse::<i64>() {
        Ok(v) if v < 0 => "-1".to_string(),
        Ok(v) => v.saturating_mul(factor).to_string(),
        Err(_) => value.trim().to_string(),
    }
}

fn compute(config: &Config, meta: &ClusterMetadata) -> Live {
    let layers = layers(meta, config.node_id);
    let mut topic_defaults = config.topic_defaults.clone();
    for topic_key in kafka_keys::all(Scope::Topic) {
        if !topic_defaults.contains_key(topic_key.name) {
            continue;
        }
        // Kafka: the first layer that sets any synonym, and in it the first synonym set.
        let found = layers.iter().find_map(|(layer, _)| {
            let layer = (*layer)?;
            topic_key
                .synonyms
                .iter()
                .find_map(|(broker_key, factor)| layer.get(*broker_key).map(|v| scaled(v, *factor)))
        });
        if let Some(v) = found {
            topic_defaults.insert(topic_key.name.to_string(), v);
        }
    }
    let mut cleaner = config.cleaner.clone();
    let mut min_free_bytes = config.min_free_bytes;
    // Lowest precedence first: this broker's values are applied last.
    for (layer, _) in layers.iter().rev() {
        for (k, v) in layer.iter().flat_map(|l| l.iter()) {
            let v = v.trim();
            match k.as_str() {
                "log.cleaner.threads" => set(&mut cleaner.threads, v),
                "log.cleaner.backoff.ms" => set(&mut cleaner.backoff_ms, v),
                "log.cleaner.dedupe.buffer.size" => set(&mut cleaner.dedupe_buffer_size, v),
                "log.cleaner.io.buffer.load.factor" => set(&mut cleaner.load_factor, v),
                "log.cleaner.io.max.bytes.per.second" => set(&mut cleaner.io_max_bytes_per_second, v),
                "log.dir.min.free.bytes" => {
                    if let Ok(n) = v.parse::<i64>() {
                        min_free_bytes = u64::try_from(n).ok();
                    }
                }
                _ => {}
            }
        }
    }
    Live {
        topic_defaults: Arc::new(topic_defaults),
        cleaner,
        min_free_bytes,
    }
}

/// Values were checked when they were stored; one that does not parse leaves the setting as
/// it was.
fn set<T: std::str::FromStr>(field: &mut T, value: &str) {
    if let Ok(v) = value.parse() {
        *field = v;
    }
}

/// One change of a broker resource's dynamic configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Delete,
    Append,
    Subtract,
}

/// Whether the broker key is a list (APPEND and SUBTRACT apply).
fn is_list(key: &str) -> bool {
    kafka_keys::broker(key).is_some_and(|k| k.kind == KeyType::List)
}

/// The name a node-id resource must have on this node: `""` or its own id. Kafka's
/// ConfigAdminManager answers for itself only; the Admin client sends a broker's resource to
/// that broker.
pub fn check_resource(name: &str, node_id: i32) -> Result<(), (ResponseError, String)> {
    if name.is_empty() {
        return Ok(());
    }
    match name.parse::<i32>() {
        Err(_) => Err((
            ResponseError::InvalidRequest,
            format!("Node id must be an integer, but it is: {name}"),
        )),
        Ok(id) if id != node_id => Err((
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {node_id}, but received {name}"),
        )),
        Ok(_) => Ok(()),
    }
}

/// Applies `changes` to `current` (a resource's stored dynamic configs) and checks the result
/// as Kafka's ConfigAdminManager and DynamicBrokerConfig do, with their error codes and
/// messages. `base` gives the value an APPEND or SUBTRACT starts from when the resource does
/// not set the key. Returns the new set of the resource's configs.
pub fn apply_changes(
    resource: &str,
    current: &BTreeMap<String, String>,
    changes: &[(Op, String, Option<String>)],
    base: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let mut seen = BTreeSet::new();
    if !changes.iter().all(|(_, k, _)| seen.insert(k.as_str())) {
        return Err((
            ResponseError::InvalidRequest,
            "Error due to duplicate config keys".into(),
        ));
    }
    let nulls: Vec<&str> = changes
        .iter()
        .filter(|(op, _, v)| *op != Op::Delete && v.is_none())
        .map(|(_, k, _)| k.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            format!("Null value not supported for : {}", nulls.join(", ")),
        ));
    }
    let mut next = current.clone();
    for (op, key, value) in changes {
        let value = value.clone().unwrap_or_default();
        match op {
            Op::Set => {
                next.insert(key.clone(), value);
            }
            Op::Delete => {
                next.remove(key);
            }
            Op::Append | Op::Subtract => {
                if kafka_keys::broker(key).is_none() {
                    // Kafka looks the key's definition up and fails without a message.
                    return Err((ResponseError::UnknownServerError, String::new()));
                }
                if !is_list(key) {
                    let what = if *op == Op::Append { "append" } else { "subtract" };
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("Config value {what} is not allowed for config key: {key}"),
                    ));
                }
                let old = next.get(key).cloned().or_else(|| base(key)).unwrap_or_default();
                let mut items: Vec<String> = list(&old);
                let given = list(&value);
                if *op == Op::Append {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                next.insert(key.clone(), items.join(","));
            }
        }
    }
    check_set(resource, &next)?;
    Ok(next)
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Kafka's `DynamicBrokerConfig.validateConfigs`, in its order: keys that cannot change at
/// run time, then each value, then keys that only a single broker may set. The key lists are
/// printed as Kafka 4.4's Java sets print.
fn check_set(resource: &str, configs: &BTreeMap<String, String>) -> Result<(), (ResponseError, String)> {
    let java_set = |keys: Vec<&str>| format!("[{}]", keys.join(", "));
    let read_only: Vec<&str> = configs
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !FJORD_DYNAMIC_KEYS.contains(k)
                && kafka_keys::broker(k).is_some_and(|d| d.update_mode == UpdateMode::ReadOnly)
        })
        .collect();
    if !read_only.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            format!("Cannot update these configs dynamically: {}", java_set(read_only)),
        ));
    }
    for (k, v) in configs {
        let reason = match kafka_keys::broker(k) {
            Some(def) => def.check(v).err(),
            None if k == "log.dir.min.free.bytes" => match v.trim().parse::<i64>() {
                Ok(n) if n >= -1 => None,
                Ok(_) => Some("Value must be at least -1".to_string()),
                Err(_) => Some("Not a number of type LONG".to_string()),
            },
            // Kafka accepts keys it does not define on a broker resource.
            None => None,
        };
        if let Some(reason) = reason {
            return Err((
                ResponseError::InvalidRequest,
                format!("Invalid value {v} for configuration {k}: {reason}"),
            ));
        }
    }
    if resource.is_empty() {
        let per_broker: Vec<&str> = configs
            .keys()
            .map(String::as_str)
            .filter(|k| kafka_keys::broker(k).is_some_and(|d| d.update_mode == UpdateMode::PerBroker))
            .collect();
        if !per_broker.is_empty() {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "Cannot update these configs at default cluster level, broker id must be specified: {}",
                    java_set(per_broker)
                ),
            ));
        }
    }
    Ok(())
}

/// Kafka's synonyms of a broker key, in precedence order (`brokerConfigSynonyms`): the broker
/// keys that set the same topic default (`log.retention.ms`, `log.retention.minutes`,
/// `log.retention.hours`), or the key alone.
pub fn broker_synonyms(key: &str) -> Vec<&'static str> {
    kafka_keys::all(Scope::Topic)
        .find(|t| t.synonyms.len() > 1 && t.synonyms.iter().any(|(b, _)| *b == key))
        .map(|t| t.synonyms.iter().map(|(b, _)| *b).collect())
        .unwrap_or_else(|| kafka_keys::broker(key).map(|k| vec![k.name]).unwrap_or_default())
}

/// Kafka's synonym list for a broker key seen from `node_id` (`ConfigHelper.configSynonyms`):
/// level by level (this broker's dynamic value, the cluster's, the properties file, the
/// default), each synonym set at that level, then everything before the first entry named
/// `primary` dropped.
pub fn synonyms(
    config: &Config,
    meta: &ClusterMetadata,
    names: &[&str],
    primary: &str,
) -> Vec<(String, Option<String>, ConfigSource)> {
    let mut all = Vec::new();
    for (layer, source) in layers(meta, config.node_id) {
        for n in names {
            if let Some(v) = layer.and_then(|l| l.get(*n)) {
                all.push((n.to_string(), Some(v.clone()), source));
            }
        }
    }
    for n in names {
        if let Some(v) = config.explicit.get(*n) {
            all.push((n.to_string(), Some(v.clone()), ConfigSource::StaticBroker));
        }
    }
    for n in names {
        if let Some(v) = kafka_keys::broker(n).and_then(|k| k.default.clone()) {
            all.push((n.to_string(), Some(v), ConfigSource::Default));
        }
    }
    let first = all.iter().position(|(n, _, _)| n == primary).unwrap_or(all.len());
    all.split_off(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[(Op, &str, Option<&str>)]) -> Vec<(Op, String, Option<String>)> {
        list.iter()
            .map(|(op, k, v)| (*op, k.to_string(), v.map(String::from)))
            .collect()
    }

    #[test]
    fn changes_are_checked_as_kafka_checks_them() {
        let none = |_: &str| None;
        let empty = BTreeMap::new();
        let ok = apply_changes(
            "",
            &empty,
            &changes(&[(Op::Set, "log.retention.ms", Some("1000"))]),
            none,
        )
        .expect("a cluster-wide key");
        assert_eq!(ok["log.retention.ms"], "1000");
        let err = |r: Result<_, (ResponseError, String)>| r.expect_err("refused");
        let (code, m) = err(apply_changes(
            "",
            &empty,
            &changes(&[(Op::Set, "log.retention.hours", Some("1"))]),
            none,
        ));
        assert_eq!(
            (code, m.as_str()),
            (
                ResponseError::InvalidRequest,
                "Cannot update these configs dynamically: [log.retention.hours]"
            )
        );
        let (code, m) = err(apply_changes(
            "1",
            &empty,
            &changes(&[(Op::Set, "log.retention.ms", Some("abc"))]),
            none,
        ));
        assert_eq!(
            (code, m.as_str()),
            (
                ResponseError::InvalidRequest,
                "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"
            )
        );
        let (code, m) = err(apply_changes("", &empty, &changes(&[(Op::Set, "a", None)]), none));
        assert_eq!(
            (code, m.as_str()),
            (ResponseError::InvalidRequest, "Null value not supported for : a")
        );
        let (code, _) = err(apply_changes(
            "",
            &empty,
            &changes(&[(Op::Set, "a", Some("1")), (Op::Delete, "a", None)]),
            none,
        ));
        assert_eq!(code, ResponseError::InvalidRequest);
        let (code, m) = err(apply_changes(
            "",
            &empty,
            &changes(&[(Op::Append, "log.retention.ms", Some("1"))]),
            none,
        ));
        assert_eq!(
            (code, m.as_str()),
            (
                ResponseError::InvalidConfig,
                "Config value append is not allowed for config key: log.retention.ms"
            )
        );
        // A list starts from the value in force when the resource does not set it.
        let appended = apply_changes(
            "",
            &empty,
            &changes(&[(Op::Append, "log.cleanup.policy", Some("compact"))]),
            |_| Some("delete".into()),
        )
        .expect("a list");
        assert_eq!(appended["log.cleanup.policy"], "delete,compact");
        // Fjord's own reserve, and a key Kafka does not define (accepted, as Kafka does).
        assert!(apply_changes(
            "",
            &empty,
            &changes(&[(Op::Set, "log.dir.min.free.bytes", Some("-2"))]),
            none
        )
        .is_err());
        assert!(apply_changes("", &empty, &changes(&[(Op::Set, "custom.key", Some("x"))]), none).is_ok());
    }

    #[test]
    fn resource_names_are_this_node_or_empty() {
        assert!(check_resource("", 1).is_ok());
        assert!(check_resource("1", 1).is_ok());
        assert_eq!(
            check_resource("2", 1).expect_err("another").1,
            "Unexpected broker id, expected 1, but received 2"
        );
        assert_eq!(
            check_resource("x", 1).expect_err("not a number").1,
            "Node id must be an integer, but it is: x"
        );
    }

    #[test]
    fn the_layers_rank_as_kafka_ranks_them() {
        let config = Config::from_properties(BTreeMap::from([("log.retention.hours".to_string(), "1".to_string())]))
            .expect("config");
        let mut meta = ClusterMetadata::default();
        let cache = LiveCache::default();
        assert_eq!(cache.get(&config, &meta).topic_defaults["retention.ms"], "3600000");
        meta.broker_configs.insert(
            "".into(),
            BTreeMap::from([
                ("log.retention.ms".to_string(), "5000".to_string()),
                ("log.cleaner.threads".to_string(), "3".to_string()),
                ("message.max.bytes".to_string(), "2000".to_string()),
            ]),
        );
        let live = cache.get(&config, &meta);
        assert_eq!(live.topic_defaults["retention.ms"], "5000");
        assert_eq!(live.topic_defaults["max.message.bytes"], "2000");
        assert_eq!(live.cleaner.threads, 3);
        meta.broker_configs.insert(
            config.node_id.to_string(),
            BTreeMap::from([("log.retention.ms".to_string(), "7000".to_string())]),
        );
        assert_eq!(cache.get(&config, &meta).topic_defaults["retention.ms"], "7000");
        let names = broker_synonyms("log.retention.ms");
        assert_eq!(
            names,
            ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
        );
        let syn = synonyms(&config, &meta, &names, "log.retention.ms");
        let got: Vec<(&str, ConfigSource)> = syn.iter().map(|(n, _, s)| (n.as_str(), *s)).collect();
        assert_eq!(
            got,
            [
                ("log.retention.ms", ConfigSource::DynamicBroker),
                ("log.retention.ms", ConfigSource::DynamicDefaultBroker),
                ("log.retention.hours", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
    }
}
