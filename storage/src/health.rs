//! The log directory's health. An fsync or write of the log that fails takes the directory
//! offline for good, as Kafka's LogDirFailureChannel does: on Linux a failed fsync may already
//! have marked the lost pages clean, so a retry can "succeed" for data that never reached the
//! disk (PostgreSQL's fsyncgate). From then on nothing is acknowledged, read or reported as
//! durable; the broker, whose only log directory this is, stops as Kafka does when its last
//! log directory fails, and recovery on the next start decides what survived.

use std::sync::OnceLock;

use tokio::sync::watch;

use crate::error::StorageError;

/// Shared by the writer thread, the flusher, readers and the broker.
#[derive(Debug)]
pub struct DirHealth {
    reason: OnceLock<String>,
    offline: watch::Sender<bool>,
}

impl Default for DirHealth {
    fn default() -> Self {
        DirHealth {
            reason: OnceLock::new(),
            offline: watch::channel(false).0,
        }
    }
}

impl DirHealth {
    /// Takes the directory offline (the first failure's reason is kept) and returns the error
    /// every caller gets from now on.
    pub fn fail(&self, reason: impl std::fmt::Display) -> StorageError {
        let reason = reason.to_string();
        if self.reason.set(reason.clone()).is_ok() {
            tracing::error!(error = %reason, "the log directory is offline after an I/O error; nothing more is acknowledged");
            metrics::counter!("fjord_log_dir_failures_total").increment(1);
            self.offline.send_replace(true);
        }
        self.error()
    }

    /// `Err` once the directory is offline.
    pub fn check(&self) -> Result<(), StorageError> {
        match self.reason.get() {
            None => Ok(()),
            Some(_) => Err(self.error()),
        }
    }

    /// Why the directory went offline, if it did.
    pub fn offline_reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Changes to `true` when the directory goes offline.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.offline.subscribe()
    }

    fn error(&self) -> StorageError {
        StorageError::Offline(self.reason.get().cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_sticks_and_is_announced_once() {
        let h = DirHealth::default();
        let mut rx = h.subscribe();
        assert!(h.check().is_ok());
        assert!(matches!(h.fail("cannot sync a: EIO"), StorageError::Offline(r) if r == "cannot sync a: EIO"));
        assert!(rx.has_changed().expect("sender alive"));
        assert!(*rx.borrow_and_update());
        h.fail("cannot sync b: EIO");
        assert_eq!(h.offline_reason(), Some("cannot sync a: EIO"));
        assert!(matches!(h.check(), Err(StorageError::Offline(r)) if r == "cannot sync a: EIO"));
    }
}
