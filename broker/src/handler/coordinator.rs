//! FindCoordinator. Consumer groups and transactions are not served yet, so every key is
//! answered `COORDINATOR_NOT_AVAILABLE` (the retriable answer Kafka gives while its
//! coordinator is loading). The API is advertised all the same: librdkafka enables LZ4 only
//! when a broker advertises FindCoordinator, groups or not.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;

const NOT_YET: &str = "Fjord does not serve consumer groups or transactions yet";

/// Answers FindCoordinator (v0-3 one key, v4+ a batch of keys).
pub fn handle(version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(NOT_YET)))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(NOT_YET)))
        .with_node_id(BrokerId(-1))
        .with_host(str_bytes(""))
        .with_port(-1)
}
