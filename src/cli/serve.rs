//! `linear-dit serve`: the HTTP server with step-level continuous batching.

use super::device_flags::DeviceFlags;
use anyhow::{Context, Result};
use clap::Args;
use linear_dit::engine::{Engine, EngineConfig};
use linear_dit::sampling::metadata::{image_grid, schedule_of};
use linear_dit::server::{AppState, serve};
use linear_dit::{ConfigOverrides, Grid, Model, Weights};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serve a trained model over HTTP (POST /v1/generate, Open Inference Protocol v2, metrics).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Trained weights (e.g. assets/digits.safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the log says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most rows per forward (each guided image counts twice).
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Most requests waiting for a slot; more are answered 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Most tokens (rows × N) per forward.
    #[arg(long, default_value_t = 1 << 16)]
    max_tokens: usize,
    /// Deadline of requests that give none, in milliseconds (0: none).
    #[arg(long, default_value_t = 0)]
    deadline_ms: u64,
    /// Image size HxW in pixels [default: the weights' `linear_dit.image` metadata].
    #[arg(long)]
    size: Option<Grid>,
    #[command(flatten)]
    device: DeviceFlags,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let weights = Weights::load(&args.weights, &ConfigOverrides::default())?;
    let grid = image_grid(&weights, args.size.map(|s| (s.rows, s.cols)))?;
    let schedule = schedule_of(&weights)?;
    let model = Arc::new(Model::with_precision(
        &weights,
        args.device.backend,
        args.device.precision,
    )?);
    let config = EngineConfig {
        max_batch: args.max_batch,
        max_tokens_per_forward: args.max_tokens,
        max_queue: args.max_queue,
        default_deadline: (args.deadline_ms > 0).then(|| Duration::from_millis(args.deadline_ms)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("linear-dit-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let engine = Engine::start(model, config)?;
        tracing::info!(
            address = %format!("http://{}", listener.local_addr()?),
            backend = engine.backend(),
            weights = %args.weights.display(),
            "listening"
        );
        let state = AppState {
            engine,
            grid,
            schedule,
        };
        serve(listener, state, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
