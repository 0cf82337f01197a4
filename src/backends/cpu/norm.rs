//! LayerNorm fused with what surrounds it: the AdaLN modulation that follows, and the gated
//! residual that precedes it. One read and one write of each row.
//!
//! Every normalisation point of the model (block norms, the final norm, with or without
//! learned affine, with or without modulation) is `x̂ ⊙ scale + shift` with per-sample
//! `scale` and `shift`, so one kernel serves them all:
//! - dit, modulated: scale = 1 + s, shift = t;
//! - edifice, modulated: scale = γ(1 + s), shift = β(1 + s) + t;
//! - edifice, final norm: scale = γ, shift = β.

use rayon::prelude::*;

/// Rows smaller than this many per rayon task are not worth splitting further.
const MIN_ROWS_PER_TASK: usize = 8;

/// The per-sample affine applied after normalising each row.
#[derive(Debug, Clone)]
pub struct NormAffine {
    /// `[B, h]`: multiplies the normalised row.
    pub scale: Vec<f32>,
    /// `[B, h]`: added after.
    pub shift: Vec<f32>,
    /// LayerNorm epsilon.
    pub eps: f32,
}

impl NormAffine {
    /// Scale and shift for sample `b`.
    fn of(&self, b: usize, h: usize) -> (&[f32], &[f32]) {
        (
            &self.scale[b * h..(b + 1) * h],
            &self.shift[b * h..(b + 1) * h],
        )
    }
}

/// `out = LN(x) ⊙ scale + shift` for every row of `x` (`[B·tokens, h]`).
pub fn norm_rows(x: &[f32], out: &mut [f32], h: usize, tokens: usize, affine: &NormAffine) {
    x.par_chunks(h)
        .zip(out.par_chunks_mut(h))
        .enumerate()
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(row, (x, out))| {
            let (scale, shift) = affine.of(row / tokens, h);
            normalize_row(x, out, scale, shift, affine.eps);
        });
}

/// The gated residual `x += gate ⊙ (y + bias)` on every row, then, when `next` is given,
/// `out = LN(x) ⊙ scale + shift` for the next normalisation point, in the same pass.
///
/// `gate` is `[B, h]`, `bias` is `[h]`.
pub fn residual_rows(
    x: &mut [f32],
    y: &[f32],
    bias: &[f32],
    gate: &[f32],
    h: usize,
    tokens: usize,
    next: Option<(&NormAffine, &mut [f32])>,
) {
    let residual = |row: usize, x: &mut [f32], y: &[f32]| {
        let b = row / tokens;
        let gate = &gate[b * h..(b + 1) * h];
        for (((x, &y), &bias), &g) in x.iter_mut().zip(y).zip(bias).zip(gate) {
            *x += g * (y + bias);
        }
    };
    match next {
        Some((affine, out)) => x
            .par_chunks_mut(h)
            .zip(y.par_chunks(h))
            .zip(out.par_chunks_mut(h))
            .enumerate()
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(row, ((x, y), out))| {
                residual(row, x, y);
                let (scale, shift) = affine.of(row / tokens, h);
                normalize_row(x, out, scale, shift, affine.eps);
            }),
        None => x
            .par_chunks_mut(h)
            .zip(y.par_chunks(h))
            .enumerate()
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(row, (x, y))| residual(row, x, y)),
    }
}

/// LayerNorm of one row (biased variance, two passes) followed by `⊙ scale + shift`.
#[inline]
fn normalize_row(x: &[f32], out: &mut [f32], scale: &[f32], shift: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x.iter().copied()) / n;
    let var = lane_sum(x.iter().map(|&v| (v - mean) * (v - mean))) / n;
    let rstd = 1.0 / (var + eps).sqrt();
    for (((o, &v), &s), &t) in out.iter_mut().zip(x).zip(scale).zip(shift) {
        *o = (v - mean) * rstd * s + t;
    }
}

/// A sum over eight interleaved accumulators: vectorisable, and more accurate than a serial
/// sum for long rows.
#[inline]
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (i, v) in values.enumerate() {
        lanes[i % 8] += v;
    }
    lanes.iter().sum()
}
