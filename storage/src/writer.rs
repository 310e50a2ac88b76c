//! The log writer: offset assignment and group commit.
//!
//! One writer state, behind a lock, applies every write. Its thread blocks on its queue, then
//! drains whatever else is already queued (up to [`MAX_GROUP_OPS`]), applies all of it to one
//! `WriteBatch`, writes that once, and only then publishes the new offsets and answers every
//! caller. An append that finds the queue empty and the writer idle is applied the same way on
//! the caller's thread, as a group of one. Offsets are assigned only while holding the writer,
//! so they are dense and ordered per partition, and appends are applied in the order they were
//! submitted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fjord_protocol::batch::{
    check_stored, control_marker, patch_base_offset_and_epoch, split_batches, BATCH_HEADER_BYTES,
};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cleaner::CleanPlan;
use crate::error::{Result, StorageError};
use crate::health::DirHealth;
use crate::keys::{self, Doomed, PartitionRecord, CF_BATCHES, CF_PARTITIONS, CF_TIME_INDEX};
use crate::log::{
    cf, encode_time_value, AbortedMap, AppendBatch, AppendResult, PartitionMap, PartitionOffsets, PartitionState,
    ProducerMap,
};
use crate::producers::{self, AbortedTxn, Check, ProducerBatch, ProducerEntry, TxnMarker};
use crate::segments::{CleanedSwap, Locator, SegmentWriter, Stored};
use crate::tail::{TailBatch, Tails};
use crate::PartitionId;

/// Most operations folded into one RocksDB write: bounds the latency one commit adds to the
/// first producer in it.
pub const MAX_GROUP_OPS: usize = 1024;
/// Most batches one retention pass looks at for a partition: the scan runs on the writer
/// thread, so it is bounded; the next pass carries on.
pub const MAX_RETENTION_SCAN_BATCHES: usize = 10_000;
/// Most batch bytes folded into one RocksDB write, for the same reason.
pub const MAX_GROUP_BYTES: usize = 16 << 20;
/// Most batch bytes a request writes on its own thread (a reactor thread): small requests are
/// where a hand-over costs most relative to the write, while a large one would hold the
/// reactor for its copies and any page-cache throttling. Larger requests are queued for the
/// writer thread. 256 KiB is the Java producer's whole request at 20 MB/s with its default
/// linger.ms=5, and a few tens of microseconds of copying.
pub const MAX_INLINE_BYTES: usize = 256 << 10;

pub(crate) enum WriteOp {
    Create {
        pid: PartitionId,
        /// Created with other replicas: its high watermark is the leader's to move from the
        /// first append on.
        replicated: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Removes a topic's partitions, or one partition, with their data.
    Delete {
        doomed: Doomed,
        reply: oneshot::Sender<Result<()>>,
    },
    Append {
        pid: PartitionId,
        batch: AppendBatch,
        leader_epoch: i32,
        reply: oneshot::Sender<Result<AppendResult>>,
    },
    /// Batches a follower fetched from its leader, with the leader's offsets and epochs;
    /// answered with the log end offset after them.
    ReplicaAppend {
        pid: PartitionId,
        records: Bytes,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Removes every batch from the one holding `offset` on (a follower whose log diverged
    /// from its new leader's); answered with the new log end offset.
    Truncate {
        pid: PartitionId,
        offset: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Empties the log and starts it again at `offset` (a follower that fell behind its
    /// leader's log start); answered with the new log end offset.
    ResetTo {
        pid: PartitionId,
        offset: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    DeleteRecords {
        pid: PartitionId,
        offset: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    Retain {
        pid: PartitionId,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Forgets producers that have not written for `max_age_ms` and have no open
    /// transaction (`producer.id.expiration.ms`).
    ExpireProducers {
        now_ms: i64,
        max_age_ms: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Swaps in the segments a cleaning pass wrote (see [`crate::cleaner`]).
    Compact {
        plan: Box<CleanPlan>,
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl WriteOp {
    /// Bytes of new data the operation adds to the log, refused when the disk is nearly full:
    /// produced batches and replicated ones. Transaction markers are not, as they finish
    /// what was admitted, nor is anything that frees space.
    fn new_data(&self) -> Option<u64> {
        match self {
            WriteOp::Append { batch, .. } if batch.marker.is_none() => Some(batch.bytes.len() as u64),
            WriteOp::ReplicaAppend { records, .. } => Some(records.len() as u64),
            _ => None,
        }
    }
}

/// An answer held back until the group's write is durable.
enum Reply {
    Unit(oneshot::Sender<Result<()>>),
    Append(oneshot::Sender<Result<AppendResult>>, AppendResult),
    Offset(oneshot::Sender<Result<i64>>, i64),
}

impl WriteOp {
    /// Answers the operation with an error without applying it.
    fn refuse(self, e: StorageError) {
        match self {
            WriteOp::Create { reply, .. } | WriteOp::Delete { reply, .. } | WriteOp::Compact { reply, .. } => {
                drop(reply.send(Err(e)))
            }
            WriteOp::Append { reply, .. } => drop(reply.send(Err(e))),
            WriteOp::DeleteRecords { reply, .. }
            | WriteOp::ReplicaAppend { reply, .. }
            | WriteOp::Truncate { reply, .. }
            | WriteOp::ResetTo { reply, .. }
            | WriteOp::Retain { reply, .. }
            | WriteOp::ExpireProducers { reply, .. } => drop(reply.send(Err(e))),
            WriteOp::Shutdown { reply } => drop(reply.send(())),
        }
    }
}

impl Reply {
    fn ok(self) {
        // A caller that went away (client disconnected) no longer needs the answer.
        match self {
            Reply::Unit(tx) => drop(tx.send(Ok(()))),
            Reply::Append(tx, r) => drop(tx.send(Ok(r))),
            Reply::Offset(tx, o) => drop(tx.send(Ok(o))),
        }
    }

    fn fail(self, e: &StorageError) {
        let err = || match e {
            StorageError::Rocks(r) => StorageError::Rocks(r.clone()),
            StorageError::Offline(r) => StorageError::Offline(r.clone()),
            other => StorageError::Io(other.to_string()),
        };
        match self {
            Reply::Unit(tx) => drop(tx.send(Err(err()))),
            Reply::Append(tx, _) => drop(tx.send(Err(err()))),
            Reply::Offset(tx, _) => drop(tx.send(Err(err()))),
        }
    }
}

/// A batch to write, as [`Group::stage`] takes it.
struct Staged<'b> {
    /// The batch's bytes: its header as it is to be stored, and the rest.
    parts: [&'b [u8]; 2],
    base: i64,
    /// Offsets the batch spans.
    count: i64,
    leader_epoch: i32,
    max_timestamp: i64,
    max_timestamp_offset_delta: i32,
    /// The partition's new first unstable offset, when the batch moves it.
    first_unstable: Option<Option<i64>>,
    producer_update: Option<(i64, ProducerEntry)>,
    aborted_txn: Option<AbortedTxn>,
}

/// A truncation staged in a group, carried out on the files once the write is in.
struct Truncation {
    pid: PartitionId,
    new_end: i64,
    /// Segment and position of the first batch removed (`None`: no segment file held it).
    cut_at: Option<(i64, u64)>,
    /// The partition's producers, replayed from the batches kept.
    producers: HashMap<i64, ProducerEntry>,
    /// Every segment goes: the log starts again at `new_end`.
    reset: bool,
}

/// One group of operations being folded into a single write.
struct Group<'a> {
    db: &'a DB,
    segments: &'a mut SegmentWriter,
    /// Segment files to delete once the write is in: (partition, first offset kept).
    trims: Vec<(PartitionId, i64)>,
    /// Appended batches, for the tail cache once the write is in.
    tail: Vec<(PartitionId, TailBatch)>,
    partitions: &'a PartitionMap,
    producers: &'a ProducerMap,
    wb: WriteBatch,
    /// New producer states; published only after the write.
    pending_producers: HashMap<(PartitionId, i64), ProducerEntry>,
    /// Transactions aborted by this group's markers.
    pending_aborted: Vec<(PartitionId, AbortedTxn)>,
    /// Producers forgotten by this group.
    expired_producers: Vec<(PartitionId, i64)>,
    /// Partitions truncated by this group: the new log end, where their files are cut (the
    /// segment and position of the first batch removed), and their producers as rebuilt.
    truncated: Vec<Truncation>,
    /// New states of the partitions this group touches; published only after the write.
    pending: HashMap<PartitionId, PartitionState>,
    created: Vec<PartitionId>,
    deleted: Vec<Doomed>,
    /// Cleaned segments to put in place once the write is in.
    swaps: Vec<(PartitionId, CleanedSwap, i64)>,
    replies: Vec<Reply>,
    messages: i64,
    bytes: usize,
}

impl<'a> Group<'a> {
    fn producer(&self, pid: &PartitionId, producer_id: i64) -> Option<&ProducerEntry> {
        self.pending_producers
            .get(&(*pid, producer_id))
            .or_else(|| self.producers.get(pid)?.get(&producer_id))
    }

    /// First offset of the oldest open transaction of a partition, with this group's changes
    /// and `update` (a producer's next state) applied.
    fn first_unstable(&self, pid: &PartitionId, update: (i64, &ProducerEntry)) -> Option<i64> {
        let committed = self.producers.get(pid);
        let current = |id: i64, e: &'_ ProducerEntry| -> Option<i64> {
            if id == update.0 {
                update.1.txn_first_offset
            } else {
                self.pending_producers.get(&(*pid, id)).unwrap_or(e).txn_first_offset
            }
        };
        let mut firsts: Vec<Option<i64>> = committed.into_iter().flatten().map(|(id, e)| current(*id, e)).collect();
        for ((p, id), e) in &self.pending_producers {
            if p == pid && !committed.is_some_and(|c| c.contains_key(id)) {
                firsts.push(current(*id, e));
            }
        }
        if !committed.is_some_and(|c| c.contains_key(&update.0))
            && !self.pending_producers.contains_key(&(*pid, update.0))
        {
            firsts.push(update.1.txn_first_offset);
        }
        firsts.into_iter().flatten().min()
    }

    fn state(&mut self, pid: &PartitionId) -> Option<&mut PartitionState> {
        if !self.pending.contains_key(pid) {
            let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
            let current = *map.get(pid)?.lock().unwrap_or_else(|p| p.into_inner());
            self.pending.insert(*pid, current);
        }
        self.pending.get_mut(pid)
    }

    /// Records a partition's new state in the group (published after the write) and in its
    /// persisted row.
    fn put_state(&mut self, pid: PartitionId, mut state: PartitionState) -> Result<()> {
        state.generation += 1;
        let rec = PartitionRecord {
            log_start_offset: state.offsets.log_start,
            size_bytes: state.size_bytes,
        };
        self.wb
            .put_cf(cf(self.db, CF_PARTITIONS)?, keys::pid_prefix(&pid), rec.encode());
        self.pending.insert(pid, state);
        Ok(())
    }

    /// Deletes batches from the front of a partition's log until `keep(last offset, max
    /// timestamp, batch bytes, log bytes)` says to keep one, looking at no more than
    /// `max_batches`. Keeps `state.size_bytes` in step, schedules the segment files left with
    /// nothing to keep for deletion, and returns the last offset dropped, if any.
    fn drop_front(
        &mut self,
        pid: &PartitionId,
        state: &mut PartitionState,
        max_batches: usize,
        mut keep: impl FnMut(i64, i64, usize, u64) -> bool,
    ) -> Result<Option<i64>> {
        let batches_cf = cf(self.db, CF_BATCHES)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(keys::offset_key(pid, 0).to_vec());
        ro.set_iterate_upper_bound(keys::offset_key(pid, i64::MAX).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(batches_cf, ro);
        it.seek_to_first();
        let mut last_dropped = None;
        let mut first_kept = None;
        let mut seen = 0;
        while it.valid() && seen < max_batches {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let base = keys::offset_from_key(k).ok_or_else(|| StorageError::Corruption("batch key".into()))?;
            let stored = Stored::parse(v)?;
            let last = stored.last_offset(base);
            if keep(last, stored.max_timestamp(), stored.len(), state.size_bytes) {
                first_kept = Some(base);
                break;
            }
            state.size_bytes = state.size_bytes.saturating_sub(stored.len() as u64);
            last_dropped = Some(last);
            seen += 1;
            it.next();
        }
        // The scan ran off the end of the partition (not into a batch to keep, nor the limit).
        let exhausted = !it.valid();
        it.status()?;
        if let Some(last) = last_dropped {
            let end = first_kept.unwrap_or(last + 1);
            self.wb
                .delete_range_cf(batches_cf, keys::offset_key(pid, 0), keys::offset_key(pid, end));
            if exhausted {
                // Nothing left: appends in this group and later go to a new segment.
                self.segments.close_active(pid);
            }
            // Offsets are dense: the next batch, kept or not yet written, starts at last + 1.
            self.trims.push((*pid, last + 1));
        }
        Ok(last_dropped)
    }

    /// The new first unstable offset of a partition when `update` changes whether its producer
    /// has a transaction open (only that moves the last stable offset), else `None`.
    fn first_unstable_after(&self, pid: &PartitionId, update: &Option<(i64, ProducerEntry)>) -> Option<Option<i64>> {
        match update {
            Some((id, e)) if self.producer(pid, *id).and_then(|o| o.txn_first_offset) != e.txn_first_offset => {
                Some(self.first_unstable(pid, (*id, e)))
            }
            _ => None,
        }
    }

    /// Writes a batch at `s.base` to its segment and stages its locator, index entries,
    /// producer state and the partition's new state.
    fn stage(&mut self, pid: &PartitionId, s: Staged<'_>) -> Result<()> {
        let batches_cf = cf(self.db, CF_BATCHES)?;
        let index_cf = cf(self.db, CF_TIME_INDEX)?;
        let parts_cf = cf(self.db, CF_PARTITIONS)?;
        assert!(s.count > 0, "batches hold at least one record");
        let (segment, position) = self
            .segments
            .append(pid, s.base, s.max_timestamp, &s.parts)
            .inspect_err(|e| {
                // A full disk is announced once, by `space`.
                if !matches!(e, StorageError::NoSpace(_)) {
                    tracing::error!(error = %e, "cannot append to a segment");
                }
            })?;
        let len: usize = s.parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len).map_err(|_| StorageError::Corruption("batch over 4 GiB".into()))?;
        let locator = Locator {
            segment,
            position,
            len: len32,
            last_offset_delta: i32::try_from(s.count - 1).unwrap_or(i32::MAX),
            max_timestamp: s.max_timestamp,
            leader_epoch: s.leader_epoch,
        };
        if let Some(file) = self.segments.active_file(pid) {
            self.tail.push((
                *pid,
                TailBatch {
                    base: s.base,
                    locator,
                    file,
                },
            ));
        }
        let state = self.state(pid).ok_or(StorageError::UnknownPartition)?;
        let new_index_entry = s.max_timestamp > state.max_timestamp;
        if new_index_entry {
            state.max_timestamp = s.max_timestamp;
        }
        let new_epoch = s.leader_epoch > state.latest_epoch;
        if new_epoch {
            state.latest_epoch = s.leader_epoch;
        }
        if let Some(f) = s.first_unstable {
            state.first_unstable = f;
        }
        state.offsets.log_end = s.base + s.count;
        // Committed once it is in the log, for a partition without other replicas; a
        // replicated partition keeps its high watermark (see `publish`), and only its last
        // stable offset may move (a transaction opened or closed).
        let hw = if state.replicated {
            state.offsets.high_watermark
        } else {
            state.offsets.log_end
        };
        state.set_high_watermark(hw);
        state.size_bytes += len as u64;
        let rec = PartitionRecord {
            log_start_offset: state.offsets.log_start,
            size_bytes: state.size_bytes,
        };
        self.wb.put_cf(parts_cf, keys::pid_prefix(pid), rec.encode());
        self.wb
            .put_cf(batches_cf, keys::offset_key(pid, s.base), locator.encode());
        if new_index_entry {
            let v = encode_time_value(s.base, s.max_timestamp_offset_delta);
            self.wb.put_cf(index_cf, keys::time_key(pid, s.max_timestamp), v);
        }
        if new_epoch {
            self.wb
                .put_cf(parts_cf, keys::epoch_key(pid, s.leader_epoch), s.base.to_be_bytes());
        }
        if let Some((id, e)) = s.producer_update {
            let v = serde_json::to_vec(&e).map_err(|e| StorageError::Corruption(e.to_string()))?;
            self.wb.put_cf(parts_cf, keys::producer_key(pid, id), v);
            self.pending_producers.insert((*pid, id), e);
        }
        if let Some(a) = s.aborted_txn {
            let v = serde_json::to_vec(&a).map_err(|e| StorageError::Corruption(e.to_string()))?;
            self.wb.put_cf(parts_cf, keys::aborted_key(pid, a.last_offset), v);
            self.pending_aborted.push((*pid, a));
        }
        self.messages += s.count;
        self.bytes += len;
        Ok(())
    }

    /// Appends batches fetched from the leader as they are: their offsets, leader epochs and
    /// producer fields are the leader's. Batches the log already has are skipped (a fetch
    /// repeated after a lost answer); one that overlaps the log's end is refused. A batch may
    /// start past the log's end: the leader's cleaner removed what was between, and as Kafka's
    /// followers do, the follower's log has the same gap. The producer state follows the
    /// batches without the leader's checks, as Kafka's followers replay it. Returns the log
    /// end offset.
    fn replicate(&mut self, pid: &PartitionId, records: Bytes) -> Result<i64> {
        let batches = split_batches(records).map_err(|e| StorageError::ReplicaMismatch(e.to_string()))?;
        for b in batches {
            let h = check_stored(&b).map_err(|e| StorageError::ReplicaMismatch(e.to_string()))?;
            let log_end = self.state(pid).ok_or(StorageError::UnknownPartition)?.offsets.log_end;
            if h.last_offset() < log_end {
                continue;
            }
            if h.base_offset < log_end {
                return Err(StorageError::ReplicaMismatch(format!(
                    "batch at offset {} overlaps the log's end at {log_end}",
                    h.base_offset
                )));
            }
            let mut producer_update = None;
            let mut aborted_txn = None;
            if h.producer_id >= 0 {
                let entry = self.producer(pid, h.producer_id);
                if h.is_control() {
                    if let Some((commit, coordinator_epoch)) = control_marker(&b) {
                        let m = TxnMarker {
                            producer_id: h.producer_id,
                            epoch: h.producer_epoch,
                            commit,
                            coordinator_epoch,
                        };
                        let (e, a) = producers::after_marker(entry, &m, h.base_offset, h.max_timestamp);
                        producer_update = Some((h.producer_id, e));
                        aborted_txn = a;
                    }
                } else {
                    // Kafka's lastSequence: baseSequence + lastOffsetDelta, which a cleaned
                    // batch keeps while its record count drops.
                    let pb = ProducerBatch::new(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_sequence,
                        h.last_offset_delta + 1,
                        h.is_transactional(),
                    );
                    let e = producers::after_append(entry, &pb, h.base_offset, h.max_timestamp);
                    producer_update = Some((h.producer_id, e));
                }
            }
            let first_unstable = self.first_unstable_after(pid, &producer_update);
            let staged = Staged {
                parts: [&b[..], &[]],
                base: h.base_offset,
                count: i64::from(h.last_offset_delta) + 1,
                leader_epoch: h.partition_leader_epoch,
                max_timestamp: h.max_timestamp,
                // The follower does not decode records: the time index points at the batch's
                // last record, and a lookup by time scans the batch from its start.
                max_timestamp_offset_delta: h.last_offset_delta,
                first_unstable,
                producer_update,
                aborted_txn,
            };
            self.stage(pid, staged)?;
        }
        Ok(self.state(pid).ok_or(StorageError::UnknownPartition)?.offsets.log_end)
    }

    /// Removes the batches from the one holding `offset` to the end: their locators, time
    /// index entries, epoch starts and aborted transactions, and (once the write is in) their
    /// bytes. The producer state is rebuilt from the batches kept. Returns the new log end.
    fn truncate(&mut self, pid: &PartitionId, offset: i64) -> Result<i64> {
        let mut state = *self.state(pid).ok_or(StorageError::UnknownPartition)?;
        if offset >= state.offsets.log_end {
            return Ok(state.offsets.log_end);
        }
        let batches_cf = cf(self.db, CF_BATCHES)?;
        let index_cf = cf(self.db, CF_TIME_INDEX)?;
        let parts_cf = cf(self.db, CF_PARTITIONS)?;
        // The first batch to remove: the one holding `offset`, else the first after it.
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(keys::offset_key(pid, 0).to_vec());
        ro.set_iterate_upper_bound(keys::offset_key(pid, i64::MAX).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(batches_cf, ro);
        it.seek_for_prev(keys::offset_key(pid, offset));
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let base = keys::offset_from_key(k).ok_or_else(|| StorageError::Corruption("batch key".into()))?;
            if Stored::parse(v)?.last_offset(base) < offset {
                it.next();
            }
        } else {
            it.seek(keys::offset_key(pid, offset));
        }
        let mut new_end = None;
        let mut cut_at = None;
        let mut removed_bytes = 0u64;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let base = keys::offset_from_key(k).ok_or_else(|| StorageError::Corruption("batch key".into()))?;
            let stored = Stored::parse(v)?;
            if new_end.is_none() {
                new_end = Some(base);
                if let Stored::File(l) = stored {
                    cut_at = Some((l.segment, l.position));
                }
            }
            removed_bytes += stored.len() as u64;
            it.next();
        }
        it.status()?;
        let new_end = new_end.unwrap_or(state.offsets.log_end).max(state.offsets.log_start);
        // The cleaner starts over: its checkpoint may be past the new end, and what the log
        // grows back to there is dirty.
        self.wb.delete_cf(parts_cf, keys::cleaner_key(pid));
        self.wb.delete_range_cf(
            batches_cf,
            keys::offset_key(pid, new_end),
            keys::offset_key(pid, i64::MAX),
        );
        // Time index: entries are written as the largest timestamp grows, so the ones of the
        // removed batches are the newest; the last one kept is the new largest timestamp.
        state.max_timestamp = -1;
        for item in self.db.prefix_iterator_cf(index_cf, keys::pid_prefix(pid)) {
            let (k, v) = item?;
            if !k.starts_with(&keys::pid_prefix(pid)) {
                break;
            }
            let (base, _) = crate::log::decode_time_value(&v)?;
            if base >= new_end {
                self.wb.delete_cf(index_cf, &k);
            } else if let Some(ts) = keys::timestamp_from_key(&k) {
                state.max_timestamp = state.max_timestamp.max(ts);
            }
        }
        // Epoch starts at or after the cut go; the newest kept is the latest epoch.
        state.latest_epoch = -1;
        let epoch_prefix = keys::epoch_key(pid, 0);
        let epoch_prefix = &epoch_prefix[..keys::PID_BYTES + 1];
        for item in self.db.prefix_iterator_cf(parts_cf, epoch_prefix) {
            let (k, v) = item?;
            if !k.starts_with(epoch_prefix) {
                break;
            }
            let epoch = i32::from_be_bytes(
                k.get(keys::PID_BYTES + 1..)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| StorageError::Corruption("epoch key".into()))?,
            );
            let start = i64::from_be_bytes(
                v.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| StorageError::Corruption("epoch value".into()))?,
            );
            if start >= new_end {
                self.wb.delete_cf(parts_cf, &k);
            } else {
                state.latest_epoch = state.latest_epoch.max(epoch);
            }
        }
        // Aborted transactions whose marker is gone.
        self.wb.delete_range_cf(
            parts_cf,
            keys::aborted_key(pid, new_end),
            keys::aborted_key(pid, i64::MAX),
        );
        // Producer state: replayed from the batches kept.
        let producers = self.replay_producers(pid, state.offsets.log_start, new_end)?;
        if let Some(old) = self.producers.get(pid) {
            for id in old.keys() {
                self.wb.delete_cf(parts_cf, keys::producer_key(pid, *id));
            }
        }
        for (id, e) in &producers {
            let v = serde_json::to_vec(e).map_err(|e| StorageError::Corruption(e.to_string()))?;
            self.wb.put_cf(parts_cf, keys::producer_key(pid, *id), v);
        }
        self.pending_producers.retain(|(p, _), _| p != pid);
        state.first_unstable = producers.values().filter_map(|e| e.txn_first_offset).min();
        state.offsets.log_end = new_end;
        let hw = state.offsets.high_watermark.min(new_end);
        state.set_high_watermark(hw);
        state.size_bytes = state.size_bytes.saturating_sub(removed_bytes);
        self.put_state(*pid, state)?;
        self.truncated.push(Truncation {
            pid: *pid,
            new_end,
            cut_at,
            producers,
            reset: false,
        });
        Ok(new_end)
    }

    /// Removes every batch and starts the log again at `offset`: Kafka's
    /// `truncateFullyAndStartAt`, for a follower whose log ends before its leader's starts.
    fn reset_to(&mut self, pid: &PartitionId, offset: i64) -> Result<i64> {
        let log_start = self.state(pid).ok_or(StorageError::UnknownPartition)?.offsets.log_start;
        self.truncate(pid, log_start)?;
        let batches_cf = cf(self.db, CF_BATCHES)?;
        self.wb
            .delete_range_cf(batches_cf, keys::offset_key(pid, 0), keys::offset_key(pid, i64::MAX));
        let mut state = *self.state(pid).ok_or(StorageError::UnknownPartition)?;
        state.offsets.log_start = offset;
        state.offsets.log_end = offset;
        state.size_bytes = 0;
        state.first_unstable = None;
        state.set_high_watermark(offset);
        self.put_state(*pid, state)?;
        match self.truncated.iter_mut().find(|t| t.pid == *pid) {
            Some(t) => {
                t.new_end = offset;
                t.reset = true;
            }
            None => self.truncated.push(Truncation {
                pid: *pid,
                new_end: offset,
                cut_at: None,
                producers: HashMap::new(),
                reset: true,
            }),
        }
        Ok(offset)
    }

    /// The producer state of a partition as the batches in `[from, to)` leave it: what Kafka
    /// rebuilds from its producer snapshots after a truncation. Reads every batch header.
    fn replay_producers(&self, pid: &PartitionId, from: i64, to: i64) -> Result<HashMap<i64, ProducerEntry>> {
        let batches_cf = cf(self.db, CF_BATCHES)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(keys::offset_key(pid, 0).to_vec());
        ro.set_iterate_upper_bound(keys::offset_key(pid, to).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(batches_cf, ro);
        it.seek_to_first();
        let mut out: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut buf = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let base = keys::offset_from_key(k).ok_or_else(|| StorageError::Corruption("batch key".into()))?;
            let stored = Stored::parse(v)?;
            if stored.last_offset(base) < from {
                it.next();
                continue;
            }
            let bytes: &[u8] = match stored {
                Stored::Inline(v, _) => v,
                Stored::File(l) => {
                    let file = self
                        .segments
                        .file(pid, l.segment)
                        .ok_or_else(|| StorageError::Corruption(format!("segment {} is missing", l.segment)))?;
                    // The header tells the producer; a control batch's record tells commit
                    // or abort, and control batches are small.
                    let want = if l.len as usize <= 256 {
                        l.len as usize
                    } else {
                        BATCH_HEADER_BYTES
                    };
                    buf.resize(want, 0);
                    std::os::unix::fs::FileExt::read_exact_at(file.file(), &mut buf, l.position)
                        .map_err(|e| StorageError::Io(format!("reading a batch header: {e}")))?;
                    &buf
                }
            };
            let h = fjord_protocol::batch::BatchHeader::parse(bytes)
                .map_err(|e| StorageError::Corruption(e.to_string()))?;
            if h.producer_id >= 0 {
                let entry = out.get(&h.producer_id);
                let next = if h.is_control() {
                    control_marker(bytes).map(|(commit, coordinator_epoch)| {
                        let m = TxnMarker {
                            producer_id: h.producer_id,
                            epoch: h.producer_epoch,
                            commit,
                            coordinator_epoch,
                        };
                        producers::after_marker(entry, &m, base, h.max_timestamp).0
                    })
                } else {
                    // Kafka's lastSequence: baseSequence + lastOffsetDelta, which a cleaned
                    // batch keeps while its record count drops.
                    let pb = ProducerBatch::new(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_sequence,
                        h.last_offset_delta + 1,
                        h.is_transactional(),
                    );
                    Some(producers::after_append(entry, &pb, base, h.max_timestamp))
                };
                if let Some(e) = next {
                    out.insert(h.producer_id, e);
                }
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Stages a cleaning pass: the locators of the swapped groups replaced, the partition's
    /// size, the cleaner checkpoint, and the swap itself for recovery. Refused when the log
    /// changed below its end since the pass read it, or when its files are no longer those
    /// the pass read.
    fn compact(&mut self, plan: CleanPlan) -> Result<()> {
        let pid = plan.pid;
        let mut state = *self.state(&pid).ok_or(StorageError::UnknownPartition)?;
        if state.generation != plan.generation
            || self.swaps.iter().any(|(p, ..)| *p == pid)
            || self.deleted.iter().any(|d| d.covers(&pid))
        {
            return Err(StorageError::Superseded("the log changed during the pass".into()));
        }
        for g in &plan.swap.groups {
            for name in &g.inputs {
                if self.segments.file(&pid, *name).is_none() || self.segments.is_active(&pid, *name) {
                    return Err(StorageError::Superseded(format!(
                        "segment {name} changed during the pass"
                    )));
                }
            }
        }
        let batches_cf = cf(self.db, CF_BATCHES)?;
        let parts_cf = cf(self.db, CF_PARTITIONS)?;
        for (start, end) in &plan.ranges {
            self.wb
                .delete_range_cf(batches_cf, keys::offset_key(&pid, *start), keys::offset_key(&pid, *end));
        }
        for (base, loc) in &plan.locators {
            self.wb.put_cf(batches_cf, keys::offset_key(&pid, *base), loc.encode());
        }
        self.wb
            .put_cf(parts_cf, keys::cleaner_key(&pid), plan.checkpoint.to_be_bytes());
        if !plan.swap.groups.is_empty() {
            let v = serde_json::to_vec(&plan.swap).map_err(|e| StorageError::Corruption(e.to_string()))?;
            self.wb.put_cf(parts_cf, keys::swap_key(&pid), v);
            state.size_bytes = state.size_bytes.saturating_sub(plan.stats.bytes_freed);
            self.put_state(pid, state)?;
            let end = plan.ranges.iter().map(|r| r.1).max().unwrap_or(0);
            self.swaps.push((pid, plan.swap, end));
        }
        Ok(())
    }

    fn apply(&mut self, op: WriteOp) -> Result<()> {
        match op {
            WriteOp::Create { pid, replicated, reply } => {
                let exists = self.state(&pid).is_some() || self.created.contains(&pid);
                if !exists {
                    let rec = PartitionRecord {
                        log_start_offset: 0,
                        size_bytes: 0,
                    };
                    self.wb
                        .put_cf(cf(self.db, CF_PARTITIONS)?, keys::pid_prefix(&pid), rec.encode());
                    self.created.push(pid);
                    let offsets = PartitionOffsets {
                        log_start: 0,
                        log_end: 0,
                        high_watermark: 0,
                        last_stable: 0,
                    };
                    self.pending.insert(
                        pid,
                        PartitionState {
                            offsets,
                            max_timestamp: -1,
                            latest_epoch: -1,
                            size_bytes: 0,
                            first_unstable: None,
                            replicated,
                            generation: 0,
                        },
                    );
                }
                self.replies.push(Reply::Unit(reply));
            }
            WriteOp::Delete { doomed, reply } => {
                let (start, end) = doomed.key_range();
                for name in [CF_BATCHES, CF_TIME_INDEX, CF_PARTITIONS] {
                    self.wb.delete_range_cf(cf(self.db, name)?, &start, &end);
                }
                self.pending.retain(|pid, _| !doomed.covers(pid));
                self.created.retain(|pid| !doomed.covers(pid));
                self.deleted.push(doomed);
                self.replies.push(Reply::Unit(reply));
            }
            WriteOp::Append {
                pid,
                batch,
                leader_epoch,
                reply,
            } => {
                let Some((base, log_start)) = self.state(&pid).map(|s| (s.offsets.log_end, s.offsets.log_start)) else {
                    let _ = reply.send(Err(StorageError::UnknownPartition));
                    return Ok(());
                };
                // Producer state first: a refused or duplicate batch changes nothing.
                let mut producer_update: Option<(i64, ProducerEntry)> = None;
                let mut aborted_txn = None;
                if let Some(m) = batch.marker {
                    let entry = self.producer(&pid, m.producer_id);
                    if let Err(e) = producers::check_marker(entry, &m) {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                    let (e, a) = producers::after_marker(entry, &m, base, batch.max_timestamp);
                    producer_update = Some((m.producer_id, e));
                    aborted_txn = a;
                } else if let Some(pb) = batch.producer {
                    let entry = self.producer(&pid, pb.producer_id);
                    match producers::check(entry, &pb) {
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            return Ok(());
                        }
                        Ok(Check::Duplicate(original)) => {
                            // Answered with the original offset, after this group's write in
                            // case the original is in it.
                            self.replies.push(Reply::Append(
                                reply,
                                AppendResult {
                                    base_offset: original,
                                    log_start,
                                },
                            ));
                            return Ok(());
                        }
                        Ok(Check::Append) => {
                            let e = producers::after_append(entry, &pb, base, batch.max_timestamp);
                            producer_update = Some((pb.producer_id, e));
                        }
                    }
                }
                let first_unstable = self.first_unstable_after(&pid, &producer_update);
                // The batch goes to its segment as received, with only the header patched:
                // base offset and leader epoch sit outside the CRC, so nothing is re-encoded.
                let bytes = &batch.bytes;
                let mut head = [0u8; BATCH_HEADER_BYTES];
                head.copy_from_slice(&bytes[..BATCH_HEADER_BYTES]);
                patch_base_offset_and_epoch(&mut head, base, leader_epoch);
                let staged = Staged {
                    parts: [&head, &bytes[BATCH_HEADER_BYTES..]],
                    base,
                    count: i64::from(batch.record_count),
                    leader_epoch,
                    max_timestamp: batch.max_timestamp,
                    max_timestamp_offset_delta: batch.max_timestamp_offset_delta,
                    first_unstable,
                    producer_update,
                    aborted_txn,
                };
                if let Err(e) = self.stage(&pid, staged) {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                self.replies.push(Reply::Append(
                    reply,
                    AppendResult {
                        base_offset: base,
                        log_start,
                    },
                ));
            }
            WriteOp::ReplicaAppend { pid, records, reply } => match self.replicate(&pid, records) {
                Ok(log_end) => self.replies.push(Reply::Offset(reply, log_end)),
                Err(e) => drop(reply.send(Err(e))),
            },
            WriteOp::Truncate { pid, offset, reply } => match self.truncate(&pid, offset) {
                Ok(log_end) => self.replies.push(Reply::Offset(reply, log_end)),
                Err(e) => drop(reply.send(Err(e))),
            },
            WriteOp::ResetTo { pid, offset, reply } => match self.reset_to(&pid, offset) {
                Ok(log_end) => self.replies.push(Reply::Offset(reply, log_end)),
                Err(e) => drop(reply.send(Err(e))),
            },
            WriteOp::DeleteRecords { pid, offset, reply } => {
                let Some(mut state) = self.state(&pid).copied() else {
                    let _ = reply.send(Err(StorageError::UnknownPartition));
                    return Ok(());
                };
                let hw = state.offsets.high_watermark;
                let target = if offset == -1 { hw } else { offset };
                if target < 0 || target > hw {
                    let _ = reply.send(Err(StorageError::OffsetOutOfRange {
                        offset,
                        log_start: state.offsets.log_start,
                        high_watermark: hw,
                    }));
                    return Ok(());
                }
                if target > state.offsets.log_start {
                    // The batch holding `target` stays: readers skip its earlier records.
                    self.drop_front(&pid, &mut state, usize::MAX, |last, _, _, _| last >= target)?;
                    state.offsets.log_start = target;
                    self.put_state(pid, state)?;
                }
                self.replies.push(Reply::Offset(reply, state.offsets.log_start));
            }
            WriteOp::Retain {
                pid,
                retention_ms,
                retention_bytes,
                now_ms,
                reply,
            } => {
                let Some(mut state) = self.state(&pid).copied() else {
                    let _ = reply.send(Err(StorageError::UnknownPartition));
                    return Ok(());
                };
                let cutoff = now_ms.saturating_sub(retention_ms);
                let hw = state.offsets.high_watermark;
                // Kafka's rules at batch rather than segment granularity: a batch goes when its
                // newest record is older than retention.ms, or while the log without it is
                // still at least retention.bytes. Never past the high watermark.
                let last_dropped = self.drop_front(
                    &pid,
                    &mut state,
                    MAX_RETENTION_SCAN_BATCHES,
                    |last, max_ts, len, size| {
                        let too_old = retention_ms >= 0 && max_ts < cutoff;
                        let too_big = retention_bytes >= 0 && size.saturating_sub(len as u64) >= retention_bytes as u64;
                        last >= hw || !(too_old || too_big)
                    },
                )?;
                if let Some(last) = last_dropped {
                    state.offsets.log_start = state.offsets.log_start.max(last + 1);
                    self.put_state(pid, state)?;
                }
                self.replies.push(Reply::Offset(reply, state.offsets.log_start));
            }
            WriteOp::ExpireProducers {
                now_ms,
                max_age_ms,
                reply,
            } => {
                let parts_cf = cf(self.db, CF_PARTITIONS)?;
                let mut expired = 0i64;
                for (pid, producers) in self.producers.iter() {
                    for (id, e) in producers {
                        let e = self.pending_producers.get(&(*pid, *id)).unwrap_or(e);
                        if e.txn_first_offset.is_none() && now_ms.saturating_sub(e.last_timestamp) > max_age_ms {
                            self.wb.delete_cf(parts_cf, keys::producer_key(pid, *id));
                            self.expired_producers.push((*pid, *id));
                            expired += 1;
                        }
                    }
                }
                self.replies.push(Reply::Offset(reply, expired));
            }
            WriteOp::Compact { plan, reply } => match self.compact(*plan) {
                Ok(()) => self.replies.push(Reply::Unit(reply)),
                Err(e) => drop(reply.send(Err(e))),
            },
            WriteOp::Shutdown { .. } => unreachable!("handled by the loop"),
        }
        Ok(())
    }
}

/// The writer's state: whoever holds it appends. That is the writer thread, for everything
/// queued, or a connection's own task for an append that finds nothing queued and the writer
/// idle (see [`WriterHandle::try_inline`]).
pub(crate) struct Writer {
    db: Arc<DB>,
    segments: SegmentWriter,
    tails: Arc<Tails>,
    partitions: Arc<PartitionMap>,
    producers: ProducerMap,
    aborted: Arc<AbortedMap>,
    appended: Arc<watch::Sender<u64>>,
    flush_interval_messages: i64,
    /// Messages written since the last fsync (`log.flush.interval.messages`).
    unflushed: i64,
    health: Arc<DirHealth>,
    /// A `Shutdown` has been applied: nothing more is written.
    closed: bool,
}

/// How the store reaches the writer: its queue, and its state for inline appends.
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<WriteOp>,
    writer: Arc<Mutex<Writer>>,
    /// Operations queued and not yet applied. An inline append goes ahead only when this is 0
    /// while it holds the writer, so it is never applied before anything queued earlier.
    queued: Arc<AtomicUsize>,
    /// Appends applied on their caller's thread (for tests; the metric is for operators).
    inline: std::sync::atomic::AtomicU64,
}

impl WriterHandle {
    /// How many appends were applied inline.
    #[cfg(test)]
    pub(crate) fn inline_appends(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }

    /// Queues an operation for the writer thread.
    pub(crate) async fn send(&self, op: WriteOp) -> Result<()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(op).await.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::ShuttingDown);
        }
        Ok(())
    }

    /// Queues an operation from a thread outside the runtime (a cleaner), waiting for room.
    pub(crate) fn blocking_send(&self, op: WriteOp) -> bool {
        self.counted(|tx| tx.blocking_send(op).is_ok())
    }

    /// Queues an operation if the queue has room.
    pub(crate) fn try_send(&self, op: WriteOp) -> bool {
        self.counted(|tx| tx.try_send(op).is_ok())
    }

    /// Counts an operation as queued while `send` queues it, and not when it could not.
    fn counted(&self, send: impl FnOnce(&mpsc::Sender<WriteOp>) -> bool) -> bool {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = send(&self.tx);
        if !sent {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Applies appends on the caller's thread, as one group, when the writer is idle and
    /// nothing is queued, answering them before returning; otherwise gives them back to be
    /// queued.
    ///
    /// Why: on a produce the hand-over to the writer thread and back costs two thread wake-ups
    /// per request, and on a machine whose cores the clients share, a woken thread waits for
    /// one (BENCHMARKS.md, the latency tail). The inline write is what the writer thread would
    /// do with the same group: copies into the page cache and one WAL append, no fsync (appends
    /// that would bring the `log.flush.interval.messages` fsync are queued instead), for at
    /// most [`MAX_INLINE_BYTES`], so it holds the reactor thread about as long as a few small
    /// copies take.
    pub(crate) fn try_inline(&self, ops: Vec<WriteOp>) -> Option<Vec<WriteOp>> {
        let (mut messages, mut bytes) = (0i64, 0usize);
        for op in &ops {
            match op {
                WriteOp::Append { batch, .. } => {
                    messages += i64::from(batch.record_count);
                    bytes += batch.bytes.len();
                }
                _ => return Some(ops),
            }
        }
        if ops.is_empty() || ops.len() > MAX_GROUP_OPS || bytes > MAX_INLINE_BYTES {
            return Some(ops);
        }
        let Ok(mut w) = self.writer.try_lock() else {
            return Some(ops);
        };
        if w.closed || self.queued.load(Ordering::SeqCst) != 0 || w.would_sync(messages) {
            return Some(ops);
        }
        metrics::counter!("fjord_inline_appends_total").increment(ops.len() as u64);
        self.inline.fetch_add(ops.len() as u64, Ordering::Relaxed);
        let mut ops = ops.into_iter();
        if let Some(first) = ops.next() {
            w.apply_group(first, &mut || ops.next());
        }
        None
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Arc<DB>,
        segments: SegmentWriter,
        tails: Arc<Tails>,
        partitions: Arc<PartitionMap>,
        producers: ProducerMap,
        aborted: Arc<AbortedMap>,
        appended: Arc<watch::Sender<u64>>,
        flush_interval_messages: i64,
    ) -> Writer {
        // Exported from the start, so a broker that never fsyncs shows 0 rather than no series.
        metrics::counter!("fjord_wal_syncs_total").increment(0);
        metrics::counter!("fjord_inline_appends_total").increment(0);
        Writer {
            health: segments.health().clone(),
            db,
            segments,
            tails,
            partitions,
            producers,
            aborted,
            appended,
            flush_interval_messages,
            unflushed: 0,
            closed: false,
        }
    }

    /// Whether a group with `messages` more messages would be fsynced.
    fn would_sync(&self, messages: i64) -> bool {
        self.unflushed.saturating_add(messages) >= self.flush_interval_messages
    }

    /// Applies `first` and what `more` gives (up to [`MAX_GROUP_OPS`] operations and
    /// [`MAX_GROUP_BYTES`]) as one write, then answers them. Returns how many operations it
    /// took, and the reply of a `Shutdown` among them.
    fn apply_group(
        &mut self,
        first: WriteOp,
        more: &mut dyn FnMut() -> Option<WriteOp>,
    ) -> (usize, Option<oneshot::Sender<()>>) {
        let mut shutdown = None;
        let mut group = Group {
            db: &self.db,
            segments: &mut self.segments,
            trims: Vec::new(),
            tail: Vec::new(),
            partitions: &self.partitions,
            producers: &self.producers,
            pending_producers: HashMap::new(),
            pending_aborted: Vec::new(),
            expired_producers: Vec::new(),
            truncated: Vec::new(),
            wb: WriteBatch::default(),
            pending: HashMap::new(),
            created: Vec::new(),
            deleted: Vec::new(),
            swaps: Vec::new(),
            replies: Vec::new(),
            messages: 0,
            bytes: 0,
        };
        let mut next = Some(first);
        let mut ops = 0;
        while let Some(op) = next.take() {
            ops += 1;
            if let WriteOp::Shutdown { reply } = op {
                shutdown = Some(reply);
                self.closed = true;
                break;
            }
            // A cleaning ends its group: what follows it reads the index as the swap leaves it.
            let compacting = matches!(op, WriteOp::Compact { .. });
            // Nothing more is written to an offline directory, so nothing more is acknowledged.
            if let Err(e) = self.health.check() {
                op.refuse(e);
            } else if let Err(e) = op
                .new_data()
                .map_or(Ok(()), |n| group.segments.segments().space().admit(n))
            {
                // Below the disk reserve: new data waits for space (see `space`).
                op.refuse(e);
            } else if let Err(e) = group.apply(op) {
                tracing::error!(error = %e, "log writer could not stage an operation");
            }
            if ops < MAX_GROUP_OPS && group.bytes < MAX_GROUP_BYTES && !compacting {
                next = more();
            }
        }
        if group.replies.is_empty() {
            return (ops, shutdown);
        }
        // Kafka's log.flush.interval.messages: fsync once that many messages are unflushed.
        // Every caller in the group waits for the same write, so they share the fsync.
        // A swap is always synced: its renames follow, and a locator that survived a power
        // loss must not point into a file that was renamed over.
        let sync =
            self.unflushed.saturating_add(group.messages) >= self.flush_interval_messages || !group.swaps.is_empty();
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        // Durability promise: nothing is acknowledged before this write has returned, i.e.
        // before the batch is in its segment and its locator in the WAL (both on disk when
        // `sync`: the segments first, so a synced locator always finds its bytes).
        let started = std::time::Instant::now();
        // Readers resolving locators wait while cleaned segments are swapped in (see
        // `Segments::read_guard`).
        let swap_segments = group.segments.segments().clone();
        let segments_synced = if sync { group.segments.sync() } else { Ok(()) };
        // Taken after the segments' fsync: readers wait for the index write and the renames.
        let swapping = (segments_synced.is_ok() && !group.swaps.is_empty()).then(|| swap_segments.swap_guard());
        let written = segments_synced.and_then(|()| Ok(self.db.write_opt(std::mem::take(&mut group.wb), &wo)?));
        metrics::histogram!("fjord_wal_write_seconds").record(started.elapsed().as_secs_f64());
        if sync {
            metrics::counter!("fjord_wal_syncs_total").increment(1);
        }
        match written {
            Ok(()) => {
                self.unflushed = if sync {
                    0
                } else {
                    self.unflushed.saturating_add(group.messages)
                };
                let Group {
                    pending,
                    created,
                    deleted,
                    pending_producers,
                    pending_aborted,
                    expired_producers,
                    replies,
                    trims,
                    tail,
                    truncated,
                    swaps,
                    ..
                } = group;
                self.segments.commit();
                for (pid, swap, end) in swaps {
                    // The tail holds the replaced files: reads of the cleaned range go to the
                    // index from now on.
                    self.tails.drop_before(&pid, end);
                    match self.segments.install_cleaned(&pid, &swap) {
                        Ok(()) => {
                            // Synced: a later pass writes files of the same names, which a swap
                            // record surviving a power loss would rename into place.
                            let mut wo = WriteOptions::default();
                            wo.set_sync(true);
                            let done = cf(&self.db, CF_PARTITIONS)
                                .and_then(|parts| Ok(self.db.delete_cf_opt(parts, keys::swap_key(&pid), &wo)?));
                            if let Err(e) = done {
                                self.health.fail(format!("cannot record a finished segment swap: {e}"));
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot put cleaned segments in place"),
                    }
                }
                drop(swapping);
                // Before the new offsets are published: a reader that sees them finds the
                // batches in the tail.
                self.tails.push(tail);
                for (pid, keep_from) in trims {
                    self.tails.drop_before(&pid, keep_from);
                    self.segments.drop_before(&pid, keep_from);
                }
                for doomed in &deleted {
                    self.tails.remove(doomed);
                    self.segments.remove(doomed);
                }
                // Readers stop seeing the removed batches before their bytes go.
                let cut: Vec<PartitionId> = truncated.iter().map(|t| t.pid).collect();
                for t in &truncated {
                    self.tails.drop_from(&t.pid, t.new_end);
                }
                publish(&self.partitions, pending, created, &deleted, &cut);
                for t in truncated {
                    if t.reset {
                        self.tails.drop_before(&t.pid, i64::MAX);
                        self.segments.remove_partition(&t.pid);
                    } else if let Some((segment, position)) = t.cut_at {
                        self.segments.truncate(&t.pid, segment, position);
                    }
                    self.producers.insert(t.pid, t.producers);
                    let mut map = self.aborted.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(list) = map.get_mut(&t.pid) {
                        list.retain(|a| a.last_offset < t.new_end);
                    }
                }
                self.producers.retain(|pid, _| !deleted.iter().any(|d| d.covers(pid)));
                // Expiry first: a producer that wrote again later in this group is back.
                for (pid, id) in expired_producers {
                    if let Some(m) = self.producers.get_mut(&pid) {
                        m.remove(&id);
                    }
                }
                for ((pid, id), e) in pending_producers {
                    self.producers.entry(pid).or_default().insert(id, e);
                }
                {
                    let mut map = self.aborted.write().unwrap_or_else(|p| p.into_inner());
                    map.retain(|pid, _| !deleted.iter().any(|d| d.covers(pid)));
                    for (pid, a) in pending_aborted {
                        map.entry(pid).or_default().push(a);
                    }
                }
                self.appended.send_modify(|n| *n = n.wrapping_add(1));
                for r in replies {
                    r.ok();
                }
            }
            Err(e) => {
                // A failed fsync or WAL write leaves unknown what reached the disk: the
                // directory goes offline rather than trying again (see `health`).
                let e = self.health.fail(format!("log write failed: {e}"));
                drop(swapping);
                for (pid, swap, _) in &group.swaps {
                    for g in &swap.groups {
                        let _ = std::fs::remove_file(swap_segments.cleaned_path(pid, g.name));
                    }
                }
                let replies = group.replies;
                self.segments.rollback();
                for r in replies {
                    r.fail(&e);
                }
            }
        }
        (ops, shutdown)
    }
}

/// Starts the writer: its state behind a lock, and the thread that applies what is queued.
pub(crate) fn start(
    writer: Writer,
    queue_depth: usize,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue_depth);
    let writer = Arc::new(Mutex::new(writer));
    let queued = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (writer, queued) = (writer.clone(), queued.clone());
        std::thread::Builder::new()
            .name("fjord-log-writer".into())
            .spawn(move || run(&writer, &queued, rx))?
    };
    let inline = Default::default();
    Ok((
        WriterHandle {
            tx,
            writer,
            queued,
            inline,
        },
        thread,
    ))
}

/// The writer loop; runs until a `Shutdown` arrives or every sender is gone.
fn run(writer: &Mutex<Writer>, queued: &AtomicUsize, mut rx: mpsc::Receiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
        let (taken, shutdown) = w.apply_group(first, &mut || rx.try_recv().ok());
        // Still holding the writer: an inline append that sees 0 comes after all of these.
        queued.fetch_sub(taken, Ordering::SeqCst);
        drop(w);
        if let Some(reply) = shutdown {
            let _ = reply.send(());
            break;
        }
    }
}

/// Makes a group's partition states the current ones. A replicated partition keeps the high
/// watermark its leader set meanwhile (capped at its new log end), and whether it is
/// replicated is never the writer's to change.
fn publish(
    partitions: &PartitionMap,
    pending: HashMap<PartitionId, PartitionState>,
    created: Vec<PartitionId>,
    deleted: &[Doomed],
    truncated: &[PartitionId],
) {
    let mut map = partitions.write().unwrap_or_else(|p| p.into_inner());
    map.retain(|pid, _| !deleted.iter().any(|d| d.covers(pid)));
    for pid in created {
        if let Some(state) = pending.get(&pid) {
            map.insert(pid, Arc::new(Mutex::new(*state)));
        }
    }
    for (pid, state) in pending {
        if let Some(slot) = map.get(&pid) {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            assert!(
                state.offsets.log_end >= s.offsets.log_end || truncated.contains(&pid),
                "log end offset went backwards"
            );
            let replicated = s.replicated;
            let hw = if replicated {
                // A reset moves the log (and its high watermark) forward past what it held.
                s.offsets
                    .high_watermark
                    .max(state.offsets.log_start)
                    .min(state.offsets.log_end)
            } else {
                state.offsets.high_watermark
            };
            *s = state;
            s.replicated = replicated;
            s.set_high_watermark(hw);
        }
    }
}
