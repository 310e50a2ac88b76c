//! Start-up: the in-memory state of every partition, rebuilt from the RocksDB rows and the
//! segment files, which are made to agree with the index first.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::segments::Locator;

/// Everything `recover` rebuilds.
pub(super) struct Recovered {
    pub partitions: HashMap<PartitionId, Arc<Mutex<PartitionState>>>,
    /// Each partition's active segment: base offset and length.
    pub active: HashMap<PartitionId, (i64, u64)>,
    pub producers: ProducerMap,
    pub aborted: HashMap<PartitionId, Vec<AbortedTxn>>,
    /// The recovery checkpoint recovery started from.
    pub checkpoint: HashMap<(PartitionId, i64), u64>,
}

/// Puts in place the cleaned segments of swaps the index committed before a crash cut their
/// renames short, and removes what cleanings that never committed left behind.
fn finish_swaps(db: &DB, segments: &Segments) -> Result<()> {
    let parts = cf(db, CF_PARTITIONS)?;
    for item in db.iterator_cf(parts, IteratorMode::Start) {
        let (k, v) = item?;
        if k.len() != PID_BYTES + 9 || k[PID_BYTES] != b's' {
            continue;
        }
        let pid = keys::pid_from_prefix(&k).ok_or_else(|| corrupt("partition key"))?;
        let swap: crate::segments::CleanedSwap = serde_json::from_slice(&v).map_err(|_| corrupt("cleaned swap"))?;
        segments.install_cleaned(&pid, &swap)?;
        tracing::info!(topic_id = %hex(&pid.topic_id), partition = pid.partition, "finished swapping in cleaned segments");
        db.delete_cf(parts, &k)?;
    }
    for (_, dir) in segments.on_disk()? {
        segments.remove_stale_cleaned(&dir);
    }
    Ok(())
}

/// Rebuilds the in-memory state of every partition from the `partitions` rows (partition
/// records, producer state, aborted transactions) and the last batch of each log.
pub(super) fn recover(db: &DB, segments: &Segments) -> Result<Recovered> {
    finish_swaps(db, segments)?;
    let checkpoint = segments.read_checkpoint();
    let mut out = HashMap::new();
    let mut active = HashMap::new();
    let mut producers: ProducerMap = HashMap::new();
    let mut aborted: HashMap<PartitionId, Vec<AbortedTxn>> = HashMap::new();
    let parts = cf(db, CF_PARTITIONS)?;
    for item in db.iterator_cf(parts, IteratorMode::Start) {
        let (k, v) = item?;
        if k.len() == PID_BYTES + 9 {
            let pid = keys::pid_from_prefix(&k).ok_or_else(|| corrupt("partition key"))?;
            let n = i64::from_be_bytes(k[PID_BYTES + 1..].try_into().map_err(|_| corrupt("producer key"))?);
            match k[PID_BYTES] {
                b'p' => {
                    let e: ProducerEntry = serde_json::from_slice(&v).map_err(|_| corrupt("producer state"))?;
                    producers.entry(pid).or_default().insert(n, e);
                }
                b'a' => {
                    let a: AbortedTxn = serde_json::from_slice(&v).map_err(|_| corrupt("aborted transaction"))?;
                    aborted.entry(pid).or_default().push(a);
                }
                _ => {}
            }
            continue;
        }
        if k.len() != PID_BYTES {
            continue; // epoch rows
        }
        let pid = keys::pid_from_prefix(&k).ok_or_else(|| corrupt("partition key"))?;
        let mut rec = keys::PartitionRecord::decode(&v).ok_or_else(|| corrupt("partition record"))?;
        let files = segments.files_on_disk(&pid)?;
        if let Some((offset, reason)) = first_damaged(db, segments, &pid, &files, &checkpoint)? {
            let (batches, bytes) = cut_log(db, &pid, offset)?;
            rec.size_bytes = rec.size_bytes.saturating_sub(bytes);
            db.put_cf(parts, keys::pid_prefix(&pid), rec.encode())?;
            tracing::warn!(
                topic_id = %hex(&pid.topic_id),
                partition = pid.partition,
                offset,
                batches,
                bytes,
                reason = %reason,
                "recovery cut the log at a damaged batch: the records from this offset on are gone"
            );
            metrics::counter!("fjord_recovery_truncated_batches_total").increment(batches);
            metrics::counter!("fjord_recovery_truncated_bytes_total").increment(bytes);
        }
        let last = recover_segments(db, segments, &pid)?;
        if let Some((_, _, Some(seg))) = last {
            active.insert(pid, seg);
        }
        let (log_end, latest_epoch) = last
            .map(|(last_offset, epoch, _)| (last_offset + 1, epoch))
            .unwrap_or((rec.log_start_offset, -1));
        let max_timestamp = last_indexed_timestamp(db, &pid)?.unwrap_or(-1);
        let log_start = rec.log_start_offset.min(log_end);
        let offsets = PartitionOffsets {
            log_start,
            log_end,
            high_watermark: log_end,
            last_stable: log_end,
        };
        out.insert(
            pid,
            PartitionState {
                offsets,
                max_timestamp,
                latest_epoch,
                size_bytes: rec.size_bytes,
                first_unstable: None,
                replicated: false,
                generation: 0,
            },
        );
    }
    for (pid, state) in out.iter_mut() {
        state.first_unstable = producers
            .get(pid)
            .and_then(|m| m.values().filter_map(|e| e.txn_first_offset).min());
        let hw = state.offsets.high_watermark;
        state.set_high_watermark(hw);
    }
    // Rows of partitions that no longer exist (a topic deleted mid-write) are ignored, and
    // their segments (a crash between the delete and the removal of the files) removed.
    producers.retain(|pid, _| out.contains_key(pid));
    aborted.retain(|pid, _| out.contains_key(pid));
    for (pid, dir) in segments.on_disk()? {
        if !out.contains_key(&pid) {
            segments.remove_dir(&dir);
        }
    }
    Ok(Recovered {
        active,
        partitions: out.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))).collect(),
        producers,
        aborted,
        checkpoint,
    })
}

/// A recovered log's end: last offset, its leader epoch, and the active segment (base, length).
type RecoveredEnd = (i64, i32, Option<(i64, u64)>);

/// Recovery of one partition's log: makes its segment files and its index agree, and returns
/// the last batch's last offset and leader epoch, with the active segment (base, length) when
/// the batch is in one. A locator whose bytes are not all in the file (unsynced writes lost to
/// a power failure) is dropped, as is every later one; bytes after the last locator were
/// never acknowledged and are cut off.
fn recover_segments(db: &DB, segments: &Segments, pid: &PartitionId) -> Result<Option<RecoveredEnd>> {
    let cf = cf(db, CF_BATCHES)?;
    let files = segments.files_on_disk(pid)?;
    loop {
        let upper = keys::offset_key(pid, i64::MAX);
        let mut it = db.iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
        let (k, v) = match it.next() {
            Some(Ok((k, v))) if k.starts_with(&keys::pid_prefix(pid)) => (k, v),
            Some(Err(e)) => return Err(e.into()),
            _ => {
                segments.restore(pid, &files, None)?;
                return Ok(None);
            }
        };
        let base = keys::offset_from_key(&k).ok_or_else(|| corrupt("batch key"))?;
        match Stored::parse(&v)? {
            Stored::Inline(_, h) => {
                // A store from before segment files: its batches stay where they are.
                let seg = segments.restore(pid, &files, files.last_key_value().map(|(b, len)| (*b, *len)))?;
                return Ok(Some((h.last_offset(), h.partition_leader_epoch, seg)));
            }
            Stored::File(l) => {
                if files.get(&l.segment).is_some_and(|len| *len >= l.end()) {
                    let seg = segments.restore(pid, &files, Some((l.segment, l.end())))?;
                    return Ok(Some((base + i64::from(l.last_offset_delta), l.leader_epoch, seg)));
                }
                tracing::warn!(
                    partition = pid.partition,
                    offset = base,
                    "a batch's bytes are missing from its segment (not synced before a crash); the log ends before it"
                );
                drop(it);
                db.delete_cf(cf, &k)?;
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The first batch of a partition's log that recovery cannot trust, with why: a locator whose
/// segment file is missing or too short, or, past the point the checkpoint says was synced,
/// a batch whose header or CRC does not check out (Kafka's recovery of the segments after
/// its recovery point). Of a segment the checkpoint covers whole only the last batch is read,
/// and the index checked to end in it: a file rewritten or replaced since is read whole.
fn first_damaged(
    db: &DB,
    segments: &Segments,
    pid: &PartitionId,
    files: &BTreeMap<i64, u64>,
    checkpoint: &HashMap<(PartitionId, i64), u64>,
) -> Result<Option<(i64, String)>> {
    let cf = cf(db, CF_BATCHES)?;
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(keys::offset_key(pid, 0).to_vec());
    ro.set_iterate_upper_bound(keys::offset_key(pid, i64::MAX).to_vec());
    // A scan at start, of blocks reads may never want: keep it out of the block cache.
    ro.fill_cache(false);
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    it.seek_to_first();
    let current = |it: &rocksdb::DBRawIteratorWithThreadMode<'_, DB>| -> Result<Option<(i64, Locator)>> {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            return Ok(None);
        };
        let base = keys::offset_from_key(k).ok_or_else(|| corrupt("batch key"))?;
        Ok(match Stored::parse(v)? {
            Stored::File(l) => Some((base, l)),
            // A store from before segment files keeps its batches in RocksDB, checksummed there.
            Stored::Inline(..) => None,
        })
    };
    let mut check = BatchCheck::default();
    while it.valid() {
        let Some((base, loc)) = current(&it)? else {
            return Ok(None);
        };
        let Some(&file_len) = files.get(&loc.segment) else {
            return Ok(Some((base, format!("segment file {} is missing", loc.segment))));
        };
        let path = segments.segment_file_path(pid, loc.segment);
        // A file shorter than what was synced of it lost synced bytes: nothing of it is trusted.
        let mut synced = checkpoint
            .get(&(*pid, loc.segment))
            .copied()
            .filter(|s| *s <= file_len)
            .unwrap_or(0);
        let next_file = files.range(loc.segment + 1..).next().map(|(b, _)| *b);
        if synced == file_len && synced > 0 {
            // Synced whole: the last batch indexed before the next file must be in this one
            // (else a file between them is missing) and check out; then on to the next file.
            match next_file {
                Some(next) => it.seek(keys::offset_key(pid, next)),
                None => it.seek_to_last(),
            }
            if it.valid() && next_file.is_some() {
                it.prev();
            }
            it.status()?;
            let last = current(&it)?;
            if let Some((_, l)) = last {
                if l.segment != loc.segment {
                    return Ok(Some((
                        l.segment.max(base),
                        format!("segment file {} is missing", l.segment),
                    )));
                }
            }
            let last_ok = match last {
                Some((b, l)) => check.batch(&path, b, &l, file_len).is_none(),
                None => true,
            };
            if last_ok {
                match next_file {
                    Some(next) => it.seek(keys::offset_key(pid, next)),
                    None => return Ok(None),
                }
                continue;
            }
            // Its last batch does not check out: the file is not what was synced. Read it all.
            synced = 0;
            it.seek(keys::offset_key(pid, base));
        }
        if synced > 0 {
            // Synced in part: the last batch below the synced point must check out too, or
            // the file was cut and written again since, and none of it is trusted.
            let mut boundary = None;
            while let Some((b, l)) = current(&it)? {
                if l.segment != loc.segment || l.end() > synced {
                    break;
                }
                boundary = Some((b, l));
                it.next();
            }
            it.status()?;
            if boundary.is_some_and(|(b, l)| check.batch(&path, b, &l, file_len).is_some()) {
                synced = 0;
            }
            it.seek(keys::offset_key(pid, base));
        }
        // Every batch past the synced point is read and checked.
        while it.valid() {
            let Some((b, l)) = current(&it)? else {
                return Ok(None);
            };
            if l.segment != loc.segment {
                break;
            }
            if l.end() > synced {
                if let Some(reason) = check.batch(&path, b, &l, file_len) {
                    return Ok(Some((b, reason)));
                }
            }
            it.next();
        }
        it.status()?;
    }
    it.status()?;
    Ok(None)
}

/// Reads batches back from their segment files and checks them, reusing one buffer.
#[derive(Default)]
struct BatchCheck {
    buf: Vec<u8>,
    open: Option<(PathBuf, std::io::Result<std::fs::File>)>,
}

impl BatchCheck {
    /// Why the batch indexed at `base` by `l` cannot be trusted, or `None` when it checks out.
    fn batch(&mut self, path: &Path, base: i64, l: &Locator, file_len: u64) -> Option<String> {
        if l.end() > file_len {
            return Some(format!("segment {} ends before its batch at {base}", l.segment));
        }
        if self.open.as_ref().is_none_or(|(p, _)| p != path) {
            self.open = Some((path.to_path_buf(), std::fs::File::open(path)));
        }
        let f = match self.open.as_ref().map(|(_, f)| f) {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Some(format!("cannot open {}: {e}", path.display())),
            None => return Some(format!("cannot open {}", path.display())),
        };
        self.buf.resize(l.len as usize, 0);
        if let Err(e) = std::os::unix::fs::FileExt::read_exact_at(f, &mut self.buf, l.position) {
            return Some(format!("cannot read segment {}: {e}", l.segment));
        }
        match fjord_protocol::batch::check_stored(&self.buf) {
            Ok(h) if h.base_offset == base && h.last_offset_delta == l.last_offset_delta => None,
            Ok(h) => Some(format!(
                "batch header says offsets {}..={}, the index {base}..={}",
                h.base_offset,
                h.last_offset(),
                base + i64::from(l.last_offset_delta)
            )),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// Drops a partition's batches from `offset` on, with their time index entries and the
/// leader epochs that start there. Returns the batches and bytes dropped.
fn cut_log(db: &DB, pid: &PartitionId, offset: i64) -> Result<(u64, u64)> {
    let batches_cf = cf(db, CF_BATCHES)?;
    let mut batches = 0u64;
    let mut bytes = 0u64;
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(keys::offset_key(pid, offset).to_vec());
    ro.set_iterate_upper_bound(keys::offset_key(pid, i64::MAX).to_vec());
    let mut it = db.raw_iterator_cf_opt(batches_cf, ro);
    it.seek_to_first();
    while let Some(v) = it.value() {
        batches += 1;
        bytes += Stored::parse(v)?.len() as u64;
        it.next();
    }
    it.status()?;
    drop(it);
    let mut wb = rocksdb::WriteBatch::default();
    wb.delete_range_cf(
        batches_cf,
        keys::offset_key(pid, offset),
        keys::offset_key(pid, i64::MAX),
    );
    // Time index entries rise with their offsets: the ones to drop are the newest.
    let time_cf = cf(db, CF_TIME_INDEX)?;
    let upper = keys::time_key(pid, i64::MAX);
    for item in db.iterator_cf(time_cf, IteratorMode::From(&upper, Direction::Reverse)) {
        let (k, v) = item?;
        if !k.starts_with(&keys::pid_prefix(pid)) || decode_time_value(&v)?.0 < offset {
            break;
        }
        wb.delete_cf(time_cf, &k);
    }
    let parts_cf = cf(db, CF_PARTITIONS)?;
    let lower = keys::epoch_key(pid, 0);
    for item in db.iterator_cf(parts_cf, IteratorMode::From(&lower, Direction::Forward)) {
        let (k, v) = item?;
        if k.len() != lower.len() || !k.starts_with(&lower[..PID_BYTES + 1]) {
            break;
        }
        let start = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(i64::MAX);
        if start >= offset {
            wb.delete_cf(parts_cf, &k);
        }
    }
    db.write(wb)?;
    Ok((batches, bytes))
}

fn last_indexed_timestamp(db: &DB, pid: &PartitionId) -> Result<Option<i64>> {
    let cf = cf(db, CF_TIME_INDEX)?;
    let upper = keys::time_key(pid, i64::MAX);
    let mut it = db.iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
    match it.next() {
        Some(Ok((k, _))) if k.starts_with(&keys::pid_prefix(pid)) => Ok(keys::timestamp_from_key(&k)),
        Some(Err(e)) => Err(e.into()),
        _ => Ok(None),
    }
}
