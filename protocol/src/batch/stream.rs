//! A batch's records section read as a stream. Checking a compressed batch decompresses it as
//! the records are walked, so it holds one decoder's buffers rather than the whole
//! uncompressed section: a few hundred bytes of zstd or gzip can inflate to gigabytes, and a
//! broker that materialised them would be killed by a single Produce request. Kafka's
//! `LogValidator` walks compressed records the same way.
//!
//! Two cases still need the uncompressed bytes in memory, and are bounded by
//! [`MAX_INFLATED_BYTES`]: recompressing a batch for a topic whose `compression.type` names
//! another codec, and a snappy block (snappy has no streaming decoder; its blocks declare their
//! uncompressed length up front, which is checked before anything is allocated).

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use snap::raw::{decompress_len, Decoder as SnappyDecoder};

use super::{codec_name, Compression};
use crate::error::BatchError;

/// Largest uncompressed records section (or snappy block) held in memory at once. Far above
/// what producers build (librdkafka's `batch.size` defaults to 1 MB of uncompressed records,
/// Java's to 16 KiB); a batch over it is refused with `MESSAGE_TOO_LARGE`, on which the Java
/// producer splits the batch and retries.
pub const MAX_INFLATED_BYTES: usize = 256 << 20;

/// snappy-java's stream header (magic, version 1, compatible version 1), as Kafka's Java
/// clients write it in front of length-prefixed snappy blocks.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Buffer between a decoder and the record walker.
const READ_BUFFER_BYTES: usize = 32 << 10;

/// A reader over the uncompressed records section `data` of a batch compressed with `c`,
/// failing with [`BatchError::OverBudget`] once more than `budget` bytes came out of it.
fn open(c: Compression, data: &[u8], budget: Option<usize>) -> Result<Box<dyn Read + '_>, BatchError> {
    let reader = open_unbounded(c, data)?;
    Ok(match budget {
        Some(left) if c != Compression::None => Box::new(Budget { inner: reader, left }),
        _ => reader,
    })
}

/// Counts what a decoder inflates; a small batch of zeros compressed with zstd or gzip can
/// take a second of CPU to walk, and the caller wants to know before it has spent it.
struct Budget<R> {
    inner: R,
    left: usize,
}

/// The payload of the io::Error a [`Budget`] ends with.
#[derive(Debug)]
struct OverBudget(usize);

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inflated past the budget of {} bytes", self.0)
    }
}

impl std::error::Error for OverBudget {}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(io::Error::other(OverBudget(n))),
        }
    }
}

fn open_unbounded(c: Compression, data: &[u8]) -> Result<Box<dyn Read + '_>, BatchError> {
    Ok(match c {
        Compression::None => Box::new(data),
        // Java's GZIPInputStream, which Kafka reads with, also reads concatenated members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(data)),
        Compression::Snappy => Box::new(SnappyReader::new(data)),
        Compression::Lz4 => Box::new(lz4::Decoder::new(data).map_err(|e| undecodable(c, &e))?),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(|e| undecodable(c, &e))?),
    })
}

/// `open`, buffered for the record walker.
pub(crate) fn buffered(
    c: Compression,
    data: &[u8],
    budget: Option<usize>,
) -> Result<BufReader<Box<dyn Read + '_>>, BatchError> {
    Ok(BufReader::with_capacity(READ_BUFFER_BYTES, open(c, data, budget)?))
}

/// The whole uncompressed section, refused past [`MAX_INFLATED_BYTES`].
pub fn decompress(c: Compression, data: Bytes) -> Result<Bytes, BatchError> {
    decompress_within(c, data, None)
}

/// [`decompress`], failing with [`BatchError::OverBudget`] past `budget` bytes.
pub(crate) fn decompress_within(c: Compression, data: Bytes, budget: Option<usize>) -> Result<Bytes, BatchError> {
    if c == Compression::None {
        return Ok(data);
    }
    let mut out = Vec::new();
    let limit = MAX_INFLATED_BYTES as u64 + 1;
    open(c, &data, budget)?
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| undecodable(c, &e))?;
    if out.len() > MAX_INFLATED_BYTES {
        return Err(too_large(out.len()));
    }
    Ok(Bytes::from(out))
}

pub(crate) fn undecodable(c: Compression, e: &io::Error) -> BatchError {
    // A snappy block over the limit surfaces here as an io::Error wrapping TooLarge.
    if let Some(size) = e.get_ref().and_then(|inner| inner.downcast_ref::<Inflated>()) {
        return too_large(size.0);
    }
    if let Some(over) = e.get_ref().and_then(|inner| inner.downcast_ref::<OverBudget>()) {
        return BatchError::OverBudget(over.0);
    }
    BatchError::Corrupt(format!("{} records do not decompress: {e}", codec_name(c)))
}

fn too_large(size: usize) -> BatchError {
    BatchError::TooLarge {
        size,
        max: MAX_INFLATED_BYTES,
    }
}

/// A snappy block declaring more than [`MAX_INFLATED_BYTES`] (its declared size).
#[derive(Debug)]
struct Inflated(usize);

impl std::fmt::Display for Inflated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a snappy block declares {} uncompressed bytes", self.0)
    }
}

impl std::error::Error for Inflated {}

/// Kafka's two snappy framings: snappy-java's (the header above, then blocks each prefixed by
/// its compressed length as a big-endian u32), written by the Java clients, and one raw snappy
/// block, written by librdkafka. One block is decoded at a time.
struct SnappyReader<'a> {
    /// Compressed bytes not decoded yet.
    input: &'a [u8],
    /// Whether `input` is a sequence of length-prefixed blocks (else one raw block).
    framed: bool,
    block: Vec<u8>,
    pos: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        let framed = data.starts_with(XERIAL_HEADER);
        let input = if framed { &data[XERIAL_HEADER.len()..] } else { data };
        SnappyReader {
            input,
            framed,
            block: Vec::new(),
            pos: 0,
        }
    }

    /// Decodes the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            let (len, rest) = self
                .input
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("not enough bytes to read a block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > rest.len() {
                return Err(bad("not enough bytes for a block"));
            }
            let (block, rest) = rest.split_at(len);
            self.input = rest;
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let size = decompress_len(compressed).map_err(|e| bad(&e.to_string()))?;
        if size > MAX_INFLATED_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, Inflated(size)));
        }
        self.block.clear();
        self.block.resize(size, 0);
        SnappyDecoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| bad(&e.to_string()))?;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads a records section field by field, counting bytes so each record's fields can be
/// checked against its declared length. Over a slice this is as cheap as slicing.
pub(crate) struct Fields<R> {
    inner: R,
    /// Bytes consumed so far.
    pub pos: u64,
}

/// Why a field could not be read: the section ended, or the decoder failed.
pub(crate) enum FieldError {
    Eof,
    Io(io::Error),
}

impl<R: BufRead> Fields<R> {
    pub fn new(inner: R) -> Self {
        Fields { inner, pos: 0 }
    }

    pub fn byte(&mut self) -> Result<u8, FieldError> {
        let buf = self.inner.fill_buf().map_err(FieldError::Io)?;
        let &b = buf.first().ok_or(FieldError::Eof)?;
        self.inner.consume(1);
        self.pos += 1;
        Ok(b)
    }

    /// Skips `n` bytes; `Eof` if the section ends first.
    pub fn skip(&mut self, mut n: u64) -> Result<(), FieldError> {
        while n > 0 {
            let buf = self.inner.fill_buf().map_err(FieldError::Io)?;
            if buf.is_empty() {
                return Err(FieldError::Eof);
            }
            let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.inner.consume(k);
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// Whether the section has ended.
    pub fn at_end(&mut self) -> Result<bool, FieldError> {
        Ok(self.inner.fill_buf().map_err(FieldError::Io)?.is_empty())
    }

    /// A zigzag varlong (Kafka's record field encoding), at most 10 bytes; `None` if malformed.
    pub fn varlong(&mut self) -> Result<Option<i64>, FieldError> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(((raw >> 1) as i64) ^ -((raw & 1) as i64)));
            }
        }
        Ok(None)
    }

    /// A zigzag varint; `None` if malformed or past 32 bits.
    pub fn varint(&mut self) -> Result<Option<i32>, FieldError> {
        let mut raw: u32 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            if i == 4 && b > 0x0f {
                return Ok(None);
            }
            raw |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(((raw >> 1) as i32) ^ -((raw & 1) as i32)));
            }
        }
        Ok(None)
    }
}
