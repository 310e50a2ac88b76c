//! A seeded xorshift64 generator.
//!
//! Garbage input and fuzz frames must be reproducible from the seed printed
//! in a failing test's output, and the tests need nothing better than this,
//! so no `rand` dependency.

/// Marsaglia's xorshift64 (shifts 13, 7, 17). Not for cryptography.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    /// Never zero: zero is xorshift's one fixed point.
    state: u64,
}

impl XorShift64 {
    /// A generator for `seed`; seed 0 is replaced by a fixed non-zero constant.
    pub fn new(seed: u64) -> Self {
        let state = if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed };
        Self { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        assert_ne!(self.state, 0, "xorshift never reaches zero from a non-zero state");
        x
    }

    /// A value in `0..bound`. `bound` must be non-zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0) has no valid answer");
        self.next_u64() % bound
    }

    /// An index in `0..len`. `len` must be non-zero.
    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0, "index(0) has no valid answer");
        // usize fits in u64 on every target this crate runs on.
        (self.next_u64() % len as u64) as usize
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn fill_covers_partial_chunks() {
        let mut r = XorShift64::new(1);
        let v = r.bytes(13);
        assert_eq!(v.len(), 13);
        assert!(v.iter().any(|&b| b != 0));
    }
}
