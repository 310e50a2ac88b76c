//! Request frames: a big-endian `i32` length, then a request header and body.
//!
//! Decoding is split so that the broker can refuse a frame before reading it: the length
//! prefix is checked against `socket.request.max.bytes` first ([`check_frame_len`]), and only
//! then is the body read and decoded ([`decode_request`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, VersionRange};

use crate::error::FrameError;

/// Bytes of the length prefix in front of every request and response.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Checks a frame's length prefix before anything is allocated for it.
///
/// Kafka's `NetworkReceive` refuses negative sizes and sizes above `socket.request.max.bytes`
/// and closes the connection; so do we.
pub fn check_frame_len(prefix: [u8; LENGTH_PREFIX_BYTES], max_bytes: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    let len = usize::try_from(len).map_err(|_| FrameError::NegativeLength(len))?;
    if len > max_bytes {
        return Err(FrameError::TooLarge { len, max: max_bytes });
    }
    Ok(len)
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API the request is for.
    pub api_key: ApiKey,
    /// The request header (correlation id, client id, version).
    pub header: RequestHeader,
    /// The decoded body.
    pub body: RequestKind,
}

/// What a frame turned out to be. (Built once per request and consumed at once, so the
/// size difference between the variants costs nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// A request at a supported version.
    Request(Request),
    /// An ApiVersions request at a version newer than ours. KIP-511: answer it with a v0
    /// response carrying `UNSUPPORTED_VERSION` and our ranges, so the client can retry lower.
    ApiVersionsTooNew(RequestHeader),
}

/// Decodes one frame body (the bytes after the length prefix).
///
/// `supported` gives the version range this broker serves for an API, or `None` when it does
/// not serve the API at all. Every error means: close the connection.
pub fn decode_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<VersionRange>,
) -> Result<Decoded, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::Malformed(format!(
            "request header of {} bytes",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    let range = supported(api_key).ok_or(FrameError::UnsupportedApi(raw_key))?;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions && version > range.max {
            return Ok(Decoded::ApiVersionsTooNew(header));
        }
        return Err(FrameError::UnsupportedVersion {
            api_key: raw_key,
            version,
        });
    }
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| FrameError::Malformed(format!("{api_key:?} v{version}: {e}")))?;
    Ok(Decoded::Request(Request { api_key, header, body }))
}

/// Encodes a response with its length prefix and the header version the API requires
/// (ApiVersions responses always use header v0, which the crate's table knows).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, FrameError> {
    // Size the buffer up front: a multi-MiB Fetch response grown by doubling was copied again
    // at every step and touched fresh pages each time.
    let mut buf = BytesMut::with_capacity(size_hint(body));
    buf.put_i32(0); // length, filled in below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| FrameError::Malformed(format!("response header: {e}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| FrameError::Malformed(format!("{api_key:?} v{version} response: {e}")))?;
    let body_len = i32::try_from(buf.len() - LENGTH_PREFIX_BYTES)
        .map_err(|_| FrameError::Malformed("response larger than 2 GiB".into()))?;
    buf[..LENGTH_PREFIX_BYTES].copy_from_slice(&body_len.to_be_bytes());
    Ok(buf.freeze())
}

/// Record sets at least this large are not copied into an encoded Fetch response: the frame is
/// sent as slices instead (see [`encode_response_parts`]).
pub const SPLICE_MIN_BYTES: usize = 4 << 10;

/// Bytes of the marker that stands for a record set while a Fetch response is encoded.
const MARKER_BYTES: usize = 16;

/// A piece of a response frame from [`encode_response_parts`].
#[derive(Debug, Clone)]
pub enum FramePart {
    /// Bytes to send as they are.
    Bytes(Bytes),
    /// The record set the caller supplies itself: index into the `external` list it passed.
    External(usize),
}

/// Bytes of the marker that stands for a record set while a Fetch response is encoded: what a
/// caller puts in `records` for an [`encode_response_parts`] external record set.
pub const RECORDS_MARKER_BYTES: usize = MARKER_BYTES;

/// A fresh random marker for an external record set.
pub fn records_marker() -> [u8; MARKER_BYTES] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// Encodes a response as a list of parts whose concatenation is the frame. For a Fetch, every
/// record set of at least [`SPLICE_MIN_BYTES`] is a slice of the stored batches themselves
/// rather than a copy: the response is encoded with a unique 16-byte marker in place of each
/// such record set, and the frame is then cut at the markers with the real length prefixes and
/// record slices put in. Everything else is one slice, as [`encode_response`] makes it.
///
/// `external` lists record sets the caller sends itself (from files, say): each is
/// `(marker, length)`, and the partition's `records` holds that marker. Its place in the frame
/// comes back as [`FramePart::External`], after the right length prefix.
///
/// The markers are random (a v4 UUID each), so one turning up by accident in the rest of the
/// response (ids, names) is as likely as a UUID collision; they are looked for in order, after
/// the previous one.
pub fn encode_response_parts(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: ResponseKind,
    external: &[([u8; MARKER_BYTES], usize)],
) -> Result<Vec<FramePart>, FrameError> {
    let ResponseKind::Fetch(mut fetch) = body else {
        return encode_response(api_key, version, correlation_id, &body).map(|b| vec![FramePart::Bytes(b)]);
    };
    // In the order the encoder writes them: (marker, length, what goes there).
    let mut spliced: Vec<([u8; MARKER_BYTES], usize, FramePart)> = Vec::new();
    for t in fetch.responses.iter_mut() {
        for p in t.partitions.iter_mut() {
            let Some(records) = p.records.as_ref() else {
                continue;
            };
            if records.len() == MARKER_BYTES {
                if let Some(i) = external.iter().position(|(m, _)| records[..] == m[..]) {
                    spliced.push((external[i].0, external[i].1, FramePart::External(i)));
                    continue;
                }
            }
            if records.len() >= SPLICE_MIN_BYTES {
                let marker = records_marker();
                let real = p.records.replace(Bytes::copy_from_slice(&marker)).unwrap_or_default();
                spliced.push((marker, real.len(), FramePart::Bytes(real)));
            }
        }
    }
    if spliced.iter().filter(|s| matches!(s.2, FramePart::External(_))).count() != external.len() {
        return Err(FrameError::Malformed(
            "fetch response: an external record set has no partition".into(),
        ));
    }
    let encoded = encode_response(api_key, version, correlation_id, &ResponseKind::Fetch(fetch))?;
    if spliced.is_empty() {
        return Ok(vec![FramePart::Bytes(encoded)]);
    }
    // Flexible versions (12+) prefix records with an unsigned varint of length + 1, older ones
    // with an i32 length.
    let flexible = version >= 12;
    let old_prefix = if flexible { 1 } else { 4 };
    let mut parts = Vec::with_capacity(spliced.len() * 3 + 1);
    let mut from = 0;
    let mut total = encoded.len();
    for (marker, len, real) in spliced {
        let at = find(&encoded[from..], &marker)
            .map(|i| from + i)
            .ok_or_else(|| FrameError::Malformed("fetch response: a record marker went missing".into()))?;
        let prefix_at = at
            .checked_sub(old_prefix)
            .filter(|p| *p >= from)
            .ok_or_else(|| FrameError::Malformed("fetch response: no room for a length prefix".into()))?;
        let mut prefix = BytesMut::with_capacity(5);
        if flexible {
            put_unsigned_varint(&mut prefix, len as u64 + 1);
        } else {
            let len = i32::try_from(len).map_err(|_| FrameError::Malformed("record set over 2 GiB".into()))?;
            prefix.put_i32(len);
        }
        total = total - old_prefix - MARKER_BYTES + prefix.len() + len;
        parts.push(FramePart::Bytes(encoded.slice(from..prefix_at)));
        parts.push(FramePart::Bytes(prefix.freeze()));
        parts.push(real);
        from = at + MARKER_BYTES;
    }
    parts.push(FramePart::Bytes(encoded.slice(from..)));
    // The frame's own length prefix changes too; it is in the first slice.
    let body_len = i32::try_from(total - LENGTH_PREFIX_BYTES)
        .map_err(|_| FrameError::Malformed("response larger than 2 GiB".into()))?;
    let FramePart::Bytes(first) = &parts[0] else {
        unreachable!("the first part is the encoded head");
    };
    let mut head = BytesMut::from(&first[..]);
    head[..LENGTH_PREFIX_BYTES].copy_from_slice(&body_len.to_be_bytes());
    parts[0] = FramePart::Bytes(head.freeze());
    Ok(parts)
}

/// First position of `needle` (non-empty) in `haystack`. The haystack is the encoded response
/// without its large record sets, so at most a few KiB per partition.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        let i = haystack[at..=haystack.len() - needle.len()]
            .iter()
            .position(|b| *b == needle[0])?;
        if haystack[at + i..at + i + needle.len()] == *needle {
            return Some(at + i);
        }
        at += i + 1;
    }
    None
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A capacity that holds the encoded response without growing: the record bytes of a Fetch
/// response plus room for the per-partition fields; small for everything else.
fn size_hint(body: &ResponseKind) -> usize {
    const SMALL_RESPONSE_BYTES: usize = 512;
    /// Upper bound of one partition's fields besides its records (ids, offsets, tags).
    const PER_PARTITION_BYTES: usize = 96;
    match body {
        ResponseKind::Fetch(f) => {
            let parts = f.responses.iter().flat_map(|t| t.partitions.iter());
            SMALL_RESPONSE_BYTES
                + parts
                    .map(|p| PER_PARTITION_BYTES + p.records.as_ref().map_or(0, Bytes::len))
                    .sum::<usize>()
                + f.responses.iter().map(|t| t.topic.len() + 32).sum::<usize>()
        }
        _ => SMALL_RESPONSE_BYTES,
    }
}

/// Encodes a request with its length prefix; used by tests and tools that act as clients.
pub fn encode_request<R>(header: &RequestHeader, body: &R) -> Result<Bytes, FrameError>
where
    R: Encodable + HeaderVersion,
{
    let version = header.request_api_version;
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = i32::try_from(buf.len() - LENGTH_PREFIX_BYTES)
        .map_err(|_| FrameError::Malformed("request larger than 2 GiB".into()))?;
    buf[..LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Reads the body of an ApiVersions request leniently: clients send the newest version they
/// know, and the KIP-511 fields are best effort.
pub fn decode_api_versions_body(mut body: Bytes, version: i16) -> Option<ApiVersionsRequest> {
    if body.remaining() == 0 {
        return None;
    }
    ApiVersionsRequest::decode(&mut body, version).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spliced_fetch_responses_are_byte_identical_to_encoded_ones() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::{FetchResponse, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let records = |n: usize, fill: u8| Bytes::from(vec![fill; n]);
        let response = FetchResponse::default().with_session_id(7).with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_topic_id(uuid::Uuid::from_u128(0x1234_5678_9abc_def0))
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_records(Some(records(100_000, 1))),
                    PartitionData::default()
                        .with_partition_index(1)
                        .with_records(Some(records(10, 2))),
                    PartitionData::default().with_partition_index(2).with_records(None),
                    PartitionData::default()
                        .with_partition_index(3)
                        .with_records(Some(records(5000, 3))),
                ]),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(0)
                    .with_records(Some(records(300_000, 4)))]),
        ]);
        for version in [4, 7, 11, 12, 13, 16, 17, 18] {
            // v4-6 have no session id, and it is not a field an encoder may drop.
            let response = response.clone().with_session_id(if version >= 7 { 7 } else { 0 });
            let whole =
                encode_response(ApiKey::Fetch, version, 42, &ResponseKind::Fetch(response.clone())).expect("encodes");
            let parts = encode_response_parts(ApiKey::Fetch, version, 42, ResponseKind::Fetch(response.clone()), &[])
                .expect("encodes in parts");
            assert!(parts.len() > 1, "v{version}: the large record sets are slices");
            let joined: Vec<u8> = parts
                .iter()
                .flat_map(|p| match p {
                    FramePart::Bytes(b) => b.to_vec(),
                    FramePart::External(_) => panic!("no external record sets here"),
                })
                .collect();
            assert_eq!(joined, whole.to_vec(), "v{version}");
            // The same response with two record sets supplied by the caller (one large, one
            // below the splice size) comes out identical once those are put in.
            let (m0, m1) = (records_marker(), records_marker());
            let external_sets = [records(100_000, 1), records(10, 2)];
            let mut with_markers = response.clone();
            with_markers.responses[0].partitions[0].records = Some(Bytes::copy_from_slice(&m0));
            with_markers.responses[0].partitions[1].records = Some(Bytes::copy_from_slice(&m1));
            let parts = encode_response_parts(
                ApiKey::Fetch,
                version,
                42,
                ResponseKind::Fetch(with_markers),
                &[(m1, external_sets[1].len()), (m0, external_sets[0].len())],
            )
            .expect("encodes with external record sets");
            let joined: Vec<u8> = parts
                .iter()
                .flat_map(|p| match p {
                    FramePart::Bytes(b) => b.to_vec(),
                    FramePart::External(i) => external_sets[1 - *i].to_vec(),
                })
                .collect();
            assert_eq!(joined, whole.to_vec(), "v{version} with external record sets");
        }
    }

    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn all(api_key: ApiKey) -> Option<VersionRange> {
        Some(api_key.valid_versions())
    }

    fn metadata_frame(version: i16, correlation_id: i32) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let frame = encode_request(&header, &MetadataRequest::default()).expect("encodes");
        frame.slice(LENGTH_PREFIX_BYTES..)
    }

    #[test]
    fn frame_length_is_checked_before_reading() {
        assert_eq!(check_frame_len(10i32.to_be_bytes(), 100).expect("fits"), 10);
        assert!(matches!(
            check_frame_len((-1i32).to_be_bytes(), 100),
            Err(FrameError::NegativeLength(-1))
        ));
        assert!(matches!(
            check_frame_len(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge { len: 101, .. })
        ));
    }

    #[test]
    fn unknown_key_and_version_are_refused() {
        let mut frame = metadata_frame(12, 1).to_vec();
        frame[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(frame), all),
            Err(FrameError::UnknownApiKey(9999))
        ));
        let mut frame = metadata_frame(12, 1).to_vec();
        frame[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(frame), all),
            Err(FrameError::UnsupportedVersion { version: 99, .. }) | Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn too_new_api_versions_gets_fallback() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(77)
            .with_correlation_id(5);
        let mut buf = BytesMut::new();
        header.encode(&mut buf, 2).expect("encodes");
        buf.put_slice(&[0, 0, 0]); // unknown body: must not matter
        match decode_request(buf.freeze(), all).expect("decodes") {
            Decoded::ApiVersionsTooNew(h) => assert_eq!(h.correlation_id, 5),
            other => panic!("expected fallback, got {other:?}"),
        }
    }

    #[test]
    fn response_round_trips_with_length_prefix() {
        let body = ResponseKind::Metadata(MetadataResponse::default().with_throttle_time_ms(7));
        let bytes = encode_response(ApiKey::Metadata, 12, 42, &body).expect("encodes");
        let mut b = bytes.clone();
        let len = b.get_i32() as usize;
        assert_eq!(len, bytes.len() - 4);
        let header = ResponseHeader::decode(&mut b, ApiKey::Metadata.response_header_version(12)).expect("header");
        assert_eq!(header.correlation_id, 42);
        let resp = MetadataResponse::decode(&mut b, 12).expect("body");
        assert_eq!(resp.throttle_time_ms, 7);
        assert_eq!(b.remaining(), 0);
    }

    proptest! {
        // Property: every Metadata version round-trips through our request framing.
        #[test]
        fn metadata_request_frames_round_trip(version in 0i16..=12, cid in any::<i32>()) {
            let frame = metadata_frame(version, cid);
            match decode_request(frame, all).expect("decodes") {
                Decoded::Request(r) => {
                    prop_assert_eq!(r.api_key, ApiKey::Metadata);
                    prop_assert_eq!(r.header.correlation_id, cid);
                    prop_assert_eq!(r.header.request_api_version, version);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        // Property: arbitrary bytes never panic the decoder; they decode or return an error.
        #[test]
        fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(data), all);
        }

        // Property: mutating a valid frame never panics the decoder.
        #[test]
        fn mutated_frames_never_panic(version in 0i16..=12, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut frame = metadata_frame(version, 1).to_vec();
            let i = pos.index(frame.len());
            frame[i] = byte;
            let _ = decode_request(Bytes::from(frame), all);
        }
    }
}
