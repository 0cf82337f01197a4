//! The state shared by callers and the worker: a bounded FIFO of waiting jobs and the
//! shutdown flag, under one mutex, with a condition variable to wake the worker.

use super::request::{EngineError, Generated, Progress};
use super::sana_request::SanaForward;
use super::work::Work;
use crate::model::Grid;
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A generate request, validated and ready to run.
pub struct GenerateJob {
    /// Engine-wide request id (for logs).
    pub id: u64,
    /// Denoising steps each image takes.
    pub steps: usize,
    /// One trajectory per image, at pure noise.
    pub work: Work,
    /// Forward rows per step (images × (1 + guided)).
    pub rows: usize,
    /// Tokens of one row: the grid's (DiT) or the latent size's H/p · W/p (`sana`).
    pub row_tokens: usize,
    /// When it was accepted.
    pub submitted: Instant,
    /// When it must be done by.
    pub deadline: Option<(Instant, Duration)>,
    /// When the worker admitted it.
    pub admitted: Option<Instant>,
    /// Where the answer goes: `None` once answered; closed when the caller stopped waiting.
    pub reply: Option<oneshot::Sender<Result<Generated, EngineError>>>,
    /// Where finished steps are reported, for callers that asked
    /// ([`super::EngineHandle::generate_with_progress`]).
    pub progress: Option<mpsc::Sender<Progress>>,
    /// The request's tracing span.
    pub span: tracing::Span,
}

impl GenerateJob {
    /// Whether the caller stopped waiting before an answer was sent.
    pub fn is_abandoned(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| r.is_closed())
    }

    /// Offers the steps finished so far to the progress reader, if any. Never waits: with
    /// the reader's buffer full the step is dropped (the worker serves every request, and
    /// one slow reader must not hold up the rest); the answer goes its own way.
    pub fn report_progress(&self) {
        let Some(progress) = &self.progress else {
            return;
        };
        let step = self.work.steps_done();
        let total = self.work.steps_total();
        let elapsed = self.submitted.elapsed();
        // Full (a slow reader) or closed (the caller left; the slot is freed next step).
        let _ = progress.try_send(Progress {
            step,
            total,
            elapsed,
        });
    }

    /// Sends the answer (at most once).
    pub fn answer(&mut self, result: Result<Generated, EngineError>) {
        if let Some(reply) = self.reply.take()
            && reply.send(result).is_err()
        {
            self.span
                .in_scope(|| tracing::debug!("caller left before the answer"));
        }
    }
}

/// The inputs of a raw forward, validated against the served model.
pub enum ForwardInput {
    /// A DiT forward.
    Dit {
        /// `[B, N, D]`.
        x: Tensor,
        /// `[B]`.
        t: Vec<f32>,
        /// `[B]` for class-conditional models.
        y: Option<Vec<i64>>,
        /// Token grid (validated).
        grid: Grid,
    },
    /// A `sana` forward, and its tokens per row (H/p · W/p).
    Sana(Box<SanaForward>, usize),
}

/// A raw forward (the Open Inference Protocol endpoint), run between steps.
pub struct ForwardJob {
    /// What to run.
    pub input: ForwardInput,
    /// When it must be done by.
    pub deadline: Option<(Instant, Duration)>,
    /// Where the answer goes; closed when the caller stopped waiting.
    pub reply: oneshot::Sender<Result<Tensor, EngineError>>,
}

impl ForwardJob {
    /// Rows and tokens it adds to a forward.
    pub fn size(&self) -> (usize, usize) {
        let (rows, tokens) = match &self.input {
            ForwardInput::Dit { t, grid, .. } => (t.len(), grid.tokens()),
            ForwardInput::Sana(forward, tokens) => (forward.t.len(), *tokens),
        };
        (rows, rows.saturating_mul(tokens))
    }
}

/// Work for the worker.
pub enum Job {
    /// Images to denoise.
    Generate(Box<GenerateJob>),
    /// One raw forward.
    Forward(ForwardJob),
}

/// What the mutex guards.
#[derive(Default)]
pub struct State {
    /// Waiting jobs, oldest first.
    pub queue: VecDeque<Job>,
    /// No new jobs are accepted; the worker drains and exits.
    pub shutting_down: bool,
}

impl Job {
    /// Answers the job with `error` without running it.
    pub fn reject(self, error: EngineError) {
        match self {
            Job::Generate(mut g) => g.answer(Err(error)),
            Job::Forward(f) => {
                let _ = f.reply.send(Err(error));
            }
        }
    }
}

/// The queue and its wake-up signal.
#[derive(Default)]
pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// Locks the state (a panicked holder cannot leave it inconsistent: every update is a
    /// single push, pop or flag store).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the worker.
    pub fn notify(&self) {
        self.wake.notify_all();
    }

    /// Waits for a notification or `timeout`.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        self.wake
            .wait_timeout(guard, timeout)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0)
    }
}
