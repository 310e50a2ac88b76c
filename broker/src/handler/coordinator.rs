//! FindCoordinator (v0-3 one key, v4+ a batch of keys). Groups and transactional ids are
//! coordinated here: on a single node this broker leads every coordinator partition, so every
//! key gets this broker's address on the listener the request came in on.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str_bytes, RequestContext};
use crate::Broker;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// One key's answer: node id, host, port, or an error with its message.
fn lookup(
    broker: &Broker,
    ctx: &RequestContext,
    key_type: i8,
    _key: &str,
) -> Result<(i32, String, i32), (ResponseError, String)> {
    match key_type {
        // Kafka answers any key, the empty one included: it hashes to a partition like any other.
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => Ok((
            broker.node_id(),
            ctx.endpoint.host.clone(),
            i32::from(ctx.endpoint.port),
        )),
        other => Err((ResponseError::InvalidRequest, format!("unknown key type {other}"))),
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
