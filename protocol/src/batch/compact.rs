//! What log compaction needs of a stored batch: its records with their keys, and the batch
//! rebuilt with only some of them, as Kafka's `MemoryRecords.filterTo` rebuilds it.
//!
//! A rebuilt batch keeps its base offset and its last offset (so the producer's last sequence
//! survives, and a consumer moves past the batch's whole offset range), its codec, producer
//! fields and leader epoch. Its base timestamp becomes the first kept record's timestamp, or
//! the delete horizon when one is set (KIP-534: attribute bit 6, the horizon stored in the
//! base timestamp, the records' timestamp deltas counted from it).

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

/// Attribute bit saying the base timestamp holds the batch's delete horizon (KIP-534).
pub const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// One record of a decoded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanRecord<'a> {
    /// Offset delta from the batch's base offset.
    pub offset_delta: i32,
    /// The record's timestamp.
    pub timestamp: i64,
    /// Its key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Whether its value is null (a tombstone).
    pub tombstone: bool,
    /// The record's bytes from its key length to its end: copied as they are into a rebuilt
    /// batch.
    tail: &'a [u8],
}

/// A stored batch with its records section decompressed.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// The batch as stored.
    pub bytes: Bytes,
    /// Its header.
    pub header: BatchHeader,
    section: Bytes,
}

fn slice_varint(r: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

/// A nullable field (varint length, -1 for null) at the front of `r`, taken off it.
fn take_nullable<'a>(r: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = slice_varint(r, 5)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let (v, rest) = (r.get(..len)?, r.get(len..)?);
    *r = rest;
    Some(Some(v))
}

impl DecodedBatch {
    /// Decompresses a stored batch (one the log accepted: checked, but decoded with care all
    /// the same, since a damaged file must not bring the cleaner down).
    pub fn decode(bytes: Bytes) -> Result<DecodedBatch, BatchError> {
        let header = BatchHeader::parse(&bytes)?;
        let end = LOG_OVERHEAD_BYTES + usize::try_from(header.batch_length).unwrap_or(0);
        let raw = bytes
            .get(BATCH_HEADER_BYTES..end)
            .ok_or_else(|| BatchError::Corrupt("batch shorter than its length".into()))?;
        let section = match header.compression()? {
            Compression::None => bytes.slice(BATCH_HEADER_BYTES..end),
            c => stream::decompress_within(c, Bytes::copy_from_slice(raw), Some(MAX_INFLATED_BYTES))?,
        };
        let decoded = DecodedBatch { bytes, header, section };
        // Every record is parsed once here so that `records` cannot fail later.
        decoded.parse()?;
        Ok(decoded)
    }

    fn parse(&self) -> Result<Vec<CleanRecord<'_>>, BatchError> {
        let bad = || invalid("record in a stored batch");
        let mut r: &[u8] = &self.section;
        let mut out = Vec::with_capacity(usize::try_from(self.header.record_count).unwrap_or(0).min(1 << 16));
        for _ in 0..self.header.record_count {
            let len = usize::try_from(slice_varint(&mut r, 5).ok_or_else(bad)?).map_err(|_| bad())?;
            let (mut rec, rest) = (r.get(..len).ok_or_else(bad)?, r.get(len..).ok_or_else(bad)?);
            r = rest;
            rec = rec.get(1..).ok_or_else(bad)?; // attributes
            let ts_delta = slice_varint(&mut rec, 10).ok_or_else(bad)?;
            let offset_delta = i32::try_from(slice_varint(&mut rec, 5).ok_or_else(bad)?).map_err(|_| bad())?;
            let tail = rec;
            let key = take_nullable(&mut rec).ok_or_else(bad)?;
            let value = take_nullable(&mut rec).ok_or_else(bad)?;
            let timestamp = if self.header.is_log_append_time() {
                self.header.max_timestamp
            } else {
                self.header.base_timestamp.saturating_add(ts_delta)
            };
            out.push(CleanRecord {
                offset_delta,
                timestamp,
                key,
                tombstone: value.is_none(),
                tail,
            });
        }
        Ok(out)
    }

    /// The batch's records, in order.
    pub fn records(&self) -> Vec<CleanRecord<'_>> {
        self.parse().unwrap_or_default()
    }

    /// The delete horizon the cleaner set on this batch, if any.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.header.attributes & DELETE_HORIZON_BIT != 0).then_some(self.header.base_timestamp)
    }

    /// The batch with only the records `keep` holds for (in order, a subset of
    /// [`DecodedBatch::records`]), and `delete_horizon` set when given. At least one record:
    /// a batch that keeps none is dropped or written with [`empty_batch`].
    pub fn rebuild(&self, keep: &[CleanRecord<'_>], delete_horizon: Option<i64>) -> Result<Bytes, BatchError> {
        let first = keep
            .first()
            .ok_or_else(|| invalid("rebuilding a batch with no records"))?;
        let log_append = self.header.is_log_append_time();
        let base_ts = match delete_horizon {
            Some(h) => h,
            None if log_append => self.header.base_timestamp,
            None => first.timestamp,
        };
        let max_ts = if log_append {
            self.header.max_timestamp
        } else {
            keep.iter().map(|r| r.timestamp).max().unwrap_or(first.timestamp)
        };
        let mut section = BytesMut::with_capacity(keep.iter().map(|r| r.tail.len() + 24).sum());
        for r in keep {
            let ts_delta = if log_append {
                0
            } else {
                r.timestamp.wrapping_sub(base_ts)
            };
            let od = i64::from(r.offset_delta);
            let len = 1 + varlong_len(ts_delta) + varlong_len(od) + r.tail.len();
            put_varlong(&mut section, len as i64);
            section.put_u8(0);
            put_varlong(&mut section, ts_delta);
            put_varlong(&mut section, od);
            section.put_slice(r.tail);
        }
        let codec = self.header.compression()?;
        let records = match codec {
            Compression::None => section.freeze(),
            c => compress(c, &section)?,
        };
        let mut attributes = self.header.attributes & !DELETE_HORIZON_BIT;
        if delete_horizon.is_some() {
            attributes |= DELETE_HORIZON_BIT;
        }
        let mut head = BytesMut::from(&self.bytes[..BATCH_HEADER_BYTES]);
        head[27..35].copy_from_slice(&base_ts.to_be_bytes());
        head[57..61].copy_from_slice(&(keep.len() as i32).to_be_bytes());
        rebuild(&head, attributes, max_ts, &records)
    }
}

/// A batch header with no records, keeping `header`'s offsets (base and last), producer
/// fields, leader epoch and flags: what Kafka keeps of a producer's last batch when the
/// cleaner removed all its records, so that the producer's state survives (a follower or a
/// restarted broker rebuilds it from the log).
pub fn empty_batch(header: &BatchHeader) -> Bytes {
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES);
    out.put_i64(header.base_offset);
    out.put_i32((BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32);
    out.put_i32(header.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, below
    out.put_i16(header.attributes & !COMPRESSION_MASK & !DELETE_HORIZON_BIT);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(0);
    let crc = crc32c::crc32c(&out[CRC_COVERS_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, RecordBatchDecoder, TimestampType};

    fn batch(c: Compression, recs: &[(Option<&str>, Option<&str>, i64)]) -> Bytes {
        let records: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (k, v, ts))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i as i64,
                sequence: 5 + i as i32,
                timestamp: *ts,
                key: k.map(|s| Bytes::copy_from_slice(s.as_bytes())),
                value: v.map(|s| Bytes::copy_from_slice(s.as_bytes())),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
                delete_horizon: false,
            })
            .collect();
        crate::batch::tests::encode(&records, c)
    }

    #[test]
    fn rebuilt_batches_keep_their_offsets_and_decode_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(
                c,
                &[
                    (Some("a"), Some("1"), 1000),
                    (Some("b"), None, 1005),
                    (Some("c"), Some("3"), 1010),
                ],
            );
            let d = DecodedBatch::decode(b).expect("decodes");
            let recs = d.records();
            assert_eq!(recs.len(), 3);
            assert_eq!(recs[1].key, Some(&b"b"[..]));
            assert!(recs[1].tombstone && !recs[0].tombstone);
            assert_eq!(recs[2].timestamp, 1010);
            for horizon in [None, Some(5000)] {
                let kept = [recs[1], recs[2]];
                let out = d.rebuild(&kept, horizon).expect("rebuilds");
                check_stored(&out).expect("valid crc");
                let h = BatchHeader::parse(&out).expect("header");
                assert_eq!(h.base_offset, 100);
                assert_eq!(h.last_offset_delta, 2, "the last offset is kept");
                assert_eq!(h.record_count, 2);
                assert_eq!(h.base_sequence, 5);
                assert_eq!(h.compression().expect("codec"), c);
                assert_eq!(
                    DecodedBatch::decode(out.clone()).expect("re-decodes").delete_horizon(),
                    horizon
                );
                // A client decoder sees the kept records with their offsets and timestamps.
                let mut buf = out.clone();
                let set = RecordBatchDecoder::decode(&mut buf).expect("a client decodes it");
                let got: Vec<(i64, i64, bool)> = set
                    .records
                    .iter()
                    .map(|r| (r.offset, r.timestamp, r.value.is_none()))
                    .collect();
                assert_eq!(got, vec![(101, 1005, true), (102, 1010, false)], "{c:?} {horizon:?}");
                assert_eq!(set.records[1].headers.len(), 1);
            }
        }
    }

    #[test]
    fn an_empty_batch_keeps_the_producer_and_the_offset_range() {
        let b = batch(
            Compression::Lz4,
            &[(Some("a"), Some("1"), 1000), (Some("b"), Some("2"), 1001)],
        );
        let d = DecodedBatch::decode(b).expect("decodes");
        let e = empty_batch(&d.header);
        check_stored(&e).expect("valid crc");
        let h = BatchHeader::parse(&e).expect("header");
        assert_eq!((h.base_offset, h.last_offset(), h.record_count), (100, 101, 0));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 1, 5));
        assert_eq!(h.compression().expect("codec"), Compression::None);
        assert!(DecodedBatch::decode(e).expect("decodes").records().is_empty());
    }

    #[test]
    fn damaged_sections_are_errors_not_panics() {
        let b = batch(Compression::None, &[(Some("a"), Some("1"), 1000)]);
        for cut in [BATCH_HEADER_BYTES + 1, b.len() - 1] {
            let mut v = b.to_vec();
            v.truncate(cut);
            assert!(DecodedBatch::decode(Bytes::from(v)).is_err());
        }
    }
}
