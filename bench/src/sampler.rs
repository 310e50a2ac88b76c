//! Samples the broker process (`--broker-pid`) on its own thread while a scenario runs: CPU
//! time from /proc/PID/stat, resident memory from /proc/PID/status. For Kafka the PID is the
//! JVM's, so its heap, page-cache-free RSS and GC threads are all counted, like Fjord's.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::machine::meminfo_bytes;
use crate::result::BrokerStats;

/// Ten samples a second: fine enough to catch an RSS spike that lasts a GC cycle or a
/// compaction, coarse enough that reading two /proc files costs the machine nothing.
pub const SAMPLE_INTERVAL_MS: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// utime + stime, in clock ticks, summed over all threads.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_ticks: stat_cpu_ticks(&stat)?,
        rss_bytes: meminfo_bytes(&status, "VmRSS")?,
    })
}

/// CPU ticks of this benchmark process itself and of the children it has waited for (the Java
/// load tools run as children): on a 2-core machine the client competes with the broker, so
/// its share is part of the picture.
pub fn self_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(stat_cpu_ticks(&stat)? + stat_children_cpu_ticks(&stat)?)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    stat_field_pair_sum(stat, 14)
}

/// cutime + cstime (fields 16 and 17): CPU of the waited-for children.
fn stat_children_cpu_ticks(stat: &str) -> Option<u64> {
    stat_field_pair_sum(stat, 16)
}

/// Fields `n` and `n + 1` (1-based, as proc(5) numbers them) of a /proc/PID/stat line, added.
/// The command name (field 2) is in parentheses and may hold spaces and parentheses itself, so
/// fields are counted from the last `)`: what follows it starts at field 3.
fn stat_field_pair_sum(stat: &str, n: usize) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(n.checked_sub(3)?);
    let a: u64 = fields.next()?.parse().ok()?;
    let b: u64 = fields.next()?.parse().ok()?;
    Some(a + b)
}

/// Clock ticks per second for /proc CPU times (`getconf CLK_TCK`; 100 on every Linux we know,
/// which is also the fallback, since reading sysconf directly would need unsafe code).
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// After a scenario, the broker may still be busy with work the scenario caused (a RocksDB
/// flush, a log roll, GC). Waiting until it uses less than this share of one core...
const SETTLED_CORES: f64 = 0.05;
/// ...over windows this long...
const SETTLE_WINDOW_MS: u64 = 500;
/// ...for at most this long.
pub const SETTLE_MAX_S: u64 = 10;

/// Waits for the broker to go quiet; returns (CPU seconds it used meanwhile, seconds waited),
/// or `None` if the process is gone.
pub fn settle(pid: u32, ticks_per_s: f64) -> Option<(f64, f64)> {
    let start = std::time::Instant::now();
    let first = sample(pid)?.cpu_ticks;
    let mut prev = first;
    while start.elapsed() < Duration::from_secs(SETTLE_MAX_S) {
        std::thread::sleep(Duration::from_millis(SETTLE_WINDOW_MS));
        let now = sample(pid)?.cpu_ticks;
        let cores = now.saturating_sub(prev) as f64 / ticks_per_s / (SETTLE_WINDOW_MS as f64 / 1000.0);
        prev = now;
        if cores < SETTLED_CORES {
            break;
        }
    }
    Some((
        prev.saturating_sub(first) as f64 / ticks_per_s,
        start.elapsed().as_secs_f64(),
    ))
}

/// Running totals of the samples; kept apart from the thread so it can be unit tested.
#[derive(Debug, Default, Clone)]
pub struct Accumulator {
    first: Option<ProcSample>,
    last: Option<ProcSample>,
    rss_max: u64,
    rss_sum: u128,
    n: u64,
    /// The process vanished while sampling: it crashed or was killed mid-scenario.
    pub vanished: bool,
}

impl Accumulator {
    pub fn add(&mut self, s: ProcSample) {
        self.first.get_or_insert(s);
        self.last = Some(s);
        self.rss_max = self.rss_max.max(s.rss_bytes);
        self.rss_sum += u128::from(s.rss_bytes);
        self.n += 1;
    }

    pub fn stats(&self, ticks_per_s: f64) -> Option<BrokerStats> {
        let (first, last) = (self.first?, self.last?);
        Some(BrokerStats {
            cpu_s: last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64 / ticks_per_s,
            rss_max_bytes: self.rss_max,
            // n >= 1 because first is set; the average of u64 values fits a u64.
            rss_avg_bytes: u64::try_from(self.rss_sum / u128::from(self.n)).unwrap_or(u64::MAX),
            rss_start_bytes: first.rss_bytes,
            rss_end_bytes: last.rss_bytes,
            samples: self.n,
        })
    }
}

/// A sampling thread; [`Sampler::stop`] takes a final sample and returns the totals.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Accumulator>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut acc = Accumulator::default();
            loop {
                match sample(pid) {
                    Some(s) => acc.add(s),
                    None => {
                        acc.vanished = true;
                        return acc;
                    }
                }
                match stopped.recv_timeout(Duration::from_millis(SAMPLE_INTERVAL_MS)) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    // Stop asked (or the Sampler dropped): one last sample so cpu_s covers
                    // the whole scenario.
                    _ => {
                        match sample(pid) {
                            Some(s) => acc.add(s),
                            None => acc.vanished = true,
                        }
                        return acc;
                    }
                }
            }
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> Accumulator {
        // The thread may already have ended (process vanished); then there is no receiver.
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_else(|_| Accumulator {
            vanished: true,
            ..Accumulator::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        // Fields 14/15 are utime=1234, stime=567; the comm holds spaces and a ')'.
        let stat = "4242 (fjord (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 555 1000000 2500 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(1801));
        assert_eq!(stat_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parens"), None);
        // Fields 16/17 (cutime, cstime) here are 0 and 0; with children waited for, 30 and 12.
        assert_eq!(stat_children_cpu_ticks(stat), Some(0));
        let waited = stat.replace("1234 567 0 0", "1234 567 30 12");
        assert_eq!(stat_children_cpu_ticks(&waited), Some(42));
    }

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).expect("our own /proc entry exists");
        assert!(s.rss_bytes > 0);
        assert!(self_cpu_ticks().is_some());
        assert!(clock_ticks_per_s() > 0.0);
    }

    #[test]
    fn accumulates_cpu_delta_and_rss_extremes() {
        let mut acc = Accumulator::default();
        assert!(acc.stats(100.0).is_none(), "no samples, no stats");
        for (ticks, rss) in [(1000, 100), (1050, 300), (1250, 200)] {
            acc.add(ProcSample {
                cpu_ticks: ticks,
                rss_bytes: rss,
            });
        }
        let s = acc.stats(100.0).expect("three samples");
        assert_eq!(s.cpu_s, 2.5);
        assert_eq!(
            (s.rss_start_bytes, s.rss_max_bytes, s.rss_avg_bytes, s.rss_end_bytes),
            (100, 300, 200, 200)
        );
        assert_eq!(s.samples, 3);
    }

    #[test]
    fn samples_a_live_process_until_stopped() {
        let sampler = Sampler::start(std::process::id());
        std::thread::sleep(Duration::from_millis(250));
        let acc = sampler.stop();
        assert!(!acc.vanished);
        let s = acc.stats(clock_ticks_per_s()).expect("sampled");
        assert!(s.samples >= 3, "{s:?}");
    }
}
