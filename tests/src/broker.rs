//! The `fjord` process under test.
//!
//! The command line mirrors `kafka-server-start.sh`:
//! `fjord [server.properties] [--override key=value]...`. Each [`Broker`]
//! owns a temporary directory holding its `log.dirs`, its optional
//! `server.properties`, and the captured stdout and stderr, which are
//! printed when a test panics.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::Client;

/// How long a broker may take from spawn to answering ApiVersions.
/// `$FJORD_READY_TIMEOUT_MS` raises it for slow stand-ins (a JVM Kafka
/// behind `compat-tests/reference/kafka-as-fjord` on a busy 2-core machine).
pub const READY_TIMEOUT_MS: u64 = 15_000;

fn ready_timeout() -> Duration {
    let ms = std::env::var("FJORD_READY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(READY_TIMEOUT_MS);
    Duration::from_millis(ms)
}

/// Pause between readiness probes: short, so a ready broker is found quickly.
pub const READY_POLL_MS: u64 = 25;

/// How long a SIGTERM'd broker may take to exit ("within a few seconds").
pub const TERMINATE_TIMEOUT_MS: u64 = 10_000;

/// How much of the end of a log file to print on failure.
pub const LOG_TAIL_BYTES: u64 = 64 << 10; // 64 KiB

/// How many times a fresh start retries on a new port when the one picked
/// was taken between probing and the broker's bind (tests run in parallel).
const PORT_RETRIES: u32 = 3;

/// Where the `fjord` binary is: `$FJORD_BIN`, else `fjord` next to the
/// directory holding this test executable (`target/<profile>/deps/<test>-<hash>`
/// → `target/<profile>/fjord`).
pub fn fjord_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FJORD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("test executable lives in target/<profile>/deps");
    let profile = deps.parent().expect("deps lives in target/<profile>");
    profile.join("fjord")
}

fn checked_bin() -> PathBuf {
    let bin = fjord_bin();
    assert!(
        bin.is_file(),
        "fjord binary not found at {} (build it with `cargo build --release -p fjord-broker`, or set FJORD_BIN)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago. Another process may take it before the
/// broker binds; [`Broker::start_with`] retries in that case.
///
/// Ports come from a block below the kernel's ephemeral range (32768+), chosen
/// by process id and handed out in turn, not by binding port 0: the kernel can
/// give two successive port-0 binds the same port (a cluster test then got one
/// port for two listeners), and a client's outgoing connection can take an
/// ephemeral port between this probe and the broker's bind. The compat tests
/// use 20000 and up.
pub fn free_port() -> u16 {
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 10_000;
    const SPAN: u32 = 10_000;
    let offset = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = CURSOR.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {BASE}..{}", BASE + SPAN)
}

/// How to start a broker beyond the basics every test needs (node id,
/// listener, `log.dirs`, which the harness always passes).
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// `--override key=value` pairs, after the harness's own.
    pub overrides: Vec<(String, String)>,
    /// Extra environment for the process (e.g. `KAFKA_NUM_PARTITIONS`).
    pub env: Vec<(String, String)>,
    /// If set, written to `server.properties` in the temp dir and passed as
    /// the first argument.
    pub properties: Option<String>,
}

impl BrokerOptions {
    /// Options with just these overrides.
    pub fn with_overrides(overrides: &[(&str, &str)]) -> Self {
        Self {
            overrides: overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Self::default()
        }
    }
}

/// How a process that was expected to exit by itself ended.
#[derive(Debug)]
pub struct ExitReport {
    /// Its exit status; None if it had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Everything it wrote to stdout.
    pub stdout: String,
}

/// A running (or stopped) `fjord` process with its own data directory and port.
pub struct Broker {
    /// Holds `data/`, the logs and `server.properties`; deleted on drop.
    dir: TempDir,
    /// The port in `listeners`; kept across restarts so clients reconnect to
    /// the same address, as after a real broker restart.
    port: u16,
    /// What it was started with, reused by [`Broker::restart`].
    opts: BrokerOptions,
    /// The process; None once killed or terminated.
    child: Option<Child>,
    /// How many times it has been spawned, for the log separators.
    starts: u32,
}

impl Broker {
    /// Start a broker with these `--override`s and wait until it answers.
    pub fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_with(BrokerOptions::with_overrides(overrides))
    }

    /// Start a broker with `opts` and wait until it answers ApiVersions.
    pub fn start_with(opts: BrokerOptions) -> Self {
        let mut broker = Self::unstarted(opts, free_port());
        for attempt in 1..=PORT_RETRIES {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(e) if attempt < PORT_RETRIES && e.contains("in use") => {
                    broker.port = free_port();
                }
                Err(e) => panic!("{e}\n{}", broker.logs()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Spawn a broker on `port` without waiting for it: the nodes of a controller quorum are
    /// ready only once a majority of them runs, so a cluster starts them all, then waits on
    /// each with [`Broker::await_ready`].
    pub fn launch(opts: BrokerOptions, port: u16) -> Self {
        let mut broker = Self::unstarted(opts, port);
        if let Err(e) = broker.spawn() {
            panic!("{e}\n{}", broker.logs());
        }
        broker
    }

    /// Wait until a [`Broker::launch`]ed broker answers ApiVersions; panics with its logs if it
    /// exits or is not ready in time.
    pub fn await_ready(&mut self) {
        if let Err(e) = self.wait_ready() {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// Start the process again on the same port, data directory and options (killing it first
    /// if it still runs), without waiting for it to be ready.
    pub fn relaunch(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("relaunch failed: {e}\n{}", self.logs());
        }
    }

    /// A broker with a fresh temp dir, not yet spawned.
    fn unstarted(opts: BrokerOptions, port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fjord-test-")
            .tempdir()
            .expect("creating a temp dir");
        Self {
            dir,
            port,
            opts,
            child: None,
            starts: 0,
        }
    }

    /// `127.0.0.1:<port>`, the address to connect to.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `log.dirs` directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new connection to this broker.
    pub fn client(&self) -> Client {
        Client::connect(self.bootstrap())
            .unwrap_or_else(|e| panic!("connecting to {}: {e}\n{}", self.bootstrap(), self.logs()))
    }

    /// The process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (has not exited).
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Panic with the logs unless the process is still running.
    pub fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("fjord exited unexpectedly with {status}\n{}", self.logs());
            }
        } else {
            panic!("fjord is not running (killed or terminated earlier)");
        }
    }

    /// SIGSTOP the process: it keeps its sockets but answers nothing, as a node stuck in a long
    /// GC pause or a frozen VM does. [`Broker::resume`] continues it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT a [`Broker::pause`]d process.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("signalling a broker that is not running");
        // `kill` rather than libc: the workspace forbids unsafe code.
        let sent = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill {sig} {pid} failed: {sent}");
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An already-exited child makes kill() fail; wait() still reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the process and wait for it to exit; panics (after a SIGKILL)
    /// if it takes longer than [`TERMINATE_TIMEOUT_MS`].
    pub fn terminate(&mut self) -> ExitStatus {
        let timeout = Duration::from_millis(TERMINATE_TIMEOUT_MS);
        match self.terminate_within(timeout) {
            Some(status) => status,
            None => panic!(
                "fjord did not exit within {timeout:?} of SIGTERM (killed it)\n{}",
                self.logs()
            ),
        }
    }

    /// SIGTERM and wait up to `timeout`; None if it had to be SIGKILLed.
    pub fn terminate_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("terminate() on a broker that is not running");
        // `kill -TERM` rather than libc: the workspace forbids unsafe code.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", child.id());
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Wait up to `timeout` for the process to exit by itself; its status, or None if it is
    /// still running then (it is left running).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Start the process again on the same port, data directory and options,
    /// killing it first if it is still running.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            panic!("restart failed: {e}\n{}", self.logs());
        }
    }

    /// The arguments every start gets, then the test's own.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.opts.properties.is_some() {
            args.push(self.properties_path().display().to_string());
        }
        let listener = format!("PLAINTEXT://127.0.0.1:{}", self.port);
        let base = [
            ("node.id", "1".to_string()),
            ("listeners", listener.clone()),
            ("advertised.listeners", listener),
            ("log.dirs", self.data_dir().display().to_string()),
            // The HTTP listener's default port would collide between parallel tests; a test
            // that wants it overrides this.
            ("metrics.listener", "none".to_string()),
        ];
        for (k, v) in base.iter() {
            args.push("--override".into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in &self.opts.overrides {
            args.push("--override".into());
            args.push(format!("{k}={v}"));
        }
        args
    }

    fn properties_path(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("fjord.stderr.log")
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("fjord.stdout.log")
    }

    /// Spawn the process and poll until ApiVersions answers; Err with a
    /// description (the caller adds the logs).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn()?;
        self.wait_ready()
    }

    /// Spawn the process with its logs appended to the captured files.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "spawning over a running child");
        if let Some(props) = &self.opts.properties {
            fs::write(self.properties_path(), props).expect("writing server.properties");
        }
        self.starts += 1;
        let banner = format!("\n===== fjord start #{} on port {} =====\n", self.starts, self.port);
        let stderr = open_append(&self.stderr_path(), &banner);
        let stdout = open_append(&self.stdout_path(), &banner);
        let mut cmd = base_command(&checked_bin(), &self.opts.env);
        cmd.args(self.args()).stdout(stdout).stderr(stderr);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", fjord_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let timeout = ready_timeout();
        let mut last_err;
        loop {
            let child = self.child.as_mut().expect("spawned above");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let stderr = read_tail(&self.stderr_path());
                let hint = if stderr.to_lowercase().contains("in use") {
                    " (address in use)"
                } else {
                    ""
                };
                return Err(format!("fjord exited during startup with {status}{hint}"));
            }
            match probe(&self.bootstrap()) {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
            if started.elapsed() > timeout {
                self.kill();
                return Err(format!(
                    "fjord not ready after {timeout:?} on {}: last probe error: {last_err}",
                    self.bootstrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(READY_POLL_MS));
        }
    }

    /// The tails of the captured stderr and stdout, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "----- fjord stderr ({}) -----\n{}\n----- fjord stdout -----\n{}\n----- end -----",
            self.stderr_path().display(),
            read_tail(&self.stderr_path()),
            read_tail(&self.stdout_path())
        )
    }

    /// Run `fjord` with the harness's base arguments plus `opts`, expecting
    /// it to exit by itself within `timeout` (e.g. on a bad config).
    pub fn run_until_exit(opts: BrokerOptions, timeout: Duration) -> ExitReport {
        let dir = tempfile::Builder::new()
            .prefix("fjord-test-")
            .tempdir()
            .expect("creating a temp dir");
        let shell = Self {
            dir,
            port: free_port(),
            opts,
            child: None,
            starts: 1,
        };
        if let Some(props) = &shell.opts.properties {
            fs::write(shell.properties_path(), props).expect("writing server.properties");
        }
        let stderr = open_append(&shell.stderr_path(), "");
        let stdout = open_append(&shell.stdout_path(), "");
        let mut cmd = base_command(&checked_bin(), &shell.opts.env);
        cmd.args(shell.args()).stdout(stdout).stderr(stderr);
        let mut child = cmd.spawn().expect("spawning fjord");
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        ExitReport {
            status,
            stderr: fs::read_to_string(shell.stderr_path()).unwrap_or_default(),
            stdout: fs::read_to_string(shell.stdout_path()).unwrap_or_default(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill();
    }
}

/// The command with a hermetic environment: no inherited `KAFKA_*`
/// variables (the broker reads them as config, like the apache/kafka image).
fn base_command(bin: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KAFKA_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// One readiness probe: connect and complete an ApiVersions v0 round trip.
fn probe(addr: &str) -> Result<(), String> {
    let mut client = Client::connect(addr).map_err(|e| format!("connect: {e}"))?;
    client.set_read_timeout(Duration::from_millis(2_000));
    let req = kafka_protocol::messages::ApiVersionsRequest::default();
    let resp = client
        .try_send_request(0, &req)
        .map_err(|e| format!("ApiVersions v0: {e:#}"))?;
    if resp.error_code != 0 {
        return Err(format!("ApiVersions v0 error code {}", resp.error_code));
    }
    Ok(())
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for fjord: {e}"),
        }
    }
}

fn open_append(path: &Path, banner: &str) -> File {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening a log file in the temp dir");
    f.write_all(banner.as_bytes()).expect("writing to the log file");
    f
}

fn read_tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log file)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::from("(log file not seekable)");
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
