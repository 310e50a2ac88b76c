//! Producer ids and the transaction coordinator.
//!
//! Producer ids come from the controller in blocks (Kafka's `AllocateProducerIds`), so they are
//! unique across the cluster and survive restarts. Each transactional id has a state record
//! (Kafka's `__transaction_state`): producer id and epoch, timeout, state and the partitions
//! and groups of the open transaction. Records are keyed by the coordinator partition of the
//! transactional id (`abs(hashCode) % transaction.state.log.num.partitions`), like groups.
//!
//! Ending a transaction is: record `PrepareCommit`/`PrepareAbort`, write a marker to every
//! partition of the transaction and complete the transaction's offset commits in its groups,
//! then record `CompleteCommit`/`CompleteAbort`. A coordinator that restarts between the two
//! records finds the prepared state and finishes the job (markers are idempotent for the log:
//! a second marker closes nothing).
//!
//! What each request and timer does to a transactional id is decided by [`state`], without IO;
//! this module keeps the states (one lock per transactional id), their records and the
//! producer id blocks.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use fjord_controller::Controller;
use fjord_storage::{GroupStore, GroupWrite, LoadedGroups, StateLog, StorageError};
use kafka_protocol::error::ResponseError;
use tokio::sync::OwnedMutexGuard;

use crate::group::coordinator_partition;
use crate::state_log::{self, Loads, WriteError};
use crate::Broker;

pub use state::{TxnMeta, TxnState};

/// Producer ids taken from the controller at a time.
const PRODUCER_ID_BLOCK: i32 = 1000;

/// Transaction coordinator settings, from Kafka's property names.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms` (900000): larger client timeouts are refused.
    pub max_timeout_ms: i32,
    /// `transaction.state.log.num.partitions` (50).
    pub state_partitions: i32,
    /// `transaction.state.log.replication.factor` (3): replicas of `__transaction_state` in a
    /// cluster.
    pub state_replication_factor: i16,
    /// `transaction.state.log.min.isr` (2): that topic's `min.insync.replicas`.
    pub state_min_isr: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000): how often
    /// transactions open past their timeout are looked for and aborted.
    pub abort_check_interval_ms: u64,
    /// `transactional.id.expiration.ms` (7 days): a transactional id idle this long, with no
    /// open transaction, is forgotten.
    pub id_expiration_ms: i64,
    /// `producer.id.expiration.ms` (1 day): producer state idle this long in a partition,
    /// with no open transaction, is forgotten.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms` (600000).
    pub producer_id_expiration_check_interval_ms: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            state_partitions: 50,
            state_replication_factor: 3,
            state_min_isr: 2,
            abort_check_interval_ms: 10_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            producer_id_expiration_check_interval_ms: 600_000,
        }
    }
}

/// Hands out producer ids from blocks the controller allocates.
pub struct ProducerIds {
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    fn new() -> Self {
        ProducerIds {
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// The next unused producer id.
    pub async fn next(&self, controller: &Controller, node_id: i32) -> Result<i64, fjord_controller::ControllerError> {
        let mut b = self.block.lock().await;
        if b.0 >= b.1 {
            let first = controller.allocate_producer_ids(node_id, PRODUCER_ID_BLOCK).await?;
            *b = (first, first + i64::from(PRODUCER_ID_BLOCK));
        }
        let id = b.0;
        b.0 += 1;
        Ok(id)
    }
}

/// The transaction coordinator's state.
pub struct TxnCoordinator {
    /// Settings.
    pub cfg: TxnConfig,
    /// Producer id source.
    pub ids: ProducerIds,
    store: GroupStore,
    txns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TxnMeta>>>>,
    /// In a cluster, the broker whose `__transaction_state` carries every state record (see
    /// [`state_log`]); unset on a single node, whose column family alone holds the states.
    cluster: OnceLock<Weak<Broker>>,
    /// In a cluster, the coordinator partitions led here and whether they are loaded.
    loads: Loads,
    /// Transactional writes to partitions led here that a coordinator on another broker has
    /// verified.
    pub verified: VerifiedWrites,
}

/// A producer's open transaction in a partition, as this leader has had it verified with the
/// transaction's coordinator on another broker: (producer id, epoch, the partition's leader
/// epoch).
pub type Verified = (i64, i16, i32);

/// The open transactions partitions led here had verified with a coordinator on another
/// broker. Kafka verifies the first transactional batch of a transaction in a partition only (it
/// asks when the partition has no ongoing transaction of that producer); this is that
/// knowledge for Fjord's leaders, so that the later batches cost no request. The marker that
/// ends the transaction in the partition forgets it, as does a new leader epoch (the markers
/// of a term led elsewhere were not seen here).
#[derive(Debug, Default)]
pub struct VerifiedWrites(Mutex<VerifiedMap>);

/// Per (topic, partition), per producer id: (epoch, leader epoch).
type VerifiedMap = HashMap<(String, i32), HashMap<i64, (i16, i32)>>;

/// Partitions remembered at most; beyond, everything is forgotten (and asked again).
const VERIFIED_PARTITIONS_MAX: usize = 100_000;

impl VerifiedWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, VerifiedMap> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `v`'s transaction was verified in this partition and not ended since.
    pub fn contains(&self, topic: &str, partition: i32, v: Verified) -> bool {
        let (producer_id, epoch, leader_epoch) = v;
        self.lock()
            .get(&(topic.to_string(), partition))
            .and_then(|m| m.get(&producer_id))
            == Some(&(epoch, leader_epoch))
    }

    /// Remembers a verified transaction.
    pub fn insert(&self, topic: &str, partition: i32, v: Verified) {
        let (producer_id, epoch, leader_epoch) = v;
        let mut map = self.lock();
        if map.len() >= VERIFIED_PARTITIONS_MAX {
            map.clear();
        }
        map.entry((topic.to_string(), partition))
            .or_default()
            .insert(producer_id, (epoch, leader_epoch));
    }

    /// A marker ended `producer_id`'s transaction in this partition.
    pub fn forget(&self, topic: &str, partition: i32, producer_id: i64) {
        let mut map = self.lock();
        let key = (topic.to_string(), partition);
        if let Some(m) = map.get_mut(&key) {
            m.remove(&producer_id);
            if m.is_empty() {
                map.remove(&key);
            }
        }
    }
}

impl TxnCoordinator {
    /// Loads every stored transaction state. Blocking: for startup. In a cluster nothing is
    /// loaded here: each coordinator partition is loaded from its log once it is led here.
    pub fn load(cfg: TxnConfig, store: GroupStore, cluster: bool) -> Result<Self, StorageError> {
        let coordinator = TxnCoordinator {
            cfg,
            ids: ProducerIds::new(),
            store,
            txns: Mutex::new(HashMap::new()),
            cluster: OnceLock::new(),
            loads: Loads::default(),
            verified: VerifiedWrites::default(),
        };
        if !cluster {
            let loaded = coordinator.store.load_all()?;
            coordinator.take(loaded, -1);
            tracing::info!(transactional_ids = coordinator.map().len(), "transaction states loaded");
        }
        Ok(coordinator)
    }

    /// Puts loaded transaction states in memory, loaded in leader epoch `epoch`.
    fn take(&self, loaded: LoadedGroups, epoch: i32) {
        let mut txns = self.map();
        for t in loaded.txns {
            match serde_json::from_slice::<TxnMeta>(&t.value) {
                Ok(mut meta) => {
                    meta.load_epoch = epoch;
                    txns.insert(t.group_id, Arc::new(tokio::sync::Mutex::new(meta)));
                }
                Err(e) => tracing::error!(transactional_id = %t.group_id, error = %e, "unreadable transaction state"),
            }
        }
    }

    /// Makes every state record go through `broker`'s `__transaction_state` first (a cluster).
    pub fn replicate_through(&self, broker: &Arc<Broker>) {
        let _ = self.cluster.set(Arc::downgrade(broker));
    }

    fn cluster_broker(&self) -> Option<Arc<Broker>> {
        self.cluster.get().and_then(Weak::upgrade)
    }

    /// Whether transaction state is replicated (a cluster).
    pub fn is_replicated(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Whether this node coordinates `transactional_id` now: `NOT_COORDINATOR` if another
    /// node does, `COORDINATOR_LOAD_IN_PROGRESS` while its partition is being loaded here.
    pub fn check(&self, transactional_id: &str) -> Result<(), ResponseError> {
        if !self.is_replicated() {
            return Ok(());
        }
        self.loads.check(self.partition_for(transactional_id))
    }

    /// Takes the coordinator partitions led here (partition → leader epoch): drops the
    /// transactional ids of those no longer led and returns those to load.
    pub(crate) fn follow_leadership(&self, led: &BTreeMap<i32, i32>) -> Vec<(i32, i32)> {
        let (gone, start) = self.loads.follow(led);
        if !gone.is_empty() {
            let removed: Vec<Arc<tokio::sync::Mutex<TxnMeta>>> = {
                let mut map = self.map();
                let ids: Vec<String> = map
                    .keys()
                    .filter(|id| gone.contains(&self.partition_for(id)))
                    .cloned()
                    .collect();
                ids.iter().filter_map(|id| map.remove(id)).collect()
            };
            tracing::info!(partitions = ?gone, transactional_ids = removed.len(), "transaction coordinator partitions unloaded");
            // A request holding one of them finishes on a state marked gone: the next lookup
            // finds what a new load installs, or nothing.
            tokio::spawn(async move {
                for t in removed {
                    t.lock().await.gone = true;
                }
            });
        }
        start
    }

    /// Installs the states a load of `partition` read, if the partition is still loading for
    /// `epoch`; returns whether it was.
    pub(crate) fn install(&self, partition: i32, epoch: i32, loaded: LoadedGroups) -> bool {
        self.loads.finish(partition, epoch, || self.take(loaded, epoch))
    }

    /// Forgets a load that failed, so that the next leadership change tries again.
    pub(crate) fn abandon(&self, partition: i32, epoch: i32) {
        self.loads.abandon(partition, epoch);
    }

    /// Makes `meta`'s state record durable (`None`: a tombstone): through
    /// `__transaction_state` in a cluster, under the leader epoch its state was loaded in, then
    /// in the local column family.
    async fn write_record(&self, meta: &TxnMeta, value: Option<Vec<u8>>) -> Result<(), WriteError> {
        let partition = self.partition_for(&meta.transactional_id);
        let writes = vec![GroupWrite::Txn {
            partition,
            transactional_id: meta.transactional_id.clone(),
            value,
        }];
        if let Some(broker) = self.cluster_broker() {
            state_log::append(&broker, StateLog::Transactions, partition, meta.load_epoch, &writes).await?;
        }
        self.store.write(writes).await?;
        Ok(())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<TxnMeta>>>> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The coordinator partition of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        coordinator_partition(transactional_id, self.cfg.state_partitions)
    }

    /// Locks a transactional id's state; `create` makes an empty one (producer id -1).
    pub async fn lock(&self, transactional_id: &str, create: bool) -> Option<OwnedMutexGuard<TxnMeta>> {
        loop {
            let arc = {
                let mut map = self.map();
                match map.get(transactional_id) {
                    Some(t) => t.clone(),
                    None if create => {
                        let mut meta = TxnMeta::new(transactional_id);
                        if self.is_replicated() {
                            // Only in a partition loaded here: one still loading would replace
                            // it, and its record would overwrite the loaded state.
                            match self.loads.state(self.partition_for(transactional_id)) {
                                Some(state_log::Load::Loaded(epoch)) => meta.load_epoch = epoch,
                                _ => return None,
                            }
                        }
                        let t = Arc::new(tokio::sync::Mutex::new(meta));
                        map.insert(transactional_id.to_string(), t.clone());
                        t
                    }
                    None => return None,
                }
            };
            let guard = arc.lock_owned().await;
            if self.is_replicated() && !self.serves(transactional_id, guard.load_epoch) {
                // Held over from an earlier leadership of its partition, or the partition
                // left: not this node's to read or change.
                return None;
            }
            if !guard.gone {
                return Some(guard);
            }
        }
    }

    /// Whether this node serves `transactional_id` with state loaded in leader epoch `epoch`.
    pub fn serves(&self, transactional_id: &str, epoch: i32) -> bool {
        self.loads.state(self.partition_for(transactional_id)) == Some(state_log::Load::Loaded(epoch))
    }

    /// Whether the id has a state in memory here.
    pub fn knows(&self, transactional_id: &str) -> bool {
        self.map().contains_key(transactional_id)
    }

    /// Every transactional id.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map().keys().cloned().collect();
        v.sort();
        v
    }

    /// Forgets a locked transactional id (expiry).
    pub async fn remove(&self, meta: &mut TxnMeta) -> Result<(), WriteError> {
        self.write_record(meta, None).await?;
        meta.gone = true;
        self.map().remove(&meta.transactional_id);
        Ok(())
    }

    /// Writes a state record.
    pub async fn persist(&self, meta: &TxnMeta) -> Result<(), WriteError> {
        let value = serde_json::to_vec(meta).map_err(|e| StorageError::Corruption(e.to_string()))?;
        self.write_record(meta, Some(value)).await
    }
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_transaction_is_forgotten_by_its_marker_and_by_a_new_leader_epoch() {
        let v = VerifiedWrites::default();
        assert!(!v.contains("t", 0, (7, 1, 3)));
        v.insert("t", 0, (7, 1, 3));
        assert!(v.contains("t", 0, (7, 1, 3)));
        assert!(!v.contains("t", 1, (7, 1, 3)), "another partition");
        assert!(!v.contains("t", 0, (7, 2, 3)), "another producer epoch");
        assert!(!v.contains("t", 0, (7, 1, 4)), "another leader epoch");
        v.insert("t", 0, (8, 0, 3));
        v.forget("t", 0, 7);
        assert!(!v.contains("t", 0, (7, 1, 3)), "the marker ended it");
        assert!(v.contains("t", 0, (8, 0, 3)), "another producer's stays");
    }
}
