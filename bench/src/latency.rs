//! `latency`: end-to-end latency at a fixed offered rate. One producer sends `--rate` records
//! a second for `--duration-s`; a consumer, assigned to every partition at the offsets that
//! were the end before the first send, reads them back in the same process. Each record
//! carries its *intended* send time (record n is due at n / rate), so a stalled producer or
//! broker shows up as latency instead of silently lowering the rate (no coordinated
//! omission). Pacing sleeps add up to ~0.1 ms of that.
//!
//! Records intended during the first `--warmup-s` are read and counted but not put in the
//! histogram: they include connection setup and the consumer's first fetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{self, Ctx, PayloadKind, PayloadPool, ProduceCtx, ProducerSettings};
use crate::result::{self, Latency, ScenarioResult};
use crate::Common;

/// Marks a record as this tool's latency probe.
const MAGIC: &[u8; 4] = b"FJBL";
/// MAGIC, then the sequence number and the intended send time (ns since the run's base
/// instant), both big-endian u64.
const HEADER_BYTES: usize = 20;
/// After the last send, how long the consumer may take to read what is still in flight.
const DRAIN_S: u64 = 10;
/// Records one run may send (rate x duration): bounds the duplicate-tracking bitmap to 12.5 MB.
const MAX_RECORDS: u64 = 100_000_000;

#[derive(Args, Debug, Clone, Serialize)]
pub struct LatencyArgs {
    #[arg(long, default_value = "fjord-bench-latency")]
    pub topic: String,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Offered load in records per second.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_s: u64,
    /// Payload bytes per record (at least the 20-byte probe header).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(24..=(1 << 20)))]
    pub record_size: u64,
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub codec: String,
    /// Producer linger.ms. 1 ms, as the OpenMessaging Benchmark uses: with 0 every record
    /// becomes its own Produce request and the scenario measures request rate instead.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub linger_ms: u64,
    /// Consumer fetch.wait.max.ms: how long the broker may hold an empty fetch. A broker that
    /// answers a waiting fetch as soon as data arrives is not slowed by a larger value.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=5000))]
    pub fetch_wait_max_ms: u64,
    /// Seconds at the start whose records are not put in the histogram.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup_s: u64,
}

/// Encodes the probe header into the first bytes of `buf`.
fn put_header(buf: &mut [u8], seq: u64, intended_ns: u64) {
    buf[..4].copy_from_slice(MAGIC);
    buf[4..12].copy_from_slice(&seq.to_be_bytes());
    buf[12..20].copy_from_slice(&intended_ns.to_be_bytes());
}

/// (sequence, intended ns) of a probe record; `None` for anything else.
fn read_header(payload: &[u8]) -> Option<(u64, u64)> {
    let h = payload.get(..HEADER_BYTES)?;
    if &h[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(h[4..12].try_into().ok()?);
    let intended = u64::from_be_bytes(h[12..20].try_into().ok()?);
    Some((seq, intended))
}

/// When record `seq` is due, in ns after the base instant (rounded up, so a record is never
/// sent before its time).
fn intended_ns(seq: u64, rate: u64) -> u64 {
    // u128: seq * 1e9 overflows u64 past 1.8e10 records.
    (u128::from(seq) * 1_000_000_000).div_ceil(u128::from(rate)) as u64 // < duration_s * 1e9
}

/// How many records are due `elapsed_ns` after the base instant: those whose intended time has
/// come (record 0 is due at once).
fn due_by(elapsed_ns: u128, rate: u64, total: u64) -> u64 {
    (elapsed_ns * u128::from(rate) / 1_000_000_000 + 1).min(u128::from(total)) as u64
    // <= total
}

/// What the consumer thread saw.
#[derive(Default)]
struct Consumed {
    unique: u64,
    duplicates: u64,
    foreign: u64,
    errors: u64,
    first_error: Option<String>,
    histogram: Option<hdrhistogram::Histogram<u64>>,
}

pub fn run(c: &Common, a: &LatencyArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let total = a.rate * a.duration_s;
    if total > MAX_RECORDS {
        return Err(format!(
            "rate x duration = {total} records; at most {MAX_RECORDS} per run"
        ));
    }
    if a.warmup_s >= a.duration_s {
        return Err("--warmup-s must be shorter than --duration-s".into());
    }
    client::with_fresh_topic(c, &a.topic, a.partitions, r, |r| measure(c, a, total, r))
}

fn measure(c: &Common, a: &LatencyArgs, total: u64, r: &mut ScenarioResult) -> Result<(), String> {
    let settings = ProducerSettings {
        acks: a.acks.clone(),
        linger_ms: a.linger_ms,
        batch_bytes: 1 << 20,
        codec: a.codec.clone(),
        idempotent: false,
    };
    let producer: BaseProducer<ProduceCtx> = client::producer_config(&c.bootstrap, &settings)
        .create_with_context(ProduceCtx::new(c.log.clone()))
        .map_err(|e| format!("producer: {e}"))?;
    producer
        .client()
        .fetch_metadata(Some(&a.topic), Duration::from_secs(10))
        .map_err(|e| format!("producer metadata: {e}"))?;
    let consumer: BaseConsumer<Ctx> = client::consumer_config(&c.bootstrap, a.fetch_wait_max_ms, 50 << 20)
        .create_with_context(Ctx { log: c.log.clone() })
        .map_err(|e| format!("consumer: {e}"))?;
    // Explicit offsets: the end of each partition before the first send, so the consumer
    // reads exactly this run's records however late its first fetch happens.
    let mut tpl = TopicPartitionList::new();
    for p in 0..a.partitions {
        let (_, high) = consumer
            .fetch_watermarks(&a.topic, p, Duration::from_secs(10))
            .map_err(|e| format!("ListOffsets: {e}"))?;
        tpl.add_partition_offset(&a.topic, p, Offset::Offset(high))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;

    let pool = PayloadPool::new(PayloadKind::Alphanumeric, a.record_size as usize, 0x1A7E);
    let expected = AtomicU64::new(u64::MAX); // set once the producer knows what was delivered
    let drain_until_ns = AtomicU64::new(u64::MAX);
    let base = Instant::now();
    let warmup_ns = a.warmup_s * 1_000_000_000;
    let (consumed, sent, send_elapsed, capped) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            consume(
                &consumer,
                base,
                warmup_ns,
                total,
                &expected,
                &drain_until_ns,
                c.deadline,
            )
        });
        let (sent, capped) = send_paced(&producer, a, total, &pool, base, c.deadline);
        let send_elapsed = base.elapsed();
        let remaining = c.deadline.saturating_duration_since(Instant::now());
        let _ = producer.flush(remaining.min(Duration::from_secs(client::MESSAGE_TIMEOUT_MS / 1000 + 5)));
        expected.store(producer.context().delivered.load(Ordering::Relaxed), Ordering::Relaxed);
        drain_until_ns.store(
            (base.elapsed() + Duration::from_secs(DRAIN_S)).as_nanos() as u64,
            Ordering::Relaxed,
        );
        let consumed = reader.join().unwrap_or_default();
        (consumed, sent, send_elapsed, capped)
    });

    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let undelivered = sent.saturating_sub(delivered + failed);
    let missing = delivered.saturating_sub(consumed.unique);
    r.set_throughput(
        consumed.unique,
        consumed.unique * a.record_size,
        send_elapsed.as_secs_f64(),
    );
    r.errors += failed + undelivered + missing + consumed.errors;
    r.metric("target_records_per_s", a.rate as f64);
    r.metric(
        "achieved_send_records_per_s",
        result::per_s(sent as f64, send_elapsed.as_secs_f64()),
    );
    r.metric("sent_records", sent as f64);
    r.metric("delivered_records", delivered as f64);
    r.metric("missing_records", missing as f64);
    r.metric("duplicate_records", consumed.duplicates as f64);
    if let Ok(f) = ctx.failures.lock() {
        for (e, n) in f.iter() {
            r.note(format!("{n} x {e}"));
        }
    }
    if capped {
        r.note(format!(
            "stopped at the --max-s cap after sending {sent} of {total} records"
        ));
    }
    if undelivered > 0 {
        r.note(format!(
            "{undelivered} records had no delivery report when the run ended"
        ));
    }
    if missing > 0 {
        r.note(format!(
            "{missing} delivered records were not read back within {DRAIN_S} s"
        ));
    }
    if consumed.duplicates > 0 {
        r.note(format!(
            "{} records were read twice (producer retries without idempotence)",
            consumed.duplicates
        ));
    }
    if consumed.foreign > 0 {
        r.note(format!(
            "{} records on the topic were not this run's probes",
            consumed.foreign
        ));
    }
    if let Some(e) = consumed.first_error {
        r.note(format!("{} consumer errors (first: {e})", consumed.errors));
    }
    match consumed.histogram.filter(|h| !h.is_empty()) {
        Some(h) => {
            r.latency_ms = Some(Latency::from_histogram_us(&h));
            r.latency_curve_ms = result::curve_from_histogram_us(&h);
            r.metric("histogram_records", h.len() as f64);
        }
        None => r.note("no record after the warm-up was read back: no latency to report"),
    }
    Ok(())
}

/// Sends `total` probe records at `a.rate`; returns (records sent, capped by the deadline).
fn send_paced(
    p: &BaseProducer<ProduceCtx>,
    a: &LatencyArgs,
    total: u64,
    pool: &PayloadPool,
    base: Instant,
    deadline: Instant,
) -> (u64, bool) {
    let mut buf = Vec::with_capacity(a.record_size as usize);
    let mut sent = 0u64;
    while sent < total {
        let due = due_by(base.elapsed().as_nanos(), a.rate, total);
        while sent < due {
            buf.clear();
            buf.extend_from_slice(pool.record(sent));
            put_header(&mut buf, sent, intended_ns(sent, a.rate));
            let mut record: BaseRecord<[u8], [u8]> = BaseRecord::to(&a.topic).payload(buf.as_slice());
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if Instant::now() >= deadline {
                            return (sent, true);
                        }
                        record = back;
                        p.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        p.context().fail(format!("send: {e}"));
                        break;
                    }
                }
            }
            sent += 1;
        }
        p.poll(Duration::ZERO);
        if Instant::now() >= deadline {
            return (sent, sent < total);
        }
        let next = Duration::from_nanos(intended_ns(sent, a.rate));
        if let Some(wait) = next.checked_sub(base.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    (sent, false)
}

/// Reads probes until all `expected` delivered records are in, the drain time after the last
/// send passes, or the deadline.
fn consume(
    consumer: &BaseConsumer<Ctx>,
    base: Instant,
    warmup_ns: u64,
    total: u64,
    expected: &AtomicU64,
    drain_until_ns: &AtomicU64,
    deadline: Instant,
) -> Consumed {
    let mut out = Consumed {
        histogram: Some(result::latency_histogram_us()),
        ..Consumed::default()
    };
    // One bit per sequence number; total <= MAX_RECORDS keeps this <= 12.5 MB.
    let mut seen = vec![0u64; (total as usize).div_ceil(64)];
    loop {
        if out.unique >= expected.load(Ordering::Relaxed)
            || base.elapsed().as_nanos() as u64 >= drain_until_ns.load(Ordering::Relaxed)
            || Instant::now() >= deadline
        {
            return out;
        }
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(e)) => {
                out.errors += 1;
                out.first_error.get_or_insert(e.to_string());
            }
            Some(Ok(m)) => {
                let now_ns = base.elapsed().as_nanos() as u64;
                let Some((seq, intended)) = m.payload().and_then(read_header).filter(|(seq, _)| *seq < total) else {
                    out.foreign += 1;
                    continue;
                };
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64)); // seq < total
                if seen[word] & bit != 0 {
                    out.duplicates += 1;
                    continue;
                }
                seen[word] |= bit;
                out.unique += 1;
                if intended >= warmup_ns {
                    let latency_us = now_ns.saturating_sub(intended) / 1000;
                    if let Some(h) = out.histogram.as_mut() {
                        // Clamped to the histogram's range: a run never lasts an hour.
                        h.saturating_record(latency_us.max(1));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_header_round_trips() {
        let mut buf = vec![b'x'; 64];
        put_header(&mut buf, 123_456, 9_876_543_210);
        assert_eq!(read_header(&buf), Some((123_456, 9_876_543_210)));
        assert_eq!(read_header(&buf[..19]), None);
        assert_eq!(read_header(&[b'x'; 64]), None);
    }

    #[test]
    fn pacing_arithmetic() {
        assert_eq!(intended_ns(0, 10_000), 0);
        assert_eq!(intended_ns(10_000, 10_000), 1_000_000_000);
        assert_eq!(intended_ns(3, 7), 428_571_429);
        assert_eq!(due_by(0, 10_000, 50_000), 1, "record 0 is due at once");
        assert_eq!(due_by(1_000_000_000, 10_000, 50_000), 10_001);
        assert_eq!(due_by(999_999_999_999, 10_000, 50_000), 50_000, "never more than total");
        // Record n becomes due exactly at its intended time, not a tick earlier or later.
        for rate in [7u64, 10_000, 999_983] {
            for n in [1u64, 17, 9_999, 123_457] {
                let t = u128::from(intended_ns(n, rate));
                assert!(due_by(t, rate, u64::MAX) > n, "rate {rate} n {n}");
                assert!(due_by(t - 1, rate, u64::MAX) <= n, "rate {rate} n {n}");
            }
        }
    }
}
