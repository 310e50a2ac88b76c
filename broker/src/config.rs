//! Broker configuration with Kafka's own property names.
//!
//! Sources, later ones winning, as with `kafka-server-start.sh` and the apache/kafka image:
//! defaults, then `KAFKA_*` environment variables (`KAFKA_LOG_DIRS` -> `log.dirs`), then the
//! properties file given as the first argument, then `--override key=value`.
//!
//! Every key is checked at start. Every broker key of Apache Kafka 4.4 is accepted
//! ([`crate::kafka_keys`], generated from Kafka's own definitions) and its value checked as
//! Kafka checks it; a key Fjord does not act on is listed by [`Config::without_effect`], which
//! the start log names. A key neither Kafka nor Fjord knows stops the broker, naming it, when it
//! comes from a file or `--override`; from the environment it is ignored (see
//! [`Config::from_args_and_env`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::topic_config;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key Fjord does not know.
    #[error("unknown configuration property '{0}'")]
    UnknownKey(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value '{value}' for configuration property '{key}': {reason}")]
    Invalid {
        /// The property.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The properties file could not be read.
    #[error("cannot read properties file {path}: {error}")]
    File {
        /// File path.
        path: String,
        /// The I/O error.
        error: String,
    },
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
}

/// A listener: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (`PLAINTEXT`, ...).
    pub name: String,
    /// Host to bind or advertise; empty means all interfaces when binding.
    pub host: String,
    /// TCP port; 0 binds any free port.
    pub port: u16,
}

/// `queued.max.request.bytes` when it is not set: Kafka's default is unbounded (see
/// [`Config::queued_max_request_bytes`] for why Fjord's is not).
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 256 << 20;

/// Keys that are not Kafka 4.4's but that configurations written for older Kafka or for
/// Confluent's images still carry: accepted without effect, as the broker keys Fjord does not
/// act on are.
pub const LEGACY_KEYS: &[&str] = &["zookeeper.connect", "confluent.support.metrics.enable"];

/// Kafka broker keys that Fjord checks with a looser validator than Kafka's (in the form of
/// `kafka_configs.tsv`), and why. `log.segment.bytes`: Kafka 4.0 raised its minimum to 1 MiB
/// and moved smaller segments to an internal topic key; Fjord's own fault tests roll segments
/// of a few kilobytes.
const LENIENT_KEYS: &[(&str, &str)] = &[("log.segment.bytes", "range:1:")];

/// How followers fetch and when the leader drops them from the ISR, with Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower that has not caught up with the leader's log end
    /// for this long leaves the ISR. Default 30000.
    pub lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data. Default 500.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes per partition per fetch. Default 1048576.
    pub fetch_max_bytes: u64,
    /// `replica.fetch.response.max.bytes`: bytes per fetch response. Default 10485760.
    pub fetch_response_max_bytes: u64,
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch. Default 1000.
    pub fetch_backoff_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            lag_time_max_ms: 30_000,
            fetch_wait_max_ms: 500,
            fetch_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            fetch_backoff_ms: 1000,
        }
    }
}

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `node.id` (alias `broker.id`). Default: 1.
    pub node_id: i32,
    /// `listeners`. Default: `PLAINTEXT://0.0.0.0:9092`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`. Default: `PLAINTEXT://localhost:<listener port>`.
    pub advertised_listeners: Vec<Listener>,
    /// The listener of `listeners` named first in `controller.listener.names` (default
    /// `CONTROLLER`), if `listeners` has one: the controller quorum's Raft transport. Required
    /// when `controller.quorum.voters` names other nodes.
    pub controller_listener: Option<Listener>,
    /// The first name of `controller.quorum.listener.names` (default `CONTROLLER`).
    pub controller_listener_name: String,
    /// `inter.broker.listener.name`: the advertised listener other brokers fetch from this one
    /// on. Unset: the one named `PLAINTEXT`, else the first advertised listener.
    pub inter_broker_listener_name: Option<String>,
    /// `advertised.listeners`' entry for the controller listener, if it has one (Kafka 3.9+):
    /// the address the other nodes reach this controller at.
    pub controller_advertised: Option<Listener>,
    /// `cluster.id` (from the environment also `CLUSTER_ID`, as the apache/kafka image takes it):
    /// the id a new cluster takes, and the only one this node accepts. Unset: a new cluster
    /// draws one.
    pub cluster_id: Option<String>,
    /// `process.roles`: `broker,controller` (the default: KRaft's combined mode), `broker`
    /// (an observer of the metadata quorum that serves clients) or `controller` (a voter that
    /// serves no clients).
    pub roles: fjord_controller::Roles,
    /// `controller.quorum.voters` (`id@host:port,...`): every voter's node id and controller
    /// endpoint. Empty (the default) makes this node the only voter. A node with the
    /// controller role must be in the list; a broker-only node must not.
    pub quorum_voters: BTreeMap<i32, String>,
    /// `controller.quorum.bootstrap.servers` (`host:port`, ...): without
    /// `controller.quorum.voters`, the quorum this node joins as an observer (KIP-853);
    /// AddRaftVoter can then make it a voter.
    pub quorum_bootstrap_servers: Vec<String>,
    /// `broker.heartbeat.interval.ms`: how often a node of a quorum heartbeats the controller
    /// leader. Default 2000.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker the leader has not heard from for this long is
    /// fenced. Default 9000.
    pub broker_session_timeout_ms: u64,
    /// `auto.leader.rebalance.enable` (true): the active controller hands partitions back to
    /// their preferred replica once it is in sync again.
    pub auto_leader_rebalance: bool,
    /// `broker.rack`: registered with the controller, which places the replicas of new
    /// partitions on distinct racks when it can; Metadata tells clients.
    pub rack: Option<String>,
    /// `leader.imbalance.check.interval.seconds` (300), in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// Follower fetching and the ISR (Kafka's `replica.*` keys).
    pub replication: ReplicationConfig,
    /// `log.dirs` (alias `log.dir`); only the first directory is used. Default: `./fjord-data`.
    pub log_dir: PathBuf,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1. Default 1.
    pub num_partitions: i32,
    /// `default.replication.factor`. Default 1.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`. Default true.
    pub auto_create_topics: bool,
    /// `delete.topic.enable`. Default true.
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`: the largest request frame. Default 100 MiB.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes read and not yet answered, over every
    /// connection, before no more requests are read; `None` (-1 or 0) for no bound, Kafka's
    /// default. Fjord bounds it by default to [`DEFAULT_QUEUED_MAX_REQUEST_BYTES`] (or
    /// `socket.request.max.bytes` when that is larger): without a bound a few clients
    /// pipelining large frames (64 in flight per connection, each up to
    /// `socket.request.max.bytes`) could make the broker hold gigabytes.
    pub queued_max_request_bytes: Option<usize>,
    /// `fetch.max.bytes`: the most record bytes one Fetch response carries, whatever the
    /// consumer asks (the first batch excepted, KIP-74). Default 55 MiB, Kafka's.
    pub fetch_max_bytes: usize,
    /// `socket.send.buffer.bytes`: SO_SNDBUF of client connections, `None` (-1) for the
    /// kernel's autotuning. Default 256 KiB (Kafka's is 100 KiB): on loopback catch-up reads
    /// autotuning's multi-MiB buffers made each `sendfile` push megabytes at once and the
    /// consumer wake up to near-empty reads; see BENCHMARKS.md.
    pub socket_send_buffer_bytes: Option<usize>,
    /// `socket.receive.buffer.bytes`: SO_RCVBUF of client connections (set on the listening
    /// socket, so the window scale offered in the handshake fits it), `None` (-1) for the
    /// kernel's autotuning. Default -1 (Kafka's is 100 KiB, which cost ~10% of produce
    /// throughput here).
    pub socket_receive_buffer_bytes: Option<usize>,
    /// `log.flush.interval.messages`. Default `i64::MAX` (never forced; Kafka's default).
    pub flush_interval_messages: i64,
    /// `log.flush.interval.ms`. Default: none.
    pub flush_interval_ms: Option<u64>,
    /// `log.retention.check.interval.ms`: how often retention runs. Default 300000 (5 min).
    pub retention_check_interval_ms: u64,
    /// The log cleaner (`log.cleaner.*` less the topic defaults among them).
    pub cleaner: CleanerConfig,
    /// `log.flush.offset.checkpoint.interval.ms`: how often rolled segments are fsynced and the
    /// recovery checkpoint written. Default 60000 (Kafka's).
    pub checkpoint_interval_ms: u64,
    /// Broker-level defaults of topic configs (`message.max.bytes`, `log.retention.ms`, ...),
    /// already translated to topic config names (`max.message.bytes`, `retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
    /// Every property explicitly given, for DescribeConfigs on the broker resource.
    pub explicit: BTreeMap<String, String>,
    /// Environment variables that looked like properties (`KAFKA_*`) but name no key Fjord or
    /// Kafka knows, with the key each mapped to: ignored, as Kafka ignores unknown properties,
    /// because compose files carry variables meant for other images and tools. Logged at WARN
    /// once logging is up.
    pub ignored_env: Vec<(String, String)>,
    /// The keys given that Fjord accepts and does not act on ([`Config::without_effect`]).
    pub without_effect: Vec<String>,
    /// Group coordinator settings (`group.*`, `offsets.*`).
    pub groups: crate::group::GroupConfig,
    /// Transaction coordinator settings (`transaction.*`).
    pub txns: crate::txn::TxnConfig,
    /// `metrics.listener`: `host:port` of the HTTP listener (/metrics, /healthz, /readyz, the
    /// status page), `None` when switched off (`none` or empty). Default `0.0.0.0:9644`.
    pub metrics_listener: Option<String>,
    /// `log.format`: `text` (default) or `json`.
    pub log_json: bool,
    /// `log.target`: `stderr` (default) or `stdout`, where the log lines go. The container
    /// image logs to stdout, as Kafka's images do (some log collectors take stderr for errors).
    pub log_stdout: bool,
    /// `log.slow.request.ms`: requests taking longer are logged at WARN; 0 turns it off.
    /// Default 5000.
    pub slow_request_ms: u64,
    /// `log.dir.min.free.bytes` (Fjord's): new data is refused with KAFKA_STORAGE_ERROR
    /// while less is free in the log directory; `None` (-1, the default) for 5% of the file
    /// system up to 1 GiB, 0 for no reserve (a full disk then fails writes as on Kafka,
    /// though a segment write that runs out of space is still only refused).
    pub min_free_bytes: Option<u64>,
}

impl Config {
    /// The name of the listener other brokers reach this one on (see
    /// [`Config::inter_broker_listener_name`]); `None` leaves the first advertised listener.
    pub fn inter_broker_listener(&self) -> Option<&str> {
        match &self.inter_broker_listener_name {
            Some(name) => Some(name),
            None => self
                .advertised_listeners
                .iter()
                .find(|a| a.name == "PLAINTEXT")
                .map(|a| a.name.as_str()),
        }
    }

    /// Whether this node is one of several controller voters (a cluster), not the embedded
    /// single node.
    pub fn is_cluster(&self) -> bool {
        self.roles != fjord_controller::Roles::COMBINED
            || self.quorum_voters.keys().any(|&id| id != self.node_id)
            || !self.quorum_bootstrap_servers.is_empty()
    }

    /// This node's controller endpoint (`host:port`) as the other controllers reach it: the
    /// controller listener's entry in `advertised.listeners`, else the listener itself, where
    /// one bound to every address is reached at `advertised_host`.
    pub fn controller_endpoint(&self, advertised_host: &str) -> Option<String> {
        if let Some(a) = &self.controller_advertised {
            return Some(format!("{}:{}", a.host, a.port));
        }
        let l = self.controller_listener.as_ref()?;
        let host = if binds_every_address(&l.host) {
            advertised_host
        } else {
            &l.host
        };
        Some(format!("{host}:{}", l.port))
    }
}

/// Whether a listener's host binds every address (empty, `0.0.0.0` or `::`), so that it is no
/// address to give others.
fn binds_every_address(host: &str) -> bool {
    host.is_empty() || host == "0.0.0.0" || host == "::"
}

/// The host to tell others for a listener with nothing better to advertise: its own, or
/// `localhost` for one bound to every address (Kafka's default advertised listener).
pub(crate) fn default_advertised_host(host: &str) -> &str {
    if binds_every_address(host) {
        "localhost"
    } else {
        host
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_properties(BTreeMap::new()).expect("the defaults are valid")
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|e| invalid(key, value, e.to_string()))
}

/// A number that must be at least 1 (counts and intervals where 0 means nothing sensible).
fn parse_at_least_one<T>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let n: T = parse_num(key, value)?;
    if n < T::from(1) {
        return Err(invalid(key, value, "must be at least 1"));
    }
    Ok(n)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// A socket buffer size: -1 (the kernel's default and autotuning) or a positive byte count.
fn parse_buffer_size(key: &str, value: &str) -> Result<Option<usize>, ConfigError> {
    match parse_num::<i32>(key, value)? {
        -1 => Ok(None),
        n if n > 0 => Ok(Some(n as usize)),
        _ => Err(invalid(key, value, "must be -1 (the OS default) or positive")),
    }
}

/// Parses `controller.quorum.voters`: `id@host:port[,id@host:port]`, the host possibly an IPv6
/// address in brackets. Ids are non-negative and unique.
pub fn parse_voters(key: &str, value: &str) -> Result<BTreeMap<i32, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| invalid(key, value, format!("'{item}': {why} (expected id@host:port)"));
        let (id, endpoint) = item.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let id: i32 = id.trim().parse().map_err(|_| bad("the id is not a number"))?;
        if id < 0 {
            return Err(bad("the id is negative"));
        }
        let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() || port == 0 {
            return Err(bad("empty host or port 0"));
        }
        if out.insert(id, format!("{host}:{port}")).is_some() {
            return Err(bad("the id is listed twice"));
        }
    }
    Ok(out)
}

/// `controller.quorum.bootstrap.servers`: `host:port` controller endpoints, comma-separated.
fn parse_bootstrap_servers(key: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| invalid(key, value, format!("'{item}': {why} (expected host:port)"));
        let (host, port) = item.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        if host.is_empty() || port == 0 {
            return Err(bad("empty host or port 0"));
        }
        out.push(format!("{host}:{port}"));
    }
    Ok(out)
}

/// `cluster.id`: a Kafka Uuid as `kafka-storage.sh random-uuid` prints it, 16 bytes in 22
/// characters of URL-safe base64 without padding.
fn parse_cluster_id(key: &str, value: &str) -> Result<String, ConfigError> {
    let id = value.trim();
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.len() != 22 || !id.chars().all(base64url) {
        return Err(invalid(
            key,
            value,
            "not a Kafka cluster id (22 characters of URL-safe base64, as kafka-storage.sh random-uuid prints)",
        ));
    }
    Ok(id.to_string())
}

/// `process.roles`: `broker`, `controller` or both, in any order, each once (Kafka's rule).
fn parse_process_roles(key: &str, value: &str) -> Result<fjord_controller::Roles, ConfigError> {
    let mut roles = fjord_controller::Roles {
        broker: false,
        controller: false,
    };
    for r in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let seen = match r {
            "broker" => std::mem::replace(&mut roles.broker, true),
            "controller" => std::mem::replace(&mut roles.controller, true),
            _ => {
                return Err(invalid(
                    key,
                    value,
                    format!("unknown role '{r}' (Kafka's are broker and controller)"),
                ))
            }
        };
        if seen {
            return Err(invalid(key, value, format!("'{r}' is listed twice")));
        }
    }
    if !roles.broker && !roles.controller {
        return Err(invalid(key, value, "expected broker, controller or broker,controller"));
    }
    Ok(roles)
}

/// Kafka's `listener.security.protocol.map` when it is not set.
const DEFAULT_PROTOCOL_MAP: &str = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Every listener's security protocol, from `listener.security.protocol.map` as Kafka reads
/// it: a listener the map does not name stops the broker (Kafka's "No security protocol
/// defined for listener"), except a controller listener while the map is not set, which is
/// PLAINTEXT. Fjord serves PLAINTEXT only so far: a listener mapped to SSL or SASL stops it too,
/// rather than serving in the clear what its clients expect to be encrypted or authenticated.
fn check_security_protocols(
    cfg: &Config,
    map: Option<&String>,
    controller_names: &[String],
) -> Result<(), ConfigError> {
    const KEY: &str = "listener.security.protocol.map";
    let raw = map.map(String::as_str).unwrap_or(DEFAULT_PROTOCOL_MAP);
    let mut protocols = BTreeMap::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| invalid(KEY, raw, format!("'{item}': expected LISTENER_NAME:PROTOCOL")))?;
        let protocol = protocol.trim().to_ascii_uppercase();
        if !matches!(protocol.as_str(), "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
            return Err(invalid(
                KEY,
                raw,
                format!("'{item}': unknown security protocol {protocol}"),
            ));
        }
        if protocols.insert(name.trim().to_ascii_uppercase(), protocol).is_some() {
            return Err(invalid(KEY, raw, format!("listener {} is mapped twice", name.trim())));
        }
    }
    for (key, listeners) in [
        ("listeners", &cfg.listeners),
        ("advertised.listeners", &cfg.advertised_listeners),
    ] {
        for l in listeners {
            let name = l.name.to_ascii_uppercase();
            let protocol = match protocols.get(&name) {
                Some(p) => p.as_str(),
                None if map.is_none() && controller_names.iter().any(|c| c.eq_ignore_ascii_case(&name)) => "PLAINTEXT",
                None => {
                    return Err(invalid(
                        KEY,
                        raw,
                        format!("no security protocol defined for listener {} (of {key})", l.name),
                    ))
                }
            };
            if protocol != "PLAINTEXT" {
                return Err(invalid(
                    key,
                    &format!("{}://{}:{}", l.name, l.host, l.port),
                    format!(
                        "listener {} uses security protocol {protocol}, which Fjord does not serve yet (PLAINTEXT only)",
                        l.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Parses `NAME://host:port[,NAME://host:port]`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| invalid(key, value, "expected NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, value, "missing :port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, value, format!("bad port '{port}'")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if name.is_empty() {
            return Err(invalid(key, value, "empty listener name"));
        }
        out.push(Listener {
            name: name.to_string(),
            host,
            port,
        });
    }
    Ok(out)
}

/// Broker property -> the topic config it provides the default for.
const BROKER_TO_TOPIC: &[(&str, &str)] = &[
    ("message.max.bytes", "max.message.bytes"),
    ("compression.type", "compression.type"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
];

/// The log cleaner's broker settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable` (default true).
    pub enable: bool,
    /// `log.cleaner.threads`: partitions cleaned at once (default 1).
    pub threads: usize,
    /// `log.cleaner.backoff.ms`: the pause when nothing is due (default 15000).
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the offset maps of all threads (default
    /// 128 MiB, 24 bytes a key as Kafka counts it).
    pub dedupe_buffer_size: u64,
    /// `log.cleaner.io.buffer.load.factor`: how full an offset map gets (default 0.9).
    pub load_factor: f64,
    /// `log.cleaner.io.max.bytes.per.second`: the cleaners' read plus write rate (default
    /// unlimited).
    pub io_max_bytes_per_second: f64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            threads: 1,
            backoff_ms: 15_000,
            dedupe_buffer_size: 128 << 20,
            load_factor: 0.9,
            io_max_bytes_per_second: f64::MAX,
        }
    }
}

impl CleanerConfig {
    /// One thread's limits: its share of the dedupe buffer (Kafka caps a thread's at 2 GB) and
    /// of the IO rate.
    pub fn limits(&self) -> fjord_storage::CleanerLimits {
        let threads = self.threads.max(1) as u64;
        let per_thread = (self.dedupe_buffer_size / threads).min(i32::MAX as u64);
        fjord_storage::CleanerLimits {
            map_keys: ((per_thread / 24) as f64 * self.load_factor.clamp(0.01, 1.0)) as usize,
            io_bytes_per_second: self.io_max_bytes_per_second / threads as f64,
        }
    }
}

const RETENTION_KEYS: &[(&str, i64)] = &[
    ("log.retention.ms", 1),
    ("log.retention.minutes", 60_000),
    ("log.retention.hours", 3_600_000),
];

impl Config {
    /// Builds the configuration from explicit properties (Kafka names).
    pub fn from_properties(props: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut cfg = Config {
            node_id: 1,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "0.0.0.0".into(),
                port: 9092,
            }],
            advertised_listeners: Vec::new(),
            controller_listener: None,
            controller_listener_name: "CONTROLLER".into(),
            inter_broker_listener_name: None,
            controller_advertised: None,
            roles: fjord_controller::Roles::COMBINED,
            cluster_id: None,
            quorum_voters: BTreeMap::new(),
            quorum_bootstrap_servers: Vec::new(),
            broker_heartbeat_interval_ms: fjord_controller::DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
            broker_session_timeout_ms: fjord_controller::DEFAULT_BROKER_SESSION_TIMEOUT_MS,
            auto_leader_rebalance: true,
            rack: None,
            leader_imbalance_check_interval_ms: 300_000,
            replication: ReplicationConfig::default(),
            log_dir: PathBuf::from("./fjord-data"),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            delete_topic_enable: true,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES),
            fetch_max_bytes: 57_671_680,
            socket_send_buffer_bytes: Some(256 << 10),
            socket_receive_buffer_bytes: None,
            flush_interval_messages: i64::MAX,
            flush_interval_ms: None,
            retention_check_interval_ms: 300_000,
            cleaner: CleanerConfig::default(),
            checkpoint_interval_ms: 60_000,
            topic_defaults: topic_config::defaults(),
            explicit: props.clone(),
            ignored_env: Vec::new(),
            without_effect: Vec::new(),
            groups: Default::default(),
            txns: Default::default(),
            metrics_listener: Some("0.0.0.0:9644".into()),
            log_json: false,
            log_stdout: false,
            slow_request_ms: 5000,
            min_free_bytes: None,
        };
        let mut retention: Option<(i64, &str)> = None;
        let (mut roll_ms, mut roll_hours): (Option<i64>, Option<i64>) = (None, None);
        let mut queued_max: Option<(i64, &str)> = None;
        let mut controller_listeners: Vec<String> = vec!["CONTROLLER".to_string()];
        for (key, value) in &props {
            let k = key.as_str();
            if let Some(kafka) = crate::kafka_keys::broker(k) {
                match LENIENT_KEYS.iter().find(|(lenient, _)| *lenient == k) {
                    Some((_, validator)) => kafka.check_as(value, validator),
                    None => kafka.check(value),
                }
                .map_err(|reason| invalid(k, value, reason))?;
            }
            match k {
                "node.id" => cfg.node_id = parse_num(k, value)?,
                // Kafka's default, -1, means unset; otherwise it must agree with node.id.
                "broker.id" => {
                    let id: i32 = parse_num(k, value)?;
                    let node_id = props.get("node.id").and_then(|n| n.trim().parse::<i32>().ok());
                    if id >= 0 && node_id.is_some_and(|n| n != id) {
                        return Err(invalid(k, value, "must be the same as node.id"));
                    }
                    if id >= 0 && node_id.is_none() {
                        cfg.node_id = id;
                    }
                }
                "listeners" => cfg.listeners = parse_listeners(k, value)?,
                "advertised.listeners" => cfg.advertised_listeners = parse_listeners(k, value)?,
                "log.dirs" | "log.dir" => {
                    let first = value.split(',').map(str::trim).find(|s| !s.is_empty());
                    cfg.log_dir = PathBuf::from(first.ok_or_else(|| invalid(k, value, "no directory given"))?);
                }
                "num.partitions" => cfg.num_partitions = parse_at_least_one(k, value)?,
                "default.replication.factor" => cfg.default_replication_factor = parse_at_least_one(k, value)?,
                "auto.create.topics.enable" => cfg.auto_create_topics = parse_bool(k, value)?,
                "delete.topic.enable" => cfg.delete_topic_enable = parse_bool(k, value)?,
                "socket.request.max.bytes" => {
                    let v: i32 = parse_num(k, value)?;
                    cfg.socket_request_max_bytes =
                        usize::try_from(v).map_err(|_| invalid(k, value, "must be positive"))?;
                }
                "queued.max.request.bytes" => {
                    let v: i64 = parse_num(k, value)?;
                    queued_max = Some((v, value.as_str()));
                }
                "fetch.max.bytes" => {
                    let v: i32 = parse_num(k, value)?;
                    if v < 1024 {
                        return Err(invalid(k, value, "must be at least 1024"));
                    }
                    cfg.fetch_max_bytes = v as usize;
                }
                "socket.send.buffer.bytes" => cfg.socket_send_buffer_bytes = parse_buffer_size(k, value)?,
                "socket.receive.buffer.bytes" => cfg.socket_receive_buffer_bytes = parse_buffer_size(k, value)?,
                "log.flush.interval.messages" => cfg.flush_interval_messages = parse_at_least_one(k, value)?,
                "log.flush.interval.ms" => cfg.flush_interval_ms = Some(parse_num(k, value)?),
                "log.flush.offset.checkpoint.interval.ms" => cfg.checkpoint_interval_ms = parse_at_least_one(k, value)?,
                "log.retention.check.interval.ms" => cfg.retention_check_interval_ms = parse_at_least_one(k, value)?,
                "log.cleaner.enable" => cfg.cleaner.enable = parse_bool(k, value)?,
                "log.cleaner.threads" => cfg.cleaner.threads = parse_num(k, value)?,
                "log.cleaner.backoff.ms" => cfg.cleaner.backoff_ms = parse_num(k, value)?,
                "log.cleaner.dedupe.buffer.size" => cfg.cleaner.dedupe_buffer_size = parse_num(k, value)?,
                "log.cleaner.io.buffer.load.factor" => cfg.cleaner.load_factor = parse_num(k, value)?,
                "log.cleaner.io.max.bytes.per.second" => cfg.cleaner.io_max_bytes_per_second = parse_num(k, value)?,
                // Kafka: log.roll.ms wins over log.roll.hours.
                "log.roll.ms" => roll_ms = Some(parse_num::<i64>(k, value)?),
                "log.roll.hours" => roll_hours = Some(parse_num::<i64>(k, value)?),
                "group.min.session.timeout.ms" => cfg.groups.min_session_timeout_ms = parse_num(k, value)?,
                "group.max.session.timeout.ms" => cfg.groups.max_session_timeout_ms = parse_num(k, value)?,
                "group.initial.rebalance.delay.ms" => cfg.groups.initial_rebalance_delay_ms = parse_num(k, value)?,
                "group.max.size" => cfg.groups.max_size = parse_at_least_one(k, value)?,
                "offsets.topic.num.partitions" => cfg.groups.offsets_partitions = parse_at_least_one(k, value)?,
                "offsets.topic.replication.factor" => {
                    cfg.groups.offsets_replication_factor = parse_at_least_one(k, value)?
                }
                "offsets.commit.timeout.ms" => cfg.groups.offsets_commit_timeout_ms = parse_at_least_one(k, value)?,
                "offsets.retention.minutes" => {
                    let minutes: i64 = parse_at_least_one(k, value)?;
                    cfg.groups.offsets_retention_ms = minutes.saturating_mul(60_000);
                }
                "offsets.retention.check.interval.ms" => {
                    cfg.groups.offsets_retention_check_interval_ms = parse_at_least_one(k, value)?
                }
                "offset.metadata.max.bytes" => cfg.groups.offset_metadata_max_bytes = parse_num(k, value)?,
                "metrics.listener" => {
                    let v = value.trim();
                    cfg.metrics_listener = if v.is_empty() || v.eq_ignore_ascii_case("none") {
                        None
                    } else {
                        let addr = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
                        let (host, port) = addr
                            .rsplit_once(':')
                            .ok_or_else(|| invalid(k, value, "expected http://host:port or none"))?;
                        let port: u16 = port
                            .parse()
                            .map_err(|_| invalid(k, value, "expected http://host:port or none"))?;
                        let host = if host.is_empty() { "0.0.0.0" } else { host };
                        Some(format!("{host}:{port}"))
                    };
                }
                "log.target" => {
                    cfg.log_stdout = match value.trim() {
                        "stdout" => true,
                        "stderr" => false,
                        _ => return Err(invalid(k, value, "expected stderr or stdout")),
                    }
                }
                "log.format" => {
                    cfg.log_json = match value.trim() {
                        "json" => true,
                        "text" => false,
                        _ => return Err(invalid(k, value, "expected text or json")),
                    }
                }
                "log.slow.request.ms" => cfg.slow_request_ms = parse_num(k, value)?,
                "log.dir.min.free.bytes" => {
                    let v: i64 = parse_num(k, value)?;
                    cfg.min_free_bytes = match v {
                        -1 => None,
                        v if v >= 0 => Some(v as u64),
                        _ => return Err(invalid(k, value, "must be -1 (the default rule) or at least 0")),
                    };
                }
                "transaction.max.timeout.ms" => cfg.txns.max_timeout_ms = parse_at_least_one(k, value)?,
                "transactional.id.expiration.ms" => cfg.txns.id_expiration_ms = parse_at_least_one(k, value)?,
                "producer.id.expiration.ms" => cfg.txns.producer_id_expiration_ms = parse_at_least_one(k, value)?,
                "producer.id.expiration.check.interval.ms" => {
                    cfg.txns.producer_id_expiration_check_interval_ms = parse_at_least_one(k, value)?
                }
                "transaction.state.log.num.partitions" => cfg.txns.state_partitions = parse_at_least_one(k, value)?,
                "transaction.state.log.replication.factor" => {
                    cfg.txns.state_replication_factor = parse_at_least_one(k, value)?
                }
                "transaction.state.log.min.isr" => cfg.txns.state_min_isr = parse_at_least_one(k, value)?,
                "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                    cfg.txns.abort_check_interval_ms = parse_at_least_one(k, value)?
                }
                "group.consumer.session.timeout.ms" => cfg.groups.consumer.session_timeout_ms = parse_num(k, value)?,
                "group.consumer.heartbeat.interval.ms" => {
                    cfg.groups.consumer.heartbeat_interval_ms = parse_num(k, value)?
                }
                "group.consumer.max.size" => cfg.groups.consumer.max_size = parse_num(k, value)?,
                "group.streams.session.timeout.ms" => cfg.groups.streams.session_timeout_ms = parse_num(k, value)?,
                "group.streams.heartbeat.interval.ms" => {
                    cfg.groups.streams.heartbeat_interval_ms = parse_num(k, value)?
                }
                "group.streams.max.size" => cfg.groups.streams.max_size = parse_num(k, value)?,
                "group.streams.num.standby.replicas" => cfg.groups.streams.num_standby_replicas = parse_num(k, value)?,
                "group.streams.initial.rebalance.delay.ms" => {
                    cfg.groups.streams.initial_rebalance_delay_ms = parse_num(k, value)?
                }
                "group.streams.assignment.interval.ms" => {
                    cfg.groups.streams.assignment_interval_ms = parse_num(k, value)?
                }
                "group.streams.task.offset.interval.ms" => {
                    cfg.groups.streams.task_offset_interval_ms = parse_num(k, value)?
                }
                "group.streams.acceptable.recovery.lag" => {
                    cfg.groups.streams.acceptable_recovery_lag = parse_num(k, value)?
                }
                "group.streams.rack.aware.assignment.tags" => {
                    cfg.groups.streams.rack_aware_assignment_tags = value
                        .split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect()
                }
                // Fjord cannot load a Java plugin, and ignoring it would change what describe reports.
                "group.streams.topology.description.plugin.class" if !value.trim().is_empty() => {
                    return Err(invalid(
                        k,
                        value,
                        "Fjord cannot load a topology description plugin (KIP-1331); leave it unset",
                    ))
                }
                "group.consumer.assignors" => {
                    // Kafka lists class names; the last dotted component names the assignor
                    // (`org.apache.kafka.coordinator.group.assignor.UniformAssignor` -> uniform).
                    cfg.groups.consumer.assignors = value
                        .split(',')
                        .map(|a| a.trim())
                        .filter(|a| !a.is_empty())
                        .map(|a| {
                            let short = a.rsplit('.').next().unwrap_or(a);
                            short.strip_suffix("Assignor").unwrap_or(short).to_lowercase()
                        })
                        .collect();
                }
                "controller.listener.names" => {
                    controller_listeners = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if controller_listeners.is_empty() {
                        return Err(invalid(k, value, "no listener name"));
                    }
                }
                "controller.quorum.voters" => cfg.quorum_voters = parse_voters(k, value)?,
                "controller.quorum.bootstrap.servers" => {
                    cfg.quorum_bootstrap_servers = parse_bootstrap_servers(k, value)?
                }
                "broker.heartbeat.interval.ms" => cfg.broker_heartbeat_interval_ms = parse_at_least_one(k, value)?,
                "broker.session.timeout.ms" => cfg.broker_session_timeout_ms = parse_at_least_one(k, value)?,
                "auto.leader.rebalance.enable" => cfg.auto_leader_rebalance = parse_bool(k, value)?,
                "broker.rack" => cfg.rack = Some(value.to_string()).filter(|r| !r.is_empty()),
                "leader.imbalance.check.interval.seconds" => {
                    let seconds: u64 = parse_at_least_one(k, value)?;
                    cfg.leader_imbalance_check_interval_ms = seconds.saturating_mul(1000);
                }
                "process.roles" => cfg.roles = parse_process_roles(k, value)?,
                "inter.broker.listener.name" => {
                    cfg.inter_broker_listener_name = Some(value.trim().to_string()).filter(|n| !n.is_empty())
                }
                "cluster.id" => cfg.cluster_id = Some(parse_cluster_id(k, value)?),
                // Checked against the listeners once they are all read.
                "listener.security.protocol.map" => {}
                "replica.lag.time.max.ms" => cfg.replication.lag_time_max_ms = parse_at_least_one(k, value)?,
                "replica.fetch.wait.max.ms" => cfg.replication.fetch_wait_max_ms = parse_at_least_one(k, value)?,
                "replica.fetch.max.bytes" => cfg.replication.fetch_max_bytes = parse_at_least_one(k, value)?,
                "replica.fetch.response.max.bytes" => {
                    cfg.replication.fetch_response_max_bytes = parse_at_least_one(k, value)?
                }
                "replica.fetch.backoff.ms" => cfg.replication.fetch_backoff_ms = parse_at_least_one(k, value)?,
                _ if RETENTION_KEYS.iter().any(|(rk, _)| *rk == k) => {
                    let (_, scale) = RETENTION_KEYS.iter().find(|(rk, _)| *rk == k).expect("matched above");
                    let v: i64 = parse_num(k, value)?;
                    let ms = if v < 0 { -1 } else { v.saturating_mul(*scale) };
                    // Kafka: log.retention.ms wins over minutes, which wins over hours.
                    let rank = RETENTION_KEYS.iter().position(|(rk, _)| *rk == k).unwrap_or(0);
                    let better = retention.is_none_or(|(_, prev)| {
                        RETENTION_KEYS.iter().position(|(rk, _)| *rk == prev).unwrap_or(0) > rank
                    });
                    if better {
                        retention = Some((ms, k));
                    }
                }
                // Checked above as a broker key, with Kafka's validator for it (the same as its
                // topic key's).
                _ if BROKER_TO_TOPIC.iter().any(|(b, _)| *b == k) => {
                    let (_, topic_key) = BROKER_TO_TOPIC.iter().find(|(b, _)| *b == k).expect("matched above");
                    cfg.topic_defaults
                        .insert((*topic_key).to_string(), value.trim().to_string());
                }
                // Accepting an authorizer and ignoring it would serve every client everything
                // a configuration meant to deny.
                "authorizer.class.name" if !value.trim().is_empty() => {
                    return Err(invalid(
                        k,
                        value,
                        "Fjord has no authorizer yet (ACLs are not implemented); it will not start open to every \
                         client when access control was asked for",
                    ))
                }
                _ if crate::kafka_keys::broker(k).is_some() || LEGACY_KEYS.contains(&k) => {
                    cfg.without_effect.push(k.to_string())
                }
                _ => return Err(ConfigError::UnknownKey(key.clone())),
            }
        }
        cfg.groups
            .consumer
            .validate()
            .map_err(|reason| invalid("group.consumer.*", "", reason))?;
        cfg.groups
            .streams
            .validate()
            .map_err(|reason| invalid("group.streams.*", "", reason))?;
        cfg.queued_max_request_bytes = match queued_max {
            // Kafka: -1 (and any value <= 0) is unbounded; a bound must hold the largest request.
            Some((v, _)) if v <= 0 => None,
            Some((v, raw)) => {
                let v = usize::try_from(v).unwrap_or(usize::MAX);
                if v < cfg.socket_request_max_bytes {
                    return Err(invalid(
                        "queued.max.request.bytes",
                        raw,
                        "must be at least socket.request.max.bytes",
                    ));
                }
                Some(v)
            }
            None => Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES.max(cfg.socket_request_max_bytes)),
        };
        if let Some((ms, _)) = retention {
            cfg.topic_defaults.insert("retention.ms".into(), ms.to_string());
        }
        if let Some(ms) = roll_ms.or(roll_hours.map(|h| h.saturating_mul(3_600_000))) {
            cfg.topic_defaults.insert("segment.ms".into(), ms.to_string());
        }
        // As the apache/kafka image does: without `listeners`, listen on every address at the
        // ports of `advertised.listeners` (a compose file often sets only those).
        if !props.contains_key("listeners") && !cfg.advertised_listeners.is_empty() {
            cfg.listeners = cfg
                .advertised_listeners
                .iter()
                .map(|a| Listener {
                    name: a.name.clone(),
                    host: "0.0.0.0".into(),
                    port: a.port,
                })
                .collect();
        }
        check_security_protocols(&cfg, props.get("listener.security.protocol.map"), &controller_listeners)?;
        cfg.check_roles(&props, &controller_listeners)?;
        if cfg.advertised_listeners.is_empty() && cfg.roles.broker {
            cfg.advertised_listeners = cfg
                .listeners
                .iter()
                .map(|l| Listener {
                    name: l.name.clone(),
                    host: default_advertised_host(&l.host).to_string(),
                    port: l.port,
                })
                .collect();
        }
        Ok(cfg)
    }

    /// Splits the controller listener from the client listeners and checks them, the voters
    /// and `process.roles` against each other as Kafka's `KafkaConfig` does.
    fn check_roles(
        &mut self,
        props: &BTreeMap<String, String>,
        controller_names: &[String],
    ) -> Result<(), ConfigError> {
        let given = |key: &str| props.get(key).map(String::as_str).unwrap_or("").to_string();
        let roles = self.roles;
        // A KRaft deployment lists its controller listener among `listeners`; it carries the
        // controller quorum's traffic, not clients'.
        self.controller_listener_name = controller_names[0].clone();
        self.controller_listener = self.listeners.iter().find(|l| l.name == controller_names[0]).cloned();
        self.controller_advertised = self
            .advertised_listeners
            .iter()
            .find(|l| l.name == controller_names[0])
            .cloned();
        self.listeners.retain(|l| !controller_names.contains(&l.name));
        self.advertised_listeners
            .retain(|l| !controller_names.contains(&l.name));
        if !roles.controller {
            // Kafka's rules for a broker-only node: it finds the controllers through the voters
            // or the bootstrap servers, is not a voter itself, and has no controller listener.
            if self.quorum_voters.is_empty() && self.quorum_bootstrap_servers.is_empty() {
                return Err(invalid(
                    "process.roles",
                    &given("process.roles"),
                    "a broker-only node needs controller.quorum.voters or controller.quorum.bootstrap.servers \
                     to find the controllers",
                ));
            }
            if self.quorum_voters.contains_key(&self.node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    &given("controller.quorum.voters"),
                    format!(
                        "names this node (node.id={}), which process.roles=broker makes a broker only",
                        self.node_id
                    ),
                ));
            }
            if self.controller_listener.is_some() {
                return Err(invalid(
                    "listeners",
                    &given("listeners"),
                    format!(
                        "a broker-only node has no controller listener, but {}:// is among its listeners",
                        controller_names[0]
                    ),
                ));
            }
        } else {
            if !self.quorum_voters.is_empty() && !self.quorum_voters.contains_key(&self.node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    &given("controller.quorum.voters"),
                    format!(
                        "does not name this node (node.id={}), which process.roles makes a controller",
                        self.node_id
                    ),
                ));
            }
            // Other voters, brokers apart from the controllers, or a quorum to join
            // (controller.quorum.bootstrap.servers): the others reach this node on its
            // controller listener.
            if self.is_cluster() && self.controller_listener.is_none() {
                return Err(invalid(
                    "listeners",
                    &given("listeners"),
                    format!(
                        "a node of a controller quorum needs the controller listener {}:// among its listeners",
                        controller_names[0]
                    ),
                ));
            }
        }
        if roles.broker && self.listeners.is_empty() {
            return Err(invalid("listeners", &given("listeners"), "no client listener"));
        }
        if let Some(name) = self.inter_broker_listener_name.as_ref().filter(|_| roles.broker) {
            // Kafka's checks, with its wording.
            if controller_names.contains(name) {
                return Err(invalid(
                    "inter.broker.listener.name",
                    name,
                    "the listeners named in controller.listener.names must not be used for inter-broker traffic",
                ));
            }
            // Advertised listeners not given yet default to the listeners.
            let named = if self.advertised_listeners.is_empty() {
                &self.listeners
            } else {
                &self.advertised_listeners
            };
            if !named.iter().any(|a| &a.name == name) {
                let valid: Vec<&str> = named.iter().map(|a| a.name.as_str()).collect();
                return Err(invalid(
                    "inter.broker.listener.name",
                    name,
                    format!(
                        "must be a listener name defined in advertised.listeners; the valid options based on the \
                         configured listeners are {}",
                        valid.join(",")
                    ),
                ));
            }
        }
        if !roles.broker && !self.listeners.is_empty() {
            return Err(invalid(
                "listeners",
                &given("listeners"),
                format!(
                    "a controller-only node (process.roles=controller) serves no clients: its listeners must \
                     all be named in controller.listener.names ({})",
                    controller_names.join(",")
                ),
            ));
        }
        Ok(())
    }

    /// `log.segment.bytes` (default 1 GiB): the size at which a partition's segment file rolls.
    pub fn segment_bytes(&self) -> u64 {
        self.topic_defaults
            .get("segment.bytes")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(fjord_storage::DEFAULT_SEGMENT_BYTES)
    }

    /// Reads `fjord [server.properties] [--override key=value]...` plus the environment.
    pub fn from_args_and_env(
        args: impl IntoIterator<Item = String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut props = BTreeMap::new();
        // Which variable each environment-sourced key came from, while no file or override
        // has replaced it.
        let mut from_env: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in env {
            // The apache/kafka image formats its storage with CLUSTER_ID.
            let key = if name == "CLUSTER_ID" {
                Some("cluster.id".to_string())
            } else {
                env_to_key(&name)
            };
            if let Some(key) = key {
                from_env.insert(key.clone(), name);
                props.insert(key, value);
            }
        }
        let mut args = args.into_iter().peekable();
        let mut overrides = Vec::new();
        let mut file = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--override" => {
                    let kv = args
                        .next()
                        .ok_or_else(|| ConfigError::Usage("--override needs key=value".into()))?;
                    overrides.push(kv);
                }
                "-h" | "--help" => return Err(ConfigError::Usage(USAGE.into())),
                s if s.starts_with("--override=") => overrides.push(s["--override=".len()..].to_string()),
                s if s.starts_with('-') => return Err(ConfigError::Usage(format!("unknown option {s}\n{USAGE}"))),
                _ if file.is_none() => file = Some(arg),
                _ => return Err(ConfigError::Usage(format!("unexpected argument {arg}\n{USAGE}"))),
            }
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: path.clone(),
                error: e.to_string(),
            })?;
            for (k, v) in parse_properties(&text) {
                from_env.remove(&k);
                props.insert(k, v);
            }
        }
        for kv in overrides {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ConfigError::Usage(format!("--override {kv}: expected key=value")))?;
            from_env.remove(k.trim());
            props.insert(k.trim().to_string(), v.to_string());
        }
        // An unknown key from a file or an override is a typo to stop on; from the
        // environment it is a variable meant for something else.
        let mut ignored = Vec::new();
        loop {
            match Config::from_properties(props.clone()) {
                Err(ConfigError::UnknownKey(key)) if from_env.contains_key(&key) => {
                    props.remove(&key);
                    let name = from_env.remove(&key).unwrap_or_default();
                    ignored.push((name, key));
                }
                Ok(mut cfg) => {
                    cfg.ignored_env = ignored;
                    return Ok(cfg);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The keys given that Fjord accepts and does not act on: Kafka broker keys with no
    /// meaning in Fjord (yet), and [`LEGACY_KEYS`].
    pub fn without_effect(&self) -> impl Iterator<Item = &str> {
        self.without_effect.iter().map(String::as_str)
    }
}

/// Command-line help.
pub const USAGE: &str = "usage: fjord [server.properties] [--override key=value]...";

/// `KAFKA_LOG_DIRS` -> `log.dirs`, the apache/kafka image convention: strip `KAFKA_`, lower
/// case, `_` -> `.`, `__` -> `_`, `___` -> `-`; the bitnami images' `KAFKA_CFG_LOG_DIRS` too.
/// The variables the images and Kafka's scripts hand to the JVM or read themselves are not
/// properties.
pub fn env_to_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("KAFKA_")?;
    let rest = rest.strip_prefix("CFG_").unwrap_or(rest);
    const NOT_PROPERTIES: &[&str] = &[
        "HOME",
        "HEAP_OPTS",
        "JVM_PERFORMANCE_OPTS",
        "OPTS",
        "LOG4J_OPTS",
        "JMX_OPTS",
        "JMX_PORT",
        "JMX_HOSTNAME",
        "DEBUG",
        "DEBUG_SUSPEND_FLAG",
        "GC_LOG_OPTS",
        "VERSION",
        "TOOLS_LOG4J_LOGLEVEL",
        "KRAFT_CLUSTER_ID",
    ];
    if rest.is_empty() || NOT_PROPERTIES.contains(&rest) || rest.starts_with("LOG4J_") {
        return None;
    }
    let key = rest
        .to_ascii_lowercase()
        .replace("___", "-")
        .replace("__", "\u{0}")
        .replace('_', ".")
        .replace('\u{0}', "_");
    Some(key)
}

/// Java properties format, the subset server.properties files use: `key=value` or
/// `key: value`, `#`/`!` comments, blank lines, trailing-backslash continuations.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        let split = entry.find(['=', ':']).unwrap_or(entry.len());
        let key = entry[..split].trim().to_string();
        let value = entry.get(split + 1..).unwrap_or("").trim().to_string();
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(
            c.listeners,
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: "0.0.0.0".into(),
                port: 9092
            }]
        );
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(c.log_dir, PathBuf::from("./fjord-data"));
        assert_eq!(c.topic_defaults["max.message.bytes"], "1048588");
        assert_eq!(c.topic_defaults["retention.ms"], "604800000");
        assert_eq!(c.fetch_max_bytes, 57_671_680);
        assert_eq!(c.segment_bytes(), 1 << 30);
        // As Kafka's shipped config/server.properties and Docker image, not its built-in 3000:
        // a consumer joining a fresh broker is not held 3 s (README, configuration table).
        assert_eq!(c.groups.initial_rebalance_delay_ms, 0);
    }

    #[test]
    fn unknown_and_malformed_keys_name_the_key() {
        let e = Config::from_properties(props(&[("no.such.key", "1")])).expect_err("unknown");
        assert!(e.to_string().contains("no.such.key"));
        let e = Config::from_properties(props(&[("num.partitions", "abc")])).expect_err("bad");
        assert!(e.to_string().contains("num.partitions"));
        let e = Config::from_properties(props(&[("compression.type", "brotli")])).expect_err("bad codec");
        assert!(e.to_string().contains("compression.type"));
        let e = Config::from_properties(props(&[("fetch.max.bytes", "1023")])).expect_err("below Kafka's minimum");
        assert!(e.to_string().contains("fetch.max.bytes"));
        let c = Config::from_properties(props(&[
            ("fetch.max.bytes", "1048576"),
            ("log.segment.bytes", "2097152"),
        ]))
        .expect("valid");
        assert_eq!((c.fetch_max_bytes, c.segment_bytes()), (1 << 20, 2 << 20));
    }

    #[test]
    fn socket_buffer_sizes_take_minus_one_for_the_os_default() {
        let c = Config::default();
        assert_eq!(
            (c.socket_send_buffer_bytes, c.socket_receive_buffer_bytes),
            (Some(256 << 10), None)
        );
        let c = Config::from_properties(props(&[
            ("socket.send.buffer.bytes", "-1"),
            ("socket.receive.buffer.bytes", "102400"),
        ]))
        .expect("valid");
        assert_eq!(
            (c.socket_send_buffer_bytes, c.socket_receive_buffer_bytes),
            (None, Some(102_400))
        );
        for bad in ["0", "-2", "1e6"] {
            let e = Config::from_properties(props(&[("socket.send.buffer.bytes", bad)])).expect_err(bad);
            assert!(e.to_string().contains("socket.send.buffer.bytes"), "{e}");
        }
    }

    #[test]
    fn unknown_variables_of_the_environment_are_ignored_but_unknown_keys_elsewhere_stop() {
        assert_eq!(env_to_key("KAFKA_JMX_PORT"), None);
        assert_eq!(env_to_key("KAFKA_VERSION"), None);
        assert_eq!(env_to_key("KAFKA_CFG_LOG_DIRS").as_deref(), Some("log.dirs"));
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let c = Config::from_args_and_env(
            Vec::<String>::new(),
            env(&[
                ("KAFKA_CONFLUENT_SUPPORT_CUSTOMER_ID", "anonymous"),
                ("KAFKA_JMX_PORT", "9101"),
                ("KAFKA_CFG_NUM_PARTITIONS", "3"),
                ("KAFKA_NODE_ID", "2"),
            ]),
        )
        .expect("the unknown variable is ignored");
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.node_id, 2);
        assert_eq!(
            c.ignored_env,
            vec![(
                "KAFKA_CONFLUENT_SUPPORT_CUSTOMER_ID".to_string(),
                "confluent.support.customer.id".to_string()
            )]
        );
        // A bad value from the environment still stops the broker; so does an unknown key
        // from an override, even when the environment has it too.
        let bad = Config::from_args_and_env(Vec::<String>::new(), env(&[("KAFKA_NUM_PARTITIONS", "many")]));
        assert!(matches!(bad, Err(ConfigError::Invalid { key, .. }) if key == "num.partitions"));
        let typo = Config::from_args_and_env(
            vec!["--override".to_string(), "num.partitons=3".to_string()],
            env(&[("KAFKA_NUM_PARTITONS", "3")]),
        );
        assert!(matches!(typo, Err(ConfigError::UnknownKey(k)) if k == "num.partitons"));
        let quiet = Config::from_properties(props(&[("zookeeper.connect", "zk:2181"), ("num.partitions", "2")]))
            .expect("valid");
        assert_eq!(quiet.without_effect().collect::<Vec<_>>(), vec!["zookeeper.connect"]);
    }

    #[test]
    fn cluster_id_is_a_kafka_uuid_from_the_file_or_cluster_id_in_the_environment() {
        let id = "MkU3OEVBNTcwNTJENDM2Qg";
        let c = Config::from_args_and_env(Vec::<String>::new(), vec![("CLUSTER_ID".to_string(), id.to_string())])
            .expect("valid");
        assert_eq!(c.cluster_id.as_deref(), Some(id));
        assert_eq!(c.without_effect().count(), 0, "cluster.id has an effect now");
        for bad in ["", "short", "MkU3OEVBNTcwNTJENDM2Q!", "MkU3OEVBNTcwNTJENDM2QgXX"] {
            match Config::from_properties(props(&[("cluster.id", bad)])) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "cluster.id"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn every_listener_needs_a_security_protocol_and_only_plaintext_is_served() {
        // The classic compose setup: an internal and an external listener.
        let c = Config::from_properties(props(&[
            ("listeners", "PLAINTEXT://0.0.0.0:29092,PLAINTEXT_HOST://0.0.0.0:9092"),
            (
                "advertised.listeners",
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://localhost:9092",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
        ]))
        .expect("valid");
        assert_eq!(c.listeners.len(), 2);
        let refused = |pairs: &[(&str, &str)], key: &str, why: &str| match Config::from_properties(props(pairs)) {
            Err(ConfigError::Invalid { key: k, reason, .. }) => {
                assert_eq!(k, key, "{pairs:?}");
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{pairs:?} gave {other:?}"),
        };
        refused(
            &[("listeners", "PLAINTEXT://:29092,PLAINTEXT_HOST://:9092")],
            "listener.security.protocol.map",
            "no security protocol defined for listener PLAINTEXT_HOST",
        );
        refused(&[("listeners", "SSL://:9093")], "listeners", "security protocol SSL");
        refused(
            &[
                ("listeners", "EXTERNAL://:9093"),
                ("listener.security.protocol.map", "EXTERNAL:SASL_SSL"),
            ],
            "listeners",
            "security protocol SASL_SSL",
        );
        refused(
            &[("listener.security.protocol.map", "PLAINTEXT:TLS")],
            "listener.security.protocol.map",
            "unknown security protocol",
        );
        // Without `listeners`, the advertised listeners' ports on every address.
        let derived = Config::from_properties(props(&[
            (
                "advertised.listeners",
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://localhost:9092",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
            ),
        ]))
        .expect("valid");
        let bound: Vec<(String, String, u16)> = derived
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.host.clone(), l.port))
            .collect();
        assert_eq!(
            bound,
            vec![
                ("PLAINTEXT".to_string(), "0.0.0.0".to_string(), 29092),
                ("PLAINTEXT_HOST".to_string(), "0.0.0.0".to_string(), 9092)
            ]
        );
        // Without a map, the controller listener is PLAINTEXT, as in Kafka.
        Config::from_properties(props(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("controller.quorum.voters", "1@localhost:9093"),
        ]))
        .expect("valid");
    }

    #[test]
    fn env_file_and_overrides_layer() {
        assert_eq!(
            env_to_key("KAFKA_ADVERTISED_LISTENERS").as_deref(),
            Some("advertised.listeners")
        );
        assert_eq!(env_to_key("KAFKA_LOG_DIRS").as_deref(), Some("log.dirs"));
        assert_eq!(env_to_key("KAFKA_HEAP_OPTS"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("server.properties");
        std::fs::write(
            &file,
            "# comment\nnum.partitions=4\nlog.retention.hours = 1\nmessage.max.bytes: 2000000\n",
        )
        .expect("write");
        let args = vec![
            file.display().to_string(),
            "--override".into(),
            "num.partitions=6".into(),
        ];
        let env = vec![
            ("KAFKA_NUM_PARTITIONS".to_string(), "5".to_string()),
            ("KAFKA_NODE_ID".into(), "3".into()),
        ];
        let c = Config::from_args_and_env(args, env).expect("valid");
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.node_id, 3);
        assert_eq!(c.topic_defaults["retention.ms"], "3600000");
        assert_eq!(c.topic_defaults["max.message.bytes"], "2000000");
    }

    #[test]
    fn kraft_controller_listener_is_not_a_client_listener() {
        let c = Config::from_properties(props(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("process.roles", "broker,controller"),
            ("node.id", "1"),
            ("controller.quorum.voters", "1@localhost:9093"),
        ]))
        .expect("valid");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(c.controller_listener.as_ref().map(|l| l.port), Some(9093));
        assert_eq!(c.quorum_voters, BTreeMap::from([(1, "localhost:9093".to_string())]));
    }

    #[test]
    fn bootstrap_servers_make_a_joining_node() {
        let c = Config::from_properties(props(&[
            ("node.id", "4"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.bootstrap.servers", "h1:9093, h2:9093"),
        ]))
        .expect("valid");
        assert_eq!(
            c.quorum_bootstrap_servers,
            vec!["h1:9093".to_string(), "h2:9093".to_string()]
        );
        assert!(c.is_cluster());
        let refused = |p: &[(&str, &str)], key: &str| {
            let e = Config::from_properties(props(p)).expect_err("refused");
            assert!(e.to_string().contains(key), "{e}");
        };
        refused(
            &[("controller.quorum.bootstrap.servers", "h1")],
            "controller.quorum.bootstrap.servers",
        );
        refused(&[("controller.quorum.bootstrap.servers", "h1:9093")], "listeners");
    }

    #[test]
    fn quorum_voters_are_checked() {
        let three = "1@n1:9093, 2@n2:9093,3@[::1]:9094";
        let c = Config::from_properties(props(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("node.id", "2"),
            ("controller.quorum.voters", three),
        ]))
        .expect("valid");
        assert_eq!(c.quorum_voters.len(), 3);
        assert_eq!(c.quorum_voters[&3], "[::1]:9094");
        let refused = |pairs: &[(&str, &str)], key: &str| match Config::from_properties(props(pairs)) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{pairs:?}"),
            other => panic!("{pairs:?} gave {other:?}"),
        };
        for bad in [
            "1@n1",
            "x@n1:9093",
            "1@n1:9093,1@n2:9093",
            "-1@n1:9093",
            "1n1:9093",
            "1@:9093",
        ] {
            refused(&[("controller.quorum.voters", bad)], "controller.quorum.voters");
        }
        // This node must be a voter, and with peers it needs the controller listener.
        refused(
            &[
                ("node.id", "4"),
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("controller.quorum.voters", three),
            ],
            "controller.quorum.voters",
        );
        refused(&[("node.id", "1"), ("controller.quorum.voters", three)], "listeners");
        refused(&[("process.roles", "broker")], "process.roles");
        refused(&[("process.roles", "broker,controller,other")], "process.roles");
        refused(&[("process.roles", "broker,broker")], "process.roles");
        refused(&[("process.roles", "")], "process.roles");
    }

    #[test]
    fn dedicated_roles_follow_kafkas_rules() {
        let voters = "1@c1:9093,2@c2:9093,3@c3:9093";
        let broker = Config::from_properties(props(&[
            ("process.roles", "broker"),
            ("node.id", "4"),
            ("listeners", "PLAINTEXT://:9092"),
            ("controller.listener.names", "CONTROLLER"),
            ("controller.quorum.voters", voters),
        ]))
        .expect("valid broker");
        assert_eq!(broker.roles, fjord_controller::Roles::BROKER);
        assert!(broker.is_cluster());
        assert!(broker.controller_listener.is_none());
        let controller = Config::from_properties(props(&[
            ("process.roles", "controller"),
            ("node.id", "1"),
            ("listeners", "CONTROLLER://:9093"),
            ("advertised.listeners", "CONTROLLER://c1:9093"),
            ("controller.quorum.voters", "1@c1:9093"),
        ]))
        .expect("valid controller");
        assert_eq!(controller.roles, fjord_controller::Roles::CONTROLLER);
        assert!(controller.is_cluster(), "a lone controller has brokers elsewhere");
        assert!(controller.listeners.is_empty() && controller.advertised_listeners.is_empty());
        assert_eq!(controller.controller_endpoint("ignored").as_deref(), Some("c1:9093"));
        let refused = |pairs: &[(&str, &str)], key: &str| match Config::from_properties(props(pairs)) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{pairs:?}"),
            other => panic!("{pairs:?} gave {other:?}"),
        };
        // A broker-only node: not a voter, no controller listener, and a quorum to find.
        refused(
            &[
                ("process.roles", "broker"),
                ("node.id", "1"),
                ("controller.quorum.voters", voters),
            ],
            "controller.quorum.voters",
        );
        refused(
            &[
                ("process.roles", "broker"),
                ("node.id", "4"),
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("controller.quorum.voters", voters),
            ],
            "listeners",
        );
        refused(&[("process.roles", "broker"), ("node.id", "4")], "process.roles");
        // A controller-only node: a voter, with its controller listener and no client one.
        refused(
            &[
                ("process.roles", "controller"),
                ("node.id", "1"),
                ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("controller.quorum.voters", voters),
            ],
            "listeners",
        );
        refused(
            &[
                ("process.roles", "controller"),
                ("node.id", "1"),
                ("controller.quorum.voters", voters),
            ],
            "listeners",
        );
        refused(
            &[
                ("process.roles", "controller"),
                ("node.id", "4"),
                ("listeners", "CONTROLLER://:9093"),
                ("controller.quorum.voters", voters),
            ],
            "controller.quorum.voters",
        );
    }

    #[test]
    fn every_kafka_broker_key_is_accepted_with_its_default() {
        use crate::kafka_keys::{all, Scope};
        // Defaults that do not stand alone: a broker-only role needs voters, a node id outside
        // the voters, and so on; each is covered by its own tests.
        const NEEDS_MORE: &[&str] = &["process.roles", "node.id", "controller.listener.names"];
        let mut refused = Vec::new();
        for key in all(Scope::Broker).filter(|k| !NEEDS_MORE.contains(&k.name)) {
            let Some(default) = &key.default else { continue };
            if let Err(e) = Config::from_properties(props(&[(key.name, default)])) {
                refused.push(format!("{}={default}: {e}", key.name));
            }
        }
        assert!(refused.is_empty(), "Kafka's defaults refused:\n{}", refused.join("\n"));
        let cfg = Config::from_properties(props(&[("num.io.threads", "16"), ("zookeeper.connect", "zk:2181")]))
            .expect("accepted");
        assert_eq!(
            cfg.without_effect().collect::<Vec<_>>(),
            ["num.io.threads", "zookeeper.connect"]
        );
    }

    #[test]
    fn an_authorizer_is_refused_rather_than_ignored() {
        let cfg = |v: &str| Config::from_properties(props(&[("authorizer.class.name", v)]));
        assert!(cfg("").is_ok(), "Kafka's default, no authorizer");
        assert!(matches!(
            cfg("org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
            Err(ConfigError::Invalid { key, .. }) if key == "authorizer.class.name"
        ));
    }

    #[test]
    fn broker_id_minus_one_is_unset_and_another_must_match_node_id() {
        let id = |kv: &[(&str, &str)]| Config::from_properties(props(kv)).map(|c| c.node_id);
        assert_eq!(id(&[("node.id", "3"), ("broker.id", "-1")]).ok(), Some(3));
        assert_eq!(id(&[("broker.id", "2")]).ok(), Some(2));
        assert_eq!(id(&[("node.id", "3"), ("broker.id", "3")]).ok(), Some(3));
        assert!(matches!(
            id(&[("node.id", "3"), ("broker.id", "2")]),
            Err(ConfigError::Invalid { key, .. }) if key == "broker.id"
        ));
    }

    #[test]
    fn values_kafka_refuses_stop_the_broker_naming_the_key() {
        for (k, v) in [
            ("num.io.threads", "0"),
            ("log.cleaner.enable", "maybe"),
            ("log.cleaner.min.cleanable.ratio", "2"),
            ("sasl.enabled.mechanisms", "PLAIN,PLAIN"),
        ] {
            match Config::from_properties(props(&[(k, v)])) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }

    #[test]
    fn broker_defaults_of_topic_configs_follow_kafkas_synonyms() {
        for (broker_key, topic_key) in BROKER_TO_TOPIC {
            // Its value is checked as a Kafka broker key, before the defaults take it.
            assert!(crate::kafka_keys::broker(broker_key).is_some(), "{broker_key}");
            let synonyms = &crate::kafka_keys::topic(topic_key).expect(topic_key).synonyms;
            assert!(
                synonyms.contains(&(broker_key, 1)),
                "{broker_key} is not a synonym of {topic_key}: {synonyms:?}"
            );
        }
        let retention = &crate::kafka_keys::topic("retention.ms").expect("retention.ms").synonyms;
        assert_eq!(retention.as_slice(), RETENTION_KEYS);
    }
}
