//! The worker: one thread per device, owning the model, running the scheduler loop.
//!
//! Each iteration it (1) admits waiting jobs in FIFO order while they fit the batch limits,
//! (2) drops requests whose caller went away or whose deadline passed, (3) runs waiting raw
//! forwards, (4) advances every active request by one denoising step — one batched forward
//! per token grid, conditional and unconditional halves together — and (5) answers the
//! requests that finished. New requests join between steps: continuous batching at step
//! granularity. A request admitted is never starved: every active request advances every
//! iteration, and admission never skips the head of the queue.

use super::EngineConfig;
use super::metrics::{Metrics, Outcome};
use super::queue::{ForwardJob, GenerateJob, Job, Shared};
use super::request::{EngineError, Generated};
use crate::model::{Grid, Input, Model};
use crate::sampling::StepBatch;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle worker sleeps before re-checking deadlines and cancellations.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Runs until shutdown is requested and every accepted job is answered.
pub fn run(model: Arc<Model>, config: EngineConfig, shared: Arc<Shared>, metrics: Arc<Metrics>) {
    let mut active: Vec<GenerateJob> = Vec::new();
    loop {
        let Some(forwards) = admit(&config, &shared, &metrics, &mut active) else {
            tracing::info!("engine worker drained; exiting");
            return;
        };
        let iteration = Instant::now();
        drop_abandoned(&mut active, &metrics);
        let mut forward_time = Duration::ZERO;
        for job in forwards {
            let start = Instant::now();
            run_forward(&model, job);
            forward_time += start.elapsed();
        }
        if !active.is_empty() {
            forward_time += step(&model, &mut active, &metrics);
            finish(&mut active, &metrics);
        }
        let elapsed = iteration.elapsed();
        metrics.step_seconds.observe(elapsed.as_secs_f64());
        metrics
            .overhead_seconds
            .observe(elapsed.saturating_sub(forward_time).as_secs_f64());
        metrics.set_load(shared.lock().queue.len(), active.len());
    }
}

/// Moves jobs from the queue into `active` while they fit; returns the raw forwards to run
/// now, or `None` when the engine is shut down and drained.
fn admit(
    config: &EngineConfig,
    shared: &Shared,
    metrics: &Metrics,
    active: &mut Vec<GenerateJob>,
) -> Option<Vec<ForwardJob>> {
    let mut state = shared.lock();
    loop {
        let mut forwards = Vec::new();
        let mut rows: usize = active.iter().map(|j| j.rows).sum();
        let mut tokens: usize = active
            .iter()
            .map(|j| j.rows * j.request.grid.tokens())
            .sum();
        while let Some(job) = state.queue.front() {
            let (job_rows, job_tokens) = match job {
                Job::Generate(g) => (g.rows, g.rows * g.request.grid.tokens()),
                Job::Forward(f) => (
                    f.t.len(),
                    f.x.data().len() / f.x.shape().last().copied().unwrap_or(1).max(1),
                ),
            };
            let fits = rows + job_rows <= config.max_batch
                && tokens + job_tokens <= config.max_tokens_per_forward;
            // An empty engine always takes the head, so no job waits forever.
            if !fits && (rows > 0 || !forwards.is_empty()) {
                break;
            }
            match state.queue.pop_front() {
                Some(Job::Generate(g)) if g.is_abandoned() => {
                    g.span
                        .in_scope(|| tracing::info!("caller went away while queued"));
                    metrics.record(Outcome::Cancelled);
                }
                Some(Job::Generate(mut g)) => {
                    g.admitted = Some(Instant::now());
                    g.span.in_scope(|| {
                        tracing::debug!(
                            queued_ms = g.submitted.elapsed().as_millis() as u64,
                            "admitted"
                        )
                    });
                    rows += job_rows;
                    tokens += job_tokens;
                    active.push(*g);
                }
                Some(Job::Forward(f)) => {
                    rows += job_rows;
                    tokens += job_tokens;
                    forwards.push(f);
                }
                None => break,
            }
        }
        metrics.set_load(state.queue.len(), active.len());
        if !active.is_empty() || !forwards.is_empty() {
            return Some(forwards);
        }
        if state.shutting_down && state.queue.is_empty() {
            return None;
        }
        state = shared.wait(state, IDLE_POLL);
    }
}

/// Frees the slots of requests nobody waits for, and fails those past their deadline.
fn drop_abandoned(active: &mut Vec<GenerateJob>, metrics: &Metrics) {
    let now = Instant::now();
    active.retain_mut(|job| {
        if job.is_abandoned() {
            job.span
                .in_scope(|| tracing::info!("caller went away; slot freed"));
            metrics.record(Outcome::Cancelled);
            return false;
        }
        match job.deadline {
            Some((at, limit)) if now >= at => {
                job.span
                    .in_scope(|| tracing::warn!(?limit, "deadline passed; slot freed"));
                metrics.record(Outcome::DeadlineExceeded);
                job.answer(Err(EngineError::DeadlineExceeded(limit)));
                false
            }
            _ => true,
        }
    });
}

/// One raw forward.
fn run_forward(model: &Model, job: ForwardJob) {
    let input = Input {
        x: &job.x,
        t: &job.t,
        y: job.y.as_deref(),
        grid: job.grid,
    };
    let result = model.forward(&input).map_err(|e| match e {
        crate::Error::InvalidInput { .. } => EngineError::Invalid(e),
        other => EngineError::Failed(other.to_string()),
    });
    let _ = job.reply.send(result);
}

/// Advances every active request one step; returns the time spent in forwards.
fn step(model: &Model, active: &mut [GenerateJob], metrics: &Metrics) -> Duration {
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, job) in active.iter().enumerate() {
        groups
            .entry((job.request.grid.rows, job.request.grid.cols))
            .or_default()
            .push(i);
    }
    let mut forward_time = Duration::ZERO;
    for ((rows, cols), members) in groups {
        let grid = Grid::new(rows, cols);
        let mut batch = StepBatch::default();
        for &i in &members {
            for tr in active[i].trajectories.iter().filter(|t| !t.is_done()) {
                batch.push(tr);
            }
        }
        let batch_rows = batch.rows();
        let span = tracing::debug_span!("step", rows = batch_rows, grid = %grid);
        let _guard = span.enter();
        let start = Instant::now();
        let result = batch.run(model, grid);
        let seconds = start.elapsed();
        forward_time += seconds;
        metrics.batch_rows.observe(batch_rows as f64);
        metrics.forward_seconds.observe(seconds.as_secs_f64());
        metrics.record_tokens((batch_rows * grid.tokens()) as u64, seconds.as_secs_f64());
        match result {
            Ok(eps) => advance(active, &members, &eps),
            Err(e) => {
                tracing::error!(error = %e, "forward failed; failing its requests");
                for &i in &members {
                    fail(&mut active[i], EngineError::Failed(e.to_string()), metrics);
                }
            }
        }
    }
    forward_time
}

/// Splits a group's ε back to its trajectories and advances them.
fn advance(active: &mut [GenerateJob], members: &[usize], eps: &Tensor) {
    let width = eps.data().len() / eps.shape()[0].max(1);
    let mut row = 0;
    for &i in members {
        for tr in active[i].trajectories.iter_mut().filter(|t| !t.is_done()) {
            let cond = &eps.data()[row * width..(row + 1) * width];
            let uncond = tr
                .is_guided()
                .then(|| &eps.data()[(row + 1) * width..(row + 2) * width]);
            row += StepBatch::rows_of(tr);
            if let Err(e) = tr.advance(cond, uncond) {
                tracing::error!(error = %e, "trajectory could not advance");
            }
        }
    }
}

/// Answers a failed request; [`finish`] then frees its slot.
fn fail(job: &mut GenerateJob, error: EngineError, metrics: &Metrics) {
    metrics.record(Outcome::Failed);
    job.answer(Err(error));
}

/// Answers and removes the requests whose every image is done, and removes those already
/// answered (failed) or abandoned.
fn finish(active: &mut Vec<GenerateJob>, metrics: &Metrics) {
    active.retain_mut(|job| {
        if job.reply.is_none() {
            return false;
        }
        if job.is_abandoned() {
            metrics.record(Outcome::Cancelled);
            return false;
        }
        if !job.trajectories.iter().all(|t| t.is_done()) {
            return true;
        }
        let elapsed = job.submitted.elapsed();
        let queued = job
            .admitted
            .map_or(Duration::ZERO, |a| a.duration_since(job.submitted));
        match collect_images(job) {
            Ok(images) => {
                job.span.in_scope(|| {
                    tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "completed")
                });
                metrics.record(Outcome::Ok);
                let steps = job.request.params.steps;
                job.answer(Ok(Generated {
                    images,
                    queued,
                    elapsed,
                    steps,
                }));
            }
            Err(e) => fail(job, EngineError::Failed(e.to_string()), metrics),
        }
        false
    });
}

/// `[n, C, H, W]` from a finished job's trajectories.
fn collect_images(job: &GenerateJob) -> crate::Result<Tensor> {
    let mut data = Vec::new();
    let mut shape = vec![job.trajectories.len()];
    for tr in &job.trajectories {
        let image = tr.image()?;
        if shape.len() == 1 {
            shape.extend_from_slice(image.shape());
        }
        data.extend_from_slice(image.data());
    }
    Tensor::new(shape, data)
}
