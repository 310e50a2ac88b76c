//! Idempotent and transactional producers: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions, and the
//! produce-time check that a transactional batch belongs to an open transaction.
//!
//! What each request does to a transaction is decided by `crate::txn::state`; these handlers
//! decode, ask it, perform the effects it returns (state records, markers through the partition
//! log like any append, group offsets) and encode the answer.

use fjord_storage::CommittedOffset;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self as describe, TopicData};
use kafka_protocol::messages::list_transactions_response as list;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{str_bytes, topic_name, RequestContext};
use crate::group::GroupKind;
use crate::peers::Channel;
use crate::state_log::OFFSETS_TOPIC;
use crate::txn::state::{self, Effect, TimerAction, Transition};
use crate::txn::{now_ms, TxnMeta};
use crate::Broker;
use tokio::sync::OwnedMutexGuard;

/// AddPartitionsToTxn version a partition leader or group coordinator sends a transaction
/// coordinator: the first of the broker form, with `verify_only` (KIP-890).
const ADD_PARTITIONS_BROKER_VERSION: i16 = 4;

/// PRODUCER_FENCED (KIP-588) is newer than the APIs' first versions; older clients know
/// INVALID_PRODUCER_EPOCH.
fn for_version(e: ResponseError, version_has_fenced: bool) -> ResponseError {
    if e == ResponseError::ProducerFenced && !version_has_fenced {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}

fn init_error(e: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(e.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

async fn new_producer_id(broker: &Broker) -> Result<i64, ResponseError> {
    broker
        .txns
        .ids
        .next(&broker.controller, broker.node_id())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not allocate producer ids");
            ResponseError::CoordinatorNotAvailable
        })
}

/// Locks a transactional id's state as its coordinator: NOT_COORDINATOR or
/// COORDINATOR_LOAD_IN_PROGRESS when this node does not serve it now (checked again when the
/// lock finds nothing, in case its partition moved meanwhile), `None` for an id this
/// coordinator does not know.
async fn lock_txn(broker: &Broker, tid: &str, create: bool) -> Result<Option<OwnedMutexGuard<TxnMeta>>, ResponseError> {
    for _ in 0..3 {
        super::coordinator::check_txn(broker, tid)?;
        match broker.txns.lock(tid, create).await {
            Some(m) => return Ok(Some(m)),
            // Held over from an earlier load (or reloaded meanwhile): look again.
            None if broker.txns.knows(tid) => continue,
            None => {
                super::coordinator::check_txn(broker, tid)?;
                return Ok(None);
            }
        }
    }
    Err(ResponseError::CoordinatorLoadInProgress)
}

/// Performs a transition's effects in order; `m` takes each record once it is durable. The
/// first failure stops the rest.
async fn perform(broker: &Broker, m: &mut TxnMeta, effects: Vec<Effect>) -> Result<(), ResponseError> {
    for effect in effects {
        match effect {
            Effect::Persist(next) => {
                if let Err(e) = broker.txns.persist(&next).await {
                    tracing::error!(transactional_id = %next.transactional_id, error = %e, "could not persist transaction state");
                    return Err(e.response_error());
                }
                *m = next;
            }
            Effect::WriteMarkers(markers) => super::markers::write_markers(broker, m, &markers).await?,
            Effect::Remove => {
                if let Err(e) = broker.txns.remove(m).await {
                    tracing::warn!(transactional_id = %m.transactional_id, error = %e, "could not expire a transactional id");
                    return Err(e.response_error());
                }
            }
        }
    }
    Ok(())
}

/// Performs the effects, then answers; an error answer has none to perform. `m` is absent
/// when the transactional id is unknown, and then nothing is to be done either.
async fn run<T>(
    broker: &Broker,
    m: Option<&mut TxnMeta>,
    t: Transition<Result<T, ResponseError>>,
) -> Result<T, ResponseError> {
    let reply = t.reply?;
    if let Some(m) = m {
        perform(broker, m, t.effects).await?;
    }
    Ok(reply)
}

/// InitProducerId: a new producer id for an idempotent producer; for a transactional id, the
/// id and a bumped epoch (fencing older instances), after aborting what they left open.
pub async fn init_producer_id(
    broker: &Broker,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let Some(tid) = req.transactional_id.map(|t| t.to_string()) else {
        return match new_producer_id(broker).await {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => init_error(e),
        };
    };
    let txns = &broker.txns;
    if let Err(e) = state::validate_init(&tid, req.transaction_timeout_ms, &txns.cfg) {
        return init_error(e);
    }
    let mut m = match lock_txn(broker, &tid, true).await {
        Ok(Some(m)) => m,
        Ok(None) => return init_error(ResponseError::CoordinatorNotAvailable),
        Err(e) => return init_error(e),
    };
    let input = state::InitInput {
        timeout_ms: req.transaction_timeout_ms,
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
    };
    let now = now_ms();
    let mut fresh = None;
    let t = loop {
        match state::init_producer_id(&m, &input, fresh, now) {
            state::Init::Done(t) => break t,
            state::Init::NeedProducerId if fresh.is_none() => match new_producer_id(broker).await {
                Ok(id) => fresh = Some(id),
                Err(e) => return init_error(e),
            },
            state::Init::NeedProducerId => return init_error(ResponseError::CoordinatorNotAvailable),
        }
    };
    match run(broker, Some(&mut m), t).await {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => init_error(for_version(e, ctx.version >= 4)),
    }
}

type TopicCodes = Vec<(String, Vec<(i32, i16)>)>;

async fn add_partitions(
    broker: &Broker,
    version: i16,
    tid: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> TopicCodes {
    let topics: Vec<(String, Vec<i32>)> = topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions.clone()))
        .collect();
    let mut m = match lock_txn(broker, tid, false).await {
        Ok(m) => m,
        Err(e) => {
            return topics
                .into_iter()
                .map(|(name, ps)| (name, ps.into_iter().map(|p| (p, e.code())).collect()))
                .collect()
        }
    };
    let input = state::AddPartitionsInput {
        producer_id,
        epoch,
        verify_only,
        topics: &topics,
        offsets_partitions: broker.groups.cfg.offsets_partitions,
    };
    let meta = broker.metadata();
    let exists = |t: &str, p: i32| {
        meta.topics
            .get(t)
            .is_some_and(|tm| p >= 0 && (p as usize) < tm.partitions.len())
    };
    let t = state::add_partitions(m.as_deref(), &input, exists, now_ms());
    let failed = match m.as_deref_mut() {
        Some(m) => perform(broker, m, t.effects).await.is_err(),
        None => false,
    };
    let code = |r: Result<(), ResponseError>| match r {
        _ if failed => ResponseError::CoordinatorNotAvailable.code(),
        Ok(()) => 0,
        Err(e) => for_version(e, version >= 2).code(),
    };
    t.reply
        .into_iter()
        .map(|(name, ps)| (name, ps.into_iter().map(|(p, r)| (p, code(r))).collect()))
        .collect()
}

fn topic_results(codes: TopicCodes) -> Vec<AddPartitionsToTxnTopicResult> {
    codes
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic_name(&name))
                .with_results_by_partition(
                    parts
                        .into_iter()
                        .map(|(p, code)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

/// AddPartitionsToTxn: v0-3 one transaction (clients), v4+ a batch (the broker form, with
/// `verify_only`).
pub async fn add_partitions_to_txn(
    broker: &Broker,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let codes = add_partitions(
            broker,
            ctx.version,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(codes));
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let codes = add_partitions(
            broker,
            ctx.version,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results(codes)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// AddOffsetsToTxn: the transaction will commit offsets to this group.
pub async fn add_offsets_to_txn(
    broker: &Broker,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut m = match lock_txn(broker, req.transactional_id.as_str(), false).await {
        Ok(m) => m,
        Err(e) => return AddOffsetsToTxnResponse::default().with_error_code(e.code()),
    };
    let t = state::add_offsets(
        m.as_deref(),
        req.producer_id.0,
        req.producer_epoch,
        req.group_id.as_str(),
        now_ms(),
    );
    let code = match run(broker, m.as_deref_mut(), t).await {
        Ok(()) => 0,
        Err(e) => for_version(e, ctx.version >= 2).code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// TxnOffsetCommit: offsets that become the group's when the transaction commits.
pub async fn txn_offset_commit(
    broker: &Broker,
    ctx: &RequestContext,
    mut req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    // v6 names topics by id; an unknown id is UNKNOWN_TOPIC_ID, and an unknown topic or
    // partition keeps its error whatever the rest of the request gets, as in Kafka.
    let by_id = ctx.version >= 6;
    let meta = broker.metadata();
    if by_id {
        super::names_from_ids(&meta, req.topics.iter_mut().map(|t| (&mut t.name, t.topic_id)));
    }
    let topic_error = |name: &str, p: i32| super::commit_target_error(&meta, by_id, name, p);
    let respond = |code_of: &dyn Fn(&str, i32) -> i16| {
        TxnOffsetCommitResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let code = topic_error(t.name.as_str(), p.partition_index)
                                        .unwrap_or_else(|| code_of(t.name.as_str(), p.partition_index));
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    if let Err(e) = super::coordinator::check_group(broker, req.group_id.as_str()) {
        return respond(&|_, _| e.code());
    }
    let window = broker.groups.open_txn_offsets(req.producer_id.0);
    let checked = check_txn_offsets(broker, ctx.version, &req).await;
    if let Err(e) = checked {
        let e = for_version(e, ctx.version >= 2);
        return respond(&|_, _| e.code());
    }
    let group_id = req.group_id.to_string();
    let Some(mut group) = broker.groups.lock(&group_id, true).await else {
        return respond(&|_, _| ResponseError::CoordinatorNotAvailable.code());
    };
    // The transaction ended while it was checked: storing now would leave its offsets pending
    // for the producer's next transaction. The client retries, and the check then answers.
    if window.marker_arrived() {
        return respond(&|_, _| ResponseError::ConcurrentTransactions.code());
    }
    // Kafka checks membership only when the producer says which member it is (v3+).
    let member_id = req.member_id.to_string();
    let membership = match &group.kind {
        GroupKind::Classic(c) if req.generation_id_or_member_epoch >= 0 || !member_id.is_empty() => {
            if !c.has_member(&member_id) {
                Err(ResponseError::UnknownMemberId)
            } else if req.generation_id_or_member_epoch != c.generation() {
                Err(ResponseError::IllegalGeneration)
            } else {
                Ok(())
            }
        }
        GroupKind::Classic(_) => Ok(()),
        GroupKind::Consumer(c) if req.generation_id_or_member_epoch >= 0 || !member_id.is_empty() => {
            let partitions = req.topics.iter().flat_map(|t| {
                let topic_id = meta.topics.get(t.name.as_str()).map(|tm| tm.topic_id);
                t.partitions
                    .iter()
                    .filter_map(move |p| Some((topic_id?, p.partition_index)))
            });
            // The member and a newer epoch first: those refusals keep their code at every
            // version. An older epoch is then checked per partition, and there TxnOffsetCommit
            // before v6, which has no STALE_MEMBER_EPOCH, gets ILLEGAL_GENERATION (Kafka's
            // `supportsStaleMemberEpochError`).
            let epoch = req.generation_id_or_member_epoch;
            c.validate_offset_commit(&member_id, epoch, []).and_then(|()| {
                match c.validate_offset_commit(&member_id, epoch, partitions) {
                    Err(ResponseError::StaleMemberEpoch) if ctx.version < 6 => Err(ResponseError::IllegalGeneration),
                    other => other,
                }
            })
        }
        GroupKind::Consumer(_) => Ok(()),
        GroupKind::Streams(st) => {
            let epoch = req.generation_id_or_member_epoch;
            let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
            let partitions = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p.partition_index)));
            st.validate_offset_commit(&member_id, instance, epoch, true, [])
                .and_then(
                    |()| match st.validate_offset_commit(&member_id, instance, epoch, true, partitions) {
                        Err(ResponseError::StaleMemberEpoch) if ctx.version < 6 => {
                            Err(ResponseError::IllegalGeneration)
                        }
                        other => other,
                    },
                )
        }
    };
    if let Err(e) = membership {
        return respond(&|_, _| e.code());
    }
    let now = now_ms();
    let mut offsets = Vec::new();
    for t in &req.topics {
        let Some(tm) = meta.topics.get(t.name.as_str()) else {
            continue;
        };
        for p in &t.partitions {
            if p.partition_index >= 0 && (p.partition_index as usize) < tm.partitions.len() {
                offsets.push((
                    (t.name.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                        commit_timestamp: now,
                        expire_timestamp: None,
                    },
                ));
            }
        }
    }
    if let Err(e) = broker
        .groups
        .store_pending(&mut group, req.producer_id.0, offsets)
        .await
    {
        tracing::error!(group = %group_id, error = %e, "could not store transactional offsets");
        return respond(&|_, _| ResponseError::CoordinatorNotAvailable.code());
    }
    drop(group);
    drop(window);
    respond(&|_, _| 0)
}

/// TxnOffsetCommit's check that the producer's transaction is open and has the group: asked
/// of the transaction's coordinator, here or (in a cluster) on another broker, which answers
/// whether the group's `__consumer_offsets` partition is in the transaction (KIP-890).
///
/// From v5 the group joins the transaction if it has not yet (Kafka's
/// `txnOffsetCommitRequestVersionToTransactionSupportedOperation`): a producer of transaction
/// version 2 sends no AddOffsetsToTxn, so without this its offsets would never be completed by
/// the transaction's markers.
async fn check_txn_offsets(broker: &Broker, version: i16, req: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let tid = req.transactional_id.as_str();
    if req.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let add = version >= 5;
    match super::coordinator::txn_coordinator(broker, tid) {
        Ok(node) if node == broker.node_id() && add => {
            let mut m = lock_txn(broker, tid, false).await?;
            let t = state::add_offsets(
                m.as_deref(),
                req.producer_id.0,
                req.producer_epoch,
                req.group_id.as_str(),
                now_ms(),
            );
            run(broker, m.as_deref_mut(), t).await
        }
        Ok(node) if node == broker.node_id() => {
            let m = lock_txn(broker, tid, false).await?;
            state::check_offsets(
                m.as_deref(),
                req.producer_id.0,
                req.producer_epoch,
                req.group_id.as_str(),
            )
        }
        Ok(node) => {
            let partition = broker.groups.partition_for(req.group_id.as_str());
            let target = (OFFSETS_TOPIC, partition);
            verify_remote(broker, node, tid, req.producer_id.0, req.producer_epoch, target, !add)
                .await
                .map_err(|e| e.unwrap_or(ResponseError::CoordinatorNotAvailable))
        }
        Err((e, _)) => Err(e),
    }
}

/// Asks transaction coordinator `node` whether `target` is in the open transaction of
/// `producer_id` (`verify_only`), or to add it (AddPartitionsToTxn v4, as Kafka's partition
/// leaders do). `Err(None)`: the coordinator could not be asked or could not answer for now.
async fn verify_remote(
    broker: &Broker,
    node: i32,
    tid: &str,
    producer_id: i64,
    epoch: i16,
    target: (&str, i32),
    verify_only: bool,
) -> Result<(), Option<ResponseError>> {
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(str_bytes(tid)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_verify_only(verify_only)
        .with_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(target.0))
            .with_partitions(vec![target.1])])]);
    let resp: AddPartitionsToTxnResponse = broker
        .peers
        .call(
            broker,
            node,
            Channel::Verify,
            ApiKey::AddPartitionsToTxn,
            ADD_PARTITIONS_BROKER_VERSION,
            &req,
        )
        .await
        .map_err(|e| {
            tracing::debug!(coordinator = node, error = %e, "could not ask the transaction coordinator");
            None
        })?;
    if resp.error_code != 0 {
        return Err(None);
    }
    let code = resp
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .flat_map(|t| &t.results_by_partition)
        .map(|p| p.partition_error_code)
        .next()
        .ok_or(None)?;
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(
            ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress,
        ) => Err(None),
        Some(e) => Err(Some(e)),
    }
}

/// EndTxn: commit or abort the open transaction.
pub async fn end_txn(broker: &Broker, ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let mut m = match lock_txn(broker, req.transactional_id.as_str(), false).await {
        Ok(m) => m,
        Err(e) => {
            return EndTxnResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    };
    let error = |e: ResponseError| {
        EndTxnResponse::default()
            .with_error_code(for_version(e, ctx.version >= 2).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let mut input = state::EndInput {
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
        commit: req.committed,
        v5: ctx.version >= 5,
        fresh_id: None,
    };
    if state::end_txn_needs_producer_id(m.as_deref(), &input) {
        match new_producer_id(broker).await {
            Ok(id) => input.fresh_id = Some(id),
            Err(e) => return error(e),
        }
    }
    let t = state::end_txn(m.as_deref(), &input, now_ms());
    match run(broker, m.as_deref_mut(), t).await {
        Ok((id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => error(e),
    }
}

/// Produce of a transactional batch: the partition must be in the producer's open
/// transaction (see `state::verify_write`).
pub async fn verify_transactional_write(
    broker: &Broker,
    produce_version: i16,
    transactional_id: Option<&str>,
    producer_id: i64,
    epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), ResponseError> {
    let Some(tid) = transactional_id.filter(|t| !t.is_empty()) else {
        return Err(ResponseError::TransactionalIdAuthorizationFailed);
    };
    // Kafka answers a coordinator it cannot ask yet with NOT_ENOUGH_REPLICAS, which every
    // producer retries.
    let node = super::coordinator::txn_coordinator(broker, tid).map_err(|_| ResponseError::NotEnoughReplicas)?;
    if node != broker.node_id() {
        let leader_epoch = broker
            .metadata()
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
            .map(|p| p.leader_epoch)
            .unwrap_or(-1);
        let verified = (producer_id, epoch, leader_epoch);
        if broker.txns.verified.contains(topic, partition, verified) {
            return Ok(());
        }
        // Produce v12+ (transaction version 2) adds the partition to the transaction, older
        // versions only verify it is there.
        let verify_only = produce_version < 12;
        return match verify_remote(broker, node, tid, producer_id, epoch, (topic, partition), verify_only).await {
            Ok(()) => {
                broker.txns.verified.insert(topic, partition, verified);
                Ok(())
            }
            Err(None) => Err(ResponseError::NotEnoughReplicas),
            Err(Some(ResponseError::InvalidTxnState)) if produce_version == 11 => {
                Err(ResponseError::TransactionAbortable)
            }
            Err(Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerIdMapping)) => {
                Err(ResponseError::InvalidProducerEpoch)
            }
            // Kafka's leaders answer a transaction being ended with NOT_ENOUGH_REPLICAS,
            // which producers retry.
            Err(Some(ResponseError::ConcurrentTransactions)) => Err(ResponseError::NotEnoughReplicas),
            Err(Some(e)) => Err(e),
        };
    }
    let mut m = lock_txn(broker, tid, false)
        .await
        .map_err(|_| ResponseError::NotEnoughReplicas)?;
    let input = state::WriteInput {
        produce_version,
        producer_id,
        epoch,
        topic,
        partition,
    };
    let t = state::verify_write(m.as_deref(), &input, now_ms());
    match run(broker, m.as_deref_mut(), t).await {
        Err(ResponseError::ConcurrentTransactions) => Err(ResponseError::NotEnoughReplicas),
        other => other,
    }
}

/// DescribeTransactions.
pub async fn describe_transactions(broker: &Broker, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(req.transactional_ids.len());
    for tid in req.transactional_ids {
        let locked = match lock_txn(broker, tid.as_str(), false).await {
            Ok(m) => m,
            Err(e) => {
                out.push(
                    describe::TransactionState::default()
                        .with_transactional_id(tid)
                        .with_error_code(e.code()),
                );
                continue;
            }
        };
        let state = match locked {
            Some(m) if m.has_producer() => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (t, p) in &m.partitions {
                    match topics.iter_mut().find(|d| d.topic.as_str() == t) {
                        Some(d) => d.partitions.push(*p),
                        None => topics.push(TopicData::default().with_topic(topic_name(t)).with_partitions(vec![*p])),
                    }
                }
                describe::TransactionState::default()
                    .with_transactional_id(tid)
                    .with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.epoch)
                    .with_topics(topics)
            }
            _ => describe::TransactionState::default()
                .with_transactional_id(tid)
                .with_error_code(ResponseError::TransactionalIdNotFound.code())
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
        };
        out.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(out)
}

/// ListTransactions, with state, producer id, duration (v1) and pattern (v2) filters.
pub async fn list_transactions(broker: &Broker, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown_states: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !state::STATE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    let pattern = match req.transactional_id_pattern.as_ref().filter(|p| !p.is_empty()) {
        Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
            Ok(r) => Some(r),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
        None => None,
    };
    let now = now_ms();
    let mut out = Vec::new();
    for tid in broker.txns.ids() {
        let Some(m) = broker.txns.lock(&tid, false).await else {
            continue;
        };
        if !m.has_producer() {
            continue;
        }
        let state = m.state.name();
        if !req.state_filters.is_empty() && !req.state_filters.iter().any(|s| s.as_str() == state) {
            continue;
        }
        if !req.producer_id_filters.is_empty() && !req.producer_id_filters.iter().any(|p| p.0 == m.producer_id) {
            continue;
        }
        if req.duration_filter >= 0 && !m.open_for_at_least(req.duration_filter, now) {
            continue;
        }
        if pattern.as_ref().is_some_and(|r| !r.is_match(&tid)) {
            continue;
        }
        out.push(
            list::TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(tid)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(state)),
        );
    }
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown_states)
        .with_transaction_states(out)
}

/// Aborts transactions open past their timeout, finishes prepared ones whose markers were not
/// all written, and forgets transactional ids idle past `transactional.id.expiration.ms`.
pub async fn expire_transactions(broker: &Broker, partition: Option<i32>) {
    let now = now_ms();
    for tid in broker.txns.ids() {
        if partition.is_some_and(|p| broker.txns.partition_for(&tid) != p) {
            continue;
        }
        let Some(mut m) = broker.txns.lock(&tid, false).await else {
            continue;
        };
        let Some((action, effects)) = state::tick(&m, &broker.txns.cfg, now) else {
            continue;
        };
        match action {
            TimerAction::AbortTimedOut => {
                tracing::info!(transactional_id = %tid, timeout_ms = m.timeout_ms, "aborting a transaction open past its timeout")
            }
            TimerAction::Expire => tracing::info!(transactional_id = %tid, "transactional id expired"),
            TimerAction::CompletePrepared => {}
        }
        if let Err(e) = perform(broker, &mut m, effects).await {
            match action {
                TimerAction::AbortTimedOut => {
                    tracing::warn!(transactional_id = %tid, error = ?e, "could not abort a timed-out transaction")
                }
                TimerAction::CompletePrepared => {
                    tracing::warn!(transactional_id = %tid, error = ?e, "could not complete a prepared transaction")
                }
                TimerAction::Expire => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fenced_reads_as_invalid_producer_epoch_to_older_clients() {
        assert_eq!(
            for_version(ResponseError::ProducerFenced, false),
            ResponseError::InvalidProducerEpoch
        );
        assert_eq!(
            for_version(ResponseError::ProducerFenced, true),
            ResponseError::ProducerFenced
        );
        for other in [ResponseError::InvalidTxnState, ResponseError::ConcurrentTransactions] {
            assert_eq!(for_version(other, false), other);
        }
    }
}
