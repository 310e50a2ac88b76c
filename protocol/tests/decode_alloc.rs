//! A length prefix claiming billions of elements must not make the decoder reserve memory for
//! them: every pre-allocation is capped by the bytes left in the frame, counted in bytes, not
//! elements (an element in memory can be a hundred times its size on the wire).
//!
//! The allocator counts what is asked of it, reserved memory included (overcommit would hide it
//! from the resident size); this binary has one test so nothing else allocates meanwhile.

use std::alloc::System;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes of junk after each huge count: what a 64 MiB frame leaves to decode.
const LEFT: usize = 64 << 20;

/// Decodes with `decode`, which must fail, and returns the bytes allocated meanwhile.
fn allocated_by<T>(decode: impl FnOnce() -> anyhow::Result<T>) -> usize {
    let region = Region::new(ALLOCATOR);
    assert!(decode().is_err(), "a truncated frame decodes");
    region.change().bytes_allocated
}

fn junk(buf: &mut BytesMut) {
    // 0xff never ends a varint and reads as -1 where a length is expected: the first element
    // fails to decode.
    buf.put_bytes(0xff, LEFT);
}

fn varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8(z as u8 | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

/// A v2 record batch (uncompressed) claiming `count` records, `records` being what follows.
fn batch(count: i32, records: &[u8]) -> Bytes {
    let mut rest = BytesMut::new();
    rest.put_i16(0); // attributes
    rest.put_i32(0); // last offset delta
    rest.put_i64(0); // first timestamp
    rest.put_i64(0); // max timestamp
    rest.put_i64(-1); // producer id
    rest.put_i16(-1); // producer epoch
    rest.put_i32(-1); // base sequence
    rest.put_i32(count);
    rest.put_slice(records);
    let mut buf = BytesMut::new();
    buf.put_i64(0); // base offset
    buf.put_i32((4 + 1 + 4 + rest.len()) as i32);
    buf.put_i32(0); // partition leader epoch
    buf.put_i8(2); // magic
    buf.put_u32(crc32c::crc32c(&rest));
    buf.put_slice(&rest);
    buf.freeze()
}

#[test]
fn huge_counts_reserve_no_more_than_the_bytes_left() {
    let limit = 2 * LEFT;
    eprintln!(
        "in memory: CreatableTopic {} bytes, Record {} bytes",
        std::mem::size_of::<CreatableTopic>(),
        std::mem::size_of::<Record>()
    );

    // Array (v4): an i32 count.
    let mut frame = BytesMut::new();
    frame.put_i32(i32::MAX);
    junk(&mut frame);
    let mut frame = frame.freeze();
    let allocated = allocated_by(|| CreateTopicsRequest::decode(&mut frame, 4));
    assert!(allocated < limit, "Array: {} MiB allocated", allocated >> 20);

    // CompactArray (v5): an unsigned varint count plus one.
    let mut frame = BytesMut::new();
    frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    junk(&mut frame);
    let mut frame = frame.freeze();
    let allocated = allocated_by(|| CreateTopicsRequest::decode(&mut frame, 5));
    assert!(allocated < limit, "CompactArray: {} MiB allocated", allocated >> 20);

    // A record batch's record count.
    let mut records = BytesMut::new();
    junk(&mut records);
    let mut frame = batch(i32::MAX, &records);
    drop(records);
    let allocated = allocated_by(|| RecordBatchDecoder::decode(&mut frame));
    assert!(allocated < limit, "records: {} MiB allocated", allocated >> 20);

    // A record's header count.
    let mut record = BytesMut::new();
    record.put_i8(0); // attributes
    varint(&mut record, 0); // timestamp delta
    varint(&mut record, 0); // offset delta
    varint(&mut record, -1); // no key
    varint(&mut record, -1); // no value
    varint(&mut record, i32::MAX.into()); // header count
    junk(&mut record);
    let mut sized = BytesMut::new();
    varint(&mut sized, record.len() as i64);
    sized.put_slice(&record);
    drop(record);
    let mut frame = batch(1, &sized);
    drop(sized);
    let allocated = allocated_by(|| RecordBatchDecoder::decode(&mut frame));
    assert!(allocated < limit, "headers: {} MiB allocated", allocated >> 20);
}
