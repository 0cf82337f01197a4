//! The sizes of one sana forward shape — (batch bucket, latent token grid, caption length) —
//! derived once, with checked arithmetic, before anything is allocated or launched: every
//! product that sizes a buffer is checked against overflow, and every value a kernel takes
//! as a C `int` is checked to fit one. A shape that fails is refused with
//! [`Error::TooLarge`] naming the size, never truncated on its way into unsafe code.

use super::super::arena::batch_bucket;
use super::super::ops::{MAX_HEAD_DIM, attention_chunk};
use crate::error::{Error, Result};
use crate::model::sana::tensors::TIME_FREQUENCY_WIDTH;
use crate::model::sana::{SanaDims, SanaShape};

/// A sana forward shape: what a CUDA graph and its arena are captured for. The grid is part
/// of the key (not only the token count) because the depthwise conv of the Mix-FFN and the
/// sin-cos positions depend on rows × cols; the caption length because the cross-attention's
/// GEMMs and buffers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SanaShapeKey {
    /// The batch bucket ([`batch_bucket`]: the next power of two).
    pub batch_bucket: usize,
    /// Token grid rows (H / p).
    pub rows: usize,
    /// Token grid columns (W / p).
    pub cols: usize,
    /// Caption tokens S.
    pub texts: usize,
}

impl SanaShapeKey {
    /// The shape that serves a validated forward of `shape`.
    pub fn new(shape: &SanaShape) -> Self {
        SanaShapeKey {
            batch_bucket: batch_bucket(shape.batch),
            rows: shape.rows,
            cols: shape.cols,
            texts: shape.texts,
        }
    }
}

/// fp32 score bytes one cross-attention tile may hold: the image tokens of a sample are
/// taken in tiles of at most this many `[heads, tile, S]` scores, so the scores buffer stays
/// bounded whatever the image size (a 4096² image has 16,384 tokens: 20 heads × 300 captions
/// of them would be 393 MB).
pub const SCORE_TILE_BYTES: usize = 32 << 20;

/// Image tokens per cross-attention tile for `tokens` tokens, `heads` heads and `texts`
/// captions: as many as fit [`SCORE_TILE_BYTES`], at least 1, at most `tokens`. It depends on
/// the sample's own sizes only, never on the batch (batch-invariant results).
pub fn score_tile(tokens: usize, heads: usize, texts: usize) -> usize {
    let per_token = heads.max(1).saturating_mul(texts.max(1)).saturating_mul(4);
    (SCORE_TILE_BYTES / per_token).clamp(1, tokens.max(1))
}

/// Every size of one forward shape, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanaSizes {
    /// Samples (the batch bucket).
    pub batch: usize,
    /// Token grid rows.
    pub rows: usize,
    /// Token grid columns.
    pub cols: usize,
    /// Image tokens per sample N = rows · cols.
    pub tokens: usize,
    /// Caption tokens per sample S.
    pub texts: usize,
    /// Image rows of the batch R = B · N.
    pub token_rows: usize,
    /// Caption rows of the batch B · S.
    pub text_rows: usize,
    /// Model width h.
    pub hidden: usize,
    /// Self-attention heads.
    pub heads: usize,
    /// Self-attention head width d.
    pub head_dim: usize,
    /// Cross-attention heads.
    pub cross_heads: usize,
    /// Cross-attention head width.
    pub cross_head_dim: usize,
    /// Cross-attention width (heads × head width).
    pub cross: usize,
    /// Mix-FFN hidden width m.
    pub ffn: usize,
    /// Patch features per token C·p·p.
    pub patch_width: usize,
    /// Output features per token p²·C_out.
    pub out_width: usize,
    /// Caption embedding width.
    pub caption: usize,
    /// Blocks.
    pub layers: usize,
    /// Tokens per pass-1 attention block.
    pub attention_chunk: usize,
    /// Pass-1 chunks per (sample, head).
    pub attention_chunks: usize,
    /// Image tokens per cross-attention tile ([`score_tile`]).
    pub score_tile: usize,
}

/// `a · b`, or [`Error::TooLarge`] naming `what`.
fn mul(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| too_large(what, format!("{a} × {b} overflows")))
}

fn too_large(what: &str, reason: String) -> Error {
    Error::TooLarge {
        what: what.to_string(),
        reason,
    }
}

/// Refuses `value` (named `what`) unless it fits the kernels' C `int`.
fn fits_int(what: &str, value: usize) -> Result<()> {
    if value > i32::MAX as usize {
        return Err(too_large(
            what,
            format!(
                "is {value}; the CUDA kernels take it as a 32-bit int (at most {})",
                i32::MAX
            ),
        ));
    }
    Ok(())
}

impl SanaSizes {
    /// The sizes of `key` for a model of widths (and blocks) `d`.
    pub fn new(d: &SanaDims, key: SanaShapeKey) -> Result<Self> {
        let layers = d.layers;
        if d.head_dim == 0 || d.head_dim > MAX_HEAD_DIM {
            return Err(too_large(
                "attention_head_dim",
                format!(
                    "is {}; the attention kernels take 1…{MAX_HEAD_DIM}",
                    d.head_dim
                ),
            ));
        }
        let batch = key.batch_bucket;
        let tokens = mul("the token grid", key.rows, key.cols)?;
        let token_rows = mul("the image tokens of the batch", batch, tokens)?;
        let text_rows = mul("the caption tokens of the batch", batch, key.texts)?;
        let cross = mul("the cross-attention width", d.cross_heads, d.cross_head_dim)?;
        let wide = mul("the Mix-FFN width", 2, d.ffn_hidden)?;
        let patch_width = mul(
            "the patch features",
            d.in_channels,
            mul("p²", d.patch, d.patch)?,
        )?;
        let out_width = mul(
            "the output features",
            d.out_channels,
            mul("p²", d.patch, d.patch)?,
        )?;
        let block_modulation = mul("the adaLN-single width", 6, d.hidden)?;
        let chunk = attention_chunk(tokens);
        let chunks = tokens.div_ceil(chunk);
        let tile = score_tile(tokens, d.cross_heads, key.texts);
        let sizes = SanaSizes {
            batch,
            rows: key.rows,
            cols: key.cols,
            tokens,
            texts: key.texts,
            token_rows,
            text_rows,
            hidden: d.hidden,
            heads: d.heads,
            head_dim: d.head_dim,
            cross_heads: d.cross_heads,
            cross_head_dim: d.cross_head_dim,
            cross,
            ffn: d.ffn_hidden,
            patch_width,
            out_width,
            caption: d.caption,
            layers,
            attention_chunk: chunk,
            attention_chunks: chunks,
            score_tile: tile,
        };
        // The values the kernels and cuBLASLt take as 32-bit ints.
        for (what, value) in [
            ("the batch", batch),
            ("the token grid rows", key.rows),
            ("the token grid columns", key.cols),
            ("the image tokens of the batch", token_rows),
            ("the caption tokens of the batch", text_rows),
            ("the caption tokens", key.texts),
            ("the qkv width", mul("the qkv width", 3, d.hidden)?),
            ("the adaLN-single width", block_modulation),
            ("the Mix-FFN width", wide),
            ("the cross-attention width", cross),
            (
                "the score rows of a tile",
                mul("the score rows", d.cross_heads, tile)?,
            ),
            ("the pass-1 chunk", chunk),
            (
                "the attention groups (batch × heads)",
                mul("the attention groups", batch, d.heads)?,
            ),
            ("the timestep features", TIME_FREQUENCY_WIDTH),
        ] {
            fits_int(what, value)?;
        }
        // Every buffer's element count, checked once here (the arena then multiplies
        // without checks).
        sizes.largest_buffer()?;
        Ok(sizes)
    }

    /// The element counts of the arena's buffers that scale with the shape; an error when
    /// one overflows. Returns the largest.
    fn largest_buffer(&self) -> Result<usize> {
        let state = self.head_dim * self.head_dim + self.head_dim;
        let counts = [
            mul("the residual stream", self.token_rows, self.hidden)?,
            mul("qkv", self.token_rows, mul("3h", 3, self.hidden)?)?,
            mul(
                "the Mix-FFN activations",
                self.token_rows,
                mul("2m", 2, self.ffn)?,
            )?,
            mul("the cross-attention q", self.token_rows, self.cross)?,
            mul("the patches", self.token_rows, self.patch_width)?,
            mul("the output", self.token_rows, self.out_width)?,
            mul(
                "the captions",
                self.text_rows,
                self.caption.max(self.hidden),
            )?,
            mul("the caption k/v", self.text_rows, self.cross)?,
            mul(
                "the attention partial sums",
                mul("batch × heads", self.batch, self.heads)?,
                mul("chunks × state", self.attention_chunks, state)?,
            )?,
            mul(
                "the cross-attention scores",
                mul("heads × tile", self.cross_heads, self.score_tile)?,
                self.texts,
            )?,
            mul(
                "the block modulations",
                mul("layers × batch", self.layers.max(1), self.batch)?,
                mul("6h", 6, self.hidden)?,
            )?,
        ];
        let largest = counts.into_iter().max().unwrap_or(0);
        // 4-byte elements, a few dozen buffers: refuse far before any byte count overflows.
        if largest > isize::MAX as usize / 64 {
            return Err(too_large(
                "the sana forward",
                format!("needs a buffer of {largest} elements"),
            ));
        }
        Ok(largest)
    }

    /// Score rows per sample of one tile of `tile_tokens` tokens (heads × tokens).
    pub fn score_rows(&self, tile_tokens: usize) -> usize {
        self.cross_heads * tile_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> SanaDims {
        // Sana 1600M.
        SanaDims {
            hidden: 2240,
            heads: 70,
            head_dim: 32,
            cross_heads: 20,
            cross_head_dim: 112,
            ffn_hidden: 5600,
            in_channels: 32,
            out_channels: 32,
            patch: 1,
            caption: 2304,
            layers: 20,
        }
    }

    fn key(batch: usize, rows: usize, cols: usize, texts: usize) -> SanaShapeKey {
        SanaShapeKey {
            batch_bucket: batch_bucket(batch),
            rows,
            cols,
            texts,
        }
    }

    #[test]
    fn the_key_pads_the_batch_and_keeps_the_grid_and_captions() {
        let shape = SanaShape {
            batch: 3,
            height: 8,
            width: 12,
            rows: 4,
            cols: 6,
            texts: 7,
        };
        assert_eq!(SanaShapeKey::new(&shape), key(4, 4, 6, 7));
        // A transposed grid of the same token count is another shape (the conv differs).
        assert_ne!(key(4, 4, 6, 7), key(4, 6, 4, 7));
    }

    #[test]
    fn a_1024_image_sizes_as_expected() {
        let s = SanaSizes::new(&dims(), key(2, 32, 32, 300)).unwrap();
        assert_eq!((s.tokens, s.token_rows, s.text_rows), (1024, 2048, 600));
        assert_eq!((s.cross, s.patch_width, s.out_width), (2240, 32, 32));
        assert_eq!((s.attention_chunk, s.attention_chunks), (256, 4));
        // 20 heads × 300 captions × 4 bytes = 24,000 bytes a token: all 1024 fit 32 MiB.
        assert_eq!(s.score_tile, 1024);
        assert_eq!(s.score_rows(1024), 20 * 1024);
    }

    #[test]
    fn large_images_take_the_cross_attention_in_tiles() {
        // 4096² pixels: 128 × 128 latents.
        let s = SanaSizes::new(&dims(), key(1, 128, 128, 300)).unwrap();
        assert_eq!(s.score_tile, SCORE_TILE_BYTES / (20 * 300 * 4));
        assert!(s.score_tile < s.tokens);
        assert_eq!(score_tile(5, 2, 3), 5);
        assert_eq!(score_tile(1 << 30, 1 << 20, 4096), 1);
    }

    #[test]
    fn oversized_dims_are_refused_by_name() {
        let too_many_rows = SanaSizes::new(&dims(), key(1, 1 << 16, 1 << 16, 300));
        let error = too_many_rows.unwrap_err().to_string();
        assert!(error.contains("image tokens"), "{error}");
        let overflow = SanaSizes::new(&dims(), key(1, usize::MAX, 2, 300));
        assert!(overflow.unwrap_err().to_string().contains("token grid"));
        let mut wide = dims();
        wide.head_dim = 129;
        let error = SanaSizes::new(&wide, key(1, 4, 4, 3))
            .unwrap_err()
            .to_string();
        assert!(error.contains("attention_head_dim"), "{error}");
    }
}
