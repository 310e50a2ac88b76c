//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): what
//! `kafka-reassign-partitions.sh --execute/--verify/--cancel` and `Admin.alterPartitionReassignments`
//! send. The controller decides each partition (`fjord_controller`'s `reassign`); the moves
//! finish as the new replicas catch up, and each broker then deletes the replicas it no longer
//! hosts (`Broker::reconcile`).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{str_bytes, topic_name, RequestContext};
use crate::error::controller_error_code;
use crate::Broker;

/// Answers AlterPartitionReassignments: each partition's outcome, as Kafka's controller decides
/// it (`INVALID_REPLICA_ASSIGNMENT`, `INVALID_REPLICATION_FACTOR` when v1 forbids a change of
/// replication factor, `NO_REASSIGNMENT_IN_PROGRESS` for a cancel of nothing,
/// `UNKNOWN_TOPIC_OR_PARTITION`). A controller that cannot be reached fails the whole request.
pub async fn alter(
    broker: &Broker,
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    // v0 has no such field: any change was allowed.
    let allow_rf_change = ctx.version == 0 || req.allow_replication_factor_change;
    let requests: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                (t.name.to_string(), p.partition_index, target)
            })
        })
        .collect();
    let response = AlterPartitionReassignmentsResponse::default().with_allow_replication_factor_change(allow_rf_change);
    if requests.is_empty() {
        return response;
    }
    let outcomes = match broker.controller.alter_reassignments(requests, allow_rf_change).await {
        Ok(o) => o,
        Err(e) => {
            return response
                .with_error_code(controller_error_code(&e).code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    if outcomes.iter().any(Result::is_ok) {
        // This node's part of a move (a new replica to create, a dropped one to delete) now
        // rather than at the next metadata change.
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "storage after a reassignment");
        }
    }
    let mut outcomes = outcomes.into_iter();
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
                    match outcomes.next() {
                        Some(Ok(())) => r,
                        Some(Err(e)) => r
                            .with_error_code(controller_error_code(&e).code())
                            .with_error_message(Some(str_bytes(e.to_string()))),
                        None => r.with_error_code(kafka_protocol::error::ResponseError::UnknownServerError.code()),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    response.with_responses(responses)
}

/// Answers ListPartitionReassignments: the partitions that are moving, every one or those of
/// the topics asked about (unknown topics and partitions are left out, as Kafka leaves them),
/// with their full replica set and what is being added and dropped.
pub fn list(broker: &Broker, req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let meta = broker.metadata();
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for t in meta.topics.values() {
        let asked: Option<Vec<&Vec<i32>>> = wanted
            .as_ref()
            .map(|w| w.iter().filter(|(name, _)| *name == t.name).map(|(_, p)| p).collect());
        if asked.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .filter(|p| !p.adding.is_empty() || !p.removing.is_empty())
            .filter(|p| {
                asked
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|list| list.contains(&p.partition)))
            })
            .map(|p| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p.partition)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&t.name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
