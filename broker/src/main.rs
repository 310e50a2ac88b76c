//! `fjord [server.properties] [--override key=value]...`: a single-node Kafka-compatible
//! broker that needs no format step. Config, tracing, then `fjord_broker::run`.

use std::process::ExitCode;

use fjord_broker::config::{Config, ConfigError};

fn main() -> ExitCode {
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        // One JSON object per line, with the request and connection spans' fields.
        logs.json().with_current_span(true).with_span_list(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
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
