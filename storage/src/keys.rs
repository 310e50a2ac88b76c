//! Key layouts. All integers are big-endian so that RocksDB's byte order is numeric order.
//! Offsets and partitions are never negative in keys (asserted by the writers of keys).

use crate::PartitionId;

/// Column family of record batches: `pid | base_offset` -> batch bytes.
pub const CF_BATCHES: &str = "batches";
/// Column family of the time index: `pid | max_timestamp` -> `base_offset | offset_delta`.
/// An entry is written only when a batch raises the partition's largest timestamp, so both
/// columns rise together and a seek finds the first batch reaching a timestamp.
pub const CF_TIME_INDEX: &str = "timeindex";
/// Column family of per-partition state: `pid` -> [`PartitionRecord`], and
/// `pid | 'e' | epoch` -> start offset of that leader epoch.
pub const CF_PARTITIONS: &str = "partitions";

/// Bytes of a partition prefix: 16-byte topic id + 4-byte partition.
pub const PID_BYTES: usize = 20;

pub fn pid_prefix(pid: &PartitionId) -> [u8; PID_BYTES] {
    let mut k = [0u8; PID_BYTES];
    k[..16].copy_from_slice(&pid.topic_id);
    k[16..].copy_from_slice(&pid.partition.to_be_bytes());
    k
}

pub fn pid_from_prefix(k: &[u8]) -> Option<PartitionId> {
    let topic_id: [u8; 16] = k.get(..16)?.try_into().ok()?;
    let partition = i32::from_be_bytes(k.get(16..20)?.try_into().ok()?);
    Some(PartitionId { topic_id, partition })
}

pub fn offset_key(pid: &PartitionId, offset: i64) -> [u8; PID_BYTES + 8] {
    assert!(offset >= 0, "negative offset {offset} in a key");
    let mut k = [0u8; PID_BYTES + 8];
    k[..PID_BYTES].copy_from_slice(&pid_prefix(pid));
    k[PID_BYTES..].copy_from_slice(&offset.to_be_bytes());
    k
}

pub fn offset_from_key(k: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(k.get(PID_BYTES..PID_BYTES + 8)?.try_into().ok()?))
}

/// Timestamps may be negative (-1 = none); flip the sign bit so byte order is numeric order.
pub fn time_key(pid: &PartitionId, timestamp: i64) -> [u8; PID_BYTES + 8] {
    let mut k = [0u8; PID_BYTES + 8];
    k[..PID_BYTES].copy_from_slice(&pid_prefix(pid));
    k[PID_BYTES..].copy_from_slice(&((timestamp as u64) ^ (1 << 63)).to_be_bytes());
    k
}

pub fn timestamp_from_key(k: &[u8]) -> Option<i64> {
    let raw = u64::from_be_bytes(k.get(PID_BYTES..PID_BYTES + 8)?.try_into().ok()?);
    Some((raw ^ (1 << 63)) as i64)
}

pub fn epoch_key(pid: &PartitionId, epoch: i32) -> [u8; PID_BYTES + 5] {
    let mut k = [0u8; PID_BYTES + 5];
    k[..PID_BYTES].copy_from_slice(&pid_prefix(pid));
    k[PID_BYTES] = b'e';
    k[PID_BYTES + 1..].copy_from_slice(&epoch.to_be_bytes());
    k
}

/// `pid | 'p' | producer_id` -> a producer's state in the partition (`producers::ProducerEntry`).
pub fn producer_key(pid: &PartitionId, producer_id: i64) -> [u8; PID_BYTES + 9] {
    tagged_key(pid, b'p', producer_id)
}

/// `pid | 'a' | last_offset` -> an aborted transaction (`producers::AbortedTxn`).
pub fn aborted_key(pid: &PartitionId, last_offset: i64) -> [u8; PID_BYTES + 9] {
    tagged_key(pid, b'a', last_offset)
}

/// `pid | 'c' | 0` -> the cleaner's first dirty offset (Kafka's cleaner-offset-checkpoint).
pub fn cleaner_key(pid: &PartitionId) -> [u8; PID_BYTES + 9] {
    tagged_key(pid, b'c', 0)
}

/// `pid | 's' | 0` -> cleaned segments whose swap the index committed
/// (`segments::CleanedSwap`), until their files are in place.
pub fn swap_key(pid: &PartitionId) -> [u8; PID_BYTES + 9] {
    tagged_key(pid, b's', 0)
}

fn tagged_key(pid: &PartitionId, tag: u8, n: i64) -> [u8; PID_BYTES + 9] {
    let mut k = [0u8; PID_BYTES + 9];
    k[..PID_BYTES].copy_from_slice(&pid_prefix(pid));
    k[PID_BYTES] = tag;
    k[PID_BYTES + 1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// First and one-past-last key of everything belonging to a topic, for range deletes.
pub fn topic_range(topic_id: &[u8; 16]) -> (Vec<u8>, Vec<u8>) {
    let start = topic_id.to_vec();
    let mut end = topic_id.to_vec();
    end.push(0xff);
    end.extend_from_slice(&[0xff; PID_BYTES]);
    (start, end)
}

/// What a delete removes: every partition of a topic (the topic was deleted), or one partition
/// (its replica moved to other brokers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doomed {
    Topic([u8; 16]),
    Partition(PartitionId),
}

impl Doomed {
    /// Whether the delete removes this partition.
    pub fn covers(&self, pid: &PartitionId) -> bool {
        match self {
            Doomed::Topic(id) => &pid.topic_id == id,
            Doomed::Partition(p) => p == pid,
        }
    }

    /// First and one-past-last key of everything it removes, for range deletes. A partition's
    /// keys are its prefix and at most 9 more bytes.
    pub fn key_range(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Doomed::Topic(id) => topic_range(id),
            Doomed::Partition(pid) => {
                let start = pid_prefix(pid).to_vec();
                let mut end = start.clone();
                end.extend_from_slice(&[0xff; 10]);
                (start, end)
            }
        }
    }
}

/// The persisted part of a partition's state (the rest is derived from the log at open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRecord {
    /// First offset still readable (moved by DeleteRecords and retention).
    pub log_start_offset: i64,
    /// Bytes of the batches still stored (retention.bytes, DescribeLogDirs). Kept here so
    /// that opening the store never has to scan a log to learn its size.
    pub size_bytes: u64,
}

impl PartitionRecord {
    pub const BYTES: usize = 17;
    const VERSION: u8 = 1;

    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut v = [0u8; Self::BYTES];
        v[0] = Self::VERSION;
        v[1..9].copy_from_slice(&self.log_start_offset.to_be_bytes());
        v[9..].copy_from_slice(&self.size_bytes.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != Self::BYTES || v[0] != Self::VERSION {
            return None;
        }
        Some(PartitionRecord {
            log_start_offset: i64::from_be_bytes(v[1..9].try_into().ok()?),
            size_bytes: u64::from_be_bytes(v[9..].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_numeric_order() {
        let pid = PartitionId {
            topic_id: [3; 16],
            partition: 2,
        };
        assert!(offset_key(&pid, 255) < offset_key(&pid, 256));
        assert!(time_key(&pid, -1) < time_key(&pid, 0));
        assert!(time_key(&pid, 0) < time_key(&pid, 1_700_000_000_000));
        assert_eq!(timestamp_from_key(&time_key(&pid, -5)), Some(-5));
        assert_eq!(offset_from_key(&offset_key(&pid, 42)), Some(42));
        assert_eq!(pid_from_prefix(&offset_key(&pid, 42)), Some(pid));
        let other = PartitionId {
            topic_id: [3; 16],
            partition: 3,
        };
        assert!(offset_key(&pid, i64::MAX) < offset_key(&other, 0));
        let (start, end) = topic_range(&pid.topic_id);
        assert!(start.as_slice() <= &offset_key(&pid, 0)[..] && &offset_key(&other, i64::MAX)[..] < end.as_slice());
        // One partition's range holds all of its keys and none of its neighbours'.
        let next = PartitionId {
            topic_id: pid.topic_id,
            partition: pid.partition + 1,
        };
        let (start, end) = Doomed::Partition(pid).key_range();
        for k in [
            &offset_key(&pid, 0)[..],
            &offset_key(&pid, i64::MAX)[..],
            &producer_key(&pid, i64::MAX)[..],
            &pid_prefix(&pid)[..],
        ] {
            assert!(start.as_slice() <= k && k < end.as_slice());
        }
        assert!(end.as_slice() <= &pid_prefix(&next)[..]);
    }

    #[test]
    fn partition_record_round_trips() {
        let r = PartitionRecord {
            log_start_offset: 77,
            size_bytes: 1234,
        };
        assert_eq!(PartitionRecord::decode(&r.encode()), Some(r));
        assert_eq!(PartitionRecord::decode(&[9; 3]), None);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Keys and partition rows come from disk: any bytes decode or are refused, never a panic.
        #[test]
        fn keys_and_partition_rows_never_panic(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PartitionRecord::decode(&v);
            let _ = pid_from_prefix(&v);
            let _ = offset_from_key(&v);
            let _ = timestamp_from_key(&v);
        }

        #[test]
        fn partition_rows_round_trip(log_start_offset in any::<i64>(), size_bytes in any::<u64>()) {
            let r = PartitionRecord { log_start_offset, size_bytes };
            let back = PartitionRecord::decode(&r.encode()).expect("decodes");
            prop_assert_eq!((back.log_start_offset, back.size_bytes), (log_start_offset, size_bytes));
        }
    }
}
