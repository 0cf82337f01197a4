//! The CUDA backend: hand-written kernels (`kernels/`) for the fused AdaLN, linear attention
//! and conditioning, cuBLASLt for the GEMMs, bf16/fp16 storage with fp32 accumulation (or
//! fp32 throughout as an on-GPU reference), one arena per forward shape, and the whole
//! forward captured as a CUDA graph after warm-up.
//!
//! Work is issued on a compute stream; inputs and outputs move through pinned staging
//! buffers on a copy stream, ordered by events. The backend is `Send + Sync`: a mutex
//! serialises forwards on the device (the serving engine runs one worker on one device anyway).

mod arena;
mod attention_variant;
mod backend_state;
mod blas;
mod device;
mod device_slice;
mod forward;
mod graph;
mod kernel_constants;
mod launch_params;
mod module;
mod ops;
mod profile;
mod sana;
mod shape_cache;
mod staging;
mod streams;
#[cfg(test)]
mod tests;
mod weights;

pub use device::{CudaLibrary, DeviceInfo, devices, driver_version};
pub use module::{KernelBuild, kernel_build};

pub use profile::Ceilings;
pub use sana::SanaCudaBackend;

use super::{Backend, Precision};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::position_cache::{DEFAULT_POSITION_CACHE_BYTES, PositionCache};
use crate::model::{Config, ForwardShape, Input};
use crate::tensor::Tensor;
use crate::weights::Weights;
use backend_state::BackendState;
use blas::Blas;
use cudarc::driver::{CudaContext, CudaStream};
use device::{device_error, guarded, is_internal_error, unavailable};
use graph::{GraphUse, Timing};
use module::Kernels;
use ops::{FeatureMap, Ops};
use shape_cache::ShapeCache;
use std::sync::{Arc, Mutex};
use weights::DeviceWeights;

/// The CUDA backend for one set of weights on one device.
pub struct CudaBackend {
    config: Config,
    dtype: DType,
    info: DeviceInfo,
    state: Mutex<BackendState>,
}

impl CudaBackend {
    /// Opens device 0 and uploads `weights` in `precision` (`Auto`: bf16).
    pub fn new(weights: &Weights, precision: Precision) -> Result<Self> {
        let dtype = precision.storage(DType::BF16)?;
        let config = weights.config().clone();
        if config.head_dim() > ops::MAX_HEAD_DIM {
            return Err(unavailable(format!(
                "head_dim {} exceeds the {} the attention kernels support",
                config.head_dim(),
                ops::MAX_HEAD_DIM
            )));
        }
        let info = first_device()?;
        let state = guarded("opening the GPU", || {
            let OpenedDevice {
                ctx,
                compute,
                copy,
                ops,
                blas,
            } = OpenedDevice::open(&info, dtype, FeatureMap::EluPlusOne)?;
            let weights = DeviceWeights::upload(weights, dtype, &compute)?;
            compute
                .synchronize()
                .map_err(|e| device_error("uploading weights", e))?;
            Ok(BackendState {
                ctx,
                compute,
                copy,
                ops,
                blas,
                weights,
                shapes: ShapeCache::default(),
                positions: PositionCache::new(DEFAULT_POSITION_CACHE_BYTES),
                graphs: graph_use_from_env(),
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
        self.dtype.name()
    }

    /// One eager forward of `input`, timed phase by phase with events (for benchmarks; the
    /// inputs are validated like any forward's).
    pub fn profile(&self, input: &Input<'_>) -> Result<Phases> {
        let shape = crate::model::validate(&self.config, input)?;
        self.with_state("profiling the forward", |state| {
            state
                .forward(&self.config, self.dtype, input, shape, Timing::PhaseByPhase)
                .map(|(_, phases)| phases)
        })
    }

    /// The device's measured copy bandwidth and bf16 GEMM throughput.
    pub fn ceilings(&self) -> Result<Ceilings> {
        self.with_state("measuring the device's ceilings", |state| {
            profile::measure_ceilings(&state.compute, &mut state.blas)
        })
    }

    /// Turns CUDA graphs on or off (on by default; `LINEAR_DIT_NO_GRAPHS` turns them off at
    /// start), e.g. to compare replay with eager launches. Off, no graph is captured or
    /// replayed any more, and those captured so far are dropped.
    pub fn set_graphs(&self, enabled: bool) {
        let mut state = self.lock();
        state.graphs = if enabled { GraphUse::On } else { GraphUse::Off };
        if !enabled {
            state.shapes.drop_graphs();
        }
    }

    /// How many forwards were captured as CUDA graphs and replayed so far.
    pub fn graph_stats(&self) -> GraphStats {
        self.lock().graph_stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackendState> {
        lock(&self.state)
    }

    /// Runs `f` on the state under [`guarded`] ([`with_guarded_state`]).
    fn with_state<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut BackendState) -> Result<T>,
    ) -> Result<T> {
        with_guarded_state(&self.state, |s| &mut s.broken, what, f)
    }
}

/// The state behind `state`'s mutex. A panic never leaves the lock poisoned half-way:
/// [`with_guarded_state`] catches it and records it as the state's bug, which is what refuses
/// later calls.
fn lock<S>(state: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on the state behind `state` under [`guarded`], for every backend of this module.
/// A bug (a caught panic, an internal error) is recorded in the state's `broken` field: this
/// and every later call return that internal error rather than run on a state the panic may
/// have left half-updated (a stream left capturing, an arena half-built).
fn with_guarded_state<S, T>(
    state: &Mutex<S>,
    broken: impl Fn(&mut S) -> &mut Option<String>,
    what: &str,
    f: impl FnOnce(&mut S) -> Result<T>,
) -> Result<T> {
    let mut state = lock(state);
    if let Some(bug) = broken(&mut state) {
        return Err(Error::Device {
            backend: "cuda",
            reason: format!("{bug} (an earlier call hit it; this backend runs nothing more)"),
        });
    }
    let result = guarded(what, || f(&mut state));
    if let Err(error @ Error::Device { reason, .. }) = &result
        && is_internal_error(error)
    {
        *broken(&mut state) = Some(reason.clone());
    }
    result
}

/// The first device, once the libraries the backend needs are known to load.
fn first_device() -> Result<DeviceInfo> {
    let info = device::devices()?
        .into_iter()
        .next()
        .ok_or_else(|| unavailable("no CUDA device is visible"))?;
    if !CudaLibrary::CublasLt.is_present() {
        return Err(unavailable(
            "libcublasLt.so was not found (needed for the GEMMs); put the CUDA libraries on LD_LIBRARY_PATH",
        ));
    }
    Ok(info)
}

/// Graphs are on unless `LINEAR_DIT_NO_GRAPHS` is set.
fn graph_use_from_env() -> GraphUse {
    match std::env::var_os("LINEAR_DIT_NO_GRAPHS") {
        None => GraphUse::On,
        Some(_) => GraphUse::Off,
    }
}

/// A device opened for a backend: its context, the two streams, the kernels of one storage
/// type and attention feature map, and cuBLASLt.
struct OpenedDevice {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    ops: Ops,
    blas: Blas,
}

impl OpenedDevice {
    /// Opens `info`'s device for storage `dtype` and feature map `map`; call under
    /// [`guarded`] (cudarc may panic).
    fn open(info: &DeviceInfo, dtype: DType, map: FeatureMap) -> Result<Self> {
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
        let ops = Ops::new(&kernels, dtype, map, compute.clone())?;
        let blas = Blas::new(compute.clone(), info.compute_capability.0)?;
        Ok(OpenedDevice {
            ctx,
            compute,
            copy,
            ops,
            blas,
        })
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
            self.dtype.name()
        )
    }

    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> Result<Tensor> {
        self.with_state("running the forward", |state| {
            state
                .forward(&self.config, self.dtype, input, shape, Timing::Untimed)
                .map(|(eps, _)| eps)
        })
    }
}

/// Milliseconds per forward phase: (phase, ms, occurrences), in order.
pub type Phases = Vec<(&'static str, f64, usize)>;

/// CUDA-graph captures and launches of graphs (a capture's first launch included) since the
/// backend was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Forwards captured as a graph.
    pub captures: u64,
    /// Forwards run by launching a captured graph.
    pub replays: u64,
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
