//! The one table of a `sana` model's tensors: diffusers' parameter names and shapes, as
//! `SanaTransformer2DModel.state_dict()` has them. Loading checks a folder against it, the
//! CPU backend reads its parameters by these names, and `param_count` sums it.

use super::config::SanaConfig;
use crate::error::Result;

/// A module's parameters are `{prefix}.weight` and (where it has one) `{prefix}.bias`.
pub fn weight(prefix: &str) -> String {
    format!("{prefix}.weight")
}

/// See [`weight`].
pub fn bias(prefix: &str) -> String {
    format!("{prefix}.bias")
}

/// The patch embedding, a `p × p` stride-`p` conv `[h, C, p, p]`.
pub const PATCH_EMBED: &str = "patch_embed.proj";
/// The caption projection's first Linear (`caption_channels → h`, then tanh GELU).
pub const CAPTION_LINEAR_1: &str = "caption_projection.linear_1";
/// The caption projection's second Linear (`h → h`).
pub const CAPTION_LINEAR_2: &str = "caption_projection.linear_2";
/// The RMSNorm over projected captions (weight only).
pub const CAPTION_NORM: &str = "caption_norm";
/// The adaLN-single projection of the condition to the six per-block vectors (`h → 6h`).
pub const TIME_LINEAR: &str = "time_embed.linear";
/// The final layer's `[2, h]` shift/scale table.
pub const FINAL_SCALE_SHIFT_TABLE: &str = "scale_shift_table";
/// The output projection `h → p²·C_out`.
pub const PROJ_OUT: &str = "proj_out";

/// The timestep MLP (`256 → h`, SiLU, `h → h`): under `time_embed.emb.` for adaLN-single,
/// directly under `time_embed.` for the Sprint guidance embedder.
pub fn timestep_embedder(config: &SanaConfig) -> &'static str {
    if config.guidance_embeds {
        "time_embed.timestep_embedder"
    } else {
        "time_embed.emb.timestep_embedder"
    }
}

/// The guidance MLP of Sprint models (`256 → h`, SiLU, `h → h`).
pub const GUIDANCE_EMBEDDER: &str = "time_embed.guidance_embedder";

/// The modules of block `index`, by their name inside the block.
pub fn block(index: usize, module: BlockPart) -> String {
    format!("transformer_blocks.{index}.{}", module.name())
}

/// The parameterised parts of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPart {
    /// The block's `[6, h]` table added to the adaLN-single vectors.
    ScaleShiftTable,
    /// Self-attention query.
    SelfQ,
    /// Self-attention key.
    SelfK,
    /// Self-attention value.
    SelfV,
    /// Self-attention output projection.
    SelfOut,
    /// RMSNorm of self-attention queries (qk_norm).
    SelfNormQ,
    /// RMSNorm of self-attention keys (qk_norm).
    SelfNormK,
    /// The LayerNorm before the Mix-FFN (affine with `norm_elementwise_affine`).
    FfnNorm,
    /// Cross-attention query (from the image tokens).
    CrossQ,
    /// Cross-attention key (from the captions).
    CrossK,
    /// Cross-attention value (from the captions).
    CrossV,
    /// Cross-attention output projection.
    CrossOut,
    /// RMSNorm of cross-attention queries (qk_norm).
    CrossNormQ,
    /// RMSNorm of cross-attention keys (qk_norm).
    CrossNormK,
    /// Mix-FFN 1×1 conv `h → 2m`.
    FfnInverted,
    /// Mix-FFN depthwise 3×3 conv over the 2m channels.
    FfnDepthwise,
    /// Mix-FFN 1×1 conv `m → h` (no bias).
    FfnPoint,
}

impl BlockPart {
    /// The name inside `transformer_blocks.{i}.`.
    pub fn name(self) -> &'static str {
        match self {
            BlockPart::ScaleShiftTable => "scale_shift_table",
            BlockPart::SelfQ => "attn1.to_q",
            BlockPart::SelfK => "attn1.to_k",
            BlockPart::SelfV => "attn1.to_v",
            BlockPart::SelfOut => "attn1.to_out.0",
            BlockPart::SelfNormQ => "attn1.norm_q",
            BlockPart::SelfNormK => "attn1.norm_k",
            BlockPart::FfnNorm => "norm2",
            BlockPart::CrossQ => "attn2.to_q",
            BlockPart::CrossK => "attn2.to_k",
            BlockPart::CrossV => "attn2.to_v",
            BlockPart::CrossOut => "attn2.to_out.0",
            BlockPart::CrossNormQ => "attn2.norm_q",
            BlockPart::CrossNormK => "attn2.norm_k",
            BlockPart::FfnInverted => "ff.conv_inverted",
            BlockPart::FfnDepthwise => "ff.conv_depth",
            BlockPart::FfnPoint => "ff.conv_point",
        }
    }
}

/// The width of the sinusoidal timestep (and guidance) features (diffusers' `Timesteps(256)`).
pub const TIME_FREQUENCY_WIDTH: usize = 256;

/// One parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanaTensor {
    /// diffusers' parameter name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// The table under construction.
struct Table(Vec<SanaTensor>);

impl Table {
    fn tensor(&mut self, name: String, shape: &[usize]) {
        self.0.push(SanaTensor {
            name,
            shape: shape.to_vec(),
        });
    }

    /// A Linear `[out, in]`, with its `[out]` bias when it has one.
    fn linear(&mut self, prefix: &str, out: usize, inp: usize, with_bias: bool) {
        self.tensor(weight(prefix), &[out, inp]);
        if with_bias {
            self.tensor(bias(prefix), &[out]);
        }
    }

    /// diffusers' `TimestepEmbedding(256, h)`: Linear, SiLU, Linear.
    fn timestep_mlp(&mut self, prefix: &str, h: usize) {
        self.linear(&format!("{prefix}.linear_1"), h, TIME_FREQUENCY_WIDTH, true);
        self.linear(&format!("{prefix}.linear_2"), h, h, true);
    }
}

/// Every parameter of the model `config` describes, in diffusers' module order.
pub fn sana_tensors(config: &SanaConfig) -> Result<Vec<SanaTensor>> {
    let d = config.dims()?;
    let (h, m, p) = (d.hidden, d.ffn_hidden, d.patch);
    let cross = d.cross_heads * d.cross_head_dim;
    let mut t = Table(Vec::new());
    t.tensor(weight(PATCH_EMBED), &[h, d.in_channels, p, p]);
    t.tensor(bias(PATCH_EMBED), &[h]);
    t.timestep_mlp(timestep_embedder(config), h);
    if config.guidance_embeds {
        t.timestep_mlp(GUIDANCE_EMBEDDER, h);
    }
    t.linear(TIME_LINEAR, 6 * h, h, true);
    t.linear(CAPTION_LINEAR_1, h, d.caption, true);
    t.linear(CAPTION_LINEAR_2, h, h, true);
    t.tensor(weight(CAPTION_NORM), &[h]);
    for i in 0..config.num_layers {
        let name = |part| block(i, part);
        t.tensor(name(BlockPart::ScaleShiftTable), &[6, h]);
        for part in [BlockPart::SelfQ, BlockPart::SelfK, BlockPart::SelfV] {
            t.linear(&name(part), h, h, config.attention_bias);
        }
        if config.has_qk_norm() {
            t.tensor(weight(&name(BlockPart::SelfNormQ)), &[h]);
            t.tensor(weight(&name(BlockPart::SelfNormK)), &[h]);
        }
        t.linear(&name(BlockPart::SelfOut), h, h, true);
        if config.norm_elementwise_affine {
            t.tensor(weight(&name(BlockPart::FfnNorm)), &[h]);
            t.tensor(bias(&name(BlockPart::FfnNorm)), &[h]);
        }
        t.linear(&name(BlockPart::CrossQ), cross, h, true);
        t.linear(&name(BlockPart::CrossK), cross, h, true);
        t.linear(&name(BlockPart::CrossV), cross, h, true);
        if config.has_qk_norm() {
            t.tensor(weight(&name(BlockPart::CrossNormQ)), &[cross]);
            t.tensor(weight(&name(BlockPart::CrossNormK)), &[cross]);
        }
        t.linear(&name(BlockPart::CrossOut), h, cross, true);
        t.tensor(weight(&name(BlockPart::FfnInverted)), &[2 * m, h, 1, 1]);
        t.tensor(bias(&name(BlockPart::FfnInverted)), &[2 * m]);
        t.tensor(weight(&name(BlockPart::FfnDepthwise)), &[2 * m, 1, 3, 3]);
        t.tensor(bias(&name(BlockPart::FfnDepthwise)), &[2 * m]);
        t.tensor(weight(&name(BlockPart::FfnPoint)), &[h, m, 1, 1]);
    }
    t.tensor(FINAL_SCALE_SHIFT_TABLE.to_string(), &[2, h]);
    t.linear(PROJ_OUT, p * p * d.out_channels, h, true);
    Ok(t.0)
}
