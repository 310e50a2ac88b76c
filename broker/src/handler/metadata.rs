//! Metadata: brokers, topics, partitions, leaders; auto-creates topics when allowed.

use fjord_controller::{ClusterMetadata, TopicMeta};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name, validate_topic_name, RequestContext, AUTHORIZED_OPERATIONS_OMITTED};
use crate::handler::admin;
use crate::Broker;

/// The broker list, each broker at its address on the listener the client used (a broker
/// without that listener is left out, as Kafka leaves it out). Fenced brokers (silent past
/// `broker.session.timeout.ms`) are left out too, as in Kafka.
pub fn brokers(broker: &Broker, ctx: &RequestContext, meta: &ClusterMetadata) -> Vec<MetadataResponseBroker> {
    let mut out: Vec<MetadataResponseBroker> = meta
        .brokers
        .values()
        .filter(|b| b.node_id == broker.node_id() || !meta.fenced.contains(&b.node_id))
        .filter_map(|b| {
            let (host, port) = if b.node_id == broker.node_id() {
                (ctx.endpoint.host.clone(), ctx.endpoint.port)
            } else {
                let (host, port) = b.endpoint(&ctx.endpoint.listener)?;
                (host.to_string(), port)
            };
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    if !meta.brokers.contains_key(&broker.node_id()) {
        out.push(
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node_id()))
                .with_host(str_bytes(ctx.endpoint.host.clone()))
                .with_port(i32::from(ctx.endpoint.port)),
        );
    }
    out
}

/// A topic as Metadata describes it.
pub fn topic_response(t: &TopicMeta) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.topic_id)
        .with_is_internal(crate::group::consumer::INTERNAL_TOPICS.contains(&t.name.as_str()))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    // A partition whose leader was fenced with no in-sync replica to take over
                    // is offline until one comes back (Kafka: LEADER_NOT_AVAILABLE, leader -1).
                    let error = if p.leader < 0 {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    MetadataResponsePartition::default()
                        .with_error_code(error)
                        .with_partition_index(p.partition)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                        .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                })
                .collect(),
        )
}

fn topic_error(name: Option<StrBytes>, id: fjord_controller::Uuid, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(kafka_protocol::messages::TopicName))
        .with_topic_id(id)
        .with_error_code(e.code())
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Answers Metadata.
pub async fn handle(broker: &Broker, ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    // Before v4 there was no flag: those clients always asked for auto-creation.
    let allow_auto_create = (ctx.version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics;
    let mut meta = broker.metadata();
    let topics = match req.topics {
        None => meta.topics.values().map(topic_response).collect(),
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for t in requested {
                let name = t.name.map(|n| n.0);
                let Some(name) = name else {
                    // v10+: by topic id.
                    let r = match meta.topic_by_id(&t.topic_id) {
                        Some(topic) => topic_response(topic),
                        None => topic_error(None, t.topic_id, ResponseError::UnknownTopicId),
                    };
                    out.push(r);
                    continue;
                };
                if let Some(topic) = meta.topics.get(name.as_str()) {
                    out.push(topic_response(topic));
                    continue;
                }
                if validate_topic_name(name.as_str()).is_err() {
                    out.push(topic_error(
                        Some(name),
                        Default::default(),
                        ResponseError::InvalidTopicException,
                    ));
                    continue;
                }
                if !allow_auto_create {
                    out.push(topic_error(
                        Some(name),
                        Default::default(),
                        ResponseError::UnknownTopicOrPartition,
                    ));
                    continue;
                }
                match admin::auto_create(broker, name.as_str()).await {
                    Ok(topic) => {
                        meta = broker.metadata();
                        out.push(topic_response(&topic));
                    }
                    Err(ResponseError::TopicAlreadyExists) => {
                        // Raced with another creator: describe what exists now.
                        meta = broker.metadata();
                        match meta.topics.get(name.as_str()) {
                            Some(topic) => out.push(topic_response(topic)),
                            None => out.push(topic_error(
                                Some(name),
                                Default::default(),
                                ResponseError::LeaderNotAvailable,
                            )),
                        }
                    }
                    Err(code) => out.push(topic_error(Some(name), Default::default(), code)),
                }
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers(broker, ctx, &meta))
        .with_cluster_id(Some(str_bytes(meta.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.controller_id(&meta)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
