//! Model hyper-parameters: the `linear_dit.config` object of SPEC, its validation, and the
//! quantities derived from it (parameter count, output size, FLOPs per token).

use crate::error::{Error, Result};
use crate::weights::layout;
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
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dit" => Ok(Flavor::Dit),
            "edifice" => Ok(Flavor::Edifice),
            other => Err(Error::config(
                "flavor",
                format!("is `{other}`, expected `dit` or `edifice`"),
            )),
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Linear DiT configuration, serialised as the `linear_dit.config` metadata of a weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Patch dimension D = channels × patch_size² (input and output width per token).
    pub input_dim: usize,
    /// Transformer width h.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Number of Linear DiT blocks L.
    #[serde(default = "defaults::num_layers")]
    pub num_layers: usize,
    /// Attention heads H; head_dim = h / H.
    #[serde(default = "defaults::num_heads")]
    pub num_heads: usize,
    /// MLP width m = round(h × mlp_ratio).
    #[serde(default = "defaults::mlp_ratio")]
    pub mlp_ratio: f64,
    /// Number of classes C; `None` is unconditional.
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// Diffusion steps of the training schedule; valid timesteps lie in `[0, num_steps]`.
    #[serde(default = "defaults::num_steps")]
    pub num_steps: usize,
    /// Patch size p used by [`crate::patchify`] / [`crate::unpatchify`].
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    /// Architecture flavor.
    #[serde(default)]
    pub flavor: Flavor,
}

mod defaults {
    pub fn hidden_size() -> usize {
        512
    }
    pub fn num_layers() -> usize {
        12
    }
    pub fn num_heads() -> usize {
        8
    }
    pub fn mlp_ratio() -> f64 {
        4.0
    }
    pub fn num_steps() -> usize {
        1000
    }
    pub fn patch_size() -> usize {
        2
    }
}

impl Config {
    /// The SPEC defaults for a given patch dimension (unconditional, `dit` flavor).
    pub fn new(input_dim: usize) -> Self {
        Config {
            input_dim,
            hidden_size: defaults::hidden_size(),
            num_layers: defaults::num_layers(),
            num_heads: defaults::num_heads(),
            mlp_ratio: defaults::mlp_ratio(),
            num_classes: None,
            num_steps: defaults::num_steps(),
            patch_size: defaults::patch_size(),
            flavor: Flavor::Dit,
        }
    }

    /// SPEC's recommended configuration: the defaults with `input_dim = 64`.
    pub fn recommended() -> Self {
        Config::new(64)
    }

    /// Checks every rule of SPEC's configuration table; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &'static str, value: usize| {
            if value == 0 {
                Err(Error::config(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("input_dim", self.input_dim)?;
        positive("hidden_size", self.hidden_size)?;
        positive("num_layers", self.num_layers)?;
        positive("num_heads", self.num_heads)?;
        positive("num_steps", self.num_steps)?;
        positive("patch_size", self.patch_size)?;
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(Error::config(
                "hidden_size",
                format!(
                    "({}) must be divisible by num_heads ({})",
                    self.hidden_size, self.num_heads
                ),
            ));
        }
        if self.flavor == Flavor::Dit && !self.hidden_size.is_multiple_of(4) {
            return Err(Error::config(
                "hidden_size",
                format!(
                    "({}) must be divisible by 4 for the dit flavor (2-D sin-cos positions)",
                    self.hidden_size
                ),
            ));
        }
        if !self.mlp_ratio.is_finite() || self.mlp_ratio <= 0.0 {
            return Err(Error::config(
                "mlp_ratio",
                format!("({}) must be a positive finite number", self.mlp_ratio),
            ));
        }
        let m = (self.hidden_size as f64 * self.mlp_ratio).round();
        if m < 1.0 || m > (1u64 << 31) as f64 {
            return Err(Error::config(
                "mlp_ratio",
                format!(
                    "({}) gives an MLP width of {m}; it must lie in [1, 2^31]",
                    self.mlp_ratio
                ),
            ));
        }
        if self.num_classes == Some(0) {
            return Err(Error::config(
                "num_classes",
                "must be at least 1 (use null for an unconditional model)",
            ));
        }
        Ok(())
    }

    /// Head dimension d = h / H.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// MLP width m = round(h × mlp_ratio).
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio).round() as usize
    }

    /// Width of the timestep frequency embedding: 256 for `dit`, 2·⌊h/2⌋ for `edifice`.
    pub fn time_freq_dim(&self) -> usize {
        match self.flavor {
            Flavor::Dit => 256,
            Flavor::Edifice => 2 * (self.hidden_size / 2),
        }
    }

    /// Width of each output token (= `input_dim`), as Edifice's `output_size/1`.
    pub fn output_size(&self) -> usize {
        self.input_dim
    }

    /// Exact number of parameters: every tensor of the weights file, biases and norms included.
    pub fn param_count(&self) -> usize {
        layout::tensor_layout(self).iter().map(|t| t.numel()).sum()
    }

    /// Floating-point operations per token of one forward over samples of `n_tokens` tokens
    /// (a multiply-add counts 2).
    ///
    /// Counts the GEMMs (embedding, qkv, proj, fc1, fc2, output) and the linear attention
    /// (`φ(K)ᵀV`, `Σφ(K)`, `φ(Q)S` and the normaliser: H·(4d² + 3d) per token); the per-sample
    /// work (conditioning MLPs, every adaLN projection) is divided by `n_tokens`. Elementwise work
    /// (norms, activations) is left out, as is customary for model FLOP utilisation.
    pub fn flops_per_token(&self, n_tokens: usize) -> f64 {
        let (d_in, h, m) = (
            self.input_dim as f64,
            self.hidden_size as f64,
            self.mlp_hidden() as f64,
        );
        let (heads, d) = (self.num_heads as f64, self.head_dim() as f64);
        let layers = self.num_layers as f64;
        let per_token_block = 2.0 * h * (3.0 * h + h + 2.0 * m) + heads * (4.0 * d * d + 3.0 * d);
        let per_token = 2.0 * d_in * h + layers * per_token_block + 2.0 * h * d_in;

        let f = self.time_freq_dim() as f64;
        let class_mlp = match (self.flavor, self.num_classes) {
            (Flavor::Edifice, Some(c)) => 2.0 * (c as f64) * h + 2.0 * h * h,
            _ => 0.0,
        };
        let final_adaln = match self.flavor {
            Flavor::Dit => 2.0 * h * 2.0 * h,
            Flavor::Edifice => 0.0,
        };
        let per_sample =
            2.0 * f * h + 2.0 * h * h + class_mlp + layers * 2.0 * h * 6.0 * h + final_adaln;
        per_token + per_sample / n_tokens.max(1) as f64
    }

    /// The JSON stored under the `linear_dit.config` metadata key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("config serialises: {e}"))
    }

    /// Parses and validates a `linear_dit.config` JSON object.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: Config = serde_json::from_str(json)
            .map_err(|e| Error::config("linear_dit.config", format!("is not valid: {e}")))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_counts_match_spec() {
        let dit = Config::recommended();
        assert_eq!(dit.param_count(), 57_700_928);
        let edifice = Config {
            flavor: Flavor::Edifice,
            ..Config::recommended()
        };
        assert_eq!(edifice.param_count(), 57_332_800);
    }

    #[test]
    fn json_round_trip_keeps_null_classes() {
        let c = Config::recommended();
        let json = c.to_json();
        assert!(json.contains("\"num_classes\":null"), "{json}");
        assert!(json.contains("\"flavor\":\"dit\""), "{json}");
        assert_eq!(Config::from_json(&json).unwrap(), c);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = Config {
            num_heads: 7,
            ..Config::recommended()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(
            msg.contains("hidden_size") && msg.contains("num_heads"),
            "{msg}"
        );
        let bad = Config {
            hidden_size: 18,
            num_heads: 3,
            ..Config::recommended()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("divisible by 4")
        );
        let bad = Config {
            mlp_ratio: f64::NAN,
            ..Config::recommended()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("mlp_ratio")
        );
        assert!(
            Config::from_json("{\"input_dim\":0}")
                .unwrap_err()
                .to_string()
                .contains("input_dim")
        );
    }
}

/// Config fields given explicitly (command-line flags, a service's settings); unset fields
/// come from the weights file, or from SPEC's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    /// `input_dim`.
    pub input_dim: Option<usize>,
    /// `hidden_size`.
    pub hidden_size: Option<usize>,
    /// `num_layers`.
    pub num_layers: Option<usize>,
    /// `num_heads`.
    pub num_heads: Option<usize>,
    /// `mlp_ratio`.
    pub mlp_ratio: Option<f64>,
    /// `num_classes` (`Some(n)`; an unconditional model is the absence of class tensors).
    pub num_classes: Option<usize>,
    /// `num_steps`.
    pub num_steps: Option<usize>,
    /// `patch_size`.
    pub patch_size: Option<usize>,
    /// `flavor`.
    pub flavor: Option<Flavor>,
}

impl ConfigOverrides {
    /// A config from these fields over SPEC's defaults (`input_dim` defaults to 64, as in
    /// [`Config::recommended`]); validated.
    pub fn to_config(&self) -> Result<Config> {
        let config = self.apply_to(Config::recommended());
        config.validate()?;
        Ok(config)
    }

    /// `base` with every set field replaced.
    pub fn apply_to(&self, base: Config) -> Config {
        Config {
            input_dim: self.input_dim.unwrap_or(base.input_dim),
            hidden_size: self.hidden_size.unwrap_or(base.hidden_size),
            num_layers: self.num_layers.unwrap_or(base.num_layers),
            num_heads: self.num_heads.unwrap_or(base.num_heads),
            mlp_ratio: self.mlp_ratio.unwrap_or(base.mlp_ratio),
            num_classes: self.num_classes.or(base.num_classes),
            num_steps: self.num_steps.unwrap_or(base.num_steps),
            patch_size: self.patch_size.unwrap_or(base.patch_size),
            flavor: self.flavor.unwrap_or(base.flavor),
        }
    }

    /// The first set field whose value differs from `config`, as (field, given, actual).
    pub fn first_conflict(&self, config: &Config) -> Option<(&'static str, String, String)> {
        fn differs<T: PartialEq + std::fmt::Debug>(
            field: &'static str,
            given: Option<T>,
            actual: T,
        ) -> Option<(&'static str, String, String)> {
            given
                .filter(|g| *g != actual)
                .map(|g| (field, format!("{g:?}"), format!("{actual:?}")))
        }
        differs("input_dim", self.input_dim, config.input_dim)
            .or_else(|| differs("hidden_size", self.hidden_size, config.hidden_size))
            .or_else(|| differs("num_layers", self.num_layers, config.num_layers))
            .or_else(|| differs("num_heads", self.num_heads, config.num_heads))
            .or_else(|| differs("mlp_ratio", self.mlp_ratio, config.mlp_ratio))
            .or_else(|| {
                differs(
                    "num_classes",
                    self.num_classes.map(Some),
                    config.num_classes,
                )
            })
            .or_else(|| differs("num_steps", self.num_steps, config.num_steps))
            .or_else(|| differs("patch_size", self.patch_size, config.patch_size))
            .or_else(|| differs("flavor", self.flavor, config.flavor))
    }
}
