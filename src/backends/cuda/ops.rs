//! Typed launchers for the kernels in `kernels/`: one method per kernel, each following the
//! launch contract in `kernels/README.md` (block 256 threads; grids as documented there).
//! Buffers are raw device addresses into the forward's arena (see `plan.rs`).

use super::device::device_error;
use super::module::Kernels;
use crate::error::Result;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::Arc;

/// Threads per block of every kernel (`LDT_THREADS`).
const THREADS: u32 = 256;
/// Elements per block of the grid-stride elementwise kernels (`LDT_ELEMS_PER_BLOCK`).
const ELEMS_PER_BLOCK: u64 = 2048;
/// Tokens per block of pass 1 of linear attention (`LINATTN_CHUNK`, the minimum we use).
pub const ATTENTION_CHUNK: usize = 256;
/// Tokens per block of pass 3 (`LINATTN_APPLY_TILE`).
const ATTENTION_APPLY_TILE: u32 = 128;
/// Largest head dimension the attention kernels handle (`LINATTN_MAX_HEAD_DIM`).
pub const MAX_HEAD_DIM: usize = 128;

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

/// Kernels whose name carries a dtype suffix.
const TYPED: [&str; 10] = [
    "norm_modulate",
    "residual_norm_modulate",
    "modulation_affine",
    "small_linear",
    "add_class_embedding",
    "embed_add",
    "bias_gelu_tanh",
    "bias_gelu_erf",
    "linear_attention_partial",
    "linear_attention_apply",
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

/// Dynamic shared memory of the attention apply kernel (`LINATTN_APPLY_SMEM`): the state
/// S as DP rows of DP + 8 floats (padded against bank conflicts) and z, DP the padded head
/// dimension (32, 64 or 128).
fn apply_shared_bytes(d: usize) -> usize {
    let dp = match d {
        0..=32 => 32,
        33..=64 => 64,
        _ => 128,
    };
    (dp * (dp + 8) + dp) * 4
}

impl Ops {
    /// Looks up every kernel of `dtype` and raises the attention kernel's shared-memory limit.
    pub fn new(kernels: &Kernels, dtype: StorageType, stream: Arc<CudaStream>) -> Result<Self> {
        let mut functions = HashMap::new();
        for name in TYPED {
            functions.insert(
                name,
                kernels.function(&format!("{name}_{}", dtype.suffix()))?,
            );
        }
        for name in UNTYPED {
            functions.insert(name, kernels.function(name)?);
        }
        let cast_in = kernels.function(&format!("cast_f32_to_{}", dtype.suffix()))?;
        let apply = &functions["linear_attention_apply"];
        let smem = apply_shared_bytes(MAX_HEAD_DIM) as i32;
        // SAFETY: `apply` is a loaded function; the attribute takes a byte count.
        unsafe {
            cudarc::driver::result::function::set_function_attribute(
                apply.cu_function(),
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem,
            )
        }
        .map_err(|e| device_error("raising the attention kernel's shared memory", e))?;
        Ok(Ops {
            functions,
            cast_in,
            stream,
            dtype,
        })
    }

    fn function(&self, name: &'static str) -> &CudaFunction {
        &self.functions[name]
    }

    /// `out[i] = T(in[i])`, from the fp32 upload buffer to storage type.
    pub fn cast_in(&self, input: u64, out: u64, n: u64) -> Result<()> {
        let n = n as i64;
        let mut b = self.stream.launch_builder(&self.cast_in);
        b.arg(&input).arg(&out).arg(&n);
        // SAFETY: argument types match the kernel's signature (pointers, long long).
        unsafe { b.launch(elementwise(n as u64)) }
            .map(drop)
            .map_err(|e| device_error("cast_f32_to_T", e))
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
        let (rows_i, h_i, tokens_i) = (rows as i32, h as i32, tokens as i32);
        let mut b = self.stream.launch_builder(self.function("norm_modulate"));
        b.arg(&x)
            .arg(&out)
            .arg(&scale)
            .arg(&shift)
            .arg(&rows_i)
            .arg(&h_i)
            .arg(&tokens_i)
            .arg(&eps);
        // SAFETY: argument types match `norm_modulate_T`.
        unsafe { b.launch(norm_grid(rows, h)) }
            .map(drop)
            .map_err(|e| device_error("norm_modulate", e))
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
        let (stride_i, rows_i, h_i, tokens_i) =
            (gate_stride as i32, rows as i32, h as i32, tokens as i32);
        let mut b = self
            .stream
            .launch_builder(self.function("residual_norm_modulate"));
        b.arg(&x)
            .arg(&y)
            .arg(&bias)
            .arg(&gate)
            .arg(&stride_i)
            .arg(&out)
            .arg(&scale)
            .arg(&shift);
        b.arg(&rows_i).arg(&h_i).arg(&tokens_i).arg(&eps);
        // SAFETY: argument types match `residual_norm_modulate_T`.
        unsafe { b.launch(norm_grid(rows, h)) }
            .map(drop)
            .map_err(|e| device_error("residual_norm_modulate", e))
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
        let ints = [stride as i32, shift_col as i32, scale_col as i32];
        let (batch_i, h_i) = (batch as i32, h as i32);
        let mut b = self
            .stream
            .launch_builder(self.function("modulation_affine"));
        b.arg(&modulation)
            .arg(&ints[0])
            .arg(&ints[1])
            .arg(&ints[2])
            .arg(&gamma)
            .arg(&beta);
        b.arg(&scale_out).arg(&shift_out).arg(&batch_i).arg(&h_i);
        // SAFETY: argument types match `modulation_affine_T`.
        unsafe { b.launch(per_value((batch * h) as u64)) }
            .map(drop)
            .map_err(|e| device_error("modulation_affine", e))
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
        let ints = [
            rows as i32,
            inp as i32,
            outp as i32,
            silu_input as i32,
            accumulate as i32,
        ];
        let mut b = self.stream.launch_builder(self.function("small_linear"));
        b.arg(&x).arg(&w).arg(&bias).arg(&out);
        for v in &ints {
            b.arg(v);
        }
        // SAFETY: argument types match `small_linear_T`.
        unsafe { b.launch(grid_1d((outp as u64).div_ceil(32))) }
            .map(drop)
            .map_err(|e| device_error("small_linear", e))
    }

    /// dit timestep features `[B, 256]`.
    pub fn timestep_features_dit(&self, t: u64, out: u64, batch: usize) -> Result<()> {
        let batch_i = batch as i32;
        let mut b = self
            .stream
            .launch_builder(self.function("timestep_features_dit"));
        b.arg(&t).arg(&out).arg(&batch_i);
        // SAFETY: argument types match the kernel.
        unsafe { b.launch(per_value(batch as u64 * 128)) }
            .map(drop)
            .map_err(|e| device_error("timestep_features_dit", e))
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
        let (batch_i, half_i) = (batch as i32, half as i32);
        let mut b = self
            .stream
            .launch_builder(self.function("timestep_features_edifice"));
        b.arg(&t)
            .arg(&out)
            .arg(&batch_i)
            .arg(&half_i)
            .arg(&num_steps);
        // SAFETY: argument types match the kernel.
        unsafe { b.launch(per_value((batch * half.max(1)) as u64)) }
            .map(drop)
            .map_err(|e| device_error("timestep_features_edifice", e))
    }

    /// One-hot `[B, C]` of the labels.
    pub fn class_onehot(&self, y: u64, out: u64, batch: usize, classes: usize) -> Result<()> {
        let (batch_i, classes_i) = (batch as i32, classes as i32);
        let mut b = self.stream.launch_builder(self.function("class_onehot"));
        b.arg(&y).arg(&out).arg(&batch_i).arg(&classes_i);
        // SAFETY: argument types match the kernel.
        unsafe { b.launch(per_value((batch * classes) as u64)) }
            .map(drop)
            .map_err(|e| device_error("class_onehot", e))
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
        let (batch_i, h_i) = (batch as i32, h as i32);
        let mut b = self
            .stream
            .launch_builder(self.function("add_class_embedding"));
        b.arg(&c).arg(&table).arg(&y).arg(&batch_i).arg(&h_i);
        // SAFETY: argument types match `add_class_embedding_T`.
        unsafe { b.launch(per_value((batch * h) as u64)) }
            .map(drop)
            .map_err(|e| device_error("add_class_embedding", e))
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
        let ints = [rows as i32, h as i32, table_rows as i32];
        let mut b = self.stream.launch_builder(self.function("embed_add"));
        b.arg(&x)
            .arg(&bias)
            .arg(&table)
            .arg(&ints[0])
            .arg(&ints[1])
            .arg(&ints[2]);
        // SAFETY: argument types match `embed_add_T`.
        unsafe { b.launch(elementwise((rows * h) as u64)) }
            .map(drop)
            .map_err(|e| device_error("embed_add", e))
    }

    /// `x = GELU(x + bias)` in place: exact erf (`tanh = false`) or tanh approximation.
    pub fn bias_gelu(&self, x: u64, bias: u64, rows: usize, m: usize, tanh: bool) -> Result<()> {
        let (rows_l, m_i) = (rows as i64, m as i32);
        let name = if tanh {
            "bias_gelu_tanh"
        } else {
            "bias_gelu_erf"
        };
        let mut b = self.stream.launch_builder(self.function(name));
        b.arg(&x).arg(&bias).arg(&rows_l).arg(&m_i);
        // SAFETY: argument types match `bias_gelu_*_T` (long long rows, int m).
        unsafe { b.launch(elementwise((rows * m) as u64)) }
            .map(drop)
            .map_err(|e| device_error(name, e))
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
        let chunks = tokens.div_ceil(chunk);
        let ints = [
            batch as i32,
            tokens as i32,
            heads as i32,
            d as i32,
            chunk as i32,
        ];
        let mut b = self
            .stream
            .launch_builder(self.function("linear_attention_partial"));
        b.arg(&qkv).arg(&partial);
        for v in &ints {
            b.arg(v);
        }
        let config = LaunchConfig {
            grid_dim: (chunks as u32, heads as u32, batch as u32),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match `linear_attention_partial_T`.
        unsafe { b.launch(config) }
            .map(drop)
            .map_err(|e| device_error("linear_attention_partial", e))?;

        let (groups, chunks_i, d_i) = ((batch * heads) as i32, chunks as i32, d as i32);
        let mut b = self
            .stream
            .launch_builder(self.function("linear_attention_reduce"));
        b.arg(&partial)
            .arg(&state)
            .arg(&groups)
            .arg(&chunks_i)
            .arg(&d_i);
        let config = LaunchConfig {
            grid_dim: (
                ((d * d + d) as u32).div_ceil(THREADS),
                (batch * heads) as u32,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match `linear_attention_reduce`.
        unsafe { b.launch(config) }
            .map(drop)
            .map_err(|e| device_error("linear_attention_reduce", e))?;

        let mut b = self
            .stream
            .launch_builder(self.function("linear_attention_apply"));
        b.arg(&qkv)
            .arg(&state)
            .arg(&out)
            .arg(&ints[0])
            .arg(&ints[1])
            .arg(&ints[2])
            .arg(&ints[3]);
        let config = LaunchConfig {
            grid_dim: (
                (tokens as u32).div_ceil(ATTENTION_APPLY_TILE),
                heads as u32,
                batch as u32,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: apply_shared_bytes(d) as u32,
        };
        // SAFETY: argument types match `linear_attention_apply_T`.
        unsafe { b.launch(config) }
            .map(drop)
            .map_err(|e| device_error("linear_attention_apply", e))
    }
}

/// Grid of the LayerNorm kernels: 8 rows per block (one warp each) up to h = 1024, else one
/// block per row.
fn norm_grid(rows: usize, h: usize) -> LaunchConfig {
    grid_1d(if h <= 1024 {
        (rows as u64).div_ceil(8)
    } else {
        rows as u64
    })
}

/// Most pass-1 chunks per (sample, head): bounds the partial-sum buffer for long sequences.
const MAX_ATTENTION_CHUNKS: usize = 64;

/// Tokens per pass-1 block: [`ATTENTION_CHUNK`], or more for sequences longer than
/// 64 chunks of it. It depends on the token count only — never on the batch — so a
/// sample's attention sums in the same order whatever else shares its batch.
pub fn attention_chunk(tokens: usize) -> usize {
    let chunk = tokens.div_ceil(MAX_ATTENTION_CHUNKS).max(ATTENTION_CHUNK);
    chunk.div_ceil(128) * 128
}
