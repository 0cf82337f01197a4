//! What callers ask of the engine, how each answer can fail, and — for callers that want
//! to show progress — the step-by-step report of a running request ([`Generation`]).

use super::metrics::Outcome;
use crate::error::Error;
use crate::model::Grid;
use crate::sampling::SamplingParams;
use crate::tensor::Tensor;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A request for `num_images` images.
///
/// Build one from [`GenerateRequest::default`] (one image, [`SamplingParams::default`],
/// seed 0, the model's grid, the engine's deadline) with the `with_*` methods; for a
/// model's own sampling defaults pass
/// [`crate::sampling::ModelDescription::default_sampling`] to [`Self::with_params`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GenerateRequest {
    /// The class to generate. `None`: for a class-conditional model, classes cycle
    /// 0, 1, …, C−1 over the images (as `linear-dit sample` without `--class`); for an
    /// unconditional model, the only choice.
    pub class_label: Option<usize>,
    /// Images to generate; image `i` is seeded by (`seed`, `i`), so the result equals
    /// `linear-dit sample --seed S` whatever else the engine is running.
    pub num_images: usize,
    /// Sampler, steps, guidance, schedule.
    pub params: SamplingParams,
    /// Noise seed.
    pub seed: u64,
    /// Token grid of each image; `None`: the grid of the engine's model description
    /// ([`crate::sampling::ModelDescription::grid`]).
    pub grid: Option<Grid>,
    /// Give up (HTTP 504) if not done within this time of submission; `None`: the engine's
    /// default.
    pub deadline: Option<Duration>,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            class_label: None,
            num_images: 1,
            params: SamplingParams::default(),
            seed: 0,
            grid: None,
            deadline: None,
        }
    }
}

impl GenerateRequest {
    /// With images of class `class` (default: cycling through the classes).
    pub fn with_class(mut self, class: usize) -> Self {
        self.class_label = Some(class);
        self
    }

    /// With `num_images` images (default 1).
    pub fn with_num_images(mut self, num_images: usize) -> Self {
        self.num_images = num_images;
        self
    }

    /// With sampler, steps, guidance and schedule `params`.
    pub fn with_params(mut self, params: SamplingParams) -> Self {
        self.params = params;
        self
    }

    /// With noise seed `seed` (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With images of `grid` tokens instead of the model's default grid.
    pub fn with_grid(mut self, grid: Grid) -> Self {
        self.grid = Some(grid);
        self
    }

    /// Giving up after `deadline` from submission instead of the engine's default deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// A completed request.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `[n, C, H, W]` in [−1, 1].
    pub images: Tensor,
    /// Time spent waiting for a slot.
    pub queued: Duration,
    /// Time from submission to completion.
    pub elapsed: Duration,
    /// Denoising steps each image took.
    pub steps: usize,
}

/// Why the engine did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] Error),
    /// The request can never fit one forward (HTTP 400).
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The queue is full (HTTP 429); nothing was done, retry later.
    #[error("queue full: {0} requests are waiting; retry later")]
    QueueFull(usize),
    /// The engine is shutting down (HTTP 503).
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The deadline passed before completion (HTTP 504); the request's slot was freed.
    #[error("deadline of {0:?} passed before the request completed")]
    DeadlineExceeded(Duration),
    /// A forward failed (HTTP 500); the engine goes on serving.
    #[error("inference failed: {0}")]
    Failed(String),
    /// The engine's worker has stopped after a failure it could not recover from (HTTP 503):
    /// this engine serves nothing more and must be restarted.
    #[error("the engine's worker has failed and serves no more requests: {0}")]
    WorkerFailed(String),
}

impl EngineError {
    /// How a request that ended with this error is counted.
    pub fn outcome(&self) -> Outcome {
        match self {
            EngineError::Invalid(_) | EngineError::TooLarge(_) => Outcome::Invalid,
            EngineError::QueueFull(_) => Outcome::QueueFull,
            EngineError::ShuttingDown => Outcome::ShuttingDown,
            EngineError::DeadlineExceeded(_) => Outcome::DeadlineExceeded,
            EngineError::Failed(_) | EngineError::WorkerFailed(_) => Outcome::Failed,
        }
    }
}

/// One finished denoising step of a running request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Steps finished so far, 1 … `total`.
    pub step: usize,
    /// Steps the request takes.
    pub total: usize,
    /// Time from submission to the end of this step.
    pub elapsed: Duration,
}

/// What a [`Generation`] reports next.
#[derive(Debug)]
pub enum GenerationEvent {
    /// A step finished.
    Step(Progress),
    /// The request's answer; nothing follows it.
    Done(Result<Generated, EngineError>),
}

/// A generate request the engine accepted, reporting its steps as they finish
/// ([`super::EngineHandle::generate_with_progress`]).
///
/// The worker never waits for a slow reader: it offers each step to a buffer of up to
/// [`super::PROGRESS_BUFFER`] unread steps and drops the step when the buffer is full, so a
/// reader that falls that far behind misses intermediate steps. The answer has its own
/// channel and always arrives, after every step that was buffered. Dropping the
/// `Generation` cancels the request: its slot is freed at the next step.
pub struct Generation {
    pub(super) progress: mpsc::Receiver<Progress>,
    pub(super) answer: oneshot::Receiver<Result<Generated, EngineError>>,
    /// The answer, once it arrived (steps still buffered go out before it).
    pub(super) held: Option<Result<Generated, EngineError>>,
    pub(super) finished: bool,
    /// The engine, to say why an accepted request got no answer.
    pub(super) engine: super::EngineHandle,
}

impl Generation {
    /// The next event, in order: the steps, then the answer; `None` after the answer.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        if self.finished {
            return None;
        }
        if self.held.is_none() {
            tokio::select! {
                biased;
                Some(step) = self.progress.recv() => return Some(GenerationEvent::Step(step)),
                answer = &mut self.answer => {
                    self.held = Some(answer.unwrap_or_else(|_| Err(self.engine.closed_error())));
                }
            }
        }
        // The worker offers a step before it sends the answer, so steps may still be
        // buffered behind an answer that is already in: they go first.
        match self.progress.try_recv() {
            Ok(step) => Some(GenerationEvent::Step(step)),
            Err(_) => {
                self.finished = true;
                self.held.take().map(GenerationEvent::Done)
            }
        }
    }
}
