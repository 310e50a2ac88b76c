//! ListOffsets: earliest, latest, max timestamp, by timestamp, and the tiered-storage
//! offsets (KIP-1005, KIP-1023), which are "none" without tiered storage.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::led_partition;
use crate::error::storage_error_code;
use crate::{partition_id, Broker};

/// `timestamp` values with a special meaning (`ListOffsetsRequest` constants).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

fn error(partition: i32, e: ResponseError) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(e.code())
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

/// Answers ListOffsets.
pub async fn handle(broker: &Broker, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let meta = broker.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    let isolation_level = req.isolation_level;
    for t in req.topics {
        let topic = meta.topics.get(t.name.as_str());
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let (topic, pmeta) = match led_partition(broker, topic, p.partition_index, p.current_leader_epoch) {
                Ok(found) => found,
                Err(e) => {
                    parts.push(error(p.partition_index, e));
                    continue;
                }
            };
            let pid = partition_id(topic, p.partition_index);
            let Some(offsets) = broker.store.offsets(&pid) else {
                parts.push(error(p.partition_index, ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let found = match p.timestamp {
                // read_committed consumers end at the last stable offset (the first offset of
                // the oldest open transaction), read_uncommitted ones at the high watermark.
                LATEST if isolation_level == 1 => Ok(Some((offsets.last_stable, -1))),
                LATEST => Ok(Some((offsets.high_watermark, -1))),
                EARLIEST | EARLIEST_LOCAL => Ok(Some((offsets.log_start, -1))),
                // No tiered storage: nothing is tiered or waiting to be, so the answer is
                // "none" (offset, timestamp and epoch -1), as Kafka answers without remote storage.
                LATEST_TIERED | EARLIEST_PENDING_UPLOAD => Ok(None),
                MAX_TIMESTAMP => broker.store.max_timestamp(pid).await,
                ts if ts >= 0 => broker.store.offset_for_timestamp(pid, ts).await,
                _ => {
                    parts.push(error(p.partition_index, ResponseError::InvalidRequest));
                    continue;
                }
            };
            parts.push(match found {
                // v1-3 have no leader epoch, and their schema does not let an encoder drop
                // one (it is not ignorable): like Kafka, report it from v4 only.
                Ok(Some((offset, timestamp))) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(if version >= 4 { pmeta.leader_epoch } else { -1 }),
                // No record at or after the timestamp: Kafka answers offset -1, timestamp -1.
                Ok(None) => ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(-1)
                    .with_timestamp(-1)
                    .with_leader_epoch(-1),
                Err(e) => error(p.partition_index, storage_error_code(&e)),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
