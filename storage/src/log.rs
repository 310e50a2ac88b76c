//! The store: partition state in memory, batches in segment files indexed in RocksDB, index
//! reads on the blocking pool. The read path is in `read`, start-up recovery in `recover`.

mod read;
mod recover;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use fjord_protocol::bufpool::BufPool;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, ErrorKind, IteratorMode, Options, ReadOptions, ReadTier, DB,
};
use tokio::sync::{oneshot, watch};

use crate::cleaner::{CleanStats, Cleanable, CleanerLimits, CompactionConfig, Pass};
use crate::error::{Result, StorageError};
use crate::groups::{GroupStore, CF_GROUPS};
use crate::health::DirHealth;
use crate::keys::{self, Doomed, CF_BATCHES, CF_PARTITIONS, CF_TIME_INDEX, PID_BYTES};
use crate::producers::{AbortedTxn, ProducerBatch, ProducerEntry, TxnMarker};
use crate::segments::{SegmentWriter, Segments, Stored};
use crate::tail::Tails;
use crate::writer::{self, WriteOp, Writer, WriterHandle};
use crate::PartitionId;
use read::{fill, find_by_timestamp, is_small, plan_batches, small_in_memory, ReadSpan};
pub use read::{FileRecords, RecordChunk, SegmentHandle};
use recover::recover;

/// How many write requests may wait for the writer thread. Producers beyond that wait in
/// `append` (backpressure) instead of growing a queue without bound.
pub const WRITER_QUEUE_DEPTH: usize = 4096;

/// Subdirectory of the store holding the segment files.
const SEGMENTS_SUBDIR: &str = "segments";

/// WAL kept before RocksDB flushes the column families that pin it (see `db_options`).
const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;

/// Batches at least this large are kept in blob files rather than in the LSM tree.
const BLOB_MIN_BYTES: u64 = 512;

/// Storage settings, from Kafka's property names (see the broker's config module).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Directory of the RocksDB instance holding the partition logs.
    pub data_dir: PathBuf,
    /// `log.flush.interval.messages`: fsync the WAL once this many messages are unflushed.
    /// `1` syncs every write (shared by concurrent producers); Kafka's default, `i64::MAX`,
    /// leaves durability against power loss to replication and the OS.
    pub flush_interval_messages: i64,
    /// `log.flush.interval.ms`: fsync the WAL at least this often, if set.
    pub flush_interval_ms: Option<u64>,
    /// `log.segment.bytes`: a partition's segment file is rolled before it would grow past
    /// this (a larger batch gets a segment of its own).
    pub segment_bytes: u64,
    /// `log.flush.offset.checkpoint.interval.ms`: how often rolled segments are fsynced and
    /// the recovery checkpoint written (Kafka's default: 60000).
    pub checkpoint_interval_ms: u64,
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First readable offset.
    pub log_start: i64,
    /// Offset the next appended record gets.
    pub log_end: i64,
    /// Offset after the last committed record; what `read_uncommitted` consumers may read up to.
    pub high_watermark: i64,
    /// First offset of the oldest open transaction, or the high watermark when none is open:
    /// what `read_committed` consumers may read up to.
    pub last_stable: i64,
}

/// In-memory state of a partition, owned by the writer and read by everyone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionState {
    pub offsets: PartitionOffsets,
    /// Largest timestamp appended so far (drives the time index), -1 when none.
    pub max_timestamp: i64,
    /// Newest leader epoch that has written to this partition, -1 when none.
    pub latest_epoch: i32,
    /// Bytes of the stored batches.
    pub size_bytes: u64,
    /// First offset of the oldest open transaction, if one is open.
    pub first_unstable: Option<i64>,
    /// The partition has other replicas: its high watermark is what the leader says the ISR
    /// has (see [`LogStore::advance_high_watermark`]), not its log end.
    pub replicated: bool,
    /// Bumped whenever batches below the log end are removed or rewritten (retention,
    /// DeleteRecords, truncation, cleaning): a cleaning planned against an older generation is
    /// not applied.
    pub generation: u64,
}

impl PartitionState {
    /// Sets the high watermark and the last stable offset that follows from it.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.offsets.high_watermark = hw;
        self.offsets.last_stable = self.first_unstable.map_or(hw, |f| f.min(hw));
    }
}

pub(crate) type PartitionMap = RwLock<HashMap<PartitionId, Arc<Mutex<PartitionState>>>>;

/// A validated batch to append, with the facts the writer needs without re-parsing it.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    /// The batch, base offset 0 (assigned here).
    pub bytes: Bytes,
    /// Number of records; the offsets used are `[base, base + record_count)`.
    pub record_count: i32,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Offset delta of the record with `max_timestamp`.
    pub max_timestamp_offset_delta: i32,
    /// Producer id, epoch and sequences of an idempotent or transactional batch.
    pub producer: Option<ProducerBatch>,
    /// Set when the batch is a transaction marker the broker wrote.
    pub marker: Option<TxnMarker>,
}

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Log start offset after the append.
    pub log_start: i64,
}

/// An append that is queued; [`PendingAppend::wait`] resolves once it is durable.
#[derive(Debug)]
pub struct PendingAppend(oneshot::Receiver<Result<AppendResult>>);

impl PendingAppend {
    /// The answer, if the append has been answered already (it was written inline, or the
    /// writer has got to it). Once it has given the answer, the append has nothing more.
    pub fn try_take(&mut self) -> Option<Result<AppendResult>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StorageError::ShuttingDown)),
        }
    }

    /// Waits for the write to be in the WAL.
    pub async fn wait(self) -> Result<AppendResult> {
        self.0.await.map_err(|_| StorageError::ShuttingDown)?
    }
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// To the log end: a follower replicating the leader's log.
    LogEnd,
    /// To the high watermark: a `read_uncommitted` consumer.
    HighWatermark,
    /// To the last stable offset: a `read_committed` consumer.
    LastStable,
}

/// Batches read for a Fetch.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, concatenated, as stored.
    pub records: Bytes,
    /// Offsets at the time of the read.
    pub offsets: PartitionOffsets,
}

/// The partition store. Cheap to share (`Arc`).
pub struct LogStore {
    db: Arc<DB>,
    partitions: Arc<PartitionMap>,
    aborted: Arc<AbortedMap>,
    segments: Arc<Segments>,
    tails: Arc<Tails>,
    bufs: Arc<BufPool>,
    writer: WriterHandle,
    appended: watch::Receiver<u64>,
    /// Bumped by the writer after every write, and here when a high watermark moves.
    appended_tx: Arc<watch::Sender<u64>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    flusher_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    checkpointer_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Background compactions of deleted ranges (see `reclaim`).
    reclaims: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    groups: GroupStore,
    /// Set at shutdown: a cleaning pass under way gives up.
    cleaner_stop: std::sync::atomic::AtomicBool,
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    // Quiet column families (time index, partition rows) would otherwise pin old WAL files:
    // gigabytes of WAL to keep and to replay after a crash. Past this total RocksDB flushes
    // the column families holding the oldest WAL, which bounds crash recovery.
    o.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    // Keep RocksDB's info LOG small: it is only read when debugging.
    o.set_keep_log_file_num(2);
    o.set_max_log_file_size(8 << 20);
    o
}

/// The column families other than the batch index: RocksDB's default 64 MiB memtables
/// would set the WAL's preallocation (1.1 times the largest memtable) at 70 MiB of disk,
/// where the batch index needs 35.
fn small_cf_options() -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(16 << 20);
    o
}

fn batches_cf_options() -> Options {
    let mut o = Options::default();
    // Values are batch locators (37 bytes, see `segments`); the batches are in segment files.
    // Locators of adjacent batches differ in a few bytes only, but compressing them is not
    // worth the CPU on the produce path: the whole index is ~1/10000 of the log.
    o.set_compression_type(rocksdb::DBCompressionType::None);
    // 32 MiB memtables, at most 3: some 300,000 locators each, so flushes are rare and cheap.
    o.set_write_buffer_size(32 << 20);
    o.set_max_write_buffer_number(3);
    // Stores written before segment files kept whole batches here, in blob files (key-value
    // separation, so compaction rewrote only keys). These settings keep reading them; locators
    // are below the blob size and stay in the LSM tree.
    o.set_enable_blob_files(true);
    o.set_min_blob_size(BLOB_MIN_BYTES);
    o.set_blob_file_size(256 << 20);
    o.set_blob_compression_type(rocksdb::DBCompressionType::None);
    // No blob GC: it would relocate the old stores' live blobs at every compaction; retention
    // deletes from the front, so their blob files lose all references and are dropped whole.
    o.set_enable_blob_gc(false);
    let mut t = BlockBasedOptions::default();
    // Fetches scan forward from a seek; large blocks suit that, and point lookups with a
    // bloom filter never happen on this column family.
    t.set_block_size(64 << 10);
    o.set_block_based_table_factory(&t);
    o
}

impl LogStore {
    /// Opens or creates the store and recovers every partition's offsets from the log.
    /// Blocking: call it from a blocking context at startup.
    pub fn open(cfg: StorageConfig) -> Result<Arc<LogStore>> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StorageError::Corruption(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
        let cfs = vec![
            // Unused, but opened with default options otherwise (by the crate).
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, small_cf_options()),
            ColumnFamilyDescriptor::new(CF_BATCHES, batches_cf_options()),
            ColumnFamilyDescriptor::new(CF_TIME_INDEX, small_cf_options()),
            ColumnFamilyDescriptor::new(CF_PARTITIONS, small_cf_options()),
            ColumnFamilyDescriptor::new(CF_GROUPS, small_cf_options()),
        ];
        let db = Arc::new(DB::open_cf_descriptors(&db_options(), &cfg.data_dir, cfs)?);
        let health = Arc::new(DirHealth::default());
        let segments = Arc::new(Segments::open(
            cfg.data_dir.join(SEGMENTS_SUBDIR),
            cfg.segment_bytes,
            health.clone(),
        )?);
        let recovered = recover(&db, &segments)?;
        segments.sync_recovered(&recovered.checkpoint)?;
        let partitions = Arc::new(RwLock::new(recovered.partitions));
        let aborted = Arc::new(RwLock::new(recovered.aborted));
        let producers = recovered.producers;
        let (appended_tx, appended) = watch::channel(0u64);
        let appended_tx = Arc::new(appended_tx);
        let tails = Arc::new(Tails::default());
        let (writer, writer_thread) = writer::start(
            Writer::new(
                db.clone(),
                SegmentWriter::new(segments.clone(), recovered.active),
                tails.clone(),
                partitions.clone(),
                producers,
                aborted.clone(),
                appended_tx.clone(),
                cfg.flush_interval_messages,
            ),
            WRITER_QUEUE_DEPTH,
        )
        .map_err(|e| StorageError::Corruption(format!("cannot start writer thread: {e}")))?;
        let flusher_stop = cfg
            .flush_interval_ms
            .map(|ms| spawn_flusher(db.clone(), segments.clone(), ms));
        let checkpointer_stop = spawn_checkpointer(segments.clone(), cfg.checkpoint_interval_ms);
        // A group write is one "message" under log.flush.interval.messages.
        let groups = GroupStore::new(db.clone(), cfg.flush_interval_messages <= 1, health.clone());
        Ok(Arc::new(LogStore {
            groups,
            aborted,
            db,
            segments,
            tails,
            bufs: Arc::default(),
            partitions,
            writer,
            appended,
            appended_tx,
            writer_thread: Mutex::new(Some(writer_thread)),
            flusher_stop: Mutex::new(flusher_stop),
            checkpointer_stop: Mutex::new(Some(checkpointer_stop)),
            reclaims: Mutex::new(Vec::new()),
            cleaner_stop: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Creates a partition if it does not exist yet (idempotent).
    pub async fn ensure_partition(&self, pid: PartitionId) -> Result<()> {
        self.ensure_replica(pid, false).await
    }

    /// [`LogStore::ensure_partition`] for a partition with other replicas or not. A new
    /// replicated partition is created as one, so that no append can find it between its
    /// creation and [`LogStore::set_replicated`] and be committed by the writer alone (an
    /// acks=all produce was acknowledged before its follower had it that way).
    pub async fn ensure_replica(&self, pid: PartitionId, replicated: bool) -> Result<()> {
        if self.offsets(&pid).is_some() {
            return Ok(());
        }
        self.call(|reply| WriteOp::Create { pid, replicated, reply }).await
    }

    /// Deletes every partition of a topic and its data.
    pub async fn delete_topic(&self, topic_id: [u8; 16]) -> Result<()> {
        self.delete(Doomed::Topic(topic_id)).await
    }

    /// Deletes one partition and its data (a replica that moved to other brokers).
    pub async fn delete_partition(&self, pid: PartitionId) -> Result<()> {
        self.delete(Doomed::Partition(pid)).await
    }

    async fn delete(&self, doomed: Doomed) -> Result<()> {
        self.call(|reply| WriteOp::Delete { doomed, reply }).await?;
        let (start, end) = doomed.key_range();
        self.reclaim([CF_BATCHES, CF_TIME_INDEX, CF_PARTITIONS], start, end);
        Ok(())
    }

    /// Compacts a deleted key range in the background so that its disk space comes back now:
    /// a range delete only writes a tombstone, and the SST files and blob files behind it
    /// stay until a compaction drops the keys that reference them.
    fn reclaim<const N: usize>(&self, cfs: [&'static str; N], start: Vec<u8>, end: Vec<u8>) {
        let db = self.db.clone();
        let task = tokio::task::spawn_blocking(move || {
            for name in cfs {
                if let Ok(handle) = cf(&db, name) {
                    db.compact_range_cf(handle, Some(&start), Some(&end));
                }
            }
        });
        // Kept so that a test's simulated crash can wait for the database's last user.
        let mut running = self.reclaims.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|t| !t.is_finished());
        running.push(task);
    }

    /// Appends one validated batch; returns once it is in the WAL (fsynced if the flush
    /// policy asks), so an acknowledged batch survives a process kill.
    ///
    /// Cancel safety: if the caller is dropped, the append still happens.
    pub async fn append(&self, pid: PartitionId, batch: AppendBatch, leader_epoch: i32) -> Result<AppendResult> {
        self.submit_append(pid, batch, leader_epoch).await?.wait().await
    }

    /// Queues an append and returns without waiting for it to be written (when the writer is
    /// idle and nothing is queued, the append is applied before this returns). Appends are
    /// applied in the order they are submitted, so a connection that submits its requests one
    /// after another keeps its batches in order while their writes overlap.
    pub async fn submit_append(
        &self,
        pid: PartitionId,
        batch: AppendBatch,
        leader_epoch: i32,
    ) -> Result<PendingAppend> {
        let mut pending = self.submit_appends(vec![(pid, batch, leader_epoch)]).await;
        pending.pop().ok_or(StorageError::ShuttingDown)
    }

    /// [`LogStore::submit_append`] for several batches (a Produce request's partitions), in
    /// order; one answer per batch. When the writer is idle they are written together before
    /// this returns.
    pub async fn submit_appends(&self, batches: Vec<(PartitionId, AppendBatch, i32)>) -> Vec<PendingAppend> {
        let mut answers = Vec::with_capacity(batches.len());
        let mut ops = Vec::with_capacity(batches.len());
        for (pid, batch, leader_epoch) in batches {
            let (reply, rx) = oneshot::channel();
            ops.push(WriteOp::Append {
                pid,
                batch,
                leader_epoch,
                reply,
            });
            answers.push(rx);
        }
        if let Some(ops) = self.writer.try_inline(ops) {
            for op in ops {
                // A send fails only once the writer is gone. The operations not sent are
                // dropped with their reply senders, so their answers are ShuttingDown.
                if self.writer.send(op).await.is_err() {
                    break;
                }
            }
        }
        answers.into_iter().map(PendingAppend).collect()
    }

    /// Appends batches a follower fetched from its leader, at the leader's offsets (see
    /// `Group::replicate`). Returns the log end offset after them.
    pub async fn replica_append(&self, pid: PartitionId, records: Bytes) -> Result<i64> {
        self.call(|reply| WriteOp::ReplicaAppend { pid, records, reply }).await
    }

    /// Removes the batches from the one holding `offset` to the end of the log, as a follower
    /// does when its log diverged from its leader's (KIP-101). Returns the new log end.
    pub async fn truncate(&self, pid: PartitionId, offset: i64) -> Result<i64> {
        self.call(|reply| WriteOp::Truncate { pid, offset, reply }).await
    }

    /// Empties the log and starts it again at `offset`, as a follower whose log ends before its
    /// leader's starts does (Kafka's `truncateFullyAndStartAt`). Returns the new log end.
    pub async fn reset_to(&self, pid: PartitionId, offset: i64) -> Result<i64> {
        self.call(|reply| WriteOp::ResetTo { pid, offset, reply }).await
    }

    /// Says whether the partition has other replicas. A replicated partition's high watermark
    /// moves only by [`LogStore::advance_high_watermark`]; one that stops being replicated has
    /// everything it holds committed.
    pub fn set_replicated(&self, pid: &PartitionId, replicated: bool) {
        let Some(slot) = self.partition(pid) else {
            return;
        };
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.replicated != replicated {
            s.replicated = replicated;
            if !replicated {
                let end = s.offsets.log_end;
                s.set_high_watermark(end);
                drop(s);
                self.appended_tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Moves a replicated partition's high watermark forward to `hw` (capped at its log end;
    /// never backward). Wakes the fetches and produces waiting on it. Returns the high
    /// watermark now in force.
    pub fn advance_high_watermark(&self, pid: &PartitionId, hw: i64) -> Option<i64> {
        let slot = self.partition(pid)?;
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        let target = hw.min(s.offsets.log_end);
        if target <= s.offsets.high_watermark {
            return Some(s.offsets.high_watermark);
        }
        s.set_high_watermark(target);
        drop(s);
        self.appended_tx.send_modify(|n| *n = n.wrapping_add(1));
        Some(target)
    }

    /// Newest leader epoch that wrote to the partition, -1 when none.
    pub fn latest_epoch(&self, pid: &PartitionId) -> Option<i32> {
        let slot = self.partition(pid)?;
        let s = slot.lock().unwrap_or_else(|p| p.into_inner());
        Some(s.latest_epoch)
    }

    fn partition(&self, pid: &PartitionId) -> Option<Arc<Mutex<PartitionState>>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(pid).cloned()
    }

    /// Moves the log start offset to `offset` (-1: the high watermark), as DeleteRecords.
    /// Returns the new log start offset.
    pub async fn delete_records(&self, pid: PartitionId, offset: i64) -> Result<i64> {
        let before = self.offsets(&pid).map(|o| o.log_start);
        let after = self.call(|reply| WriteOp::DeleteRecords { pid, offset, reply }).await?;
        if before.is_some_and(|b| b < after) {
            self.reclaim(
                [CF_BATCHES],
                keys::offset_key(&pid, 0).to_vec(),
                keys::offset_key(&pid, after).to_vec(),
            );
        }
        Ok(after)
    }

    /// Forgets the state of producers that have not written for `max_age_ms` and have no open
    /// transaction (Kafka's `producer.id.expiration.ms`): a producer that comes back later is
    /// treated as new. Returns how many were forgotten.
    pub async fn expire_producers(&self, now_ms: i64, max_age_ms: i64) -> Result<i64> {
        self.call(|reply| WriteOp::ExpireProducers {
            now_ms,
            max_age_ms,
            reply,
        })
        .await
    }

    /// Applies `retention.ms` and `retention.bytes` (-1: unlimited) to a partition, deleting
    /// whole batches from the front. Returns the log start offset afterwards.
    pub async fn enforce_retention(
        &self,
        pid: PartitionId,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> Result<i64> {
        if retention_ms < 0 && retention_bytes < 0 {
            return Ok(self.offsets(&pid).ok_or(StorageError::UnknownPartition)?.log_start);
        }
        self.call(|reply| WriteOp::Retain {
            pid,
            retention_ms,
            retention_bytes,
            now_ms,
            reply,
        })
        .await
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> WriteOp) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(op(tx)).await?;
        rx.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// The log directory's health: the broker stops when it goes offline.
    pub fn health(&self) -> &Arc<DirHealth> {
        self.segments.health()
    }

    /// The log directory's free space and its reserve (`log.dir.min.free.bytes`).
    pub fn space(&self) -> &Arc<crate::space::DiskSpace> {
        self.segments.space()
    }

    /// RocksDB's health: (writes stopped, delayed write rate in bytes/s, pending compaction
    /// bytes, running compactions).
    pub fn rocksdb_stats(&self) -> (u64, u64, u64, u64) {
        let int = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        (
            int("rocksdb.is-write-stopped"),
            int("rocksdb.actual-delayed-write-rate"),
            int("rocksdb.estimate-pending-compaction-bytes"),
            int("rocksdb.num-running-compactions"),
        )
    }

    /// Consumer-group state (committed offsets, group metadata) in the same database.
    pub fn groups(&self) -> &GroupStore {
        &self.groups
    }

    /// Current offsets, or `None` for an unknown partition.
    pub fn offsets(&self, pid: &PartitionId) -> Option<PartitionOffsets> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        let state = map.get(pid)?;
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        Some(s.offsets)
    }

    /// Aborted transactions of a partition that overlap `[from, to)`, oldest first: what a
    /// `read_committed` fetch of that range must tell the consumer to skip.
    pub fn aborted_txns(&self, pid: &PartitionId, from: i64, to: i64) -> Vec<AbortedTxn> {
        let map = self.aborted.read().unwrap_or_else(|p| p.into_inner());
        map.get(pid)
            .map(|list| {
                list.iter()
                    .filter(|a| a.last_offset >= from && a.first_offset < to)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every partition this store holds.
    pub fn partition_ids(&self) -> Vec<PartitionId> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.keys().copied().collect()
    }

    /// A counter bumped after every committed write: long-polling fetches wait on it.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.clone()
    }

    /// Reads whole batches from `offset` up to the high watermark, stopping before
    /// `max_bytes` would be exceeded. With `at_least_one`, the first batch is returned even
    /// when it alone is larger (KIP-74), so a consumer never stalls on a large batch.
    pub async fn read(
        &self,
        pid: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadResult> {
        self.read_isolated(pid, offset, max_bytes, at_least_one, false).await
    }

    /// [`LogStore::read`], stopping at the last stable offset when `committed_only`
    /// (`read_committed`): nothing of an open transaction, nor anything after it, is returned.
    pub async fn read_isolated(
        &self,
        pid: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        committed_only: bool,
    ) -> Result<ReadResult> {
        let limit = if committed_only {
            ReadLimit::LastStable
        } else {
            ReadLimit::HighWatermark
        };
        self.read_to(pid, offset, max_bytes, at_least_one, limit).await
    }

    /// [`LogStore::read`] up to `limit`: the log end for a replica, or for a new leader
    /// replaying its own log.
    pub async fn read_to(
        &self,
        pid: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        limit: ReadLimit,
    ) -> Result<ReadResult> {
        let (plan, offsets) = self
            .read_file_records(pid, offset, max_bytes, at_least_one, limit)
            .await?;
        let bufs = self.bufs.clone();
        let records = tokio::task::spawn_blocking(move || fill(&bufs, &plan))
            .await
            .map_err(|e| StorageError::Corruption(format!("read task failed: {e}")))??;
        Ok(ReadResult { records, offsets })
    }

    /// [`LogStore::read_isolated`] without reading: the batches are returned as regions of their
    /// segment files (small reads excepted), for the caller to send straight from there.
    pub async fn read_file_records(
        &self,
        pid: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        limit: ReadLimit,
    ) -> Result<(FileRecords, PartitionOffsets)> {
        // An offline directory serves nothing: what it holds may not be what was acknowledged.
        self.health().check()?;
        let offsets = self.offsets(&pid).ok_or(StorageError::UnknownPartition)?;
        let upper = match limit {
            ReadLimit::LastStable => offsets.last_stable,
            ReadLimit::HighWatermark => offsets.high_watermark,
            ReadLimit::LogEnd => offsets.log_end,
        };
        // Out of range only outside the log, as in Kafka: an offset between the high watermark
        // and the log end is one a consumer may hold (it read it from a leader whose high
        // watermark was ahead of this new leader's, which catches up as its followers fetch)
        // and gets no records yet, not a reset to `auto.offset.reset`.
        if offset < offsets.log_start || offset > offsets.log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: offsets.log_start,
                // A follower is told the log end: where it must cut a log that ran ahead.
                high_watermark: match limit {
                    ReadLimit::LogEnd => offsets.log_end,
                    _ => offsets.high_watermark,
                },
            });
        }
        // Nothing to read, or no room left in the response: a Fetch over many partitions reaches
        // the later ones with its fetch.max.bytes spent, and they need no index lookup.
        if offset >= upper || (max_bytes == 0 && !at_least_one) {
            return Ok((FileRecords::default(), offsets));
        }
        // A consumer at the head: planned from memory, on this thread. A small read is copied
        // here too: its bytes were just written and are in the page cache.
        if let Some(plan) = self.tails.plan(&pid, offset, upper, max_bytes, at_least_one) {
            return Ok((small_in_memory(&self.bufs, plan)?, offsets));
        }
        // Behind the tail: planned here too when the index blocks it needs are in RocksDB's
        // block cache (a consumer catching up reads locators written or read moments ago),
        // with a read tier that fails rather than touch the disk. Only a lookup that would
        // block, or a small read to copy out of a file that may not be cached, goes to the
        // blocking pool. On a busy machine each hop there costs a thread wake-up, which with
        // the client keeping both cores busy can take milliseconds (BENCHMARKS.md).
        let span = ReadSpan {
            offset,
            upper,
            max_bytes,
            at_least_one,
        };
        let cached = plan_batches(&self.db, &self.segments, &pid, span, ReadTier::BlockCache);
        let planned = match cached {
            Ok(plan) if !is_small(&plan) => return Ok((plan, offsets)),
            Ok(small) => Some(small),
            Err(StorageError::Rocks(e)) if e.kind() == ErrorKind::Incomplete => None,
            Err(e) => return Err(e),
        };
        let (db, segments, bufs) = (self.db.clone(), self.segments.clone(), self.bufs.clone());
        let plan = tokio::task::spawn_blocking(move || {
            let plan = match planned {
                Some(plan) => plan,
                None => plan_batches(&db, &segments, &pid, span, ReadTier::All)?,
            };
            small_in_memory(&bufs, plan)
        })
        .await
        .map_err(|e| StorageError::Corruption(format!("read task failed: {e}")))??;
        Ok((plan, offsets))
    }

    /// The earliest offset whose record timestamp is >= `timestamp`, with that timestamp,
    /// as ListOffsets by time; `None` when no record is that late.
    pub async fn offset_for_timestamp(&self, pid: PartitionId, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let offsets = self.offsets(&pid).ok_or(StorageError::UnknownPartition)?;
        let (db, segments, bufs) = (self.db.clone(), self.segments.clone(), self.bufs.clone());
        tokio::task::spawn_blocking(move || find_by_timestamp(&db, &segments, &bufs, &pid, timestamp, offsets))
            .await
            .map_err(|e| StorageError::Corruption(format!("index task failed: {e}")))?
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub async fn max_timestamp(&self, pid: PartitionId) -> Result<Option<(i64, i64)>> {
        let offsets = self.offsets(&pid).ok_or(StorageError::UnknownPartition)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<(i64, i64)>> {
            let cf = cf(&db, CF_TIME_INDEX)?;
            let upper = keys::time_key(&pid, i64::MAX);
            let mut it = db.iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
            match it.next() {
                Some(Ok((k, v))) if k.starts_with(&keys::pid_prefix(&pid)) => {
                    let ts = keys::timestamp_from_key(&k).ok_or_else(|| corrupt("time index key"))?;
                    let (base, delta) = decode_time_value(&v)?;
                    let offset = base + i64::from(delta);
                    Ok((offset >= offsets.log_start && offset < offsets.high_watermark).then_some((offset, ts)))
                }
                Some(Err(e)) => Err(e.into()),
                _ => Ok(None),
            }
        })
        .await
        .map_err(|e| StorageError::Corruption(format!("index task failed: {e}")))?
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` that wrote to this partition, and
    /// the offset where it ended (the next epoch's start offset, or the log end offset when
    /// it is still the newest). `current_epoch` is the leader epoch now in force, which may
    /// not have written yet. `None` when no epoch that old or older wrote here.
    pub fn end_offset_for_epoch(
        &self,
        pid: &PartitionId,
        epoch: i32,
        current_epoch: i32,
    ) -> Result<Option<(i32, i64)>> {
        let offsets = self.offsets(pid).ok_or(StorageError::UnknownPartition)?;
        let parts = cf(&self.db, CF_PARTITIONS)?;
        let prefix = keys::epoch_key(pid, 0);
        let prefix = &prefix[..PID_BYTES + 1];
        let mut floor: Option<i32> = None;
        let mut next_start: Option<i64> = None;
        for item in self
            .db
            .iterator_cf(parts, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let e = i32::from_be_bytes(
                k.get(PID_BYTES + 1..)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("epoch key"))?,
            );
            let start = i64::from_be_bytes(
                v.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("epoch value"))?,
            );
            if e <= epoch {
                floor = Some(e);
            } else {
                next_start = Some(start);
                break;
            }
        }
        Ok(match (floor, next_start) {
            (Some(e), _) => Some((e, next_start.unwrap_or(offsets.log_end))),
            // Older than every epoch that wrote here (as Kafka's LeaderEpochFileCache answers):
            // it ends where the first later one starts, so a follower that wrote in it keeps
            // nothing of it past that point.
            (None, Some(start)) if epoch >= 0 => Some((epoch, start)),
            // The epoch in force has not written yet: it ends at the log end.
            (None, None) if epoch == current_epoch && epoch >= 0 => Some((epoch, offsets.log_end)),
            (None, _) => None,
        })
    }

    /// Sets how a partition's segments roll (the topic's `segment.bytes` and `segment.ms`).
    pub fn set_roll(&self, pid: &PartitionId, bytes: u64, ms: Option<i64>) {
        self.segments.set_roll(
            pid,
            crate::segments::Roll {
                bytes: bytes.max(1),
                ms,
            },
        );
    }

    fn cleaner_pass(&self, pid: PartitionId, cfg: CompactionConfig, now_ms: i64) -> Result<Pass<'_>> {
        let state = *self
            .partition(&pid)
            .ok_or(StorageError::UnknownPartition)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(Pass {
            db: &self.db,
            segments: &self.segments,
            pid,
            cfg,
            now_ms,
            log_start: state.offsets.log_start,
            log_end: state.offsets.log_end,
            last_stable: state.offsets.last_stable,
            generation: state.generation,
            aborted: self.aborted_txns(&pid, 0, i64::MAX),
            stop: &self.cleaner_stop,
        })
    }

    /// How dirty a compacted partition is (`None`: nothing cleanable). Blocking: reads the
    /// partition's index.
    pub fn cleanable(&self, pid: PartitionId, cfg: CompactionConfig, now_ms: i64) -> Result<Option<Cleanable>> {
        self.cleaner_pass(pid, cfg, now_ms)?.cleanable()
    }

    /// Cleans a compacted partition (see [`crate::cleaner`]): `None` when there was nothing
    /// to clean. Blocking: the pass runs on the caller's thread, only its swap on the writer's.
    pub fn clean(
        &self,
        pid: PartitionId,
        cfg: CompactionConfig,
        limits: CleanerLimits,
        now_ms: i64,
    ) -> Result<Option<CleanStats>> {
        let pass = self.cleaner_pass(pid, cfg, now_ms)?;
        let producers = self.stored_producers(&pid)?;
        let plan = match pass.run(&limits, &producers) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(None),
            Err(e) => {
                // Whatever the pass wrote is of no use now (one pass per partition at a time,
                // so every `.cleaned` file of the partition is this pass's).
                self.segments.remove_cleaned(&pid);
                return Err(e);
            }
        };
        let stats = plan.stats;
        let (tx, rx) = oneshot::channel();
        let sent = self.writer.blocking_send(WriteOp::Compact {
            plan: Box::new(plan),
            reply: tx,
        });
        let res = if sent {
            rx.blocking_recv()
                .map_err(|_| StorageError::ShuttingDown)
                .and_then(|r| r)
        } else {
            Err(StorageError::ShuttingDown)
        };
        if res.is_err() {
            self.segments.remove_cleaned(&pid);
        }
        res.map(|()| Some(stats))
    }

    /// The producers with state in a partition, by producer id (DescribeProducers). A RocksDB
    /// read: call it off the async reactor.
    pub fn active_producers(&self, pid: &PartitionId) -> Result<Vec<(i64, ProducerEntry)>> {
        let mut list: Vec<(i64, ProducerEntry)> = self.stored_producers(pid)?.into_iter().collect();
        list.sort_by_key(|(id, _)| *id);
        Ok(list)
    }

    /// A partition's producer states as last written to the index.
    fn stored_producers(&self, pid: &PartitionId) -> Result<HashMap<i64, ProducerEntry>> {
        let prefix = keys::producer_key(pid, 0);
        let prefix = &prefix[..PID_BYTES + 1];
        let mut out = HashMap::new();
        for item in self.db.prefix_iterator_cf(cf(&self.db, CF_PARTITIONS)?, prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let id = i64::from_be_bytes(k[PID_BYTES + 1..].try_into().map_err(|_| corrupt("producer key"))?);
            let e: ProducerEntry = serde_json::from_slice(&v).map_err(|_| corrupt("producer state"))?;
            out.insert(id, e);
        }
        Ok(out)
    }

    /// Bytes of a partition's stored batches (DescribeLogDirs, retention.bytes).
    pub fn size_bytes(&self, pid: &PartitionId) -> u64 {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(pid)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).size_bytes)
            .unwrap_or(0)
    }

    /// [`LogStore::close`] from async code.
    pub async fn shutdown(self: &Arc<Self>) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.close())
            .await
            .map_err(|e| StorageError::Corruption(format!("close task failed: {e}")))?
    }

    /// A crash for tests: the writer and the background threads stop where they are, nothing
    /// is synced, flushed or checkpointed. The writer thread is joined, so that once the
    /// caller drops the store RocksDB is closed and a new instance can open the directory at
    /// once (an instance opened while the old one's threads still ran raced them for files).
    #[cfg(test)]
    pub(crate) async fn crash(self: &Arc<Self>) {
        let reclaims = std::mem::take(&mut *self.reclaims.lock().unwrap_or_else(|p| p.into_inner()));
        for task in reclaims {
            let _ = task.await;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.stop_threads())
            .await
            .expect("crash task");
    }

    /// Stops the flusher and checkpoint threads, then the writer once it has answered
    /// everything queued, and waits for it. Blocking.
    fn stop_threads(&self) {
        self.cleaner_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for stop in [&self.flusher_stop, &self.checkpointer_stop] {
            if let Some(stop) = stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = stop.send(());
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.writer.try_send(WriteOp::Shutdown { reply: tx }) {
            let _ = rx.blocking_recv();
        }
        if let Some(t) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// Stops the writer after it has answered everything queued, and syncs the WAL.
    /// Blocking: not for a reactor thread (see [`LogStore::shutdown`]).
    pub fn close(&self) -> Result<()> {
        self.stop_threads();
        // Everything acknowledged is in the segments and the WAL already; this makes it
        // survive power loss too (segments first: a synced locator must find its bytes).
        self.segments.sync_dirty()?;
        self.db
            .flush_wal(true)
            .map_err(|e| self.segments.health().fail(format!("WAL sync at shutdown: {e}")))?;
        // Everything is synced: the next start validates nothing.
        self.segments.checkpoint()?;
        // Flushing the memtables leaves no WAL to replay, so a clean restart is fast.
        for name in [CF_BATCHES, CF_TIME_INDEX, CF_PARTITIONS, CF_GROUPS] {
            self.db.flush_cf(cf(&self.db, name)?)?;
        }
        Ok(())
    }
}

fn spawn_flusher(db: Arc<DB>, segments: Arc<Segments>, every_ms: u64) -> std::sync::mpsc::Sender<()> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let period = std::time::Duration::from_millis(every_ms.max(1));
    let spawned = std::thread::Builder::new()
        .name("fjord-log-flusher".into())
        .spawn(move || {
            // log.flush.interval.ms: an fsync of the segments and the WAL at least this often,
            // off the writer's path. A failure is not retried: the directory goes offline
            // (sync_dirty does that itself; a WAL sync failure here).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(period) {
                if segments.sync_dirty().is_err() {
                    return;
                }
                if let Err(e) = db.flush_wal(true) {
                    segments.health().fail(format!("periodic WAL sync: {e}"));
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the periodic flusher; log.flush.interval.ms is not enforced");
    }
    stop_tx
}

/// Every `log.flush.offset.checkpoint.interval.ms`: fsyncs rolled segments and writes the
/// recovery checkpoint. Stops for good when the directory goes offline.
fn spawn_checkpointer(segments: Arc<Segments>, every_ms: u64) -> std::sync::mpsc::Sender<()> {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let period = std::time::Duration::from_millis(every_ms.max(1));
    let spawned = std::thread::Builder::new()
        .name("fjord-log-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(period) {
                if segments.checkpoint().is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the recovery checkpoint thread; recovery after a crash validates more");
    }
    stop_tx
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| StorageError::Corruption(format!("column family {name} is missing")))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corruption(format!("malformed {what}"))
}

pub(crate) fn encode_time_value(base_offset: i64, delta: i32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&base_offset.to_be_bytes());
    v[8..].copy_from_slice(&delta.to_be_bytes());
    v
}

pub(crate) fn decode_time_value(v: &[u8]) -> Result<(i64, i32)> {
    let base = i64::from_be_bytes(
        v.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("time index value"))?,
    );
    let delta = i32::from_be_bytes(
        v.get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("time index value"))?,
    );
    Ok((base, delta))
}

/// Producer state per partition, owned by the writer thread.
pub(crate) type ProducerMap = HashMap<PartitionId, HashMap<i64, ProducerEntry>>;
/// Aborted transactions per partition, oldest first, for `read_committed` fetches.
pub(crate) type AbortedMap = RwLock<HashMap<PartitionId, Vec<AbortedTxn>>>;

#[cfg(test)]
mod tests;
