//! The activation arena of one sana forward shape ([`super::shape::SanaShapeKey`]): every buffer a forward
//! touches is a fixed region of one zero-filled device allocation, placed by the same
//! [`ArenaLayout`] as the dit arena, so a captured CUDA graph stays valid for every replay.
//! Each buffer is declared once, in [`SanaBuffers::declare`], which first measures the arena
//! and then, over the allocation, yields the typed views. The sizes come from
//! [`SanaSizes`], which checked every product, so the declaration multiplies freely.
//!
//! Two buffers are constant and written once, when the arena is made: the sin-cos position
//! table of the shape's grid (or one zero row for a model without positions) and a row of
//! ones, the gate of the cross-attention's ungated residual. The zero bias of the Mix-FFN's
//! bias-less point conv needs no write: the allocation is zero-filled.

use super::super::arena::ArenaLayout;
use super::super::device::device_error;
use super::super::device_slice::{DeviceSlice, Storage};
use super::super::weights::DeviceBuffer;
use super::shape::SanaSizes;
use super::staging::SanaStaging;
use crate::dtype::DType;
use crate::error::Result;
use crate::model::sana::tensors::TIME_FREQUENCY_WIDTH;
use crate::model::sana::{SanaConfig, embedding::sincos_positions};
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// Every buffer of a sana forward, as typed views into the arena. R = B·N image rows, T = B·S
/// caption rows, h the width, c the cross-attention width, m the Mix-FFN width, L the blocks.
#[derive(Debug, Clone, Copy)]
pub struct SanaBuffers {
    /// Patch features as uploaded, fp32 `[R, C·p·p]`.
    pub patches_upload: DeviceSlice<f32>,
    /// Patch features in the storage type (the upload itself for fp32).
    pub patches: DeviceSlice<Storage>,
    /// Timestep features as uploaded, fp32 `[B, 256]`.
    pub timestep_features: DeviceSlice<f32>,
    /// Guidance features as uploaded, fp32 `[B, 256]` (Sprint; one unused row otherwise).
    pub guidance_features: DeviceSlice<f32>,
    /// Caption embeddings as uploaded, fp32 `[T, caption]`.
    pub captions_upload: DeviceSlice<f32>,
    /// Caption embeddings in the storage type (the upload itself for fp32).
    pub captions: DeviceSlice<Storage>,
    /// The caption mask as uploaded, fp32 `[B, S]` (ones without a mask).
    pub mask: DeviceSlice<f32>,
    /// A timestep MLP's hidden layer, fp32 `[B, h]`.
    pub timestep_hidden: DeviceSlice<f32>,
    /// The embedded timestep (+ guidance), fp32 `[B, h]`.
    pub condition: DeviceSlice<f32>,
    /// adaLN-single's output, fp32 `[B, 6h]`.
    pub time6: DeviceSlice<f32>,
    /// Every block's table + modulation, fp32 `[L, B, 6h]`.
    pub block_modulation: DeviceSlice<f32>,
    /// The final table + condition, fp32 `[B, 2h]`.
    pub final_modulation: DeviceSlice<f32>,
    /// Norm affines fp32: `(2L + 1)` pairs of `[B, h]` (scale, shift): block i's norm1 is
    /// pair 2i, its norm2 pair 2i + 1, the final norm pair 2L.
    pub affines: DeviceSlice<f32>,
    /// Positions fp32 `[N, h]`, or one zero row `[1, h]` without sin-cos positions.
    pub positions: DeviceSlice<f32>,
    /// Ones, fp32 `[h]`: the cross-attention residual's gate (stride 0).
    pub ones: DeviceSlice<f32>,
    /// Zeros `[h]`: the bias of the bias-less point conv.
    pub zero_bias: DeviceSlice<Storage>,
    /// The caption projection's hidden layer `[T, h]`.
    pub text_hidden: DeviceSlice<Storage>,
    /// The projected, normalised captions `[T, h]`.
    pub text: DeviceSlice<Storage>,
    /// The residual stream fp32 `[R, h]`.
    pub residual: DeviceSlice<f32>,
    /// The residual stream in the storage type, the cross-attention's input `[R, h]` (the
    /// residual itself for fp32).
    pub residual_cast: DeviceSlice<Storage>,
    /// Normalised, modulated activations `[R, h]`.
    pub normed: DeviceSlice<Storage>,
    /// Self-attention q, k, v `[R, 3h]`.
    pub qkv: DeviceSlice<Storage>,
    /// Self-attention output `[R, h]`.
    pub attention: DeviceSlice<Storage>,
    /// Attention partial sums fp32 `[B·H, chunks, d² + d]`.
    pub partial: DeviceSlice<f32>,
    /// Attention state fp32 `[B·H, d² + d]`.
    pub attention_state: DeviceSlice<f32>,
    /// A branch's output before its bias: out projections, point conv `[R, h]`.
    pub branch_out: DeviceSlice<Storage>,
    /// Cross-attention q `[R, c]`.
    pub cross_q: DeviceSlice<Storage>,
    /// Cross-attention k of the captions `[T, c]`.
    pub cross_k: DeviceSlice<Storage>,
    /// Cross-attention v of the captions `[T, c]`.
    pub cross_v: DeviceSlice<Storage>,
    /// One tile's scores fp32 `[heads, tile, S]`.
    pub scores: DeviceSlice<f32>,
    /// One tile's probabilities `[heads, tile, S]`.
    pub probs: DeviceSlice<Storage>,
    /// Cross-attention output `[R, c]`.
    pub cross_attention: DeviceSlice<Storage>,
    /// The inverted 1×1 conv's output `[R, 2m]`.
    pub ffn_wide: DeviceSlice<Storage>,
    /// The depthwise conv + GLU output `[R, m]`.
    pub ffn_gated: DeviceSlice<Storage>,
    /// proj_out's output fp32 `[R, p²·C_out]`.
    pub out: DeviceSlice<f32>,
}

impl SanaBuffers {
    /// Declares every buffer of a forward of `s`, in arena order: the one list of the
    /// arena's buffers. `position_rows` is N with sin-cos positions, else 1.
    fn declare(layout: &mut ArenaLayout, s: &SanaSizes, position_rows: usize) -> Self {
        let (b, h, r, t) = (s.batch, s.hidden, s.token_rows, s.text_rows);
        let fp32 = layout.dtype() == DType::F32;
        let state = s.head_dim * s.head_dim + s.head_dim;
        let scores = s.score_rows(s.score_tile) * s.texts;
        let patches_upload = layout.take(r * s.patch_width);
        let captions_upload = layout.take(t * s.caption);
        let residual = layout.take(r * h);
        SanaBuffers {
            patches_upload,
            patches: if fp32 {
                patches_upload.as_fp32_storage()
            } else {
                layout.take_storage(r * s.patch_width)
            },
            timestep_features: layout.take(b * TIME_FREQUENCY_WIDTH),
            guidance_features: layout.take(b * TIME_FREQUENCY_WIDTH),
            captions_upload,
            captions: if fp32 {
                captions_upload.as_fp32_storage()
            } else {
                layout.take_storage(t * s.caption)
            },
            mask: layout.take(b * s.texts),
            timestep_hidden: layout.take(b * h),
            condition: layout.take(b * h),
            time6: layout.take(b * 6 * h),
            block_modulation: layout.take(s.layers * b * 6 * h),
            final_modulation: layout.take(b * 2 * h),
            affines: layout.take((2 * s.layers + 1) * 2 * b * h),
            positions: layout.take(position_rows * h),
            ones: layout.take(h),
            zero_bias: layout.take_storage(h),
            text_hidden: layout.take_storage(t * h),
            text: layout.take_storage(t * h),
            residual,
            residual_cast: if fp32 {
                residual.as_fp32_storage()
            } else {
                layout.take_storage(r * h)
            },
            normed: layout.take_storage(r * h),
            qkv: layout.take_storage(r * 3 * h),
            attention: layout.take_storage(r * h),
            partial: layout.take(b * s.heads * s.attention_chunks * state),
            attention_state: layout.take(b * s.heads * state),
            branch_out: layout.take_storage(r * h),
            cross_q: layout.take_storage(r * s.cross),
            cross_k: layout.take_storage(t * s.cross),
            cross_v: layout.take_storage(t * s.cross),
            scores: layout.take(scores),
            probs: layout.take_storage(scores),
            cross_attention: layout.take_storage(r * s.cross),
            ffn_wide: layout.take_storage(r * 2 * s.ffn),
            ffn_gated: layout.take_storage(r * s.ffn),
            out: layout.take(r * s.out_width),
        }
    }

    /// Affine pair `index` (see [`SanaBuffers::affines`]) of `batch` samples of width `h`:
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

    /// Block `index`'s table + modulation `[B, 6h]`.
    pub fn block_modulation(
        &self,
        index: usize,
        batch: usize,
        h: usize,
    ) -> Result<DeviceSlice<f32>> {
        let values = batch * 6 * h;
        self.block_modulation.slice(index * values, values)
    }
}

/// One sana forward shape's arena and pinned staging.
pub struct SanaArena {
    /// The checked sizes of the shape.
    pub sizes: SanaSizes,
    /// The buffers, as views into `_memory`.
    pub buffers: SanaBuffers,
    /// Pinned host buffers.
    pub staging: SanaStaging,
    /// Rows of the position table (N with sin-cos positions, else 1).
    pub position_rows: usize,
    /// The allocation every view of `buffers` lies in (freed with the arena).
    _memory: DeviceBuffer,
}

impl SanaArena {
    /// Plans and allocates the arena of `key` on `stream`: zero-filled, then its constant
    /// buffers (positions, ones) written; returns once they are on the device.
    pub fn new(
        config: &SanaConfig,
        sizes: SanaSizes,
        dtype: DType,
        stream: &Arc<CudaStream>,
    ) -> Result<Self> {
        let positions = config.interpolation_scale.map(|scale| {
            let base = config.sample_size / config.patch_size.max(1);
            sincos_positions(sizes.rows, sizes.cols, sizes.hidden, base, scale)
        });
        let position_rows = if positions.is_some() { sizes.tokens } else { 1 };
        let mut measure = ArenaLayout::new(0, dtype);
        SanaBuffers::declare(&mut measure, &sizes, position_rows);
        let memory = DeviceBuffer::zeros(stream, measure.size())?;
        let buffers = SanaBuffers::declare(
            &mut ArenaLayout::new(memory.addr(), dtype),
            &sizes,
            position_rows,
        );
        let ones = vec![1.0f32; sizes.hidden];
        let fail = |e| device_error("writing the arena's constant buffers", e);
        buffers.ones.require("ones", ones.len())?;
        if let Some(table) = &positions {
            buffers.positions.require("positions", table.len())?;
        }
        // SAFETY: both destinations are regions of `memory`, at least as long as their
        // sources (checked above); the copies are on `stream`, after its zero fill, and the
        // host sources live until the synchronisation below.
        unsafe {
            use cudarc::driver::result::memcpy_htod_async;
            memcpy_htod_async(buffers.ones.addr(), &ones, stream.cu_stream()).map_err(fail)?;
            if let Some(table) = &positions {
                memcpy_htod_async(buffers.positions.addr(), table, stream.cu_stream())
                    .map_err(fail)?;
            }
        }
        stream.synchronize().map_err(fail)?;
        let staging = SanaStaging::new(stream, &sizes)?;
        tracing::debug!(
            batch = sizes.batch,
            rows = sizes.rows,
            cols = sizes.cols,
            texts = sizes.texts,
            arena_mib = measure.size() as f64 / (1 << 20) as f64,
            "planned a sana forward arena"
        );
        Ok(SanaArena {
            sizes,
            buffers,
            staging,
            position_rows,
            _memory: memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::arena::batch_bucket;
    use super::super::shape::SanaShapeKey;
    use super::*;
    use crate::model::sana::SanaDims;

    fn sizes(batch: usize, layers: usize) -> SanaSizes {
        let d = SanaDims {
            hidden: 16,
            heads: 2,
            head_dim: 8,
            cross_heads: 2,
            cross_head_dim: 8,
            ffn_hidden: 40,
            in_channels: 4,
            out_channels: 3,
            patch: 2,
            caption: 12,
            layers,
        };
        let key = SanaShapeKey {
            batch_bucket: batch_bucket(batch),
            rows: 4,
            cols: 6,
            texts: 7,
        };
        SanaSizes::new(&d, key).unwrap()
    }

    fn regions(b: &SanaBuffers, fp32: bool) -> Vec<(u64, usize)> {
        let mut regions = vec![
            (b.patches_upload.addr(), b.patches_upload.bytes()),
            (b.timestep_features.addr(), b.timestep_features.bytes()),
            (b.guidance_features.addr(), b.guidance_features.bytes()),
            (b.captions_upload.addr(), b.captions_upload.bytes()),
            (b.mask.addr(), b.mask.bytes()),
            (b.timestep_hidden.addr(), b.timestep_hidden.bytes()),
            (b.condition.addr(), b.condition.bytes()),
            (b.time6.addr(), b.time6.bytes()),
            (b.block_modulation.addr(), b.block_modulation.bytes()),
            (b.final_modulation.addr(), b.final_modulation.bytes()),
            (b.affines.addr(), b.affines.bytes()),
            (b.positions.addr(), b.positions.bytes()),
            (b.ones.addr(), b.ones.bytes()),
            (b.zero_bias.addr(), b.zero_bias.bytes()),
            (b.text_hidden.addr(), b.text_hidden.bytes()),
            (b.text.addr(), b.text.bytes()),
            (b.residual.addr(), b.residual.bytes()),
            (b.normed.addr(), b.normed.bytes()),
            (b.qkv.addr(), b.qkv.bytes()),
            (b.attention.addr(), b.attention.bytes()),
            (b.partial.addr(), b.partial.bytes()),
            (b.attention_state.addr(), b.attention_state.bytes()),
            (b.branch_out.addr(), b.branch_out.bytes()),
            (b.cross_q.addr(), b.cross_q.bytes()),
            (b.cross_k.addr(), b.cross_k.bytes()),
            (b.cross_v.addr(), b.cross_v.bytes()),
            (b.scores.addr(), b.scores.bytes()),
            (b.probs.addr(), b.probs.bytes()),
            (b.cross_attention.addr(), b.cross_attention.bytes()),
            (b.ffn_wide.addr(), b.ffn_wide.bytes()),
            (b.ffn_gated.addr(), b.ffn_gated.bytes()),
            (b.out.addr(), b.out.bytes()),
        ];
        if !fp32 {
            regions.push((b.patches.addr(), b.patches.bytes()));
            regions.push((b.captions.addr(), b.captions.bytes()));
            regions.push((b.residual_cast.addr(), b.residual_cast.bytes()));
        }
        regions
    }

    #[test]
    fn every_buffer_lies_aligned_inside_the_arena_without_overlap() {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for position_rows in [1, 24] {
                let s = sizes(3, 2);
                let base = 0x7f00_0000_0000;
                let mut layout = ArenaLayout::new(base, dtype);
                let b = SanaBuffers::declare(&mut layout, &s, position_rows);
                let fp32 = dtype == DType::F32;
                if fp32 {
                    assert_eq!(b.patches.addr(), b.patches_upload.addr());
                    assert_eq!(b.residual_cast.addr(), b.residual.addr());
                }
                let mut regions = regions(&b, fp32);
                let end = base + layout.size() as u64;
                regions.sort();
                for pair in regions.windows(2) {
                    assert!(pair[0].0 + pair[0].1 as u64 <= pair[1].0, "{pair:?}");
                }
                for (addr, bytes) in regions {
                    assert!(addr.is_multiple_of(256));
                    assert!(addr >= base && addr + bytes as u64 <= end);
                }
            }
        }
    }

    #[test]
    fn the_buffers_have_the_sizes_of_the_shape() {
        let s = sizes(3, 2);
        assert_eq!((s.batch, s.token_rows, s.text_rows), (4, 4 * 24, 4 * 7));
        let b = SanaBuffers::declare(&mut ArenaLayout::new(0x1000, DType::BF16), &s, 24);
        assert_eq!(b.qkv.len(), 96 * 48);
        assert_eq!(b.ffn_wide.len(), 96 * 80);
        assert_eq!(b.ffn_gated.len(), 96 * 40);
        assert_eq!(b.out.len(), 96 * 12);
        assert_eq!(b.scores.len(), 2 * 24 * 7);
        assert_eq!(b.block_modulation.len(), 2 * 4 * 96);
        assert_eq!(b.affines.len(), 5 * 2 * 4 * 16);
        assert_eq!(b.positions.len(), 24 * 16);
        // Block 1's modulation is the second [B, 6h]; the last affine pair is the final norm's.
        let second = b.block_modulation(1, 4, 16).unwrap();
        assert_eq!(second.addr(), b.block_modulation.addr() + 4 * 96 * 4);
        assert!(b.block_modulation(2, 4, 16).is_err());
        assert!(b.affine(4, 4, 16).is_ok() && b.affine(5, 4, 16).is_err());
    }

    #[test]
    fn measuring_and_placing_give_the_same_layout() {
        let s = sizes(2, 1);
        let mut measure = ArenaLayout::new(0, DType::F16);
        let at_zero = SanaBuffers::declare(&mut measure, &s, 1);
        let mut place = ArenaLayout::new(0x1_0000_0000, DType::F16);
        let placed = SanaBuffers::declare(&mut place, &s, 1);
        assert_eq!(measure.size(), place.size());
        assert_eq!(placed.out.addr() - at_zero.out.addr(), 0x1_0000_0000);
    }
}
