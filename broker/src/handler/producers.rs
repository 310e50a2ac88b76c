//! DescribeProducers (API 61): the producers with state in a partition this broker leads, as
//! `kafka-transactions describe-producers`, `find-hanging` and `abort` read them to find and
//! end a hanging transaction.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::led_partition;
use crate::error::storage_error_code;
use crate::{partition_id, Broker};

/// DescribeProducers.
pub async fn describe_producers(broker: &Arc<Broker>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let meta = broker.metadata();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = meta.topics.get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partition_indexes.len());
        for p in t.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(p);
            let pid = match led_partition(broker, topic, p, -1) {
                Ok((topic, _)) => partition_id(topic, p),
                Err(e) => {
                    partitions.push(answer.with_error_code(e.code()));
                    continue;
                }
            };
            let store = broker.store.clone();
            let read = tokio::task::spawn_blocking(move || store.active_producers(&pid)).await;
            let producers = match read {
                Ok(Ok(list)) => list,
                Ok(Err(e)) => {
                    partitions.push(answer.with_error_code(storage_error_code(&e).code()));
                    continue;
                }
                Err(_) => {
                    partitions.push(answer.with_error_code(ResponseError::UnknownServerError.code()));
                    continue;
                }
            };
            let active = producers
                .into_iter()
                .map(|(id, e)| {
                    ProducerState::default()
                        .with_producer_id(ProducerId(id))
                        .with_producer_epoch(e.epoch as i32)
                        .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                        .with_last_timestamp(e.last_timestamp)
                        .with_coordinator_epoch(e.coordinator_epoch)
                        .with_current_txn_start_offset(e.txn_first_offset.unwrap_or(-1))
                })
                .collect();
            partitions.push(answer.with_active_producers(active));
        }
        topics.push(TopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    DescribeProducersResponse::default().with_topics(topics)
}
