//! Retention over the socket: a topic with `retention.ms` loses its old batches once the
//! broker's retention pass runs, and ListOffsets(earliest) and Fetch agree with that.

use std::time::{Duration, Instant};

use fjord_tests::codes;
use fjord_tests::{encode_batch, test_records, Broker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::{Message, StrBytes};
use kafka_protocol::records::Compression;

const EARLIEST: i64 = -2;

#[test]
fn expired_batches_are_deleted_by_retention_ms() {
    let broker = Broker::start(&[("log.retention.check.interval.ms", "100")]);
    let mut client = broker.client();
    let topic = CreatableTopic::default()
        .with_name(fjord_tests::client::topic_name("retained"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("60000")))]);
    let resp = client.send_request(
        CreateTopicsRequest::VERSIONS.max,
        CreateTopicsRequest::default().with_topics(vec![topic]),
    );
    assert_eq!(resp.topics[0].error_code, codes::NONE);
    let topic = client.wait_for_topic("retained", 1);

    // Three records an hour old, then two fresh ones.
    let mut old = test_records(3, "old");
    for r in &mut old {
        r.timestamp -= 3_600_000;
    }
    assert_eq!(
        client
            .produce(9, &topic, 0, encode_batch(&old, Compression::Lz4), -1)
            .error_code,
        0
    );
    assert_eq!(
        client
            .produce(
                9,
                &topic,
                0,
                encode_batch(&test_records(2, "new"), Compression::None),
                -1
            )
            .error_code,
        0
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (err, earliest) = client.list_offset(&topic, 0, EARLIEST);
        assert_eq!(err, codes::NONE);
        if earliest == 3 {
            break;
        }
        assert_eq!(earliest, 0, "only the expired batch may go");
        assert!(Instant::now() < deadline, "retention never deleted the expired batch");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fetched, _) = client.fetch_all(12, &topic, 0, 3);
    assert_eq!(fetched.len(), 2, "the fresh records stay");
    assert!(fetched.iter().all(|r| r.offset >= 3));
    let (err, _) = client.list_offset(&topic, 0, -1);
    assert_eq!(err, codes::NONE);
    assert_eq!(client.log_end_offset(&topic, 0), 5);
}
