//! Fjord's controller: the cluster metadata (cluster id, brokers, topics, partitions, topic
//! configs) as a replicated state machine on [openraft](https://docs.rs/openraft/0.9), with the
//! Raft log, vote and snapshots in RocksDB.
//!
//! The metadata quorum is this node alone (the embedded default) or the voters of Kafka's
//! `controller.quorum.voters`, which talk over the controller listener (`network`). Every write
//! is a Raft log entry, validated when it is applied, so writes are linearizable and replay
//! deterministically; a follower hands its writes to the leader. The broker reads the latest
//! applied state with [`Controller::metadata`] or follows it with [`Controller::subscribe`].
//!
//! Layering: `protocol ← storage ← controller ← broker`. This crate may depend on nothing of
//! Fjord but `protocol` and `storage` below it (it currently uses neither). Its only sockets are
//! the controllers' own Raft transport; it knows nothing of Kafka request handling.
//!
//! Layout: `controller` (the public handle), `command` (commands and their deterministic
//! apply), `metadata` (the replicated types), `state_machine` and `store` (openraft storage on
//! RocksDB), `network` (the transport between controllers), `raft_types`, `error`.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type; boxing it in our
// helpers would only move the copy elsewhere, and these paths are not hot.
#![allow(clippy::result_large_err)]

mod balance;
mod command;
mod controller;
mod error;
pub mod features;
mod liveness;
mod membership;
mod metadata;
mod network;
mod placement;
mod quorum;
mod raft_types;
mod reassign;
mod state_machine;
mod store;

pub use uuid::Uuid;

pub use crate::command::{
    Election, ElectionOutcome, DEFAULT_NUM_PARTITIONS, DEFAULT_REPLICATION_FACTOR, MAX_PARTITIONS_PER_TOPIC,
    MAX_TOPIC_NAME_BYTES,
};
pub use crate::controller::{
    new_kafka_id, Controller, ControllerConfig, RaftStatus, Roles, DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
    DEFAULT_BROKER_SESSION_TIMEOUT_MS,
};
pub use crate::error::{ControllerError, Result};
pub use crate::features::UpgradeType;
pub use crate::metadata::{BrokerEndpoint, BrokerInfo, ClusterMetadata, ConfigOp, PartitionMeta, TopicMeta};
pub use crate::network::MAGIC as RAFT_PREAMBLE;
pub use crate::quorum::{QuorumDescription, VoterState};
