//! Scenarios over raw sockets ([`crate::wire`]): `idle-connections` (what an idle client costs
//! the broker) and `wait-ready` (how long the broker takes to start answering).

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::result::{epoch_ms, ScenarioResult};
use crate::wire::Conn;
use crate::{sampler, Common};

/// Connect and request timeout for one raw connection.
const CONN_TIMEOUT_S: u64 = 5;
/// File descriptors this process keeps for itself beyond the held connections.
const SPARE_FDS: u64 = 64;
/// Held connections probed again after the hold, spread over the set.
const PROBES: usize = 10;
/// Wait after closing everything before the last RSS reading, so the broker can notice.
const SETTLE_MS: u64 = 1000;

#[derive(Args, Debug, Clone, Serialize)]
pub struct IdleConnectionsArgs {
    /// Connections to open and hold, each after one ApiVersions exchange.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub count: u64,
    /// Seconds to hold them open before measuring.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub hold_s: u64,
}

/// The soft `Max open files` limit from /proc/PID/limits text.
pub fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

pub fn run_idle(c: &Common, a: &IdleConnectionsArgs, r: &mut ScenarioResult) -> Result<(), String> {
    let own_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_open_files);
    if let Some(limit) = own_limit.filter(|&l| a.count + SPARE_FDS > l) {
        return Err(format!(
            "--count {} needs more file descriptors than this process may open ({limit}): raise `ulimit -n`",
            a.count
        ));
    }
    if let Some(pid) = c.broker_pid {
        if let Some(l) = std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .ok()
            .as_deref()
            .and_then(max_open_files)
        {
            r.metric("broker_max_open_files", l as f64);
            if a.count + SPARE_FDS > l {
                r.note(format!(
                    "the broker may open only {l} files; expect refused connections"
                ));
            }
        }
    } else {
        r.note("no --broker-pid: broker memory not measured");
    }
    let rss = || c.broker_pid.and_then(sampler::sample).map(|s| s.rss_bytes);
    let rss_before = rss();

    let timeout = Duration::from_secs(CONN_TIMEOUT_S);
    let start = Instant::now();
    let mut held = Vec::with_capacity(a.count as usize); // <= 100_000
    let (mut failed, mut first_error) = (0u64, None);
    for _ in 0..a.count {
        if Instant::now() >= c.deadline {
            r.note("stopped opening connections at the --max-s cap");
            break;
        }
        match Conn::connect(&c.bootstrap, timeout).and_then(|mut conn| conn.api_versions().map(|_| conn)) {
            Ok(conn) => held.push(conn),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    r.set_throughput(held.len() as u64, 0, open_s);
    r.metric("connections_open", held.len() as f64);
    r.metric("connections_failed", failed as f64);
    r.metric("open_s", open_s);
    r.errors += failed;
    if let Some(e) = first_error {
        r.note(format!("{failed} connections failed (first: {e})"));
    }

    let hold = Duration::from_secs(a.hold_s).min(c.deadline.saturating_duration_since(Instant::now()));
    std::thread::sleep(hold);
    let rss_held = rss();

    // The broker must still serve a new client while holding all of them.
    let md_start = Instant::now();
    match Conn::connect(&c.bootstrap, timeout).and_then(|mut conn| conn.metadata_brokers()) {
        Ok(brokers) if brokers > 0 => {
            r.metric("metadata_ok", 1.0);
            r.metric("metadata_ms", md_start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(_) => {
            r.metric("metadata_ok", 0.0);
            r.errors += 1;
            r.note("Metadata while holding the connections listed no broker");
        }
        Err(e) => {
            r.metric("metadata_ok", 0.0);
            r.errors += 1;
            r.note(format!("Metadata while holding the connections failed: {e}"));
        }
    }
    // And the held connections must still be alive (not closed as idle, not starved).
    let step = (held.len() / PROBES).max(1);
    let (mut probed, mut alive) = (0u64, 0u64);
    for conn in held.iter_mut().step_by(step).take(PROBES) {
        probed += 1;
        alive += u64::from(conn.api_versions().is_ok());
    }
    r.metric("held_probed", probed as f64);
    r.metric("held_alive", alive as f64);
    if alive < probed {
        r.note(format!(
            "{} of {probed} probed held connections no longer answered ApiVersions",
            probed - alive
        ));
    }

    let n = held.len();
    drop(held);
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    if let (Some(before), Some(during)) = (rss_before, rss_held) {
        let delta = during as f64 - before as f64;
        r.metric("rss_before_bytes", before as f64);
        r.metric("rss_held_bytes", during as f64);
        r.metric("rss_delta_bytes", delta);
        if n > 0 {
            r.metric("rss_per_connection_bytes", delta / n as f64);
        }
        if let Some(after) = rss() {
            r.metric("rss_after_close_bytes", after as f64);
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct WaitReadyArgs {
    /// When the broker was spawned (ms since the Unix epoch); default: when this command starts.
    #[arg(long)]
    pub since_epoch_ms: Option<u64>,
    /// Give up after this long (exit 1).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_s: u64,
    /// Pause between attempts.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub poll_ms: u64,
}

/// Ready means: a TCP connection, an ApiVersions answer, and a Metadata answer that lists at
/// least one broker.
pub fn run_wait_ready(a: &WaitReadyArgs, bootstrap: &str, r: &mut ScenarioResult) -> Result<(), String> {
    let since = a.since_epoch_ms.unwrap_or_else(epoch_ms);
    let start = Instant::now();
    let mut attempts = 0u64;
    let mut last_error = String::new();
    while start.elapsed() < Duration::from_secs(a.timeout_s) {
        attempts += 1;
        let attempt = Conn::connect(bootstrap, Duration::from_secs(1)).and_then(|mut conn| {
            conn.api_versions()?;
            conn.metadata_brokers()
        });
        match attempt {
            Ok(brokers) if brokers > 0 => {
                let ready_ms = epoch_ms().saturating_sub(since);
                r.metric("ready_ms", ready_ms as f64);
                r.metric("attempts", attempts as f64);
                r.duration_s = ready_ms as f64 / 1000.0;
                eprintln!("fjord-bench: {bootstrap} ready {ready_ms} ms after {since}");
                return Ok(());
            }
            Ok(_) => last_error = "Metadata listed no broker".into(),
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(a.poll_ms));
    }
    r.metric("attempts", attempts as f64);
    Err(format!(
        "not ready after {} s ({attempts} attempts; last: {last_error})",
        a.timeout_s
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            20000                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(20_000));
        assert_eq!(
            max_open_files("Max open files            unlimited            unlimited            files"),
            Some(u64::MAX)
        );
        assert_eq!(max_open_files("Max processes 5 5"), None);
    }
}
