//! Commands of the metadata state machine and their deterministic application.
//!
//! A [`Command`] is the payload of a Raft log entry. [`apply`] runs on every node, on every
//! replay after a restart, and for every follower that joins later, so it must be a pure function
//! of (state, command): no clock, no randomness, no config, no I/O, and it must never panic on a
//! command, whatever it holds. Anything random (cluster id, topic id) or configurable (default
//! partition count, default replication factor) is resolved by the proposer and carried in the
//! command; a command that is invalid for the state it meets is rejected with an [`ApplyError`]
//! that travels back to the proposer as the apply result.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{BrokerInfo, ClusterMetadata, ConfigOp, PartitionMeta, TopicMeta};
use crate::{placement, reassign};

/// Partition count used when CreateTopics asks for `-1` (Kafka `num.partitions`, default 1).
pub const DEFAULT_NUM_PARTITIONS: i32 = 1;

/// Replication factor used when CreateTopics asks for `-1` (Kafka `default.replication.factor`,
/// default 1).
pub const DEFAULT_REPLICATION_FACTOR: i16 = 1;

/// Upper bound on a topic's partition count. Kafka has no hard cap, but one CreateTopics asking
/// for `i32::MAX` partitions would make apply allocate without bound on every node and on every
/// replay; 100k partitions is ~10 MB of metadata, far beyond any single Fjord node's needs.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// Kafka's limit on topic names (`Topic.MAX_NAME_LENGTH`), in bytes (names are ASCII).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// The payload of one Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Sets the cluster id; a no-op once one is set (so a racing second init cannot change it).
    InitCluster { cluster_id: String },
    /// Registers a broker or replaces its endpoint.
    RegisterBroker(BrokerInfo),
    /// Creates a topic. Partition assignment happens in apply, derived from the registered
    /// brokers at that log index: the proposer cannot see the state the command will meet (a
    /// broker may register in between), and validating the replication factor against the same
    /// broker set that the replicas are picked from keeps check and use atomic.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        /// Concrete count (`-1` already resolved by the proposer).
        num_partitions: i32,
        /// Concrete factor (`-1` already resolved by the proposer).
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        /// A manual assignment (CreateTopics `assignments`): each partition's replicas, which
        /// then give the partition count and replication factor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// Deletes a topic.
    DeleteTopic { name: String },
    /// Grows a topic to `new_total` partitions; new partitions are assigned in apply, like
    /// `CreateTopic`, with the replication factor of the existing partitions.
    CreatePartitions {
        name: String,
        new_total: i32,
        /// A manual assignment of the new partitions (CreatePartitions `assignments`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// Applies IncrementalAlterConfigs operations to a topic's overrides, all or nothing.
    AlterTopicConfigs { name: String, ops: Vec<ConfigOp> },
    /// Applies config operations to a broker resource's dynamic configs (`""`: the
    /// cluster-wide defaults; a node id: that broker's), all or nothing. The broker that takes
    /// the request has checked the keys and values.
    AlterBrokerConfigs { resource: String, ops: Vec<ConfigOp> },
    /// Finalizes feature levels (UpdateFeatures), all or none, checked by Kafka's rules as
    /// node `node_id` (the proposer, named in the refusal); level 0 removes a feature.
    UpdateFeatures {
        node_id: i32,
        updates: Vec<(String, i16, crate::features::UpgradeType)>,
    },
    /// Hands a block of `count` producer ids to a broker.
    AllocateProducerIds { broker_id: i32, count: i32 },
    /// A broker missed its heartbeats: it is fenced, and each partition it leads moves to another
    /// in-sync replica that is not fenced, or has no leader (-1) until one comes back (Kafka's
    /// behaviour with `unclean.leader.election.enable=false`).
    FenceBroker { node_id: i32 },
    /// A fenced broker heartbeats again: partitions without a leader whose in-sync replicas
    /// include it get it back as leader.
    UnfenceBroker { node_id: i32 },
    /// A partition leader changes its in-sync replicas (Kafka's `AlterPartition`): it drops
    /// followers that fell behind `replica.lag.time.max.ms` and adds ones that caught up. Only
    /// the leader of the epoch in force may, and only from the ISR it knows of, so that two
    /// changes decided on different views cannot both apply.
    AlterIsr {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        /// The ISR the leader based its change on.
        expected_isr: Vec<i32>,
        new_isr: Vec<i32>,
    },
    /// Kafka's ElectLeaders: the preferred replica (the first assigned) leads again, or with
    /// `unclean`, a partition without a leader gets one, from its in-sync replicas if one is
    /// alive and otherwise from any live replica (whose log may lack committed records).
    /// `None` is every partition, and then only those that needed an election are reported.
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    },
    /// Kafka's AlterPartitionReassignments: each partition moves to its target replicas, or
    /// with `None` goes back from a move in progress (see [`crate::reassign`]).
    AlterReassignments {
        requests: Vec<reassign::Request>,
        allow_replication_factor_change: bool,
    },
}

/// What an election did to one partition (Kafka's per-partition ElectLeaders outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    /// A new leader, in a new leader epoch.
    Elected,
    /// Already led as asked (`ELECTION_NOT_NEEDED`).
    NotNeeded,
    /// The preferred replica is not an in-sync live replica (`PREFERRED_LEADER_NOT_AVAILABLE`).
    PreferredNotAvailable,
    /// No live replica can lead (`ELIGIBLE_LEADERS_NOT_AVAILABLE`).
    EligibleNotAvailable,
    /// No such topic or partition (`UNKNOWN_TOPIC_OR_PARTITION`).
    UnknownPartition,
}

/// One partition's election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// What happened.
    pub outcome: ElectionOutcome,
}

/// Why the state machine rejected a command. Carried back to the proposer in the apply result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ApplyError {
    TopicAlreadyExists(String),
    /// A topic name Kafka refuses for what else exists (`INVALID_TOPIC_EXCEPTION`).
    InvalidTopic(String),
    UnknownTopic(String),
    InvalidPartitions(String),
    InvalidReplicationFactor(String),
    InvalidRequest(String),
    /// A leader of an older epoch (or no longer the leader) asked for an ISR change.
    FencedLeaderEpoch(String),
    /// The ISR the change was based on is no longer the current one.
    InvalidUpdateVersion(String),
    /// The new ISR names a replica that cannot be in it (not assigned, or fenced).
    IneligibleReplica(String),
    /// A replica assignment Kafka would refuse (`INVALID_REPLICA_ASSIGNMENT`).
    InvalidReplicaAssignment(String),
    /// A cancel for a partition that is not moving (`NO_REASSIGNMENT_IN_PROGRESS`).
    NoReassignmentInProgress(String),
}

/// The apply result of one log entry, handed back by `client_write`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CommandResponse {
    /// Applied; nothing to report (blank and membership entries, `InitCluster`, `RegisterBroker`).
    #[default]
    Done,
    /// Applied; the topic as it is after the command (before it, for `DeleteTopic`).
    Topic(TopicMeta),
    /// Rejected; the state is unchanged.
    Rejected(ApplyError),
    /// Applied; the first of the producer ids allocated.
    ProducerIds { first: i64, count: i32 },
    /// Applied; the partition as it is after the command.
    Partition(PartitionMeta),
    /// Applied; each partition's election.
    Elections(Vec<Election>),
    /// Applied; each partition's reassignment outcome, in request order.
    Reassignments(Vec<Result<(), ApplyError>>),
}

/// Stateless checks of a topic name, shared by the proposer (to fail fast without a log entry)
/// and by apply (the authority).
pub(crate) fn check_topic_name(name: &str) -> Result<(), ApplyError> {
    if name.is_empty() {
        return Err(ApplyError::InvalidRequest(
            "Topic name is invalid: the empty string is not allowed".to_string(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return Err(ApplyError::InvalidRequest(format!(
            "Topic name is invalid: the length of '{name}' is longer than the max allowed length {MAX_TOPIC_NAME_BYTES}"
        )));
    }
    Ok(())
}

/// Stateless checks of a partition count for a new topic (Kafka's messages).
pub(crate) fn check_num_partitions(num_partitions: i32) -> Result<(), ApplyError> {
    if num_partitions < 1 {
        return Err(ApplyError::InvalidPartitions(
            "Number of partitions was set to an invalid non-positive value.".to_string(),
        ));
    }
    if num_partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(ApplyError::InvalidPartitions(format!(
            "Number of partitions {num_partitions} is larger than the maximum of {MAX_PARTITIONS_PER_TOPIC}."
        )));
    }
    Ok(())
}

/// Stateless checks of a replication factor (Kafka's message).
pub(crate) fn check_replication_factor(replication_factor: i16) -> Result<(), ApplyError> {
    if replication_factor < 1 {
        return Err(ApplyError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        ));
    }
    Ok(())
}

/// Applies `cmd` to `meta`. Deterministic; on rejection `meta` is left untouched.
pub(crate) fn apply(meta: &mut ClusterMetadata, cmd: Command) -> CommandResponse {
    let res = match cmd {
        Command::InitCluster { cluster_id } => {
            // A new cluster stores Fjord's default feature levels with its id.
            if meta.cluster_id.is_empty() {
                meta.cluster_id = cluster_id;
                if meta.features.is_empty() {
                    meta.features = crate::features::defaults();
                    meta.features_epoch += 1;
                }
            }
            Ok(CommandResponse::Done)
        }
        Command::UpdateFeatures { node_id, updates } => update_features(meta, node_id, updates),
        Command::RegisterBroker(broker) => register_broker(meta, broker),
        Command::CreateTopic {
            name,
            topic_id,
            num_partitions,
            replication_factor,
            configs,
            assignment,
        } => create_topic(
            meta,
            name,
            topic_id,
            num_partitions,
            replication_factor,
            configs,
            assignment,
        ),
        Command::DeleteTopic { name } => match meta.topics.remove(&name) {
            Some(topic) => Ok(CommandResponse::Topic(topic)),
            None => Err(ApplyError::UnknownTopic(name)),
        },
        Command::CreatePartitions {
            name,
            new_total,
            assignment,
        } => create_partitions(meta, name, new_total, assignment),
        Command::AlterTopicConfigs { name, ops } => alter_topic_configs(meta, name, &ops),
        Command::AlterBrokerConfigs { resource, ops } => alter_broker_configs(meta, resource, &ops),
        Command::FenceBroker { node_id } => fence_broker(meta, node_id),
        Command::UnfenceBroker { node_id } => unfence_broker(meta, node_id),
        Command::AlterIsr {
            topic,
            partition,
            leader,
            leader_epoch,
            expected_isr,
            new_isr,
        } => alter_isr(meta, &topic, partition, leader, leader_epoch, &expected_isr, new_isr),
        Command::ElectLeaders { partitions, unclean } => Ok(elect_leaders(meta, partitions, unclean)),
        Command::AlterReassignments {
            requests,
            allow_replication_factor_change,
        } => Ok(CommandResponse::Reassignments(reassign::alter(
            meta,
            requests,
            allow_replication_factor_change,
        ))),
        Command::AllocateProducerIds { broker_id, count } => {
            if count < 1 || broker_id < 0 {
                Err(ApplyError::InvalidRequest(format!(
                    "cannot allocate {count} producer ids to broker {broker_id}"
                )))
            } else {
                let first = meta.next_producer_id;
                meta.next_producer_id = first.saturating_add(i64::from(count));
                Ok(CommandResponse::ProducerIds { first, count })
            }
        }
    };
    res.unwrap_or_else(CommandResponse::Rejected)
}

fn register_broker(meta: &mut ClusterMetadata, broker: BrokerInfo) -> Result<CommandResponse, ApplyError> {
    if broker.node_id < 0 {
        return Err(ApplyError::InvalidRequest(format!(
            "Invalid broker id {}: it must be non-negative",
            broker.node_id
        )));
    }
    meta.brokers.insert(broker.node_id, broker);
    Ok(CommandResponse::Done)
}

fn fence_broker(meta: &mut ClusterMetadata, node_id: i32) -> Result<CommandResponse, ApplyError> {
    if !meta.brokers.contains_key(&node_id) {
        return Err(ApplyError::InvalidRequest(format!(
            "Broker {node_id} is not registered"
        )));
    }
    if !meta.fenced.insert(node_id) {
        return Ok(CommandResponse::Done);
    }
    let fenced = meta.fenced.clone();
    for p in meta.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
        // Out of every ISR it is in, unless it is the last member: then the partition keeps
        // it, and with it the only copy known to hold every committed record, so that it can
        // lead again when it comes back rather than a replica that may lack records.
        if p.isr.len() > 1 && p.isr.contains(&node_id) {
            p.isr.retain(|r| *r != node_id);
        }
        if p.leader == node_id {
            // The first in-sync replica in assignment order that is alive; none is "offline".
            p.leader = p
                .replicas
                .iter()
                .copied()
                .find(|r| p.isr.contains(r) && !fenced.contains(r))
                .unwrap_or(-1);
            p.leader_epoch = p.leader_epoch.saturating_add(1);
        }
    }
    Ok(CommandResponse::Done)
}

fn unfence_broker(meta: &mut ClusterMetadata, node_id: i32) -> Result<CommandResponse, ApplyError> {
    if !meta.brokers.contains_key(&node_id) {
        return Err(ApplyError::InvalidRequest(format!(
            "Broker {node_id} is not registered"
        )));
    }
    if !meta.fenced.remove(&node_id) {
        return Ok(CommandResponse::Done);
    }
    for p in meta.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
        if p.leader < 0 && p.isr.contains(&node_id) {
            p.leader = node_id;
            p.leader_epoch = p.leader_epoch.saturating_add(1);
        }
    }
    Ok(CommandResponse::Done)
}

fn elect_leaders(meta: &mut ClusterMetadata, partitions: Option<Vec<(String, i32)>>, unclean: bool) -> CommandResponse {
    let every = partitions.is_none();
    let targets = partitions.unwrap_or_else(|| {
        meta.topics
            .iter()
            .flat_map(|(name, t)| (0..t.partitions.len() as i32).map(move |p| (name.clone(), p)))
            .collect()
    });
    let live: Vec<i32> = meta.live_brokers();
    let mut out = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        let p = meta
            .topics
            .get_mut(&topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?));
        let outcome = match p {
            None => ElectionOutcome::UnknownPartition,
            Some(p) => elect(p, &live, unclean),
        };
        // Asked for everything, Kafka reports only the partitions that were not led as asked.
        if every && outcome == ElectionOutcome::NotNeeded {
            continue;
        }
        out.push(Election {
            topic,
            partition,
            outcome,
        });
    }
    CommandResponse::Elections(out)
}

/// Kafka's `PartitionChangeBuilder` for a preferred or an unclean election.
fn elect(p: &mut PartitionMeta, live: &[i32], unclean: bool) -> ElectionOutcome {
    let eligible = |r: &i32| live.contains(r);
    if !unclean {
        let Some(&preferred) = p.replicas.first() else {
            return ElectionOutcome::PreferredNotAvailable;
        };
        if p.leader == preferred {
            return ElectionOutcome::NotNeeded;
        }
        if !p.isr.contains(&preferred) || !eligible(&preferred) {
            return ElectionOutcome::PreferredNotAvailable;
        }
        p.leader = preferred;
    } else {
        if p.leader >= 0 {
            return ElectionOutcome::NotNeeded;
        }
        if let Some(r) = p.replicas.iter().copied().find(|r| p.isr.contains(r) && eligible(r)) {
            p.leader = r;
        } else if let Some(r) = p.replicas.iter().copied().find(eligible) {
            // Unclean: the only copy of what the ISR held is gone; this replica's log becomes
            // the partition's, and it alone is in sync with it.
            p.leader = r;
            p.isr = vec![r];
        } else {
            return ElectionOutcome::EligibleNotAvailable;
        }
    }
    p.leader_epoch = p.leader_epoch.saturating_add(1);
    ElectionOutcome::Elected
}

fn alter_isr(
    meta: &mut ClusterMetadata,
    topic: &str,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    expected_isr: &[i32],
    mut new_isr: Vec<i32>,
) -> Result<CommandResponse, ApplyError> {
    let fenced = meta.fenced.clone();
    let live = meta.live_brokers();
    let t = meta
        .topics
        .get_mut(topic)
        .ok_or_else(|| ApplyError::UnknownTopic(topic.to_string()))?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get_mut(i))
        .ok_or_else(|| ApplyError::UnknownTopic(format!("{topic}-{partition}")))?;
    if p.leader != leader || p.leader_epoch != leader_epoch {
        return Err(ApplyError::FencedLeaderEpoch(format!(
            "{topic}-{partition} is led by {} in epoch {}, not by {leader} in epoch {leader_epoch}",
            p.leader, p.leader_epoch
        )));
    }
    if p.isr != expected_isr {
        return Err(ApplyError::InvalidUpdateVersion(format!(
            "the ISR of {topic}-{partition} is {:?}, not {expected_isr:?}",
            p.isr
        )));
    }
    new_isr.sort_unstable();
    new_isr.dedup();
    if !new_isr.contains(&leader) {
        return Err(ApplyError::InvalidRequest(format!(
            "the ISR of {topic}-{partition} must hold its leader {leader}"
        )));
    }
    if let Some(r) = new_isr
        .iter()
        .find(|r| !p.replicas.contains(r) || (fenced.contains(r) && !p.isr.contains(r)))
    {
        return Err(ApplyError::IneligibleReplica(format!(
            "replica {r} cannot join the ISR of {topic}-{partition}"
        )));
    }
    // Assignment order, as Kafka lists it.
    p.isr = p.replicas.iter().copied().filter(|r| new_isr.contains(r)).collect();
    // The change that brings the last replica a move adds into sync completes the move.
    reassign::complete(p, &live);
    Ok(CommandResponse::Partition(p.clone()))
}

fn create_topic(
    meta: &mut ClusterMetadata,
    name: String,
    topic_id: Uuid,
    num_partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    assignment: Option<Vec<Vec<i32>>>,
) -> Result<CommandResponse, ApplyError> {
    check_topic_name(&name)?;
    if meta.topics.contains_key(&name) {
        return Err(ApplyError::TopicAlreadyExists(name));
    }
    // '.' and '_' become the same character in metric names, so Kafka refuses a topic whose name
    // differs from an existing one only by them (Topic.hasCollisionChars).
    if name.contains(['.', '_']) {
        let unified = |n: &str| n.replace('.', "_");
        let key = unified(&name);
        if let Some(other) = meta.topics.keys().find(|t| unified(t) == key) {
            return Err(ApplyError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }
    }
    check_num_partitions(num_partitions)?;
    check_replication_factor(replication_factor)?;
    if topic_id.is_nil() {
        return Err(ApplyError::InvalidRequest(
            "Topic id must not be the zero UUID".to_string(),
        ));
    }
    if meta.topic_by_id(&topic_id).is_some() {
        return Err(ApplyError::InvalidRequest(format!(
            "Topic id {topic_id} is already in use"
        )));
    }
    let partitions = match assignment {
        Some(a) => reassign::manual(meta, 0, &a, None)?,
        None => {
            let rf = usize::from(replication_factor.unsigned_abs());
            check_rf_against_brokers(rf, meta.live_brokers().len())?;
            placement::place(meta, rf, 0, num_partitions)
        }
    };
    let topic = TopicMeta {
        name: name.clone(),
        topic_id,
        partitions,
        configs,
    };
    meta.topics.insert(name, topic.clone());
    Ok(CommandResponse::Topic(topic))
}

fn create_partitions(
    meta: &mut ClusterMetadata,
    name: String,
    new_total: i32,
    assignment: Option<Vec<Vec<i32>>>,
) -> Result<CommandResponse, ApplyError> {
    let brokers = meta.live_brokers();
    let Some(topic) = meta.topics.get(&name) else {
        return Err(ApplyError::UnknownTopic(name));
    };
    // `partitions.len()` is at most MAX_PARTITIONS_PER_TOPIC, so it fits an i32.
    let current = i32::try_from(topic.partitions.len())
        .map_err(|_| ApplyError::InvalidPartitions("Topic has too many partitions".to_string()))?;
    if new_total == current {
        return Err(ApplyError::InvalidPartitions(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    if new_total < current {
        return Err(ApplyError::InvalidPartitions(format!(
            "The topic {name} currently has {current} partition(s); {new_total} would not be an increase."
        )));
    }
    check_num_partitions(new_total)?;
    // New partitions get the replication factor of the existing ones (Kafka does the same when
    // no manual assignment is given).
    // A partition that is moving counts without the replicas it drops.
    let rf = topic
        .partitions
        .first()
        .map_or(1, |p| (p.replicas.len() - p.removing.len()).max(1));
    let added = match assignment {
        Some(a) => {
            if i32::try_from(a.len()) != Ok(new_total - current) {
                return Err(ApplyError::InvalidReplicaAssignment(format!(
                    "Attempted to add {} additional partition(s), but only {} assignment(s) were specified.",
                    new_total - current,
                    a.len()
                )));
            }
            reassign::manual(meta, current, &a, Some(rf))?
        }
        None => {
            check_rf_against_brokers(rf, brokers.len())?;
            placement::place(meta, rf, current, new_total - current)
        }
    };
    let Some(topic) = meta.topics.get_mut(&name) else {
        return Err(ApplyError::UnknownTopic(name));
    };
    topic.partitions.extend(added);
    debug_assert!(topic
        .partitions
        .iter()
        .enumerate()
        .all(|(i, p)| usize::try_from(p.partition) == Ok(i)));
    Ok(CommandResponse::Topic(topic.clone()))
}

fn alter_topic_configs(
    meta: &mut ClusterMetadata,
    name: String,
    ops: &[ConfigOp],
) -> Result<CommandResponse, ApplyError> {
    let Some(topic) = meta.topics.get_mut(&name) else {
        return Err(ApplyError::UnknownTopic(name));
    };
    check_config_ops(ops)?;
    // All checks are done: from here on every op applies, so the request is all or nothing.
    for op in ops {
        apply_config_op(&mut topic.configs, op);
    }
    Ok(CommandResponse::Topic(topic.clone()))
}

fn update_features(
    meta: &mut ClusterMetadata,
    node_id: i32,
    updates: Vec<(String, i16, crate::features::UpgradeType)>,
) -> Result<CommandResponse, ApplyError> {
    for (name, level, upgrade) in &updates {
        crate::features::check_update(meta, node_id, name, *level, Some(*upgrade))
            .map_err(ApplyError::InvalidUpdateVersion)?;
    }
    // A cluster with no levels stored reads as the defaults; store them before changing one.
    if meta.features.is_empty() {
        meta.features = crate::features::defaults();
    }
    for (name, level, _) in updates {
        if level == 0 {
            meta.features.remove(&name);
        } else {
            meta.features.insert(name, level);
        }
    }
    meta.features_epoch += 1;
    Ok(CommandResponse::Done)
}

fn alter_broker_configs(
    meta: &mut ClusterMetadata,
    resource: String,
    ops: &[ConfigOp],
) -> Result<CommandResponse, ApplyError> {
    if !resource.is_empty() && resource.parse::<i32>().is_err() {
        return Err(ApplyError::InvalidRequest(format!(
            "Node id must be an integer, but it is: {resource}"
        )));
    }
    check_config_ops(ops)?;
    let configs = meta.broker_configs.entry(resource.clone()).or_default();
    for op in ops {
        apply_config_op(configs, op);
    }
    if configs.is_empty() {
        meta.broker_configs.remove(&resource);
    }
    Ok(CommandResponse::Done)
}

/// What Kafka refuses in any config change before looking at the keys themselves.
fn check_config_ops(ops: &[ConfigOp]) -> Result<(), ApplyError> {
    let mut seen = BTreeSet::new();
    for op in ops {
        if op.key().is_empty() {
            return Err(ApplyError::InvalidRequest("Config key must not be empty".to_string()));
        }
        // Kafka rejects a request naming one key twice rather than picking an order.
        if !seen.insert(op.key()) {
            return Err(ApplyError::InvalidRequest(format!(
                "Error due to duplicate config keys: {}",
                op.key()
            )));
        }
    }
    Ok(())
}

/// Applies one config operation. APPEND and SUBTRACT work on the explicit override only: the
/// controller does not know the broker's defaults (Kafka starts from the default value when the
/// key has no override).
fn apply_config_op(configs: &mut BTreeMap<String, String>, op: &ConfigOp) {
    match op {
        ConfigOp::Set(key, value) => {
            configs.insert(key.clone(), value.clone());
        }
        ConfigOp::Delete(key) => {
            configs.remove(key);
        }
        ConfigOp::Append(key, value) => {
            let mut items = split_list(configs.get(key).map_or("", String::as_str));
            for item in split_list(value) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            configs.insert(key.clone(), items.join(","));
        }
        ConfigOp::Subtract(key, value) => {
            let remove = split_list(value);
            let items: Vec<String> = split_list(configs.get(key).map_or("", String::as_str))
                .into_iter()
                .filter(|item| !remove.contains(item))
                .collect();
            configs.insert(key.clone(), items.join(","));
        }
    }
}

/// Splits a Kafka LIST value: comma-separated, whitespace around items ignored, empty items
/// dropped.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn check_rf_against_brokers(rf: usize, brokers: usize) -> Result<(), ApplyError> {
    if rf > brokers {
        return Err(ApplyError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered or some brokers have all their log directories cordoned."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerInfo {
        BrokerInfo {
            node_id: id,
            host: "127.0.0.1".to_string(),
            port: 9092,
            rack: None,
            listeners: Vec::new(),
        }
    }

    fn meta_with_brokers(ids: &[i32]) -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for id in ids {
            assert_eq!(
                apply(&mut meta, Command::RegisterBroker(broker(*id))),
                CommandResponse::Done
            );
        }
        meta
    }

    fn create(name: &str, partitions: i32, rf: i16) -> Command {
        Command::CreateTopic {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            num_partitions: partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            assignment: None,
        }
    }

    #[test]
    fn init_cluster_is_set_once() {
        let mut meta = ClusterMetadata::default();
        apply(&mut meta, Command::InitCluster { cluster_id: "a".into() });
        apply(&mut meta, Command::InitCluster { cluster_id: "b".into() });
        assert_eq!(meta.cluster_id, "a");
    }

    #[test]
    fn a_new_cluster_finalizes_default_features_and_updates_are_all_or_none() {
        use crate::features::UpgradeType::{SafeDowngrade, Upgrade};
        let mut meta = ClusterMetadata::default();
        apply(&mut meta, Command::InitCluster { cluster_id: "a".into() });
        assert_eq!(meta.feature_level("transaction.version"), 2);
        assert_eq!(meta.feature_level(crate::features::METADATA_VERSION), 33);
        let epoch = meta.features_epoch;
        assert!(epoch > 0);
        let refused = apply(
            &mut meta,
            Command::UpdateFeatures {
                node_id: 1,
                updates: vec![
                    ("transaction.version".into(), 0, SafeDowngrade),
                    ("group.version".into(), 5, Upgrade),
                ],
            },
        );
        assert!(
            matches!(&refused, CommandResponse::Rejected(ApplyError::InvalidUpdateVersion(m)) if m.contains("only supports versions 0-1")),
            "{refused:?}"
        );
        assert_eq!(meta.feature_level("transaction.version"), 2, "nothing applied");
        assert_eq!(meta.features_epoch, epoch);
        let done = apply(
            &mut meta,
            Command::UpdateFeatures {
                node_id: 1,
                updates: vec![("transaction.version".into(), 0, SafeDowngrade)],
            },
        );
        assert_eq!(done, CommandResponse::Done);
        assert!(!meta.features.contains_key("transaction.version"), "level 0 is removed");
        assert_eq!(meta.features_epoch, epoch + 1);
    }

    #[test]
    fn round_robin_assignment_is_distinct_and_rotates() {
        let mut meta = meta_with_brokers(&[3, 1, 2]);
        let CommandResponse::Topic(t) = apply(&mut meta, create("t", 3, 2)) else {
            panic!("create failed");
        };
        let replicas: Vec<Vec<i32>> = t.partitions.iter().map(|p| p.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        for p in &t.partitions {
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader_epoch, 0);
        }
        // The next topic starts where the previous one stopped.
        let CommandResponse::Topic(u) = apply(&mut meta, create("u", 1, 1)) else {
            panic!("create failed");
        };
        assert_eq!(u.partitions[0].replicas, vec![1]);
    }

    #[test]
    fn rejected_commands_leave_state_unchanged() {
        let mut meta = meta_with_brokers(&[0]);
        apply(&mut meta, create("t", 1, 1));
        apply(&mut meta, create("t_x", 1, 1));
        let before = meta.clone();
        for (cmd, want) in [
            (create("t", 1, 1), ApplyError::TopicAlreadyExists("t".into())),
            (
                create("t.x", 1, 1),
                ApplyError::InvalidTopic("Topic 't.x' collides with existing topic: t_x".into()),
            ),
            (
                create("x", 0, 1),
                ApplyError::InvalidPartitions("Number of partitions was set to an invalid non-positive value.".into()),
            ),
            (
                Command::DeleteTopic { name: "nope".into() },
                ApplyError::UnknownTopic("nope".into()),
            ),
            (
                Command::CreatePartitions {
                    name: "t".into(),
                    new_total: 1,
                    assignment: None,
                },
                ApplyError::InvalidPartitions("Topic already has 1 partition(s).".into()),
            ),
        ] {
            assert_eq!(apply(&mut meta, cmd), CommandResponse::Rejected(want));
        }
        let CommandResponse::Rejected(ApplyError::InvalidReplicationFactor(_)) = apply(&mut meta, create("x", 1, 2))
        else {
            panic!("rf 2 with one broker must be rejected");
        };
        let CommandResponse::Rejected(ApplyError::InvalidPartitions(_)) =
            apply(&mut meta, create("x", MAX_PARTITIONS_PER_TOPIC + 1, 1))
        else {
            panic!("too many partitions must be rejected");
        };
        assert_eq!(meta, before);
    }

    #[test]
    fn broker_configs_are_kept_per_resource_and_dropped_when_emptied() {
        let mut meta = ClusterMetadata::default();
        let alter = |resource: &str, ops: Vec<ConfigOp>| Command::AlterBrokerConfigs {
            resource: resource.into(),
            ops,
        };
        let set = |k: &str, v: &str| ConfigOp::Set(k.into(), v.into());
        assert!(matches!(
            apply(&mut meta, alter("", vec![set("log.retention.ms", "1000")])),
            CommandResponse::Done
        ));
        apply(&mut meta, alter("2", vec![set("message.max.bytes", "2000")]));
        assert_eq!(meta.broker_configs[""]["log.retention.ms"], "1000");
        assert_eq!(meta.broker_configs["2"]["message.max.bytes"], "2000");
        apply(&mut meta, alter("", vec![ConfigOp::Delete("log.retention.ms".into())]));
        assert!(!meta.broker_configs.contains_key(""), "an emptied resource goes");
        let before = meta.clone();
        for bad in [
            alter("x", vec![set("a", "1")]),
            alter("", vec![set("a", "1"), ConfigOp::Delete("a".into())]),
        ] {
            let CommandResponse::Rejected(ApplyError::InvalidRequest(_)) = apply(&mut meta, bad) else {
                panic!("must be refused");
            };
        }
        assert_eq!(meta, before);
    }

    #[test]
    fn config_ops_follow_kafka_list_semantics() {
        let mut configs = BTreeMap::new();
        apply_config_op(
            &mut configs,
            &ConfigOp::Append("cleanup.policy".into(), "delete".into()),
        );
        apply_config_op(
            &mut configs,
            &ConfigOp::Append("cleanup.policy".into(), "compact, delete".into()),
        );
        assert_eq!(configs["cleanup.policy"], "delete,compact");
        apply_config_op(
            &mut configs,
            &ConfigOp::Subtract("cleanup.policy".into(), "delete".into()),
        );
        assert_eq!(configs["cleanup.policy"], "compact");
        apply_config_op(
            &mut configs,
            &ConfigOp::Subtract("cleanup.policy".into(), "compact".into()),
        );
        assert_eq!(configs["cleanup.policy"], "");
        apply_config_op(&mut configs, &ConfigOp::Delete("cleanup.policy".into()));
        assert!(configs.is_empty());
    }

    #[test]
    fn duplicate_config_keys_are_rejected_atomically() {
        let mut meta = meta_with_brokers(&[0]);
        apply(&mut meta, create("t", 1, 1));
        let before = meta.clone();
        let res = apply(
            &mut meta,
            Command::AlterTopicConfigs {
                name: "t".into(),
                ops: vec![
                    ConfigOp::Set("retention.ms".into(), "1".into()),
                    ConfigOp::Delete("retention.ms".into()),
                ],
            },
        );
        assert!(matches!(res, CommandResponse::Rejected(ApplyError::InvalidRequest(_))));
        assert_eq!(meta, before);
    }

    fn topic(meta: &ClusterMetadata, name: &str) -> TopicMeta {
        meta.topics.get(name).cloned().expect("topic exists")
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_or_takes_it_offline() {
        let mut meta = meta_with_brokers(&[1, 2, 3]);
        assert!(matches!(
            apply(&mut meta, create("one", 3, 1)),
            CommandResponse::Topic(_)
        ));
        assert!(matches!(
            apply(&mut meta, create("three", 3, 3)),
            CommandResponse::Topic(_)
        ));
        let before_one = topic(&meta, "one");
        let before_three = topic(&meta, "three");

        assert_eq!(
            apply(&mut meta, Command::FenceBroker { node_id: 2 }),
            CommandResponse::Done
        );
        assert_eq!(meta.live_brokers(), vec![1, 3]);
        for (b, a) in before_one.partitions.iter().zip(&topic(&meta, "one").partitions) {
            if b.leader == 2 {
                // One replica: nobody to take over.
                assert_eq!((a.leader, a.leader_epoch), (-1, b.leader_epoch + 1));
            } else {
                assert_eq!(a, b, "partitions led elsewhere are untouched");
            }
        }
        for (b, a) in before_three.partitions.iter().zip(&topic(&meta, "three").partitions) {
            if b.leader == 2 {
                let expected = b.replicas.iter().copied().find(|r| *r != 2).expect("another replica");
                assert_eq!((a.leader, a.leader_epoch), (expected, b.leader_epoch + 1));
            }
        }
        // Fencing twice changes nothing; new partitions avoid the fenced broker.
        let fenced_once = meta.clone();
        assert_eq!(
            apply(&mut meta, Command::FenceBroker { node_id: 2 }),
            CommandResponse::Done
        );
        assert_eq!(meta, fenced_once);
        assert!(matches!(
            apply(&mut meta, create("later", 4, 1)),
            CommandResponse::Topic(_)
        ));
        assert!(topic(&meta, "later").partitions.iter().all(|p| p.leader != 2));
        assert!(matches!(
            apply(&mut meta, create("too-wide", 1, 3)),
            CommandResponse::Rejected(ApplyError::InvalidReplicationFactor(_))
        ));

        // Back: it leads its offline partitions again, with a new epoch.
        assert_eq!(
            apply(&mut meta, Command::UnfenceBroker { node_id: 2 }),
            CommandResponse::Done
        );
        for (b, a) in before_one.partitions.iter().zip(&topic(&meta, "one").partitions) {
            if b.leader == 2 {
                assert_eq!((a.leader, a.leader_epoch), (2, b.leader_epoch + 2));
            }
        }
        assert!(matches!(
            apply(&mut meta, Command::FenceBroker { node_id: 9 }),
            CommandResponse::Rejected(ApplyError::InvalidRequest(_))
        ));
    }

    #[test]
    fn preferred_and_unclean_elections_follow_kafka() {
        let mut meta = meta_with_brokers(&[1, 2, 3]);
        apply(&mut meta, create("t", 1, 3));
        let p = topic(&meta, "t").partitions[0].clone();
        let preferred = p.replicas[0];
        let elect = |meta: &mut ClusterMetadata, partitions: Option<Vec<(String, i32)>>, unclean| match apply(
            meta,
            Command::ElectLeaders { partitions, unclean },
        ) {
            CommandResponse::Elections(e) => e
                .into_iter()
                .map(|e| (e.topic, e.partition, e.outcome))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let t0 = Some(vec![
            ("t".to_string(), 0),
            ("t".to_string(), 7),
            ("nope".to_string(), 0),
        ]);
        assert_eq!(
            elect(&mut meta, t0.clone(), false),
            vec![
                ("t".into(), 0, ElectionOutcome::NotNeeded),
                ("t".into(), 7, ElectionOutcome::UnknownPartition),
                ("nope".into(), 0, ElectionOutcome::UnknownPartition),
            ]
        );
        // The preferred replica dies: another leads; back and in sync, it is elected again.
        apply(&mut meta, Command::FenceBroker { node_id: preferred });
        let moved = topic(&meta, "t").partitions[0].clone();
        assert_ne!(moved.leader, preferred);
        assert_eq!(
            elect(&mut meta, None, false),
            vec![("t".into(), 0, ElectionOutcome::PreferredNotAvailable)],
            "fenced and out of the ISR"
        );
        apply(&mut meta, Command::UnfenceBroker { node_id: preferred });
        let isr = topic(&meta, "t").partitions[0].replicas.clone();
        apply(
            &mut meta,
            Command::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: moved.leader,
                leader_epoch: moved.leader_epoch,
                expected_isr: moved.isr.clone(),
                new_isr: isr,
            },
        );
        assert_eq!(
            elect(&mut meta, None, false),
            vec![("t".into(), 0, ElectionOutcome::Elected)]
        );
        let back = topic(&meta, "t").partitions[0].clone();
        assert_eq!((back.leader, back.leader_epoch), (preferred, moved.leader_epoch + 1));
        assert_eq!(
            elect(&mut meta, None, false),
            vec![],
            "everything: only what needed one"
        );

        // Unclean: only for a partition without a leader, from a live replica out of the ISR.
        assert_eq!(
            elect(&mut meta, t0.map(|v| v[..1].to_vec()), true)[0].2,
            ElectionOutcome::NotNeeded
        );
        let mut one = meta_with_brokers(&[1, 2]);
        apply(&mut one, create("u", 1, 2));
        let u = topic(&one, "u").partitions[0].clone();
        let (first, second) = (u.replicas[0], u.replicas[1]);
        apply(&mut one, Command::FenceBroker { node_id: second });
        apply(&mut one, Command::FenceBroker { node_id: first });
        assert_eq!(topic(&one, "u").partitions[0].leader, -1);
        assert_eq!(topic(&one, "u").partitions[0].isr, vec![first], "the last member stays");
        assert_eq!(
            elect(&mut one, None, true),
            vec![("u".into(), 0, ElectionOutcome::EligibleNotAvailable)]
        );
        apply(&mut one, Command::UnfenceBroker { node_id: second });
        assert_eq!(
            elect(&mut one, None, true),
            vec![("u".into(), 0, ElectionOutcome::Elected)]
        );
        let u = topic(&one, "u").partitions[0].clone();
        assert_eq!((u.leader, u.isr.clone()), (second, vec![second]));
    }

    #[test]
    fn isr_changes_come_only_from_the_current_leader_and_fencing_leaves_the_isr() {
        let mut meta = meta_with_brokers(&[1, 2, 3]);
        apply(&mut meta, create("t", 1, 3));
        let p = topic(&meta, "t").partitions[0].clone();
        let (leader, epoch) = (p.leader, p.leader_epoch);
        let follower = p.replicas.iter().copied().find(|r| *r != leader).expect("a follower");
        let shrunk: Vec<i32> = p.replicas.iter().copied().filter(|r| *r != follower).collect();
        let alter = |leader, leader_epoch, expected: &[i32], new: &[i32]| Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch,
            expected_isr: expected.to_vec(),
            new_isr: new.to_vec(),
        };
        // A stale epoch, a stale view, a missing leader, an unknown replica: all refused.
        let before = meta.clone();
        for (cmd, ok) in [
            (alter(leader, epoch + 1, &p.isr, &shrunk), "epoch"),
            (alter(follower, epoch, &p.isr, &shrunk), "leader"),
            (alter(leader, epoch, &shrunk, &shrunk), "view"),
            (alter(leader, epoch, &p.isr, &[follower]), "leader kept"),
            (alter(leader, epoch, &p.isr, &[leader, 9]), "assigned"),
        ] {
            assert!(
                matches!(apply(&mut meta, cmd), CommandResponse::Rejected(_)),
                "{ok} must be checked"
            );
        }
        assert_eq!(meta, before);
        let CommandResponse::Partition(after) = apply(&mut meta, alter(leader, epoch, &p.isr, &shrunk)) else {
            panic!("the leader shrinks its ISR");
        };
        assert_eq!((after.isr.clone(), after.leader_epoch), (shrunk.clone(), epoch));
        // Back in, in assignment order.
        let CommandResponse::Partition(after) = apply(&mut meta, alter(leader, epoch, &shrunk, &p.replicas)) else {
            panic!("the leader expands its ISR");
        };
        assert_eq!(after.isr, p.replicas);
        // Fencing the leader: out of the ISR, another member leads in a new epoch; fencing the
        // last member keeps it in the ISR with no leader.
        apply(&mut meta, Command::FenceBroker { node_id: leader });
        let q = topic(&meta, "t").partitions[0].clone();
        assert!(!q.isr.contains(&leader));
        assert!(q.isr.contains(&q.leader) && q.leader != leader);
        assert_eq!(q.leader_epoch, epoch + 1);
        for r in q.isr.clone() {
            apply(&mut meta, Command::FenceBroker { node_id: r });
        }
        let q = topic(&meta, "t").partitions[0].clone();
        assert_eq!((q.isr.len(), q.leader), (1, -1));
        let last = q.isr[0];
        apply(&mut meta, Command::UnfenceBroker { node_id: leader });
        assert_eq!(
            topic(&meta, "t").partitions[0].leader,
            -1,
            "the old leader may lack records"
        );
        apply(&mut meta, Command::UnfenceBroker { node_id: last });
        assert_eq!(topic(&meta, "t").partitions[0].leader, last);
    }
}
