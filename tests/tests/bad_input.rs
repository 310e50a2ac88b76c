//! Malformed frames close only the connection they arrived on.
//!
//! Kafka's `SocketServer` closes a connection whose size prefix is negative
//! or over `socket.request.max.bytes` (`InvalidReceiveException`), whose
//! header names an unknown API key or a version the broker does not enable
//! (`InvalidRequestException` from `parseRequestHeader`), or whose body does
//! not parse; ApiVersions is the one exception (KIP-511, see
//! `api_versions.rs`). Meanwhile an already-open client keeps working and the
//! process stays up.

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use fjord_tests::client::encode_request_frame;
use fjord_tests::records::assert_same_records;
use fjord_tests::{encode_batch, error_name, test_records, Broker, Client, Topic, XorShift64};
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use kafka_protocol::records::{Compression, Record};

/// How long the broker may take to close a connection after bad input.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A connection opened before the abuse, which must keep working.
struct Keeper {
    client: Client,
    topic: Topic,
    produced: Vec<Record>,
    rounds: usize,
}

impl Keeper {
    fn new(broker: &Broker, topic_name: &str) -> Self {
        let mut client = broker.client();
        let topic = client.create_topic(topic_name, 1);
        Self {
            client,
            topic,
            produced: Vec::new(),
            rounds: 0,
        }
    }

    /// Produce one batch and fetch the whole partition back.
    fn round_trip(&mut self, after: &str) {
        self.rounds += 1;
        let records = test_records(2, &format!("keeper-{}", self.rounds));
        let base = i64::try_from(self.produced.len()).expect("small");
        let r = self.client.produce(
            ProduceRequest::VERSIONS.max,
            &self.topic,
            0,
            encode_batch(&records, Compression::None),
            -1,
        );
        assert_eq!(
            r.error_code,
            0,
            "keeper produce after {after}: {}",
            error_name(r.error_code)
        );
        assert_eq!(r.base_offset, base, "keeper produce after {after}");
        self.produced.extend(records);
        let (fetched, hw) = self.client.fetch_all(FetchRequest::VERSIONS.max, &self.topic, 0, 0);
        assert_eq!(hw, i64::try_from(self.produced.len()).expect("small"));
        assert_same_records(&fetched, &self.produced, 0, &format!("keeper fetch after {after}"));
    }
}

/// A request header for `api_key`/`api_version` encoded at header v1 (which
/// every API accepts for its non-flexible versions), without a body.
fn header_v1(api_key: i16, api_version: i16, correlation_id: i32) -> BytesMut {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key;
    header.request_api_version = api_version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("fjord-tests-bad"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 1).expect("encoding header v1");
    buf
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&i32::try_from(body.len()).expect("small").to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The bad inputs, each on its own connection: (name, bytes, half-close after).
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut rng = XorShift64::new(0xBAD1);
    let mut cases = Vec::new();

    // Random bytes under a length prefix that matches them, with the first
    // byte forced so the "api key" is not a real one.
    let mut garbage = rng.bytes(200);
    garbage[0] = 0x7F;
    cases.push(("framed random garbage", framed(&garbage), false));

    // Raw random bytes: the first four are read as the size.
    let mut raw = rng.bytes(64);
    raw[0] = 0xC3; // negative as an i32: rejected however the rest reads
    cases.push(("raw random garbage", raw, false));

    // A size far above socket.request.max.bytes (100 MiB by default).
    cases.push(("length 0x7fffffff", 0x7fff_ffffi32.to_be_bytes().to_vec(), false));

    // A frame cut short, then the client hangs up.
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&header_v1(ApiKey::Metadata as i16, 4, 1)[..]);
    cases.push(("truncated frame then close", truncated, true));

    // Negative sizes.
    cases.push(("length -1", (-1i32).to_be_bytes().to_vec(), false));
    cases.push(("length i32::MIN", i32::MIN.to_be_bytes().to_vec(), false));

    // An empty frame: there is no header to parse.
    cases.push(("length 0", 0i32.to_be_bytes().to_vec(), false));

    // A well-formed header naming an API that does not exist.
    let mut unknown = header_v1(9999, 0, 2);
    unknown.put_slice(&[0u8; 8]);
    cases.push(("unknown api key 9999", framed(&unknown), false));

    // Known APIs at versions the broker does not support: above the newest,
    // and below Kafka 4's floor (Produce v0-2 were removed by KIP-896).
    let mut too_new = header_v1(ApiKey::Metadata as i16, 99, 3);
    too_new.put_slice(&[0u8; 8]);
    cases.push(("Metadata v99", framed(&too_new), false));
    // A well-formed Produce v2 body with acks=1: Kafka 4.1 advertises Produce
    // from v0 (KAFKA-18659) yet closes the connection on this (checked
    // against 4.1.1), rather than answering.
    let mut too_old = header_v1(ApiKey::Produce as i16, 2, 4);
    too_old.put_i16(1); // acks
    too_old.put_i32(1_000); // timeout_ms
    too_old.put_i32(1); // one topic
    too_old.put_i16(1);
    too_old.put_slice(b"t");
    too_old.put_i32(1); // one partition
    too_old.put_i32(0); // partition 0
    too_old.put_i32(-1); // null records
    cases.push(("Produce v2", framed(&too_old), false));

    // A valid header followed by a body that does not parse.
    let mut body = header_v1(ApiKey::Produce as i16, 3, 5);
    body.put_i16(0x7FFF); // transactional_id: a string longer than the frame
    body.put_slice(&rng.bytes(40));
    cases.push(("Produce v3 garbage body", framed(&body), false));
    let mut body = header_v1(ApiKey::Metadata as i16, 4, 6);
    body.put_i32(1_000_000); // a topics array far longer than the frame
    body.put_slice(b"x");
    cases.push(("Metadata v4 array longer than frame", framed(&body), false));

    cases
}

#[test]
fn each_bad_frame_closes_only_its_connection() {
    let mut broker = Broker::start(&[]);
    let mut keeper = Keeper::new(&broker, "bad-keeper");
    keeper.round_trip("start");

    for (name, bytes, half_close) in cases() {
        let mut victim = broker.client();
        // The broker may close mid-write on a large prefix; that is fine.
        let _ = victim.write_raw(&bytes);
        if half_close {
            victim.shutdown_write();
        }
        if let Err(e) = victim.expect_closed(CLOSE_WITHIN) {
            panic!("{name}: broker did not close the connection: {e}\n{}", broker.logs());
        }
        broker.assert_alive();
        keeper.round_trip(name);
    }

    // A fresh connection still works too.
    let mut fresh = broker.client();
    assert_eq!(fresh.api_versions(3).error_code, 0);
    broker.assert_alive();
}

/// Seed frames the fuzzer mutates: valid requests of several kinds.
fn seed_frames(topic: &Topic) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let records = test_records(3, "fuzz");
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let req = Client::produce_request(topic, 0, encode_batch(&records, codec), 1);
        for version in [7, 9, ProduceRequest::VERSIONS.max] {
            seeds.push(encode_request_frame(version, 100 + i as i32, &req).expect("encode produce"));
        }
    }
    let mut fetch = Client::fetch_request(topic, 0, 0, 0, 0);
    let mut p2 = FetchPartition::default();
    p2.partition = 1;
    fetch.topics[0].partitions.push(p2);
    for version in [4, 11, 12, 13, FetchRequest::VERSIONS.max] {
        seeds.push(encode_request_frame(version, 200, &fetch).expect("encode fetch"));
    }
    let mut md = MetadataRequest::default();
    md.topics = None;
    for version in [0, 4, 9, 12, MetadataRequest::VERSIONS.max] {
        seeds.push(encode_request_frame(version, 300, &md).expect("encode metadata"));
    }
    let mut av = ApiVersionsRequest::default();
    av.client_software_name = StrBytes::from_static_str("fuzz");
    av.client_software_version = StrBytes::from_static_str("1");
    seeds.push(encode_request_frame(3, 400, &av).expect("encode api versions"));
    let mut lo = ListOffsetsRequest::default();
    let mut t = kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default();
    t.name = fjord_tests::client::topic_name(&topic.name);
    let mut p = kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default();
    p.timestamp = -1;
    t.partitions = vec![p];
    lo.topics = vec![t];
    lo.replica_id = (-1).into();
    seeds.push(encode_request_frame(ListOffsetsRequest::VERSIONS.max, 500, &lo).expect("encode list offsets"));
    seeds
}

/// One mutation of a seed frame (length prefix included).
fn mutate(rng: &mut XorShift64, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    let fix_length = rng.chance(70);
    match rng.below(7) {
        0 => {
            // Flip a few bytes anywhere after the prefix.
            for _ in 0..1 + rng.below(8) {
                let i = 4 + rng.index(f.len() - 4);
                f[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            // Overwrite a few bytes with random values.
            for _ in 0..1 + rng.below(4) {
                let i = 4 + rng.index(f.len() - 4);
                f[i] = rng.byte();
            }
        }
        2 => {
            // Truncate.
            let keep = 4 + rng.index(f.len() - 4);
            f.truncate(keep);
        }
        3 => {
            // Insert random bytes.
            let at = 4 + rng.index(f.len() - 3);
            let junk_len = 1 + rng.index(32);
            let junk = rng.bytes(junk_len);
            f.splice(at..at, junk);
        }
        4 => {
            // Random api version.
            let v = (rng.below(40) as i16 - 5).to_be_bytes();
            f[6..8].copy_from_slice(&v);
        }
        5 => {
            // Set a 4-byte window to an extreme value (array/string lengths).
            let i = 4 + rng.index(f.len().saturating_sub(8).max(1));
            let extreme: [i32; 5] = [-1, -2, i32::MAX, i32::MIN, 0x00FF_FFFF];
            let v = extreme[rng.index(extreme.len())].to_be_bytes();
            let end = (i + 4).min(f.len());
            f[i..end].copy_from_slice(&v[..end - i]);
        }
        _ => {
            // Corrupt the length prefix only.
            let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            let delta = i32::try_from(rng.below(64)).expect("small") - 32;
            f[..4].copy_from_slice(&len.wrapping_add(delta).to_be_bytes());
            return f;
        }
    }
    if fix_length {
        let len = i32::try_from(f.len() - 4).expect("small");
        f[..4].copy_from_slice(&len.to_be_bytes());
    }
    f
}

/// Roughly 2000 mutated frames from a fixed seed, in small groups per
/// connection; then the broker must still answer and be alive.
#[test]
fn fuzzed_frames_do_not_take_the_broker_down() {
    const SEED: u64 = 0x5EED_F00D_2026;
    const FRAMES: usize = 2_000;
    /// A budget for the whole loop, so a broker that stalls connections
    /// cannot stretch this test past the suite's time limit.
    const BUDGET: Duration = Duration::from_secs(45);
    /// How long to wait for each connection to be answered or closed. A
    /// connection may legitimately stay open longer: a mutated Fetch can
    /// carry a huge max_wait_ms, and Kafka does not read (so does not see
    /// the half-close) while a request is in flight.
    const PER_CONNECTION: Duration = Duration::from_millis(200);

    let mut broker = Broker::start(&[]);
    let mut keeper = Keeper::new(&broker, "fuzz-keeper");
    let topic = keeper.client.create_topic("fuzz-target", 2);
    keeper.round_trip("start");
    let seeds = seed_frames(&topic);

    let mut rng = XorShift64::new(SEED);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut connections = 0usize;
    let mut stalled = 0usize;
    while sent < FRAMES {
        assert!(
            started.elapsed() < BUDGET,
            "fuzz budget {BUDGET:?} used up after {sent} frames on {connections} connections, \
             {stalled} of which stayed open {PER_CONNECTION:?} after the client half-closed (seed {SEED:#x})"
        );
        let mut conn = broker.client();
        connections += 1;
        let group = 1 + rng.index(4);
        for _ in 0..group {
            let seed = &seeds[rng.index(seeds.len())];
            let frame = mutate(&mut rng, seed);
            sent += 1;
            if conn.write_raw(&frame).is_err() {
                break; // already closed by the broker
            }
        }
        conn.shutdown_write();
        // Either outcome is fine: answered then closed, or closed, or still
        // parked (a mutated fetch may have a huge max_wait).
        if conn.expect_closed(PER_CONNECTION).is_err() {
            stalled += 1;
        }
        if connections.is_multiple_of(100) {
            broker.assert_alive();
        }
    }

    eprintln!(
        "fuzz: {sent} frames, {connections} connections, {stalled} stalled, {:?}",
        started.elapsed()
    );
    broker.assert_alive();
    keeper.round_trip("fuzzing");
    let mut fresh = broker.client();
    let av = fresh.api_versions(ApiVersionsRequest::VERSIONS.max);
    assert_eq!(
        av.error_code,
        0,
        "ApiVersions after fuzzing: {}",
        error_name(av.error_code)
    );
    let md = fresh.metadata(Some(&["fuzz-target"]), false);
    assert_eq!(md.topics.len(), 1);
    assert_eq!(
        md.topics[0].error_code,
        0,
        "Metadata after fuzzing: {}",
        error_name(md.topics[0].error_code)
    );
    assert_eq!(md.topics[0].partitions.len(), 2);
    assert!(!md.brokers.is_empty(), "Metadata after fuzzing lists no brokers");
    broker.assert_alive();
}
