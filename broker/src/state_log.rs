//! Coordinator state in a cluster: replicated through Kafka's internal topics, as Kafka
//! replicates it, so that committed offsets, groups and transaction states survive the broker
//! that coordinated them. Group state goes through `__consumer_offsets`, transaction state
//! through `__transaction_state`; both work the same way.
//!
//! - The coordinator of a group (a transactional id) is the leader of its partition of the
//!   topic (`abs(hashCode) % offsets.topic.num.partitions`, or
//!   `transaction.state.log.num.partitions`). The topic is created, as Kafka creates it, by the
//!   first FindCoordinator that needs it, with Kafka's partition count, replication factor and
//!   (for transactions) `min.insync.replicas`.
//! - Every state write is appended to that partition as one batch (the record key is the
//!   write's key in the groups column family, its value the stored value or a tombstone) and
//!   answered once the in-sync replicas have it, then applied to the local column family,
//!   which serves reads as on a single node.
//! - A broker that becomes the leader of a partition replays the partition's log from its
//!   start into the column family (which may be stale: followers do not apply what they
//!   replicate) and loads its state; meanwhile requests for it get
//!   `COORDINATOR_LOAD_IN_PROGRESS`. A broker that stops leading a partition drops that state
//!   from memory and answers `NOT_COORDINATOR` for it.
//!
//! The records are Fjord's own, not Kafka's `OffsetCommitKey`/`TransactionLogValue`: the topics
//! are internal, read by nothing but the coordinators. Each record's key is a row's key and a
//! delete is a tombstone, so the topics are compacted (`cleanup.policy=compact`) as Kafka's
//! are, on every replica, and a load replays about one record per live row.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::batch::split_batches;
use fjord_protocol::batch::BatchHeader;
use fjord_protocol::records::{plain_batch, plain_records};
use fjord_storage::{AppendBatch, GroupWrite, LoadedGroups, ReadLimit, StateLog, StorageError};
use kafka_protocol::error::ResponseError;

use crate::replication::{is_replicated, Replication};
use crate::{partition_id, Broker};

/// Kafka's name for the group state topic, kept so that tools and regex subscriptions treat
/// it as Kafka's.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's name for the transaction state topic.
pub const TXN_TOPIC: &str = "__transaction_state";

/// How much of the log one read of a load takes.
const LOAD_READ_BYTES: usize = 1 << 20;

/// How long a transaction state write may wait for the in-sync replicas: Kafka's transaction
/// log appends wait `request.timeout.ms`, whose default this is.
const TXN_WRITE_TIMEOUT_MS: u64 = 30_000;

/// The topic carrying a coordinator's state.
pub fn topic(log: StateLog) -> &'static str {
    match log {
        StateLog::Groups => OFFSETS_TOPIC,
        StateLog::Transactions => TXN_TOPIC,
    }
}

/// Where a coordinator partition led here stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Its log is being replayed, for this leader epoch.
    Loading(i32),
    /// Its state is in memory, for this leader epoch.
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

/// One coordinator's partitions led here and how far their loads are.
#[derive(Debug, Default)]
pub struct Loads(Mutex<HashMap<i32, Load>>);

impl Loads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Load>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where partition `partition` stands here; `None` when it is not led here.
    pub fn state(&self, partition: i32) -> Option<Load> {
        self.lock().get(&partition).copied()
    }

    /// Whether this node serves partition `partition` now: `NOT_COORDINATOR` if it does not
    /// lead it, `COORDINATOR_LOAD_IN_PROGRESS` while it is being loaded.
    pub fn check(&self, partition: i32) -> Result<(), ResponseError> {
        match self.state(partition) {
            Some(Load::Loaded(_)) => Ok(()),
            Some(Load::Loading(_)) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Takes the partitions led here (partition → leader epoch). Returns those no longer led
    /// (or led in another epoch), whose state the owner must drop, and those to load.
    pub fn follow(&self, led: &BTreeMap<i32, i32>) -> (Vec<i32>, Vec<(i32, i32)>) {
        let mut loads = self.lock();
        let gone: Vec<i32> = loads
            .iter()
            .filter(|(p, l)| led.get(p) != Some(&l.epoch()))
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            loads.remove(p);
        }
        let mut start = Vec::new();
        for (p, epoch) in led {
            if !loads.contains_key(p) {
                loads.insert(*p, Load::Loading(*epoch));
                start.push((*p, *epoch));
            }
        }
        (gone, start)
    }

    /// Runs `install` and marks the partition loaded if it is still loading for `epoch`;
    /// returns whether it was. The state is installed under the lock, so a change of
    /// leadership cannot slip between the check and the install.
    pub fn finish(&self, partition: i32, epoch: i32, install: impl FnOnce()) -> bool {
        let mut loads = self.lock();
        if loads.get(&partition) != Some(&Load::Loading(epoch)) {
            return false;
        }
        install();
        loads.insert(partition, Load::Loaded(epoch));
        true
    }

    /// Forgets a load that failed, so that the next leadership change tries again.
    pub fn abandon(&self, partition: i32, epoch: i32) {
        let mut loads = self.lock();
        if loads.get(&partition) == Some(&Load::Loading(epoch)) {
            loads.remove(&partition);
        }
    }
}

/// Why a state write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The local store refused it.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The replicated log did not commit it: leadership moved, too few replicas are in sync,
    /// or the wait timed out. It may still be committed later, as a timed-out produce may.
    #[error("the write to {topic} partition {partition} was not committed: {error}")]
    NotCommitted {
        /// The state topic.
        topic: &'static str,
        /// The coordinator partition.
        partition: i32,
        /// What the log answered.
        error: ResponseError,
    },
}

impl WriteError {
    /// The error a coordinator request answers with, as Kafka's coordinators map a failed
    /// append: the partition moved away, or the coordinator is unavailable for now.
    pub fn response_error(&self) -> ResponseError {
        match self {
            WriteError::NotCommitted {
                error: ResponseError::NotLeaderOrFollower | ResponseError::NotCoordinator,
                ..
            } => ResponseError::NotCoordinator,
            _ => ResponseError::CoordinatorNotAvailable,
        }
    }
}

/// How a state topic is made: Kafka's settings for it.
struct Spec {
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    write_timeout_ms: u64,
}

fn spec(broker: &Broker, log: StateLog) -> Spec {
    let mut configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    match log {
        StateLog::Groups => {
            // Kafka's offsets.topic.segment.bytes.
            configs.insert("segment.bytes".to_string(), "104857600".to_string());
            Spec {
                partitions: broker.groups.cfg.offsets_partitions,
                replication_factor: broker.groups.cfg.offsets_replication_factor,
                configs,
                write_timeout_ms: broker.groups.cfg.offsets_commit_timeout_ms,
            }
        }
        StateLog::Transactions => {
            // Kafka's transaction.state.log.segment.bytes and .min.isr.
            configs.insert("segment.bytes".to_string(), "104857600".to_string());
            configs.insert(
                "min.insync.replicas".to_string(),
                broker.txns.cfg.state_min_isr.to_string(),
            );
            Spec {
                partitions: broker.txns.cfg.state_partitions,
                replication_factor: broker.txns.cfg.state_replication_factor,
                configs,
                write_timeout_ms: TXN_WRITE_TIMEOUT_MS,
            }
        }
    }
}

/// Appends `writes` to coordinator partition `partition` of `log` as its leader and waits
/// until the in-sync replicas have them. `epoch` is the leader epoch the writer's state was
/// loaded in: state held since an earlier leadership of the partition (a request that kept an
/// entry across a reload) must not overwrite what the new load installed.
pub async fn append(
    broker: &Broker,
    log: StateLog,
    partition: i32,
    epoch: i32,
    writes: &[GroupWrite],
) -> Result<(), WriteError> {
    let name = topic(log);
    let refused = |error| WriteError::NotCommitted {
        topic: name,
        partition,
        error,
    };
    let meta = broker.metadata();
    let (topic, p) = led_partition(&meta, log, partition)
        .filter(|(_, p)| p.leader == broker.node_id() && p.leader_epoch == epoch)
        .ok_or(refused(ResponseError::NotCoordinator))?;
    let settings = broker
        .produce_settings
        .get(|| broker.live(&meta).topic_defaults.clone(), &meta, topic);
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
    let deadline = Instant::now() + Duration::from_millis(spec(broker, log).write_timeout_ms);
    let appended = broker.store.append(pid, batch, p.leader_epoch).await?;
    if is_replicated(p) {
        Replication::appended(broker, pid);
        let end = appended.base_offset + records.len() as i64;
        Replication::await_isr(
            broker,
            pid,
            name,
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

/// Partition `partition` of `log`'s topic in `meta`, with its topic.
fn led_partition(
    meta: &fjord_controller::ClusterMetadata,
    log: StateLog,
    partition: i32,
) -> Option<(&fjord_controller::TopicMeta, &fjord_controller::PartitionMeta)> {
    let t = meta.topics.get(topic(log))?;
    let p = t.partitions.get(usize::try_from(partition).ok()?)?;
    Some((t, p))
}

/// Serialises creations of each state topic from this broker.
static CREATING: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// The node coordinating partition `partition` of `log`: the leader of that partition of its
/// topic. Creates the topic when it does not exist yet and answers `COORDINATOR_NOT_AVAILABLE`
/// meanwhile, as Kafka does.
pub fn coordinator(broker: &Broker, log: StateLog, partition: i32) -> Result<i32, (ResponseError, String)> {
    let name = topic(log);
    let meta = broker.metadata();
    if !meta.topics.contains_key(name) {
        let rf = spec(broker, log).replication_factor;
        let live = meta.live_brokers().len();
        if live < rf as usize {
            let key = match log {
                StateLog::Groups => "offsets.topic.replication.factor",
                StateLog::Transactions => "transaction.state.log.replication.factor",
            };
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!("{name} needs {rf} brokers ({key}) and {live} are available"),
            ));
        }
        if let Some(broker) = broker.groups.cluster_broker() {
            let creating = &CREATING[log as usize];
            if !creating.swap(true, Ordering::AcqRel) {
                tokio::spawn(async move {
                    create_topic(&broker, log).await;
                    creating.store(false, Ordering::Release);
                });
            }
        }
        return Err((
            ResponseError::CoordinatorNotAvailable,
            format!("{name} is being created"),
        ));
    }
    match led_partition(&meta, log, partition) {
        Some((_, p)) if p.leader >= 0 => Ok(p.leader),
        _ => Err((
            ResponseError::CoordinatorNotAvailable,
            format!("{name} partition {partition} has no leader"),
        )),
    }
}

async fn create_topic(broker: &Broker, log: StateLog) {
    let name = topic(log);
    let s = spec(broker, log);
    match broker
        .controller
        .create_topic(
            name,
            uuid::Uuid::new_v4(),
            s.partitions,
            s.replication_factor,
            s.configs,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(
                topic = name,
                partitions = s.partitions,
                replication_factor = s.replication_factor,
                "created a coordinator state topic"
            );
            if let Err(e) = broker.reconcile().await {
                tracing::error!(topic = name, error = %e, "the state topic has no storage yet");
            }
        }
        Err(fjord_controller::ControllerError::TopicAlreadyExists(_)) => {}
        Err(e) => tracing::warn!(topic = name, error = %e, "could not create a coordinator state topic"),
    }
}

/// Follows the leadership of both state topics' partitions until the process ends: loads
/// those that become led here, drops the state of those that stop being.
pub async fn run(broker: Arc<Broker>) {
    let mut changes = broker.controller.subscribe();
    loop {
        let meta = broker.metadata();
        let me = broker.node_id();
        for log in [StateLog::Groups, StateLog::Transactions] {
            let led: BTreeMap<i32, i32> = meta
                .topics
                .get(topic(log))
                .map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.leader == me)
                        .map(|p| (p.partition, p.leader_epoch))
                        .collect()
                })
                .unwrap_or_default();
            let start = match log {
                StateLog::Groups => broker.groups.follow_leadership(&led),
                StateLog::Transactions => broker.txns.follow_leadership(&led),
            };
            for (partition, epoch) in start {
                tokio::spawn(load(broker.clone(), log, partition, epoch));
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Replays partition `partition`'s log and installs its state, unless leadership moved
/// meanwhile.
async fn load(broker: Arc<Broker>, log: StateLog, partition: i32, epoch: i32) {
    let started = Instant::now();
    let name = topic(log);
    match replay(&broker, log, partition, epoch).await {
        Ok(Some((loaded, records))) => {
            let (kind, count) = match log {
                StateLog::Groups => ("groups", loaded.groups.len()),
                StateLog::Transactions => ("transactional ids", loaded.txns.len()),
            };
            let installed = match log {
                StateLog::Groups => broker.groups.install(partition, epoch, loaded),
                StateLog::Transactions => broker.txns.install(partition, epoch, loaded),
            };
            if installed && records > 0 {
                tracing::info!(
                    topic = name,
                    partition,
                    epoch,
                    kind,
                    count,
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "coordinator partition loaded"
                );
            }
            if installed && log == StateLog::Transactions {
                // Transactions the old coordinator had prepared finish now, not at the next
                // timer tick: their producers wait on them.
                crate::handler::txn::expire_transactions(&broker, Some(partition)).await;
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(topic = name, partition, epoch, error = %e, "could not load a coordinator partition");
            match log {
                StateLog::Groups => broker.groups.abandon(partition, epoch),
                StateLog::Transactions => broker.txns.abandon(partition, epoch),
            }
        }
    }
}

/// Whether this node still leads `partition` in `epoch`.
fn still_leads(broker: &Broker, log: StateLog, partition: i32, epoch: i32) -> bool {
    led_partition(&broker.metadata(), log, partition)
        .is_some_and(|(_, p)| p.leader == broker.node_id() && p.leader_epoch == epoch)
}

/// The column family rebuilt from the log: the partition's rows cleared, every record
/// applied in order. `None` when leadership moved before the end.
async fn replay(
    broker: &Broker,
    log: StateLog,
    partition: i32,
    epoch: i32,
) -> Result<Option<(LoadedGroups, usize)>, StorageError> {
    // The partition's storage is made by the reconciler, which runs on the same metadata
    // change: wait for it.
    let pid = loop {
        if !still_leads(broker, log, partition, epoch) {
            return Ok(None);
        }
        let meta = broker.metadata();
        if let Some((t, _)) = led_partition(&meta, log, partition) {
            let pid = partition_id(t, partition);
            if broker.store.offsets(&pid).is_some() {
                break pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let store = broker.store.groups().clone();
    let clearing = store.clone();
    tokio::task::spawn_blocking(move || clearing.clear_blocking(log, partition))
        .await
        .map_err(|e| StorageError::Corruption(format!("coordinator state clear task failed: {e}")))??;
    let mut offset = broker
        .store
        .offsets(&pid)
        .ok_or(StorageError::UnknownPartition)?
        .log_start;
    let mut applied = 0usize;
    loop {
        if !still_leads(broker, log, partition, epoch) {
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
                Some(w) if log.holds(&w, partition) => writes.push(w),
                _ => tracing::warn!(
                    topic = topic(log),
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
    let loaded = tokio::task::spawn_blocking(move || loading.load_partition(log, partition))
        .await
        .map_err(|e| StorageError::Corruption(format!("coordinator state load task failed: {e}")))??;
    Ok(Some((loaded, applied)))
}
