//! The HTTP listener's health endpoints over a real socket: `/readyz` says ready only once
//! Kafka clients can be served, says "not ready" as soon as a shutdown begins (while
//! connections drain), and `/healthz` answers whenever the process is up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::broker::free_port;
use fjord_tests::{Broker, BrokerOptions};

/// GET a path; `None` when nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = get(port, "/metrics")?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn readiness_follows_startup_and_shutdown() {
    let http = free_port();
    // Poll /readyz from before the process exists until it is ready.
    let seen: Arc<Mutex<Vec<Option<u16>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let r = get(http, "/readyz").map(|(s, _)| s);
                seen.lock().expect("lock").push(r);
                if r == Some(200) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let listener = format!("http://127.0.0.1:{http}");
    let mut broker = Broker::start_with(BrokerOptions::with_overrides(&[(
        "metrics.listener",
        listener.as_str(),
    )]));
    // Broker::start_with returned: Metadata works. Ready must be reported now at the latest.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(http, "/readyz").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "never ready: {:?}", get(http, "/readyz"));
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Release);
    poller.join().expect("poller");
    // Before ready: nothing listening or 503, never anything else, and no flapping back.
    let seen = seen.lock().expect("lock").clone();
    let first_ready = seen.iter().position(|s| *s == Some(200));
    for s in seen.iter().take(first_ready.unwrap_or(seen.len())) {
        assert!(matches!(s, None | Some(503)), "before ready: {seen:?}");
    }
    assert_eq!(get(http, "/healthz").map(|(s, _)| s), Some(200));

    // A Fetch long-polls on an empty partition, so shutdown must wait for it to drain.
    let mut client = broker.client();
    let topic = client.create_topic("readyz", 1);
    let fetch = fjord_tests::Client::fetch_request(&topic, 0, 0, 4_000, 1);
    client.write_request(12, &fetch).expect("fetch sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(http, "fjord_fetch_purgatory_size") != Some(1.0) {
        assert!(Instant::now() < deadline, "the fetch never started waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = broker.pid().expect("running");
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    // While it drains: alive, not ready.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match get(http, "/readyz") {
            Some((503, body)) => {
                assert!(body.contains("shutting down"), "{body}");
                break;
            }
            Some((200, _)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            other => panic!("expected 503 while draining, got {other:?}"),
        }
    }
    assert_eq!(get(http, "/healthz").map(|(s, _)| s), Some(200), "up while draining");
    let status = broker
        .terminate_within(Duration::from_secs(20))
        .expect("exits after draining");
    assert!(status.success(), "{status}");
    assert_eq!(get(http, "/healthz"), None, "nothing listens once the process is gone");
}
