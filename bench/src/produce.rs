//! The produce family: `produce` (plain throughput), `orders` (many small keyed records,
//! `acks=all`, optionally idempotent) and `logs` (large compressed batches). All three run the
//! same engine with different defaults; `catchup` uses the engine to write its backlog.
//!
//! Throughput is delivered records over the time from the first send to the last delivery
//! report, for all producers together. Every delivery report is counted: a failed one is an
//! error, and a record still undelivered at the `--max-s` cap is purged and counted too.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::client::{self, Admin, ClientLog, PayloadKind, PayloadPool, ProduceCtx, ProducerSettings};
use crate::result::ScenarioResult;
use crate::{wire, Common};

/// Flags of `produce`, `orders` and `logs`; the three differ only in their defaults (set in
/// main.rs with `mut_arg`), so their results have the same `params`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct ProduceArgs {
    /// Topic to create (and delete afterwards unless --keep-topic).
    #[arg(long, default_value = "fjord-bench-produce")]
    pub topic: String,
    /// Partitions of the topic (replicated as `--replication-factor` says).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub partitions: i32,
    /// Producer clients, each on its own thread with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
    /// Records to send, split evenly across the producers.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub records: u64,
    /// Payload bytes per record (at most 1 MiB, Kafka's default max.message.bytes).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    pub record_size: u64,
    /// Producer acks: how many replicas must have the batch before the broker answers.
    #[arg(long, default_value = "1", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    /// Producer compression.type.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub codec: String,
    /// Producer linger.ms: how long a batch may wait to fill.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub linger_ms: u64,
    /// librdkafka batch.size: the most bytes one partition's batch may hold.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub batch_bytes: u64,
    /// Key bytes per record (0: no key, records spread by librdkafka's sticky partitioner).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub key_bytes: u64,
    /// Distinct keys (customers, hosts) when --key-bytes > 0.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keyspace: u64,
    /// enable.idempotence=true; falls back to false, with a note, if the broker does not
    /// advertise InitProducerId.
    #[arg(long)]
    pub idempotent: bool,
}

/// What one run of the engine is asked to do.
pub struct ProduceSpec<'a> {
    pub topic: &'a str,
    pub producers: u32,
    pub records: u64,
    pub record_size: usize,
    pub key_bytes: usize,
    pub keyspace: u64,
    pub settings: ProducerSettings,
    pub payload: PayloadKind,
    /// Stop sending, and purge what is still undelivered, at this instant.
    pub deadline: Instant,
}

/// What the engine measured.
#[derive(Debug, Default)]
pub struct Produced {
    pub delivered: u64,
    pub bytes: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Distinct errors and their counts, for the notes.
    pub failures: BTreeMap<String, u64>,
    /// The deadline cut the run short.
    pub capped: bool,
}

impl Produced {
    /// Fills the result's throughput, errors and notes.
    pub fn apply(&self, r: &mut ScenarioResult) {
        r.set_throughput(self.delivered, self.bytes, self.elapsed.as_secs_f64());
        r.errors += self.failed;
        for (e, n) in &self.failures {
            r.note(format!("{n} x {e}"));
        }
        if self.capped {
            r.note(format!(
                "stopped at the --max-s cap after {} delivered records",
                self.delivered
            ));
        }
    }
}

/// Runs `spec.producers` producers, each on its own thread, until all records are delivered
/// (or failed, or the deadline passes).
pub fn produce(bootstrap: &str, spec: &ProduceSpec, log: &Arc<ClientLog>) -> Result<Produced, String> {
    let config = client::producer_config(bootstrap, &spec.settings);
    let producers: Vec<BaseProducer<ProduceCtx>> = (0..spec.producers)
        .map(|_| {
            config
                .create_with_context(ProduceCtx::new(log.clone()))
                .map_err(|e| format!("producer: {e}"))
        })
        .collect::<Result<_, _>>()?;
    // Learn the topic's leaders before the clock starts: the first send would otherwise wait
    // for this lookup.
    for p in &producers {
        p.client()
            .fetch_metadata(Some(spec.topic), Duration::from_secs(10))
            .map_err(|e| format!("producer metadata: {e}"))?;
    }
    let pool = PayloadPool::new(spec.payload, spec.record_size, 0x5EED);
    let n = u64::from(spec.producers);
    let start = Instant::now();
    let capped = std::thread::scope(|s| {
        let handles: Vec<_> = producers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let i = i as u64; // < 64 producers
                let share = spec.records / n + u64::from(i < spec.records % n);
                let first = i * (spec.records / n) + i.min(spec.records % n);
                let pool = &pool;
                s.spawn(move || send_share(p, spec, pool, first..first + share))
            })
            .collect();
        // A panicking sender thread is a bug in this tool; count it as capped, don't hide it.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(true))
            .fold(false, |a, b| a | b)
    });
    let elapsed = start.elapsed();
    let mut out = Produced {
        elapsed,
        capped,
        ..Produced::default()
    };
    for p in &producers {
        let c = p.context();
        out.delivered += c.delivered.load(Ordering::Relaxed);
        out.bytes += c.delivered_bytes.load(Ordering::Relaxed);
        out.failed += c.failed.load(Ordering::Relaxed);
        if let Ok(f) = c.failures.lock() {
            for (e, k) in f.iter() {
                *out.failures.entry(e.clone()).or_insert(0) += k;
            }
        }
    }
    Ok(out)
}

/// Sends records `range` through one producer, then waits for their delivery reports.
/// Returns true if the deadline cut it short.
fn send_share(
    p: &BaseProducer<ProduceCtx>,
    spec: &ProduceSpec,
    pool: &PayloadPool,
    range: std::ops::Range<u64>,
) -> bool {
    let mut capped = false;
    'records: for i in range {
        let key = (spec.key_bytes > 0).then(|| client::record_key(i, spec.key_bytes, spec.keyspace));
        let mut record: BaseRecord<[u8], [u8]> = BaseRecord::to(spec.topic).payload(pool.record(i));
        if let Some(k) = &key {
            record = record.key(k.as_slice());
        }
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if Instant::now() >= spec.deadline {
                        capped = true;
                        break 'records;
                    }
                    record = back;
                    // Serves delivery reports, which frees queue space.
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    p.context().fail(format!("send: {e}"));
                    break;
                }
            }
        }
        if i % 512 == 0 {
            p.poll(Duration::ZERO);
            if Instant::now() >= spec.deadline {
                capped = true;
                break;
            }
        }
    }
    let remaining = spec.deadline.saturating_duration_since(Instant::now());
    if p.flush(remaining).is_err() {
        capped = true;
        // What is still queued or in flight fails with a "purged" delivery report, which the
        // context counts as an error.
        p.purge(PurgeConfig::default().queue().inflight());
        let _ = p.flush(Duration::from_secs(5));
    }
    capped
}

/// `produce`, `orders` and `logs`.
pub fn run(c: &Common, scenario: &str, a: &ProduceArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let mut idempotent = a.idempotent;
    if idempotent {
        match wire::advertised_apis(&c.bootstrap) {
            Ok(apis) if !apis.iter().any(|x| x.key == wire::INIT_PRODUCER_ID_KEY) => {
                r.note("idempotence unsupported by broker (no InitProducerId in ApiVersions); ran with enable.idempotence=false");
                idempotent = false;
            }
            Ok(_) => {}
            Err(e) => r.note(format!(
                "could not read ApiVersions to check for InitProducerId ({e}); trying idempotence anyway"
            )),
        }
    }
    r.metric("idempotent", f64::from(u8::from(idempotent)));
    let admin = Admin::new(c)?;
    client::prepare_topic(&admin, &a.topic, a.partitions, r)?;
    let spec = ProduceSpec {
        topic: &a.topic,
        producers: a.producers,
        records: a.records,
        record_size: a.record_size as usize, // <= 1 MiB by the flag's range
        key_bytes: a.key_bytes as usize,     // <= 1024
        keyspace: a.keyspace,
        settings: ProducerSettings {
            acks: a.acks.clone(),
            linger_ms: a.linger_ms,
            batch_bytes: a.batch_bytes,
            codec: a.codec.clone(),
            idempotent,
        },
        payload: if scenario == "logs" {
            PayloadKind::LogLines
        } else {
            PayloadKind::Alphanumeric
        },
        deadline: c.deadline,
    };
    let outcome = produce(&c.bootstrap, &spec, &c.log);
    client::finish_topic(&admin, &a.topic, c.keep_topic, r);
    outcome?.apply(r);
    Ok(())
}
