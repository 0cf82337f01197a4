//! The HTTP server (axum) around an [`EngineHandle`]:
//!
//! - `POST /v1/generate` — images as PNG or safetensors ([`generate`]);
//! - `GET /healthz` (the process is up), `GET /readyz` (accepting requests), `GET /metrics`
//!   (Prometheus text);
//! - the Open Inference Protocol v2 REST endpoints ([`oip`]) for a raw forward, so the server
//!   drops into KServe/Triton-style infrastructure.

mod error;
mod generate;
mod oip;

pub use error::ApiError;

use crate::engine::EngineHandle;
use crate::model::Grid;
use crate::sampling::ScheduleKind;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::future::Future;
use tokio::net::TcpListener;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: EngineHandle,
    /// Token grid of generated images.
    pub grid: Grid,
    /// The model's training noise schedule.
    pub schedule: ScheduleKind,
}

/// The routes.
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
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting connections,
/// lets the engine finish every accepted request, and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let app = router(state);
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down: no new requests; finishing accepted ones");
        engine.shutdown().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(graceful)
        .await
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
            axum::Json(serde_json::json!({"status": "shutting down"})),
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics().render(),
    )
}
