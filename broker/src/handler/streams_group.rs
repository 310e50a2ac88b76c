//! KIP-1071 streams groups: StreamsGroupHeartbeat, StreamsGroupDescribe and
//! StreamsGroupTopologyDescriptionUpdate. The state machine is `crate::group::streams`; this
//! module finds or converts the group, persists it, and creates the internal topics a
//! topology needs (without waiting for them, as Kafka does).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::streams_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    CreateTopicsRequest, StreamsGroupDescribeRequest, StreamsGroupDescribeResponse, StreamsGroupHeartbeatRequest,
    StreamsGroupHeartbeatResponse, StreamsGroupTopologyDescriptionUpdateRequest,
    StreamsGroupTopologyDescriptionUpdateResponse,
};

use super::{str_bytes, topic_name, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, GROUP_AUTHORIZED_OPERATIONS};
use crate::group::streams::{self, TopicToCreate};
use crate::group::GroupKind;
use crate::Broker;

/// Whether the cluster finalized `streams.version` 1, which enables the protocol.
fn protocol_enabled(broker: &Broker) -> bool {
    broker.metadata().feature_level("streams.version") >= 1
}

/// StreamsGroupHeartbeat.
pub async fn heartbeat(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: StreamsGroupHeartbeatRequest,
) -> StreamsGroupHeartbeatResponse {
    if !protocol_enabled(broker) {
        return StreamsGroupHeartbeatResponse::default().with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let fail = |e: streams::HeartbeatError| streams::error_response(e.error, e.message);
    if let Err(e) = streams::validate_request(&req) {
        return fail(e);
    }
    let groups = &broker.groups;
    let group_id = req.group_id.to_string();
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return streams::error_response(e, None);
    }
    let joining = req.member_epoch == 0;
    let leaving = req.member_epoch < 0;
    let not_found = |msg: String| streams::error_response(ResponseError::GroupIdNotFound, Some(msg));
    let Some(mut group) = groups.lock(&group_id, joining).await else {
        return not_found(if leaving {
            format!("Group {group_id} not found.")
        } else {
            format!("Streams group {group_id} not found.")
        });
    };
    let mut created = false;
    match &group.kind {
        GroupKind::Streams(_) => {}
        // An empty classic group (offsets only, or no members) becomes a streams group; the
        // coordinator's lock made a new, empty classic group for a join of an unknown id.
        GroupKind::Classic(c) if joining && group.convertible() => {
            created = c.protocol_type().is_none() && group.offsets.is_empty() && group.pending_txn.is_empty();
            group.make_streams();
        }
        _ => return not_found(format!("Group {group_id} is not a streams group.")),
    }
    let cfg = &groups.cfg.streams;
    let topics = super::consumer_group::topics_view(broker);
    let client_id = ctx.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    let GroupKind::Streams(s) = &mut group.kind else {
        unreachable!("made a streams group above")
    };
    let outcome = if leaving {
        s.leave(ctx.version, &req)
    } else {
        s.heartbeat(
            ctx.version,
            &req,
            &client_id,
            &ctx.client_host(),
            &topics,
            cfg,
            Instant::now(),
            crate::txn::now_ms(),
            created,
        )
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // A group made for this request and refused stays unmade.
            if created {
                if let Err(err) = groups.delete(&mut group).await {
                    tracing::warn!(group = %group_id, error = %err, "could not drop a refused streams group");
                }
            }
            return fail(e);
        }
    };
    if outcome.changed {
        group.dirty = true;
    }
    // Persisted before the member learns its new epoch or tasks.
    groups.finish(&mut group).await;
    drop(group);
    let mut response = outcome.response;
    if !outcome.to_create.is_empty() {
        create_internal_topics(broker, outcome.to_create.clone());
        amend_with_failures(&mut response, &outcome.to_create);
    }
    response
}

/// Internal topics being created, and failed creations remembered for two heartbeat
/// intervals (Kafka's `DefaultAutoTopicCreationManager` cache), by name.
#[derive(Default)]
struct Creations {
    in_flight: HashSet<String>,
    failed: BTreeMap<String, (Instant, String)>,
}

fn creations() -> std::sync::MutexGuard<'static, Creations> {
    static C: OnceLock<Mutex<Creations>> = OnceLock::new();
    C.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Creates the topics in the background with one CreateTopics, skipping those already being
/// created or whose creation failed recently.
fn create_internal_topics(broker: &Arc<Broker>, topics: Vec<TopicToCreate>) {
    let now = Instant::now();
    let todo: Vec<TopicToCreate> = {
        let mut c = creations();
        c.failed.retain(|_, (until, _)| *until > now);
        let todo: Vec<TopicToCreate> = topics
            .into_iter()
            .filter(|t| !c.in_flight.contains(&t.name) && !c.failed.contains_key(&t.name))
            .collect();
        for t in &todo {
            c.in_flight.insert(t.name.clone());
        }
        todo
    };
    if todo.is_empty() {
        return;
    }
    let broker = broker.clone();
    let keep_failures = Duration::from_millis(2 * broker.groups.cfg.streams.heartbeat_interval_ms.max(0) as u64);
    tokio::spawn(async move {
        let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(
            todo.iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(&t.name))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication_factor)
                        .with_configs(
                            t.configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(str_bytes(k.clone()))
                                        .with_value(Some(str_bytes(v.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        let resp = super::admin::create_topics(&broker, req).await;
        let mut c = creations();
        for t in &todo {
            c.in_flight.remove(&t.name);
        }
        for r in resp.topics {
            if r.error_code == 0 || r.error_code == ResponseError::TopicAlreadyExists.code() {
                tracing::info!(topic = %r.name.as_str(), "created a streams group's internal topic");
                continue;
            }
            let message = r
                .error_message
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    ResponseError::try_from_code(r.error_code)
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                });
            tracing::warn!(topic = %r.name.as_str(), error = %message, "could not create a streams group's internal topic");
            if c.failed.len() < 1000 {
                c.failed
                    .insert(r.name.to_string(), (Instant::now() + keep_failures, message));
            }
        }
    });
}

/// Kafka appends recent creation failures to the MISSING_INTERNAL_TOPICS status.
fn amend_with_failures(response: &mut StreamsGroupHeartbeatResponse, topics: &[TopicToCreate]) {
    let c = creations();
    let now = Instant::now();
    let failures: Vec<String> = topics
        .iter()
        .filter_map(|t| {
            c.failed
                .get(&t.name)
                .filter(|(until, _)| *until > now)
                .map(|(_, m)| format!("{} ({m})", t.name))
        })
        .collect();
    if failures.is_empty() {
        return;
    }
    let mut text = failures.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if failures.len() > 3 {
        text.push_str(&format!(" and {} more", failures.len() - 3));
    }
    if let Some(status) = response.status.as_mut().and_then(|l| {
        l.iter_mut()
            .find(|s| s.status_code == streams::status::MISSING_INTERNAL_TOPICS)
    }) {
        let detail = format!("{}; Creation failed: {text}.", status.status_detail.as_str());
        status.status_detail = str_bytes(detail);
    }
}

/// StreamsGroupDescribe.
pub async fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    req: StreamsGroupDescribeRequest,
) -> StreamsGroupDescribeResponse {
    let enabled = protocol_enabled(broker);
    let ops = if req.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut out = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let error = |code: ResponseError, msg: Option<String>| {
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_error_code(code.code())
                .with_error_message(msg.map(str_bytes))
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        };
        if !enabled {
            out.push(error(ResponseError::UnsupportedVersion, None));
            continue;
        }
        if id.is_empty() {
            out.push(error(ResponseError::InvalidGroupId, None));
            continue;
        }
        if let Err(e) = super::coordinator::check_group(broker, id.as_str()) {
            out.push(error(e, None));
            continue;
        }
        let described = match broker.groups.lock(id.as_str(), false).await {
            None => error(
                ResponseError::GroupIdNotFound,
                Some(format!("Group {} not found.", id.as_str())),
            ),
            Some(g) => match &g.kind {
                GroupKind::Streams(s) => {
                    let mut d = s.describe().with_authorized_operations(ops);
                    if ctx.version >= 1 && req.include_topology_description {
                        // No description plugin: the description is not stored.
                        d.topology_description_status = 1;
                    }
                    if ctx.version < 1 {
                        d.assignor_name = None;
                    }
                    d
                }
                _ => error(
                    ResponseError::GroupIdNotFound,
                    Some(format!("Group {} is not a streams group.", id.as_str())),
                ),
            },
        };
        out.push(described);
    }
    StreamsGroupDescribeResponse::default().with_groups(out)
}

/// StreamsGroupTopologyDescriptionUpdate: without a topology description plugin (KIP-1331),
/// which Fjord cannot load, Kafka answers UNSUPPORTED_VERSION, and so does Fjord.
pub fn topology_description_update(
    broker: &Broker,
    _req: StreamsGroupTopologyDescriptionUpdateRequest,
) -> StreamsGroupTopologyDescriptionUpdateResponse {
    let message = protocol_enabled(broker)
        .then(|| str_bytes("The broker has no streams group topology description plugin configured."));
    StreamsGroupTopologyDescriptionUpdateResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_error_message(message)
}
