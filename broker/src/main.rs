//! `fjord [server.properties] [--override key=value]...`: a single-node Kafka-compatible
//! broker that needs no format step. Config, tracing, then `fjord_broker::run`.
//!
//! `fjord healthcheck [http://host:port/path]` is the container image's HEALTHCHECK: it asks
//! the broker's HTTP listener for `/readyz` and exits 0 when the answer is 200.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use fjord_broker::config::{Config, ConfigError};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("healthcheck") {
        return healthcheck(args.nth(1));
    }
    let config = match Config::from_args_and_env(std::env::args().skip(1), std::env::vars()) {
        Ok(c) => c,
        Err(ConfigError::Usage(u)) => {
            eprintln!("{u}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("fjord: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
    let (writer, terminal) = if config.log_stdout {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        (BoxMakeWriter::new(std::io::stdout), terminal)
    } else {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        (BoxMakeWriter::new(std::io::stderr), terminal)
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if config.log_json {
        // One JSON object per line, with the request and connection spans' fields.
        logs.json().with_current_span(true).with_span_list(true).init();
    } else {
        logs.with_ansi(terminal).init();
    }
    for (variable, key) in &config.ignored_env {
        tracing::warn!(%variable, %key, "ignoring an environment variable that names no Kafka or Fjord property");
    }
    for key in config.without_effect() {
        tracing::info!(%key, "accepted: this Kafka property has no effect in Fjord");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fjord: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(fjord_broker::run(config, shutdown_signal(), None)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fjord stopped with an error: {e}");
            eprintln!("fjord: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker cleanly");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Probes `/readyz` on the HTTP listener the environment configures (`KAFKA_METRICS_LISTENER`,
/// default port 9644), or `url` when given. A slim image has no curl, and a shell probe
/// would have to know the port.
fn healthcheck(url: Option<String>) -> ExitCode {
    let target = match url {
        Some(u) => u,
        None => {
            let listener = Config::from_args_and_env(Vec::new(), std::env::vars())
                .ok()
                .and_then(|c| c.metrics_listener)
                .unwrap_or_else(|| "0.0.0.0:9644".into());
            // A listener on every address is reached on loopback.
            let (host, port) = listener.rsplit_once(':').unwrap_or(("", "9644"));
            let host = if matches!(host, "" | "0.0.0.0" | "::" | "[::]") {
                "127.0.0.1"
            } else {
                host
            };
            format!("http://{host}:{port}/readyz")
        }
    };
    match probe(&target) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("fjord healthcheck: {target} answered {status}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("fjord healthcheck: {target}: {e}");
            ExitCode::from(1)
        }
    }
}

/// One HTTP/1.0 GET; the status code of the answer.
fn probe(url: &str) -> std::io::Result<u16> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http://host:port/path"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let timeout = Duration::from_secs(3);
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| bad("the host has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut head = Vec::new();
    stream.take(256).read_to_end(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP answer"))
}
