//! The status JSON (`/api/status`, also embedded in `/`) and the periodic collector that sets
//! the gauges: storage, controller, consumer lag.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::batch::{find_record, BatchHeader};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::group::classic::CONSUMER_PROTOCOL_TYPE;
use crate::group::GroupKind;
use crate::{partition_id, Broker};

#[derive(Serialize)]
struct Status {
    broker: BrokerView,
    brokers: Vec<BrokerEntry>,
    topics: Vec<TopicView>,
    groups: Vec<GroupView>,
    series: Vec<crate::metrics::Sample>,
    /// Compacted partitions hosted here, as the log cleaner last saw them.
    cleaner: Vec<crate::cleaner::CleanerRow>,
}

#[derive(Serialize)]
struct BrokerView {
    node_id: i32,
    version: &'static str,
    cluster_id: String,
    started_ms: i64,
    now_ms: i64,
    listeners: Vec<String>,
    data_dir: String,
    /// Free space in the log directory, its reserve (`log.dir.min.free.bytes`), and whether
    /// new data is refused for want of space.
    disk_free_bytes: u64,
    disk_min_free_bytes: u64,
    disk_full: bool,
}

#[derive(Serialize)]
struct BrokerEntry {
    node_id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    /// Fenced for missing its heartbeats (`broker.session.timeout.ms`).
    fenced: bool,
    /// The controller quorum's leader.
    controller: bool,
}

#[derive(Serialize)]
struct TopicView {
    name: String,
    topic_id: String,
    internal: bool,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
struct PartitionView {
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    /// Assigned replicas, preferred leader first.
    replicas: Vec<i32>,
    /// In-sync replicas.
    isr: Vec<i32>,
    log_start: i64,
    high_watermark: i64,
    last_stable: i64,
    size_bytes: u64,
}

#[derive(Serialize)]
struct GroupView {
    group_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    state: &'static str,
    protocol: String,
    members: Vec<MemberView>,
    lag: Vec<LagView>,
    total_lag: i64,
}

#[derive(Serialize)]
struct MemberView {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Vec<AssignedView>,
}

#[derive(Serialize)]
struct AssignedView {
    topic: String,
    partitions: Vec<i32>,
}

#[derive(Serialize, Clone)]
struct LagView {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    high_watermark: i64,
    lag: Option<i64>,
    lag_seconds: Option<f64>,
}

/// A group's members, assignments and lag, read under its lock.
struct GroupSnapshot {
    view: GroupView,
}

async fn snapshot_group(broker: &Broker, id: &str, names_by_id: &HashMap<uuid::Uuid, String>) -> Option<GroupSnapshot> {
    let g = broker.groups.lock(id, false).await?;
    let (kind, state, protocol, members): (&'static str, &'static str, String, Vec<MemberView>) = match &g.kind {
        GroupKind::Classic(c) => {
            let members = c
                .members()
                .map(|m| {
                    let mut assignment = Vec::new();
                    if c.protocol_type() == Some(CONSUMER_PROTOCOL_TYPE) && m.assignment.len() > 2 {
                        let mut buf: Bytes = m.assignment.slice(2..);
                        if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, 0) {
                            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                            for tp in a.assigned_partitions {
                                by_topic.entry(tp.topic.to_string()).or_default().extend(tp.partitions);
                            }
                            assignment = by_topic
                                .into_iter()
                                .map(|(topic, partitions)| AssignedView { topic, partitions })
                                .collect();
                        }
                    }
                    MemberView {
                        member_id: m.id.clone(),
                        client_id: m.client_id.clone(),
                        host: m.client_host.clone(),
                        assignment,
                    }
                })
                .collect();
            (
                "classic",
                c.state().name(),
                c.protocol_name().unwrap_or("").to_string(),
                members,
            )
        }
        GroupKind::Consumer(c) => {
            let members = c
                .members()
                .map(|m| MemberView {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.client_host.clone(),
                    assignment: m
                        .assigned_partitions
                        .iter()
                        .map(|(id, parts)| AssignedView {
                            topic: names_by_id.get(id).cloned().unwrap_or_else(|| id.to_string()),
                            partitions: parts.iter().copied().collect(),
                        })
                        .collect(),
                })
                .collect();
            ("consumer", c.state(), c.assignor_name(), members)
        }
        GroupKind::Streams(s) => {
            // Active tasks, shown as the subtopology's partitions.
            let members = s
                .members()
                .map(|m| MemberView {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.client_host.clone(),
                    assignment: m
                        .assigned
                        .active_tasks()
                        .into_iter()
                        .map(|(sub, parts)| AssignedView {
                            topic: format!("subtopology {sub}"),
                            partitions: parts.into_iter().collect(),
                        })
                        .collect(),
                })
                .collect();
            ("streams", s.state(), "sticky".to_string(), members)
        }
    };
    let meta = broker.metadata();
    let mut lag = Vec::new();
    let mut total_lag = 0;
    for ((topic, p), o) in &g.offsets {
        let Some((_, offsets, l)) = partition_lag(broker, &meta, topic, *p, o.offset) else {
            continue;
        };
        total_lag += l;
        lag.push(LagView {
            topic: topic.clone(),
            partition: *p,
            committed: Some(o.offset),
            high_watermark: offsets.high_watermark,
            lag: Some(l),
            lag_seconds: broker.stats.lag_seconds(&g.id, topic, *p),
        });
    }
    Some(GroupSnapshot {
        view: GroupView {
            group_id: g.id.clone(),
            kind,
            state,
            protocol,
            members,
            lag,
            total_lag,
        },
    })
}

/// A committed offset's partition, its offsets and the lag (high watermark minus the commit,
/// never negative); `None` when the topic or partition is gone.
fn partition_lag(
    broker: &Broker,
    meta: &fjord_controller::ClusterMetadata,
    topic: &str,
    partition: i32,
    committed: i64,
) -> Option<(fjord_storage::PartitionId, fjord_storage::PartitionOffsets, i64)> {
    let pid = partition_id(meta.topics.get(topic)?, partition);
    let offsets = broker.store.offsets(&pid)?;
    Some((pid, offsets, (offsets.high_watermark - committed).max(0)))
}

/// The status document.
pub async fn status_json(broker: &Broker) -> String {
    let meta = broker.metadata();
    let names_by_id: HashMap<uuid::Uuid, String> = meta.topics.values().map(|t| (t.topic_id, t.name.clone())).collect();
    let topics = meta
        .topics
        .values()
        .map(|t| TopicView {
            name: t.name.clone(),
            topic_id: t.topic_id.to_string(),
            internal: false,
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let pid = partition_id(t, p.partition);
                    let o = broker.store.offsets(&pid);
                    PartitionView {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        log_start: o.map_or(-1, |o| o.log_start),
                        high_watermark: o.map_or(-1, |o| o.high_watermark),
                        last_stable: o.map_or(-1, |o| o.last_stable),
                        size_bytes: broker.store.size_bytes(&pid),
                    }
                })
                .collect(),
        })
        .collect();
    let mut groups = Vec::new();
    for id in broker.groups.group_ids() {
        if let Some(s) = snapshot_group(broker, &id, &names_by_id).await {
            groups.push(s.view);
        }
    }
    let controller_leader = broker.controller.raft_status().leader;
    let status = Status {
        broker: BrokerView {
            node_id: broker.node_id(),
            version: env!("CARGO_PKG_VERSION"),
            cluster_id: meta.cluster_id.clone(),
            started_ms: broker.stats.started_ms,
            now_ms: crate::txn::now_ms(),
            listeners: broker
                .config
                .listeners
                .iter()
                .map(|l| format!("{}:{}", l.host, l.port))
                .collect(),
            data_dir: broker.config.log_dir.display().to_string(),
            disk_free_bytes: broker.store.space().free_and_total().0,
            disk_min_free_bytes: broker.store.space().reserve(),
            disk_full: broker.store.space().is_full(),
        },
        brokers: meta
            .brokers
            .values()
            .map(|b| BrokerEntry {
                node_id: b.node_id,
                host: b.host.clone(),
                port: i32::from(b.port),
                rack: b.rack.clone(),
                fenced: meta.fenced.contains(&b.node_id),
                controller: controller_leader == Some(i64::from(b.node_id)),
            })
            .collect(),
        topics,
        groups,
        series: broker.stats.series(),
        cleaner: broker.cleaner.rows(),
    };
    serde_json::to_string(&status).unwrap_or_else(|_| "null".into())
}

/// Bytes under a directory (the log dir's usage).
fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// How often gauges are recomputed.
const COLLECT_EVERY: Duration = Duration::from_secs(5);

/// Samples the charts every second and sets the gauges every [`COLLECT_EVERY`].
pub async fn collect_loop(broker: Arc<Broker>, handle: Option<PrometheusHandle>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    metrics::gauge!("fjord_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    loop {
        tick.tick().await;
        broker.stats.sample();
        if n.is_multiple_of(COLLECT_EVERY.as_secs()) {
            collect(&broker).await;
            if let Some(h) = &handle {
                h.run_upkeep();
            }
        }
        n += 1;
    }
}

/// Gauges read from atomics: cheap, so set again at every scrape as well.
pub fn live_gauges(broker: &Broker) {
    metrics::gauge!("fjord_up").set(1.0);
    metrics::gauge!("fjord_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("fjord_start_time_seconds").set(broker.stats.started_ms as f64 / 1000.0);
    let s = &broker.stats;
    metrics::gauge!("fjord_connections_active").set(s.connections.load(Ordering::Relaxed) as f64);
    metrics::gauge!("fjord_produce_purgatory_size").set(s.produce_waiting.load(Ordering::Relaxed) as f64);
    metrics::gauge!("fjord_fetch_purgatory_size").set(s.fetch_waiting.load(Ordering::Relaxed) as f64);
}

async fn collect(broker: &Broker) {
    live_gauges(broker);

    let meta = broker.metadata();
    // As Kafka reports them: under-replicated partitions by their leader, so that summing the
    // brokers counts each once.
    let me = broker.node_id();
    let under = meta
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == me && p.isr.len() < p.replicas.len())
        .count();
    metrics::gauge!("fjord_under_replicated_partitions").set(under as f64);
    controller_gauges(&broker.controller);

    let (stopped, delayed, pending, running) = broker.store.rocksdb_stats();
    metrics::gauge!("fjord_rocksdb_write_stopped").set(stopped as f64);
    metrics::gauge!("fjord_rocksdb_delayed_write_rate_bytes").set(delayed as f64);
    metrics::gauge!("fjord_rocksdb_pending_compaction_bytes").set(pending as f64);
    metrics::gauge!("fjord_rocksdb_running_compactions").set(running as f64);

    let dir = broker.config.log_dir.clone();
    let label = dir.display().to_string();
    let space = broker.store.space().clone();
    let disk = tokio::task::spawn_blocking(move || {
        let used = dir_size(&dir);
        // The disk reserve's look: also what clears a refusal when no producer is asking
        // (see fjord_storage::space).
        let fs = space.look();
        (used, fs)
    })
    .await;
    if let Ok((used, fs)) = disk {
        metrics::gauge!("fjord_log_dir_size_bytes", "dir" => label.clone()).set(used as f64);
        if let Some((free, total)) = fs {
            metrics::gauge!("fjord_log_dir_free_bytes", "dir" => label.clone()).set(free as f64);
            metrics::gauge!("fjord_log_dir_total_bytes", "dir" => label).set(total as f64);
        }
    }

    collect_groups(broker).await;
}

/// The gauges of the cluster metadata and of this node's Raft, which every node sets (offline
/// partitions only on the active controller, as Kafka counts them).
pub fn controller_gauges(controller: &fjord_controller::Controller) {
    let meta = controller.metadata();
    let partitions: usize = meta.topics.values().map(|t| t.partitions.len()).sum();
    metrics::gauge!("fjord_topics").set(meta.topics.len() as f64);
    metrics::gauge!("fjord_partitions").set(partitions as f64);
    let raft = controller.raft_status();
    let offline = if raft.is_leader {
        meta.topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader < 0)
            .count()
    } else {
        0
    };
    metrics::gauge!("fjord_offline_partitions").set(offline as f64);
    let fenced = meta.fenced.iter().filter(|b| meta.brokers.contains_key(b)).count();
    metrics::gauge!("fjord_fenced_brokers").set(fenced as f64);
    metrics::gauge!("fjord_active_brokers").set(meta.brokers.len().saturating_sub(fenced) as f64);
    metrics::gauge!("fjord_controller_raft_term").set(raft.term as f64);
    metrics::gauge!("fjord_controller_is_leader").set(if raft.is_leader { 1.0 } else { 0.0 });
    metrics::gauge!("fjord_controller_commit_lag").set(raft.last_log_index.saturating_sub(raft.applied_index) as f64);
}

/// [`collect_loop`] of a controller-only node: its Raft and the cluster metadata.
pub async fn controller_collect_loop(controller: fjord_controller::Controller, handle: Option<PrometheusHandle>) {
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics::gauge!("fjord_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("fjord_up").set(1.0);
    loop {
        tick.tick().await;
        controller_gauges(&controller);
        if let Some(h) = &handle {
            h.run_upkeep();
        }
    }
}

/// `/api/status` of a controller-only node: its role, its Raft and the brokers it knows.
pub fn controller_status_json(controller: &fjord_controller::Controller, node_id: i32) -> String {
    let meta = controller.metadata();
    let raft = controller.raft_status();
    let brokers: Vec<serde_json::Value> = meta
        .brokers
        .values()
        .map(|b| {
            serde_json::json!({
                "node_id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "fenced": meta.fenced.contains(&b.node_id),
            })
        })
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": node_id,
        "process_roles": "controller",
        "cluster_id": meta.cluster_id,
        "controller": {
            "leader": raft.leader,
            "is_leader": raft.is_leader,
            "term": raft.term,
            "last_log_index": raft.last_log_index,
            "applied_index": raft.applied_index,
        },
        "brokers": brokers,
        "topics": meta.topics.len(),
        "partitions": meta.topics.values().map(|t| t.partitions.len()).sum::<usize>(),
    })
    .to_string()
}

/// Consumer lag per group and partition (bounded), lag in seconds from record timestamps,
/// members per group, groups per state.
async fn collect_groups(broker: &Broker) {
    let meta = broker.metadata();
    let now = crate::txn::now_ms();
    let mut series = 0usize;
    let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut seconds: HashMap<(String, String, i32), f64> = HashMap::new();
    for id in broker.groups.group_ids() {
        let Some(g) = broker.groups.lock(&id, false).await else {
            continue;
        };
        *states.entry(g.state_name()).or_default() += 1;
        let members = match &g.kind {
            GroupKind::Classic(c) => c.members().count(),
            GroupKind::Consumer(c) => c.members().count(),
            GroupKind::Streams(s) => s.members().count(),
        };
        metrics::gauge!("fjord_consumer_group_members", "group" => id.clone()).set(members as f64);
        let offsets: Vec<((String, i32), i64)> = g.offsets.iter().map(|(k, o)| (k.clone(), o.offset)).collect();
        drop(g);
        let mut total = 0i64;
        for ((topic, p), committed) in offsets {
            let Some((pid, o, lag)) = partition_lag(broker, &meta, &topic, p, committed) else {
                continue;
            };
            total += lag;
            if series >= crate::metrics::MAX_LAG_SERIES {
                continue;
            }
            series += 1;
            // Age of the oldest record not consumed yet: now minus its timestamp.
            let mut lag_s = 0.0;
            if lag > 0 {
                let from = committed.max(o.log_start);
                if let Ok(r) = broker.store.read(pid, from, 1, true).await {
                    let base = BatchHeader::parse(&r.records).map(|h| h.base_offset).unwrap_or(from);
                    let first_unread = find_record(&r.records, |s| base + i64::from(s.offset_delta) >= from);
                    if let Some(ts) = first_unread.ok().flatten().map(|s| s.timestamp).filter(|ts| *ts >= 0) {
                        lag_s = ((now - ts).max(0) as f64) / 1000.0;
                    }
                }
            }
            let labels = [
                ("group", id.clone()),
                ("topic", topic.clone()),
                ("partition", p.to_string()),
            ];
            metrics::gauge!("fjord_consumer_group_lag", &labels).set(lag as f64);
            metrics::gauge!("fjord_consumer_group_lag_seconds", &labels).set(lag_s);
            seconds.insert((id.clone(), topic, p), lag_s);
        }
        metrics::gauge!("fjord_consumer_group_total_lag", "group" => id.clone()).set(total as f64);
    }
    for (state, count) in states {
        metrics::gauge!("fjord_consumer_groups", "state" => state).set(count as f64);
    }
    broker.stats.set_lag_seconds(seconds);
}
