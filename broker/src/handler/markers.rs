//! Transaction markers: the coordinator's side, which closes a transaction in every partition
//! it touched wherever their leaders are, and WriteTxnMarkers, the partition leader's side.
//!
//! As in Kafka, a marker is a control batch the partition's leader appends and answers once the
//! in-sync replicas have it (a marker that a failover could lose would leave the transaction
//! open in that partition after the coordinator recorded it complete). For a group's
//! transactional offsets the marker goes to the leader of the group's `__consumer_offsets`
//! partition, the group coordinator, which completes the offsets of that producer in every
//! group of the partition: Kafka's group coordinator does the same when it reads the marker in
//! its log. On a single node every target is local and no request is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fjord_protocol::batch::control_batch;
use fjord_storage::producers::TxnMarker;
use fjord_storage::{AppendBatch, StorageError};
use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, ProducerId, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::topic_name;
use crate::error::storage_error_code;
use crate::peers::Channel;
use crate::replication::{is_replicated, Replication};
use crate::state_log::OFFSETS_TOPIC;
use crate::txn::now_ms;
use crate::txn::state::Markers;
use crate::txn::TxnMeta;
use crate::{partition_id, Broker};

/// WriteTxnMarkers version coordinators send (the only one Kafka 4 serves).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long a coordinator keeps trying to place a transaction's markers before it answers the
/// client COORDINATOR_NOT_AVAILABLE; the transaction stays prepared and the coordinator's
/// timer takes the markers up again (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
const MARKER_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between rounds of markers that could not be placed (leadership moving).
const MARKER_RETRY: Duration = Duration::from_millis(100);
/// How long a leader waits for its in-sync replicas to take a marker.
const MARKER_ISR_TIMEOUT: Duration = Duration::from_secs(5);

/// One transaction's marker, as a leader receives it.
#[derive(Debug, Clone, Copy)]
struct Marker {
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
}

/// Writes a transaction's markers in every partition it touched that still exists and
/// completes its offsets in its groups. Errors only when some target could not be reached
/// before [`MARKER_DEADLINE`]; what was placed stays placed (a second marker closes nothing).
///
/// `m` is the transaction's coordinator state: its load epoch is the markers' coordinator epoch
/// (a leader refuses a marker from a coordinator older than the one of the producer's last
/// marker), and a coordinator that stops serving the transactional id stops placing them.
pub async fn write_markers(broker: &Broker, m: &TxnMeta, markers: &Markers) -> Result<(), ResponseError> {
    let marker = Marker {
        producer_id: markers.producer_id,
        epoch: markers.epoch,
        commit: markers.commit,
        coordinator_epoch: m.load_epoch.max(0),
    };
    let mut remaining: BTreeSet<(String, i32)> = markers.partitions.clone();
    if broker.groups.is_replicated() {
        for g in &markers.groups {
            remaining.insert((OFFSETS_TOPIC.to_string(), broker.groups.partition_for(g)));
        }
    }
    let deadline = Instant::now() + MARKER_DEADLINE;
    loop {
        if broker.txns.is_replicated() && !broker.txns.serves(&m.transactional_id, m.load_epoch) {
            // Deposed: the new coordinator loaded the transaction and places its markers.
            return Err(ResponseError::NotCoordinator);
        }
        let meta = broker.metadata();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        remaining.retain(|(topic, p)| {
            let Some(pmeta) = meta
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(usize::try_from(*p).ok()?))
            else {
                return false; // deleted since: nothing to mark
            };
            if pmeta.leader >= 0 {
                by_leader.entry(pmeta.leader).or_default().push((topic.clone(), *p));
            }
            true
        });
        let mut failed: Vec<((String, i32), ResponseError)> = Vec::new();
        // Every leader at once, as Kafka's marker channel sends them: each waits for its
        // partitions' in-sync replicas, and a lagging follower of one partition must not hold
        // up the others.
        let me = broker.node_id();
        let outcomes = join_all(by_leader.into_iter().map(|(leader, targets)| async move {
            let local = leader == me;
            let out = if local {
                place_all(broker, marker, targets).await
            } else {
                send(broker, leader, marker, targets).await
            };
            out.into_iter().map(move |(t, r)| (local, t, r)).collect::<Vec<_>>()
        }))
        .await;
        for (local, target, r) in outcomes.into_iter().flatten() {
            match r {
                Ok(()) => {
                    remaining.remove(&target);
                }
                // A partition this node's metadata no longer has is gone; another leader's
                // answer may come from metadata behind this node's, so it is asked again.
                Err(ResponseError::UnknownTopicOrPartition) if local => {
                    remaining.remove(&target);
                }
                Err(ResponseError::TransactionCoordinatorFenced) => {
                    tracing::warn!(
                        producer_id = markers.producer_id,
                        "a newer transaction coordinator wrote this producer's markers"
                    );
                    return Err(ResponseError::NotCoordinator);
                }
                Err(e) => failed.push((target, e)),
            }
        }
        if remaining.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                producer_id = markers.producer_id,
                commit = markers.commit,
                unplaced = ?remaining,
                errors = ?failed,
                "could not write every transaction marker yet; the transaction stays prepared"
            );
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        tokio::time::sleep(MARKER_RETRY).await;
    }
    if !broker.groups.is_replicated() {
        for g in &markers.groups {
            if let Err(e) = broker.groups.complete_txn(g, markers.producer_id, markers.commit).await {
                tracing::error!(group = %g, error = %e, "could not complete transactional offsets");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    Ok(())
}

/// Sends one transaction's markers for `targets` to broker `leader`; the outcome per target
/// (every target fails alike when the broker cannot be reached).
async fn send(
    broker: &Broker,
    leader: i32,
    marker: Marker,
    targets: Vec<(String, i32)>,
) -> Vec<((String, i32), Result<(), ResponseError>)> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &targets {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.epoch)
        .with_transaction_result(marker.commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )]);
    let resp: std::io::Result<WriteTxnMarkersResponse> = broker
        .peers
        .call(
            broker,
            leader,
            Channel::Markers,
            ApiKey::WriteTxnMarkers,
            WRITE_TXN_MARKERS_VERSION,
            &req,
        )
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(leader, error = %e, "could not send transaction markers");
            return targets
                .into_iter()
                .map(|t| (t, Err(ResponseError::CoordinatorNotAvailable)))
                .collect();
        }
    };
    let mut answered: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for m in resp.markers {
        for t in m.topics {
            for p in t.partitions {
                answered.insert((t.name.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    targets
        .into_iter()
        .map(|t| {
            let r = match answered.get(&t) {
                Some(0) => Ok(()),
                Some(code) => Err(ResponseError::try_from_code(*code).unwrap_or(ResponseError::UnknownServerError)),
                None => Err(ResponseError::UnknownServerError),
            };
            (t, r)
        })
        .collect()
}

/// Places one marker in each of `targets`, all at once (each waits for its own in-sync
/// replicas).
async fn place_all(
    broker: &Broker,
    marker: Marker,
    targets: Vec<(String, i32)>,
) -> Vec<((String, i32), Result<(), ResponseError>)> {
    join_all(targets.into_iter().map(|(topic, p)| async move {
        let r = place(broker, &topic, p, marker).await;
        ((topic, p), r)
    }))
    .await
}

/// Places one marker in partition `partition` of `topic` as its leader: a control batch in a
/// data partition, the completion of the producer's offsets in a `__consumer_offsets`
/// partition.
async fn place(broker: &Broker, topic: &str, partition: i32, marker: Marker) -> Result<(), ResponseError> {
    if topic == OFFSETS_TOPIC && broker.groups.is_replicated() {
        return broker
            .groups
            .complete_partition(partition, marker.producer_id, marker.commit)
            .await;
    }
    let meta = broker.metadata();
    let t = meta.topics.get(topic).ok_or(ResponseError::UnknownTopicOrPartition)?;
    let pmeta = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if pmeta.leader != broker.node_id() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let settings = broker
        .produce_settings
        .get(|| broker.live(&meta).topic_defaults.clone(), &meta, t);
    let replicated = is_replicated(pmeta);
    if replicated && pmeta.isr.len() < settings.min_insync_replicas {
        return Err(ResponseError::NotEnoughReplicas);
    }
    let now = now_ms();
    let batch = AppendBatch {
        bytes: control_batch(
            marker.producer_id,
            marker.epoch,
            marker.commit,
            marker.coordinator_epoch,
            now,
        ),
        record_count: 1,
        max_timestamp: now,
        max_timestamp_offset_delta: 0,
        producer: None,
        marker: Some(TxnMarker {
            producer_id: marker.producer_id,
            epoch: marker.epoch,
            commit: marker.commit,
            coordinator_epoch: marker.coordinator_epoch,
        }),
    };
    let pid = partition_id(t, partition);
    let deadline = Instant::now() + MARKER_ISR_TIMEOUT;
    // Before the append: a batch verified from here on belongs to a later transaction.
    broker.txns.verified.forget(topic, partition, marker.producer_id);
    let appended = match broker.store.append(pid, batch, pmeta.leader_epoch).await {
        Ok(a) => a,
        // In a cluster, not made here yet (the reconciler runs on the same metadata change);
        // on a single node, gone.
        Err(StorageError::UnknownPartition) if broker.config.is_cluster() => {
            return Err(ResponseError::NotLeaderOrFollower)
        }
        Err(StorageError::UnknownPartition) => return Err(ResponseError::UnknownTopicOrPartition),
        Err(e) => {
            tracing::error!(topic, partition, error = %e, "could not write a transaction marker");
            return Err(storage_error_code(&e));
        }
    };
    if replicated {
        Replication::appended(broker, pid);
        Replication::await_isr(
            broker,
            pid,
            topic,
            partition,
            appended.base_offset + 1,
            settings.min_insync_replicas,
            deadline,
        )
        .await?;
    }
    Ok(())
}

/// WriteTxnMarkers: a transaction coordinator on another broker closes transactions in
/// partitions led here.
pub async fn write_txn_markers(broker: &Broker, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let targets: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect();
        let mut outcomes = place_all(broker, marker, targets).await.into_iter();
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let code = match outcomes.next() {
                        Some((_, Ok(()))) => 0,
                        Some((_, Err(e))) => e.code(),
                        None => ResponseError::UnknownServerError.code(),
                    };
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(*p)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
