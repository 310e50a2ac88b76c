//! ApiVersions: every version answers, the advertised ranges match what
//! `kafka-protocol` (regenerated from Kafka 4.4's schemas) can speak, a too-new request
//! gets KIP-511's v0-format fallback instead of a closed connection, and v5 checks the
//! cluster and node a client means to reach (KIP-1242).

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use fjord_tests::client::CLIENT_ID;
use fjord_tests::codes;
use fjord_tests::{error_name, Broker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The advertised (min, max) per api key, asserting each key appears once.
fn ranges(resp: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    let mut out = HashMap::new();
    for k in &resp.api_keys {
        assert!(
            out.insert(k.api_key, (k.min_version, k.max_version)).is_none(),
            "api key {} advertised twice",
            k.api_key
        );
    }
    out
}

#[test]
fn every_api_versions_version_answers() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    for version in ApiVersionsRequest::VERSIONS.min..=ApiVersionsRequest::VERSIONS.max {
        let resp = client.api_versions(version);
        assert_eq!(
            resp.error_code,
            0,
            "ApiVersions v{version}: {}",
            error_name(resp.error_code)
        );
        let r = ranges(&resp);
        let (min, max) = r
            .get(&(ApiKey::ApiVersions as i16))
            .copied()
            .unwrap_or_else(|| panic!("ApiVersions v{version} does not list ApiVersions itself"));
        assert_eq!(min, 0, "ApiVersions min version");
        assert_eq!(max, ApiVersionsRequest::VERSIONS.max, "ApiVersions max version");
    }
}

#[test]
fn v3_carries_client_software_name_and_version() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    for version in 3..=ApiVersionsRequest::VERSIONS.max {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("fjord-tests");
        req.client_software_version = StrBytes::from_static_str("1.2.3-rc.1");
        let resp = client.send_request(version, req);
        assert_eq!(resp.error_code, 0, "v{version}: {}", error_name(resp.error_code));
        assert!(!resp.api_keys.is_empty(), "v{version} listed no APIs");
    }
}

/// KIP-511: software name and version must match
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`; Kafka answers INVALID_REQUEST
/// (and keeps the connection) when they do not.
#[test]
fn v3_invalid_client_software_name_is_invalid_request() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("bad name!");
    req.client_software_version = StrBytes::from_static_str("1.0");
    let resp = client.send_request(3, req);
    assert_eq!(
        resp.error_code,
        codes::INVALID_REQUEST,
        "got {}",
        error_name(resp.error_code)
    );
    // The connection stays usable.
    assert_eq!(client.api_versions(3).error_code, 0);
}

/// KIP-1242: a v5 request naming another cluster, or this cluster but another node, gets
/// REBOOTSTRAP_REQUIRED and no ranges (the client's metadata is stale); naming this broker,
/// or nothing (a null cluster id, whatever the node id), gets the usual answer. Older versions
/// lack the fields, so nothing is checked.
#[test]
fn v5_checks_cluster_and_node_id() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let meta = client.metadata(Some(&[]), false);
    let cluster = meta.cluster_id.clone().expect("Metadata names the cluster");
    let node = meta.controller_id.0;
    assert!(node >= 0, "a single node is its own controller: {meta:?}");
    let ask = |client: &mut fjord_tests::client::Client, cluster: Option<&str>, node: i32| {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("fjord-tests");
        req.client_software_version = StrBytes::from_static_str("1.0");
        req.cluster_id = cluster.map(|c| StrBytes::from_string(c.to_string()));
        req.node_id = node;
        client.send_request(5, req)
    };
    let ok = ask(&mut client, Some(cluster.as_str()), node);
    assert_eq!(ok.error_code, 0, "this cluster and node: {}", error_name(ok.error_code));
    assert!(!ok.api_keys.is_empty());
    let unnamed = ask(&mut client, None, node + 7);
    assert_eq!(
        unnamed.error_code,
        0,
        "no cluster id: {}",
        error_name(unnamed.error_code)
    );
    let rebootstrap = ResponseError::RebootstrapRequired.code();
    for (cluster, node, what) in [
        ("another-cluster-id", node, "another cluster"),
        (cluster.as_str(), node + 1, "another node"),
    ] {
        let resp = ask(&mut client, Some(cluster), node);
        assert_eq!(resp.error_code, rebootstrap, "{what}: {}", error_name(resp.error_code));
        assert!(resp.api_keys.is_empty(), "{what}: ranges sent with the error");
    }
    // The connection stays usable, and v4 has no such check.
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("fjord-tests");
    req.client_software_version = StrBytes::from_static_str("1.0");
    assert_eq!(client.send_request(4, req).error_code, 0);
}

#[test]
fn advertised_ranges_match_kafka_protocol() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();
    let resp = client.api_versions(ApiVersionsRequest::VERSIONS.max);
    assert_eq!(resp.error_code, 0);
    let r = ranges(&resp);

    let required = [
        ("Produce", ApiKey::Produce, ProduceRequest::VERSIONS),
        ("Fetch", ApiKey::Fetch, FetchRequest::VERSIONS),
        ("ListOffsets", ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
        ("Metadata", ApiKey::Metadata, MetadataRequest::VERSIONS),
        ("ApiVersions", ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
        ("CreateTopics", ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
    ];
    for (name, key, crate_range) in required {
        let (min, max) = r
            .get(&(key as i16))
            .copied()
            .unwrap_or_else(|| panic!("{name} ({}) not advertised: {r:?}", key as i16));
        assert_eq!(max, crate_range.max, "{name} max version");
        assert!(min <= max, "{name} advertises {min}..{max}");
    }

    // Anything else advertised must be a real API, with a range inside what
    // kafka-protocol can decode (that is what the broker parses with). The one
    // exception is Kafka's own: 4.x still advertises Produce from v0 although
    // it rejects v0-2 (KIP-896), because librdkafka disables compression when
    // it does not see Produce v0 (KAFKA-18659). Kafka 4.1.1 answers 0..13.
    for (&key, &(min, max)) in &r {
        let api = ApiKey::try_from(key).unwrap_or_else(|_| panic!("advertised api key {key} is not a Kafka API"));
        let valid = api.valid_versions();
        let floor = if api == ApiKey::Produce { 0 } else { valid.min };
        assert!(
            min <= max && min >= floor && max <= valid.max,
            "{api:?} advertises {min}..{max}, outside {valid}"
        );
    }
}

/// KIP-511: an ApiVersions request newer than the broker knows is answered,
/// not dropped: error UNSUPPORTED_VERSION in the v0 body format (header v0),
/// listing at least ApiVersions' own range so the client can retry.
#[test]
fn too_new_version_gets_v0_fallback() {
    let broker = Broker::start(&[]);
    let mut client = broker.client();

    const TOO_NEW: i16 = 99;
    const CORRELATION_ID: i32 = 4242;
    // Header v2, as Kafka derives it for ApiVersions >= 3 (flexible versions).
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::ApiVersions as i16;
    header.request_api_version = TOO_NEW;
    header.correlation_id = CORRELATION_ID;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut body = BytesMut::new();
    header.encode(&mut body, 2).expect("encoding header v2");
    // A body the broker cannot know the shape of; it must not parse it.
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("fjord-tests");
    req.client_software_version = StrBytes::from_static_str("99.0");
    req.encode(&mut body, ApiVersionsRequest::VERSIONS.max)
        .expect("encoding body");
    body.put_slice(&[0u8; 3]); // fields a future version might add
    client.send_frame(&body).expect("sending too-new ApiVersions");

    let mut frame = client
        .read_frame()
        .unwrap_or_else(|e| panic!("no answer to ApiVersions v{TOO_NEW}: {e:#}\n{}", broker.logs()));
    let rh = ResponseHeader::decode(&mut frame, 0).expect("response header v0");
    assert_eq!(rh.correlation_id, CORRELATION_ID);
    let resp = ApiVersionsResponse::decode(&mut frame, 0).expect("v0-format ApiVersions body");
    assert!(frame.is_empty(), "{} trailing bytes after a v0 body", frame.len());
    assert_eq!(
        resp.error_code,
        codes::UNSUPPORTED_VERSION,
        "got {}",
        error_name(resp.error_code)
    );
    let r = ranges(&resp);
    assert_eq!(
        r.get(&(ApiKey::ApiVersions as i16)).copied(),
        Some((0, ApiVersionsRequest::VERSIONS.max)),
        "fallback must list ApiVersions' own range: {r:?}"
    );

    // The connection stays open and the client's retry at a known version works.
    let retry = client.api_versions(ApiVersionsRequest::VERSIONS.max);
    assert_eq!(retry.error_code, 0);
    assert!(ranges(&retry).contains_key(&(ApiKey::Produce as i16)));
}
