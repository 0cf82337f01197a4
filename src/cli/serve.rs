//! `linear-dit serve`: the HTTP server (and, with `--grpc-port`, the gRPC one) with
//! step-level continuous batching.

use super::device_flags::DeviceFlags;
use anyhow::{Context, Result, bail};
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::engine::{Engine, EngineConfig, EngineHandle};
use linear_dit::sampling::ModelDescription;
use linear_dit::server::{AppState, HttpLimits, serve_with_grpc};
use linear_dit::weights::{SanaWeights, is_diffusers_folder};
use linear_dit::{Grid, Model, SanaModel, Weights};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serve a trained model over HTTP (POST /v1/generate, Open Inference Protocol v2, metrics)
/// and, with --grpc-port, the Open Inference Protocol over gRPC.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Trained weights (e.g. assets/digits.safetensors), or a diffusers SANA model (or
    /// pipeline) folder: then /v1/generate takes caption embeddings and answers latents.
    #[arg(long)]
    weights: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the log says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Also serve the Open Inference Protocol over gRPC on this port, on the same host, e.g.
    /// 8081 (0: any free port; the log says which) [default: no gRPC].
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Most rows per forward (each guided image counts twice).
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Most requests waiting for a slot; more are answered 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Most tokens (rows × N) per forward.
    #[arg(long, default_value_t = 1 << 16)]
    max_tokens: usize,
    /// Most images one /v1/generate request may ask for.
    #[arg(long, default_value_t = 64)]
    max_images: usize,
    /// Most denoising steps one /v1/generate request may ask for.
    #[arg(long, default_value_t = 1000)]
    max_steps: usize,
    /// Deadline of requests that give none, in milliseconds (0: none).
    #[arg(long, default_value_t = 0)]
    deadline_ms: u64,
    /// Largest request body in bytes (413 above), e.g. 32M.
    #[arg(long, default_value = "32M", value_parser = linear_dit::limits::parse_bytes)]
    max_body_bytes: u64,
    /// Most open connections; more wait in the listen backlog.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Seconds a client has to send a request header (also the keep-alive idle limit).
    #[arg(long, default_value_t = 10)]
    header_timeout_s: u64,
    /// Seconds a client has to send a request body once the server reads it (408 after).
    #[arg(long, default_value_t = 30)]
    body_timeout_s: u64,
    /// On SIGTERM or Ctrl-C, seconds to finish accepted requests before exiting with an
    /// error.
    #[arg(long, default_value_t = 60)]
    drain_timeout_s: u64,
    /// Image size HxW in pixels [default: the weights' `linear_dit.image` metadata].
    #[arg(long)]
    size: Option<Grid>,
    #[command(flatten)]
    config: ConfigOverrides,
    #[command(flatten)]
    device: DeviceFlags,
}

/// What the engine will serve, loaded and checked before any port is bound.
enum Loaded {
    Dit(Arc<Model>, ModelDescription),
    Sana(Arc<SanaModel>),
}

impl Loaded {
    fn start(
        self,
        config: EngineConfig,
    ) -> std::result::Result<EngineHandle, linear_dit::engine::EngineError> {
        match self {
            Loaded::Dit(model, description) => {
                Engine::start_with_description(model, description, config)
            }
            Loaded::Sana(model) => Engine::start_sana(model, config),
        }
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = engine_config(&args);
    let model = if is_diffusers_folder(&args.weights) {
        // The folder's config.json is the whole config, and each request sets its size.
        if args.config.set_fields().iter().any(|&set| set) || args.size.is_some() {
            bail!(
                "{}: a diffusers SANA folder takes its config from config.json and each request its height and width; drop the config and --size flags",
                args.weights.display()
            );
        }
        let weights = SanaWeights::load(&args.weights)?;
        let model = SanaModel::on(&weights, args.device.backend, args.device.precision)?;
        // Limits that can never be met fail here, not on the first request.
        config.check_serves_sana(weights.config())?;
        Loaded::Sana(Arc::new(model))
    } else {
        let weights = Weights::load(&args.weights, &args.config)?;
        let mut description = ModelDescription::from_weights(&weights)?;
        if let Some(size) = args.size {
            description = description.with_image_size(size.rows, size.cols)?;
        }
        let grid = description.default_grid()?;
        let model = Arc::new(Model::with_precision(
            &weights,
            args.device.backend,
            args.device.precision,
        )?);
        // Limits that can never be met fail here, not on the first request.
        config.check_serves(weights.config(), grid)?;
        Loaded::Dit(model, description)
    };
    serve(args, model, config)
}

fn engine_config(args: &ServeArgs) -> EngineConfig {
    EngineConfig::default()
        .with_max_batch(args.max_batch)
        .with_max_tokens_per_forward(args.max_tokens)
        .with_max_queue(args.max_queue)
        .with_max_images_per_request(args.max_images)
        .with_max_steps_per_request(args.max_steps)
        .with_default_deadline(
            (args.deadline_ms > 0).then(|| Duration::from_millis(args.deadline_ms)),
        )
}

fn serve(args: ServeArgs, model: Loaded, config: EngineConfig) -> Result<()> {
    let max_body_bytes = usize::try_from(args.max_body_bytes)
        .context("--max-body-bytes does not fit this machine's address space")?;
    let limits = HttpLimits::default()
        .with_max_body_bytes(max_body_bytes)
        .with_header_timeout(Duration::from_secs(args.header_timeout_s))
        .with_body_timeout(Duration::from_secs(args.body_timeout_s))
        .with_max_connections(args.max_connections)
        .with_drain_timeout(Duration::from_secs(args.drain_timeout_s));
    limits.validate().map_err(anyhow::Error::msg)?;
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
        let grpc = match args.grpc_port {
            Some(port) => Some(
                tokio::net::TcpListener::bind((args.host.as_str(), port))
                    .await
                    .with_context(|| format!("binding {}:{port} for gRPC", args.host))?,
            ),
            None => None,
        };
        let engine = model.start(config)?;
        if let Some(grpc) = &grpc {
            tracing::info!(address = %grpc.local_addr()?, "listening for gRPC");
        }
        tracing::info!(
            address = %format!("http://{}", listener.local_addr()?),
            backend = engine.backend(),
            weights = %args.weights.display(),
            "listening"
        );
        serve_with_grpc(
            listener,
            grpc,
            AppState::new(engine, limits),
            shutdown_signal(),
        )
        .await
        .context("serving")
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
