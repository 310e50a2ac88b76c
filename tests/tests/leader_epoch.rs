//! OffsetForLeaderEpoch over the socket: the end offset of the epoch in force is the log end,
//! and a request from a newer epoch than the leader's is told UNKNOWN_LEADER_EPOCH. ListOffsets
//! reports the leader epoch from v4, the first version that has it.

use fjord_tests::codes;
use fjord_tests::{encode_batch, test_records, Broker, Topic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, OffsetForLeaderEpochRequest};
use kafka_protocol::protocol::Message;
use kafka_protocol::records::Compression;

fn request(topic: &Topic, partition: i32, current: i32, epoch: i32) -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(fjord_tests::client::topic_name(&topic.name))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])])
}

#[test]
fn epoch_in_force_ends_at_the_log_end() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("ofle", 2);
    for _ in 0..3 {
        let p = client.produce(9, &topic, 1, encode_batch(&test_records(4, "e"), Compression::None), -1);
        assert_eq!(p.error_code, 0);
    }
    for version in OffsetForLeaderEpochRequest::VERSIONS.min..=OffsetForLeaderEpochRequest::VERSIONS.max {
        let resp = client.send_request(version, request(&topic, 1, 0, 0));
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 12), "v{version}");
        let empty = client.send_request(version, request(&topic, 0, 0, 0));
        let p = &empty.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, 0, 0),
            "v{version} empty partition"
        );
    }
    let newer = client.send_request(4, request(&topic, 1, 7, 7));
    assert_eq!(newer.topics[0].partitions[0].error_code, codes::UNKNOWN_LEADER_EPOCH);
    let unknown = client.send_request(4, request(&topic, 9, -1, 0));
    assert_eq!(
        unknown.topics[0].partitions[0].error_code,
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
}

/// ListOffsets v1-3 have no leader epoch, and it is not a field their encoder may drop: an
/// answer carrying one would not encode and the connection would be closed.
#[test]
fn list_offsets_answers_every_version_with_the_epoch_from_v4() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("list-offsets-epoch", 1);
    let p = client.produce(9, &topic, 0, encode_batch(&test_records(3, "e"), Compression::None), -1);
    assert_eq!(p.error_code, 0);
    for version in ListOffsetsRequest::VERSIONS.min..=ListOffsetsRequest::VERSIONS.max {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(fjord_tests::client::topic_name(&topic.name))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let resp = client.send_request(version, req);
        let p = &resp.topics[0].partitions[0];
        let epoch = if version >= 4 { 0 } else { -1 };
        assert_eq!((p.error_code, p.offset, p.leader_epoch), (0, 3, epoch), "v{version}");
    }
}
