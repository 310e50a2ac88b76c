//! Partition replication as Kafka does it: followers fetch from the leader with the Fetch API,
//! the leader keeps each follower's log end, and the high watermark (what consumers see and
//! acks=all waits for) is the smallest log end of the in-sync replicas. The leader drops a
//! follower from the ISR when it has not caught up for `replica.lag.time.max.ms` and adds it
//! back once it has the high watermark, both through the controller (`AlterIsr`).
//!
//! The follower side is in [`fetcher`].

pub(crate) mod fetcher;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_controller::{ClusterMetadata, PartitionMeta, TopicMeta};
use fjord_storage::PartitionId;
use kafka_protocol::error::ResponseError;

use crate::{partition_id, Broker};

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// The offset of its last fetch: everything before it is in its log. `None` until it
    /// fetches in this leader epoch.
    log_end: Option<i64>,
    /// When it last had everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    caught_up_at: Instant,
    /// When it last fetched, and the leader's log end then.
    last_fetch_at: Instant,
    leader_end_at_last_fetch: i64,
}

/// The leader's view of a partition it leads, for one leader epoch.
#[derive(Debug)]
struct Led {
    epoch: i32,
    /// The ISR is the leader alone, and none is joining it: what it appends is committed at
    /// once.
    alone: bool,
    followers: HashMap<i32, Follower>,
    /// Followers this leader asked the controller to add to the ISR, until it sees the answer
    /// in its metadata. They count in the ISR meanwhile (Kafka's "maximal ISR", KIP-497): a
    /// record appended after a follower was found caught up must reach it before it is
    /// committed, or that follower could be elected without it once the change applies.
    joining: Vec<i32>,
}

/// The leader side of replication, shared by the Fetch handler, the produce path and the ISR
/// loop.
#[derive(Debug, Default)]
pub struct Replication {
    led: Mutex<HashMap<PartitionId, Led>>,
    /// Partitions with an ISR change on its way to the controller: one at a time each.
    altering: Mutex<HashSet<PartitionId>>,
}

/// Whether a partition is replicated: its log's high watermark is then the leader's to move.
pub fn is_replicated(p: &PartitionMeta) -> bool {
    p.replicas.len() > 1
}

impl Replication {
    /// The state of a partition led in `epoch`, started afresh for a new epoch: every follower
    /// counts as caught up from now, so none leaves the ISR before it had the time to fetch.
    fn with_led<T>(&self, pid: PartitionId, p: &PartitionMeta, me: i32, f: impl FnOnce(&mut Led) -> T) -> T {
        let mut led = self.led.lock().unwrap_or_else(|e| e.into_inner());
        let entry = led.entry(pid).or_insert_with(|| Led {
            epoch: -1,
            alone: false,
            followers: HashMap::new(),
            joining: Vec::new(),
        });
        if entry.epoch != p.leader_epoch {
            entry.epoch = p.leader_epoch;
            entry.joining.clear();
            entry.followers.clear();
        }
        // Every follower of a new epoch; within an epoch, those a reassignment adds (it drops
        // replicas in a new epoch). Each counts as caught up from now.
        for r in p.replicas.iter().filter(|r| **r != me) {
            if !entry.followers.contains_key(r) {
                let now = Instant::now();
                entry.followers.insert(
                    *r,
                    Follower {
                        log_end: None,
                        caught_up_at: now,
                        last_fetch_at: now,
                        leader_end_at_last_fetch: 0,
                    },
                );
            }
        }
        entry.joining.retain(|r| !p.isr.contains(r));
        entry.alone = p.isr.iter().all(|r| *r == me) && entry.joining.is_empty();
        f(entry)
    }

    /// A follower's fetch at `fetch_offset`: its log holds everything before it. Moves the
    /// high watermark and asks for the follower's return to the ISR when it has caught up.
    pub fn follower_fetched(
        broker: &Arc<Broker>,
        topic: &TopicMeta,
        p: &PartitionMeta,
        replica: i32,
        fetch_offset: i64,
    ) {
        let pid = partition_id(topic, p.partition);
        let Some(offsets) = broker.store.offsets(&pid) else {
            return;
        };
        let now = Instant::now();
        let me = broker.node_id();
        broker.replication.with_led(pid, p, me, |led| {
            if let Some(f) = led.followers.get_mut(&replica) {
                // Kafka's rule: caught up now if it has the whole log, or since its previous
                // fetch if it now has what the log held then.
                if fetch_offset >= offsets.log_end {
                    f.caught_up_at = now;
                } else if fetch_offset >= f.leader_end_at_last_fetch {
                    f.caught_up_at = f.caught_up_at.max(f.last_fetch_at);
                }
                f.log_end = Some(fetch_offset);
                f.last_fetch_at = now;
                f.leader_end_at_last_fetch = offsets.log_end;
            }
        });
        Self::advance(broker, pid, p);
        if p.isr.contains(&replica) {
            return;
        }
        // Decided under the same lock as `appended` commits a lone leader's appends: once the
        // follower joins, nothing appended after this check is committed without it.
        let joins = broker.replication.with_led(pid, p, me, |led| {
            let hw = broker.store.offsets(&pid).map_or(i64::MAX, |o| o.high_watermark);
            if fetch_offset < hw || led.joining.contains(&replica) {
                return false;
            }
            led.joining.push(replica);
            led.alone = false;
            true
        });
        if joins {
            let mut isr = p.isr.clone();
            isr.push(replica);
            if !Self::alter_isr(broker, topic, p, isr, "a follower caught up") {
                broker.replication.forget_joining(pid, &[replica]);
            }
        }
    }

    /// Stops counting `replicas` as joining the ISR (their change was refused or not sent).
    fn forget_joining(&self, pid: PartitionId, replicas: &[i32]) {
        let mut led = self.led.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = led.get_mut(&pid) {
            l.joining.retain(|r| !replicas.contains(r));
        }
    }

    /// Waits until the high watermark of a replicated partition passes `end` (every in-sync
    /// replica has the batch), as Kafka's delayed produce does: `REQUEST_TIMED_OUT` past the
    /// deadline, `NOT_LEADER_OR_FOLLOWER` if leadership moves meanwhile, and
    /// `NOT_ENOUGH_REPLICAS_AFTER_APPEND` when it got there with fewer in-sync replicas than
    /// `min.insync.replicas`.
    pub async fn await_isr(
        broker: &Broker,
        pid: PartitionId,
        topic: &str,
        partition: i32,
        end: i64,
        min_insync: usize,
        deadline: Instant,
    ) -> Result<(), ResponseError> {
        let mut moved = broker.store.subscribe_appends();
        loop {
            moved.borrow_and_update();
            let meta = broker.metadata();
            let pmeta = meta
                .topics
                .get(topic)
                .filter(|t| partition_id(t, partition) == pid)
                .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?));
            let Some(pmeta) = pmeta.filter(|p| p.leader == broker.node_id()) else {
                return Err(ResponseError::NotLeaderOrFollower);
            };
            let hw = Replication::advance(broker, pid, pmeta).ok_or(ResponseError::NotLeaderOrFollower)?;
            if hw >= end {
                return if pmeta.isr.len() < min_insync {
                    Err(ResponseError::NotEnoughReplicasAfterAppend)
                } else {
                    Ok(())
                };
            }
            let now = Instant::now();
            if now >= deadline || tokio::time::timeout(deadline - now, moved.changed()).await.is_err() {
                return Err(ResponseError::RequestTimedOut);
            }
        }
    }

    /// After an append on a replicated partition led here: a leader alone in its ISR commits
    /// it at once (others commit as their followers fetch).
    pub fn appended(broker: &Broker, pid: PartitionId) {
        // Under the lock, so that a follower found caught up (`follower_fetched`) either saw
        // this commit or stopped it.
        let led = broker.replication.led.lock().unwrap_or_else(|e| e.into_inner());
        if led.get(&pid).is_some_and(|l| l.alone) {
            broker.store.advance_high_watermark(&pid, i64::MAX);
        }
    }

    /// Moves a led partition's high watermark to the smallest log end of its ISR (the leader's
    /// own included). Returns the high watermark in force.
    pub fn advance(broker: &Broker, pid: PartitionId, p: &PartitionMeta) -> Option<i64> {
        let me = broker.node_id();
        let leader_end = broker.store.offsets(&pid)?.log_end;
        let lowest = broker.replication.with_led(pid, p, me, |led| {
            let mut lowest = leader_end;
            for r in p.isr.iter().chain(&led.joining).filter(|r| **r != me) {
                // A member that has not fetched in this epoch holds the watermark where it is.
                match led.followers.get(r).and_then(|f| f.log_end) {
                    Some(end) => lowest = lowest.min(end),
                    None => return None,
                }
            }
            Some(lowest)
        });
        match lowest {
            Some(hw) => broker.store.advance_high_watermark(&pid, hw),
            None => broker.store.offsets(&pid).map(|o| o.high_watermark),
        }
    }

    /// Proposes a new ISR for a partition led here, unless a change is already on its way;
    /// returns whether it did. Replicas it adds stop counting as joining once this node's
    /// metadata shows the outcome.
    fn alter_isr(
        broker: &Arc<Broker>,
        topic: &TopicMeta,
        p: &PartitionMeta,
        new_isr: Vec<i32>,
        why: &'static str,
    ) -> bool {
        let pid = partition_id(topic, p.partition);
        if !broker
            .replication
            .altering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid)
        {
            return false;
        }
        let (broker, name, p) = (broker.clone(), topic.name.clone(), p.clone());
        tokio::spawn(async move {
            let result = broker
                .controller
                .alter_isr(
                    &name,
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    p.isr.clone(),
                    new_isr.clone(),
                )
                .await;
            match result {
                Ok(after) => {
                    tracing::info!(topic = %name, partition = p.partition, from = ?p.isr, to = ?after.isr, reason = why, "ISR changed");
                    let counter = if after.isr.len() < p.isr.len() {
                        "fjord_isr_shrinks_total"
                    } else {
                        "fjord_isr_expands_total"
                    };
                    metrics::counter!(counter).increment(1);
                    // Joining replicas count until the ISR they joined is what this node
                    // sees: until then its metadata may still show the ISR without them.
                    metadata_moved_past(&broker, &name, &p).await;
                }
                Err(e) => tracing::debug!(topic = %name, partition = p.partition, error = %e, "ISR change refused"),
            }
            let added: Vec<i32> = new_isr.iter().copied().filter(|r| !p.isr.contains(r)).collect();
            broker.replication.forget_joining(pid, &added);
            broker
                .replication
                .altering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&pid);
        });
        true
    }

    /// One pass of the ISR check over the partitions led here: followers that have not caught
    /// up for `replica.lag.time.max.ms` leave the ISR, and the high watermark moves (an ISR
    /// that shrank may let it).
    fn check_isr(broker: &Arc<Broker>, meta: &ClusterMetadata) {
        let me = broker.node_id();
        let lag = Duration::from_millis(broker.config.replication.lag_time_max_ms);
        let now = Instant::now();
        let mut led_now = HashSet::new();
        for topic in meta.topics.values() {
            for p in topic.partitions.iter().filter(|p| p.leader == me && is_replicated(p)) {
                let pid = partition_id(topic, p.partition);
                led_now.insert(pid);
                let lagging: Vec<i32> = broker.replication.with_led(pid, p, me, |led| {
                    p.isr
                        .iter()
                        .copied()
                        .filter(|r| *r != me)
                        .filter(|r| {
                            led.followers
                                .get(r)
                                .is_some_and(|f| now.duration_since(f.caught_up_at) > lag)
                        })
                        .collect()
                });
                if !lagging.is_empty() {
                    let isr = p.isr.iter().copied().filter(|r| !lagging.contains(r)).collect();
                    Self::alter_isr(broker, topic, p, isr, "followers lagged past replica.lag.time.max.ms");
                }
                Self::advance(broker, pid, p);
            }
        }
        // Partitions no longer led here start afresh if they come back.
        broker
            .replication
            .led
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|pid, _| led_now.contains(pid));
    }
}

/// Waits (up to a few seconds) until this node's metadata shows a partition changed from `p`:
/// another ISR or epoch, or the partition gone.
async fn metadata_moved_past(broker: &Broker, topic: &str, p: &PartitionMeta) {
    let mut changes = broker.controller.subscribe();
    let moved = |meta: &ClusterMetadata| {
        meta.topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(p.partition).ok()?))
            .is_none_or(|q| q.isr != p.isr || q.leader_epoch != p.leader_epoch)
    };
    let wait = async {
        while !moved(&broker.metadata()) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
}

/// Runs the ISR check every half `replica.lag.time.max.ms` (at most every second) and at
/// every metadata change.
pub(crate) async fn isr_loop(broker: Arc<Broker>) {
    // Exported from the start, so a node that never changed an ISR shows 0 rather than nothing.
    for name in [
        "fjord_isr_shrinks_total",
        "fjord_isr_expands_total",
        "fjord_replica_truncations_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    let lag = broker.config.replication.lag_time_max_ms;
    let mut tick = tokio::time::interval(Duration::from_millis((lag / 2).clamp(1, 1000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = broker.controller.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
        let meta = broker.metadata();
        Replication::check_isr(&broker, &meta);
    }
}
