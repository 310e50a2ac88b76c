//! A tiny blocking Kafka client over [`TcpStream`], built on `kafka-protocol`.
//!
//! A frame is a 4-byte big-endian length, then a request header (version from
//! `Req::header_version`), then the body. Responses carry a response header
//! whose version comes from `Req::Response::header_version`; for ApiVersions
//! that is always v0 so that a client can read the answer before it knows any
//! versions (KIP-511).
//!
//! Helpers panic with context instead of returning errors: this is test code
//! and a panic message is the report.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::records::Record;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::records::decode_records;

/// Largest response frame the client accepts. Fetches in these tests stay far
/// below it; a bigger length prefix means the stream is out of sync.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20; // 256 MiB

/// How long one read or write may block before the test fails instead of
/// hanging. Long-poll fetches wait at most 5 s, so this leaves room.
pub const IO_TIMEOUT_MS: u64 = 30_000;

/// How long to wait for a TCP connect on loopback.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The client id sent in every request header.
pub const CLIENT_ID: &str = "fjord-tests";

/// A Kafka error code as `NAME (code)`, for assertion messages.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(e) => format!("{e:?} ({code})"),
    }
}

/// A topic as both addressing schemes see it: by name (Produce <= 12,
/// Fetch <= 12) and by id (Produce 13, Fetch >= 13, KIP-516).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// The topic id the broker assigned; nil if it reported none.
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: i32,
}

impl Topic {
    /// A topic that does not exist: a fresh name and a random id.
    pub fn unknown(name: &str) -> Self {
        Self {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: 1,
        }
    }
}

/// One blocking connection to a broker.
pub struct Client {
    /// The socket; reads and writes time out after [`IO_TIMEOUT_MS`].
    stream: TcpStream,
    /// Correlation id for the next request; it only increases, so responses
    /// can be matched to requests in order.
    next_correlation_id: i32,
}

impl Client {
    /// Connect to `addr` (e.g. `broker.bootstrap()`).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let addr: SocketAddr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))?;
        stream.set_write_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)))?;
        Ok(Self {
            stream,
            next_correlation_id: 1,
        })
    }

    /// The underlying socket, for tests that misbehave on purpose.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Change the read timeout (None blocks forever; tests never pass None).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("setting a non-zero read timeout");
    }

    /// Take the next correlation id.
    pub fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    /// Send `req` at `api_version` and read its response. Panics on any I/O or
    /// decoding error, with the request named in the message.
    pub fn send_request<Req: Request>(&mut self, api_version: i16, req: Req) -> Req::Response {
        self.try_send_request(api_version, &req)
            .unwrap_or_else(|e| panic!("request api_key={} v{api_version} failed: {e:#}", Req::KEY))
    }

    /// Send `req` at `api_version` and read its response.
    pub fn try_send_request<Req: Request>(&mut self, api_version: i16, req: &Req) -> anyhow::Result<Req::Response> {
        let correlation_id = self.write_request(api_version, req)?;
        self.read_response::<Req>(api_version, correlation_id)
    }

    /// Write one request without reading anything; returns its correlation id.
    pub fn write_request<Req: Request>(&mut self, api_version: i16, req: &Req) -> anyhow::Result<i32> {
        let correlation_id = self.take_correlation_id();
        let frame = encode_request_frame(api_version, correlation_id, req)?;
        self.stream.write_all(&frame).context("writing request frame")?;
        Ok(correlation_id)
    }

    /// Read the next response frame, check it answers `correlation_id`, and
    /// decode it as `Req::Response` at `api_version`. The body must be
    /// consumed exactly: trailing bytes mean the broker encoded another version.
    pub fn read_response<Req: Request>(
        &mut self,
        api_version: i16,
        correlation_id: i32,
    ) -> anyhow::Result<Req::Response> {
        let mut body = self.read_frame().context("reading response frame")?;
        let header_version = <Req::Response as HeaderVersion>::header_version(api_version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .with_context(|| format!("decoding response header v{header_version}"))?;
        ensure!(
            header.correlation_id == correlation_id,
            "response correlation id {} but expected {correlation_id}",
            header.correlation_id
        );
        let resp = Req::Response::decode(&mut body, api_version)
            .with_context(|| format!("decoding response api_key={} v{api_version}", Req::KEY))?;
        ensure!(
            body.is_empty(),
            "{} bytes left over after decoding response api_key={} v{api_version}",
            body.len(),
            Req::KEY
        );
        Ok(resp)
    }

    /// Write `body` with a correct 4-byte length prefix.
    pub fn send_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let len =
            i32::try_from(body.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 2 GiB"))?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)
    }

    /// Write raw bytes, length prefix and all (or none).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read one length-prefixed frame and return its body.
    pub fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        let mut len_buf = [0u8; 4];
        self.stream.read_exact(&mut len_buf).context("reading length prefix")?;
        let len = i32::from_be_bytes(len_buf);
        let len = usize::try_from(len).map_err(|_| anyhow!("negative response length {len}"))?;
        if len > MAX_RESPONSE_BYTES {
            bail!("response length {len} over {MAX_RESPONSE_BYTES}");
        }
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .with_context(|| format!("reading {len}-byte response body"))?;
        Ok(Bytes::from(body))
    }

    /// Half-close: tell the broker we will send nothing more.
    pub fn shutdown_write(&mut self) {
        // The peer may already have closed; either way nothing more is sent.
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Wait until the broker closes this connection: a read returns EOF or a
    /// reset. Bytes that arrive first are drained and counted. Err if the
    /// connection is still open after `within`.
    pub fn expect_closed(&mut self, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        let mut drained = 0usize;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "connection still open after {within:?} ({drained} bytes received)"
                ));
            }
            self.stream.set_read_timeout(Some(left)).expect("non-zero timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(drained),
                Ok(n) => drained += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reset, aborted, broken pipe: the broker closed it.
                Err(_) => return Ok(drained),
            }
        }
    }

    // ---- Convenience wrappers used across the test files. ----

    /// ApiVersions at `version` (v3+ carries the client software name and version).
    pub fn api_versions(&mut self, version: i16) -> ApiVersionsResponse {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("fjord-tests");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        self.send_request(version, req)
    }

    /// Metadata v12 for `topics` (None = all topics).
    pub fn metadata(&mut self, topics: Option<&[&str]>, allow_auto_topic_creation: bool) -> MetadataResponse {
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(topic_name(n));
                    t
                })
                .collect()
        });
        req.allow_auto_topic_creation = allow_auto_topic_creation;
        self.send_request(12, req)
    }

    /// Create `name` with `partitions` partitions and replication factor 1,
    /// asserting success, and return it with its topic id.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Topic {
        let version = CreateTopicsRequest::VERSIONS.max;
        let mut topic = CreatableTopic::default();
        topic.name = topic_name(name);
        topic.num_partitions = partitions;
        topic.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![topic];
        req.timeout_ms = 10_000;
        let resp = self.send_request(version, req);
        assert_eq!(
            resp.topics.len(),
            1,
            "CreateTopics answered {} topics",
            resp.topics.len()
        );
        let result = &resp.topics[0];
        assert_eq!(
            result.error_code,
            0,
            "CreateTopics {name}: {} {:?}",
            error_name(result.error_code),
            result.error_message
        );
        self.wait_for_topic(name, partitions)
    }

    /// Delete topic `name`, asserting success.
    pub fn delete_topic(&mut self, name: &str) {
        let mut req = kafka_protocol::messages::DeleteTopicsRequest::default();
        req.topic_names = vec![topic_name(name)];
        req.timeout_ms = 10_000;
        let resp = self.send_request(4, req);
        let code = resp.responses.first().map(|r| r.error_code);
        assert_eq!(code, Some(0), "DeleteTopics {name}: {:?}", code.map(error_name));
    }

    /// Poll Metadata until `name` has `partitions` partitions, all with a
    /// leader, and return it. Panics after 10 s.
    pub fn wait_for_topic(&mut self, name: &str, partitions: i32) -> Topic {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let md = self.metadata(Some(&[name]), false);
            if let Some(t) = md
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name))
            {
                let ready = t.error_code == 0
                    && i32::try_from(t.partitions.len()).ok() == Some(partitions)
                    && t.partitions.iter().all(|p| p.error_code == 0 && p.leader_id.0 >= 0);
                let topic = Topic {
                    name: name.to_string(),
                    id: t.topic_id,
                    partitions,
                };
                // Metadata can name a leader before that leader serves the
                // partition (Kafka answers NOT_LEADER_OR_FOLLOWER for a
                // moment after CreateTopics); ListOffsets asks the log itself.
                if ready && (0..partitions).all(|p| self.list_offset(&topic, p, -1).0 == 0) {
                    return topic;
                }
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} not ready with {partitions} partitions after 10 s: {md:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Build a one-partition produce request.
    pub fn produce_request(topic: &Topic, partition: i32, batch: Bytes, acks: i16) -> ProduceRequest {
        let mut pdata = PartitionProduceData::default();
        pdata.index = partition;
        pdata.records = Some(batch);
        let mut tdata = TopicProduceData::default();
        // Both are set; the encoder writes whichever the version carries.
        tdata.name = topic_name(&topic.name);
        tdata.topic_id = topic.id;
        tdata.partition_data = vec![pdata];
        let mut req = ProduceRequest::default();
        req.acks = acks;
        req.timeout_ms = 10_000;
        req.topic_data = vec![tdata];
        req
    }

    /// Produce one batch (acks must not be 0) and return the partition's answer.
    pub fn produce(
        &mut self,
        version: i16,
        topic: &Topic,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> PartitionProduceResponse {
        assert_ne!(acks, 0, "acks=0 gets no response; use write_request");
        let req = Self::produce_request(topic, partition, batch, acks);
        let resp = self.send_request(version, req);
        single_produce_partition(resp, partition)
    }

    /// Build a one-partition fetch request.
    pub fn fetch_request(topic: &Topic, partition: i32, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = 8 << 20;
        let mut t = FetchTopic::default();
        t.topic = topic_name(&topic.name);
        t.topic_id = topic.id;
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.max_wait_ms = max_wait_ms;
        req.min_bytes = min_bytes;
        req.max_bytes = 32 << 20;
        req.topics = vec![t];
        req
    }

    /// One fetch, answered at once (max_wait 0): the partition's data.
    pub fn fetch(&mut self, version: i16, topic: &Topic, partition: i32, offset: i64) -> PartitionData {
        let req = Self::fetch_request(topic, partition, offset, 0, 0);
        let resp = self.send_request(version, req);
        assert_eq!(
            resp.error_code,
            0,
            "fetch top-level error {}",
            error_name(resp.error_code)
        );
        single_fetch_partition(resp.responses, partition)
    }

    /// Fetch from `from` until the high watermark, asserting no errors;
    /// returns the records and the last high watermark seen.
    pub fn fetch_all(&mut self, version: i16, topic: &Topic, partition: i32, from: i64) -> (Vec<Record>, i64) {
        let mut out = Vec::new();
        let mut offset = from;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10_000, "fetch_all made no progress");
            let data = self.fetch(version, topic, partition, offset);
            assert_eq!(
                data.error_code,
                0,
                "fetch {}/{partition} at {offset} v{version}: {}",
                topic.name,
                error_name(data.error_code)
            );
            let records = decode_records(&data.records.clone().unwrap_or_default())
                .unwrap_or_else(|e| panic!("decoding fetched records v{version}: {e:#}"));
            // A fetch returns whole batches, which may start before `offset`.
            let fresh: Vec<Record> = records.into_iter().filter(|r| r.offset >= offset).collect();
            if let Some(last) = fresh.last() {
                offset = last.offset + 1;
            }
            let got_any = !fresh.is_empty();
            out.extend(fresh);
            if offset >= data.high_watermark || !got_any {
                return (out, data.high_watermark);
            }
        }
    }

    /// ListOffsets for one partition at `timestamp` (-1 latest, -2 earliest):
    /// (error code, offset).
    pub fn list_offset(&mut self, topic: &Topic, partition: i32, timestamp: i64) -> (i16, i64) {
        let version = ListOffsetsRequest::VERSIONS.max;
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = timestamp;
        let mut t = ListOffsetsTopic::default();
        t.name = topic_name(&topic.name);
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = (-1).into();
        req.topics = vec![t];
        let resp = self.send_request(version, req);
        let part = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .unwrap_or_else(|| panic!("ListOffsets answered no partition {partition}: {resp:?}"));
        (part.error_code, part.offset)
    }

    /// The log end offset via ListOffsets(LATEST), asserting no error.
    pub fn log_end_offset(&mut self, topic: &Topic, partition: i32) -> i64 {
        let (err, offset) = self.list_offset(topic, partition, -1);
        assert_eq!(
            err,
            0,
            "ListOffsets latest {}/{partition}: {}",
            topic.name,
            error_name(err)
        );
        offset
    }
}

/// A request frame: length prefix, header, body.
pub fn encode_request_frame<Req: Request>(api_version: i16, correlation_id: i32, req: &Req) -> anyhow::Result<Vec<u8>> {
    let mut header = RequestHeader::default();
    header.request_api_key = Req::KEY;
    header.request_api_version = api_version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut buf = BytesMut::new();
    buf.put_i32(0); // length, filled below
    header
        .encode(&mut buf, Req::header_version(api_version))
        .context("encoding request header")?;
    req.encode(&mut buf, api_version)
        .with_context(|| format!("encoding request api_key={} v{api_version}", Req::KEY))?;
    let len = i32::try_from(buf.len() - 4).context("request over 2 GiB")?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.to_vec())
}

/// `name` as the protocol's topic name type.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The one partition answer in a single-topic, single-partition produce response.
pub fn single_produce_partition(
    resp: kafka_protocol::messages::ProduceResponse,
    partition: i32,
) -> PartitionProduceResponse {
    assert_eq!(
        resp.responses.len(),
        1,
        "produce answered {} topics: {resp:?}",
        resp.responses.len()
    );
    let topic = resp.responses.into_iter().next().expect("length checked above");
    assert_eq!(
        topic.partition_responses.len(),
        1,
        "produce answered {} partitions",
        topic.partition_responses.len()
    );
    let p = topic
        .partition_responses
        .into_iter()
        .next()
        .expect("length checked above");
    assert_eq!(p.index, partition, "produce answered the wrong partition");
    p
}

/// The one partition answer in a single-topic, single-partition fetch response.
pub fn single_fetch_partition(
    responses: Vec<kafka_protocol::messages::fetch_response::FetchableTopicResponse>,
    partition: i32,
) -> PartitionData {
    assert_eq!(
        responses.len(),
        1,
        "fetch answered {} topics: {responses:?}",
        responses.len()
    );
    let topic = responses.into_iter().next().expect("length checked above");
    assert_eq!(
        topic.partitions.len(),
        1,
        "fetch answered {} partitions",
        topic.partitions.len()
    );
    let p = topic.partitions.into_iter().next().expect("length checked above");
    assert_eq!(p.partition_index, partition, "fetch answered the wrong partition");
    p
}
