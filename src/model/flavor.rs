//! The two flavors and the rules that tell them apart (SPEC, "Flavor"): everything a backend
//! needs to know about a flavor is a method here, so no backend matches on the flavor to
//! recall a constant.

use serde::{Deserialize, Serialize};

/// Which architecture the weights describe (SPEC, "Flavor").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// DiT conventions: SiLU before adaLN, LayerNorm without affine, tanh GELU, 2-D sin-cos
    /// positions, class table with a null row, modulated final layer.
    #[default]
    Dit,
    /// Exactly what Elixir's `Edifice.Generative.LinearDiT` computes: affine LayerNorms, exact
    /// GELU, one learned position vector, one-hot class MLP, plain final norm.
    Edifice,
}

impl Flavor {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Dit => "dit",
            Flavor::Edifice => "edifice",
        }
    }
}

impl std::str::FromStr for Flavor {
    type Err = crate::error::ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "dit" => Ok(Flavor::Dit),
            "edifice" => Ok(Flavor::Edifice),
            other => Err(crate::error::ParseError::new(
                "flavor",
                other,
                "dit or edifice",
            )),
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which GELU the MLP applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    /// The tanh approximation, `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))` (`dit`).
    Tanh,
    /// The exact `0.5x(1 + erf(x/√2))` (`edifice`).
    Erf,
}

/// How the class label enters the condition vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassEmbeddingKind {
    /// A `[C+1, h]` table whose row C is the null class (`dit`).
    Table,
    /// A one-hot of width C through Linear, SiLU, Linear (`edifice`).
    Mlp,
}

impl Flavor {
    /// The LayerNorm epsilon of every norm of the model: 1e-6 for `dit`, 1e-5 for `edifice`.
    pub fn layer_norm_eps(self) -> f32 {
        match self {
            Flavor::Dit => 1e-6,
            Flavor::Edifice => 1e-5,
        }
    }

    /// The MLP's GELU.
    pub fn gelu(self) -> Gelu {
        match self {
            Flavor::Dit => Gelu::Tanh,
            Flavor::Edifice => Gelu::Erf,
        }
    }

    /// Whether the condition passes through SiLU before the adaLN projections (`dit`).
    pub fn silu_before_adaln(self) -> bool {
        self == Flavor::Dit
    }

    /// Whether the block norms and the final norm carry a learned affine (`edifice`).
    pub fn affine_norms(self) -> bool {
        self == Flavor::Edifice
    }

    /// Whether the final layer is modulated by its own adaLN projection (`dit`); otherwise
    /// it is a plain affine LayerNorm.
    pub fn modulated_final_layer(self) -> bool {
        self == Flavor::Dit
    }

    /// Whether the tokens get one learned position vector (`edifice`) instead of the 2-D
    /// sin-cos table of the token grid (`dit`).
    pub fn learned_position(self) -> bool {
        self == Flavor::Edifice
    }

    /// How a class-conditional model embeds its label.
    pub fn class_embedding(self) -> ClassEmbeddingKind {
        match self {
            Flavor::Dit => ClassEmbeddingKind::Table,
            Flavor::Edifice => ClassEmbeddingKind::Mlp,
        }
    }
}
