//! Metrics: the Prometheus recorder, the names Fjord exports, and the few numbers the status
//! page charts (kept here as plain atomics so that the page needs no Prometheus parsing).
//!
//! Everything goes through the `metrics` facade. Without `metrics.listener` no recorder is
//! installed and every macro is a no-op, so a broker without metrics pays nothing for them.
//!
//! Cardinality is bounded: the `topic` label takes at most [`MAX_TOPIC_LABELS`] values (later
//! topics count under `_other`), lag series at most [`MAX_LAG_SERIES`], and gauges that stop
//! being set (a deleted group's lag) disappear after [`GAUGE_IDLE`].

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use serde::Serialize;

/// Most distinct values of the `topic` label.
pub const MAX_TOPIC_LABELS: usize = 1000;
/// Most per-partition lag series; beyond it only per-group totals are exported.
pub const MAX_LAG_SERIES: usize = 10_000;
/// Gauges not set for this long are dropped from the exposition.
pub const GAUGE_IDLE: Duration = Duration::from_secs(60);
/// Samples the status page charts (one per second).
pub const SERIES_SAMPLES: usize = 60;

/// Latency buckets (seconds) of every histogram: 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map(|b| b.idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE)));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the metrics recorder; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

/// One point of the status page's charts.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When (ms since the epoch).
    pub t_ms: i64,
    /// Produced bytes per second.
    pub bytes_in_per_s: f64,
    /// Fetched bytes per second.
    pub bytes_out_per_s: f64,
    /// Produced records per second.
    pub messages_in_per_s: f64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// p99 Produce time over the last second (ms), 0 without produces.
    pub produce_p99_ms: f64,
    /// p99 Fetch time over the last second (ms), 0 without fetches.
    pub fetch_p99_ms: f64,
}

/// Counters the broker keeps for itself (status page, purgatory gauges).
pub struct BrokerStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    requests: AtomicU64,
    produce_ms: Mutex<Vec<f64>>,
    fetch_ms: Mutex<Vec<f64>>,
    last: Mutex<Option<(Instant, [u64; 4])>>,
    series: Mutex<VecDeque<Sample>>,
    topics: Mutex<HashSet<String>>,
    /// Produce requests waiting for their writes.
    pub produce_waiting: AtomicI64,
    /// Fetches long-polling.
    pub fetch_waiting: AtomicI64,
    /// Open client connections.
    pub connections: AtomicI64,
    /// When the broker started (ms since the epoch).
    pub started_ms: i64,
    lag_seconds: Mutex<std::collections::HashMap<(String, String, i32), f64>>,
}

/// Latencies kept per second for the chart's p99; beyond this many, later ones are dropped
/// until the next sample (the p99 of a busy second is well estimated by the first 100k).
const MAX_LATENCIES_PER_SAMPLE: usize = 100_000;

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            produce_ms: Mutex::new(Vec::new()),
            fetch_ms: Mutex::new(Vec::new()),
            last: Mutex::new(None),
            series: Mutex::new(VecDeque::new()),
            topics: Mutex::new(HashSet::new()),
            produce_waiting: AtomicI64::new(0),
            fetch_waiting: AtomicI64::new(0),
            connections: AtomicI64::new(0),
            started_ms: crate::txn::now_ms(),
            lag_seconds: Mutex::new(Default::default()),
        }
    }
}

impl BrokerStats {
    /// Replaces the lag-in-seconds figures (computed by the collector).
    pub fn set_lag_seconds(&self, m: std::collections::HashMap<(String, String, i32), f64>) {
        *self.lag_seconds.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// The last computed lag in seconds of a group's partition.
    pub fn lag_seconds(&self, group: &str, topic: &str, partition: i32) -> Option<f64> {
        self.lag_seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied()
    }

    /// The label value for a topic: its name while fewer than [`MAX_TOPIC_LABELS`] are in use.
    pub fn topic_label(&self, topic: &str) -> String {
        let mut seen = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(topic) || seen.len() < MAX_TOPIC_LABELS {
            seen.insert(topic.to_string());
            topic.to_string()
        } else {
            "_other".to_string()
        }
    }

    /// Records produced bytes and records of a topic.
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.messages_in.fetch_add(records, Ordering::Relaxed);
        let label = self.topic_label(topic);
        metrics::counter!("fjord_bytes_in_total", "topic" => label.clone()).increment(bytes);
        metrics::counter!("fjord_messages_in_total", "topic" => label).increment(records);
    }

    /// Records fetched bytes of a topic.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        let label = self.topic_label(topic);
        metrics::counter!("fjord_bytes_out_total", "topic" => label).increment(bytes);
    }

    /// Records one handled request.
    pub fn request(&self, api: ApiKey, version: i16, queue: Duration, processing: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let name = api_name(api);
        metrics::counter!("fjord_requests_total", "api" => name, "version" => version.to_string()).increment(1);
        metrics::histogram!("fjord_request_queue_seconds", "api" => name).record(queue.as_secs_f64());
        metrics::histogram!("fjord_request_processing_seconds", "api" => name).record(processing.as_secs_f64());
        let window = match api {
            ApiKey::Produce => Some(&self.produce_ms),
            ApiKey::Fetch => Some(&self.fetch_ms),
            _ => None,
        };
        if let Some(w) = window {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            if w.len() < MAX_LATENCIES_PER_SAMPLE {
                w.push(processing.as_secs_f64() * 1000.0);
            }
        }
    }

    /// Takes a chart sample (call once a second).
    pub fn sample(&self) {
        let now = Instant::now();
        let totals = [
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
            self.messages_in.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        ];
        let p99 = |w: &Mutex<Vec<f64>>| {
            let mut v = std::mem::take(&mut *w.lock().unwrap_or_else(|p| p.into_inner()));
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(|a, b| a.total_cmp(b));
            v[((v.len() as f64 * 0.99).ceil() as usize)
                .saturating_sub(1)
                .min(v.len() - 1)]
        };
        let (produce_p99_ms, fetch_p99_ms) = (p99(&self.produce_ms), p99(&self.fetch_ms));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, prev)) = *last {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            let rate = |i: usize| totals[i].saturating_sub(prev[i]) as f64 / secs;
            let s = Sample {
                t_ms: crate::txn::now_ms(),
                bytes_in_per_s: rate(0),
                bytes_out_per_s: rate(1),
                messages_in_per_s: rate(2),
                requests_per_s: rate(3),
                produce_p99_ms,
                fetch_p99_ms,
            };
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            series.push_back(s);
            while series.len() > SERIES_SAMPLES {
                series.pop_front();
            }
        }
        *last = Some((now, totals));
    }

    /// The chart samples, oldest first.
    pub fn series(&self) -> Vec<Sample> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The API's name as Kafka spells it (`Produce`, `JoinGroup`), for labels.
pub fn api_name(api: ApiKey) -> &'static str {
    static NAMES: OnceLock<Vec<(ApiKey, &'static str)>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            ApiKey::iter()
                .map(|k| (k, &*Box::leak(format!("{k:?}").into_boxed_str())))
                .collect()
        })
        .iter()
        .find(|(k, _)| *k == api)
        .map(|(_, n)| *n)
        .unwrap_or("Unknown")
}

/// A Kafka error code as Kafka names it (`NOT_LEADER_OR_FOLLOWER`).
pub fn error_name(code: i16) -> &'static str {
    static NAMES: OnceLock<Mutex<std::collections::HashMap<i16, &'static str>>> = OnceLock::new();
    let map = NAMES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(code).or_insert_with(|| {
        let camel = match ResponseError::try_from_code(code) {
            Some(e) => format!("{e:?}"),
            None => format!("UnknownCode{code}"),
        };
        let mut out = String::with_capacity(camel.len() + 8);
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        Box::leak(out.into_boxed_str())
    })
}

/// Counts the error codes a response carries (top level and per partition).
pub fn count_errors(api: ApiKey, resp: &ResponseKind) {
    let mut codes: Vec<i16> = Vec::new();
    match resp {
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                codes.extend(t.partition_responses.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::Fetch(r) => {
            codes.push(r.error_code);
            for t in &r.responses {
                codes.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                codes.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                codes.push(t.error_code);
                codes.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::OffsetCommit(r) => {
            for t in &r.topics {
                codes.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::OffsetFetch(r) => {
            codes.push(r.error_code);
            for g in &r.groups {
                codes.push(g.error_code);
            }
        }
        ResponseKind::FindCoordinator(r) => {
            codes.push(r.error_code);
            codes.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        ResponseKind::JoinGroup(r) => codes.push(r.error_code),
        ResponseKind::SyncGroup(r) => codes.push(r.error_code),
        ResponseKind::Heartbeat(r) => codes.push(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            codes.push(r.error_code);
            codes.extend(r.members.iter().map(|m| m.error_code));
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => codes.push(r.error_code),
        ResponseKind::CreateTopics(r) => codes.extend(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => codes.extend(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::InitProducerId(r) => codes.push(r.error_code),
        ResponseKind::EndTxn(r) => codes.push(r.error_code),
        ResponseKind::AddOffsetsToTxn(r) => codes.push(r.error_code),
        ResponseKind::AddPartitionsToTxn(r) => {
            codes.push(r.error_code);
            for t in &r.results_by_topic_v3_and_below {
                codes.extend(t.results_by_partition.iter().map(|p| p.partition_error_code));
            }
        }
        ResponseKind::TxnOffsetCommit(r) => {
            for t in &r.topics {
                codes.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        ResponseKind::ApiVersions(r) => codes.push(r.error_code),
        _ => {}
    }
    let name = api_name(api);
    for code in codes.into_iter().filter(|c| *c != 0) {
        metrics::counter!("fjord_request_errors_total", "api" => name, "error" => error_name(code)).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::ConsumerGroupHeartbeat), "ConsumerGroupHeartbeat");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
    }

    #[test]
    fn topic_labels_are_capped() {
        let s = BrokerStats::default();
        for i in 0..MAX_TOPIC_LABELS {
            assert_eq!(s.topic_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(s.topic_label("one-too-many"), "_other");
        assert_eq!(s.topic_label("t5"), "t5", "known topics keep their label");
    }

    #[test]
    fn samples_are_rates() {
        let s = BrokerStats::default();
        s.sample();
        s.bytes_in.fetch_add(1000, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        s.sample();
        let series = s.series();
        assert_eq!(series.len(), 1);
        assert!(series[0].bytes_in_per_s > 0.0);
    }
}
