//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, and
//! the auto-creation Metadata triggers.

use std::collections::{BTreeMap, HashSet};

use fjord_controller::{TopicMeta, Uuid};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::configs::config_entries;
use super::{str_bytes, topic_name, validate_topic_name};
use crate::error::{controller_error_code, storage_error_code};
use crate::topic_config;
use crate::{partition_id, Broker};

/// Creates a topic with the broker's defaults, as Metadata's auto-creation does.
pub async fn auto_create(broker: &Broker, name: &str) -> Result<TopicMeta, ResponseError> {
    let topic = broker
        .controller
        .create_topic(
            name,
            Uuid::new_v4(),
            broker.config.num_partitions,
            broker.config.default_replication_factor,
            BTreeMap::new(),
        )
        .await
        .map_err(|e| controller_error_code(&e))?;
    broker.reconcile().await.map_err(|e| {
        tracing::error!(error = %e, "auto-created topic has no storage");
        ResponseError::KafkaStorageError
    })?;
    tracing::info!(topic = name, partitions = topic.partitions.len(), "auto-created topic");
    Ok(topic)
}

struct Failure(ResponseError, String);

/// Kafka's checks of one partition's manual replica assignment
/// (`ReplicationControlManager.validateManualPartitionAssignment`), with its texts: a refusal,
/// or `None`.
fn manual_assignment_error(replicas: &[i32], known: &HashSet<i32>, rf: Option<usize>) -> Option<String> {
    if replicas.is_empty() {
        return Some("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    let mut previous = None;
    for b in &sorted {
        if !known.contains(b) {
            return Some(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            ));
        }
        if previous == Some(*b) {
            return Some(format!(
                "The manual partition assignment includes the broker {b} more than once."
            ));
        }
        previous = Some(*b);
    }
    match rf {
        Some(rf) if rf != sorted.len() => Some(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent \
             with previous partitions, which have {rf} replica(s).",
            sorted.len()
        )),
        _ => None,
    }
}

/// A CreateTopics entry, checked.
struct Creatable {
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    /// Each partition's replicas, when the request assigns them.
    assignment: Option<Vec<Vec<i32>>>,
}

/// Checks a CreateTopics entry and resolves its partition count and replication factor.
fn check_creatable(
    broker: &Broker,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Creatable, Failure> {
    validate_topic_name(t.name.as_str()).map_err(|m| Failure(ResponseError::InvalidTopicException, m))?;
    // One snapshot for every check below.
    let meta = broker.metadata();
    if meta.topics.contains_key(t.name.as_str()) {
        return Err(Failure(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name.as_str()),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = c.value.as_ref() else {
            return Err(Failure(
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic configs: {}", c.name.as_str()),
            ));
        };
        topic_config::validate(c.name.as_str(), value.as_str())
            .map_err(|m| Failure(ResponseError::InvalidConfig, m))?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    let brokers = meta.brokers.len().max(1);
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(Failure(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        // Checked here for validate_only and to fail fast; the controller checks again, as
        // Kafka's does, against the brokers registered when the topic is made.
        let rf = t.assignments[0].broker_ids.len();
        let known: HashSet<i32> = meta.brokers.keys().copied().collect();
        for (i, a) in t.assignments.iter().enumerate() {
            let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            let refusal = if a.partition_index != i as i32 {
                Some("Invalid replica assignment".to_string())
            } else {
                manual_assignment_error(&replicas, &known, Some(rf))
            };
            if let Some(message) = refusal {
                return Err(Failure(ResponseError::InvalidReplicaAssignment, message));
            }
        }
        let rf = i16::try_from(rf)
            .map_err(|_| Failure(ResponseError::InvalidReplicationFactor, "too many replicas".into()))?;
        return Ok(Creatable {
            partitions: t.assignments.len() as i32,
            replication_factor: rf,
            configs,
            assignment: Some(
                t.assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
            ),
        });
    }
    let partitions = if t.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        t.num_partitions
    };
    if partitions <= 0 {
        return Err(Failure(
            ResponseError::InvalidPartitions,
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    let rf = if t.replication_factor == -1 {
        broker.config.default_replication_factor
    } else {
        t.replication_factor
    };
    if rf <= 0 {
        return Err(Failure(
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0.".into(),
        ));
    }
    if rf as usize > brokers {
        return Err(Failure(
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered or some brokers have all their log directories cordoned."),
        ));
    }
    Ok(Creatable {
        partitions,
        replication_factor: rf,
        configs,
        assignment: None,
    })
}

/// Answers CreateTopics.
pub async fn create_topics(broker: &Broker, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let meta = broker.metadata();
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    let mut created_any = false;
    for t in &req.topics {
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if duplicates.contains(t.name.as_str()) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!("Duplicate topic name: {}", t.name.as_str())))),
            );
            continue;
        }
        let Creatable {
            partitions,
            replication_factor: rf,
            configs,
            assignment,
        } = match check_creatable(broker, t) {
            Ok(v) => v,
            Err(Failure(e, msg)) => {
                results.push(
                    result
                        .with_error_code(e.code())
                        .with_error_message(Some(str_bytes(msg))),
                );
                continue;
            }
        };
        let describe = |overrides: &BTreeMap<String, String>| -> Option<Vec<CreatableTopicConfigs>> {
            Some(
                config_entries(broker, &meta, overrides, None)
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(e.name))
                            .with_value(e.value.map(str_bytes))
                            .with_config_source(e.source as i8)
                            .with_read_only(false)
                            .with_is_sensitive(false)
                    })
                    .collect(),
            )
        };
        if req.validate_only {
            results.push(
                result
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)
                    .with_configs(describe(&configs)),
            );
            continue;
        }
        let topic_id = Uuid::new_v4();
        let created = match assignment {
            Some(a) => {
                broker
                    .controller
                    .create_topic_assigned(t.name.as_str(), topic_id, a, configs.clone())
                    .await
            }
            None => {
                broker
                    .controller
                    .create_topic(t.name.as_str(), topic_id, partitions, rf, configs.clone())
                    .await
            }
        };
        match created {
            Ok(topic) => {
                created_any = true;
                tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
                results.push(
                    result
                        .with_topic_id(topic.topic_id)
                        .with_num_partitions(topic.partitions.len() as i32)
                        .with_replication_factor(rf)
                        .with_configs(describe(&topic.configs)),
                );
            }
            Err(e) => {
                let code = controller_error_code(&e);
                results.push(
                    result
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(e.to_string()))),
                );
            }
        }
    }
    if created_any {
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "created topics have no storage yet");
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Answers DeleteTopics (by name, or by id from v6).
pub async fn delete_topics(broker: &Broker, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let meta = broker.metadata();
    // v0-5 send names; v6+ send (name or id) pairs.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    let mut deleted_any = false;
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => meta.topics.get(n.as_str()).map(|t| t.name.clone()),
            None => meta.topic_by_id(&id).map(|t| t.name.clone()),
        };
        let base = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| topic_name(&n)))
            .with_topic_id(id);
        let Some(resolved) = resolved else {
            let e = if name.is_none() {
                ResponseError::UnknownTopicId
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            responses.push(base.with_error_code(e.code()));
            continue;
        };
        if !broker.config.delete_topic_enable {
            responses.push(base.with_error_code(ResponseError::TopicDeletionDisabled.code()));
            continue;
        }
        match broker.controller.delete_topic(&resolved).await {
            Ok(t) => {
                deleted_any = true;
                tracing::info!(topic = %t.name, "deleted topic");
                responses.push(base.with_name(Some(topic_name(&t.name))).with_topic_id(t.topic_id));
            }
            Err(e) => responses.push(
                base.with_error_code(controller_error_code(&e).code())
                    .with_error_message(Some(str_bytes(e.to_string()))),
            ),
        }
    }
    if deleted_any {
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "deleted topics' data could not be removed yet");
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers CreatePartitions.
pub async fn create_partitions(broker: &Broker, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let meta = broker.metadata();
    let mut results = Vec::with_capacity(req.topics.len());
    let mut changed = false;
    for t in &req.topics {
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let fail = |e: ResponseError, m: String| {
            base.clone()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(m)))
        };
        let Some(topic) = meta.topics.get(t.name.as_str()) else {
            results.push(fail(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{}' does not exist.", t.name.as_str()),
            ));
            continue;
        };
        let current = topic.partitions.len() as i32;
        if t.count == current {
            results.push(fail(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
            continue;
        }
        if t.count < current {
            results.push(fail(
                ResponseError::InvalidPartitions,
                format!(
                    "The topic {} currently has {current} partition(s); {} would not be an increase.",
                    t.name.as_str(),
                    t.count
                ),
            ));
            continue;
        }
        if let Some(assignments) = &t.assignments {
            let known: HashSet<i32> = meta.brokers.keys().copied().collect();
            let additional = t.count - current;
            let refusal = if assignments.len() as i32 != additional {
                Some(format!(
                    "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                ))
            } else {
                let rf = topic.partitions.first().map(|p| p.replicas.len());
                assignments.iter().find_map(|a| {
                    let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
                    manual_assignment_error(&replicas, &known, rf)
                })
            };
            if let Some(message) = refusal {
                results.push(fail(ResponseError::InvalidReplicaAssignment, message));
                continue;
            }
        }
        if req.validate_only {
            results.push(base);
            continue;
        }
        let assignment: Option<Vec<Vec<i32>>> = t
            .assignments
            .as_ref()
            .map(|a| a.iter().map(|p| p.broker_ids.iter().map(|b| b.0).collect()).collect());
        let grown = match assignment {
            Some(a) => {
                broker
                    .controller
                    .create_partitions_assigned(t.name.as_str(), t.count, a)
                    .await
            }
            None => broker.controller.create_partitions(t.name.as_str(), t.count).await,
        };
        match grown {
            Ok(_) => {
                changed = true;
                results.push(base);
            }
            Err(e) => results.push(fail(controller_error_code(&e), e.to_string())),
        }
    }
    if changed {
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "new partitions have no storage yet");
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Answers DeleteRecords: moves log start offsets forward.
pub async fn delete_records(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let meta = broker.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = meta.topics.get(t.name.as_str());
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(topic) =
                topic.filter(|tm| p.partition_index >= 0 && (p.partition_index as usize) < tm.partitions.len())
            else {
                parts.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            match broker
                .store
                .delete_records(partition_id(topic, p.partition_index), p.offset)
                .await
            {
                Ok(low) => parts.push(base.with_low_watermark(low)),
                Err(e) => parts.push(base.with_error_code(storage_error_code(&e).code())),
            }
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
