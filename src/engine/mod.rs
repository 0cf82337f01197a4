//! The serving engine: one worker thread, owning one model on one device, that batches the
//! denoising steps of all running requests into shared forwards (step-level continuous
//! batching), behind an async handle. One engine serves one device; to use several devices,
//! run one engine (one process) per device behind a load balancer.
//!
//! ```no_run
//! use linear_dit::engine::{Engine, EngineConfig, GenerateRequest};
//! use linear_dit::sampling::ModelDescription;
//! use linear_dit::{ConfigOverrides, Device, Model, Weights};
//! use std::sync::Arc;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let weights = Weights::load("assets/digits.safetensors", &ConfigOverrides::default())?;
//! let description = ModelDescription::from_weights(&weights)?; // 8×8 tokens, 10 classes
//! let model = Arc::new(Model::new(&weights, Device::Auto)?);
//! let params = description.default_sampling(); // DDIM 20 steps, guidance 4
//! let engine = Engine::start_with_description(model, description, EngineConfig::default())?;
//! let request = GenerateRequest::default()
//!     .with_class(7)
//!     .with_num_images(4)
//!     .with_params(params)
//!     .with_seed(1);
//! let generated = engine.generate(request).await?; // images [4, 1, 16, 16]
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

mod metrics;
mod queue;
mod request;
mod sana_request;
mod work;
mod worker;

pub use metrics::{Histogram, Metrics, Outcome};
pub use request::{EngineError, GenerateRequest, Generated, Generation, GenerationEvent, Progress};
pub use sana_request::{SanaForward, SanaGenerateRequest};

use crate::error::Error;
use crate::model::sana::{SanaConfig, SanaDims, SanaShape, sana_forward_bytes, validate_sana};
use crate::model::{Config, Grid, Input, validate};
use crate::runtime::{Model, SanaModel};
use crate::sampling::ModelDescription;
use crate::sampling::flow::{FlowParams, FlowPlan, SanaStepBatch, request_sana_trajectories};
use crate::sampling::{
    SamplingPlan, StepBatch, check_sampling_size, image_classes, request_trajectories,
};
use crate::tensor::Tensor;
use queue::{ForwardInput, ForwardJob, GenerateJob, Job, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use work::{Served, Work};

/// Unread step reports a [`Generation`] buffers; beyond them the worker drops steps rather
/// than wait for the reader (≈ 32 KiB per request at most). Requests of up to this many
/// steps lose none.
pub const PROGRESS_BUFFER: usize = 1024;

/// Limits of the engine. Every request — `/v1/generate`, a raw forward, an embedded caller —
/// goes through the same admission against them. Start from [`EngineConfig::default`] and
/// change limits with the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Most rows (images, each guided image counting twice) in one forward.
    pub max_batch: usize,
    /// Most tokens (rows × N) in one forward.
    pub max_tokens_per_forward: usize,
    /// Most requests waiting for a slot; beyond it requests are rejected (HTTP 429).
    pub max_queue: usize,
    /// Most images one generate request may ask for.
    pub max_images_per_request: usize,
    /// Most denoising steps one generate request may ask for (the model's `num_steps` caps
    /// it too).
    pub max_steps_per_request: usize,
    /// Deadline of requests that give none; `None`: no deadline.
    pub default_deadline: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 64,
            max_tokens_per_forward: 1 << 16,
            max_queue: 256,
            max_images_per_request: 64,
            max_steps_per_request: 1000,
            default_deadline: None,
        }
    }
}

impl EngineConfig {
    /// With at most `rows` rows per forward.
    pub fn with_max_batch(mut self, rows: usize) -> Self {
        self.max_batch = rows;
        self
    }

    /// With at most `tokens` tokens (rows × N) per forward.
    pub fn with_max_tokens_per_forward(mut self, tokens: usize) -> Self {
        self.max_tokens_per_forward = tokens;
        self
    }

    /// With at most `requests` requests waiting for a slot.
    pub fn with_max_queue(mut self, requests: usize) -> Self {
        self.max_queue = requests;
        self
    }

    /// With at most `images` images per generate request.
    pub fn with_max_images_per_request(mut self, images: usize) -> Self {
        self.max_images_per_request = images;
        self
    }

    /// With at most `steps` denoising steps per generate request.
    pub fn with_max_steps_per_request(mut self, steps: usize) -> Self {
        self.max_steps_per_request = steps;
        self
    }

    /// With `deadline` for requests that give none (`None`: no deadline).
    pub fn with_default_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.default_deadline = deadline;
        self
    }

    /// Checks the limits themselves: each at least 1.
    pub fn validate(&self) -> Result<(), EngineError> {
        for (field, value) in [
            ("max_batch", self.max_batch),
            ("max_tokens_per_forward", self.max_tokens_per_forward),
            ("max_queue", self.max_queue),
            ("max_images_per_request", self.max_images_per_request),
            ("max_steps_per_request", self.max_steps_per_request),
        ] {
            if value == 0 {
                return Err(EngineError::Invalid(Error::config(
                    field,
                    "must be at least 1: with 0 no request could ever be served",
                )));
            }
        }
        Ok(())
    }

    /// Checks that one image of `grid` can be served at all: one row of its tokens, or two
    /// for a class-conditional model (classifier-free guidance runs both halves together).
    /// A server calls this at start-up, so limits that can never be met fail there.
    pub fn check_serves(&self, model: &Config, grid: Grid) -> Result<(), EngineError> {
        self.validate()?;
        let rows = if model.num_classes.is_some() { 2 } else { 1 };
        if !self.fits(rows, grid.tokens()) {
            return Err(EngineError::Invalid(Error::config(
                "max_batch",
                format!(
                    "({}) and max_tokens_per_forward ({}) cannot hold one guided image: it needs {rows} rows of {} tokens",
                    self.max_batch,
                    self.max_tokens_per_forward,
                    grid.tokens()
                ),
            )));
        }
        Ok(())
    }

    /// [`Self::check_serves`] for a `sana` model: one image at the config's `sample_size`
    /// (the resolution the model was trained at) must fit — two rows, as classifier-free
    /// guidance runs them, for a model without `guidance_embeds`.
    pub fn check_serves_sana(&self, model: &SanaConfig) -> Result<(), EngineError> {
        self.validate()?;
        let dims = model.dims()?;
        let side = model.sample_size / dims.patch;
        let (rows, tokens) = (2 - usize::from(model.guidance_embeds), side * side);
        if !self.fits(rows, tokens) {
            return Err(EngineError::Invalid(Error::config(
                "max_batch",
                format!(
                    "({}) and max_tokens_per_forward ({}) cannot hold one image at the model's sample_size {}: it needs {rows} rows of {tokens} tokens",
                    self.max_batch, self.max_tokens_per_forward, model.sample_size
                ),
            )));
        }
        Ok(())
    }

    /// Whether one forward of `rows` rows of `tokens` tokens each is within the limits.
    fn fits(&self, rows: usize, tokens: usize) -> bool {
        rows <= self.max_batch && rows.saturating_mul(tokens) <= self.max_tokens_per_forward
    }

    /// Refuses a generate request of no images, or of more images or steps than allowed.
    fn check_counts(&self, images: usize, steps: usize) -> Result<(), EngineError> {
        if images == 0 {
            return Err(Error::input("num_images", "must be at least 1").into());
        }
        if images > self.max_images_per_request {
            return Err(EngineError::TooLarge(format!(
                "{images} images; this engine serves at most {} per request",
                self.max_images_per_request
            )));
        }
        if steps > self.max_steps_per_request {
            return Err(EngineError::TooLarge(format!(
                "{steps} steps; this engine runs at most {} per request",
                self.max_steps_per_request
            )));
        }
        Ok(())
    }

    /// A request of `rows` rows of `tokens` tokens per forward, refused when it does not
    /// fit; `what` describes it for the message.
    fn check_fits(&self, rows: usize, tokens: usize, what: String) -> Result<(), EngineError> {
        if self.fits(rows, tokens) {
            return Ok(());
        }
        Err(EngineError::TooLarge(format!(
            "{what}; this engine runs at most {} rows and {} tokens per forward",
            self.max_batch, self.max_tokens_per_forward
        )))
    }
}

/// Starts engines: each one worker thread serving one model on the device it was loaded on.
pub struct Engine;

impl Engine {
    /// Starts the worker thread for `model`, described by its config alone
    /// ([`ModelDescription::of`]: no default grid, so every request names its grid); see
    /// [`Self::start_with_description`].
    pub fn start(model: Arc<Model>, config: EngineConfig) -> Result<EngineHandle, EngineError> {
        let description = ModelDescription::of(model.config());
        Engine::start_with_description(model, description, config)
    }

    /// Starts the worker thread for `model`, whose requests default to what `description`
    /// says (e.g. [`ModelDescription::from_weights`]: the grid of the weights' image
    /// metadata), and returns a handle to it.
    ///
    /// The worker isolates each forward: a panic there fails only that forward's requests.
    /// Should the worker itself stop (a bug outside a forward, or forwards that keep
    /// panicking), the engine turns unready, every waiting request is answered with
    /// [`EngineError::WorkerFailed`], and [`EngineHandle::stopped`] reports the failure so a
    /// server can exit non-zero and be restarted.
    pub fn start_with_description(
        model: Arc<Model>,
        description: ModelDescription,
        config: EngineConfig,
    ) -> Result<EngineHandle, EngineError> {
        let flavor = Flavor::Dit {
            config: model.config().clone(),
            description,
        };
        let backend = model.describe_backend();
        Engine::start_served(Served::Dit(model), flavor, backend, config)
    }

    /// Starts the worker thread for a `sana` model ([`EngineHandle::generate_sana`],
    /// [`EngineHandle::forward_sana`]); otherwise as [`Self::start_with_description`]: the
    /// same limits, batching, deadlines, cancellation, progress, metrics and panic guard.
    pub fn start_sana(
        model: Arc<SanaModel>,
        config: EngineConfig,
    ) -> Result<EngineHandle, EngineError> {
        let flavor = Flavor::Sana {
            config: Box::new(model.config().clone()),
            dims: Box::new(model.config().dims()?),
        };
        Engine::start_served(Served::Sana(model), flavor, "cpu (sana)".into(), config)
    }

    fn start_served(
        model: Served,
        flavor: Flavor,
        backend: String,
        config: EngineConfig,
    ) -> Result<EngineHandle, EngineError> {
        config.validate()?;
        let shared = Arc::new(Shared::default());
        let metrics = Arc::new(Metrics::default());
        let (done_tx, done_rx) = watch::channel(WorkerState::Running);
        let worker = {
            let (shared, metrics, config) = (shared.clone(), metrics.clone(), config.clone());
            std::thread::Builder::new()
                .name("linear-dit-worker".into())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        worker::run(model, config, shared.clone(), metrics.clone())
                    });
                    let end = match std::panic::catch_unwind(run) {
                        Ok(Ok(())) => WorkerState::Drained,
                        Ok(Err(reason)) => WorkerState::Failed(reason),
                        Err(panic) => WorkerState::Failed(format!(
                            "the worker panicked: {}",
                            worker::panic_message(panic.as_ref())
                        )),
                    };
                    // The state first: a caller whose answer never comes, or who arrives
                    // while the queue is emptied, must read "failed", not "shutting down".
                    done_tx.send_replace(end.clone());
                    if let WorkerState::Failed(reason) = &end {
                        tracing::error!(%reason, "engine worker stopped; answering every waiting request");
                        worker::fail_queued(&shared, &metrics, reason);
                    }
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
                flavor,
                backend,
                next_id: AtomicU64::new(1),
                done: done_rx,
            }),
        })
    }
}

/// A validated generate job and where its answer will arrive.
type Prepared = (
    GenerateJob,
    oneshot::Receiver<Result<Generated, EngineError>>,
);

/// Where the worker thread is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Serving.
    Running,
    /// Shut down after answering every accepted request.
    Drained,
    /// Stopped by a failure it could not recover from (the reason); the engine serves
    /// nothing more and should be restarted.
    Failed(String),
}

/// What the engine serves, as requests are checked against it.
enum Flavor {
    /// A DiT and what its requests default to.
    Dit {
        config: Config,
        description: ModelDescription,
    },
    /// A `sana` model.
    Sana {
        config: Box<SanaConfig>,
        dims: Box<SanaDims>,
    },
}

struct Inner {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    flavor: Flavor,
    backend: String,
    next_id: AtomicU64,
    done: watch::Receiver<WorkerState>,
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
        let rx = self.submit(|progress| self.prepare(request, progress), None)?;
        self.answer(rx).await
    }

    /// Accepts a request whose steps are reported as they finish, for callers that show
    /// progress (`/v1/generate` with `"stream": true`). A request that is invalid, too large
    /// or finds the queue full is refused here, before any step runs. Dropping the returned
    /// [`Generation`] cancels the request: its slot is freed at the next step.
    pub fn generate_with_progress(
        &self,
        request: GenerateRequest,
    ) -> Result<Generation, EngineError> {
        let (tx, progress) = mpsc::channel(request.params.steps.clamp(1, PROGRESS_BUFFER));
        let answer = self.submit(|progress| self.prepare(request, progress), Some(tx))?;
        Ok(self.generation(progress, answer))
    }

    /// Generates a `sana` request's latents `[n, C, H, W]` (in [`Generated::images`]) on an
    /// engine started with [`Engine::start_sana`]. Dropping the returned future cancels the
    /// request: its slot is freed at the next step.
    pub async fn generate_sana(
        &self,
        request: SanaGenerateRequest,
    ) -> Result<Generated, EngineError> {
        let rx = self.submit(|progress| self.prepare_sana(request, progress), None)?;
        self.answer(rx).await
    }

    /// [`Self::generate_with_progress`] for a `sana` request.
    pub fn generate_sana_with_progress(
        &self,
        request: SanaGenerateRequest,
    ) -> Result<Generation, EngineError> {
        let steps = request.params.as_ref().map_or(1, |p| p.steps);
        let (tx, progress) = mpsc::channel(steps.clamp(1, PROGRESS_BUFFER));
        let answer = self.submit(|progress| self.prepare_sana(request, progress), Some(tx))?;
        Ok(self.generation(progress, answer))
    }

    fn generation(
        &self,
        progress: mpsc::Receiver<Progress>,
        answer: oneshot::Receiver<Result<Generated, EngineError>>,
    ) -> Generation {
        Generation {
            progress,
            answer,
            held: None,
            finished: false,
            engine: self.clone(),
        }
    }

    /// Validates (with `prepare`) and queues a generate request; returns where its answer
    /// will arrive.
    fn submit(
        &self,
        prepare: impl FnOnce(Option<mpsc::Sender<Progress>>) -> Result<Prepared, EngineError>,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<oneshot::Receiver<Result<Generated, EngineError>>, EngineError> {
        let (job, rx) = match prepare(progress) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.inner.metrics.record(e.outcome());
                return Err(e);
            }
        };
        self.enqueue(Job::Generate(Box::new(job)))?;
        Ok(rx)
    }

    /// One raw forward (`x [B, N, D]`, `t [B]`, `y [B]`), run by the worker between steps.
    /// It is validated here, against the model and the engine's limits (`max_batch` rows,
    /// `max_tokens_per_forward` tokens), before it is queued; the default deadline applies;
    /// dropping the future cancels it.
    pub async fn forward(
        &self,
        x: Tensor,
        t: Vec<f32>,
        y: Option<Vec<i64>>,
        grid: Option<Grid>,
    ) -> Result<Tensor, EngineError> {
        let checked = self.check_forward(&x, &t, y.as_deref(), grid);
        if let Err(e) = &checked {
            self.inner.metrics.record(e.outcome());
        }
        let grid = checked?;
        self.queue_forward(ForwardInput::Dit { x, t, y, grid })
            .await
    }

    /// One raw `sana` forward (the velocity `[B, C_out, H, W]`), run by the worker between
    /// steps, on an engine started with [`Engine::start_sana`]. As [`Self::forward`]: it
    /// is validated here, against the model and the limits (`max_batch` rows,
    /// `max_tokens_per_forward` tokens, B × H/p · W/p), before it is queued.
    pub async fn forward_sana(&self, forward: SanaForward) -> Result<Tensor, EngineError> {
        let checked = self.check_sana_forward(&forward);
        if let Err(e) = &checked {
            self.inner.metrics.record(e.outcome());
        }
        let row_tokens = checked?;
        self.queue_forward(ForwardInput::Sana(Box::new(forward), row_tokens))
            .await
    }

    /// Queues a checked raw forward under the default deadline and waits for its answer.
    async fn queue_forward(&self, input: ForwardInput) -> Result<Tensor, EngineError> {
        let (reply, rx) = oneshot::channel();
        let deadline = self
            .inner
            .config
            .default_deadline
            .map(|limit| (Instant::now() + limit, limit));
        self.enqueue(Job::Forward(ForwardJob {
            input,
            deadline,
            reply,
        }))?;
        self.answer(rx).await
    }

    /// Validates a raw `sana` forward against the model and the limits; returns its tokens
    /// per row.
    fn check_sana_forward(&self, forward: &SanaForward) -> Result<usize, EngineError> {
        let Flavor::Sana { config, dims } = &self.inner.flavor else {
            return Err(self.wrong_flavor("a sana forward"));
        };
        let shape = validate_sana(config, &forward.input())?;
        self.inner.config.check_fits(
            shape.batch,
            shape.tokens(),
            format!(
                "a forward of {} rows × {} tokens",
                shape.batch,
                shape.tokens()
            ),
        )?;
        crate::limits::check_alloc("the sana forward", sana_forward_bytes(dims, &shape))?;
        Ok(shape.tokens())
    }

    /// The refusal of a request for the flavor this engine does not serve.
    fn wrong_flavor(&self, what: &str) -> EngineError {
        let served = match self.inner.flavor {
            Flavor::Dit { .. } => "a DiT model",
            Flavor::Sana { .. } => "a sana model",
        };
        EngineError::Invalid(Error::input(
            "request",
            format!("is {what}, but this engine serves {served}"),
        ))
    }

    /// The worker's answer, or why none came ([`Self::closed_error`]).
    async fn answer<T>(
        &self,
        rx: oneshot::Receiver<Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        rx.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    /// Validates a raw forward against the model and the limits; returns its grid.
    fn check_forward(
        &self,
        x: &Tensor,
        t: &[f32],
        y: Option<&[i64]>,
        grid: Option<Grid>,
    ) -> Result<Grid, EngineError> {
        let Flavor::Dit { config, .. } = &self.inner.flavor else {
            return Err(self.wrong_flavor("a DiT forward"));
        };
        let input = Input { x, t, y, grid };
        let shape = validate(config, &input)?;
        self.inner.config.check_fits(
            shape.batch,
            shape.tokens,
            format!(
                "a forward of {} rows × {} tokens",
                shape.batch, shape.tokens
            ),
        )?;
        Ok(shape.grid)
    }

    /// Why an accepted request got no answer: the worker failed, or it was shut down.
    fn closed_error(&self) -> EngineError {
        match &*self.inner.done.borrow() {
            WorkerState::Failed(reason) => EngineError::WorkerFailed(reason.clone()),
            _ => EngineError::ShuttingDown,
        }
    }

    /// Validates a request and builds its trajectories; `progress` receives its steps.
    fn prepare(
        &self,
        request: GenerateRequest,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Prepared, EngineError> {
        let Flavor::Dit {
            config,
            description,
        } = &self.inner.flavor
        else {
            return Err(self.wrong_flavor("a DiT generate request"));
        };
        let limits = &self.inner.config;
        limits.check_counts(request.num_images, request.params.steps)?;
        let grid = match request.grid {
            Some(grid) => grid,
            None => description.default_grid()?,
        };
        let plan = SamplingPlan::new(config, &request.params)?;
        // Rows and tokens per step, checked before any trajectory is built.
        let rows_per_image = if plan.params().guidance != 1.0 { 2 } else { 1 };
        let rows = request.num_images.saturating_mul(rows_per_image);
        limits.check_fits(
            rows,
            grid.tokens(),
            format!(
                "{} images need {rows} rows of {} tokens per step",
                request.num_images,
                grid.tokens()
            ),
        )?;
        check_sampling_size(config, grid, request.num_images)?;
        let classes = image_classes(config, request.class_label, request.num_images);
        let trajectories = request_trajectories(config, &plan, &classes, request.seed, grid)?;
        // The job's own count (equal to the estimate above).
        let rows: usize = trajectories.iter().map(StepBatch::rows_of).sum();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", id, class = ?request.class_label, images = request.num_images, steps = request.params.steps);
        let work = Work::Dit { grid, trajectories };
        let steps = request.params.steps;
        Ok(self.job(
            id,
            work,
            steps,
            rows,
            grid.tokens(),
            request.deadline,
            progress,
            span,
        ))
    }

    /// Validates a `sana` request and builds its trajectories; `progress` receives its
    /// steps. Rows (images × (1 + guided)) and tokens (rows × H/p · W/p) are checked
    /// against the limits, and the forward's memory against the allocation budget, before
    /// any trajectory is built.
    fn prepare_sana(
        &self,
        request: SanaGenerateRequest,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Prepared, EngineError> {
        let Flavor::Sana { config, dims } = &self.inner.flavor else {
            return Err(self.wrong_flavor("a sana generate request"));
        };
        let limits = &self.inner.config;
        let params = request
            .params
            .clone()
            .unwrap_or_else(|| FlowParams::for_model(config));
        limits.check_counts(request.num_images, params.steps)?;
        let (height, width) = (request.height, request.width);
        if height == 0
            || width == 0
            || !height.is_multiple_of(dims.patch)
            || !width.is_multiple_of(dims.patch)
        {
            return Err(Error::input(
                "height",
                format!(
                    "latents {height}×{width}: both must be positive multiples of patch_size = {}",
                    dims.patch
                ),
            )
            .into());
        }
        let captions = std::iter::once(&request.prompt).chain(&request.negative);
        if let Some(c) = captions
            .clone()
            .find(|c| c.embeds().shape()[1] != config.caption_channels)
        {
            return Err(Error::input(
                "prompt_embeds",
                format!(
                    "are {} wide; the model takes caption_channels = {}",
                    c.embeds().shape()[1],
                    config.caption_channels
                ),
            )
            .into());
        }
        let plan = FlowPlan::new(config, &params)?;
        let (rows_h, cols_w) = (height / dims.patch, width / dims.patch);
        let row_tokens = rows_h.saturating_mul(cols_w);
        let rows = request
            .num_images
            .saturating_mul(1 + usize::from(plan.is_guided()));
        limits.check_fits(
            rows,
            row_tokens,
            format!(
                "{} images of {height}×{width} latents need {rows} rows of {row_tokens} tokens per step",
                request.num_images
            ),
        )?;
        // The request's own forward, alone: within the limits above its sizes are small.
        let shape = SanaShape {
            batch: rows,
            height,
            width,
            rows: rows_h,
            cols: cols_w,
            texts: captions.map(|c| c.tokens()).max().unwrap_or(1),
        };
        crate::limits::check_alloc("the sana forward", sana_forward_bytes(dims, &shape))?;
        let trajectories = request_sana_trajectories(&plan, &request.sampling_request())?;
        // The job's own count (equal to the estimate above).
        let rows: usize = trajectories.iter().map(SanaStepBatch::rows_of).sum();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "request",
            id,
            flavor = "sana",
            images = request.num_images,
            steps = params.steps,
            height,
            width
        );
        let work = Work::Sana { trajectories };
        Ok(self.job(
            id,
            work,
            params.steps,
            rows,
            row_tokens,
            request.deadline,
            progress,
            span,
        ))
    }

    /// A validated job and where its answer will arrive.
    #[allow(clippy::too_many_arguments)]
    fn job(
        &self,
        id: u64,
        work: Work,
        steps: usize,
        rows: usize,
        row_tokens: usize,
        deadline: Option<Duration>,
        progress: Option<mpsc::Sender<Progress>>,
        span: tracing::Span,
    ) -> Prepared {
        let deadline = deadline
            .or(self.inner.config.default_deadline)
            .map(|limit| (Instant::now() + limit, limit));
        let (reply, rx) = oneshot::channel();
        let job = GenerateJob {
            id,
            steps,
            work,
            rows,
            row_tokens,
            submitted: Instant::now(),
            deadline,
            admitted: None,
            reply: Some(reply),
            progress,
            span,
        };
        (job, rx)
    }

    /// Puts a job in the queue, or rejects it (queue full, shutting down).
    fn enqueue(&self, job: Job) -> Result<(), EngineError> {
        let mut state = self.inner.shared.lock();
        if let WorkerState::Failed(reason) = &*self.inner.done.borrow() {
            self.inner.metrics.record(Outcome::Failed);
            return Err(EngineError::WorkerFailed(reason.clone()));
        }
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
        self.stopped().await;
    }

    /// Waits until the worker has stopped, and says how: drained after a shutdown, or
    /// failed (then the process should exit non-zero so that it is restarted).
    pub async fn stopped(&self) -> WorkerState {
        let mut done = self.inner.done.clone();
        match done.wait_for(|s| *s != WorkerState::Running).await {
            Ok(state) => state.clone(),
            Err(_) => WorkerState::Failed("the worker thread went away".into()),
        }
    }

    /// Whether the engine accepts requests: not shutting down, and its worker running.
    pub fn is_ready(&self) -> bool {
        !self.inner.shared.lock().shutting_down && *self.inner.done.borrow() == WorkerState::Running
    }

    /// Why the engine is not ready (for readiness answers).
    pub fn unready_reason(&self) -> String {
        match self.worker_state() {
            WorkerState::Failed(reason) => format!("the engine's worker has failed: {reason}"),
            WorkerState::Drained => "shut down".into(),
            WorkerState::Running => "shutting down".into(),
        }
    }

    /// The worker's state.
    pub fn worker_state(&self) -> WorkerState {
        self.inner.done.borrow().clone()
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The DiT model's config (`None` for a `sana` engine).
    pub fn model_config(&self) -> Option<&Config> {
        match &self.inner.flavor {
            Flavor::Dit { config, .. } => Some(config),
            Flavor::Sana { .. } => None,
        }
    }

    /// The DiT model's description: what requests default to (`None` for a `sana`
    /// engine).
    pub fn description(&self) -> Option<&ModelDescription> {
        match &self.inner.flavor {
            Flavor::Dit { description, .. } => Some(description),
            Flavor::Sana { .. } => None,
        }
    }

    /// The `sana` model's config (`None` for a DiT engine).
    pub fn sana_config(&self) -> Option<&SanaConfig> {
        match &self.inner.flavor {
            Flavor::Sana { config, .. } => Some(config),
            Flavor::Dit { .. } => None,
        }
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
