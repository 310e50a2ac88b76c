//! The replicated cluster metadata: what the state machine holds and what readers see.
//!
//! Every type here is serialized into Raft log entries and snapshots (serde_json), so renaming a
//! field changes the on-disk format.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as registered with the controller (Kafka's `RegisterBrokerRecord`, reduced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Kafka `node.id`; non-negative.
    pub node_id: i32,
    /// Host of the inter-broker listener (`inter.broker.listener.name`): where followers fetch
    /// from this broker.
    pub host: String,
    /// Port of the inter-broker listener.
    pub port: u16,
    /// Kafka `broker.rack`, if set.
    pub rack: Option<String>,
    /// Every advertised listener, by name: a client is told the other brokers' addresses on the
    /// listener it came in on, as Kafka tells it (an internal listener for a compose network,
    /// an external one for the host). Empty in registrations written before listeners were
    /// recorded, which [`BrokerInfo::endpoint`] answers with `host`/`port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<BrokerEndpoint>,
}

/// One advertised listener of a broker (Kafka's `BrokerEndpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name (`PLAINTEXT`, `PLAINTEXT_HOST`, ...).
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

impl BrokerInfo {
    /// The address of this broker on the listener named `listener`; `None` when it has no such
    /// listener (Kafka then leaves it out of Metadata for that client).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| (l.host.as_str(), l.port))
    }
}

/// One partition of a topic (Kafka's `PartitionRecord`, reduced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Partition index; equal to its position in [`TopicMeta::partitions`].
    pub partition: i32,
    /// Node id of the leader; the first replica when the partition is created.
    pub leader: i32,
    /// Starts at 0 and never decreases.
    pub leader_epoch: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas; equal to `replicas` when the partition is created.
    pub isr: Vec<i32>,
    /// Replicas a reassignment in progress adds (Kafka's `addingReplicas`): they are in
    /// `replicas`, and catch up as followers outside the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Replicas a reassignment in progress drops once every adding replica is in sync (Kafka's
    /// `removingReplicas`); they are at the end of `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

/// A topic (Kafka's `TopicRecord` plus its partitions and config overrides).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name; unique in the cluster.
    pub name: String,
    /// Topic id, chosen by the proposer; unique in the cluster and never reused by this cluster.
    pub topic_id: Uuid,
    /// Partitions; invariant: `partitions[i].partition == i`.
    pub partitions: Vec<PartitionMeta>,
    /// Only the topic-level overrides that were explicitly set; defaults live in the broker.
    pub configs: BTreeMap<String, String>,
}

/// A consistent view of the whole cluster metadata as of one applied log index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Kafka cluster id (22 characters of URL-safe base64); empty until `InitCluster` applies.
    pub cluster_id: String,
    /// Node id of the Raft leader that wrote the latest applied entry.
    pub controller_id: i32,
    /// Registered brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Registered brokers that missed their heartbeats (`broker.session.timeout.ms`): they lead
    /// nothing, get no new partitions, and clients are not told about them until they
    /// heartbeat again.
    #[serde(default)]
    pub fenced: BTreeSet<i32>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet handed out (Kafka's `AllocateProducerIds`): brokers take
    /// blocks of ids from here, so ids are unique across the cluster and never reused.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Dynamic broker configs (IncrementalAlterConfigs and AlterConfigs on BROKER resources):
    /// by resource name, `""` for the cluster-wide defaults and a node id for one broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Finalized feature levels (KIP-584) other than 0, by name; empty for a cluster created
    /// before Fjord kept them (see [`crate::features`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, i16>,
    /// Raised by every change of `features` (ApiVersions' `FinalizedFeaturesEpoch`, which
    /// clients use to tell newer answers from older ones).
    #[serde(default)]
    pub features_epoch: i64,
}

impl ClusterMetadata {
    /// Registered brokers that are not fenced, in id order.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .keys()
            .copied()
            .filter(|b| !self.fenced.contains(b))
            .collect()
    }

    /// Looks a topic up by id.
    ///
    /// A linear scan over the topics: the map is keyed by name because every admin API names
    /// topics, while lookups by id (Fetch v13+) are served from the broker's own caches.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.topic_id == id)
    }
}

/// One operation of IncrementalAlterConfigs on a topic config key
/// ([KIP-339](https://cwiki.apache.org/confluence/display/KAFKA/KIP-339%3A+Create+a+new+IncrementalAlterConfigs+API)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    /// `SET`: set `key` to `value`.
    Set(String, String),
    /// `DELETE`: remove the override for `key` (a no-op if it has none).
    Delete(String),
    /// `APPEND`: treat the current override as a comma-separated list and append each item of
    /// `value` (itself comma-separated) that is not already in it.
    Append(String, String),
    /// `SUBTRACT`: treat the current override as a comma-separated list and remove every item of
    /// `value` from it. Like Kafka, an emptied list stays set as the empty string.
    Subtract(String, String),
}

impl ConfigOp {
    /// The config key this operation changes.
    pub fn key(&self) -> &str {
        match self {
            ConfigOp::Set(k, _) | ConfigOp::Delete(k) | ConfigOp::Append(k, _) | ConfigOp::Subtract(k, _) => k,
        }
    }
}
