//! Record batches (magic v2) as Kafka's `LogValidator` sees them.
//!
//! The broker stores a batch exactly as the producer sent it. The only bytes it changes are
//! the base offset and partition leader epoch, which sit before the CRC-covered region, so
//! assigning offsets never touches the CRC ([`patch_base_offset_and_epoch`]). Batches are
//! re-encoded only when Kafka would re-encode them too: the topic's `compression.type`
//! names another codec, `LogAppendTime` is in force, or the header's max timestamp is wrong.
//!
//! Layout of a v2 batch header (byte offsets):
//! `baseOffset 0 | batchLength 8 | partitionLeaderEpoch 12 | magic 16 | crc 17 |
//!  attributes 21 | lastOffsetDelta 23 | baseTimestamp 27 | maxTimestamp 35 |
//!  producerId 43 | producerEpoch 51 | baseSequence 53 | recordCount 57 | records 61`

use std::io::BufRead;
use std::ops::ControlFlow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
pub use kafka_protocol::records::Compression;

use crate::error::BatchError;
pub use stream::{decompress, MAX_INFLATED_BYTES};
use stream::{FieldError, Fields};

pub mod compact;
mod stream;

/// Bytes of `baseOffset` + `batchLength`, in front of what `batchLength` counts.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Size of a v2 batch header, log overhead included; the records start here.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The only record format Kafka 4 accepts from producers.
pub const MAGIC_V2: i8 = 2;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
const CRC_COVERS_FROM: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
#[cfg(test)]
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

// The offset/epoch patch must stay outside the CRC-covered region.
const _: () = assert!(LEADER_EPOCH_AT + 4 <= MAGIC_AT && CRC_AT + 4 == CRC_COVERS_FROM);

/// How a record's timestamp is to be read (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept (Kafka's default).
    CreateTime,
    /// The broker stamps the batch with its clock at append.
    LogAppendTime,
}

/// The fixed-size header of a v2 batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped at append.
    pub partition_leader_epoch: i32,
    /// Format version (2).
    pub magic: i8,
    /// CRC32C of everything from the attributes on.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time under `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header at the start of `buf`. Checks only that the header fits.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Corrupt(format!(
                "record batch of {} bytes is shorter than the {BATCH_HEADER_BYTES}-byte header",
                buf.len()
            )));
        }
        let mut b = buf;
        Ok(BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        })
    }

    /// The codec of the records section, or an error for the ids Kafka does not define.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        codec_from_id(self.attributes & COMPRESSION_MASK)
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// True for a batch of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the broker stamped the batch with the append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Total size on the wire, log overhead included.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + usize::try_from(self.batch_length).unwrap_or(0)
    }
}

fn codec_from_id(id: i16) -> Result<Compression, BatchError> {
    Ok(match id {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(BatchError::Corrupt(format!("unknown compression codec id {other}"))),
    })
}

/// Kafka's name of a codec, as used by `compression.type`.
pub fn codec_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Parses a `compression.type` value; `Ok(None)` for `producer` (keep the producer's codec).
pub fn parse_codec_config(value: &str) -> Option<Option<Compression>> {
    Some(Some(match value {
        "producer" => return Some(None),
        "uncompressed" | "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    }))
}

/// Splits a buffer of concatenated batches at their length fields (no CRC check).
///
/// Used on bytes the broker itself wrote (the stored log) and to count batches in a
/// produce request. A trailing partial batch is an error.
pub fn split_batches(mut records: Bytes) -> Result<Vec<Bytes>, BatchError> {
    let mut out = Vec::new();
    while !records.is_empty() {
        if records.len() < LOG_OVERHEAD_BYTES {
            return Err(BatchError::Corrupt(format!(
                "{} trailing bytes after the last batch",
                records.len()
            )));
        }
        let len = i32::from_be_bytes([
            records[BATCH_LENGTH_AT],
            records[BATCH_LENGTH_AT + 1],
            records[BATCH_LENGTH_AT + 2],
            records[BATCH_LENGTH_AT + 3],
        ]);
        let len = usize::try_from(len).map_err(|_| BatchError::Corrupt(format!("negative batch length {len}")))?;
        if len < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES {
            return Err(BatchError::Corrupt(format!(
                "record size {len} is less than the minimum record overhead ({})",
                BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES
            )));
        }
        let total = LOG_OVERHEAD_BYTES + len;
        if total > records.len() {
            return Err(BatchError::Corrupt(format!(
                "batch announces {total} bytes but only {} remain",
                records.len()
            )));
        }
        out.push(records.split_to(total));
    }
    Ok(out)
}

/// What the broker needs to enforce while validating a produced batch.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// The topic's `max.message.bytes`: the largest batch accepted, log overhead included.
    pub max_message_bytes: usize,
    /// The topic's `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime timestamp may be.
    pub timestamp_after_max_ms: i64,
    /// The topic's `compression.type`; `None` keeps the producer's codec.
    pub target_codec: Option<Compression>,
    /// Produce request version (zstd needs v7+).
    pub produce_version: i16,
    /// The broker's clock, in ms since the epoch.
    pub now_ms: i64,
    /// Most bytes a compressed batch may inflate to before validation gives up with
    /// [`BatchError::OverBudget`]; `None` for no limit (other than [`MAX_INFLATED_BYTES`]). The
    /// broker validates on a reactor thread within a budget and moves a batch that inflates
    /// past it to the blocking pool: the compressed size says nothing of the work.
    pub inflate_budget: Option<usize>,
    /// The topic is compacted (`cleanup.policy` includes `compact`): every record needs a key,
    /// as Kafka's `LogValidator` requires.
    pub require_keys: bool,
}

/// A batch that passed validation, ready for offset assignment.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    /// The batch bytes: the producer's own unless Kafka would have rewritten them.
    pub bytes: Bytes,
    /// Header as stored (after any rewrite).
    pub header: BatchHeader,
    /// Offset delta of the record carrying `header.max_timestamp` (for the time index).
    pub max_timestamp_offset_delta: i32,
}

/// Checks a batch read back from the log, as Kafka's recovery does: a whole v2 header whose
/// length field matches the bytes it was stored in, and a CRC that matches the contents. It
/// does not decode the records.
pub fn check_stored(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::Corrupt(format!(
            "magic {} where 2 was stored",
            header.magic
        )));
    }
    if header.size_bytes() != bytes.len() {
        return Err(BatchError::Corrupt(format!(
            "batch length field says {} bytes, {} were stored",
            header.size_bytes(),
            bytes.len()
        )));
    }
    let actual_crc = crc32c::crc32c(&bytes[CRC_COVERS_FROM..]);
    if actual_crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "record batch CRC {:#010x} does not match the computed {:#010x}",
            header.crc, actual_crc
        )));
    }
    Ok(header)
}

/// Validates the `records` of one partition in a Produce request (v3+), as Kafka's
/// `ProduceRequest.validateRecords` and `LogValidator` do.
pub fn validate_produce(records: Bytes, cfg: &ValidationConfig) -> Result<ValidBatch, BatchError> {
    if records.len() > MAGIC_AT {
        let magic = i8::from_be_bytes([records[MAGIC_AT]]);
        if magic != MAGIC_V2 {
            return Err(BatchError::InvalidRecord(format!(
                "Produce requests with version {} are only allowed to contain record batches with magic version 2, got {magic}",
                cfg.produce_version
            )));
        }
    }
    let mut batches = split_batches(records)?;
    if batches.len() != 1 {
        return Err(BatchError::InvalidRecord(format!(
            "Produce requests with version {} are only allowed to contain exactly one record batch, got {}",
            cfg.produce_version,
            batches.len()
        )));
    }
    let bytes = batches.pop().expect("exactly one batch, checked above");
    if bytes.len() > cfg.max_message_bytes {
        return Err(BatchError::TooLarge {
            size: bytes.len(),
            max: cfg.max_message_bytes,
        });
    }
    let header = BatchHeader::parse(&bytes)?;
    let actual_crc = crc32c::crc32c(&bytes[CRC_COVERS_FROM..]);
    if actual_crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "record batch CRC {:#010x} does not match the computed {:#010x}",
            header.crc, actual_crc
        )));
    }
    if header.base_offset != 0 {
        return Err(BatchError::InvalidRecord(format!(
            "the base offset of a produced batch must be 0, got {}",
            header.base_offset
        )));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "clients may not write control batches".into(),
        ));
    }
    let source_codec = header.compression()?;
    if source_codec == Compression::Zstd && cfg.produce_version < 7 {
        return Err(BatchError::UnsupportedCompression(format!(
            "zstd needs Produce v7 or later, got v{}",
            cfg.produce_version
        )));
    }
    if header.record_count <= 0 {
        return Err(BatchError::InvalidRecord(format!(
            "batch declares {} records",
            header.record_count
        )));
    }
    if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::InvalidRecord(format!(
            "record count {} does not match lastOffsetDelta {}",
            header.record_count, header.last_offset_delta
        )));
    }

    // Records are checked as they decompress; only a batch recompressed for the topic's codec
    // is held uncompressed in memory (bounded by MAX_INFLATED_BYTES).
    let target_codec = cfg.target_codec.unwrap_or(source_codec);
    let section = bytes.slice(BATCH_HEADER_BYTES..);
    let (scan, raw) = if target_codec == source_codec {
        (scan_section(source_codec, &section, &header, cfg.inflate_budget)?, None)
    } else {
        let raw = stream::decompress_within(source_codec, section, cfg.inflate_budget)?;
        (scan_section(Compression::None, &raw, &header, None)?, Some(raw))
    };
    if cfg.require_keys {
        if let Some(delta) = scan.first_keyless {
            return Err(BatchError::InvalidRecord(format!(
                "Compacted topic cannot accept message without key (record {delta} of the batch)"
            )));
        }
    }
    if cfg.timestamp_type == TimestampType::CreateTime {
        check_timestamp_window(scan.min_timestamp, scan.max_timestamp, cfg)?;
    }

    let log_append = cfg.timestamp_type == TimestampType::LogAppendTime;
    let wrong_max = !log_append && scan.max_timestamp != header.max_timestamp;
    if target_codec == source_codec && !log_append && !wrong_max {
        let max_timestamp_offset_delta = scan.max_timestamp_offset_delta;
        return Ok(ValidBatch {
            bytes,
            header,
            max_timestamp_offset_delta,
        });
    }

    // Kafka rewrites the batch in these cases; so do we, once, at append.
    let records_section = match &raw {
        None => bytes.slice(BATCH_HEADER_BYTES..),
        Some(raw) => compress(target_codec, raw)?,
    };
    let mut attributes = (header.attributes & !COMPRESSION_MASK) | target_codec as i16;
    let (max_timestamp, max_delta) = if log_append {
        attributes |= TIMESTAMP_TYPE_BIT;
        (cfg.now_ms, header.last_offset_delta)
    } else {
        attributes &= !TIMESTAMP_TYPE_BIT;
        (scan.max_timestamp, scan.max_timestamp_offset_delta)
    };
    let rebuilt = rebuild(&bytes, attributes, max_timestamp, &records_section)?;
    let header = BatchHeader::parse(&rebuilt)?;
    Ok(ValidBatch {
        bytes: rebuilt,
        header,
        max_timestamp_offset_delta: max_delta,
    })
}

fn check_timestamp_window(min: i64, max: i64, cfg: &ValidationConfig) -> Result<(), BatchError> {
    let earliest = cfg.now_ms.saturating_sub(cfg.timestamp_before_max_ms);
    let latest = cfg.now_ms.saturating_add(cfg.timestamp_after_max_ms);
    if min < earliest || max > latest {
        return Err(BatchError::InvalidTimestamp(format!(
            "timestamps [{min}, {max}] are outside the accepted range [{earliest}, {latest}]"
        )));
    }
    Ok(())
}

/// Writes a new batch with the given attributes, max timestamp and records section, keeping
/// every other header field, and computes its CRC.
fn rebuild(old: &[u8], attributes: i16, max_timestamp: i64, records: &[u8]) -> Result<Bytes, BatchError> {
    let batch_length =
        i32::try_from(BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()).map_err(|_| BatchError::TooLarge {
            size: records.len(),
            max: i32::MAX as usize,
        })?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len());
    out.put_slice(&old[..BATCH_LENGTH_AT]);
    out.put_i32(batch_length);
    out.put_slice(&old[LEADER_EPOCH_AT..CRC_AT]);
    out.put_u32(0); // CRC, below
    out.put_i16(attributes);
    out.put_slice(&old[LAST_OFFSET_DELTA_AT..MAX_TIMESTAMP_AT]);
    out.put_i64(max_timestamp);
    out.put_slice(&old[PRODUCER_ID_AT..BATCH_HEADER_BYTES]);
    out.put_slice(records);
    let crc = crc32c::crc32c(&out[CRC_COVERS_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Stamps the broker-assigned base offset and the leader epoch into a stored batch header.
/// Neither field is covered by the CRC, so the batch stays valid.
pub fn patch_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "patching a batch that was not validated"
    );
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// A transaction marker: the control batch a transaction coordinator writes to every
/// partition of a transaction when it ends (Kafka's `EndTransactionMarker`, version 0): one
/// record whose key is (version 0, type 0 = abort / 1 = commit) and whose value is (version 0,
/// coordinator epoch). Base offset 0; the log assigns the real one.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    let mut record = BytesMut::with_capacity(17);
    record.put_u8(0x20); // length 16, zigzag varint
    record.put_i8(0); // attributes
    record.put_u8(0); // timestamp delta 0
    record.put_u8(0); // offset delta 0
    record.put_u8(0x08); // key length 4
    record.put_i16(0); // key version
    record.put_i16(i16::from(commit)); // 0 abort, 1 commit
    record.put_u8(0x0c); // value length 6
    record.put_i16(0); // value version
    record.put_i32(coordinator_epoch);
    record.put_u8(0); // no headers
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + record.len());
    out.put_i64(0);
    out.put_i32((BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + record.len()) as i32);
    out.put_i32(-1); // partition leader epoch, stamped at append
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, below
    out.put_i16(TRANSACTIONAL_BIT | CONTROL_BIT);
    out.put_i32(0); // last offset delta
    out.put_i64(timestamp);
    out.put_i64(timestamp);
    out.put_i64(producer_id);
    out.put_i16(producer_epoch);
    out.put_i32(-1); // control batches carry no sequence
    out.put_i32(1);
    out.put_slice(&record);
    let crc = crc32c::crc32c(&out[CRC_COVERS_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// Reads the transaction marker of a stored control batch (see [`control_batch`]): whether it
/// commits, and the coordinator epoch. `None` for anything else: a data batch, a control record
/// of another type, or bytes that do not parse. Followers use it to replay the transaction
/// state a leader's marker carries.
pub fn control_marker(batch: &[u8]) -> Option<(bool, i32)> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.record_count < 1 {
        return None;
    }
    // Control batches are never compressed: the first record follows the header.
    let mut r = batch.get(BATCH_HEADER_BYTES..)?;
    fn zigzag(r: &mut &[u8]) -> Option<i64> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let (&b, rest) = r.split_first()?;
            *r = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((v >> 1) as i64 ^ -((v & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    zigzag(&mut r)?; // record length
    r = r.get(1..)?; // attributes
    zigzag(&mut r)?; // timestamp delta
    zigzag(&mut r)?; // offset delta
    if zigzag(&mut r)? != 4 {
        return None;
    }
    let key_type = i16::from_be_bytes(r.get(2..4)?.try_into().ok()?);
    r = r.get(4..)?;
    let value_len = zigzag(&mut r)?;
    let coordinator_epoch = if value_len >= 6 {
        i32::from_be_bytes(r.get(2..6)?.try_into().ok()?)
    } else {
        -1
    };
    match key_type {
        0 => Some((false, coordinator_epoch)),
        1 => Some((true, coordinator_epoch)),
        _ => None,
    }
}

/// Compresses a raw records section with `c`, in the framing Kafka's clients read.
pub fn compress(c: Compression, raw: &[u8]) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::with_capacity(raw.len() / 2 + 64);
    let put = |b: &mut BytesMut| -> anyhow::Result<()> {
        b.put_slice(raw);
        Ok(())
    };
    let res = match c {
        Compression::None => {
            out.put_slice(raw);
            Ok(())
        }
        Compression::Gzip => codec::Gzip::compress(&mut out, put),
        Compression::Snappy => codec::Snappy::compress(&mut out, put),
        Compression::Lz4 => codec::Lz4::compress(&mut out, put),
        Compression::Zstd => codec::Zstd::compress(&mut out, put),
    };
    res.map_err(|e| BatchError::Corrupt(format!("{} compression failed: {e}", codec_name(c))))?;
    Ok(out.freeze())
}

/// Summary of a records section walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordScan {
    /// Smallest record timestamp.
    pub min_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying `max_timestamp`.
    pub max_timestamp_offset_delta: i32,
    /// Offset delta of the first record without a key, if any.
    pub first_keyless: Option<i32>,
}

/// One record's position and time, as needed by ListOffsets by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    /// Offset delta from the batch base offset.
    pub offset_delta: i32,
    /// The record's timestamp (the batch's max timestamp under LogAppendTime).
    pub timestamp: i64,
    /// Whether the record has a key (not null).
    pub has_key: bool,
}

fn invalid(what: &str) -> BatchError {
    BatchError::InvalidRecord(format!("found invalid record structure: {what}"))
}

/// Walks a batch's records section compressed with `codec`, decompressing as it goes, checking
/// every record's framing (lengths, offset deltas in order, no trailing bytes) and calling `f`
/// for each record. Stops early, without checking the rest, when `f` breaks.
fn walk_section(
    codec: Compression,
    section: &[u8],
    header: &BatchHeader,
    budget: Option<usize>,
    f: impl FnMut(RecordStamp) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    match codec {
        Compression::None => walk(Fields::new(section), header, codec, f),
        c => walk(Fields::new(stream::buffered(c, section, budget)?), header, c, f),
    }
}

/// The record walk over any reader of a records section (`codec` names the decoder behind it,
/// for its errors).
fn walk<R: BufRead>(
    mut r: Fields<R>,
    header: &BatchHeader,
    codec: Compression,
    mut f: impl FnMut(RecordStamp) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    // The section ending inside a record means the record claimed more than the batch holds.
    let fail = |e: FieldError| match e {
        FieldError::Eof => invalid("record longer than the batch"),
        FieldError::Io(e) => stream::undecodable(codec, &e),
    };
    for expected_delta in 0..header.record_count {
        let len = r.varint().map_err(|e| match e {
            FieldError::Eof => invalid("record length"),
            e => fail(e),
        })?;
        let len = len.ok_or_else(|| invalid("record length"))?;
        let len = u64::try_from(len).map_err(|_| invalid("negative record length"))?;
        if len == 0 {
            return Err(invalid("empty record"));
        }
        let end = r.pos + len;
        r.byte().map_err(fail)?; // attributes: unused in v2
        let ts_delta = r.varlong().map_err(fail)?.ok_or_else(|| invalid("timestamp delta"))?;
        left_in(&r, end, "timestamp delta")?;
        let offset_delta = r.varint().map_err(fail)?.ok_or_else(|| invalid("offset delta"))?;
        left_in(&r, end, "offset delta")?;
        if offset_delta != expected_delta {
            return Err(BatchError::InvalidRecord(format!(
                "record offset delta {offset_delta} where {expected_delta} was expected"
            )));
        }
        let has_key = skip_nullable(&mut r, end, "key", &fail)?;
        skip_nullable(&mut r, end, "value", &fail)?;
        let headers = r.varint().map_err(fail)?.ok_or_else(|| invalid("header count"))?;
        left_in(&r, end, "header count")?;
        if headers < 0 {
            return Err(invalid("negative header count"));
        }
        for _ in 0..headers {
            let key_len = r.varint().map_err(fail)?.ok_or_else(|| invalid("header key"))?;
            let left = left_in(&r, end, "header key")?;
            let key_len = u64::try_from(key_len).map_err(|_| invalid("null header key"))?;
            if key_len > left {
                return Err(invalid("header key longer than the record"));
            }
            r.skip(key_len).map_err(fail)?;
            skip_nullable(&mut r, end, "header value", &fail)?;
        }
        if r.pos != end {
            return Err(invalid("bytes left over inside a record"));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(ts_delta)
        };
        if f(RecordStamp {
            offset_delta,
            timestamp,
            has_key,
        })
        .is_break()
        {
            return Ok(());
        }
    }
    if !r.at_end().map_err(fail)? {
        return Err(BatchError::InvalidRecord(format!(
            "incorrect declared batch size, bytes remain after {} records",
            header.record_count
        )));
    }
    Ok(())
}

/// Bytes left in the record ending at `end`; an error naming `what` if the field just read
/// ran past it.
fn left_in<R>(r: &Fields<R>, end: u64, what: &str) -> Result<u64, BatchError> {
    end.checked_sub(r.pos).ok_or_else(|| invalid(what))
}

/// Skips a nullable key, value or header value (varint length, -1 for null) that must end
/// inside the record ending at `end`; whether it was there (not null).
fn skip_nullable<R: BufRead>(
    r: &mut Fields<R>,
    end: u64,
    what: &str,
    fail: &impl Fn(FieldError) -> BatchError,
) -> Result<bool, BatchError> {
    let len = r.varint().map_err(fail)?.ok_or_else(|| invalid(what))?;
    let left = left_in(r, end, what)?;
    if len == -1 {
        return Ok(false);
    }
    let len = u64::try_from(len).map_err(|_| invalid(what))?;
    if len > left {
        return Err(invalid(what));
    }
    r.skip(len).map_err(fail)?;
    Ok(true)
}

/// Walks a batch's records section (compressed with `codec`) for the timestamp summary.
fn scan_section(
    codec: Compression,
    section: &[u8],
    header: &BatchHeader,
    budget: Option<usize>,
) -> Result<RecordScan, BatchError> {
    let mut scan = RecordScan {
        min_timestamp: i64::MAX,
        max_timestamp: i64::MIN,
        max_timestamp_offset_delta: 0,
        first_keyless: None,
    };
    walk_section(codec, section, header, budget, |r| {
        if !r.has_key && scan.first_keyless.is_none() {
            scan.first_keyless = Some(r.offset_delta);
        }
        scan.min_timestamp = scan.min_timestamp.min(r.timestamp);
        if r.timestamp > scan.max_timestamp {
            scan.max_timestamp = r.timestamp;
            scan.max_timestamp_offset_delta = r.offset_delta;
        }
        ControlFlow::Continue(())
    })?;
    Ok(scan)
}

/// The first record of a stored batch for which `wanted` holds (decompressing only as far as
/// that record), for ListOffsets by timestamp and consumer lag.
pub fn find_record(
    batch: &Bytes,
    mut wanted: impl FnMut(&RecordStamp) -> bool,
) -> Result<Option<RecordStamp>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let section = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let mut found = None;
    let pick = |r: RecordStamp| {
        if wanted(&r) {
            found = Some(r);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    walk_section(header.compression()?, section, &header, None, pick)?;
    Ok(found)
}

#[cfg(test)]
mod tests;
