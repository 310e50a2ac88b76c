//! `java-produce`, `java-consume`, `java-latency`: Apache Kafka's own load tools as a second load
//! generator beside librdkafka. They are what a Kafka user reaches for first
//! (`kafka-producer-perf-test`, `kafka-consumer-perf-test`: the classes `ProducerPerformance` and
//! `ConsumerPerformance` of the `kafka-tools` artifact), and the Java client is what most Kafka
//! applications run. Each scenario starts `java` on the jars in `--kafka-lib` with the flags
//! `kafka-run-class.sh` gives the tools, reads the tool's summary line and turns it into the
//! usual result document; the tool's process is this one's child, so `client_cpu_s` counts it.
//!
//! - `java-produce`: ProducerPerformance at full speed (`--throughput -1`), acks=all,
//!   linger.ms=5, batch.size=262144, into a fresh topic. MB/s and records/s are the tool's; its
//!   latency percentiles (send to acknowledgement, under saturation) are in `metrics`. On its
//!   defaults the tool fills every record with fresh random letters on its one sending thread
//!   (`generateRandomPayload`, ~6 ns a byte): on two cores that thread, not the broker, sets
//!   the pace. `--payload-lines N` writes N random records of `--record-size` bytes to a file
//!   and gives it to the tool (`--payload-file`): it then picks a line per record, and the Java
//!   producer and the broker are what is measured.
//! - `java-latency`: the same tool at a fixed `--throughput` (records/s); `latency_ms` holds its
//!   send-to-acknowledgement percentiles after `--warmup-records` (its steady-state line).
//! - `java-consume`: a backlog written by ProducerPerformance, then read `--passes` times by
//!   ConsumerPerformance on its defaults (subscribe with a new group each pass, classic
//!   protocol, max.partition.fetch.bytes 1 MiB, receive buffer 2 MiB). The tool's own figure
//!   includes joining the group; the result is the median pass by that figure, and
//!   `metrics` has every pass's total, join (`rebalance_ms`) and fetch-only rates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::client::{self, XorShift};
use crate::report::median;
use crate::result::{per_s, Latency, ScenarioResult, BYTES_PER_MB};
use crate::Common;

/// The JVM flags `kafka-run-class.sh` (Kafka 4.x) runs every tool with, and the heap
/// `kafka-producer-perf-test.sh` and `kafka-consumer-perf-test.sh` set.
const TOOL_JVM_FLAGS: [&str; 8] = [
    "-Xmx512M",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
];

#[derive(Args, Debug, Clone, Serialize)]
pub struct JavaToolArgs {
    /// Directory holding the kafka-tools jars and their dependencies (kafka-clients, ...).
    #[arg(long)]
    pub kafka_lib: PathBuf,
    #[arg(long, default_value = "fjord-bench-java")]
    pub topic: String,
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Records produced (for java-consume: the backlog, read whole by every pass).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    pub record_size: u64,
    /// Records per second the producer is held to; -1 for as fast as it goes.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub throughput: i64,
    #[arg(long, default_value = "all")]
    pub acks: String,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value_t = 262_144)]
    pub batch_size: u64,
    /// Records at the start left out of the figures (the tool's `--warmup-records`: the JVM's
    /// first seconds, class loading and compilation, would otherwise set the tail latency).
    #[arg(long, default_value_t = 0)]
    pub warmup_records: u64,
    /// Records drawn from a file of this many random lines (`--payload-file`) instead of the
    /// tool's per-record random payload; 0 for the tool's default.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub payload_lines: u64,
    /// java-consume: how many times the backlog is read, each by a new group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub passes: u32,
}

/// What ProducerPerformance printed last: its totals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProducerSummary {
    pub records: u64,
    pub records_per_s: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
}

impl ProducerSummary {
    /// The run's length, from its count and rate (the tool prints no duration).
    fn duration_s(&self) -> f64 {
        self.records as f64 / self.records_per_s.max(f64::MIN_POSITIVE)
    }
}

/// One ConsumerPerformance run (`--hide-header`): start, end, MB, MB/s, records, records/s,
/// rebalance ms, fetch ms, fetch MB/s, fetch records/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsumerSummary {
    pub records: u64,
    pub records_per_s: f64,
    pub rebalance_ms: f64,
    pub fetch_ms: f64,
}

impl ConsumerSummary {
    /// The run's length, joining included, from its count and rate.
    fn duration_s(&self) -> f64 {
        self.records as f64 / self.records_per_s.max(f64::MIN_POSITIVE)
    }
}

/// `2000000 records sent, 210504.1 records/sec (205.57 MB/sec), 4.51 ms avg latency, 363.00 ms
/// max latency, 3 ms 50th, 14 ms 95th, 29 ms 99th, 48 ms 99.9th.`; with warm-up records, the
/// `N steady state records sent, ...` line after it, which is then the last.
pub fn parse_producer(out: &str) -> Option<ProducerSummary> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("99.9th"))?;
    let num_before = |marker: &str| -> Option<f64> {
        let at = line.find(marker)?;
        line[..at].split([' ', '(', ',']).rfind(|w| !w.is_empty())?.parse().ok()
    };
    Some(ProducerSummary {
        records: line.split_whitespace().next()?.parse().ok()?,
        records_per_s: num_before(" records/sec")?,
        avg_ms: num_before(" ms avg latency")?,
        max_ms: num_before(" ms max latency")?,
        p50_ms: num_before(" ms 50th")?,
        p95_ms: num_before(" ms 95th")?,
        p99_ms: num_before(" ms 99th")?,
        p99_9_ms: num_before(" ms 99.9th")?,
    })
}

/// The last line of ten comma-separated fields.
pub fn parse_consumer(out: &str) -> Option<ConsumerSummary> {
    out.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        if f.len() != 10 {
            return None;
        }
        Some(ConsumerSummary {
            records: f[4].parse().ok()?,
            records_per_s: f[5].parse().ok()?,
            rebalance_ms: f[6].parse().ok()?,
            fetch_ms: f[7].parse().ok()?,
        })
    })
}

/// `java` running `class` from the jars in `lib`, with the tool scripts' JVM flags.
fn java(lib: &Path, class: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(TOOL_JVM_FLAGS)
        .arg("-cp")
        .arg(lib.join("*"))
        .arg(class)
        .stdin(Stdio::null());
    cmd
}

fn tool(lib: &Path, class: &str, args: &[String]) -> Result<String, String> {
    let mut cmd = java(lib, class);
    cmd.args(args).stderr(Stdio::inherit());
    eprintln!("fjord-bench: java {class} {}", args.join(" "));
    let out = cmd.output().map_err(|e| format!("java {class}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{stdout}");
    if !out.status.success() {
        return Err(format!("java {class} exited with {}", out.status));
    }
    Ok(stdout)
}

/// A file of `lines` lines of `len` random ASCII letters each, for `--payload-file`; removed
/// when dropped.
struct PayloadFile(PathBuf);

impl PayloadFile {
    fn write(lines: u64, len: u64) -> Result<PayloadFile, String> {
        let path = std::env::temp_dir().join(format!("fjord-bench-payload-{}.txt", std::process::id()));
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut text = Vec::with_capacity(((len + 1) * lines) as usize);
        for _ in 0..lines {
            text.extend((0..len).map(|_| b'A' + (rng.next() % 26) as u8));
            text.push(b'\n');
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PayloadFile(path))
    }
}

impl Drop for PayloadFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether the tool's `--help` lists `flag` (Kafka 4.1's ProducerPerformance has no
/// `--warmup-records`, 4.4's has).
fn tool_has_flag(lib: &Path, class: &str, flag: &str) -> bool {
    java(lib, class).arg("--help").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).contains(flag) || String::from_utf8_lossy(&o.stderr).contains(flag)
    })
}

/// One ProducerPerformance run; also returns how many warm-up records it left out of its summary.
fn produce(c: &Common, a: &JavaToolArgs, records: u64) -> Result<(ProducerSummary, u64), String> {
    let payload = (a.payload_lines > 0)
        .then(|| PayloadFile::write(a.payload_lines, a.record_size))
        .transpose()?;
    let mut args = vec![
        "--topic".to_string(),
        a.topic.clone(),
        "--num-records".into(),
        records.to_string(),
    ];
    match &payload {
        Some(f) => args.extend(["--payload-file".into(), f.0.display().to_string()]),
        None => args.extend(["--record-size".into(), a.record_size.to_string()]),
    }
    args.extend([
        "--throughput".into(),
        a.throughput.to_string(),
        "--producer-props".into(),
        format!("bootstrap.servers={}", c.bootstrap),
        format!("acks={}", a.acks),
        format!("linger.ms={}", a.linger_ms),
        format!("batch.size={}", a.batch_size),
    ]);
    const CLASS: &str = "org.apache.kafka.tools.ProducerPerformance";
    let warmup = if a.warmup_records > 0 && tool_has_flag(&a.kafka_lib, CLASS, "--warmup-records") {
        args.extend(["--warmup-records".into(), a.warmup_records.to_string()]);
        a.warmup_records
    } else {
        0
    };
    let out = tool(&a.kafka_lib, CLASS, &args)?;
    let summary = parse_producer(&out).ok_or_else(|| "no summary line from ProducerPerformance".to_string())?;
    Ok((summary, warmup))
}

fn consume(c: &Common, a: &JavaToolArgs, group: &str) -> Result<ConsumerSummary, String> {
    let args = [
        "--bootstrap-server".to_string(),
        c.bootstrap.clone(),
        "--topic".into(),
        a.topic.clone(),
        "--num-records".into(),
        a.records.to_string(),
        "--group".into(),
        group.to_string(),
        "--hide-header".into(),
    ];
    let out = tool(&a.kafka_lib, "org.apache.kafka.tools.ConsumerPerformance", &args)?;
    parse_consumer(&out).ok_or_else(|| "no summary line from ConsumerPerformance".to_string())
}

fn set_producer_result(r: &mut ScenarioResult, a: &JavaToolArgs, s: &ProducerSummary) {
    r.set_throughput(s.records, s.records * a.record_size, s.duration_s());
    r.metric("ack_latency_avg_ms", s.avg_ms);
    r.metric("ack_latency_p50_ms", s.p50_ms);
    r.metric("ack_latency_p99_ms", s.p99_ms);
    r.metric("ack_latency_p99_9_ms", s.p99_9_ms);
    r.metric("ack_latency_max_ms", s.max_ms);
}

/// `java-produce` and `java-latency`: one ProducerPerformance run into a fresh topic.
pub fn run_produce(c: &Common, a: &JavaToolArgs, r: &mut ScenarioResult, latency: bool) -> Result<(), String> {
    client::with_fresh_topic(c, &a.topic, a.partitions, r, |r| {
        let (s, warmup) = produce(c, a, a.records)?;
        set_producer_result(r, a, &s);
        if warmup < a.warmup_records {
            r.note("this Kafka's ProducerPerformance has no --warmup-records: its first seconds are counted");
        }
        let expected = a.records.saturating_sub(warmup);
        if s.records < expected {
            r.errors += expected - s.records;
        }
        if latency {
            r.latency_ms = Some(Latency {
                p50: s.p50_ms,
                p95: s.p95_ms,
                p99: s.p99_ms,
                p99_9: s.p99_9_ms,
                max: s.max_ms,
            });
            r.metric("achieved_send_records_per_s", s.records_per_s);
            r.note(format!(
                "latency is ProducerPerformance's: send() to acknowledgement, whole milliseconds, \
                 after {warmup} warm-up records"
            ));
        }
        Ok(())
    })
}

/// `java-consume`: a backlog, then `--passes` reads of it by ConsumerPerformance.
pub fn run_consume(c: &Common, a: &JavaToolArgs, r: &mut ScenarioResult) -> Result<(), String> {
    client::with_fresh_topic(c, &a.topic, a.partitions, r, |r| produce_then_read(c, a, r))
}

fn produce_then_read(c: &Common, a: &JavaToolArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let (p, _) = produce(c, a, a.records)?;
    r.metric(
        "produce_mb_per_s",
        per_s((p.records * a.record_size) as f64 / BYTES_PER_MB, p.duration_s()),
    );
    if p.records < a.records {
        return Err(format!("the backlog is {} records short", a.records - p.records));
    }
    let mut passes = Vec::new();
    for pass in 1..=a.passes {
        if Instant::now() >= c.deadline {
            r.note(format!("--max-s reached after {} passes", pass - 1));
            break;
        }
        let group = format!("{}-pass{pass}-{}", a.topic, crate::result::epoch_ms());
        let s = consume(c, a, &group)?;
        let mb = (s.records * a.record_size) as f64 / BYTES_PER_MB;
        let total_s = s.duration_s();
        r.metric(&format!("pass{pass}_mb_per_s"), per_s(mb, total_s));
        r.metric(&format!("pass{pass}_fetch_mb_per_s"), per_s(mb, s.fetch_ms / 1000.0));
        r.metric(&format!("pass{pass}_rebalance_ms"), s.rebalance_ms);
        if s.records < a.records {
            r.errors += a.records - s.records;
            r.note(format!("pass {pass} read {} of {} records", s.records, a.records));
        }
        passes.push((s, total_s));
    }
    // The median pass by the tool's own figure, joining included.
    let totals: Vec<f64> = passes.iter().map(|(_, t)| *t).collect();
    let Some(mid) = median(totals) else {
        return Err("no pass completed".into());
    };
    let (s, total_s) = passes
        .iter()
        .min_by(|x, y| (x.1 - mid).abs().total_cmp(&(y.1 - mid).abs()))
        .copied()
        .ok_or("no pass completed")?;
    r.set_throughput(s.records, s.records * a.record_size, total_s);
    r.metric("rebalance_ms", s.rebalance_ms);
    r.metric(
        "fetch_mb_per_s",
        per_s((s.records * a.record_size) as f64 / BYTES_PER_MB, s.fetch_ms / 1000.0),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_summary() {
        let out = "1000 records sent, 200.0 records/sec (0.20 MB/sec), 1.0 ms avg latency, 5.0 ms max latency.\n\
            2000000 records sent, 210504.157457 records/sec (205.57 MB/sec), 4.51 ms avg latency, \
            363.00 ms max latency, 3 ms 50th, 14 ms 95th, 29 ms 99th, 48 ms 99.9th.\n";
        let s = parse_producer(out).expect("the summary line");
        assert_eq!(s.records, 2_000_000);
        assert!((s.records_per_s - 210_504.157_457).abs() < 1e-6);
        assert_eq!((s.avg_ms, s.max_ms), (4.51, 363.0));
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms, s.p99_9_ms), (3.0, 14.0, 29.0, 48.0));
        assert_eq!(parse_producer("nothing here"), None);
        let steady = format!(
            "{out}40000 steady state records sent, 19550.342131 records/sec (19.09 MB/sec), 4.94 ms avg \
             latency, 12.00 ms max latency, 5 ms 50th, 8 ms 95th, 10 ms 99th, 12 ms 99.9th.\n"
        );
        let s = parse_producer(&steady).expect("the steady-state line");
        assert_eq!((s.records, s.p99_ms, s.max_ms), (40_000, 10.0, 12.0));
    }

    #[test]
    fn consumer_summary() {
        let out = "WARNING: something\n2026-12-06 10:43:45:071, 2026-12-06 10:43:48:926, 1953.1250, 506.6472, \
            2000000, 518806.7445, 366, 3489, 559.7951, 573230.1519\n";
        let s = parse_consumer(out).expect("the summary line");
        assert_eq!(s.records, 2_000_000);
        assert!((s.records_per_s - 518_806.744_5).abs() < 1e-6);
        assert_eq!((s.rebalance_ms, s.fetch_ms), (366.0, 3489.0));
        assert_eq!(parse_consumer("a, b\n"), None);
    }
}
