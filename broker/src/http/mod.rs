//! The HTTP listener (`metrics.listener`): `/metrics` (Prometheus), `/healthz` (the process
//! is up), `/readyz` (storage open, controller has a leader, listeners bound, not shutting
//! down), `/api/status` (JSON for the status page) and `/` (the status page itself).
//!
//! It starts before anything else so that `/readyz` can say "not yet" during startup, and it
//! keeps answering during shutdown so that it can say "not any more".

mod status;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::Broker;

pub use status::{collect_loop, controller_collect_loop, controller_status_json, live_gauges, status_json};

/// The status page; `/*FJORD_STATUS_JSON*/null` is replaced by the current status so the
/// first paint needs no second request.
const STATUS_HTML: &str = include_str!("status.html");
const STATUS_PLACEHOLDER: &str = "/*FJORD_STATUS_JSON*/null";

/// What the HTTP side knows about the broker's life.
#[derive(Default)]
pub struct HttpState {
    /// The Prometheus recorder's handle.
    pub handle: Option<PrometheusHandle>,
    /// Set once storage, groups and the controller are open.
    pub broker: OnceLock<Arc<Broker>>,
    /// Set once the controller of a controller-only node (`process.roles=controller`) is open,
    /// with its node id; such a node has no broker.
    pub controller: OnceLock<(fjord_controller::Controller, i32)>,
    /// Client listeners are bound and served.
    pub serving: AtomicBool,
    /// Shutdown has begun.
    pub stopping: AtomicBool,
}

impl HttpState {
    /// Why the broker is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            return Some("shutting down");
        }
        if let Some((c, _)) = self.controller.get() {
            return c
                .raft_status()
                .leader
                .is_none()
                .then_some("the controller has no leader");
        }
        let Some(broker) = self.broker.get() else {
            return Some("storage and controller are opening");
        };
        if !self.serving.load(Ordering::Acquire) {
            return Some("client listeners are not serving yet");
        }
        if broker.controller.raft_status().leader.is_none() {
            return Some("the controller has no leader");
        }
        None
    }
}

/// Binds the HTTP listener.
pub async fn bind(addr: &str) -> Result<TcpListener, crate::BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::BrokerError::Startup(format!("cannot listen on http://{addr} (metrics.listener): {e}")))
}

/// Serves HTTP until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = "no-store".parse() {
        r.headers_mut().insert(hyper::header::CACHE_CONTROL, v);
    }
    r
}

async fn route(state: &HttpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => match &state.handle {
            Some(h) => {
                if let Some(b) = state.broker.get() {
                    live_gauges(b);
                }
                reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", h.render())
            }
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "metrics recorder unavailable\n",
            ),
        },
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => match state.not_ready() {
            None => reply(StatusCode::OK, "text/plain", "ready\n"),
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        "/api/status" => match (state.broker.get(), state.controller.get()) {
            (Some(b), _) => reply(StatusCode::OK, "application/json", status_json(b).await),
            (None, Some((c, id))) => reply(StatusCode::OK, "application/json", controller_status_json(c, *id)),
            (None, None) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                "{\"error\":\"starting\"}",
            ),
        },
        "/" | "/index.html" => {
            // The status page shows a broker; a controller-only node's status is its JSON.
            if let Some((c, id)) = state.controller.get() {
                return reply(StatusCode::OK, "application/json", controller_status_json(c, *id));
            }
            let json = match state.broker.get() {
                Some(b) => status_json(b).await,
                None => "null".into(),
            };
            // Inside a <script>: no '<' at all, so no group id ("<!--<script>", "</script>")
            // can change how the HTML parser reads the page's own script.
            let json = json.replace('<', "\\u003c");
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                STATUS_HTML.replacen(STATUS_PLACEHOLDER, &json, 1),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
