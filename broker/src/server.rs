//! TCP listeners and connections.
//!
//! A connection reads frames in order and behaves as if it handled them one at a time, as
//! Kafka does: a request sees the effects of every request sent before it on the same
//! connection. The one overlap allowed is between Produce requests: each queues its appends
//! before the next request is read (so batches land in the order they were sent) and their
//! WAL writes then proceed together. A per-connection writer sends the responses strictly in
//! request order. Any framing or decoding error closes that connection and only that one,
//! like Kafka's `SocketServer`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::bufpool::{BufPool, MAX_POOLED_BYTES};
use fjord_protocol::frame::{check_frame_len, decode_request, Decoded, LENGTH_PREFIX_BYTES};
use fjord_protocol::FrameError;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, RwLock, Semaphore};
use tracing::Instrument;

use crate::config::{Config, Listener};
use crate::error::BrokerError;
use crate::handler::{self, Endpoint, OrderGuard, OutPart, Reply, RequestContext, Started};
use crate::Broker;

/// Most open client connections; further accepts wait. Kafka has no default cap, but a
/// process without one dies of file descriptors instead of refusing politely.
pub const MAX_CONNECTIONS: usize = 16_384;
/// Requests one connection may have in flight before we stop reading its socket
/// (backpressure instead of buffering without bound).
pub const MAX_IN_FLIGHT_REQUESTS: usize = 64;
/// How long shutdown waits for connections to answer what they already read.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;
/// Read buffer per connection: small requests (Metadata, Fetch, heartbeats) that arrive
/// together are read with one syscall; a frame at least this large is read straight into its
/// own buffer. It is zeroed at allocation (tokio's BufReader), so every idle connection holds
/// all of it: with 64 KiB an idle connection cost ~32 KiB of RSS, with 8 KiB ~20 KiB.
const READ_BUFFER_BYTES: usize = 8 << 10;
/// Write buffer per connection: small responses gather in it; larger parts (record sets)
/// go to the socket directly.
const WRITE_BUFFER_BYTES: usize = 8 << 10;
/// Frames at least this large (produce requests, mostly) are read into pooled buffers, which
/// keep their pages between requests instead of faulting fresh ones in for every frame.
const POOLED_FRAME_MIN_BYTES: usize = 64 << 10;

/// Pending connections the kernel queues before `accept` (tokio's `TcpListener::bind` uses the same).
const LISTEN_BACKLOG: u32 = 1024;

/// Buffers of large request frames, shared by every connection.
static FRAME_POOL: std::sync::LazyLock<Arc<BufPool>> = std::sync::LazyLock::new(Arc::default);

/// Binds every client listener.
pub async fn bind(config: &Config) -> Result<Vec<(TcpListener, Listener)>, BrokerError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        let host = if l.host.is_empty() { "0.0.0.0" } else { l.host.as_str() };
        let listener = listen(host, l.port, config.socket_receive_buffer_bytes)
            .await
            .map_err(|e| BrokerError::Startup(format!("cannot listen on {}://{}:{}: {e}", l.name, host, l.port)))?;
        out.push((listener, l.clone()));
    }
    Ok(out)
}

/// Binds the controller listener (the controller quorum's Raft transport), with the kernel's
/// default buffers: its traffic is small metadata entries and heartbeats.
pub async fn bind_controller(l: &Listener) -> Result<TcpListener, BrokerError> {
    let host = if l.host.is_empty() { "0.0.0.0" } else { l.host.as_str() };
    listen(host, l.port, None)
        .await
        .map_err(|e| BrokerError::Startup(format!("cannot listen on {}://{}:{}: {e}", l.name, host, l.port)))
}

/// Binds the first address `host` resolves to that accepts, as `TcpListener::bind` does, with
/// `socket.receive.buffer.bytes` set before `listen`: accepted connections inherit it, and the
/// window scale offered in the handshake is chosen from it (as Kafka sets it on its server socket).
async fn listen(host: &str, port: u16, recv_buffer: Option<usize>) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let attempt = (|| {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            if let Some(n) = recv_buffer {
                socket.set_recv_buffer_size(u32::try_from(n).unwrap_or(u32::MAX))?;
            }
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")))
}

/// Kafka's per-connection socket options: no Nagle delay, keep-alive probes on idle peers, and
/// `socket.send.buffer.bytes` as SO_SNDBUF.
fn tune_accepted(socket: &TcpStream, send_buffer: Option<usize>) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let sock = socket2::SockRef::from(socket);
    sock.set_keepalive(true)?;
    if let Some(n) = send_buffer {
        sock.set_send_buffer_size(n)?;
    }
    Ok(())
}

/// The client listeners, accepting from the start: a connection accepted before the broker
/// is open waits for it (see [`Server::open`]), and on a broker-only node the metadata
/// leader's Raft connections are told apart by their preamble and handed to the controller
/// at once, which needs them to catch up before the broker can open.
pub struct Server {
    stop_tx: watch::Sender<bool>,
    broker_tx: watch::Sender<Option<Arc<Broker>>>,
    permits: Arc<Semaphore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts accepting on `listeners`. `raft`: where connections that open with the Raft
    /// preamble go (a broker-only node's controller); `None` serves Kafka clients only.
    pub fn accept(
        config: &Config,
        listeners: Vec<(TcpListener, Listener)>,
        raft: Option<mpsc::Sender<TcpStream>>,
    ) -> Server {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (broker_tx, broker_rx) = watch::channel(None);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let queued = config
            .queued_max_request_bytes
            .map(|bytes| RequestMemory::new(bytes.min(Semaphore::MAX_PERMITS)));
        let conn_ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (listener, l) in listeners {
            let bound_port = listener.local_addr().map(|a| a.port()).unwrap_or(l.port);
            let accepting = Accepting {
                endpoint: Arc::new(advertised_endpoint(config, &l, bound_port)),
                send_buffer: config.socket_send_buffer_bytes,
                broker: broker_rx.clone(),
                raft: raft.clone(),
                permits: permits.clone(),
                conn_ids: conn_ids.clone(),
                queued: queued.clone(),
                stop: stop_rx.clone(),
            };
            tasks.push(tokio::spawn(accept_loop(listener, accepting)));
        }
        Server {
            stop_tx,
            broker_tx,
            permits,
            tasks,
        }
    }

    /// The broker is open: the Kafka connections accepted so far, and every later one, are
    /// served from now on.
    pub fn open(&self, broker: Arc<Broker>) {
        let _ = self.broker_tx.send(Some(broker));
    }

    /// Serves until `shutdown` resolves, then stops reading requests, lets every connection
    /// answer what it already read (at most [`SHUTDOWN_DRAIN_MS`]), and returns.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
        let _ = self.stop_tx.send(true);
        for t in &self.tasks {
            t.abort();
        }
        // Wait until every connection has returned its permit, or give up after the drain time.
        let drained = tokio::time::timeout(
            Duration::from_millis(SHUTDOWN_DRAIN_MS),
            self.permits.acquire_many(MAX_CONNECTIONS as u32),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("some connections did not finish within {SHUTDOWN_DRAIN_MS} ms; closing them");
        }
    }
}

impl Drop for Server {
    /// A start that failed stops accepting; the connections waiting for the broker end when
    /// the broker's sender goes.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What every connection of one listener needs.
#[derive(Clone)]
struct Accepting {
    endpoint: Arc<Endpoint>,
    send_buffer: Option<usize>,
    broker: watch::Receiver<Option<Arc<Broker>>>,
    raft: Option<mpsc::Sender<TcpStream>>,
    permits: Arc<Semaphore>,
    conn_ids: Arc<AtomicU64>,
    queued: Option<RequestMemory>,
    stop: watch::Receiver<bool>,
}

/// What clients connected to `listener` are told this broker's address is.
fn advertised_endpoint(config: &Config, listener: &Listener, bound_port: u16) -> Endpoint {
    let adv = config
        .advertised_listeners
        .iter()
        .find(|a| a.name == listener.name)
        .or(config.advertised_listeners.first())
        .cloned()
        .unwrap_or_else(|| listener.clone());
    let port = if adv.port == 0 { bound_port } else { adv.port };
    Endpoint {
        listener: listener.name.clone(),
        host: adv.host,
        port,
    }
}

async fn accept_loop(listener: TcpListener, a: Accepting) {
    loop {
        // We never close the semaphore, so acquiring only fails if it is dropped: stop then.
        let Ok(permit) = a.permits.clone().acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = tune_accepted(&socket, a.send_buffer) {
            tracing::debug!(error = %e, %peer, "cannot set socket options");
        }
        let conn_id = a.conn_ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!("conn", conn_id, %peer);
        let mut a = a.clone();
        tokio::spawn(
            async move {
                if let Some(raft) = &a.raft {
                    match opens_with(&socket, fjord_controller::RAFT_PREAMBLE).await {
                        Ok(true) => {
                            // The controller serves it for as long as the peer keeps it; its
                            // permit is not held, so that shutdown does not wait for it.
                            drop(permit);
                            let _ = raft.send(socket).await;
                            return;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::debug!(error = %e, "connection closed before its first bytes");
                            return;
                        }
                    }
                }
                let broker = tokio::select! {
                    b = a.broker.wait_for(Option::is_some) => match b {
                        Ok(b) => b.clone(),
                        Err(_) => return,
                    },
                    _ = a.stop.wait_for(|s| *s) => return,
                };
                let Some(broker) = broker else { return };
                connection(
                    broker,
                    socket,
                    peer,
                    a.endpoint.clone(),
                    a.queued.clone(),
                    a.stop.clone(),
                )
                .await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Whether the first bytes `socket` receives are `preamble` (peeked, so that they are read
/// again by whoever serves the connection). A Kafka request's first byte, the top of its
/// length, is 0, so a client is told apart from the first byte. Waits for the whole preamble
/// for at most [`PREAMBLE_WAIT`].
async fn opens_with(socket: &TcpStream, preamble: &[u8]) -> std::io::Result<bool> {
    let mut buf = vec![0u8; preamble.len()];
    let since = std::time::Instant::now();
    loop {
        let n = socket.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != preamble[..n] {
            return Ok(false);
        }
        if n == preamble.len() {
            return Ok(true);
        }
        if since.elapsed() > PREAMBLE_WAIT {
            return Ok(false);
        }
        // Part of the preamble arrived (peek returns at once while any byte is unread).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How long a connection that began with part of the Raft preamble may take to send the rest.
const PREAMBLE_WAIT: Duration = Duration::from_secs(10);

/// `queued.max.request.bytes`: the request bytes read and not yet answered, over every
/// connection. A frame's bytes are taken from it as soon as its length prefix is read, before
/// its body is (as Kafka's memory pool does), and given back when its handler has answered;
/// a connection whose next frame does not fit waits, unread, with the kernel's socket buffer
/// and then TCP's flow control holding the client back.
#[derive(Clone, Debug)]
struct RequestMemory {
    bytes: Arc<Semaphore>,
    capacity: usize,
}

impl RequestMemory {
    fn new(capacity: usize) -> Self {
        RequestMemory {
            bytes: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Waits until `len` bytes are free. A frame larger than the whole bound (only possible
    /// when the bound is below `socket.request.max.bytes`, which the config refuses) takes
    /// all of it.
    async fn reserve(&self, len: usize) -> OwnedSemaphorePermit {
        let n = u32::try_from(len.max(1).min(self.capacity)).unwrap_or(u32::MAX);
        self.bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the request memory semaphore is never closed")
    }
}

/// The length of the next frame, `None` at EOF between frames.
async fn read_frame_len(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    max_bytes: usize,
) -> Result<Option<usize>, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(_) => return Ok(None), // EOF or reset between frames: the client went away
    }
    check_frame_len(prefix, max_bytes).map(Some)
}

async fn read_frame_body(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    len: usize,
) -> Result<Bytes, FrameError> {
    if (POOLED_FRAME_MIN_BYTES..=MAX_POOLED_BYTES).contains(&len) {
        let mut buf = FRAME_POOL.take(len);
        return match reader.read_exact(buf.as_mut()).await {
            Ok(_) => Ok(buf.freeze()),
            Err(e) => Err(FrameError::Malformed(format!("truncated frame of {len} bytes: {e}"))),
        };
    }
    // Read into uninitialised capacity: zeroing a large produce frame first cost a memset
    // per request for nothing (the pool would zero a frame too large for it).
    let mut body = BytesMut::with_capacity(len);
    let mut limited = reader.take(len as u64);
    while body.len() < len {
        match limited.read_buf(&mut body).await {
            Ok(0) => {
                return Err(FrameError::Malformed(format!(
                    "truncated frame: {} of {len} bytes",
                    body.len()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(FrameError::Malformed(format!("truncated frame: {e}"))),
        }
    }
    Ok(body.freeze())
}

/// The next frame with the request memory it holds, `None` at EOF between frames.
async fn read_frame(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    max_bytes: usize,
    queued: Option<&RequestMemory>,
) -> Result<Option<(Bytes, Option<OwnedSemaphorePermit>)>, FrameError> {
    let Some(len) = read_frame_len(reader, max_bytes).await? else {
        return Ok(None);
    };
    let held = match queued {
        Some(q) => Some(q.reserve(len).await),
        None => None,
    };
    Ok(Some((read_frame_body(reader, len).await?, held)))
}

async fn connection(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    queued: Option<RequestMemory>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!("connection opened");
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("fjord_connections_total").increment(1);
    let (rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT_REQUESTS);
    let writer = tokio::spawn(write_responses(wr, rx).in_current_span());
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let max = broker.config.socket_request_max_bytes;
    let order = Arc::new(RwLock::new(()));
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            f = read_frame(&mut reader, max, queued.as_ref()) => f,
        };
        let (frame, held) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(%peer, error = %e, "closing connection after a bad frame");
                break;
            }
        };
        let decoded = match decode_request(frame, handler::supported_versions) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(%peer, error = %e, "closing connection after an undecodable request");
                break;
            }
        };
        let task = match decoded {
            Decoded::ApiVersionsTooNew(header) => {
                let reply = handler::api_versions::fallback(&header);
                (ApiKey::ApiVersions, Started::Ready(reply), held)
            }
            Decoded::Request(req) => {
                let ctx = RequestContext::new(&req, endpoint.clone(), peer);
                // Produces share the order lock; anything else waits for every earlier
                // request to finish (tokio's RwLock is fair, so arrival order holds).
                let turn: OrderGuard = if req.api_key == ApiKey::Produce {
                    Box::new(order.clone().read_owned().await)
                } else {
                    Box::new(order.clone().write_owned().await)
                };
                (
                    req.api_key,
                    handler::start(broker.clone(), ctx, req.body, turn).await,
                    held,
                )
            }
        };
        if tx.send(task).await.is_err() {
            break; // the writer stopped: the socket is gone
        }
    }
    drop(tx);
    // The writer finishes the responses of everything already read, then closes.
    let _ = writer.await;
    broker.stats.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!("connection closed");
}

/// Writes a record set that is still in segment files: the buffered head of the frame goes
/// first, then each file region with `sendfile`, so the bytes go from the page cache to the
/// socket without passing through user memory (as Kafka's `transferTo`).
async fn send_records(
    out: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    records: &fjord_storage::FileRecords,
) -> std::io::Result<()> {
    for chunk in &records.chunks {
        match chunk {
            fjord_storage::RecordChunk::Mem(b) => out.write_all(b).await?,
            fjord_storage::RecordChunk::File { file, position, len } => {
                out.flush().await?;
                let stream: &TcpStream = out.get_ref().as_ref();
                let mut offset = i64::try_from(*position).map_err(std::io::Error::other)?;
                let mut left = *len;
                while left > 0 {
                    stream.writable().await?;
                    let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
                        nix::sys::sendfile::sendfile(stream, file.file(), Some(&mut offset), left)
                            .map_err(std::io::Error::from)
                    });
                    match sent {
                        // The file ends before the region does: the frame cannot be finished.
                        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => left -= n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(())
}

/// A request being handled, in arrival order, with the request memory it holds.
type InFlight = (ApiKey, Started, Option<OwnedSemaphorePermit>);

async fn write_responses(wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<InFlight>) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, wr);
    while let Some((api, started, held)) = rx.recv().await {
        let reply = started.reply().await;
        // Answered: the request's bytes are the handler's no more.
        drop(held);
        let parts = match reply {
            Reply::Send(bytes) => vec![OutPart::Bytes(bytes)],
            Reply::SendParts(parts) => parts,
            Reply::Nothing => Vec::new(),
            Reply::Close => {
                let _ = out.flush().await;
                return;
            }
        };
        let started = std::time::Instant::now();
        for p in &parts {
            let sent = match p {
                // Large slices bypass the BufWriter's buffer: tokio writes a slice at least as
                // large as its capacity straight through. Small ones gather in it.
                OutPart::Bytes(b) => out.write_all(b).await,
                OutPart::File(records) => send_records(&mut out, records).await,
            };
            if sent.is_err() {
                return;
            }
        }
        // Flush when nothing else is ready, so pipelined responses share a write.
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
        if !parts.is_empty() {
            metrics::histogram!("fjord_response_send_seconds", "api" => crate::metrics::api_name(api))
                .record(started.elapsed().as_secs_f64());
        }
    }
    let _ = out.flush().await;
    let _ = out.into_inner().shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel reports twice the size asked for (its bookkeeping overhead, socket(7)).
    #[tokio::test]
    async fn socket_buffer_settings_reach_accepted_connections() {
        let listener = listen("127.0.0.1", 0, Some(48 << 10)).await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        tune_accepted(&accepted, Some(40 << 10)).expect("tune");
        let sock = socket2::SockRef::from(&accepted);
        assert_eq!(sock.recv_buffer_size().expect("SO_RCVBUF"), 96 << 10);
        assert_eq!(sock.send_buffer_size().expect("SO_SNDBUF"), 80 << 10);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"));
        assert!(accepted.nodelay().expect("TCP_NODELAY"));

        // -1: both left to the kernel, which starts from tcp_wmem/tcp_rmem's defaults instead.
        let listener = listen("127.0.0.1", 0, None).await.expect("listen");
        let _client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        tune_accepted(&accepted, None).expect("tune");
        let sock = socket2::SockRef::from(&accepted);
        assert_ne!(sock.recv_buffer_size().expect("SO_RCVBUF"), 96 << 10);
        assert_ne!(sock.send_buffer_size().expect("SO_SNDBUF"), 80 << 10);
    }

    #[tokio::test]
    async fn listen_reports_an_address_in_use() {
        let first = listen("127.0.0.1", 0, None).await.expect("listen");
        let port = first.local_addr().expect("addr").port();
        let e = listen("127.0.0.1", port, None).await.expect_err("port taken");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    }
}
