//! The Raft transport between controllers, on the controller listener
//! (`controller.listener.names`).
//!
//! A connection opens with [`MAGIC`] and a [`Hello`] each way, then carries length-prefixed JSON
//! frames, one [`PeerRequest`] answered by one [`PeerResponse`], in order. The hellos carry
//! both sides' cluster ids, and a node refuses a peer of another cluster, as every KRaft RPC is
//! refused with INCONSISTENT_CLUSTER_ID: the leader of a cluster that is gone or being torn
//! down keeps replicating to its members' old addresses, and a new node listening at one of
//! them must not take that cluster's log for its own. The magic tells a peer from a Kafka
//! client: read as a Kafka frame length it is over a gigabyte, which no Kafka request can be
//! (`socket.request.max.bytes` defaults to 100 MiB), so the listener can later serve Kafka's own
//! controller APIs beside it.
//!
//! Besides openraft's three RPCs, a follower sends its writes to the leader ([`PeerRequest::Write`])
//! and asks it for a read index before serving reads ([`PeerRequest::ReadIndex`]): every node
//! proposes and reads through the one leader, so metadata writes stay linearizable whichever
//! broker a client talks to.

use std::fmt;
use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::command::{Command, CommandResponse};
use crate::controller::WeakController;
use crate::error::ControllerError;
use crate::quorum::QuorumDescription;
use crate::raft_types::{LogId, NodeId, Raft, TypeConfig};

/// First bytes of every controller-to-controller connection. A broker-only node, which has no
/// controller listener, tells the leader's connections from clients' by them.
pub const MAGIC: &[u8; 8] = b"FJRAFT01";

/// Largest frame either side accepts. A snapshot travels in openraft's chunks (3 MiB by default,
/// about four times that as JSON) and an AppendEntries carries at most a few hundred small
/// commands; anything larger is a broken or hostile peer, and the connection is closed.
const MAX_FRAME_BYTES: usize = 64 << 20;

/// How long a forwarded write or read-index request may take. A leader answers in
/// milliseconds; one that has not answered after a few election timeouts is stopped or cut off,
/// and the others have elected another.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an accepted connection may take to send its preamble.
const MAGIC_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to a peer may take: peers are on the same network, and a dead peer
/// must not hold up the replication stream that retries it.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The first frame each way on a connection: the sender's cluster id, empty while it knows
/// none (a new quorum before its first entry, a node that has not joined yet).
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    cluster_id: String,
}

/// The cluster this node belongs to, as far as it knows: the id in its metadata, or before
/// its metadata has one, the id of the quorum it joined (learned from the hello of the node it
/// asked). Unknown ids are no reason to refuse: the nodes of a new quorum have none until the
/// first leader writes one.
#[derive(Clone)]
pub(crate) struct ClusterTag {
    metadata: tokio::sync::watch::Receiver<std::sync::Arc<crate::metadata::ClusterMetadata>>,
    learned: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl ClusterTag {
    pub(crate) fn new(
        metadata: tokio::sync::watch::Receiver<std::sync::Arc<crate::metadata::ClusterMetadata>>,
    ) -> ClusterTag {
        ClusterTag {
            metadata,
            learned: Default::default(),
        }
    }

    /// The id of the cluster this node is configured for, before its metadata has one.
    pub(crate) fn expect(&self, id: &str) {
        let _ = self.learned.set(id.to_string());
    }

    fn get(&self) -> String {
        let id = self.metadata.borrow().cluster_id.clone();
        if id.is_empty() {
            self.learned.get().cloned().unwrap_or_default()
        } else {
            id
        }
    }

    /// Whether a peer that says it belongs to `theirs` may be talked to.
    fn agrees(&self, theirs: &str) -> bool {
        let ours = self.get();
        ours.is_empty() || theirs.is_empty() || ours == theirs
    }

    /// A node asked answered with its cluster's id: until this node's metadata has one, that
    /// is the cluster it belongs to.
    fn learn(&self, theirs: &str) {
        if !theirs.is_empty() && self.get().is_empty() {
            let _ = self.learned.set(theirs.to_string());
        }
    }
}

/// When a refused peer was last logged at WARN (seconds since the epoch): the refused leader
/// retries every few hundred milliseconds.
static REFUSAL_SAID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn say_refusal() -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = REFUSAL_SAID.load(std::sync::atomic::Ordering::Relaxed);
    now >= last + 10
        && REFUSAL_SAID
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
}

/// What one controller asks another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write proposed on a follower, for the leader to propose.
    Write(Command),
    /// The leader's read index: the log index a follower must have applied before its reads
    /// are linearizable.
    ReadIndex,
    /// A broker's heartbeat to the leader (see `liveness`).
    Heartbeat(NodeId),
    /// The quorum as the leader sees it (DescribeQuorum).
    DescribeQuorum,
    /// Who serves this controller listener (see [`Identity`]).
    Identify,
    /// A change of the quorum (see `membership`); a node that is not the leader forwards it.
    Membership(crate::membership::Change),
}

/// A controller process: its node id and its incarnation, a random id drawn at each start. A
/// starting node asks the address the voters give its own id: a live process there with
/// another incarnation holds that id already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) node_id: NodeId,
    pub(crate) incarnation: uuid::Uuid,
    /// Whether the node has the controller role: only such a node can become a voter.
    pub(crate) controller: bool,
}

/// The answer to a [`PeerRequest`] of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Write(Result<(LogId, CommandResponse), ForwardError>),
    ReadIndex(Result<u64, ForwardError>),
    Heartbeat(Result<(), ForwardError>),
    DescribeQuorum(Result<QuorumDescription, ForwardError>),
    Identify(Result<Identity, ForwardError>),
    Membership(Result<(), crate::membership::Refusal>),
}

/// Why the node asked to lead a write or a read could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ForwardError {
    /// It is not the leader (any more); the leader it knows of, if any.
    NotLeader(Option<NodeId>),
    /// Its Raft stopped or failed.
    Stopped(String),
}

/// Builds a [`Peer`] client per target node; the address is the node's controller endpoint from
/// the Raft membership (`controller.quorum.voters`).
#[derive(Clone)]
pub(crate) struct NetworkFactory(pub(crate) ClusterTag);

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer::new(target, node.addr.clone(), self.0.clone())
    }
}

/// One peer controller: a connection opened on first use and reopened after any failure.
/// openraft drives each replication stream and each election through its own client with one
/// RPC at a time (`&mut self`), so a single connection without pipelining is enough.
pub(crate) struct Peer {
    target: NodeId,
    addr: String,
    cluster: ClusterTag,
    conn: Option<Conn>,
}

struct Conn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
}

/// A transport failure, with the peer it concerns.
#[derive(Debug)]
struct PeerIoError {
    target: NodeId,
    addr: String,
    error: io::Error,
}

impl fmt::Display for PeerIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "controller {} at {}: {}", self.target, self.addr, self.error)
    }
}

impl std::error::Error for PeerIoError {}

/// How a call failed: no connection, so the request was never sent (back off and retry), or a
/// connection that broke or timed out after it was sent (it may have been acted on).
#[derive(Debug)]
pub(crate) enum CallError {
    Connect(io::Error),
    Io(io::Error),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "cannot connect: {e}"),
            CallError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Peer {
    pub(crate) fn new(target: NodeId, addr: String, cluster: ClusterTag) -> Peer {
        Peer {
            target,
            addr,
            cluster,
            conn: None,
        }
    }

    /// Sends `req` and reads its answer within `ttl`. The connection is out of `self` while the
    /// exchange runs and goes back only after a whole answer was read: a failure, a timeout or
    /// the caller dropping this future (openraft times its AppendEntries out on its own) drops
    /// it, so the next call starts on a fresh one and never reads a late answer to an abandoned
    /// request. Reusing a connection with an answer still unread paired each later request with
    /// the answer to the one before: a leader counted entries as replicated that the follower
    /// did not have, and committed them without a quorum.
    async fn call(&mut self, req: &PeerRequest, ttl: Duration) -> Result<PeerResponse, CallError> {
        let frame = serde_json::to_vec(req).map_err(|e| CallError::Io(io::Error::other(e)))?;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => tokio::time::timeout(ttl, connect(&self.addr, &self.cluster))
                .await
                .map_err(|_| CallError::Connect(io::Error::new(io::ErrorKind::TimedOut, "no hello in time")))?
                .map_err(CallError::Connect)?,
        };
        let exchange = async {
            write_frame(&mut conn.writer, &frame).await?;
            let body = read_frame(&mut conn.reader).await?;
            serde_json::from_slice::<PeerResponse>(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        };
        let res = match tokio::time::timeout(ttl, exchange).await {
            Ok(res) => res,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {ttl:?}"),
            )),
        };
        if res.is_ok() {
            self.conn = Some(conn);
        }
        res.map_err(CallError::Io)
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Connect(error) => RPCError::Unreachable(Unreachable::new(&PeerIoError {
                target: self.target,
                addr: self.addr.clone(),
                error,
            })),
            CallError::Io(error) => RPCError::Network(NetworkError::new(&PeerIoError {
                target: self.target,
                addr: self.addr.clone(),
                error,
            })),
        }
    }

    /// Sends `req` and takes the answer `pick` accepts, within `ttl`. Any other answer means a
    /// broken peer: the connection is dropped, as after any failure.
    async fn exchange<T>(
        &mut self,
        req: PeerRequest,
        ttl: Duration,
        pick: fn(PeerResponse) -> Result<T, PeerResponse>,
    ) -> Result<T, CallError> {
        let resp = self.call(&req, ttl).await?;
        pick(resp).map_err(|other| {
            self.conn = None;
            CallError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer {other:?}"),
            ))
        })
    }

    /// One of openraft's RPCs: the peer's own Raft error comes back as a remote error, a
    /// transport failure as `Unreachable` or `Network`.
    async fn raft_rpc<T, E: std::error::Error>(
        &mut self,
        req: PeerRequest,
        option: RPCOption,
        pick: fn(PeerResponse) -> Result<Result<T, E>, PeerResponse>,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>> {
        match self.exchange(req, option.hard_ttl(), pick).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    /// Sends `req` to the leader and takes the answer `pick` accepts.
    async fn ask<T>(
        &mut self,
        req: PeerRequest,
        pick: fn(PeerResponse) -> Result<T, PeerResponse>,
    ) -> Result<T, CallError> {
        self.exchange(req, FORWARD_TIMEOUT, pick).await
    }

    /// Forwards a follower's write to this peer, the leader it knows of.
    pub(crate) async fn forward_write(
        &mut self,
        cmd: Command,
    ) -> Result<Result<(LogId, CommandResponse), ForwardError>, CallError> {
        self.ask(PeerRequest::Write(cmd), |r| match r {
            PeerResponse::Write(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    /// Sends this node's heartbeat to this peer, the leader it knows of.
    pub(crate) async fn heartbeat(&mut self, me: NodeId) -> Result<Result<(), ForwardError>, CallError> {
        self.ask(PeerRequest::Heartbeat(me), |r| match r {
            PeerResponse::Heartbeat(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    /// Asks this peer, the leader it knows of, to describe the quorum.
    pub(crate) async fn describe_quorum(&mut self) -> Result<Result<QuorumDescription, ForwardError>, CallError> {
        self.ask(PeerRequest::DescribeQuorum, |r| match r {
            PeerResponse::DescribeQuorum(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    /// Asks this peer who it is.
    pub(crate) async fn identify(&mut self) -> Result<Result<Identity, ForwardError>, CallError> {
        self.ask(PeerRequest::Identify, |r| match r {
            PeerResponse::Identify(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    /// Asks this peer to apply a quorum change (it forwards it to its leader).
    pub(crate) async fn change_membership(
        &mut self,
        change: crate::membership::Change,
    ) -> Result<Result<(), crate::membership::Refusal>, CallError> {
        // Adding a voter waits for it to catch up, up to its own timeout.
        let ttl = match &change {
            crate::membership::Change::AddVoter { timeout_ms, .. } => {
                FORWARD_TIMEOUT + Duration::from_millis(*timeout_ms)
            }
            _ => FORWARD_TIMEOUT,
        };
        self.exchange(PeerRequest::Membership(change), ttl, |r| match r {
            PeerResponse::Membership(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    /// Asks this peer, the leader it knows of, for its read index.
    pub(crate) async fn read_index(&mut self) -> Result<Result<u64, ForwardError>, CallError> {
        self.ask(PeerRequest::ReadIndex, |r| match r {
            PeerResponse::ReadIndex(res) => Ok(res),
            other => Err(other),
        })
        .await
    }
}

async fn connect(addr: &str, cluster: &ClusterTag) -> io::Result<Conn> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect within {CONNECT_TIMEOUT:?}")))??;
    // Heartbeats and votes are tiny and latency-bound.
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut writer = BufWriter::new(w);
    let mut reader = BufReader::new(r);
    writer.write_all(MAGIC).await?;
    let hello = serde_json::to_vec(&Hello {
        cluster_id: cluster.get(),
    })
    .map_err(io::Error::other)?;
    write_frame(&mut writer, &hello).await?;
    let theirs: Hello = serde_json::from_slice(&read_frame(&mut reader).await?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if !cluster.agrees(&theirs.cluster_id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{addr} belongs to cluster {}, this node to {}",
                theirs.cluster_id,
                cluster.get()
            ),
        ));
    }
    cluster.learn(&theirs.cluster_id);
    Ok(Conn { reader, writer })
}

async fn write_frame(w: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", body.len()),
        ));
    }
    // Checked against MAX_FRAME_BYTES above, so it fits in a u32.
    w.write_u32(body.len() as u32).await?;
    w.write_all(body).await?;
    w.flush().await
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_rpc(PeerRequest::AppendEntries(rpc), option, |r| match r {
            PeerResponse::AppendEntries(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.raft_rpc(PeerRequest::InstallSnapshot(rpc), option, |r| match r {
            PeerResponse::InstallSnapshot(res) => Ok(res),
            other => Err(other),
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_rpc(PeerRequest::Vote(rpc), option, |r| match r {
            PeerResponse::Vote(res) => Ok(res),
            other => Err(other),
        })
        .await
    }
}

/// Serves peers on the controller listener until the task is aborted. `controller` is weak so
/// that the server task, which the controller owns, does not keep it alive.
pub(crate) async fn serve(listener: TcpListener, raft: Raft, controller: WeakController) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "controller listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        spawn_peer(stream, addr.to_string(), &raft, &controller);
    }
}

/// Serves the peer connections a broker-only node hands over from its broker listener (see
/// `Controller::open_with_incoming`), until the channel closes or the task is aborted.
pub(crate) async fn serve_handed(
    mut incoming: tokio::sync::mpsc::Receiver<TcpStream>,
    raft: Raft,
    controller: WeakController,
) {
    while let Some(stream) = incoming.recv().await {
        let addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        spawn_peer(stream, addr, &raft, &controller);
    }
}

/// Serves one peer connection (from `addr`) in a task of its own.
fn spawn_peer(stream: TcpStream, addr: String, raft: &Raft, controller: &WeakController) {
    let (raft, controller) = (raft.clone(), controller.clone());
    tokio::spawn(async move {
        if let Err(e) = serve_peer(stream, raft, controller).await {
            tracing::debug!(peer = %addr, error = %e, "controller connection closed");
        }
    });
}

async fn serve_peer(stream: TcpStream, raft: Raft, controller: WeakController) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut writer = BufWriter::new(w);
    let mut magic = [0u8; MAGIC.len()];
    // A peer sends its preamble at once; a connection that does not is not a peer, and must not
    // hold a task forever.
    tokio::time::timeout(MAGIC_TIMEOUT, reader.read_exact(&mut magic))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no preamble"))??;
    if &magic != MAGIC {
        // Kafka's controller APIs (DescribeQuorum, AddRaftVoter) are not served here yet.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Fjord controller (Kafka requests are not served on the controller listener)",
        ));
    }
    let theirs: Hello = tokio::time::timeout(MAGIC_TIMEOUT, read_frame(&mut reader))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no hello"))
        .and_then(|f| f)
        .and_then(|f| serde_json::from_slice(&f).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let Some(cluster) = controller.get().map(|c| c.cluster_tag()) else {
        return Ok(());
    };
    let hello = serde_json::to_vec(&Hello {
        cluster_id: cluster.get(),
    })
    .map_err(io::Error::other)?;
    write_frame(&mut writer, &hello).await?;
    if !cluster.agrees(&theirs.cluster_id) {
        let peer = reader.get_ref().peer_addr().map(|a| a.to_string()).unwrap_or_default();
        if say_refusal() {
            tracing::warn!(
                %peer,
                theirs = %theirs.cluster_id,
                ours = %cluster.get(),
                "refusing a controller connection from another cluster (INCONSISTENT_CLUSTER_ID); \
                 a node of that cluster still has this node's address"
            );
        }
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a peer of another cluster"));
    }
    // The broker whose heartbeats come on this connection: when it closes, the leader checks
    // at once whether that broker's process is gone (see `liveness`).
    let mut heartbeats_of: Option<NodeId> = None;
    // The leader whose replication comes on this connection: when it closes, a follower checks
    // whether that leader's process is gone, and stands for election as soon as Raft allows.
    let mut leader_conn: Option<Option<NodeId>> = None;
    let served = async {
        loop {
            let body = match read_frame(&mut reader).await {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            let req: PeerRequest =
                serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match &req {
                PeerRequest::Heartbeat(node) => heartbeats_of = Some(*node),
                PeerRequest::AppendEntries(rpc) => leader_conn = Some(rpc.vote.leader_id().voted_for()),
                _ => {}
            }
            let resp = answer(&raft, &controller, req).await;
            let frame = serde_json::to_vec(&resp).map_err(io::Error::other)?;
            write_frame(&mut writer, &frame).await?;
        }
    }
    .await;
    if let (Some(node), Some(c)) = (heartbeats_of, controller.get()) {
        let lost = std::time::Instant::now();
        tokio::spawn(async move {
            crate::liveness::fence_if_gone(&c, node, lost, "its heartbeat connection closed").await;
        });
    }
    if let (Some(Some(leader)), Some(c)) = (leader_conn, controller.get()) {
        tokio::spawn(async move {
            crate::liveness::elect_if_leader_gone(&c, leader).await;
        });
    }
    served
}

async fn answer(raft: &Raft, controller: &WeakController, req: PeerRequest) -> PeerResponse {
    match req {
        PeerRequest::DescribeQuorum => PeerResponse::DescribeQuorum(match controller.get() {
            None => Err(ForwardError::Stopped("the controller is shutting down".to_string())),
            Some(c) => crate::quorum::describe_as_leader(&c).await.map_err(|e| match e {
                ControllerError::NotController(_) => {
                    ForwardError::NotLeader(c.raft_status().leader.and_then(|l| NodeId::try_from(l).ok()))
                }
                other => ForwardError::Stopped(other.to_string()),
            }),
        }),
        PeerRequest::Heartbeat(node) => PeerResponse::Heartbeat(match controller.get() {
            None => Err(ForwardError::Stopped("the controller is shutting down".to_string())),
            Some(c) => {
                let status = c.raft_status();
                if status.is_leader {
                    c.heartbeat_received(node).await;
                    Ok(())
                } else {
                    Err(ForwardError::NotLeader(
                        status.leader.and_then(|l| NodeId::try_from(l).ok()),
                    ))
                }
            }
        }),
        PeerRequest::Identify => PeerResponse::Identify(match controller.get() {
            None => Err(ForwardError::Stopped("the controller is shutting down".to_string())),
            Some(c) => Ok(c.identity()),
        }),
        PeerRequest::Membership(change) => PeerResponse::Membership(match controller.get() {
            None => Err(crate::membership::Refusal::Stopped(
                "the controller is shutting down".to_string(),
            )),
            Some(c) => c.change_voters(change).await.map_err(crate::membership::refusal),
        }),
        PeerRequest::AppendEntries(rpc) => PeerResponse::AppendEntries(raft.append_entries(rpc).await),
        PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
        PeerRequest::InstallSnapshot(rpc) => PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await),
        PeerRequest::Write(cmd) => PeerResponse::Write(match raft.client_write(cmd).await {
            Ok(r) => Ok((r.log_id, r.data)),
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(e) => Err(ForwardError::Stopped(e.to_string())),
        }),
        PeerRequest::ReadIndex => PeerResponse::ReadIndex(match raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader(f.leader_id))
            }
            Err(e) => Err(ForwardError::Stopped(e.to_string())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that answers ReadIndex with the request's number across all its connections,
    /// the first one late.
    async fn numbering_peer() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let seen = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (r, w) = stream.into_split();
                    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
                    let mut magic = [0u8; 8];
                    if r.read_exact(&mut magic).await.is_err() || read_frame(&mut r).await.is_err() {
                        return;
                    }
                    let hello = serde_json::to_vec(&Hello {
                        cluster_id: "cluster-a".into(),
                    })
                    .expect("encodes");
                    if write_frame(&mut w, &hello).await.is_err() {
                        return;
                    }
                    while let Ok(body) = read_frame(&mut r).await {
                        assert!(matches!(serde_json::from_slice(&body), Ok(PeerRequest::ReadIndex)));
                        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                        if n == 1 {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let answer = serde_json::to_vec(&PeerResponse::ReadIndex(Ok(n))).expect("encodes");
                        if write_frame(&mut w, &answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn tag(cluster_id: &str) -> ClusterTag {
        let meta = crate::metadata::ClusterMetadata {
            cluster_id: cluster_id.to_string(),
            ..Default::default()
        };
        ClusterTag::new(tokio::sync::watch::channel(Arc::new(meta)).1)
    }

    #[tokio::test]
    async fn a_peer_of_another_cluster_is_refused_and_an_unknown_id_is_learned() {
        let addr = numbering_peer().await;
        let mut stranger = Peer::new(2, addr.clone(), tag("cluster-b"));
        match stranger.read_index().await {
            Err(CallError::Connect(e)) => assert!(e.to_string().contains("cluster-a"), "{e}"),
            other => panic!("a peer of another cluster answered: {other:?}"),
        }
        let fresh = tag("");
        let mut joining = Peer::new(2, addr, fresh.clone());
        assert!(joining.read_index().await.is_ok());
        assert_eq!(fresh.get(), "cluster-a", "learned from the node asked");
        assert!(!fresh.agrees("cluster-b") && fresh.agrees("cluster-a") && fresh.agrees(""));
    }

    #[tokio::test]
    async fn a_call_dropped_mid_exchange_never_hands_its_answer_to_the_next() {
        let mut peer = Peer::new(2, numbering_peer().await, tag("cluster-a"));
        // The caller gives up (openraft times out its own RPCs by dropping them).
        assert!(tokio::time::timeout(Duration::from_millis(50), peer.read_index())
            .await
            .is_err());
        let answer = peer.read_index().await.expect("answered");
        assert_eq!(answer, Ok(2), "the second request's answer, not the first's");
    }
}
