//! [`Controller`]: the handle the broker uses to read and change cluster metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::command::{
    check_num_partitions, check_replication_factor, check_topic_name, Command, CommandResponse, Election,
    DEFAULT_NUM_PARTITIONS, DEFAULT_REPLICATION_FACTOR,
};
use crate::error::{ControllerError, Result};
use crate::liveness::{self, Liveness};
use crate::metadata::{BrokerEndpoint, BrokerInfo, ClusterMetadata, ConfigOp, PartitionMeta, TopicMeta};
use crate::network::{self, CallError, ClusterTag, ForwardError, Identity, NetworkFactory, Peer};
use crate::quorum::{self, QuorumDescription};
use crate::raft_types::{LogId, NodeId, Raft};
use crate::state_machine::StateMachineStore;
use crate::store::{self, LogStore, MetaDb};

/// Interval at which a leader heartbeats its followers. Irrelevant while the controller is the
/// only voter. openraft 0.9 also uses it as the timeout of each AppendEntries: at 100 ms a
/// follower's fsync on a busy two-core machine often outlasted it, and every such timeout is
/// a dropped connection and a retry.
const HEARTBEAT_INTERVAL_MS: u64 = 250;
/// Election timeout range: a follower that heard nothing from the leader for a random time in
/// it stands for election. Kafka's `controller.quorum.election.timeout.ms` is 1000; openraft's
/// default of 150-300 ms leaves little margin on a busy two-core machine, where a heartbeat
/// can be that late, and every spurious election interrupts metadata writes. The maximum is
/// also the leader lease, which sets how soon the survivors can elect a new leader after the
/// old one's process died (see `liveness::elect_if_leader_gone`): 2 s made a failover that
/// killed the controller leader take 3.4-5.4 s to the first acknowledged record; 1 s, with
/// the minimum at two missed heartbeats, is Kafka's own election timeout. A single voter
/// never waits for it: `open` triggers its election at once.
const ELECTION_TIMEOUT_MIN_MS: u64 = 600;
const ELECTION_TIMEOUT_MAX_MS: u64 = 1_000;
const _: () = assert!(HEARTBEAT_INTERVAL_MS < ELECTION_TIMEOUT_MIN_MS);
/// How long a voter refuses votes for others after it last heard from its leader: openraft's
/// leader lease is `election_timeout_max`.
pub(crate) const LEADER_LEASE: Duration = Duration::from_millis(ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(ELECTION_TIMEOUT_MIN_MS < ELECTION_TIMEOUT_MAX_MS);

/// Build a snapshot once this many entries were applied since the last one (openraft's
/// default is 5000). At ~200 bytes per entry that bounds the replay on restart to ~200 KB of
/// JSON.
const SNAPSHOT_LOGS_SINCE_LAST: u64 = 1_000;
/// Entries kept in the log after they are covered by a snapshot, so that a briefly lagging
/// follower (once there are followers) catches up from the log instead of a full snapshot.
const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;

/// How long `open` waits for this node to become leader before giving up. A single voter
/// takes a few milliseconds; the bound only turns a stuck election into an error.
const LEADER_WAIT_MS: u64 = 5_000;
/// How long a write keeps looking for a leader (an election, a leader that moved) before it
/// fails with `NotController`, which Kafka clients retry.
const WRITE_LEADER_WAIT_MS: u64 = 15_000;
/// How often `open` says it is still waiting for a controller quorum.
const QUORUM_WAIT_LOG_MS: u64 = 5_000;
/// Pause between two attempts to reach the quorum that failed at once.
const QUORUM_RETRY: Duration = Duration::from_millis(20);
/// Kafka's `broker.heartbeat.interval.ms` default.
pub const DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;
/// How long a controlled shutdown ([`Controller::leave`]) waits for its fencing to commit.
const LEAVE_WAIT_MS: u64 = 5_000;
/// How long `shutdown` waits for openraft's tasks to release the store.
const STORE_CLOSE_WAIT_MS: u64 = 5_000;

/// Kafka's `process.roles`: whether a node is a broker, a controller, or both (KRaft's
/// combined mode, Fjord's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Serves clients and hosts partitions: it registers with the controller and heartbeats.
    pub broker: bool,
    /// Votes in the metadata quorum (or may be made a voter with AddRaftVoter); without it the
    /// node is an observer that only follows the metadata log.
    pub controller: bool,
}

impl Roles {
    /// `process.roles=broker,controller`.
    pub const COMBINED: Roles = Roles {
        broker: true,
        controller: true,
    };
    /// `process.roles=broker`.
    pub const BROKER: Roles = Roles {
        broker: true,
        controller: false,
    };
    /// `process.roles=controller`.
    pub const CONTROLLER: Roles = Roles {
        broker: false,
        controller: true,
    };
}

impl Default for Roles {
    fn default() -> Self {
        Roles::COMBINED
    }
}

/// Settings of the controller, a sub-struct of the broker's config.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Kafka `node.id` of this broker; also its Raft node id. Must be non-negative.
    pub node_id: i32,
    /// Kafka's `cluster.id` (the apache/kafka image's `CLUSTER_ID`, what `kafka-storage.sh
    /// format -t` writes): the id a new cluster takes, and the only one this node accepts,
    /// from its own metadata and from the other nodes. `None`: a new cluster draws one.
    pub cluster_id: Option<String>,
    /// Kafka `process.roles`. A broker-only node follows the metadata log as an observer,
    /// joining through the voters; a controller-only node neither registers as a broker nor
    /// heartbeats.
    pub roles: Roles,
    /// Directory owned by the controller (RocksDB lives here); created if missing.
    pub data_dir: PathBuf,
    /// Host of this broker's inter-broker listener (`advertised.listeners`).
    pub advertised_host: String,
    /// Port of this broker's inter-broker listener.
    pub advertised_port: u16,
    /// Every advertised client listener of this broker, registered for Metadata.
    pub advertised_listeners: Vec<BrokerEndpoint>,
    /// Kafka `broker.rack`.
    pub rack: Option<String>,
    /// Kafka `controller.quorum.voters`: every voter's node id and controller endpoint
    /// (`host:port`). Empty means this node is the only voter (the embedded default), as does a
    /// map naming only this node. A node with other voters needs the controller listener.
    pub voters: BTreeMap<i32, String>,
    /// Kafka `controller.quorum.bootstrap.servers` (`host:port` controller endpoints), used
    /// when `voters` is empty: the node joins an existing quorum through them as an observer,
    /// and AddRaftVoter can make it a voter (see `membership`).
    pub bootstrap_servers: Vec<String>,
    /// This node's Raft endpoint (`host:port`) as the other controllers reach it; needed to
    /// join through `bootstrap_servers`. A controller's is its controller listener; a
    /// broker-only node has none (Kafka forbids it one), and the leader reaches it at its
    /// advertised broker address, where the broker hands the connections that open with
    /// [`RAFT_PREAMBLE`] to [`Controller::open_with_incoming`]'s channel.
    pub controller_endpoint: Option<String>,
    /// Kafka `broker.heartbeat.interval.ms`: how often this broker tells the leader it is alive.
    pub heartbeat_interval_ms: u64,
    /// Kafka `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// Kafka `leader.imbalance.check.interval.seconds` in ms when `auto.leader.rebalance.enable`
    /// is on: how often the active controller hands partitions back to their preferred replica.
    /// `None` never does.
    pub leader_balance_interval_ms: Option<u64>,
}

/// Where the Raft connections of the other nodes come from.
pub(crate) enum Incoming {
    /// The controller listener.
    Listener(TcpListener),
    /// Connections a broker-only node accepted on its broker listener (see
    /// [`Controller::open_with_incoming`]).
    Handed(tokio::sync::mpsc::Receiver<tokio::net::TcpStream>),
}

/// Raft knobs that tests turn down; production uses [`Tuning::default`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub(crate) snapshot_logs_since_last: u64,
    pub(crate) logs_kept_after_snapshot: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            snapshot_logs_since_last: SNAPSHOT_LOGS_SINCE_LAST,
            logs_kept_after_snapshot: LOGS_KEPT_AFTER_SNAPSHOT,
        }
    }
}

/// Raft's state as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStatus {
    /// Current term.
    pub term: u64,
    /// Node id of the leader, if one is known.
    pub leader: Option<i64>,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied entry.
    pub applied_index: u64,
}

/// The cluster metadata controller: a Raft node (openraft) whose state machine holds the
/// [`ClusterMetadata`]. Cheap to clone.
///
/// Writes are linearizable: each one is a Raft log entry whose validation runs when the entry
/// is applied, and its outcome is what the call returns.
///
/// Cancel safety: dropping a write future after it was proposed does not withdraw the command;
/// it may still be applied (the outcome is then visible only through [`Controller::metadata`]).
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    raft: Raft,
    /// Latest applied state, published by the state machine after every apply.
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    /// The store, without keeping it open: openraft's tasks own it.
    db: Weak<MetaDb>,
    /// `changed()` fails once the store is closed.
    db_closed: watch::Receiver<()>,
    /// Tasks that live as long as the controller: the server on the controller listener, the
    /// heartbeats and the fencing of silent brokers. Aborted by `shutdown`.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Heartbeats received while leader.
    liveness: Liveness,
    /// Whether there are other nodes (a quorum, or brokers apart from the controllers; not the
    /// embedded single node).
    has_peers: bool,
    /// `process.roles`.
    roles: Roles,
    /// The cluster id the connections to and from other nodes are checked against.
    cluster: ClusterTag,
    /// The heartbeat task, stopped first by [`Controller::leave`].
    heartbeat: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Drawn at each start: tells this process from another one with the same node id.
    incarnation: Uuid,
}

/// A reference to a controller that does not keep it alive (for the tasks it owns).
#[derive(Clone)]
pub(crate) struct WeakController(Weak<Inner>);

impl WeakController {
    pub(crate) fn get(&self) -> Option<Controller> {
        self.0.upgrade().map(|inner| Controller { inner })
    }
}

impl Controller {
    /// Opens (or creates) the metadata store, starts Raft, initializes a new single-voter
    /// cluster on first start (with a new cluster id), waits until this node is leader and has
    /// applied everything committed, then registers this broker (or updates its endpoint).
    pub async fn open(config: ControllerConfig) -> Result<Controller> {
        Self::open_tuned(config, None, Tuning::default()).await
    }

    /// [`Controller::open`] for a node of a quorum: `listener` is the bound controller listener,
    /// on which the other voters reach this one. With other voters, `open` waits (without a
    /// bound, saying so every few seconds) until a leader is elected and this node has caught up
    /// with it; a new cluster forms once a majority of `voters` is up.
    pub async fn open_with_listener(config: ControllerConfig, listener: Option<TcpListener>) -> Result<Controller> {
        Self::open_tuned(config, listener.map(Incoming::Listener), Tuning::default()).await
    }

    /// [`Controller::open`] for a broker-only node (`process.roles=broker`): it has no
    /// controller listener, and the Raft connections the leader opens to it arrive through
    /// `incoming`, accepted on its broker listener.
    pub async fn open_with_incoming(
        config: ControllerConfig,
        incoming: tokio::sync::mpsc::Receiver<tokio::net::TcpStream>,
    ) -> Result<Controller> {
        Self::open_tuned(config, Some(Incoming::Handed(incoming)), Tuning::default()).await
    }

    #[tracing::instrument(name = "controller_open", skip_all, fields(node_id = config.node_id))]
    pub(crate) async fn open_tuned(
        config: ControllerConfig,
        listener: Option<Incoming>,
        tuning: Tuning,
    ) -> Result<Controller> {
        let started = Instant::now();
        if config.node_id < 0 {
            return Err(ControllerError::InvalidRequest(format!(
                "node.id must be non-negative, got {}",
                config.node_id
            )));
        }
        let roles = config.roles;
        if !roles.broker && !roles.controller {
            return Err(ControllerError::InvalidRequest(
                "a node must be a broker, a controller or both".to_string(),
            ));
        }
        if roles.controller && !config.voters.is_empty() && !config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::InvalidRequest(format!(
                "controller.quorum.voters does not name this controller (node.id={})",
                config.node_id
            )));
        }
        if !roles.controller && config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::InvalidRequest(format!(
                "controller.quorum.voters names this broker-only node (node.id={})",
                config.node_id
            )));
        }
        // Without voters, bootstrap servers mean a quorum to join (KIP-853's dynamic quorum);
        // a broker-only node always joins, through the voters or the bootstrap servers.
        let joining = !roles.controller || (config.voters.is_empty() && !config.bootstrap_servers.is_empty());
        // A controller-only node has brokers elsewhere to fence even as the only voter.
        let has_peers = joining || !roles.broker || config.voters.keys().any(|&id| id != config.node_id);
        if has_peers && listener.is_none() {
            return Err(ControllerError::InvalidRequest(
                "a node with other controller voters needs a controller listener (controller.listener.names)"
                    .to_string(),
            ));
        }
        let (db, db_closed) = store::open_db(config.data_dir.clone())
            .await
            .map_err(ControllerError::Storage)?;
        let sm_db = db.clone();
        let (state_machine, metadata) = store::blocking(move || StateMachineStore::load(sm_db))
            .await
            .map_err(|e| ControllerError::Storage(e.to_string()))?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "metadata store opened"
        );
        let log_store = LogStore::new(db.clone());
        let weak_db = Arc::downgrade(&db);
        drop(db);

        let raft_config = openraft::Config {
            cluster_name: "fjord-metadata".to_string(),
            heartbeat_interval: HEARTBEAT_INTERVAL_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: tuning.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Raft(format!("invalid raft config: {e}")))?;

        let cluster = ClusterTag::new(metadata.clone());
        if let Some(want) = &config.cluster_id {
            // Known before any connection: a node that has not joined yet refuses the leader
            // of another cluster too. (A store of another cluster is refused once its log is
            // applied, in `init_and_register`.)
            cluster.expect(want);
        }
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory(cluster.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(map_fatal)?;
        let controller = Controller {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft: raft.clone(),
                metadata,
                db: weak_db,
                db_closed,
                tasks: std::sync::Mutex::new(Vec::new()),
                liveness: Liveness::default(),
                has_peers,
                roles,
                cluster,
                heartbeat: std::sync::Mutex::new(None),
                incarnation: Uuid::new_v4(),
            }),
        };
        match listener {
            Some(Incoming::Listener(l)) => {
                controller.own_task(tokio::spawn(network::serve(l, raft, controller.weak())));
            }
            Some(Incoming::Handed(rx)) => {
                controller.own_task(tokio::spawn(network::serve_handed(rx, raft, controller.weak())));
            }
            None => {}
        }
        let applied = match controller.start(&config).await {
            Ok(applied) => applied,
            Err(e) => {
                // Close the store before reporting, so that the caller may retry at once.
                if let Err(close_err) = controller.shutdown().await {
                    tracing::debug!(error = %close_err, "shutdown after a failed open");
                }
                return Err(e);
            }
        };

        if has_peers {
            let heartbeat = Duration::from_millis(config.heartbeat_interval_ms.max(1));
            let session = Duration::from_millis(config.session_timeout_ms.max(1));
            if roles.broker {
                let task = tokio::spawn(liveness::heartbeat_loop(controller.clone(), heartbeat));
                *controller
                    .inner
                    .heartbeat
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
            }
            controller.own_task(tokio::spawn(liveness::fencing_loop(
                controller.clone(),
                session,
                heartbeat,
            )));
            if let Some(ms) = config.leader_balance_interval_ms {
                let every = Duration::from_millis(ms.max(1));
                controller.own_task(tokio::spawn(crate::balance::balance_loop(controller.clone(), every)));
            }
        }
        let term = controller.inner.raft.metrics().borrow().current_term;
        let metadata = controller.metadata();
        tracing::info!(
            cluster_id = %metadata.cluster_id,
            term,
            applied_index = applied.map(|l| l.index),
            topics = metadata.topics.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "controller started"
        );
        Ok(controller)
    }

    /// Everything `open` does once Raft runs: leadership, catch-up, cluster id, registration.
    /// Returns the id of the last log entry known to be applied.
    async fn start(&self, config: &ControllerConfig) -> Result<Option<LogId>> {
        let raft = &self.inner.raft;
        let id = self.inner.node_id;
        if !config.roles.controller || (config.voters.is_empty() && !config.bootstrap_servers.is_empty()) {
            return self.start_observer(config).await;
        }
        if config.voters.keys().any(|&v| v != id) {
            return self.start_quorum(config).await;
        }
        // The voter's controller endpoint when it has one; a store formed before controller
        // listeners were served keeps the broker address it recorded (nobody dials it).
        let node = BasicNode::new(
            config
                .voters
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("{}:{}", config.advertised_host, config.advertised_port)),
        );
        if !raft.is_initialized().await.map_err(map_fatal)? {
            tracing::debug!("new metadata store: initializing a single-voter cluster");
            // `initialize` also starts the election, without waiting for a timeout.
            match raft.initialize(BTreeMap::from([(id, node)])).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ControllerError::Raft(e.to_string())),
            }
        } else {
            // A node that was leader with a committed vote restarts as leader. Otherwise (it
            // crashed mid-election, say), as the only voter it can elect itself now instead of
            // idling through an election timeout.
            let (voters, state) = raft
                .with_raft_state(|st| {
                    let voters: Vec<NodeId> = st.membership_state.effective().voter_ids().collect();
                    (voters, st.server_state)
                })
                .await
                .map_err(map_fatal)?;
            if !voters.is_empty() && voters != [id] {
                return Err(ControllerError::InvalidRequest(format!(
                    "this node's metadata log has the controller voters {voters:?}, but \
                     controller.quorum.voters names this node alone (or is not set)"
                )));
            }
            if state != ServerState::Leader {
                tracing::debug!(?state, "only voter and not leader: electing now");
                raft.trigger().elect().await.map_err(map_fatal)?;
            }
        }
        raft.wait(Some(Duration::from_millis(LEADER_WAIT_MS)))
            .metrics(
                |m| m.state == ServerState::Leader && m.current_leader == Some(id),
                "this node is the leader",
            )
            .await
            .map_err(|e| ControllerError::Raft(format!("not leader after open: {e}")))?;
        // Returns once everything committed before this point is applied.
        let applied = raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(e) => ControllerError::NotController(e.to_string()),
            RaftError::Fatal(f) => map_fatal(f),
        })?;

        self.init_and_register(config, applied).await
    }

    /// `start` for a node with other voters: forms the quorum on first start, refuses a voter
    /// set that disagrees with the stored one, waits for a leader and catches up with it.
    async fn start_quorum(&self, config: &ControllerConfig) -> Result<Option<LogId>> {
        let raft = &self.inner.raft;
        let voters: BTreeMap<NodeId, BasicNode> = config
            .voters
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr.clone())))
            .collect();
        if !raft.is_initialized().await.map_err(map_fatal)? {
            tracing::info!(voters = ?config.voters, "new metadata store: forming a controller quorum");
            // Every voter initializes with the same membership, which openraft allows: the
            // entries are identical, and the first election decides who leads.
            match raft.initialize(voters.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ControllerError::Raft(e.to_string())),
            }
        } else {
            let stored: Vec<NodeId> = raft
                .with_raft_state(|st| st.membership_state.effective().voter_ids().collect())
                .await
                .map_err(map_fatal)?;
            let configured: Vec<NodeId> = voters.keys().copied().collect();
            // A node that voted before it initialized (a peer asked for its vote first) has a
            // store but no membership yet: the leader's log brings it.
            if !stored.is_empty() && stored != configured {
                return Err(ControllerError::InvalidRequest(format!(
                    "controller.quorum.voters names voters {configured:?} but this node's metadata log has \
                     {stored:?}; the voter set of an existing quorum is not changed by editing the configuration \
                     (after AddRaftVoter or RemoveRaftVoter, start the node with \
                     controller.quorum.bootstrap.servers instead of controller.quorum.voters)"
                )));
            }
        }
        self.refuse_a_taken_node_id(config).await?;
        self.wait_for_quorum(config).await
    }

    /// `start` for a node with `controller.quorum.bootstrap.servers` and no voters, and for
    /// a broker-only node (which joins through the voters when it is given them): on first
    /// start it asks the quorum to take it as an observer; on a restart its metadata log
    /// already has the membership, with this node as an observer or, since AddRaftVoter, a
    /// voter. Either way it then waits for a leader and catches up with it.
    async fn start_observer(&self, config: &ControllerConfig) -> Result<Option<LogId>> {
        let raft = &self.inner.raft;
        let id = self.inner.node_id;
        let addr = config.controller_endpoint.clone().ok_or_else(|| {
            ControllerError::InvalidRequest(
                "a node that joins through controller.quorum.bootstrap.servers needs a controller listener".to_string(),
            )
        })?;
        let bootstrap: Vec<String> = if config.bootstrap_servers.is_empty() {
            config.voters.values().cloned().collect()
        } else {
            config.bootstrap_servers.clone()
        };
        let member = raft
            .with_raft_state(move |st| st.membership_state.effective().membership().get_node(&id).is_some())
            .await
            .map_err(map_fatal)?;
        if !member {
            let waiting = Instant::now();
            let mut said: Option<Instant> = None;
            loop {
                match self.join(&bootstrap, &addr).await {
                    Ok(()) => break,
                    Err(e @ ControllerError::InvalidRequest(_)) => return Err(e),
                    Err(e) => {
                        if time_to_say(&mut said) {
                            tracing::info!(
                                bootstrap = ?bootstrap,
                                waited_s = waiting.elapsed().as_secs(),
                                reason = %e,
                                "waiting to join the controller quorum"
                            );
                        }
                        tokio::time::sleep(QUORUM_RETRY).await;
                    }
                }
            }
            tracing::info!(bootstrap = ?bootstrap, "joined the controller quorum as an observer");
        }
        self.wait_for_quorum(config).await
    }

    /// Waits until a leader is known and this node has caught up with it, then registers.
    async fn wait_for_quorum(&self, config: &ControllerConfig) -> Result<Option<LogId>> {
        let raft = &self.inner.raft;
        let waiting = Instant::now();
        let mut said: Option<Instant> = None;
        loop {
            match self.catch_up().await {
                Ok(applied) => {
                    tracing::info!(
                        leader = ?raft.metrics().borrow().current_leader,
                        waited_ms = waiting.elapsed().as_millis() as u64,
                        "controller quorum reached"
                    );
                    return self.init_and_register(config, applied).await;
                }
                Err(ControllerError::ShuttingDown) => return Err(ControllerError::ShuttingDown),
                Err(e) => {
                    // Some answers come at once (a leader known before its address): say so
                    // now and then, and do not spin.
                    if time_to_say(&mut said) {
                        tracing::info!(
                            voters = ?config.voters,
                            waited_s = waiting.elapsed().as_secs(),
                            reason = %e,
                            "waiting for a controller quorum"
                        );
                    }
                    tokio::time::sleep(QUORUM_RETRY).await;
                }
            }
        }
    }

    /// Refuses to start when another live process serves the controller address that
    /// `controller.quorum.voters` gives this node: two processes with one `node.id`. The
    /// voters replicate to that address only, so this one would wait for the quorum forever,
    /// and a registration from it would replace the live node's. This node's own listener
    /// answers with this process's identity when it is at that address (the usual case); a
    /// connection that fails (nothing there, or not reachable from here) proves nothing.
    async fn refuse_a_taken_node_id(&self, config: &ControllerConfig) -> Result<()> {
        let id = self.inner.node_id;
        let Some(addr) = config.voters.get(&id) else {
            return Ok(());
        };
        let who = match self.peer(id, addr.clone()).identify().await {
            Ok(Ok(who)) => who,
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = ?e, "this node's controller address answered without an identity");
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "this node's controller address did not answer");
                return Ok(());
            }
        };
        if who == self.identity() {
            return Ok(());
        }
        if who.node_id == id {
            return Err(ControllerError::InvalidRequest(format!(
                "node.id {id} is taken: another live Fjord process (incarnation {}) serves {addr}, the \
                 controller address controller.quorum.voters gives node {id}; every process of a \
                 cluster needs a node.id of its own",
                who.incarnation
            )));
        }
        Err(ControllerError::InvalidRequest(format!(
            "controller.quorum.voters gives node {id} the controller address {addr}, but node {} \
             answers there",
            who.node_id
        )))
    }

    /// Waits (up to [`QUORUM_WAIT_LOG_MS`]) for a leader, then until this node has applied
    /// everything the leader had committed when asked: after it, reads of [`Controller::metadata`]
    /// see every write acknowledged before the call. Returns the last applied log id.
    async fn catch_up(&self) -> Result<Option<LogId>> {
        let raft = &self.inner.raft;
        let deadline = Duration::from_millis(QUORUM_WAIT_LOG_MS);
        let m = raft
            .wait(Some(deadline))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::ShuttingDown => ControllerError::ShuttingDown,
                e => ControllerError::NotController(e.to_string()),
            })?;
        if m.current_leader == Some(self.inner.node_id) {
            return raft.ensure_linearizable().await.map_err(|e| match e {
                RaftError::APIError(e) => ControllerError::NotController(e.to_string()),
                RaftError::Fatal(f) => map_fatal(f),
            });
        }
        let (leader, addr) = self
            .leader_endpoint()
            .ok_or_else(|| ControllerError::NotController("the leader has no known address".to_string()))?;
        let index = match self.peer(leader, addr).read_index().await {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(ControllerError::NotController(format!("{e:?}"))),
            Err(e) => return Err(ControllerError::NotController(e.to_string())),
        };
        let m = raft
            .wait(Some(deadline))
            .applied_index_at_least(Some(index), "caught up with the leader")
            .await
            .map_err(|e| ControllerError::NotController(e.to_string()))?;
        Ok(m.last_applied)
    }

    /// The end of `start`: the cluster id on a new cluster, then this broker's registration.
    async fn init_and_register(&self, config: &ControllerConfig, mut applied: Option<LogId>) -> Result<Option<LogId>> {
        let id = self.inner.node_id;
        let current = self.metadata();
        if let Some(want) = config.cluster_id.as_ref() {
            if !current.cluster_id.is_empty() && current.cluster_id != *want {
                return Err(ControllerError::InvalidRequest(format!(
                    "this node's metadata log belongs to cluster {}, but cluster.id (CLUSTER_ID) is {want}",
                    current.cluster_id
                )));
            }
        }
        if current.cluster_id.is_empty() {
            let cluster_id = config.cluster_id.clone().unwrap_or_else(new_cluster_id);
            tracing::debug!(%cluster_id, "initializing cluster id");
            let written = self.write(Command::InitCluster { cluster_id }).await?.0;
            applied = Some(written);
            // The first id written wins: a node configured with another one is refused.
            let _ = self
                .inner
                .raft
                .wait(Some(Duration::from_millis(LEADER_WAIT_MS)))
                .applied_index_at_least(Some(written.index), "the cluster id applied")
                .await;
            let set = self.metadata().cluster_id.clone();
            if let Some(want) = config.cluster_id.as_ref().filter(|w| !set.is_empty() && **w != set) {
                return Err(ControllerError::InvalidRequest(format!(
                    "the quorum formed cluster {set}, but cluster.id (CLUSTER_ID) of this node is {want}"
                )));
            }
        }
        // A controller-only node serves no clients and hosts no partitions.
        if !config.roles.broker {
            return Ok(applied);
        }
        let me = BrokerInfo {
            node_id: id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            rack: config.rack.clone(),
            listeners: config.advertised_listeners.clone(),
        };
        // A broker of a quorum that registers again starts fenced, as KRaft fences a broker
        // that comes back with a new incarnation: what it led moves to a replica that stayed in
        // sync (its own log may have lost what it had not synced), it leaves every ISR it was
        // in, and it rejoins them once it has caught up. Its first heartbeat unfences it.
        if self.inner.has_peers && current.brokers.contains_key(&id) && !current.fenced.contains(&id) {
            tracing::info!("fencing this broker until it has rejoined the cluster");
            applied = Some(self.write(Command::FenceBroker { node_id: id }).await?.0);
        }
        // An unchanged registration would only add a log entry (and an fsync) per restart.
        if current.brokers.get(&id) != Some(&me) {
            tracing::debug!(?me, "registering broker");
            applied = Some(self.write(Command::RegisterBroker(me)).await?.0);
        }
        Ok(applied)
    }

    /// The latest applied metadata.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner.metadata.borrow().clone()
    }

    /// Resolves, with the reason, if this node's Raft core stops on a fatal error (a storage
    /// failure, or a panic inside openraft): the node then neither applies metadata nor votes,
    /// and the broker should stop rather than serve metadata that no longer moves.
    pub async fn failed(&self) -> String {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core stopped".to_string();
            }
        }
    }

    /// A receiver of the metadata, updated after every applied batch of log entries. Its
    /// `changed()` fails once the controller has shut down.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.inner.metadata.clone()
    }

    /// Creates a topic. `num_partitions` and `replication_factor` of `-1` mean the defaults
    /// ([`DEFAULT_NUM_PARTITIONS`], [`DEFAULT_REPLICATION_FACTOR`]). Partitions are assigned
    /// round-robin over the registered brokers; leader = first replica, epoch 0, isr = replicas.
    ///
    /// Errors: `TopicAlreadyExists`, `InvalidPartitions` (< 1 or above
    /// [`MAX_PARTITIONS_PER_TOPIC`](crate::MAX_PARTITIONS_PER_TOPIC)),
    /// `InvalidReplicationFactor` (< 1 or more than the registered brokers), `InvalidRequest`
    /// (empty or overlong name, nil or reused topic id).
    #[tracing::instrument(level = "debug", skip(self, configs))]
    pub async fn create_topic(
        &self,
        name: &str,
        topic_id: Uuid,
        num_partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        // Defaults are resolved here, not in apply: a log entry must mean the same thing to
        // every build that replays it, whatever its defaults.
        let num_partitions = if num_partitions == -1 {
            DEFAULT_NUM_PARTITIONS
        } else {
            num_partitions
        };
        let replication_factor = if replication_factor == -1 {
            DEFAULT_REPLICATION_FACTOR
        } else {
            replication_factor
        };
        // Stateless checks fail fast, without a log entry; apply checks again.
        check_topic_name(name)?;
        check_num_partitions(num_partitions)?;
        check_replication_factor(replication_factor)?;
        self.write_topic(Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            num_partitions,
            replication_factor,
            configs,
            assignment: None,
        })
        .await
    }

    /// [`Controller::create_topic`] with a manual assignment (CreateTopics `assignments`): each
    /// partition's replicas, preferred leader first.
    ///
    /// Errors: those of `create_topic`, and `InvalidReplicaAssignment` as Kafka's controller
    /// refuses an assignment (an empty or repeated replica, an unregistered broker, lists of
    /// different lengths, a partition whose brokers are all fenced).
    #[tracing::instrument(level = "debug", skip(self, configs))]
    pub async fn create_topic_assigned(
        &self,
        name: &str,
        topic_id: Uuid,
        assignment: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        let num_partitions = i32::try_from(assignment.len()).unwrap_or(i32::MAX);
        let replication_factor = assignment
            .first()
            .map_or(0, |r| i16::try_from(r.len()).unwrap_or(i16::MAX));
        check_topic_name(name)?;
        check_num_partitions(num_partitions)?;
        check_replication_factor(replication_factor)?;
        self.write_topic(Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            num_partitions,
            replication_factor,
            configs,
            assignment: Some(assignment),
        })
        .await
    }

    /// Deletes a topic and returns it as it was (the broker deletes its data by `topic_id`).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        self.write_topic(Command::DeleteTopic { name: name.to_string() }).await
    }

    /// Grows a topic to `new_total` partitions; existing partitions keep their ids.
    ///
    /// Errors: `UnknownTopic`; `InvalidPartitions` if `new_total` is not above the current
    /// count (Kafka's messages) or above the maximum; `InvalidReplicationFactor` if the topic's
    /// replication factor exceeds the registered brokers.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn create_partitions(&self, name: &str, new_total: i32) -> Result<TopicMeta> {
        self.write_topic(Command::CreatePartitions {
            name: name.to_string(),
            new_total,
            assignment: None,
        })
        .await
    }

    /// [`Controller::create_partitions`] with the new partitions' replicas given (one list per
    /// new partition, each of the topic's replication factor). Errors as there, and
    /// `InvalidReplicaAssignment` for an assignment Kafka refuses.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn create_partitions_assigned(
        &self,
        name: &str,
        new_total: i32,
        assignment: Vec<Vec<i32>>,
    ) -> Result<TopicMeta> {
        self.write_topic(Command::CreatePartitions {
            name: name.to_string(),
            new_total,
            assignment: Some(assignment),
        })
        .await
    }

    /// Applies IncrementalAlterConfigs operations to a topic's config overrides, all or nothing.
    ///
    /// Errors: `UnknownTopic`; `InvalidRequest` for an empty key or a key named twice.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn alter_topic_configs(&self, name: &str, ops: Vec<ConfigOp>) -> Result<TopicMeta> {
        self.write_topic(Command::AlterTopicConfigs {
            name: name.to_string(),
            ops,
        })
        .await
    }

    /// Applies config operations to a broker resource's dynamic configs (`""` for the
    /// cluster-wide defaults, a node id for one broker), all or nothing.
    ///
    /// Errors: `InvalidRequest` for a resource that is neither, an empty key or a key named twice.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn alter_broker_configs(&self, resource: &str, ops: Vec<ConfigOp>) -> Result<()> {
        match self
            .write(Command::AlterBrokerConfigs {
                resource: resource.to_string(),
                ops,
            })
            .await?
            .1
        {
            CommandResponse::Done => Ok(()),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!(
                "a broker config command applied with {other:?}"
            ))),
        }
    }

    /// Finalizes feature levels (UpdateFeatures): all of them, or none when one breaks Kafka's
    /// rules (`InvalidUpdateVersion` with Kafka's message).
    pub async fn update_features(&self, updates: Vec<(String, i16, crate::features::UpgradeType)>) -> Result<()> {
        match self
            .write(Command::UpdateFeatures {
                node_id: self.inner.node_id,
                updates,
            })
            .await?
            .1
        {
            CommandResponse::Done => Ok(()),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!(
                "a feature update applied with {other:?}"
            ))),
        }
    }

    /// Changes a partition's in-sync replicas, as its leader `leader` in `leader_epoch` asks
    /// (Kafka's AlterPartition). Returns the partition as it is after the change.
    ///
    /// Errors: `FencedLeaderEpoch` when `leader` no longer leads in that epoch,
    /// `InvalidUpdateVersion` when the ISR is no longer `expected_isr`, `IneligibleReplica`
    /// for a replica that is not assigned or is fenced, `UnknownTopic`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        expected_isr: Vec<i32>,
        new_isr: Vec<i32>,
    ) -> Result<PartitionMeta> {
        let cmd = Command::AlterIsr {
            topic: topic.to_string(),
            partition,
            leader,
            leader_epoch,
            expected_isr,
            new_isr,
        };
        match self.write(cmd).await?.1 {
            CommandResponse::Partition(p) => Ok(p),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!("an ISR change applied with {other:?}"))),
        }
    }

    /// Kafka's ElectLeaders (see [`Command::ElectLeaders`]): each partition's outcome.
    pub async fn elect_leaders(&self, partitions: Option<Vec<(String, i32)>>, unclean: bool) -> Result<Vec<Election>> {
        match self.write(Command::ElectLeaders { partitions, unclean }).await?.1 {
            CommandResponse::Elections(e) => Ok(e),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!("an election applied with {other:?}"))),
        }
    }

    /// Kafka's AlterPartitionReassignments: for each `(topic, partition, target)`, a move to
    /// `target`'s replicas, or with `None` a cancel of the move in progress; each partition's
    /// outcome in request order. The moves themselves finish later, as the new replicas catch
    /// up (see `reassign`).
    pub async fn alter_reassignments(
        &self,
        requests: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<Result<()>>> {
        let cmd = Command::AlterReassignments {
            requests,
            allow_replication_factor_change,
        };
        match self.write(cmd).await?.1 {
            CommandResponse::Reassignments(r) => Ok(r.into_iter().map(|r| r.map_err(Into::into)).collect()),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!("a reassignment applied with {other:?}"))),
        }
    }

    /// Raft's view of this node, for metrics and readiness.
    pub fn raft_status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        RaftStatus {
            term: m.current_term,
            leader: m.current_leader.map(|l| l as i64),
            is_leader: m.current_leader == Some(m.id),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        }
    }

    /// Allocates a block of `count` producer ids for this broker (Kafka's
    /// `AllocateProducerIds`); returns the first id of the block.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn allocate_producer_ids(&self, broker_id: i32, count: i32) -> Result<i64> {
        match self.write(Command::AllocateProducerIds { broker_id, count }).await?.1 {
            CommandResponse::ProducerIds { first, .. } => Ok(first),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!(
                "a producer id allocation applied with {other:?}"
            ))),
        }
    }

    /// Controlled shutdown of a node of a quorum: stops heartbeating and fences this broker, so
    /// that the others stop sending clients to it at once, rather than after
    /// `broker.session.timeout.ms`; it is unfenced when it heartbeats again after its restart.
    /// A single node has nobody to tell. Best effort, bounded by [`LEAVE_WAIT_MS`].
    pub async fn leave(&self) {
        if !self.inner.has_peers || !self.inner.roles.broker {
            return;
        }
        self.stop_heartbeats();
        let me = self.inner.node_id;
        let meta = self.metadata();
        if !meta.brokers.contains_key(&me) || meta.fenced.contains(&me) {
            return;
        }
        let fence = self.write(Command::FenceBroker { node_id: me });
        match tokio::time::timeout(Duration::from_millis(LEAVE_WAIT_MS), fence).await {
            Ok(Ok(_)) => tracing::info!("controlled shutdown: this broker is fenced"),
            Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown: could not fence this broker"),
            Err(_) => tracing::warn!("controlled shutdown: no controller took the fencing in time"),
        }
    }

    fn stop_heartbeats(&self) {
        let task = self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            t.abort();
        }
    }

    /// Stops Raft, flushes the store and waits until it is closed, so that the data dir can be
    /// reopened at once. Later calls on any clone fail with `ShuttingDown`. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop_heartbeats();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| ControllerError::Raft(format!("raft core task failed: {e}")))?;
        if let Some(db) = self.inner.db.upgrade() {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| ControllerError::Storage(format!("flush task failed: {e}")))?
                .map_err(ControllerError::Storage)?;
        }
        let mut closed = self.inner.db_closed.clone();
        // `()` is never sent: `changed()` only returns, with an error, once the store closed.
        let wait = async { while closed.changed().await.is_ok() {} };
        tokio::time::timeout(Duration::from_millis(STORE_CLOSE_WAIT_MS), wait)
            .await
            .map_err(|_| {
                ControllerError::Storage(format!(
                    "metadata store still open {STORE_CLOSE_WAIT_MS} ms after raft shutdown"
                ))
            })?;
        tracing::info!("controller stopped");
        Ok(())
    }

    /// The metadata quorum as its leader sees it (Kafka's DescribeQuorum). A follower asks the
    /// leader; `NotController` while there is none.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let Some((leader, addr)) = self.leader_endpoint() else {
            return Err(ControllerError::NotController("no leader".to_string()));
        };
        if leader == self.inner.node_id {
            return quorum::describe_as_leader(self).await;
        }
        match self.peer(leader, addr).describe_quorum().await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(ControllerError::NotController(format!("leader {leader}: {e:?}"))),
            Err(e) => Err(ControllerError::NotController(format!("leader {leader}: {e}"))),
        }
    }

    /// This node's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// This process as a peer sees it: node id and incarnation.
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            node_id: self.inner.node_id,
            incarnation: self.inner.incarnation,
            controller: self.inner.roles.controller,
        }
    }

    /// The cluster this node belongs to, for the connections between nodes.
    pub(crate) fn cluster_tag(&self) -> ClusterTag {
        self.inner.cluster.clone()
    }

    /// A client for node `target` at `addr`.
    pub(crate) fn peer(&self, target: NodeId, addr: String) -> Peer {
        Peer::new(target, addr, self.inner.cluster.clone())
    }

    pub(crate) fn weak(&self) -> WeakController {
        WeakController(Arc::downgrade(&self.inner))
    }

    fn own_task(&self, task: tokio::task::JoinHandle<()>) {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    pub(crate) fn liveness(&self) -> &Liveness {
        &self.inner.liveness
    }

    /// The leader this node knows of and its controller endpoint.
    pub(crate) fn leader_endpoint(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// The voters, from the membership.
    pub(crate) fn voter_ids(&self) -> Vec<NodeId> {
        let m = self.inner.raft.metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    }

    /// The controller endpoint of voter `node`, from the membership.
    pub(crate) fn voter_endpoint(&self, node: NodeId) -> Option<String> {
        let m = self.inner.raft.metrics().borrow().clone();
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    }

    /// A broker's heartbeat reached this node, the leader: it counts towards its session, and a
    /// fenced broker is unfenced.
    pub(crate) async fn heartbeat_received(&self, node: NodeId) {
        self.inner.liveness.beat(node);
        let meta = self.metadata();
        if meta.fenced.contains(&node) && meta.brokers.contains_key(&node) {
            tracing::info!(broker = node, "unfencing a broker that heartbeats again");
            if let Err(e) = self.write_as_leader(Command::UnfenceBroker { node_id: node }).await {
                tracing::warn!(broker = node, error = %e, "could not unfence a broker");
            }
        }
    }

    /// Proposes a decision this node took as the leader from what it alone observed (a broker
    /// that stopped heartbeating it, an imbalance): here only, never forwarded. A leader cut
    /// off from the others sees every broker go silent; once it learns of its successor, its
    /// pending decisions must fail rather than reach the new leader and fence healthy brokers.
    /// Raft commits the entry only while this node still leads with a majority behind it.
    pub(crate) async fn write_as_leader(&self, cmd: Command) -> Result<CommandResponse> {
        let proposed = tokio::time::timeout(
            Duration::from_millis(WRITE_LEADER_WAIT_MS),
            self.inner.raft.client_write(cmd),
        )
        .await
        .map_err(|_| {
            ControllerError::NotController(format!(
                "the leader's write did not commit within {WRITE_LEADER_WAIT_MS} ms: no majority of the voters answers"
            ))
        })?;
        match proposed {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ControllerError::NotController(
                format!("no longer the leader (the leader is {:?})", f.leader_id),
            )),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ControllerError::Raft(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(map_fatal(f)),
        }
    }

    /// Proposes `cmd` and returns where it landed in the log and its apply result.
    ///
    /// On a follower the command goes to the leader over the controller transport. While there
    /// is no leader (an election) it waits for one, up to [`WRITE_LEADER_WAIT_MS`]. A command is
    /// sent again only when it cannot have been proposed (no connection, or the node asked was
    /// not the leader); a connection lost after sending fails with `NotController`, because the
    /// leader may have applied it.
    async fn write(&self, cmd: Command) -> Result<(LogId, CommandResponse)> {
        let deadline = Instant::now() + Duration::from_millis(WRITE_LEADER_WAIT_MS);
        loop {
            // A leader that has lost its majority keeps the entry but cannot commit it: the
            // write is then in doubt, and the caller is told so instead of waiting forever.
            let proposed = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.inner.raft.client_write(cmd.clone()),
            )
            .await
            .map_err(|_| {
                ControllerError::NotController(format!(
                    "the write did not commit within {WRITE_LEADER_WAIT_MS} ms: no majority of the voters answers"
                ))
            })?;
            let reason = match proposed {
                Ok(r) => return Ok((r.log_id, r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match (f.leader_id, f.leader_node) {
                    (Some(leader), Some(node)) => match self.peer(leader, node.addr).forward_write(cmd.clone()).await {
                        Ok(Ok(res)) => return Ok(res),
                        Ok(Err(ForwardError::NotLeader(_))) => format!("node {leader} is no longer the leader"),
                        Ok(Err(ForwardError::Stopped(e))) => format!("leader {leader}: {e}"),
                        Err(CallError::Connect(e)) => format!("leader {leader} unreachable: {e}"),
                        Err(e @ CallError::Io(_)) => {
                            return Err(ControllerError::NotController(format!("leader {leader}: {e}")))
                        }
                    },
                    _ => "no leader".to_string(),
                },
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(ControllerError::Raft(e.to_string()))
                }
                Err(RaftError::Fatal(f)) => return Err(map_fatal(f)),
            };
            if Instant::now() >= deadline {
                return Err(ControllerError::NotController(reason));
            }
            tracing::debug!(%reason, "metadata write: waiting for a leader");
            // An election takes one or two election timeouts; a leader change shows in the
            // metrics at once.
            let _ = self
                .inner
                .raft
                .wait(Some(Duration::from_millis(ELECTION_TIMEOUT_MAX_MS)))
                .metrics(|m| m.current_leader.is_some(), "a leader is known")
                .await;
            tokio::time::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS)).await;
        }
    }

    async fn write_topic(&self, cmd: Command) -> Result<TopicMeta> {
        match self.write(cmd).await?.1 {
            CommandResponse::Topic(topic) => Ok(topic),
            CommandResponse::Rejected(e) => Err(e.into()),
            other => Err(ControllerError::Raft(format!("a topic command applied with {other:?}"))),
        }
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }
}

/// Whether a wait should say so now: at once, then every [`QUORUM_WAIT_LOG_MS`].
fn time_to_say(said: &mut Option<Instant>) -> bool {
    if said.is_none_or(|t| t.elapsed() >= Duration::from_millis(QUORUM_WAIT_LOG_MS)) {
        *said = Some(Instant::now());
        return true;
    }
    false
}

fn map_fatal(f: Fatal<NodeId>) -> ControllerError {
    match f {
        Fatal::StorageError(e) => ControllerError::Storage(e.to_string()),
        Fatal::Panicked => ControllerError::Raft("raft core panicked".to_string()),
        Fatal::Stopped => ControllerError::ShuttingDown,
    }
}

/// A new cluster id like Kafka's `Uuid.randomUuid().toString()`: 16 random bytes as 22
/// characters of URL-safe base64 without padding, never starting with `-` (Kafka avoids ids
/// that look like command-line flags) and never the zero UUID.
fn new_cluster_id() -> String {
    loop {
        let uuid = Uuid::new_v4();
        let id = base64_url_no_pad(uuid.as_bytes());
        if !uuid.is_nil() && !id.starts_with('-') {
            return id;
        }
    }
}

/// A new random id in Kafka's text form (22 characters of URL-safe base64), as Kafka writes
/// cluster and directory ids.
pub fn new_kafka_id() -> String {
    new_cluster_id()
}

/// URL-safe base64 (RFC 4648 §5) without padding.
fn base64_url_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 1, 2 or 3 input bytes carry 2, 3 or 4 sextets.
        for i in 0..=chunk.len() {
            // Masked to 6 bits, so the cast cannot truncate.
            let sextet = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            out.push(char::from(ALPHABET[sextet]));
        }
    }
    out
}

// The broker shares one `Controller` across connection tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Controller>();
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_id_tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_url_alphabet() {
        let bytes: Vec<u8> = (0..16).collect();
        assert_eq!(base64_url_no_pad(&bytes), "AAECAwQFBgcICQoLDA0ODw");
        let mut bytes = [0xfb, 0xff, 0xbf].repeat(5);
        bytes.push(0xfe);
        assert_eq!(base64_url_no_pad(&bytes), "-_-_-_-_-_-_-_-_-_-__g");
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        for _ in 0..100 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }
}
