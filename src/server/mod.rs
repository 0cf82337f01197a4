//! The HTTP server (axum) around an [`EngineHandle`]:
//!
//! - `POST /v1/generate` — images as PNG or safetensors (`generate.rs`), or for a `sana`
//!   model latents from caption embeddings (`generate_sana.rs`);
//! - `GET /healthz` (the process is up), `GET /readyz` (accepting requests), `GET /metrics`
//!   (Prometheus text);
//! - the Open Inference Protocol v2 REST endpoints (`oip.rs`; JSON or binary tensor data) for
//!   a raw forward, and the same protocol over gRPC on its own port ([`grpc`]), so the server
//!   drops into KServe/Triton-style infrastructure.

mod body;
mod error;
mod generate;
mod generate_sana;
pub mod grpc;
mod listener;
mod oip;
pub mod oip_tensors;
mod tracking;

pub use error::ApiError;
pub use generate::{ResponseFormat, decode_generate_request};
pub use generate_sana::{SanaGenerateBody, decode_sana_generate_request};
pub use oip::{
    DecodedForward, DecodedInfer, decode_infer_body, decode_infer_body_for, decode_infer_request,
};
pub use oip_tensors::{ForwardRequest, InferInputs, Schema};
pub use tracking::{REQUEST_ID, RequestId};

use crate::engine::{EngineHandle, WorkerState};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// The HTTP layer's limits. The engine's own limits (batch, tokens, queue, images, steps,
/// deadlines) are in [`crate::engine::EngineConfig`]. Start from [`HttpLimits::default`] and
/// change limits with the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Largest request body, in bytes (413 above). The default, 32 MiB, holds an Open
    /// Inference Protocol JSON `x` of the default `max_tokens_per_forward` (65,536 tokens)
    /// at D = 32, or 4 × 4096 tokens at D = 64, with room to spare.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's header, and to start the next one on a
    /// keep-alive connection (the connection is closed after it).
    pub header_timeout: Duration,
    /// Time a handler waits for the whole body once it starts reading (408 after it).
    pub body_timeout: Duration,
    /// Open connections at most; at the limit new connections wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, time to finish accepted requests and close connections before the
    /// server gives up on them and returns an error.
    pub drain_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 32 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

impl HttpLimits {
    /// With request bodies of at most `bytes` bytes.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// With `timeout` for a request's header (and the keep-alive idle limit).
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// With `timeout` for a request's body once the handler reads it.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// With at most `connections` open connections.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// With `timeout` to drain accepted requests on shutdown.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Checks the limits: every size and time at least 1.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_connections == 0 {
            return Err("max_body_bytes and max_connections must be at least 1".into());
        }
        if self.header_timeout.is_zero()
            || self.body_timeout.is_zero()
            || self.drain_timeout.is_zero()
        {
            return Err("the header, body and drain timeouts must be longer than 0".into());
        }
        Ok(())
    }
}

/// What every handler can reach. What a generate request defaults to (grid, schedule,
/// guidance) is the engine's model description ([`EngineHandle::description`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct AppState {
    /// The engine.
    pub engine: EngineHandle,
    /// The HTTP limits.
    pub limits: HttpLimits,
}

impl AppState {
    /// The state of a server around `engine` under `limits`.
    pub fn new(engine: EngineHandle, limits: HttpLimits) -> Self {
        AppState { engine, limits }
    }
}

/// The routes, with request tracking (request id, metrics, structured errors) on every
/// response, 404 and 405 included.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/generate", post(generate::generate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v2", get(oip::server_metadata))
        .route("/v2/health/live", get(healthz))
        .route("/v2/health/ready", get(readyz))
        .route("/v2/models/{model}", get(oip::model_metadata))
        .route("/v2/models/{model}/ready", get(oip::model_ready))
        .route("/v2/models/{model}/infer", post(oip::infer))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tracking::track,
        ))
        .with_state(state)
}

/// Serves `state` over HTTP on `listener` until `shutdown` resolves or the engine's worker
/// fails; [`serve_with_grpc`] without gRPC.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_grpc(listener, None, state, shutdown).await
}

/// Serves `state` over HTTP on `listener` and, when given, the Open Inference Protocol over
/// gRPC on `grpc` ([`grpc`]), until `shutdown` resolves or the engine's worker fails. Then
/// both stop accepting connections, the engine finishes every accepted request and the
/// connections close, all within `state.limits.drain_timeout`.
///
/// Returns an error when the engine's worker failed (the process should exit non-zero so
/// that it is restarted) or when the drain did not finish in time.
pub async fn serve_with_grpc(
    listener: TcpListener,
    grpc: Option<TcpListener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state
        .limits
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let engine = state.engine.clone();
    let limits = state.limits.clone();
    let grpc_service = grpc::GrpcService::new(state.clone());
    let app = router(state);
    let failed = {
        let engine = engine.clone();
        async move {
            match engine.stopped().await {
                WorkerState::Failed(reason) => reason,
                // Drained: the shutdown path below is already under way.
                WorkerState::Drained | WorkerState::Running => std::future::pending().await,
            }
        }
    };
    // Both accept loops stop when this turns true; the task returns why (None: shutdown).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watch = tokio::spawn(async move {
        let why = tokio::select! {
            () = shutdown => None,
            reason = failed => Some(reason),
        };
        let _ = stop_tx.send(true);
        why
    });
    let stopped = || {
        let mut rx = stop_rx.clone();
        async move {
            // An error means the sender is gone, which happens only after it sent `true`.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let http_accept = listener::accept_until(
        listener,
        limits.max_connections,
        "HTTP",
        stopped(),
        listener::http1_connections(app, &limits),
    );
    let grpc_accept = async {
        match grpc {
            Some(grpc) => Some(
                listener::accept_until(
                    grpc,
                    limits.max_connections,
                    "gRPC",
                    stopped(),
                    grpc::http2_connections(grpc_service, &limits),
                )
                .await,
            ),
            None => None,
        }
    };
    let (connections, grpc_connections) = tokio::join!(http_accept, grpc_accept);
    let why = watch.await.ok().flatten();
    tracing::info!("shutting down: no new connections; finishing accepted requests");
    let drain = async {
        engine.shutdown().await;
        let grpc_drain = async {
            if let Some(connections) = grpc_connections {
                connections.shutdown().await;
            }
        };
        tokio::join!(connections.shutdown(), grpc_drain);
    };
    let drained = tokio::time::timeout(limits.drain_timeout, drain).await;
    if let Some(reason) = why {
        return Err(std::io::Error::other(format!(
            "the engine's worker failed: {reason}"
        )));
    }
    drained.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "requests were still running after the drain timeout of {} s",
                limits.drain_timeout.as_secs()
            ),
        )
    })
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "no such endpoint")
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.engine.is_ready() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": state.engine.unready_reason()})),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics().render(),
    )
}
