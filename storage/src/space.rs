//! Free space in the log directory, and the reserve that keeps the disk from filling up.
//!
//! Kafka has no reserve: a full disk fails a segment write, the log directory goes offline and
//! a broker whose last directory failed stops, to fail the same way at its next start. Fjord
//! refuses new data (`KAFKA_STORAGE_ERROR`, which producers retry) once less than the reserve
//! (`log.dir.min.free.bytes`) is free, and takes it again as soon as retention,
//! DeleteRecords, compaction or an operator frees space. The reserve is what RocksDB needs
//! for the index's flushes and compactions, transaction markers, offset commits and the
//! controller's metadata, none of which are refused; writing them into a full disk would
//! leave RocksDB read-only until a restart.
//!
//! Between two looks at the file system (`statvfs`, at most every [`SAMPLE_EVERY`]), the
//! bytes admitted are subtracted from the free space last seen, so a fast producer cannot run
//! past the reserve in between.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// How stale the free space may be before the next admission looks again.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// After a write ran out of space, how long data is refused before one is let through to
/// find out whether there is room again (`statvfs` cannot tell: a quota, or a file system
/// that reports space it cannot give).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The default reserve's share of the file system (it is never above [`DEFAULT_RESERVE_CAP`]).
pub const DEFAULT_RESERVE_PERCENT: u64 = 5;
/// The largest default reserve.
pub const DEFAULT_RESERVE_CAP: u64 = 1 << 30;

/// `setting` value for "the default rule".
const AUTO: u64 = u64::MAX;

/// Shared by the writer (which admits data), the cleaner and the metrics.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    /// `log.dir.min.free.bytes`: [`AUTO`] for 5% of the file system up to 1 GiB, 0 for no
    /// reserve.
    setting: AtomicU64,
    /// Bytes available at the last look, less what was admitted since.
    free: AtomicU64,
    /// Size of the file system, from the last look.
    total: AtomicU64,
    state: Mutex<State>,
    /// Data is being refused (either reason in [`State`]).
    full: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    last_look: Option<Instant>,
    /// The last look found less than the reserve free; the next look that finds it ends this.
    below_reserve: bool,
    /// A write failed with ENOSPC or EDQUOT then; the next write that goes in ends this.
    exhausted_at: Option<Instant>,
}

impl DiskSpace {
    /// Watches the file system holding `dir`, with the default reserve.
    pub fn new(dir: PathBuf) -> DiskSpace {
        DiskSpace {
            dir,
            setting: AtomicU64::new(AUTO),
            free: AtomicU64::new(u64::MAX),
            total: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            full: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the reserve: `None` for the default rule, `Some(0)` for none.
    pub fn set_min_free(&self, bytes: Option<u64>) {
        self.setting
            .store(bytes.map_or(AUTO, |b| b.min(AUTO - 1)), Ordering::Relaxed);
        self.look();
    }

    /// The reserve in bytes, as it applies to this file system now.
    pub fn reserve(&self) -> u64 {
        match self.setting.load(Ordering::Relaxed) {
            AUTO => (self.total.load(Ordering::Relaxed) / 100 * DEFAULT_RESERVE_PERCENT).min(DEFAULT_RESERVE_CAP),
            b => b,
        }
    }

    /// Bytes free (as last seen, less what was admitted since) and the file system's size.
    pub fn free_and_total(&self) -> (u64, u64) {
        (self.free.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }

    /// Data is being refused for want of space.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Looks at the file system now (the metrics do, every scrape). Returns the bytes free and
    /// the file system's size, `None` if it cannot be looked at.
    pub fn look(&self) -> Option<(u64, u64)> {
        let mut st = self.state();
        let seen = self.look_locked(&mut st);
        self.publish(&st);
        // Set at every look (the metrics scrape looks), so that they exist from the start.
        metrics::gauge!("fjord_log_dir_min_free_bytes").set(self.reserve() as f64);
        metrics::gauge!("fjord_log_dir_full").set(if self.is_full() { 1.0 } else { 0.0 });
        metrics::counter!("fjord_log_dir_refused_bytes_total").increment(0);
        seen
    }

    /// A directory that cannot be looked at (it is gone, or the call is refused) is taken to
    /// have room: the writes themselves will say otherwise.
    fn look_locked(&self, st: &mut State) -> Option<(u64, u64)> {
        st.last_look = Some(Instant::now());
        let seen = match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(v) => {
                let frag = v.fragment_size();
                let (free, total) = (
                    v.blocks_available().saturating_mul(frag),
                    v.blocks().saturating_mul(frag),
                );
                self.free.store(free, Ordering::Relaxed);
                self.total.store(total, Ordering::Relaxed);
                Some((free, total))
            }
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot look at the log directory's free space");
                self.free.store(u64::MAX, Ordering::Relaxed);
                None
            }
        };
        if st.below_reserve && self.free.load(Ordering::Relaxed) >= self.reserve() {
            st.below_reserve = false;
        }
        seen
    }

    /// Admits `bytes` of new data, or refuses them with [`StorageError::NoSpace`] if they
    /// would leave less than the reserve free, or a write ran out of space in the last
    /// [`PROBE_EVERY`].
    pub fn admit(&self, bytes: u64) -> Result<(), StorageError> {
        let setting = self.setting.load(Ordering::Relaxed);
        if setting == 0 && !self.is_full() {
            return Ok(());
        }
        let mut st = self.state();
        if st.exhausted_at.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
            return Err(self.refuse(bytes, "a write into the log directory ran out of space".into()));
        }
        // While refusing, every attempt looks again: space freed is taken at once.
        if st.below_reserve || st.last_look.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            let _ = self.look_locked(&mut st);
        }
        let (free, reserve) = (self.free.load(Ordering::Relaxed), self.reserve());
        if free < reserve.saturating_add(bytes) {
            st.below_reserve = true;
            self.publish(&st);
            return Err(self.refuse(
                bytes,
                format!("{free} bytes are free, the reserve (log.dir.min.free.bytes) is {reserve}"),
            ));
        }
        self.publish(&st);
        // A look in between may have lowered it: never below zero.
        let _ = self
            .free
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some(f.saturating_sub(bytes)));
        Ok(())
    }

    fn refuse(&self, bytes: u64, why: String) -> StorageError {
        metrics::counter!("fjord_log_dir_refused_bytes_total").increment(bytes);
        StorageError::NoSpace(format!(
            "{} is full: {why}; new data is refused until space is freed",
            self.dir.display()
        ))
    }

    /// Bytes that can be written before the reserve is reached (for the cleaner, whose
    /// output must fit next to its input until the swap; it is never admitted into the
    /// reserve, and is not counted as new data).
    pub fn room(&self) -> u64 {
        let mut st = self.state();
        if st.last_look.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            let _ = self.look_locked(&mut st);
            self.publish(&st);
        }
        drop(st);
        self.free.load(Ordering::Relaxed).saturating_sub(self.reserve())
    }

    /// A write failed with ENOSPC (or EDQUOT), within the reserve or without one: data is
    /// refused until a write goes in again (see [`PROBE_EVERY`]).
    pub fn exhausted(&self) -> StorageError {
        let mut st = self.state();
        st.exhausted_at = Some(Instant::now());
        self.free.store(0, Ordering::Relaxed);
        self.publish(&st);
        StorageError::NoSpace(format!(
            "{} is full: a write ran out of space; new data is refused until space is freed",
            self.dir.display()
        ))
    }

    /// A write of the log went in: if one had run out of space, there is room again.
    pub fn wrote(&self) {
        if !self.is_full() {
            return;
        }
        let mut st = self.state();
        if st.exhausted_at.take().is_some() {
            self.publish(&st);
        }
    }

    /// Announces a change between taking data and refusing it.
    fn publish(&self, st: &State) {
        let full = st.below_reserve || st.exhausted_at.is_some();
        if self.full.swap(full, Ordering::Relaxed) == full {
            return;
        }
        metrics::gauge!("fjord_log_dir_full").set(if full { 1.0 } else { 0.0 });
        let (free, reserve) = (self.free.load(Ordering::Relaxed), self.reserve());
        if full {
            tracing::warn!(
                dir = %self.dir.display(),
                free_bytes = free,
                min_free_bytes = reserve,
                "the log directory is full: producing is refused (KAFKA_STORAGE_ERROR) until space is freed; reads go on"
            );
        } else {
            tracing::info!(
                dir = %self.dir.display(),
                free_bytes = free,
                min_free_bytes = reserve,
                "the log directory has space again: producing is accepted"
            );
        }
    }
}

/// An I/O error that means the file system is out of space or quota.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::errno::Errno::ENOSPC as i32 || code == nix::errno::Errno::EDQUOT as i32
    ) || e.kind() == std::io::ErrorKind::StorageFull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_follows_the_setting_and_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = DiskSpace::new(dir.path().to_path_buf());
        s.look();
        let (free, total) = s.free_and_total();
        assert!(total > 0 && free <= total, "free {free} total {total}");
        assert_eq!(s.reserve(), (total / 100 * 5).min(1 << 30));
        s.set_min_free(Some(4096));
        assert_eq!(s.reserve(), 4096);
        s.set_min_free(Some(0));
        assert_eq!(s.reserve(), 0);
        // No reserve: nothing is refused, however much is asked.
        assert!(s.admit(u64::MAX / 2).is_ok());
    }

    #[test]
    fn admissions_count_down_until_the_reserve_and_a_look_gives_the_space_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = DiskSpace::new(dir.path().to_path_buf());
        s.look();
        let (free, _) = s.free_and_total();
        // A reserve just below what is free: a little goes in, more does not.
        s.set_min_free(Some(free.saturating_sub(1 << 20)));
        // Another process may have written meanwhile; take what the last look saw.
        let (free, _) = s.free_and_total();
        let room = free.saturating_sub(s.reserve());
        if room > 1024 {
            assert!(s.admit(1024).is_ok());
        }
        let err = s.admit(room + (1 << 30)).expect_err("past the reserve");
        assert!(
            matches!(err, StorageError::NoSpace(ref m) if m.contains("log.dir.min.free.bytes")),
            "{err}"
        );
        assert!(s.is_full());
        // The reserve lowered (as when space is freed): the look clears the refusal.
        s.set_min_free(Some(1));
        assert!(!s.is_full(), "a look with space clears the refusal");
        assert!(s.admit(1).is_ok());
    }

    #[test]
    fn a_write_out_of_space_refuses_data_until_a_write_goes_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = DiskSpace::new(dir.path().to_path_buf());
        s.set_min_free(Some(0));
        assert!(matches!(s.exhausted(), StorageError::NoSpace(_)));
        assert!(s.is_full());
        // A look finds space (statvfs may say so on a full quota): still refused.
        s.look();
        assert!(s.is_full());
        assert!(matches!(s.admit(1), Err(StorageError::NoSpace(_))));
        // The next probe is let through once PROBE_EVERY has passed; a write that goes in
        // ends the refusal.
        s.state().exhausted_at = Some(Instant::now() - PROBE_EVERY);
        assert!(s.admit(1).is_ok());
        assert!(s.is_full(), "a probe admitted is not yet a write that went in");
        s.wrote();
        assert!(!s.is_full());
        assert!(s.admit(1).is_ok());
    }

    #[test]
    fn enospc_and_edquot_are_out_of_space() {
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(
            nix::errno::Errno::ENOSPC as i32
        )));
        assert!(is_out_of_space(&std::io::Error::from_raw_os_error(
            nix::errno::Errno::EDQUOT as i32
        )));
        assert!(!is_out_of_space(&std::io::Error::from_raw_os_error(
            nix::errno::Errno::EIO as i32
        )));
    }
}
