//! OffsetForLeaderEpoch (KIP-101, KIP-320): how consumers check, after a leader change, that
//! their position is still on the log.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::led_partition;
use crate::error::storage_error_code;
use crate::{partition_id, Broker};

fn answer(partition: i32, e: ResponseError) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(e.code())
        .with_leader_epoch(-1)
        .with_end_offset(-1)
}

/// Answers OffsetForLeaderEpoch from consumers (follower requests come with replication).
/// The epoch history is read from RocksDB, so the work runs on the blocking pool.
pub async fn handle(broker: &Arc<Broker>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let broker = broker.clone();
    match tokio::task::spawn_blocking(move || answer_all(&broker, req)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "OffsetForLeaderEpoch task failed");
            OffsetForLeaderEpochResponse::default()
        }
    }
}

fn answer_all(broker: &Broker, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let meta = broker.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = meta.topics.get(t.topic.as_str());
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let (topic, pmeta) = match led_partition(broker, topic, p.partition, p.current_leader_epoch) {
                Ok(found) => found,
                Err(e) => {
                    parts.push(answer(p.partition, e));
                    continue;
                }
            };
            let pid = partition_id(topic, p.partition);
            parts.push(
                match broker
                    .store
                    .end_offset_for_epoch(&pid, p.leader_epoch, pmeta.leader_epoch)
                {
                    Ok(Some((epoch, end))) => EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(epoch)
                        .with_end_offset(end),
                    // Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET, without an error.
                    Ok(None) => EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1),
                    Err(e) => answer(p.partition, storage_error_code(&e)),
                },
            );
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
