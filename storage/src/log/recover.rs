//! Start-up: the in-memory state of every partition, rebuilt from the RocksDB rows and the
//! segment files, which are made to agree with the index first.

use super::*;

/// Everything `recover` rebuilds.
pub(super) struct Recovered {
    pub partitions: HashMap<PartitionId, Arc<Mutex<PartitionState>>>,
    /// Each partition's active segment: base offset and length.
    pub active: HashMap<PartitionId, (i64, u64)>,
    pub producers: ProducerMap,
    pub aborted: HashMap<PartitionId, Vec<AbortedTxn>>,
}

/// Rebuilds the in-memory state of every partition from the `partitions` rows (partition
/// records, producer state, aborted transactions) and the last batch of each log.
pub(super) fn recover(db: &DB, segments: &Segments) -> Result<Recovered> {
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
        let rec = keys::PartitionRecord::decode(&v).ok_or_else(|| corrupt("partition record"))?;
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
