//! `fjord-bench`: end-to-end benchmarks of a Kafka-protocol broker, Fjord or Apache Kafka,
//! through librdkafka (the client under most Kafka applications), plus the machine's own
//! limits and a Markdown report that sets the two brokers side by side.
//!
//! # Command line
//!
//! `bench/run.py` calls exactly this; keep it stable.
//!
//! ```text
//! fjord-bench [--bootstrap 127.0.0.1:9092] [--broker-pid PID] [--label fjord|kafka] [--out result.json]
//!             [--keep-topic] [--max-s 900] [--case NAME] [--replication-factor 1]
//!             [--min-insync-replicas N] <SCENARIO> [flags]
//!   produce   --topic T --partitions 1 --producers 1 --records 1000000 --record-size 1024 --acks 1|all
//!             --codec none|gzip|snappy|lz4|zstd [--linger-ms 5] [--batch-bytes 1048576] [--key-bytes 0]
//!             [--keyspace 100000] [--idempotent]
//!   produce-raw --topic T --partitions 12 --records 2000000 --record-size 1024 [--records-per-batch 1000]
//!             [--connections 2] [--in-flight 5] [--acks all]
//!   orders    same flags as produce; defaults --partitions 24 --producers 8 --records 1000000
//!             --record-size 200 --acks all --key-bytes 16
//!   logs      same flags as produce; defaults --partitions 6 --records 250000 --record-size 4096
//!             --codec lz4 --acks 1 --batch-bytes 1048576 --linger-ms 50 (log-line payloads)
//!   latency   --topic T --partitions 1 --rate 10000 --duration-s 30 --record-size 1024 --acks all
//!             [--codec none] [--linger-ms 1] [--fetch-wait-max-ms 10] [--warmup-s 1]
//!   catchup   --topic T --partitions 12 --backlog-bytes 2147483648 --record-size 1024 [--producers 1]
//!             [--fetch-max-bytes 67108864]
//!   create-partitions --topics 50 --partitions-per-topic 100 [--topic-prefix fjord-bench-cp]
//!   idle-connections  --count 1000 --hold-s 10
//!   java-produce | java-latency | java-consume  --kafka-lib DIR [--topic T] [--partitions 12]
//!             [--records 2000000] [--record-size 1024] [--throughput -1] [--acks all] [--linger-ms 5]
//!             [--batch-size 262144] [--passes 3]   (Kafka's own perf tools; see javatools.rs)
//!   wait-ready        [--since-epoch-ms T] --timeout-s 60 [--poll-ms 50]
//!   limits            --dir D --bytes 1073741824
//!   report            --results DIR --markdown OUT.md --charts-dir DIR [--data-dir D]
//! ```
//!
//! Global flags may come before or after the scenario name.
//!
//! # Output
//!
//! Every scenario but `report` prints one result JSON document on stdout (and writes it to
//! `--out`): `scenario, label, params, started_at, duration_s, records, bytes, records_per_s,
//! mb_per_s, latency_ms {p50, p95, p99, p99_9, max} (latency only), latency_curve_ms,
//! broker {cpu_s, rss_max_bytes, rss_avg_bytes, rss_start_bytes, rss_end_bytes, samples}
//! (with --broker-pid), errors, notes, skipped, failed, metrics {..}, machine {..}`. With --broker-pid,
//! `metrics.broker_cpu_after_s` is the CPU the broker spent after the scenario until it went
//! quiet (under 5% of a core for 0.5 s, at most 10 s): deferred flushes and compactions. Progress and
//! librdkafka warnings go to stderr. MB is 10^6 bytes of payload and keys, uncompressed.
//!
//! Exit status: 0 when the scenario ran, including runs with counted `errors` and runs
//! `skipped` because the broker lacks an API the scenario needs; 1 when it could not run
//! (broker unreachable, topic not created, wait-ready timed out; the JSON says why in
//! `notes`); 2 for bad flags.
//!
//! # Bounds
//!
//! Every scenario stops its measured phases at `--max-s` (default 900 s) and says so in
//! `notes`; records still undelivered then are purged and counted as errors. Further caps:
//! librdkafka gives up on a record after 60 s (`message.timeout.ms`), admin requests after
//! 120 s, a catch-up consumer that reads nothing for 30 s stops, a latency run drains for at
//! most 10 s after its last send and sends at most 10^8 records, idle-connections holds at
//! most 100,000 sockets for at most an hour.

mod admin;
mod catchup;
mod charts;
mod client;
mod connections;
mod javatools;
mod latency;
mod limits;
mod machine;
mod produce;
mod rawproduce;
mod report;
mod result;
mod sampler;
mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::client::ClientLog;
use crate::machine::Machine;
use crate::result::ScenarioResult;

#[derive(Parser, Debug)]
#[command(
    name = "fjord-bench",
    version,
    about = "End-to-end benchmarks of Fjord and Apache Kafka over the Kafka protocol (librdkafka)",
    long_about = "End-to-end benchmarks of Fjord and Apache Kafka over the Kafka protocol (librdkafka).\n\n\
        Each scenario prints one result JSON on stdout (also written to --out); `report` turns a\n\
        directory of them into Markdown with SVG charts. Exit status: 0 ran (errors are counted in\n\
        the JSON; `skipped: true` if the broker lacks a needed API), 1 could not run, 2 bad flags."
)]
struct Cli {
    /// Broker address, host:port.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Broker process to sample every 100 ms (CPU, RSS); for Kafka, the JVM's PID.
    #[arg(long, global = true, help_heading = "Global options")]
    broker_pid: Option<u32>,
    /// Which broker this is; copied into the result (`fjord`, `kafka`).
    #[arg(long, global = true, help_heading = "Global options", default_value = "fjord")]
    label: String,
    /// Also write the result JSON to this file.
    #[arg(long, global = true, help_heading = "Global options")]
    out: Option<PathBuf>,
    /// Leave the scenario's topics in place instead of deleting them.
    #[arg(long, global = true, help_heading = "Global options")]
    keep_topic: bool,
    /// A name for this run's case, stored in params: runs that share scenario, flags and case
    /// are compared in one table (e.g. `--case restart` for wait-ready after a restart).
    #[arg(long, global = true, help_heading = "Global options")]
    case: Option<String>,
    /// Cap, in seconds, on a scenario's measured phases.
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_s: u64,
    /// Replication factor of the topics a scenario creates (3 in the replicated benchmark).
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=32))]
    replication_factor: i32,
    /// `min.insync.replicas` of the topics a scenario creates; the broker's default if unset.
    #[arg(long, global = true, help_heading = "Global options", value_parser = clap::value_parser!(i32).range(1..=32))]
    min_insync_replicas: Option<i32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Producer throughput: records/s and MB/s from first send to last delivery report.
    Produce(produce::ProduceArgs),
    /// The broker's own produce ceiling: one pre-encoded batch of 1 KiB records sent over and
    /// over by a near-free client (librdkafka holds a shared 2-core machine near 1 GB/s).
    ProduceRaw(rawproduce::RawProduceArgs),
    /// Order events: many small keyed records, acks=all, several producers.
    #[command(
        mut_arg("topic", |a| a.default_value("fjord-bench-orders")),
        mut_arg("partitions", |a| a.default_value("24")),
        mut_arg("producers", |a| a.default_value("8")),
        mut_arg("record_size", |a| a.default_value("200")),
        mut_arg("acks", |a| a.default_value("all")),
        mut_arg("key_bytes", |a| a.default_value("16"))
    )]
    Orders(produce::ProduceArgs),
    /// Log shipping: large records of log lines in big compressed batches.
    #[command(
        mut_arg("topic", |a| a.default_value("fjord-bench-logs")),
        mut_arg("partitions", |a| a.default_value("6")),
        mut_arg("records", |a| a.default_value("250000")),
        mut_arg("record_size", |a| a.default_value("4096")),
        mut_arg("codec", |a| a.default_value("lz4")),
        mut_arg("linger_ms", |a| a.default_value("50"))
    )]
    Logs(produce::ProduceArgs),
    /// End-to-end latency at a fixed rate: percentiles from producer to consumer.
    Latency(latency::LatencyArgs),
    /// Produce a backlog, then time one consumer reading it all from the beginning.
    Catchup(catchup::CatchupArgs),
    /// Time to create many partitions and see them in Metadata; broker RSS before and after.
    CreatePartitions(admin::CreatePartitionsArgs),
    /// Kafka's kafka-producer-perf-test at full speed (the Java client, a second load generator).
    JavaProduce(javatools::JavaToolArgs),
    /// Kafka's kafka-producer-perf-test held to --throughput records/s: its ack latency.
    JavaLatency(javatools::JavaToolArgs),
    /// A backlog, then Kafka's kafka-consumer-perf-test reading it --passes times.
    JavaConsume(javatools::JavaToolArgs),
    /// Hold many idle raw connections; broker RSS per connection, and that it still answers.
    IdleConnections(connections::IdleConnectionsArgs),
    /// Poll until the broker answers ApiVersions and Metadata; time since --since-epoch-ms.
    WaitReady(connections::WaitReadyArgs),
    /// This machine's limits: disk write with and without fdatasync, loopback TCP.
    Limits(limits::LimitsArgs),
    /// Markdown tables and SVG charts from a directory of result JSONs.
    Report(report::ReportArgs),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Produce(_) => "produce",
            Scenario::ProduceRaw(_) => "produce-raw",
            Scenario::Orders(_) => "orders",
            Scenario::Logs(_) => "logs",
            Scenario::Latency(_) => "latency",
            Scenario::Catchup(_) => "catchup",
            Scenario::CreatePartitions(_) => "create-partitions",
            Scenario::JavaProduce(_) => "java-produce",
            Scenario::JavaLatency(_) => "java-latency",
            Scenario::JavaConsume(_) => "java-consume",
            Scenario::IdleConnections(_) => "idle-connections",
            Scenario::WaitReady(_) => "wait-ready",
            Scenario::Limits(_) => "limits",
            Scenario::Report(_) => "report",
        }
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        fn map<T: Serialize>(args: &T) -> BTreeMap<String, serde_json::Value> {
            match serde_json::to_value(args) {
                Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
                _ => BTreeMap::new(),
            }
        }
        match self {
            Scenario::Produce(a) | Scenario::Orders(a) | Scenario::Logs(a) => map(a),
            Scenario::ProduceRaw(a) => map(a),
            Scenario::Latency(a) => map(a),
            Scenario::Catchup(a) => map(a),
            Scenario::JavaProduce(a) | Scenario::JavaLatency(a) | Scenario::JavaConsume(a) => map(a),
            Scenario::CreatePartitions(a) => map(a),
            Scenario::IdleConnections(a) => map(a),
            Scenario::WaitReady(a) => map(a),
            Scenario::Limits(a) => map(a),
            Scenario::Report(a) => map(a),
        }
    }

    /// Kafka API keys the scenario cannot run without: Produce 0, Fetch 1, ListOffsets 2,
    /// Metadata 3, CreateTopics 19, DeleteTopics 20.
    fn required_apis(&self) -> &'static [(i16, &'static str)] {
        const TOPICS: [(i16, &str); 3] = [(3, "Metadata"), (19, "CreateTopics"), (20, "DeleteTopics")];
        match self {
            Scenario::Produce(_) | Scenario::ProduceRaw(_) | Scenario::Orders(_) | Scenario::Logs(_) => {
                &[(0, "Produce"), TOPICS[0], TOPICS[1], TOPICS[2]]
            }
            Scenario::Latency(_)
            | Scenario::Catchup(_)
            | Scenario::JavaProduce(_)
            | Scenario::JavaLatency(_)
            | Scenario::JavaConsume(_) => &[
                (0, "Produce"),
                (1, "Fetch"),
                (2, "ListOffsets"),
                TOPICS[0],
                TOPICS[1],
                TOPICS[2],
            ],
            Scenario::CreatePartitions(_) => &TOPICS,
            Scenario::IdleConnections(_) => &[(3, "Metadata")],
            Scenario::WaitReady(_) | Scenario::Limits(_) | Scenario::Report(_) => &[],
        }
    }
}

/// What every scenario gets besides its own flags.
pub struct Common {
    pub bootstrap: String,
    pub broker_pid: Option<u32>,
    pub keep_topic: bool,
    /// `--max-s` after the start: measured phases stop here.
    pub deadline: Instant,
    /// librdkafka warnings of every client the scenario makes.
    pub log: Arc<ClientLog>,
    /// How the scenario's topics are created.
    pub topics: client::TopicSettings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Report(a) = &cli.scenario {
        return match report::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fjord-bench report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut r = ScenarioResult::new(cli.scenario.name(), &cli.label);
    r.params = cli.scenario.params();
    if let Some(case) = &cli.case {
        r.params.insert("case".into(), serde_json::Value::String(case.clone()));
    }
    // Only when not the default, so that earlier single-replica results still compare.
    if cli.replication_factor != 1 {
        r.params
            .insert("replication_factor".into(), cli.replication_factor.into());
    }
    if let Some(min_isr) = cli.min_insync_replicas {
        r.params.insert("min_insync_replicas".into(), min_isr.into());
    }
    r.machine = Some(Machine::current());
    let common = Common {
        bootstrap: cli.bootstrap.clone(),
        broker_pid: cli.broker_pid,
        keep_topic: cli.keep_topic,
        deadline: Instant::now() + Duration::from_secs(cli.max_s),
        log: Arc::new(ClientLog::default()),
        topics: client::TopicSettings {
            replication_factor: cli.replication_factor,
            min_insync_replicas: cli.min_insync_replicas,
        },
    };
    if cli.scenario.required_apis().is_empty() {
        eprintln!("fjord-bench: {} ({})", r.scenario, cli.label);
    } else {
        eprintln!("fjord-bench: {} against {} ({})", r.scenario, cli.bootstrap, cli.label);
    }

    let sampler = cli.broker_pid.map(sampler::Sampler::start);
    let cpu_before = sampler::self_cpu_ticks();
    let outcome = match missing_apis(&cli.scenario, &cli.bootstrap) {
        Err(e) => Err(e),
        Ok(missing) if !missing.is_empty() => {
            r.skipped = true;
            r.note(format!("skipped: the broker does not advertise {}", missing.join(", ")));
            Ok(())
        }
        Ok(_) => match &cli.scenario {
            Scenario::Produce(a) | Scenario::Orders(a) | Scenario::Logs(a) => {
                produce::run(&common, r.scenario.clone().as_str(), a, &mut r)
            }
            Scenario::ProduceRaw(a) => rawproduce::run(&common, a, &mut r),
            Scenario::Latency(a) => latency::run(&common, a, &mut r),
            Scenario::Catchup(a) => catchup::run(&common, a, &mut r),
            Scenario::JavaProduce(a) => javatools::run_produce(&common, a, &mut r, false),
            Scenario::JavaLatency(a) => javatools::run_produce(&common, a, &mut r, true),
            Scenario::JavaConsume(a) => javatools::run_consume(&common, a, &mut r),
            Scenario::CreatePartitions(a) => admin::run(&common, a, &mut r),
            Scenario::IdleConnections(a) => connections::run_idle(&common, a, &mut r),
            Scenario::WaitReady(a) => connections::run_wait_ready(a, &common.bootstrap, &mut r),
            Scenario::Limits(a) => limits::run(&common, a, &mut r),
            Scenario::Report(_) => unreachable!("handled above"),
        },
    };
    let ticks_per_s = sampler::clock_ticks_per_s();
    if let (Some(before), Some(after)) = (cpu_before, sampler::self_cpu_ticks()) {
        r.metric("client_cpu_s", after.saturating_sub(before) as f64 / ticks_per_s);
    }
    if let Some(s) = sampler {
        let acc = s.stop();
        r.broker = acc.stats(ticks_per_s);
        if acc.vanished {
            r.errors += 1;
            r.note("the broker process exited during the scenario");
        }
    }
    // Work the scenario left behind (flushes, compactions) is not in broker.cpu_s; measure it
    // apart so short runs do not look cheaper than they are.
    if let Some(pid) = cli
        .broker_pid
        .filter(|_| !matches!(cli.scenario, Scenario::WaitReady(_) | Scenario::Limits(_)))
    {
        if let Some((cpu_s, waited_s)) = sampler::settle(pid, ticks_per_s) {
            r.metric("broker_cpu_after_s", cpu_s);
            r.metric("broker_settle_s", waited_s);
        }
    }
    common.log.add_notes(&mut r);
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-bench: {}: {e}", r.scenario);
            r.errors += 1;
            r.failed = true;
            r.note(format!("could not run: {e}"));
            ExitCode::FAILURE
        }
    };
    summarize(&r);
    let json = serde_json::to_string_pretty(&r).expect("a result holds only strings, numbers and maps");
    println!("{json}");
    if let Some(out) = &cli.out {
        if let Err(e) = std::fs::write(out, format!("{json}\n")) {
            eprintln!("fjord-bench: writing {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    code
}

/// The required APIs the broker does not advertise (empty if all are there).
fn missing_apis(scenario: &Scenario, bootstrap: &str) -> Result<Vec<String>, String> {
    let required = scenario.required_apis();
    if required.is_empty() {
        return Ok(Vec::new());
    }
    // A cluster's bootstrap list names several brokers; any one of them advertises the APIs.
    let first = bootstrap.split(',').next().unwrap_or(bootstrap);
    let apis = wire::advertised_apis(first).map_err(|e| format!("ApiVersions: {e}"))?;
    Ok(required
        .iter()
        .filter(|(k, _)| !apis.iter().any(|a| a.key == *k))
        .map(|(k, n)| format!("{n} (key {k})"))
        .collect())
}

/// One human line on stderr.
fn summarize(r: &ScenarioResult) {
    let mut line = format!("fjord-bench: {} {}: ", r.scenario, r.label);
    if r.skipped {
        line.push_str("skipped");
    } else {
        line.push_str(&format!(
            "{} records in {:.2} s, {:.0} rec/s, {:.2} MB/s",
            r.records, r.duration_s, r.records_per_s, r.mb_per_s
        ));
    }
    if let Some(l) = r.latency_ms {
        line.push_str(&format!(
            ", latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            l.p50, l.p99, l.p99_9, l.max
        ));
    }
    if let Some(b) = r.broker {
        line.push_str(&format!(
            ", broker {:.1} CPU s, RSS max {} MiB",
            b.cpu_s,
            b.rss_max_bytes >> 20
        ));
    }
    line.push_str(&format!(", {} errors", r.errors));
    eprintln!("{line}");
    for n in &r.notes {
        eprintln!("fjord-bench:   note: {n}");
    }
}
