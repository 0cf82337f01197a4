//! The two attentions of a SANA block, per sample, f32 with f32 accumulation.
//!
//! - Self-attention is ReLU linear attention (diffusers' `SanaLinearAttnProcessor2_0`): per
//!   head, with φ = ReLU and no scaling, `out_n = Σ_m v_m (φ(k_m)·φ(q_n)) /
//!   (Σ_m φ(k_m)·φ(q_n) + 1e-15)`, computed through the `d × d` state `Σ_m v_m φ(k_m)ᵀ` and
//!   `Σ_m φ(k_m)`: O(N·d²) per head.
//! - Cross-attention is softmax attention to the caption tokens (`SanaAttnProcessor2_0`,
//!   scaled dot product with scale `1/√d`), the mask entering as diffusers' additive bias
//!   `(1 − mask)·(−10000)` (not −∞: a fully masked caption attends uniformly, as there).

use crate::backends::cpu::gemm::{MatRef, Threads, matmul};
use rayon::prelude::*;

/// diffusers' denominator epsilon of the linear attention.
pub const LINEAR_ATTENTION_EPS: f32 = 1e-15;

/// diffusers' additive bias for a dropped caption token.
pub const MASKED_TOKEN_BIAS: f32 = -10_000.0;

/// ReLU linear attention of one sample: `q`, `k`, `v` and `out` are `[tokens, heads·d]`.
pub fn relu_linear_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    heads: usize,
    head_dim: usize,
) {
    let width = heads * head_dim;
    let relu = |x: f32| x.max(0.0);
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..heads)
        .into_par_iter()
        .map(|head| {
            let offset = head * head_dim;
            // state[e·d + f] = Σ_m v[m, e]·φ(k[m, f]); keys[f] = Σ_m φ(k[m, f]).
            let mut state = vec![0.0f32; head_dim * head_dim];
            let mut keys = vec![0.0f32; head_dim];
            for (k_row, v_row) in k.chunks_exact(width).zip(v.chunks_exact(width)) {
                let k_head = &k_row[offset..offset + head_dim];
                let v_head = &v_row[offset..offset + head_dim];
                for (f, &kf) in k_head.iter().enumerate() {
                    keys[f] += relu(kf);
                }
                for (e, &ve) in v_head.iter().enumerate() {
                    let row = &mut state[e * head_dim..(e + 1) * head_dim];
                    for (s, &kf) in row.iter_mut().zip(k_head) {
                        *s += ve * relu(kf);
                    }
                }
            }
            (state, keys)
        })
        .collect();
    out.par_chunks_mut(width)
        .zip(q.par_chunks(width))
        .for_each_init(
            || vec![0.0f32; head_dim],
            |q_head, (out_row, q_row)| {
                for (head, (state, keys)) in per_head.iter().enumerate() {
                    let offset = head * head_dim;
                    for (q, &x) in q_head.iter_mut().zip(&q_row[offset..offset + head_dim]) {
                        *q = relu(x);
                    }
                    let norm: f32 = keys.iter().zip(q_head.iter()).map(|(a, b)| a * b).sum();
                    let denominator = norm + LINEAR_ATTENTION_EPS;
                    for (e, o) in out_row[offset..offset + head_dim].iter_mut().enumerate() {
                        let row = &state[e * head_dim..(e + 1) * head_dim];
                        let numerator: f32 =
                            row.iter().zip(q_head.iter()).map(|(a, b)| a * b).sum();
                        *o = numerator / denominator;
                    }
                }
            },
        );
}

/// Softmax cross-attention of one sample: `q` and `out` are `[tokens, heads·d]`, `k` and
/// `v` are `[texts, heads·d]`, `bias` (`[texts]`) is added to every score row. Per head, as
/// two matrix products around a row softmax: S = q_h k_hᵀ / √d + bias, P = softmax(S),
/// out_h = P v_h; the heads run in parallel, each product on its own thread.
pub fn masked_cross_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    out: &mut [f32],
    heads: usize,
    head_dim: usize,
) {
    let width = heads * head_dim;
    let texts = bias.len();
    let tokens = q.len() / width.max(1);
    if tokens == 0 || texts == 0 {
        return;
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    let view = |x, rows, head| head_view(x, rows, head, head_dim, width);
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|head| {
            let mut scores = vec![0.0f32; tokens * texts];
            matmul(
                view(q, tokens, head),
                view(k, texts, head).t(),
                &mut scores,
                texts,
                false,
                Threads::Caller,
            );
            for row in scores.chunks_exact_mut(texts) {
                let mut max = f32::NEG_INFINITY;
                for (score, &b) in row.iter_mut().zip(bias) {
                    *score = *score * scale + b;
                    max = max.max(*score);
                }
                let mut total = 0.0f32;
                for score in row.iter_mut() {
                    *score = (*score - max).exp();
                    total += *score;
                }
                let inverse = 1.0 / total;
                row.iter_mut().for_each(|p| *p *= inverse);
            }
            let mut attended = vec![0.0f32; tokens * head_dim];
            matmul(
                MatRef::dense(&scores, tokens, texts),
                view(v, texts, head),
                &mut attended,
                head_dim,
                false,
                Threads::Caller,
            );
            attended
        })
        .collect();
    out.par_chunks_mut(width)
        .enumerate()
        .for_each(|(token, row)| {
            for (head, attended) in per_head.iter().enumerate() {
                row[head * head_dim..(head + 1) * head_dim]
                    .copy_from_slice(&attended[token * head_dim..(token + 1) * head_dim]);
            }
        });
}

/// Head `head`'s `[rows, head_dim]` columns of a `[rows, width]` matrix, in place.
fn head_view(x: &[f32], rows: usize, head: usize, head_dim: usize, width: usize) -> MatRef<'_> {
    MatRef::strided(&x[head * head_dim..], rows, head_dim, width)
}

/// diffusers' `RMSNorm` with a weight, on every row of `x` (`[rows, weight.len()]`):
/// `x / √(mean(x²) + eps) · w`.
pub fn rms_norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    let width = weight.len();
    x.par_chunks_mut(width).for_each(|row| {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inverse = 1.0 / (mean_square + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v * inverse * w;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The linear attention against its explicit O(N²) form, in f64.
    #[test]
    fn linear_attention_matches_the_quadratic_form() {
        let (tokens, heads, d) = (7, 2, 3);
        let width = heads * d;
        let value = |i: usize| ((i * 37 % 23) as f32 / 11.0) - 1.0;
        let q: Vec<f32> = (0..tokens * width).map(value).collect();
        let k: Vec<f32> = (0..tokens * width).map(|i| value(i + 5)).collect();
        let v: Vec<f32> = (0..tokens * width).map(|i| value(i + 9)).collect();
        let mut out = vec![0.0f32; tokens * width];
        relu_linear_attention(&q, &k, &v, &mut out, heads, d);
        for n in 0..tokens {
            for head in 0..heads {
                let at =
                    |x: &[f32], row: usize, f: usize| x[row * width + head * d + f].max(0.0) as f64;
                let weights: Vec<f64> = (0..tokens)
                    .map(|m| (0..d).map(|f| at(&k, m, f) * at(&q, n, f)).sum())
                    .collect();
                let total: f64 = weights.iter().sum::<f64>() + 1e-15;
                for e in 0..d {
                    let expected: f64 = (0..tokens)
                        .map(|m| weights[m] * v[m * width + head * d + e] as f64)
                        .sum::<f64>()
                        / total;
                    let got = out[n * width + head * d + e] as f64;
                    assert!(
                        (got - expected).abs() < 1e-5,
                        "{n} {head} {e}: {got} vs {expected}"
                    );
                }
            }
        }
    }

    /// A masked caption token gets no weight unless every token is masked.
    #[test]
    fn masked_tokens_get_no_weight() {
        let (heads, d) = (1, 2);
        let q = [0.5f32, -0.2];
        let k = [1.0f32, 0.0, 0.0, 1.0];
        let v = [1.0f32, 2.0, 30.0, 40.0];
        let mut out = [0.0f32; 2];
        masked_cross_attention(&q, &k, &v, &[0.0, MASKED_TOKEN_BIAS], &mut out, heads, d);
        assert!(
            (out[0] - 1.0).abs() < 1e-6 && (out[1] - 2.0).abs() < 1e-6,
            "{out:?}"
        );
        masked_cross_attention(&q, &k, &v, &[MASKED_TOKEN_BIAS; 2], &mut out, heads, d);
        // Fully masked: uniform bias, so the unmasked softmax. Adding −10000 in f32 leaves
        // the scores about 1e-3 of precision (an ulp at 10⁴), as in diffusers; hence 2e-2 on
        // an output of ~12.
        let w0 = 1.0 / (1.0 + ((-0.2f32 - 0.5) / 2f32.sqrt()).exp());
        assert!((out[0] - (w0 + (1.0 - w0) * 30.0)).abs() < 2e-2, "{out:?}");
        assert!(
            (out[1] - (w0 * 2.0 + (1.0 - w0) * 40.0)).abs() < 2e-2,
            "{out:?}"
        );
    }
}
