//! DescribeQuorum: the metadata quorum (`__cluster_metadata`, partition 0) as its leader sees it,
//! which `kafka-metadata-quorum.sh describe --status` and `Admin.describeMetadataQuorum` show.
//! Kafka's brokers forward it to the active controller; here any node asks the Raft leader.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse,
    RemoveRaftVoterRequest, RemoveRaftVoterResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, RequestContext};
use crate::error::controller_error_code;
use crate::Broker;

/// The name Kafka gives its metadata log.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// One error for every partition asked about, as Kafka answers a request it cannot serve.
fn partition_errors(req: &DescribeQuorumRequest, e: ResponseError) -> DescribeQuorumResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e.code())
                                .with_leader_id(BrokerId(-1))
                                .with_leader_epoch(-1)
                                .with_high_watermark(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

/// Answers DescribeQuorum.
pub async fn describe_quorum(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let asks_for_metadata_log = req.topics.len() == 1
        && req.topics[0].topic_name.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !asks_for_metadata_log {
        return partition_errors(&req, ResponseError::UnknownTopicOrPartition);
    }
    let d = match broker.controller.describe_quorum().await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "DescribeQuorum without a leader");
            return partition_errors(&req, ResponseError::NotLeaderOrFollower);
        }
    };
    let replicas = |list: &[fjord_controller::VoterState]| -> Vec<ReplicaState> {
        list.iter()
            .map(|v| {
                ReplicaState::default()
                    .with_replica_id(BrokerId(v.node_id))
                    .with_log_end_offset(v.log_end_offset)
                    .with_last_fetch_timestamp(v.last_fetch_timestamp)
                    .with_last_caught_up_timestamp(v.last_caught_up_timestamp)
            })
            .collect()
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(d.leader_id))
        .with_leader_epoch(d.leader_epoch)
        .with_high_watermark(d.high_watermark)
        .with_current_voters(replicas(&d.voters))
        .with_observers(replicas(&d.observers));
    let mut resp = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if ctx.version >= 2 {
        // The voters' controller endpoints (KIP-853).
        let listener_name = broker.config.controller_listener_name.clone();
        resp.nodes = d
            .voters
            .iter()
            .map(|v| {
                let (host, port) = v.endpoint.rsplit_once(':').unwrap_or((v.endpoint.as_str(), "0"));
                Node::default()
                    .with_node_id(BrokerId(v.node_id))
                    .with_listeners(vec![Listener::default()
                        .with_name(str_bytes(listener_name.clone()))
                        .with_host(str_bytes(host.to_string()))
                        .with_port(port.parse().unwrap_or(0))])
            })
            .collect();
    }
    resp
}

/// Checks the cluster id a quorum change names, if it names one (`INCONSISTENT_CLUSTER_ID`).
fn check_cluster_id(broker: &Broker, cluster_id: Option<&StrBytes>) -> Result<(), (ResponseError, String)> {
    let ours = broker.metadata().cluster_id.clone();
    match cluster_id {
        Some(id) if id.as_str() != ours => Err((
            ResponseError::InconsistentClusterId,
            format!("cluster id {} is not this cluster's ({ours})", id.as_str()),
        )),
        _ => Ok(()),
    }
}

/// Answers AddRaftVoter (KIP-853, `kafka-metadata-quorum.sh add-controller`,
/// `Admin.addRaftVoter`): an observer of the quorum (a node started with
/// `controller.quorum.bootstrap.servers`) becomes a voter once it has caught up, within the
/// request's timeout. Kafka's errors: DUPLICATE_VOTER, REQUEST_TIMED_OUT (not an observer, not
/// caught up, or another change under way), INCONSISTENT_CLUSTER_ID. v1's `AckWhenCommitted`
/// (KIP-1186) lets a client ask for the answer once the leader has written the change; Fjord
/// answers once the new voter set is committed either way, which is later but never wrong: the
/// new voter is a caught-up observer by then, so the commit does not wait on it to start.
pub async fn add_raft_voter(broker: &Broker, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let outcome = match check_cluster_id(broker, req.cluster_id.as_ref()) {
        Err(e) => Err(e),
        Ok(()) => {
            let timeout_ms = u64::try_from(req.timeout_ms).unwrap_or(0).clamp(1, 300_000);
            broker
                .controller
                .add_voter(req.voter_id, timeout_ms)
                .await
                .map_err(|e| (controller_error_code(&e), e.to_string()))
        }
    };
    match outcome {
        Ok(()) => {
            tracing::info!(voter = req.voter_id, "controller voter added");
            AddRaftVoterResponse::default()
        }
        Err((code, message)) => AddRaftVoterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message))),
    }
}

/// Answers RemoveRaftVoter (`kafka-metadata-quorum.sh remove-controller`,
/// `Admin.removeRaftVoter`): the voter stops voting and stays an observer. VOTER_NOT_FOUND for
/// a node that does not vote; INVALID_REQUEST for the last voter.
pub async fn remove_raft_voter(broker: &Broker, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let outcome = match check_cluster_id(broker, req.cluster_id.as_ref()) {
        Err(e) => Err(e),
        Ok(()) => broker
            .controller
            .remove_voter(req.voter_id)
            .await
            .map_err(|e| (controller_error_code(&e), e.to_string())),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(voter = req.voter_id, "controller voter removed");
            RemoveRaftVoterResponse::default()
        }
        Err((code, message)) => RemoveRaftVoterResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message))),
    }
}
