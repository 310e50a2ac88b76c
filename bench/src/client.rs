//! The librdkafka side shared by the scenarios: client configs, contexts that count what goes
//! wrong instead of panicking, topic setup and teardown through the AdminClient, and payloads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::result::ScenarioResult;

/// How long an admin request (create, delete) may take before we give up on it; Kafka's own
/// default `request.timeout.ms` is 30 s, and creating thousands of partitions can take longer.
pub const ADMIN_TIMEOUT_S: u64 = 120;
/// How long a new topic may take to show all its partitions with a leader in Metadata.
pub const TOPIC_READY_TIMEOUT_S: u64 = 60;
/// librdkafka log lines printed to stderr per client: enough to see the failure, not enough
/// to drown the run when a broker refuses every request.
const MAX_PRINTED_LOG_LINES: u64 = 20;

/// Counts librdkafka's warnings and errors for one scenario. Transport hiccups are not result
/// errors (librdkafka retries them), but a reader must see them, so they go into `notes`.
#[derive(Debug, Default)]
pub struct ClientLog {
    warnings: AtomicU64,
    printed: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ClientLog {
    fn record(&self, line: String) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        if self.printed.fetch_add(1, Ordering::Relaxed) < MAX_PRINTED_LOG_LINES {
            eprintln!("fjord-bench: librdkafka: {line}");
        }
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(line);
        }
    }

    /// Adds "N librdkafka warnings (first: ...)" to the notes, if there were any.
    pub fn add_notes(&self, r: &mut ScenarioResult) {
        let n = self.warnings.load(Ordering::Relaxed);
        if n > 0 {
            let first = self.first.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
            r.note(format!("{n} librdkafka warnings/errors (first: {first})"));
        }
    }
}

/// Context for admin clients and consumers: routes librdkafka's log into [`ClientLog`].
#[derive(Clone)]
pub struct Ctx {
    pub log: Arc<ClientLog>,
}

fn forward_log(log: &ClientLog, level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel::*;
    if matches!(level, Emerg | Alert | Critical | Error | Warning) {
        log.record(format!("{fac}: {message}"));
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(&self.log, level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.record(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Ctx {}

/// Producer context: every delivery report lands here, success or failure.
pub struct ProduceCtx {
    pub log: Arc<ClientLog>,
    pub delivered: AtomicU64,
    pub delivered_bytes: AtomicU64,
    pub failed: AtomicU64,
    /// Distinct delivery errors and how often each happened.
    pub failures: Mutex<BTreeMap<String, u64>>,
}

impl ProduceCtx {
    pub fn new(log: Arc<ClientLog>) -> ProduceCtx {
        ProduceCtx {
            log,
            delivered: AtomicU64::new(0),
            delivered_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(error).or_insert(0) += 1;
        }
    }
}

impl ClientContext for ProduceCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(&self.log, level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.record(format!("{error}: {reason}"));
    }
}

impl ProducerContext for ProduceCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let bytes = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.delivered_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err((e, _)) => self.fail(format!("delivery: {e}")),
        }
    }
}

/// Settings common to every client: IPv4 (librdkafka may try ::1 first for `localhost`) and
/// a client.id brokers can log.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "fjord-bench")
        .set("broker.address.family", "v4");
    c
}

/// What a producer is asked to do; maps one-to-one onto librdkafka properties.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// `0`, `1` or `all`.
    pub acks: String,
    pub linger_ms: u64,
    pub batch_bytes: u64,
    /// `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    pub codec: String,
    pub idempotent: bool,
}

/// How long librdkafka keeps retrying one record before reporting it failed: bounded so a
/// stalled broker ends the run with counted errors instead of hanging it (default is 300 s).
pub const MESSAGE_TIMEOUT_MS: u64 = 60_000;
/// librdkafka's local queue: big enough that a fast client never waits on its own queue at
/// these record sizes, bounded so a stalled broker cannot make it eat the machine.
const QUEUE_MAX_KBYTES: u64 = 512 * 1024;

pub fn producer_config(bootstrap: &str, s: &ProducerSettings) -> ClientConfig {
    let mut c = base_config(bootstrap);
    // A request may carry one batch per partition; let it be far larger than one batch so
    // batch.size, not the request cap, is what shapes the traffic.
    let max_request_bytes = (s.batch_bytes.saturating_mul(4)).clamp(4 << 20, 256 << 20);
    c.set("acks", &s.acks)
        .set("linger.ms", s.linger_ms.to_string())
        .set("batch.size", s.batch_bytes.to_string())
        .set("compression.type", &s.codec)
        .set("enable.idempotence", s.idempotent.to_string())
        .set("message.max.bytes", max_request_bytes.to_string())
        .set("queue.buffering.max.kbytes", QUEUE_MAX_KBYTES.to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string());
    c
}

/// A consumer for `assign()` only. librdkafka insists on a group.id even then; this one is
/// unique and never used: no subscribe, no commits, no offset store.
pub fn consumer_config(bootstrap: &str, fetch_wait_max_ms: u64, fetch_max_bytes: u64) -> ClientConfig {
    let mut c = base_config(bootstrap);
    let partition_bytes = (fetch_max_bytes / 4).clamp(1 << 20, 16 << 20);
    c.set(
        "group.id",
        format!("fjord-bench-{}-{}", std::process::id(), crate::result::epoch_ms()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", "earliest")
    .set("enable.partition.eof", "false")
    .set("fetch.wait.max.ms", fetch_wait_max_ms.to_string())
    .set("fetch.min.bytes", "1")
    .set("fetch.max.bytes", fetch_max_bytes.to_string())
    .set("max.partition.fetch.bytes", partition_bytes.to_string())
    .set("receive.message.max.bytes", (fetch_max_bytes + (1 << 20)).to_string())
    .set("queued.max.messages.kbytes", (QUEUE_MAX_KBYTES / 2).to_string());
    c
}

/// One topic's CreateTopics answer: `Err((topic, code))` if the broker refused it.
pub type TopicOutcome = Result<(), (String, RDKafkaErrorCode)>;

/// How a scenario's topics are created (the global `--replication-factor` and
/// `--min-insync-replicas`).
#[derive(Debug, Clone, Copy)]
pub struct TopicSettings {
    pub replication_factor: i32,
    pub min_insync_replicas: Option<i32>,
}

/// An AdminClient plus the small runtime its futures need.
pub struct Admin {
    pub client: AdminClient<Ctx>,
    rt: tokio::runtime::Runtime,
    topics: TopicSettings,
}

impl Admin {
    /// An admin client of the scenario's broker that creates topics as the flags say.
    pub fn new(c: &crate::Common) -> Result<Admin, String> {
        let client = base_config(&c.bootstrap)
            .create_with_context(Ctx { log: c.log.clone() })
            .map_err(|e| format!("admin client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        Ok(Admin {
            client,
            rt,
            topics: c.topics,
        })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(Duration::from_secs(ADMIN_TIMEOUT_S)))
            .operation_timeout(Some(Duration::from_secs(ADMIN_TIMEOUT_S)))
    }

    /// Creates topics with the scenario's replication settings; one `Result` per topic, in order.
    pub fn create_topics(&self, names: &[String], partitions: i32) -> Result<Vec<TopicOutcome>, String> {
        let min_isr = self.topics.min_insync_replicas.map(|n| n.to_string());
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| {
                let t = NewTopic::new(n, partitions, TopicReplication::Fixed(self.topics.replication_factor));
                match &min_isr {
                    Some(v) => t.set("min.insync.replicas", v),
                    None => t,
                }
            })
            .collect();
        let fut = self.client.create_topics(topics.iter(), &Admin::options());
        let out = self.block_on(fut)?.map_err(|e| format!("CreateTopics: {e}"))?;
        Ok(out.into_iter().map(|r| r.map(|_| ())).collect())
    }

    /// Deletes topics; per-topic failures come back as strings for the notes.
    pub fn delete_topics(&self, names: &[String]) -> Vec<String> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let fut = self.client.delete_topics(&refs, &Admin::options());
        match self.block_on(fut) {
            Err(e) => vec![e],
            Ok(Err(e)) => vec![format!("DeleteTopics: {e}")],
            Ok(Ok(results)) => results
                .into_iter()
                .filter_map(|r| r.err())
                .map(|(t, e)| format!("DeleteTopics {t}: {e}"))
                .collect(),
        }
    }

    fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, String> {
        // One more second than librdkafka's own timeout, which should always answer first.
        let limit = Duration::from_secs(ADMIN_TIMEOUT_S + 1);
        self.rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .map_err(|_| "admin request timed out".to_string())
    }

    /// Polls Metadata until every topic in `names` shows `partitions` partitions, each with a
    /// leader and no error. Returns how long that took.
    pub fn wait_for_topics(&self, names: &[String], partitions: usize, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::from("no Metadata answer yet");
        while start.elapsed() < timeout {
            let asked = if names.len() == 1 {
                Some(names[0].as_str())
            } else {
                None
            };
            match self.client.inner().fetch_metadata(asked, Duration::from_secs(10)) {
                Ok(md) => {
                    let ready = names.iter().filter(|n| {
                        md.topics().iter().any(|t| {
                            t.name() == n.as_str()
                                && t.error().is_none()
                                && t.partitions().len() == partitions
                                && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
                        })
                    });
                    let n = ready.count();
                    if n == names.len() {
                        return Ok(start.elapsed());
                    }
                    last = format!("{n}/{} topics ready", names.len());
                }
                Err(e) => last = format!("Metadata: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("topics not ready after {timeout:?}: {last}"))
    }

    /// Polls Metadata until none of `names` is listed any more.
    pub fn wait_for_topics_gone(&self, names: &[String], timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(md) = self.client.inner().fetch_metadata(None, Duration::from_secs(10)) {
                if !md.topics().iter().any(|t| names.iter().any(|n| n == t.name())) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// Creates a fresh topic for a scenario and waits until every partition has a leader. A
/// leftover topic of the same name (an interrupted run) is deleted first, so old records never
/// leak into a measurement.
pub fn prepare_topic(admin: &Admin, topic: &str, partitions: i32, r: &mut ScenarioResult) -> Result<(), String> {
    let names = [topic.to_string()];
    let results = admin.create_topics(&names, partitions)?;
    if let Some(Err((_, code))) = results.first() {
        if *code != RDKafkaErrorCode::TopicAlreadyExists {
            return Err(format!("create topic {topic}: {code}"));
        }
        r.note(format!("topic {topic} existed; deleted and created anew"));
        for e in admin.delete_topics(&names) {
            r.note(e);
        }
        admin.wait_for_topics_gone(&names, Duration::from_secs(TOPIC_READY_TIMEOUT_S));
        // Kafka may still be removing the old log; retry for a while.
        let start = Instant::now();
        loop {
            match admin.create_topics(&names, partitions)?.first() {
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))
                    if start.elapsed() < Duration::from_secs(TOPIC_READY_TIMEOUT_S) =>
                {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Some(Err((_, code))) => return Err(format!("create topic {topic}: {code}")),
                _ => break,
            }
        }
    }
    let partitions = usize::try_from(partitions).map_err(|_| "negative partition count".to_string())?;
    admin.wait_for_topics(&names, partitions, Duration::from_secs(TOPIC_READY_TIMEOUT_S))?;
    Ok(())
}

/// Deletes the scenario's topic unless `--keep-topic`; failures become notes.
pub fn finish_topic(admin: &Admin, topic: &str, keep: bool, r: &mut ScenarioResult) {
    if keep {
        return;
    }
    for e in admin.delete_topics(&[topic.to_string()]) {
        r.note(format!("cleanup: {e}"));
    }
}

/// Runs `body` on a fresh `topic` (created, then deleted unless `--keep-topic`, whatever `body`
/// returned): the frame of every scenario that writes.
pub fn with_fresh_topic(
    c: &crate::Common,
    topic: &str,
    partitions: i32,
    r: &mut ScenarioResult,
    body: impl FnOnce(&mut ScenarioResult) -> Result<(), String>,
) -> Result<(), String> {
    let admin = Admin::new(c)?;
    prepare_topic(&admin, topic, partitions, r)?;
    let outcome = body(r);
    finish_topic(&admin, topic, c.keep_topic, r);
    outcome
}

/// What the records carry. Real payloads matter: all-zero records would make every codec and
/// every page-cache-compressing filesystem look wonderful.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PayloadKind {
    /// Random letters and digits, like `kafka-producer-perf-test`: codecs gain ~25%.
    Alphanumeric,
    /// Application log lines with repeating structure: codecs gain 3-10x, as on real logs.
    LogLines,
}

/// A pool of payload bytes that records are sliced from, so generating them costs nothing
/// during the measurement. Slices start at varying offsets so consecutive records differ.
pub struct PayloadPool {
    buf: Vec<u8>,
    record_bytes: usize,
}

/// Pool size: far larger than any batch (`batch.size` is a few MiB at most), so one batch
/// never holds the same bytes twice and a codec sees realistic input, not repeats.
const POOL_BYTES: usize = 16 << 20;

impl PayloadPool {
    pub fn new(kind: PayloadKind, record_bytes: usize, seed: u64) -> PayloadPool {
        let len = POOL_BYTES + record_bytes;
        let mut rng = XorShift(seed | 1);
        let mut buf = Vec::with_capacity(len + 256);
        match kind {
            PayloadKind::Alphanumeric => {
                const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                buf.extend((0..len).map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]));
            }
            PayloadKind::LogLines => {
                const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "DEBUG"];
                const PATHS: [&str; 6] = [
                    "/api/v1/orders",
                    "/api/v1/users",
                    "/healthz",
                    "/api/v1/cart",
                    "/login",
                    "/api/v2/search",
                ];
                let mut ts = 1_764_300_000_000u64;
                while buf.len() < len {
                    ts += rng.next() % 50;
                    let line = format!(
                        "{ts} {} [worker-{}] request_id={:016x} method=GET path={} status={} bytes={} duration_ms={}\n",
                        LEVELS[(rng.next() % 4) as usize],
                        rng.next() % 16,
                        rng.next(),
                        PATHS[(rng.next() % 6) as usize],
                        [200, 200, 200, 201, 404, 500][(rng.next() % 6) as usize],
                        rng.next() % 100_000,
                        rng.next() % 2000,
                    );
                    buf.extend_from_slice(line.as_bytes());
                }
                buf.truncate(len);
            }
        }
        PayloadPool { buf, record_bytes }
    }

    /// The payload of record `i`: `record_bytes` long, starting at a pseudo-random offset.
    pub fn record(&self, i: u64) -> &[u8] {
        let span = (self.buf.len() - self.record_bytes) as u64; // > 0: buf has POOL_BYTES extra
        let start = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % span;
        let start = start as usize; // < span <= buf.len()
        &self.buf[start..start + self.record_bytes]
    }
}

/// xorshift64: a fast, seedable, dependency-free generator; payloads need variety, not security.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Key of record `i` when keys are `key_bytes` long: a zero-padded decimal id from a keyspace
/// of `keyspace` ids, spread pseudo-randomly, so keyed records hash over all partitions.
pub fn record_key(i: u64, key_bytes: usize, keyspace: u64) -> Vec<u8> {
    let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keyspace.max(1);
    let digits = format!("{id:0key_bytes$}");
    // Keep the low digits if the id is longer than the key.
    digits.as_bytes()[digits.len() - key_bytes..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_right_size_and_vary() {
        for kind in [PayloadKind::Alphanumeric, PayloadKind::LogLines] {
            let pool = PayloadPool::new(kind, 1024, 7);
            let a = pool.record(0);
            let b = pool.record(1);
            assert_eq!((a.len(), b.len()), (1024, 1024));
            assert_ne!(a, b);
            assert!(a.iter().all(|c| c.is_ascii()));
            assert_eq!(pool.record(u64::MAX).len(), 1024);
        }
    }

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(record_key(0, 8, 1000), b"00000000");
        assert_eq!(record_key(5, 3, 1_000_000_000).len(), 3);
        let distinct: std::collections::BTreeSet<Vec<u8>> = (0..1000).map(|i| record_key(i, 6, 100)).collect();
        assert!(distinct.len() > 50, "keys spread over the keyspace: {}", distinct.len());
    }
}
