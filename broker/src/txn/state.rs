//! One transactional id's state machine, as Kafka's `TransactionCoordinator` and
//! `TransactionMetadata` run it.
//!
//! States: `Empty` (after InitProducerId) -> `Ongoing` (partitions or groups added) ->
//! `PrepareCommit` / `PrepareAbort` (EndTxn, a timeout, or a new instance of the producer) ->
//! `CompleteCommit` / `CompleteAbort` (markers written) -> `Ongoing` again with the next
//! transaction, or `Empty` with the next InitProducerId.
//!
//! Nothing here does IO, reads the clock or allocates producer ids: the time comes in as
//! `now_ms`, a new producer id is asked for ([`Init::NeedProducerId`]), and every change comes
//! back as [`Effect`]s the coordinator performs in order (state records to make durable, markers
//! to write, a tombstone). A transactional id takes the state of a record only once the record is
//! durable, so neither a client nor the timers act on a decision a crash could forget. Whether
//! the records land in a local store or a replicated log is the caller's business.
//!
//! Kafka's `PrepareEpochFence` is not a state of its own: fencing the producer of an open
//! transaction records `PrepareAbort` under the bumped epoch directly, which is also the record
//! Kafka writes. Kafka's `Dead` is [`Effect::Remove`].

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

use super::TxnConfig;
use crate::group::coordinator_partition;

/// A producer id and its epoch.
pub type IdAndEpoch = (i64, i16);

/// No epoch: before the first InitProducerId, or no earlier epoch to recognise a retry by.
pub const NO_EPOCH: i16 = -1;

/// Every state name Kafka has, including the two this state machine never shows
/// (ListTransactions must not call them unknown filters).
pub const STATE_NAMES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// Kafka's transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction yet for this epoch.
    Empty,
    /// Partitions or groups have been added.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// One transactional id's state; also its stored record (JSON), so fields stay as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// The transactional id.
    pub transactional_id: String,
    /// Current producer id (-1 until the first InitProducerId has one).
    pub producer_id: i64,
    /// Current epoch (-1 before the first InitProducerId completes).
    pub epoch: i16,
    /// The producer id and epoch before the last bump asked for by a producer that named its
    /// own (KIP-360), so that producer is recognised when it retries a bump whose answer it lost.
    pub last_producer_id: i64,
    /// See `last_producer_id`; -1 when no retry is to be recognised.
    pub last_epoch: i16,
    /// The client's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the open transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups the open transaction commits offsets to.
    pub groups: BTreeSet<String>,
    /// When the open transaction started (ms).
    pub start_ms: i64,
    /// Last change (ms).
    pub update_ms: i64,
    /// Deleted from the coordinator's map (a request holding the lock must look again).
    #[serde(skip)]
    pub(crate) gone: bool,
    /// In a cluster, the leader epoch of its `__transaction_state` partition when it was
    /// loaded or made here: its records are refused once the partition has another, and its
    /// markers carry it as the coordinator epoch. -1 on a single node.
    #[serde(skip, default = "no_epoch")]
    pub(crate) load_epoch: i32,
}

fn no_epoch() -> i32 {
    -1
}

impl TxnMeta {
    /// A transactional id with no producer yet: what InitProducerId starts from.
    pub fn new(transactional_id: &str) -> Self {
        TxnMeta {
            transactional_id: transactional_id.to_string(),
            producer_id: -1,
            epoch: NO_EPOCH,
            last_producer_id: -1,
            last_epoch: NO_EPOCH,
            timeout_ms: 0,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_ms: -1,
            update_ms: -1,
            gone: false,
            load_epoch: -1,
        }
    }

    /// Whether a producer id was ever given out for it (the admin APIs show nothing before).
    pub fn has_producer(&self) -> bool {
        self.producer_id >= 0
    }

    /// ListTransactions' duration filter: a transaction open for at least `duration_ms`.
    pub fn open_for_at_least(&self, duration_ms: i64, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms - self.start_ms >= duration_ms
    }

    fn id_and_epoch(&self) -> IdAndEpoch {
        (self.producer_id, self.epoch)
    }
}

/// The markers that close one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Epoch the markers carry (the fencing epoch when the coordinator aborts).
    pub epoch: i16,
    /// Commit or abort.
    pub commit: bool,
    /// A marker goes to each of these partitions.
    pub partitions: BTreeSet<(String, i32)>,
    /// The transaction's offset commits in each of these groups are completed.
    pub groups: BTreeSet<String>,
}

/// Something the coordinator must do for a transition to take effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Make this record durable; once it is, it is the transactional id's state.
    Persist(TxnMeta),
    /// Write the markers and complete the groups' offset commits; idempotent, so a coordinator
    /// that finds the transaction still prepared (after a failure or restart) does it again.
    WriteMarkers(Markers),
    /// Forget the transactional id (a tombstone).
    Remove,
}

/// What a request does: effects to perform in order, then the answer. When an effect fails
/// the rest are skipped and the answer is COORDINATOR_NOT_AVAILABLE; an error answer comes
/// with no effects.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition<R> {
    /// To perform, in order.
    pub effects: Vec<Effect>,
    /// The answer once they are done.
    pub reply: R,
}

impl<R> Transition<R> {
    fn answer(reply: R) -> Self {
        Transition {
            effects: Vec::new(),
            reply,
        }
    }
}

fn fail<T>(error: ResponseError) -> Transition<Result<T, ResponseError>> {
    Transition::answer(Err(error))
}

/// Epochs from here on are not given to a new producer instance: the next InitProducerId
/// takes a new producer id. One epoch stays above for the coordinator to fence with.
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The checks InitProducerId makes of a transactional id before looking it up.
pub fn validate_init(transactional_id: &str, timeout_ms: i32, cfg: &TxnConfig) -> Result<(), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    if timeout_ms <= 0 || timeout_ms > cfg.max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    Ok(())
}

/// InitProducerId with a transactional id, decoded.
#[derive(Debug, Clone, Copy)]
pub struct InitInput {
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// The producer id the client has (KIP-360), -1 for a new instance.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// Ask again with a newly allocated producer id.
    NeedProducerId,
    /// Perform and answer.
    Done(Transition<Result<IdAndEpoch, ResponseError>>),
}

/// InitProducerId: the producer id and a bumped epoch (fencing older instances), after
/// aborting what an older instance left open. `fresh_id` is a newly allocated producer id,
/// given after [`Init::NeedProducerId`].
pub fn init_producer_id(m: &TxnMeta, input: &InitInput, fresh_id: Option<i64>, now_ms: i64) -> Init {
    let named = (input.producer_id >= 0).then_some((input.producer_id, input.epoch));
    let mut next = m.clone();
    let mut effects = Vec::new();
    if !m.has_producer() {
        let Some(id) = fresh_id else {
            return Init::NeedProducerId;
        };
        next.producer_id = id;
        next.epoch = NO_EPOCH;
    } else {
        if let Some(given) = named {
            // KIP-360: a retry of a bump whose answer was lost gets the current id and epoch;
            // anything else but the current is fenced.
            if given == (m.last_producer_id, m.last_epoch) && m.state == TxnState::Empty {
                return Init::Done(Transition::answer(Ok(m.id_and_epoch())));
            }
            if given != m.id_and_epoch() {
                return Init::Done(fail(ResponseError::ProducerFenced));
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Init::Done(fail(ResponseError::ConcurrentTransactions))
            }
            // A new instance takes over: the old one's transaction is aborted under a bumped
            // epoch, so its in-flight writes are fenced.
            TxnState::Ongoing => {
                fence(&mut next);
                end(&mut next, false, now_ms, &mut effects);
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        }
    }
    let before = next.id_and_epoch();
    if epoch_exhausted(next.epoch) {
        let Some(id) = fresh_id else {
            return Init::NeedProducerId;
        };
        next.producer_id = id;
        next.epoch = 0;
    } else {
        next.epoch += 1;
    }
    next.last_producer_id = before.0;
    // Only a producer that named its epoch can be retrying; after a new instance's bump the
    // previous epoch belongs to a zombie, which must stay fenced (Kafka's lastProducerEpoch).
    next.last_epoch = if named.is_some() { before.1 } else { NO_EPOCH };
    next.timeout_ms = input.timeout_ms;
    next.state = TxnState::Empty;
    next.partitions.clear();
    next.groups.clear();
    next.start_ms = -1;
    next.update_ms = now_ms;
    let reply = Ok(next.id_and_epoch());
    effects.push(Effect::Persist(next));
    Init::Done(Transition { effects, reply })
}

/// Bumps the epoch of an open transaction's producer so its writes are refused from now on.
/// The producer id stays even when the epoch is exhausted: the abort markers must carry the id
/// of the transaction they close (the next InitProducerId moves to a new id).
fn fence(next: &mut TxnMeta) {
    next.last_producer_id = next.producer_id;
    next.last_epoch = NO_EPOCH;
    next.epoch = next.epoch.saturating_add(1);
}

/// Decides the open transaction of `next`, then closes it: prepare record, markers,
/// complete record.
fn end(next: &mut TxnMeta, commit: bool, now_ms: i64, effects: &mut Vec<Effect>) {
    next.state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    next.update_ms = now_ms;
    effects.push(Effect::Persist(next.clone()));
    complete(next, now_ms, effects);
}

/// Markers and group offsets of a prepared transaction, then its complete record.
fn complete(next: &mut TxnMeta, now_ms: i64, effects: &mut Vec<Effect>) {
    let commit = match next.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return,
    };
    effects.push(Effect::WriteMarkers(Markers {
        producer_id: next.producer_id,
        epoch: next.epoch,
        commit,
        partitions: std::mem::take(&mut next.partitions),
        groups: std::mem::take(&mut next.groups),
    }));
    next.state = if commit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    next.update_ms = now_ms;
    effects.push(Effect::Persist(next.clone()));
}

/// The checks every transactional request of a client makes of its producer id and epoch.
fn check_producer(m: Option<&TxnMeta>, producer_id: i64, epoch: i16) -> Result<&TxnMeta, ResponseError> {
    let m = m.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.epoch != epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if m.state.is_prepared() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    Ok(m)
}

/// Something is added to the transaction: it is open from now on if it was not already.
fn join_transaction(next: &mut TxnMeta, now_ms: i64) {
    if next.state != TxnState::Ongoing {
        next.state = TxnState::Ongoing;
        next.start_ms = now_ms;
    }
    next.update_ms = now_ms;
}

/// AddPartitionsToTxn for one transaction, decoded.
#[derive(Debug, Clone, Copy)]
pub struct AddPartitionsInput<'a> {
    /// Producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// v4+ (KIP-890): only say whether each partition is in the open transaction.
    pub verify_only: bool,
    /// Topics with their partitions, as requested.
    pub topics: &'a [(String, Vec<i32>)],
    /// `offsets.topic.num.partitions`: a group's offsets partition is in the transaction once
    /// AddOffsetsToTxn added the group, as Kafka adds that partition.
    pub offsets_partitions: i32,
}

/// Per topic, per partition, as requested.
pub type PartitionResults = Vec<(String, Vec<(i32, Result<(), ResponseError>)>)>;

/// AddPartitionsToTxn: partitions join the transaction, all or none. `exists` says whether a
/// partition exists now.
pub fn add_partitions(
    m: Option<&TxnMeta>,
    input: &AddPartitionsInput<'_>,
    exists: impl Fn(&str, i32) -> bool,
    now_ms: i64,
) -> Transition<PartitionResults> {
    let each = |result: &dyn Fn(&str, i32) -> Result<(), ResponseError>| -> PartitionResults {
        input
            .topics
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (*p, result(t, *p))).collect()))
            .collect()
    };
    let m = match check_producer(m, input.producer_id, input.epoch) {
        Ok(m) => m,
        Err(e) => return Transition::answer(each(&|_, _| Err(e))),
    };
    if input.verify_only {
        let in_txn = |t: &str, p: i32| {
            let offsets_partition = || {
                t == crate::state_log::OFFSETS_TOPIC
                    && m.groups
                        .iter()
                        .any(|g| coordinator_partition(g, input.offsets_partitions) == p)
            };
            m.state == TxnState::Ongoing && (m.partitions.contains(&(t.to_string(), p)) || offsets_partition())
        };
        return Transition::answer(each(&|t, p| {
            if in_txn(t, p) {
                Ok(())
            } else {
                Err(ResponseError::InvalidTxnState)
            }
        }));
    }
    let all_exist = input.topics.iter().all(|(t, ps)| ps.iter().all(|p| exists(t, *p)));
    if !all_exist {
        return Transition::answer(each(&|t, p| {
            Err(if exists(t, p) {
                ResponseError::OperationNotAttempted
            } else {
                ResponseError::UnknownTopicOrPartition
            })
        }));
    }
    let mut next = m.clone();
    join_transaction(&mut next, now_ms);
    for (t, ps) in input.topics {
        for p in ps {
            next.partitions.insert((t.clone(), *p));
        }
    }
    Transition {
        effects: vec![Effect::Persist(next)],
        reply: each(&|_, _| Ok(())),
    }
}

/// AddOffsetsToTxn: the transaction will commit offsets to `group_id`.
pub fn add_offsets(
    m: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    group_id: &str,
    now_ms: i64,
) -> Transition<Result<(), ResponseError>> {
    let m = match check_producer(m, producer_id, epoch) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    if group_id.is_empty() {
        return fail(ResponseError::InvalidGroupId);
    }
    // Already in the open transaction (a retry, or TxnOffsetCommit v5+ after the first): no
    // record to write.
    if m.state == TxnState::Ongoing && m.groups.contains(group_id) {
        return Transition::answer(Ok(()));
    }
    let mut next = m.clone();
    join_transaction(&mut next, now_ms);
    next.groups.insert(group_id.to_string());
    Transition {
        effects: vec![Effect::Persist(next)],
        reply: Ok(()),
    }
}

/// What TxnOffsetCommit asks of the transaction before the group takes the offsets.
pub fn check_offsets(m: Option<&TxnMeta>, producer_id: i64, epoch: i16, group_id: &str) -> Result<(), ResponseError> {
    check_producer(m, producer_id, epoch)?;
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    Ok(())
}

/// EndTxn, decoded.
#[derive(Debug, Clone, Copy)]
pub struct EndInput {
    /// Producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// Commit, or abort.
    pub commit: bool,
    /// EndTxn v5+ (KIP-890, transaction version 2).
    pub v5: bool,
    /// A newly allocated producer id, for a v5 request whose epoch bump would exhaust the
    /// epochs (see [`end_txn_needs_producer_id`]).
    pub fresh_id: Option<i64>,
}

/// Whether EndTxn v5 must be given a fresh producer id: its epoch bump reaches the last epoch,
/// after which the producer continues under a new id at epoch 0, as in Kafka.
pub fn end_txn_needs_producer_id(m: Option<&TxnMeta>, input: &EndInput) -> bool {
    m.is_some_and(|m| {
        input.v5 && input.producer_id == m.producer_id && input.epoch == m.epoch && epoch_exhausted(m.epoch)
    })
}

/// EndTxn: commit or abort the open transaction; the answer carries the producer id and epoch.
pub fn end_txn(m: Option<&TxnMeta>, input: &EndInput, now_ms: i64) -> Transition<Result<IdAndEpoch, ResponseError>> {
    let Some(current) = m else {
        return fail(ResponseError::InvalidProducerIdMapping);
    };
    if input.v5 {
        return end_txn_v2(current, input, now_ms);
    }
    let m = match check_producer(m, input.producer_id, input.epoch) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    match (m.state, input.commit) {
        (TxnState::Ongoing, commit) => {
            let mut next = m.clone();
            let mut effects = Vec::new();
            end(&mut next, commit, now_ms, &mut effects);
            Transition {
                effects,
                reply: Ok(next.id_and_epoch()),
            }
        }
        // A retry of an EndTxn whose answer was lost.
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Transition::answer(Ok(m.id_and_epoch())),
        _ => fail(ResponseError::InvalidTxnState),
    }
}

/// EndTxn v5+, transaction version 2 (KIP-890; Kafka's `TransactionCoordinator.endTransaction`):
/// every transaction ends under a bumped epoch, its markers carry that epoch (so a late write of
/// the old epoch is fenced), and the answer hands the producer the new epoch (or, once the
/// epochs run out, a new producer id at epoch 0). A retry whose answer was lost names the epoch
/// before the bump and gets the current one; an abort with nothing open still bumps.
fn end_txn_v2(m: &TxnMeta, input: &EndInput, now_ms: i64) -> Transition<Result<IdAndEpoch, ResponseError>> {
    let retry_on_bump = input.producer_id == m.producer_id && i32::from(input.epoch) + 1 == i32::from(m.epoch);
    let retry_on_overflow = input.producer_id != m.producer_id
        && input.producer_id == m.last_producer_id
        && input.epoch == i16::MAX - 1
        && m.epoch == 0;
    let retry = retry_on_bump || retry_on_overflow;
    if input.producer_id != m.producer_id && !retry_on_overflow {
        return fail(ResponseError::InvalidProducerIdMapping);
    }
    let valid_epoch = match m.state {
        TxnState::Ongoing | TxnState::Empty => input.epoch == m.epoch,
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => retry || input.epoch == m.epoch,
    };
    if !valid_epoch {
        return fail(ResponseError::ProducerFenced);
    }
    match (m.state, input.commit) {
        (TxnState::Ongoing, commit) => bump_and_end(m, commit, input.fresh_id, now_ms),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if retry => {
            Transition::answer(Ok(m.id_and_epoch()))
        }
        (TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty, false) if !retry => {
            bump_and_end(m, false, input.fresh_id, now_ms)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            fail(ResponseError::ConcurrentTransactions)
        }
        _ => fail(ResponseError::InvalidTxnState),
    }
}

/// Ends the transaction of `m` (open, or empty for an abort) under a bumped epoch.
fn bump_and_end(
    m: &TxnMeta,
    commit: bool,
    fresh_id: Option<i64>,
    now_ms: i64,
) -> Transition<Result<IdAndEpoch, ResponseError>> {
    let exhausted = epoch_exhausted(m.epoch);
    if exhausted && fresh_id.is_none() {
        return fail(ResponseError::CoordinatorNotAvailable);
    }
    let mut next = m.clone();
    let mut effects = Vec::new();
    next.last_producer_id = m.producer_id;
    next.last_epoch = m.epoch;
    next.epoch = m.epoch.saturating_add(1);
    if next.state != TxnState::Ongoing {
        next.start_ms = now_ms;
    }
    end(&mut next, commit, now_ms, &mut effects);
    if let Some(id) = fresh_id.filter(|_| exhausted) {
        // The markers went out under the old id and its last epoch; the producer goes on
        // under the new id.
        next.producer_id = id;
        next.epoch = 0;
        if let Some(Effect::Persist(last)) = effects.last_mut() {
            *last = next.clone();
        }
    }
    Transition {
        effects,
        reply: Ok(next.id_and_epoch()),
    }
}

/// A transactional batch in a Produce request, decoded.
#[derive(Debug, Clone, Copy)]
pub struct WriteInput<'a> {
    /// Produce version.
    pub produce_version: i16,
    /// The batch's producer id.
    pub producer_id: i64,
    /// The batch's epoch.
    pub epoch: i16,
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
}

/// Produce of a transactional batch: the partition must be in the producer's open transaction
/// (KIP-890's verification, done here since this broker is the coordinator). A partition
/// missing from it is treated by Produce version, as in Kafka: v12+ adds it to the transaction
/// (the client relies on that), v11 gets TRANSACTION_ABORTABLE, older versions
/// INVALID_TXN_STATE.
pub fn verify_write(m: Option<&TxnMeta>, input: &WriteInput<'_>, now_ms: i64) -> Transition<Result<(), ResponseError>> {
    let Some(m) = m else {
        return fail(ResponseError::InvalidTxnState);
    };
    if m.producer_id != input.producer_id || input.epoch < m.epoch {
        return fail(ResponseError::InvalidProducerEpoch);
    }
    let key = (input.topic.to_string(), input.partition);
    if m.state == TxnState::Ongoing && m.partitions.contains(&key) {
        return Transition::answer(Ok(()));
    }
    if m.state.is_prepared() {
        return fail(ResponseError::ConcurrentTransactions);
    }
    match input.produce_version {
        12.. => {
            let mut next = m.clone();
            join_transaction(&mut next, now_ms);
            next.partitions.insert(key);
            Transition {
                effects: vec![Effect::Persist(next)],
                reply: Ok(()),
            }
        }
        11 => fail(ResponseError::TransactionAbortable),
        _ => fail(ResponseError::InvalidTxnState),
    }
}

/// Why the timer acts on a transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Open past its timeout: aborted, its producer fenced with a bumped epoch (as Kafka does).
    AbortTimedOut,
    /// Prepared, but the markers are not all written (a failure, or a restart in between).
    CompletePrepared,
    /// `transactional.id.expiration.ms`: idle, with no open transaction, for that long.
    Expire,
}

/// What the periodic check does to a transactional id at `now_ms`, if anything.
pub fn tick(m: &TxnMeta, cfg: &TxnConfig, now_ms: i64) -> Option<(TimerAction, Vec<Effect>)> {
    let mut effects = Vec::new();
    let action = match m.state {
        TxnState::Ongoing if now_ms - m.start_ms > i64::from(m.timeout_ms) => {
            let mut next = m.clone();
            fence(&mut next);
            end(&mut next, false, now_ms, &mut effects);
            TimerAction::AbortTimedOut
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => {
            complete(&mut m.clone(), now_ms, &mut effects);
            TimerAction::CompletePrepared
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            if now_ms - m.update_ms > cfg.id_expiration_ms =>
        {
            effects.push(Effect::Remove);
            TimerAction::Expire
        }
        _ => return None,
    };
    Some((action, effects))
}

#[cfg(test)]
mod tests;
