//! Broker liveness, the KRaft way: every broker heartbeats the controller leader every
//! `broker.heartbeat.interval.ms`; the leader fences a broker it has not heard from for
//! `broker.session.timeout.ms` (a `FenceBroker` entry: its partitions lose it as leader) and
//! unfences it when it heartbeats again.
//!
//! A broker whose process is gone is fenced sooner than that: when the connection its heartbeats
//! came on closes, when a new leader takes over, and when it has missed two heartbeats, the
//! leader tries its controller port, and a refused connection (nothing listens: the process is
//! dead, not just slow or cut off) fences it at once. A broker that is paused or cut off still
//! has its whole session.
//!
//! Only nodes with other voters run this: a single node has nobody to fence it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::command::Command;
use crate::controller::Controller;
use crate::network::Peer;
use crate::raft_types::NodeId;

/// Longest pause between two checks of the leader for silent brokers.
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// When the leader last heard from each broker.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    last: Mutex<HashMap<NodeId, Instant>>,
}

impl Liveness {
    /// A heartbeat from `node`.
    pub(crate) fn beat(&self, node: NodeId) {
        self.map().insert(node, Instant::now());
    }

    /// Forgets every heartbeat and counts from now: a new leader has heard from nobody yet,
    /// and gives every broker a whole session before fencing it.
    fn reset(&self) {
        self.map().clear();
    }

    /// How long ago `node` was last heard from, if it was since this node became leader.
    pub(crate) fn heard_ago(&self, node: NodeId) -> Option<Duration> {
        self.map().get(&node).map(|t| t.elapsed())
    }

    /// How long `node` has been silent; a broker first seen now starts its session now.
    fn silent_for(&self, node: NodeId, now: Instant) -> Duration {
        now.saturating_duration_since(*self.map().entry(node).or_insert(now))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        // A panic while holding the lock leaves a map of instants, which is still valid.
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The least time a heartbeat may wait for the leader's answer; otherwise one interval.
const MIN_HEARTBEAT_WAIT: Duration = Duration::from_millis(500);

/// Heartbeats the leader every `interval` for as long as the controller runs. The leader's own
/// heartbeat is a local call.
pub(crate) async fn heartbeat_loop(controller: Controller, interval: Duration) {
    let me = controller.node_id();
    let mut peer: Option<(NodeId, Peer)> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some((leader, addr)) = controller.leader_endpoint() else {
            continue;
        };
        if leader == me {
            controller.heartbeat_received(me).await;
            continue;
        }
        if peer.as_ref().map(|(id, _)| *id) != Some(leader) {
            peer = Some((leader, controller.peer(leader, addr)));
        }
        let Some((_, p)) = peer.as_mut() else { continue };
        // A leader that stopped answering (paused, cut off) must not hold the loop: the others
        // elect a new one within an election timeout and give every broker a session from
        // then, and a heartbeat stuck on the old leader for longer would have this broker
        // fenced by the new one. Dropping the call drops its connection (see `Peer::call`).
        match tokio::time::timeout(interval.max(MIN_HEARTBEAT_WAIT), p.heartbeat(me)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::debug!(leader, error = ?e, "heartbeat refused"),
            Ok(Err(e)) => tracing::debug!(leader, error = %e, "heartbeat not delivered"),
            Err(_) => tracing::debug!(leader, "heartbeat not answered within an interval"),
        }
    }
}

/// How long a probe of a broker's controller port may take; one that times out proves nothing.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether nothing listens at `addr` any more: the connection is refused. A timeout, an
/// unreachable network or an accepted connection all say "maybe alive".
async fn listener_gone(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Whether the process behind the controller listener at `addr` is gone. A process being killed
/// may close its connections a moment before its listener: a few tries, a quarter second apart.
async fn process_gone(addr: &str) -> bool {
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if listener_gone(addr).await {
            return true;
        }
    }
    false
}

/// A follower whose leader's replication connection closed: if the leader's controller port
/// refuses connections (its process is gone), this node stands for election as soon as the
/// other voters will grant it (their leader lease, openraft's `election_timeout_max`, has run
/// out), instead of after that lease and an election timeout more.
pub(crate) async fn elect_if_leader_gone(controller: &Controller, leader: NodeId) {
    let status = controller.raft_status();
    if status.leader != Some(i64::from(leader)) || status.is_leader {
        return;
    }
    // An observer never stands: openraft would let it run, and the voters would elect it, a
    // leader that does not count in its own quorum.
    if !controller.voter_ids().contains(&controller.node_id()) {
        return;
    }
    let Some(addr) = controller.voter_endpoint(leader) else {
        return;
    };
    if !process_gone(&addr).await {
        return;
    }
    // The other voters refuse votes until their lease from the dead leader ends; it started
    // with the last entry or heartbeat they had from it, at most a heartbeat before now.
    // The surviving voters stand one after another, in node id order, so that their votes
    // do not split.
    let me = controller.node_id();
    let rank = controller
        .voter_ids()
        .into_iter()
        .filter(|v| *v != leader && *v < me)
        .count();
    let stagger = Duration::from_millis(300) * u32::try_from(rank).unwrap_or(u32::MAX).min(8);
    tokio::time::sleep(crate::controller::LEADER_LEASE + Duration::from_millis(50) + stagger).await;
    let status = controller.raft_status();
    let voter = controller.voter_ids().contains(&me);
    if voter && status.leader == Some(i64::from(leader)) && !status.is_leader {
        tracing::info!(leader, %addr, "the controller leader's process is gone: standing for election");
        if let Err(e) = controller.raft().trigger().elect().await {
            tracing::warn!(error = %e, "could not start an election");
        }
    }
}

/// Fences `broker` now if this node leads, it is live, it has not heartbeated since `since`,
/// and its controller port refuses connections. `why` is for the log.
pub(crate) async fn fence_if_gone(controller: &Controller, broker: NodeId, since: Instant, why: &'static str) {
    let me = controller.node_id();
    if broker == me || !controller.raft_status().is_leader {
        return;
    }
    let id = broker;
    let meta = controller.metadata();
    if !meta.brokers.contains_key(&id) || meta.fenced.contains(&id) {
        return;
    }
    let Some(addr) = controller.voter_endpoint(broker) else {
        return;
    };
    if !process_gone(&addr).await {
        return;
    }
    // A heartbeat after `since` means it came back (a restart): its registration handles that.
    if controller
        .liveness()
        .heard_ago(broker)
        .is_some_and(|ago| ago < since.elapsed())
    {
        return;
    }
    tracing::warn!(broker, %addr, reason = why, "fencing a broker whose process is gone (its controller port refuses connections)");
    if let Err(e) = controller.write_as_leader(Command::FenceBroker { node_id: id }).await {
        tracing::warn!(broker, error = %e, "could not fence a broker");
    }
}

/// While this node leads, fences every live broker silent for longer than `session`, and
/// (see the module) dead ones sooner.
pub(crate) async fn fencing_loop(controller: Controller, session: Duration, heartbeat: Duration) {
    let me = controller.node_id();
    let mut tick = tokio::time::interval((session / 4).min(MAX_CHECK_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Raft's metrics change with every applied entry; only a new term or leader wakes the loop
    // early, so that a new leader probes the brokers at once rather than at its next tick (up
    // to half a second later, all of it added to a failover).
    let mut metrics = controller.raft().metrics();
    let mut seen = (0, None);
    let mut leading_term: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let m = metrics.borrow_and_update();
                let now = (m.current_term, m.current_leader);
                if now == seen {
                    continue;
                }
                seen = now;
            }
        }
        let status = controller.raft_status();
        if status.leader != Some(i64::from(me)) {
            leading_term = None;
            continue;
        }
        if leading_term != Some(status.term) {
            controller.liveness().reset();
            leading_term = Some(status.term);
            // A new leader: the old one may be dead, and a whole session is long to wait.
            for broker in controller.metadata().live_brokers() {
                let c = controller.clone();
                tokio::spawn(async move {
                    fence_if_gone(&c, broker, Instant::now(), "a new controller leader").await;
                });
            }
            continue;
        }
        let now = Instant::now();
        for broker in controller.metadata().live_brokers() {
            let silent = controller.liveness().silent_for(broker, now);
            if silent > heartbeat * 2 && silent <= session {
                let c = controller.clone();
                tokio::spawn(async move {
                    fence_if_gone(&c, broker, now, "missed two heartbeats").await;
                });
            }
            if silent <= session {
                continue;
            }
            tracing::warn!(
                broker,
                silent_ms = silent.as_millis() as u64,
                session_ms = session.as_millis() as u64,
                "fencing a broker that stopped heartbeating"
            );
            if let Err(e) = controller
                .write_as_leader(Command::FenceBroker { node_id: broker })
                .await
            {
                tracing::warn!(broker, error = %e, "could not fence a broker");
            }
        }
    }
}
