//! The RocksDB metadata store and the Raft log on top of it.
//!
//! One RocksDB instance in the controller's data dir, two column families:
//! - `logs`: key = log index as u64 **big-endian** (so key order is log order and iteration
//!   returns entries in index order), value = serde_json of the openraft `Entry`;
//! - `store`: the small single-key records below (vote, committed, last purged, snapshot).
//!
//! Every RocksDB call runs in `spawn_blocking`: reads can hit the disk, writes can fsync, and
//! neither may stall a reactor thread.

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Column family of Raft log entries.
const CF_LOGS: &str = "logs";
/// Column family of single-key records.
const CF_STORE: &str = "store";

/// `store` key: on-disk format version, written when the store is created.
const KEY_FORMAT_VERSION: &[u8] = b"format_version";
/// `store` key: the Raft vote (json `Vote`).
pub(crate) const KEY_VOTE: &[u8] = b"vote";
/// `store` key: the last committed log id (json `LogId`), so a restart re-applies promptly.
const KEY_COMMITTED: &[u8] = b"committed";
/// `store` key: the last purged log id (json `LogId`); logs at or below it are gone.
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// `store` key: metadata of the current snapshot (json `SnapshotMeta`).
pub(crate) const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
/// `store` key: data of the current snapshot (json `SnapshotPayload`).
pub(crate) const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// Version of the on-disk layout described in the module doc. Bump on incompatible changes.
const FORMAT_VERSION: u32 = 1;

/// How long `open` keeps retrying a store whose RocksDB lock is held. A `Controller` dropped
/// without `shutdown` closes its store on the runtime's own time (when its Raft tasks notice),
/// so a reopen in the same process can race it by a few milliseconds.
const DB_LOCK_WAIT_MS: u64 = 5_000;
/// Pause between two attempts to take the RocksDB lock.
const DB_LOCK_RETRY_MS: u64 = 2;

/// Number of RocksDB info LOG files kept in the data dir (one per open, by default unbounded).
const KEEP_INFO_LOG_FILES: usize = 4;

/// The RocksDB instance shared by the log store and the state machine.
pub(crate) struct MetaDb {
    /// Declared first so that it is dropped (the DB closed) before `_closed` below.
    db: DB,
    /// Dropped right after `db`: receivers of [`MetaDb::open`]'s channel see it close once the
    /// RocksDB instance is closed, which is how `Controller::shutdown` waits for it.
    _closed: watch::Sender<()>,
}

/// Memtable size of the metadata column families.
const METADATA_WRITE_BUFFER_BYTES: usize = 4 << 20;

impl MetaDb {
    /// Opens (creating if missing) the store in `dir`. Blocking: call from `spawn_blocking`.
    ///
    /// Returns the store and a receiver whose `changed()` fails once the store is closed.
    pub(crate) fn open(dir: &Path) -> Result<(MetaDb, watch::Receiver<()>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(KEEP_INFO_LOG_FILES);
        let deadline = Instant::now() + Duration::from_millis(DB_LOCK_WAIT_MS);
        let db = loop {
            // The unused default column family too, which the crate would otherwise open with
            // default options: the WAL's preallocation follows the largest memtable.
            let cfs = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, CF_LOGS, CF_STORE].map(|name| {
                // Metadata is small: RocksDB's default 64 MiB memtables would only make it
                // preallocate a WAL of some 70 MiB on disk, space a full disk lacks.
                let mut cf = Options::default();
                cf.set_write_buffer_size(METADATA_WRITE_BUFFER_BYTES);
                ColumnFamilyDescriptor::new(name, cf)
            });
            match DB::open_cf_descriptors(&opts, dir, cfs) {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(DB_LOCK_RETRY_MS));
                }
                Err(e) => return Err(format!("cannot open {}: {e}", dir.display())),
            }
        };
        let (closed_tx, closed_rx) = watch::channel(());
        let meta_db = MetaDb { db, _closed: closed_tx };
        meta_db.check_format(dir)?;
        Ok((meta_db, closed_rx))
    }

    /// Writes the format version into a new store, or checks the one found.
    fn check_format(&self, dir: &Path) -> Result<(), String> {
        let found: Option<u32> = self
            .get_json(KEY_FORMAT_VERSION)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        match found {
            Some(FORMAT_VERSION) => Ok(()),
            Some(v) => Err(format!(
                "{}: metadata store format {v}, this build reads {FORMAT_VERSION}",
                dir.display()
            )),
            None => self
                .put_json(KEY_FORMAT_VERSION, &FORMAT_VERSION, true)
                .map_err(|e| format!("{}: {e}", dir.display())),
        }
    }

    fn logs(&self) -> &ColumnFamily {
        self.db
            .cf_handle(CF_LOGS)
            .expect("`logs` exists: MetaDb::open is the only constructor and opens it")
    }

    fn store(&self) -> &ColumnFamily {
        self.db
            .cf_handle(CF_STORE)
            .expect("`store` exists: MetaDb::open is the only constructor and opens it")
    }

    /// Reads and decodes one `store` record; undecodable bytes are an error, never a panic.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, String> {
        let Some(bytes) = self.db.get_pinned_cf(self.store(), key).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("corrupt record {}: {e}", String::from_utf8_lossy(key)))
    }

    /// Reads one raw `store` record.
    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.db.get_cf(self.store(), key).map_err(|e| e.to_string())
    }

    /// Writes one `store` record; with `sync`, the WAL is fsynced before this returns.
    pub(crate) fn put_json<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.store(), key, bytes);
        self.write(batch, sync)
    }

    /// Writes a batch atomically; with `sync`, the WAL is fsynced before this returns.
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), String> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(|e| e.to_string())
    }

    /// A batch putting `(key, value)` pairs into the `store` CF.
    pub(crate) fn store_batch(&self, records: &[(&[u8], &[u8])]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (k, v) in records {
            batch.put_cf(self.store(), k, v);
        }
        batch
    }

    /// Syncs the WAL and flushes the memtables to SST files, so that the next open has no WAL
    /// to replay.
    pub(crate) fn flush(&self) -> Result<(), String> {
        self.db.flush_wal(true).map_err(|e| e.to_string())?;
        self.db
            .flush_cfs_opt(&[self.logs(), self.store()], &rocksdb::FlushOptions::default())
            .map_err(|e| e.to_string())
    }

    /// Reads log entries with index in `[start, end)` (`end = None`: to the last one), checking
    /// that each key matches its entry's index and that indexes are consecutive.
    pub(crate) fn read_logs(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        let from = start.to_be_bytes();
        let iter = self
            .db
            .iterator_cf(self.logs(), IteratorMode::From(&from, rocksdb::Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = decode_log_key(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry = decode_entry(index, &value)?;
            if let Some(prev) = entries.last().map(|e: &Entry| e.log_id.index) {
                if prev + 1 != index {
                    return Err(StorageIOError::read_log_at_index(
                        index,
                        AnyError::error(format!("hole in the log: {prev} is followed by {index}")),
                    )
                    .into());
                }
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Id of the last log entry, if any.
    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some(item) = self.db.iterator_cf(self.logs(), IteratorMode::End).next() else {
            return Ok(None);
        };
        let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
        let index = decode_log_key(&key)?;
        Ok(Some(decode_entry(index, &value)?.log_id))
    }
}

#[cfg(test)]
impl MetaDb {
    /// Overwrites the raw value of log entry `index` (to plant corruption).
    pub(crate) fn put_raw_log(&self, index: u64, value: &[u8]) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.logs(), log_key(index), value);
        self.write(batch, true)
    }
}

/// RocksDB reports a held `LOCK` file as an IO error whose text names the lock.
fn is_lock_error(e: &rocksdb::Error) -> bool {
    e.to_string().to_ascii_lowercase().contains("lock")
}

/// The key of log index `index`: big-endian, so that byte order is index order.
fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode_log_key(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StorageIOError::read_logs(AnyError::error(format!("log key of {} bytes, want 8", key.len()))))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Decodes the entry stored under `index`, checking that it is the entry for that index (the
/// read half of the pair whose write half is `append` keying by `entry.log_id.index`).
fn decode_entry(index: u64, value: &[u8]) -> Result<Entry, StorageError> {
    let entry: Entry = serde_json::from_slice(value).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
    if entry.log_id.index != index {
        return Err(StorageIOError::read_log_at_index(
            index,
            AnyError::error(format!("entry stored under index {index} has log id {}", entry.log_id)),
        )
        .into());
    }
    Ok(entry)
}

/// Runs blocking store work off the reactor. A panicking closure becomes a storage error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        StorageError::from(StorageIOError::write(AnyError::error(format!(
            "metadata store task failed: {e}"
        ))))
    })?
}

/// Opens the store off the reactor.
pub(crate) async fn open_db(dir: PathBuf) -> Result<(Arc<MetaDb>, watch::Receiver<()>), String> {
    tokio::task::spawn_blocking(move || MetaDb::open(&dir).map(|(db, rx)| (Arc::new(db), rx)))
        .await
        .map_err(|e| format!("metadata store open task failed: {e}"))?
}

/// The Raft log and vote: openraft's `RaftLogStorage` on [`MetaDb`]. Cheap to clone; the clone
/// is also the log reader used by replication.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<MetaDb>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<MetaDb>) -> Self {
        Self { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        // openraft asks for `last applied + 1 ..= committed`: an end before the start means the
        // committed index went back, which only a log that diverged from what this node applied
        // can cause. Say so, rather than answer nothing and let openraft index an empty list.
        if end.is_some_and(|end| end < start) {
            return Err(StorageIOError::read_logs(AnyError::error(format!(
                "log entries {start}..{} asked for: the committed log went back past what was applied",
                end.unwrap_or_default()
            )))
            .into());
        }
        let db = self.db.clone();
        blocking(move || db.read_logs(start, end)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged_log_id: Option<LogId> = db
                .get_json(KEY_LAST_PURGED)
                .map_err(|e| StorageIOError::read_logs(AnyError::error(e)))?;
            let last_log_id = db.last_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || {
            // The vote must be on disk before this returns: a node that forgets its vote after a
            // crash could vote twice in one term. `sync = true` fsyncs the WAL in this call.
            db.put_json(KEY_VOTE, &vote, true)
                .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            db.get_json(KEY_VOTE)
                .map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            // Not synced: a committed id lost in a crash only means the restarted leader
            // re-commits its (synced) log before applying it; it is never ahead of the log.
            db.put_json(KEY_COMMITTED, &committed, false)
                .map_err(|e| StorageIOError::write(AnyError::error(e)).into())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let committed: Option<Option<LogId>> = db
                .get_json(KEY_COMMITTED)
                .map_err(|e| StorageIOError::read(AnyError::error(e)))?;
            Ok(committed.flatten())
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut last = None;
        for entry in entries {
            let value = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.put_cf(self.db.logs(), log_key(entry.log_id.index), value);
            last = Some(entry.log_id);
        }
        let db = self.db.clone();
        // The entries must be on disk before `callback` reports them flushed: Raft counts this
        // node's copy towards the commit quorum, and an acknowledged write must survive a crash.
        // `sync = true` fsyncs the WAL in this call, and awaiting it here keeps all log writes
        // in order (openraft requires serialized IO) and makes the entries readable on return.
        blocking(move || {
            db.write(batch, true).map_err(|e| {
                let err = AnyError::error(e);
                match last {
                    Some(log_id) => StorageIOError::write_log_entry(log_id, err),
                    None => StorageIOError::write_logs(err),
                }
                .into()
            })
        })
        .await?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncate raft log from here on");
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(db.logs(), log_key(log_id.index), log_key(u64::MAX));
            // Synced so that conflicting entries cannot reappear after a crash.
            db.write(batch, true)
                .map_err(|e| StorageIOError::write_logs(AnyError::error(e)).into())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purge raft log up to here");
        let db = self.db.clone();
        blocking(move || {
            let purged = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
            let mut batch = WriteBatch::default();
            batch.put_cf(db.store(), KEY_LAST_PURGED, purged);
            batch.delete_range_cf(db.logs(), log_key(0), log_key(log_id.index.saturating_add(1)));
            // One atomic batch: the purge mark and the deletion are seen together or not at all.
            // Not synced: losing a purge in a crash only keeps entries that are already in the
            // (synced) snapshot.
            db.write(batch, false)
                .map_err(|e| StorageIOError::write_logs(AnyError::error(e)).into())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_like_indexes() {
        let mut keys: Vec<[u8; 8]> = [256u64, 1, 255, 0, u64::MAX, 65_536]
            .iter()
            .map(|i| log_key(*i))
            .collect();
        keys.sort();
        let indexes: Vec<u64> = keys.iter().map(|k| u64::from_be_bytes(*k)).collect();
        assert_eq!(indexes, vec![0, 1, 255, 256, 65_536, u64::MAX]);
    }

    #[test]
    fn corrupt_log_records_are_errors() {
        assert!(decode_log_key(&[1, 2, 3]).is_err());
        assert!(decode_entry(3, b"{not json").is_err());
    }
}
