//! The serving engine: a worker per device that batches the denoising steps of all running
//! requests into shared forwards (step-level continuous batching), behind an async handle.
//!
//! ```no_run
//! use linear_dit::engine::{Engine, EngineConfig, GenerateRequest};
//! use linear_dit::sampling::SamplingParams;
//! use linear_dit::{Grid, Model};
//! use std::sync::Arc;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Arc::new(Model::load("assets/digits.safetensors")?);
//! let engine = Engine::start(model, EngineConfig::default())?;
//! let request = GenerateRequest {
//!     class_label: Some(7),
//!     num_images: 4,
//!     params: SamplingParams::default(),
//!     seed: 1,
//!     grid: Grid::new(8, 8),
//!     deadline: None,
//! };
//! let generated = engine.generate(request).await?; // images [4, 1, 16, 16]
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

mod metrics;
mod queue;
mod request;
mod worker;

pub use metrics::{Histogram, Metrics, Outcome};
pub use request::{EngineError, GenerateRequest, Generated};

use crate::config::Config;
use crate::error::Error;
use crate::model::{Grid, Model};
use crate::sampling::{NoiseKey, SamplingPlan, StepBatch, Trajectory, image_classes};
use crate::tensor::Tensor;
use queue::{ForwardJob, GenerateJob, Job, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Limits of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most rows (images, each guided image counting twice) in one forward.
    pub max_batch: usize,
    /// Most tokens (rows × N) in one forward.
    pub max_tokens_per_forward: usize,
    /// Most requests waiting for a slot; beyond it requests are rejected (HTTP 429).
    pub max_queue: usize,
    /// Deadline of requests that give none; `None`: no deadline.
    pub default_deadline: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 64,
            max_tokens_per_forward: 1 << 16,
            max_queue: 256,
            default_deadline: None,
        }
    }
}

/// Starts engines.
pub struct Engine;

impl Engine {
    /// Starts the worker thread for `model` and returns a handle to it.
    pub fn start(model: Arc<Model>, config: EngineConfig) -> Result<EngineHandle, EngineError> {
        if config.max_batch == 0 || config.max_tokens_per_forward == 0 {
            return Err(EngineError::Invalid(Error::config(
                "max_batch",
                "and max_tokens_per_forward must be at least 1",
            )));
        }
        let shared = Arc::new(Shared::default());
        let metrics = Arc::new(Metrics::default());
        let (done_tx, done_rx) = watch::channel(false);
        let model_config = model.config().clone();
        let backend = model.describe_backend();
        let worker = {
            let (shared, metrics, config) = (shared.clone(), metrics.clone(), config.clone());
            std::thread::Builder::new()
                .name("linear-dit-worker".into())
                .spawn(move || {
                    worker::run(model, config, shared, metrics);
                    let _ = done_tx.send(true);
                })
                .map_err(|e| EngineError::Failed(format!("cannot start the worker thread: {e}")))?
        };
        drop(worker);
        tracing::info!(%backend, max_batch = config.max_batch, max_queue = config.max_queue, "engine started");
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                shared,
                metrics,
                config,
                model_config,
                backend,
                next_id: AtomicU64::new(1),
                done: done_rx,
            }),
        })
    }
}

struct Inner {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    model_config: Config,
    backend: String,
    next_id: AtomicU64,
    done: watch::Receiver<bool>,
}

/// A cheap, cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    /// Generates the request's images. Dropping the returned future cancels the request: its
    /// slot is freed at the next step.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generated, EngineError> {
        let (job, rx) = match self.prepare(request) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.inner.metrics.record(match e {
                    EngineError::Invalid(_) | EngineError::TooLarge(_) => Outcome::Invalid,
                    _ => Outcome::Failed,
                });
                return Err(e);
            }
        };
        self.enqueue(Job::Generate(Box::new(job)))?;
        rx.await.unwrap_or(Err(EngineError::ShuttingDown))
    }

    /// One raw forward (`x [B, N, D]`, `t [B]`, `y [B]`), run by the worker between steps.
    pub async fn forward(
        &self,
        x: Tensor,
        t: Vec<f32>,
        y: Option<Vec<i64>>,
        grid: Option<Grid>,
    ) -> Result<Tensor, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(Job::Forward(ForwardJob {
            x,
            t,
            y,
            grid,
            reply,
        }))?;
        rx.await.unwrap_or(Err(EngineError::ShuttingDown))
    }

    /// Validates a request and builds its trajectories.
    fn prepare(
        &self,
        request: GenerateRequest,
    ) -> Result<
        (
            GenerateJob,
            oneshot::Receiver<Result<Generated, EngineError>>,
        ),
        EngineError,
    > {
        let config = &self.inner.model_config;
        if request.num_images == 0 {
            return Err(Error::input("num_images", "must be at least 1").into());
        }
        let plan = SamplingPlan::new(config, &request.params)?;
        let trajectories = image_classes(config, request.class_label, request.num_images)
            .into_iter()
            .enumerate()
            .map(|(i, class)| {
                let key = NoiseKey {
                    seed: request.seed,
                    image: i as u32,
                };
                Trajectory::new(config, plan.clone(), class, key, request.grid)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let rows: usize = trajectories.iter().map(StepBatch::rows_of).sum();
        let limits = &self.inner.config;
        if rows > limits.max_batch || rows * request.grid.tokens() > limits.max_tokens_per_forward {
            return Err(EngineError::TooLarge(format!(
                "{} images need {rows} rows of {} tokens per step; this engine runs at most {} rows and {} tokens per forward",
                request.num_images,
                request.grid.tokens(),
                limits.max_batch,
                limits.max_tokens_per_forward
            )));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, class = ?request.class_label, images = request.num_images, steps = request.params.steps);
        let deadline = request
            .deadline
            .or(limits.default_deadline)
            .map(|limit| (Instant::now() + limit, limit));
        let (reply, rx) = oneshot::channel();
        let job = GenerateJob {
            id,
            request,
            trajectories,
            rows,
            submitted: Instant::now(),
            deadline,
            admitted: None,
            reply: Some(reply),
            span,
        };
        Ok((job, rx))
    }

    /// Puts a job in the queue, or rejects it (queue full, shutting down).
    fn enqueue(&self, job: Job) -> Result<(), EngineError> {
        let mut state = self.inner.shared.lock();
        if state.shutting_down {
            self.inner.metrics.record(Outcome::ShuttingDown);
            return Err(EngineError::ShuttingDown);
        }
        if state.queue.len() >= self.inner.config.max_queue {
            self.inner.metrics.record(Outcome::QueueFull);
            return Err(EngineError::QueueFull(state.queue.len()));
        }
        if let Job::Generate(g) = &job {
            g.span.in_scope(|| tracing::debug!(id = g.id, "queued"));
        }
        state.queue.push_back(job);
        drop(state);
        self.inner.shared.notify();
        Ok(())
    }

    /// Stops accepting requests, lets the worker finish every accepted one, and waits for it.
    pub async fn shutdown(&self) {
        self.inner.shared.lock().shutting_down = true;
        self.inner.shared.notify();
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|&d| d).await;
    }

    /// Whether the engine accepts requests.
    pub fn is_ready(&self) -> bool {
        !self.inner.shared.lock().shutting_down && !*self.inner.done.borrow()
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The model's config.
    pub fn model_config(&self) -> &Config {
        &self.inner.model_config
    }

    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// One line describing the backend.
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }
}
