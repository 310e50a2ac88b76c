//! Plain record batches that the broker writes and reads itself: the records of its internal
//! topics (`__consumer_offsets`), where the broker is both producer and consumer. Uncompressed,
//! without producer id, one batch per call; the log assigns the offsets.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::BatchError;

/// One record of an internal topic: a key, and a value or `None` (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRecord {
    /// Offset in the log (0-based within the batch when encoding).
    pub offset: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value, `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// A v2 batch of `records` (key, value) stamped `timestamp`, base offset 0.
pub fn plain_batch(records: &[(Bytes, Option<Bytes>)], timestamp: i64) -> Result<Bytes, BatchError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes: a constant
            // difference keeps one batch, with base sequence -1 (no producer).
            sequence: i as i32 - 1,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts)
        .map_err(|e| BatchError::InvalidRecord(format!("encoding an internal batch: {e}")))?;
    let batch = buf.freeze();
    // The log appends it as one batch of `records.len()` offsets: anything else would corrupt it.
    let header = crate::batch::check_stored(&batch)?;
    if header.size_bytes() != batch.len() || header.record_count as usize != records.len() || header.base_sequence != -1
    {
        return Err(BatchError::InvalidRecord(format!(
            "an internal batch of {} records encoded as something else",
            records.len()
        )));
    }
    Ok(batch)
}

/// Every record in `batches` (whole stored batches, any codec), control records left out.
pub fn plain_records(mut batches: Bytes) -> Result<Vec<PlainRecord>, BatchError> {
    let sets = RecordBatchDecoder::decode_all(&mut batches)
        .map_err(|e| BatchError::Corrupt(format!("decoding an internal batch: {e}")))?;
    Ok(sets
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|r| !r.control)
        .map(|r| PlainRecord {
            offset: r.offset,
            key: r.key,
            value: r.value,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_stored;

    #[test]
    fn a_plain_batch_is_a_stored_batch_and_reads_back() {
        let records = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        let batch = plain_batch(&records, 1_700_000_000_000).expect("encodes");
        let header = check_stored(&batch).expect("a valid stored batch");
        assert_eq!(header.record_count, 2);
        assert_eq!(header.producer_id, -1);
        let back = plain_records(batch).expect("decodes");
        assert_eq!(
            back,
            vec![
                PlainRecord {
                    offset: 0,
                    key: Some(Bytes::from_static(b"k1")),
                    value: Some(Bytes::from_static(b"v1")),
                },
                PlainRecord {
                    offset: 1,
                    key: Some(Bytes::from_static(b"k2")),
                    value: None,
                },
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(plain_records(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1, 2])).is_err());
    }
}
