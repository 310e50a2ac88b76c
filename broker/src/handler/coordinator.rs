//! FindCoordinator (v0-3 one key, v4+ a batch of keys), and which node coordinates what.
//!
//! A group or transactional id hashes to a coordinator partition as in Kafka
//! (`abs(hashCode) % offsets.topic.num.partitions`, or `transaction.state.log.num.partitions`),
//! and each coordinator partition belongs to one node: on a single node this one, in a
//! cluster the voters of `controller.quorum.voters` in id order, round-robin. The voter list
//! is the same on every node (a node whose list disagrees with the quorum does not start), so
//! every broker answers FindCoordinator alike, and a node asked about a key it does not
//! coordinate answers NOT_COORDINATOR, sending the client back to FindCoordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str_bytes, RequestContext};
use crate::Broker;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The node that coordinates coordinator partition `partition`.
fn node_for(broker: &Broker, partition: i32) -> i32 {
    if !broker.config.is_cluster() {
        return broker.node_id();
    }
    let voters = &broker.config.quorum_voters;
    // `voters` is a BTreeMap: its keys are in id order on every node.
    let index = partition.unsigned_abs() as usize % voters.len();
    voters.keys().nth(index).copied().unwrap_or_else(|| broker.node_id())
}

/// The node coordinating group `group_id`.
pub fn group_coordinator(broker: &Broker, group_id: &str) -> i32 {
    node_for(broker, broker.groups.partition_for(group_id))
}

/// `NOT_COORDINATOR` unless this node coordinates group `group_id`.
pub fn check_group(broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
    if group_coordinator(broker, group_id) == broker.node_id() {
        Ok(())
    } else {
        Err(ResponseError::NotCoordinator)
    }
}

/// Why transactions are refused in a cluster of several nodes.
const NO_CLUSTER_TRANSACTIONS: &str = "transactions are not available in a Fjord cluster of several nodes yet: \
     transaction markers are written only to the coordinator's own partitions";

/// `COORDINATOR_NOT_AVAILABLE` in a cluster of several nodes, where a transaction's markers
/// would have to reach partitions led by other brokers (WriteTxnMarkers), which Fjord does not
/// do yet: refusing the transactional producer up front is better than a commit that marks
/// only some of its partitions.
pub fn check_txn(broker: &Broker) -> Result<(), ResponseError> {
    if !broker.config.is_cluster() {
        Ok(())
    } else {
        Err(ResponseError::CoordinatorNotAvailable)
    }
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
        KEY_TYPE_GROUP => group_coordinator(broker, key),
        KEY_TYPE_TRANSACTION => match check_txn(broker) {
            Ok(()) => broker.node_id(),
            Err(e) => return Err((e, NO_CLUSTER_TRANSACTIONS.to_string())),
        },
        other => return Err((ResponseError::InvalidRequest, format!("unknown key type {other}"))),
    };
    if node == broker.node_id() {
        // The address on the listener the request came in on.
        return Ok((node, ctx.endpoint.host.clone(), i32::from(ctx.endpoint.port)));
    }
    match broker.metadata().brokers.get(&node) {
        Some(b) => Ok((node, b.host.clone(), i32::from(b.port))),
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
