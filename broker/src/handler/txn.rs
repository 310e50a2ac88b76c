//! Idempotent and transactional producers: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions, and the
//! produce-time check that a transactional batch belongs to an open transaction. State lives in
//! `crate::txn`; markers go through the partition log like any append.

use fjord_protocol::batch::control_batch;
use fjord_storage::producers::TxnMarker;
use fjord_storage::{AppendBatch, CommittedOffset};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self as describe, TopicData};
use kafka_protocol::messages::list_transactions_response as list;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{str_bytes, topic_name, RequestContext};
use crate::group::GroupKind;
use crate::txn::{now_ms, TxnMeta, TxnState};
use crate::{partition_id, Broker};

fn fenced(version_has_fenced: bool) -> ResponseError {
    // PRODUCER_FENCED (KIP-588) is newer than the APIs' first versions; older clients know
    // INVALID_PRODUCER_EPOCH.
    if version_has_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
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
    if tid.is_empty() {
        return init_error(ResponseError::InvalidRequest);
    }
    let txns = &broker.txns;
    if req.transaction_timeout_ms <= 0 || req.transaction_timeout_ms > txns.cfg.max_timeout_ms {
        return init_error(ResponseError::InvalidTransactionTimeout);
    }
    let Some(mut m) = txns.lock(&tid, true).await else {
        return init_error(ResponseError::CoordinatorNotAvailable);
    };
    if m.producer_id < 0 {
        match new_producer_id(broker).await {
            Ok(id) => m.producer_id = id,
            Err(e) => return init_error(e),
        }
        m.epoch = -1;
    } else {
        let given = (req.producer_id.0, req.producer_epoch);
        if given.0 >= 0 {
            // KIP-360: the producer names the id and epoch it had. A retry of a bump whose
            // answer was lost gets the current ones; anything else but the current is fenced.
            if given == (m.last_producer_id, m.last_epoch) && m.state == TxnState::Empty {
                return InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.epoch);
            }
            if given != (m.producer_id, m.epoch) {
                return init_error(fenced(ctx.version >= 4));
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return init_error(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // A new instance takes over: the old one's transaction is aborted under a
                // bumped epoch, so its in-flight writes are fenced.
                if let Err(e) = bump(broker, &mut m).await {
                    return init_error(e);
                }
                if let Err(e) = end_transaction(broker, &mut m, false).await {
                    return init_error(e);
                }
            }
            _ => {}
        }
    }
    if let Err(e) = bump(broker, &mut m).await {
        return init_error(e);
    }
    m.timeout_ms = req.transaction_timeout_ms;
    m.state = TxnState::Empty;
    m.partitions.clear();
    m.groups.clear();
    m.start_ms = -1;
    m.update_ms = now_ms();
    if let Err(e) = txns.persist(&m).await {
        tracing::error!(transactional_id = %tid, error = %e, "could not persist transaction state");
        return init_error(ResponseError::CoordinatorNotAvailable);
    }
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.epoch)
}

async fn bump(broker: &Broker, m: &mut TxnMeta) -> Result<(), ResponseError> {
    let fresh = if m.epoch >= i16::MAX - 1 {
        Some(new_producer_id(broker).await?)
    } else {
        None
    };
    m.bump(|| fresh.unwrap_or(-1));
    Ok(())
}

/// Ends the open transaction of `m`: prepare record, a marker in every partition, the
/// group offsets, complete record. `m` stays locked throughout.
pub async fn end_transaction(broker: &Broker, m: &mut TxnMeta, commit: bool) -> Result<(), ResponseError> {
    let txns = &broker.txns;
    let unavailable = |e: fjord_storage::StorageError| {
        tracing::error!(transactional_id = %m.transactional_id, error = %e, "could not persist transaction state");
        ResponseError::CoordinatorNotAvailable
    };
    m.state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    m.update_ms = now_ms();
    txns.persist(m).await.map_err(unavailable)?;
    complete_prepared(broker, m).await
}

/// Writes the markers and group offsets of a prepared transaction, then records it complete.
pub async fn complete_prepared(broker: &Broker, m: &mut TxnMeta) -> Result<(), ResponseError> {
    let commit = match m.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return Ok(()),
    };
    let meta = broker.metadata();
    let now = now_ms();
    for (topic, p) in &m.partitions {
        let Some(t) = meta.topics.get(topic) else {
            continue; // deleted since: nothing to mark
        };
        let Some(pmeta) = usize::try_from(*p).ok().and_then(|i| t.partitions.get(i)) else {
            continue;
        };
        let batch = AppendBatch {
            bytes: control_batch(m.producer_id, m.epoch, commit, 0, now),
            record_count: 1,
            max_timestamp: now,
            max_timestamp_offset_delta: 0,
            producer: None,
            marker: Some(TxnMarker {
                producer_id: m.producer_id,
                epoch: m.epoch,
                commit,
                coordinator_epoch: 0,
            }),
        };
        match broker
            .store
            .append(partition_id(t, *p), batch, pmeta.leader_epoch)
            .await
        {
            Ok(_) => {}
            Err(fjord_storage::StorageError::UnknownPartition) => {}
            Err(e) => {
                tracing::error!(topic, partition = p, error = %e, "could not write a transaction marker");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    for g in &m.groups {
        if let Err(e) = broker.groups.complete_txn(g, m.producer_id, commit).await {
            tracing::error!(group = %g, error = %e, "could not complete transactional offsets");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    }
    m.state = if commit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    m.partitions.clear();
    m.groups.clear();
    m.update_ms = now_ms();
    broker.txns.persist(m).await.map_err(|e| {
        tracing::error!(error = %e, "could not persist transaction state");
        ResponseError::CoordinatorNotAvailable
    })
}

/// The checks every transactional request makes of the producer's id and epoch.
fn check_producer(m: &TxnMeta, producer_id: i64, epoch: i16, fenced_known: bool) -> Result<(), ResponseError> {
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.epoch != epoch {
        return Err(fenced(fenced_known));
    }
    if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
        return Err(ResponseError::ConcurrentTransactions);
    }
    Ok(())
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
    let all = |code: i16| -> TopicCodes {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| (*p, code)).collect()))
            .collect()
    };
    let Some(mut m) = broker.txns.lock(tid, false).await else {
        return all(ResponseError::InvalidProducerIdMapping.code());
    };
    if let Err(e) = check_producer(&m, producer_id, epoch, version >= 2) {
        return all(e.code());
    }
    if verify_only {
        // KIP-890: is each partition part of the open transaction?
        return topics
            .iter()
            .map(|t| {
                let codes = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let ok = m.state == TxnState::Ongoing && m.partitions.contains(&(t.name.to_string(), *p));
                        (*p, if ok { 0 } else { ResponseError::InvalidTxnState.code() })
                    })
                    .collect();
                (t.name.to_string(), codes)
            })
            .collect();
    }
    let meta = broker.metadata();
    let unknown = |t: &AddPartitionsToTxnTopic, p: i32| {
        meta.topics
            .get(t.name.as_str())
            .is_none_or(|tm| p < 0 || p as usize >= tm.partitions.len())
    };
    if topics.iter().any(|t| t.partitions.iter().any(|p| unknown(t, *p))) {
        return topics
            .iter()
            .map(|t| {
                let codes = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let e = if unknown(t, *p) {
                            ResponseError::UnknownTopicOrPartition
                        } else {
                            ResponseError::OperationNotAttempted
                        };
                        (*p, e.code())
                    })
                    .collect();
                (t.name.to_string(), codes)
            })
            .collect();
    }
    if m.state != TxnState::Ongoing {
        m.state = TxnState::Ongoing;
        m.start_ms = now_ms();
    }
    for t in topics {
        for p in &t.partitions {
            m.partitions.insert((t.name.to_string(), *p));
        }
    }
    m.update_ms = now_ms();
    if let Err(e) = broker.txns.persist(&m).await {
        tracing::error!(error = %e, "could not persist transaction state");
        return all(ResponseError::CoordinatorNotAvailable.code());
    }
    all(0)
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
    let code = async {
        let mut m = broker
            .txns
            .lock(req.transactional_id.as_str(), false)
            .await
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        check_producer(&m, req.producer_id.0, req.producer_epoch, ctx.version >= 2)?;
        if req.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if m.state != TxnState::Ongoing {
            m.state = TxnState::Ongoing;
            m.start_ms = now_ms();
        }
        m.groups.insert(req.group_id.to_string());
        m.update_ms = now_ms();
        broker.txns.persist(&m).await.map_err(|e| {
            tracing::error!(error = %e, "could not persist transaction state");
            ResponseError::CoordinatorNotAvailable
        })
    }
    .await
    .err()
    .map(|e| e.code())
    .unwrap_or(0);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// TxnOffsetCommit: offsets that become the group's when the transaction commits.
pub async fn txn_offset_commit(
    broker: &Broker,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let respond = |code_of: &dyn Fn(&str, i32) -> i16| {
        TxnOffsetCommitResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code_of(t.name.as_str(), p.partition_index))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    let checked = async {
        let m = broker
            .txns
            .lock(req.transactional_id.as_str(), false)
            .await
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        check_producer(&m, req.producer_id.0, req.producer_epoch, ctx.version >= 2)?;
        if req.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        Ok(())
    }
    .await;
    if let Err(e) = checked {
        return respond(&|_, _| e.code());
    }
    let group_id = req.group_id.to_string();
    let Some(mut group) = broker.groups.lock(&group_id, true).await else {
        return respond(&|_, _| ResponseError::CoordinatorNotAvailable.code());
    };
    // Kafka checks membership only when the producer says which member it is (v3+).
    let member_id = req.member_id.to_string();
    let membership = match &group.kind {
        GroupKind::Classic(c) if req.generation_id >= 0 || !member_id.is_empty() => {
            if !c.has_member(&member_id) {
                Err(ResponseError::UnknownMemberId)
            } else if req.generation_id != c.generation() {
                Err(ResponseError::IllegalGeneration)
            } else {
                Ok(())
            }
        }
        GroupKind::Classic(_) => Ok(()),
        GroupKind::Consumer(c) if req.generation_id >= 0 || !member_id.is_empty() => {
            c.validate_offset_commit(&member_id, req.generation_id)
        }
        GroupKind::Consumer(_) => Ok(()),
    };
    if let Err(e) = membership {
        return respond(&|_, _| e.code());
    }
    let meta = broker.metadata();
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
    respond(&|t, p| {
        let known = meta
            .topics
            .get(t)
            .is_some_and(|tm| p >= 0 && (p as usize) < tm.partitions.len());
        if known {
            0
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    })
}

/// EndTxn: commit or abort the open transaction.
pub async fn end_txn(broker: &Broker, ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let result = async {
        let mut m = broker
            .txns
            .lock(req.transactional_id.as_str(), false)
            .await
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        // EndTxn v5 (KIP-890): the producer of a transaction the coordinator aborted on
        // timeout (bumping the epoch) learns it with INVALID_TXN_STATE on commit, and its
        // abort is acknowledged as done.
        if ctx.version >= 5
            && req.producer_id.0 == m.producer_id
            && i32::from(req.producer_epoch) + 1 == i32::from(m.epoch)
            && m.state == TxnState::CompleteAbort
        {
            return if req.committed {
                Err(ResponseError::InvalidTxnState)
            } else {
                Ok((m.producer_id, m.epoch))
            };
        }
        check_producer(&m, req.producer_id.0, req.producer_epoch, ctx.version >= 2)?;
        match (m.state, req.committed) {
            (TxnState::Ongoing, commit) => end_transaction(broker, &mut m, commit).await?,
            // A retry of an EndTxn whose answer was lost.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {}
            _ => return Err(ResponseError::InvalidTxnState),
        }
        Ok((m.producer_id, m.epoch))
    }
    .await;
    match result {
        Ok((id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => EndTxnResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// Produce of a transactional batch: the partition must be in the producer's open
/// transaction (KIP-890's verification, done locally since this broker is the coordinator).
/// What a partition missing from the transaction gets depends on the Produce version, as in
/// Kafka: v12+ adds it to the transaction (the client relies on that), v11 gets
/// TRANSACTION_ABORTABLE, older versions INVALID_TXN_STATE.
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
    let mut m = broker
        .txns
        .lock(tid, false)
        .await
        .ok_or(ResponseError::InvalidTxnState)?;
    if m.producer_id != producer_id || epoch < m.epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    let key = (topic.to_string(), partition);
    if m.state == TxnState::Ongoing && m.partitions.contains(&key) {
        return Ok(());
    }
    if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
        return Err(ResponseError::ConcurrentTransactions);
    }
    match produce_version {
        12.. => {
            if m.state != TxnState::Ongoing {
                m.state = TxnState::Ongoing;
                m.start_ms = now_ms();
            }
            m.partitions.insert(key);
            m.update_ms = now_ms();
            broker.txns.persist(&m).await.map_err(|e| {
                tracing::error!(error = %e, "could not persist transaction state");
                ResponseError::CoordinatorNotAvailable
            })
        }
        11 => Err(ResponseError::TransactionAbortable),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// DescribeTransactions.
pub async fn describe_transactions(broker: &Broker, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(req.transactional_ids.len());
    for tid in req.transactional_ids {
        let state = match broker.txns.lock(tid.as_str(), false).await {
            Some(m) if m.producer_id >= 0 => {
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
    const STATES: [&str; 8] = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    let unknown_states: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
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
        if m.producer_id < 0 {
            continue;
        }
        let state = m.state.name();
        if !req.state_filters.is_empty() && !req.state_filters.iter().any(|s| s.as_str() == state) {
            continue;
        }
        if !req.producer_id_filters.is_empty() && !req.producer_id_filters.iter().any(|p| p.0 == m.producer_id) {
            continue;
        }
        if req.duration_filter >= 0 && !(m.state == TxnState::Ongoing && now - m.start_ms >= req.duration_filter) {
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

/// Aborts transactions open past their timeout (fencing their producer with a bumped
/// epoch, as Kafka does) and finishes prepared ones whose markers were not all written.
pub async fn expire_transactions(broker: &Broker) {
    let now = now_ms();
    for tid in broker.txns.ids() {
        let Some(mut m) = broker.txns.lock(&tid, false).await else {
            continue;
        };
        match m.state {
            TxnState::Ongoing if now - m.start_ms > i64::from(m.timeout_ms) => {
                tracing::info!(transactional_id = %tid, timeout_ms = m.timeout_ms, "aborting a transaction open past its timeout");
                if bump(broker, &mut m).await.is_err() {
                    continue;
                }
                if let Err(e) = end_transaction(broker, &mut m, false).await {
                    tracing::warn!(transactional_id = %tid, error = ?e, "could not abort a timed-out transaction");
                }
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                if let Err(e) = complete_prepared(broker, &mut m).await {
                    tracing::warn!(transactional_id = %tid, error = ?e, "could not complete a prepared transaction");
                }
            }
            // transactional.id.expiration.ms: an idle id without an open transaction goes.
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                if now - m.update_ms > broker.txns.cfg.id_expiration_ms =>
            {
                tracing::info!(transactional_id = %tid, "transactional id expired");
                if let Err(e) = broker.txns.remove(&mut m).await {
                    tracing::warn!(transactional_id = %tid, error = %e, "could not expire a transactional id");
                }
            }
            _ => {}
        }
    }
}
