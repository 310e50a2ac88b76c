//! The controller's error type: one variant per domain state the broker has to map to a Kafka
//! error code, plus the operating errors of the store and of Raft.

use crate::command::ApplyError;

/// Errors returned by [`Controller`](crate::Controller).
///
/// The first five variants are client errors decided by the state machine (or by the cheap
/// stateless checks before a command is proposed); the broker maps them per topic to Kafka error
/// codes. The rest are operating errors of this node.
#[derive(thiserror::Error, Debug)]
pub enum ControllerError {
    /// CreateTopics for a name that is already taken (`TOPIC_ALREADY_EXISTS`).
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// The named topic does not exist (`UNKNOWN_TOPIC_OR_PARTITION`).
    #[error("This server does not host this topic: {0}")]
    UnknownTopic(String),
    /// Invalid partition count (`INVALID_PARTITIONS`); the message is Kafka's wording.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Invalid replication factor (`INVALID_REPLICATION_FACTOR`); the message is Kafka's wording.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A topic name refused for what else exists (`INVALID_TOPIC_EXCEPTION`).
    #[error("{0}")]
    InvalidTopic(String),
    /// Any other malformed request (`INVALID_REQUEST`).
    #[error("{0}")]
    InvalidRequest(String),
    /// An ISR change from a leader that is no longer the leader of the epoch in force
    /// (`FENCED_LEADER_EPOCH`).
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// An ISR change based on an ISR that changed meanwhile (`INVALID_UPDATE_VERSION`).
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// An ISR change naming a replica that cannot join (`INELIGIBLE_REPLICA`).
    #[error("{0}")]
    IneligibleReplica(String),
    /// A replica assignment Kafka would refuse (`INVALID_REPLICA_ASSIGNMENT`).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A cancel for a partition that is not moving (`NO_REASSIGNMENT_IN_PROGRESS`).
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// AddRaftVoter for a node that already votes (`DUPLICATE_VOTER`).
    #[error("{0}")]
    DuplicateVoter(String),
    /// RemoveRaftVoter for a node that does not vote (`VOTER_NOT_FOUND`).
    #[error("{0}")]
    VoterNotFound(String),
    /// A quorum change that could not finish in time, or met another under way
    /// (`REQUEST_TIMED_OUT`).
    #[error("{0}")]
    TimedOut(String),
    /// No controller leader could take the write or read (an election, an unreachable leader);
    /// the text says why (`NOT_CONTROLLER`, which Kafka clients retry).
    #[error("no active controller: {0}")]
    NotController(String),
    /// The RocksDB metadata store failed or holds data it cannot decode.
    #[error("metadata store: {0}")]
    Storage(String),
    /// Raft failed for a reason other than storage (e.g. it panicked or could not elect).
    #[error("raft: {0}")]
    Raft(String),
    /// The controller has been shut down (or its Raft core stopped).
    #[error("the controller is shutting down")]
    ShuttingDown,
}

/// Result alias with [`ControllerError`] as the default error.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

impl From<ApplyError> for ControllerError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::TopicAlreadyExists(name) => ControllerError::TopicAlreadyExists(name),
            ApplyError::InvalidTopic(msg) => ControllerError::InvalidTopic(msg),
            ApplyError::UnknownTopic(name) => ControllerError::UnknownTopic(name),
            ApplyError::InvalidPartitions(msg) => ControllerError::InvalidPartitions(msg),
            ApplyError::InvalidReplicationFactor(msg) => ControllerError::InvalidReplicationFactor(msg),
            ApplyError::InvalidRequest(msg) => ControllerError::InvalidRequest(msg),
            ApplyError::FencedLeaderEpoch(msg) => ControllerError::FencedLeaderEpoch(msg),
            ApplyError::InvalidUpdateVersion(msg) => ControllerError::InvalidUpdateVersion(msg),
            ApplyError::IneligibleReplica(msg) => ControllerError::IneligibleReplica(msg),
            ApplyError::InvalidReplicaAssignment(msg) => ControllerError::InvalidReplicaAssignment(msg),
            ApplyError::NoReassignmentInProgress(msg) => ControllerError::NoReassignmentInProgress(msg),
        }
    }
}
