//! Requests this broker sends to the other brokers' client listeners, as a Kafka broker does:
//! a follower's Fetch and OffsetForLeaderEpoch (its own connection, see
//! `replication::fetcher`), a transaction coordinator's WriteTxnMarkers to partition leaders,
//! and a partition leader's AddPartitionsToTxn check with a transaction coordinator (KIP-890).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::frame::encode_request;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Broker;

/// Largest response read from a peer: a fetch answers at least one whole batch, whatever the
/// byte limits, so this only bounds a broken peer.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// How long a request to a peer may take beyond its own wait before the connection is dropped
/// (Kafka's `replica.socket.timeout.ms` default is 30 s; a dead peer is noticed by the
/// controller well before that).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to another broker's client listener.
pub(crate) struct Conn {
    stream: TcpStream,
    correlation: i32,
    client_id: &'static str,
}

impl Conn {
    /// Connects to `host:port`; requests carry `client_id`.
    pub(crate) async fn open(host: &str, port: u16, client_id: &'static str) -> std::io::Result<Conn> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            correlation: 0,
            client_id,
        })
    }

    /// Sends one request and reads its answer; `wait` is how long the peer may hold it on
    /// purpose (a fetch's long poll), on top of [`REQUEST_TIMEOUT`]. After an error the
    /// connection is not to be used again: an answer may still be on its way.
    pub(crate) async fn call<Req, Resp>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        wait: Duration,
    ) -> std::io::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let frame = encode_request(&header, req).map_err(|e| bad(e.to_string()))?;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let len = self.stream.read_u32().await? as usize;
            if len > MAX_RESPONSE_BYTES {
                return Err(bad(format!("a response of {len} bytes")));
            }
            let mut body = vec![0u8; len];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(wait + REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer did not answer"))??;
        let header =
            ResponseHeader::decode(&mut body, Resp::header_version(version)).map_err(|e| bad(e.to_string()))?;
        if header.correlation_id != self.correlation {
            return Err(bad("an answer to another request".into()));
        }
        Resp::decode(&mut body, version).map_err(|e| bad(e.to_string()))
    }
}

/// What a request to a peer is for. Each kind has its own connection to each peer, so that
/// one kind never waits behind the other: a transaction coordinator holding a transaction's
/// lock sends markers, while a partition leader's verification waits on such a lock at the
/// coordinator; on one shared connection two brokers doing both to each other would each wait
/// for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    /// WriteTxnMarkers, from a transaction coordinator.
    Markers,
    /// AddPartitionsToTxn checks, from a partition leader or group coordinator.
    Verify,
}

/// One reusable connection per peer and [`Channel`] for coordinator traffic.
#[derive(Default)]
pub(crate) struct Peers {
    conns: Mutex<HashMap<(i32, Channel), Slot>>,
}

/// A peer's connection, taken out while a request is in flight.
type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

impl Peers {
    /// Sends `req` to broker `node` and reads the answer. One request at a time per peer;
    /// the connection is taken out for the exchange, so a caller dropped midway (a timeout, a
    /// cancelled request) leaves no half-read answer for the next one.
    pub(crate) async fn call<Req, Resp>(
        &self,
        broker: &Broker,
        node: i32,
        channel: Channel,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> std::io::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let slot = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((node, channel))
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        let mut conn = match slot.take() {
            Some(c) => c,
            None => {
                let (host, port) = broker
                    .metadata()
                    .brokers
                    .get(&node)
                    .map(|b| (b.host.clone(), b.port))
                    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no broker {node}")))?;
                Conn::open(&host, port, "fjord-broker").await?
            }
        };
        let resp = conn.call(key, version, req, Duration::ZERO).await?;
        *slot = Some(conn);
        Ok(resp)
    }
}
