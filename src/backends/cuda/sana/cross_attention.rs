//! sana's cross-attention on the GPU (diffusers' `SanaAttnProcessor2_0`): softmax attention
//! of the image tokens (the un-normalised residual stream) to the caption tokens, as three
//! steps per sample and tile of image tokens — scores = q·kᵀ for every head at once (a
//! strided-batched cuBLASLt GEMM into fp32), `masked_softmax_T` (scale 1/√d and diffusers'
//! −10000 bias of a dropped caption token), out = probs·v (a second batched GEMM, written
//! straight into the heads' columns of the output).
//!
//! Layouts, row-major: q `[R, c]`, k and v `[T, c]` (head j in columns j·d … j·d + d − 1),
//! scores and probs `[heads, tile, S]`. In cuBLASLt's column-major terms a row-major
//! `[rows, cols]` matrix with row stride ld is a `cols × rows` matrix with leading dimension
//! ld. So head j's scores, column-major `S × tile` (ld S), are `op(A)·B` with A = k stored
//! `d × S` (ld c) read transposed and B = q stored `d × tile` (ld c); head j's output,
//! column-major `d × tile` (ld c) inside the output's rows, is `A·B` with A = v stored
//! `d × S` (ld c) and B = probs stored `S × tile` (ld S). From one head to the next the
//! operands advance by d and the scores by tile·S. Each GEMM's views are checked against
//! [`BatchedGemmShape::extents`] before the call.
//!
//! Why per sample: each sample has its own captions (its own k, v and mask), and the heads
//! of one sample are one constant stride apart, which a strided batch needs; samples are
//! not (their rows are N·c apart, heads d apart). Why tiles: the fp32 scores of a tile are
//! bounded by [`super::shape::SCORE_TILE_BYTES`] whatever the image size.

use super::super::blas::{BatchedGemmShape, common_alignment};
use super::super::device_slice::{DeviceSlice, Element};
use super::super::launch_params::MaskedSoftmax;
use super::arena::SanaArena;
use super::forward::SanaContext;
use super::weights::SanaDeviceBlock;
use crate::dtype::DType;
use crate::error::Result;

/// Enqueues block `block`'s cross-attention of `arena`'s residual stream to its captions,
/// into `cross_attention`.
pub fn enqueue(
    ctx: &mut SanaContext<'_>,
    arena: &SanaArena,
    block: &SanaDeviceBlock,
) -> Result<()> {
    let (s, b) = (&arena.sizes, &arena.buffers);
    let dtype = ctx.ops.dtype;
    if dtype != DType::F32 {
        // SAFETY: arena views (see the module docs of `forward`).
        unsafe {
            ctx.ops
                .cast_in(b.residual, b.residual_cast, s.token_rows * s.hidden)
        }?;
    }
    ctx.linear(s.token_rows, b.residual_cast, &block.cross_q, b.cross_q)?;
    ctx.linear(s.text_rows, b.text, &block.cross_k, b.cross_k)?;
    ctx.linear(s.text_rows, b.text, &block.cross_v, b.cross_v)?;
    if let Some([norm_q, norm_k]) = &block.cross_qk_norm {
        ctx.rms_norm_in_place(b.cross_q, s.cross, s.token_rows, s.cross, norm_q.slice())?;
        ctx.rms_norm_in_place(b.cross_k, s.cross, s.text_rows, s.cross, norm_k.slice())?;
    }
    let scale = 1.0 / (s.cross_head_dim as f32).sqrt();
    for sample in 0..s.batch {
        let keys = b
            .cross_k
            .slice(sample * s.texts * s.cross, s.texts * s.cross)?;
        let values = b
            .cross_v
            .slice(sample * s.texts * s.cross, s.texts * s.cross)?;
        let mask = b.mask.slice(sample * s.texts, s.texts)?;
        for (start, tile) in tiles(s.tokens, s.score_tile) {
            let first_row = sample * s.tokens + start;
            let queries = b.cross_q.skip(first_row * s.cross)?;
            let out = b.cross_attention.skip(first_row * s.cross)?;
            let shapes = TileShapes::new(s.texts, tile, s.cross_heads, s.cross_head_dim, dtype);
            batched(ctx, shapes.scores, keys, queries, b.scores)?;
            let softmax = MaskedSoftmax {
                scores: b.scores,
                probs: b.probs,
                mask,
                rows_per_sample: s.score_rows(tile),
                texts: s.texts,
                batch: 1,
                scale,
            };
            // SAFETY: arena views (see the module docs of `forward`).
            unsafe { ctx.ops.masked_softmax(softmax) }?;
            batched(ctx, shapes.output, values, b.probs, out)?;
        }
    }
    Ok(())
}

/// The tiles of `tokens` image tokens, `tile` at most each: (first token, tokens).
pub fn tiles(tokens: usize, tile: usize) -> impl Iterator<Item = (usize, usize)> {
    let tile = tile.max(1);
    (0..tokens)
        .step_by(tile)
        .map(move |start| (start, tile.min(tokens - start)))
}

/// The two batched GEMMs of one tile: every head's scores, every head's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileShapes {
    /// `scores [heads, tile, S] (fp32) = q · kᵀ`: A = k, B = q.
    pub scores: BatchedGemmShape,
    /// `out [tile, c] (heads' columns) = probs · v`: A = v, B = probs.
    pub output: BatchedGemmShape,
}

impl TileShapes {
    /// The GEMMs of a tile of `tile` tokens against `texts` captions, `heads` heads of `d`
    /// channels, in storage type `dtype`.
    pub fn new(texts: usize, tile: usize, heads: usize, d: usize, dtype: DType) -> Self {
        let width = heads * d;
        let es = dtype.size();
        // Operands start at 256-aligned buffers plus whole rows (of `width` elements: a
        // sample's captions, a tile's first token) and whole heads (d elements); the scores
        // and probabilities advance by tile·S elements per head.
        let rows_and_heads = [width * es, d * es];
        let scores_alignment =
            common_alignment(&[rows_and_heads[0], rows_and_heads[1], tile * texts * 4]);
        let output_alignment =
            common_alignment(&[rows_and_heads[0], rows_and_heads[1], tile * texts * es]);
        TileShapes {
            scores: BatchedGemmShape {
                m: texts,
                n: tile,
                k: d,
                transpose_a: true,
                transpose_b: false,
                lda: width,
                ldb: width,
                ldd: texts,
                stride_a: d,
                stride_b: d,
                stride_d: tile * texts,
                batch: heads,
                input: dtype,
                output: DType::F32,
                alignment: scores_alignment,
            },
            output: BatchedGemmShape {
                m: d,
                n: tile,
                k: texts,
                transpose_a: false,
                transpose_b: false,
                lda: width,
                ldb: texts,
                ldd: width,
                stride_a: d,
                stride_b: tile * texts,
                stride_d: d,
                batch: heads,
                input: dtype,
                output: dtype,
                alignment: output_alignment,
            },
        }
    }
}

/// Enqueues the batched GEMM `shape` on views `a`, `b` and `d` after checking each holds
/// the elements the GEMM touches (and, for storage-type views, is of the storage type).
fn batched<A: Element, B: Element, D: Element>(
    ctx: &mut SanaContext<'_>,
    shape: BatchedGemmShape,
    a: DeviceSlice<A>,
    b: DeviceSlice<B>,
    d: DeviceSlice<D>,
) -> Result<()> {
    let [extent_a, extent_b, extent_d] = shape.extents()?;
    let dtype = ctx.ops.dtype;
    a.require("batched GEMM A", extent_a)?;
    a.require_type("batched GEMM A", dtype)?;
    b.require("batched GEMM B", extent_b)?;
    b.require_type("batched GEMM B", dtype)?;
    d.require("batched GEMM D", extent_d)?;
    d.require_type("batched GEMM D", dtype)?;
    // SAFETY: arena views (see the module docs of `forward`), each holding the elements the
    // GEMM touches (checked above); D is a buffer of its own (scores or the output), apart
    // from A and B.
    unsafe { ctx.blas.batched(shape, a.addr(), b.addr(), d.addr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_every_token_once() {
        assert_eq!(tiles(5, 2).collect::<Vec<_>>(), [(0, 2), (2, 2), (4, 1)]);
        assert_eq!(tiles(4, 8).collect::<Vec<_>>(), [(0, 4)]);
        assert_eq!(tiles(3, 0).count(), 3);
        assert_eq!(tiles(0, 4).count(), 0);
    }

    #[test]
    fn the_tile_gemms_read_the_heads_columns() {
        // 2 heads of d = 8 over S = 7 captions, a tile of 5 tokens, q/k/v 16 wide.
        let shapes = TileShapes::new(7, 5, 2, 8, DType::BF16);
        // scores: k read for head 1 from column 8 (the last head's last key at row 6).
        assert_eq!(
            shapes.scores.extents().unwrap(),
            [8 + 6 * 16 + 8, 8 + 4 * 16 + 8, 2 * 35]
        );
        // output: v like k; probs [2, 5, 7]; the output's last head's last token row 4.
        assert_eq!(
            shapes.output.extents().unwrap(),
            [8 + 6 * 16 + 8, 2 * 35, 8 + 4 * 16 + 8]
        );
        assert_eq!(shapes.scores.output, DType::F32);
        assert_eq!(shapes.output.output, DType::BF16);
        // Heads 16 bytes apart, rows 32: 16; the probs' per-head stride 5·7·2 = 70 bytes: 2.
        assert_eq!(shapes.scores.alignment, 4);
        assert_eq!(shapes.output.alignment, 2);
        // Sana 1600M (d = 112, c = 2240, S = 300, a tile of 1024) in bf16: 32 bytes.
        let sana = TileShapes::new(300, 1024, 20, 112, DType::BF16);
        assert_eq!((sana.scores.alignment, sana.output.alignment), (32, 32));
    }
}
