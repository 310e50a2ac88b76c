//! Topic-level configuration: the names Kafka defines, their types and defaults, and the
//! effective config of a topic (explicit overrides on top of the broker's defaults).

use std::collections::BTreeMap;

use fjord_protocol::batch::{parse_codec_config, Compression, TimestampType};

use crate::kafka_keys::{self, Scope};

/// Value types, as DescribeConfigs v3+ reports them.
pub use crate::kafka_keys::KeyType as ConfigType;

/// Kafka's defaults for every topic config: the topic keys of Kafka 4.4's `LogConfig`
/// ([`crate::kafka_keys`]) less the internal one.
pub fn defaults() -> BTreeMap<String, String> {
    kafka_keys::all(Scope::Topic)
        .filter(|k| !k.internal)
        .filter_map(|k| Some((k.name.to_string(), k.default.clone()?)))
        .collect()
}

/// The type of a topic config, `None` for a name Kafka does not define.
pub fn config_type(key: &str) -> Option<ConfigType> {
    kafka_keys::topic(key).map(|k| k.kind)
}

/// Checks a topic config value as Kafka's `LogConfig` does, with Kafka's message for what is
/// wrong.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let k = kafka_keys::topic(key).ok_or_else(|| format!("Unknown topic config name: {key}"))?;
    k.check(value)
        .map_err(|reason| format!("Invalid value {value} for configuration {key}: {reason}"))
}

/// The configs in force for one topic.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    /// Name -> value, every topic config.
    pub values: BTreeMap<String, String>,
}

impl EffectiveConfig {
    /// Overrides on top of the broker's defaults.
    pub fn new(broker_defaults: &BTreeMap<String, String>, overrides: &BTreeMap<String, String>) -> Self {
        let mut values = broker_defaults.clone();
        values.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        EffectiveConfig { values }
    }

    fn get<T: std::str::FromStr>(&self, key: &str, fallback: T) -> T {
        self.values
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(fallback)
    }

    /// `max.message.bytes`.
    pub fn max_message_bytes(&self) -> usize {
        usize::try_from(self.get::<i32>("max.message.bytes", 1_048_588)).unwrap_or(0)
    }

    /// `compression.type`; `None` for `producer`.
    pub fn target_codec(&self) -> Option<Compression> {
        self.values
            .get("compression.type")
            .and_then(|v| parse_codec_config(v.trim()))
            .flatten()
    }

    /// `message.timestamp.type`.
    pub fn timestamp_type(&self) -> TimestampType {
        match self.values.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        }
    }

    /// `retention.ms` and `retention.bytes` when `cleanup.policy` includes `delete`, else
    /// `None` (compacted-only topics keep everything).
    pub fn retention(&self) -> Option<(i64, i64)> {
        let delete = self.cleanup_policy_includes("delete").unwrap_or(true);
        delete.then(|| (self.get("retention.ms", 604_800_000), self.get("retention.bytes", -1)))
    }

    /// `message.timestamp.before.max.ms`.
    pub fn timestamp_before_max_ms(&self) -> i64 {
        self.get("message.timestamp.before.max.ms", i64::MAX)
    }

    /// `message.timestamp.after.max.ms`.
    pub fn timestamp_after_max_ms(&self) -> i64 {
        self.get("message.timestamp.after.max.ms", 3_600_000)
    }

    /// Whether `cleanup.policy` includes `compact`.
    pub fn compacted(&self) -> bool {
        self.cleanup_policy_includes("compact").unwrap_or(false)
    }

    /// Whether `cleanup.policy` lists `policy`; `None` when it is not set.
    fn cleanup_policy_includes(&self, policy: &str) -> Option<bool> {
        self.values
            .get("cleanup.policy")
            .map(|p| p.split(',').any(|x| x.trim() == policy))
    }

    /// What the cleaner applies, when `cleanup.policy` includes `compact`.
    pub fn compaction(&self) -> Option<fjord_storage::CompactionConfig> {
        self.compacted().then(|| fjord_storage::CompactionConfig {
            delete_retention_ms: self.get("delete.retention.ms", 86_400_000),
            min_compaction_lag_ms: self.get("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: self.get("max.compaction.lag.ms", i64::MAX),
            min_cleanable_ratio: self.get("min.cleanable.dirty.ratio", 0.5),
            segment_bytes: self.segment_bytes(),
        })
    }

    /// `segment.bytes`.
    pub fn segment_bytes(&self) -> u64 {
        u64::try_from(self.get::<i32>("segment.bytes", 1 << 30))
            .unwrap_or(1 << 30)
            .max(1)
    }

    /// `segment.ms`.
    pub fn segment_ms(&self) -> i64 {
        self.get("segment.ms", 604_800_000)
    }

    /// `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> usize {
        usize::try_from(self.get::<i32>("min.insync.replicas", 1)).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_kafka() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("compression.type", "zstd").is_ok());
        assert!(validate("compression.type", "brotli").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let mut o = BTreeMap::new();
        o.insert("compression.type".to_string(), "lz4".to_string());
        let c = EffectiveConfig::new(&defaults(), &o);
        assert_eq!(c.target_codec(), Some(Compression::Lz4));
        assert_eq!(c.max_message_bytes(), 1_048_588);
        assert_eq!(EffectiveConfig::new(&defaults(), &BTreeMap::new()).target_codec(), None);
    }
}

/// What the produce path needs from a topic's config, parsed once.
#[derive(Debug, Clone)]
pub struct ProduceSettings {
    /// `max.message.bytes`.
    pub max_message_bytes: usize,
    /// `compression.type`; `None` for `producer`.
    pub target_codec: Option<Compression>,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `min.insync.replicas`: acks=all needs this many in-sync replicas.
    pub min_insync_replicas: usize,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
}

impl From<&EffectiveConfig> for ProduceSettings {
    fn from(c: &EffectiveConfig) -> Self {
        ProduceSettings {
            max_message_bytes: c.max_message_bytes(),
            target_codec: c.target_codec(),
            timestamp_type: c.timestamp_type(),
            timestamp_before_max_ms: c.timestamp_before_max_ms(),
            timestamp_after_max_ms: c.timestamp_after_max_ms(),
            min_insync_replicas: c.min_insync_replicas(),
            compacted: c.compacted(),
        }
    }
}

/// Per-topic [`ProduceSettings`], valid for one metadata snapshot: building an
/// [`EffectiveConfig`] per produce request cost a map clone and string parses each time.
#[derive(Debug, Default)]
pub struct SettingsCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// The snapshot the entries were built from; any metadata change replaces the snapshot.
    meta: Option<std::sync::Arc<fjord_controller::ClusterMetadata>>,
    topics: std::collections::HashMap<fjord_controller::Uuid, std::sync::Arc<ProduceSettings>>,
}

impl SettingsCache {
    /// The settings of `topic` as of `meta`; `broker_defaults` is asked only when they are
    /// not cached (the produce path calls this for every request).
    pub fn get<D: std::ops::Deref<Target = BTreeMap<String, String>>>(
        &self,
        broker_defaults: impl FnOnce() -> D,
        meta: &std::sync::Arc<fjord_controller::ClusterMetadata>,
        topic: &fjord_controller::TopicMeta,
    ) -> std::sync::Arc<ProduceSettings> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.meta.as_ref().is_some_and(|m| std::sync::Arc::ptr_eq(m, meta)) {
            inner.meta = Some(meta.clone());
            inner.topics.clear();
        }
        inner
            .topics
            .entry(topic.topic_id)
            .or_insert_with(|| {
                std::sync::Arc::new(ProduceSettings::from(&EffectiveConfig::new(
                    &broker_defaults(),
                    &topic.configs,
                )))
            })
            .clone()
    }
}
