//! The activation arena of one forward shape — (batch bucket, token count) — planned once:
//! every buffer a forward touches is a fixed offset into one device allocation, reused layer
//! to layer and call to call, so a captured CUDA graph stays valid for every replay.

use super::device::device_error;
use super::ops::{StorageType, attention_chunk};
use super::weights::DeviceBuffer;
use crate::error::Result;
use crate::model::{Config, Flavor};
use cudarc::driver::{CudaGraph, CudaStream, PinnedHostSlice};
use std::sync::Arc;

/// Device addresses of every buffer of a forward.
#[derive(Debug, Clone, Copy, Default)]
pub struct Buffers {
    /// Inputs as uploaded: x fp32 `[R, D]`, t fp32 `[B]`, y i64 `[B]`.
    pub x_upload: u64,
    /// t.
    pub t: u64,
    /// y.
    pub y: u64,
    /// x in the storage type `[R, D]` (= `x_upload` for fp32).
    pub x_in: u64,
    /// Timestep features fp32 `[B, F]`.
    pub features: u64,
    /// MLP hidden fp32 `[B, h]`.
    pub hidden: u64,
    /// Condition c fp32 `[B, h]`.
    pub condition: u64,
    /// One-hot labels fp32 `[B, C]` (edifice).
    pub onehot: u64,
    /// Class MLP hidden fp32 `[B, h]` (edifice).
    pub class_hidden: u64,
    /// Every block's modulation fp32 `[B, L·6h]`.
    pub modulation: u64,
    /// dit final modulation fp32 `[B, 2h]`.
    pub final_modulation: u64,
    /// Norm affines fp32: `(2L + 1)` pairs of `[B, h]` (scale, shift): block i's norm1 is
    /// pair 2i, norm2 pair 2i+1, the final norm pair 2L.
    pub affines: u64,
    /// Residual stream fp32 `[R, h]`.
    pub x: u64,
    /// Normalised, modulated activations `[R, h]`.
    pub u: u64,
    /// qkv `[R, 3h]`.
    pub qkv: u64,
    /// Attention output `[R, h]`.
    pub attention: u64,
    /// proj / fc2 output `[R, h]`.
    pub y_out: u64,
    /// MLP hidden `[R, m]`.
    pub mlp: u64,
    /// Attention partial sums fp32.
    pub partial: u64,
    /// Attention state fp32 `[B·H, d² + d]`.
    pub state: u64,
    /// Output eps fp32 `[R, D]`.
    pub out: u64,
}

impl Buffers {
    /// Address of affine pair `index`: (scale, shift).
    pub fn affine(&self, index: usize, batch: usize, h: usize) -> (u64, u64) {
        let pair = (2 * batch * h * 4) as u64;
        let scale = self.affines + index as u64 * pair;
        (scale, scale + (batch * h * 4) as u64)
    }
}

/// Offsets within one allocation, each 256-byte aligned.
#[derive(Default)]
struct Layout {
    size: u64,
}

impl Layout {
    fn take(&mut self, bytes: usize) -> u64 {
        let offset = self.size;
        self.size += (bytes.max(1) as u64).div_ceil(256) * 256;
        offset
    }
}

/// Host-side pinned staging buffers of a plan.
pub struct Staging {
    /// x `[R·D]`.
    pub x: PinnedHostSlice<f32>,
    /// t `[B]`.
    pub t: PinnedHostSlice<f32>,
    /// y `[B]`.
    pub y: PinnedHostSlice<i64>,
    /// eps `[R·D]`.
    pub out: PinnedHostSlice<f32>,
}

/// One forward shape's arena, staging, and captured graph.
pub struct Plan {
    /// Batch bucket (padded batch).
    pub batch: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// Tokens per pass-1 attention block.
    pub attention_chunk: usize,
    /// Buffer addresses.
    pub buffers: Buffers,
    /// Pinned host buffers.
    pub staging: Staging,
    /// The captured forward, once captured.
    pub graph: Option<CudaGraph>,
    /// Eager forwards run so far.
    pub eager_runs: usize,
    /// Capture failed once; stay eager.
    pub graph_failed: bool,
    /// The position table the graph was captured with and reads (a grid of the same N reads
    /// another): held here so that evicting it from the cache cannot free memory a graph
    /// still reads.
    pub captured_positions: Option<Arc<DeviceBuffer>>,
    _arena: DeviceBuffer,
}

impl Plan {
    /// Plans and allocates the arena for `batch` (a bucket) samples of `tokens` tokens.
    pub fn new(
        config: &Config,
        dtype: StorageType,
        batch: usize,
        tokens: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<Self> {
        let (h, d_in, m, layers) = (
            config.hidden_size,
            config.input_dim,
            config.mlp_hidden(),
            config.num_layers,
        );
        let (heads, d) = (config.num_heads, config.head_dim());
        let rows = batch * tokens;
        let t = dtype.size();
        let chunk = attention_chunk(tokens);
        let chunks = tokens.div_ceil(chunk);
        let mut l = Layout::default();
        let mut b = Buffers {
            x_upload: l.take(rows * d_in * 4),
            t: l.take(batch * 4),
            y: l.take(batch * 8),
            features: l.take(batch * config.time_freq_dim() * 4),
            hidden: l.take(batch * h * 4),
            condition: l.take(batch * h * 4),
            onehot: l.take(batch * config.num_classes.unwrap_or(1) * 4),
            class_hidden: l.take(batch * h * 4),
            modulation: l.take(batch * layers * 6 * h * 4),
            final_modulation: l.take(batch * 2 * h * 4),
            affines: l.take((2 * layers + 1) * 2 * batch * h * 4),
            x: l.take(rows * h * 4),
            u: l.take(rows * h * t),
            qkv: l.take(rows * 3 * h * t),
            attention: l.take(rows * h * t),
            y_out: l.take(rows * h * t),
            mlp: l.take(rows * m * t),
            partial: l.take(batch * heads * chunks * (d * d + d) * 4),
            state: l.take(batch * heads * (d * d + d) * 4),
            out: l.take(rows * d_in * 4),
            x_in: 0,
        };
        b.x_in = if dtype == StorageType::F32 {
            b.x_upload
        } else {
            l.take(rows * d_in * t)
        };
        let arena = DeviceBuffer::zeros(stream, l.size as usize)?;
        let base = arena.addr();
        for field in [
            &mut b.x_upload,
            &mut b.t,
            &mut b.y,
            &mut b.x_in,
            &mut b.features,
            &mut b.hidden,
            &mut b.condition,
            &mut b.onehot,
            &mut b.class_hidden,
            &mut b.modulation,
            &mut b.final_modulation,
            &mut b.affines,
            &mut b.x,
            &mut b.u,
            &mut b.qkv,
            &mut b.attention,
            &mut b.y_out,
            &mut b.mlp,
            &mut b.partial,
            &mut b.state,
            &mut b.out,
        ] {
            *field += base;
        }
        let ctx = stream.context();
        // SAFETY: pinned host allocations, sized here; written before every upload.
        let staging = unsafe {
            let pin = |what: &str, e| device_error(&format!("allocating pinned {what}"), e);
            Staging {
                x: ctx
                    .alloc_pinned::<f32>(rows * d_in)
                    .map_err(|e| pin("x", e))?,
                t: ctx.alloc_pinned::<f32>(batch).map_err(|e| pin("t", e))?,
                y: ctx.alloc_pinned::<i64>(batch).map_err(|e| pin("y", e))?,
                // Read by the host: not write-combined (flags 0), unlike the upload buffers.
                out: ctx
                    .alloc_pinned_with_flags::<f32>(rows * d_in, 0)
                    .map_err(|e| pin("eps", e))?,
            }
        };
        tracing::debug!(
            batch,
            tokens,
            arena_mib = l.size as f64 / (1 << 20) as f64,
            flavor = %if config.flavor == Flavor::Dit { "dit" } else { "edifice" },
            "planned a forward arena"
        );
        Ok(Plan {
            batch,
            tokens,
            attention_chunk: chunk,
            buffers: b,
            staging,
            graph: None,
            eager_runs: 0,
            graph_failed: false,
            captured_positions: None,
            _arena: arena,
        })
    }
}

/// The batch bucket of `batch` samples: the next power of two (so a handful of captured
/// graphs serve every batch size).
pub fn batch_bucket(batch: usize) -> usize {
    batch.max(1).next_power_of_two()
}
