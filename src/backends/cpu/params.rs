//! The model's parameters as f32 slices for the CPU backend: zero-copy views of the mapped
//! weights file when it stores aligned F32, converted once otherwise.

use crate::error::Result;
use crate::model::tensors::POS_EMBED;
use crate::model::{BlockModule, ClassEmbeddingKind, Config, Module};
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
    fn load(weights: &Weights, module: Module) -> Result<Self> {
        let name = module.weight();
        let shape = &weights.raw(&name)?.shape;
        Ok(Linear {
            out: shape[0],
            inp: shape[1],
            weight: weights.f32(&name)?,
            bias: weights.f32(&module.bias())?,
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
    fn load(weights: &Weights, module: Module) -> Result<Self> {
        Ok(NormParams {
            weight: weights.f32(&module.weight())?,
            bias: weights.f32(&module.bias())?,
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
        let block = |part| Module::Block(i, part);
        let norms = if weights.config().flavor.affine_norms() {
            Some((
                NormParams::load(weights, block(BlockModule::Norm1))?,
                NormParams::load(weights, block(BlockModule::Norm2))?,
            ))
        } else {
            None
        };
        Ok(BlockParams {
            adaln: Linear::load(weights, block(BlockModule::Adaln))?,
            norms,
            qkv: Linear::load(weights, block(BlockModule::Qkv))?,
            proj: Linear::load(weights, block(BlockModule::Proj))?,
            fc1: Linear::load(weights, block(BlockModule::Fc1))?,
            fc2: Linear::load(weights, block(BlockModule::Fc2))?,
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
        let flavor = config.flavor;
        let class = match config.num_classes.map(|_| flavor.class_embedding()) {
            None => ClassEmbedding::None,
            Some(ClassEmbeddingKind::Table) => {
                ClassEmbedding::Table(weights.f32(&Module::ClassTable.weight())?)
            }
            Some(ClassEmbeddingKind::Mlp) => ClassEmbedding::Mlp(
                Linear::load(weights, Module::ClassMlpIn)?,
                Linear::load(weights, Module::ClassMlpOut)?,
            ),
        };
        let final_norm = if flavor.modulated_final_layer() {
            FinalNorm::Modulated(Linear::load(weights, Module::FinalAdaln)?)
        } else {
            FinalNorm::Affine(NormParams::load(weights, Module::FinalNorm)?)
        };
        Ok(CpuParams {
            x_embedder: Linear::load(weights, Module::XEmbedder)?,
            pos_embed: if flavor.learned_position() {
                Some(weights.f32(POS_EMBED)?)
            } else {
                None
            },
            t_mlp: (
                Linear::load(weights, Module::TimeMlpIn)?,
                Linear::load(weights, Module::TimeMlpOut)?,
            ),
            class,
            blocks: (0..config.num_layers)
                .map(|i| BlockParams::load(weights, i))
                .collect::<Result<_>>()?,
            final_norm,
            final_linear: Linear::load(weights, Module::FinalLinear)?,
            config,
        })
    }
}
