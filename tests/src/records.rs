//! Record batches: build good ones with `kafka-protocol`'s encoder, read them
//! back tolerantly, and hand-craft the broken ones the validation tests need.
//!
//! Byte offsets inside a v2 batch follow Kafka's `DefaultRecordBatch`:
//! <https://kafka.apache.org/documentation/#recordbatch>.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Offset of the 4-byte batch length (after the 8-byte base offset).
pub const BATCH_LENGTH_OFFSET: usize = 8;
/// Bytes before the batch length's coverage starts: base offset + length.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the magic byte.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the 4-byte CRC-32C.
pub const CRC_OFFSET: usize = 17;
/// Offset of the attributes; the CRC covers from here to the batch end.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the 4-byte last offset delta.
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Offset of the 4-byte record count.
pub const RECORDS_COUNT_OFFSET: usize = 57;
/// Offset of the first record: the size of a v2 batch header.
pub const RECORDS_OFFSET: usize = 61;

const _: () = assert!(CRC_OFFSET == MAGIC_OFFSET + 1 && ATTRIBUTES_OFFSET == CRC_OFFSET + 4);
const _: () = assert!(RECORDS_OFFSET == RECORDS_COUNT_OFFSET + 4);

/// Wall-clock milliseconds, for record timestamps the broker will accept
/// under Kafka's default `log.message.timestamp.*.max.ms`.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds since 1970 fit in i64")
}

/// `count` distinct records tagged with `tag`, ready for [`encode_batch`].
///
/// Keys, values and one header carry `tag` and the index so a fetched record
/// can be matched to the produced one. Offsets are 0-based deltas and
/// `sequence = offset - 1`: `RecordBatchEncoder` keeps records in one batch
/// only while `offset - sequence` is constant, and this makes the batch's
/// base sequence -1 (`NO_SEQUENCE`), which a non-idempotent producer sends.
pub fn test_records(count: usize, tag: &str) -> Vec<Record> {
    records_with_value_len(count, tag, 0)
}

/// Like [`test_records`], with each value padded to at least `value_len`
/// bytes of deterministic, poorly compressible filler.
pub fn records_with_value_len(count: usize, tag: &str, value_len: usize) -> Vec<Record> {
    let base_ts = now_ms();
    (0..count)
        .map(|i| {
            let i64_i = i64::try_from(i).expect("test record counts fit in i64");
            let mut value = format!("value-{tag}-{i}").into_bytes();
            let mut filler = crate::rng::XorShift64::new(0xF00D ^ (i as u64 + 1));
            while value.len() < value_len {
                value.push(b'a' + filler.byte() % 26);
            }
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_string(format!("h-{tag}")),
                Some(Bytes::from(format!("hv-{i}"))),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64_i,
                sequence: i32::try_from(i64_i - 1).expect("test record counts fit in i32"),
                timestamp: base_ts + i64_i,
                key: Some(Bytes::from(format!("key-{tag}-{i}"))),
                value: Some(Bytes::from(value)),
                headers,
            }
        })
        .collect()
}

/// Encode `records` as exactly one magic-2 batch with `compression`.
///
/// Kafka rejects a produce partition holding more than one batch
/// (`ProduceRequest.validateRecords`), so this panics rather than silently
/// returning several.
pub fn encode_batch(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("encoding test records");
    let bytes = buf.freeze();
    let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).expect("reading back the batch just encoded");
    assert_eq!(infos.len(), 1, "test records must encode to exactly one batch");
    bytes
}

/// Decode every complete batch in a fetched `records` field.
///
/// A broker may end a fetch response with a partial batch (Kafka does when
/// `partition_max_bytes` cuts one), which clients skip; anything malformed
/// before that is an error.
pub fn decode_records(bytes: &Bytes) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    for batch in split_batches(bytes)? {
        let set = RecordBatchDecoder::decode(&mut batch.clone())
            .with_context(|| format!("decoding a {}-byte fetched batch", batch.len()))?;
        out.extend(set.records);
    }
    Ok(out)
}

/// Complete batches in `bytes`, by their length fields, ignoring a trailing
/// partial batch.
pub fn split_batches(bytes: &Bytes) -> anyhow::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut rest = bytes.clone();
    while rest.len() >= LOG_OVERHEAD_BYTES {
        let mut header = &rest[BATCH_LENGTH_OFFSET..LOG_OVERHEAD_BYTES];
        let length = header.get_i32();
        if length < 0 {
            bail!("negative batch length {length} in fetched records");
        }
        let total = LOG_OVERHEAD_BYTES + usize::try_from(length).expect("checked non-negative");
        if rest.len() < total {
            break;
        }
        out.push(rest.split_to(total));
    }
    Ok(out)
}

/// Recompute a v2 batch's CRC-32C after editing bytes it covers.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Overwrite a big-endian i32 at `at`.
pub fn put_i32_at(buf: &mut [u8], at: usize, value: i32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// A legacy magic-1 message set holding one message (Kafka's pre-0.11
/// `LegacyRecord` format): offset, size, CRC-32 (IEEE), magic 1, attributes,
/// timestamp, key, value.
pub fn legacy_v1_message_set(key: &[u8], value: &[u8]) -> Bytes {
    let mut body = Vec::new();
    body.push(1u8); // magic
    body.push(0u8); // attributes: no compression, CreateTime
    body.extend_from_slice(&now_ms().to_be_bytes());
    for field in [key, value] {
        let len = i32::try_from(field.len()).expect("test keys and values are small");
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(field);
    }
    let crc = crc32_ieee(&body);
    let size = i32::try_from(4 + body.len()).expect("one small message");
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// CRC-32C (Castagnoli), bitwise: record batches are small in tests.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32_reflected(data, 0x82F6_3B78)
}

/// CRC-32 (IEEE 802.3), as legacy magic 0/1 messages use.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    crc32_reflected(data, 0xEDB8_8320)
}

fn crc32_reflected(data: &[u8], poly: u32) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (poly & mask);
        }
    }
    !crc
}

/// Assert that `fetched` are `expected`, in order, starting at `base_offset`:
/// same key, value, headers and timestamp, and consecutive offsets.
pub fn assert_same_records(fetched: &[Record], expected: &[Record], base_offset: i64, what: &str) {
    assert_eq!(
        fetched.len(),
        expected.len(),
        "{what}: fetched {} records, expected {}",
        fetched.len(),
        expected.len()
    );
    for (i, (got, want)) in fetched.iter().zip(expected).enumerate() {
        let offset = base_offset + i64::try_from(i).expect("small");
        assert_eq!(got.offset, offset, "{what}: record {i} offset");
        assert_eq!(got.key, want.key, "{what}: record {i} (offset {offset}) key");
        assert_eq!(got.value, want.value, "{what}: record {i} (offset {offset}) value");
        assert_eq!(
            got.headers, want.headers,
            "{what}: record {i} (offset {offset}) headers"
        );
        assert_eq!(
            got.timestamp, want.timestamp,
            "{what}: record {i} (offset {offset}) timestamp"
        );
        assert!(!got.control, "{what}: record {i} is a control record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values() {
        // The standard check values for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn encoder_crc_matches_ours() {
        let batch = encode_batch(&test_records(3, "crc"), Compression::None);
        let mut copy = batch.to_vec();
        fix_crc(&mut copy);
        assert_eq!(copy, batch.to_vec());
    }

    #[test]
    fn every_codec_roundtrips_as_one_batch() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = test_records(5, "rt");
            let bytes = encode_batch(&records, c);
            let back = decode_records(&bytes).expect("decode");
            assert_same_records(&back, &records, 0, "roundtrip");
        }
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let a = encode_batch(&test_records(2, "a"), Compression::None);
        let b = encode_batch(&test_records(2, "b"), Compression::None);
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b[..b.len() - 3]);
        let back = decode_records(&Bytes::from(joined)).expect("decode");
        assert_eq!(back.len(), 2);
    }
}
