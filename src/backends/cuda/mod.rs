//! The CUDA backend: hand-written kernels (`kernels/`) for the fused AdaLN, linear attention
//! and conditioning, cuBLASLt for the GEMMs, bf16/fp16 storage with fp32 accumulation (or
//! fp32 throughout as an on-GPU reference), one arena per forward shape, and the whole
//! forward captured as a CUDA graph after warm-up.
//!
//! Work is issued on a compute stream; inputs and outputs move through pinned staging
//! buffers on a copy stream, ordered by events. The backend is `Send + Sync`: a mutex
//! serialises forwards on the device (the serving engine runs one worker per device anyway).

mod attention_variant;
pub mod blas;
pub mod device;
mod forward;
mod kernel_constants;
pub mod module;
mod ops;
mod plan;
pub mod profile;
mod streams;
#[cfg(test)]
mod tests;
mod weights;

pub use device::{CudaLibrary, DeviceInfo};
pub use module::{KernelBuild, kernel_build};
pub use ops::StorageType;

use super::{Backend, Precision};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::embedding::sincos_positions;
use crate::model::position_cache::{DEFAULT_POSITION_CACHE_BYTES, PositionCache};
use crate::model::{ForwardShape, Grid, Input};
use crate::tensor::Tensor;
use crate::weights::Weights;
use blas::Blas;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaStream};
use device::{device_error, guarded, is_internal_error, unavailable};
use forward::Device;
use module::Kernels;
use ops::Ops;
use plan::{Plan, batch_bucket};
use profile::Profiler;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use streams::{Step, Stream};
use weights::{DeviceBuffer, DeviceWeights};

/// Forward shapes (and their graphs) kept at once; the oldest is dropped beyond this.
const MAX_PLANS: usize = 16;

/// The CUDA backend for one set of weights on one device.
pub struct CudaBackend {
    config: Config,
    dtype: StorageType,
    info: DeviceInfo,
    state: Mutex<State>,
}

struct State {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    ops: Ops,
    blas: Blas,
    weights: DeviceWeights,
    plans: HashMap<(usize, usize), Plan>,
    plan_order: Vec<(usize, usize)>,
    /// dit position tables by grid, the most recently used up to
    /// [`DEFAULT_POSITION_CACHE_BYTES`]; a plan whose graph reads one holds it too.
    positions: PositionCache<DeviceBuffer>,
    use_graphs: bool,
    graph_stats: GraphStats,
    /// The internal error that interrupted an earlier call, if any: after a bug the state
    /// may be half-updated (a stream left capturing, a plan half-built), so nothing runs on it.
    broken: Option<String>,
}

// SAFETY: every CUDA object in `State` is only touched with the mutex held, and the context
// is bound to the calling thread before use.
unsafe impl Send for State {}

impl CudaBackend {
    /// Opens device 0 and uploads `weights` in `precision` (`Auto`: bf16).
    pub fn new(weights: &Weights, precision: Precision) -> Result<Self> {
        let dtype = match precision {
            Precision::Auto | Precision::Bf16 => StorageType::Bf16,
            Precision::F16 => StorageType::F16,
            Precision::F32 => StorageType::F32,
        };
        let config = weights.config().clone();
        if config.head_dim() > ops::MAX_HEAD_DIM {
            return Err(unavailable(format!(
                "head_dim {} exceeds the {} the attention kernels support",
                config.head_dim(),
                ops::MAX_HEAD_DIM
            )));
        }
        let info = device::devices()?.remove(0);
        if !CudaLibrary::CublasLt.is_present() {
            return Err(unavailable(
                "libcublasLt.so was not found (needed for the GEMMs); put the CUDA libraries on LD_LIBRARY_PATH",
            ));
        }
        let state = guarded("opening the GPU", || {
            // A GPU that cannot be opened (taken in exclusive mode, out of memory) is not usable
            // here: `--backend auto` runs on the CPU instead.
            let ctx = CudaContext::new(0)
                .map_err(|e| unavailable(format!("creating the CUDA context failed: {e}")))?;
            // The arena is ordered by hand (one compute stream, events for the copies): the
            // per-buffer event tracking cudarc does by default would only add overhead.
            // SAFETY: no buffer of this context is shared across streams without our events.
            unsafe { ctx.disable_event_tracking() };
            raise_pool_threshold(&ctx);
            let compute = ctx
                .new_stream()
                .map_err(|e| device_error("creating the compute stream", e))?;
            let copy = ctx
                .new_stream()
                .map_err(|e| device_error("creating the copy stream", e))?;
            let kernels = Kernels::load(&ctx, info.compute_capability)?;
            tracing::info!(origin = %kernels.origin, "kernels loaded");
            let ops = Ops::new(&kernels, dtype, compute.clone())?;
            let blas = Blas::new(compute.clone(), info.compute_capability.0)?;
            let weights = DeviceWeights::upload(weights, dtype, &compute)?;
            compute
                .synchronize()
                .map_err(|e| device_error("uploading weights", e))?;
            Ok(State {
                ctx,
                compute,
                copy,
                ops,
                blas,
                weights,
                plans: HashMap::new(),
                plan_order: Vec::new(),
                positions: PositionCache::new(DEFAULT_POSITION_CACHE_BYTES),
                use_graphs: std::env::var_os("LINEAR_DIT_NO_GRAPHS").is_none(),
                graph_stats: GraphStats::default(),
                broken: None,
            })
        })?;
        Ok(CudaBackend {
            config,
            dtype,
            info,
            state: Mutex::new(state),
        })
    }

    /// The device.
    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    /// The storage type's name: `f32`, `bf16` or `f16`.
    pub fn describe_precision(&self) -> &'static str {
        self.dtype.suffix()
    }

    /// One eager forward of `input`, timed phase by phase with events (for benchmarks; the
    /// inputs are validated like any forward's).
    pub fn profile(&self, input: &Input<'_>) -> Result<Phases> {
        let shape = crate::model::validate(&self.config, input)?;
        self.with_state("profiling the forward", |state| {
            state
                .forward(&self.config, self.dtype, input, shape, true)
                .map(|(_, phases)| phases)
        })
    }

    /// The device's measured copy bandwidth and bf16 GEMM throughput.
    pub fn ceilings(&self) -> Result<profile::Ceilings> {
        self.with_state("measuring the device's ceilings", |state| {
            profile::measure_ceilings(&state.compute, &mut state.blas)
        })
    }

    /// Turns CUDA graphs on or off (on by default; `LINEAR_DIT_NO_GRAPHS` turns them off at
    /// start), e.g. to compare replay with eager launches. Off, no graph is captured or
    /// replayed any more, and those captured so far are dropped.
    pub fn set_graphs(&self, enabled: bool) {
        let mut state = self.lock();
        state.use_graphs = enabled;
        if !enabled {
            for plan in state.plans.values_mut() {
                plan.graph = None;
                plan.captured_positions = None;
            }
        }
    }

    /// How many forwards were captured as CUDA graphs and replayed so far.
    pub fn graph_stats(&self) -> GraphStats {
        self.lock().graph_stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic never leaves the lock poisoned half-way: `with_state` catches it and
        // records it in `broken`, which is what refuses later calls.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state under [`guarded`]. A bug (a caught panic) marks the state broken:
    /// this and every later call return that internal error rather than run on a state the
    /// panic may have left half-updated.
    fn with_state<T>(&self, what: &str, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut state = self.lock();
        if let Some(bug) = &state.broken {
            return Err(Error::Device {
                backend: "cuda",
                reason: format!("{bug} (an earlier call hit it; this backend runs nothing more)"),
            });
        }
        let result = guarded(what, || f(&mut state));
        if let Err(error @ Error::Device { reason, .. }) = &result
            && is_internal_error(error)
        {
            state.broken = Some(reason.clone());
        }
        result
    }
}

/// Lets the stream-ordered pool keep freed memory instead of returning it to the driver at
/// every synchronisation (the default threshold is 0).
fn raise_pool_threshold(ctx: &Arc<CudaContext>) {
    let result = (|| {
        // SAFETY: the device handle comes from a live context; the attribute is a u64.
        unsafe {
            let pool = cudarc::driver::result::device::get_default_mem_pool(ctx.cu_device())?;
            let mut threshold: u64 = u64::MAX;
            cudarc::driver::result::mem_pool::set_attribute(
                pool,
                cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold) as *mut u64 as *mut std::ffi::c_void,
            )
        }
    })();
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not raise the memory pool's release threshold");
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn describe(&self) -> String {
        format!(
            "cuda: {} (sm_{}{}, {})",
            self.info.name,
            self.info.compute_capability.0,
            self.info.compute_capability.1,
            self.dtype.suffix()
        )
    }

    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> Result<Tensor> {
        self.with_state("running the forward", |state| {
            state
                .forward(&self.config, self.dtype, input, shape, false)
                .map(|(eps, _)| eps)
        })
    }
}

/// Milliseconds per forward phase: (phase, ms, occurrences), in order.
pub type Phases = Vec<(&'static str, f64, usize)>;

/// How the forward's work is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// Kernel by kernel.
    Eager,
    /// Captured as a CUDA graph, then launched.
    Capture,
    /// The plan's captured graph, launched again.
    Replay,
}

/// How to launch a forward: eagerly when profiling (phases are timed between launches) or
/// with graphs turned off — even if a graph was captured before, so that `set_graphs(false)`
/// means no graph runs —, by replay when a graph is captured, by capture once a plan has run
/// eagerly (everything it needs resolved) and capture has not failed before.
fn launch_mode(
    profile: bool,
    use_graphs: bool,
    captured: bool,
    eager_runs: usize,
    graph_failed: bool,
) -> Launch {
    if profile || !use_graphs {
        Launch::Eager
    } else if captured {
        Launch::Replay
    } else if eager_runs >= 1 && !graph_failed {
        Launch::Capture
    } else {
        Launch::Eager
    }
}

/// CUDA-graph captures and launches of graphs (a capture's first launch included) since the
/// backend was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Forwards captured as a graph.
    pub captures: u64,
    /// Forwards run by launching a captured graph.
    pub replays: u64,
}

impl State {
    /// One forward; with `profile`, eager and timed phase by phase. The steps and their order
    /// across the two streams are [`streams::forward_steps`].
    fn forward(
        &mut self,
        config: &Config,
        dtype: StorageType,
        input: &Input<'_>,
        shape: ForwardShape,
        profile: bool,
    ) -> Result<(Tensor, Phases)> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| device_error("binding the context", e))?;
        let (batch, tokens) = (shape.batch, shape.tokens);
        let key = (batch_bucket(batch), tokens);
        let n_out = batch * tokens * config.input_dim;
        let mut profiler = None;
        for step in streams::forward_steps(!self.plans.contains_key(&key)) {
            match step {
                Step::NewArena => {
                    if self.plans.len() >= MAX_PLANS {
                        let oldest = self.plan_order.remove(0);
                        self.plans.remove(&oldest);
                    }
                    let plan = Plan::new(config, dtype, key.0, tokens, &self.compute)?;
                    self.plans.insert(key, plan);
                    self.plan_order.push(key);
                }
                Step::Upload => {
                    let plan = plan_mut(&mut self.plans, key)?;
                    stage_inputs(plan, input, batch)?;
                    upload(plan, &self.copy, config)?;
                }
                Step::Order { from, to } => {
                    let event = self
                        .stream(from)
                        .record_event(None)
                        .map_err(|e| device_error("recording an event", e))?;
                    self.stream(to)
                        .wait(&event)
                        .map_err(|e| device_error("ordering the streams", e))?;
                }
                Step::Forward => profiler = self.run(config, key, shape.grid, profile)?,
                Step::Download => download(plan_mut(&mut self.plans, key)?, &self.copy, n_out)?,
                Step::HostWait(stream) => self
                    .stream(stream)
                    .synchronize()
                    .map_err(|e| device_error("the forward", e))?,
            }
        }
        let phases = profiler.map(Profiler::finish).transpose()?;
        let plan = plan_mut(&mut self.plans, key)?;
        let out = plan
            .staging
            .out
            .as_slice()
            .map_err(|e| device_error("reading the output", e))?;
        let eps = Tensor::new(vec![batch, tokens, config.input_dim], out[..n_out].to_vec())?;
        Ok((eps, phases.unwrap_or_default()))
    }

    fn stream(&self, stream: Stream) -> &Arc<CudaStream> {
        match stream {
            Stream::Compute => &self.compute,
            Stream::Copy => &self.copy,
        }
    }

    /// Enqueues the forward of plan `key` on the compute stream (inputs already uploaded):
    /// eager, captured or replayed ([`launch_mode`]); with `profile`, returns the profiler
    /// timing its phases.
    fn run(
        &mut self,
        config: &Config,
        key: (usize, usize),
        grid: Grid,
        profile: bool,
    ) -> Result<Option<Profiler>> {
        let positions = match config.flavor {
            crate::config::Flavor::Dit => {
                let h = config.hidden_size;
                let bytes = grid.tokens() * h * std::mem::size_of::<f32>();
                let compute = &self.compute;
                Some(self.positions.get_or_try_insert_with(grid, bytes, || {
                    let table = sincos_positions(h, grid);
                    DeviceBuffer::upload(compute, bytemuck::cast_slice(&table))
                })?)
            }
            crate::config::Flavor::Edifice => None,
        };
        let address = positions.as_ref().map_or(0, |p| p.addr());
        let plan = plan_mut(&mut self.plans, key)?;
        // A graph captured for another grid of the same token count reads that grid's table
        // (which the plan keeps alive, so its address cannot have been reused meanwhile).
        let captured_address = plan.captured_positions.as_ref().map_or(0, |p| p.addr());
        if plan.graph.is_some() && captured_address != address {
            plan.graph = None;
            plan.captured_positions = None;
        }
        let mut profiler = match profile {
            true => Some(Profiler::new(self.compute.clone())?),
            false => None,
        };
        let mut device = Device {
            config,
            ops: &self.ops,
            blas: &mut self.blas,
            weights: &self.weights,
            positions: address,
            profiler: profiler.as_mut(),
        };
        let mode = launch_mode(
            profile,
            self.use_graphs,
            plan.graph.is_some(),
            plan.eager_runs,
            plan.graph_failed,
        );
        match (mode, &plan.graph) {
            (Launch::Replay, Some(graph)) => {
                graph
                    .launch()
                    .map_err(|e| device_error("launching the CUDA graph", e))?;
                self.graph_stats.replays += 1;
            }
            (Launch::Capture, _) => match capture(&self.compute, &mut device, plan) {
                Ok(graph) => {
                    graph
                        .launch()
                        .map_err(|e| device_error("launching the CUDA graph", e))?;
                    tracing::debug!(
                        batch = plan.batch,
                        tokens = plan.tokens,
                        "captured the forward as a CUDA graph"
                    );
                    plan.graph = Some(graph);
                    plan.captured_positions = positions;
                    self.graph_stats.captures += 1;
                    self.graph_stats.replays += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CUDA graph capture failed; running eagerly from now on");
                    plan.graph_failed = true;
                    device.enqueue(plan)?;
                }
            },
            (Launch::Eager | Launch::Replay, _) => {
                device.enqueue(plan)?;
                plan.eager_runs += 1;
            }
        }
        Ok(profiler)
    }
}

/// The plan of `key`, which the forward's first step made if it was missing.
fn plan_mut(plans: &mut HashMap<(usize, usize), Plan>, key: (usize, usize)) -> Result<&mut Plan> {
    plans
        .get_mut(&key)
        .ok_or_else(|| device_error("the forward", format!("no plan for {key:?}")))
}

/// Captures `device.enqueue(plan)` on `stream` as a graph.
fn capture(
    stream: &Arc<CudaStream>,
    device: &mut Device<'_>,
    plan: &Plan,
) -> Result<cudarc::driver::CudaGraph> {
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(|e| device_error("beginning graph capture", e))?;
    let enqueued = device.enqueue(plan);
    let graph = stream.end_capture(CUgraphInstantiate_flags(0));
    enqueued?;
    graph
        .map_err(|e| device_error("ending graph capture", e))?
        .ok_or_else(|| device_error("graph capture", "captured nothing"))
}

/// Copies the inputs into the pinned staging buffers, padding the batch bucket with
/// harmless rows (zeros, t = 0, label 0).
fn stage_inputs(plan: &mut Plan, input: &Input<'_>, batch: usize) -> Result<()> {
    let pinned = |e| device_error("writing pinned staging memory", e);
    let x = plan.staging.x.as_mut_slice().map_err(pinned)?;
    let n = input.x.data().len();
    x[..n].copy_from_slice(input.x.data());
    x[n..].fill(0.0);
    let t = plan.staging.t.as_mut_slice().map_err(pinned)?;
    t[..batch].copy_from_slice(input.t);
    t[batch..].fill(0.0);
    let y = plan.staging.y.as_mut_slice().map_err(pinned)?;
    y.fill(0);
    if let Some(labels) = input.y {
        y[..batch].copy_from_slice(labels);
    }
    Ok(())
}

fn upload(plan: &Plan, stream: &CudaStream, config: &Config) -> Result<()> {
    let b = plan.buffers;
    let fail = |e| device_error("copying inputs to the GPU", e);
    let staging = &plan.staging;
    let rows = plan.batch * plan.tokens;
    // SAFETY: destinations are arena buffers of exactly these sizes; sources are pinned.
    unsafe {
        let x = staging.x.as_slice().map_err(fail)?;
        cudarc::driver::result::memcpy_htod_async(
            b.x_upload,
            &x[..rows * config.input_dim],
            stream.cu_stream(),
        )
        .map_err(fail)?;
        let t = staging.t.as_slice().map_err(fail)?;
        cudarc::driver::result::memcpy_htod_async(b.t, t, stream.cu_stream()).map_err(fail)?;
        let y = staging.y.as_slice().map_err(fail)?;
        cudarc::driver::result::memcpy_htod_async(b.y, y, stream.cu_stream()).map_err(fail)?;
    }
    Ok(())
}

fn download(plan: &mut Plan, stream: &CudaStream, n: usize) -> Result<()> {
    let fail = |e| device_error("copying eps from the GPU", e);
    let src = plan.buffers.out;
    let out = plan.staging.out.as_mut_slice().map_err(fail)?;
    // SAFETY: `out` is pinned and at least `n` long; `src` holds the forward's output.
    unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut out[..n], src, stream.cu_stream()) }
        .map_err(fail)
}

/// The environment variable that turns every GPU test's skip into a failure
/// (`scripts/gpu-check.sh` sets it, so a run on the GPU machine cannot pass by skipping).
pub const REQUIRE_GPU_VAR: &str = "LINEAR_DIT_REQUIRE_GPU";

/// For GPU tests, when `reason` says the test cannot run here: prints
/// `skipped (no usable GPU): {reason}` and returns, so the test passes on a machine without a
/// GPU — or, when [`REQUIRE_GPU_VAR`] is set to anything but empty or `0`, panics with the
/// reason, failing the test.
#[doc(hidden)]
pub fn skip_gpu_test(reason: &Error) {
    let required = std::env::var(REQUIRE_GPU_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{REQUIRE_GPU_VAR} is set, but this GPU test cannot run: {reason}");
    }
    println!("skipped (no usable GPU): {reason}");
}

/// Why the CUDA kernels cannot run here — no device, or no code for it (the fatbin lacks its
/// architecture and NVRTC is absent) — or `None` when they can. cuBLASLt is not needed for
/// them: see [`unavailable_reason`] for the whole backend.
pub fn kernels_unavailable_reason() -> Option<Error> {
    match device::devices() {
        Err(e) => Some(e),
        Ok(devices) => devices
            .first()
            .and_then(|d| module::kernels_unavailable(d.compute_capability)),
    }
}

/// Why the CUDA backend cannot run here, or `None` when it can (a device with the kernels
/// and the libraries the backend needs).
pub fn unavailable_reason() -> Option<Error> {
    if let Some(e) = kernels_unavailable_reason() {
        return Some(e);
    }
    if !CudaLibrary::CublasLt.is_present() {
        return Some(unavailable("libcublasLt.so was not found"));
    }
    None
}

#[cfg(test)]
mod launch_tests {
    use super::*;

    #[test]
    fn no_graph_runs_when_graphs_are_off_or_profiling() {
        for captured in [false, true] {
            for eager_runs in [0, 1, 5] {
                assert_eq!(
                    launch_mode(false, false, captured, eager_runs, false),
                    Launch::Eager
                );
                assert_eq!(
                    launch_mode(true, true, captured, eager_runs, false),
                    Launch::Eager
                );
            }
        }
    }

    #[test]
    fn warm_up_then_capture_then_replay() {
        assert_eq!(launch_mode(false, true, false, 0, false), Launch::Eager);
        assert_eq!(launch_mode(false, true, false, 1, false), Launch::Capture);
        assert_eq!(launch_mode(false, true, true, 1, false), Launch::Replay);
        // After a failed capture, eager for good.
        assert_eq!(launch_mode(false, true, false, 3, true), Launch::Eager);
    }
}
