//! Request handlers, one module per Kafka API family, and the dispatch between them.
//!
//! APIs this broker does not serve are absent from [`supported_versions`], so ApiVersions
//! never advertises them and a request for one closes the connection, as Kafka does for an
//! API it does not know.

pub mod admin;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod consumer_group;
pub mod coordinator;
pub mod features;
pub mod fetch;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod markers;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod quorum;
pub mod reassign;
pub mod streams_group;
pub mod txn;

use std::sync::Arc;

use bytes::Bytes;
use fjord_controller::{PartitionMeta, TopicMeta};
use fjord_protocol::frame::{encode_response, encode_response_parts, FramePart, Request};
use fjord_storage::FileRecords;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::Broker;

/// The APIs Fjord implements, each over Kafka 4.4's whole version range (see
/// [`supported_versions`]).
pub const IMPLEMENTED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::DescribeConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DescribeLogDirs,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::UpdateFeatures,
    ApiKey::DescribeQuorum,
    ApiKey::AddRaftVoter,
    ApiKey::RemoveRaftVoter,
    ApiKey::DescribeTopicPartitions,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::StreamsGroupHeartbeat,
    ApiKey::StreamsGroupDescribe,
    ApiKey::StreamsGroupTopologyDescriptionUpdate,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeTransactions,
    ApiKey::DescribeProducers,
    ApiKey::ListTransactions,
    ApiKey::WriteTxnMarkers,
];

/// The versions served for an API, `None` if it is not served: all that `kafka-protocol`,
/// regenerated from Kafka 4.4's schemas (`vendor/regenerate.sh`), can decode. Like Kafka's
/// generator, it leaves out a latest version the schema marks unstable (InitProducerId v6 of
/// KIP-939), which Kafka 4.4 does not advertise either.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    IMPLEMENTED.contains(&api_key).then(|| api_key.valid_versions())
}

/// The range ApiVersions advertises. The same as what is served, except Produce, which is
/// advertised from v0 while v0-2 requests are refused (connection closed), exactly as Kafka 4
/// does (KAFKA-18659): librdkafka enables gzip, snappy and lz4 only when it sees Produce v0-2
/// advertised.
pub fn advertised_versions(api_key: ApiKey) -> Option<VersionRange> {
    let served = supported_versions(api_key)?;
    Some(match api_key {
        ApiKey::Produce => VersionRange {
            min: 0,
            max: served.max,
        },
        _ => served,
    })
}

/// The address clients of one listener use for this broker.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The listener's name: other brokers are given on their listener of the same name.
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// Facts about one request that every handler may need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The API.
    pub api_key: ApiKey,
    /// Its version.
    pub version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The client's `client.id`.
    pub client_id: Option<StrBytes>,
    /// The listener the request came in on, as advertised.
    pub endpoint: Arc<Endpoint>,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// When the request was read off the socket.
    pub received: std::time::Instant,
}

impl RequestContext {
    /// Context of a decoded request.
    pub fn new(req: &Request, endpoint: Arc<Endpoint>, peer: std::net::SocketAddr) -> Self {
        RequestContext {
            api_key: req.api_key,
            version: req.header.request_api_version,
            correlation_id: req.header.correlation_id,
            client_id: req.header.client_id.clone(),
            endpoint,
            peer,
            received: std::time::Instant::now(),
        }
    }

    /// The client's host as Kafka shows it in group descriptions (`/127.0.0.1`).
    pub fn client_host(&self) -> String {
        format!("/{}", self.peer.ip())
    }

    /// Encodes a response for this request.
    pub fn respond(&self, body: ResponseKind) -> Reply {
        if self.api_key == ApiKey::Fetch {
            return self.respond_with_files(body, Vec::new());
        }
        crate::metrics::count_errors(self.api_key, &body);
        match encode_response(self.api_key, self.version, self.correlation_id, &body) {
            Ok(bytes) => Reply::Send(bytes),
            Err(e) => {
                tracing::error!(api = ?self.api_key, version = self.version, error = %e, "response does not encode; closing the connection");
                Reply::Close
            }
        }
    }

    /// Encodes a Fetch response whose larger record sets stay in the segment files: the frame
    /// is written as slices of the encoded response around those regions of the files.
    pub fn respond_with_files(&self, body: ResponseKind, files: fetch::FileRecordSets) -> Reply {
        crate::metrics::count_errors(self.api_key, &body);
        let external: Vec<_> = files.iter().map(|(m, f)| (*m, f.len)).collect();
        let mut files: Vec<Option<FileRecords>> = files.into_iter().map(|(_, f)| Some(f)).collect();
        match encode_response_parts(self.api_key, self.version, self.correlation_id, body, &external) {
            Ok(parts) => Reply::SendParts(
                parts
                    .into_iter()
                    .map(|p| match p {
                        FramePart::Bytes(b) => OutPart::Bytes(b),
                        FramePart::External(i) => OutPart::File(files[i].take().unwrap_or_default()),
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::error!(version = self.version, error = %e, "fetch response does not encode; closing the connection");
                Reply::Close
            }
        }
    }
}

/// Part of a response frame.
#[derive(Debug)]
pub enum OutPart {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A record set in segment files.
    File(FileRecords),
}

/// What the connection does once a request is handled.
#[derive(Debug)]
pub enum Reply {
    /// Write these bytes (a whole response frame).
    Send(Bytes),
    /// Write these parts, in order: together they are one response frame.
    SendParts(Vec<OutPart>),
    /// No response (Produce with acks=0).
    Nothing,
    /// Close the connection (how Kafka signals an error to an acks=0 producer).
    Close,
}

/// A request's turn on its connection, held until the request is complete (see `server`).
pub type OrderGuard = Box<dyn Send + Sync + 'static>;

/// A started request: its reply already, or the task that will give it.
pub enum Started {
    Ready(Reply),
    Running(JoinHandle<Reply>),
}

impl Started {
    /// The reply; a handler task that panicked closes the connection.
    pub async fn reply(self) -> Reply {
        match self {
            Started::Ready(reply) => reply,
            Started::Running(task) => task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request handler failed; closing the connection");
                Reply::Close
            }),
        }
    }
}

/// Starts a request. Produce does its ordering-sensitive part (handing its appends to the
/// log) before this returns, and when the log has written them already (inline, see
/// `fjord_storage`) its reply is ready without a task of its own; everything else runs
/// entirely on the returned task. `turn` is released when the request completes.
pub async fn start(broker: Arc<Broker>, ctx: RequestContext, body: RequestKind, turn: OrderGuard) -> Started {
    let client_id = ctx.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");
    let span = tracing::debug_span!("request", api = ?ctx.api_key, version = ctx.version, correlation_id = ctx.correlation_id, client_id);
    // Queue time: read off the socket until this request's turn came.
    let began = std::time::Instant::now();
    let queued = began.duration_since(ctx.received);
    match body {
        RequestKind::Produce(req) => {
            let pending = produce::start(&broker, &ctx, req).instrument(span.clone()).await;
            match pending.try_finish(&broker, &ctx) {
                Ok(reply) => {
                    drop(turn);
                    finished(&broker, &ctx, queued, began.elapsed());
                    Started::Ready(reply)
                }
                Err(pending) => Started::Running(tokio::spawn(
                    async move {
                        let reply = pending.finish(&broker, &ctx).await;
                        drop(turn);
                        finished(&broker, &ctx, queued, began.elapsed());
                        reply
                    }
                    .instrument(span),
                )),
            }
        }
        other => Started::Running(tokio::spawn(
            async move {
                let reply = handle(broker.clone(), ctx.clone(), other).await;
                drop(turn);
                finished(&broker, &ctx, queued, began.elapsed());
                reply
            }
            .instrument(span),
        )),
    }
}

/// Request metrics and the slow-request log.
fn finished(broker: &Broker, ctx: &RequestContext, queued: std::time::Duration, processing: std::time::Duration) {
    broker.stats.request(ctx.api_key, ctx.version, queued, processing);
    let slow_ms = broker.config.slow_request_ms;
    let total = queued + processing;
    // A Fetch long-polls up to its max_wait by design; only time beyond that is slow.
    if slow_ms > 0 && total.as_millis() as u64 > slow_ms && ctx.api_key != ApiKey::Fetch {
        tracing::warn!(
            api = ?ctx.api_key,
            version = ctx.version,
            client_id = ctx.client_id.as_ref().map(|c| c.as_str()).unwrap_or(""),
            peer = %ctx.peer,
            queue_ms = queued.as_millis() as u64,
            processing_ms = processing.as_millis() as u64,
            "slow request"
        );
    }
}

async fn handle(broker: Arc<Broker>, ctx: RequestContext, body: RequestKind) -> Reply {
    let b = &broker;
    let v = ctx.version;
    let resp = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(&ctx, r, &b.metadata(), b.node_id()))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(b, &ctx, r).await),
        RequestKind::Fetch(r) => {
            let (response, files) = fetch::handle(b, v, r).await;
            return ctx.respond_with_files(ResponseKind::Fetch(response), files);
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(leader_epoch::handle(b, r).await),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(coordinator::handle(b, &ctx, r)),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join_group(b, &ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync_group(b, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(b, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(b, &ctx, r).await),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(b, r).await),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe_groups(b, &ctx, r).await),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete_groups(b, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::offset_commit(b, &ctx, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::offset_fetch(b, &ctx, r).await),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offsets::offset_delete(b, r).await),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(txn::init_producer_id(b, &ctx, r).await),
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions_to_txn(b, &ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(txn::add_offsets_to_txn(b, &ctx, r).await),
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(b, &ctx, r).await),
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(markers::write_txn_markers(b, r).await),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(b, &ctx, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe_transactions(b, r).await)
        }
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(producers::describe_producers(b, r).await),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list_transactions(b, r).await),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_group::heartbeat(b, &ctx, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group::describe(b, r).await)
        }
        RequestKind::StreamsGroupHeartbeat(r) => {
            ResponseKind::StreamsGroupHeartbeat(streams_group::heartbeat(b, &ctx, r).await)
        }
        RequestKind::StreamsGroupDescribe(r) => {
            ResponseKind::StreamsGroupDescribe(streams_group::describe(b, &ctx, r).await)
        }
        RequestKind::StreamsGroupTopologyDescriptionUpdate(r) => {
            ResponseKind::StreamsGroupTopologyDescriptionUpdate(streams_group::topology_description_update(b, r))
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(b, v, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(admin::create_topics(b, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(admin::delete_topics(b, v, r).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(admin::create_partitions(b, r).await),
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(admin::delete_records(b, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(b, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(b, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(b, r).await)
        }
        RequestKind::UpdateFeatures(r) => ResponseKind::UpdateFeatures(features::update_features(b, &ctx, r).await),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(cluster::describe_cluster(b, &ctx, r)),
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(cluster::elect_leaders(b, &ctx, r).await),
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassign::alter(b, &ctx, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(reassign::list(b, r)),
        RequestKind::DescribeQuorum(r) => ResponseKind::DescribeQuorum(quorum::describe_quorum(b, &ctx, r).await),
        RequestKind::AddRaftVoter(r) => ResponseKind::AddRaftVoter(quorum::add_raft_voter(b, r).await),
        RequestKind::RemoveRaftVoter(r) => ResponseKind::RemoveRaftVoter(quorum::remove_raft_voter(b, r).await),
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(cluster::describe_topic_partitions(b, r))
        }
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(cluster::describe_log_dirs(b, r)),
        other => {
            // Unreachable while IMPLEMENTED and this match agree: the decoder refuses
            // unserved APIs. Closing is what Kafka does for an API it does not serve.
            tracing::warn!(api = ?std::mem::discriminant(&other), "request for an API without a handler");
            return Reply::Close;
        }
    };
    ctx.respond(resp)
}

/// A topic name for a response.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Fills in the names of topics a request names by id (OffsetCommit v10, OffsetFetch v10,
/// TxnOffsetCommit v6), as Kafka does before anything else: a topic whose id no topic has keeps
/// an empty name, which the handler answers with UNKNOWN_TOPIC_ID. Committed offsets stay keyed
/// by name, so clients of both kinds of version see the same offsets.
pub fn names_from_ids<'a>(
    meta: &fjord_controller::ClusterMetadata,
    topics: impl Iterator<Item = (&'a mut TopicName, fjord_controller::Uuid)>,
) {
    for (name, id) in topics {
        *name = match meta.topic_by_id(&id) {
            Some(t) => topic_name(&t.name),
            None => TopicName::default(),
        };
    }
}

/// The error Kafka gives a partition of an offset commit before it asks the group coordinator:
/// UNKNOWN_TOPIC_ID for a topic named by an id no topic has (`by_id`, after [`names_from_ids`]
/// left its name empty), UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not exist.
pub fn commit_target_error(meta: &fjord_controller::ClusterMetadata, by_id: bool, name: &str, p: i32) -> Option<i16> {
    if by_id && name.is_empty() {
        return Some(ResponseError::UnknownTopicId.code());
    }
    let known = meta
        .topics
        .get(name)
        .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
    (!known).then(|| ResponseError::UnknownTopicOrPartition.code())
}

/// A string for a response.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Kafka's rule for topic names (`Topic.validate`): 1 to 249 of `[a-zA-Z0-9._-]`, not `.`
/// or `..`, refused with Kafka 4.4's texts.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    let reason = if name.is_empty() {
        "the empty string is not allowed".to_string()
    } else if name == "." || name == ".." {
        format!("'{name}' is not allowed")
    } else if name.len() > 249 {
        format!("the length of '{name}' is longer than the max allowed length 249")
    } else if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        format!("'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'")
    } else {
        return Ok(());
    };
    Err(format!("Topic name is invalid: {reason}"))
}

/// Finds a partition that this broker leads, checking the client's view of the leader epoch
/// (KIP-320) the way every partition-level API does: a newer epoch than ours is
/// `UNKNOWN_LEADER_EPOCH` (we are behind), an older one `FENCED_LEADER_EPOCH` (the client is),
/// -1 skips the check.
pub fn led_partition<'a>(
    broker: &Broker,
    topic: Option<&'a TopicMeta>,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<(&'a TopicMeta, &'a PartitionMeta), ResponseError> {
    let topic = topic.ok_or(ResponseError::UnknownTopicOrPartition)?;
    let pmeta = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if current_leader_epoch >= 0 && current_leader_epoch > pmeta.leader_epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    if current_leader_epoch >= 0 && current_leader_epoch < pmeta.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if pmeta.leader != broker.node_id() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok((topic, pmeta))
}

/// Authorized-operations value meaning "not requested" (Kafka's `Integer.MIN_VALUE`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's bit set of the operations a group allows (READ, DELETE, DESCRIBE) when no
/// authorizer is configured.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "## Compatibility" table, one `Vec` of trimmed cells per line: the header,
    /// the separator, then the rows, up to the first line that is not part of the table.
    fn compatibility_table(readme: &str) -> Vec<Vec<&str>> {
        let (_, section) = readme
            .split_once("\n## Compatibility\n")
            .expect("the README has a \"## Compatibility\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let inner = l.trim().strip_prefix('|').unwrap_or(l);
                let inner = inner.strip_suffix('|').unwrap_or(inner);
                inner.split('|').map(str::trim).collect()
            })
            .collect()
    }

    /// Other names a `tested by` file may use for an API: what the client library, or the
    /// broker's own state machine, calls it. Only for files that need one.
    const API_ALIASES: &[(&str, &[&str])] = &[
        // confluent-kafka's and the Java client's call: AddOffsetsToTxn, then TxnOffsetCommit.
        (
            "AddOffsetsToTxn",
            &["send_offsets_to_transaction", "sendOffsetsToTransaction"],
        ),
        (
            "TxnOffsetCommit",
            &["send_offsets_to_transaction", "sendOffsetsToTransaction"],
        ),
        // `ConsumerGroup::heartbeat` (group::consumer) is what answers a ConsumerGroupHeartbeat.
        ("ConsumerGroupHeartbeat", &["group.heartbeat("]),
    ];

    /// "FindCoordinator" -> "find_coordinator".
    fn snake_case(name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 4);
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    /// Whether lowercase `text` has `key` as a number right after the word "key" or "api" and
    /// any of ` \t=:_-(#` ("api key 10", "API_KEY = 10", "key: 10"; not "api key 100").
    fn mentions_key(text: &str, key: i16) -> bool {
        ["key", "api"].iter().any(|word| {
            text.match_indices(word).any(|(i, _)| {
                let rest = text[i + word.len()..].trim_start_matches(|c: char| " \t=:_-(#".contains(c));
                let digits = &rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())];
                !digits.is_empty() && digits.parse::<i64>() == Ok(i64::from(key))
            })
        })
    }

    /// The rule every file in a row's `tested by` cell is held to: ignoring case, it contains
    /// the API's name ("FindCoordinator"), its snake_case ("find_coordinator") or one of its
    /// [`API_ALIASES`], or it has the API's key number next to "key" or "api" ([`mentions_key`]).
    fn mentions_api(text: &str, name: &str, key: i16) -> bool {
        let text = text.to_lowercase();
        let aliases = API_ALIASES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[][..], |(_, a)| *a);
        [name.to_lowercase(), snake_case(name)]
            .into_iter()
            .chain(aliases.iter().map(|a| a.to_lowercase()))
            .any(|n| text.contains(&n))
            || mentions_key(&text, key)
    }

    #[test]
    fn readme_mention_rule_is_what_its_comment_says() {
        assert_eq!(snake_case("OffsetForLeaderEpoch"), "offset_for_leader_epoch");
        assert!(mentions_api("c.find_coordinator(txn_id)", "FindCoordinator", 10));
        assert!(mentions_api("# FINDCOORDINATOR v3", "FindCoordinator", 10));
        assert!(mentions_api(
            "p.send_offsets_to_transaction(...)",
            "TxnOffsetCommit",
            28
        ));
        assert!(mentions_api("a request with API key 10", "FindCoordinator", 10));
        assert!(mentions_api("api_key = 10", "FindCoordinator", 10));
        assert!(!mentions_api("api key 100, key 1, 10 apis", "FindCoordinator", 10));
        assert!(!mentions_api("a coordinator", "FindCoordinator", 10));
    }

    /// The keys of the APIs an unserved row of the table names: "SASL", "ACLs" or "share
    /// groups", by their names in `kafka-protocol` (none may come out empty).
    fn unserved_api_keys(group: &str) -> Vec<ApiKey> {
        let is_in: fn(&str) -> bool = match group {
            "SASL" => |n| n.starts_with("Sasl"),
            "ACLs" => |n| n.ends_with("Acls"),
            "share groups" => |n| n.contains("Share"),
            other => panic!("README compatibility table: unknown group of unserved APIs {other:?}"),
        };
        let keys: Vec<ApiKey> = (0..=i16::MAX)
            .filter_map(|k| ApiKey::try_from(k).ok())
            .filter(|k| is_in(&format!("{k:?}")))
            .collect();
        assert!(!keys.is_empty(), "no API of kafka-protocol is one of the {group}");
        keys
    }

    /// (key, min, max) of every API in what ApiVersions answers.
    fn api_versions_answer() -> Vec<(i16, i16, i16)> {
        let ctx = RequestContext {
            api_key: ApiKey::ApiVersions,
            version: 3,
            correlation_id: 1,
            client_id: None,
            endpoint: Arc::new(Endpoint {
                listener: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
            }),
            peer: "127.0.0.1:40000".parse().expect("a socket address"),
            received: std::time::Instant::now(),
        };
        let req = kafka_protocol::messages::ApiVersionsRequest::default()
            .with_client_software_name(str_bytes("fjord-tests"))
            .with_client_software_version(str_bytes("1.0"));
        let resp = api_versions::handle(&ctx, req, &Default::default(), 1);
        assert_eq!(resp.error_code, 0, "ApiVersions v3 answered an error");
        let mut out: Vec<_> = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        out.sort();
        out
    }

    /// The README's compatibility table is true, cell by cell:
    /// - API and key: the name is `kafka-protocol`'s name for the key;
    /// - key and versions: the rows list exactly the APIs and ranges advertised, both by
    ///   `advertised_versions` and in an actual ApiVersions answer;
    /// - status and tested by: never empty; `tested by` is a comma-separated list of
    ///   backquoted paths from the repository root, each an existing file that mentions the
    ///   row's API ([`mentions_api`]). What the status claims is for a reader to hold against
    ///   those files; this test checks they are there and about the right API.
    /// - A row without a key (SASL, ACLs, share groups) lists APIs that are not served: its
    ///   status must say they are not advertised, and none of them is. Its files need not
    ///   mention an API.
    #[test]
    fn readme_compatibility_table_is_true() {
        let readme = include_str!("../../../README.md");
        let table = compatibility_table(readme);
        let [header, separator, rows @ ..] = table.as_slice() else {
            panic!("the README's Compatibility section has no table")
        };
        assert_eq!(
            header,
            &["API", "key", "versions", "status", "tested by"],
            "README compatibility table header"
        );
        assert!(
            separator.len() == header.len()
                && separator
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':')),
            "README compatibility table: {separator:?} is not the separator line"
        );
        // The crate is `broker/` in the repository; the README's paths are from the root.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the broker crate has a parent directory");
        assert!(
            root.join("README.md").is_file() && root.join("broker/src/handler/mod.rs").is_file(),
            "{} is not the repository root",
            root.display()
        );
        let answered = api_versions_answer();

        let mut listed = Vec::new();
        for row in rows {
            let [api, key, versions, status, tested_by] = row.as_slice() else {
                panic!("README compatibility row {row:?} does not have the header's 5 cells")
            };
            assert!(!api.is_empty(), "README compatibility row {row:?} names no API");
            assert!(!status.is_empty(), "README compatibility row {api}: empty status");
            assert!(
                !tested_by.is_empty(),
                "README compatibility row {api}: empty `tested by`"
            );
            let mut files = Vec::new();
            for item in tested_by.split(',').map(str::trim) {
                let path = item
                    .strip_prefix('`')
                    .and_then(|p| p.strip_suffix('`'))
                    .filter(|p| !p.is_empty() && !p.contains('`'))
                    .unwrap_or_else(|| panic!("README compatibility row {api}: {item:?} is not a `path`"));
                assert!(
                    !path.starts_with('/') && !path.split('/').any(|c| c == ".." || c == "."),
                    "README compatibility row {api}: {path} is not a path from the repository root"
                );
                let bytes = std::fs::read(root.join(path))
                    .unwrap_or_else(|e| panic!("README compatibility row {api}: tested by {path}: {e}"));
                files.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }

            if key.is_empty() {
                assert!(
                    versions.is_empty(),
                    "README compatibility row {api}: versions without a key"
                );
                assert!(
                    status.contains("not advertised"),
                    "README compatibility row {api}: a row without a key is for APIs not served, and must say they are not advertised"
                );
                for group in api.split(',').map(str::trim) {
                    for k in unserved_api_keys(group) {
                        assert!(
                            !IMPLEMENTED.contains(&k) && advertised_versions(k).is_none(),
                            "README says {k:?} ({group}) is not advertised, but it is served"
                        );
                        assert!(
                            !answered.iter().any(|a| a.0 == k as i16),
                            "README says {k:?} ({group}) is not advertised, but ApiVersions lists it"
                        );
                    }
                }
                continue;
            }

            let key: i16 = key
                .parse()
                .unwrap_or_else(|_| panic!("README compatibility row {api}: key {key:?} is not a number"));
            let api_key = ApiKey::try_from(key)
                .unwrap_or_else(|_| panic!("README compatibility row {api}: {key} is not an API key"));
            assert_eq!(
                format!("{api_key:?}"),
                *api,
                "README compatibility row {api}: key {key} is {api_key:?}"
            );
            // versions "a–b" (an en dash) or a single "n"
            let (min, max) = versions.split_once('–').unwrap_or((versions, versions));
            let (Ok(min), Ok(max)) = (min.parse::<i16>(), max.parse::<i16>()) else {
                panic!("README compatibility row {api}: versions {versions:?} are not \"a–b\" or \"n\"")
            };
            listed.push((key, min, max));
            for (path, text) in &files {
                assert!(
                    mentions_api(text, api, key),
                    "README compatibility row {api}: {path} does not mention {api} (nor {}, an alias, or key {key}); \
                     is it the right file? (a name the file uses for the call can go into API_ALIASES)",
                    snake_case(api)
                );
            }
        }
        for (name, _) in API_ALIASES {
            assert!(
                rows.iter().any(|r| r.first() == Some(name)),
                "API_ALIASES names {name}, not in the README table"
            );
        }

        listed.sort();
        let rows_with_key = listed.len();
        listed.dedup();
        assert_eq!(
            listed.len(),
            rows_with_key,
            "README compatibility table lists an API twice"
        );
        let mut served: Vec<(i16, i16, i16)> = IMPLEMENTED
            .iter()
            .map(|k| {
                let r = advertised_versions(*k).expect("implemented APIs are served");
                (*k as i16, r.min, r.max)
            })
            .collect();
        served.sort();
        assert_eq!(
            listed, served,
            "README compatibility table (key, min, max) differs from what is served"
        );
        assert_eq!(
            listed, answered,
            "README compatibility table (key, min, max) differs from what ApiVersions answers"
        );
    }

    /// fjord-protocol's `messages` test round-trips every API kafka-protocol has, at every
    /// version its request and response types have; that covers what we serve only if we
    /// serve no other version. A decoder refuses a version its type lacks before reading
    /// anything, so an empty body tells.
    #[test]
    fn served_versions_are_round_tripped_by_the_protocol_tests() {
        let refused = |r: anyhow::Result<()>| {
            r.is_err_and(|e| e.root_cause().to_string() == "specified version not supported by this message type")
        };
        let no_request = |k, v| refused(RequestKind::decode(k, &mut Bytes::new(), v).map(drop));
        let no_response = |k, v| refused(ResponseKind::decode(k, &mut Bytes::new(), v).map(drop));
        assert!(no_request(ApiKey::Metadata, 99) && no_response(ApiKey::Metadata, 99));
        assert!(!no_request(ApiKey::Metadata, 12) && !no_response(ApiKey::Metadata, 12));
        for &key in IMPLEMENTED {
            let served = supported_versions(key).expect("implemented APIs are served");
            for v in served.min..=served.max {
                assert!(
                    !no_request(key, v),
                    "{key:?} v{v} is served, kafka-protocol has no such request"
                );
                assert!(
                    !no_response(key, v),
                    "{key:?} v{v} is served, kafka-protocol has no such response"
                );
            }
        }
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
