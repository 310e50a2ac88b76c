//! Broker-level errors, and the one place storage and controller errors become Kafka codes.

use fjord_controller::ControllerError;
use fjord_storage::StorageError;
use kafka_protocol::error::ResponseError;

/// What stops the broker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Startup could not complete (bind, directories, tasks).
    #[error("{0}")]
    Startup(String),
    /// The log directory went offline while serving (a failed fsync or write).
    #[error("the log directory {dir} is offline after an I/O error: {reason}")]
    LogDirOffline {
        /// `log.dirs`.
        dir: String,
        /// The first failure.
        reason: String,
    },
    /// The partition store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The metadata controller failed.
    #[error("controller: {0}")]
    Controller(#[from] ControllerError),
}

/// The Kafka error for a storage outcome, per partition.
pub fn storage_error_code(e: &StorageError) -> ResponseError {
    match e {
        StorageError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        StorageError::Superseded(_) => ResponseError::UnknownServerError,
        StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        StorageError::CoordinatorFenced(_) => ResponseError::TransactionCoordinatorFenced,
        StorageError::ReplicaMismatch(_) => ResponseError::CorruptMessage,
        // Already logged once, when the directory went offline.
        StorageError::Offline(_) => ResponseError::KafkaStorageError,
        // Logged once when the disk fills up, and counted (see fjord_storage::space).
        StorageError::NoSpace(_) => ResponseError::KafkaStorageError,
        StorageError::Corruption(_) | StorageError::Rocks(_) | StorageError::Io(_) => {
            tracing::error!(error = %e, "storage failure answered as KAFKA_STORAGE_ERROR");
            ResponseError::KafkaStorageError
        }
    }
}

/// The Kafka error for a controller outcome.
pub fn controller_error_code(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ControllerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        ControllerError::DuplicateVoter(_) => ResponseError::DuplicateVoter,
        ControllerError::VoterNotFound(_) => ResponseError::VoterNotFound,
        ControllerError::TimedOut(_) => ResponseError::RequestTimedOut,
        ControllerError::NotController(_) => ResponseError::NotController,
        ControllerError::ShuttingDown => ResponseError::RequestTimedOut,
        ControllerError::Storage(_) | ControllerError::Raft(_) => {
            tracing::error!(error = %e, "controller failure answered as UNKNOWN_SERVER_ERROR");
            ResponseError::UnknownServerError
        }
    }
}
