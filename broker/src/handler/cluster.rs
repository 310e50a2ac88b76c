//! DescribeCluster, DescribeTopicPartitions (KIP-966), DescribeLogDirs and ElectLeaders.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ElectLeadersRequest, ElectLeadersResponse,
};

use fjord_controller::ElectionOutcome;

use super::{str_bytes, topic_name, RequestContext, AUTHORIZED_OPERATIONS_OMITTED};
use crate::error::controller_error_code;
use crate::{partition_id, Broker};

/// Answers DescribeCluster.
pub fn describe_cluster(broker: &Broker, ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let meta = broker.metadata();
    // endpoint_type 2 asks for controllers (KIP-919); every Fjord node is a broker and a
    // controller voter, so its brokers are its controllers.
    let brokers = super::metadata::brokers(broker, ctx, &meta)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(str_bytes(meta.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller_id(&meta)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Most partitions per DescribeTopicPartitions response unless the client asks for fewer
/// (Kafka's `max.request.partition.size.limit` default).
const PARTITION_LIMIT: i32 = 2000;

/// Answers DescribeTopicPartitions, paginated by the client's cursor and partition limit.
pub fn describe_topic_partitions(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let meta = broker.metadata();
    let mut names: Vec<String> = if req.topics.is_empty() {
        meta.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let limit = if req.response_partition_limit > 0 {
        req.response_partition_limit.min(PARTITION_LIMIT)
    } else {
        PARTITION_LIMIT
    };
    let (start_topic, start_partition) = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.to_string(), c.partition_index))
        .unwrap_or_default();
    let mut budget = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= start_topic) {
        let Some(t) = meta.topics.get(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        let first = if name == start_topic { start_partition.max(0) } else { 0 };
        let mut partitions = Vec::new();
        for p in t.partitions.iter().filter(|p| p.partition >= first) {
            if budget == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(&name))
                        .with_partition_index(p.partition),
                );
                break;
            }
            budget -= 1;
            let ids = |v: &Vec<i32>| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.partition)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(ids(&p.replicas))
                    .with_isr_nodes(ids(&p.isr))
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new())),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

/// Answers DescribeLogDirs: one log dir holding every partition of this broker.
pub fn describe_log_dirs(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let meta = broker.metadata();
    let mut topics = Vec::new();
    for t in meta.topics.values() {
        let wanted: Option<Vec<i32>> = match &req.topics {
            None => None,
            Some(list) => match list.iter().find(|d| d.topic.as_str() == t.name) {
                Some(d) => Some(d.partitions.clone()),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = t
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker.node_id()))
            .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(&p.partition)))
            .map(|p| {
                let size = broker.store.size_bytes(&partition_id(t, p.partition));
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.partition)
                    .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                    .with_offset_lag(0)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&t.name))
                    .with_partitions(partitions),
            );
        }
    }
    // The configured log dir, as Kafka names it; Fjord's layout inside it is its own business.
    let dir = std::fs::canonicalize(&broker.config.log_dir).unwrap_or_else(|_| broker.config.log_dir.clone());
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        // Kafka's UNKNOWN_VOLUME_BYTES: we do not probe the file system.
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// `election_type` of a preferred election.
const ELECTION_PREFERRED: i8 = 0;
/// `election_type` of an unclean election.
const ELECTION_UNCLEAN: i8 = 1;

/// Answers ElectLeaders (what `kafka-leader-election.sh` and `Admin.electLeaders` send): the
/// controller moves leadership to each partition's preferred replica, or gives a leaderless
/// partition one, uncleanly if it must.
pub async fn elect_leaders(broker: &Broker, ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    // v0 has no election type: it is always a preferred election.
    let election_type = if ctx.version == 0 {
        ELECTION_PREFERRED
    } else {
        req.election_type
    };
    if election_type != ELECTION_PREFERRED && election_type != ELECTION_UNCLEAN {
        return ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    let partitions: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    if partitions.as_ref().is_some_and(Vec::is_empty) {
        return ElectLeadersResponse::default();
    }
    let elections = match broker
        .controller
        .elect_leaders(partitions, election_type == ELECTION_UNCLEAN)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let code = controller_error_code(&e);
            // Every partition asked about gets the error, as Kafka's broker answers a failed
            // forward to its controller.
            let results = req
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(code.code())
                                        .with_error_message(Some(str_bytes(e.to_string())))
                                })
                                .collect(),
                        )
                })
                .collect();
            return ElectLeadersResponse::default().with_replica_election_results(results);
        }
    };
    if elections.iter().any(|e| e.outcome == ElectionOutcome::Elected) {
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "storage after an election");
        }
    }
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for e in elections {
        let (code, message) = match e.outcome {
            ElectionOutcome::Elected => (0, None),
            ElectionOutcome::NotNeeded => (
                ResponseError::ElectionNotNeeded.code(),
                Some("Leader election not needed for topic partition."),
            ),
            ElectionOutcome::PreferredNotAvailable => (
                ResponseError::PreferredLeaderNotAvailable.code(),
                Some("The preferred leader is not available."),
            ),
            ElectionOutcome::EligibleNotAvailable => (
                ResponseError::EligibleLeadersNotAvailable.code(),
                Some("Eligible topic partition leaders are not available."),
            ),
            ElectionOutcome::UnknownPartition => (
                ResponseError::UnknownTopicOrPartition.code(),
                Some("This server does not host this topic-partition."),
            ),
        };
        let result = PartitionResult::default()
            .with_partition_id(e.partition)
            .with_error_code(code)
            .with_error_message(message.map(str_bytes));
        match by_topic.last_mut().filter(|t| t.topic.as_str() == e.topic) {
            Some(t) => t.partition_result.push(result),
            None => by_topic.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&e.topic))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(by_topic)
}
