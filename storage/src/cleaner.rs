//! Log compaction: Kafka's log cleaner on Fjord's segment files.
//!
//! A pass over a partition, as Kafka's `Cleaner.doClean` makes it:
//! 1. The cleanable range ends at the first uncleanable offset: the active segment, the last
//!    stable offset (an open transaction), and the first segment newer than
//!    `min.compaction.lag.ms`, rounded down to a segment boundary.
//! 2. An offset map (key digest -> latest offset) is built over the dirty part of that range,
//!    from the cleaner checkpoint on, skipping control batches and aborted transactions. A
//!    map that fills up ends the pass at the segment where it filled.
//! 3. Every segment from the log start to the end of the pass is recopied, in groups of about
//!    `segment.bytes`, keeping a record when it is the latest of its key; tombstones are kept
//!    until their batch's delete horizon (KIP-534: set to now + `delete.retention.ms` by the
//!    first pass that sees them) has passed; aborted records go, and transaction markers go
//!    once nothing of their transaction is left and their own horizon has passed. A batch
//!    keeps its base and last offset; one that loses every record is dropped, unless it is
//!    its producer's last (kept as an empty header, so the producer state survives).
//! 4. The writer thread swaps the cleaned files in with one synced index write (which also
//!    advances the checkpoint and records the swap for recovery), then renames the files into
//!    place. Groups where nothing changed are left as they are.
//!
//! The heavy work (reads, decompression, the map, writing the cleaned files) runs on the
//! caller's thread; the writer only validates and swaps, so producers wait for one index
//! write, never for a pass.

use std::collections::{hash_map::DefaultHasher, BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hasher;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::batch::compact::{empty_batch, CleanRecord, DecodedBatch};
use fjord_protocol::batch::{control_marker, BatchHeader};

use crate::error::{Result, StorageError};
use crate::keys::{self, CF_BATCHES, CF_PARTITIONS};
use crate::log::cf;
use crate::producers::{AbortedTxn, ProducerEntry};
use crate::segments::{CleanedGroup, CleanedSwap, Locator, SegmentFile, Segments, Stored};
use crate::PartitionId;

/// A compacted topic's settings, as a pass applies them to one of its partitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long tombstones (and spent transaction markers) are kept
    /// once a pass has seen them.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the partition due
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the partition is due when its dirty bytes are more than
    /// this share of its cleanable bytes.
    pub min_cleanable_ratio: f64,
    /// `segment.bytes`: the size cleaned segments are grouped up to.
    pub segment_bytes: u64,
}

/// The cleaner's resources for one pass (per cleaner thread).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerLimits {
    /// Keys the offset map may hold (Kafka: the thread's share of
    /// `log.cleaner.dedupe.buffer.size`, 24 bytes a key, loaded to 90%).
    pub map_keys: usize,
    /// `log.cleaner.io.max.bytes.per.second`: bytes read plus written.
    pub io_bytes_per_second: f64,
}

/// How dirty a partition is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// First offset not cleaned yet (the cleaner checkpoint).
    pub first_dirty: i64,
    /// First offset not cleanable now (a segment boundary).
    pub end: i64,
    /// Bytes of the batches below `first_dirty`.
    pub clean_bytes: u64,
    /// Bytes of the batches in `[first_dirty, end)`.
    pub dirty_bytes: u64,
    /// How long past `max.compaction.lag.ms` its oldest dirty segment is (0: not past).
    pub compaction_delay_ms: i64,
}

impl Cleanable {
    /// Dirty bytes over cleanable bytes.
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether a pass is due (Kafka's `grabFilthiestCompactedLog`: over the ratio, or past the
    /// maximum lag with something to clean).
    pub fn due(&self, cfg: &CompactionConfig) -> bool {
        self.dirty_bytes > 0 && (self.compaction_delay_ms > 0 || self.ratio() > cfg.min_cleanable_ratio)
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CleanStats {
    /// Bytes of the segments read (the map's and the recopy's).
    pub bytes_read: u64,
    /// Bytes of the cleaned segments written.
    pub bytes_written: u64,
    /// Bytes the partition shrank by.
    pub bytes_freed: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Where the next pass's dirty part starts.
    pub cleaned_to: i64,
    /// Segment files replaced.
    pub segments_replaced: u64,
}

/// A pass's result for the writer to apply.
#[derive(Debug)]
pub(crate) struct CleanPlan {
    pub pid: PartitionId,
    /// The partition's generation the pass read (see `PartitionState::generation`).
    pub generation: u64,
    /// The files to swap in.
    pub swap: CleanedSwap,
    /// For each swapped group, the offsets it covers: their locators are replaced.
    pub ranges: Vec<(i64, i64)>,
    /// The new locators of the swapped groups.
    pub locators: Vec<(i64, Locator)>,
    /// The new cleaner checkpoint.
    pub checkpoint: i64,
    pub stats: CleanStats,
}

/// A partition measured: how dirty, its index below the active segment, its files by name.
type Measured = (Cleanable, Vec<IndexedBatch>, BTreeMap<i64, Arc<SegmentFile>>);

/// One batch of the index, as a pass sees it.
#[derive(Debug, Clone, Copy)]
struct IndexedBatch {
    base: i64,
    loc: Locator,
}

impl IndexedBatch {
    fn last_offset(&self) -> i64 {
        self.base + i64::from(self.loc.last_offset_delta)
    }
}

/// A 128-bit digest of a key: a collision would drop a live record, so 64 bits are not enough
/// for maps of millions of keys (Kafka uses MD5's 128 bits).
fn digest(key: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    a.write_u8(0);
    a.write(key);
    let mut b = DefaultHasher::new();
    b.write_u8(1);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Kafka's `CleanedTransactionMetadata`: which batches belong to aborted transactions, and
/// whether a transaction marker still guards records of its transaction.
#[derive(Default)]
struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    aborted: VecDeque<AbortedTxn>,
    /// Aborted transactions under way, by producer: the offset of their abort marker, and
    /// whether a batch of theirs was seen.
    ongoing_aborted: HashMap<i64, (i64, bool)>,
    /// Producers with a committed transaction under way whose batches were seen.
    ongoing_committed: HashSet<i64>,
}

impl TxnTracker {
    /// `aborted`: the partition's aborted transactions; those ending before `from`, where the
    /// pass starts, are left out (Kafka's `collectAbortedTransactions(from, ...)`).
    fn new(mut aborted: Vec<AbortedTxn>, from: i64) -> TxnTracker {
        aborted.retain(|a| a.last_offset >= from);
        aborted.sort_by_key(|a| a.first_offset);
        TxnTracker {
            aborted: aborted.into(),
            ..TxnTracker::default()
        }
    }

    fn reach(&mut self, offset: i64) {
        while self.aborted.front().is_some_and(|a| a.first_offset <= offset) {
            if let Some(a) = self.aborted.pop_front() {
                self.ongoing_aborted.insert(a.producer_id, (a.last_offset, false));
            }
        }
    }

    /// A data batch: whether it belongs to an aborted transaction.
    fn data_batch(&mut self, h: &BatchHeader) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        // A transaction whose abort marker an earlier pass removed ends at that offset all the
        // same: the producer's later transactions are not part of it.
        if self
            .ongoing_aborted
            .get(&h.producer_id)
            .is_some_and(|(marker, _)| *marker < h.base_offset)
        {
            self.ongoing_aborted.remove(&h.producer_id);
        }
        match self.ongoing_aborted.get_mut(&h.producer_id) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(h.producer_id);
                false
            }
        }
    }

    /// A control batch: whether the marker may go (no batch of its transaction seen in this
    /// pass).
    fn control_batch(&mut self, h: &BatchHeader, bytes: &[u8]) -> bool {
        self.reach(h.last_offset());
        match control_marker(bytes) {
            Some((false, _)) => !self
                .ongoing_aborted
                .remove(&h.producer_id)
                .is_some_and(|(_, seen)| seen),
            Some((true, _)) => !self.ongoing_committed.remove(&h.producer_id),
            None => true,
        }
    }
}

/// Keeps a pass to `log.cleaner.io.max.bytes.per.second`.
struct Throttle {
    rate: f64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: f64) -> Throttle {
        Throttle {
            rate,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        if !(self.rate.is_finite() && self.rate > 0.0) || self.rate >= f64::MAX / 2.0 {
            return;
        }
        let due = Duration::try_from_secs_f64(self.bytes as f64 / self.rate).unwrap_or(Duration::MAX);
        let spent = self.started.elapsed();
        if due > spent {
            // At most a second at a time: a pass keeps checking whether the store is closing.
            std::thread::sleep((due - spent).min(Duration::from_secs(1)));
        }
    }
}

/// What a pass does with one batch.
enum Outcome {
    /// Kept as it is.
    Keep,
    /// Kept, rebuilt (records removed, or a delete horizon set).
    Rebuilt(Bytes),
    /// Removed.
    Drop,
}

/// A pass over one partition, reading through the store's handles.
pub(crate) struct Pass<'a> {
    pub db: &'a rocksdb::DB,
    pub segments: &'a Segments,
    pub pid: PartitionId,
    pub cfg: CompactionConfig,
    pub now_ms: i64,
    pub log_start: i64,
    pub log_end: i64,
    pub last_stable: i64,
    pub generation: u64,
    pub aborted: Vec<AbortedTxn>,
    pub stop: &'a std::sync::atomic::AtomicBool,
}

fn read_batch(files: &BTreeMap<i64, Arc<SegmentFile>>, b: &IndexedBatch) -> Result<Bytes> {
    let f = files
        .get(&b.loc.segment)
        .ok_or_else(|| StorageError::Corruption(format!("segment {} of batch {} is gone", b.loc.segment, b.base)))?;
    let mut buf = vec![0u8; b.loc.len as usize];
    f.file()
        .read_exact_at(&mut buf, b.loc.position)
        .map_err(|e| StorageError::Io(format!("cannot read a segment: {e}")))?;
    Ok(Bytes::from(buf))
}

fn decode(bytes: Bytes) -> Result<DecodedBatch> {
    DecodedBatch::decode(bytes).map_err(|e| StorageError::Corruption(format!("batch in a compacted log: {e}")))
}

/// The cleaner checkpoint of a partition, if one was written.
fn checkpoint(db: &rocksdb::DB, pid: &PartitionId) -> Result<Option<i64>> {
    let v = db.get_cf(cf(db, CF_PARTITIONS)?, keys::cleaner_key(pid))?;
    Ok(v.and_then(|v| Some(i64::from_be_bytes(v.as_slice().try_into().ok()?))))
}

impl Pass<'_> {
    /// The batches of the index below `limit`, and the segment files, by name.
    fn index(&self, limit: i64) -> Result<Vec<IndexedBatch>> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(keys::offset_key(&self.pid, 0).to_vec());
        ro.set_iterate_upper_bound(keys::offset_key(&self.pid, limit).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf(self.db, CF_BATCHES)?, ro);
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let base = keys::offset_from_key(k).ok_or_else(|| StorageError::Corruption("batch key".into()))?;
            match Stored::parse(v)? {
                Stored::File(loc) => out.push(IndexedBatch { base, loc }),
                // A store from before segment files: not cleaned.
                Stored::Inline(..) => return Ok(Vec::new()),
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// How dirty the partition is, with its index and files for a pass.
    fn measure(&self) -> Result<Option<Measured>> {
        let files = self.segments.files_of(&self.pid);
        // The last file is the active segment (or one retention emptied): never cleaned.
        let Some((&active, _)) = files.iter().next_back() else {
            return Ok(None);
        };
        let index = self.index(active)?;
        if index.is_empty() {
            return Ok(None);
        }
        let first_dirty = match checkpoint(self.db, &self.pid)? {
            Some(c) if c >= self.log_start && c <= self.log_end => c,
            _ => self.log_start,
        };
        // Each segment's batches, for the lag rules.
        let mut by_segment: BTreeMap<i64, (i64, i64)> = BTreeMap::new(); // name -> (first max ts, largest ts)
        for b in &index {
            let e = by_segment
                .entry(b.loc.segment)
                .or_insert((b.loc.max_timestamp, i64::MIN));
            e.1 = e.1.max(b.loc.max_timestamp);
        }
        let mut uncleanable = self.last_stable.min(active);
        let lag_cutoff = self.now_ms.saturating_sub(self.cfg.min_compaction_lag_ms);
        let max_lag_cutoff = self.now_ms.saturating_sub(self.cfg.max_compaction_lag_ms);
        let mut earliest_dirty = i64::MAX;
        let names: Vec<i64> = files.keys().copied().collect();
        for (&name, &(first_ts, largest)) in &by_segment {
            let seg_end = names.iter().find(|n| **n > name).copied().unwrap_or(active);
            if seg_end <= first_dirty {
                continue; // clean
            }
            if self.cfg.min_compaction_lag_ms > 0 && largest > lag_cutoff {
                uncleanable = uncleanable.min(name);
            }
            if first_ts > 0 {
                earliest_dirty = earliest_dirty.min(first_ts);
            }
        }
        // Rounded down to the start of the segment holding it: only whole segments are cleaned.
        let end = names.iter().rfind(|n| **n <= uncleanable).unwrap_or(&names[0]);
        let end = *end;
        let mut c = Cleanable {
            first_dirty,
            end,
            clean_bytes: 0,
            dirty_bytes: 0,
            compaction_delay_ms: 0,
        };
        for b in &index {
            if b.base < first_dirty {
                c.clean_bytes += u64::from(b.loc.len);
            } else if b.base < end {
                c.dirty_bytes += u64::from(b.loc.len);
            }
        }
        if earliest_dirty != i64::MAX && earliest_dirty < max_lag_cutoff {
            c.compaction_delay_ms = max_lag_cutoff - earliest_dirty;
        }
        Ok(Some((c, index, files)))
    }

    /// How dirty the partition is.
    pub fn cleanable(&self) -> Result<Option<Cleanable>> {
        Ok(self.measure()?.map(|(c, ..)| c))
    }

    fn stopped(&self) -> Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StorageError::Offline("the store is shutting down".into()));
        }
        Ok(())
    }

    /// Runs a pass: `None` when there is nothing to clean.
    pub fn run(&self, limits: &CleanerLimits, producers: &HashMap<i64, ProducerEntry>) -> Result<Option<CleanPlan>> {
        let Some((c, index, files)) = self.measure()? else {
            return Ok(None);
        };
        if c.end <= index.first().map_or(i64::MAX, |b| b.base) {
            return Ok(None);
        }
        // The cleaned copy sits next to what it replaces until the swap: it must fit above
        // the disk's reserve.
        let need = c.clean_bytes.saturating_add(c.dirty_bytes);
        let room = self.segments.space().room();
        if need > room {
            return Err(StorageError::NoSpace(format!(
                "cleaning needs up to {need} bytes, {room} are free above the reserve"
            )));
        }
        let mut throttle = Throttle::new(limits.io_bytes_per_second);
        let mut stats = CleanStats::default();
        let names: Vec<i64> = files.keys().copied().collect();
        let segment_end = |name: i64| names.iter().find(|n| **n > name).copied().unwrap_or(i64::MAX);

        // The offset map over the dirty part, whole segments at a time.
        let mut map: HashMap<u128, i64> = HashMap::new();
        let mut end = c.end;
        let mut txns = TxnTracker::new(self.aborted.clone(), c.first_dirty);
        let mut current_segment = None;
        for b in index.iter().filter(|b| b.base >= c.first_dirty && b.base < c.end) {
            self.stopped()?;
            if current_segment != Some(b.loc.segment) {
                // A new segment: stop before it if the map is full (the first one always goes in).
                if current_segment.is_some() && map.len() >= limits.map_keys {
                    end = b.loc.segment.max(b.base);
                    break;
                }
                current_segment = Some(b.loc.segment);
            }
            let bytes = read_batch(&files, b)?;
            stats.bytes_read += bytes.len() as u64;
            throttle.account(bytes.len());
            let header = BatchHeader::parse(&bytes).map_err(|e| StorageError::Corruption(e.to_string()))?;
            if header.is_control() {
                txns.control_batch(&header, &bytes);
                continue;
            }
            if txns.data_batch(&header) {
                continue;
            }
            let batch = decode(bytes)?;
            for r in batch.records() {
                if let Some(k) = r.key {
                    map.insert(digest(k), b.base + i64::from(r.offset_delta));
                }
            }
        }
        let latest = end - 1;

        // Producers' last data batches: kept, if only as an empty header.
        let last_of_producer: HashSet<i64> = producers
            .values()
            .filter_map(|e| {
                let m = e.batches.back()?;
                Some(m.base_offset + i64::from(m.last_seq.wrapping_sub(m.first_seq)))
            })
            .collect();

        // The recopy: every segment before `end`, in groups of about segment.bytes.
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut group_bytes = 0u64;
        for (&name, f) in files.range(..end) {
            if segment_end(name) > end {
                break;
            }
            let len = f.len();
            match groups.last_mut() {
                Some(g) if group_bytes + len <= self.cfg.segment_bytes => {
                    g.push(name);
                    group_bytes += len;
                }
                _ => {
                    groups.push(vec![name]);
                    group_bytes = len;
                }
            }
        }
        let mut txns = TxnTracker::new(self.aborted.clone(), 0);
        let mut plan = CleanPlan {
            pid: self.pid,
            generation: self.generation,
            swap: CleanedSwap { groups: Vec::new() },
            ranges: Vec::new(),
            locators: Vec::new(),
            checkpoint: end,
            stats,
        };
        let mut batches = index.iter().filter(|b| b.base < end).peekable();
        for g in groups {
            let name = g[0];
            let g_end = segment_end(*g.last().expect("groups are not empty"));
            let tmp = self.segments.cleaned_path(&self.pid, name);
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| output_error("cannot create", &tmp, e))?;
            let mut out = std::io::BufWriter::with_capacity(256 << 10, out);
            let mut position = 0u64;
            let mut changed = false;
            let mut locators = Vec::new();
            let mut old_bytes = 0u64;
            while let Some(b) = batches.next_if(|b| b.base < g_end) {
                self.stopped()?;
                let bytes = read_batch(&files, b)?;
                plan.stats.bytes_read += bytes.len() as u64;
                old_bytes += bytes.len() as u64;
                let read = bytes.len();
                let outcome = self.clean_batch(
                    b,
                    bytes.clone(),
                    latest,
                    end,
                    &map,
                    &mut txns,
                    &last_of_producer,
                    &mut plan.stats,
                )?;
                let written = match outcome {
                    Outcome::Keep => bytes,
                    Outcome::Rebuilt(new) => {
                        changed = true;
                        new
                    }
                    Outcome::Drop => {
                        changed = true;
                        throttle.account(read);
                        continue;
                    }
                };
                throttle.account(read + written.len());
                out.write_all(&written)
                    .map_err(|e| output_error("cannot write", &tmp, e))?;
                let header = BatchHeader::parse(&written).map_err(|e| StorageError::Corruption(e.to_string()))?;
                locators.push((
                    b.base,
                    Locator {
                        segment: name,
                        position,
                        len: written.len() as u32,
                        last_offset_delta: b.loc.last_offset_delta,
                        max_timestamp: header.max_timestamp,
                        leader_epoch: b.loc.leader_epoch,
                    },
                ));
                position += written.len() as u64;
            }
            if !changed && g.len() == 1 {
                drop(out);
                let _ = std::fs::remove_file(&tmp);
                continue;
            }
            let file = out
                .into_inner()
                .map_err(|e| output_error("cannot write", &tmp, e.into_error()))?;
            file.sync_data().map_err(|e| output_error("cannot sync", &tmp, e))?;
            plan.stats.bytes_written += position;
            plan.stats.bytes_freed += old_bytes.saturating_sub(position);
            plan.stats.segments_replaced += g.len() as u64;
            plan.ranges.push((name, g_end));
            plan.locators.extend(locators);
            plan.swap.groups.push(CleanedGroup {
                name,
                inputs: g,
                len: position,
            });
        }
        plan.stats.cleaned_to = end;
        if !plan.swap.groups.is_empty() {
            // The cleaned files' directory entries are on disk before the index names them.
            self.segments.sync_partition_dir(&self.pid)?;
        }
        Ok(Some(plan))
    }

    /// Kafka's `filterTo` with the cleaner's `RecordFilter` for one batch.
    #[allow(clippy::too_many_arguments)]
    fn clean_batch(
        &self,
        b: &IndexedBatch,
        bytes: Bytes,
        latest: i64,
        end: i64,
        map: &HashMap<u128, i64>,
        txns: &mut TxnTracker,
        last_of_producer: &HashSet<i64>,
        stats: &mut CleanStats,
    ) -> Result<Outcome> {
        let header = BatchHeader::parse(&bytes).map_err(|e| StorageError::Corruption(e.to_string()))?;
        let horizon_passed = |h: Option<i64>| h.is_some_and(|h| h <= self.now_ms);
        let new_horizon = self.now_ms.saturating_add(self.cfg.delete_retention_ms);
        // What is kept of a batch that keeps no record (Kafka's `checkBatchRetention`).
        let empty = |header: &BatchHeader| {
            let keep_empty =
                (header.producer_id >= 0 && last_of_producer.contains(&b.last_offset())) || b.last_offset() + 1 == end;
            if keep_empty {
                Outcome::Rebuilt(empty_batch(header))
            } else {
                Outcome::Drop
            }
        };
        if header.is_control() {
            let may_go = txns.control_batch(&header, &bytes);
            if !may_go || header.record_count == 0 {
                return Ok(Outcome::Keep);
            }
            let batch = decode(bytes)?;
            let horizon = batch.delete_horizon();
            if horizon_passed(horizon) {
                stats.records_removed += header.record_count as u64;
                return Ok(empty(&header));
            }
            if horizon.is_none() {
                let recs = batch.records();
                return rebuilt(&batch, &recs, Some(new_horizon));
            }
            return Ok(Outcome::Keep);
        }
        if txns.data_batch(&header) {
            stats.records_removed += header.record_count.max(0) as u64;
            return Ok(empty(&header));
        }
        if header.record_count == 0 {
            return Ok(Outcome::Keep); // an empty batch kept by an earlier pass
        }
        let batch = decode(bytes)?;
        let horizon = batch.delete_horizon();
        let retain_deletes = !horizon_passed(horizon);
        let records = batch.records();
        let kept: Vec<CleanRecord<'_>> = records
            .iter()
            .filter(|r| {
                let offset = b.base + i64::from(r.offset_delta);
                if offset > latest {
                    return true;
                }
                match r.key {
                    // A keyless record cannot be in a compacted log; Kafka's cleaner drops it.
                    None => false,
                    Some(k) => offset >= map.get(&digest(k)).copied().unwrap_or(-1) && (!r.tombstone || retain_deletes),
                }
            })
            .copied()
            .collect();
        stats.records_removed += (records.len() - kept.len()) as u64;
        if kept.is_empty() {
            return Ok(empty(&header));
        }
        let set_horizon = horizon.is_none() && kept.iter().any(|r| r.tombstone);
        if kept.len() == records.len() && !set_horizon {
            return Ok(Outcome::Keep);
        }
        rebuilt(&batch, &kept, if set_horizon { Some(new_horizon) } else { horizon })
    }
}

fn rebuilt(batch: &DecodedBatch, keep: &[CleanRecord<'_>], horizon: Option<i64>) -> Result<Outcome> {
    batch
        .rebuild(keep, horizon)
        .map(Outcome::Rebuilt)
        .map_err(|e| StorageError::Corruption(format!("cannot rebuild a batch: {e}")))
}

/// A failed write of a cleaned file: out of space is a pass to try again later, not an
/// uncleanable partition.
fn output_error(what: &str, path: &std::path::Path, e: std::io::Error) -> StorageError {
    let message = format!("{what} {}: {e}", path.display());
    if crate::space::is_out_of_space(&e) {
        StorageError::NoSpace(message)
    } else {
        StorageError::Io(message)
    }
}
