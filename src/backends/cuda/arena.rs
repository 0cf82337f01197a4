//! The activation arena of one forward shape — (batch bucket, token count) — planned once:
//! every buffer a forward touches is a fixed region of one device allocation, reused layer
//! to layer and call to call, so a captured CUDA graph stays valid for every replay.
//!
//! Each buffer is declared once, with its element type and length, in
//! [`ArenaBuffers::declare`]; the same declaration first measures the arena and then, over
//! the allocation, yields the typed views — so no buffer can be sized without being placed,
//! or placed without the arena's base address.

use super::device_slice::{DeviceSlice, FixedElement, Storage};
use super::ops::attention_chunk;
use super::staging::PinnedStaging;
use super::weights::DeviceBuffer;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::adaln::{BLOCK_CHUNKS, FINAL_CHUNKS};
use crate::model::{Config, Flavor};
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// Alignment of every buffer in the arena, bytes (ample for the kernels' 16-byte vector path).
const BUFFER_ALIGNMENT: usize = 256;

/// Every buffer of a forward, as typed views into the arena. R = batch · tokens rows,
/// B the batch bucket, D the input dim, h the width, L the layers, m the MLP width.
#[derive(Debug, Clone, Copy)]
pub struct ArenaBuffers {
    /// x as uploaded, fp32 `[R, D]`.
    pub x_upload: DeviceSlice<f32>,
    /// Timesteps as uploaded, fp32 `[B]`.
    pub timesteps: DeviceSlice<f32>,
    /// Labels as uploaded, i64 `[B]`.
    pub labels: DeviceSlice<i64>,
    /// Timestep features fp32 `[B, F]`.
    pub features: DeviceSlice<f32>,
    /// Timestep MLP hidden fp32 `[B, h]`.
    pub timestep_hidden: DeviceSlice<f32>,
    /// The condition c, fp32 `[B, h]`.
    pub condition: DeviceSlice<f32>,
    /// One-hot labels fp32 `[B, C]` (edifice).
    pub onehot: DeviceSlice<f32>,
    /// Class MLP hidden fp32 `[B, h]` (edifice).
    pub class_hidden: DeviceSlice<f32>,
    /// Every block's modulation fp32 `[B, L·6h]`.
    pub modulation: DeviceSlice<f32>,
    /// dit final modulation fp32 `[B, 2h]`.
    pub final_modulation: DeviceSlice<f32>,
    /// Norm affines fp32: `(2L + 1)` pairs of `[B, h]` (scale, shift): block i's norm1 is
    /// pair 2i, norm2 pair 2i+1, the final norm pair 2L.
    pub affines: DeviceSlice<f32>,
    /// The residual stream fp32 `[R, h]`.
    pub residual: DeviceSlice<f32>,
    /// Normalised, modulated activations `[R, h]`.
    pub normed: DeviceSlice<Storage>,
    /// qkv `[R, 3h]`.
    pub qkv: DeviceSlice<Storage>,
    /// Attention output `[R, h]`.
    pub attention: DeviceSlice<Storage>,
    /// A branch's output before its bias: proj or fc2, `[R, h]`.
    pub branch_out: DeviceSlice<Storage>,
    /// MLP hidden `[R, m]`.
    pub mlp: DeviceSlice<Storage>,
    /// Attention partial sums fp32 `[B·H, chunks, d² + d]`.
    pub partial: DeviceSlice<f32>,
    /// Attention state fp32 `[B·H, d² + d]`.
    pub attention_state: DeviceSlice<f32>,
    /// Output eps fp32 `[R, D]`.
    pub eps: DeviceSlice<f32>,
    /// x in the storage type `[R, D]` (the upload buffer itself for fp32).
    pub x_in: DeviceSlice<Storage>,
}

/// Places buffers one after another from `base`, each [`BUFFER_ALIGNMENT`]-aligned (shared
/// with sana's arena, `sana/arena.rs`).
pub(super) struct ArenaLayout {
    base: u64,
    size: usize,
    dtype: DType,
}

impl ArenaLayout {
    pub(super) fn new(base: u64, dtype: DType) -> Self {
        ArenaLayout {
            base,
            size: 0,
            dtype,
        }
    }

    /// Bytes placed so far (the arena's size once every buffer is declared).
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The storage type of [`ArenaLayout::take_storage`]'s buffers.
    pub(super) fn dtype(&self) -> DType {
        self.dtype
    }

    /// The next region of `bytes` bytes: its address.
    fn place(&mut self, bytes: usize) -> u64 {
        let address = self.base + self.size as u64;
        self.size += bytes.max(1).div_ceil(BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT;
        address
    }

    /// A buffer of `len` elements of `T`.
    pub(super) fn take<T: FixedElement>(&mut self, len: usize) -> DeviceSlice<T> {
        DeviceSlice::new(self.place(len * T::SIZE), len)
    }

    /// A buffer of `len` storage-type elements.
    pub(super) fn take_storage(&mut self, len: usize) -> DeviceSlice<Storage> {
        let address = self.place(len * self.dtype.size());
        DeviceSlice::storage(address, len, self.dtype)
    }
}

impl ArenaBuffers {
    /// Declares every buffer of a forward of `batch` samples of `tokens` tokens, in arena
    /// order: the one list of the arena's buffers.
    fn declare(layout: &mut ArenaLayout, config: &Config, batch: usize, tokens: usize) -> Self {
        let (h, d_in, m, layers) = (
            config.hidden_size,
            config.input_dim,
            config.mlp_hidden(),
            config.num_layers,
        );
        let (heads, d) = (config.num_heads, config.head_dim());
        let rows = batch * tokens;
        let chunks = tokens.div_ceil(attention_chunk(tokens));
        let x_upload = layout.take(rows * d_in);
        ArenaBuffers {
            x_upload,
            timesteps: layout.take(batch),
            labels: layout.take(batch),
            features: layout.take(batch * config.time_freq_dim()),
            timestep_hidden: layout.take(batch * h),
            condition: layout.take(batch * h),
            onehot: layout.take(batch * config.num_classes.unwrap_or(1)),
            class_hidden: layout.take(batch * h),
            modulation: layout.take(batch * layers * BLOCK_CHUNKS * h),
            final_modulation: layout.take(batch * FINAL_CHUNKS * h),
            affines: layout.take((2 * layers + 1) * 2 * batch * h),
            residual: layout.take(rows * h),
            normed: layout.take_storage(rows * h),
            qkv: layout.take_storage(rows * 3 * h),
            attention: layout.take_storage(rows * h),
            branch_out: layout.take_storage(rows * h),
            mlp: layout.take_storage(rows * m),
            partial: layout.take(batch * heads * chunks * (d * d + d)),
            attention_state: layout.take(batch * heads * (d * d + d)),
            eps: layout.take(rows * d_in),
            x_in: if layout.dtype == DType::F32 {
                x_upload.as_fp32_storage()
            } else {
                layout.take_storage(rows * d_in)
            },
        }
    }

    /// Affine pair `index` (see [`ArenaBuffers::affines`]) of `batch` samples of width `h`:
    /// (scale, shift).
    pub fn affine(
        &self,
        index: usize,
        batch: usize,
        h: usize,
    ) -> Result<(DeviceSlice<f32>, DeviceSlice<f32>)> {
        let values = batch * h;
        let scale = self.affines.slice(2 * index * values, values)?;
        let shift = self.affines.slice((2 * index + 1) * values, values)?;
        Ok((scale, shift))
    }
}

/// One forward shape's arena and pinned staging.
pub struct ForwardArena {
    /// Batch bucket (padded batch).
    pub batch: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// Tokens per pass-1 attention block.
    pub attention_chunk: usize,
    /// The buffers, as views into `_memory`.
    pub buffers: ArenaBuffers,
    /// Pinned host buffers.
    pub staging: PinnedStaging,
    /// The allocation every view of `buffers` lies in (freed with the arena).
    _memory: DeviceBuffer,
}

impl ForwardArena {
    /// Plans and allocates (zero-filled, on `stream`) the arena for `batch` (a bucket)
    /// samples of `tokens` tokens.
    pub fn new(
        config: &Config,
        dtype: DType,
        batch: usize,
        tokens: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<Self> {
        let mut measure = ArenaLayout::new(0, dtype);
        ArenaBuffers::declare(&mut measure, config, batch, tokens);
        let memory = DeviceBuffer::zeros(stream, measure.size)?;
        let buffers = ArenaBuffers::declare(
            &mut ArenaLayout::new(memory.addr(), dtype),
            config,
            batch,
            tokens,
        );
        let staging = PinnedStaging::new(stream, batch * tokens * config.input_dim, batch)?;
        tracing::debug!(
            batch,
            tokens,
            arena_mib = measure.size as f64 / (1 << 20) as f64,
            flavor = %if config.flavor == Flavor::Dit { "dit" } else { "edifice" },
            "planned a forward arena"
        );
        Ok(ForwardArena {
            batch,
            tokens,
            attention_chunk: attention_chunk(tokens),
            buffers,
            staging,
            _memory: memory,
        })
    }
}

/// The batch bucket of `batch` samples: the next power of two (so a handful of captured
/// graphs serve every batch size).
pub fn batch_bucket(batch: usize) -> usize {
    batch.max(1).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flavor: Flavor) -> Config {
        Config {
            hidden_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_classes: Some(10),
            flavor,
            ..Config::new(8)
        }
    }

    #[test]
    fn every_buffer_lies_aligned_inside_the_arena_without_overlap() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for flavor in [Flavor::Dit, Flavor::Edifice] {
                let config = config(flavor);
                let base = 0x7f00_0000_0000;
                let mut layout = ArenaLayout::new(base, dtype);
                let b = ArenaBuffers::declare(&mut layout, &config, 4, 300);
                let mut regions = [
                    (b.x_upload.addr(), b.x_upload.bytes()),
                    (b.timesteps.addr(), b.timesteps.bytes()),
                    (b.labels.addr(), b.labels.bytes()),
                    (b.features.addr(), b.features.bytes()),
                    (b.timestep_hidden.addr(), b.timestep_hidden.bytes()),
                    (b.condition.addr(), b.condition.bytes()),
                    (b.onehot.addr(), b.onehot.bytes()),
                    (b.class_hidden.addr(), b.class_hidden.bytes()),
                    (b.modulation.addr(), b.modulation.bytes()),
                    (b.final_modulation.addr(), b.final_modulation.bytes()),
                    (b.affines.addr(), b.affines.bytes()),
                    (b.residual.addr(), b.residual.bytes()),
                    (b.normed.addr(), b.normed.bytes()),
                    (b.qkv.addr(), b.qkv.bytes()),
                    (b.attention.addr(), b.attention.bytes()),
                    (b.branch_out.addr(), b.branch_out.bytes()),
                    (b.mlp.addr(), b.mlp.bytes()),
                    (b.partial.addr(), b.partial.bytes()),
                    (b.attention_state.addr(), b.attention_state.bytes()),
                    (b.eps.addr(), b.eps.bytes()),
                ]
                .to_vec();
                if dtype == DType::F32 {
                    assert_eq!(b.x_in.addr(), b.x_upload.addr());
                } else {
                    regions.push((b.x_in.addr(), b.x_in.bytes()));
                }
                let end = base + layout.size as u64;
                regions.sort();
                for pair in regions.windows(2) {
                    assert!(pair[0].0 + pair[0].1 as u64 <= pair[1].0, "{pair:?}");
                }
                for (addr, bytes) in regions {
                    assert!(addr.is_multiple_of(BUFFER_ALIGNMENT as u64));
                    assert!(addr >= base && addr + bytes as u64 <= end);
                }
                let (scale, shift) = b.affine(2 * 2, 4, 96).unwrap();
                assert_eq!(shift.addr(), scale.addr() + 4 * 96 * 4);
                assert_eq!(
                    shift.addr() + 4 * 96 * 4,
                    b.affines.addr() + b.affines.bytes() as u64
                );
                assert!(b.affine(2 * 2 + 1, 4, 96).is_err());
            }
        }
    }

    #[test]
    fn measuring_and_placing_give_the_same_layout() {
        let config = config(Flavor::Dit);
        let mut measure = ArenaLayout::new(0, DType::BF16);
        let at_zero = ArenaBuffers::declare(&mut measure, &config, 2, 64);
        let mut place = ArenaLayout::new(0x1_0000_0000, DType::BF16);
        let placed = ArenaBuffers::declare(&mut place, &config, 2, 64);
        assert_eq!(measure.size, place.size);
        assert_eq!(placed.eps.addr() - at_zero.eps.addr(), 0x1_0000_0000);
    }
}
