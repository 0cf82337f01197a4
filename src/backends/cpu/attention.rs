//! Linear attention (Katharopoulos et al., "Transformers are RNNs", 2020), non-causal:
//!
//! ```text
//! S = Σ_n φ(K_n)ᵀ V_n   [d, d]      z = Σ_n φ(K_n)   [d]
//! O_n = φ(Q_n) S / (φ(Q_n) · z + 1e-6)
//! ```
//!
//! per sample and head, φ(z) = ELU(z) + 1, no 1/√d. The N×N matrix is never formed: pass 1
//! streams over the tokens in chunks, applying φ to a chunk of K into a small buffer and
//! folding `φ(K)ᵀV` into the fp32 state; pass 2 streams over the tokens again and applies the
//! state to φ(Q). Work is O(N·d²) per head and memory O(d²), whatever N.
//!
//! Q, K and V are read in place from the `[B·N, 3h]` output of the qkv projection (head `j`'s
//! channels are `j·d .. (j+1)·d` of each third), so nothing is transposed or copied.

use super::activation::phi;
use super::gemm::{MatRef, Threads, matmul};
use rayon::prelude::*;

/// Tokens per streamed chunk: the φ buffers stay in L1/L2 (`CHUNK × d` floats).
const CHUNK: usize = 128;

/// The denominator's stabiliser, as SPEC fixes it.
const DENOMINATOR_EPS: f32 = 1e-6;

/// Shape of one linear-attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Samples B.
    pub batch: usize,
    /// Tokens per sample N.
    pub tokens: usize,
    /// Heads H.
    pub heads: usize,
    /// Channels per head d.
    pub head_dim: usize,
}

impl AttentionShape {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The fp32 state of one (sample, head): S `[d, d]` and z `[d]`.
struct State {
    s: Vec<f32>,
    z: Vec<f32>,
}

/// Linear attention over `qkv` (`[B·N, 3h]`: Q, K, V side by side), writing `out` (`[B·N, h]`).
pub fn linear_attention(qkv: &[f32], out: &mut [f32], shape: AttentionShape) {
    let h = shape.hidden();
    assert_eq!(
        qkv.len(),
        shape.batch * shape.tokens * 3 * h,
        "qkv has the wrong size"
    );
    assert_eq!(
        out.len(),
        shape.batch * shape.tokens * h,
        "out has the wrong size"
    );
    if out.is_empty() {
        return;
    }
    let states: Vec<State> = (0..shape.batch * shape.heads)
        .into_par_iter()
        .map(|bh| accumulate_state(qkv, bh / shape.heads, bh % shape.heads, shape))
        .collect();

    // Pass 2, parallel over chunks of rows (a chunk never crosses a sample boundary).
    let rows_per_sample = shape.tokens * h;
    out.par_chunks_mut(rows_per_sample)
        .enumerate()
        .flat_map(|(b, sample)| {
            sample
                .par_chunks_mut(CHUNK * h)
                .enumerate()
                .map(move |(c, chunk)| (b, c * CHUNK, chunk))
        })
        .for_each(|(b, start, chunk)| {
            let rows = chunk.len() / h;
            let mut phi_q = vec![0.0f32; rows * shape.head_dim];
            for head in 0..shape.heads {
                apply_state(
                    qkv,
                    chunk,
                    &mut phi_q,
                    &states[b * shape.heads + head],
                    b,
                    start,
                    head,
                    shape,
                );
            }
        });
}

/// Pass 1 for sample `b`, head `head`: S = Σ φ(K)ᵀV and z = Σ φ(K), streamed in chunks.
fn accumulate_state(qkv: &[f32], b: usize, head: usize, shape: AttentionShape) -> State {
    let (h, d, n) = (shape.hidden(), shape.head_dim, shape.tokens);
    let mut s = vec![0.0f32; d * d];
    let mut z = vec![0.0f32; d];
    let mut phi_k = vec![0.0f32; CHUNK * d];
    for start in (0..n).step_by(CHUNK) {
        let rows = CHUNK.min(n - start);
        for r in 0..rows {
            let row = (b * n + start + r) * 3 * h;
            let k = &qkv[row + h + head * d..row + h + (head + 1) * d];
            let dst = &mut phi_k[r * d..(r + 1) * d];
            for ((p, &k), z) in dst.iter_mut().zip(k).zip(z.iter_mut()) {
                *p = phi(k);
                *z += *p;
            }
        }
        // S += φ(K_chunk)ᵀ · V_chunk, V read in place from the qkv rows.
        let v_offset = (b * n + start) * 3 * h + 2 * h + head * d;
        let v = MatRef::strided(&qkv[v_offset..], rows, d, 3 * h);
        let phi_k_view = MatRef::dense(&phi_k[..rows * d], rows, d);
        matmul(phi_k_view.t(), v, &mut s, d, true, Threads::Caller);
    }
    State { s, z }
}

/// Pass 2 for one chunk of rows of sample `b` and one head: O = φ(Q)S / (φ(Q)·z + ε).
#[allow(clippy::too_many_arguments)]
fn apply_state(
    qkv: &[f32],
    out_chunk: &mut [f32],
    phi_q: &mut [f32],
    state: &State,
    b: usize,
    start: usize,
    head: usize,
    shape: AttentionShape,
) {
    let (h, d, n) = (shape.hidden(), shape.head_dim, shape.tokens);
    let rows = out_chunk.len() / h;
    for r in 0..rows {
        let row = (b * n + start + r) * 3 * h;
        let q = &qkv[row + head * d..row + (head + 1) * d];
        for (p, &q) in phi_q[r * d..(r + 1) * d].iter_mut().zip(q) {
            *p = phi(q);
        }
    }
    let out_head = &mut out_chunk[head * d..];
    matmul(
        MatRef::dense(&phi_q[..rows * d], rows, d),
        MatRef::dense(&state.s, d, d),
        out_head,
        h,
        false,
        Threads::Caller,
    );
    for r in 0..rows {
        let q = &phi_q[r * d..(r + 1) * d];
        let denominator: f32 =
            q.iter().zip(&state.z).map(|(a, b)| a * b).sum::<f32>() + DENOMINATOR_EPS;
        for o in &mut out_head[r * h..r * h + d] {
            *o /= denominator;
        }
    }
}
