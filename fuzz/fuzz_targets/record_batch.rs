#![no_main]
use fjord_protocol::batch::{record_stamps, validate_produce, TimestampType, ValidationConfig};

// Any produced records must validate or be refused; never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    let cfg = ValidationConfig {
        max_message_bytes: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        target_codec: None,
        produce_version: 9,
        now_ms: 0,
    };
    let _ = validate_produce(records.clone(), &cfg);
    let _ = record_stamps(&records);
});
