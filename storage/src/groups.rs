//! Consumer-group state: committed offsets and group metadata, the way Kafka keeps them in
//! `__consumer_offsets`.
//!
//! Kafka's offsets topic is a compacted log keyed by (group) and (group, topic, partition):
//! after compaction only the newest value of each key remains, and a tombstone deletes it.
//! A RocksDB column family is exactly that end state, so it is stored as one: the newest
//! value per key, deletes as deletes. Every key starts with the *coordinator partition* of
//! its group (Kafka's `abs(groupId.hashCode) % offsets.topic.num.partitions`), so a cluster
//! can move a range of groups with the leadership of that partition and load one partition's
//! groups alone.
//!
//! Writes are atomic per call (one `WriteBatch`) and go through the same WAL as the partition
//! logs, so a commit acknowledged to a client survives a process kill exactly as an
//! acknowledged produce does. They are written from the blocking pool rather than through the
//! log writer thread, and need not be:
//! - the writer exists to assign offsets in order and to share one fsync among producers;
//!   group state has no offsets, and each call is one atomic `WriteBatch`, ordered by the
//!   coordinator that awaits it (a transaction's markers are appended and awaited before its
//!   state record is written);
//! - durability follows the flush policy all the same: with `log.flush.interval.messages=1`
//!   every group write is fsynced before it returns; with `log.flush.interval.ms` the periodic
//!   WAL sync covers them (they are in the same WAL), and any WAL sync the writer does for
//!   produces covers every group write before it. With `log.flush.interval.messages=N > 1` a
//!   group write does not count towards N (Kafka counts an offset commit as a message of
//!   `__consumer_offsets`): it is synced by the next sync of either kind;
//! - a failed write takes the log directory offline, as a failed log write does, and an
//!   offline directory takes no group write: nothing is acknowledged after a failed sync.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::error::{Result, StorageError};
use crate::health::DirHealth;
use crate::log::cf;

/// Column family of group state.
pub const CF_GROUPS: &str = "groups";

const KIND_GROUP: u8 = b'g';
const KIND_OFFSET: u8 = b'o';
const KIND_TXN: u8 = b't';
const KIND_PENDING: u8 = b'x';
/// Only in the replicated log (`GroupWrite::to_record`): a group deleted with all it holds.
const KIND_DELETE: u8 = b'D';

/// Which coordinator's state a row or a replicated record is: group and transaction
/// coordinators number their partitions apart (`offsets.topic.num.partitions`,
/// `transaction.state.log.num.partitions`), so a partition number names a range of one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateLog {
    /// Groups, their committed offsets and transactional offsets (`__consumer_offsets`).
    Groups,
    /// Transaction states (`__transaction_state`).
    Transactions,
}

impl StateLog {
    /// The kinds of row this coordinator keeps.
    fn kinds(self) -> &'static [u8] {
        match self {
            StateLog::Groups => &[KIND_GROUP, KIND_OFFSET, KIND_PENDING],
            StateLog::Transactions => &[KIND_TXN],
        }
    }

    /// Whether `write` is this coordinator's, and of partition `partition`.
    pub fn holds(self, write: &GroupWrite, partition: i32) -> bool {
        let (p, log) = match write {
            GroupWrite::Group { partition, .. }
            | GroupWrite::Offset { partition, .. }
            | GroupWrite::PendingOffsets { partition, .. }
            | GroupWrite::DeleteGroup { partition, .. } => (*partition, StateLog::Groups),
            GroupWrite::Txn { partition, .. } => (*partition, StateLog::Transactions),
        };
        p == partition && log == self
    }
}
const OFFSET_VALUE_VERSION: u8 = 1;

/// One committed offset, as `OffsetCommit` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp: i64,
    /// Explicit expiry from OffsetCommit v2-4 `retention_time_ms`, if one was given.
    pub expire_timestamp: Option<i64>,
}

impl CommittedOffset {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(29 + self.metadata.len());
        v.push(OFFSET_VALUE_VERSION);
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.leader_epoch.to_be_bytes());
        v.extend_from_slice(&self.commit_timestamp.to_be_bytes());
        v.extend_from_slice(&self.expire_timestamp.unwrap_or(-1).to_be_bytes());
        v.extend_from_slice(self.metadata.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        if v.len() < 29 || v[0] != OFFSET_VALUE_VERSION {
            return None;
        }
        let expire = i64::from_be_bytes(v[21..29].try_into().ok()?);
        Some(CommittedOffset {
            offset: i64::from_be_bytes(v[1..9].try_into().ok()?),
            leader_epoch: i32::from_be_bytes(v[9..13].try_into().ok()?),
            commit_timestamp: i64::from_be_bytes(v[13..21].try_into().ok()?),
            expire_timestamp: (expire >= 0).then_some(expire),
            metadata: String::from_utf8(v[29..].to_vec()).ok()?,
        })
    }
}

/// One change to group state; a list of them is applied atomically.
#[derive(Debug, Clone)]
pub enum GroupWrite {
    /// Sets (Some) or deletes (None) a group's metadata record. The record is opaque here:
    /// its format belongs to the coordinator that wrote it.
    Group {
        /// Coordinator partition of the group.
        partition: i32,
        /// The group.
        group_id: String,
        /// The new record, or `None` to delete it.
        value: Option<Vec<u8>>,
    },
    /// Sets (Some) or deletes (None) one committed offset.
    Offset {
        /// Coordinator partition of the group.
        partition: i32,
        /// The group.
        group_id: String,
        /// Topic name (Kafka keys committed offsets by name).
        topic: String,
        /// Partition of that topic.
        topic_partition: i32,
        /// The commit, or `None` to delete it.
        value: Option<CommittedOffset>,
    },
    /// Sets (Some) or deletes (None) a transactional id's state (Kafka's `__transaction_state`
    /// record). Opaque here, like group records; `partition` is the transaction coordinator
    /// partition.
    Txn {
        /// Coordinator partition of the transactional id.
        partition: i32,
        /// The transactional id.
        transactional_id: String,
        /// The record, or `None` to delete it.
        value: Option<Vec<u8>>,
    },
    /// Sets (Some) or deletes (None) the offsets a transaction committed to a group and that
    /// become visible when it commits (TxnOffsetCommit). Opaque here.
    PendingOffsets {
        /// Coordinator partition of the group.
        partition: i32,
        /// The group.
        group_id: String,
        /// The transaction's producer id.
        producer_id: i64,
        /// The record, or `None` to delete it.
        value: Option<Vec<u8>>,
    },
    /// Deletes a group's metadata and every offset it committed.
    DeleteGroup {
        /// Coordinator partition of the group.
        partition: i32,
        /// The group.
        group_id: String,
    },
}

impl GroupWrite {
    /// The write as one record of a replicated coordinator log (`__consumer_offsets` in a
    /// cluster): the key it has in the column family (for a deleted group, its prefix with a
    /// kind of its own) and the stored value, `None` for a delete. Replaying the records in
    /// order with [`GroupWrite::from_record`] rebuilds what the writes built.
    pub fn to_record(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            GroupWrite::Group {
                partition,
                group_id,
                value,
            } => (group_prefix(*partition, KIND_GROUP, group_id), value.clone()),
            GroupWrite::Offset {
                partition,
                group_id,
                topic,
                topic_partition,
                value,
            } => (
                offset_key(*partition, group_id, topic, *topic_partition),
                value.as_ref().map(CommittedOffset::encode),
            ),
            GroupWrite::Txn {
                partition,
                transactional_id,
                value,
            } => (group_prefix(*partition, KIND_TXN, transactional_id), value.clone()),
            GroupWrite::PendingOffsets {
                partition,
                group_id,
                producer_id,
                value,
            } => (pending_key(*partition, group_id, *producer_id), value.clone()),
            GroupWrite::DeleteGroup { partition, group_id } => (group_prefix(*partition, KIND_DELETE, group_id), None),
        }
    }

    /// The write a record of [`GroupWrite::to_record`] stands for; `None` for a record that
    /// does not parse.
    pub fn from_record(key: &[u8], value: Option<&[u8]>) -> Option<GroupWrite> {
        let (partition, kind, group_id, rest) = split_key(key)?;
        if partition < 0 {
            return None;
        }
        let owned = value.map(<[u8]>::to_vec);
        Some(match kind {
            KIND_GROUP if rest.is_empty() => GroupWrite::Group {
                partition,
                group_id,
                value: owned,
            },
            KIND_OFFSET => {
                let (topic, topic_partition) = split_offset_rest(rest)?;
                let value = match value {
                    Some(v) => Some(CommittedOffset::decode(v)?),
                    None => None,
                };
                GroupWrite::Offset {
                    partition,
                    group_id,
                    topic,
                    topic_partition,
                    value,
                }
            }
            KIND_TXN if rest.is_empty() => GroupWrite::Txn {
                partition,
                transactional_id: group_id,
                value: owned,
            },
            KIND_PENDING => GroupWrite::PendingOffsets {
                partition,
                group_id,
                producer_id: i64::from_be_bytes(rest.try_into().ok()?),
                value: owned,
            },
            KIND_DELETE if rest.is_empty() && value.is_none() => GroupWrite::DeleteGroup { partition, group_id },
            _ => return None,
        })
    }
}

/// A stored group metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// Coordinator partition.
    pub partition: i32,
    /// The group.
    pub group_id: String,
    /// The record as the coordinator wrote it.
    pub value: Vec<u8>,
}

/// A stored committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOffset {
    /// Coordinator partition.
    pub partition: i32,
    /// The group.
    pub group_id: String,
    /// Topic name.
    pub topic: String,
    /// Partition of that topic.
    pub topic_partition: i32,
    /// The commit.
    pub value: CommittedOffset,
}

/// Everything stored for some coordinator partitions, as read at load time.
#[derive(Debug, Default, Clone)]
pub struct LoadedGroups {
    /// Group metadata records.
    pub groups: Vec<StoredGroup>,
    /// Committed offsets.
    pub offsets: Vec<StoredOffset>,
    /// Transaction state records (`group_id` holds the transactional id).
    pub txns: Vec<StoredGroup>,
    /// Offsets of open transactions: (partition, group, producer id, record).
    pub pending_offsets: Vec<(i32, String, i64, Vec<u8>)>,
}

/// Group state in the broker's RocksDB. Cheap to clone.
#[derive(Clone)]
pub struct GroupStore {
    db: Arc<DB>,
    sync: bool,
    health: Arc<DirHealth>,
}

fn group_prefix(partition: i32, kind: u8, group_id: &str) -> Vec<u8> {
    assert!(partition >= 0, "negative coordinator partition {partition}");
    let mut k = Vec::with_capacity(4 + 1 + 4 + group_id.len() + 32);
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(kind);
    // Length-prefixed: a group id may contain any byte, so no separator would be safe.
    k.extend_from_slice(&(group_id.len() as u32).to_be_bytes());
    k.extend_from_slice(group_id.as_bytes());
    k
}

fn offset_key(partition: i32, group_id: &str, topic: &str, topic_partition: i32) -> Vec<u8> {
    let mut k = group_prefix(partition, KIND_OFFSET, group_id);
    // Topic names are [a-zA-Z0-9._-]: a 0 byte cannot occur in one.
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&topic_partition.to_be_bytes());
    k
}

fn pending_key(partition: i32, group_id: &str, producer_id: i64) -> Vec<u8> {
    let mut k = group_prefix(partition, KIND_PENDING, group_id);
    k.extend_from_slice(&producer_id.to_be_bytes());
    k
}

/// Splits the `topic | 0 | partition` end of an offset key.
fn split_offset_rest(rest: &[u8]) -> Option<(String, i32)> {
    let sep = rest.len().checked_sub(5)?;
    if rest[sep] != 0 {
        return None;
    }
    let topic = std::str::from_utf8(&rest[..sep]).ok()?.to_string();
    Some((topic, i32::from_be_bytes(rest[sep + 1..].try_into().ok()?)))
}

/// Splits `partition | kind | len | group | rest`.
fn split_key(k: &[u8]) -> Option<(i32, u8, String, &[u8])> {
    let partition = i32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let kind = *k.get(4)?;
    let len = u32::from_be_bytes(k.get(5..9)?.try_into().ok()?) as usize;
    let group = std::str::from_utf8(k.get(9..9 + len)?).ok()?.to_string();
    Some((partition, kind, group, k.get(9 + len..)?))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corruption(format!("malformed {what} in the groups column family"))
}

impl GroupStore {
    pub(crate) fn new(db: Arc<DB>, sync: bool, health: Arc<DirHealth>) -> Self {
        GroupStore { db, sync, health }
    }

    /// Applies `writes` atomically; returns once they are in the WAL (fsynced when the flush
    /// policy syncs every write).
    pub async fn write(&self, writes: Vec<GroupWrite>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.write_blocking(writes))
            .await
            .map_err(|e| StorageError::Corruption(format!("group write task failed: {e}")))?
    }

    /// [`GroupStore::write`] for blocking contexts.
    pub fn write_blocking(&self, writes: Vec<GroupWrite>) -> Result<()> {
        self.health.check()?;
        let handle = cf(&self.db, CF_GROUPS)?;
        let mut wb = WriteBatch::default();
        for w in writes {
            match w {
                GroupWrite::Group {
                    partition,
                    group_id,
                    value,
                } => {
                    let key = group_prefix(partition, KIND_GROUP, &group_id);
                    match value {
                        Some(v) => wb.put_cf(handle, key, v),
                        None => wb.delete_cf(handle, key),
                    }
                }
                GroupWrite::Offset {
                    partition,
                    group_id,
                    topic,
                    topic_partition,
                    value,
                } => {
                    let key = offset_key(partition, &group_id, &topic, topic_partition);
                    match value {
                        Some(v) => wb.put_cf(handle, key, v.encode()),
                        None => wb.delete_cf(handle, key),
                    }
                }
                GroupWrite::Txn {
                    partition,
                    transactional_id,
                    value,
                } => {
                    let key = group_prefix(partition, KIND_TXN, &transactional_id);
                    match value {
                        Some(v) => wb.put_cf(handle, key, v),
                        None => wb.delete_cf(handle, key),
                    }
                }
                GroupWrite::PendingOffsets {
                    partition,
                    group_id,
                    producer_id,
                    value,
                } => {
                    let key = pending_key(partition, &group_id, producer_id);
                    match value {
                        Some(v) => wb.put_cf(handle, key, v),
                        None => wb.delete_cf(handle, key),
                    }
                }
                GroupWrite::DeleteGroup { partition, group_id } => {
                    wb.delete_cf(handle, group_prefix(partition, KIND_GROUP, &group_id));
                    for kind in [KIND_OFFSET, KIND_PENDING] {
                        let start = group_prefix(partition, kind, &group_id);
                        let mut end = start.clone();
                        // Every offset key of the group is `start | topic | 0 | partition`
                        // (topic bytes are below 0xff); pending keys are `start | producer id`
                        // (non-negative, so the first byte is below 0x80).
                        end.push(0xff);
                        wb.delete_range_cf(handle, start, end);
                    }
                }
            }
        }
        self.commit(wb)
    }

    /// Writes `wb` with the flush policy's sync; a failure takes the directory offline.
    fn commit(&self, wb: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| self.health.fail(format!("group state write failed: {e}")))
    }

    /// Deletes everything coordinator partition `partition` of `log` holds, before its
    /// replicated log is replayed into it. Blocking.
    pub fn clear_blocking(&self, log: StateLog, partition: i32) -> Result<()> {
        self.health.check()?;
        let handle = cf(&self.db, CF_GROUPS)?;
        let mut wb = WriteBatch::default();
        for &kind in log.kinds() {
            let mut start = partition.to_be_bytes().to_vec();
            start.push(kind);
            let mut end = partition.to_be_bytes().to_vec();
            end.push(kind + 1);
            wb.delete_range_cf(handle, start, end);
        }
        self.commit(wb)
    }

    /// Reads every stored group and offset. Blocking: for startup.
    pub fn load_all(&self) -> Result<LoadedGroups> {
        self.load_from(&[], |_| true)
    }

    /// Reads what coordinator partition `partition` of `log` holds: a group coordinator
    /// partition's groups, offsets and transactional offsets, or a transaction coordinator
    /// partition's transaction states. Blocking.
    pub fn load_partition(&self, log: StateLog, partition: i32) -> Result<LoadedGroups> {
        let prefix = partition.to_be_bytes();
        let mut out = self.load_from(&prefix, |k| k.starts_with(&prefix))?;
        match log {
            StateLog::Groups => out.txns.clear(),
            StateLog::Transactions => {
                out.groups.clear();
                out.offsets.clear();
                out.pending_offsets.clear();
            }
        }
        Ok(out)
    }

    /// Reads the rows from `start` on while `within` holds for their keys.
    fn load_from(&self, start: &[u8], within: impl Fn(&[u8]) -> bool) -> Result<LoadedGroups> {
        let handle = cf(&self.db, CF_GROUPS)?;
        let mut out = LoadedGroups::default();
        for item in self
            .db
            .iterator_cf(handle, IteratorMode::From(start, Direction::Forward))
        {
            let (k, v) = item?;
            if !within(&k) {
                break;
            }
            let (partition, kind, group_id, rest) = split_key(&k).ok_or_else(|| corrupt("key"))?;
            match kind {
                KIND_GROUP => out.groups.push(StoredGroup {
                    partition,
                    group_id,
                    value: v.to_vec(),
                }),
                KIND_OFFSET => {
                    let (topic, topic_partition) = split_offset_rest(rest).ok_or_else(|| corrupt("offset key"))?;
                    let value = CommittedOffset::decode(&v).ok_or_else(|| corrupt("offset value"))?;
                    out.offsets.push(StoredOffset {
                        partition,
                        group_id,
                        topic,
                        topic_partition,
                        value,
                    });
                }
                KIND_TXN => out.txns.push(StoredGroup {
                    partition,
                    group_id,
                    value: v.to_vec(),
                }),
                KIND_PENDING => {
                    let producer_id = i64::from_be_bytes(rest.try_into().map_err(|_| corrupt("pending offsets key"))?);
                    out.pending_offsets.push((partition, group_id, producer_id, v.to_vec()));
                }
                _ => return Err(corrupt("record kind")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogStore, StorageConfig};

    proptest::proptest! {
        /// Group rows come from disk: any key or value decodes or is refused, never a panic.
        #[test]
        fn stored_group_rows_never_panic(
            v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
        ) {
            let _ = CommittedOffset::decode(&v);
            let _ = split_key(&v);
            let _ = GroupWrite::from_record(&v, Some(&v));
            let _ = GroupWrite::from_record(&v, None);
        }

        #[test]
        fn committed_offsets_round_trip(
            offset in proptest::prelude::any::<i64>(),
            leader_epoch in proptest::prelude::any::<i32>(),
            commit_timestamp in proptest::prelude::any::<i64>(),
            expire in proptest::option::of(0i64..),
            metadata in ".{0,40}",
        ) {
            let c = CommittedOffset { offset, leader_epoch, metadata, commit_timestamp, expire_timestamp: expire };
            proptest::prop_assert_eq!(CommittedOffset::decode(&c.encode()), Some(c));
        }
    }

    /// A store in `dir` that never syncs on its own.
    fn config(dir: &std::path::Path) -> StorageConfig {
        StorageConfig {
            data_dir: dir.to_path_buf(),
            flush_interval_messages: i64::MAX,
            flush_interval_ms: None,
            segment_bytes: crate::DEFAULT_SEGMENT_BYTES,
            checkpoint_interval_ms: 60_000,
        }
    }

    fn commit(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: None,
        }
    }

    fn offset(group: &str, topic: &str, p: i32, value: Option<CommittedOffset>) -> GroupWrite {
        GroupWrite::Offset {
            partition: 7,
            group_id: group.into(),
            topic: topic.into(),
            topic_partition: p,
            value,
        }
    }

    #[test]
    fn offset_values_round_trip() {
        let mut c = commit(42);
        assert_eq!(CommittedOffset::decode(&c.encode()), Some(c.clone()));
        c.expire_timestamp = Some(99);
        c.metadata = String::new();
        assert_eq!(CommittedOffset::decode(&c.encode()), Some(c));
        assert_eq!(CommittedOffset::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn every_write_round_trips_through_a_replicated_record() {
        let writes = vec![
            GroupWrite::Group {
                partition: 7,
                group_id: "g".into(),
                value: Some(b"one".to_vec()),
            },
            GroupWrite::Group {
                partition: 7,
                group_id: "g".into(),
                value: None,
            },
            offset("g", "t.x-1", 3, Some(commit(5))),
            offset("g", "t", 0, None),
            GroupWrite::Txn {
                partition: 2,
                transactional_id: "tx".into(),
                value: Some(b"state".to_vec()),
            },
            GroupWrite::PendingOffsets {
                partition: 7,
                group_id: "g".into(),
                producer_id: 4000,
                value: Some(b"[]".to_vec()),
            },
            GroupWrite::DeleteGroup {
                partition: 7,
                group_id: "g".into(),
            },
        ];
        for w in writes {
            let (key, value) = w.to_record();
            let back = GroupWrite::from_record(&key, value.as_deref()).expect("parses");
            assert_eq!(format!("{back:?}"), format!("{w:?}"));
        }
        // A deletion record with a value is not one.
        let (key, _) = GroupWrite::DeleteGroup {
            partition: 1,
            group_id: "g".into(),
        }
        .to_record();
        assert!(GroupWrite::from_record(&key, Some(b"x")).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_coordinator_partition_is_cleared_and_loaded_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(config(dir.path())).expect("open");
        let groups = store.groups();
        let group = |partition: i32, id: &str| GroupWrite::Group {
            partition,
            group_id: id.into(),
            value: Some(b"v".to_vec()),
        };
        groups
            .write(vec![
                group(7, "a"),
                group(8, "b"),
                offset("a", "t", 0, Some(commit(1))),
                GroupWrite::Txn {
                    partition: 7,
                    transactional_id: "tx".into(),
                    value: Some(b"s".to_vec()),
                },
            ])
            .await
            .expect("write");
        let seven = groups.load_partition(StateLog::Groups, 7).expect("load 7");
        assert_eq!((seven.groups.len(), seven.offsets.len(), seven.txns.len()), (1, 1, 0));
        let txns = groups.load_partition(StateLog::Transactions, 7).expect("load 7");
        assert_eq!((txns.groups.len(), txns.offsets.len(), txns.txns.len()), (0, 0, 1));
        groups.clear_blocking(StateLog::Groups, 7).expect("clear 7");
        let all = groups.load_all().expect("load");
        let ids: Vec<&str> = all.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, ["b"], "partition 8 untouched");
        assert!(all.offsets.is_empty());
        assert_eq!(all.txns.len(), 1, "transaction states are numbered apart and stay");
        groups.clear_blocking(StateLog::Transactions, 7).expect("clear 7");
        let all = groups.load_all().expect("load");
        assert!(all.txns.is_empty());
        assert_eq!(all.groups.len(), 1);
        store.shutdown().await.expect("close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_and_offsets_survive_reopen_and_delete_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        {
            let store = LogStore::open(cfg.clone()).expect("open");
            let groups = store.groups();
            // Group ids that prefix each other must not share keys.
            groups
                .write(vec![
                    GroupWrite::Group {
                        partition: 7,
                        group_id: "g".into(),
                        value: Some(b"one".to_vec()),
                    },
                    GroupWrite::Group {
                        partition: 7,
                        group_id: "g2".into(),
                        value: Some(b"two".to_vec()),
                    },
                    offset("g", "t", 0, Some(commit(5))),
                    offset("g", "t", 1, Some(commit(6))),
                    offset("g", "t.x", 0, Some(commit(7))),
                    offset("g2", "t", 0, Some(commit(8))),
                ])
                .await
                .expect("write");
            groups.write(vec![offset("g", "t", 1, None)]).await.expect("delete one");
            store.shutdown().await.expect("close");
        }
        let store = LogStore::open(cfg).expect("reopen");
        let groups = store.groups();
        let loaded = groups.load_all().expect("load");
        assert_eq!(loaded.groups.len(), 2);
        let mut got: Vec<(String, String, i32, i64)> = loaded
            .offsets
            .iter()
            .map(|o| (o.group_id.clone(), o.topic.clone(), o.topic_partition, o.value.offset))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("g".into(), "t".into(), 0, 5),
                ("g".into(), "t.x".into(), 0, 7),
                ("g2".into(), "t".into(), 0, 8)
            ]
        );
        groups
            .write(vec![GroupWrite::DeleteGroup {
                partition: 7,
                group_id: "g".into(),
            }])
            .await
            .expect("delete group");
        let loaded = groups.load_all().expect("load");
        assert_eq!(loaded.groups.len(), 1);
        assert_eq!(loaded.groups[0].group_id, "g2");
        assert_eq!(loaded.offsets.len(), 1);
        assert_eq!(loaded.offsets[0].group_id, "g2");
        store.shutdown().await.expect("close");
    }
}
