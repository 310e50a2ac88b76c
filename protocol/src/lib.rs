//! Kafka wire protocol for Fjord: framing, request/response envelopes and record-batch
//! validation. Message schemas and codecs come from the `kafka-protocol` crate; this crate
//! adds what a broker needs on top (size limits checked before allocating, the KIP-511
//! ApiVersions fallback, LogValidator-style batch checks, in-place offset assignment).
//!
//! It does no I/O and depends on no other Fjord crate: `protocol <- storage <- controller <- broker`.
#![deny(missing_docs)]

pub mod batch;
pub mod bufpool;
pub mod error;
pub mod frame;
pub mod records;

pub use error::{BatchError, FrameError};
pub use kafka_protocol;
