//! The newest batches of every partition, in memory: consumers at the head of a log (the usual
//! case: a consumer keeping up) are answered without an index lookup in RocksDB and without a
//! hop to the blocking pool. The writer thread adds each committed batch with its locator and
//! its open segment; a read that starts inside the tail is planned from it alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use crate::keys::Doomed;
use crate::log::{FileRecords, SegmentHandle};
use crate::segments::{Locator, SegmentFile};
use crate::PartitionId;

/// Batches kept per partition. ~100 bytes each; with 1 MiB batches this covers the last 32 MiB
/// of a partition, with the small batches of a latency-bound producer the last few milliseconds.
pub(crate) const TAIL_BATCHES: usize = 32;

/// A committed batch: its base offset, where it is, and its open segment.
#[derive(Debug, Clone)]
pub(crate) struct TailBatch {
    pub base: i64,
    pub locator: Locator,
    pub file: Arc<SegmentFile>,
}

impl TailBatch {
    fn last_offset(&self) -> i64 {
        self.base + i64::from(self.locator.last_offset_delta)
    }
}

fn push_bounded(tail: &mut VecDeque<TailBatch>, b: TailBatch) {
    tail.push_back(b);
    while tail.len() > TAIL_BATCHES {
        tail.pop_front();
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tails {
    map: RwLock<HashMap<PartitionId, Mutex<VecDeque<TailBatch>>>>,
}

impl Tails {
    /// Adds committed batches (in log order per partition).
    pub fn push(&self, batches: Vec<(PartitionId, TailBatch)>) {
        if batches.is_empty() {
            return;
        }
        // Readers share the map; only a partition's first batch needs it exclusively.
        let mut new = Vec::new();
        {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            for (pid, b) in batches {
                match map.get(&pid) {
                    Some(tail) => push_bounded(&mut tail.lock().unwrap_or_else(|p| p.into_inner()), b),
                    None => new.push((pid, b)),
                }
            }
        }
        if !new.is_empty() {
            let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
            for (pid, b) in new {
                push_bounded(
                    map.entry(pid).or_default().get_mut().unwrap_or_else(|p| p.into_inner()),
                    b,
                );
            }
        }
    }

    /// Forgets batches that end before `keep_from` (retention, DeleteRecords), so that the
    /// segments they hold open can be deleted for real.
    pub fn drop_before(&self, pid: &PartitionId, keep_from: i64) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        if let Some(tail) = map.get(pid) {
            tail.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|b| b.last_offset() >= keep_from);
        }
    }

    /// Forgets batches from `offset` on (a truncated log).
    pub fn drop_from(&self, pid: &PartitionId, offset: i64) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        if let Some(tail) = map.get(pid) {
            tail.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|b| b.base < offset);
        }
    }

    pub fn remove(&self, doomed: &Doomed) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|pid, _| !doomed.covers(pid));
    }

    /// The read `LogStore` would plan from the index, when the batch holding `offset` is in
    /// the tail; `None` sends the read to the index.
    pub fn plan(
        &self,
        pid: &PartitionId,
        offset: i64,
        upper: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Option<FileRecords> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let tail = map.get(pid)?.lock().unwrap_or_else(|p| p.into_inner());
        if tail.front()?.base > offset {
            return None; // older than the tail
        }
        let mut plan = FileRecords::default();
        for b in tail.iter().skip_while(|b| b.last_offset() < offset) {
            if b.base >= upper {
                break;
            }
            let n = b.locator.len as usize;
            if plan.len + n > max_bytes && !(plan.len == 0 && at_least_one) {
                break;
            }
            if !plan.extend_region(b.locator.segment, b.locator.position, n) {
                plan.push_region(SegmentHandle::new(b.file.clone()), b.locator.position, n);
            }
        }
        Some(plan)
    }
}
