//! The `sana` flavor (diffusers' `SanaTransformer2DModel`) on the GPU: the same forward as
//! the CPU backend (`backends/cpu/sana`, the reference), with the machinery of the dit path —
//! the device opened the same way (`OpenedDevice`), the checked GEMMs, one arena per
//! forward shape in the shared shape cache, inputs and outputs through pinned staging on a
//! copy stream ordered by events ([`super::streams::forward_steps`]), and the whole forward
//! captured as a CUDA graph after one eager warm-up — plus what sana adds: the ReLU
//! linear-attention instances, RMSNorm, the cross-attention's batched GEMMs and masked
//! softmax, the fused depthwise conv + GLU, adaLN-single's learned tables.
//!
//! Why a backend of its own rather than a flavor of [`super::CudaBackend`]: sana's inputs
//! (latents `[B, C, H, W]`, captions, a mask, guidance) and its shape key (batch bucket, latent
//! grid, caption length) are not the dit/edifice [`crate::model::Input`] and token count;
//! what the two share is shared code, not one type.
//!
//! Files: `shape.rs` (the checked sizes and the graph key), `weights.rs` (the upload, stored
//! bytes as they are), `arena.rs` (the buffers), `staging.rs` (host side: patches, timestep
//! features, unpatchify), `forward.rs` (the forward), `cross_attention.rs`.

mod arena;
mod cross_attention;
mod forward;
mod shape;
mod staging;
mod weights;

use super::blas::Blas;
use super::device::{device_error, guarded, unavailable};
use super::graph::{GraphUse, Timing, launch_mode};
use super::ops::{FeatureMap, MAX_HEAD_DIM, Ops};
use super::shape_cache::ShapeCache;
use super::streams::{self, Arena, Step, Stream};
use super::{
    DeviceInfo, GraphStats, OpenedDevice, first_device, graph_use_from_env, lock,
    with_guarded_state,
};
use crate::backends::Precision;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::sana::{SanaConfig, SanaDims, SanaInput, SanaShape};
use crate::tensor::Tensor;
use crate::weights::SanaWeights;
use arena::SanaArena;
use cudarc::driver::{CudaContext, CudaStream};
use forward::SanaContext;
use shape::{SanaShapeKey, SanaSizes};
use staging::{download, read_output, stage_inputs, upload};
use std::sync::{Arc, Mutex};
use weights::SanaDeviceWeights;

/// A `sana` model on one GPU. `Send + Sync`: a mutex serialises forwards on the device.
pub struct SanaCudaBackend {
    config: SanaConfig,
    dims: SanaDims,
    dtype: DType,
    info: DeviceInfo,
    state: Mutex<SanaState>,
}

/// Everything the sana backend keeps on the device, behind its mutex.
struct SanaState {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    ops: Ops,
    blas: Blas,
    weights: SanaDeviceWeights,
    shapes: ShapeCache<SanaShapeKey, SanaArena>,
    graphs: GraphUse,
    graph_stats: GraphStats,
    /// The internal error that interrupted an earlier call, if any (see
    /// `with_guarded_state`).
    broken: Option<String>,
}

// SAFETY: every CUDA object in `SanaState` is only touched with the mutex held, and the
// context is bound to the calling thread before use.
unsafe impl Send for SanaState {}

impl SanaCudaBackend {
    /// Opens device 0 and uploads `weights` in `precision` (`Auto`: bf16). Without a usable
    /// device (no driver, no GPU, no cuBLASLt) the error is [`crate::Error::BackendUnavailable`]
    /// with the reason — never a panic.
    pub fn new(weights: &SanaWeights, precision: Precision) -> Result<Self> {
        let dtype = precision.storage(DType::BF16)?;
        let config = weights.config().clone();
        let dims = config.dims()?;
        if dims.head_dim > MAX_HEAD_DIM {
            return Err(unavailable(format!(
                "attention_head_dim {} exceeds the {MAX_HEAD_DIM} the attention kernels support",
                dims.head_dim
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
            } = OpenedDevice::open(&info, dtype, FeatureMap::Relu)?;
            let weights = SanaDeviceWeights::upload(weights, dtype, &compute)?;
            compute
                .synchronize()
                .map_err(|e| device_error("uploading weights", e))?;
            Ok(SanaState {
                ctx,
                compute,
                copy,
                ops,
                blas,
                weights,
                shapes: ShapeCache::default(),
                graphs: graph_use_from_env(),
                graph_stats: GraphStats::default(),
                broken: None,
            })
        })?;
        Ok(SanaCudaBackend {
            config,
            dims,
            dtype,
            info,
            state: Mutex::new(state),
        })
    }

    /// One line for logs: device, architecture, storage type.
    pub fn describe(&self) -> String {
        format!(
            "cuda: {} (sm_{}{}, {})",
            self.info.name,
            self.info.compute_capability.0,
            self.info.compute_capability.1,
            self.dtype.name()
        )
    }

    /// The storage type's name: `f32`, `bf16` or `f16`.
    pub fn describe_precision(&self) -> &'static str {
        self.dtype.name()
    }

    /// The velocity `[B, C_out, H, W]` of an input [`crate::model::sana::validate_sana`]
    /// accepted as `shape`. A shape whose sizes overflow or do not fit the kernels' 32-bit
    /// ints is refused ([`crate::Error::TooLarge`]) before anything touches the device.
    pub fn forward(&self, input: &SanaInput<'_>, shape: SanaShape) -> Result<Tensor> {
        let key = SanaShapeKey::new(&shape);
        let sizes = SanaSizes::new(&self.dims, key)?;
        let request = Request {
            config: &self.config,
            dims: &self.dims,
            dtype: self.dtype,
            input,
            shape,
            key,
            sizes,
        };
        with_guarded_state(
            &self.state,
            |s| &mut s.broken,
            "running the sana forward",
            |state| state.forward(&request),
        )
    }

    /// Turns CUDA graphs on or off (on by default; `LINEAR_DIT_NO_GRAPHS` turns them off at
    /// start). Off, no graph is captured or replayed any more, and those captured so far are
    /// dropped.
    pub fn set_graphs(&self, enabled: bool) {
        let mut state = lock(&self.state);
        state.graphs = if enabled { GraphUse::On } else { GraphUse::Off };
        if !enabled {
            state.shapes.drop_graphs();
        }
    }

    /// How many forwards were captured as CUDA graphs and replayed so far.
    pub fn graph_stats(&self) -> GraphStats {
        lock(&self.state).graph_stats
    }
}

/// What one forward is asked to do.
struct Request<'a> {
    config: &'a SanaConfig,
    dims: &'a SanaDims,
    dtype: DType,
    input: &'a SanaInput<'a>,
    shape: SanaShape,
    key: SanaShapeKey,
    sizes: SanaSizes,
}

impl SanaState {
    /// One forward: the steps of [`streams::forward_steps`], then the output read from
    /// pinned staging.
    fn forward(&mut self, request: &Request<'_>) -> Result<Tensor> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| device_error("binding the context", e))?;
        let arena = if self.shapes.contains(request.key) {
            Arena::Existing
        } else {
            Arena::New
        };
        for step in streams::forward_steps(arena) {
            self.step(step, request)?;
        }
        let d = request.dims;
        let arena = &self.shapes.get_mut(request.key)?.arena;
        read_output(arena, request.shape, d.out_channels, d.patch)
    }

    fn step(&mut self, step: Step, request: &Request<'_>) -> Result<()> {
        let key = request.key;
        match step {
            Step::NewArena => {
                let compute = &self.compute;
                self.shapes.insert_with(key, || {
                    SanaArena::new(request.config, request.sizes, request.dtype, compute)
                })?;
            }
            Step::Upload => {
                let arena = &mut self.shapes.get_mut(key)?.arena;
                let d = request.dims;
                stage_inputs(
                    &mut arena.staging,
                    &arena.sizes,
                    request.input,
                    request.shape,
                    d.in_channels,
                    d.patch,
                )?;
                upload(arena, &self.copy)?;
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
            Step::Forward => self.run(key, request.config.norm_eps as f32)?,
            Step::Download => download(&mut self.shapes.get_mut(key)?.arena, &self.copy)?,
            Step::HostWait(stream) => self
                .stream(stream)
                .synchronize()
                .map_err(|e| device_error("the sana forward", e))?,
        }
        Ok(())
    }

    fn stream(&self, stream: Stream) -> &Arc<CudaStream> {
        match stream {
            Stream::Compute => &self.compute,
            Stream::Copy => &self.copy,
        }
    }

    /// Enqueues the forward of shape `key` on the compute stream (inputs already uploaded):
    /// eager, captured or replayed ([`launch_mode`]).
    fn run(&mut self, key: SanaShapeKey, norm_eps: f32) -> Result<()> {
        let shape = self.shapes.get_mut(key)?;
        let mode = launch_mode(Timing::Untimed, self.graphs, shape.graph.history());
        let mut context = SanaContext {
            ops: &self.ops,
            blas: &mut self.blas,
            weights: &self.weights,
            norm_eps,
        };
        let arena = &shape.arena;
        let log_shape = (arena.sizes.batch, arena.sizes.tokens);
        shape.graph.launch(
            mode,
            &self.compute,
            None,
            &mut self.graph_stats,
            log_shape,
            || context.enqueue(arena),
        )
    }
}
