//! Committed offsets: OffsetCommit, OffsetFetch (single group v1-7, batched groups v8+) and
//! OffsetDelete. Offsets live with their group in the coordinator (`crate::group`) and in the
//! store's groups column family.

use std::collections::BTreeMap;

use fjord_storage::CommittedOffset;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};

use super::{str_bytes, topic_name, RequestContext};
use crate::group::classic::ClassicState;
use crate::group::{Group, GroupKind};
use crate::Broker;

/// Kafka's checks of who may commit to a group (`ClassicGroup.validateOffsetCommit`,
/// `ConsumerGroup.validateOffsetCommit`).
fn validate_commit<'a>(
    group: &Group,
    version: i16,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    partitions: impl IntoIterator<Item = (&'a str, uuid::Uuid, i32)>,
) -> Result<(), ResponseError> {
    match &group.kind {
        GroupKind::Classic(c) => c.validate_offset_commit(member_id, instance_id, generation),
        GroupKind::Consumer(c) => {
            // Members of KIP-848 groups commit with v9+, which carries the member epoch.
            if generation >= 0 && version < 9 {
                return Err(ResponseError::UnsupportedVersion);
            }
            c.validate_offset_commit(member_id, generation, partitions.into_iter().map(|(_, id, p)| (id, p)))
        }
        GroupKind::Streams(s) => {
            // Kafka looks the member up first, then asks for v9+.
            let admin = generation < 0 && s.is_empty();
            if !admin && s.members().any(|m| m.member_id == member_id) && version < 9 {
                return Err(ResponseError::UnsupportedVersion);
            }
            s.validate_offset_commit(
                member_id,
                instance_id,
                generation,
                false,
                partitions.into_iter().map(|(name, _, p)| (name, p)),
            )
        }
    }
}

/// OffsetCommit.
pub async fn offset_commit(
    broker: &Broker,
    ctx: &RequestContext,
    mut req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let groups = &broker.groups;
    // v10 names topics by id (KIP-848's topic ids); an unknown id is UNKNOWN_TOPIC_ID.
    let by_id = ctx.version >= 10;
    let meta = broker.metadata();
    if by_id {
        super::names_from_ids(&meta, req.topics.iter_mut().map(|t| (&mut t.name, t.topic_id)));
    }
    let group_id = req.group_id.to_string();
    // Kafka answers for unknown topics and partitions before it asks the group coordinator, so
    // those keep their own error whatever the group says.
    let topic_error = |name: &TopicName, p: i32| super::commit_target_error(&meta, by_id, name.as_str(), p);
    let respond_all = |topics: &[kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic],
                       code: i16| {
        let topics = topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(topic_error(&t.name, p.partition_index).unwrap_or(code))
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    };
    if group_id.is_empty() {
        return respond_all(&req.topics, ResponseError::InvalidGroupId.code());
    }
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return respond_all(&req.topics, e.code());
    }
    let member_id = req.member_id.to_string();
    let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = req.generation_id_or_member_epoch;
    // A group that does not exist is created only by a group-less commit.
    let Some(mut group) = groups.lock(&group_id, generation < 0).await else {
        let code = if ctx.version >= 9 {
            ResponseError::GroupIdNotFound
        } else {
            ResponseError::IllegalGeneration
        };
        return respond_all(&req.topics, code.code());
    };
    // The partitions the coordinator is asked to commit: Kafka validates an older member
    // epoch against each of them, and not against those refused before it (unknown, or
    // metadata too large).
    let max_metadata = groups.cfg.offset_metadata_max_bytes;
    let committed = req.topics.iter().flat_map(|t| {
        let topic_id = meta.topics.get(t.name.as_str()).map(|tm| tm.topic_id);
        let (meta_ok, topic_error) = (&max_metadata, &topic_error);
        t.partitions.iter().filter_map(move |p| {
            let too_large = p.committed_metadata.as_ref().is_some_and(|m| m.len() > *meta_ok);
            (topic_error(&t.name, p.partition_index).is_none() && !too_large).then_some((
                t.name.as_str(),
                topic_id?,
                p.partition_index,
            ))
        })
    });
    if let Err(e) = validate_commit(
        &group,
        ctx.version,
        &member_id,
        instance_id.as_deref(),
        generation,
        committed,
    ) {
        return respond_all(&req.topics, e.code());
    }
    let now = crate::txn::now_ms();
    // v2-4 carry a retention time; -1 means the broker's.
    let expire = (ctx.version <= 4 && req.retention_time_ms >= 0).then(|| now.saturating_add(req.retention_time_ms));
    let mut writes = Vec::new();
    let mut codes: BTreeMap<(usize, usize), i16> = BTreeMap::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for (pi, p) in t.partitions.iter().enumerate() {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let code = if let Some(code) = topic_error(&t.name, p.partition_index) {
                code
            } else if metadata.len() > groups.cfg.offset_metadata_max_bytes {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                writes.push((
                    (t.name.to_string(), p.partition_index),
                    Some(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                        expire_timestamp: expire,
                    }),
                ));
                0
            };
            codes.insert((ti, pi), code);
        }
    }
    if let Err(e) = groups.store_offsets(&mut group, writes).await {
        tracing::error!(group = %group_id, error = %e, "could not store committed offsets");
        for code in codes.values_mut() {
            if *code == 0 {
                *code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
    }
    drop(group);
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .enumerate()
                        .map(|(pi, p)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.get(&(ti, pi)).copied().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets: for the listed topics and partitions (-1 where nothing is
/// committed), or for everything the group committed when `topics` is `None`.
struct FetchedTopic {
    name: String,
    /// Partition, its committed offset, and an error (UNSTABLE_OFFSET_COMMIT).
    partitions: Vec<(i32, Option<CommittedOffset>, i16)>,
}

/// One group's offsets. With `require_stable` (v7+, read_committed consumers), a partition
/// that an open transaction has committed to answers UNSTABLE_OFFSET_COMMIT, and the consumer
/// retries once the transaction ends.
async fn fetch_group(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<FetchedTopic> {
    let group = broker.groups.lock(group_id, false).await;
    let offsets = group.as_ref().map(|g| &g.offsets);
    let unstable = |topic: &str, p: i32| -> i16 {
        let pending = group
            .as_ref()
            .is_some_and(|g| g.pending_txn.values().any(|m| m.contains_key(&(topic.to_string(), p))));
        if require_stable && pending {
            ResponseError::UnstableOffsetCommit.code()
        } else {
            0
        }
    };
    match topics {
        Some(list) => list
            .into_iter()
            .map(|(name, parts)| FetchedTopic {
                partitions: parts
                    .into_iter()
                    .map(|p| {
                        let code = unstable(&name, p);
                        (p, offsets.and_then(|o| o.get(&(name.clone(), p)).cloned()), code)
                    })
                    .collect(),
                name,
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>, i16)>> = BTreeMap::new();
            for ((t, p), o) in offsets.into_iter().flatten() {
                by_topic
                    .entry(t.clone())
                    .or_default()
                    .push((*p, Some(o.clone()), unstable(t, *p)));
            }
            by_topic
                .into_iter()
                .map(|(name, partitions)| FetchedTopic { name, partitions })
                .collect()
        }
    }
}

/// OffsetFetch.
pub async fn offset_fetch(broker: &Broker, ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let meta = broker.metadata();
        let mut out = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            if let Err(e) = super::coordinator::check_group(broker, g.group_id.as_str()) {
                out.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code()),
                );
                continue;
            }
            // v9: a KIP-848 member fetches with its id and epoch, which must be current.
            if ctx.version >= 9 {
                if let Some(group) = broker.groups.lock(g.group_id.as_str(), false).await {
                    let member = g.member_id.as_ref().map(|m| m.as_str());
                    let checked = match &group.kind {
                        GroupKind::Consumer(c) => Some(c.validate_offset_fetch(member, g.member_epoch)),
                        GroupKind::Streams(s) => Some(s.validate_offset_fetch(member, g.member_epoch)),
                        GroupKind::Classic(_) => None,
                    };
                    if let Some(Err(e)) = checked {
                        out.push(
                            OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id)
                                .with_error_code(e.code()),
                        );
                        continue;
                    }
                }
            }
            // v10 names topics by id: an unknown id answers UNKNOWN_TOPIC_ID, and a group's
            // offsets of a topic that no longer exists are left out of a whole-group answer.
            let by_id = ctx.version >= 10;
            let mut unknown_ids = Vec::new();
            let topics = g.topics.map(|mut ts| {
                if by_id {
                    super::names_from_ids(&meta, ts.iter_mut().map(|t| (&mut t.name, t.topic_id)));
                }
                ts.into_iter()
                    .filter_map(|t| {
                        if by_id && t.name.is_empty() {
                            unknown_ids.push((t.topic_id, t.partition_indexes));
                            None
                        } else {
                            Some((t.name.to_string(), t.partition_indexes))
                        }
                    })
                    .collect::<Vec<_>>()
            });
            let fetched = fetch_group(broker, g.group_id.as_str(), topics, req.require_stable).await;
            let mut topics: Vec<OffsetFetchResponseTopics> = fetched
                .into_iter()
                .filter_map(|t| {
                    let topic_id = meta.topics.get(&t.name).map(|m| m.topic_id);
                    if by_id && topic_id.is_none() {
                        return None;
                    }
                    Some(
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&t.name))
                            .with_topic_id(topic_id.unwrap_or_default())
                            .with_partitions(
                                t.partitions
                                    .into_iter()
                                    .map(|(p, o, code)| {
                                        let (offset, epoch, metadata) = split(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_error_code(code)
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(metadata)))
                                    })
                                    .collect(),
                            ),
                    )
                })
                .collect();
            topics.extend(unknown_ids.into_iter().map(|(id, parts)| {
                OffsetFetchResponseTopics::default().with_topic_id(id).with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(ResponseError::UnknownTopicId.code())
                        })
                        .collect(),
                )
            }));
            out.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(out);
    }
    if let Err(e) = super::coordinator::check_group(broker, req.group_id.as_str()) {
        // v2+ carry a top-level error; v0-1 clients read it per partition, where Kafka puts it.
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(
                    t.partition_indexes
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(e.code())
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default()
            .with_error_code(e.code())
            .with_topics(topics);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let fetched = fetch_group(broker, req.group_id.as_str(), topics, req.require_stable).await;
    let topics = fetched
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(t.name)))
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|(p, o, code)| {
                            let (offset, epoch, metadata) = split(o);
                            OffsetFetchResponsePartition::default()
                                .with_error_code(code)
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(str_bytes(metadata)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

fn split(o: Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

/// OffsetDelete: removes committed offsets of an empty group, or of topics a live group
/// does not subscribe to.
pub async fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let groups = &broker.groups;
    let group_error = |e: ResponseError| OffsetDeleteResponse::default().with_error_code(e.code());
    if req.group_id.is_empty() {
        return group_error(ResponseError::InvalidGroupId);
    }
    if let Err(e) = super::coordinator::check_group(broker, req.group_id.as_str()) {
        return group_error(e);
    }
    let Some(mut group) = groups.lock(req.group_id.as_str(), false).await else {
        return group_error(ResponseError::GroupIdNotFound);
    };
    let subscribed_to: Box<dyn Fn(&str) -> bool + Send> = match &group.kind {
        GroupKind::Classic(c) => {
            // A live group that is not a consumer group gives no way to know its topics.
            if c.state() != ClassicState::Empty
                && c.protocol_type() != Some(crate::group::classic::CONSUMER_PROTOCOL_TYPE)
            {
                return group_error(ResponseError::NonEmptyGroup);
            }
            let topics: Vec<String> = req
                .topics
                .iter()
                .filter(|t| c.is_subscribed_to(t.name.as_str()))
                .map(|t| t.name.to_string())
                .collect();
            Box::new(move |t| topics.iter().any(|x| x == t))
        }
        GroupKind::Consumer(c) => {
            let names = c.subscribed_topic_names(&crate::handler::consumer_group::topics_view(broker));
            Box::new(move |t| names.contains(t))
        }
        // Source and repartition source topics, while the group has members.
        GroupKind::Streams(s) if s.is_empty() => Box::new(|_| false),
        GroupKind::Streams(s) => {
            let names = s.subscribed_topics();
            Box::new(move |t| names.contains(t))
        }
    };
    let mut deletes = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let subscribed = subscribed_to(t.name.as_str());
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let code = if subscribed {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    deletes.push(((t.name.to_string(), p.partition_index), None));
                    0
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    // Only offsets that exist need a delete; Kafka answers NONE for the others too.
    deletes.retain(|(k, _)| group.offsets.contains_key(k));
    if let Err(e) = groups.store_offsets(&mut group, deletes).await {
        tracing::error!(group = %req.group_id.as_str(), error = %e, "could not delete offsets");
        return group_error(ResponseError::CoordinatorNotAvailable);
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
