//! What acks=-1 promises: once a produce is acknowledged, the records survive
//! a SIGKILL and a restart on the same `log.dirs`, byte for byte, at the
//! offsets the broker acknowledged. A SIGTERM shuts down cleanly (exit 0,
//! within a few seconds) and loses nothing either.

use std::time::{Duration, Instant};

use fjord_tests::records::assert_same_records;
use fjord_tests::{encode_batch, error_name, test_records, Broker, Client, Topic};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::protocol::Message;
use kafka_protocol::records::{Compression, Record};

const PARTITIONS: usize = 2;
const BATCHES: usize = 100;
const RECORDS_PER_BATCH: usize = 10;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Produce BATCHES acks=-1 batches round-robin over the partitions; returns
/// the acknowledged records per partition, in offset order from 0.
fn produce_acked(client: &mut Client, topic: &Topic, tag: &str) -> Vec<Vec<Record>> {
    let mut acked: Vec<Vec<Record>> = vec![Vec::new(); PARTITIONS];
    for b in 0..BATCHES {
        let p = b % PARTITIONS;
        let partition = i32::try_from(p).expect("small");
        let records = test_records(RECORDS_PER_BATCH, &format!("{tag}-{b}"));
        let codec = CODECS[b % CODECS.len()];
        let r = client.produce(
            ProduceRequest::VERSIONS.max,
            topic,
            partition,
            encode_batch(&records, codec),
            -1,
        );
        assert_eq!(r.error_code, 0, "batch {b}: {}", error_name(r.error_code));
        assert_eq!(
            r.base_offset,
            i64::try_from(acked[p].len()).expect("small"),
            "batch {b}: base offset"
        );
        acked[p].extend(records);
    }
    acked
}

/// Every acknowledged record is there, in order, with the same bytes, and
/// nothing else: checked by name (Fetch v12) and by topic id (newest Fetch).
fn verify(client: &mut Client, topic: &Topic, acked: &[Vec<Record>], after: &str) {
    for (p, want) in acked.iter().enumerate() {
        let partition = i32::try_from(p).expect("small");
        let leo = i64::try_from(want.len()).expect("small");
        assert_eq!(
            client.log_end_offset(topic, partition),
            leo,
            "{after}: partition {p} log end offset"
        );
        for version in [12, FetchRequest::VERSIONS.max] {
            let (records, hw) = client.fetch_all(version, topic, partition, 0);
            assert_eq!(hw, leo, "{after}: partition {p} high watermark (fetch v{version})");
            assert_same_records(&records, want, 0, &format!("{after}: partition {p} fetch v{version}"));
        }
    }
}

/// The topic as the restarted broker reports it: same id, same partitions.
fn same_topic_after_restart(client: &mut Client, before: &Topic, after: &str) {
    let now = client.wait_for_topic(&before.name, before.partitions);
    assert_eq!(now.id, before.id, "{after}: the topic id changed");
}

#[test]
fn acked_records_survive_sigkill_and_sigterm() {
    let mut broker = Broker::start(&[]);
    let port = broker.port();
    let mut client = broker.client();
    let partitions = i32::try_from(PARTITIONS).expect("small");
    let topic = client.create_topic("durable", partitions);
    let mut acked = produce_acked(&mut client, &topic, "before-kill");
    drop(client);

    // SIGKILL: no chance to flush anything that was not already durable.
    broker.kill();
    let down = Instant::now();
    broker.restart();
    assert_eq!(broker.port(), port, "restart must reuse the port");
    eprintln!("restart after SIGKILL took {:?}", down.elapsed());
    let mut client = broker.client();
    same_topic_after_restart(&mut client, &topic, "after SIGKILL");
    verify(&mut client, &topic, &acked, "after SIGKILL");

    // The log continues where it ended.
    for (p, records) in acked.iter_mut().enumerate() {
        let partition = i32::try_from(p).expect("small");
        let more = test_records(5, &format!("after-kill-{p}"));
        let r = client.produce(
            ProduceRequest::VERSIONS.max,
            &topic,
            partition,
            encode_batch(&more, Compression::None),
            -1,
        );
        assert_eq!(r.error_code, 0, "{}", error_name(r.error_code));
        assert_eq!(
            r.base_offset,
            i64::try_from(records.len()).expect("small"),
            "partition {p}: offsets continue after restart"
        );
        records.extend(more);
    }
    // A topic written and deleted just before: its segments are gone when the shutdown syncs.
    let gone = client.create_topic("deleted-before-sigterm", 1);
    let r = client.produce(
        ProduceRequest::VERSIONS.max,
        &gone,
        0,
        encode_batch(&test_records(5, "gone"), Compression::None),
        -1,
    );
    assert_eq!(r.error_code, 0, "{}", error_name(r.error_code));
    client.delete_topic("deleted-before-sigterm");
    drop(client);

    // SIGTERM: a clean, prompt exit with status 0.
    let started = Instant::now();
    let status = broker.terminate();
    let took = started.elapsed();
    assert!(
        status.success(),
        "fjord exited with {status} on SIGTERM\n{}",
        broker.logs()
    );
    assert!(took < Duration::from_secs(5), "SIGTERM shutdown took {took:?}");

    broker.restart();
    let mut client = broker.client();
    same_topic_after_restart(&mut client, &topic, "after SIGTERM");
    verify(&mut client, &topic, &acked, "after SIGTERM");
}

/// A broker killed mid-stream keeps every acknowledged batch even when
/// un-acknowledged produces were in flight; offsets stay contiguous.
#[test]
fn sigkill_with_produces_in_flight_keeps_acked_prefix() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.client();
    let topic = client.create_topic("durable-inflight", 1);
    let mut acked: Vec<Record> = Vec::new();
    for b in 0..20 {
        let records = test_records(10, &format!("acked-{b}"));
        let r = client.produce(
            ProduceRequest::VERSIONS.max,
            &topic,
            0,
            encode_batch(&records, Compression::Lz4),
            -1,
        );
        assert_eq!(r.error_code, 0, "{}", error_name(r.error_code));
        acked.extend(records);
    }
    // Fire more without waiting, then kill at once.
    for b in 0..20 {
        let records = test_records(10, &format!("inflight-{b}"));
        let req = Client::produce_request(&topic, 0, encode_batch(&records, Compression::None), -1);
        if client.write_request(ProduceRequest::VERSIONS.max, &req).is_err() {
            break;
        }
    }
    broker.kill();
    drop(client);
    broker.restart();

    let mut client = broker.client();
    let (records, hw) = client.fetch_all(FetchRequest::VERSIONS.max, &topic, 0, 0);
    let acked_len = i64::try_from(acked.len()).expect("small");
    assert!(
        hw >= acked_len,
        "high watermark {hw} below the {acked_len} acknowledged records"
    );
    assert_eq!(
        i64::try_from(records.len()).expect("small"),
        hw,
        "records up to the high watermark"
    );
    assert_same_records(&records[..acked.len()], &acked, 0, "acknowledged prefix");
    // Whatever of the in-flight data survived is whole batches, in the
    // order they were sent, with nothing skipped.
    let survived = &records[acked.len()..];
    assert_eq!(survived.len() % 10, 0, "a partial batch survived");
    for (b, chunk) in survived.chunks(10).enumerate() {
        let expected = test_records(10, &format!("inflight-{b}"));
        for (got, want) in chunk.iter().zip(&expected) {
            assert_eq!(got.key, want.key, "surviving in-flight batch {b}");
            assert_eq!(got.value, want.value, "surviving in-flight batch {b}");
        }
    }
}
