//! The metadata state machine: in memory, rebuilt on start from the latest snapshot plus a
//! replay of the committed log; snapshots are persisted in the `store` column family.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::command::{self, CommandResponse};
use crate::metadata::ClusterMetadata;
use crate::raft_types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::store::{blocking, MetaDb, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META};

/// The snapshot data: everything the state machine holds (serde_json).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    metadata: ClusterMetadata,
}

/// The serializing twin of [`SnapshotPayload`] (same JSON), borrowing the state so that a
/// snapshot does not deep-copy the metadata first.
#[derive(Serialize)]
struct SnapshotPayloadRef<'a> {
    last_applied: &'a Option<LogId>,
    last_membership: &'a StoredMembership,
    metadata: &'a ClusterMetadata,
}

/// A snapshot as persisted: its meta and its serialized [`SnapshotPayload`].
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn into_snapshot(self) -> Snapshot {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

/// Reads the current snapshot, if any. Blocking.
fn load_snapshot(db: &MetaDb) -> Result<Option<StoredSnapshot>, StorageError> {
    let read_err = |e: String| StorageError::from(StorageIOError::read_snapshot(None, AnyError::error(e)));
    let meta: Option<SnapshotMeta> = db.get_json(KEY_SNAPSHOT_META).map_err(read_err)?;
    let data = db.get_raw(KEY_SNAPSHOT_DATA).map_err(read_err)?;
    match (meta, data) {
        (None, None) => Ok(None),
        (Some(meta), Some(data)) => Ok(Some(StoredSnapshot { meta, data })),
        // Both keys are written in one atomic batch, so one without the other is corruption.
        _ => Err(read_err("snapshot meta and data are not both present".to_string())),
    }
}

/// Decodes snapshot data, checking it against its meta (the read half of the pair whose write
/// half is `build_snapshot` filling both from the same state).
fn decode_payload(meta: &SnapshotMeta, data: &[u8]) -> Result<SnapshotPayload, StorageError> {
    let payload: SnapshotPayload =
        serde_json::from_slice(data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
    if payload.last_applied != meta.last_log_id {
        return Err(StorageIOError::read_snapshot(
            Some(meta.signature()),
            AnyError::error(format!(
                "snapshot data is at {:?}, its meta at {:?}",
                payload.last_applied, meta.last_log_id
            )),
        )
        .into());
    }
    Ok(payload)
}

/// Persists `snapshot` as the current one. Blocking.
fn save_snapshot(db: &MetaDb, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
    let write_err = |e: String| {
        StorageError::from(StorageIOError::write_snapshot(
            Some(snapshot.meta.signature()),
            AnyError::error(e),
        ))
    };
    let meta = serde_json::to_vec(&snapshot.meta).map_err(|e| write_err(e.to_string()))?;
    let batch = db.store_batch(&[(KEY_SNAPSHOT_META, &meta), (KEY_SNAPSHOT_DATA, &snapshot.data)]);
    // Synced: openraft purges the log up to the snapshot right after this returns, so the
    // snapshot must be on disk first or a crash would lose the purged entries.
    db.write(batch, true).map_err(write_err)
}

/// Openraft's `RaftStateMachine`: owned by openraft's state machine task.
pub(crate) struct StateMachineStore {
    db: Arc<MetaDb>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Copy-on-write: shared with readers through `published`, cloned by the first apply after
    /// a publish.
    metadata: Arc<ClusterMetadata>,
    /// Every apply batch publishes the new state here (`Controller::subscribe`).
    published: watch::Sender<Arc<ClusterMetadata>>,
}

impl StateMachineStore {
    /// Restores the state machine from the current snapshot (or empty). Blocking.
    pub(crate) fn load(db: Arc<MetaDb>) -> Result<(Self, watch::Receiver<Arc<ClusterMetadata>>), StorageError> {
        let (last_applied, last_membership, metadata) = match load_snapshot(&db)? {
            Some(snapshot) => {
                let payload = decode_payload(&snapshot.meta, &snapshot.data)?;
                tracing::debug!(meta = %snapshot.meta, "state machine restored from snapshot");
                (payload.last_applied, payload.last_membership, payload.metadata)
            }
            None => (None, StoredMembership::default(), ClusterMetadata::default()),
        };
        let metadata = Arc::new(metadata);
        let (published, rx) = watch::channel(metadata.clone());
        Ok((
            Self {
                db,
                last_applied,
                last_membership,
                metadata,
                published,
            },
            rx,
        ))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return Ok(Vec::new());
        }
        let metadata = Arc::make_mut(&mut self.metadata);
        let mut responses = Vec::new();
        for entry in entries {
            assert!(
                self.last_applied.as_ref().is_none_or(|a| a.index < entry.log_id.index),
                "openraft applies in log order: {:?} then {}",
                self.last_applied,
                entry.log_id
            );
            tracing::debug!(log_id = %entry.log_id, "apply");
            // The leader that wrote the entry; its blank entry on election makes this the
            // current controller.
            metadata.controller_id = entry.log_id.leader_id.node_id;
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Done,
                EntryPayload::Normal(cmd) => command::apply(metadata, cmd),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::Done
                }
            };
            if let CommandResponse::Rejected(reason) = &response {
                tracing::debug!(log_id = %entry.log_id, ?reason, "command rejected");
            }
            self.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        self.published.send_replace(self.metadata.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            metadata: self.metadata.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let db = self.db.clone();
        let payload = blocking(move || {
            let payload = decode_payload(&stored.meta, &stored.data)?;
            save_snapshot(&db, &stored)?;
            Ok(payload)
        })
        .await?;
        tracing::debug!(%meta, "snapshot installed");
        self.last_applied = payload.last_applied;
        self.last_membership = payload.last_membership;
        self.metadata = Arc::new(payload.metadata);
        self.published.send_replace(self.metadata.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        let stored = blocking(move || load_snapshot(&db)).await?;
        Ok(stored.map(StoredSnapshot::into_snapshot))
    }
}

/// Builds a snapshot of the state as of `get_snapshot_builder`, off the state machine task.
pub(crate) struct SnapshotBuilder {
    db: Arc<MetaDb>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    metadata: Arc<ClusterMetadata>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.last_applied
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |l| l.to_string()),
                Uuid::new_v4().simple()
            ),
        };
        let last_membership = self.last_membership.clone();
        let metadata = self.metadata.clone();
        let db = self.db.clone();
        let stored = blocking(move || {
            let payload = SnapshotPayloadRef {
                last_applied: &meta.last_log_id,
                last_membership: &last_membership,
                metadata: &metadata,
            };
            let data =
                serde_json::to_vec(&payload).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
            let stored = StoredSnapshot { meta, data };
            save_snapshot(&db, &stored)?;
            Ok(stored)
        })
        .await?;
        tracing::debug!(meta = %stored.meta, bytes = stored.data.len(), "snapshot built");
        Ok(stored.into_snapshot())
    }
}
