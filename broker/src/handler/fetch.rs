//! Fetch: long polling on `max_wait_ms`/`min_bytes`, KIP-74 byte limits, and KIP-227
//! incremental fetch sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_controller::{ClusterMetadata, Uuid};
use fjord_protocol::frame::{records_marker, RECORDS_MARKER_BYTES};
use fjord_storage::{FileRecords, ReadLimit, RecordChunk, StorageError};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};

use super::{led_partition, topic_name};
use crate::error::storage_error_code;
use crate::replication::Replication;
use crate::{partition_id, Broker};

/// Most incremental fetch sessions kept (Kafka's `max.incremental.fetch.session.cache.slots`).
pub const MAX_FETCH_SESSIONS: usize = 1000;
/// Longest long poll honoured, whatever the client asks: bounds how long a request task lives.
pub const MAX_WAIT_CAP_MS: u64 = 300_000;

/// `session_epoch` value asking for a new session.
const INITIAL_EPOCH: i32 = 0;
/// `session_epoch` value closing a session (or asking for none).
const FINAL_EPOCH: i32 = -1;

/// A partition a session follows, keyed by topic id and partition.
#[derive(Debug, Clone)]
struct SessionPartition {
    topic: String,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    /// What the client was last told; an incremental response repeats a partition only
    /// when one of these changed or there are records or an error.
    last_high_watermark: i64,
    last_log_start: i64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: IndexMap<(Uuid, i32), SessionPartition>,
    last_used: Instant,
}

/// The broker's fetch session cache.
#[derive(Debug, Default)]
pub struct FetchSessions {
    inner: Mutex<SessionsInner>,
}

#[derive(Debug, Default)]
struct SessionsInner {
    next_id: i32,
    sessions: HashMap<i32, Session>,
}

impl SessionsInner {
    fn new_id(&mut self) -> i32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id > 0 && !self.sessions.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }

    fn make_room(&mut self) {
        while self.sessions.len() >= MAX_FETCH_SESSIONS {
            let Some(oldest) = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id) else {
                return;
            };
            self.sessions.remove(&oldest);
        }
    }
}

/// One partition to read in this request.
#[derive(Debug, Clone)]
struct Wanted {
    topic_id: Uuid,
    topic: String,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    /// An error decided before reading (unknown topic id).
    error: Option<ResponseError>,
}

fn error_response(e: ResponseError) -> FetchResponse {
    FetchResponse::default().with_error_code(e.code())
}

fn resolve_topic(meta: &ClusterMetadata, version: i16, name: &str, id: Uuid) -> (Uuid, String, Option<ResponseError>) {
    if version >= 13 {
        match meta.topic_by_id(&id) {
            Some(t) => (id, t.name.clone(), None),
            None => (id, String::new(), Some(ResponseError::UnknownTopicId)),
        }
    } else {
        match meta.topics.get(name) {
            Some(t) => (t.topic_id, name.to_string(), None),
            None => (
                Uuid::nil(),
                name.to_string(),
                Some(ResponseError::UnknownTopicOrPartition),
            ),
        }
    }
}

/// Record sets a Fetch response sends from the segment files: each stands in the response
/// as a marker (see `fjord_protocol::frame::encode_response_parts`).
pub type FileRecordSets = Vec<([u8; RECORDS_MARKER_BYTES], FileRecords)>;

/// One partition's answer, with its records when they stay in the segment files.
type PartitionAnswer = (Wanted, PartitionData, Option<([u8; RECORDS_MARKER_BYTES], FileRecords)>);

fn answer_bytes((_, p, file): &PartitionAnswer) -> usize {
    match file {
        Some((_, f)) => f.len,
        None => p.records.as_ref().map_or(0, Bytes::len),
    }
}

/// Answers Fetch from consumers (follower fetches arrive with replication), with the record
/// sets that stay in the segment files until the response is written.
pub async fn handle(
    broker: &std::sync::Arc<Broker>,
    version: i16,
    req: FetchRequest,
) -> (FetchResponse, FileRecordSets) {
    let meta = broker.metadata();
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    // A follower (replica id >= 0) reads up to the log end, without a session; its fetch
    // offset tells the leader how far its log goes.
    let follower = (replica >= 0).then_some(replica);

    // The partitions named in this request, in request order.
    let mut requested: Vec<Wanted> = Vec::new();
    for t in &req.topics {
        let (topic_id, name, error) = resolve_topic(&meta, version, t.topic.as_str(), t.topic_id);
        for p in &t.partitions {
            requested.push(Wanted {
                topic_id,
                topic: name.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                error,
            });
        }
    }

    // KIP-227 session handling decides which partitions to read and whether the response is
    // full or incremental.
    let (session_id, wanted, incremental) = if version < 7 || (req.session_id == 0 && req.session_epoch == FINAL_EPOCH)
    {
        (0, requested, false)
    } else {
        let mut inner = broker.fetch_sessions.inner.lock().unwrap_or_else(|p| p.into_inner());
        if req.session_epoch == INITIAL_EPOCH || req.session_epoch == FINAL_EPOCH {
            // A full fetch, as Kafka's FetchManager reads it: any session it names is closed
            // first. Epoch 0 with a session id is how a client resets its session (franz-go
            // does after every rebalance); it gets a new session, not an epoch error.
            if req.session_id != 0 {
                inner.sessions.remove(&req.session_id);
            }
            if req.session_epoch == FINAL_EPOCH {
                (0, requested, false)
            } else {
                inner.make_room();
                let id = inner.new_id();
                let partitions = requested
                    .iter()
                    .filter(|w| w.error.is_none())
                    .map(|w| ((w.topic_id, w.partition), session_partition(w)))
                    .collect();
                inner.sessions.insert(
                    id,
                    Session {
                        next_epoch: 1,
                        partitions,
                        last_used: Instant::now(),
                    },
                );
                (id, requested, false)
            }
        } else {
            // An incremental fetch; session id 0 names no session, so it is not found either.
            let Some(session) = inner.sessions.get_mut(&req.session_id) else {
                return (error_response(ResponseError::FetchSessionIdNotFound), Vec::new());
            };
            if session.next_epoch != req.session_epoch {
                return (error_response(ResponseError::InvalidFetchSessionEpoch), Vec::new());
            }
            for f in &req.forgotten_topics_data {
                let (topic_id, _, _) = resolve_topic(&meta, version, f.topic.as_str(), f.topic_id);
                for p in &f.partitions {
                    session.partitions.shift_remove(&(topic_id, *p));
                }
            }
            let mut errors = Vec::new();
            for w in requested {
                if w.error.is_some() {
                    errors.push(w);
                    continue;
                }
                let entry = session
                    .partitions
                    .entry((w.topic_id, w.partition))
                    .or_insert_with(|| session_partition(&w));
                entry.fetch_offset = w.fetch_offset;
                entry.max_bytes = w.max_bytes;
                entry.current_leader_epoch = w.current_leader_epoch;
            }
            if session.partitions.is_empty() {
                // Every partition forgotten: Kafka closes the session and answers sessionless,
                // so the next incremental fetch on it gets FETCH_SESSION_ID_NOT_FOUND.
                inner.sessions.remove(&req.session_id);
                (0, errors, false)
            } else {
                session.next_epoch = session.next_epoch.checked_add(1).unwrap_or(1);
                session.last_used = Instant::now();
                let mut wanted: Vec<Wanted> = session
                    .partitions
                    .iter()
                    .map(|((topic_id, partition), sp)| Wanted {
                        topic_id: *topic_id,
                        topic: sp.topic.clone(),
                        partition: *partition,
                        fetch_offset: sp.fetch_offset,
                        max_bytes: sp.max_bytes,
                        current_leader_epoch: sp.current_leader_epoch,
                        error: None,
                    })
                    .collect();
                wanted.extend(errors);
                (req.session_id, wanted, true)
            }
        }
    };

    let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(MAX_WAIT_CAP_MS));
    let deadline = Instant::now() + max_wait;
    // Kafka caps what the consumer asks for with the broker's fetch.max.bytes (v3+; older
    // versions have no response limit).
    let response_max_bytes = if version >= 3 {
        usize::try_from(req.max_bytes)
            .unwrap_or(0)
            .min(broker.config.fetch_max_bytes)
    } else {
        usize::MAX
    };
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let limit = if follower.is_some() {
        ReadLimit::LogEnd
    } else if req.isolation_level == READ_COMMITTED {
        ReadLimit::LastStable
    } else {
        ReadLimit::HighWatermark
    };
    if let Some(replica) = follower {
        for w in wanted.iter().filter(|w| w.error.is_none()) {
            let topic = meta.topics.get(&w.topic);
            if let Ok((topic, p)) = led_partition(broker, topic, w.partition, w.current_leader_epoch) {
                if p.replicas.contains(&replica) {
                    Replication::follower_fetched(broker, topic, p, replica, w.fetch_offset);
                }
            }
        }
    }
    let mut appended = broker.store.subscribe_appends();
    let parts = loop {
        appended.borrow_and_update();
        let parts = read_all(broker, &meta, &wanted, response_max_bytes, limit, follower).await;
        let bytes: usize = parts.iter().map(answer_bytes).sum();
        let any_error = parts.iter().any(|(_, p, _)| p.error_code != 0);
        let now = Instant::now();
        // A fetch of no partition at all (the session-closing Fetch every Java consumer sends on
        // close(), or a session with nothing in it) is answered at once, as Kafka's
        // ReplicaManager does when it has nothing to read: waiting could only end in nothing.
        if wanted.is_empty() || bytes >= min_bytes.max(1) || any_error || now >= deadline || min_bytes == 0 {
            break parts;
        }
        // Woken by any append; re-reading is cheap when nothing new is ours.
        broker
            .stats
            .fetch_waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let woken = tokio::time::timeout(deadline - now, appended.changed()).await;
        broker
            .stats
            .fetch_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if woken.is_err() {
            break read_all(broker, &meta, &wanted, response_max_bytes, limit, follower).await;
        }
    };
    for answer in &parts {
        let (w, p, _) = answer;
        if p.records.is_some() {
            broker.stats.fetched(&w.topic, answer_bytes(answer) as u64);
        }
    }

    // Group by topic in first-seen order; in an incremental session, leave out partitions
    // with nothing new for the client.
    let mut topics: IndexMap<(Uuid, String), Vec<PartitionData>> = IndexMap::new();
    let mut files = FileRecordSets::new();
    {
        let mut inner = broker.fetch_sessions.inner.lock().unwrap_or_else(|p| p.into_inner());
        let session = if session_id != 0 {
            inner.sessions.get_mut(&session_id)
        } else {
            None
        };
        let mut session = session;
        for (w, p, file) in parts {
            let mut include = true;
            if let Some(s) = session.as_mut() {
                let key = (w.topic_id, w.partition);
                let mut rotate = false;
                if let Some(sp) = s.partitions.get_mut(&key) {
                    let changed = sp.last_high_watermark != p.high_watermark || sp.last_log_start != p.log_start_offset;
                    let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                    include = !incremental || changed || has_records || p.error_code != 0;
                    sp.last_high_watermark = p.high_watermark;
                    sp.last_log_start = p.log_start_offset;
                    rotate = incremental && has_records;
                }
                // As Kafka's IncrementalFetchContext: a partition that returned records goes to
                // the end of the session, so the next fetch's byte budget goes to the others
                // first and every partition of a backlog makes progress.
                if rotate {
                    if let Some((k, v)) = s.partitions.shift_remove_entry(&key) {
                        s.partitions.insert(k, v);
                    }
                }
            }
            if include {
                topics.entry((w.topic_id, w.topic.clone())).or_default().push(p);
                files.extend(file);
            }
        }
    }
    let responses = topics
        .into_iter()
        .map(|((id, name), partitions)| {
            FetchableTopicResponse::default()
                .with_topic(topic_name(&name))
                .with_topic_id(id)
                .with_partitions(partitions)
        })
        .collect();
    let response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(responses);
    (response, files)
}

fn session_partition(w: &Wanted) -> SessionPartition {
    SessionPartition {
        topic: w.topic.clone(),
        fetch_offset: w.fetch_offset,
        max_bytes: w.max_bytes,
        current_leader_epoch: w.current_leader_epoch,
        last_high_watermark: -1,
        last_log_start: -1,
    }
}

fn partition_error(partition: i32, e: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// `isolation_level` of a `read_committed` consumer.
const READ_COMMITTED: i8 = 1;

async fn read_all(
    broker: &Broker,
    meta: &ClusterMetadata,
    wanted: &[Wanted],
    response_max_bytes: usize,
    limit: ReadLimit,
    follower: Option<i32>,
) -> Vec<PartitionAnswer> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut budget = response_max_bytes;
    let mut first = true;
    for w in wanted {
        let (p, file) = read_one(broker, meta, w, &mut budget, &mut first, limit, follower).await;
        out.push((w.clone(), p, file));
    }
    out
}

async fn read_one(
    broker: &Broker,
    meta: &ClusterMetadata,
    w: &Wanted,
    budget: &mut usize,
    first: &mut bool,
    limit: ReadLimit,
    follower: Option<i32>,
) -> (PartitionData, Option<([u8; RECORDS_MARKER_BYTES], FileRecords)>) {
    if let Some(e) = w.error {
        return (partition_error(w.partition, e), None);
    }
    let topic = match led_partition(broker, meta.topics.get(&w.topic), w.partition, w.current_leader_epoch) {
        // Only an assigned replica may follow.
        Ok((_, p)) if follower.is_some_and(|r| !p.replicas.contains(&r)) => {
            return (partition_error(w.partition, ResponseError::NotLeaderOrFollower), None)
        }
        Ok((topic, _)) => topic,
        Err(e) => return (partition_error(w.partition, e), None),
    };
    let pid = partition_id(topic, w.partition);
    let max = usize::try_from(w.max_bytes).unwrap_or(0).min(*budget);
    let at_least_one = *first;
    match broker
        .store
        .read_file_records(pid, w.fetch_offset, max, at_least_one, limit)
        .await
    {
        Ok((records, offsets)) => {
            if records.len > 0 {
                *first = false;
                *budget = budget.saturating_sub(records.len);
            }
            // Small reads come back in memory; larger ones stay in the segment files and go
            // to the socket from there, with a marker in the response where they belong.
            let (in_response, file) = match records.chunks.as_slice() {
                [] => (Bytes::new(), None),
                [RecordChunk::Mem(b)] => (b.clone(), None),
                _ => {
                    let marker = records_marker();
                    (Bytes::copy_from_slice(&marker), Some((marker, records)))
                }
            };
            // read_committed consumers drop the records of these transactions themselves.
            let aborted = (limit == ReadLimit::LastStable).then(|| {
                broker
                    .store
                    .aborted_txns(&pid, w.fetch_offset, offsets.last_stable)
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            });
            let p = PartitionData::default()
                .with_partition_index(w.partition)
                .with_high_watermark(offsets.high_watermark)
                .with_last_stable_offset(offsets.last_stable)
                .with_aborted_transactions(aborted)
                .with_log_start_offset(offsets.log_start)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(in_response));
            (p, file)
        }
        Err(e) => {
            let mut p = partition_error(w.partition, storage_error_code(&e));
            if let StorageError::OffsetOutOfRange {
                log_start,
                high_watermark,
                ..
            } = e
            {
                p = p
                    .with_high_watermark(high_watermark)
                    .with_last_stable_offset(high_watermark)
                    .with_log_start_offset(log_start);
            }
            (p, None)
        }
    }
}
