//! The group coordinator: consumer groups and their committed offsets.
//!
//! Every group belongs to a *coordinator partition*, chosen as Kafka chooses the partition of
//! `__consumer_offsets` (`abs(groupId.hashCode()) % offsets.topic.num.partitions`), and its
//! stored state is keyed by that partition (see `fjord_storage::groups`). On a single node this
//! broker leads every coordinator partition; the replicated cluster moves them with partition
//! leadership without changing the layout.
//!
//! Each group is behind its own async mutex: requests for different groups never wait on each
//! other, and requests for one group are applied one at a time, which is all the protocol
//! needs. Timers (session timeouts, rebalance delays) run in one background task that visits
//! the groups that have something timed.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use fjord_storage::{CommittedOffset, GroupStore, GroupWrite, StorageError};
use kafka_protocol::error::ResponseError;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::state_log::{self, Load, Loads, WriteError};
use classic::{ClassicGroup, Delivery};
use consumer::{ConsumerGroup, ConsumerGroupConfig};
use fjord_storage::{LoadedGroups, StateLog};
use streams::{StreamsGroup, StreamsGroupConfig};

use crate::Broker;

/// Coordinator settings, from Kafka's property names.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: 0, the value Kafka's own `config/server.properties`
    /// and its Docker image start with ("a better out-of-the-box experience"), not its built-in
    /// 3000, so that a consumer joining a fresh Fjord waits as long as one joining a fresh
    /// Kafka. Production groups that start many members at once may want 3000 back.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size` (unbounded).
    pub max_size: usize,
    /// `offsets.topic.num.partitions` (50): how many coordinator partitions group ids hash to.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor` (3): replicas of each partition of the offsets topic
    /// in a cluster, which is not created until that many brokers are up.
    pub offsets_replication_factor: i16,
    /// `offsets.commit.timeout.ms` (5000): how long a group write waits for the in-sync
    /// replicas of its offsets topic partition.
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.retention.minutes` in ms (7 days).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 groups: `group.consumer.*`.
    pub consumer: ConsumerGroupConfig,
    /// KIP-1071 streams groups: `group.streams.*`.
    pub streams: StreamsGroupConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 0,
            max_size: i32::MAX as usize,
            offsets_partitions: 50,
            offsets_replication_factor: 3,
            offsets_commit_timeout_ms: 5_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer: ConsumerGroupConfig::default(),
            streams: StreamsGroupConfig::default(),
        }
    }
}

/// What kind of group it is. Boxing the classic variant too would only add an indirection to
/// every request on the common kind.
#[allow(clippy::large_enum_variant)]
pub enum GroupKind {
    /// The classic protocol (JoinGroup/SyncGroup), and simple commit-only groups.
    Classic(ClassicGroup),
    /// The consumer protocol of KIP-848 (ConsumerGroupHeartbeat, server-side assignment).
    Consumer(Box<ConsumerGroup>),
    /// The streams protocol of KIP-1071 (StreamsGroupHeartbeat, server-side task assignment).
    Streams(Box<StreamsGroup>),
}

/// One group: its membership protocol state and its committed offsets.
pub struct Group {
    /// The group id.
    pub id: String,
    /// Its coordinator partition.
    pub partition: i32,
    /// Membership.
    pub kind: GroupKind,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets committed by open transactions (TxnOffsetCommit), by producer id: visible once
    /// the transaction commits, dropped if it aborts.
    pub pending_txn: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    /// Deleted: a request that locked it after the deletion must look the group up again.
    dead: bool,
    /// In a cluster, the leader epoch of its coordinator partition when it was loaded or made
    /// here: its writes are refused once the partition has another.
    epoch: i32,
    /// The group's record must be written (set by KIP-848 heartbeats and conversions).
    pub dirty: bool,
}

impl Group {
    fn new(id: &str, partition: i32) -> Self {
        let mut classic = ClassicGroup::new();
        classic.id = id.to_string();
        Group {
            id: id.to_string(),
            partition,
            kind: GroupKind::Classic(classic),
            offsets: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
            dead: false,
            dirty: false,
            epoch: -1,
        }
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            GroupKind::Classic(c) => c.state() == classic::ClassicState::Empty,
            GroupKind::Consumer(c) => c.is_empty(),
            GroupKind::Streams(s) => s.is_empty(),
        }
    }

    /// State name as DescribeGroups / ListGroups report it.
    pub fn state_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(c) => c.state().name(),
            GroupKind::Consumer(c) => c.state(),
            GroupKind::Streams(s) => s.state(),
        }
    }

    /// The state as ListGroups compares a state filter with it, lowercased: Kafka's
    /// `toLowerCaseString`, which spells a streams group's NotReady `not_ready`.
    pub fn state_filter_name(&self) -> String {
        match &self.kind {
            GroupKind::Streams(s) => s.state_filter_name().to_string(),
            _ => self.state_name().to_lowercase(),
        }
    }

    /// "classic", "consumer" or "streams" (group types of KIP-848 and KIP-1071).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(_) => "classic",
            GroupKind::Consumer(_) => "consumer",
            GroupKind::Streams(_) => "streams",
        }
    }

    /// Protocol type for ListGroups ("" for simple groups).
    pub fn protocol_type(&self) -> String {
        match &self.kind {
            GroupKind::Classic(c) => c.protocol_type().unwrap_or("").to_string(),
            GroupKind::Consumer(_) => classic::CONSUMER_PROTOCOL_TYPE.to_string(),
            GroupKind::Streams(_) => "streams".to_string(),
        }
    }

    /// Whether the group can become a group of the other protocol: Kafka converts an empty
    /// group when a member of the other protocol joins it.
    pub fn convertible(&self) -> bool {
        self.is_empty()
    }

    /// Makes this (empty) group a KIP-848 consumer group, keeping its offsets.
    pub fn make_consumer(&mut self) {
        self.kind = GroupKind::Consumer(Box::new(ConsumerGroup::new(self.id.clone())));
        self.dirty = true;
    }

    /// Makes this (empty) group a streams group, keeping its offsets.
    pub fn make_streams(&mut self) {
        self.kind = GroupKind::Streams(Box::new(StreamsGroup::new(&self.id)));
        self.dirty = true;
    }

    /// Makes this (empty) group a classic group, keeping its offsets.
    pub fn make_classic(&mut self) {
        let mut classic = ClassicGroup::new();
        classic.id = self.id.clone();
        self.kind = GroupKind::Classic(classic);
        self.dirty = true;
    }

    fn record(&self) -> Option<Vec<u8>> {
        match &self.kind {
            // A simple group (no protocol type) is only its offsets, as in Kafka.
            GroupKind::Classic(c) if c.protocol_type().is_none() => None,
            GroupKind::Classic(c) => {
                let mut v = vec![RECORD_CLASSIC];
                v.extend_from_slice(&c.to_record());
                Some(v)
            }
            GroupKind::Consumer(c) => {
                let mut v = vec![RECORD_CONSUMER];
                v.extend_from_slice(&c.to_record());
                Some(v)
            }
            GroupKind::Streams(s) => {
                let mut v = vec![RECORD_STREAMS];
                v.extend_from_slice(&s.to_record());
                Some(v)
            }
        }
    }

    fn take_outbox(&mut self) -> (bool, Vec<Delivery>) {
        let own = std::mem::take(&mut self.dirty);
        match &mut self.kind {
            GroupKind::Classic(c) => (own | std::mem::take(&mut c.dirty), std::mem::take(&mut c.outbox)),
            GroupKind::Consumer(_) | GroupKind::Streams(_) => (own, Vec::new()),
        }
    }
}

/// Kafka's `validateOffsetFetch` for the groups whose members have epochs (consumer and streams
/// groups): a fetch without member id and with an epoch below zero (admin, or OffsetFetch before
/// v9) is always accepted; else the member must exist (UNKNOWN_MEMBER_ID) at that epoch
/// (STALE_MEMBER_EPOCH). `epoch_of` gives a member's current epoch.
pub fn validate_member_fetch(
    member_id: Option<&str>,
    member_epoch: i32,
    epoch_of: impl FnOnce(&str) -> Option<i32>,
) -> Result<(), ResponseError> {
    if member_id.is_none() && member_epoch < 0 {
        return Ok(());
    }
    let current = epoch_of(member_id.unwrap_or_default()).ok_or(ResponseError::UnknownMemberId)?;
    if current != member_epoch {
        return Err(ResponseError::StaleMemberEpoch);
    }
    Ok(())
}

const RECORD_CLASSIC: u8 = b'c';
const RECORD_CONSUMER: u8 = b'n';
const RECORD_STREAMS: u8 = b's';

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's String.hashCode over UTF-16.
pub fn coordinator_partition(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// The coordinator of every group this broker serves.
pub struct GroupCoordinator {
    /// Settings.
    pub cfg: GroupConfig,
    store: GroupStore,
    groups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Group>>>>,
    /// In a cluster, the broker whose offsets topic carries every write (see [`state_log`]);
    /// unset on a single node, whose column family alone holds the state.
    cluster: OnceLock<Weak<Broker>>,
    /// In a cluster, the coordinator partitions led here and whether they are loaded.
    loads: Loads,
    /// TxnOffsetCommits between their check with the transaction coordinator and their store
    /// (see [`TxnOffsetsWindow`]), by producer id: how many, and the transaction markers for
    /// that producer that arrived meanwhile.
    txn_offsets_in_flight: Mutex<HashMap<i64, InFlight>>,
}

#[derive(Debug, Default)]
struct InFlight {
    requests: usize,
    markers: u64,
}

/// One TxnOffsetCommit from its check with the transaction coordinator to its store. The
/// check and the store cannot be one step (the check may ask another broker), and a marker
/// ending the transaction in between would find no pending offsets to end, so that the store
/// after it would leave the aborted (or already committed) transaction's offsets pending, to
/// be committed by that producer's next transaction. A marker for the producer while the
/// window is open makes [`TxnOffsetsWindow::marker_arrived`] true: the request is then
/// refused. A marker after the store finds the offsets (it waits for the group's lock).
pub struct TxnOffsetsWindow<'a> {
    groups: &'a GroupCoordinator,
    producer_id: i64,
    markers_at_open: u64,
}

impl TxnOffsetsWindow<'_> {
    /// Whether a marker for this producer arrived since the window opened. Asked with the
    /// group locked, right before the store.
    pub fn marker_arrived(&self) -> bool {
        self.groups
            .in_flight()
            .get(&self.producer_id)
            .is_some_and(|f| f.markers != self.markers_at_open)
    }
}

impl Drop for TxnOffsetsWindow<'_> {
    fn drop(&mut self) {
        let mut map = self.groups.in_flight();
        if let Some(f) = map.get_mut(&self.producer_id) {
            f.requests -= 1;
            if f.requests == 0 {
                map.remove(&self.producer_id);
            }
        }
    }
}

impl GroupCoordinator {
    /// Loads every stored group. Blocking: for startup. In a cluster nothing is loaded here:
    /// each coordinator partition is loaded from its log once it is led here.
    pub fn load(cfg: GroupConfig, store: GroupStore, cluster: bool) -> Result<Self, StorageError> {
        let loaded = if cluster {
            LoadedGroups::default()
        } else {
            store.load_all()?
        };
        let groups = groups_from(loaded, -1, &cfg.streams);
        if !cluster {
            let offsets: usize = groups.values().map(|g| g.offsets.len()).sum();
            tracing::info!(groups = groups.len(), offsets, "consumer groups loaded");
        }
        let groups = groups
            .into_iter()
            .map(|(k, g)| (k, Arc::new(tokio::sync::Mutex::new(g))))
            .collect();
        Ok(GroupCoordinator {
            cfg,
            store,
            groups: Mutex::new(groups),
            cluster: OnceLock::new(),
            loads: Loads::default(),
            txn_offsets_in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Makes every write go through `broker`'s offsets topic first (a cluster).
    pub fn replicate_through(&self, broker: &Arc<Broker>) {
        let _ = self.cluster.set(Arc::downgrade(broker));
    }

    /// The broker of a cluster, if this is one.
    pub(crate) fn cluster_broker(&self) -> Option<Arc<Broker>> {
        self.cluster.get().and_then(Weak::upgrade)
    }

    /// Whether group state is replicated (a cluster).
    pub fn is_replicated(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Where coordinator partition `partition` stands here, in a cluster.
    pub fn load_state(&self, partition: i32) -> Option<Load> {
        self.loads.state(partition)
    }

    /// Whether this node coordinates group `group_id` now (see [`Loads::check`]); always on
    /// a single node.
    pub fn check(&self, group_id: &str) -> Result<(), ResponseError> {
        if !self.is_replicated() {
            return Ok(());
        }
        self.loads.check(self.partition_for(group_id))
    }

    /// Takes the coordinator partitions led here (partition → leader epoch): drops the groups
    /// of those no longer led (or led in another epoch) and returns those to load.
    pub(crate) fn follow_leadership(&self, led: &BTreeMap<i32, i32>) -> Vec<(i32, i32)> {
        let (gone, start) = self.loads.follow(led);
        if !gone.is_empty() {
            self.unload(&gone);
        }
        start
    }

    /// Drops the groups of `partitions` from memory: another broker coordinates them now.
    fn unload(&self, partitions: &[i32]) {
        let removed: Vec<Arc<tokio::sync::Mutex<Group>>> = {
            let mut map = self.map();
            let ids: Vec<String> = map
                .keys()
                .filter(|id| partitions.contains(&self.partition_for(id)))
                .cloned()
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        tracing::info!(partitions = ?partitions, groups = removed.len(), "coordinator partitions unloaded");
        // A request holding one of them finishes on a group marked dead: the next lookup
        // finds what the new load installs, or nothing.
        tokio::spawn(async move {
            for g in removed {
                g.lock().await.dead = true;
            }
        });
    }

    /// Installs the groups a load of `partition` read, if the partition is still loading for
    /// `epoch`; returns whether it was.
    pub(crate) fn install(&self, partition: i32, epoch: i32, loaded: LoadedGroups) -> bool {
        self.loads.finish(partition, epoch, || {
            let mut map = self.map();
            for (id, g) in groups_from(loaded, epoch, &self.cfg.streams) {
                map.insert(id, Arc::new(tokio::sync::Mutex::new(g)));
            }
        })
    }

    /// Forgets a load that failed, so that the next leadership change tries again.
    pub(crate) fn abandon(&self, partition: i32, epoch: i32) {
        self.loads.abandon(partition, epoch);
    }

    /// Persists `writes` of coordinator partition `partition`: through the offsets topic in a
    /// cluster, then in the local column family.
    async fn persist(&self, partition: i32, epoch: i32, writes: Vec<GroupWrite>) -> Result<(), WriteError> {
        if let Some(broker) = self.cluster_broker() {
            state_log::append(&broker, StateLog::Groups, partition, epoch, &writes).await?;
        }
        self.store.write(writes).await?;
        Ok(())
    }
}

/// Groups in memory from what the store read.
fn groups_from(loaded: LoadedGroups, epoch: i32, streams: &StreamsGroupConfig) -> HashMap<String, Group> {
    let now = Instant::now();
    let mut groups: HashMap<String, Group> = HashMap::new();
    for g in loaded.groups {
        let kind = match g.value.split_first() {
            Some((&RECORD_CLASSIC, rest)) => ClassicGroup::from_record(rest, now).map(GroupKind::Classic),
            Some((&RECORD_CONSUMER, rest)) => {
                ConsumerGroup::from_record(rest, now.into_std()).map(|c| GroupKind::Consumer(Box::new(c)))
            }
            Some((&RECORD_STREAMS, rest)) => {
                StreamsGroup::from_record(rest, now.into_std(), streams).map(|s| GroupKind::Streams(Box::new(s)))
            }
            _ => None,
        };
        let Some(kind) = kind else {
            tracing::error!(group = %g.group_id, "unreadable group record; the group starts empty");
            continue;
        };
        let mut group = Group::new(&g.group_id, g.partition);
        group.kind = kind;
        if let GroupKind::Classic(c) = &mut group.kind {
            c.id = g.group_id.clone();
        }
        groups.insert(g.group_id, group);
    }
    for (partition, group_id, producer_id, value) in loaded.pending_offsets {
        let Ok(list) = serde_json::from_slice::<Vec<PendingOffset>>(&value) else {
            tracing::error!(group = %group_id, producer_id, "unreadable transactional offsets");
            continue;
        };
        let group = groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, partition));
        let pending = group.pending_txn.entry(producer_id).or_default();
        for p in list {
            pending.insert((p.topic.clone(), p.partition), p.into_committed());
        }
    }
    for o in loaded.offsets {
        let group = groups
            .entry(o.group_id.clone())
            .or_insert_with(|| Group::new(&o.group_id, o.partition));
        group.offsets.insert((o.topic, o.topic_partition), o.value);
    }
    for g in groups.values_mut() {
        g.epoch = epoch;
    }
    groups
}

impl GroupCoordinator {
    /// The coordinator partition of a group.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        coordinator_partition(group_id, self.cfg.offsets_partitions)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Group>>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<i64, InFlight>> {
        self.txn_offsets_in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a TxnOffsetCommit's window for `producer_id`, before its check.
    pub fn open_txn_offsets(&self, producer_id: i64) -> TxnOffsetsWindow<'_> {
        let mut map = self.in_flight();
        let f = map.entry(producer_id).or_default();
        f.requests += 1;
        TxnOffsetsWindow {
            groups: self,
            producer_id,
            markers_at_open: f.markers,
        }
    }

    /// A transaction marker for `producer_id` is about to end its pending offsets.
    fn marker_for(&self, producer_id: i64) {
        if let Some(f) = self.in_flight().get_mut(&producer_id) {
            f.markers += 1;
        }
    }

    /// Locks a group, creating it (empty) when `create` is set and it does not exist.
    pub async fn lock(&self, group_id: &str, create: bool) -> Option<OwnedMutexGuard<Group>> {
        loop {
            let arc = {
                let mut map = self.map();
                match map.get(group_id) {
                    Some(g) => g.clone(),
                    None if create => {
                        let partition = self.partition_for(group_id);
                        let mut group = Group::new(group_id, partition);
                        if self.is_replicated() {
                            // Only in a partition loaded here: one still loading would replace it.
                            match self.loads.state(partition) {
                                Some(Load::Loaded(epoch)) => group.epoch = epoch,
                                _ => return None,
                            }
                        }
                        let g = Arc::new(tokio::sync::Mutex::new(group));
                        map.insert(group_id.to_string(), g.clone());
                        g
                    }
                    None => return None,
                }
            };
            let guard = arc.lock_owned().await;
            if !guard.dead {
                return Some(guard);
            }
            // Deleted while we waited: look again (it may have been created anew).
        }
    }

    /// Every group id.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.map().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Persists the group if it changed, then sends the responses it holds. Call with the
    /// group locked, after every operation on it.
    pub async fn finish(&self, group: &mut Group) {
        let (dirty, outbox) = group.take_outbox();
        let mut failed = None;
        if dirty {
            let write = GroupWrite::Group {
                partition: group.partition,
                group_id: group.id.clone(),
                value: group.record(),
            };
            if let Err(e) = self.persist(group.partition, group.epoch, vec![write]).await {
                tracing::error!(group = %group.id, error = %e, "could not persist group state");
                failed = Some(ResponseError::CoordinatorNotAvailable);
            }
        }
        for d in outbox {
            match failed {
                Some(e) => d.fail(e).send(),
                None => d.send(),
            }
        }
    }

    /// Stores offsets (None deletes) for a locked group and applies them in memory once stored.
    pub async fn store_offsets(
        &self,
        group: &mut Group,
        offsets: Vec<((String, i32), Option<CommittedOffset>)>,
    ) -> Result<(), WriteError> {
        let writes = offsets
            .iter()
            .map(|((topic, p), v)| GroupWrite::Offset {
                partition: group.partition,
                group_id: group.id.clone(),
                topic: topic.clone(),
                topic_partition: *p,
                value: v.clone(),
            })
            .collect();
        self.persist(group.partition, group.epoch, writes).await?;
        for (key, v) in offsets {
            match v {
                Some(v) => group.offsets.insert(key, v),
                None => group.offsets.remove(&key),
            };
        }
        Ok(())
    }

    /// Records offsets of an open transaction (TxnOffsetCommit) for a locked group.
    pub async fn store_pending(
        &self,
        group: &mut Group,
        producer_id: i64,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), WriteError> {
        let mut merged = group.pending_txn.get(&producer_id).cloned().unwrap_or_default();
        merged.extend(offsets);
        let value = pending_record(&merged)?;
        let write = GroupWrite::PendingOffsets {
            partition: group.partition,
            group_id: group.id.clone(),
            producer_id,
            value: Some(value),
        };
        self.persist(group.partition, group.epoch, vec![write]).await?;
        group.pending_txn.insert(producer_id, merged);
        Ok(())
    }

    /// Ends a transaction's offset commits in a group: committed, they become the group's
    /// offsets (in one atomic write with the removal of the pending record); aborted, they go.
    pub async fn complete_txn(&self, group_id: &str, producer_id: i64, commit: bool) -> Result<(), WriteError> {
        self.marker_for(producer_id);
        let Some(mut group) = self.lock(group_id, false).await else {
            return Ok(());
        };
        let Some(pending) = group.pending_txn.get(&producer_id).cloned() else {
            return Ok(());
        };
        let mut writes = vec![GroupWrite::PendingOffsets {
            partition: group.partition,
            group_id: group.id.clone(),
            producer_id,
            value: None,
        }];
        if commit {
            for ((topic, p), v) in &pending {
                writes.push(GroupWrite::Offset {
                    partition: group.partition,
                    group_id: group.id.clone(),
                    topic: topic.clone(),
                    topic_partition: *p,
                    value: Some(v.clone()),
                });
            }
        }
        self.persist(group.partition, group.epoch, writes).await?;
        group.pending_txn.remove(&producer_id);
        if commit {
            group.offsets.extend(pending);
        }
        Ok(())
    }

    /// A transaction marker for coordinator partition `partition` (WriteTxnMarkers from the
    /// transaction's coordinator): ends the offsets producer `producer_id` left pending in
    /// every group of the partition, as Kafka's group coordinator does when it reads the marker
    /// in its log.
    pub async fn complete_partition(
        &self,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), ResponseError> {
        self.loads.check(partition)?;
        // Before the groups are listed: a TxnOffsetCommit that makes its group after the
        // listing sees the marker and is refused (see `TxnOffsetsWindow`).
        self.marker_for(producer_id);
        let ids: Vec<String> = self
            .map()
            .keys()
            .filter(|id| self.partition_for(id) == partition)
            .cloned()
            .collect();
        for id in ids {
            if let Err(e) = self.complete_txn(&id, producer_id, commit).await {
                tracing::warn!(group = %id, error = %e, "could not complete transactional offsets");
                return Err(e.response_error());
            }
        }
        Ok(())
    }

    /// Deletes a locked group and its offsets, in storage and here.
    pub async fn delete(&self, group: &mut Group) -> Result<(), WriteError> {
        // In a cluster these are records of the compacted `__consumer_offsets`: a tombstone
        // for each key the group has, so that once the cleaner has removed the tombstones
        // (after `delete.retention.ms`) no older record of the group is left to bring it back
        // at the next load. The DeleteGroup record alone would be removed the same way while
        // the offsets it covered stayed.
        let (partition, group_id) = (group.partition, group.id.clone());
        let mut writes = vec![GroupWrite::Group {
            partition,
            group_id: group_id.clone(),
            value: None,
        }];
        writes.extend(group.offsets.keys().map(|(topic, p)| GroupWrite::Offset {
            partition,
            group_id: group_id.clone(),
            topic: topic.clone(),
            topic_partition: *p,
            value: None,
        }));
        writes.extend(group.pending_txn.keys().map(|producer_id| GroupWrite::PendingOffsets {
            partition,
            group_id: group_id.clone(),
            producer_id: *producer_id,
            value: None,
        }));
        writes.push(GroupWrite::DeleteGroup { partition, group_id });
        self.persist(group.partition, group.epoch, writes).await?;
        group.offsets.clear();
        group.dead = true;
        self.map().remove(&group.id);
        Ok(())
    }

    /// Drops an empty group that holds nothing (no members, no offsets) from memory and
    /// storage, as Kafka does once such a group has nothing left.
    async fn drop_if_unused(&self, group: &mut Group) {
        let unused = group.offsets.is_empty()
            && group.pending_txn.is_empty()
            && match &group.kind {
                GroupKind::Classic(c) => c.is_idle(),
                GroupKind::Consumer(c) => c.is_empty(),
                GroupKind::Streams(s) => s.is_empty(),
            };
        if unused {
            if let Err(e) = self.delete(group).await {
                tracing::warn!(group = %group.id, error = %e, "could not drop an unused group");
            }
        }
    }

    /// Runs timers until the process ends.
    pub async fn run_timers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(TIMER_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = Instant::now();
        loop {
            tick.tick().await;
            let now = Instant::now();
            let groups: Vec<Arc<tokio::sync::Mutex<Group>>> = self.map().values().cloned().collect();
            for g in groups {
                let mut guard = g.lock().await;
                if guard.dead {
                    continue;
                }
                match &mut guard.kind {
                    GroupKind::Classic(c) => c.tick(&self.cfg, now),
                    GroupKind::Consumer(c) => {
                        if c.tick(now.into_std(), &self.cfg.consumer) {
                            guard.dirty = true;
                        }
                    }
                    GroupKind::Streams(s) => {
                        if s.tick(now.into_std(), crate::txn::now_ms(), &self.cfg.streams) {
                            guard.dirty = true;
                        }
                    }
                }
                self.finish(&mut guard).await;
            }
            if now.duration_since(last_expiry) >= Duration::from_millis(self.cfg.offsets_retention_check_interval_ms) {
                last_expiry = now;
                self.expire_offsets().await;
            }
        }
    }

    /// `offsets.retention.minutes`: drops the offsets of groups that have been empty that
    /// long (for simple groups, of offsets not committed for that long) and the groups left
    /// with nothing, as Kafka's `OffsetExpirationCondition` does.
    pub async fn expire_offsets(&self) {
        let now_ms = crate::txn::now_ms();
        let retention = self.cfg.offsets_retention_ms;
        for id in self.group_ids() {
            let Some(mut g) = self.lock(&id, false).await else {
                continue;
            };
            // What an offset's age counts from, if the group's offsets may expire at all.
            enum Since {
                Commit,
                Empty(i64),
                Never,
            }
            let since = match &g.kind {
                GroupKind::Classic(c) if c.protocol_type().is_none() => Since::Commit,
                GroupKind::Classic(c) if c.state() == classic::ClassicState::Empty => Since::Empty(c.state_since_ms),
                GroupKind::Classic(_) => Since::Never,
                GroupKind::Consumer(c) if c.is_empty() => Since::Commit,
                GroupKind::Consumer(_) => Since::Never,
                GroupKind::Streams(s) if s.is_empty() => Since::Commit,
                GroupKind::Streams(_) => Since::Never,
            };
            let expired: Vec<((String, i32), Option<CommittedOffset>)> = g
                .offsets
                .iter()
                .filter(|(_, o)| match o.expire_timestamp {
                    Some(at) => now_ms >= at,
                    None => match since {
                        Since::Commit => now_ms - o.commit_timestamp >= retention,
                        Since::Empty(at) => now_ms - at >= retention,
                        Since::Never => false,
                    },
                })
                .map(|(k, _)| (k.clone(), None))
                .collect();
            if !expired.is_empty() {
                tracing::info!(group = %id, offsets = expired.len(), "expiring committed offsets");
                if let Err(e) = self.store_offsets(&mut g, expired).await {
                    tracing::warn!(group = %id, error = %e, "could not expire offsets");
                    continue;
                }
            }
            self.drop_if_unused(&mut g).await;
        }
    }
}

/// Stored form of one transactional offset commit.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingOffset {
    topic: String,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    commit_timestamp: i64,
}

impl PendingOffset {
    fn into_committed(self) -> CommittedOffset {
        CommittedOffset {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata,
            commit_timestamp: self.commit_timestamp,
            expire_timestamp: None,
        }
    }
}

fn pending_record(offsets: &BTreeMap<(String, i32), CommittedOffset>) -> Result<Vec<u8>, StorageError> {
    let list: Vec<PendingOffset> = offsets
        .iter()
        .map(|((topic, partition), o)| PendingOffset {
            topic: topic.clone(),
            partition: *partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            commit_timestamp: o.commit_timestamp,
        })
        .collect();
    serde_json::to_vec(&list).map_err(|e| StorageError::Corruption(e.to_string()))
}

/// Granularity of group timers (session timeouts, rebalance delays).
const TIMER_TICK_MS: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_partition_matches_java() {
        // Java: "my-group".hashCode() = -1906497762 -> abs % 50 = 12.
        assert_eq!(coordinator_partition("my-group", 50), 12);
        assert_eq!(coordinator_partition("", 50), 0);
        // "polygenelubricants".hashCode() is Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
        assert_eq!(coordinator_partition("polygenelubricants", 50), 0);
        assert_eq!(coordinator_partition("g", 1), 0);
    }

    /// A coordinator on a store in `dir` (a single node: no offsets topic).
    fn coordinator(dir: &std::path::Path) -> (Arc<fjord_storage::LogStore>, GroupCoordinator) {
        let store = fjord_storage::LogStore::open(fjord_storage::StorageConfig {
            data_dir: dir.to_path_buf(),
            flush_interval_messages: i64::MAX,
            flush_interval_ms: None,
            segment_bytes: fjord_storage::DEFAULT_SEGMENT_BYTES,
            checkpoint_interval_ms: 60_000,
        })
        .expect("store");
        let groups = GroupCoordinator::load(GroupConfig::default(), store.groups().clone(), false).expect("groups");
        (store, groups)
    }

    #[tokio::test]
    async fn a_marker_during_a_txn_offset_commit_window_is_seen_by_it_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, groups) = coordinator(dir.path());
        let before = groups.open_txn_offsets(7);
        let other = groups.open_txn_offsets(8);
        // The transaction of producer 7 ends while its TxnOffsetCommit is being checked; its
        // group has nothing pending yet.
        groups.complete_txn("g", 7, false).await.expect("complete");
        assert!(before.marker_arrived());
        assert!(!other.marker_arrived(), "another producer's window is not disturbed");
        let after = groups.open_txn_offsets(7);
        assert!(!after.marker_arrived(), "a window opened after the marker");
        drop((before, other, after));
        assert!(groups.in_flight().is_empty(), "closed windows leave nothing behind");
        // A marker with no window open keeps nothing either.
        groups.complete_txn("g", 9, true).await.expect("complete");
        assert!(groups.in_flight().is_empty());
        // Its threads stopped before the test ends: RocksDB threads alive at process exit can
        // crash it.
        store.shutdown().await.expect("close");
    }

    #[tokio::test]
    async fn offsets_stored_before_a_marker_are_ended_by_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, groups) = coordinator(dir.path());
        let window = groups.open_txn_offsets(7);
        let mut group = groups.lock("g", true).await.expect("group");
        assert!(!window.marker_arrived());
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
            expire_timestamp: None,
        };
        groups
            .store_pending(&mut group, 7, vec![(("t".to_string(), 0), offset)])
            .await
            .expect("store");
        drop(group);
        drop(window);
        groups.complete_txn("g", 7, false).await.expect("abort");
        let group = groups.lock("g", false).await.expect("group");
        assert!(
            group.pending_txn.is_empty() && group.offsets.is_empty(),
            "aborted: nothing left"
        );
        drop(group);
        store.shutdown().await.expect("close");
    }
}
