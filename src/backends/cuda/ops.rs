//! Typed launchers for the kernels in `kernels/`: one method per kernel, each following the
//! launch contract in `kernels/README.md` (block 256 threads; grids as documented there).
//! Buffers are raw device addresses into the forward's arena (see `plan.rs`).

use super::device::device_error;
use super::module::Kernels;
use crate::error::Result;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use super::attention_variant::attention_chunk;
use super::attention_variant::{AttentionGeometry, AttentionKernels, REDUCE_KERNEL};
pub(crate) use super::kernel_constants::MAX_HEAD_DIM;
use super::kernel_constants::{ELEMS_PER_BLOCK, THREADS};

/// Storage type of activations and weights on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageType {
    /// fp32.
    F32,
    /// bf16.
    Bf16,
    /// fp16.
    F16,
}

impl StorageType {
    /// Kernel-name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            StorageType::F32 => "f32",
            StorageType::Bf16 => "bf16",
            StorageType::F16 => "f16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageType::F32 => 4,
            StorageType::Bf16 | StorageType::F16 => 2,
        }
    }
}

/// Kernels whose name carries a dtype suffix (the attention kernels: [`AttentionKernels`]).
const TYPED: [&str; 8] = [
    "norm_modulate",
    "residual_norm_modulate",
    "modulation_affine",
    "small_linear",
    "add_class_embedding",
    "embed_add",
    "bias_gelu_tanh",
    "bias_gelu_erf",
];
/// Kernels without one.
const UNTYPED: [&str; 4] = [
    "timestep_features_dit",
    "timestep_features_edifice",
    "class_onehot",
    "linear_attention_reduce",
];

/// The kernels of one storage type, ready to launch on a stream.
pub struct Ops {
    functions: HashMap<&'static str, CudaFunction>,
    cast_in: CudaFunction,
    attention: AttentionKernels,
    stream: Arc<CudaStream>,
    /// The storage type.
    pub dtype: StorageType,
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

impl Ops {
    /// Looks up every kernel of `dtype` and raises the attention kernel's shared-memory limit.
    pub fn new(kernels: &Kernels, dtype: StorageType, stream: Arc<CudaStream>) -> Result<Self> {
        let mut functions = HashMap::new();
        for name in TYPED {
            let symbol = format!("{name}_{}", dtype.suffix());
            functions.insert(name, kernels.function(&symbol)?);
        }
        for name in UNTYPED {
            functions.insert(name, kernels.function(name)?);
        }
        let cast_in = kernels.function(&format!("cast_f32_to_{}", dtype.suffix()))?;
        let attention = AttentionKernels::load(kernels, dtype)?;
        Ok(Ops {
            functions,
            cast_in,
            attention,
            stream,
            dtype,
        })
    }

    /// Launches `function` (called `name` in errors) with `args` on the stream.
    fn launch_fn(
        &self,
        function: &CudaFunction,
        name: &str,
        config: LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        let mut b = self.stream.launch_builder(function);
        for arg in args {
            match arg {
                Ptr(v) => b.arg(v),
                Int(v) => b.arg(v),
                Long(v) => b.arg(v),
                Float(v) => b.arg(v),
            };
        }
        // SAFETY: every launcher below passes exactly its kernel's parameter list, in order
        // and with the C types of `kernels/` (pointers, int, long long, float).
        unsafe { b.launch(config) }
            .map(drop)
            .map_err(|e| device_error(name, e))
    }

    fn launch(&self, name: &'static str, config: LaunchConfig, args: &[Arg]) -> Result<()> {
        self.launch_fn(&self.functions[name], name, config, args)
    }

    /// `out[i] = T(in[i])`, from the fp32 upload buffer to storage type.
    pub fn cast_in(&self, input: u64, out: u64, n: u64) -> Result<()> {
        let args = [Ptr(input), Ptr(out), Long(n as i64)];
        self.launch_fn(&self.cast_in, "cast_f32_to_T", elementwise(n), &args)
    }

    /// LayerNorm of `x` rows with per-sample `scale`/`shift` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_modulate(
        &self,
        x: u64,
        out: u64,
        scale: u64,
        shift: u64,
        rows: usize,
        h: usize,
        tokens: usize,
        eps: f32,
    ) -> Result<()> {
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
        self.launch(
            "norm_modulate",
            grid_1d(norm_blocks(rows, h, vector)),
            &args,
        )
    }

    /// `x += gate ⊙ (y + bias)`, then (if `out` ≠ 0) the next LayerNorm + modulation into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_norm_modulate(
        &self,
        x: u64,
        y: u64,
        bias: u64,
        gate: u64,
        gate_stride: usize,
        out: u64,
        scale: u64,
        shift: u64,
        rows: usize,
        h: usize,
        tokens: usize,
        eps: f32,
    ) -> Result<()> {
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
        let pointers = [x, y, bias, gate, out, scale, shift];
        let vector = norm_vector_path(h, &pointers, Some(gate_stride));
        let config = grid_1d(norm_blocks(rows, h, vector));
        self.launch("residual_norm_modulate", config, &args)
    }

    /// Folds shift/scale columns of `modulation` (and gamma/beta) into per-sample scale/shift.
    #[allow(clippy::too_many_arguments)]
    pub fn modulation_affine(
        &self,
        modulation: u64,
        stride: usize,
        shift_col: usize,
        scale_col: usize,
        gamma: u64,
        beta: u64,
        scale_out: u64,
        shift_out: u64,
        batch: usize,
        h: usize,
    ) -> Result<()> {
        let args = [
            Ptr(modulation),
            int(stride),
            int(shift_col),
            int(scale_col),
            Ptr(gamma),
            Ptr(beta),
            Ptr(scale_out),
            Ptr(shift_out),
            int(batch),
            int(h),
        ];
        self.launch("modulation_affine", per_value((batch * h) as u64), &args)
    }

    /// `out (+)= a(x) Wᵀ + bias` on a few fp32 rows.
    #[allow(clippy::too_many_arguments)]
    pub fn small_linear(
        &self,
        x: u64,
        w: u64,
        bias: u64,
        out: u64,
        rows: usize,
        inp: usize,
        outp: usize,
        silu_input: bool,
        accumulate: bool,
    ) -> Result<()> {
        let args = [
            Ptr(x),
            Ptr(w),
            Ptr(bias),
            Ptr(out),
            int(rows),
            int(inp),
            int(outp),
            int(silu_input as usize),
            int(accumulate as usize),
        ];
        self.launch("small_linear", grid_1d((outp as u64).div_ceil(32)), &args)
    }

    /// dit timestep features `[B, 256]`.
    pub fn timestep_features_dit(&self, t: u64, out: u64, batch: usize) -> Result<()> {
        let args = [Ptr(t), Ptr(out), int(batch)];
        self.launch(
            "timestep_features_dit",
            per_value(batch as u64 * 128),
            &args,
        )
    }

    /// edifice timestep features `[B, 2·half]`.
    pub fn timestep_features_edifice(
        &self,
        t: u64,
        out: u64,
        batch: usize,
        half: usize,
        num_steps: f32,
    ) -> Result<()> {
        let args = [Ptr(t), Ptr(out), int(batch), int(half), Float(num_steps)];
        self.launch(
            "timestep_features_edifice",
            per_value((batch * half.max(1)) as u64),
            &args,
        )
    }

    /// One-hot `[B, C]` of the labels.
    pub fn class_onehot(&self, y: u64, out: u64, batch: usize, classes: usize) -> Result<()> {
        let args = [Ptr(y), Ptr(out), int(batch), int(classes)];
        self.launch("class_onehot", per_value((batch * classes) as u64), &args)
    }

    /// `c[b] += table[y_b]`.
    pub fn add_class_embedding(
        &self,
        c: u64,
        table: u64,
        y: u64,
        batch: usize,
        h: usize,
    ) -> Result<()> {
        let args = [Ptr(c), Ptr(table), Ptr(y), int(batch), int(h)];
        self.launch("add_class_embedding", per_value((batch * h) as u64), &args)
    }

    /// `x[r] += bias + table[r % table_rows]`.
    pub fn embed_add(
        &self,
        x: u64,
        bias: u64,
        table: u64,
        rows: usize,
        h: usize,
        table_rows: usize,
    ) -> Result<()> {
        let args = [
            Ptr(x),
            Ptr(bias),
            Ptr(table),
            int(rows),
            int(h),
            int(table_rows),
        ];
        self.launch("embed_add", elementwise((rows * h) as u64), &args)
    }

    /// `x = GELU(x + bias)` in place: exact erf (`tanh = false`) or tanh approximation.
    pub fn bias_gelu(&self, x: u64, bias: u64, rows: usize, m: usize, tanh: bool) -> Result<()> {
        let name = if tanh {
            "bias_gelu_tanh"
        } else {
            "bias_gelu_erf"
        };
        let args = [Ptr(x), Ptr(bias), Long(rows as i64), int(m)];
        self.launch(name, elementwise((rows * m) as u64), &args)
    }

    /// The three passes of linear attention; `chunk` tokens per pass-1 block.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_attention(
        &self,
        qkv: u64,
        partial: u64,
        state: u64,
        out: u64,
        batch: usize,
        tokens: usize,
        heads: usize,
        d: usize,
        chunk: usize,
    ) -> Result<()> {
        let geometry = AttentionGeometry::new(batch, tokens, heads, d, chunk);
        let variant = self.attention.for_head_dim(d)?;
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
        self.launch_fn(
            &variant.partial,
            &variant.partial_name,
            geometry.partial,
            &args,
        )?;

        let args = [
            Ptr(partial),
            Ptr(state),
            int(batch * heads),
            int(geometry.num_chunks),
            int(d),
        ];
        self.launch(REDUCE_KERNEL, geometry.reduce, &args)?;

        let args = [
            Ptr(qkv),
            Ptr(state),
            Ptr(out),
            shape[0],
            shape[1],
            shape[2],
            shape[3],
        ];
        self.launch_fn(&variant.apply, &variant.apply_name, geometry.apply, &args)
    }
}

/// Largest h of the LayerNorm kernels' one-warp-per-row path (`LN_WARP_MAX_H`).
const NORM_WARP_MAX_H: usize = 1024;
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
}
