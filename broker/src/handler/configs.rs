//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs, for topics and brokers (the
//! dynamic broker configs themselves are in [`crate::dynamic`]).

use std::collections::BTreeMap;

use fjord_controller::{ClusterMetadata, ConfigOp};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::str_bytes;
use crate::dynamic::{self, ConfigSource, Op};
use crate::error::controller_error_code;
use crate::kafka_keys::{self, KeyType, Scope, UpdateMode};
use crate::topic_config::{self, ConfigType, EffectiveConfig};
use crate::Broker;

/// `resource_type` values (Kafka's `ConfigResource.Type`).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// A config as DescribeConfigs (and CreateTopics) describe it.
pub struct Entry {
    pub name: String,
    /// `None` for a key without a value (or a password, never shown).
    pub value: Option<String>,
    pub source: ConfigSource,
    /// Kafka's synonyms, highest precedence first (see [`dynamic::synonyms`]).
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
    pub read_only: bool,
}

/// The configs of a topic with `overrides`, optionally limited to `keys`: the values in force
/// (the override, else the broker default as dynamic configs leave it), with Kafka's sources
/// and synonyms (the override, then the broker keys that supply the default, level by level).
pub fn config_entries(
    broker: &Broker,
    meta: &ClusterMetadata,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
) -> Vec<Entry> {
    let live = broker.live(meta);
    let effective = EffectiveConfig::new(&live.topic_defaults, overrides);
    effective
        .values
        .iter()
        .filter(|(k, _)| keys.is_none_or(|ks| ks.iter().any(|w| w == *k)))
        .map(|(k, v)| {
            let mut synonyms = Vec::new();
            if let Some(o) = overrides.get(k) {
                synonyms.push((k.clone(), Some(o.clone()), ConfigSource::DynamicTopic));
            }
            let names: Vec<&str> = kafka_keys::topic(k)
                .map(|t| t.synonyms.iter().map(|(b, _)| *b).collect())
                .unwrap_or_default();
            if let Some(primary) = names.first() {
                synonyms.extend(dynamic::synonyms(&broker.config, meta, &names, primary));
            }
            Entry {
                name: k.clone(),
                value: Some(v.clone()),
                source: synonyms.first().map_or(ConfigSource::Default, |s| s.2),
                synonyms,
                read_only: false,
            }
        })
        .collect()
}

/// Every broker config as Kafka lists it: each non-internal key of Kafka's broker definitions,
/// its value Fjord's effective one where Fjord acts on the key, else the value given or Kafka's
/// default (none for a key without one; passwords are never shown).
fn broker_entries(broker: &Broker, meta: &ClusterMetadata) -> Vec<Entry> {
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
    // Keys set only dynamically (Fjord's own, or keys Kafka does not define) are listed too.
    for (layer, _) in dynamic::layers(meta, broker.node_id()) {
        for k in layer.iter().flat_map(|l| l.keys()) {
            entries.entry(k.clone()).or_insert(None);
        }
    }
    entries
        .into_iter()
        .map(|(k, v)| {
            let names = dynamic::broker_synonyms(&k);
            let names = if names.is_empty() { vec![k.as_str()] } else { names };
            let synonyms = dynamic::synonyms(&broker.config, meta, &names, &k);
            // A dynamic value wins over what the broker started with.
            let (value, source) = match synonyms.first() {
                Some((_, v, s @ (ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker))) => (v.clone(), *s),
                Some((_, _, s)) => (v, *s),
                None => (v, ConfigSource::Default),
            };
            let read_only = !dynamic::FJORD_DYNAMIC_KEYS.contains(&k.as_str())
                && kafka_keys::broker(&k).is_none_or(|d| d.update_mode == UpdateMode::ReadOnly);
            Entry {
                name: k,
                value,
                source,
                synonyms,
                read_only,
            }
        })
        .collect()
}

/// The `""` broker resource: the cluster-wide dynamic configs alone, as Kafka lists them.
fn cluster_default_entries(meta: &ClusterMetadata) -> Vec<Entry> {
    meta.broker_configs
        .get("")
        .into_iter()
        .flatten()
        .map(|(k, v)| Entry {
            name: k.clone(),
            value: Some(v.clone()),
            source: ConfigSource::DynamicDefaultBroker,
            synonyms: vec![(k.clone(), Some(v.clone()), ConfigSource::DynamicDefaultBroker)],
            read_only: false,
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
                Some(t) => config_entries(broker, &meta, &t.configs, keys.as_deref()),
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
                let entries = if name.is_empty() {
                    cluster_default_entries(&meta)
                } else {
                    broker_entries(broker, &meta)
                };
                entries
                    .into_iter()
                    .filter(|e| keys.as_ref().is_none_or(|ks| ks.contains(&e.name)))
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
            .map(|e| {
                let config_type = if r.resource_type == RESOURCE_BROKER {
                    kafka_keys::broker(&e.name).map(|k| k.kind)
                } else {
                    topic_config::config_type(&e.name)
                }
                .unwrap_or(ConfigType::String);
                // As Kafka: a password's value is never sent, nor its synonyms'.
                let sensitive = config_type == KeyType::Password;
                let shown = |v: Option<String>| v.filter(|_| !sensitive).map(str_bytes);
                let synonyms = if req.include_synonyms {
                    e.synonyms
                        .into_iter()
                        .map(|(name, value, source)| {
                            DescribeConfigsSynonym::default()
                                .with_name(str_bytes(name))
                                .with_value(shown(value))
                                .with_source(source as i8)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(e.name))
                    .with_value(shown(e.value))
                    .with_read_only(e.read_only)
                    .with_config_source(e.source as i8)
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
        if r.resource_type == RESOURCE_BROKER {
            let mut changes = Vec::with_capacity(r.configs.len());
            for c in &r.configs {
                let op = match c.config_operation {
                    OP_SET => Op::Set,
                    OP_DELETE => Op::Delete,
                    OP_APPEND => Op::Append,
                    OP_SUBTRACT => Op::Subtract,
                    other => {
                        changes.clear();
                        responses.push(fail(
                            ResponseError::InvalidRequest,
                            format!("Unknown config operation {other}"),
                        ));
                        break;
                    }
                };
                changes.push((op, c.name.to_string(), c.value.as_ref().map(|v| v.to_string())));
            }
            if changes.len() != r.configs.len() {
                continue;
            }
            let outcome = alter_broker(
                broker,
                &meta,
                r.resource_name.as_str(),
                &changes,
                false,
                req.validate_only,
            )
            .await;
            responses.push(match outcome {
                Ok(()) => base,
                Err((e, m)) => fail(e, m),
            });
            continue;
        }
        if r.resource_type != RESOURCE_TOPIC {
            responses.push(fail(
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {}", r.resource_type),
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
        let effective = EffectiveConfig::new(&broker.live(&meta).topic_defaults, &topic.configs);
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

/// The operations that turn `current` into `next`: a DELETE for each key that goes, a SET for
/// each key new or changed.
fn ops_between(current: &BTreeMap<String, String>, next: &BTreeMap<String, String>) -> Vec<ConfigOp> {
    let mut ops: Vec<ConfigOp> = current
        .keys()
        .filter(|k| !next.contains_key(*k))
        .map(|k| ConfigOp::Delete(k.clone()))
        .collect();
    ops.extend(
        next.iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone())),
    );
    ops
}

/// Changes a broker resource's dynamic configs (`""`: every broker's; this node's id: its
/// own): `changes` applied to what the resource has (`replace`: to nothing, AlterConfigs'
/// semantics), checked as Kafka checks them, and written through the controller unless
/// `validate_only`.
async fn alter_broker(
    broker: &Broker,
    meta: &ClusterMetadata,
    resource: &str,
    changes: &[(Op, String, Option<String>)],
    replace: bool,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    dynamic::check_resource(resource, broker.node_id())?;
    let current = meta.broker_configs.get(resource).cloned().unwrap_or_default();
    let start = if replace { BTreeMap::new() } else { current.clone() };
    // APPEND and SUBTRACT start from the value in force where the resource sets none.
    let in_force = |key: &str| {
        let entries = broker_entries(broker, meta);
        entries.into_iter().find(|e| e.name == key).and_then(|e| e.value)
    };
    let next = dynamic::apply_changes(resource, &start, changes, in_force)?;
    if validate_only {
        return Ok(());
    }
    let ops = ops_between(&current, &next);
    if ops.is_empty() {
        return Ok(());
    }
    broker
        .controller
        .alter_broker_configs(resource, ops)
        .await
        .map_err(|e| (controller_error_code(&e), e.to_string()))?;
    tracing::info!(
        resource = if resource.is_empty() { "cluster default" } else { resource },
        keys = ?next.keys().collect::<Vec<_>>(),
        "dynamic broker configs changed"
    );
    Ok(())
}

/// Answers AlterConfigs (the legacy API, which Kafka still serves): each resource's dynamic
/// configs become exactly the ones given, every other one removed.
pub async fn alter(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let meta = broker.metadata();
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = LegacyResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.as_str();
        let given: Vec<(String, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = match r.resource_type {
            RESOURCE_BROKER => {
                let changes: Vec<(Op, String, Option<String>)> =
                    given.into_iter().map(|(k, v)| (Op::Set, k, v)).collect();
                alter_broker(broker, &meta, name, &changes, true, req.validate_only).await
            }
            RESOURCE_TOPIC => replace_topic_configs(broker, &meta, name, given, req.validate_only).await,
            other => Err((
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            )),
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err((e, m)) => base.with_error_code(e.code()).with_error_message(Some(str_bytes(m))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs on a topic: its overrides become `given`, as Kafka's controller replaces them.
async fn replace_topic_configs(
    broker: &Broker,
    meta: &ClusterMetadata,
    name: &str,
    given: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let Some(topic) = meta.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        ));
    };
    let nulls: Vec<&str> = given
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            format!("Null value not supported for : {}", nulls.join(", ")),
        ));
    }
    let mut next = BTreeMap::new();
    for (k, v) in given {
        let v = v.unwrap_or_default();
        topic_config::validate(&k, &v).map_err(|m| (ResponseError::InvalidConfig, m))?;
        if next.insert(k.clone(), v).is_some() {
            return Err((
                ResponseError::InvalidRequest,
                "Error due to duplicate config keys".into(),
            ));
        }
    }
    if validate_only {
        return Ok(());
    }
    let ops = ops_between(&topic.configs, &next);
    if ops.is_empty() {
        return Ok(());
    }
    broker
        .controller
        .alter_topic_configs(name, ops)
        .await
        .map(|_| ())
        .map_err(|e| (controller_error_code(&e), e.to_string()))
}
