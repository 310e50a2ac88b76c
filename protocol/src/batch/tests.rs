use super::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use proptest::prelude::*;

const NOW_MS: i64 = 1_700_000_000_000;

fn record(i: i64, key: Option<&[u8]>, value: Option<&[u8]>, ts: i64) -> Record {
    let mut headers = IndexMap::new();
    headers.insert(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v")));
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: i,
        // The encoder keeps records in one batch only while offset - sequence is constant.
        sequence: i as i32,
        timestamp: ts,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers,
        delete_horizon: false,
    }
}

pub(super) fn encode(records: &[Record], c: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: c,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts).expect("encodes");
    buf.freeze()
}

fn sample(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            record(
                i,
                Some(b"k"),
                if i % 3 == 0 { None } else { Some(b"value") },
                NOW_MS + i,
            )
        })
        .collect()
}

fn cfg() -> ValidationConfig {
    ValidationConfig {
        max_message_bytes: 1_048_588,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        target_codec: None,
        produce_version: 9,
        now_ms: NOW_MS,
        inflate_budget: None,
        require_keys: false,
    }
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn every_codec_validates_and_is_kept_as_sent() {
    for c in CODECS {
        let bytes = encode(&sample(10), c);
        let valid = validate_produce(bytes.clone(), &cfg()).expect("valid");
        assert_eq!(valid.bytes, bytes, "{c:?} batch must be stored as received");
        assert_eq!(valid.header.record_count, 10);
        assert_eq!(valid.header.max_timestamp, NOW_MS + 9);
        assert_eq!(valid.max_timestamp_offset_delta, 9);
        let found = find_record(&valid.bytes, |r| r.timestamp >= NOW_MS + 4).expect("walks");
        assert_eq!(
            found,
            Some(RecordStamp {
                offset_delta: 4,
                timestamp: NOW_MS + 4,
                has_key: true,
            })
        );
        assert_eq!(find_record(&valid.bytes, |r| r.offset_delta > 9), Ok(None));
    }
}

/// Every record's stamp, through the streaming walk.
fn all_stamps(batch: &Bytes) -> Vec<RecordStamp> {
    let mut out = Vec::new();
    let none = find_record(batch, |r| {
        out.push(*r);
        false
    });
    assert_eq!(none, Ok(None));
    out
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

/// A batch of `template`'s header around a records section compressed with `c`.
fn with_section(template: &Bytes, c: Compression, section: &[u8]) -> Bytes {
    let header = BatchHeader::parse(template).expect("header");
    let attributes = (header.attributes & !COMPRESSION_MASK) | c as i16;
    rebuild(template, attributes, header.max_timestamp, section).expect("rebuilds")
}

#[test]
fn a_record_inflating_past_the_memory_bound_is_walked_not_held() {
    // One record whose value is 300 MiB of zeros: a few KiB of zstd. Validation walks it as
    // it decompresses; only recompressing it would need it whole, and that is refused.
    const VALUE: usize = 300 << 20;
    let template = encode(&[record(0, None, Some(b"x"), NOW_MS)], Compression::None);
    let mut prefix = vec![0u8]; // attributes
    prefix.extend(varint(0)); // timestamp delta
    prefix.extend(varint(0)); // offset delta
    prefix.extend(varint(-1)); // null key
    prefix.extend(varint(VALUE as i64));
    let len = prefix.len() + VALUE + 1; // + the header count
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    std::io::Write::write_all(&mut z, &varint(len as i64)).expect("write");
    std::io::Write::write_all(&mut z, &prefix).expect("write");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..VALUE / zeros.len() {
        std::io::Write::write_all(&mut z, &zeros).expect("write");
    }
    std::io::Write::write_all(&mut z, &varint(0)).expect("write");
    let section = z.finish().expect("finish");
    assert!(section.len() < 1 << 20, "{} bytes compressed", section.len());
    let batch = with_section(&template, Compression::Zstd, &section);

    let valid = validate_produce(batch.clone(), &cfg()).expect("a large record is valid");
    assert_eq!(valid.bytes, batch);
    let first = find_record(&batch, |_| true).expect("walks");
    assert_eq!(first.map(|r| r.offset_delta), Some(0));

    let err = decompress(Compression::Zstd, Bytes::from(section)).expect_err("held whole");
    assert!(
        matches!(
            err,
            BatchError::TooLarge {
                max: MAX_INFLATED_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
    let recompress = ValidationConfig {
        target_codec: Some(Compression::Lz4),
        ..cfg()
    };
    let err = validate_produce(batch, &recompress).expect_err("recompressing needs it whole");
    assert_eq!(err.response_error(), ResponseError::MessageTooLarge);
}

#[test]
fn an_inflate_budget_stops_validation_by_what_comes_out_not_by_the_compressed_size() {
    // 4 MiB of zeros in one record: a few hundred bytes of zstd.
    let value = vec![0u8; 4 << 20];
    let records = [record(0, None, Some(&value), NOW_MS)];
    let batch = encode(&records, Compression::Zstd);
    assert!(batch.len() < 4 << 10, "{} bytes", batch.len());
    let budget = ValidationConfig {
        inflate_budget: Some(1 << 20),
        ..cfg()
    };
    let err = validate_produce(batch.clone(), &budget).expect_err("over the budget");
    assert!(matches!(err, BatchError::OverBudget(_)), "{err:?}");
    // The same with lz4 recompression, which holds the records whole.
    let recompress = ValidationConfig {
        target_codec: Some(Compression::Lz4),
        ..budget.clone()
    };
    assert!(matches!(
        validate_produce(batch.clone(), &recompress),
        Err(BatchError::OverBudget(_))
    ));
    // Without a budget it is valid; within a larger one too.
    validate_produce(batch.clone(), &cfg()).expect("valid");
    let roomy = ValidationConfig {
        inflate_budget: Some(8 << 20),
        ..cfg()
    };
    validate_produce(batch, &roomy).expect("valid within 8 MiB");
    // Uncompressed batches are not counted: their size is their cost (bounded by
    // max.message.bytes, raised here to let 4 MiB in).
    let plain = encode(&records, Compression::None);
    let large = ValidationConfig {
        max_message_bytes: 8 << 20,
        ..budget
    };
    validate_produce(plain, &large).expect("valid uncompressed");
}

#[test]
fn stored_batches_are_checked_by_length_magic_and_crc() {
    let batch = encode(&[record(0, Some(b"k"), Some(b"v"), NOW_MS)], Compression::None);
    let h = check_stored(&batch).expect("as produced");
    assert_eq!(h.record_count, 1);
    let mut flipped = batch.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(check_stored(&flipped), Err(BatchError::Corrupt(m)) if m.contains("CRC")));
    assert!(check_stored(&batch[..batch.len() - 1]).is_err(), "short by a byte");
    assert!(check_stored(&batch[..30]).is_err(), "a torn header");
    let mut magic = batch.to_vec();
    magic[MAGIC_AT] = 1;
    assert!(check_stored(&magic).is_err());
}

#[test]
fn snappy_blocks_are_bounded_before_allocation() {
    let template = encode(&sample(3), Compression::None);
    // A raw snappy block declaring 4 GiB - 1 uncompressed bytes.
    let lying = with_section(&template, Compression::Snappy, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    let err = validate_produce(lying, &cfg()).expect_err("declared too large");
    assert!(matches!(err, BatchError::TooLarge { .. }), "{err:?}");
    // The same in snappy-java's framing, and a block whose data ends early.
    let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    framed.extend(7u32.to_be_bytes());
    framed.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    let err = validate_produce(with_section(&template, Compression::Snappy, &framed), &cfg()).expect_err("framed");
    assert!(matches!(err, BatchError::TooLarge { .. }), "{err:?}");
    framed.truncate(framed.len() - 3);
    let err = validate_produce(with_section(&template, Compression::Snappy, &framed), &cfg()).expect_err("short");
    assert!(matches!(err, BatchError::Corrupt(_)), "{err:?}");
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_validates() {
    let template = encode(&sample(10), Compression::None);
    let section = &template[BATCH_HEADER_BYTES..];
    let raw = snap::raw::Encoder::new().compress_vec(section).expect("snappy");
    let batch = with_section(&template, Compression::Snappy, &raw);
    let valid = validate_produce(batch.clone(), &cfg()).expect("valid");
    assert_eq!(valid.bytes, batch);
    assert_eq!(valid.max_timestamp_offset_delta, 9);
    assert_eq!(
        decompress(Compression::Snappy, Bytes::from(raw)).expect("inflates"),
        section
    );
}

#[test]
fn gzip_in_two_members_validates_as_java_reads_it() {
    let template = encode(&sample(10), Compression::None);
    let section = &template[BATCH_HEADER_BYTES..];
    let mut gz = Vec::new();
    for half in [&section[..section.len() / 2], &section[section.len() / 2..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, half).expect("gzip");
        gz.extend(e.finish().expect("gzip"));
    }
    let batch = with_section(&template, Compression::Gzip, &gz);
    let valid = validate_produce(batch, &cfg()).expect("valid");
    assert_eq!(all_stamps(&valid.bytes).len(), 10);
}

#[test]
fn crc_mismatch_is_corrupt_message() {
    let mut bytes = encode(&sample(3), Compression::None).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let err = validate_produce(Bytes::from(bytes), &cfg()).expect_err("corrupt");
    assert!(matches!(err, BatchError::Corrupt(_)), "{err:?}");
    assert_eq!(err.response_error().code(), 2);
}

#[test]
fn magic_one_and_two_batches_are_invalid_record() {
    let mut bytes = encode(&sample(3), Compression::None).to_vec();
    bytes[MAGIC_AT] = 1;
    let err = validate_produce(Bytes::from(bytes), &cfg()).expect_err("magic");
    assert_eq!(err.response_error().code(), 87);

    let one = encode(&sample(2), Compression::None);
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    let err = validate_produce(Bytes::from(two), &cfg()).expect_err("two batches");
    assert_eq!(err.response_error().code(), 87);
}

#[test]
fn count_mismatch_and_trailing_bytes_are_refused() {
    let bytes = encode(&sample(3), Compression::None);
    // Claim 4 records: lastOffsetDelta no longer matches.
    let mut claimed = bytes.to_vec();
    claimed[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&4i32.to_be_bytes());
    let crc = crc32c::crc32c(&claimed[CRC_COVERS_FROM..]);
    claimed[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let err = validate_produce(Bytes::from(claimed), &cfg()).expect_err("count");
    assert!(matches!(err, BatchError::InvalidRecord(_)), "{err:?}");

    // Claim 2 records with a matching lastOffsetDelta: a record is left over.
    let mut short = bytes.to_vec();
    short[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&2i32.to_be_bytes());
    short[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&short[CRC_COVERS_FROM..]);
    short[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let err = validate_produce(Bytes::from(short), &cfg()).expect_err("trailing");
    assert!(matches!(err, BatchError::InvalidRecord(_)), "{err:?}");
}

#[test]
fn oversized_batch_is_message_too_large() {
    let big = vec![7u8; 5000];
    let bytes = encode(&[record(0, None, Some(&big), NOW_MS)], Compression::None);
    let mut c = cfg();
    c.max_message_bytes = 4000;
    let err = validate_produce(bytes, &c).expect_err("too large");
    assert_eq!(err.response_error().code(), 10);
}

#[test]
fn zstd_needs_produce_v7_and_future_timestamps_are_refused() {
    let mut c = cfg();
    c.produce_version = 6;
    let err = validate_produce(encode(&sample(2), Compression::Zstd), &c).expect_err("zstd v6");
    assert_eq!(err.response_error().code(), 76);
    let future = encode(&[record(0, None, Some(b"x"), NOW_MS + 7_200_000)], Compression::None);
    let err = validate_produce(future, &cfg()).expect_err("future");
    assert_eq!(err.response_error().code(), 32);
}

#[test]
fn topic_codec_recompresses_and_clients_decode_it() {
    for from in CODECS {
        for to in CODECS {
            let records = sample(20);
            let mut c = cfg();
            c.target_codec = Some(to);
            let valid = validate_produce(encode(&records, from), &c).expect("valid");
            assert_eq!(valid.header.compression().expect("codec"), to);
            let mut buf = valid.bytes.clone();
            let decoded = RecordBatchDecoder::decode(&mut buf).expect("client decodes");
            assert_eq!(decoded.records.len(), 20);
            for (a, b) in decoded.records.iter().zip(&records) {
                assert_eq!((&a.key, &a.value, a.timestamp), (&b.key, &b.value, b.timestamp));
                assert_eq!(a.headers, b.headers);
            }
        }
    }
}

#[test]
fn log_append_time_stamps_the_batch() {
    let mut c = cfg();
    c.timestamp_type = TimestampType::LogAppendTime;
    c.now_ms = NOW_MS + 555;
    let valid = validate_produce(encode(&sample(4), Compression::Lz4), &c).expect("valid");
    assert!(valid.header.is_log_append_time());
    assert_eq!(valid.header.max_timestamp, NOW_MS + 555);
    let stamps = all_stamps(&valid.bytes);
    assert!(stamps.iter().all(|s| s.timestamp == NOW_MS + 555));
}

#[test]
fn patching_offsets_keeps_the_crc_valid() {
    let bytes = encode(&sample(5), Compression::Snappy);
    let mut stored = bytes.to_vec();
    patch_base_offset_and_epoch(&mut stored, 1234, 7);
    let mut buf = Bytes::from(stored);
    let decoded = RecordBatchDecoder::decode(&mut buf).expect("crc still valid");
    assert_eq!(decoded.records[0].offset, 1234);
    assert_eq!(decoded.records[4].offset, 1238);
    assert_eq!(decoded.records[0].partition_leader_epoch, 7);
}

#[test]
fn split_batches_refuses_truncation() {
    let one = encode(&sample(2), Compression::None);
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    assert_eq!(split_batches(Bytes::from(two.clone())).expect("two").len(), 2);
    two.truncate(two.len() - 1);
    assert!(split_batches(Bytes::from(two)).is_err());
}

proptest! {
    // Property: any records the reference encoder writes validate, and our walk reads back
    // the same timestamps in order, for every codec.
    #[test]
    fn encoder_output_always_validates(
        values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)), 1..20),
        ts_steps in proptest::collection::vec(0i64..1000, 20),
        codec_ix in 0usize..5,
    ) {
        let mut ts = NOW_MS - 10_000;
        let records: Vec<Record> = values.iter().enumerate().map(|(i, v)| {
            ts += ts_steps[i];
            record(i as i64, None, v.as_deref(), ts)
        }).collect();
        let bytes = encode(&records, CODECS[codec_ix]);
        let valid = validate_produce(bytes, &cfg()).expect("valid");
        let stamps = all_stamps(&valid.bytes);
        prop_assert_eq!(stamps.len(), records.len());
        for (s, r) in stamps.iter().zip(&records) {
            prop_assert_eq!(s.timestamp, r.timestamp);
        }
    }

    // Property: flipping any byte of a valid batch is refused or still valid, never a panic.
    #[test]
    fn mutated_batches_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), codec_ix in 0usize..5) {
        let mut bytes = encode(&sample(5), CODECS[codec_ix]).to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let bytes = Bytes::from(bytes);
        let _ = validate_produce(bytes.clone(), &cfg());
        let _ = find_record(&bytes, |_| false);
    }
}

#[test]
fn control_batches_decode_as_kafka_markers() {
    let b = super::control_batch(42, 3, true, 7, 1_700_000_000_000);
    let h = BatchHeader::parse(&b).expect("parses");
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.producer_id, h.producer_epoch, h.record_count), (42, 3, 1));
    assert_eq!(h.size_bytes(), b.len());
    let mut buf = b.clone();
    let batches = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).expect("the crate decodes it");
    let r = &batches[0].records[0];
    assert!(r.control && r.transactional);
    assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
    assert_eq!(r.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
}

#[test]
fn control_marker_reads_back_what_control_batch_wrote() {
    let commit = control_batch(7, 3, true, 42, 1000);
    assert_eq!(control_marker(&commit), Some((true, 42)));
    let abort = control_batch(7, 3, false, 5, 1000);
    assert_eq!(control_marker(&abort), Some((false, 5)));
    assert_eq!(control_marker(&commit[..BATCH_HEADER_BYTES + 3]), None);
    let mut data = commit.to_vec();
    data[21..23].copy_from_slice(&0i16.to_be_bytes()); // attributes: not a control batch
    assert_eq!(control_marker(&data), None);
}

#[test]
fn a_compacted_topic_refuses_a_record_without_a_key() {
    let compacted = ValidationConfig {
        require_keys: true,
        ..cfg()
    };
    for c in CODECS {
        assert!(
            validate_produce(encode(&sample(5), c), &compacted).is_ok(),
            "{c:?}: keyed records"
        );
        let mut records = sample(5);
        records[3].key = None;
        match validate_produce(encode(&records, c), &compacted) {
            Err(BatchError::InvalidRecord(m)) => {
                assert!(m.contains("without key (record 3"), "{c:?}: {m}")
            }
            other => panic!("{c:?}: {other:?}"),
        }
        assert!(
            validate_produce(encode(&records, c), &cfg()).is_ok(),
            "{c:?}: a keyless record elsewhere"
        );
    }
}
