//! GLUMBConv, SANA's Mix-FFN (diffusers' `GLUMBConv`), per sample on its token grid:
//! 1×1 conv `h → 2m`, SiLU, depthwise 3×3 conv with zero padding over the (rows, cols) grid,
//! split into (value, gate) halves, `value ⊙ SiLU(gate)`, 1×1 conv `m → h` (no bias).

use super::params::SanaBlockParams;
use crate::backends::cpu::activation::silu;
use crate::backends::cpu::linear::linear_into;
use rayon::prelude::*;

/// The Mix-FFN of one sample: `x` is `[rows·cols, h]`, the result `[rows·cols, h]`.
pub fn mix_ffn(block: &SanaBlockParams, x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let tokens = rows * cols;
    let wide = block.ffn_inverted.out;
    let half = wide / 2;
    let mut expanded = vec![0.0f32; tokens * wide];
    linear_into(x, 1, tokens, &block.ffn_inverted, &mut expanded, true);
    expanded.par_iter_mut().for_each(|v| *v = silu(*v));
    // The 3×3 taps laid out [tap][channel], so each tap is one contiguous multiply-add over
    // the channels of a neighbour (vectorised), in the order (bias, then taps row by row)
    // of the per-channel sum.
    let kernel = block.ffn_depthwise.as_slice();
    let taps: Vec<f32> = (0..9)
        .flat_map(|tap| (0..wide).map(move |c| kernel[c * 9 + tap]))
        .collect();
    let kernel_bias = block.ffn_depthwise_bias.as_slice();
    let mut gated = vec![0.0f32; tokens * half];
    gated.par_chunks_mut(half).enumerate().for_each_init(
        || vec![0.0f32; wide],
        |conv, (token, out)| {
            let (i, j) = (token / cols, token % cols);
            conv.copy_from_slice(kernel_bias);
            for di in 0..3 {
                let Some(y) = (i + di).checked_sub(1).filter(|&y| y < rows) else {
                    continue;
                };
                for dj in 0..3 {
                    let Some(x) = (j + dj).checked_sub(1).filter(|&x| x < cols) else {
                        continue;
                    };
                    let tap = &taps[(di * 3 + dj) * wide..][..wide];
                    let input = &expanded[(y * cols + x) * wide..][..wide];
                    for ((acc, &w), &v) in conv.iter_mut().zip(tap).zip(input) {
                        *acc += w * v;
                    }
                }
            }
            let (value, gate) = conv.split_at(half);
            for ((o, &u), &g) in out.iter_mut().zip(value).zip(gate) {
                *o = u * silu(g);
            }
        },
    );
    let mut out = vec![0.0f32; tokens * block.ffn_point.out];
    linear_into(&gated, 1, tokens, &block.ffn_point, &mut out, false);
    out
}
