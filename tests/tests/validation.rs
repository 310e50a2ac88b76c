//! Produce-time validation of record batches, with Kafka's error codes.
//!
//! Where Kafka decides each case (Kafka 4.x source):
//! - `ProduceRequest.validateRecords` (called per partition by
//!   `KafkaApis.handleProduceRequest`, mapped with `Errors.forException`):
//!   for Produce v3+, a first batch whose magic is not 2, no batch at all, or
//!   more than one batch throws `InvalidRecordException` → INVALID_RECORD (87);
//!   zstd below Produce v7 → UNSUPPORTED_COMPRESSION_TYPE (76).
//! - `UnifiedLog.analyzeAndValidateRecords`, in this order: a batch whose
//!   `sizeInBytes` exceeds the topic's `max.message.bytes` (default
//!   `message.max.bytes`) → `RecordTooLargeException` → MESSAGE_TOO_LARGE (10);
//!   then `!batch.isValid()` (CRC-32C mismatch) → `CorruptRecordException`
//!   → CORRUPT_MESSAGE (2).
//! - `LogValidator.validateBatch`: a record count that disagrees with
//!   `lastOffsetDelta + 1` → `InvalidRecordException` → INVALID_RECORD (87);
//!   `DefaultRecordBatch`'s record iterator: fewer records than declared
//!   ("Incorrect declared batch size, premature EOF reached") or more
//!   ("records still remaining in file") → `InvalidRecordException` → 87.
//!
//! After every rejected produce the log end offset must be unchanged and a
//! good produce must still land at exactly that offset.

use bytes::Bytes;
use fjord_tests::codes;
use fjord_tests::records::{
    assert_same_records, fix_crc, legacy_v1_message_set, put_i32_at, records_with_value_len, ATTRIBUTES_OFFSET,
    BATCH_LENGTH_OFFSET, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD_BYTES, RECORDS_COUNT_OFFSET, RECORDS_OFFSET,
};
use fjord_tests::{encode_batch, error_name, test_records, Broker, Client, Topic};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::protocol::Message;
use kafka_protocol::records::{Compression, Record};

/// The broker's `message.max.bytes` in these tests: small, so an oversized
/// batch is cheap to build.
const MAX_MESSAGE_BYTES: usize = 10_000;
const MAX_MESSAGE_BYTES_STR: &str = "10000";

const PRODUCE_VERSIONS: [i16; 2] = [ProduceRequest::VERSIONS.min, ProduceRequest::VERSIONS.max];

/// A topic plus the records that should be in it, in order.
struct Log {
    topic: Topic,
    good: Vec<Record>,
    /// How many good produces so far, to tag records uniquely.
    appends: usize,
}

impl Log {
    fn leo(&self) -> i64 {
        i64::try_from(self.good.len()).expect("small")
    }

    /// Produce a good batch and check it lands at the current end.
    fn append_good(&mut self, client: &mut Client, version: i16) {
        self.appends += 1;
        let records = test_records(2, &format!("good-{}", self.appends));
        let r = client.produce(version, &self.topic, 0, encode_batch(&records, Compression::None), -1);
        assert_eq!(r.error_code, 0, "good produce v{version}: {}", error_name(r.error_code));
        assert_eq!(r.base_offset, self.leo(), "good produce v{version}: base offset");
        self.good.extend(records);
    }

    /// Produce `batch`, expect `want`, then check nothing was appended and a
    /// good produce still works.
    fn reject(&mut self, client: &mut Client, version: i16, case: &str, batch: Bytes, want: i16) {
        let before = client.log_end_offset(&self.topic, 0);
        assert_eq!(before, self.leo(), "{case}: log end before");
        let r = client.produce(version, &self.topic, 0, batch, -1);
        assert_eq!(
            r.error_code,
            want,
            "{case} (Produce v{version}): got {}, Kafka answers {}; message {:?}",
            error_name(r.error_code),
            error_name(want),
            r.error_message
        );
        assert_eq!(
            client.log_end_offset(&self.topic, 0),
            before,
            "{case} (Produce v{version}): a rejected batch changed the log end offset"
        );
        self.append_good(client, version);
    }

    fn verify_contents(&self, client: &mut Client) {
        let (records, hw) = client.fetch_all(FetchRequest::VERSIONS.max, &self.topic, 0, 0);
        assert_eq!(hw, self.leo(), "high watermark after all cases");
        assert_same_records(&records, &self.good, 0, "log after rejected produces");
    }
}

fn setup(name: &str) -> (Broker, Client, Log) {
    let broker = Broker::start(&[("message.max.bytes", MAX_MESSAGE_BYTES_STR)]);
    let mut client = broker.client();
    let topic = client.create_topic(name, 1);
    let mut log = Log {
        topic,
        good: Vec::new(),
        appends: 0,
    };
    log.append_good(&mut client, ProduceRequest::VERSIONS.max);
    (broker, client, log)
}

#[test]
fn corrupted_crc_is_corrupt_message() {
    let (_broker, mut client, mut log) = setup("val-crc");
    for version in PRODUCE_VERSIONS {
        for codec in [Compression::None, Compression::Lz4] {
            // A flipped payload byte: the stored CRC no longer matches.
            let mut bad = encode_batch(&test_records(3, "crc"), codec).to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0x5A;
            log.reject(
                &mut client,
                version,
                &format!("payload flip {codec:?}"),
                Bytes::from(bad),
                codes::CORRUPT_MESSAGE,
            );

            // A flipped CRC over an intact payload.
            let mut bad = encode_batch(&test_records(3, "crc2"), codec).to_vec();
            bad[fjord_tests::records::CRC_OFFSET] ^= 0x01;
            log.reject(
                &mut client,
                version,
                &format!("crc flip {codec:?}"),
                Bytes::from(bad),
                codes::CORRUPT_MESSAGE,
            );
        }
    }
    log.verify_contents(&mut client);
}

/// Kafka 4.x answers INVALID_RECORD, not UNSUPPORTED_FOR_MESSAGE_FORMAT or
/// CORRUPT_MESSAGE: `ProduceRequest.validateRecords` rejects any magic other
/// than 2 for Produce v3+ before the log (and LogValidator) sees it.
#[test]
fn magic_v1_batch_is_invalid_record() {
    let (_broker, mut client, mut log) = setup("val-magic");
    for version in PRODUCE_VERSIONS {
        let legacy = legacy_v1_message_set(b"legacy-key", b"legacy-value");
        log.reject(
            &mut client,
            version,
            "magic 1 message set",
            legacy,
            codes::INVALID_RECORD,
        );
    }
    log.verify_contents(&mut client);
}

#[test]
fn record_count_mismatch_is_invalid_record() {
    let (_broker, mut client, mut log) = setup("val-count");
    for version in PRODUCE_VERSIONS {
        // Count disagrees with lastOffsetDelta + 1 (LogValidator.validateBatch).
        let mut bad = encode_batch(&test_records(3, "count-a"), Compression::None).to_vec();
        put_i32_at(&mut bad, RECORDS_COUNT_OFFSET, 5);
        fix_crc(&mut bad);
        log.reject(
            &mut client,
            version,
            "count 5 != lastOffsetDelta+1 3",
            Bytes::from(bad),
            codes::INVALID_RECORD,
        );

        // Consistent header claiming 5 records over 3 (premature EOF).
        let mut bad = encode_batch(&test_records(3, "count-b"), Compression::None).to_vec();
        put_i32_at(&mut bad, RECORDS_COUNT_OFFSET, 5);
        put_i32_at(&mut bad, LAST_OFFSET_DELTA_OFFSET, 4);
        fix_crc(&mut bad);
        log.reject(
            &mut client,
            version,
            "5 declared, 3 present",
            Bytes::from(bad),
            codes::INVALID_RECORD,
        );

        // Consistent header claiming 2 records over 3 (records left over).
        let mut bad = encode_batch(&test_records(3, "count-c"), Compression::None).to_vec();
        put_i32_at(&mut bad, RECORDS_COUNT_OFFSET, 2);
        put_i32_at(&mut bad, LAST_OFFSET_DELTA_OFFSET, 1);
        fix_crc(&mut bad);
        log.reject(
            &mut client,
            version,
            "2 declared, 3 present",
            Bytes::from(bad),
            codes::INVALID_RECORD,
        );

        // Same over a compressed payload.
        let mut bad = encode_batch(&test_records(3, "count-d"), Compression::Gzip).to_vec();
        put_i32_at(&mut bad, RECORDS_COUNT_OFFSET, 5);
        put_i32_at(&mut bad, LAST_OFFSET_DELTA_OFFSET, 4);
        fix_crc(&mut bad);
        log.reject(
            &mut client,
            version,
            "gzip: 5 declared, 3 present",
            Bytes::from(bad),
            codes::INVALID_RECORD,
        );
    }
    log.verify_contents(&mut client);
}

/// Two batches in one partition's records: Produce v3+ allows exactly one.
#[test]
fn two_batches_in_one_partition_is_invalid_record() {
    let (_broker, mut client, mut log) = setup("val-two");
    for version in PRODUCE_VERSIONS {
        let mut both = encode_batch(&test_records(2, "two-a"), Compression::None).to_vec();
        both.extend_from_slice(&encode_batch(&test_records(2, "two-b"), Compression::None));
        log.reject(
            &mut client,
            version,
            "two batches",
            Bytes::from(both),
            codes::INVALID_RECORD,
        );
    }
    log.verify_contents(&mut client);
}

/// A single-record batch of exactly `size` bytes, by padding the value.
fn batch_of_exact_size(size: usize, tag: &str) -> Bytes {
    for value_len in (size.saturating_sub(200)..size).rev() {
        let batch = encode_batch(&records_with_value_len(1, tag, value_len), Compression::None);
        if batch.len() == size {
            return batch;
        }
    }
    panic!("no value length gives a {size}-byte batch");
}

#[test]
fn batch_over_message_max_bytes_is_message_too_large() {
    let (_broker, mut client, mut log) = setup("val-size");
    for version in PRODUCE_VERSIONS {
        // Kafka compares the whole batch (`sizeInBytes`, log overhead
        // included) with `>`: one byte over is rejected...
        let over = batch_of_exact_size(MAX_MESSAGE_BYTES + 1, "over");
        log.reject(
            &mut client,
            version,
            "batch of message.max.bytes + 1",
            over,
            codes::MESSAGE_TOO_LARGE,
        );
        let huge = encode_batch(&records_with_value_len(4, "huge", 20_000), Compression::None);
        log.reject(&mut client, version, "80 KB batch", huge, codes::MESSAGE_TOO_LARGE);

        // ...and exactly the limit is accepted.
        let exact = batch_of_exact_size(MAX_MESSAGE_BYTES, &format!("exact-v{version}"));
        let records = fjord_tests::decode_records(&exact).expect("decoding our own batch");
        let r = client.produce(version, &log.topic, 0, exact, -1);
        assert_eq!(
            r.error_code,
            0,
            "batch of exactly message.max.bytes: {}",
            error_name(r.error_code)
        );
        assert_eq!(r.base_offset, log.leo());
        log.good.extend(records);
    }
    // The size check comes before the CRC check, so an oversized corrupt
    // batch is MESSAGE_TOO_LARGE.
    let mut both = batch_of_exact_size(MAX_MESSAGE_BYTES + 1, "over-corrupt").to_vec();
    let last = both.len() - 1;
    both[last] ^= 0x5A;
    log.reject(
        &mut client,
        ProduceRequest::VERSIONS.max,
        "oversized and corrupt",
        Bytes::from(both),
        codes::MESSAGE_TOO_LARGE,
    );
    log.verify_contents(&mut client);
}

/// `batch` (one uncompressed batch) with its records section replaced by `section`, compressed
/// with `codec`; lengths and CRC fixed.
fn with_section(batch: &Bytes, codec: Compression, section: &[u8]) -> Bytes {
    let mut out = batch[..RECORDS_OFFSET].to_vec();
    out.extend_from_slice(section);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES).expect("small");
    put_i32_at(&mut out, BATCH_LENGTH_OFFSET, batch_length);
    let attributes = (i16::from_be_bytes([out[ATTRIBUTES_OFFSET], out[ATTRIBUTES_OFFSET + 1]]) & !7) | codec as i16;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    fix_crc(&mut out);
    Bytes::from(out)
}

/// Zigzag varint, as records encode their fields.
fn varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// The process's peak resident set (VmHWM): what a buffer freed right after use still shows.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// Compressed batches are checked as they decompress, as Kafka's LogValidator does: a few KiB
/// of zstd inflating to 256 MiB are accepted without the broker ever holding them, and a snappy
/// block declaring 4 GiB is refused before anything is allocated.
#[test]
fn inflating_batches_are_streamed_or_refused() {
    let (mut broker, mut client, mut log) = setup("val-inflate");
    let version = ProduceRequest::VERSIONS.max;
    let template = encode_batch(&test_records(1, "inflate"), Compression::None);

    let lying = with_section(&template, Compression::Snappy, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    log.reject(
        &mut client,
        version,
        "snappy block declaring 4 GiB",
        lying,
        codes::MESSAGE_TOO_LARGE,
    );

    // One record: null key, a 256 MiB value of zeros, no headers.
    const VALUE: usize = 256 << 20;
    let mut fields = vec![0u8]; // attributes
    fields.extend(varint(0)); // timestamp delta
    fields.extend(varint(0)); // offset delta
    fields.extend(varint(-1)); // key
    fields.extend(varint(VALUE as i64));
    let record_len = fields.len() + VALUE + 1;
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
    let mut write = |b: &[u8]| std::io::Write::write_all(&mut z, b).expect("zstd write");
    write(&varint(record_len as i64));
    write(&fields);
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..VALUE / zeros.len() {
        write(&zeros);
    }
    write(&varint(0)); // header count
    let section = z.finish().expect("zstd finish");
    let bomb = with_section(&template, Compression::Zstd, &section);
    assert!(bomb.len() < MAX_MESSAGE_BYTES, "{} bytes", bomb.len());

    let pid = broker.pid().expect("running");
    let before = peak_rss_kib(pid);
    let r = client.produce(version, &log.topic, 0, bomb, -1);
    assert_eq!(r.error_code, 0, "a large record is valid: {}", error_name(r.error_code));
    assert_eq!(r.base_offset, log.leo());
    let grew = peak_rss_kib(pid).saturating_sub(before);
    assert!(
        grew < 64 << 10,
        "broker peak RSS grew by {grew} KiB checking a 256 MiB record"
    );
    broker.assert_alive();
    assert_eq!(client.log_end_offset(&log.topic, 0), log.leo() + 1);
}
