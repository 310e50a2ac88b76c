#![no_main]
// Any frame body must decode or be refused; never panic, never abort.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fjord_protocol::frame::decode_request(bytes::Bytes::copy_from_slice(data), |k| Some(k.valid_versions()));
});
