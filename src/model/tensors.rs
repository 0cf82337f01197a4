//! The canonical tensor layout of SPEC's weights table: every tensor a config requires, with
//! its name and shape. The names live only here ([`Module`]); loading, saving,
//! initialisation, Axon import, `param_count`'s test and every backend derive from them.

use crate::error::Result;
use crate::model::{ClassEmbeddingKind, Config};

/// A parameterised module of the model. A Linear layer or an affine LayerNorm has the
/// tensors `<prefix>.weight` and `<prefix>.bias`; the class table is the single tensor
/// `<prefix>.weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// The patch embedding, Linear D → h.
    XEmbedder,
    /// The timestep MLP's first layer, Linear F → h.
    TimeMlpIn,
    /// The timestep MLP's second layer, Linear h → h.
    TimeMlpOut,
    /// `dit`'s class table `[C+1, h]` (row C the null class).
    ClassTable,
    /// `edifice`'s class MLP, first layer, Linear C → h.
    ClassMlpIn,
    /// `edifice`'s class MLP, second layer, Linear h → h.
    ClassMlpOut,
    /// A module of block `i`.
    Block(usize, BlockModule),
    /// `dit`'s final adaLN projection, Linear h → 2h.
    FinalAdaln,
    /// `edifice`'s final affine LayerNorm.
    FinalNorm,
    /// The output projection, Linear h → D.
    FinalLinear,
}

/// A module of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockModule {
    /// The adaLN projection h → 6h ([`crate::model::adaln`] gives its column layout).
    Adaln,
    /// `edifice`'s affine LayerNorm before attention.
    Norm1,
    /// `edifice`'s affine LayerNorm before the MLP.
    Norm2,
    /// The fused query/key/value projection h → 3h.
    Qkv,
    /// The attention output projection h → h.
    Proj,
    /// The MLP's first layer h → m.
    Fc1,
    /// The MLP's second layer m → h.
    Fc2,
}

/// `edifice`'s learned position vector `[h]`, a lone tensor.
pub const POS_EMBED: &str = "pos_embed";

impl Module {
    /// The name prefix of the module's tensors.
    pub fn prefix(self) -> String {
        let fixed = match self {
            Module::XEmbedder => "x_embedder",
            Module::TimeMlpIn => "t_embedder.mlp.0",
            Module::TimeMlpOut => "t_embedder.mlp.2",
            Module::ClassTable => "y_embedder.embedding_table",
            Module::ClassMlpIn => "y_embedder.mlp.0",
            Module::ClassMlpOut => "y_embedder.mlp.2",
            Module::FinalAdaln => "final_layer.adaLN_modulation.1",
            Module::FinalNorm => "final_layer.norm_final",
            Module::FinalLinear => "final_layer.linear",
            Module::Block(i, part) => {
                let suffix = match part {
                    BlockModule::Adaln => "adaLN_modulation.1",
                    BlockModule::Norm1 => "norm1",
                    BlockModule::Norm2 => "norm2",
                    BlockModule::Qkv => "attn.qkv",
                    BlockModule::Proj => "attn.proj",
                    BlockModule::Fc1 => "mlp.fc1",
                    BlockModule::Fc2 => "mlp.fc2",
                };
                return format!("blocks.{i}.{suffix}");
            }
        };
        fixed.to_string()
    }

    /// The weight tensor's name (a Linear `[out, in]`, a norm's gamma, the class table).
    pub fn weight(self) -> String {
        format!("{}.weight", self.prefix())
    }

    /// The bias tensor's name (a Linear's bias, a norm's beta).
    pub fn bias(self) -> String {
        format!("{}.bias", self.prefix())
    }
}

/// What a tensor is for; drives initialisation (SPEC, "AdaLN-Zero initialisation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A Linear weight `[out, in]` (Xavier-uniform under `dit` init).
    Linear,
    /// A Linear bias.
    Bias,
    /// An adaLN modulation weight or bias, or the final output projection (zero under `dit` init).
    ZeroInit,
    /// Timestep- or class-MLP weight, or class table (normal(0, 0.02) under `dit` init).
    Embedding,
    /// LayerNorm gamma.
    NormWeight,
    /// LayerNorm beta.
    NormBias,
    /// Edifice's learned position vector.
    PosEmbed,
}

/// One tensor of the weights file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Canonical name (SPEC's weights table).
    pub name: String,
    /// Row-major shape; Linear weights are `[out, in]`.
    pub shape: Vec<usize>,
    /// What it is for.
    pub role: Role,
}

impl TensorSpec {
    /// Number of elements (exact: a layout exists only for a validated config).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor `config` requires, in a stable order (embedders, blocks, final layer); an
/// error when the config is invalid. (Validation's caps keep every size below exact.)
pub fn tensor_layout(config: &Config) -> Result<Vec<TensorSpec>> {
    config.validate()?;
    let h = config.hidden_size;
    let d_in = config.input_dim;
    let m = config.mlp_hidden();
    let flavor = config.flavor;
    let mut l = LayoutBuilder::default();

    l.linear(Module::XEmbedder, h, d_in, Role::Linear);
    if flavor.learned_position() {
        l.tensor(POS_EMBED.to_string(), vec![h], Role::PosEmbed);
    }
    l.linear(
        Module::TimeMlpIn,
        h,
        config.time_freq_dim(),
        Role::Embedding,
    );
    l.linear(Module::TimeMlpOut, h, h, Role::Embedding);
    if let Some(c) = config.num_classes {
        match flavor.class_embedding() {
            ClassEmbeddingKind::Mlp => {
                l.linear(Module::ClassMlpIn, h, c, Role::Embedding);
                l.linear(Module::ClassMlpOut, h, h, Role::Embedding);
            }
            ClassEmbeddingKind::Table => {
                l.tensor(Module::ClassTable.weight(), vec![c + 1, h], Role::Embedding)
            }
        }
    }
    for i in 0..config.num_layers {
        let block = |part| Module::Block(i, part);
        l.linear(block(BlockModule::Adaln), 6 * h, h, Role::ZeroInit);
        if flavor.affine_norms() {
            l.norm(block(BlockModule::Norm1), h);
            l.norm(block(BlockModule::Norm2), h);
        }
        l.linear(block(BlockModule::Qkv), 3 * h, h, Role::Linear);
        l.linear(block(BlockModule::Proj), h, h, Role::Linear);
        l.linear(block(BlockModule::Fc1), m, h, Role::Linear);
        l.linear(block(BlockModule::Fc2), h, m, Role::Linear);
    }
    if flavor.modulated_final_layer() {
        l.linear(Module::FinalAdaln, 2 * h, h, Role::ZeroInit);
        l.linear(Module::FinalLinear, d_in, h, Role::ZeroInit);
    } else {
        l.norm(Module::FinalNorm, h);
        l.linear(Module::FinalLinear, d_in, h, Role::Linear);
    }
    Ok(l.specs)
}

#[derive(Default)]
struct LayoutBuilder {
    specs: Vec<TensorSpec>,
}

impl LayoutBuilder {
    fn tensor(&mut self, name: String, shape: Vec<usize>, role: Role) {
        self.specs.push(TensorSpec { name, shape, role });
    }

    /// A Linear layer: `weight [out, in]` and `bias [out]`; zero-initialised layers zero both.
    fn linear(&mut self, module: Module, out: usize, inp: usize, weight_role: Role) {
        let bias_role = match weight_role {
            Role::ZeroInit => Role::ZeroInit,
            _ => Role::Bias,
        };
        self.tensor(module.weight(), vec![out, inp], weight_role);
        self.tensor(module.bias(), vec![out], bias_role);
    }

    /// An affine LayerNorm: `weight` (gamma) and `bias` (beta), both `[h]`.
    fn norm(&mut self, module: Module, h: usize) {
        self.tensor(module.weight(), vec![h], Role::NormWeight);
        self.tensor(module.bias(), vec![h], Role::NormBias);
    }
}
