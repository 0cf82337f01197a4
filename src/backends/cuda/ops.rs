//! Typed launchers for the kernels in `kernels/`: one method per kernel, each following the
//! launch contract in `kernels/README.md` (block 256 threads; grids as documented there).
//! Buffers are typed views ([`DeviceSlice`]) into the forward's arena (see `arena.rs`) or
//! the weights; the long argument lists are structs (`launch_params.rs`).
//!
//! Every launcher is `unsafe`: a kernel reads and writes whatever its pointers address. Each
//! checks that its views are long enough for the launch's extents (and that storage-type
//! views have the storage type's element size), failing with an internal error otherwise.
//! What it cannot check is that a view describes real memory, so each asks of its caller, in
//! its `# Safety` section, that **every view addresses live device memory of this context
//! that stays allocated — and is written by no other stream — until this stream has run the
//! launch** (for a captured graph: as long as the graph may be replayed).

use super::device::device_error;
use super::device::internal_error;
use super::device_slice::{DeviceSlice, Element, Storage, addr_or_null, strided_extent};
use super::launch_params::{
    DepthwiseConvGlu, EmbedAdd, LinearAttention, MaskedSoftmax, ModulationAffine, ModulationTable,
    NormModulate, ResidualAdd, ResidualNormModulate, RmsNorm, SmallLinear, SmallLinearInput,
    SmallLinearOutput,
};
use super::module::Kernels;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::Gelu;
use crate::model::embedding::DIT_TIMESTEP_FREQUENCIES;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use super::attention_variant::FeatureMap;
pub(crate) use super::attention_variant::attention_chunk;
use super::attention_variant::{AttentionGeometry, AttentionKernels, REDUCE_KERNEL};
pub(crate) use super::kernel_constants::MAX_HEAD_DIM;
use super::kernel_constants::{
    ELEMS_PER_BLOCK, NORM_WARP_MAX_H, SMALL_LINEAR_OUT_PER_BLOCK, THREADS,
};

/// Kernels whose name carries a dtype suffix (the attention kernels: [`AttentionKernels`]).
/// The last four only sana launches; every backend loads them (they are in the modules
/// anyway), so one `Ops` type serves every flavor.
pub(crate) const TYPED: [&str; 12] = [
    "norm_modulate",
    "residual_norm_modulate",
    "modulation_affine",
    "small_linear",
    "add_class_embedding",
    "embed_add",
    "bias_gelu_tanh",
    "bias_gelu_erf",
    "rms_norm",
    "depthwise_conv_glu",
    "masked_softmax",
    "modulation_table",
];
/// Kernels without one.
pub(crate) const UNTYPED: [&str; 4] = [
    "timestep_features_dit",
    "timestep_features_edifice",
    "class_onehot",
    REDUCE_KERNEL,
];

/// The kernels of one storage type, ready to launch on a stream.
pub struct Ops {
    functions: HashMap<&'static str, CudaFunction>,
    cast_in: CudaFunction,
    attention: AttentionKernels,
    stream: Arc<CudaStream>,
    /// The storage type.
    pub dtype: DType,
}

fn grid_1d(blocks: u64) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.clamp(1, u32::MAX as u64) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn elementwise(n: u64) -> LaunchConfig {
    grid_1d(n.div_ceil(ELEMS_PER_BLOCK))
}

fn per_value(n: u64) -> LaunchConfig {
    grid_1d(n.div_ceil(THREADS as u64))
}

/// One kernel argument, as the kernel's C signature types it.
#[derive(Clone, Copy)]
enum Arg {
    /// A device pointer.
    Ptr(u64),
    /// `int`.
    Int(i32),
    /// `long long`.
    Long(i64),
    /// `float`.
    Float(f32),
}

use Arg::{Float, Int, Long, Ptr};

fn int(v: usize) -> Arg {
    Int(v as i32)
}

/// `v` as a C `int` argument named `what`; an internal error when it does not fit (the
/// host refuses such sizes by name before planning a forward, so reaching this is a bug).
fn checked_int(what: &str, v: usize) -> Result<Arg> {
    i32::try_from(v)
        .map(Int)
        .map_err(|_| internal_error(format!("{what} = {v} does not fit a kernel's int")))
}

/// Largest grid.y and grid.z of a launch (CUDA's limit); the kernels that take a 3-D grid
/// stride over all three dimensions, so a clamped grid stays correct.
const MAX_GRID_YZ: u64 = 65_535;
/// Largest grid.x (2³¹ − 1).
const MAX_GRID_X: u64 = i32::MAX as u64;

/// Value channels of one depthwise-conv block (`DWC_PAIRS`) and its tile side (`DWC_TILE`),
/// `kernels/depthwise_conv_glu.cu`.
const DWC_PAIRS: u64 = 32;
const DWC_TILE: u64 = 8;

/// The suggested grid of `depthwise_conv_glu_T`: (tiles of 8×8 positions, slices of 32
/// channel pairs, samples), each clamped to CUDA's limits.
pub(crate) fn depthwise_grid(batch: usize, rows: usize, cols: usize, m: usize) -> (u32, u32, u32) {
    let tiles = (cols as u64).div_ceil(DWC_TILE) * (rows as u64).div_ceil(DWC_TILE);
    let slices = (m as u64).div_ceil(DWC_PAIRS);
    (
        tiles.clamp(1, MAX_GRID_X) as u32,
        slices.clamp(1, MAX_GRID_YZ) as u32,
        (batch as u64).clamp(1, MAX_GRID_YZ) as u32,
    )
}

/// Samples covered by `rows` rows of `tokens` tokens each (row r is sample r / tokens).
fn samples(rows: usize, tokens: usize) -> usize {
    rows.div_ceil(tokens.max(1))
}

impl Ops {
    /// Looks up every kernel of `dtype` (the attention instances of `feature_map`) and raises
    /// the attention kernel's shared-memory limit.
    pub fn new(
        kernels: &Kernels,
        dtype: DType,
        feature_map: FeatureMap,
        stream: Arc<CudaStream>,
    ) -> Result<Self> {
        let mut functions = HashMap::new();
        for name in TYPED {
            let symbol = format!("{name}_{}", dtype.name());
            functions.insert(name, kernels.function(&symbol)?);
        }
        for name in UNTYPED {
            functions.insert(name, kernels.function(name)?);
        }
        let cast_in = kernels.function(&format!("cast_f32_to_{}", dtype.name()))?;
        let attention = AttentionKernels::load(kernels, dtype, feature_map)?;
        Ok(Ops {
            functions,
            cast_in,
            attention,
            stream,
            dtype,
        })
    }

    /// Checks that `view` holds at least `needed` elements (and, for a storage-type view,
    /// that they are of this storage type).
    fn require<T: Element>(&self, what: &str, view: DeviceSlice<T>, needed: usize) -> Result<()> {
        view.require(what, needed)?;
        view.require_type(what, self.dtype)
    }

    /// Launches `function` (called `name` in errors) with `args` on the stream.
    ///
    /// # Safety
    /// `args` is exactly the kernel's parameter list, in order and with the C types of
    /// `kernels/`, and every pointer in it satisfies the module's launch contract.
    unsafe fn launch_fn(
        &self,
        function: &CudaFunction,
        name: &str,
        config: LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        let mut builder = self.stream.launch_builder(function);
        for arg in args {
            match arg {
                Ptr(v) => builder.arg(v),
                Int(v) => builder.arg(v),
                Long(v) => builder.arg(v),
                Float(v) => builder.arg(v),
            };
        }
        // SAFETY: the argument list and its pointers are the caller's contract.
        unsafe { builder.launch(config) }
            .map(drop)
            .map_err(|e| device_error(name, e))
    }

    /// Launches the kernel called `name` (see [`Ops::launch_fn`]).
    ///
    /// # Safety
    /// As [`Ops::launch_fn`].
    unsafe fn launch(&self, name: &'static str, config: LaunchConfig, args: &[Arg]) -> Result<()> {
        // SAFETY: passed on from the caller.
        unsafe { self.launch_fn(&self.functions[name], name, config, args) }
    }

    /// `out[i] = T(input[i])` for `n` values, from the fp32 upload buffer to storage type.
    ///
    /// # Safety
    /// `input` and `out` satisfy the module's launch contract.
    pub unsafe fn cast_in(
        &self,
        input: DeviceSlice<f32>,
        out: DeviceSlice<Storage>,
        n: usize,
    ) -> Result<()> {
        self.require("cast_in input", input, n)?;
        self.require("cast_in out", out, n)?;
        let n = n as u64;
        let args = [Ptr(input.addr()), Ptr(out.addr()), Long(n as i64)];
        // SAFETY: `cast_f32_to_T(const float*, T*, long long)`; views checked, live (caller).
        unsafe { self.launch_fn(&self.cast_in, "cast_f32_to_T", elementwise(n), &args) }
    }

    /// LayerNorm of `x` rows with per-sample `scale`/`shift` into `out`.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn norm_modulate(&self, params: NormModulate) -> Result<()> {
        let NormModulate {
            x,
            out,
            scale,
            shift,
            rows,
            hidden: h,
            tokens,
            eps,
        } = params;
        let per_sample = samples(rows, tokens) * h;
        self.require("norm_modulate x", x, rows * h)?;
        self.require("norm_modulate out", out, rows * h)?;
        self.require("norm_modulate scale", scale, per_sample)?;
        self.require("norm_modulate shift", shift, per_sample)?;
        let (x, out, scale, shift) = (x.addr(), out.addr(), scale.addr(), shift.addr());
        let args = [
            Ptr(x),
            Ptr(out),
            Ptr(scale),
            Ptr(shift),
            int(rows),
            int(h),
            int(tokens),
            Float(eps),
        ];
        let vector = norm_vector_path(h, &[x, out, scale, shift], None);
        let config = grid_1d(norm_blocks(rows, h, vector));
        // SAFETY: `norm_modulate_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("norm_modulate", config, &args) }
    }

    /// `x += gate ⊙ (y + bias)`, then the next LayerNorm + modulation into `out`.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn residual_norm_modulate(&self, params: ResidualNormModulate) -> Result<()> {
        let ResidualNormModulate {
            x,
            y,
            bias,
            gate,
            gate_stride,
            out,
            scale,
            shift,
            rows,
            hidden: h,
            tokens,
            eps,
        } = params;
        let samples = samples(rows, tokens);
        self.require("residual x", x, rows * h)?;
        self.require("residual y", y, rows * h)?;
        self.require("residual bias", bias, h)?;
        let gate_extent = strided_extent(samples, gate_stride, h);
        self.require("residual gate", gate, gate_extent)?;
        self.require("residual out", out, rows * h)?;
        self.require("residual scale", scale, samples * h)?;
        self.require("residual shift", shift, samples * h)?;
        let pointers = [
            x.addr(),
            y.addr(),
            bias.addr(),
            gate.addr(),
            out.addr(),
            scale.addr(),
            shift.addr(),
        ];
        let [x, y, bias, gate, out, scale, shift] = pointers;
        let args = [
            Ptr(x),
            Ptr(y),
            Ptr(bias),
            Ptr(gate),
            int(gate_stride),
            Ptr(out),
            Ptr(scale),
            Ptr(shift),
            int(rows),
            int(h),
            int(tokens),
            Float(eps),
        ];
        let vector = norm_vector_path(h, &pointers, Some(gate_stride));
        let config = grid_1d(norm_blocks(rows, h, vector));
        // SAFETY: `residual_norm_modulate_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("residual_norm_modulate", config, &args) }
    }

    /// Folds shift/scale columns of a modulation (and gamma/beta) into per-sample scale/shift.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn modulation_affine(&self, params: ModulationAffine) -> Result<()> {
        let ModulationAffine {
            modulation,
            norm,
            scale_out,
            shift_out,
            samples: batch,
            hidden: h,
        } = params;
        if let Some(columns) = modulation {
            let width = columns.shift_col.max(columns.scale_col) + h;
            let extent = strided_extent(batch, columns.stride, width);
            self.require("modulation_affine modulation", columns.matrix, extent)?;
        }
        if let Some(norm) = norm {
            self.require("modulation_affine gamma", norm.gamma, h)?;
            self.require("modulation_affine beta", norm.beta, h)?;
        }
        self.require("modulation_affine scale_out", scale_out, batch * h)?;
        self.require("modulation_affine shift_out", shift_out, batch * h)?;
        let (matrix, stride, shift_col, scale_col) = match modulation {
            Some(c) => (Some(c.matrix), c.stride, c.shift_col, c.scale_col),
            None => (None, 0, 0, 0),
        };
        let args = [
            Ptr(addr_or_null(matrix)),
            int(stride),
            int(shift_col),
            int(scale_col),
            Ptr(addr_or_null(norm.map(|n| n.gamma))),
            Ptr(addr_or_null(norm.map(|n| n.beta))),
            Ptr(scale_out.addr()),
            Ptr(shift_out.addr()),
            int(batch),
            int(h),
        ];
        let config = per_value((batch * h) as u64);
        // SAFETY: `modulation_affine_T`'s parameters in order (null where absent, which the
        // kernel tests for); views checked, live (caller).
        unsafe { self.launch("modulation_affine", config, &args) }
    }

    /// `out (+)= a(x) Wᵀ + bias` on a few fp32 rows.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn small_linear(&self, params: SmallLinear) -> Result<()> {
        let SmallLinear {
            x,
            weight,
            bias,
            out,
            rows,
            inputs,
            outputs,
            input,
            output,
        } = params;
        self.require("small_linear x", x, rows * inputs)?;
        self.require("small_linear weight", weight, outputs * inputs)?;
        self.require("small_linear bias", bias, outputs)?;
        self.require("small_linear out", out, rows * outputs)?;
        let silu_input = input == SmallLinearInput::Silu;
        let accumulate = output == SmallLinearOutput::Accumulate;
        let args = [
            Ptr(x.addr()),
            Ptr(weight.addr()),
            Ptr(bias.addr()),
            Ptr(out.addr()),
            int(rows),
            int(inputs),
            int(outputs),
            int(silu_input as usize),
            int(accumulate as usize),
        ];
        let config = grid_1d((outputs as u64).div_ceil(SMALL_LINEAR_OUT_PER_BLOCK as u64));
        // SAFETY: `small_linear_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("small_linear", config, &args) }
    }

    /// dit timestep features `[batch, 2·DIT_TIMESTEP_FREQUENCIES]` of the timesteps `t`.
    ///
    /// # Safety
    /// `t` and `out` satisfy the module's launch contract.
    pub unsafe fn timestep_features_dit(
        &self,
        t: DeviceSlice<f32>,
        out: DeviceSlice<f32>,
        batch: usize,
    ) -> Result<()> {
        self.require("timestep_features t", t, batch)?;
        self.require(
            "timestep_features out",
            out,
            batch * 2 * DIT_TIMESTEP_FREQUENCIES,
        )?;
        let args = [Ptr(t.addr()), Ptr(out.addr()), int(batch)];
        let config = per_value((batch * DIT_TIMESTEP_FREQUENCIES) as u64);
        // SAFETY: `timestep_features_dit`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("timestep_features_dit", config, &args) }
    }

    /// edifice timestep features `[batch, 2·half]` of the timesteps `t`.
    ///
    /// # Safety
    /// `t` and `out` satisfy the module's launch contract.
    pub unsafe fn timestep_features_edifice(
        &self,
        t: DeviceSlice<f32>,
        out: DeviceSlice<f32>,
        batch: usize,
        half: usize,
        num_steps: f32,
    ) -> Result<()> {
        self.require("timestep_features t", t, batch)?;
        self.require("timestep_features out", out, batch * 2 * half)?;
        let args = [
            Ptr(t.addr()),
            Ptr(out.addr()),
            int(batch),
            int(half),
            Float(num_steps),
        ];
        let config = per_value((batch * half.max(1)) as u64);
        // SAFETY: `timestep_features_edifice`'s parameters in order; views checked, live
        // (caller).
        unsafe { self.launch("timestep_features_edifice", config, &args) }
    }

    /// One-hot `[batch, classes]` of the labels.
    ///
    /// # Safety
    /// `labels` and `out` satisfy the module's launch contract.
    pub unsafe fn class_onehot(
        &self,
        labels: DeviceSlice<i64>,
        out: DeviceSlice<f32>,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        self.require("class_onehot labels", labels, batch)?;
        self.require("class_onehot out", out, batch * classes)?;
        let args = [
            Ptr(labels.addr()),
            Ptr(out.addr()),
            int(batch),
            int(classes),
        ];
        let config = per_value((batch * classes) as u64);
        // SAFETY: `class_onehot`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("class_onehot", config, &args) }
    }

    /// `condition[b] += table[labels[b]]`, rows of `h`.
    ///
    /// # Safety
    /// The views satisfy the module's launch contract, and every label indexes a row of
    /// `table` (the kernel reads the row a label names without bounds).
    pub unsafe fn add_class_embedding(
        &self,
        condition: DeviceSlice<f32>,
        table: DeviceSlice<Storage>,
        labels: DeviceSlice<i64>,
        batch: usize,
        h: usize,
    ) -> Result<()> {
        self.require("add_class_embedding condition", condition, batch * h)?;
        self.require("add_class_embedding table", table, h)?;
        self.require("add_class_embedding labels", labels, batch)?;
        let args = [
            Ptr(condition.addr()),
            Ptr(table.addr()),
            Ptr(labels.addr()),
            int(batch),
            int(h),
        ];
        let config = per_value((batch * h) as u64);
        // SAFETY: `add_class_embedding_T`'s parameters in order; views checked, live and
        // labels in range (caller).
        unsafe { self.launch("add_class_embedding", config, &args) }
    }

    /// `x[r] += bias + table[r % table_rows]`.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn embed_add(&self, params: EmbedAdd) -> Result<()> {
        let EmbedAdd {
            x,
            bias,
            table,
            rows,
            hidden: h,
            table_rows,
        } = params;
        self.require("embed_add x", x, rows * h)?;
        self.require("embed_add bias", bias, h)?;
        self.require("embed_add table", table, table_rows.min(rows) * h)?;
        let args = [
            Ptr(x.addr()),
            Ptr(bias.addr()),
            Ptr(table.addr()),
            int(rows),
            int(h),
            int(table_rows),
        ];
        let config = elementwise((rows * h) as u64);
        // SAFETY: `embed_add_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("embed_add", config, &args) }
    }

    /// `x = GELU(x + bias)` in place on `rows` rows of `m`.
    ///
    /// # Safety
    /// `x` and `bias` satisfy the module's launch contract.
    pub unsafe fn bias_gelu(
        &self,
        x: DeviceSlice<Storage>,
        bias: DeviceSlice<Storage>,
        rows: usize,
        m: usize,
        gelu: Gelu,
    ) -> Result<()> {
        self.require("bias_gelu x", x, rows * m)?;
        self.require("bias_gelu bias", bias, m)?;
        let name = match gelu {
            Gelu::Tanh => "bias_gelu_tanh",
            Gelu::Erf => "bias_gelu_erf",
        };
        let args = [Ptr(x.addr()), Ptr(bias.addr()), Long(rows as i64), int(m)];
        let config = elementwise((rows * m) as u64);
        // SAFETY: `bias_gelu_{tanh,erf}_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch(name, config, &args) }
    }

    /// `x += gate ⊙ (y + bias)` with no norm after it.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn residual_add(&self, params: ResidualAdd) -> Result<()> {
        let ResidualAdd {
            x,
            y,
            bias,
            gate,
            gate_stride,
            rows,
            hidden: h,
            tokens,
        } = params;
        let samples = samples(rows, tokens);
        self.require("residual_add x", x, rows * h)?;
        self.require("residual_add y", y, rows * h)?;
        self.require("residual_add bias", bias, h)?;
        let gate_extent = strided_extent(samples, gate_stride, h);
        self.require("residual_add gate", gate, gate_extent)?;
        let pointers = [x.addr(), y.addr(), bias.addr(), gate.addr()];
        let [x, y, bias, gate] = pointers;
        let args = [
            Ptr(x),
            Ptr(y),
            Ptr(bias),
            Ptr(gate),
            checked_int("residual_add gate_stride", gate_stride)?,
            Ptr(0),
            Ptr(0),
            Ptr(0),
            checked_int("residual_add rows", rows)?,
            checked_int("residual_add h", h)?,
            checked_int("residual_add tokens", tokens)?,
            Float(0.0),
        ];
        let vector = norm_vector_path(h, &pointers, Some(gate_stride));
        let config = grid_1d(norm_blocks(rows, h, vector));
        // SAFETY: `residual_norm_modulate_T`'s parameters in order, `out` null (residual
        // only: the kernel then reads neither scale nor shift, which are null too); views
        // checked, live (caller).
        unsafe { self.launch("residual_norm_modulate", config, &args) }
    }

    /// RMSNorm with a weight over strided rows (in place when `out` is `x`).
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract, and `out` either is
    /// `x` or does not overlap it (the kernel allows exact aliasing only).
    pub unsafe fn rms_norm(&self, params: RmsNorm) -> Result<()> {
        let RmsNorm {
            x,
            x_stride,
            out,
            out_stride,
            weight,
            rows,
            hidden: h,
            eps,
        } = params;
        if x_stride < h || out_stride < h {
            return Err(internal_error(format!(
                "rms_norm: strides {x_stride}, {out_stride} below the row width {h}"
            )));
        }
        self.require("rms_norm x", x, strided_extent(rows, x_stride, h))?;
        self.require("rms_norm out", out, strided_extent(rows, out_stride, h))?;
        self.require("rms_norm weight", weight, h)?;
        let (x, out, weight) = (x.addr(), out.addr(), weight.addr());
        let args = [
            Ptr(x),
            checked_int("rms_norm x_stride", x_stride)?,
            Ptr(out),
            checked_int("rms_norm out_stride", out_stride)?,
            Ptr(weight),
            checked_int("rms_norm rows", rows)?,
            checked_int("rms_norm h", h)?,
            Float(eps),
        ];
        let vector = rms_vector_path(h, x_stride, out_stride, &[x, out, weight]);
        let config = grid_1d(norm_blocks(rows, h, vector));
        // SAFETY: `rms_norm_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("rms_norm", config, &args) }
    }

    /// sana's Mix-FFN middle: SiLU, depthwise 3×3 conv, GLU.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn depthwise_conv_glu(&self, params: DepthwiseConvGlu) -> Result<()> {
        let DepthwiseConvGlu {
            input,
            in_bias,
            weight,
            bias,
            out,
            batch,
            rows,
            cols,
            channels: m,
        } = params;
        let positions = batch * rows * cols;
        self.require("depthwise_conv_glu in", input, positions * 2 * m)?;
        if let Some(in_bias) = in_bias {
            self.require("depthwise_conv_glu in_bias", in_bias, 2 * m)?;
        }
        self.require("depthwise_conv_glu weight", weight, 2 * m * 9)?;
        if let Some(bias) = bias {
            self.require("depthwise_conv_glu bias", bias, 2 * m)?;
        }
        self.require("depthwise_conv_glu out", out, positions * m)?;
        let args = [
            Ptr(input.addr()),
            Ptr(addr_or_null(in_bias)),
            Ptr(weight.addr()),
            Ptr(addr_or_null(bias)),
            Ptr(out.addr()),
            checked_int("depthwise_conv_glu batch", batch)?,
            checked_int("depthwise_conv_glu rows", rows)?,
            checked_int("depthwise_conv_glu cols", cols)?,
            checked_int("depthwise_conv_glu m", m)?,
        ];
        let config = LaunchConfig {
            grid_dim: depthwise_grid(batch, rows, cols, m),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `depthwise_conv_glu_T`'s parameters in order (null biases where absent,
        // which the kernel tests for); views checked, live (caller).
        unsafe { self.launch("depthwise_conv_glu", config, &args) }
    }

    /// The cross-attention softmax with diffusers' −10000 mask bias.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn masked_softmax(&self, params: MaskedSoftmax) -> Result<()> {
        let MaskedSoftmax {
            scores,
            probs,
            mask,
            rows_per_sample,
            texts,
            batch,
            scale,
        } = params;
        let values = batch * rows_per_sample * texts;
        self.require("masked_softmax scores", scores, values)?;
        self.require("masked_softmax probs", probs, values)?;
        self.require("masked_softmax mask", mask, batch * texts)?;
        let args = [
            Ptr(scores.addr()),
            Ptr(probs.addr()),
            Ptr(mask.addr()),
            checked_int("masked_softmax rows_per_sample", rows_per_sample)?,
            checked_int("masked_softmax texts", texts)?,
            checked_int("masked_softmax batch", batch)?,
            Float(scale),
        ];
        let rows = (batch as u64) * rows_per_sample as u64;
        let config = grid_1d(rows.div_ceil(NORM_ROWS_PER_BLOCK));
        // SAFETY: `masked_softmax_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("masked_softmax", config, &args) }
    }

    /// The learned adaLN-single table plus the per-sample modulation.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract; `out` is `modulation`
    /// itself (then `mod_stride` is `table_rows · hidden`) or does not overlap it.
    pub unsafe fn modulation_table(&self, params: ModulationTable) -> Result<()> {
        let ModulationTable {
            modulation,
            mod_stride,
            row_stride,
            table,
            out,
            batch,
            table_rows,
            hidden: h,
        } = params;
        let width = table_rows.saturating_sub(1) * row_stride + h;
        self.require(
            "modulation_table modulation",
            modulation,
            strided_extent(batch, mod_stride, width),
        )?;
        self.require("modulation_table table", table, table_rows * h)?;
        self.require("modulation_table out", out, batch * table_rows * h)?;
        let args = [
            Ptr(modulation.addr()),
            checked_int("modulation_table mod_stride", mod_stride)?,
            checked_int("modulation_table row_stride", row_stride)?,
            Ptr(table.addr()),
            Ptr(out.addr()),
            checked_int("modulation_table batch", batch)?,
            checked_int("modulation_table table_rows", table_rows)?,
            checked_int("modulation_table h", h)?,
        ];
        let config = per_value((batch * table_rows * h) as u64);
        // SAFETY: `modulation_table_T`'s parameters in order; views checked, live (caller).
        unsafe { self.launch("modulation_table", config, &args) }
    }

    /// The three passes of linear attention; `chunk` tokens per pass-1 block.
    ///
    /// # Safety
    /// Every view of `params` satisfies the module's launch contract.
    pub unsafe fn linear_attention(&self, params: LinearAttention) -> Result<()> {
        let LinearAttention {
            qkv,
            partial,
            state,
            out,
            batch,
            tokens,
            heads,
            head_dim: d,
            chunk,
        } = params;
        let chunks = tokens.div_ceil(chunk);
        let (rows, h, state_size) = (batch * tokens, heads * d, d * d + d);
        self.require("linear_attention qkv", qkv, rows * 3 * h)?;
        self.require(
            "linear_attention partial",
            partial,
            batch * heads * chunks * state_size,
        )?;
        self.require("linear_attention state", state, batch * heads * state_size)?;
        self.require("linear_attention out", out, rows * h)?;
        let geometry = AttentionGeometry::new(batch, tokens, heads, d, chunk);
        let variant = self.attention.for_head_dim(d)?;
        let (qkv, partial, state, out) = (qkv.addr(), partial.addr(), state.addr(), out.addr());
        let shape = [int(batch), int(tokens), int(heads), int(d)];
        let args = [
            Ptr(qkv),
            Ptr(partial),
            shape[0],
            shape[1],
            shape[2],
            shape[3],
            int(chunk),
        ];
        // SAFETY: `linear_attention_partial_*`'s parameters in order; views checked, live
        // (caller).
        unsafe {
            self.launch_fn(
                &variant.partial,
                &variant.partial_name,
                geometry.partial,
                &args,
            )
        }?;

        let args = [
            Ptr(partial),
            Ptr(state),
            int(batch * heads),
            int(geometry.num_chunks),
            int(d),
        ];
        // SAFETY: `linear_attention_reduce`'s parameters in order; views checked, live
        // (caller).
        unsafe { self.launch(REDUCE_KERNEL, geometry.reduce, &args) }?;

        let args = [
            Ptr(qkv),
            Ptr(state),
            Ptr(out),
            shape[0],
            shape[1],
            shape[2],
            shape[3],
        ];
        // SAFETY: `linear_attention_apply_*`'s parameters in order; views checked, live
        // (caller).
        unsafe { self.launch_fn(&variant.apply, &variant.apply_name, geometry.apply, &args) }
    }
}

/// Rows per block on the one-warp-per-row path (`LDT_THREADS / 32`).
const NORM_ROWS_PER_BLOCK: u64 = THREADS as u64 / 32;

/// Whether the LayerNorm kernels take their 128-bit path for these arguments — the test of
/// `norm_kernel` in `kernels/layer_norm_modulate.cu`, repeated here so the grid matches the
/// path: h % 8 == 0, every pointer 16-byte aligned (a null pointer is), and for the residual
/// kernel (`gate_stride` given) a gate stride that keeps each sample's gate row aligned.
fn norm_vector_path(h: usize, pointers: &[u64], gate_stride: Option<usize>) -> bool {
    h.is_multiple_of(8)
        && pointers.iter().all(|p| p.is_multiple_of(16))
        && gate_stride.is_none_or(|s| s.is_multiple_of(4))
}

/// Whether `rms_norm_T` takes its 128-bit register path — the test in
/// `kernels/rms_norm.cu`, repeated so the grid matches the path: h % 8 == 0, both strides
/// multiples of 8 and every pointer 16-byte aligned (and h ≤ 8192, above which it streams).
fn rms_vector_path(h: usize, x_stride: usize, out_stride: usize, pointers: &[u64]) -> bool {
    h.is_multiple_of(8)
        && h <= RMS_BLOCK_MAX_H
        && x_stride.is_multiple_of(8)
        && out_stride.is_multiple_of(8)
        && pointers.iter().all(|p| p.is_multiple_of(16))
}

/// Largest h of `rms_norm_T`'s register paths (`RMS_BLOCK_MAX_H`, `kernels/rms_norm.cu`).
const RMS_BLOCK_MAX_H: usize = 8192;

/// Blocks of a LayerNorm launch over `rows` rows of `h`: 8 rows per block (one warp each) on
/// the vector path up to h = 1024, else one block per row — the scalar path (any h) and the
/// block-per-row path (1024 < h ≤ 8192) give each block one row at a time, so 8× fewer
/// blocks than rows would leave most of the GPU idle (the kernel's grid-stride loop keeps any
/// grid correct, only slower).
fn norm_blocks(rows: usize, h: usize, vector: bool) -> u64 {
    if vector && h <= NORM_WARP_MAX_H {
        (rows as u64).div_ceil(NORM_ROWS_PER_BLOCK)
    } else {
        rows as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_grid_follows_the_path_the_kernel_takes() {
        let aligned = [0x1000u64, 0x2000, 0x3000, 0];
        // The vector path up to h = 1024: 8 rows per block.
        assert!(norm_vector_path(512, &aligned, None));
        assert_eq!(norm_blocks(1000, 512, true), 125);
        assert_eq!(norm_blocks(7, 1024, true), 1);
        // h % 8 != 0, a misaligned pointer, or a gate stride that misaligns the gate rows:
        // the scalar path, one row per block.
        assert!(!norm_vector_path(500, &aligned, None));
        assert!(!norm_vector_path(512, &[0x1000, 0x2008], None));
        assert!(!norm_vector_path(512, &aligned, Some(6 * 512 + 2)));
        assert!(norm_vector_path(512, &aligned, Some(6 * 512)));
        assert_eq!(norm_blocks(1000, 500, false), 1000);
        assert_eq!(norm_blocks(1000, 512, false), 1000);
        // Above h = 1024 one block per row whichever path.
        assert_eq!(norm_blocks(33, 1536, true), 33);
        assert_eq!(norm_blocks(33, 16384, false), 33);
        assert_eq!(norm_blocks(0, 64, true), 0);
    }

    #[test]
    fn rms_norm_grid_follows_the_path_the_kernel_takes() {
        let aligned = [0x1000u64, 0x2000, 0x3000];
        // qk_norm in place on the Q part of qkv: stride 3h, h = 2240.
        assert!(rms_vector_path(2240, 3 * 2240, 3 * 2240, &aligned));
        // The K part starts h values in: aligned for bf16 when h % 8 == 0.
        assert!(!rms_vector_path(2240, 3 * 2240 + 4, 3 * 2240, &aligned));
        assert!(!rms_vector_path(12, 12, 12, &aligned));
        assert!(!rms_vector_path(16, 16, 16, &[0x1000, 0x1008]));
        // Above 8192 the kernel streams the row whatever the alignment.
        assert!(rms_vector_path(8192, 8192, 8192, &aligned));
        assert!(!rms_vector_path(8200, 8200, 8200, &aligned));
    }

    #[test]
    fn depthwise_grid_follows_the_launch_contract() {
        // 32×32 latent grid, m = 5600 (Sana 1600M), batch 2.
        assert_eq!(depthwise_grid(2, 32, 32, 5600), (16, 175, 2));
        // 4×6 tokens, m = 20.
        assert_eq!(depthwise_grid(3, 4, 6, 20), (1, 1, 3));
        // Clamped to CUDA's grid limits; the kernel strides over every dimension.
        assert_eq!(depthwise_grid(100_000, 1, 1, 1).2, 65_535);
    }

    #[test]
    fn sizes_beyond_a_c_int_are_refused() {
        assert!(matches!(checked_int("rows", 7), Ok(Int(7))));
        assert!(checked_int("rows", i32::MAX as usize).is_ok());
        let error = checked_int("rows", i32::MAX as usize + 1).err().unwrap();
        assert!(error.to_string().contains("rows"), "{error}");
    }
}
