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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fjord_controller::Controller;
use fjord_storage::{GroupStore, GroupWrite, StorageError};
use tokio::sync::OwnedMutexGuard;

use crate::group::coordinator_partition;

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
    /// Producer id -> transactional id, for produce-time verification.
    by_producer: Mutex<HashMap<i64, String>>,
}

impl TxnCoordinator {
    /// Loads every stored transaction state. Blocking: for startup.
    pub fn load(cfg: TxnConfig, store: GroupStore) -> Result<Self, StorageError> {
        let loaded = store.load_all()?;
        let mut txns = HashMap::new();
        let mut by_producer = HashMap::new();
        for t in loaded.txns {
            match serde_json::from_slice::<TxnMeta>(&t.value) {
                Ok(meta) => {
                    by_producer.insert(meta.producer_id, meta.transactional_id.clone());
                    txns.insert(t.group_id, Arc::new(tokio::sync::Mutex::new(meta)));
                }
                Err(e) => tracing::error!(transactional_id = %t.group_id, error = %e, "unreadable transaction state"),
            }
        }
        tracing::info!(transactional_ids = txns.len(), "transaction states loaded");
        Ok(TxnCoordinator {
            cfg,
            ids: ProducerIds::new(),
            store,
            txns: Mutex::new(txns),
            by_producer: Mutex::new(by_producer),
        })
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
                        let t = Arc::new(tokio::sync::Mutex::new(TxnMeta::new(transactional_id)));
                        map.insert(transactional_id.to_string(), t.clone());
                        t
                    }
                    None => return None,
                }
            };
            let guard = arc.lock_owned().await;
            if !guard.gone {
                return Some(guard);
            }
        }
    }

    /// Every transactional id.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map().keys().cloned().collect();
        v.sort();
        v
    }

    /// The transactional id a producer id belongs to.
    pub fn transactional_id_of(&self, producer_id: i64) -> Option<String> {
        self.by_producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&producer_id)
            .cloned()
    }

    /// Forgets a locked transactional id (expiry).
    pub async fn remove(&self, meta: &mut TxnMeta) -> Result<(), StorageError> {
        self.store
            .write(vec![GroupWrite::Txn {
                partition: self.partition_for(&meta.transactional_id),
                transactional_id: meta.transactional_id.clone(),
                value: None,
            }])
            .await?;
        meta.gone = true;
        self.map().remove(&meta.transactional_id);
        let mut by = self.by_producer.lock().unwrap_or_else(|p| p.into_inner());
        if by.get(&meta.producer_id) == Some(&meta.transactional_id) {
            by.remove(&meta.producer_id);
        }
        Ok(())
    }

    /// Writes a state record (and indexes its producer id).
    pub async fn persist(&self, meta: &TxnMeta) -> Result<(), StorageError> {
        let value = serde_json::to_vec(meta).map_err(|e| StorageError::Corruption(e.to_string()))?;
        self.store
            .write(vec![GroupWrite::Txn {
                partition: self.partition_for(&meta.transactional_id),
                transactional_id: meta.transactional_id.clone(),
                value: Some(value),
            }])
            .await?;
        self.by_producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.producer_id, meta.transactional_id.clone());
        Ok(())
    }
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
