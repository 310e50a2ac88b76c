//! DescribeConfigs and IncrementalAlterConfigs for topics (and describing the broker).

use std::collections::BTreeMap;

use fjord_controller::ConfigOp;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::str_bytes;
use crate::error::controller_error_code;
use crate::kafka_keys::{self, KeyType, Scope};
use crate::topic_config::{self, ConfigType, EffectiveConfig};
use crate::Broker;

/// `resource_type` values (Kafka's `ConfigResource.Type`).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Where a config value comes from (`DescribeConfigsResponse.ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic = 1,
    /// Set in the broker's properties.
    StaticBroker = 4,
    /// Kafka's default.
    Default = 5,
}

/// The configs of a topic, each with its source, optionally limited to `keys`.
pub fn config_entries(
    broker: &Broker,
    effective: &EffectiveConfig,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
) -> Vec<(String, String, ConfigSource)> {
    let kafka_defaults = topic_config::defaults();
    effective
        .values
        .iter()
        .filter(|(k, _)| keys.is_none_or(|ks| ks.iter().any(|w| w == *k)))
        .map(|(k, v)| {
            let source = if overrides.contains_key(k) {
                ConfigSource::DynamicTopic
            } else if broker.config.topic_defaults.get(k) != kafka_defaults.get(k) {
                ConfigSource::StaticBroker
            } else {
                ConfigSource::Default
            };
            (k.clone(), v.clone(), source)
        })
        .collect()
}

/// Every broker config as Kafka lists it: each non-internal key of Kafka's broker definitions,
/// its value Fjord's effective one where Fjord acts on the key, else the value given or Kafka's
/// default (none for a key without one; passwords are never shown).
fn broker_entries(broker: &Broker) -> Vec<(String, Option<String>, ConfigSource)> {
    let c = &broker.config;
    let listeners = |ls: &[crate::config::Listener]| {
        ls.iter()
            .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert("node.id".into(), c.node_id.to_string());
    out.insert("broker.id".into(), c.node_id.to_string());
    out.insert("listeners".into(), listeners(&c.listeners));
    out.insert("advertised.listeners".into(), listeners(&c.advertised_listeners));
    out.insert("log.dirs".into(), c.log_dir.display().to_string());
    if let Some(rack) = &c.rack {
        out.insert("broker.rack".into(), rack.clone());
    }
    out.insert("num.partitions".into(), c.num_partitions.to_string());
    out.insert(
        "default.replication.factor".into(),
        c.default_replication_factor.to_string(),
    );
    out.insert("auto.create.topics.enable".into(), c.auto_create_topics.to_string());
    out.insert("delete.topic.enable".into(), c.delete_topic_enable.to_string());
    out.insert(
        "socket.request.max.bytes".into(),
        c.socket_request_max_bytes.to_string(),
    );
    let buffer = |b: Option<usize>| b.map_or_else(|| "-1".to_string(), |n| n.to_string());
    out.insert("socket.send.buffer.bytes".into(), buffer(c.socket_send_buffer_bytes));
    out.insert(
        "socket.receive.buffer.bytes".into(),
        buffer(c.socket_receive_buffer_bytes),
    );
    out.insert(
        "log.flush.interval.messages".into(),
        c.flush_interval_messages.to_string(),
    );
    out.insert(
        "message.max.bytes".into(),
        c.topic_defaults.get("max.message.bytes").cloned().unwrap_or_default(),
    );
    out.insert(
        "compression.type".into(),
        c.topic_defaults.get("compression.type").cloned().unwrap_or_default(),
    );
    out.insert(
        "log.retention.ms".into(),
        c.topic_defaults.get("retention.ms").cloned().unwrap_or_default(),
    );
    let mut entries: BTreeMap<String, Option<String>> = kafka_keys::all(Scope::Broker)
        .filter(|k| !k.internal)
        .map(|k| {
            (
                k.name.to_string(),
                c.explicit.get(k.name).cloned().or_else(|| k.default.clone()),
            )
        })
        .collect();
    entries.extend(out.into_iter().map(|(k, v)| (k, Some(v))));
    entries
        .into_iter()
        .map(|(k, v)| {
            let source = if c.explicit.contains_key(&k) {
                ConfigSource::StaticBroker
            } else {
                ConfigSource::Default
            };
            (k, v, source)
        })
        .collect()
}

/// Answers DescribeConfigs.
pub fn describe(broker: &Broker, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let meta = broker.metadata();
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let keys: Option<Vec<String>> = r
            .configuration_keys
            .as_ref()
            .map(|ks| ks.iter().map(|k| k.to_string()).collect());
        let entries = match r.resource_type {
            RESOURCE_TOPIC => match meta.topics.get(r.resource_name.as_str()) {
                Some(t) => {
                    let effective = EffectiveConfig::new(&broker.config.topic_defaults, &t.configs);
                    config_entries(broker, &effective, &t.configs, keys.as_deref())
                        .into_iter()
                        .map(|(k, v, source)| (k, Some(v), source))
                        .collect::<Vec<_>>()
                }
                None => {
                    results.push(
                        base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Topic {} does not exist",
                                r.resource_name.as_str()
                            )))),
                    );
                    continue;
                }
            },
            RESOURCE_BROKER => {
                let name = r.resource_name.as_str();
                if !name.is_empty() && name != broker.node_id().to_string() {
                    results.push(
                        base.with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Unexpected broker id, expected {} or empty string, but received {name}",
                                broker.node_id()
                            )))),
                    );
                    continue;
                }
                broker_entries(broker)
                    .into_iter()
                    .filter(|(k, _, _)| keys.as_ref().is_none_or(|ks| ks.contains(k)))
                    .collect()
            }
            other => {
                results.push(
                    base.with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!("Unsupported resource type {other}")))),
                );
                continue;
            }
        };
        let configs = entries
            .into_iter()
            .map(|(name, value, source)| {
                let config_type = if r.resource_type == RESOURCE_BROKER {
                    kafka_keys::broker(&name).map(|k| k.kind)
                } else {
                    topic_config::config_type(&name)
                }
                .unwrap_or(ConfigType::String);
                // As Kafka: a password's value is never sent.
                let sensitive = config_type == KeyType::Password;
                let value = value.filter(|_| !sensitive).map(str_bytes);
                let synonyms = if req.include_synonyms {
                    vec![DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name.clone()))
                        .with_value(value.clone())
                        .with_source(source as i8)]
                } else {
                    Vec::new()
                };
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(value)
                    // No broker config changes without a restart in Fjord yet.
                    .with_read_only(r.resource_type == RESOURCE_BROKER)
                    .with_config_source(source as i8)
                    .with_is_sensitive(sensitive)
                    .with_synonyms(synonyms)
                    .with_config_type(config_type as i8)
            })
            .collect();
        results.push(base.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn list_items(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn list_append(base: &str, add: &str) -> String {
    let mut items: Vec<&str> = list_items(base).collect();
    for a in list_items(add) {
        if !items.contains(&a) {
            items.push(a);
        }
    }
    items.join(",")
}

fn list_subtract(base: &str, remove: &str) -> String {
    let gone: Vec<&str> = list_items(remove).collect();
    list_items(base)
        .filter(|i| !gone.contains(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// `config_operation` values (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Answers IncrementalAlterConfigs for topics; broker configs are static in Fjord for now.
pub async fn incremental_alter(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let meta = broker.metadata();
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let fail = |e: ResponseError, m: String| {
            base.clone()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(m)))
        };
        // No broker config is dynamic in Fjord, so deleting one finds nothing to delete and
        // succeeds, as on Kafka when none is set: `kafka-reassign-partitions.sh --verify` clears
        // its replication throttles this way.
        if r.resource_type == RESOURCE_BROKER && r.configs.iter().all(|c| c.config_operation == OP_DELETE) {
            responses.push(base);
            continue;
        }
        if r.resource_type != RESOURCE_TOPIC {
            responses.push(fail(
                ResponseError::InvalidRequest,
                "Fjord does not support dynamic broker configs yet; set them in server.properties".into(),
            ));
            continue;
        }
        let Some(topic) = meta.topics.get(r.resource_name.as_str()) else {
            responses.push(fail(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {} does not exist", r.resource_name.as_str()),
            ));
            continue;
        };
        let effective = EffectiveConfig::new(&broker.config.topic_defaults, &topic.configs);
        let mut ops = Vec::with_capacity(r.configs.len());
        let mut error = None;
        for c in &r.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            let Some(t) = topic_config::config_type(&key) else {
                error = Some((
                    ResponseError::InvalidConfig,
                    format!("Unknown topic config name: {key}"),
                ));
                break;
            };
            // Kafka appends to / subtracts from the value in force, which may be the default;
            // the controller only sees overrides, so a list without one starts from the default.
            let base =
                (!topic.configs.contains_key(&key)).then(|| effective.values.get(&key).cloned().unwrap_or_default());
            let op = match (c.config_operation, value) {
                (OP_DELETE, _) => ConfigOp::Delete(key),
                (OP_SET, Some(v)) => ConfigOp::Set(key, v),
                (OP_APPEND, Some(v)) if t == ConfigType::List => match base {
                    Some(b) => ConfigOp::Set(key, list_append(&b, &v)),
                    None => ConfigOp::Append(key, v),
                },
                (OP_SUBTRACT, Some(v)) if t == ConfigType::List => match base {
                    Some(b) => ConfigOp::Set(key, list_subtract(&b, &v)),
                    None => ConfigOp::Subtract(key, v),
                },
                (OP_APPEND | OP_SUBTRACT, Some(_)) => {
                    error = Some((
                        ResponseError::InvalidConfig,
                        format!("Config value append/subtract is not allowed for config key: {key}"),
                    ));
                    break;
                }
                (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                    error = Some((
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for: {key}"),
                    ));
                    break;
                }
                (other, _) => {
                    error = Some((
                        ResponseError::InvalidRequest,
                        format!("Unknown config operation {other}"),
                    ));
                    break;
                }
            };
            if let ConfigOp::Set(k, v) = &op {
                if let Err(m) = topic_config::validate(k, v) {
                    error = Some((ResponseError::InvalidConfig, m));
                    break;
                }
            }
            ops.push(op);
        }
        if let Some((e, m)) = error {
            responses.push(fail(e, m));
            continue;
        }
        if req.validate_only {
            responses.push(base);
            continue;
        }
        match broker
            .controller
            .alter_topic_configs(r.resource_name.as_str(), ops)
            .await
        {
            Ok(_) => responses.push(base),
            Err(e) => responses.push(fail(controller_error_code(&e), e.to_string())),
        }
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
