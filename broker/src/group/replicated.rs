//! Group coordinator state in a cluster: replicated through `__consumer_offsets`, as Kafka
//! replicates it, so that committed offsets and groups survive the broker that coordinated
//! them.
//!
//! - The coordinator of a group is the leader of its partition of `__consumer_offsets`
//!   (`abs(hashCode) % offsets.topic.num.partitions`). The topic is created, as Kafka creates
//!   it, by the first FindCoordinator for a group, with `offsets.topic.num.partitions`
//!   partitions and `offsets.topic.replication.factor` replicas.
//! - Every group write is appended to that partition as one batch (the record key is the
//!   write's key in the groups column family, its value the stored value or a tombstone) and
//!   answered once the in-sync replicas have it (`offsets.commit.timeout.ms`), then applied to
//!   the local column family, which serves reads as on a single node.
//! - A broker that becomes the leader of a partition replays the partition's log from its
//!   start into the column family (which may be stale: followers do not apply what they
//!   replicate) and loads its groups; meanwhile their requests get
//!   `COORDINATOR_LOAD_IN_PROGRESS`. A broker that stops leading a partition drops its groups
//!   from memory and answers `NOT_COORDINATOR` for them.
//!
//! The records are Fjord's own, not Kafka's `OffsetCommitKey`/`GroupMetadataValue`: the topic
//! is internal, read by nothing but the coordinator. Compaction (which would bound the replay)
//! is not done yet: the log keeps every write, and a load replays them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::batch::split_batches;
use fjord_protocol::batch::BatchHeader;
use fjord_protocol::records::{plain_batch, plain_records};
use fjord_storage::{AppendBatch, GroupWrite, LoadedGroups, ReadLimit, StorageError};
use kafka_protocol::error::ResponseError;

use crate::replication::{is_replicated, Replication};
use crate::{partition_id, Broker};

/// Kafka's name for the topic, kept so that tools and regex subscriptions treat it as Kafka's.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How much of the log one read of a load takes.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Where a coordinator partition led here stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Its log is being replayed, for this leader epoch.
    Loading(i32),
    /// Its groups are in memory, for this leader epoch.
    Loaded(i32),
}

impl Load {
    /// The leader epoch the load is for.
    pub fn epoch(self) -> i32 {
        match self {
            Load::Loading(e) | Load::Loaded(e) => e,
        }
    }
}

/// Why a group write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The local store refused it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The replicated log did not commit it: leadership moved, too few replicas are in sync,
    /// or the wait timed out. It may still be committed later, as a timed-out produce may.
    #[error("the write to {OFFSETS_TOPIC} partition {partition} was not committed: {error}")]
    NotCommitted {
        /// The coordinator partition.
        partition: i32,
        /// What the log answered.
        error: ResponseError,
    },
}

/// Appends `writes` to coordinator partition `partition` as its leader and waits until the
/// in-sync replicas have them.
pub(super) async fn append(broker: &Broker, partition: i32, writes: &[GroupWrite]) -> Result<(), WriteError> {
    let refused = |error| WriteError::NotCommitted { partition, error };
    let meta = broker.metadata();
    let topic = meta
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(refused(ResponseError::NotCoordinator))?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .filter(|p| p.leader == broker.node_id())
        .ok_or(refused(ResponseError::NotCoordinator))?;
    let settings = broker.produce_settings.get(&broker.config.topic_defaults, &meta, topic);
    if p.isr.len() < settings.min_insync_replicas {
        return Err(refused(ResponseError::NotEnoughReplicas));
    }
    let records: Vec<(Bytes, Option<Bytes>)> = writes
        .iter()
        .map(|w| {
            let (key, value) = w.to_record();
            (Bytes::from(key), value.map(Bytes::from))
        })
        .collect();
    let timestamp = crate::txn::now_ms();
    let bytes = plain_batch(&records, timestamp).map_err(|_| refused(ResponseError::CorruptMessage))?;
    let batch = AppendBatch {
        bytes,
        record_count: records.len() as i32,
        max_timestamp: timestamp,
        max_timestamp_offset_delta: 0,
        producer: None,
        marker: None,
    };
    let pid = partition_id(topic, partition);
    let deadline = Instant::now() + Duration::from_millis(broker.groups.cfg.offsets_commit_timeout_ms);
    let appended = broker.store.append(pid, batch, p.leader_epoch).await?;
    if is_replicated(p) {
        Replication::appended(broker, pid);
        let end = appended.base_offset + records.len() as i64;
        Replication::await_isr(
            broker,
            pid,
            OFFSETS_TOPIC,
            partition,
            end,
            settings.min_insync_replicas,
            deadline,
        )
        .await
        .map_err(refused)?;
    }
    Ok(())
}

/// Serialises creations of the offsets topic from this broker.
static CREATING: AtomicBool = AtomicBool::new(false);

/// The node coordinating coordinator partition `partition`: the leader of that partition of
/// the offsets topic. Creates the topic when it does not exist yet and answers
/// `COORDINATOR_NOT_AVAILABLE` meanwhile, as Kafka does.
pub fn coordinator(broker: &Broker, partition: i32) -> Result<i32, (ResponseError, String)> {
    let meta = broker.metadata();
    let Some(topic) = meta.topics.get(OFFSETS_TOPIC) else {
        let rf = broker.groups.cfg.offsets_replication_factor;
        let live = meta.live_brokers().len();
        if live < rf as usize {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "{OFFSETS_TOPIC} needs {rf} brokers (offsets.topic.replication.factor) and {live} are available"
                ),
            ));
        }
        if let Some(broker) = broker.groups.cluster_broker() {
            if !CREATING.swap(true, Ordering::AcqRel) {
                tokio::spawn(async move {
                    create_topic(&broker, rf).await;
                    CREATING.store(false, Ordering::Release);
                });
            }
        }
        return Err((
            ResponseError::CoordinatorNotAvailable,
            format!("{OFFSETS_TOPIC} is being created"),
        ));
    };
    match usize::try_from(partition).ok().and_then(|i| topic.partitions.get(i)) {
        Some(p) if p.leader >= 0 => Ok(p.leader),
        _ => Err((
            ResponseError::CoordinatorNotAvailable,
            format!("{OFFSETS_TOPIC} partition {partition} has no leader"),
        )),
    }
}

async fn create_topic(broker: &Broker, rf: i16) {
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        // Kafka's offsets.topic.segment.bytes.
        ("segment.bytes".to_string(), "104857600".to_string()),
    ]);
    let partitions = broker.groups.cfg.offsets_partitions;
    match broker
        .controller
        .create_topic(OFFSETS_TOPIC, uuid::Uuid::new_v4(), partitions, rf, configs)
        .await
    {
        Ok(_) => {
            tracing::info!(
                topic = OFFSETS_TOPIC,
                partitions,
                replication_factor = rf,
                "created the offsets topic"
            );
            if let Err(e) = broker.reconcile().await {
                tracing::error!(error = %e, "the offsets topic has no storage yet");
            }
        }
        Err(fjord_controller::ControllerError::TopicAlreadyExists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "could not create the offsets topic"),
    }
}

/// Follows the leadership of the offsets topic's partitions until the process ends: loads
/// those that become led here, drops the groups of those that stop being.
pub async fn run(broker: Arc<Broker>) {
    let mut changes = broker.controller.subscribe();
    loop {
        let meta = broker.metadata();
        let me = broker.node_id();
        let led: BTreeMap<i32, i32> = meta
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.leader == me)
                    .map(|p| (p.partition, p.leader_epoch))
                    .collect()
            })
            .unwrap_or_default();
        for (partition, epoch) in broker.groups.follow_leadership(&led) {
            tokio::spawn(load(broker.clone(), partition, epoch));
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Replays partition `partition`'s log and installs its groups, unless leadership moved
/// meanwhile.
async fn load(broker: Arc<Broker>, partition: i32, epoch: i32) {
    let started = Instant::now();
    match replay(&broker, partition, epoch).await {
        Ok(Some((loaded, records))) => {
            let groups = loaded.groups.len();
            if broker.groups.install(partition, epoch, loaded) && records > 0 {
                tracing::info!(
                    partition,
                    epoch,
                    groups,
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "coordinator partition loaded"
                );
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(partition, epoch, error = %e, "could not load a coordinator partition");
            broker.groups.abandon(partition, epoch);
        }
    }
}

/// Whether this node still leads `partition` in `epoch`.
fn still_leads(broker: &Broker, partition: i32, epoch: i32) -> bool {
    broker
        .metadata()
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?).cloned())
        .is_some_and(|p| p.leader == broker.node_id() && p.leader_epoch == epoch)
}

/// The column family rebuilt from the log: the partition's rows cleared, every record
/// applied in order. `None` when leadership moved before the end.
async fn replay(broker: &Broker, partition: i32, epoch: i32) -> Result<Option<(LoadedGroups, usize)>, StorageError> {
    // The partition's storage is made by the reconciler, which runs on the same metadata
    // change: wait for it.
    let pid = loop {
        if !still_leads(broker, partition, epoch) {
            return Ok(None);
        }
        let meta = broker.metadata();
        if let Some(t) = meta.topics.get(OFFSETS_TOPIC) {
            let pid = partition_id(t, partition);
            if broker.store.offsets(&pid).is_some() {
                break pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let store = broker.store.groups().clone();
    let clearing = store.clone();
    tokio::task::spawn_blocking(move || clearing.clear_groups_blocking(partition))
        .await
        .map_err(|e| StorageError::Corruption(format!("group clear task failed: {e}")))??;
    let mut offset = broker
        .store
        .offsets(&pid)
        .ok_or(StorageError::UnknownPartition)?
        .log_start;
    let mut applied = 0usize;
    loop {
        if !still_leads(broker, partition, epoch) {
            return Ok(None);
        }
        let read = broker
            .store
            .read_to(pid, offset, LOAD_READ_BYTES, true, ReadLimit::LogEnd)
            .await?;
        if read.records.is_empty() {
            break;
        }
        for batch in split_batches(read.records.clone()).map_err(|e| StorageError::Corruption(e.to_string()))? {
            let header = BatchHeader::parse(&batch).map_err(|e| StorageError::Corruption(e.to_string()))?;
            offset = offset.max(header.last_offset() + 1);
        }
        let records = plain_records(read.records).map_err(|e| StorageError::Corruption(e.to_string()))?;
        let mut writes = Vec::with_capacity(records.len());
        for r in records {
            let key = r.key.as_deref().unwrap_or_default();
            match GroupWrite::from_record(key, r.value.as_deref()) {
                Some(w) if write_partition(&w) == partition => writes.push(w),
                _ => tracing::warn!(
                    partition,
                    offset = r.offset,
                    "skipping an unreadable coordinator record"
                ),
            }
        }
        applied += writes.len();
        store.write(writes).await?;
    }
    let loading = store.clone();
    let loaded = tokio::task::spawn_blocking(move || loading.load_groups(partition))
        .await
        .map_err(|e| StorageError::Corruption(format!("group load task failed: {e}")))??;
    Ok(Some((loaded, applied)))
}

/// The coordinator partition a write belongs to.
fn write_partition(w: &GroupWrite) -> i32 {
    match w {
        GroupWrite::Group { partition, .. }
        | GroupWrite::Offset { partition, .. }
        | GroupWrite::PendingOffsets { partition, .. }
        | GroupWrite::DeleteGroup { partition, .. } => *partition,
        // Transaction state is not replicated through this topic.
        GroupWrite::Txn { .. } => -1,
    }
}
