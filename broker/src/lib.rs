//! The Fjord broker: a tokio TCP server that speaks the Kafka protocol, with one handler
//! module per API family, on top of the partition store (`fjord-storage`) and the cluster
//! metadata controller (`fjord-controller`).
//!
//! `run` is the whole life of a broker: open storage and the controller, bind the listeners,
//! serve until `shutdown` resolves, then drain connections and close storage cleanly.

pub mod cleaner;
pub mod config;
pub mod dynamic;
mod error;
pub mod group;
mod handler;
mod http;
pub mod kafka_keys;
mod meta_properties;
pub mod metrics;
mod peers;
pub mod replication;
mod server;
pub mod state_log;
pub mod topic_config;
pub mod txn;

use std::sync::Arc;
use std::time::Instant;

use fjord_controller::{ClusterMetadata, Controller, ControllerConfig, TopicMeta};
use fjord_storage::{LogStore, PartitionId, StorageConfig};

pub use config::Config;
pub use error::BrokerError;

use crate::handler::fetch::FetchSessions;

/// Subdirectory of `log.dirs` holding the partition logs.
pub const LOGS_SUBDIR: &str = "logs";
/// Subdirectory of `log.dirs` holding the controller's Raft log and snapshots.
pub const METADATA_SUBDIR: &str = "metadata";

/// Everything a request handler may touch.
pub struct Broker {
    /// The configuration the broker started with.
    pub config: Config,
    /// Partition logs.
    pub store: Arc<LogStore>,
    /// Cluster metadata.
    pub controller: Controller,
    /// KIP-227 incremental fetch sessions.
    pub(crate) fetch_sessions: FetchSessions,
    /// Parsed topic settings for the produce path.
    pub(crate) produce_settings: topic_config::SettingsCache,
    /// Consumer groups and committed offsets.
    pub(crate) groups: Arc<group::GroupCoordinator>,
    /// Producer ids and transactions.
    pub(crate) txns: txn::TxnCoordinator,
    /// Connections to the other brokers, for requests a coordinator or leader sends them.
    pub(crate) peers: peers::Peers,
    /// Counters for the status page and gauges.
    pub(crate) stats: metrics::BrokerStats,
    /// The leader side of partition replication.
    pub(crate) replication: replication::Replication,
    /// Held by a [`Broker::reconcile`] under way.
    reconciling: tokio::sync::Mutex<()>,
    /// The log cleaner's view of the compacted partitions, for the status page.
    pub(crate) cleaner: cleaner::CleanerState,
    /// The settings dynamic broker configs change, as of the latest metadata.
    live: dynamic::LiveCache,
}

impl Broker {
    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The controller id clients are told (Metadata, DescribeCluster): the Raft leader this
    /// node knows of, else the one that wrote the latest metadata. Any node takes admin
    /// requests, but a live id keeps clients that send them to "the controller" off a dead node.
    /// A leader that is no broker (a controller-only node) serves no clients, and Kafka's
    /// brokers then name a live broker: this one.
    pub fn controller_id(&self, meta: &ClusterMetadata) -> i32 {
        let leader = self
            .controller
            .raft_status()
            .leader
            .and_then(|l| i32::try_from(l).ok())
            .unwrap_or(meta.controller_id);
        if meta.brokers.contains_key(&leader) && !meta.fenced.contains(&leader) {
            leader
        } else {
            self.node_id()
        }
    }

    /// The latest cluster metadata.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.controller.metadata()
    }

    /// The settings that dynamic broker configs change (topic defaults, the cleaner's, the
    /// disk reserve), as `meta` has them for this broker.
    pub fn live(&self, meta: &ClusterMetadata) -> Arc<dynamic::Live> {
        self.live.get(&self.config, meta)
    }

    /// Makes storage match the metadata: every partition led here exists, and the data of
    /// deleted topics is gone. Idempotent; run at start, after admin changes and whenever
    /// the metadata moves.
    pub async fn reconcile(&self) -> Result<(), BrokerError> {
        // One at a time, each with the metadata as it is when its turn comes: one holding an
        // older snapshot would delete the storage of a topic another had just created for a
        // newer one.
        let _turn = self.reconciling.lock().await;
        let meta = self.metadata();
        let live = self.live(&meta);
        self.store.space().set_min_free(live.min_free_bytes);
        for topic in meta.topics.values() {
            // Segment rolling follows the topic's config, changed or not.
            let cfg = topic_config::EffectiveConfig::new(&live.topic_defaults, &topic.configs);
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id()) {
                    let pid = partition_id(topic, p.partition);
                    let replicated = replication::is_replicated(p);
                    self.store.ensure_replica(pid, replicated).await?;
                    self.store.set_replicated(&pid, replicated);
                    self.store.set_roll(&pid, cfg.segment_bytes(), Some(cfg.segment_ms()));
                }
            }
        }
        // What is stored here and no longer hosted: deleted topics, and replicas a completed
        // reassignment moved to other brokers. The metadata is never older than the
        // controller's at start (`Controller::open` catches up first), so nothing a later
        // change gave back to this node is deleted.
        let topics: std::collections::HashMap<[u8; 16], &TopicMeta> =
            meta.topics.values().map(|t| (*t.topic_id.as_bytes(), t)).collect();
        let mut gone_topics: Vec<[u8; 16]> = Vec::new();
        let mut moved_away: Vec<(PartitionId, &str)> = Vec::new();
        for pid in self.store.partition_ids() {
            match topics.get(&pid.topic_id) {
                None => gone_topics.push(pid.topic_id),
                Some(t) => {
                    let hosted = usize::try_from(pid.partition)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                        .is_some_and(|p| p.replicas.contains(&self.node_id()));
                    if !hosted {
                        moved_away.push((pid, &t.name));
                    }
                }
            }
        }
        gone_topics.sort();
        gone_topics.dedup();
        for topic_id in gone_topics {
            self.store.delete_topic(topic_id).await?;
        }
        for (pid, topic) in moved_away {
            tracing::info!(
                topic,
                partition = pid.partition,
                "deleting a replica moved to other brokers"
            );
            self.store.delete_partition(pid).await?;
        }
        Ok(())
    }
}

impl Broker {
    /// One retention pass over every partition led here.
    pub async fn enforce_retention(&self) -> Result<(), BrokerError> {
        let meta = self.metadata();
        let live = self.live(&meta);
        let now_ms = txn::now_ms();
        for topic in meta.topics.values() {
            let cfg = topic_config::EffectiveConfig::new(&live.topic_defaults, &topic.configs);
            let Some((retention_ms, retention_bytes)) = cfg.retention() else {
                continue;
            };
            for p in topic.partitions.iter().filter(|p| p.leader == self.node_id()) {
                let pid = partition_id(topic, p.partition);
                let before = self.store.offsets(&pid).map(|o| o.log_start);
                let after = self
                    .store
                    .enforce_retention(pid, retention_ms, retention_bytes, now_ms)
                    .await?;
                if before.is_some_and(|b| b < after) {
                    tracing::info!(topic = %topic.name, partition = p.partition, log_start = after, "retention deleted old records");
                }
            }
        }
        Ok(())
    }
}

/// The storage name of a topic's partition.
pub fn partition_id(topic: &TopicMeta, partition: i32) -> PartitionId {
    PartitionId {
        topic_id: *topic.topic_id.as_bytes(),
        partition,
    }
}

/// Runs a broker until `shutdown` resolves. `ready` is told the bound addresses once the
/// broker serves requests (tests bind port 0 and learn the port this way).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
    ready: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> Result<(), BrokerError> {
    if !config.roles.broker {
        return run_controller(config, shutdown, ready).await;
    }
    let started = Instant::now();
    let data_dir = config.log_dir.clone();
    let (http_state, http_task) = start_http(&config).await?;
    let listeners = server::bind(&config).await?;
    let addrs: Vec<std::net::SocketAddr> = listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).collect();
    let bound_ports: Vec<(String, u16)> = listeners
        .iter()
        .filter_map(|(l, info)| Some((info.name.clone(), l.local_addr().ok()?.port())))
        .collect();
    // A broker-only node has no controller listener: the metadata leader's Raft connections
    // come to its broker listener, and are handed to the controller from the start, since the
    // controller must catch up before the broker opens.
    let (raft_tx, raft_rx) = if config.roles.controller {
        (None, None)
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (Some(tx), Some(rx))
    };
    let server = server::Server::accept(&config, listeners, raft_tx);

    let storage_cfg = StorageConfig {
        data_dir: data_dir.join(LOGS_SUBDIR),
        flush_interval_messages: config.flush_interval_messages,
        flush_interval_ms: config.flush_interval_ms,
        segment_bytes: config.segment_bytes(),
        checkpoint_interval_ms: config.checkpoint_interval_ms,
    };
    let store_task = tokio::task::spawn_blocking(move || LogStore::open(storage_cfg));
    // Every advertised listener, registered so that each client is told the other brokers'
    // addresses on its own listener. Advertising port 0 would be useless: tests bind port 0
    // and advertise what was bound.
    let registered: Vec<fjord_controller::BrokerEndpoint> = config
        .advertised_listeners
        .iter()
        .map(|a| {
            let bound = bound_ports.iter().find(|(name, _)| *name == a.name).map(|(_, p)| *p);
            fjord_controller::BrokerEndpoint {
                name: a.name.clone(),
                host: a.host.clone(),
                port: if a.port == 0 { bound.unwrap_or(0) } else { a.port },
            }
        })
        .collect();
    let inter_broker = config
        .inter_broker_listener()
        .and_then(|name| registered.iter().find(|e| e.name == name))
        .or(registered.first())
        .cloned()
        .ok_or_else(|| BrokerError::Startup("no advertised listener".into()))?;
    let mut controller_cfg = controller_config(&config, &inter_broker.host, inter_broker.port);
    let advertised_log = registered
        .iter()
        .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
        .collect::<Vec<_>>()
        .join(",");
    controller_cfg.advertised_listeners = registered;
    let open = async {
        match raft_rx {
            Some(rx) => Controller::open_with_incoming(controller_cfg, rx).await,
            None => {
                let listener = match &config.controller_listener {
                    Some(l) => Some(server::bind_controller(l).await?),
                    None => None,
                };
                Controller::open_with_listener(controller_cfg, listener).await
            }
        }
        .map_err(BrokerError::from)
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let Some(controller) = open_unless_stopped(&config, open, shutdown.as_mut()).await? else {
        return Ok(());
    };
    let store = store_task
        .await
        .map_err(|e| BrokerError::Startup(format!("storage open task: {e}")))??;
    store.space().set_min_free(config.min_free_bytes);
    let group_store = store.groups().clone();
    let group_cfg = config.groups.clone();
    let cluster = config.is_cluster();
    let groups = tokio::task::spawn_blocking(move || group::GroupCoordinator::load(group_cfg, group_store, cluster))
        .await
        .map_err(|e| BrokerError::Startup(format!("group load task: {e}")))??;
    let groups = Arc::new(groups);
    let txn_store = store.groups().clone();
    let txn_cfg = config.txns.clone();
    let txns = tokio::task::spawn_blocking(move || txn::TxnCoordinator::load(txn_cfg, txn_store, cluster))
        .await
        .map_err(|e| BrokerError::Startup(format!("transaction load task: {e}")))??;

    let broker = Arc::new(Broker {
        config,
        store,
        controller,
        fetch_sessions: FetchSessions::default(),
        produce_settings: Default::default(),
        live: Default::default(),
        groups: groups.clone(),
        txns,
        peers: Default::default(),
        stats: metrics::BrokerStats::default(),
        replication: Default::default(),
        reconciling: Default::default(),
        cleaner: Default::default(),
    });
    let _ = http_state.broker.set(broker.clone());
    if cluster {
        groups.replicate_through(&broker);
        broker.txns.replicate_through(&broker);
    }
    let collector = tokio::spawn(http::collect_loop(broker.clone(), http_state.handle.clone()));
    broker.reconcile().await?;
    let reconciler = tokio::spawn(reconcile_on_change(broker.clone()));
    let retention = tokio::spawn(retention_loop(broker.clone()));
    let log_cleaner = tokio::spawn(cleaner::run(broker.clone()));
    let group_timers = tokio::spawn(groups.run_timers());
    let txn_timers = tokio::spawn(transaction_loop(broker.clone()));
    let isr = tokio::spawn(replication::isr_loop(broker.clone()));
    let fetchers = tokio::spawn(replication::fetcher::run(broker.clone()));
    // On a single node the column family alone holds coordinator state: a user topic named
    // __consumer_offsets or __transaction_state there is only a topic.
    let coordinator_loads = cluster.then(|| tokio::spawn(state_log::run(broker.clone())));

    let meta = broker.metadata();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_id = broker.node_id(),
        cluster_id = %meta.cluster_id,
        listeners = ?addrs,
        advertised = %advertised_log,
        data_dir = %data_dir.display(),
        topics = meta.topics.len(),
        ready_ms = started.elapsed().as_millis() as u64,
        "fjord started"
    );
    if let Some(tx) = ready {
        let _ = tx.send(addrs);
    }

    http_state.serving.store(true, std::sync::atomic::Ordering::Release);
    let stopping = http_state.clone();
    let mut offline = broker.store.health().subscribe();
    let leaving = broker.controller.clone();
    let watched = broker.controller.clone();
    let raft_failure: Arc<std::sync::OnceLock<String>> = Arc::default();
    let failure = raft_failure.clone();
    let shutdown = async move {
        // The log directory going offline stops the broker as Kafka stops when its last log
        // directory fails: the connections still open get KAFKA_STORAGE_ERROR while they
        // drain, and the next start recovers what the disk holds. So does a controller whose
        // Raft core died: its metadata would stop moving while the broker served it; a
        // restart recovers the node from its metadata log.
        let asked = tokio::select! {
            () = shutdown => true,
            _ = offline.wait_for(|o| *o) => false,
            reason = watched.failed() => {
                tracing::error!(%reason, "the controller's Raft core stopped; stopping the broker");
                let _ = failure.set(reason);
                false
            }
        };
        stopping.stopping.store(true, std::sync::atomic::Ordering::Release);
        // A controlled shutdown moves this broker's leaderships away first, as Kafka's does,
        // so that producers and consumers go to the new leaders while the connections here
        // drain instead of after.
        if asked {
            leaving.leave().await;
        }
    };
    server.open(broker.clone());
    server.serve(shutdown).await;

    reconciler.abort();
    retention.abort();
    log_cleaner.abort();
    group_timers.abort();
    txn_timers.abort();
    isr.abort();
    fetchers.abort();
    if let Some(loads) = coordinator_loads {
        loads.abort();
    }
    collector.abort();
    if let Some(reason) = broker.store.health().offline_reason() {
        let _ = broker.controller.shutdown().await;
        return Err(BrokerError::LogDirOffline {
            dir: data_dir.display().to_string(),
            reason: reason.to_string(),
        });
    }
    if let Some(reason) = raft_failure.get() {
        broker.store.shutdown().await?;
        return Err(BrokerError::Controller(fjord_controller::ControllerError::Raft(
            reason.clone(),
        )));
    }
    tracing::info!("shutting down: connections drained, closing storage and controller");
    broker.store.shutdown().await?;
    broker.controller.shutdown().await?;
    if let Some(t) = http_task {
        t.abort();
    }
    tracing::info!("fjord stopped");
    Ok(())
}

/// The controller's settings from the node's.
fn controller_config(config: &Config, advertised_host: &str, advertised_port: u16) -> ControllerConfig {
    ControllerConfig {
        node_id: config.node_id,
        roles: config.roles,
        cluster_id: config.cluster_id.clone(),
        data_dir: config.log_dir.join(METADATA_SUBDIR),
        advertised_host: advertised_host.to_string(),
        advertised_port,
        advertised_listeners: Vec::new(),
        rack: config.rack.clone(),
        voters: config.quorum_voters.clone(),
        bootstrap_servers: config.quorum_bootstrap_servers.clone(),
        // A broker-only node is reached at its broker address (see `server::Server`).
        controller_endpoint: if config.roles.controller {
            config.controller_endpoint(advertised_host)
        } else {
            Some(format!("{advertised_host}:{advertised_port}"))
        },
        heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
        session_timeout_ms: config.broker_session_timeout_ms,
        leader_balance_interval_ms: config
            .auto_leader_rebalance
            .then_some(config.leader_imbalance_check_interval_ms),
    }
}

/// Waits for the controller to open: a node of a quorum waits in `open` until a majority of
/// the voters is up, and a SIGTERM meanwhile stops it there (`None`). Then writes Kafka's
/// `meta.properties`, for Kafka's tools (kafka-metadata-quorum.sh add-controller reads the
/// directory id there).
async fn open_unless_stopped(
    config: &Config,
    open: impl std::future::Future<Output = Result<Controller, BrokerError>>,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<Controller>, BrokerError> {
    let controller = tokio::select! {
        c = open => c?,
        () = shutdown => {
            tracing::info!("stopped while waiting for the controller quorum");
            return Ok(None);
        }
    };
    if let Err(e) = meta_properties::write(&config.log_dir, &controller.metadata().cluster_id, config.node_id) {
        tracing::warn!(error = %e, dir = %config.log_dir.display(), "could not write meta.properties");
    }
    Ok(Some(controller))
}

/// Creates the data directory and starts the HTTP listener, first of all, so that /readyz can
/// say "not yet" while storage and the controller open. A data directory of another cluster
/// than `cluster.id` stops the node here, as Kafka stops on its `meta.properties`.
async fn start_http(
    config: &Config,
) -> Result<(Arc<http::HttpState>, Option<tokio::task::JoinHandle<()>>), BrokerError> {
    std::fs::create_dir_all(&config.log_dir)
        .map_err(|e| BrokerError::Startup(format!("cannot create {}: {e}", config.log_dir.display())))?;
    if let (Some(want), Some(have)) = (&config.cluster_id, meta_properties::cluster_id(&config.log_dir)) {
        if *want != have {
            return Err(BrokerError::Startup(format!(
                "{} belongs to cluster {have} ({}), but cluster.id (CLUSTER_ID) is {want}",
                config.log_dir.display(),
                meta_properties::FILE
            )));
        }
    }
    let http_state = Arc::new(http::HttpState {
        handle: config.metrics_listener.as_ref().and_then(|_| metrics::install()),
        ..Default::default()
    });
    let http_task = match &config.metrics_listener {
        Some(addr) => {
            let l = http::bind(addr).await?;
            tracing::info!(address = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics and status page listening");
            Some(tokio::spawn(http::serve(l, http_state.clone())))
        }
        None => None,
    };
    Ok((http_state, http_task))
}

/// [`run`] for a controller-only node (`process.roles=controller`): a voter of the metadata
/// quorum (or an observer that AddRaftVoter can make one) with no broker: no client listener,
/// no partitions, no registration. `ready` is told the controller listener's address.
async fn run_controller(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
    ready: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> Result<(), BrokerError> {
    let started = Instant::now();
    let (http_state, http_task) = start_http(&config).await?;
    let l = config
        .controller_listener
        .as_ref()
        .ok_or_else(|| BrokerError::Startup("a controller needs its controller listener".into()))?;
    let listener = server::bind_controller(l).await?;
    let bound = listener
        .local_addr()
        .map_err(|e| BrokerError::Startup(format!("controller listener: {e}")))?;
    let host = config::default_advertised_host(&l.host);
    let open = async {
        Controller::open_with_listener(controller_config(&config, host, bound.port()), Some(listener))
            .await
            .map_err(BrokerError::from)
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let Some(controller) = open_unless_stopped(&config, open, shutdown.as_mut()).await? else {
        return Ok(());
    };
    let _ = http_state.controller.set((controller.clone(), config.node_id));
    let collector = tokio::spawn(http::controller_collect_loop(
        controller.clone(),
        http_state.handle.clone(),
    ));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_id = config.node_id,
        cluster_id = %controller.metadata().cluster_id,
        controller_listener = %bound,
        data_dir = %config.log_dir.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "fjord controller started (process.roles=controller)"
    );
    if let Some(tx) = ready {
        let _ = tx.send(vec![bound]);
    }
    let failed = tokio::select! {
        () = &mut shutdown => None,
        reason = controller.failed() => Some(reason),
    };
    http_state.stopping.store(true, std::sync::atomic::Ordering::Release);
    collector.abort();
    if let Some(reason) = failed {
        tracing::error!(%reason, "the controller's Raft core stopped");
        let _ = controller.shutdown().await;
        return Err(BrokerError::Controller(fjord_controller::ControllerError::Raft(reason)));
    }
    controller.shutdown().await?;
    if let Some(t) = http_task {
        t.abort();
    }
    tracing::info!("fjord stopped");
    Ok(())
}

/// Finishes transactions a restart interrupted, then aborts timed-out ones every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
async fn transaction_loop(broker: Arc<Broker>) {
    let period = std::time::Duration::from_millis(broker.config.txns.abort_check_interval_ms.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let producer_check = std::time::Duration::from_millis(broker.config.txns.producer_id_expiration_check_interval_ms);
    let mut last_producer_check = std::time::Instant::now();
    loop {
        // The first tick is immediate: prepared transactions found at startup complete now.
        tick.tick().await;
        handler::txn::expire_transactions(&broker, None).await;
        if last_producer_check.elapsed() >= producer_check {
            last_producer_check = std::time::Instant::now();
            let max_age = broker.config.txns.producer_id_expiration_ms;
            match broker.store.expire_producers(txn::now_ms(), max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(producers = n, "expired idle producer state"),
                Err(e) => tracing::warn!(error = %e, "producer expiry failed"),
            }
        }
    }
}

/// Applies every topic's retention every `log.retention.check.interval.ms`.
async fn retention_loop(broker: Arc<Broker>) {
    let period = std::time::Duration::from_millis(broker.config.retention_check_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; nothing has expired at start
    loop {
        tick.tick().await;
        if let Err(e) = broker.enforce_retention().await {
            tracing::error!(error = %e, "retention pass failed");
        }
    }
}

async fn reconcile_on_change(broker: Arc<Broker>) {
    let mut rx = broker.controller.subscribe();
    while rx.changed().await.is_ok() {
        if let Err(e) = broker.reconcile().await {
            tracing::error!(error = %e, "could not apply a metadata change to storage");
        }
    }
}
