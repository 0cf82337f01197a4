//! Streamed linear attention against the explicit O(N²) formulation: build the N×N kernel
//! matrix A = φ(Q)φ(K)ᵀ, normalise each row by its sum (+1e-6), multiply by V. Relative error
//! ≤ 1e-5 for every N from 1 to 300 (crossing the streaming chunk size), several head sizes.

use super::attention::{AttentionShape, linear_attention};
use crate::test_support::{pseudo_random, rel_error};

fn phi(z: f64) -> f64 {
    if z > 0.0 { z + 1.0 } else { z.exp() }
}

/// O(N²) reference in f64, same `[B·N, 3h]` qkv layout.
fn quadratic(qkv: &[f32], shape: AttentionShape) -> Vec<f32> {
    let (b, n, heads, d) = (shape.batch, shape.tokens, shape.heads, shape.head_dim);
    let h = heads * d;
    let at = |s: usize, tok: usize, col: usize| qkv[(s * n + tok) * 3 * h + col] as f64;
    let mut out = vec![0.0f32; b * n * h];
    for s in 0..b {
        for head in 0..heads {
            for i in 0..n {
                let weights: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..d)
                            .map(|c| phi(at(s, i, head * d + c)) * phi(at(s, j, h + head * d + c)))
                            .sum()
                    })
                    .collect();
                let norm: f64 = weights.iter().sum::<f64>() + 1e-6;
                for c in 0..d {
                    let v: f64 = (0..n)
                        .map(|j| weights[j] * at(s, j, 2 * h + head * d + c))
                        .sum();
                    out[(s * n + i) * h + head * d + c] = (v / norm) as f32;
                }
            }
        }
    }
    out
}

fn check(batch: usize, tokens: usize, heads: usize, head_dim: usize, seed: u64) {
    let shape = AttentionShape {
        batch,
        tokens,
        heads,
        head_dim,
    };
    let h = heads * head_dim;
    let qkv = pseudo_random(batch * tokens * 3 * h, seed, 2.0);
    let mut out = vec![0.0f32; batch * tokens * h];
    linear_attention(&qkv, &mut out, shape);
    let err = rel_error(&out, &quadratic(&qkv, shape));
    assert!(
        err <= 1e-5,
        "B={batch} N={tokens} H={heads} d={head_dim}: relative error {err:.3e}"
    );
}

#[test]
fn matches_quadratic_form_for_n_1_to_300() {
    for tokens in 1..=300 {
        let heads = 1 + tokens % 3;
        check(2, tokens, heads, 8, tokens as u64);
    }
}

#[test]
fn matches_quadratic_form_for_common_head_sizes() {
    for head_dim in [1, 7, 32, 64, 72] {
        check(1, 131, 2, head_dim, head_dim as u64);
    }
}
