//! Large buffers that go back to a pool when the last `Bytes` over them is dropped.
//!
//! A produce request frame or a Fetch read is often a MiB or more. A fresh buffer that large
//! is a fresh mapping from the allocator: every page is faulted in and zeroed by the kernel on
//! each use, which cost more than the socket or file read that fills it on the produce and
//! catch-up profiles. Pooled buffers keep their pages: a reused buffer is overwritten by the
//! read without being cleared first (bytes past what was read are never exposed).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers are allocated in multiples of this, so that reads of similar sizes share them.
const GRANULE: usize = 64 << 10;
/// Default for [`BufPool::new`]: most bytes a pool keeps idle.
pub const DEFAULT_MAX_IDLE_BYTES: usize = 64 << 20;
/// Buffers larger than this are not pooled (KIP-74's oversized first batch, huge fetch sizes).
pub const MAX_POOLED_BYTES: usize = 16 << 20;

/// A pool of large buffers.
#[derive(Debug)]
pub struct BufPool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle_bytes: usize,
}

impl Default for BufPool {
    fn default() -> Self {
        BufPool::new(DEFAULT_MAX_IDLE_BYTES)
    }
}

/// A buffer of exactly the requested length, on loan from a pool.
#[derive(Debug)]
pub struct PooledBuf {
    buf: Vec<u8>,
    len: usize,
    pool: Option<Arc<BufPool>>,
}

impl BufPool {
    /// A pool that keeps at most `max_idle_bytes` of returned buffers.
    pub fn new(max_idle_bytes: usize) -> BufPool {
        BufPool {
            idle: Mutex::new(Vec::new()),
            max_idle_bytes,
        }
    }

    /// A buffer of `len` bytes; its contents are unspecified (the caller overwrites them).
    pub fn take(self: &Arc<Self>, len: usize) -> PooledBuf {
        if len > MAX_POOLED_BYTES {
            return PooledBuf {
                buf: vec![0; len],
                len,
                pool: None,
            };
        }
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // The smallest idle buffer that fits.
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            best.map(|i| idle.swap_remove(i))
        };
        let buf = reused.unwrap_or_else(|| vec![0; len.div_ceil(GRANULE).max(1) * GRANULE]);
        PooledBuf {
            buf,
            len,
            pool: Some(self.clone()),
        }
    }

    fn put(&self, buf: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let held: usize = idle.iter().map(Vec::len).sum();
        if held + buf.len() <= self.max_idle_bytes {
            idle.push(buf);
        }
    }

    #[cfg(test)]
    fn idle_bytes(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(Vec::len)
            .sum()
    }
}

/// The buffer's bytes, to be overwritten.
impl AsMut<[u8]> for PooledBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl PooledBuf {
    /// Keeps only the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The buffer as `Bytes`; it returns to the pool when the last clone is dropped.
    pub fn freeze(self) -> Bytes {
        if self.len == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_bytes_is_dropped_and_are_reused() {
        let pool = Arc::new(BufPool::default());
        let mut b = pool.take(100_000);
        b.as_mut().fill(7);
        b.truncate(10);
        let bytes = b.freeze();
        assert_eq!(&bytes[..], &[7u8; 10]);
        let clone = bytes.slice(2..4);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds it");
        drop(clone);
        assert_eq!(pool.idle_bytes(), 2 * GRANULE);
        // Reused, not cleared: the caller overwrites what it reads.
        let mut again = pool.take(5);
        assert_eq!(again.as_mut(), &[7u8; 5]);
        assert_eq!(pool.idle_bytes(), 0);
        drop(again);
        // Oversized reads are not pooled.
        drop(pool.take(MAX_POOLED_BYTES + 1).freeze());
        assert_eq!(pool.idle_bytes(), 2 * GRANULE);
    }
}
