//! The `sana` flavor on the CPU: f32 with f32 accumulation, the reference the CUDA path
//! (`backends/cuda/sana`) is checked against (`tests/cuda_sana.rs`). Each sample runs independently (its own GEMMs), so a sample's output
//! does not depend on what shares its batch.

mod attention;
mod mix_ffn;
mod params;
mod text_memo;

use crate::backends::cpu::activation::silu;
use crate::backends::cpu::conditioning::modulated_affine;
use crate::backends::cpu::linear::{linear_into, linear_rows, linear_tokens};
use crate::backends::cpu::norm::norm_rows;
use crate::error::{Error, Result};
use crate::model::sana::embedding::{sincos_positions, timestep_features};
use crate::model::sana::patches::{patch_features, unpatchify};
use crate::model::sana::{SanaInput, SanaShape};
use crate::tensor::Tensor;
use crate::weights::SanaWeights;
use attention::{MASKED_TOKEN_BIAS, masked_cross_attention, relu_linear_attention, rms_norm_rows};
use params::{SanaParams, TimestepMlp};
use rayon::prelude::*;
pub use text_memo::DEFAULT_TEXT_MEMO_BYTES;
use text_memo::TextMemo;

/// Epsilon of the caption RMSNorm and of the qk norms (diffusers' `RMSNorm(eps=1e-5)` and
/// `Attention`'s default eps).
const RMS_NORM_EPS: f32 = 1e-5;
/// Epsilon of the final LayerNorm (`SanaModulatedNorm(eps=1e-6)`).
const FINAL_NORM_EPS: f32 = 1e-6;

/// A `sana` model on the CPU.
pub struct SanaCpu {
    params: SanaParams,
    /// Each caption's text keys and values, computed once for all the steps that ask for it.
    text: TextMemo,
}

/// One sample's inputs, sliced out of the batch.
struct Sample<'a> {
    x: &'a [f32],
    t: f32,
    captions: &'a [f32],
    mask: Option<&'a [f32]>,
    guidance: Option<f32>,
}

impl SanaCpu {
    /// The model over `weights`.
    pub fn new(weights: &SanaWeights) -> Result<Self> {
        Ok(SanaCpu {
            params: SanaParams::load(weights)?,
            text: TextMemo::new(DEFAULT_TEXT_MEMO_BYTES),
        })
    }

    /// Drops the memoised caption keys and values (see `text_memo`).
    pub fn forget_captions(&self) {
        self.text.clear();
    }

    /// The velocity `[B, C_out, H, W]` for an input [`crate::model::sana::validate_sana`]
    /// accepted with `shape`.
    pub fn forward(&self, input: &SanaInput<'_>, shape: SanaShape) -> Result<Tensor> {
        let d = &self.params.dims;
        let per_x = d.in_channels * shape.height * shape.width;
        let per_caption = shape.texts * d.caption;
        let positions = self.params.config.interpolation_scale.map(|scale| {
            let base = self.params.config.sample_size / d.patch;
            sincos_positions(shape.rows, shape.cols, d.hidden, base, scale)
        });
        let outputs: Vec<Vec<f32>> = (0..shape.batch)
            .into_par_iter()
            .map(|b| {
                let sample = Sample {
                    x: &input.x.data()[b * per_x..(b + 1) * per_x],
                    t: input.t[b],
                    captions: &input.captions.data()[b * per_caption..(b + 1) * per_caption],
                    mask: input
                        .mask
                        .map(|m| &m[b * shape.texts..(b + 1) * shape.texts]),
                    guidance: input.guidance.map(|g| g[b]),
                };
                self.forward_sample(&sample, shape, positions.as_deref())
            })
            .collect();
        let data: Vec<f32> = outputs.into_iter().flatten().collect();
        Tensor::new(
            vec![shape.batch, d.out_channels, shape.height, shape.width],
            data,
        )
        .map_err(|e| Error::input("x", format!("the output could not be assembled: {e}")))
    }

    fn forward_sample(
        &self,
        s: &Sample<'_>,
        shape: SanaShape,
        positions: Option<&[f32]>,
    ) -> Vec<f32> {
        let p = &self.params;
        let d = &p.dims;
        let (h, tokens) = (d.hidden, shape.tokens());
        // 1. Patch embedding (+ sin-cos positions).
        let patches = patch_features(s.x, d.in_channels, shape, d.patch);
        let mut x = vec![0.0f32; tokens * h];
        linear_into(&patches, 1, tokens, &p.patch_embed, &mut x, true);
        if let Some(positions) = positions {
            x.iter_mut().zip(positions).for_each(|(x, p)| *x += p);
        }
        // 2. Condition: adaLN-single of the timestep (+ guidance).
        let mut condition = timestep_mlp(&p.timestep, s.t);
        if let (Some(mlp), Some(g)) = (&p.guidance, s.guidance) {
            condition
                .iter_mut()
                .zip(timestep_mlp(mlp, g))
                .for_each(|(c, g)| *c += g);
        }
        let activated: Vec<f32> = condition.iter().map(|&c| silu(c)).collect();
        let time6 = linear_rows(&activated, 1, &p.time_linear);
        // 3. Captions: every block's text keys and values, from the memo (see `text_memo`).
        let text = self.text.get(p, s.captions, s.mask);
        // 4. Blocks.
        let eps = p.config.norm_eps as f32;
        let mut normed = vec![0.0f32; tokens * h];
        for (block, (text_k, text_v)) in p.blocks.iter().zip(&text.blocks) {
            let table = block.scale_shift_table.as_slice();
            let chunk = |i: usize| -> Vec<f32> {
                (0..h)
                    .map(|j| table[i * h + j] + time6[i * h + j])
                    .collect()
            };
            let (shift_msa, scale_msa, gate_msa) = (chunk(0), chunk(1), chunk(2));
            let (shift_mlp, scale_mlp, gate_mlp) = (chunk(3), chunk(4), chunk(5));
            // Self-attention on LN(x)·(1 + scale) + shift.
            norm_rows(
                &x,
                &mut normed,
                h,
                tokens,
                &modulated_affine(None, &shift_msa, &scale_msa, h, eps),
            );
            let mut q = linear_tokens(&normed, tokens, &block.self_q);
            let mut k = linear_tokens(&normed, tokens, &block.self_k);
            let v = linear_tokens(&normed, tokens, &block.self_v);
            if let Some((norm_q, norm_k)) = &block.self_qk_norm {
                rms_norm_rows(&mut q, norm_q.as_slice(), RMS_NORM_EPS);
                rms_norm_rows(&mut k, norm_k.as_slice(), RMS_NORM_EPS);
            }
            let mut attended = vec![0.0f32; tokens * h];
            relu_linear_attention(&q, &k, &v, &mut attended, d.heads, d.head_dim);
            let projected = linear_tokens(&attended, tokens, &block.self_out);
            add_gated(&mut x, &projected, Some(&gate_msa));
            // Cross-attention on the un-normalised stream (diffusers applies no norm here).
            let mut q = linear_tokens(&x, tokens, &block.cross_q);
            if let Some((norm_q, _)) = &block.cross_qk_norm {
                rms_norm_rows(&mut q, norm_q.as_slice(), RMS_NORM_EPS);
            }
            let mut attended = vec![0.0f32; tokens * block.cross_q.out];
            masked_cross_attention(
                &q,
                text_k,
                text_v,
                &text.bias,
                &mut attended,
                d.cross_heads,
                d.cross_head_dim,
            );
            let projected = linear_tokens(&attended, tokens, &block.cross_out);
            add_gated(&mut x, &projected, None);
            // Mix-FFN on LN(x)(·γ + β)·(1 + scale) + shift.
            let affine = block
                .ffn_norm
                .as_ref()
                .map(|(g, b)| (g.as_slice(), b.as_slice()));
            norm_rows(
                &x,
                &mut normed,
                h,
                tokens,
                &modulated_affine(affine, &shift_mlp, &scale_mlp, h, eps),
            );
            let ffn = mix_ffn::mix_ffn(block, &normed, shape.rows, shape.cols);
            add_gated(&mut x, &ffn, Some(&gate_mlp));
        }
        // 5. Final modulated norm (shift row 0, scale row 1 of the table, plus the condition).
        let table = p.final_table.as_slice();
        let shift: Vec<f32> = (0..h).map(|j| table[j] + condition[j]).collect();
        let scale: Vec<f32> = (0..h).map(|j| table[h + j] + condition[j]).collect();
        norm_rows(
            &x,
            &mut normed,
            h,
            tokens,
            &modulated_affine(None, &shift, &scale, h, FINAL_NORM_EPS),
        );
        let out = linear_tokens(&normed, tokens, &p.proj_out);
        unpatchify(&out, d.out_channels, shape, d.patch)
    }
}

/// `x += gate ⊙ y` per row (`gate` is `[h]`; `None` is 1).
fn add_gated(x: &mut [f32], y: &[f32], gate: Option<&[f32]>) {
    match gate {
        Some(gate) => x
            .par_chunks_mut(gate.len())
            .zip(y.par_chunks(gate.len()))
            .for_each(|(x, y)| {
                for ((x, y), g) in x.iter_mut().zip(y).zip(gate) {
                    *x += g * y;
                }
            }),
        None => x.par_iter_mut().zip(y).for_each(|(x, y)| *x += y),
    }
}

/// The caption rows of one sample that the cross-attention can see, and their score biases
/// `(1 − mask)·(−10000)`. A token the mask drops (mask 0) gets a softmax weight of
/// exp(score − 10000 − max) = 0 in f32 whenever some token is kept (unless their scores
/// differ by more than ~9900), and every caption row is computed independently of the
/// others, so leaving those rows out changes nothing but the work: SANA pipelines pad every
/// caption to 300 tokens. A caption that keeps no token is kept whole (it attends uniformly,
/// as in diffusers).
fn kept_captions(captions: &[f32], mask: Option<&[f32]>, width: usize) -> (Vec<f32>, Vec<f32>) {
    let texts = captions.len() / width.max(1);
    let Some(mask) = mask.filter(|m| m.iter().any(|&v| v != 0.0)) else {
        let bias = match mask {
            Some(mask) => mask.iter().map(|m| (1.0 - m) * MASKED_TOKEN_BIAS).collect(),
            None => vec![0.0; texts],
        };
        return (captions.to_vec(), bias);
    };
    let kept: Vec<usize> = (0..texts).filter(|&i| mask[i] != 0.0).collect();
    let rows = kept
        .iter()
        .flat_map(|&i| captions[i * width..(i + 1) * width].iter().copied())
        .collect();
    let bias = kept
        .iter()
        .map(|&i| (1.0 - mask[i]) * MASKED_TOKEN_BIAS)
        .collect();
    (rows, bias)
}

/// diffusers' `TimestepEmbedding(Timesteps(256)(t))`: Linear, SiLU, Linear.
fn timestep_mlp(mlp: &TimestepMlp, t: f32) -> Vec<f32> {
    let features = timestep_features(t);
    let mut hidden = linear_rows(&features, 1, &mlp.first);
    hidden.iter_mut().for_each(|v| *v = silu(*v));
    linear_rows(&hidden, 1, &mlp.second)
}
