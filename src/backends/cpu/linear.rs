//! Linear layers `y = x Wᵀ (+ b)` over a batch of samples, one GEMM per sample.
//!
//! Why per sample: a GEMM's summation order may depend on its row count (blocking, small-size
//! paths), so one GEMM over the whole batch could round a sample differently from the same
//! sample run alone. Calling the GEMM once per sample, with the sample's own row count, makes
//! every sample's result bit-identical whatever shares its batch — the property batched
//! timestep evaluation and continuous batching are built on. The cost is small: the weight
//! panel is re-packed per sample, which `gemm` amortises over ≥ 64 rows.

use super::gemm::{MatRef, Threads, matmul};
use super::params::Linear;
use rayon::prelude::*;

/// `out = x Wᵀ (+ b)` for `samples` samples of `rows` rows each (`x` is `[samples·rows, in]`,
/// `out` is `[samples·rows, out]`); with `bias` the bias is added.
pub fn linear_into(
    x: &[f32],
    samples: usize,
    rows: usize,
    linear: &Linear,
    out: &mut [f32],
    bias: bool,
) {
    let (inp, width) = (linear.inp, linear.out);
    if bias {
        out.par_chunks_mut(width)
            .for_each(|row| row.copy_from_slice(linear.bias.as_slice()));
    }
    let weight_t = MatRef::dense(linear.weight.as_slice(), width, inp).t();
    let one = |x: &[f32], out: &mut [f32], threads: Threads| {
        matmul(
            MatRef::dense(x, rows, inp),
            weight_t,
            out,
            width,
            bias,
            threads,
        );
    };
    let x_samples = x.chunks(rows * inp).take(samples);
    if samples >= rayon::current_num_threads() {
        // Enough samples to keep every thread busy: one serial GEMM per sample, in parallel.
        x.par_chunks(rows * inp)
            .zip(out.par_chunks_mut(rows * width))
            .take(samples)
            .for_each(|(x, out)| one(x, out, Threads::Caller));
    } else {
        for (x, out) in x_samples.zip(out.chunks_mut(rows * width)) {
            one(x, out, Threads::Pool);
        }
    }
}

/// `x [rows, in] → [rows, out]` with bias, one row at a time (per-sample vectors: conditions,
/// modulations).
pub fn linear_rows(x: &[f32], rows: usize, linear: &Linear) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * linear.out];
    linear_into(x, rows, 1, linear, &mut out, true);
    out
}

/// `x [rows, in] → [rows, out]` with bias, as one GEMM over the rows of one sample.
pub fn linear_tokens(x: &[f32], rows: usize, linear: &Linear) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * linear.out];
    linear_into(x, 1, rows, linear, &mut out, true);
    out
}
