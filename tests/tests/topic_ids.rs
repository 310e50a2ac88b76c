//! Committed offsets by topic id (OffsetCommit and OffsetFetch v10, KIP-848's topic ids): the
//! same offsets as by name (they are kept by name), an unknown id answered UNKNOWN_TOPIC_ID, and
//! a known id's partition that does not exist UNKNOWN_TOPIC_OR_PARTITION, as Kafka 4.4 answers.

use fjord_tests::client::topic_name;
use fjord_tests::{error_name, Broker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

fn commit_topic(name: &str, id: Uuid, partitions: &[(i32, i64)]) -> OffsetCommitRequestTopic {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic_name(name);
    t.topic_id = id;
    t.partitions = partitions
        .iter()
        .map(|&(p, o)| {
            let mut cp = OffsetCommitRequestPartition::default();
            cp.partition_index = p;
            cp.committed_offset = o;
            cp
        })
        .collect();
    t
}

fn fetch_group(group: &str, topics: Vec<OffsetFetchRequestTopics>) -> OffsetFetchRequest {
    let mut g = OffsetFetchRequestGroup::default();
    g.group_id = GroupId(StrBytes::from_string(group.to_string()));
    g.topics = Some(topics);
    g.member_epoch = -1;
    let mut req = OffsetFetchRequest::default();
    req.groups = vec![g];
    req
}

fn fetch_topic(name: &str, id: Uuid, partitions: &[i32]) -> OffsetFetchRequestTopics {
    let mut t = OffsetFetchRequestTopics::default();
    t.name = topic_name(name);
    t.topic_id = id;
    t.partition_indexes = partitions.to_vec();
    t
}

#[test]
fn offsets_by_topic_id_are_the_offsets_by_name() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("ids-offsets", 2);
    assert!(!topic.id.is_nil(), "the broker gave the topic no id");
    let unknown = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

    // A group-less commit (generation -1, no member), as assign() consumers make.
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("ids-group"));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![
        commit_topic("", topic.id, &[(0, 42), (1, 7), (5, 1)]),
        commit_topic("", unknown, &[(0, 1)]),
    ];
    let resp = client.send_request(10, req);
    let codes: Vec<(Uuid, i32, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index, p.error_code))
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (topic.id, 0, 0),
            (topic.id, 1, 0),
            (topic.id, 5, ResponseError::UnknownTopicOrPartition.code()),
            (unknown, 0, ResponseError::UnknownTopicId.code()),
        ],
        "OffsetCommit v10 answer"
    );

    // By id (v10) and by name (v9): the same offsets; the unknown id answered per partition.
    let by_id = client.send_request(
        10,
        fetch_group(
            "ids-group",
            vec![fetch_topic("", topic.id, &[0, 1]), fetch_topic("", unknown, &[3])],
        ),
    );
    let g = &by_id.groups[0];
    assert_eq!(g.error_code, 0, "{}", error_name(g.error_code));
    let got: Vec<(Uuid, i32, i64, i16)> = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index, p.committed_offset, p.error_code))
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (topic.id, 0, 42, 0),
            (topic.id, 1, 7, 0),
            (unknown, 3, -1, ResponseError::UnknownTopicId.code()),
        ],
        "OffsetFetch v10 answer"
    );
    let by_name = client.send_request(
        9,
        fetch_group("ids-group", vec![fetch_topic(&topic.name, Uuid::nil(), &[0, 1])]),
    );
    let got: Vec<(String, i32, i64)> = by_name.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(
        got,
        vec![(topic.name.clone(), 0, 42), (topic.name.clone(), 1, 7)],
        "OffsetFetch v9 answer"
    );
}
