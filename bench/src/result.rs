//! The result document every scenario writes (stdout, and `--out`), and the arithmetic behind
//! its numbers. `report` reads these documents back, so every field has a serde default: an
//! older or hand-edited file still loads.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Bytes in the "MB" of every `mb_per_s`: decimal megabytes, as disk and network vendors
/// count, so a number here compares directly with `dd` and `iperf` output.
pub const BYTES_PER_MB: f64 = 1_000_000.0;

/// One scenario run against one broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioResult {
    /// The subcommand that ran: `produce`, `latency`, `catchup`, ...
    pub scenario: String,
    /// `--label`: which broker this was (`fjord`, `kafka`).
    pub label: String,
    /// Every flag of the scenario, as given or defaulted, so a run can be repeated.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Wall-clock start, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// Length of the measured phase (for `catchup`: the consume phase only).
    pub duration_s: f64,
    /// Records that completed the measured phase (delivered, or consumed).
    pub records: u64,
    /// Payload and key bytes of those records, uncompressed, without protocol overhead.
    pub bytes: u64,
    pub records_per_s: f64,
    /// `bytes / duration_s` in decimal MB ([`BYTES_PER_MB`]).
    pub mb_per_s: f64,
    /// End-to-end latency percentiles; only latency scenarios have them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// The whole latency distribution as `[percentile, ms]` points, for the chart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_curve_ms: Vec<[f64; 2]>,
    /// The broker process during the scenario; only with `--broker-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerStats>,
    /// Failed deliveries, failed reads, records lost, failed requests: anything that went wrong
    /// and would make the numbers flattering if ignored.
    pub errors: u64,
    /// What a reader must know to trust the numbers: caps hit, features missing, warnings.
    pub notes: Vec<String>,
    /// True when the broker cannot run this scenario (a missing API); no number is then real.
    pub skipped: bool,
    /// True when the scenario could not run (broker unreachable, setup refused, timed out);
    /// `notes` say why, and what numbers there are are partial.
    pub failed: bool,
    /// Scenario-specific measurements (see each scenario's docs), names ending in their unit.
    pub metrics: BTreeMap<String, f64>,
    /// The machine the run happened on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// The broker process sampled every [`crate::sampler::SAMPLE_INTERVAL_MS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerStats {
    /// User + system CPU seconds the broker used during the scenario (all its threads).
    pub cpu_s: f64,
    pub rss_max_bytes: u64,
    pub rss_avg_bytes: u64,
    pub rss_start_bytes: u64,
    pub rss_end_bytes: u64,
    /// How many samples the numbers above come from.
    pub samples: u64,
}

/// The percentiles of the chart's latency curve: where an HDR plot has its ticks.
pub const CURVE_PERCENTILES: [f64; 12] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

impl Latency {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_histogram_us(h: &Histogram<u64>) -> Latency {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            p99_9: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// `[percentile, ms]` points of a histogram recorded in microseconds, for the chart.
pub fn curve_from_histogram_us(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|&p| [p, h.value_at_quantile(p / 100.0) as f64 / 1000.0])
        .collect()
}

/// A histogram for latencies in microseconds, from 1 µs to one hour with three significant
/// digits: about 200 KiB, and no value of a bounded run can fall outside it.
pub fn latency_histogram_us() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid: 1 < 3.6e9, 3 digits")
}

impl ScenarioResult {
    pub fn new(scenario: &str, label: &str) -> ScenarioResult {
        ScenarioResult {
            scenario: scenario.to_string(),
            label: label.to_string(),
            started_at: rfc3339_utc_ms(epoch_ms()),
            ..ScenarioResult::default()
        }
    }

    /// Sets the measured phase and derives the two rates from it.
    pub fn set_throughput(&mut self, records: u64, bytes: u64, duration_s: f64) {
        self.records = records;
        self.bytes = bytes;
        self.duration_s = duration_s;
        self.records_per_s = per_s(records as f64, duration_s);
        self.mb_per_s = per_s(bytes as f64 / BYTES_PER_MB, duration_s);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn metric(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.to_string(), value);
    }
}

/// `amount / seconds`, or 0 for an empty interval (a run that measured nothing has no rate).
pub fn per_s(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn epoch_ms() -> u64 {
    // A clock before 1970 is a broken machine; 0 keeps the run going and the date says so.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-28T05:39:07.123Z` for milliseconds since the epoch (no time-zone crate needed).
pub fn rfc3339_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms % 1000
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc_ms(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc_ms(1_795_844_347_123), "2026-11-28T05:39:07.123Z");
    }

    #[test]
    fn rates_guard_empty_intervals() {
        let mut r = ScenarioResult::new("produce", "fjord");
        r.set_throughput(1000, 2_000_000, 2.0);
        assert_eq!(r.records_per_s, 500.0);
        assert_eq!(r.mb_per_s, 1.0);
        r.set_throughput(5, 5, 0.0);
        assert_eq!(r.records_per_s, 0.0);
        assert_eq!(r.mb_per_s, 0.0);
    }

    #[test]
    fn percentiles_of_a_uniform_histogram() {
        let mut h = latency_histogram_us();
        for us in 1..=10_000u64 {
            h.record(us * 1000).expect("in bounds"); // 1 ms .. 10 s
        }
        let l = Latency::from_histogram_us(&h);
        // Three significant digits: within 0.1% of the exact order statistic.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(l.p50, 5000.0), "{l:?}");
        assert!(close(l.p95, 9500.0), "{l:?}");
        assert!(close(l.p99, 9900.0), "{l:?}");
        assert!(close(l.p99_9, 9990.0), "{l:?}");
        assert!(close(l.max, 10_000.0), "{l:?}");
        let curve = curve_from_histogram_us(&h);
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(
            curve.windows(2).all(|w| w[0][1] <= w[1][1]),
            "a latency curve never falls"
        );
        assert!(curve_from_histogram_us(&latency_histogram_us()).is_empty());
    }

    #[test]
    fn json_round_trip() {
        let mut r = ScenarioResult::new("latency", "kafka");
        r.params.insert("rate".into(), serde_json::json!(10_000));
        r.set_throughput(50_000, 51_200_000, 5.0);
        r.latency_ms = Some(Latency {
            p50: 1.5,
            p95: 2.0,
            p99: 3.25,
            p99_9: 7.0,
            max: 12.0,
        });
        r.latency_curve_ms = vec![[50.0, 1.5], [100.0, 12.0]];
        r.broker = Some(BrokerStats {
            cpu_s: 3.5,
            rss_max_bytes: 9,
            rss_avg_bytes: 8,
            rss_start_bytes: 7,
            rss_end_bytes: 8,
            samples: 50,
        });
        r.errors = 2;
        r.note("a note");
        r.metric("achieved_records_per_s", 9_990.0);
        let text = serde_json::to_string_pretty(&r).expect("serializes");
        let back: ScenarioResult = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, r);
        // The field names other tools read are exactly the documented ones.
        let v: serde_json::Value = serde_json::from_str(&text).expect("parses");
        for key in [
            "scenario",
            "label",
            "params",
            "started_at",
            "duration_s",
            "records",
            "bytes",
            "records_per_s",
            "mb_per_s",
            "latency_ms",
            "broker",
            "errors",
            "notes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(v["latency_ms"].get("p99_9").is_some());
        assert!(v["broker"].get("rss_max_bytes").is_some());
    }

    #[test]
    fn sparse_documents_still_load() {
        let r: ScenarioResult =
            serde_json::from_str(r#"{"scenario":"produce","label":"fjord","mb_per_s":12.5}"#).expect("parses");
        assert_eq!(r.mb_per_s, 12.5);
        assert!(r.latency_ms.is_none() && r.broker.is_none() && !r.skipped && !r.failed);
        // What bench/run.py writes for a scenario it had to kill.
        let r: ScenarioResult = serde_json::from_str(r#"{"scenario":"latency","label":"kafka","params":{"rate":10000},"errors":1,"notes":["failed: timed out"],"failed":true}"#).expect("parses");
        assert!(r.failed && r.errors == 1);
    }
}
