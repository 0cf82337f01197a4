//! The canonical tensor layout of SPEC's weights table: every tensor a config requires, with
//! its name and shape. Loading, saving, initialisation and `param_count` all derive from it.

use crate::config::{Config, Flavor};
use crate::error::Result;

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
    let edifice = config.flavor == Flavor::Edifice;
    let mut l = LayoutBuilder::default();

    l.linear("x_embedder", h, d_in, Role::Linear);
    if edifice {
        l.tensor("pos_embed", vec![h], Role::PosEmbed);
    }
    l.linear(
        "t_embedder.mlp.0",
        h,
        config.time_freq_dim(),
        Role::Embedding,
    );
    l.linear("t_embedder.mlp.2", h, h, Role::Embedding);
    match (config.num_classes, edifice) {
        (Some(c), true) => {
            l.linear("y_embedder.mlp.0", h, c, Role::Embedding);
            l.linear("y_embedder.mlp.2", h, h, Role::Embedding);
        }
        (Some(c), false) => l.tensor(
            "y_embedder.embedding_table.weight",
            vec![c + 1, h],
            Role::Embedding,
        ),
        (None, _) => {}
    }
    for i in 0..config.num_layers {
        let b = format!("blocks.{i}");
        l.linear(&format!("{b}.adaLN_modulation.1"), 6 * h, h, Role::ZeroInit);
        if edifice {
            l.norm(&format!("{b}.norm1"), h);
            l.norm(&format!("{b}.norm2"), h);
        }
        l.linear(&format!("{b}.attn.qkv"), 3 * h, h, Role::Linear);
        l.linear(&format!("{b}.attn.proj"), h, h, Role::Linear);
        l.linear(&format!("{b}.mlp.fc1"), m, h, Role::Linear);
        l.linear(&format!("{b}.mlp.fc2"), h, m, Role::Linear);
    }
    if edifice {
        l.norm("final_layer.norm_final", h);
        l.linear("final_layer.linear", d_in, h, Role::Linear);
    } else {
        l.linear("final_layer.adaLN_modulation.1", 2 * h, h, Role::ZeroInit);
        l.linear("final_layer.linear", d_in, h, Role::ZeroInit);
    }
    Ok(l.specs)
}

#[derive(Default)]
struct LayoutBuilder {
    specs: Vec<TensorSpec>,
}

impl LayoutBuilder {
    fn tensor(&mut self, name: &str, shape: Vec<usize>, role: Role) {
        self.specs.push(TensorSpec {
            name: name.to_string(),
            shape,
            role,
        });
    }

    /// A Linear layer: `weight [out, in]` and `bias [out]`; zero-initialised layers zero both.
    fn linear(&mut self, prefix: &str, out: usize, inp: usize, weight_role: Role) {
        let bias_role = match weight_role {
            Role::ZeroInit => Role::ZeroInit,
            _ => Role::Bias,
        };
        self.tensor(&format!("{prefix}.weight"), vec![out, inp], weight_role);
        self.tensor(&format!("{prefix}.bias"), vec![out], bias_role);
    }

    /// An affine LayerNorm: `weight` (gamma) and `bias` (beta), both `[h]`.
    fn norm(&mut self, prefix: &str, h: usize) {
        self.tensor(&format!("{prefix}.weight"), vec![h], Role::NormWeight);
        self.tensor(&format!("{prefix}.bias"), vec![h], Role::NormBias);
    }
}
