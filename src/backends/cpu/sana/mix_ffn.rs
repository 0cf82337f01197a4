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
    let kernel = block.ffn_depthwise.as_slice();
    let kernel_bias = block.ffn_depthwise_bias.as_slice();
    let mut gated = vec![0.0f32; tokens * half];
    gated
        .par_chunks_mut(half)
        .enumerate()
        .for_each(|(token, out)| {
            let (i, j) = (token / cols, token % cols);
            // The depthwise conv of channel c at (i, j), zero outside the grid.
            let conv = |c: usize| {
                let mut sum = kernel_bias[c];
                for di in 0..3 {
                    let Some(y) = (i + di).checked_sub(1).filter(|&y| y < rows) else {
                        continue;
                    };
                    for dj in 0..3 {
                        let Some(x) = (j + dj).checked_sub(1).filter(|&x| x < cols) else {
                            continue;
                        };
                        sum += kernel[c * 9 + di * 3 + dj] * expanded[(y * cols + x) * wide + c];
                    }
                }
                sum
            };
            for (c, o) in out.iter_mut().enumerate() {
                *o = conv(c) * silu(conv(half + c));
            }
        });
    let mut out = vec![0.0f32; tokens * block.ffn_point.out];
    linear_into(&gated, 1, tokens, &block.ffn_point, &mut out, false);
    out
}
