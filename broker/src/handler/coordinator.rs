//! FindCoordinator (v0-3 one key, v4+ a batch of keys), and which node coordinates what.
//!
//! A group or transactional id hashes to a coordinator partition as in Kafka
//! (`abs(hashCode) % offsets.topic.num.partitions`, or `transaction.state.log.num.partitions`).
//! On a single node this node coordinates every partition. In a cluster a group's coordinator
//! is the leader of its partition of `__consumer_offsets`, a transactional id's the leader of
//! its partition of `__transaction_state` (see `state_log`), and a node asked about a group or
//! transactional id it does not coordinate answers NOT_COORDINATOR, sending the client back to
//! FindCoordinator.

use fjord_storage::StateLog;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str_bytes, RequestContext};
use crate::state_log;
use crate::Broker;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The node coordinating group `group_id`, or why there is none.
pub fn group_coordinator(broker: &Broker, group_id: &str) -> Result<i32, (ResponseError, String)> {
    if !broker.groups.is_replicated() {
        return Ok(broker.node_id());
    }
    state_log::coordinator(broker, StateLog::Groups, broker.groups.partition_for(group_id))
}

/// The node coordinating transactional id `transactional_id`, or why there is none.
pub fn txn_coordinator(broker: &Broker, transactional_id: &str) -> Result<i32, (ResponseError, String)> {
    if !broker.txns.is_replicated() {
        return Ok(broker.node_id());
    }
    state_log::coordinator(
        broker,
        StateLog::Transactions,
        broker.txns.partition_for(transactional_id),
    )
}

/// Whether this node coordinates group `group_id` now: `NOT_COORDINATOR` if another node
/// does, `COORDINATOR_LOAD_IN_PROGRESS` while its partition is being loaded here.
pub fn check_group(broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
    broker.groups.check(group_id)
}

/// Whether this node coordinates transactional id `transactional_id` now, as
/// [`check_group`].
pub fn check_txn(broker: &Broker, transactional_id: &str) -> Result<(), ResponseError> {
    broker.txns.check(transactional_id)
}

/// One key's answer: node id, host, port, or an error with its message.
fn lookup(
    broker: &Broker,
    ctx: &RequestContext,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), (ResponseError, String)> {
    // Kafka answers any key, the empty one included: it hashes to a partition like any other.
    let node = match key_type {
        KEY_TYPE_GROUP => group_coordinator(broker, key)?,
        KEY_TYPE_TRANSACTION => txn_coordinator(broker, key)?,
        other => return Err((ResponseError::InvalidRequest, format!("unknown key type {other}"))),
    };
    if node == broker.node_id() {
        // The address on the listener the request came in on.
        return Ok((node, ctx.endpoint.host.clone(), i32::from(ctx.endpoint.port)));
    }
    let meta = broker.metadata();
    match meta.brokers.get(&node) {
        Some(b) => match b.endpoint(&ctx.endpoint.listener) {
            Some((host, port)) => Ok((node, host.to_string(), i32::from(port))),
            None => Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "the coordinator, node {node}, has no listener named {}",
                    ctx.endpoint.listener
                ),
            )),
        },
        None => Err((
            ResponseError::CoordinatorNotAvailable,
            format!("the coordinator, node {node}, has not registered yet"),
        )),
    }
}

/// Answers FindCoordinator.
pub fn handle(broker: &Broker, ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match lookup(broker, ctx, req.key_type, key.as_str()) {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err((e, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(str_bytes(""))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(str_bytes(msg))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match lookup(broker, ctx, req.key_type, req.key.as_str()) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port),
        Err((e, msg)) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1),
    }
}
