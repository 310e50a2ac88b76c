//! Record batches in segment files; RocksDB holds where each batch is.
//!
//! A batch's bytes are written exactly once, at append, to the end of its partition's active
//! segment file (`<dir>/<topic id hex>-<partition>/<base offset>.log`, Kafka's layout). The
//! `batches` column family maps `(partition, base offset)` to a [`Locator`]: segment, position,
//! length, and the header facts that reads, retention and recovery need without touching the
//! file. Before this, batches went through RocksDB's WAL, its memtable and then a blob file at
//! flush: three writes and two checksums of every byte where the log needs one write.
//!
//! Ordering is what makes it crash-safe. The writer thread writes the batch to the segment
//! before it puts the locator in the RocksDB write that also carries offsets and producer
//! state; nothing is acknowledged before that write returns. A `kill -9` leaves both in the
//! page cache. Bytes past the last locator were never acknowledged: recovery cuts them off.
//! With a flush policy (`log.flush.interval.*`) the segments are fsynced before the WAL, so a
//! synced locator never points at unsynced bytes; without one a power loss may lose both,
//! and recovery drops locators whose bytes did not make it (as Kafka truncates its log to the
//! last valid batch).
//!
//! Readers share the segment files (`pread` needs no cursor); a segment deleted by retention
//! while a read holds it stays readable until the read is done.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use fjord_protocol::batch::{BatchHeader, LOG_OVERHEAD_BYTES};

use crate::error::{Result, StorageError};
use crate::health::DirHealth;
use crate::keys::Doomed;
use crate::space::{is_out_of_space, DiskSpace};
use crate::PartitionId;

/// First byte of a locator value. A stored batch (an older store kept batches inline) starts
/// with its base offset, a non-negative big-endian i64, so its first byte is below 0x80.
const LOCATOR_TAG: u8 = 0xFF;

/// Suffix of a segment the cleaner is writing, before it is swapped in.
const CLEANED_SUFFIX: &str = ".cleaned";

/// Cleaned segments to put in place of the ones they replace: recorded in the index's write
/// that points at them (so a crash between that write and the renames is finished at start).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CleanedSwap {
    pub groups: Vec<CleanedGroup>,
}

/// One cleaned file and the files it replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CleanedGroup {
    /// Its name: the name of the first file it replaces.
    pub name: i64,
    /// The names of the files it replaces, `name` first.
    pub inputs: Vec<i64>,
    /// Its length.
    pub len: u64,
}

/// The recovery checkpoint, in the segments directory (Kafka's recovery-point-offset-checkpoint).
const CHECKPOINT_FILE: &str = "recovery-checkpoint";

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;

/// Where a batch is stored and what readers need to know of it without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locator {
    /// Base offset of the segment file holding the batch.
    pub segment: i64,
    /// Byte position of the batch in that file.
    pub position: u64,
    /// Bytes of the batch, its 12-byte log overhead included.
    pub len: u32,
    /// The batch's last offset minus its base offset.
    pub last_offset_delta: i32,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Leader epoch the batch was written in.
    pub leader_epoch: i32,
}

impl Locator {
    pub const BYTES: usize = 37;

    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut v = [0u8; Self::BYTES];
        v[0] = LOCATOR_TAG;
        v[1..9].copy_from_slice(&self.segment.to_be_bytes());
        v[9..17].copy_from_slice(&self.position.to_be_bytes());
        v[17..21].copy_from_slice(&self.len.to_be_bytes());
        v[21..25].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        v[25..33].copy_from_slice(&self.max_timestamp.to_be_bytes());
        v[33..37].copy_from_slice(&self.leader_epoch.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Locator> {
        if v.len() != Self::BYTES || v[0] != LOCATOR_TAG {
            return None;
        }
        Some(Locator {
            segment: i64::from_be_bytes(v[1..9].try_into().ok()?),
            position: u64::from_be_bytes(v[9..17].try_into().ok()?),
            len: u32::from_be_bytes(v[17..21].try_into().ok()?),
            last_offset_delta: i32::from_be_bytes(v[21..25].try_into().ok()?),
            max_timestamp: i64::from_be_bytes(v[25..33].try_into().ok()?),
            leader_epoch: i32::from_be_bytes(v[33..37].try_into().ok()?),
        })
    }

    /// Position just past the batch.
    pub fn end(&self) -> u64 {
        self.position + u64::from(self.len)
    }
}

/// A value of the `batches` column family: a locator, or a whole batch kept inline by a store
/// written before segment files.
#[derive(Debug, Clone)]
pub(crate) enum Stored<'a> {
    File(Locator),
    Inline(&'a [u8], BatchHeader),
}

impl<'a> Stored<'a> {
    pub fn parse(v: &'a [u8]) -> Result<Stored<'a>> {
        if v.first() == Some(&LOCATOR_TAG) {
            return Locator::decode(v)
                .map(Stored::File)
                .ok_or_else(|| StorageError::Corruption("malformed batch locator".into()));
        }
        let h = BatchHeader::parse(v).map_err(|e| StorageError::Corruption(e.to_string()))?;
        debug_assert!(v.len() >= LOG_OVERHEAD_BYTES);
        Ok(Stored::Inline(v, h))
    }

    /// Bytes of the batch.
    pub fn len(&self) -> usize {
        match self {
            Stored::File(l) => l.len as usize,
            Stored::Inline(v, _) => v.len(),
        }
    }

    /// Last offset of the batch whose key says it starts at `base`.
    pub fn last_offset(&self, base: i64) -> i64 {
        match self {
            Stored::File(l) => base + i64::from(l.last_offset_delta),
            Stored::Inline(_, h) => h.last_offset(),
        }
    }

    pub fn max_timestamp(&self) -> i64 {
        match self {
            Stored::File(l) => l.max_timestamp,
            Stored::Inline(_, h) => h.max_timestamp,
        }
    }
}

/// One segment file, shared by the writer and readers.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    file: File,
    path: PathBuf,
    /// Offset of its first batch (its name).
    base: i64,
    /// Written since its last fsync.
    dirty: AtomicBool,
    /// Bytes written so far (the writer's append cursor).
    written: AtomicU64,
    /// Bytes known to be on disk: what the last successful fsync covered. Recovery trusts
    /// what the checkpoint says was synced and validates every batch after it.
    synced: AtomicU64,
    /// No longer appended to: the background checkpoint fsyncs it (Kafka flushes a segment
    /// when it rolls), which bounds what recovery has to validate.
    rolled: AtomicBool,
}

impl SegmentFile {
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn base(&self) -> i64 {
        self.base
    }

    /// Bytes written to it.
    pub fn len(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Makes the file exactly `len` bytes long, with the append cursor at its end: after
    /// recovery, and to cut off a write that failed or whose group did not commit.
    fn cut_to(&self, len: u64) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.set_len(len)?;
        (&self.file).seek(std::io::SeekFrom::Start(len)).map(|_| ())
    }

    /// No retry on failure: the caller takes the directory offline (see [`crate::health`]).
    fn sync(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            // Whatever was written before the fsync started is covered by it.
            let written = self.written.load(Ordering::Acquire);
            self.file.sync_data()?;
            self.synced.fetch_max(written, Ordering::AcqRel);
        }
        Ok(())
    }

    fn new(file: File, path: PathBuf, base: i64, len: u64, dirty: bool) -> SegmentFile {
        SegmentFile {
            file,
            path,
            base,
            dirty: AtomicBool::new(dirty),
            written: AtomicU64::new(len),
            synced: AtomicU64::new(0),
            rolled: AtomicBool::new(false),
        }
    }
}

type Files = BTreeMap<i64, Arc<SegmentFile>>;

/// Every partition's segment files. Shared by the writer thread (which alone adds, grows and
/// deletes them), readers and the periodic flusher.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
    parts: RwLock<HashMap<PartitionId, Files>>,
    /// Partition directories created since the last sync (their entries must reach the disk
    /// with the files in them).
    new_dirs: std::sync::Mutex<Vec<PathBuf>>,
    health: Arc<DirHealth>,
    space: Arc<DiskSpace>,
    /// Per-partition rolling (topic `segment.bytes` and `segment.ms`), where set.
    rolls: RwLock<HashMap<PartitionId, Roll>>,
    /// Held shared by a reader from the moment it reads locators from the index until it has
    /// the segment files they name, and exclusively by the writer while it swaps cleaned
    /// segments in: a cleaned file takes the name of the first file it replaces, so a locator
    /// read before the swap must not be resolved to a file installed after it.
    swap: RwLock<()>,
    #[cfg(test)]
    pub(crate) fail: FailPoints,
}

/// When a partition's active segment rolls (Kafka's `segment.bytes` and `segment.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roll {
    /// Largest segment.
    pub bytes: u64,
    /// Longest time between the first batch of a segment and a new one, by their timestamps
    /// (Kafka's rule); `None` for no limit.
    pub ms: Option<i64>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {e}", path.display()))
}

impl Segments {
    pub fn open(dir: PathBuf, segment_bytes: u64, health: Arc<DirHealth>) -> Result<Segments> {
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        let space = Arc::new(DiskSpace::new(dir.clone()));
        space.look();
        Ok(Segments {
            dir,
            segment_bytes: segment_bytes.max(1),
            parts: RwLock::new(HashMap::new()),
            new_dirs: std::sync::Mutex::new(Vec::new()),
            health,
            space,
            rolls: RwLock::new(HashMap::new()),
            swap: RwLock::new(()),
            #[cfg(test)]
            fail: FailPoints::default(),
        })
    }

    pub fn health(&self) -> &Arc<DirHealth> {
        &self.health
    }

    pub fn space(&self) -> &Arc<DiskSpace> {
        &self.space
    }

    /// Removes the partition's `.cleaned` files: a cleaning pass that failed.
    pub fn remove_cleaned(&self, pid: &PartitionId) {
        self.remove_stale_cleaned(&self.partition_dir(pid));
    }

    /// Sets how a partition's segments roll; the broker's `log.segment.bytes` otherwise.
    pub fn set_roll(&self, pid: &PartitionId, roll: Roll) {
        let mut rolls = self.rolls.write().unwrap_or_else(|p| p.into_inner());
        if rolls.get(pid) != Some(&roll) {
            rolls.insert(*pid, roll);
        }
    }

    fn roll(&self, pid: &PartitionId) -> Roll {
        let rolls = self.rolls.read().unwrap_or_else(|p| p.into_inner());
        rolls.get(pid).copied().unwrap_or(Roll {
            bytes: self.segment_bytes,
            ms: None,
        })
    }

    /// Shared while locators read from the index are resolved to files (see `swap`).
    pub fn read_guard(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.swap.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive while cleaned segments are swapped in.
    pub fn swap_guard(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.swap.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition's segment files, by name.
    pub fn files_of(&self, pid: &PartitionId) -> BTreeMap<i64, Arc<SegmentFile>> {
        let parts = self.parts.read().unwrap_or_else(|p| p.into_inner());
        parts.get(pid).cloned().unwrap_or_default()
    }

    /// Fsyncs a partition's directory (new entries in it reach the disk).
    pub fn sync_partition_dir(&self, pid: &PartitionId) -> Result<()> {
        let dir = self.partition_dir(pid);
        File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("cannot sync", &dir, e))
    }

    /// Where the cleaner writes the segment that will replace the one named `base`.
    pub fn cleaned_path(&self, pid: &PartitionId, base: i64) -> PathBuf {
        let mut p = self.segment_file_path(pid, base).into_os_string();
        p.push(CLEANED_SUFFIX);
        PathBuf::from(p)
    }

    /// Puts cleaned segments in place of the ones they replace, once the index points into
    /// them: each output file (written and fsynced at its `.cleaned` path) is renamed to its
    /// name, which is the name of the first file it replaces, and the other replaced files are
    /// deleted. Readers holding the old files keep reading them. Also what recovery does with
    /// a swap that the index committed but a crash interrupted, where some of it may be done.
    pub fn install_cleaned(&self, pid: &PartitionId, swap: &CleanedSwap) -> Result<()> {
        let dir = self.partition_dir(pid);
        for g in &swap.groups {
            let tmp = self.cleaned_path(pid, g.name);
            let path = Self::segment_path(&dir, g.name);
            match std::fs::rename(&tmp, &path) {
                Ok(()) => {}
                // Renamed before a crash.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.health.fail(io_err("cannot rename", &tmp, e))),
            }
            for old in g.inputs.iter().filter(|b| **b != g.name) {
                let p = Self::segment_path(&dir, *old);
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(self.health.fail(io_err("cannot remove", &p, e)))
                    }
                    _ => {}
                }
            }
        }
        File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| self.health.fail(io_err("cannot sync", &dir, e)))?;
        Ok(())
    }

    /// Swaps the open files of a committed cleaning: the replaced files leave the map, the
    /// cleaned ones (already renamed into place by [`Segments::install_cleaned`]) enter it.
    fn swap_open_files(&self, pid: &PartitionId, swap: &CleanedSwap) -> Result<()> {
        let dir = self.partition_dir(pid);
        let mut opened = Vec::new();
        for g in &swap.groups {
            let path = Self::segment_path(&dir, g.name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| self.health.fail(io_err("cannot open", &path, e)))?;
            let f = SegmentFile::new(file, path, g.name, g.len, false);
            f.synced.store(g.len, Ordering::Release);
            f.rolled.store(true, Ordering::Release);
            opened.push((g, Arc::new(f)));
        }
        let mut parts = self.write_parts();
        let files = parts.entry(*pid).or_default();
        for (g, f) in opened {
            for old in &g.inputs {
                files.remove(old);
            }
            files.insert(g.name, f);
        }
        Ok(())
    }

    /// Removes `.cleaned` files that no committed swap names: a cleaning cut short.
    pub fn remove_stale_cleaned(&self, pid_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(pid_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.ends_with(CLEANED_SUFFIX)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn fail_point(&self, _name: &'static str) -> std::io::Result<()> {
        #[cfg(test)]
        self.fail.hit(_name)?;
        Ok(())
    }

    fn partition_dir(&self, pid: &PartitionId) -> PathBuf {
        let hex: String = pid.topic_id.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}", pid.partition))
    }

    fn segment_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(format!("{base:020}.log"))
    }

    /// Where a partition's segment named `base` is (or would be).
    pub fn segment_file_path(&self, pid: &PartitionId, base: i64) -> PathBuf {
        Self::segment_path(&self.partition_dir(pid), base)
    }

    /// Partitions that have a directory here, for recovery to match against its rows.
    pub fn on_disk(&self) -> Result<Vec<(PartitionId, PathBuf)>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err("cannot list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(parse_partition_dir) else {
                continue;
            };
            out.push((pid, entry.path()));
        }
        Ok(out)
    }

    /// The segment files of a partition on disk, by base offset, with their lengths.
    pub fn files_on_disk(&self, pid: &PartitionId) -> Result<BTreeMap<i64, u64>> {
        let dir = self.partition_dir(pid);
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("cannot list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
            let name = entry.file_name();
            let Some(base) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(|e| io_err("cannot stat", &entry.path(), e))?
                .len();
            out.insert(base, len);
        }
        Ok(out)
    }

    /// Recovery: makes a partition's files (`on_disk`, from [`Segments::files_on_disk`]) what
    /// the index says. `keep` is the last indexed batch's segment and end, `None` when the index
    /// holds no batch of it. Files after that segment and bytes after that end were never
    /// acknowledged and go; the rest is opened. Returns the active segment (base, length) to
    /// append to.
    pub fn restore(
        &self,
        pid: &PartitionId,
        on_disk: &BTreeMap<i64, u64>,
        keep: Option<(i64, u64)>,
    ) -> Result<Option<(i64, u64)>> {
        let dir = self.partition_dir(pid);
        let mut files = Files::new();
        let mut active = None;
        for (&base, &len) in on_disk {
            let path = Self::segment_path(&dir, base);
            let keep_file = keep.is_some_and(|(seg, _)| base <= seg);
            if !keep_file {
                std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, e))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("cannot open", &path, e))?;
            if let Some((seg, end)) = keep.filter(|(seg, _)| *seg == base) {
                if len > end {
                    tracing::warn!(segment = %path.display(), bytes = len - end, "cutting unacknowledged bytes off the end of a segment");
                    file.set_len(end).map_err(|e| io_err("cannot truncate", &path, e))?;
                }
                active = Some((seg, end.min(len)));
            }
            // The active segment is the one just cut to the index's end; every other is rolled.
            let (len, rolled) = match active {
                Some((seg, end)) if seg == base => (end, false),
                _ => (len, true),
            };
            // Dirty until the first sync after recovery: recovery cannot know what reached
            // the disk before the restart, only that these bytes are valid.
            let f = SegmentFile::new(file, path, base, len, true);
            f.rolled.store(rolled, Ordering::Release);
            files.insert(base, Arc::new(f));
        }
        if !files.is_empty() {
            self.write_parts().insert(*pid, files);
        }
        Ok(active)
    }

    /// Removes the directory of a partition that no longer exists.
    pub fn remove_dir(&self, path: &Path) {
        if let Err(e) = std::fs::remove_dir_all(path) {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove a deleted partition's segments");
        }
    }

    fn write_parts(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PartitionId, Files>> {
        self.parts.write().unwrap_or_else(|p| p.into_inner())
    }

    /// An open segment, `None` when retention deleted it.
    pub fn file(&self, pid: &PartitionId, segment: i64) -> Option<Arc<SegmentFile>> {
        let parts = self.parts.read().unwrap_or_else(|p| p.into_inner());
        parts.get(pid)?.get(&segment).cloned()
    }

    #[cfg(test)]
    fn read_into(&self, pid: &PartitionId, segment: i64, position: u64, out: &mut [u8]) -> Result<bool> {
        let Some(f) = self.file(pid, segment) else {
            return Ok(false);
        };
        std::os::unix::fs::FileExt::read_exact_at(&f.file, out, position)
            .map_err(|e| io_err("cannot read", &f.path, e))?;
        Ok(true)
    }

    /// Fsyncs every file written since its last sync, and new partition directories. A
    /// failure takes the directory offline: nothing written before it can be called durable.
    pub fn sync_dirty(&self) -> Result<()> {
        self.health.check()?;
        self.sync_dirty_once().map_err(|e| self.health.fail(e))
    }

    /// Fsyncs the written-to files that `pick` chooses, taken from under the lock first.
    fn sync_files(&self, pick: impl Fn(&SegmentFile) -> bool) -> Result<()> {
        let files: Vec<Arc<SegmentFile>> = {
            let parts = self.parts.read().unwrap_or_else(|p| p.into_inner());
            parts
                .values()
                .flat_map(|f| f.values())
                .filter(|f| f.dirty.load(Ordering::Acquire) && pick(f))
                .cloned()
                .collect()
        };
        for f in files {
            self.fail_point("segment-sync")
                .and_then(|()| f.sync())
                .map_err(|e| io_err("cannot sync", &f.path, e))?;
        }
        Ok(())
    }

    fn sync_dirty_once(&self) -> Result<()> {
        self.sync_files(|_| true)?;
        let dirs = std::mem::take(&mut *self.new_dirs.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, d) in dirs.iter().enumerate() {
            match self.fail_point("dir-sync").and_then(|()| File::open(d)?.sync_all()) {
                // The partition was deleted since: nothing of it to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // The directories not synced yet stay on the list with the failed one.
                    self.new_dirs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(dirs[i..].iter().cloned());
                    return Err(io_err("cannot sync", d, e));
                }
                Ok(()) => {}
            }
        }
        if !dirs.is_empty() {
            File::open(&self.dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err("cannot sync", &self.dir, e))?;
        }
        Ok(())
    }

    /// Fsyncs the segments that are no longer appended to, then writes the recovery
    /// checkpoint: how many bytes of each segment are known to be on disk. Recovery after an
    /// unclean shutdown validates every batch past that point (Kafka's recovery point).
    pub fn checkpoint(&self) -> Result<()> {
        self.health.check()?;
        self.sync_files(|f| f.rolled.load(Ordering::Acquire))
            .map_err(|e| self.health.fail(e))?;
        self.write_checkpoint()
    }

    fn write_checkpoint(&self) -> Result<()> {
        let mut text = String::from("# fjord recovery checkpoint: partition-dir segment synced-bytes\n");
        {
            let parts = self.parts.read().unwrap_or_else(|p| p.into_inner());
            for (pid, files) in parts.iter() {
                let dir = self.partition_dir(pid);
                let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                for f in files.values() {
                    let synced = f.synced.load(Ordering::Acquire);
                    if synced > 0 {
                        text.push_str(&format!("{name} {} {synced}\n", f.base));
                    }
                }
            }
        }
        // Written aside and renamed into place: a crash leaves the old checkpoint or the new.
        let path = self.dir.join(CHECKPOINT_FILE);
        let tmp = self.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| File::open(&self.dir)?.sync_all());
        written.map_err(|e| self.health.fail(io_err("cannot write", &path, e)))
    }

    /// The last checkpoint: bytes known synced per (partition, segment). Empty when there is
    /// none (a new store, or one written before checkpoints): recovery then validates all.
    pub fn read_checkpoint(&self) -> HashMap<(PartitionId, i64), u64> {
        let path = self.dir.join(CHECKPOINT_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return HashMap::new();
        };
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split(' ');
                let pid = parse_partition_dir(it.next()?)?;
                let base = it.next()?.parse().ok()?;
                let synced = it.next()?.parse().ok()?;
                Some(((pid, base), synced))
            })
            .collect()
    }

    /// After recovery: every segment fsynced (what recovery validated may still be only in
    /// the page cache) and a checkpoint saying so, so the next recovery starts from here. A
    /// segment the last checkpoint covers whole, as all are after a clean shutdown, is not
    /// synced again: a start after thousands of segments stays quick.
    pub fn sync_recovered(&self, checkpoint: &HashMap<(PartitionId, i64), u64>) -> Result<()> {
        {
            let parts = self.parts.read().unwrap_or_else(|p| p.into_inner());
            for (pid, files) in parts.iter() {
                for f in files.values() {
                    let len = f.written.load(Ordering::Acquire);
                    if checkpoint.get(&(*pid, f.base)) == Some(&len) {
                        f.synced.store(len, Ordering::Release);
                        f.dirty.store(false, Ordering::Release);
                    }
                }
            }
        }
        self.sync_dirty()?;
        self.write_checkpoint()
    }

    /// Deletes every segment of a topic (after its rows are gone).
    pub fn remove(&self, doomed: &Doomed) {
        let gone: Vec<PartitionId> = {
            let mut parts = self.write_parts();
            let gone: Vec<PartitionId> = parts.keys().filter(|p| doomed.covers(p)).copied().collect();
            for p in &gone {
                parts.remove(p);
            }
            gone
        };
        for pid in gone {
            self.remove_dir(&self.partition_dir(&pid));
        }
    }
}

/// Failures injected by unit tests into one [`Segments`]. Only test builds have them: the
/// release binary is tested with real failing system calls (an LD_PRELOAD shim, tests/faults/).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FailPoints(std::sync::Mutex<Vec<(&'static str, usize)>>);

#[cfg(test)]
impl FailPoints {
    /// The next `after + 1`-th pass through `name` fails.
    pub fn arm(&self, name: &'static str, after: usize) {
        self.0.lock().expect("not poisoned").push((name, after));
    }

    fn hit(&self, name: &str) -> std::io::Result<()> {
        let mut armed = self.0.lock().expect("not poisoned");
        if let Some(i) = armed.iter().position(|(n, _)| *n == name) {
            if armed[i].1 == 0 {
                armed.remove(i);
                return Err(std::io::Error::other(format!("injected failure at {name}")));
            }
            armed[i].1 -= 1;
        }
        Ok(())
    }
}

fn parse_partition_dir(name: &str) -> Option<PartitionId> {
    let (hex, partition) = name.split_once('-')?;
    if hex.len() != 32 {
        return None;
    }
    let mut topic_id = [0u8; 16];
    for (i, b) in topic_id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let partition: i32 = partition.parse().ok()?;
    (partition >= 0).then_some(PartitionId { topic_id, partition })
}

/// The active segment of a partition: where its next batch goes.
#[derive(Debug, Clone)]
struct Active {
    base: i64,
    len: u64,
    file: Arc<SegmentFile>,
    /// Largest timestamp of its first batch: `segment.ms` counts from it, as Kafka's does.
    first_ts: Option<i64>,
    /// When it was opened, for `segment.ms` before its first batch's timestamp is known.
    opened: std::time::Instant,
}

/// The writer thread's side: appends, rolls, and undoes a group whose RocksDB write failed.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    segments: Arc<Segments>,
    active: HashMap<PartitionId, Active>,
    /// Active segments as they were before the group being staged touched them.
    undo: HashMap<PartitionId, Option<Active>>,
    /// Segments created by the group being staged.
    created: Vec<(PartitionId, i64)>,
}

impl SegmentWriter {
    /// `active` comes from recovery ([`Segments::restore`]).
    pub fn new(segments: Arc<Segments>, active: HashMap<PartitionId, (i64, u64)>) -> SegmentWriter {
        let active = active
            .into_iter()
            .filter_map(|(pid, (base, len))| {
                let file = segments.file(&pid, base)?;
                // Appends go at the cursor; restore left the file exactly `len` long.
                if let Err(e) = file.cut_to(len) {
                    tracing::error!(segment = %file.path.display(), error = %e, "cannot position a segment; the next append starts a new one");
                    return None;
                }
                Some((
                    pid,
                    Active {
                        base,
                        len,
                        file,
                        first_ts: None,
                        opened: std::time::Instant::now(),
                    },
                ))
            })
            .collect();
        SegmentWriter {
            segments,
            active,
            undo: HashMap::new(),
            created: Vec::new(),
        }
    }

    /// Appends a batch (given as slices: a patched header and the rest, its largest timestamp
    /// `max_ts`) to the partition's active segment, rolling to a new one named `base_offset`
    /// when it would pass the segment size or age. Returns the segment and the position written
    /// at.
    pub fn append(&mut self, pid: &PartitionId, base_offset: i64, max_ts: i64, parts: &[&[u8]]) -> Result<(i64, u64)> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if !self.undo.contains_key(pid) {
            self.undo.insert(*pid, self.active.get(pid).cloned());
        }
        let limit = self.segments.roll(pid);
        let roll = match self.active.get(pid) {
            None => true,
            Some(a) => {
                let too_old = limit.ms.is_some_and(|ms| match a.first_ts {
                    Some(first) => max_ts.saturating_sub(first) > ms,
                    None => a.opened.elapsed().as_millis() > u128::try_from(ms).unwrap_or(0),
                });
                a.len > 0 && (a.len + total > limit.bytes || too_old)
            }
        };
        if roll {
            let a = self.create(pid, base_offset)?;
            if let Some(old) = self.active.insert(*pid, a) {
                old.file.rolled.store(true, Ordering::Release);
            }
        }
        let a = self.active.get_mut(pid).expect("set above");
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        let mut file = &a.file.file;
        a.file.dirty.store(true, Ordering::Release);
        while !rest.is_empty() {
            match self
                .segments
                .fail_point("segment-write")
                .and_then(|()| file.write_vectored(rest))
            {
                Ok(0) => {
                    return Err(io_err(
                        "cannot write",
                        &a.file.path,
                        std::io::ErrorKind::WriteZero.into(),
                    ))
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The part that went in is cut off. Out of space, that is all: the batch
                    // is refused and the log is as it was. Any other error takes the directory
                    // offline, as Kafka does on an I/O error in the log.
                    let cut = a.file.cut_to(a.len);
                    if cut.is_ok() && is_out_of_space(&e) {
                        return Err(self.segments.space.exhausted());
                    }
                    return Err(self.segments.health.fail(io_err("cannot write", &a.file.path, e)));
                }
            }
        }
        self.segments.space.wrote();
        let at = a.len;
        if a.len == 0 || a.first_ts.is_none() {
            a.first_ts = Some(max_ts);
        }
        a.len += total;
        a.file.written.store(a.len, Ordering::Release);
        Ok((a.base, at))
    }

    fn create(&mut self, pid: &PartitionId, base: i64) -> Result<Active> {
        let dir = self.segments.partition_dir(pid);
        let space = &self.segments.space;
        let refuse = |what: &str, path: &Path, e: std::io::Error| {
            if is_out_of_space(&e) {
                space.exhausted()
            } else {
                io_err(what, path, e)
            }
        };
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| refuse("cannot create", &dir, e))?;
        }
        let path = Segments::segment_path(&dir, base);
        // A file of that name can only be left from a write that was never acknowledged.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| refuse("cannot create", &path, e))?;
        let file = Arc::new(SegmentFile::new(file, path, base, 0, true));
        self.segments
            .write_parts()
            .entry(*pid)
            .or_default()
            .insert(base, file.clone());
        self.created.push((*pid, base));
        // The new file's directory entry must reach the disk with the file.
        self.segments
            .new_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dir);
        Ok(Active {
            base,
            len: 0,
            file,
            first_ts: None,
            opened: std::time::Instant::now(),
        })
    }

    /// The group's RocksDB write went through: its appends stay.
    pub fn commit(&mut self) {
        self.undo.clear();
        self.created.clear();
    }

    /// The group's RocksDB write failed: its bytes are cut off and its new segments removed,
    /// so nothing unindexed stays in a file the next group appends to.
    pub fn rollback(&mut self) {
        for (pid, base) in self.created.drain(..) {
            let removed = self.segments.write_parts().get_mut(&pid).and_then(|f| f.remove(&base));
            if let Some(f) = removed {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        for (pid, before) in self.undo.drain() {
            match before {
                Some(a) => {
                    a.file.written.store(a.len, Ordering::Release);
                    if let Err(e) = a.file.cut_to(a.len) {
                        tracing::error!(segment = %a.file.path.display(), error = %e, "cannot cut a failed write off a segment");
                    }
                    self.active.insert(pid, a);
                }
                None => {
                    self.active.remove(&pid);
                }
            }
        }
    }

    /// Retention or DeleteRecords dropped every batch of the partition: its next append
    /// starts a new segment, so that the old one can go once the drop is committed.
    pub fn close_active(&mut self, pid: &PartitionId) {
        if !self.undo.contains_key(pid) {
            self.undo.insert(*pid, self.active.get(pid).cloned());
        }
        self.active.remove(pid);
    }

    /// After a committed retention or DeleteRecords pass: deletes the segments that hold
    /// nothing at or after `keep_from` (the first batch kept, or the log end when none is).
    /// A segment ends where the next one starts; the active one is never deleted, and a last
    /// segment that is not active was closed by [`SegmentWriter::close_active`].
    pub fn drop_before(&mut self, pid: &PartitionId, keep_from: i64) {
        let active = self.active.get(pid).map(|a| a.base);
        let doomed: Vec<Arc<SegmentFile>> = {
            let mut parts = self.segments.write_parts();
            let Some(files) = parts.get_mut(pid) else {
                return;
            };
            let bases: Vec<i64> = files.keys().copied().collect();
            let mut doomed = Vec::new();
            for (i, base) in bases.iter().enumerate() {
                let whole_file_before = match bases.get(i + 1) {
                    Some(next) => *next <= keep_from,
                    None => true,
                };
                if whole_file_before && Some(*base) != active {
                    if let Some(f) = files.remove(base) {
                        doomed.push(f);
                    }
                }
            }
            doomed
        };
        for f in doomed {
            if let Err(e) = std::fs::remove_file(&f.path) {
                tracing::warn!(segment = %f.path.display(), error = %e, "cannot delete a segment past retention");
            }
        }
    }

    /// After a committed truncation: cuts the partition's log at `position` of `segment` (the
    /// first batch removed) and deletes the segments after it. The cut segment becomes the
    /// active one again, so the next batch continues it.
    pub fn truncate(&mut self, pid: &PartitionId, segment: i64, position: u64) {
        let (doomed, kept) = {
            let mut parts = self.segments.write_parts();
            let Some(files) = parts.get_mut(pid) else {
                return;
            };
            let later: Vec<i64> = files.range(segment + 1..).map(|(b, _)| *b).collect();
            let doomed: Vec<Arc<SegmentFile>> = later.iter().filter_map(|b| files.remove(b)).collect();
            (doomed, files.get(&segment).cloned())
        };
        for f in doomed {
            if let Err(e) = std::fs::remove_file(&f.path) {
                tracing::warn!(segment = %f.path.display(), error = %e, "cannot delete a truncated segment");
            }
        }
        self.active.remove(pid);
        let Some(file) = kept else {
            return;
        };
        if let Err(e) = file.cut_to(position) {
            // The index no longer points past `position`; the bytes after it are only waste,
            // and recovery cuts them. The next batch starts a new segment.
            tracing::error!(segment = %file.path.display(), error = %e, "cannot cut a truncated segment");
            return;
        }
        file.written.store(position, Ordering::Release);
        file.synced.fetch_min(position, Ordering::AcqRel);
        file.dirty.store(true, Ordering::Release);
        file.rolled.store(false, Ordering::Release);
        self.active.insert(
            *pid,
            Active {
                base: segment,
                len: position,
                file,
                first_ts: None,
                opened: std::time::Instant::now(),
            },
        );
    }

    /// After a committed reset: deletes every segment of the partition; its next batch starts
    /// a new one.
    pub fn remove_partition(&mut self, pid: &PartitionId) {
        self.active.remove(pid);
        let files = self.segments.write_parts().remove(pid);
        for f in files.into_iter().flat_map(|f| f.into_values()) {
            if let Err(e) = std::fs::remove_file(&f.path) {
                tracing::warn!(segment = %f.path.display(), error = %e, "cannot delete a segment of a reset log");
            }
        }
    }

    /// A segment file of the partition, by its base offset.
    pub fn file(&self, pid: &PartitionId, segment: i64) -> Option<Arc<SegmentFile>> {
        self.segments.file(pid, segment)
    }

    /// Deletes the segments of a topic or partition whose rows are gone.
    pub fn remove(&mut self, doomed: &Doomed) {
        self.active.retain(|pid, _| !doomed.covers(pid));
        self.segments.remove(doomed);
    }

    /// The directory's health, which a failed append takes offline.
    pub fn health(&self) -> &Arc<DirHealth> {
        &self.segments.health
    }

    pub fn segments(&self) -> &Arc<Segments> {
        &self.segments
    }

    /// Whether `name` is the partition's active segment.
    pub fn is_active(&self, pid: &PartitionId, name: i64) -> bool {
        self.active.get(pid).is_some_and(|a| a.base == name)
    }

    /// Puts a committed cleaning's files in place and in the map of open files.
    pub fn install_cleaned(&mut self, pid: &PartitionId, swap: &CleanedSwap) -> Result<()> {
        self.segments.install_cleaned(pid, swap)?;
        self.segments.swap_open_files(pid, swap)
    }

    /// The segment a partition's next batch goes to (the one its last append went to).
    pub fn active_file(&self, pid: &PartitionId) -> Option<Arc<SegmentFile>> {
        self.active.get(pid).map(|a| a.file.clone())
    }

    /// Fsyncs what was written since the last sync (before a synced WAL write).
    pub fn sync(&self) -> Result<()> {
        self.segments.sync_dirty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_round_trips_and_is_told_from_an_inline_batch() {
        let l = Locator {
            segment: 1 << 40,
            position: 123_456_789,
            len: 1_048_588,
            last_offset_delta: 1023,
            max_timestamp: -1,
            leader_epoch: 7,
        };
        let v = l.encode();
        assert_eq!(Locator::decode(&v), Some(l));
        assert!(matches!(Stored::parse(&v), Ok(Stored::File(x)) if x == l));
        // Not a locator: an inline batch must parse as a batch, and garbage is corruption.
        assert!(Stored::parse(&[0u8; 20]).is_err());
        assert!(Stored::parse(&v[..30]).is_err());
    }

    #[test]
    fn partition_dir_names_round_trip() {
        let s = Segments::open(tempfile::tempdir().expect("tmp").path().join("s"), 1024, Arc::default()).expect("open");
        let pid = PartitionId {
            topic_id: [0xab; 16],
            partition: 12,
        };
        let d = s.partition_dir(&pid);
        let name = d.file_name().and_then(|n| n.to_str()).expect("utf-8");
        assert_eq!(parse_partition_dir(name), Some(pid));
        assert_eq!(parse_partition_dir("xyz-1"), None);
        assert_eq!(parse_partition_dir(&format!("{}-1", "zz".repeat(16))), None);
    }

    fn seg_writer(dir: &Path, segment_bytes: u64) -> (Arc<Segments>, SegmentWriter) {
        let s = Arc::new(Segments::open(dir.to_path_buf(), segment_bytes, Arc::default()).expect("open"));
        let w = SegmentWriter::new(s.clone(), HashMap::new());
        (s, w)
    }

    const P: PartitionId = PartitionId {
        topic_id: [9; 16],
        partition: 0,
    };

    #[test]
    fn appends_roll_at_the_segment_size_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (s, mut w) = seg_writer(tmp.path(), 100);
        assert_eq!(w.append(&P, 0, 0, &[b"hello ", b"world"]).expect("append"), (0, 0));
        assert_eq!(w.append(&P, 1, 0, &[&[1u8; 60]]).expect("append"), (0, 11));
        // 71 + 40 > 100: a new segment named by the batch's base offset.
        assert_eq!(w.append(&P, 2, 0, &[&[2u8; 40]]).expect("append"), (2, 0));
        // A batch larger than the segment size still goes in (alone).
        assert_eq!(w.append(&P, 3, 0, &[&[3u8; 300]]).expect("append"), (3, 0));
        w.commit();
        let mut buf = vec![0u8; 11];
        assert!(s.read_into(&P, 0, 0, &mut buf).expect("read"));
        assert_eq!(&buf, b"hello world");
        let mut buf = vec![0u8; 40];
        assert!(s.read_into(&P, 2, 0, &mut buf).expect("read"));
        assert_eq!(buf, vec![2u8; 40]);
        assert_eq!(
            s.files_on_disk(&P).expect("list"),
            BTreeMap::from([(0, 71), (2, 40), (3, 300)])
        );
        // Retention that keeps offset 3 on deletes the first two files, never the active one.
        w.drop_before(&P, 3);
        assert_eq!(s.files_on_disk(&P).expect("list"), BTreeMap::from([(3, 300)]));
        assert!(!s.read_into(&P, 0, 0, &mut buf).expect("gone is not an error"));
        // Everything dropped: the active segment goes too and the next append starts afresh.
        w.close_active(&P);
        w.commit();
        w.drop_before(&P, 4);
        assert!(s.files_on_disk(&P).expect("list").is_empty());
        assert_eq!(w.append(&P, 4, 0, &[b"x"]).expect("append"), (4, 0));
        // A topic deleted before the next sync: its directory is gone, the sync still succeeds.
        w.remove(&Doomed::Topic(P.topic_id));
        s.sync_dirty().expect("sync after a topic delete");
        assert!(s.on_disk().expect("list").is_empty());
    }

    #[test]
    fn rollback_cuts_off_a_failed_group_and_restore_cuts_unindexed_tails() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (s, mut w) = seg_writer(tmp.path(), 100);
        w.append(&P, 0, 0, &[&[1u8; 50]]).expect("append");
        w.commit();
        w.append(&P, 1, 0, &[&[2u8; 30]]).expect("append");
        w.append(&P, 2, 0, &[&[3u8; 90]]).expect("append (rolls)");
        w.rollback();
        assert_eq!(s.files_on_disk(&P).expect("list"), BTreeMap::from([(0, 50)]));
        assert_eq!(w.append(&P, 1, 0, &[&[4u8; 10]]).expect("append"), (0, 50));
        w.commit();
        drop(w);
        // Recovery with the index ending at byte 55 of segment 0: 5 bytes go.
        let s2 = Segments::open(tmp.path().to_path_buf(), 100, Arc::default()).expect("reopen");
        let on_disk = s2.files_on_disk(&P).expect("list");
        assert_eq!(s2.restore(&P, &on_disk, Some((0, 55))).expect("restore"), Some((0, 55)));
        assert_eq!(s2.files_on_disk(&P).expect("list"), BTreeMap::from([(0, 55)]));
        // No indexed batch at all: every file goes.
        let on_disk = s2.files_on_disk(&P).expect("list");
        assert_eq!(s2.restore(&P, &on_disk, None).expect("restore"), None);
        assert!(s2.files_on_disk(&P).expect("list").is_empty());
        drop(s);
    }

    #[test]
    fn a_failed_sync_takes_the_directory_offline_and_is_never_retried() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (s, mut w) = seg_writer(tmp.path(), 1 << 20);
        w.append(&P, 0, 0, &[b"acked"]).expect("append");
        w.commit();
        s.fail.arm("segment-sync", 0);
        assert!(matches!(s.sync_dirty(), Err(StorageError::Offline(_))));
        // The file is no longer marked dirty (the failed fsync may have cleaned its pages), so a
        // retry would report success for lost data: it must keep failing instead.
        assert!(matches!(s.sync_dirty(), Err(StorageError::Offline(_))));
        assert!(s
            .health()
            .offline_reason()
            .is_some_and(|r| r.contains("injected failure")));
    }

    #[test]
    fn a_failed_write_takes_the_directory_offline() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (s, mut w) = seg_writer(tmp.path(), 1 << 20);
        w.append(&P, 0, 0, &[b"first"]).expect("append");
        s.fail.arm("segment-write", 0);
        assert!(matches!(
            w.append(&P, 1, 0, &[b"second"]),
            Err(StorageError::Offline(_))
        ));
        // What went in of the failed write is cut off again.
        assert_eq!(s.files_on_disk(&P).expect("list"), BTreeMap::from([(0, 5)]));
        assert!(matches!(s.sync_dirty(), Err(StorageError::Offline(_))));
    }

    #[test]
    fn one_failed_directory_sync_keeps_the_others_on_the_list() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (s, mut w) = seg_writer(tmp.path(), 1 << 20);
        let other = PartitionId {
            topic_id: [7; 16],
            partition: 3,
        };
        w.append(&P, 0, 0, &[b"a"]).expect("append");
        w.append(&other, 0, 0, &[b"b"]).expect("append");
        w.commit();
        assert_eq!(s.new_dirs.lock().expect("lock").len(), 2);
        // The first directory's sync fails: both stay listed for whoever looks after the failure.
        s.fail.arm("dir-sync", 0);
        assert!(s.sync_dirty_once().is_err());
        assert_eq!(s.new_dirs.lock().expect("lock").len(), 2);
        // The second one's fails: the first was synced and goes, the second stays.
        s.fail.arm("dir-sync", 1);
        assert!(s.sync_dirty_once().is_err());
        assert_eq!(s.new_dirs.lock().expect("lock").len(), 1);
        s.sync_dirty_once().expect("sync");
        assert!(s.new_dirs.lock().expect("lock").is_empty());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Index values and directory names come from disk: any bytes parse or are refused,
        /// never a panic.
        #[test]
        fn stored_values_and_names_never_panic(v in proptest::collection::vec(any::<u8>(), 0..128), name in ".{0,64}") {
            let _ = Stored::parse(&v);
            let _ = Locator::decode(&v);
            let _ = parse_partition_dir(&name);
        }

        #[test]
        fn locators_round_trip(segment in 0i64.., position in any::<u64>(), len in any::<u32>(),
                               delta in any::<i32>(), ts in any::<i64>(), epoch in any::<i32>()) {
            let l = Locator { segment, position, len, last_offset_delta: delta, max_timestamp: ts, leader_epoch: epoch };
            prop_assert_eq!(Locator::decode(&l.encode()), Some(l));
        }
    }
}
