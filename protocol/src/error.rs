//! Errors of the wire layer. Each maps to exactly one Kafka outcome: a frame error closes the
//! connection (as the Java broker's `SocketServer` does), a batch error becomes a per-partition
//! error code in the Produce response.

use kafka_protocol::error::ResponseError;

/// A request frame that cannot be served. The connection that sent it is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The 4-byte length prefix is negative.
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    /// The length prefix is above `socket.request.max.bytes`.
    #[error("frame of {len} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Announced frame length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The API key is not one Kafka defines.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A known API at a version this broker does not serve (ApiVersions excepted, see KIP-511).
    #[error("unsupported version {version} of api key {api_key}")]
    UnsupportedVersion {
        /// Request API key.
        api_key: i16,
        /// Requested version.
        version: i16,
    },
    /// The API exists but this broker does not implement it.
    #[error("api key {0} is not served by this broker")]
    UnsupportedApi(i16),
    /// Header or body does not decode at the announced version.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// Why a record batch in a Produce request was refused (Kafka's `LogValidator` outcomes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Bad CRC, inconsistent sizes, truncated header: `CORRUPT_MESSAGE`.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Well-formed batch whose records break a rule: `INVALID_RECORD`.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The batch is larger than the topic's `max.message.bytes`: `MESSAGE_TOO_LARGE`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge {
        /// Batch size in bytes, log overhead included.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// Timestamp outside the topic's accepted window: `INVALID_TIMESTAMP`.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Codec not allowed at this request version (zstd before Produce v7): `UNSUPPORTED_COMPRESSION_TYPE`.
    #[error("unsupported compression type: {0}")]
    UnsupportedCompression(String),
    /// The records inflated past [`crate::batch::ValidationConfig::inflate_budget`] before
    /// their check was done: not a verdict on the batch, only a sign to check it again where
    /// the time it takes does not hold a reactor thread.
    #[error("the records inflate past {0} bytes")]
    OverBudget(usize),
}

impl BatchError {
    /// The Kafka error carried in the Produce response partition.
    pub fn response_error(&self) -> ResponseError {
        match self {
            BatchError::Corrupt(_) => ResponseError::CorruptMessage,
            BatchError::InvalidRecord(_) => ResponseError::InvalidRecord,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
            BatchError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
            // Callers retry without a budget; never sent to a client.
            BatchError::OverBudget(_) => ResponseError::UnknownServerError,
        }
    }
}
