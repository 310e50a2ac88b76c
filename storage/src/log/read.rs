//! The read path: planning a read from the index (or the tail), and copying it into memory
//! where a caller needs bytes rather than file regions.

use std::os::unix::fs::FileExt;

use fjord_protocol::batch::find_record;

use super::*;

/// Batches of a read still in their segment files, for a Fetch response to send from there
/// (`sendfile`) instead of reading them into memory first. Holding it keeps the segments open:
/// retention deleting one meanwhile does not take the bytes away.
#[derive(Debug, Clone, Default)]
pub struct FileRecords {
    /// Total bytes: whole batches, as stored.
    pub len: usize,
    /// The bytes, in log order.
    pub chunks: Vec<RecordChunk>,
}

impl FileRecords {
    /// Appends `len` bytes at `position` of a segment to the last region when they follow it
    /// in the same segment (one `sendfile` or `pread` for both); `false` when they do not.
    pub(crate) fn extend_region(&mut self, segment: i64, position: u64, len: usize) -> bool {
        match self.chunks.last_mut() {
            Some(RecordChunk::File {
                file,
                position: p,
                len: l,
            }) if file.base() == segment && *p + *l as u64 == position => {
                *l += len;
                self.len += len;
                true
            }
            _ => false,
        }
    }

    /// Appends a region of its own.
    pub(crate) fn push_region(&mut self, file: SegmentHandle, position: u64, len: usize) {
        self.chunks.push(RecordChunk::File { file, position, len });
        self.len += len;
    }
}

/// Part of a [`FileRecords`].
#[derive(Debug, Clone)]
pub enum RecordChunk {
    /// Bytes already in memory (small reads, batches of an older store kept inline).
    Mem(Bytes),
    /// `len` bytes of a segment file at `position`.
    File {
        /// The open segment.
        file: SegmentHandle,
        /// Where the bytes start.
        position: u64,
        /// How many.
        len: usize,
    },
}

/// An open segment file, shared with the store.
#[derive(Debug, Clone)]
pub struct SegmentHandle(Arc<crate::segments::SegmentFile>);

impl SegmentHandle {
    pub(crate) fn new(file: Arc<crate::segments::SegmentFile>) -> SegmentHandle {
        SegmentHandle(file)
    }

    /// Base offset of the segment (its name).
    pub(crate) fn base(&self) -> i64 {
        self.0.base()
    }

    /// The file, to read or `sendfile` from.
    pub fn file(&self) -> &std::fs::File {
        self.0.file()
    }
}

/// Reads smaller than this are copied into memory at once rather than left in the file: a
/// separate `sendfile` costs more than a copy of a few KiB.
const FILE_RECORDS_MIN_BYTES: usize = fjord_protocol::frame::SPLICE_MIN_BYTES;

/// Whether a read is small enough to be copied into memory ([`small_in_memory`]) rather than
/// sent from its file.
pub(super) fn is_small(plan: &FileRecords) -> bool {
    plan.len > 0 && plan.len < FILE_RECORDS_MIN_BYTES
}

/// A raw iterator over one partition's batches, positioned on the batch holding `offset`.
pub(super) fn batch_iter<'a>(
    db: &'a DB,
    pid: &PartitionId,
    offset: i64,
    tier: ReadTier,
) -> Result<rocksdb::DBRawIterator<'a>> {
    let cf = cf(db, CF_BATCHES)?;
    let mut ro = ReadOptions::default();
    ro.set_read_tier(tier);
    ro.set_iterate_lower_bound(keys::offset_key(pid, 0).to_vec());
    ro.set_iterate_upper_bound(keys::offset_key(pid, i64::MAX).to_vec());
    let mut it = db.raw_iterator_cf_opt(cf, ro);
    // The batch holding `offset` starts at or before it; if `offset` precedes every batch
    // (after DeleteRecords cut into a batch), start at the first one.
    it.seek_for_prev(keys::offset_key(pid, offset));
    if !it.valid() {
        it.status()?;
        it.seek_to_first();
    }
    Ok(it)
}

/// A read smaller than [`FILE_RECORDS_MIN_BYTES`], copied into memory; larger ones stay as
/// they are.
pub(super) fn small_in_memory(bufs: &Arc<BufPool>, plan: FileRecords) -> Result<FileRecords> {
    if !is_small(&plan) {
        return Ok(plan);
    }
    let bytes = fill(bufs, &plan)?;
    Ok(FileRecords {
        len: bytes.len(),
        chunks: vec![RecordChunk::Mem(bytes)],
    })
}

/// Copies planned batches into one pooled buffer, reading each file region with one `pread`.
pub(super) fn fill(bufs: &Arc<BufPool>, plan: &FileRecords) -> Result<Bytes> {
    if let [RecordChunk::Mem(b)] = plan.chunks.as_slice() {
        return Ok(b.clone());
    }
    let mut buf = bufs.take(plan.len);
    let out = buf.as_mut();
    let mut at = 0;
    for c in &plan.chunks {
        match c {
            RecordChunk::File { file, position, len } => {
                file.file()
                    .read_exact_at(&mut out[at..at + len], *position)
                    .map_err(|e| StorageError::Io(format!("cannot read a segment: {e}")))?;
                at += len;
            }
            RecordChunk::Mem(b) => {
                out[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
        }
    }
    buf.truncate(at);
    Ok(buf.freeze())
}

/// What a read asks for: batches from `offset` below `upper` (the high watermark or the last
/// stable offset), within `max_bytes` unless `at_least_one` (KIP-74: the first batch even if
/// larger).
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadSpan {
    pub offset: i64,
    pub upper: i64,
    pub max_bytes: usize,
    pub at_least_one: bool,
}

/// Finds the whole batches from `offset` up to the high watermark within `max_bytes`, as runs
/// of adjacent batches in their segment files. A segment that retention deleted since the
/// index was read ends the read early: what is returned is still whole batches.
pub(super) fn plan_batches(
    db: &DB,
    segments: &Segments,
    pid: &PartitionId,
    span: ReadSpan,
    tier: ReadTier,
) -> Result<FileRecords> {
    let ReadSpan {
        offset,
        upper: high_watermark,
        max_bytes,
        at_least_one,
    } = span;
    // Held until every locator read is resolved to its file (see `Segments::read_guard`).
    let _resolving = segments.read_guard();
    let mut it = batch_iter(db, pid, offset, tier)?;
    let mut plan = FileRecords::default();
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        let base = keys::offset_from_key(k).ok_or_else(|| corrupt("batch key"))?;
        if base >= high_watermark {
            break;
        }
        let stored = Stored::parse(v)?;
        if stored.last_offset(base) < offset {
            it.next();
            continue; // the seek landed on the batch before the one we want
        }
        let n = stored.len();
        if plan.len + n > max_bytes && !(plan.len == 0 && at_least_one) {
            break;
        }
        match stored {
            Stored::File(l) => {
                if !plan.extend_region(l.segment, l.position, n) {
                    let Some(file) = segments.file(pid, l.segment) else {
                        break;
                    };
                    plan.push_region(SegmentHandle(file), l.position, n);
                }
            }
            Stored::Inline(bytes, _) => {
                plan.chunks.push(RecordChunk::Mem(Bytes::copy_from_slice(bytes)));
                plan.len += n;
            }
        }
        it.next();
    }
    it.status()?;
    Ok(plan)
}

/// One stored batch's bytes.
fn read_one(segments: &Segments, bufs: &Arc<BufPool>, pid: &PartitionId, v: &[u8]) -> Result<Bytes> {
    match Stored::parse(v)? {
        Stored::File(l) => {
            let Some(file) = segments.file(pid, l.segment) else {
                return Ok(Bytes::new()); // its segment went with retention meanwhile
            };
            let mut plan = FileRecords::default();
            plan.push_region(SegmentHandle(file), l.position, l.len as usize);
            fill(bufs, &plan)
        }
        Stored::Inline(bytes, _) => Ok(Bytes::copy_from_slice(bytes)),
    }
}

pub(super) fn find_by_timestamp(
    db: &DB,
    segments: &Segments,
    bufs: &Arc<BufPool>,
    pid: &PartitionId,
    timestamp: i64,
    offsets: PartitionOffsets,
) -> Result<Option<(i64, i64)>> {
    let index = cf(db, CF_TIME_INDEX)?;
    // Held while locators read from the index are resolved (see `Segments::read_guard`).
    let _resolving = segments.read_guard();
    let mut it = db.iterator_cf(
        index,
        IteratorMode::From(&keys::time_key(pid, timestamp), Direction::Forward),
    );
    let start = match it.next() {
        Some(Ok((k, v))) if k.starts_with(&keys::pid_prefix(pid)) => decode_time_value(&v)?.0,
        Some(Err(e)) => return Err(e.into()),
        _ => return Ok(None), // no batch reaches that timestamp
    };
    // Every batch before `start` is older than `timestamp`; the record is in `start`'s batch
    // unless DeleteRecords removed it, in which case it is the first later one that qualifies.
    let from = start.max(offsets.log_start);
    let mut batches = batch_iter(db, pid, from, ReadTier::All)?;
    while batches.valid() {
        let (Some(k), Some(v)) = (batches.key(), batches.value()) else {
            break;
        };
        let base = keys::offset_from_key(k).ok_or_else(|| corrupt("batch key"))?;
        if base >= offsets.high_watermark {
            break;
        }
        let batch = read_one(segments, bufs, pid, v)?;
        if batch.is_empty() {
            break;
        }
        let visible = |delta: i32| (offsets.log_start..offsets.high_watermark).contains(&(base + i64::from(delta)));
        let found = find_record(&batch, |s| visible(s.offset_delta) && s.timestamp >= timestamp)
            .map_err(|e| StorageError::Corruption(e.to_string()))?;
        if let Some(s) = found {
            return Ok(Some((base + i64::from(s.offset_delta), s.timestamp)));
        }
        batches.next();
    }
    batches.status()?;
    Ok(None)
}
