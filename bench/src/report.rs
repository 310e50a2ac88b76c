//! `report`: turns a directory of result JSONs into a Markdown section with SVG charts.
//!
//! Results are grouped into *cases*: one scenario with one set of params (the topic name and
//! other incidental params ignored). Each case gets a table with a row per metric and the
//! columns Fjord, Kafka, Fjord/Kafka, the physical limit where one applies, and Fjord/limit.
//! Repeated runs of a case by one broker are summarised by their median (errors: their sum),
//! and the table says how many runs there were. A skipped run shows as "skipped".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::charts;
use crate::machine::{Disk, Machine};
use crate::result::ScenarioResult;

#[derive(Args, Debug, Clone, Serialize)]
pub struct ReportArgs {
    /// Directory whose *.json result files are read (not recursively).
    #[arg(long)]
    pub results: PathBuf,
    /// Markdown file to write.
    #[arg(long)]
    pub markdown: PathBuf,
    /// Directory for the SVG charts; the Markdown links them by relative path.
    #[arg(long)]
    pub charts_dir: PathBuf,
    /// The brokers' data directory, to describe its disk (default: from a `limits` result).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Params that differ between runs of the same case and must not split it.
const INCIDENTAL_PARAMS: [&str; 6] = [
    "topic",
    "topic_prefix",
    "since_epoch_ms",
    "dir",
    "timeout_s",
    "kafka_lib",
];
/// Section order; scenarios not listed follow in name order.
const SCENARIO_ORDER: [&str; 14] = [
    "produce",
    "produce-raw",
    "orders",
    "logs",
    "catchup",
    "latency",
    "java-produce",
    "java-consume",
    "java-latency",
    "create-partitions",
    "idle-connections",
    "wait-ready",
    "idle",
    "limits",
];
/// Column order; other labels follow in name order.
pub const LABEL_ORDER: [&str; 2] = ["fjord", "kafka"];
const MIB: f64 = (1u64 << 20) as f64;

/// One scenario with one set of params, and its runs per broker label.
pub struct Case<'a> {
    pub scenario: String,
    /// `k=v` pairs of the params that define the case.
    pub key: String,
    pub runs: BTreeMap<String, Vec<&'a ScenarioResult>>,
}

impl Case<'_> {
    /// Labels in column order.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self.runs.keys().cloned().collect();
        labels.sort_by_key(|l| {
            (
                LABEL_ORDER.iter().position(|o| o == l).unwrap_or(LABEL_ORDER.len()),
                l.clone(),
            )
        });
        labels
    }

    /// Median (or sum) of a metric over a label's non-skipped runs.
    pub fn value(&self, label: &str, row: &Row) -> Option<f64> {
        let vals: Vec<f64> = self
            .runs
            .get(label)?
            .iter()
            .filter(|r| !r.skipped && !r.failed)
            .filter_map(|r| (row.get)(r))
            .collect();
        if vals.is_empty() {
            None
        } else if row.sum {
            Some(vals.iter().sum())
        } else {
            median(vals)
        }
    }
}

/// A metric row of a case table.
pub struct Row {
    pub name: &'static str,
    pub get: fn(&ScenarioResult) -> Option<f64>,
    /// Sum over repeated runs instead of the median (errors must never be averaged away).
    pub sum: bool,
    /// The `limits` metric this row is bounded by, and how the table names it.
    pub limit: Option<(&'static str, &'static str)>,
}

const fn row(name: &'static str, get: fn(&ScenarioResult) -> Option<f64>) -> Row {
    Row {
        name,
        get,
        sum: false,
        limit: None,
    }
}

fn metric(r: &ScenarioResult, name: &str) -> Option<f64> {
    r.metrics.get(name).copied()
}

/// The limit for writes into a broker: the slower of the disk (page cache) and loopback TCP.
pub const WRITE_LIMIT: (&str, &str) = ("write", "min(disk write, loopback TCP)");
/// The limit for reads out of a broker's cache.
pub const READ_LIMIT: (&str, &str) = ("loopback_tcp_mb_per_s", "loopback TCP");

/// The rows each scenario's table shows.
pub fn rows(scenario: &str) -> Vec<Row> {
    let errors = Row {
        name: "errors",
        get: |r| Some(r.errors as f64),
        sum: true,
        limit: None,
    };
    let cpu = row("broker CPU s", |r| r.broker.map(|b| b.cpu_s));
    let cpu_after = row("broker CPU s after (settling)", |r| metric(r, "broker_cpu_after_s"));
    let cpu_per_gb = row("broker CPU s per GB", |r| {
        r.broker
            .filter(|_| r.bytes > 0)
            .map(|b| b.cpu_s / (r.bytes as f64 / 1e9))
    });
    let rss = row("broker RSS max MiB", |r| r.broker.map(|b| b.rss_max_bytes as f64 / MIB));
    let client_cpu = row("client CPU s", |r| metric(r, "client_cpu_s"));
    match scenario {
        "produce" | "produce-raw" | "orders" | "logs" => vec![
            Row {
                limit: Some(WRITE_LIMIT),
                ..row("MB/s", |r| Some(r.mb_per_s))
            },
            row("records/s", |r| Some(r.records_per_s)),
            row("duration s", |r| Some(r.duration_s)),
            errors,
            cpu,
            cpu_after,
            cpu_per_gb,
            rss,
            client_cpu,
        ],
        "catchup" => vec![
            Row {
                limit: Some(READ_LIMIT),
                ..row("consume MB/s", |r| Some(r.mb_per_s))
            },
            row("consume records/s", |r| Some(r.records_per_s)),
            row("consume duration s", |r| Some(r.duration_s)),
            Row {
                limit: Some(WRITE_LIMIT),
                ..row("produce MB/s", |r| metric(r, "produce_mb_per_s"))
            },
            errors,
            cpu,
            cpu_after,
            rss,
            client_cpu,
        ],
        "java-produce" => vec![
            Row {
                limit: Some(WRITE_LIMIT),
                ..row("MB/s", |r| Some(r.mb_per_s))
            },
            row("records/s", |r| Some(r.records_per_s)),
            row("ack latency p50 ms", |r| metric(r, "ack_latency_p50_ms")),
            row("ack latency p99 ms", |r| metric(r, "ack_latency_p99_ms")),
            errors,
            cpu,
            cpu_per_gb,
            rss,
            client_cpu,
        ],
        "java-consume" => vec![
            Row {
                limit: Some(READ_LIMIT),
                ..row("consume MB/s (tool's figure, join included)", |r| Some(r.mb_per_s))
            },
            row("fetch-only MB/s", |r| metric(r, "fetch_mb_per_s")),
            row("join (rebalance) ms", |r| metric(r, "rebalance_ms")),
            row("backlog produce MB/s", |r| metric(r, "produce_mb_per_s")),
            errors,
            cpu,
            rss,
            client_cpu,
        ],
        // java-latency: ProducerPerformance's send-to-acknowledgement times, same rows.
        "latency" | "java-latency" => vec![
            row("p50 ms", |r| r.latency_ms.map(|l| l.p50)),
            row("p95 ms", |r| r.latency_ms.map(|l| l.p95)),
            row("p99 ms", |r| r.latency_ms.map(|l| l.p99)),
            row("p99.9 ms", |r| r.latency_ms.map(|l| l.p99_9)),
            row("max ms", |r| r.latency_ms.map(|l| l.max)),
            row("achieved records/s", |r| metric(r, "achieved_send_records_per_s")),
            errors,
            cpu,
            rss,
        ],
        "create-partitions" => vec![
            row("partitions", |r| metric(r, "partitions")),
            row("create s", |r| metric(r, "create_s")),
            row("visible in Metadata s", |r| metric(r, "visible_s")),
            row("delete s", |r| metric(r, "delete_s")),
            row("RSS delta MiB", |r| metric(r, "rss_delta_bytes").map(|b| b / MIB)),
            row("RSS per partition KiB", |r| {
                metric(r, "rss_per_partition_bytes").map(|b| b / 1024.0)
            }),
            errors,
            cpu,
        ],
        "idle-connections" => vec![
            row("connections held", |r| metric(r, "connections_open")),
            row("open s", |r| metric(r, "open_s")),
            row("RSS delta MiB", |r| metric(r, "rss_delta_bytes").map(|b| b / MIB)),
            row("RSS per connection KiB", |r| {
                metric(r, "rss_per_connection_bytes").map(|b| b / 1024.0)
            }),
            row("Metadata while held ms", |r| metric(r, "metadata_ms")),
            row("held connections alive", |r| metric(r, "held_alive")),
            errors,
            cpu,
        ],
        "wait-ready" => vec![row("ready ms", |r| metric(r, "ready_ms")), errors],
        // Written by bench/run.py: the broker a few seconds after it became ready.
        "idle" => vec![
            row("idle RSS MiB", |r| metric(r, "idle_rss_bytes").map(|b| b / MIB)),
            cpu,
            errors,
        ],
        _ => vec![
            row("MB/s", |r| (r.mb_per_s > 0.0).then_some(r.mb_per_s)),
            row("records/s", |r| (r.records_per_s > 0.0).then_some(r.records_per_s)),
            row("duration s", |r| Some(r.duration_s)),
            errors,
            cpu,
            rss,
        ],
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The `k=v` description of a result's case.
pub fn case_key(r: &ScenarioResult) -> String {
    r.params
        .iter()
        .filter(|(k, _)| !INCIDENTAL_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups results into cases, in section order, then in order of first appearance.
pub fn group(results: &[ScenarioResult]) -> Vec<Case<'_>> {
    let mut cases: Vec<Case> = Vec::new();
    for r in results {
        let key = case_key(r);
        let case = match cases.iter_mut().position(|c| c.scenario == r.scenario && c.key == key) {
            Some(i) => &mut cases[i],
            None => {
                cases.push(Case {
                    scenario: r.scenario.clone(),
                    key,
                    runs: BTreeMap::new(),
                });
                cases.last_mut().expect("just pushed")
            }
        };
        case.runs.entry(r.label.clone()).or_default().push(r);
    }
    let order = |s: &str| {
        SCENARIO_ORDER
            .iter()
            .position(|o| *o == s)
            .unwrap_or(SCENARIO_ORDER.len())
    };
    // Stable sort: cases of one scenario keep their order of appearance.
    cases.sort_by(|a, b| {
        order(&a.scenario).cmp(&order(&b.scenario)).then_with(|| {
            if order(&a.scenario) == SCENARIO_ORDER.len() {
                a.scenario.cmp(&b.scenario)
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    cases
}

/// The machine's limits, from every `limits` result (median of each metric).
pub fn limits(results: &[ScenarioResult]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.scenario == "limits" && !r.skipped) {
        for (k, v) in &r.metrics {
            all.entry(k.clone()).or_default().push(*v);
        }
    }
    let mut out: BTreeMap<String, f64> = all.into_iter().filter_map(|(k, v)| Some((k, median(v)?))).collect();
    if let (Some(d), Some(l)) = (out.get("disk_write_mb_per_s"), out.get("loopback_tcp_mb_per_s")) {
        let w = d.min(*l);
        out.insert(WRITE_LIMIT.0.to_string(), w);
    }
    out
}

/// A number with about four significant digits, no exponent for everyday magnitudes.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        let rounded = v.round() as i64; // a < i64::MAX for every measured quantity
        group_thousands(rounded)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `a / b` as "1.23x", or "–" when either is missing or b is 0.
pub fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => {
            let r = a / b;
            // Two decimals, or two significant digits for ratios far below 1.
            let decimals = if r.abs() >= 0.1 || r == 0.0 {
                2
            } else {
                (-r.abs().log10()).ceil().min(6.0) as usize + 1
            };
            format!("{r:.decimals$}x")
        }
        _ => "–".into(),
    }
}

/// The path of `to` relative to the directory `from`, both absolute (`../charts/x.svg`).
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Renders the Markdown: the machine, then a table per case. `chart_links` holds the charts
/// (alt text, relative link) to embed after a case's table, by case index; `scenario_charts`
/// those after a scenario's last case.
pub fn render(
    results: &[ScenarioResult],
    machine: &Machine,
    chart_links: &BTreeMap<usize, Vec<(String, String)>>,
    scenario_charts: &BTreeMap<String, Vec<(String, String)>>,
) -> String {
    let cases = group(results);
    let limits = limits(results);
    let mut md = String::new();
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "Produced by `fjord-bench report` from {} result files.\n",
        results.len()
    );
    let _ = writeln!(md, "### Machine\n");
    let _ = writeln!(md, "- {}", machine.summary());
    if let Some(d) = &machine.disk {
        let _ = writeln!(md, "- Data directory: {}", d.summary());
    }
    if !machine.client_library.is_empty() {
        let _ = writeln!(md, "- Client: {}", machine.client_library);
    }
    for (key, name) in [
        ("disk_write_mb_per_s", "sequential write, no sync (page cache)"),
        (
            "disk_write_synced_mb_per_s",
            "sequential write, one fdatasync at the end",
        ),
        ("disk_write_fdatasync_mb_per_s", "sequential write, fdatasync every MiB"),
        ("loopback_tcp_mb_per_s", "loopback TCP, one stream"),
    ] {
        if let Some(v) = limits.get(key) {
            let _ = writeln!(md, "- Limit, {name}: {} MB/s", fmt_num(*v));
        }
    }
    let _ = writeln!(md, "\nMB = 10^6 bytes of record payload and keys, before compression. Ratios above 1x mean Fjord measured more (for times and latencies, more is worse).");

    let mut current = String::new();
    for (i, case) in cases.iter().enumerate() {
        if case.scenario == "limits" {
            continue;
        }
        if case.scenario != current {
            current = case.scenario.clone();
            let _ = writeln!(md, "\n### {}\n", case.scenario);
        }
        render_case(&mut md, i, case, &limits);
        for (alt, link) in chart_links.get(&i).into_iter().flatten() {
            let _ = writeln!(md, "\n![{alt}]({link})");
        }
        let last_of_scenario = cases.get(i + 1).is_none_or(|n| n.scenario != case.scenario);
        if last_of_scenario {
            for (alt, link) in scenario_charts.get(&case.scenario).into_iter().flatten() {
                let _ = writeln!(md, "\n![{alt}]({link})");
            }
        }
    }
    md
}

/// "case N" names used by both the tables and the charts.
pub fn case_title(index: usize, case: &Case) -> String {
    format!(
        "case {}: `{}`",
        index + 1,
        if case.key.is_empty() { "defaults" } else { &case.key }
    )
}

fn render_case(md: &mut String, index: usize, case: &Case, limits: &BTreeMap<String, f64>) {
    // Fjord and Kafka always get a column, so a missing run shows as "not run".
    let mut labels: Vec<String> = LABEL_ORDER
        .iter()
        .map(|l| l.to_string())
        .filter(|l| !case.runs.contains_key(l))
        .collect();
    labels.extend(case.labels());
    labels.sort_by_key(|l| {
        (
            LABEL_ORDER.iter().position(|o| o == l).unwrap_or(LABEL_ORDER.len()),
            l.clone(),
        )
    });
    let runs: Vec<String> = case
        .labels()
        .iter()
        .map(|l| format!("{l} x{}", case.runs[l].len()))
        .collect();
    let _ = writeln!(md, "**{}** (runs: {})\n", case_title(index, case), runs.join(", "));
    let rows = rows(&case.scenario);
    let has_limit = rows
        .iter()
        .any(|r| r.limit.is_some_and(|(k, _)| limits.contains_key(k)));
    let mut header = vec!["metric".to_string()];
    header.extend(labels.iter().cloned());
    header.push("fjord/kafka".into());
    if has_limit {
        header.extend(["limit".to_string(), "fjord/limit".to_string()]);
    }
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in &rows {
        let mut cells = vec![row.name.to_string()];
        let mut any = false;
        for l in &labels {
            let runs = case.runs.get(l).map_or(&[][..], Vec::as_slice);
            cells.push(match case.value(l, row) {
                Some(v) => {
                    any = true;
                    fmt_num(v)
                }
                None if runs.is_empty() => "not run".into(),
                None if runs.iter().all(|r| r.skipped) => "skipped".into(),
                None if runs.iter().all(|r| r.skipped || r.failed) => "failed".into(),
                None => "–".into(),
            });
        }
        if !any {
            continue;
        }
        let fjord = case.value("fjord", row);
        cells.push(fmt_ratio(fjord, case.value("kafka", row)));
        if has_limit {
            let limit = row.limit.and_then(|(k, name)| Some((limits.get(k).copied()?, name)));
            match limit {
                Some((v, name)) => {
                    cells.push(format!("{} ({name})", fmt_num(v)));
                    cells.push(fmt_ratio(fjord, Some(v)));
                }
                None => cells.extend(["".to_string(), "".to_string()]),
            }
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let mut notes: Vec<String> = Vec::new();
    for l in &case.labels() {
        for r in &case.runs[l] {
            for n in &r.notes {
                let line = format!("{l}: {n}");
                if !notes.contains(&line) {
                    notes.push(line);
                }
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(md);
}

/// Reads every *.json in `dir` that parses as a result, in file-name order; others are
/// reported on stderr and skipped.
pub fn load(dir: &Path) -> Result<Vec<ScenarioResult>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<ScenarioResult>(&t).map_err(|e| e.to_string()))
        {
            Ok(r) if !r.scenario.is_empty() => out.push(r),
            Ok(_) => eprintln!(
                "fjord-bench report: {}: not a result (no scenario); skipped",
                p.display()
            ),
            Err(e) => eprintln!("fjord-bench report: {}: {e}; skipped", p.display()),
        }
    }
    Ok(out)
}

pub fn run(a: &ReportArgs) -> Result<(), String> {
    let results = load(&a.results)?;
    if results.is_empty() {
        return Err(format!("no result files in {}", a.results.display()));
    }
    std::fs::create_dir_all(&a.charts_dir).map_err(|e| format!("{}: {e}", a.charts_dir.display()))?;
    let md_dir = a
        .markdown
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(md_dir).map_err(|e| format!("{}: {e}", md_dir.display()))?;
    let abs = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let rel = relative_path(&abs(md_dir)?, &abs(&a.charts_dir)?);

    // The machine: from the results (a limits run knows the disk), else this one.
    let mut machine = results
        .iter()
        .find(|r| r.machine.as_ref().is_some_and(|m| m.disk.is_some()))
        .or_else(|| results.iter().find(|r| r.machine.is_some()))
        .and_then(|r| r.machine.clone())
        .unwrap_or_else(Machine::current);
    if let Some(d) = &a.data_dir {
        machine.disk = Some(Disk::of_dir(d));
    }

    let cases = group(&results);
    let limits = limits(&results);
    let link = |file: &str| rel.join(file).to_string_lossy().into_owned();
    let mut case_charts: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let mut scenario_charts: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (scenario, row_name) in [
        ("produce", "MB/s"),
        ("produce-raw", "MB/s"),
        ("orders", "MB/s"),
        ("logs", "MB/s"),
        ("catchup", "consume MB/s"),
        ("java-produce", "MB/s"),
        ("java-consume", "consume MB/s (tool's figure, join included)"),
    ] {
        let file = format!("throughput-{scenario}.svg");
        if charts::throughput(&a.charts_dir.join(&file), scenario, row_name, &cases, &limits)? {
            scenario_charts
                .entry(scenario.to_string())
                .or_default()
                .push((format!("{scenario} throughput"), link(&file)));
        }
    }
    for (i, case) in cases.iter().enumerate().filter(|(_, c)| c.scenario == "latency") {
        let file = format!("latency-case-{}.svg", i + 1);
        if charts::latency(&a.charts_dir.join(&file), &format!("case {}", i + 1), case)? {
            case_charts
                .entry(i)
                .or_default()
                .push((format!("latency percentiles, case {}", i + 1), link(&file)));
        }
    }
    let md = render(&results, &machine, &case_charts, &scenario_charts);
    std::fs::write(&a.markdown, md).map_err(|e| format!("{}: {e}", a.markdown.display()))?;
    eprintln!(
        "fjord-bench report: {} results -> {} (charts in {})",
        results.len(),
        a.markdown.display(),
        a.charts_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{BrokerStats, Latency};

    fn result(scenario: &str, label: &str, mb: f64, topic: &str) -> ScenarioResult {
        let mut r = ScenarioResult::new(scenario, label);
        r.params.insert("topic".into(), serde_json::json!(topic));
        r.params.insert("acks".into(), serde_json::json!("all"));
        r.params.insert("partitions".into(), serde_json::json!(1));
        r.set_throughput((mb * 1000.0) as u64, (mb * 1e6) as u64, 1.0);
        r.broker = Some(BrokerStats {
            cpu_s: 2.0,
            rss_max_bytes: 64 << 20,
            ..BrokerStats::default()
        });
        r
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn numbers_and_ratios() {
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(-4321.0), "-4,321");
        assert_eq!(fmt_num(123.45), "123.5");
        assert_eq!(fmt_num(12.345), "12.35");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(500.0), "500");
        assert_eq!(fmt_num(7.0), "7");
        assert_eq!(fmt_num(0.0001234), "1.23e-4");
        assert_eq!(fmt_ratio(Some(50.0), Some(100.0)), "0.50x");
        assert_eq!(fmt_ratio(Some(0.344), Some(366.6)), "0.00094x");
        assert_eq!(fmt_ratio(Some(0.0), Some(3.0)), "0.00x");
        assert_eq!(fmt_ratio(Some(50.0), Some(0.0)), "–");
        assert_eq!(fmt_ratio(None, Some(1.0)), "–");
    }

    #[test]
    fn relative_paths() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(relative_path(&p("/tmp/out"), &p("/tmp/out/charts")), p("charts"));
        assert_eq!(relative_path(&p("/tmp/out/md"), &p("/tmp/charts")), p("../../charts"));
        assert_eq!(relative_path(&p("/a"), &p("/a")), p(""));
    }

    #[test]
    fn cases_ignore_the_topic_and_order_by_scenario() {
        let results = vec![
            result("latency", "fjord", 1.0, "x"),
            result("produce", "kafka", 100.0, "t1"),
            result("produce", "fjord", 80.0, "t2"),
            result("produce", "fjord", 90.0, "t3"),
            result("zzz", "fjord", 1.0, "t"),
        ];
        let cases = group(&results);
        let names: Vec<&str> = cases.iter().map(|c| c.scenario.as_str()).collect();
        assert_eq!(names, ["produce", "latency", "zzz"]);
        assert_eq!(cases[0].key, "acks=all partitions=1");
        assert_eq!(cases[0].labels(), ["fjord", "kafka"]);
        let mb = &rows("produce")[0];
        assert_eq!(cases[0].value("fjord", mb), Some(85.0), "median of two runs");
        let errors = rows("produce")
            .into_iter()
            .find(|r| r.name == "errors")
            .expect("errors row");
        let mut failing = results.clone();
        failing[2].errors = 3;
        failing[3].errors = 4;
        assert_eq!(group(&failing)[0].value("fjord", &errors), Some(7.0), "errors add up");
    }

    #[test]
    fn renders_tables_with_ratios_and_limits() {
        let mut results = vec![
            result("produce", "fjord", 80.0, "a"),
            result("produce", "kafka", 100.0, "b"),
        ];
        let mut limits = ScenarioResult::new("limits", "fjord");
        limits.metric("disk_write_mb_per_s", 400.0);
        limits.metric("loopback_tcp_mb_per_s", 2000.0);
        results.push(limits);
        let mut lat = result("latency", "fjord", 1.0, "l");
        lat.latency_ms = Some(Latency {
            p50: 1.0,
            p95: 2.0,
            p99: 4.0,
            p99_9: 8.0,
            max: 16.0,
        });
        lat.note("2 x delivery: timed out");
        results.push(lat);
        let mut skipped = result("latency", "kafka", 0.0, "l");
        skipped.skipped = true;
        results.push(skipped);
        let mut killed = result("latency", "fjord", 0.0, "l");
        killed.params = results
            .iter()
            .find(|r| r.scenario == "latency")
            .expect("pushed above")
            .params
            .clone();
        killed.label = "other".into();
        killed.failed = true;
        results.push(killed);
        let mut ready = ScenarioResult::new("wait-ready", "fjord");
        ready.metric("ready_ms", 58.0);
        results.push(ready);
        let md = render(&results, &Machine::default(), &BTreeMap::new(), &BTreeMap::new());
        assert!(md.contains("| ready ms | 58 | not run | – |"), "{md}");
        assert!(
            md.contains("| metric | fjord | kafka | fjord/kafka | limit | fjord/limit |"),
            "{md}"
        );
        assert!(
            md.contains("| MB/s | 80 | 100 | 0.80x | 400 (min(disk write, loopback TCP)) | 0.20x |"),
            "{md}"
        );
        assert!(md.contains("| p99 ms | 4 | skipped | failed | – |"), "{md}");
        assert!(md.contains("| p99.9 ms | 8 | skipped | failed | – |"), "{md}");
        assert!(md.contains("| errors | 0 | skipped | failed | – |"), "{md}");
        assert!(md.contains("- fjord: 2 x delivery: timed out"), "{md}");
        assert!(md.contains("Limit, loopback TCP, one stream: 2,000 MB/s"), "{md}");
        assert!(
            !md.contains("### limits"),
            "limits feed the machine section, not a table"
        );
    }
}
