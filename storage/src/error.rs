//! Storage outcomes. The broker maps each to a per-partition Kafka error code.

/// What can go wrong in the partition store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The partition does not exist here (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("unknown partition")]
    UnknownPartition,
    /// The requested offset is outside `[log start, log end]` (`OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is outside the log (log start {log_start}, high watermark {high_watermark})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// First offset still in the log.
        log_start: i64,
        /// Offset after the last committed record.
        high_watermark: i64,
    },
    /// Bytes on disk that do not parse: a bug or a damaged disk; a human must look.
    #[error("corrupt data on disk: {0}")]
    Corruption(String),
    /// A segment file could not be written, read or synced (a full or failing disk).
    #[error("segment i/o: {0}")]
    Io(String),
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A producer's batch does not follow its last one (`OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A producer wrote with an epoch older than its current one (`INVALID_PRODUCER_EPOCH`).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A write that contradicts the producer's transaction state (`INVALID_TXN_STATE`).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator older than the one whose marker the producer
    /// last had (`TRANSACTION_COORDINATOR_FENCED`).
    #[error("transaction coordinator fenced: {0}")]
    CoordinatorFenced(String),
    /// Less than the reserve is free in the log directory, or a write ran out of space
    /// (`KAFKA_STORAGE_ERROR`, retried by producers); the directory stays online and takes
    /// data again once space is freed (see [`crate::space`]).
    #[error("no space: {0}")]
    NoSpace(String),
    /// The log directory went offline after a failed fsync or write (`KAFKA_STORAGE_ERROR`);
    /// see [`crate::health`].
    #[error("log directory offline: {0}")]
    Offline(String),
    /// A replicated batch that does not continue the log where it ends, or that does not
    /// parse (a follower's fetch answered with the wrong data).
    #[error("replicated batch refused: {0}")]
    ReplicaMismatch(String),
    /// A cleaning pass planned against a log that changed before it could be applied
    /// (retention, DeleteRecords or a truncation in between); the next pass starts over.
    #[error("cleaning superseded: {0}")]
    Superseded(String),
    /// The store is closing and takes no more writes.
    #[error("storage is shutting down")]
    ShuttingDown,
}

/// Result of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
