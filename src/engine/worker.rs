//! The worker: the engine's one thread, owning the model (on its one device), running the
//! scheduler loop.
//!
//! Each iteration it (1) admits waiting jobs in FIFO order while they fit the batch limits,
//! (2) drops requests whose caller went away or whose deadline passed, (3) runs waiting raw
//! forwards, (4) advances every active request by one denoising step — one batched forward
//! per token grid (DiT) or latent size (`sana`, captions of any length padded to the
//! longest), conditional and unconditional halves together, each step reported to the
//! requests that asked for progress — and (5) answers the requests that finished. New
//! requests join between steps: continuous batching at step granularity. A request admitted is never starved: every active request advances every
//! iteration, and admission never skips the head of the queue.

use super::EngineConfig;
use super::metrics::{Metrics, Outcome};
use super::queue::{ForwardInput, ForwardJob, GenerateJob, Job, Shared};
use super::request::{EngineError, Generated};
use super::work::{GroupBatch, GroupKey, GroupRows, Served};
use crate::model::Input;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle worker sleeps before re-checking deadlines and cancellations.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Forwards in a row that may panic before the worker gives up: one panic is a bad request
/// or a bug on one input, and fails only that forward; several in a row mean the model or
/// the device is broken, and the engine should be restarted rather than fail every request.
const MAX_CONSECUTIVE_PANICS: u32 = 3;

/// Runs until shutdown is requested and every accepted job is answered (`Ok`), or until
/// forwards keep panicking (`Err` with the reason, after answering the active requests).
pub fn run(
    model: Served,
    config: EngineConfig,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let mut active: Vec<GenerateJob> = Vec::new();
    let mut panics = PanicCount::default();
    loop {
        let Some(forwards) = admit(&config, &shared, &metrics, &mut active) else {
            tracing::info!("engine worker drained; exiting");
            return Ok(());
        };
        let iteration = Instant::now();
        drop_abandoned(&mut active, &metrics);
        let mut forward_time = Duration::ZERO;
        for job in forwards {
            let start = Instant::now();
            run_forward(&model, job, &metrics, &mut panics);
            forward_time += start.elapsed();
        }
        if !active.is_empty() {
            forward_time += step(&model, &mut active, &metrics, &mut panics);
            finish(&mut active, &metrics);
        }
        if let Some(reason) = panics.fatal() {
            for job in &mut active {
                metrics.record(Outcome::Failed);
                job.answer(Err(EngineError::WorkerFailed(reason.clone())));
            }
            return Err(reason);
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
        let mut tokens: usize = active.iter().map(|j| j.rows * j.row_tokens).sum();
        while let Some(job) = state.queue.front() {
            let (job_rows, job_tokens) = match job {
                Job::Generate(g) => (g.rows, g.rows * g.row_tokens),
                Job::Forward(f) => f.size(),
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

/// Consecutive panicking forwards.
#[derive(Default)]
struct PanicCount {
    in_a_row: u32,
    last: String,
}

impl PanicCount {
    /// The reason to stop the worker, once too many forwards in a row panicked.
    fn fatal(&self) -> Option<String> {
        (self.in_a_row >= MAX_CONSECUTIVE_PANICS).then(|| {
            format!(
                "{} forwards in a row panicked; the last: {}",
                self.in_a_row, self.last
            )
        })
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs one forward, turning a panic into an error: the panicking forward fails its own
/// requests and nothing else.
fn guarded_forward(
    forward: &dyn Fn() -> crate::Result<Tensor>,
    panics: &mut PanicCount,
) -> Result<Tensor, EngineError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(forward)) {
        Ok(result) => {
            panics.in_a_row = 0;
            result.map_err(|e| match e {
                crate::Error::InvalidInput { .. } => EngineError::Invalid(e),
                crate::Error::TooLarge { .. } => EngineError::TooLarge(e.to_string()),
                other => EngineError::Failed(other.to_string()),
            })
        }
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(panic = %message, "a forward panicked; failing its requests");
            panics.in_a_row += 1;
            panics.last.clone_from(&message);
            Err(EngineError::Failed(format!(
                "internal error (a bug in linear-dit): the forward panicked: {message}"
            )))
        }
    }
}

/// Answers every queued job with the worker's failure and refuses new ones.
pub fn fail_queued(shared: &Shared, metrics: &Metrics, reason: &str) {
    let mut state = shared.lock();
    state.shutting_down = true;
    let jobs: Vec<Job> = state.queue.drain(..).collect();
    metrics.set_load(0, 0);
    drop(state);
    for job in jobs {
        metrics.record(Outcome::Failed);
        job.reject(EngineError::WorkerFailed(reason.to_string()));
    }
}

/// One raw forward, unless its caller went away or its deadline passed.
fn run_forward(model: &Served, job: ForwardJob, metrics: &Metrics, panics: &mut PanicCount) {
    if job.reply.is_closed() {
        metrics.record(Outcome::Cancelled);
        return;
    }
    if let Some((at, limit)) = job.deadline
        && Instant::now() >= at
    {
        metrics.record(Outcome::DeadlineExceeded);
        let _ = job.reply.send(Err(EngineError::DeadlineExceeded(limit)));
        return;
    }
    let result = match (model, &job.input) {
        (Served::Dit(model), ForwardInput::Dit { x, t, y, grid }) => {
            let input = Input {
                x,
                t,
                y: y.as_deref(),
                grid: Some(*grid),
            };
            guarded_forward(&|| model.forward(&input), panics)
        }
        (Served::Sana(model), ForwardInput::Sana(forward, _)) => {
            let input = forward.input();
            guarded_forward(&|| model.forward(&input), panics)
        }
        _ => Err(EngineError::Failed(
            "a forward of one flavor reached a model of the other (a bug in the engine)".into(),
        )),
    };
    metrics.record(match &result {
        Ok(_) => Outcome::Ok,
        Err(e) => e.outcome(),
    });
    let _ = job.reply.send(result);
}

/// Advances every active request one step; returns the time spent in forwards.
fn step(
    model: &Served,
    active: &mut [GenerateJob],
    metrics: &Metrics,
    panics: &mut PanicCount,
) -> Duration {
    let mut forward_time = Duration::ZERO;
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, job) in active.iter().enumerate() {
        groups.entry(job.work.group()).or_default().push(i);
    }
    for (key, members) in groups {
        let batch = GroupBatch::new(key, members.iter().map(|&i| &active[i].work));
        let batch_rows = batch.rows();
        // Every member of a group has the same tokens per row.
        let row_tokens = active[members[0]].row_tokens;
        let span = tracing::debug_span!("step", rows = batch_rows, group = ?key);
        let _guard = span.enter();
        let start = Instant::now();
        let result = batch.run(model, |forward| guarded_forward(forward, panics));
        let seconds = start.elapsed();
        forward_time += seconds;
        metrics.batch_rows.observe(batch_rows as f64);
        metrics.forward_seconds.observe(seconds.as_secs_f64());
        metrics.record_tokens((batch_rows * row_tokens) as u64, seconds.as_secs_f64());
        match result {
            Ok(out) => advance(active, key, &members, &out, metrics),
            Err(e) => {
                tracing::error!(error = %e, "forward failed; failing its requests");
                let error = match e {
                    EngineError::Failed(reason) => reason,
                    other => other.to_string(),
                };
                for &i in &members {
                    fail(&mut active[i], EngineError::Failed(error.clone()), metrics);
                }
            }
        }
    }
    forward_time
}

/// Splits a group's output back to its trajectories and advances them; a request whose
/// trajectory cannot advance fails (it is never left behind half-denoised).
fn advance(
    active: &mut [GenerateJob],
    key: GroupKey,
    members: &[usize],
    out: &Tensor,
    metrics: &Metrics,
) {
    let mut rows = GroupRows::new(key, out);
    for &i in members {
        let job = &mut active[i];
        match job.work.advance(&mut rows) {
            Ok(()) => job.report_progress(),
            Err(e) => {
                job.span
                    .in_scope(|| tracing::error!(error = %e, "trajectory could not advance"));
                fail(job, EngineError::Failed(e.to_string()), metrics);
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
        if !job.work.is_done() {
            return true;
        }
        let elapsed = job.submitted.elapsed();
        let queued = job
            .admitted
            .map_or(Duration::ZERO, |a| a.duration_since(job.submitted));
        match job.work.outputs() {
            Ok(images) => {
                job.span.in_scope(|| {
                    tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "completed")
                });
                metrics.record(Outcome::Ok);
                let steps = job.steps;
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
