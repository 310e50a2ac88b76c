//! The log cleaner's schedule (Kafka's `LogCleanerManager`): every compacted partition hosted
//! here is measured, the filthiest due ones are cleaned (`log.cleaner.threads` at a time, on
//! the blocking pool), and when none is due the cleaner waits `log.cleaner.backoff.ms`. The
//! passes themselves are in `fjord_storage::cleaner`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_storage::{Cleanable, CompactionConfig, PartitionId, StorageError};
use serde::Serialize;

use crate::config::CleanerConfig;
use crate::{partition_id, topic_config, txn, Broker};

/// Most per-partition dirty-ratio series exported.
const MAX_PARTITION_SERIES: usize = 10_000;

/// A compacted partition as the status page shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanerRow {
    pub topic: String,
    pub partition: i32,
    /// Dirty bytes over cleanable bytes at the last measure.
    pub dirty_ratio: f64,
    /// Bytes not cleaned yet.
    pub dirty_bytes: u64,
    /// Where the cleaned part ends.
    pub cleaned_to: i64,
    /// When it was last cleaned (ms since the epoch), 0 when never since start.
    pub last_clean_ms: i64,
    /// Bytes the cleaner freed in it since start.
    pub bytes_freed: u64,
    /// A pass failed on it (a damaged batch): it is skipped until a restart, as Kafka skips
    /// an uncleanable partition.
    pub uncleanable: bool,
}

/// What the cleaner reports to the status page.
#[derive(Debug, Default)]
pub struct CleanerState {
    rows: std::sync::Mutex<BTreeMap<(String, i32), CleanerRow>>,
}

impl CleanerState {
    /// Every compacted partition's row, in topic and partition order.
    pub fn rows(&self) -> Vec<CleanerRow> {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, topic: &str, partition: i32, f: impl FnOnce(&mut CleanerRow)) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows
            .entry((topic.to_string(), partition))
            .or_insert_with(|| CleanerRow {
                topic: topic.to_string(),
                partition,
                ..CleanerRow::default()
            });
        f(row);
    }

    fn retain(&self, live: &HashSet<(String, i32)>) {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| live.contains(k));
    }
}

/// A compacted partition hosted here, measured.
struct Candidate {
    pid: PartitionId,
    topic: String,
    partition: i32,
    cfg: CompactionConfig,
    measured: Option<Cleanable>,
}

/// Runs the cleaner until the broker stops (the task is aborted).
pub async fn run(broker: Arc<Broker>) {
    if !broker.config.cleaner.enable {
        tracing::info!("the log cleaner is off (log.cleaner.enable=false): compacted topics are not compacted");
        return;
    }
    let mut uncleanable: HashSet<PartitionId> = HashSet::new();
    let mut idle_said = false;
    loop {
        // Read each round: log.cleaner.threads, backoff.ms and the rest change at run time.
        let cfg = broker.live(&broker.metadata()).cleaner.clone();
        if cfg.threads == 0 && !idle_said {
            tracing::info!("log.cleaner.threads=0: compacted topics are not compacted until it is raised");
        }
        idle_said = cfg.threads == 0;
        let cleaned = cfg.threads > 0 && pass(&broker, &cfg, &mut uncleanable).await;
        metrics::gauge!("fjord_cleaner_last_run_timestamp_seconds").set(txn::now_ms() as f64 / 1000.0);
        if !cleaned {
            tokio::time::sleep(Duration::from_millis(cfg.backoff_ms.max(1))).await;
        }
    }
}

/// CPU time this thread has used (user and system), in seconds.
fn thread_cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(u.user_time()) + secs(u.system_time()))
}

/// One round: measures every compacted partition hosted here and cleans the filthiest due
/// ones. Whether anything was cleaned.
async fn pass(broker: &Arc<Broker>, cfg: &CleanerConfig, uncleanable: &mut HashSet<PartitionId>) -> bool {
    let meta = broker.metadata();
    let live = broker.live(&meta);
    let now_ms = txn::now_ms();
    let mut candidates = Vec::new();
    for topic in meta.topics.values() {
        let eff = topic_config::EffectiveConfig::new(&live.topic_defaults, &topic.configs);
        let Some(cc) = eff.compaction() else {
            continue;
        };
        // Each replica is cleaned on its own, leader or follower, as in Kafka: a follower
        // copies the leader's batches with their offsets, gaps included.
        let here = |p: &&fjord_controller::PartitionMeta| p.replicas.contains(&broker.node_id());
        for p in topic.partitions.iter().filter(here) {
            candidates.push(Candidate {
                pid: partition_id(topic, p.partition),
                topic: topic.name.clone(),
                partition: p.partition,
                cfg: cc,
                measured: None,
            });
        }
    }
    let store = broker.store.clone();
    let measured = tokio::task::spawn_blocking(move || {
        for c in candidates.iter_mut() {
            c.measured = store.cleanable(c.pid, c.cfg, now_ms).ok().flatten();
        }
        candidates
    })
    .await
    .unwrap_or_default();

    let live: HashSet<(String, i32)> = measured.iter().map(|c| (c.topic.clone(), c.partition)).collect();
    broker.cleaner.retain(&live);
    let (mut max_ratio, mut max_delay_ms) = (0.0f64, 0i64);
    for (i, c) in measured.iter().enumerate() {
        let (ratio, dirty, cleaned_to) = c
            .measured
            .map_or((0.0, 0, 0), |m| (m.ratio(), m.dirty_bytes, m.first_dirty));
        max_ratio = max_ratio.max(ratio);
        max_delay_ms = max_delay_ms.max(c.measured.map_or(0, |m| m.compaction_delay_ms));
        broker.cleaner.update(&c.topic, c.partition, |row| {
            row.dirty_ratio = ratio;
            row.dirty_bytes = dirty;
            row.cleaned_to = cleaned_to;
            row.uncleanable = uncleanable.contains(&c.pid);
        });
        if i < MAX_PARTITION_SERIES {
            let labels = [
                ("topic", broker.stats.topic_label(&c.topic)),
                ("partition", c.partition.to_string()),
            ];
            metrics::gauge!("fjord_cleaner_dirty_ratio", &labels).set(ratio);
        }
    }
    metrics::gauge!("fjord_cleaner_max_dirty_percent").set(max_ratio * 100.0);
    metrics::gauge!("fjord_cleaner_max_compaction_delay_seconds").set(max_delay_ms as f64 / 1000.0);
    metrics::gauge!("fjord_cleaner_uncleanable_partitions").set(uncleanable.len() as f64);

    let mut due: Vec<Candidate> = measured
        .into_iter()
        .filter(|c| !uncleanable.contains(&c.pid) && c.measured.is_some_and(|m| m.due(&c.cfg)))
        .collect();
    // The filthiest first; one past its maximum lag before any other.
    due.sort_by(|a, b| {
        let key = |c: &Candidate| c.measured.map_or((0, 0.0), |m| (m.compaction_delay_ms, m.ratio()));
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0).then(kb.1.total_cmp(&ka.1))
    });
    due.truncate(cfg.threads.max(1));
    if due.is_empty() {
        return false;
    }
    let limits = cfg.limits();
    let mut tasks = Vec::new();
    for c in due {
        let store = broker.store.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let cpu = thread_cpu_seconds();
            let res = store.clean(c.pid, c.cfg, limits, txn::now_ms());
            // The pass ran on this thread alone: its CPU, to set against the bytes it read.
            if let (Some(before), Some(after)) = (cpu, thread_cpu_seconds()) {
                metrics::histogram!("fjord_cleaner_pass_cpu_seconds").record((after - before).max(0.0));
            }
            (c, res, started.elapsed())
        }));
    }
    let mut cleaned = false;
    for t in tasks {
        let Ok((c, res, took)) = t.await else {
            continue;
        };
        match res {
            Ok(Some(stats)) => {
                cleaned = true;
                metrics::counter!("fjord_cleaner_passes_total").increment(1);
                metrics::counter!("fjord_cleaner_bytes_read_total").increment(stats.bytes_read);
                metrics::counter!("fjord_cleaner_bytes_written_total").increment(stats.bytes_written);
                metrics::counter!("fjord_cleaner_bytes_freed_total").increment(stats.bytes_freed);
                metrics::counter!("fjord_cleaner_records_removed_total").increment(stats.records_removed);
                metrics::histogram!("fjord_cleaner_pass_seconds").record(took.as_secs_f64());
                broker.cleaner.update(&c.topic, c.partition, |row| {
                    row.cleaned_to = stats.cleaned_to;
                    row.last_clean_ms = txn::now_ms();
                    row.bytes_freed += stats.bytes_freed;
                    row.dirty_ratio = 0.0;
                    row.dirty_bytes = 0;
                });
                if stats.segments_replaced == 0 {
                    continue; // nothing to remove: only the checkpoint moved
                }
                tracing::info!(
                    topic = %c.topic,
                    partition = c.partition,
                    cleaned_to = stats.cleaned_to,
                    records_removed = stats.records_removed,
                    bytes_freed = stats.bytes_freed,
                    segments = stats.segments_replaced,
                    ms = took.as_millis() as u64,
                    "cleaned a compacted partition"
                );
            }
            Ok(None) => {}
            // Retention, DeleteRecords or a truncation got there first: measured again next round.
            Err(StorageError::Superseded(_)) => cleaned = true,
            Err(StorageError::ShuttingDown) | Err(StorageError::Offline(_)) => {}
            // Tried again once the disk has room for the cleaned copy.
            Err(StorageError::NoSpace(e)) => {
                tracing::debug!(topic = %c.topic, partition = c.partition, error = %e, "cleaning put off: not enough free space");
            }
            Err(e) => {
                metrics::counter!("fjord_cleaner_failures_total").increment(1);
                tracing::error!(topic = %c.topic, partition = c.partition, error = %e, "cannot clean a compacted partition; it is skipped until the broker restarts");
                uncleanable.insert(c.pid);
            }
        }
    }
    cleaned
}
