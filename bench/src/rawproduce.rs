//! `produce-raw`: the broker's own produce ceiling, with a client that costs next to nothing.
//!
//! librdkafka spends ~1.2-1.5 CPU seconds per GB of 1 KiB records (copying, batching, delivery
//! reports). On a machine whose cores the client shares with the broker, that holds any broker
//! near 1 GB/s, so the `produce` scenario cannot show how close a broker gets to the disk's
//! write limit. This scenario encodes one record batch (v2, `--records-per-batch` records of
//! `--record-size` bytes, uncompressed, no producer id) once and sends it over and over in
//! Produce v7 requests, one batch per request, partitions in turn, over `--connections`
//! sockets with `--in-flight` requests outstanding on each. Every response is read and its
//! error code checked: only acknowledged batches count, anything else is an error.
//!
//! Throughput is acknowledged payload bytes over the time from the first send to the last
//! response. The records are what a producer of 1 KiB records would send; the client is
//! not a real one, so this is the broker's figure, not an application's.

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use crate::client;
use crate::result::ScenarioResult;
use crate::{wire, Common};

const PRODUCE_KEY: i16 = 0;
/// The last non-flexible Produce version with the v3+ record batch format; Kafka 4.x and Fjord
/// both serve it.
const PRODUCE_VERSION: i16 = 7;
/// Largest response accepted: a one-partition Produce v7 answer is a few dozen bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 16;

#[derive(Args, Debug, Clone, Serialize)]
pub struct RawProduceArgs {
    /// Topic to create (and delete afterwards unless --keep-topic).
    #[arg(long, default_value = "fjord-bench-produce-raw")]
    pub topic: String,
    /// Partitions of the topic (replicated as `--replication-factor` says). requests go to them in turn.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Records to send in all (rounded up to whole batches).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub records: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    pub record_size: u64,
    /// Records per batch; the batch must stay under the broker's message.max.bytes (1 MB).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub records_per_batch: u64,
    /// Sockets, each with its own sending and receiving thread.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub connections: u32,
    /// Requests outstanding per socket (librdkafka's max.in.flight is 5 with idempotence).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub in_flight: u32,
    /// Produce acks.
    #[arg(long, default_value = "all", value_parser = ["1", "all", "-1"])]
    pub acks: String,
}

pub fn run(c: &Common, a: &RawProduceArgs, r: &mut ScenarioResult) -> Result<(), String> {
    client::with_fresh_topic(c, &a.topic, a.partitions, r, |r| produce(c, a, r))
}

fn produce(c: &Common, a: &RawProduceArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let batch = record_batch(a.records_per_batch as usize, a.record_size as usize, now_ms);
    let batches = a.records.div_ceil(a.records_per_batch);
    let acks: i16 = if a.acks == "1" { 1 } else { -1 };
    wait_for_leaders(c, a, &record_batch(1, a.record_size as usize, now_ms), acks)?;
    let per_conn = batches.div_ceil(u64::from(a.connections));
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..u64::from(a.connections) {
        let n = per_conn.min(batches.saturating_sub(i * per_conn));
        if n == 0 {
            break;
        }
        let conn = TcpStream::connect(&c.bootstrap).map_err(|e| format!("connect {}: {e}", c.bootstrap))?;
        let _ = conn.set_nodelay(true);
        let (topic, batch, partitions) = (a.topic.clone(), batch.clone(), a.partitions);
        let (in_flight, deadline) = (a.in_flight as usize, c.deadline);
        workers.push(std::thread::spawn(move || {
            send_and_ack(conn, &topic, partitions, i as i32, &batch, n, acks, in_flight, deadline)
        }));
    }
    let (mut acked, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    for w in workers {
        match w.join() {
            Ok(Ok((ok, bad, err))) => {
                acked += ok;
                failed += bad;
                first_error = first_error.or(err);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a sending thread panicked".into()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let records = acked * a.records_per_batch;
    r.set_throughput(records, records * a.record_size, secs);
    r.errors += failed;
    r.metric("batch_bytes", batch.len() as f64);
    if let Some(e) = first_error {
        r.note(format!("{failed} batches not acknowledged; the first: {e}"));
    }
    if c.deadline <= Instant::now() {
        r.note("stopped at --max-s");
    }
    Ok(())
}

/// Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after a topic appears in Metadata, and a
/// real producer retries. Untimed, one single-record batch per partition until it is
/// acknowledged, so the measured phase starts with every partition ready.
fn wait_for_leaders(c: &Common, a: &RawProduceArgs, probe: &[u8], acks: i16) -> Result<(), String> {
    /// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER.
    const NOT_READY: [i16; 3] = [3, 5, 6];
    let mut conn = wire::Conn::connect(&c.bootstrap, Duration::from_secs(30))?;
    let until = Instant::now() + Duration::from_secs(30);
    for p in 0..a.partitions {
        loop {
            let body = produce_body(&a.topic, p, probe, acks);
            match produce_error(&conn.call(PRODUCE_KEY, PRODUCE_VERSION, &body)?)? {
                0 => break,
                code if NOT_READY.contains(&code) && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                code => return Err(format!("partition {p} not writable: error code {code}")),
            }
        }
    }
    Ok(())
}

/// Sends `n` requests on `conn` with at most `in_flight` unanswered; returns the batches
/// acknowledged, the batches refused, and the first refusal.
#[allow(clippy::too_many_arguments)]
fn send_and_ack(
    conn: TcpStream,
    topic: &str,
    partitions: i32,
    first_partition: i32,
    batch: &[u8],
    n: u64,
    acks: i16,
    in_flight: usize,
    deadline: Instant,
) -> Result<(u64, u64, Option<String>), String> {
    let mut reader = conn.try_clone().map_err(|e| format!("socket: {e}"))?;
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = credit_tx.send(());
    }
    let sender = {
        let (topic, batch) = (topic.to_string(), batch.to_vec());
        let mut conn = conn;
        std::thread::spawn(move || -> Result<u64, String> {
            let mut sent = 0u64;
            while sent < n && Instant::now() < deadline {
                if credit_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                    return Err("no Produce response for 60 s".into());
                }
                let partition = (first_partition + sent as i32) % partitions;
                let body = produce_body(&topic, partition, &batch, acks);
                let req = wire::request(PRODUCE_KEY, PRODUCE_VERSION, sent as i32, &body);
                conn.write_all(&req).map_err(|e| format!("send: {e}"))?;
                sent += 1;
            }
            Ok(sent)
        })
    };
    let joined = |h: std::thread::JoinHandle<Result<u64, String>>| match h.join() {
        Ok(sent) => sent,
        Err(_) => Err("the sending thread panicked".to_string()),
    };
    let (mut ok, mut bad, mut first_error) = (0u64, 0u64, None);
    let mut answered = 0u64;
    // The sender may stop early at the deadline; once it ends, it says how many it sent.
    let (mut sender, mut target) = (Some(sender), n);
    while answered < target {
        let (_, body) = wire::read_response(&mut reader, MAX_RESPONSE_BYTES)?;
        answered += 1;
        match produce_error(&body) {
            Ok(0) => ok += 1,
            Ok(code) => {
                bad += 1;
                first_error.get_or_insert(format!("error code {code}"));
            }
            Err(e) => return Err(format!("Produce response: {e}")),
        }
        let _ = credit_tx.try_send(());
        if let Some(h) = sender.take_if(|h| h.is_finished()) {
            target = joined(h)?;
        }
    }
    if let Some(h) = sender {
        joined(h)?;
    }
    Ok((ok, bad, first_error))
}

/// The partition error code of a one-topic, one-partition Produce v7 response body.
fn produce_error(body: &[u8]) -> Result<i16, String> {
    let mut r = wire::Reader::new(body);
    let topics = r.array_len()?;
    if topics != 1 {
        return Err(format!("{topics} topics in the response"));
    }
    r.skip_string()?;
    let parts = r.array_len()?;
    if parts != 1 {
        return Err(format!("{parts} partitions in the response"));
    }
    r.i32()?; // partition index
    r.i16()
}

/// The body of a Produce v7 request for one batch on one partition.
fn produce_body(topic: &str, partition: i32, batch: &[u8], acks: i16) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.len() + topic.len() + 32);
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional_id: null
    body.extend_from_slice(&acks.to_be_bytes());
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout_ms
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    body
}

/// A v2 record batch of `count` records with `size`-byte values (no keys, no headers),
/// timestamps `now_ms`, no producer id: what a plain producer sends uncompressed.
pub fn record_batch(count: usize, size: usize, now_ms: i64) -> Vec<u8> {
    let mut records = Vec::with_capacity(count * (size + 16));
    let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    for i in 0..count {
        let mut rec = Vec::with_capacity(size + 16);
        rec.push(0); // attributes
        put_varint(&mut rec, 0); // timestamp delta
        put_varint(&mut rec, i as i64); // offset delta
        put_varint(&mut rec, -1); // no key
        put_varint(&mut rec, size as i64);
        rec.extend_from_slice(&value);
        put_varint(&mut rec, 0); // no headers
        put_varint(&mut records, rec.len() as i64);
        records.extend_from_slice(&rec);
    }
    // From attributes to the end: what the CRC covers.
    let mut tail = Vec::with_capacity(records.len() + 40);
    tail.extend_from_slice(&0i16.to_be_bytes()); // attributes: no codec, CreateTime
    tail.extend_from_slice(&(count as i32 - 1).to_be_bytes()); // last offset delta
    tail.extend_from_slice(&now_ms.to_be_bytes()); // base timestamp
    tail.extend_from_slice(&now_ms.to_be_bytes()); // max timestamp
    tail.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    tail.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    tail.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    tail.extend_from_slice(&(count as i32).to_be_bytes());
    tail.extend_from_slice(&records);
    let mut batch = Vec::with_capacity(tail.len() + 21);
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset: the broker assigns it
    batch.extend_from_slice(&((tail.len() + 9) as i32).to_be_bytes()); // epoch + magic + crc + tail
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);
    batch
}

/// Zigzag varint, as record fields are encoded.
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// CRC-32C (Castagnoli), bitwise: computed once per run, so speed does not matter.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn batch_header_describes_its_records() {
        let b = record_batch(3, 10, 1_700_000_000_000);
        assert_eq!(
            i32::from_be_bytes(b[8..12].try_into().expect("4 bytes")) as usize,
            b.len() - 12
        );
        assert_eq!(b[16], 2, "magic");
        assert_eq!(
            u32::from_be_bytes(b[17..21].try_into().expect("4 bytes")),
            crc32c(&b[21..])
        );
        assert_eq!(
            i32::from_be_bytes(b[57..61].try_into().expect("4 bytes")),
            3,
            "record count"
        );
    }

    #[test]
    fn produce_error_reads_the_partition_code() {
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(b"tt");
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&10i16.to_be_bytes());
        body.extend_from_slice(&[0u8; 24]);
        assert_eq!(produce_error(&body), Ok(10));
        assert!(produce_error(&body[..9]).is_err());
    }
}
