//! Produce (acks 0, 1, -1), with Kafka's `LogValidator` checks per partition.
//!
//! Two phases, so that a connection's batches keep their order while their writes overlap:
//! [`start`] validates every partition and queues the appends (awaited by the connection
//! before it reads the next request), and [`PendingProduce::finish`] waits for the writes
//! and builds the response.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fjord_controller::TopicMeta;
use fjord_protocol::batch::{validate_produce, ValidationConfig};
use fjord_protocol::error::BatchError;
use fjord_storage::producers::ProducerBatch;
use fjord_storage::{AppendBatch, AppendResult, PartitionId, PendingAppend};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};

use super::{str_bytes, Reply, RequestContext};
use crate::error::storage_error_code;
use crate::group::consumer::INTERNAL_TOPICS;
use crate::replication::{is_replicated, Replication};
use crate::{partition_id, Broker};

/// Most bytes a compressed batch may inflate to while it is validated on a reactor thread;
/// past that, validation starts again on the blocking pool. Decided by what comes out, not by
/// the compressed size: a few kilobytes of zstd can inflate to a gigabyte and took ~0.2 s of
/// a reactor thread to walk, delaying every other connection on it.
const INLINE_INFLATE_MAX_BYTES: usize = 1 << 20;

enum Outcome {
    Done(PartitionProduceResponse),
    /// Handed to the log: `slot` is its place in the request's appends.
    Queued {
        index: i32,
        slot: usize,
        log_append_time_ms: i64,
        topic: String,
        bytes: u64,
        records: u64,
        /// A replicated partition: with acks=all, the ISR must have the batch before the
        /// answer.
        replicated: Option<ReplicaWait>,
    },
}

/// What an answer on a replicated partition waits for (acks=all) or moves (a leader alone in
/// its ISR commits at once).
#[derive(Debug, Clone)]
struct ReplicaWait {
    wait: bool,
    pid: PartitionId,
    topic: String,
    partition: i32,
    /// Offsets the batch spans: the high watermark must pass `base + count`.
    count: i64,
    min_insync: usize,
}

/// A Produce whose appends are queued.
pub struct PendingProduce {
    acks: i16,
    /// `timeout_ms`: how long acks=all waits for the ISR.
    timeout: Duration,
    topics: Vec<(TopicProduceResponse, Vec<Outcome>)>,
    /// The appends of the `Queued` outcomes, by slot.
    appends: Vec<Slot>,
    /// Appends that are in the leader's log but were not acknowledged by the ISR, by slot.
    refused: HashMap<usize, ResponseError>,
}

/// One append of a Produce: waiting for the log, or answered.
enum Slot {
    Waiting(PendingAppend),
    Answered(fjord_storage::Result<AppendResult>),
}

impl Slot {
    /// Takes the log's answer if it has come; whether the slot is answered.
    fn settle(&mut self) -> bool {
        if let Slot::Waiting(pending) = self {
            match pending.try_take() {
                Some(answer) => *self = Slot::Answered(answer),
                None => return false,
            }
        }
        true
    }
}

fn failed(index: i32, e: ResponseError, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(str_bytes))
}

/// Validates and queues every partition of the request.
pub async fn start(broker: &Broker, ctx: &RequestContext, req: ProduceRequest) -> PendingProduce {
    let meta = broker.metadata();
    let acks = req.acks;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
    let mut topics = Vec::with_capacity(req.topic_data.len());
    // Validated batches, handed to the log together once every partition is checked: written
    // as one group when the writer is idle.
    let mut appends = Vec::new();
    for t in req.topic_data {
        // v13+ names topics by id only.
        let topic: Option<&TopicMeta> = if ctx.version >= 13 {
            meta.topic_by_id(&t.topic_id)
        } else {
            meta.topics.get(t.name.as_str())
        };
        let skeleton = TopicProduceResponse::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id);
        let missing = if ctx.version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let config = topic.map(|tm| {
            broker
                .produce_settings
                .get(|| broker.live(&meta).topic_defaults.clone(), &meta, tm)
        });
        let mut outcomes = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            if !(-1..=1).contains(&acks) {
                outcomes.push(Outcome::Done(failed(p.index, ResponseError::InvalidRequiredAcks, None)));
                continue;
            }
            let (Some(topic), Some(config)) = (topic, config.as_ref()) else {
                outcomes.push(Outcome::Done(failed(p.index, missing, None)));
                continue;
            };
            // Only the coordinators write to internal topics, as on Kafka.
            if INTERNAL_TOPICS.contains(&topic.name.as_str()) {
                outcomes.push(Outcome::Done(failed(
                    p.index,
                    ResponseError::InvalidTopicException,
                    Some(format!("Cannot append to internal topic {}", topic.name)),
                )));
                continue;
            }
            let Some(pmeta) = usize::try_from(p.index).ok().and_then(|i| topic.partitions.get(i)) else {
                outcomes.push(Outcome::Done(failed(
                    p.index,
                    ResponseError::UnknownTopicOrPartition,
                    None,
                )));
                continue;
            };
            if pmeta.leader != broker.node_id() {
                outcomes.push(Outcome::Done(failed(p.index, ResponseError::NotLeaderOrFollower, None)));
                continue;
            }
            // Kafka refuses acks=all up front when the ISR is already too small.
            if acks == -1 && pmeta.isr.len() < config.min_insync_replicas {
                outcomes.push(Outcome::Done(failed(
                    p.index,
                    ResponseError::NotEnoughReplicas,
                    Some(format!(
                        "the ISR has {} replicas, min.insync.replicas is {}",
                        pmeta.isr.len(),
                        config.min_insync_replicas
                    )),
                )));
                continue;
            }
            let Some(records) = p.records else {
                outcomes.push(Outcome::Done(failed(
                    p.index,
                    ResponseError::InvalidRecord,
                    Some("no records".into()),
                )));
                continue;
            };
            let vcfg = ValidationConfig {
                max_message_bytes: config.max_message_bytes,
                timestamp_type: config.timestamp_type,
                timestamp_before_max_ms: config.timestamp_before_max_ms,
                timestamp_after_max_ms: config.timestamp_after_max_ms,
                target_codec: config.target_codec,
                produce_version: ctx.version,
                now_ms: crate::txn::now_ms(),
                inflate_budget: Some(INLINE_INFLATE_MAX_BYTES),
                require_keys: config.compacted,
            };
            let validated = match validate_produce(records.clone(), &vcfg) {
                Err(BatchError::OverBudget(_)) => {
                    let vcfg = ValidationConfig {
                        inflate_budget: None,
                        ..vcfg
                    };
                    match tokio::task::spawn_blocking(move || validate_produce(records, &vcfg)).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "batch validation task failed");
                            outcomes.push(Outcome::Done(failed(p.index, ResponseError::UnknownServerError, None)));
                            continue;
                        }
                    }
                }
                other => other,
            };
            let valid = match validated {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(topic = %topic.name, partition = p.index, error = %e, "produce refused");
                    outcomes.push(Outcome::Done(failed(p.index, e.response_error(), Some(e.to_string()))));
                    continue;
                }
            };
            let log_append_time_ms = if valid.header.is_log_append_time() {
                valid.header.max_timestamp
            } else {
                -1
            };
            let h = &valid.header;
            if h.is_transactional() && h.producer_id >= 0 {
                let verified = super::txn::verify_transactional_write(
                    broker,
                    ctx.version,
                    transactional_id.as_deref(),
                    h.producer_id,
                    h.producer_epoch,
                    &topic.name,
                    p.index,
                )
                .await;
                if let Err(e) = verified {
                    outcomes.push(Outcome::Done(failed(p.index, e, None)));
                    continue;
                }
            }
            // Idempotent and transactional batches carry a producer id: the log checks their
            // sequence and epoch as it appends them.
            let producer = (h.producer_id >= 0).then(|| {
                ProducerBatch::new(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.record_count,
                    h.is_transactional(),
                )
            });
            let (bytes, records) = (valid.bytes.len() as u64, valid.header.record_count.max(0) as u64);
            let batch = AppendBatch {
                record_count: valid.header.record_count,
                max_timestamp: valid.header.max_timestamp,
                max_timestamp_offset_delta: valid.max_timestamp_offset_delta,
                bytes: valid.bytes,
                producer,
                marker: None,
            };
            let replicated = is_replicated(pmeta).then(|| ReplicaWait {
                wait: acks == -1,
                pid: partition_id(topic, p.index),
                topic: topic.name.clone(),
                partition: p.index,
                count: i64::from(batch.record_count),
                min_insync: config.min_insync_replicas,
            });
            outcomes.push(Outcome::Queued {
                index: p.index,
                slot: appends.len(),
                log_append_time_ms,
                topic: topic.name.clone(),
                bytes,
                records,
                replicated,
            });
            appends.push((partition_id(topic, p.index), batch, pmeta.leader_epoch));
        }
        topics.push((skeleton, outcomes));
    }
    let submitted = broker.store.submit_appends(appends).await;
    let appends = submitted.into_iter().map(Slot::Waiting).collect();
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    PendingProduce {
        acks,
        timeout,
        topics,
        appends,
        refused: HashMap::new(),
    }
}

impl PendingProduce {
    /// The reply, if every append has been answered already (the log wrote them inline);
    /// otherwise the request back, for [`PendingProduce::finish`].
    pub fn try_finish(mut self, broker: &Broker, ctx: &RequestContext) -> Result<Reply, PendingProduce> {
        if !self.appends.iter_mut().all(Slot::settle) || self.waits_for_replicas() {
            return Err(self);
        }
        let answers = self
            .appends
            .drain(..)
            .map(|slot| match slot {
                Slot::Answered(answer) => Some(answer),
                Slot::Waiting(_) => None, // settled above: cannot happen
            })
            .collect();
        Ok(self.reply(answers, broker, ctx))
    }

    /// Waits for the queued appends and answers (or not, for acks=0).
    pub async fn finish(mut self, broker: &Broker, ctx: &RequestContext) -> Reply {
        broker
            .stats
            .produce_waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut answers = Vec::with_capacity(self.appends.len());
        for slot in self.appends.drain(..) {
            answers.push(Some(match slot {
                Slot::Waiting(pending) => pending.wait().await,
                Slot::Answered(answer) => answer,
            }));
        }
        let deadline = Instant::now() + self.timeout;
        let mut refused = HashMap::new();
        for (_, outcomes) in &self.topics {
            for o in outcomes {
                let Outcome::Queued {
                    slot,
                    replicated: Some(wait),
                    ..
                } = o
                else {
                    continue;
                };
                if let Some(Some(Ok(a))) = answers.get(*slot) {
                    if !wait.wait {
                        continue;
                    }
                    let end = a.base_offset + wait.count;
                    let committed = Replication::await_isr(
                        broker,
                        wait.pid,
                        &wait.topic,
                        wait.partition,
                        end,
                        wait.min_insync,
                        deadline,
                    );
                    if let Err(e) = committed.await {
                        refused.insert(*slot, e);
                    }
                }
            }
        }
        broker
            .stats
            .produce_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.refused = refused;
        self.reply(answers, broker, ctx)
    }

    /// Whether an answer waits for in-sync replicas.
    fn waits_for_replicas(&self) -> bool {
        self.topics.iter().flat_map(|(_, o)| o).any(|o| {
            matches!(
                o,
                Outcome::Queued {
                    replicated: Some(_),
                    ..
                }
            )
        })
    }

    /// The response, from the log's answers to the appends, by slot.
    fn reply(
        self,
        mut answers: Vec<Option<fjord_storage::Result<AppendResult>>>,
        broker: &Broker,
        ctx: &RequestContext,
    ) -> Reply {
        let mut any_error = false;
        let mut responses = Vec::with_capacity(self.topics.len());
        for (mut topic, outcomes) in self.topics {
            let mut parts = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                let r = match o {
                    Outcome::Done(r) => r,
                    Outcome::Queued {
                        index,
                        slot,
                        log_append_time_ms,
                        topic,
                        bytes,
                        records,
                        replicated,
                    } => match answers.get_mut(slot).and_then(Option::take) {
                        Some(Ok(_)) if self.refused.contains_key(&slot) => failed(index, self.refused[&slot], None),
                        Some(Ok(a)) => {
                            if let Some(r) = replicated {
                                Replication::appended(broker, r.pid);
                            }
                            broker.stats.produced(&topic, bytes, records);
                            PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(a.base_offset)
                                .with_log_append_time_ms(log_append_time_ms)
                                .with_log_start_offset(a.log_start)
                        }
                        Some(Err(e)) => failed(index, storage_error_code(&e), None),
                        // One answer per slot, each taken once: cannot happen.
                        None => failed(index, ResponseError::UnknownServerError, None),
                    },
                };
                any_error |= r.error_code != 0;
                parts.push(r);
            }
            topic.partition_responses = parts;
            responses.push(topic);
        }
        if self.acks == 0 {
            // Kafka answers nothing to acks=0, and closes the connection on an error so that
            // the producer notices something went wrong.
            return if any_error { Reply::Close } else { Reply::Nothing };
        }
        ctx.respond(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ))
    }
}
