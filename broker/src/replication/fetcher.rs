//! The follower side of replication: one task per leader broker fetches every partition this
//! node follows from it, with the Fetch API as any Kafka follower does (v12, `replica_id` set to
//! this node), and appends what comes back at the leader's offsets.
//!
//! Before it fetches a partition in a new leader epoch, the follower asks the leader with
//! OffsetForLeaderEpoch where the epoch of its own last batch ended on the leader, and cuts its
//! log there (KIP-101, KIP-279): whatever it wrote as a leader that the new leader does not
//! have was never committed, and must not be served.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_controller::PartitionMeta;
use fjord_storage::PartitionId;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use super::is_replicated;
use crate::peers::Conn;
use crate::{partition_id, Broker};

/// Fetch version followers send: the newest that names topics rather than topic ids.
const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch version followers send.
const EPOCH_VERSION: i16 = 4;

/// A partition this node follows, as of one metadata snapshot.
#[derive(Debug, Clone)]
struct Followed {
    topic: String,
    pid: PartitionId,
    meta: PartitionMeta,
}

/// The partitions `me` follows, by leader.
fn followed(broker: &Broker) -> HashMap<i32, Vec<Followed>> {
    let me = broker.node_id();
    let meta = broker.metadata();
    let mut out: HashMap<i32, Vec<Followed>> = HashMap::new();
    for topic in meta.topics.values() {
        for p in &topic.partitions {
            if is_replicated(p) && p.leader >= 0 && p.leader != me && p.replicas.contains(&me) {
                out.entry(p.leader).or_default().push(Followed {
                    topic: topic.name.clone(),
                    pid: partition_id(topic, p.partition),
                    meta: p.clone(),
                });
            }
        }
    }
    out
}

/// Keeps one fetcher running per leader that this node follows partitions of.
pub(crate) async fn run(broker: Arc<Broker>) {
    let mut fetchers = Fetchers::default();
    let mut changes = broker.controller.subscribe();
    loop {
        fetchers.0.retain(|_, task| !task.is_finished());
        for leader in followed(&broker).into_keys() {
            fetchers
                .0
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetch_from(broker.clone(), leader)));
        }
        // A fetcher ends on its own once it has nothing left to follow from its leader.
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The running fetchers by leader; stopped with their manager.
#[derive(Default)]
struct Fetchers(HashMap<i32, JoinHandle<()>>);

impl Drop for Fetchers {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Fetches from `leader` until this node follows nothing of it.
async fn fetch_from(broker: Arc<Broker>, leader: i32) {
    let me = broker.node_id();
    let cfg = broker.config.replication.clone();
    let backoff = Duration::from_millis(cfg.fetch_backoff_ms);
    let wait = Duration::from_millis(cfg.fetch_wait_max_ms);
    let mut conn: Option<Conn> = None;
    let mut changes = broker.controller.subscribe();
    // The leader epoch each partition was made consistent with the leader's log in.
    let mut in_step: HashMap<PartitionId, i32> = HashMap::new();
    tracing::info!(leader, "replica fetcher started");
    while let Some(partitions) = followed(&broker).remove(&leader) {
        in_step.retain(|pid, epoch| {
            partitions
                .iter()
                .any(|f| f.pid == *pid && f.meta.leader_epoch == *epoch)
        });
        let Some(endpoint) = broker.metadata().brokers.get(&leader).map(|b| (b.host.clone(), b.port)) else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        if conn.is_none() {
            match Conn::open(&endpoint.0, endpoint.1, "fjord-replica-fetcher").await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach the leader");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let outcome = async {
            let new: Vec<&Followed> = partitions.iter().filter(|f| !in_step.contains_key(&f.pid)).collect();
            if !new.is_empty() {
                for (pid, epoch) in truncate_to_leader(&broker, c, me, &new).await? {
                    in_step.insert(pid, epoch);
                }
            }
            let ready: Vec<&Followed> = partitions.iter().filter(|f| in_step.contains_key(&f.pid)).collect();
            if ready.is_empty() {
                return Ok(false);
            }
            fetch_once(&broker, c, me, &ready, &cfg, wait, &mut in_step).await
        };
        // A change of what this node follows from this leader (a new partition, a new epoch)
        // cuts the long poll short rather than waiting it out: a new leader's high watermark
        // waits for this fetch.
        let followed_now: Vec<(PartitionId, i32)> = partitions.iter().map(|f| (f.pid, f.meta.leader_epoch)).collect();
        changes.borrow_and_update();
        let moved = async {
            loop {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let now: Vec<(PartitionId, i32)> = followed(&broker)
                    .remove(&leader)
                    .unwrap_or_default()
                    .iter()
                    .map(|f| (f.pid, f.meta.leader_epoch))
                    .collect();
                if now != followed_now {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            o = outcome => Some(o),
            () = moved => None,
        };
        let Some(outcome) = outcome else {
            // The answer to the request in flight would come on this connection: start anew.
            conn = None;
            continue;
        };
        match outcome {
            Ok(true) => {}
            // Nothing could be fetched (the leader does not lead these yet, or refused):
            // give the metadata time to move.
            Ok(false) => tokio::time::sleep(backoff.min(Duration::from_millis(200))).await,
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed");
                conn = None;
                tokio::time::sleep(backoff).await;
            }
        }
    }
    tracing::info!(leader, "replica fetcher stopped: nothing left to follow");
}

/// Truncates each partition to where its log and the leader's agree, with OffsetForLeaderEpoch;
/// returns the partitions now in step, with the leader epoch they are in step with.
async fn truncate_to_leader(
    broker: &Broker,
    c: &mut Conn,
    me: i32,
    partitions: &[&Followed],
) -> std::io::Result<Vec<(PartitionId, i32)>> {
    let mut by_topic: HashMap<&str, Vec<&Followed>> = HashMap::new();
    for f in partitions {
        by_topic.entry(f.topic.as_str()).or_default().push(f);
    }
    let mut asked: HashMap<(String, i32), (&Followed, i32)> = HashMap::new();
    let mut topics = Vec::new();
    let mut done = Vec::new();
    for (topic, fs) in by_topic {
        let mut parts = Vec::new();
        for f in fs {
            let latest = broker.store.latest_epoch(&f.pid).unwrap_or(-1);
            if latest < 0 {
                // An empty log (or one written before epochs) has nothing to disagree on.
                done.push((f.pid, f.meta.leader_epoch));
                continue;
            }
            asked.insert((topic.to_string(), f.meta.partition), (f, latest));
            parts.push(
                OffsetForLeaderPartition::default()
                    .with_partition(f.meta.partition)
                    .with_current_leader_epoch(f.meta.leader_epoch)
                    .with_leader_epoch(latest),
            );
        }
        if !parts.is_empty() {
            topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(parts),
            );
        }
    }
    if topics.is_empty() {
        return Ok(done);
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(topics);
    let resp: OffsetForLeaderEpochResponse = c
        .call(ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, &req, Duration::ZERO)
        .await?;
    for t in resp.topics {
        for p in t.partitions {
            let Some((f, latest)) = asked.get(&(t.topic.to_string(), p.partition)) else {
                continue;
            };
            if p.error_code != 0 {
                tracing::debug!(topic = %f.topic, partition = p.partition, error = ?ResponseError::try_from_code(p.error_code), "the leader cannot say where our epochs end yet");
                continue;
            }
            let Some(offsets) = broker.store.offsets(&f.pid) else {
                continue;
            };
            // KIP-279: the leader answers the largest epoch it has up to ours; when that is an
            // older one, ours ended where our log's copy of that epoch ends.
            let target = if p.leader_epoch < 0 || p.end_offset < 0 {
                offsets.high_watermark
            } else if p.leader_epoch == *latest {
                p.end_offset
            } else {
                match broker
                    .store
                    .end_offset_for_epoch(&f.pid, p.leader_epoch, f.meta.leader_epoch)
                {
                    Ok(Some((_, own_end))) => p.end_offset.min(own_end),
                    _ => p.end_offset,
                }
            };
            if target < offsets.log_end {
                match broker.store.truncate(f.pid, target).await {
                    Ok(end) => {
                        tracing::warn!(topic = %f.topic, partition = p.partition, from = offsets.log_end, to = end, "truncated a follower's log where it diverged from the leader's");
                        metrics::counter!("fjord_replica_truncations_total").increment(1);
                    }
                    Err(e) => {
                        tracing::error!(topic = %f.topic, partition = p.partition, error = %e, "cannot truncate a follower's log");
                        continue;
                    }
                }
            }
            done.push((f.pid, f.meta.leader_epoch));
        }
    }
    Ok(done)
}

/// One Fetch from the leader for `partitions`; appends what it answers. Returns whether the
/// leader served any partition.
async fn fetch_once(
    broker: &Broker,
    c: &mut Conn,
    me: i32,
    partitions: &[&Followed],
    cfg: &crate::config::ReplicationConfig,
    wait: Duration,
    in_step: &mut HashMap<PartitionId, i32>,
) -> std::io::Result<bool> {
    let mut by_topic: HashMap<&str, Vec<&Followed>> = HashMap::new();
    let mut named: HashMap<(String, i32), &Followed> = HashMap::new();
    for f in partitions {
        by_topic.entry(f.topic.as_str()).or_default().push(f);
        named.insert((f.topic.clone(), f.meta.partition), f);
    }
    let part_max = i32::try_from(cfg.fetch_max_bytes).unwrap_or(i32::MAX);
    let mut topics = Vec::new();
    for (topic, fs) in by_topic {
        let parts = fs
            .iter()
            .filter_map(|f| {
                let o = broker.store.offsets(&f.pid)?;
                Some(
                    FetchPartition::default()
                        .with_partition(f.meta.partition)
                        .with_current_leader_epoch(f.meta.leader_epoch)
                        .with_fetch_offset(o.log_end)
                        .with_last_fetched_epoch(broker.store.latest_epoch(&f.pid).unwrap_or(-1))
                        .with_log_start_offset(o.log_start)
                        .with_partition_max_bytes(part_max),
                )
            })
            .collect();
        topics.push(
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(parts),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(1)
        .with_max_bytes(i32::try_from(cfg.fetch_response_max_bytes).unwrap_or(i32::MAX))
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let resp: FetchResponse = c.call(ApiKey::Fetch, FETCH_VERSION, &req, wait).await?;
    if resp.error_code != 0 {
        tracing::debug!(error = ?ResponseError::try_from_code(resp.error_code), "the leader refused a replica fetch");
        return Ok(false);
    }
    let mut served = false;
    for t in resp.responses {
        for p in t.partitions {
            let Some(f) = named.get(&(t.topic.to_string(), p.partition_index)) else {
                continue;
            };
            if p.error_code != 0 {
                let e = ResponseError::try_from_code(p.error_code);
                tracing::debug!(topic = %f.topic, partition = p.partition_index, error = ?e, "replica fetch of a partition refused");
                // Behind the leader's log start (retention or DeleteRecords there while this
                // replica was away): start again where the leader's log starts.
                let own_end = broker.store.offsets(&f.pid).map(|o| o.log_end);
                // Ahead of the leader's log end (it answers its log end as the high watermark
                // of an out-of-range follower fetch): what is past it was never committed.
                if e == Some(ResponseError::OffsetOutOfRange)
                    && p.high_watermark >= 0
                    && own_end.is_some_and(|end| end > p.high_watermark)
                {
                    match broker.store.truncate(f.pid, p.high_watermark).await {
                        Ok(end) => {
                            tracing::warn!(topic = %f.topic, partition = p.partition_index, from = ?own_end, to = end, "truncated a follower's log past its leader's end");
                            metrics::counter!("fjord_replica_truncations_total").increment(1);
                        }
                        Err(e) => {
                            tracing::error!(topic = %f.topic, partition = p.partition_index, error = %e, "cannot truncate a follower's log")
                        }
                    }
                    continue;
                }
                if e == Some(ResponseError::OffsetOutOfRange) && own_end.is_some_and(|end| end < p.log_start_offset) {
                    match broker.store.reset_to(f.pid, p.log_start_offset).await {
                        Ok(_) => {
                            tracing::warn!(topic = %f.topic, partition = p.partition_index, from = ?own_end, to = p.log_start_offset, "a follower behind its leader's log start starts again there")
                        }
                        Err(e) => {
                            tracing::error!(topic = %f.topic, partition = p.partition_index, error = %e, "cannot reset a follower's log")
                        }
                    }
                    continue;
                }
                // A new epoch on either side: check the log against the leader again.
                if matches!(
                    e,
                    Some(ResponseError::FencedLeaderEpoch | ResponseError::OffsetOutOfRange)
                ) {
                    in_step.remove(&f.pid);
                }
                continue;
            }
            served = true;
            if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                if let Err(e) = broker.store.replica_append(f.pid, records).await {
                    tracing::warn!(topic = %f.topic, partition = p.partition_index, error = %e, "cannot append what the leader sent");
                    in_step.remove(&f.pid);
                    continue;
                }
            }
            let Some(own) = broker.store.offsets(&f.pid) else {
                continue;
            };
            broker
                .store
                .advance_high_watermark(&f.pid, p.high_watermark.min(own.log_end));
            // The leader's log start (retention, DeleteRecords) moves this replica's too, as far
            // as its own high watermark.
            let start = p.log_start_offset.min(own.log_end).min(p.high_watermark);
            if start > own.log_start {
                if let Err(e) = broker.store.delete_records(f.pid, start).await {
                    tracing::debug!(topic = %f.topic, partition = p.partition_index, error = %e, "cannot follow the leader's log start");
                }
            }
        }
    }
    Ok(served)
}
