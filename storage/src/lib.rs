//! Fjord's partition logs on RocksDB.
//!
//! Every partition's record batches are appended to its segment files ([`segments`]), as the
//! producer sent them with only the base offset and leader epoch patched in
//! ([`fjord_protocol::batch`]). One column family indexes them, keyed by
//! `(topic id, partition, base offset)` in big-endian so that key order is log order and a
//! Fetch is one seek plus a forward scan that turns into positioned reads of the segments.
//!
//! All writes go through one writer ([`writer`]) that owns offset assignment: its thread drains
//! its queue, builds one RocksDB `WriteBatch` for everything queued, writes it (synced to disk
//! when the flush policy says so) and only then answers. Concurrent producers therefore share
//! one WAL write and one fsync: group commit. A Produce that finds the writer idle and nothing
//! queued is written the same way on its own thread, sparing two thread hand-overs. Reads run
//! on tokio's blocking pool.
//!
//! This crate knows nothing of sockets, Kafka request types or Raft; it depends only on
//! `fjord-protocol` below it.

pub mod cleaner;
pub mod error;
pub mod groups;
pub mod health;
mod keys;
mod log;
pub mod producers;
mod segments;
pub mod space;
mod tail;
mod writer;

pub use cleaner::{CleanStats, Cleanable, CleanerLimits, CompactionConfig};
pub use error::{Result, StorageError};
pub use groups::{CommittedOffset, GroupStore, GroupWrite, LoadedGroups, StateLog, StoredGroup, StoredOffset};
pub use health::DirHealth;
pub use log::{
    AppendBatch, AppendResult, FileRecords, LogStore, PartitionOffsets, PendingAppend, ReadLimit, ReadResult,
    RecordChunk, SegmentHandle, StorageConfig,
};
pub use segments::DEFAULT_SEGMENT_BYTES;
pub use space::DiskSpace;

/// A partition of a topic, named by the topic's id (so a topic deleted and created again
/// under the same name never sees the old data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic's 128-bit id.
    pub topic_id: [u8; 16],
    /// Partition index, >= 0.
    pub partition: i32,
}
