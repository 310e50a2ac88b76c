//! The openraft type configuration of the metadata quorum.

use std::io::Cursor;

use crate::command::{Command, CommandResponse};

/// Raft node id: Kafka's `node.id` as is (non-negative, checked in `Controller::open`).
pub(crate) type NodeId = i32;

openraft::declare_raft_types!(
    /// Types of Fjord's metadata Raft: commands in, apply results out, snapshots in memory
    /// (the whole metadata is a few MB at most, see `MAX_PARTITIONS_PER_TOPIC`).
    pub(crate) TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
