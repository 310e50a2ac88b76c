//! `queued.max.request.bytes`: request bytes read and not yet answered, over every
//! connection, are bounded. Two clients that announce large frames and send only part of them
//! hold the whole bound; a third client's request then waits, unread, until one of them goes.

use std::io::Write;
use std::time::{Duration, Instant};

use fjord_tests::{Broker, BrokerOptions, Client};
use kafka_protocol::messages::ApiVersionsRequest;

const FRAME_MAX: usize = 1 << 20;

/// A connection that announced a `FRAME_MAX` frame and sent a little of it.
fn hog(broker: &Broker) -> Client {
    let mut c = broker.client();
    let mut start = (FRAME_MAX as i32).to_be_bytes().to_vec();
    start.extend_from_slice(&[0u8; 1000]);
    c.stream().write_all(&start).expect("write a frame's start");
    c
}

/// Whether an ApiVersions request on a new connection is answered within `within`; the
/// connection is returned with the request outstanding when it is not.
fn probe(broker: &Broker, within: Duration) -> (bool, Client) {
    let mut c = broker.client();
    let id = c
        .write_request(3, &ApiVersionsRequest::default())
        .expect("write ApiVersions");
    c.set_read_timeout(within);
    let answered = c.read_response::<ApiVersionsRequest>(3, id).is_ok();
    (answered, c)
}

#[test]
fn requests_wait_while_the_queued_request_bytes_are_taken() {
    let broker = Broker::start(&[
        ("socket.request.max.bytes", &FRAME_MAX.to_string()),
        ("queued.max.request.bytes", &(2 * FRAME_MAX).to_string()),
    ]);
    let (answered, _) = probe(&broker, Duration::from_secs(5));
    assert!(answered, "a request on an idle broker was not answered");

    let first = hog(&broker);
    let _second = hog(&broker);
    // The hogs' reservations happen when the broker reads their length prefixes; probe until
    // a request goes unanswered (bounded), which it must once both are in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting = loop {
        let (answered, c) = probe(&broker, Duration::from_millis(500));
        if !answered {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "requests were still read with 2 MiB of frames announced against a 2 MiB bound"
        );
    };
    // One hog goes: its bytes come back and the waiting request is read and answered.
    drop(first);
    waiting.set_read_timeout(Duration::from_secs(10));
    let frame = waiting
        .read_frame()
        .expect("the waiting request is answered once memory frees");
    assert!(frame.len() >= 4, "an ApiVersions response");
    let (answered, _) = probe(&broker, Duration::from_secs(5));
    assert!(answered, "requests are read again");
}

#[test]
fn a_bound_below_the_largest_request_is_refused_at_start() {
    let report = Broker::run_until_exit(
        BrokerOptions::with_overrides(&[
            ("socket.request.max.bytes", "2097152"),
            ("queued.max.request.bytes", "1048576"),
        ]),
        Duration::from_secs(20),
    );
    assert!(report.status.is_some_and(|s| !s.success()), "{report:?}");
    assert!(report.stderr.contains("queued.max.request.bytes"), "{}", report.stderr);
}
