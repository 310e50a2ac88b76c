//! Produce and Fetch over every version the broker advertises, every codec,
//! acks 0/1/-1, pipelining, long polling, and the error codes Kafka returns
//! for unknown topics and out-of-range offsets.

use std::time::{Duration, Instant};

use fjord_tests::client::{single_fetch_partition, single_produce_partition};
use fjord_tests::codes;
use fjord_tests::records::assert_same_records;
use fjord_tests::{decode_records, encode_batch, error_name, test_records, Broker, Client, Topic};
use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::{Message, StrBytes};
use kafka_protocol::records::{Compression, Record};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Produce v7 is the first that may carry zstd (KIP-110); Kafka answers
/// UNSUPPORTED_COMPRESSION_TYPE below it (`ProduceRequest.validateRecords`).
const FIRST_ZSTD_PRODUCE_VERSION: i16 = 7;

const PRODUCE_MAX: i16 = ProduceRequest::VERSIONS.max;
const FETCH_MAX: i16 = FetchRequest::VERSIONS.max;
/// The newest Fetch that addresses topics by name; 13+ use topic ids.
const FETCH_BY_NAME: i16 = 12;
/// The newest Produce that addresses topics by name; 13 uses topic ids.
const PRODUCE_BY_NAME: i16 = 12;

#[test]
fn produce_every_version_and_codec_then_fetch_every_version() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("pf-all", 3);
    assert!(!topic.id.is_nil(), "CreateTopics/Metadata returned a nil topic id");

    let mut expected: Vec<Vec<Record>> = vec![Vec::new(); 3];
    let mut n = 0usize;
    for version in ProduceRequest::VERSIONS.min..=PRODUCE_MAX {
        for acks in [1i16, -1] {
            for codec in CODECS {
                let partition = i32::try_from(n % 3).expect("small");
                let p = n % 3;
                let tag = format!("v{version}-a{acks}-{codec:?}");
                let records = test_records(2 + n % 4, &tag);
                n += 1;
                let resp = client.produce(version, &topic, partition, encode_batch(&records, codec), acks);
                if codec == Compression::Zstd && version < FIRST_ZSTD_PRODUCE_VERSION {
                    assert_eq!(
                        resp.error_code,
                        codes::UNSUPPORTED_COMPRESSION_TYPE,
                        "{tag}: zstd below Produce v7 got {}",
                        error_name(resp.error_code)
                    );
                    continue;
                }
                assert_eq!(
                    resp.error_code,
                    0,
                    "{tag}: {} {:?}",
                    error_name(resp.error_code),
                    resp.error_message
                );
                let next = i64::try_from(expected[p].len()).expect("small");
                assert_eq!(resp.base_offset, next, "{tag}: base offsets must be contiguous");
                if version >= 5 {
                    assert_eq!(resp.log_start_offset, 0, "{tag}: log start offset");
                }
                expected[p].extend(records);
            }
        }
    }

    for (p, want) in expected.iter().enumerate() {
        let partition = i32::try_from(p).expect("small");
        let leo = i64::try_from(want.len()).expect("small");
        assert_eq!(
            client.log_end_offset(&topic, partition),
            leo,
            "partition {p} log end offset"
        );
        for version in FetchRequest::VERSIONS.min..=FETCH_MAX {
            let (records, hw) = client.fetch_all(version, &topic, partition, 0);
            assert_eq!(
                hw, leo,
                "partition {p} fetch v{version}: high watermark must be the log end"
            );
            assert_same_records(&records, want, 0, &format!("partition {p} fetch v{version}"));
        }
        let data = client.fetch(FETCH_MAX, &topic, partition, 0);
        assert_eq!(data.log_start_offset, 0, "partition {p} log start offset");
        assert_eq!(
            data.last_stable_offset, leo,
            "partition {p}: no transactions, so LSO = HW"
        );
    }
}

#[test]
fn fetch_at_and_beyond_the_end() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("pf-range", 1);
    let records = test_records(5, "range");
    let resp = client.produce(PRODUCE_MAX, &topic, 0, encode_batch(&records, Compression::None), -1);
    assert_eq!(resp.error_code, 0, "{}", error_name(resp.error_code));

    for version in [FetchRequest::VERSIONS.min, FETCH_BY_NAME, FETCH_MAX] {
        // At the log end: no error, nothing to read.
        let at_end = client.fetch(version, &topic, 0, 5);
        assert_eq!(
            at_end.error_code,
            0,
            "v{version} at end: {}",
            error_name(at_end.error_code)
        );
        assert_eq!(at_end.high_watermark, 5, "v{version} at end: high watermark");
        let got = decode_records(&at_end.records.clone().unwrap_or_default()).expect("decode");
        assert!(got.iter().all(|r| r.offset < 5), "v{version}: records past the end");

        for offset in [6i64, 1_000_000, -5] {
            let data = client.fetch(version, &topic, 0, offset);
            assert_eq!(
                data.error_code,
                codes::OFFSET_OUT_OF_RANGE,
                "v{version} offset {offset}: {}",
                error_name(data.error_code)
            );
        }
    }
}

#[test]
fn unknown_topics_and_partitions() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let known = client.create_topic("pf-known", 3);
    let batch = || encode_batch(&test_records(1, "unknown"), Compression::None);

    // By name: UNKNOWN_TOPIC_OR_PARTITION.
    let missing = Topic::unknown("pf-no-such-topic");
    for version in [ProduceRequest::VERSIONS.min, PRODUCE_BY_NAME] {
        let r = client.produce(version, &missing, 0, batch(), 1);
        assert_eq!(
            r.error_code,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            "produce v{version}: {}",
            error_name(r.error_code)
        );
    }
    let f = client.fetch(FETCH_BY_NAME, &missing, 0, 0);
    assert_eq!(
        f.error_code,
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        "fetch v12: {}",
        error_name(f.error_code)
    );

    // By id (KIP-516): UNKNOWN_TOPIC_ID.
    let r = client.produce(PRODUCE_MAX, &missing, 0, batch(), 1);
    assert_eq!(
        r.error_code,
        codes::UNKNOWN_TOPIC_ID,
        "produce v{PRODUCE_MAX}: {}",
        error_name(r.error_code)
    );
    for version in [FETCH_BY_NAME + 1, FETCH_MAX] {
        let f = client.fetch(version, &missing, 0, 0);
        assert_eq!(
            f.error_code,
            codes::UNKNOWN_TOPIC_ID,
            "fetch v{version}: {}",
            error_name(f.error_code)
        );
    }

    // A partition the topic does not have.
    for version in [PRODUCE_BY_NAME, PRODUCE_MAX] {
        let r = client.produce(version, &known, 7, batch(), 1);
        assert_eq!(
            r.error_code,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            "produce v{version} partition 7: {}",
            error_name(r.error_code)
        );
    }
    for version in [FETCH_BY_NAME, FETCH_MAX] {
        let f = client.fetch(version, &known, 7, 0);
        assert_eq!(
            f.error_code,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            "fetch v{version} partition 7: {}",
            error_name(f.error_code)
        );
    }

    // Produce does not auto-create topics (only Metadata does).
    let md = client.metadata(Some(&["pf-no-such-topic"]), false);
    assert_eq!(md.topics.len(), 1);
    assert_eq!(
        md.topics[0].error_code,
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        "metadata: {}",
        error_name(md.topics[0].error_code)
    );
}

#[test]
fn acks_zero_gets_no_response_but_data_lands() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("pf-acks0", 1);
    let records = test_records(4, "acks0");
    let req = Client::produce_request(&topic, 0, encode_batch(&records, Compression::Lz4), 0);
    client.write_request(PRODUCE_MAX, &req).expect("writing acks=0 produce");

    // Responses come back in request order, so if the produce had been
    // answered, this read would see its correlation id instead.
    let mut av = ApiVersionsRequest::default();
    av.client_software_name = StrBytes::from_static_str("fjord-tests");
    av.client_software_version = StrBytes::from_static_str("1");
    let id = client.write_request(3, &av).expect("writing ApiVersions");
    let resp = client
        .read_response::<ApiVersionsRequest>(3, id)
        .unwrap_or_else(|e| panic!("the next response must answer ApiVersions: {e:#}"));
    assert_eq!(resp.error_code, 0);

    // acks=0 promises nothing about timing; give it a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.log_end_offset(&topic, 0) < 4 {
        assert!(Instant::now() < deadline, "acks=0 records never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fetched, hw) = client.fetch_all(FETCH_MAX, &topic, 0, 0);
    assert_eq!(hw, 4);
    assert_same_records(&fetched, &records, 0, "acks=0");
}

/// What was sent in the pipeline, so responses can be decoded in order.
enum Sent {
    Produce { id: i32, records: usize },
    Metadata { id: i32 },
    Fetch { id: i32 },
    ListOffsets { id: i32 },
    ApiVersions { id: i32 },
}

/// 50 requests written back-to-back without reading, then 50 responses read:
/// they must come in correlation-id order, and produces must append in order.
#[test]
fn fifty_pipelined_requests_answer_in_order() {
    pipeline(false);
}

/// Kafka handles one request per connection at a time (`SocketServer` mutes
/// the channel until the response is sent), so a pipelined Fetch or
/// ListOffsets sees every acks=1 produce written before it on the same
/// connection. Clients rely on this read-your-writes ordering.
#[test]
fn pipelined_requests_see_earlier_writes_on_the_connection() {
    pipeline(true);
}

fn pipeline(check_visibility: bool) {
    let broker = Broker::start(&[]);
    let mut setup = broker.client();
    let topic = setup.create_topic("pf-pipeline", 1);
    drop(setup);

    let mut client = broker.client();
    let mut sent = Vec::new();
    for i in 0..50usize {
        let s = match i % 5 {
            0 | 3 => {
                let records = test_records(1 + i % 3, &format!("pipe-{i}"));
                let req = Client::produce_request(&topic, 0, encode_batch(&records, Compression::Snappy), 1);
                Sent::Produce {
                    id: client.write_request(PRODUCE_MAX, &req).expect("write"),
                    records: records.len(),
                }
            }
            1 => {
                let mut req = MetadataRequest::default();
                req.topics = None;
                Sent::Metadata {
                    id: client.write_request(12, &req).expect("write"),
                }
            }
            2 => {
                let req = Client::fetch_request(&topic, 0, 0, 0, 0);
                Sent::Fetch {
                    id: client.write_request(FETCH_MAX, &req).expect("write"),
                }
            }
            _ => {
                let mut req = kafka_protocol::messages::ListOffsetsRequest::default();
                let mut t = kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default();
                t.name = fjord_tests::client::topic_name(&topic.name);
                let mut p = kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default();
                p.timestamp = -1;
                t.partitions = vec![p];
                req.topics = vec![t];
                req.replica_id = (-1).into();
                if i % 10 == 4 {
                    Sent::ListOffsets {
                        id: client
                            .write_request(ListOffsetsRequest::VERSIONS.max, &req)
                            .expect("write"),
                    }
                } else {
                    Sent::ApiVersions {
                        id: client.write_request(0, &ApiVersionsRequest::default()).expect("write"),
                    }
                }
            }
        };
        sent.push(s);
    }

    let mut next_offset = 0i64;
    for (i, s) in sent.into_iter().enumerate() {
        // A function, not a closure: it must fit every response type.
        fn ctx<T>(i: usize) -> impl FnOnce(anyhow::Error) -> T {
            move |e| panic!("pipelined response {i}: {e:#}")
        }
        match s {
            Sent::Produce { id, records } => {
                let resp = client
                    .read_response::<ProduceRequest>(PRODUCE_MAX, id)
                    .unwrap_or_else(ctx(i));
                let p = single_produce_partition(resp, 0);
                assert_eq!(p.error_code, 0, "pipelined produce {i}: {}", error_name(p.error_code));
                assert_eq!(p.base_offset, next_offset, "pipelined produce {i}: base offset");
                next_offset += i64::try_from(records).expect("small");
            }
            Sent::Metadata { id } => {
                let resp = client.read_response::<MetadataRequest>(12, id).unwrap_or_else(ctx(i));
                assert!(resp
                    .topics
                    .iter()
                    .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("pf-pipeline")));
            }
            Sent::Fetch { id } => {
                let resp = client
                    .read_response::<FetchRequest>(FETCH_MAX, id)
                    .unwrap_or_else(ctx(i));
                let p = single_fetch_partition(resp.responses, 0);
                assert_eq!(p.error_code, 0, "pipelined fetch {i}: {}", error_name(p.error_code));
                if check_visibility {
                    assert_eq!(p.high_watermark, next_offset, "pipelined fetch {i}: high watermark");
                }
            }
            Sent::ListOffsets { id } => {
                let resp = client
                    .read_response::<ListOffsetsRequest>(ListOffsetsRequest::VERSIONS.max, id)
                    .unwrap_or_else(ctx(i));
                let p = &resp.topics[0].partitions[0];
                assert_eq!(p.error_code, 0);
                if check_visibility {
                    assert_eq!(p.offset, next_offset, "pipelined ListOffsets {i}");
                }
            }
            Sent::ApiVersions { id } => {
                let resp = client.read_response::<ApiVersionsRequest>(0, id).unwrap_or_else(ctx(i));
                assert_eq!(resp.error_code, 0);
            }
        }
    }
}

/// The long-poll bound the tests use: Kafka's consumer default is 500 ms,
/// 5 s makes "returned early" and "waited" easy to tell apart.
const LONG_POLL_MS: i32 = 5_000;

#[test]
fn long_poll_returns_soon_after_data_arrives() {
    let broker = Broker::start(&[]);
    let mut consumer = broker.client();
    let topic = consumer.create_topic("pf-longpoll", 1);

    let req = Client::fetch_request(&topic, 0, 0, LONG_POLL_MS, 1);
    let started = Instant::now();
    let id = consumer
        .write_request(FETCH_MAX, &req)
        .expect("writing long-poll fetch");
    // Let the fetch park in the broker before the data exists; this pause is
    // the scenario, not a readiness wait.
    std::thread::sleep(Duration::from_millis(300));

    let mut producer = broker.client();
    let records = test_records(3, "longpoll");
    let r = producer.produce(PRODUCE_MAX, &topic, 0, encode_batch(&records, Compression::None), 1);
    assert_eq!(r.error_code, 0);

    let resp = consumer
        .read_response::<FetchRequest>(FETCH_MAX, id)
        .unwrap_or_else(|e| panic!("long-poll fetch: {e:#}"));
    let elapsed = started.elapsed();
    let p = single_fetch_partition(resp.responses, 0);
    assert_eq!(p.error_code, 0, "{}", error_name(p.error_code));
    assert!(
        elapsed < Duration::from_millis(2_500),
        "long poll took {elapsed:?} although data arrived after ~300 ms (max_wait {LONG_POLL_MS} ms)"
    );
    let got = decode_records(&p.records.unwrap_or_default()).expect("decode");
    assert_same_records(&got, &records, 0, "long poll");
}

/// A Fetch of no partition, as every Java consumer sends on close() to end its fetch session
/// (session id, epoch -1, its partitions forgotten), has nothing to wait for: Kafka answers it
/// at once whatever `max_wait_ms` says, and so must Fjord, or each close() takes
/// `fetch.max.wait.ms` longer. A sessionless one is the same.
#[test]
fn a_fetch_of_no_partition_is_answered_at_once() {
    let broker = Broker::start(&[]);
    let mut consumer = broker.client();
    let topic = consumer.create_topic("pf-no-partition", 1);
    // A session of one partition (epoch 0 opens it), then the closing fetch forgets it.
    let mut open = Client::fetch_request(&topic, 0, 0, 0, 0);
    open.session_epoch = 0;
    let opened = consumer.send_request(FETCH_MAX, open);
    assert_eq!(opened.error_code, 0, "{}", error_name(opened.error_code));
    assert!(opened.session_id > 0, "no session opened");
    let mut close = Client::fetch_request(&topic, 0, 0, LONG_POLL_MS, 1);
    close.topics.clear();
    close.session_id = opened.session_id;
    close.session_epoch = -1;
    let mut forget = kafka_protocol::messages::fetch_request::ForgottenTopic::default();
    forget.topic = fjord_tests::client::topic_name(&topic.name);
    forget.topic_id = topic.id;
    forget.partitions = vec![0];
    close.forgotten_topics_data = vec![forget];
    let mut sessionless = Client::fetch_request(&topic, 0, 0, LONG_POLL_MS, 1);
    sessionless.topics.clear();
    for (what, req) in [("closing", close), ("sessionless", sessionless)] {
        let started = Instant::now();
        let resp = consumer.send_request(FETCH_MAX, req);
        let elapsed = started.elapsed();
        assert_eq!(resp.error_code, 0, "{what}: {}", error_name(resp.error_code));
        assert!(resp.responses.is_empty(), "{what}: partitions in the answer");
        assert!(
            elapsed < Duration::from_millis(u64::try_from(LONG_POLL_MS).expect("positive") / 2),
            "a {what} fetch of no partition took {elapsed:?} (max_wait {LONG_POLL_MS} ms)"
        );
    }
}

#[test]
fn long_poll_without_data_waits_max_wait() {
    let broker = Broker::start(&[]);
    let mut consumer = broker.client();
    let topic = consumer.create_topic("pf-longpoll-empty", 1);

    let req = Client::fetch_request(&topic, 0, 0, LONG_POLL_MS, 1);
    let started = Instant::now();
    let resp = consumer.send_request(FETCH_MAX, req);
    let elapsed = started.elapsed();
    let p = single_fetch_partition(resp.responses, 0);
    assert_eq!(p.error_code, 0, "{}", error_name(p.error_code));
    let min = Duration::from_millis(u64::try_from(LONG_POLL_MS).expect("positive") * 8 / 10);
    let max = Duration::from_millis(u64::try_from(LONG_POLL_MS).expect("positive") + 3_000);
    assert!(
        elapsed >= min,
        "an empty long poll returned after {elapsed:?}, before 80% of {LONG_POLL_MS} ms"
    );
    assert!(
        elapsed <= max,
        "an empty long poll took {elapsed:?}, far over {LONG_POLL_MS} ms"
    );
    let got = decode_records(&p.records.unwrap_or_default()).expect("decode");
    assert!(got.is_empty(), "records appeared in an empty partition");
}
