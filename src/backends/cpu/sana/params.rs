//! A `sana` model's parameters as f32 slices for the CPU backend, read by the names of the
//! one tensor table ([`crate::model::sana::tensors`]).

use crate::backends::cpu::params::Linear;
use crate::error::Result;
use crate::model::sana::tensors::{
    self, BlockPart, CAPTION_LINEAR_1, CAPTION_LINEAR_2, CAPTION_NORM, FINAL_SCALE_SHIFT_TABLE,
    GUIDANCE_EMBEDDER, PATCH_EMBED, PROJ_OUT, TIME_LINEAR, bias, block, weight,
};
use crate::model::sana::{SanaConfig, SanaDims};
use crate::tensor::SharedF32;
use crate::weights::SanaWeights;

/// A Linear (or 1×1 / patch conv, whose weight is the same bytes as `[out, in]`) with
/// `out` outputs; a module without a bias gets a zero one.
fn linear(weights: &SanaWeights, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
    let bias_name = bias(prefix);
    let bias = if weights.contains(&bias_name) {
        weights.f32(&bias_name)?
    } else {
        SharedF32::from_vec(vec![0.0; out])
    };
    Ok(Linear {
        weight: weights.f32(&weight(prefix))?,
        bias,
        out,
        inp,
    })
}

/// diffusers' `TimestepEmbedding`: Linear, SiLU, Linear.
pub struct TimestepMlp {
    /// `256 → h`.
    pub first: Linear,
    /// `h → h`.
    pub second: Linear,
}

impl TimestepMlp {
    fn load(weights: &SanaWeights, prefix: &str, h: usize) -> Result<Self> {
        Ok(TimestepMlp {
            first: linear(
                weights,
                &format!("{prefix}.linear_1"),
                h,
                tensors::TIME_FREQUENCY_WIDTH,
            )?,
            second: linear(weights, &format!("{prefix}.linear_2"), h, h)?,
        })
    }
}

/// One transformer block's parameters.
pub struct SanaBlockParams {
    /// `[6, h]`, rows shift/scale/gate of the attention, then of the Mix-FFN.
    pub scale_shift_table: SharedF32,
    /// Self-attention q, k, v (`h → h`).
    pub self_q: Linear,
    /// See `self_q`.
    pub self_k: Linear,
    /// See `self_q`.
    pub self_v: Linear,
    /// RMSNorm weights of q and k across heads (qk_norm).
    pub self_qk_norm: Option<(SharedF32, SharedF32)>,
    /// Self-attention output projection.
    pub self_out: Linear,
    /// The pre-FFN LayerNorm's (γ, β) with `norm_elementwise_affine`.
    pub ffn_norm: Option<(SharedF32, SharedF32)>,
    /// Cross-attention q (from the image), k and v (from the captions).
    pub cross_q: Linear,
    /// See `cross_q`.
    pub cross_k: Linear,
    /// See `cross_q`.
    pub cross_v: Linear,
    /// RMSNorm weights of the cross-attention q and k (qk_norm).
    pub cross_qk_norm: Option<(SharedF32, SharedF32)>,
    /// Cross-attention output projection.
    pub cross_out: Linear,
    /// 1×1 conv `h → 2m`.
    pub ffn_inverted: Linear,
    /// Depthwise 3×3 weights `[2m, 3, 3]`.
    pub ffn_depthwise: SharedF32,
    /// Depthwise bias `[2m]`.
    pub ffn_depthwise_bias: SharedF32,
    /// 1×1 conv `m → h`, no bias.
    pub ffn_point: Linear,
}

/// Every parameter of a `sana` model.
pub struct SanaParams {
    /// The config.
    pub config: SanaConfig,
    /// Its widths.
    pub dims: SanaDims,
    /// Patch embedding as a Linear over `C·p·p` patch features (`c`, then the patch row, then
    /// the patch column: the conv weight's own order).
    pub patch_embed: Linear,
    /// The timestep MLP.
    pub timestep: TimestepMlp,
    /// The guidance MLP (Sprint).
    pub guidance: Option<TimestepMlp>,
    /// adaLN-single: `h → 6h` after SiLU.
    pub time_linear: Linear,
    /// Caption projection: Linear, tanh GELU, Linear.
    pub caption_first: Linear,
    /// See `caption_first`.
    pub caption_second: Linear,
    /// RMSNorm weight of the projected captions.
    pub caption_norm: SharedF32,
    /// The blocks.
    pub blocks: Vec<SanaBlockParams>,
    /// `[2, h]`: shift row, then scale row, of the final norm.
    pub final_table: SharedF32,
    /// `h → p²·C_out`.
    pub proj_out: Linear,
}

impl SanaParams {
    /// Reads every parameter of `weights` (already checked against the table).
    pub fn load(weights: &SanaWeights) -> Result<Self> {
        let config = weights.config().clone();
        let d = config.dims()?;
        let h = d.hidden;
        let cross = d.cross_heads * d.cross_head_dim;
        let norm_pair = |prefix: &str, with_bias: bool| -> Result<(SharedF32, SharedF32)> {
            let gamma = weights.f32(&weight(prefix))?;
            let beta = if with_bias {
                weights.f32(&bias(prefix))?
            } else {
                SharedF32::from_vec(Vec::new())
            };
            Ok((gamma, beta))
        };
        let blocks = (0..config.num_layers)
            .map(|i| {
                let name = |part| block(i, part);
                let qk = |q, k| -> Result<Option<(SharedF32, SharedF32)>> {
                    if !config.has_qk_norm() {
                        return Ok(None);
                    }
                    Ok(Some((
                        weights.f32(&weight(&name(q)))?,
                        weights.f32(&weight(&name(k)))?,
                    )))
                };
                Ok(SanaBlockParams {
                    scale_shift_table: weights.f32(&name(BlockPart::ScaleShiftTable))?,
                    self_q: linear(weights, &name(BlockPart::SelfQ), h, h)?,
                    self_k: linear(weights, &name(BlockPart::SelfK), h, h)?,
                    self_v: linear(weights, &name(BlockPart::SelfV), h, h)?,
                    self_qk_norm: qk(BlockPart::SelfNormQ, BlockPart::SelfNormK)?,
                    self_out: linear(weights, &name(BlockPart::SelfOut), h, h)?,
                    ffn_norm: if config.norm_elementwise_affine {
                        Some(norm_pair(&name(BlockPart::FfnNorm), true)?)
                    } else {
                        None
                    },
                    cross_q: linear(weights, &name(BlockPart::CrossQ), cross, h)?,
                    cross_k: linear(weights, &name(BlockPart::CrossK), cross, h)?,
                    cross_v: linear(weights, &name(BlockPart::CrossV), cross, h)?,
                    cross_qk_norm: qk(BlockPart::CrossNormQ, BlockPart::CrossNormK)?,
                    cross_out: linear(weights, &name(BlockPart::CrossOut), h, cross)?,
                    ffn_inverted: linear(
                        weights,
                        &name(BlockPart::FfnInverted),
                        2 * d.ffn_hidden,
                        h,
                    )?,
                    ffn_depthwise: weights.f32(&weight(&name(BlockPart::FfnDepthwise)))?,
                    ffn_depthwise_bias: weights.f32(&bias(&name(BlockPart::FfnDepthwise)))?,
                    ffn_point: linear(weights, &name(BlockPart::FfnPoint), h, d.ffn_hidden)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SanaParams {
            patch_embed: linear(weights, PATCH_EMBED, h, d.in_channels * d.patch * d.patch)?,
            timestep: TimestepMlp::load(weights, tensors::timestep_embedder(&config), h)?,
            guidance: if config.guidance_embeds {
                Some(TimestepMlp::load(weights, GUIDANCE_EMBEDDER, h)?)
            } else {
                None
            },
            time_linear: linear(weights, TIME_LINEAR, 6 * h, h)?,
            caption_first: linear(weights, CAPTION_LINEAR_1, h, d.caption)?,
            caption_second: linear(weights, CAPTION_LINEAR_2, h, h)?,
            caption_norm: weights.f32(&weight(CAPTION_NORM))?,
            blocks,
            final_table: weights.f32(FINAL_SCALE_SHIFT_TABLE)?,
            proj_out: linear(weights, PROJ_OUT, d.patch * d.patch * d.out_channels, h)?,
            config,
            dims: d,
        })
    }
}
