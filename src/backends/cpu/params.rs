//! The model's parameters as f32 slices for the CPU backend: zero-copy views of the mapped
//! weights file when it stores aligned F32, converted once otherwise.

use crate::config::{Config, Flavor};
use crate::error::Result;
use crate::tensor::SharedF32;
use crate::weights::Weights;

/// A Linear layer, `y = x Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: SharedF32,
    /// `[out]`.
    pub bias: SharedF32,
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
}

impl Linear {
    fn load(weights: &Weights, prefix: &str) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let shape = &weights.raw(&name)?.shape;
        Ok(Linear {
            out: shape[0],
            inp: shape[1],
            weight: weights.f32(&name)?,
            bias: weights.f32(&format!("{prefix}.bias"))?,
        })
    }
}

/// An affine LayerNorm's gamma and beta (`edifice` only).
#[derive(Debug, Clone)]
pub struct NormParams {
    /// gamma `[h]`.
    pub weight: SharedF32,
    /// beta `[h]`.
    pub bias: SharedF32,
}

impl NormParams {
    fn load(weights: &Weights, prefix: &str) -> Result<Self> {
        Ok(NormParams {
            weight: weights.f32(&format!("{prefix}.weight"))?,
            bias: weights.f32(&format!("{prefix}.bias"))?,
        })
    }
}

/// How the class label enters the condition.
#[derive(Debug, Clone)]
pub enum ClassEmbedding {
    /// Unconditional model.
    None,
    /// `dit`: a `[C+1, h]` table, row C the null class.
    Table(SharedF32),
    /// `edifice`: one-hot of width C through Linear, SiLU, Linear.
    Mlp(Linear, Linear),
}

/// One Linear DiT block's parameters.
#[derive(Debug, Clone)]
pub struct BlockParams {
    /// adaLN projection h → 6h.
    pub adaln: Linear,
    /// Affine norms before attention and MLP (`edifice`).
    pub norms: Option<(NormParams, NormParams)>,
    /// h → 3h.
    pub qkv: Linear,
    /// h → h.
    pub proj: Linear,
    /// h → m.
    pub fc1: Linear,
    /// m → h.
    pub fc2: Linear,
}

impl BlockParams {
    /// Block `i` of `weights`.
    pub fn load(weights: &Weights, i: usize) -> Result<Self> {
        let b = format!("blocks.{i}");
        let norms = match weights.config().flavor {
            Flavor::Edifice => Some((
                NormParams::load(weights, &format!("{b}.norm1"))?,
                NormParams::load(weights, &format!("{b}.norm2"))?,
            )),
            Flavor::Dit => None,
        };
        Ok(BlockParams {
            adaln: Linear::load(weights, &format!("{b}.adaLN_modulation.1"))?,
            norms,
            qkv: Linear::load(weights, &format!("{b}.attn.qkv"))?,
            proj: Linear::load(weights, &format!("{b}.attn.proj"))?,
            fc1: Linear::load(weights, &format!("{b}.mlp.fc1"))?,
            fc2: Linear::load(weights, &format!("{b}.mlp.fc2"))?,
        })
    }
}

/// The final layer.
#[derive(Debug, Clone)]
pub enum FinalNorm {
    /// `dit`: `[shift, scale]` from an adaLN projection h → 2h.
    Modulated(Linear),
    /// `edifice`: a plain affine LayerNorm.
    Affine(NormParams),
}

/// Every parameter of the model.
#[derive(Debug, Clone)]
pub struct CpuParams {
    /// The config the parameters were loaded for.
    pub config: Config,
    /// D → h.
    pub x_embedder: Linear,
    /// Edifice's learned position vector `[h]`.
    pub pos_embed: Option<SharedF32>,
    /// Timestep MLP: F → h, SiLU, h → h.
    pub t_mlp: (Linear, Linear),
    /// Class embedding.
    pub class: ClassEmbedding,
    /// The blocks.
    pub blocks: Vec<BlockParams>,
    /// Final norm.
    pub final_norm: FinalNorm,
    /// h → D.
    pub final_linear: Linear,
}

impl CpuParams {
    /// Views every tensor of `weights`.
    pub fn load(weights: &Weights) -> Result<Self> {
        let config = weights.config().clone();
        let edifice = config.flavor == Flavor::Edifice;
        let class = match (config.num_classes, edifice) {
            (None, _) => ClassEmbedding::None,
            (Some(_), false) => {
                ClassEmbedding::Table(weights.f32("y_embedder.embedding_table.weight")?)
            }
            (Some(_), true) => ClassEmbedding::Mlp(
                Linear::load(weights, "y_embedder.mlp.0")?,
                Linear::load(weights, "y_embedder.mlp.2")?,
            ),
        };
        let final_norm = if edifice {
            FinalNorm::Affine(NormParams::load(weights, "final_layer.norm_final")?)
        } else {
            FinalNorm::Modulated(Linear::load(weights, "final_layer.adaLN_modulation.1")?)
        };
        Ok(CpuParams {
            x_embedder: Linear::load(weights, "x_embedder")?,
            pos_embed: if edifice {
                Some(weights.f32("pos_embed")?)
            } else {
                None
            },
            t_mlp: (
                Linear::load(weights, "t_embedder.mlp.0")?,
                Linear::load(weights, "t_embedder.mlp.2")?,
            ),
            class,
            blocks: (0..config.num_layers)
                .map(|i| BlockParams::load(weights, i))
                .collect::<Result<_>>()?,
            final_norm,
            final_linear: Linear::load(weights, "final_layer.linear")?,
            config,
        })
    }
}
