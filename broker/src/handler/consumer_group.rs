//! The KIP-848 consumer group protocol: ConsumerGroupHeartbeat (join, heartbeat, reconcile,
//! leave in one API, with the assignment computed here) and ConsumerGroupDescribe. The state
//! machine is `crate::group::consumer`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use tokio::time::Instant;

use super::{str_bytes, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, GROUP_AUTHORIZED_OPERATIONS};
use crate::group::consumer::{self, TopicInfo, TopicsView};
use crate::group::GroupKind;
use crate::Broker;

/// The cluster's topics as the assignors see them.
pub fn topics_view(broker: &Broker) -> TopicsView {
    let meta = broker.metadata();
    TopicsView {
        topics: meta
            .topics
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    TopicInfo {
                        topic_id: t.topic_id,
                        partitions: t.partitions.len() as i32,
                    },
                )
            })
            .collect(),
    }
}

/// Whether the cluster finalized `group.version` 1, which enables this protocol: without it
/// Kafka answers both APIs with UNSUPPORTED_VERSION, and so does Fjord.
fn protocol_enabled(broker: &Broker) -> bool {
    broker.metadata().feature_level("group.version") >= 1
}

/// ConsumerGroupHeartbeat.
pub async fn heartbeat(
    broker: &Broker,
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let groups = &broker.groups;
    let cfg = &groups.cfg.consumer;
    if !protocol_enabled(broker) {
        return ConsumerGroupHeartbeatResponse::default().with_error_code(ResponseError::UnsupportedVersion.code());
    }
    if let Err(e) = consumer::validate_heartbeat_request(ctx.version, &req, cfg) {
        return consumer::error_response(e.error, Some(e.message));
    }
    let group_id = req.group_id.to_string();
    if let Err(e) = super::coordinator::check_group(broker, &group_id) {
        return consumer::error_response(e, None);
    }
    // Only a join (epoch 0) may create the group.
    let Some(mut group) = groups.lock(&group_id, req.member_epoch == 0).await else {
        return consumer::group_not_found_response(&group_id);
    };
    if matches!(group.kind, GroupKind::Streams(_)) {
        return consumer::error_response(
            ResponseError::GroupIdNotFound,
            Some(format!("Group {group_id} is not a consumer group.")),
        );
    }
    if let GroupKind::Classic(_) = group.kind {
        if req.member_epoch == 0 && group.convertible() {
            group.make_consumer();
        } else {
            return consumer::error_response(
                ResponseError::GroupIdNotFound,
                Some(format!("Group {group_id} is not a consumer group.")),
            );
        }
    }
    let topics = topics_view(broker);
    let client_id = ctx.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    let outcome = match &mut group.kind {
        GroupKind::Consumer(c) => c.heartbeat(
            ctx.version,
            &req,
            &client_id,
            &ctx.client_host(),
            &topics,
            cfg,
            Instant::now().into_std(),
        ),
        GroupKind::Classic(_) | GroupKind::Streams(_) => unreachable!("converted or refused above"),
    };
    if outcome.changed {
        group.dirty = true;
    }
    // Persisted before the member learns its new epoch or assignment.
    groups.finish(&mut group).await;
    outcome.response
}

/// ConsumerGroupDescribe.
pub async fn describe(broker: &Broker, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    if !protocol_enabled(broker) {
        return ConsumerGroupDescribeResponse::default().with_groups(
            req.group_ids
                .into_iter()
                .map(|g| {
                    DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(ResponseError::UnsupportedVersion.code())
                })
                .collect(),
        );
    }
    let groups = &broker.groups;
    let topics = topics_view(broker);
    let ops = if req.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let mut out = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let not_found = |msg: String| {
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(str_bytes("Dead"))
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(msg)))
                .with_authorized_operations(ops)
        };
        if let Err(e) = super::coordinator::check_group(broker, id.as_str()) {
            out.push(
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(e.code())
                    .with_authorized_operations(ops),
            );
            continue;
        }
        let described = match groups.lock(id.as_str(), false).await {
            None => not_found(format!("Group {} not found.", id.as_str())),
            Some(g) => match &g.kind {
                GroupKind::Consumer(c) => c.describe(&topics).with_authorized_operations(ops),
                GroupKind::Classic(_) | GroupKind::Streams(_) => {
                    not_found(format!("Group {} is not a consumer group.", id.as_str()))
                }
            },
        };
        out.push(described);
    }
    ConsumerGroupDescribeResponse::default().with_groups(out)
}
