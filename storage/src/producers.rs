//! Per-partition producer state: what makes idempotent and transactional appends safe, the way
//! Kafka's `ProducerStateManager` keeps it.
//!
//! For every producer id that wrote to a partition: its epoch, the sequence numbers and
//! offsets of its last [`BATCHES_KEPT`] batches (a retried batch is recognised and answered
//! with its original offset instead of being written twice), and the first offset of its open
//! transaction, if any (which holds the last stable offset back). Aborted transactions are
//! listed per partition so that `read_committed` fetches can tell consumers what to skip.
//!
//! The state changes in the same RocksDB write batch as the append that changes it, so it is
//! exactly as durable as the records: a retry after a crash and restart is still deduplicated.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Batches remembered per producer: the most a producer may have in flight (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence).
pub const BATCHES_KEPT: usize = 5;

/// The producer fields of a batch to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id (>= 0).
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record (wraps past `i32::MAX` to 0).
    pub last_seq: i32,
    /// Part of a transaction.
    pub transactional: bool,
}

impl ProducerBatch {
    /// The producer fields of a batch of `record_count` records.
    pub fn new(producer_id: i64, epoch: i16, first_seq: i32, record_count: i32, transactional: bool) -> Self {
        ProducerBatch {
            producer_id,
            epoch,
            first_seq,
            last_seq: add_seq(first_seq, record_count - 1),
            transactional,
        }
    }
}

/// A transaction marker (control batch) to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    /// The producer whose transaction ends.
    pub producer_id: i64,
    /// Its epoch (the coordinator may have bumped it).
    pub epoch: i16,
    /// Commit or abort.
    pub commit: bool,
    /// Epoch of the coordinator that wrote it.
    pub coordinator_epoch: i32,
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
pub fn add_seq(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    /// First sequence.
    pub first_seq: i32,
    /// Last sequence.
    pub last_seq: i32,
    /// Offset the batch was written at.
    pub base_offset: i64,
}

/// A producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Its last batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
    /// Timestamp of its last write (ms), for expiry.
    pub last_timestamp: i64,
    /// First offset of its open transaction here.
    pub txn_first_offset: Option<i64>,
    /// Coordinator epoch of the last marker.
    pub coordinator_epoch: i32,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// A retry of a batch already written at this offset: answer with it, write nothing.
    Duplicate(i64),
}

/// Kafka's checks of a producer's batch against its state (`ProducerAppendInfo`).
pub fn check(entry: Option<&ProducerEntry>, b: &ProducerBatch) -> Result<Check> {
    let Some(e) = entry else {
        // No state: a new producer, or one whose state expired or was removed with the log.
        // Kafka accepts any sequence then.
        return Ok(Check::Append);
    };
    if b.epoch < e.epoch {
        return Err(StorageError::InvalidProducerEpoch(format!(
            "epoch {} of producer {} is older than its current epoch {}",
            b.epoch, b.producer_id, e.epoch
        )));
    }
    if b.epoch > e.epoch {
        if b.first_seq != 0 {
            return Err(StorageError::OutOfOrderSequence(format!(
                "a new epoch {} of producer {} must start at sequence 0, got {}",
                b.epoch, b.producer_id, b.first_seq
            )));
        }
    } else {
        if let Some(dup) = e
            .batches
            .iter()
            .find(|m| m.first_seq == b.first_seq && m.last_seq == b.last_seq)
        {
            return Ok(Check::Duplicate(dup.base_offset));
        }
        if let Some(last) = e.batches.back() {
            if add_seq(last.last_seq, 1) != b.first_seq {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "producer {} sent sequence {} after {}",
                    b.producer_id, b.first_seq, last.last_seq
                )));
            }
        }
    }
    if !b.transactional && e.txn_first_offset.is_some() {
        return Err(StorageError::InvalidTxnState(format!(
            "producer {} wrote outside its open transaction",
            b.producer_id
        )));
    }
    Ok(Check::Append)
}

/// The entry after appending `b` at `base_offset`.
pub fn after_append(
    entry: Option<&ProducerEntry>,
    b: &ProducerBatch,
    base_offset: i64,
    timestamp: i64,
) -> ProducerEntry {
    let mut e = entry.cloned().unwrap_or(ProducerEntry {
        epoch: b.epoch,
        batches: VecDeque::new(),
        last_timestamp: timestamp,
        txn_first_offset: None,
        coordinator_epoch: -1,
    });
    if b.epoch != e.epoch {
        e.epoch = b.epoch;
        e.batches.clear();
    }
    e.batches.push_back(BatchMeta {
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        base_offset,
    });
    while e.batches.len() > BATCHES_KEPT {
        e.batches.pop_front();
    }
    e.last_timestamp = e.last_timestamp.max(timestamp);
    if b.transactional && e.txn_first_offset.is_none() {
        e.txn_first_offset = Some(base_offset);
    }
    e
}

/// Checks a marker against the producer's state: a marker from an older producer epoch, or
/// from a coordinator older than the one that wrote the producer's last marker (a coordinator
/// partition's leader epoch), is a zombie coordinator's.
pub fn check_marker(entry: Option<&ProducerEntry>, m: &TxnMarker) -> Result<()> {
    if let Some(e) = entry {
        if m.coordinator_epoch < e.coordinator_epoch {
            return Err(StorageError::CoordinatorFenced(format!(
                "marker of producer {} from coordinator epoch {}, after one from epoch {}",
                m.producer_id, m.coordinator_epoch, e.coordinator_epoch
            )));
        }
        if m.epoch < e.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "marker epoch {} of producer {} is older than its current epoch {}",
                m.epoch, m.producer_id, e.epoch
            )));
        }
    }
    Ok(())
}

/// An aborted transaction, as a `read_committed` fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Its first record in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// The entry after a marker at `offset`, and the aborted transaction it closes, if any.
pub fn after_marker(
    entry: Option<&ProducerEntry>,
    m: &TxnMarker,
    offset: i64,
    timestamp: i64,
) -> (ProducerEntry, Option<AbortedTxn>) {
    let mut e = entry.cloned().unwrap_or(ProducerEntry {
        epoch: m.epoch,
        batches: VecDeque::new(),
        last_timestamp: timestamp,
        txn_first_offset: None,
        coordinator_epoch: m.coordinator_epoch,
    });
    if m.epoch > e.epoch {
        e.epoch = m.epoch;
        e.batches.clear();
    }
    e.coordinator_epoch = m.coordinator_epoch;
    e.last_timestamp = e.last_timestamp.max(timestamp);
    let aborted = match e.txn_first_offset.take() {
        Some(first) if !m.commit => Some(AbortedTxn {
            producer_id: m.producer_id,
            first_offset: first,
            last_offset: offset,
        }),
        _ => None,
    };
    (e, aborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch::new(7, epoch, first, count, false)
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_seq(i32::MAX, 1), 0);
        assert_eq!(add_seq(i32::MAX - 1, 3), 1);
        assert_eq!(add_seq(5, 3), 8);
    }

    #[test]
    fn in_order_duplicate_and_out_of_order() {
        let b0 = batch(0, 0, 10);
        assert_eq!(check(None, &b0).expect("ok"), Check::Append);
        let e = after_append(None, &b0, 100, 1);
        let b1 = batch(0, 10, 5);
        assert_eq!(check(Some(&e), &b1).expect("ok"), Check::Append);
        let e = after_append(Some(&e), &b1, 110, 2);
        // A retry of either remembered batch gets its original offset.
        assert_eq!(check(Some(&e), &b0).expect("ok"), Check::Duplicate(100));
        assert_eq!(check(Some(&e), &b1).expect("ok"), Check::Duplicate(110));
        // A gap is out of order.
        assert!(matches!(
            check(Some(&e), &batch(0, 16, 1)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        // An older epoch is fenced; a newer one must start at 0.
        assert!(matches!(
            check(Some(&e), &batch(-1, 15, 1)),
            Err(StorageError::InvalidProducerEpoch(_))
        ));
        assert!(matches!(
            check(Some(&e), &batch(1, 15, 1)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert_eq!(check(Some(&e), &batch(1, 0, 1)).expect("ok"), Check::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut e = None;
        for i in 0..7 {
            let b = batch(0, i, 1);
            e = Some(after_append(e.as_ref(), &b, i64::from(i) * 10, 0));
        }
        let e = e.expect("ok");
        assert_eq!(e.batches.len(), BATCHES_KEPT);
        assert_eq!(check(Some(&e), &batch(0, 6, 1)).expect("ok"), Check::Duplicate(60));
        // Batch 1 is forgotten: its retry is now out of order.
        assert!(check(Some(&e), &batch(0, 1, 1)).is_err());
    }

    #[test]
    fn transactions_open_and_close() {
        let b = ProducerBatch::new(7, 0, 0, 2, true);
        let e = after_append(None, &b, 50, 0);
        assert_eq!(e.txn_first_offset, Some(50));
        // A plain write while the transaction is open is refused.
        assert!(matches!(
            check(Some(&e), &ProducerBatch::new(7, 0, 2, 1, false)),
            Err(StorageError::InvalidTxnState(_))
        ));
        let abort = TxnMarker {
            producer_id: 7,
            epoch: 0,
            commit: false,
            coordinator_epoch: 3,
        };
        check_marker(Some(&e), &abort).expect("ok");
        let (e, aborted) = after_marker(Some(&e), &abort, 60, 0);
        assert_eq!(e.txn_first_offset, None);
        assert_eq!(
            aborted,
            Some(AbortedTxn {
                producer_id: 7,
                first_offset: 50,
                last_offset: 60
            })
        );
        let stale = TxnMarker { epoch: -1, ..abort };
        assert!(check_marker(Some(&e), &stale).is_err());
        // A coordinator deposed since (its coordinator epoch is older) is fenced, even for the
        // producer's current epoch; the one that wrote the last marker, or a newer one, is not.
        let zombie = TxnMarker {
            coordinator_epoch: 2,
            ..abort
        };
        assert!(matches!(
            check_marker(Some(&e), &zombie),
            Err(StorageError::CoordinatorFenced(_))
        ));
        check_marker(Some(&e), &abort).expect("the same coordinator");
        check_marker(
            Some(&e),
            &TxnMarker {
                coordinator_epoch: 4,
                ..abort
            },
        )
        .expect("a newer coordinator");
    }
}
