//! The backend's mutable state — context, streams, kernels, GEMMs, weights, the prepared
//! shapes and the position tables — and one forward over it, step by step
//! ([`streams::forward_steps`]).

use super::arena::ForwardArena;
use super::blas::Blas;
use super::device::device_error;
use super::forward::ForwardContext;
use super::graph::{GraphUse, Timing, launch_mode};
use super::ops::Ops;
use super::profile::Profiler;
use super::shape_cache::{ShapeCache, ShapeKey};
use super::staging::{download, read_eps, stage_inputs, upload};
use super::streams::{self, Arena, Step, Stream};
use super::weights::{DeviceArray, DeviceWeights};
use super::{GraphStats, Phases};
use crate::dtype::DType;
use crate::error::Result;
use crate::model::embedding::sincos_positions;
use crate::model::position_cache::PositionCache;
use crate::model::{Config, Flavor};
use crate::model::{ForwardShape, Grid, Input};
use crate::tensor::Tensor;
use cudarc::driver::{CudaContext, CudaStream};
use std::sync::Arc;

/// Everything the backend keeps on the device, behind its mutex.
pub struct BackendState {
    /// The CUDA context.
    pub ctx: Arc<CudaContext>,
    /// Kernels, GEMMs, graph launches.
    pub compute: Arc<CudaStream>,
    /// Host ↔ device copies.
    pub copy: Arc<CudaStream>,
    /// The kernels.
    pub ops: Ops,
    /// The GEMMs.
    pub blas: Blas,
    /// The weights.
    pub weights: DeviceWeights,
    /// The prepared forward shapes.
    pub shapes: ShapeCache,
    /// dit position tables by grid, the most recently used up to
    /// [`crate::model::position_cache::DEFAULT_POSITION_CACHE_BYTES`]; a graph that reads one
    /// holds it too.
    pub positions: PositionCache<DeviceArray<f32>>,
    /// Whether graphs are captured and replayed.
    pub graphs: GraphUse,
    /// Captures and replays so far.
    pub graph_stats: GraphStats,
    /// The internal error that interrupted an earlier call, if any: after a bug the state
    /// may be half-updated (a stream left capturing, an arena half-built), so nothing runs
    /// on it.
    pub broken: Option<String>,
}

// SAFETY: every CUDA object in `BackendState` is only touched with the mutex held, and the
// context is bound to the calling thread before use.
unsafe impl Send for BackendState {}

/// What one forward is asked to do.
struct ForwardRequest<'a> {
    config: &'a Config,
    dtype: DType,
    input: &'a Input<'a>,
    shape: ForwardShape,
    key: ShapeKey,
    timing: Timing,
}

impl BackendState {
    /// One forward; timed phase by phase (and eager) with [`Timing::PhaseByPhase`]. The
    /// steps and their order across the two streams are [`streams::forward_steps`].
    pub fn forward(
        &mut self,
        config: &Config,
        dtype: DType,
        input: &Input<'_>,
        shape: ForwardShape,
        timing: Timing,
    ) -> Result<(Tensor, Phases)> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| device_error("binding the context", e))?;
        let request = ForwardRequest {
            config,
            dtype,
            input,
            shape,
            key: ShapeKey::new(shape.batch, shape.tokens),
            timing,
        };
        let mut profiler = None;
        let arena = if self.shapes.contains(request.key) {
            Arena::Existing
        } else {
            Arena::New
        };
        for step in streams::forward_steps(arena) {
            self.step(step, &request, &mut profiler)?;
        }
        let phases = profiler.map(Profiler::finish).transpose()?;
        let arena = &self.shapes.get_mut(request.key)?.arena;
        let eps = read_eps(arena, shape.batch, shape.tokens, config.input_dim)?;
        Ok((eps, phases.unwrap_or_default()))
    }

    /// Issues one step of `request`; [`Step::Forward`] leaves its profiler (when timed) in
    /// `profiler`.
    fn step(
        &mut self,
        step: Step,
        request: &ForwardRequest<'_>,
        profiler: &mut Option<Profiler>,
    ) -> Result<()> {
        let ForwardRequest {
            config,
            dtype,
            input,
            shape,
            key,
            timing,
        } = *request;
        match step {
            Step::NewArena => {
                let compute = &self.compute;
                self.shapes.insert_with(key, || {
                    ForwardArena::new(config, dtype, key.batch_bucket, key.tokens, compute)
                })?;
            }
            Step::Upload => {
                let arena = &mut self.shapes.get_mut(key)?.arena;
                stage_inputs(arena, input, shape.batch)?;
                upload(arena, &self.copy, config.input_dim)?;
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
            Step::Forward => *profiler = self.run(config, key, shape.grid, timing)?,
            Step::Download => {
                let n = shape.batch * shape.tokens * config.input_dim;
                download(&mut self.shapes.get_mut(key)?.arena, &self.copy, n)?;
            }
            Step::HostWait(stream) => self
                .stream(stream)
                .synchronize()
                .map_err(|e| device_error("the forward", e))?,
        }
        Ok(())
    }

    fn stream(&self, stream: Stream) -> &Arc<CudaStream> {
        match stream {
            Stream::Compute => &self.compute,
            Stream::Copy => &self.copy,
        }
    }

    /// The dit position table of `grid` (from the cache, uploaded on a miss); `None` for
    /// edifice, whose position is a learned vector.
    fn position_table(
        &mut self,
        config: &Config,
        grid: Grid,
    ) -> Result<Option<Arc<DeviceArray<f32>>>> {
        match config.flavor {
            Flavor::Dit => {
                let h = config.hidden_size;
                let bytes = grid.tokens() * h * std::mem::size_of::<f32>();
                let compute = &self.compute;
                let table = self.positions.get_or_try_insert_with(grid, bytes, || {
                    DeviceArray::upload(compute, &sincos_positions(h, grid))
                })?;
                Ok(Some(table))
            }
            Flavor::Edifice => Ok(None),
        }
    }

    /// Enqueues the forward of shape `key` on the compute stream (inputs already uploaded):
    /// eager, captured or replayed ([`launch_mode`]); when timed, returns the profiler timing
    /// its phases.
    fn run(
        &mut self,
        config: &Config,
        key: ShapeKey,
        grid: Grid,
        timing: Timing,
    ) -> Result<Option<Profiler>> {
        let positions = self.position_table(config, grid)?;
        let shape = self.shapes.get_mut(key)?;
        shape.graph.forget_other_positions(positions.as_ref());
        let mut profiler = match timing {
            Timing::PhaseByPhase => Some(Profiler::new(self.compute.clone())?),
            Timing::Untimed => None,
        };
        let mut context = ForwardContext {
            config,
            ops: &self.ops,
            blas: &mut self.blas,
            weights: &self.weights,
            positions: positions.as_ref().map(|table| table.slice()),
            profiler: profiler.as_mut(),
        };
        let mode = launch_mode(timing, self.graphs, shape.graph.history());
        let arena = &shape.arena;
        shape.graph.launch(
            mode,
            &self.compute,
            positions,
            &mut self.graph_stats,
            (arena.batch, arena.tokens),
            || context.enqueue(arena),
        )?;
        Ok(profiler)
    }
}
