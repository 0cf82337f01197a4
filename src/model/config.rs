//! Model hyper-parameters: the `linear_dit.config` object of SPEC, its validation, and the
//! quantities derived from it (parameter count, output size, FLOPs per token).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

use super::config_fields::config_fields;
use super::flavor::Flavor;

/// Hard caps on the config's sizes. They keep every size product the runtime computes
/// (`6·h·h`, `h·m`, `D·h`, `C·h`, a tensor's byte count) exact in 64 bits, so a hostile file
/// or flag is a validation error that names the field instead of a wrapped size.
pub mod caps {
    /// `hidden_size` ≤ 2^20 (1,048,576): real models are far below it (DiT-XL 1,152,
    /// Sana 1600M 2,240, the widest published transformers ~20k), and `6·h²` stays < 2^43.
    pub const MAX_HIDDEN_SIZE: usize = 1 << 20;
    /// `num_layers` ≤ 10,000: real models use 12 to ~130 blocks.
    pub const MAX_NUM_LAYERS: usize = 10_000;
    /// MLP width `m` ≤ 2^31 (so `h·m` < 2^51); real models use `m` = 2–8 × h.
    pub const MAX_MLP_HIDDEN: usize = 1 << 31;
    /// `num_steps` ≤ 2^24: timesteps are f32, which represents every integer only up to
    /// 2^24; real schedules use 1,000.
    pub const MAX_NUM_STEPS: usize = 1 << 24;
    /// `patch_size` ≤ 1,024: real models use 1 to 16 (and `D = c·p²`).
    pub const MAX_PATCH_SIZE: usize = 1 << 10;
    /// `input_dim` and `num_classes` ≤ 2^40. They only scale the embedding and output
    /// matrices linearly, so the allocation budget ([`crate::limits`]) is what refuses a
    /// too-large value, with the bytes it would need; this cap only keeps `D·h` and `C·h`
    /// below 2^60.
    pub const MAX_LINEAR_DIM: usize = 1 << 40;
}

config_fields! {
    /// A Linear DiT configuration, serialised as the `linear_dit.config` metadata of a weights file.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        /// Patch dimension D = channels × patch_size² (input and output width per token).
        pub input_dim: usize => usize, with_input_dim,
            "Patch dimension D = channels × patch_size².",
        /// Transformer width h.
        #[serde(default = "defaults::hidden_size")]
        pub hidden_size: usize => usize, with_hidden_size,
            "Transformer width h.",
        /// Number of Linear DiT blocks L.
        #[serde(default = "defaults::num_layers")]
        pub num_layers: usize => usize, with_num_layers,
            "Number of blocks L.",
        /// Attention heads H; head_dim = h / H.
        #[serde(default = "defaults::num_heads")]
        pub num_heads: usize => usize, with_num_heads,
            "Attention heads H (required with a weights file that has no config metadata, whose shapes cannot tell it).",
        /// MLP width m = round(h × mlp_ratio).
        #[serde(default = "defaults::mlp_ratio")]
        pub mlp_ratio: f64 => f64, with_mlp_ratio,
            "MLP width ratio, m = round(h × ratio).",
        /// Number of classes C; `None` is unconditional.
        #[serde(default)]
        pub num_classes: Option<usize> => usize, with_num_classes,
            "Number of classes C.",
        /// Diffusion steps of the training schedule; valid timesteps lie in `[0, num_steps)`.
        #[serde(default = "defaults::num_steps")]
        pub num_steps: usize => usize, with_num_steps,
            "Diffusion steps of the training schedule (required with a weights file that has no config metadata).",
        /// Patch size p used by [`crate::patchify`] / [`crate::unpatchify`].
        #[serde(default = "defaults::patch_size")]
        pub patch_size: usize => usize, with_patch_size,
            "Patch size p.",
        /// Architecture flavor.
        #[serde(default)]
        pub flavor: Flavor => Flavor, with_flavor,
            "Architecture flavor: dit or edifice.",
    }
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
    /// The SPEC defaults for a given patch dimension (unconditional, `dit` flavor); change
    /// fields with the `with_*` methods.
    ///
    /// ```
    /// use linear_dit::{Config, Flavor};
    /// let config = Config::new(4).with_hidden_size(64).with_num_classes(10).with_flavor(Flavor::Edifice);
    /// assert_eq!((config.hidden_size, config.num_classes), (64, Some(10)));
    /// # config.validate()?;
    /// # Ok::<(), linear_dit::Error>(())
    /// ```
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
        let at_most = |field: &'static str, value: usize, cap: usize| {
            if value > cap {
                Err(Error::config(
                    field,
                    format!("({value}) must be at most {cap} (see config::caps)"),
                ))
            } else {
                Ok(())
            }
        };
        at_most("input_dim", self.input_dim, caps::MAX_LINEAR_DIM)?;
        at_most("hidden_size", self.hidden_size, caps::MAX_HIDDEN_SIZE)?;
        at_most("num_layers", self.num_layers, caps::MAX_NUM_LAYERS)?;
        at_most("num_steps", self.num_steps, caps::MAX_NUM_STEPS)?;
        at_most("patch_size", self.patch_size, caps::MAX_PATCH_SIZE)?;
        if let Some(c) = self.num_classes {
            at_most("num_classes", c, caps::MAX_LINEAR_DIM)?;
        }
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
        if m < 1.0 || m > caps::MAX_MLP_HIDDEN as f64 {
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

    /// Head dimension d = h / H (0 for the invalid `num_heads = 0`, rather than a panic).
    pub fn head_dim(&self) -> usize {
        self.hidden_size.checked_div(self.num_heads).unwrap_or(0)
    }

    /// MLP width m = round(h × mlp_ratio) (saturating for out-of-range ratios, which
    /// [`Config::validate`] rejects).
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio).round() as usize
    }

    /// Width of the timestep frequency embedding: 256 for `dit`, 2·⌊h/2⌋ for `edifice`
    /// ([`crate::model::embedding::timestep_feature_width`]).
    pub fn time_freq_dim(&self) -> usize {
        super::embedding::timestep_feature_width(self)
    }

    /// Width of each output token (= `input_dim`), as Edifice's `output_size/1`.
    pub fn output_size(&self) -> usize {
        self.input_dim
    }

    /// Exact number of parameters: every tensor of the weights file (SPEC's table), biases
    /// and norms included.
    ///
    /// Closed form in checked 128-bit arithmetic, so it answers at once for any config, valid
    /// or not; an error (`TooLarge`) when the count does not fit in a u64.
    pub fn param_count(&self) -> Result<u64> {
        let too_large = || Error::TooLarge {
            what: "param_count".to_string(),
            reason: format!(
                "the config (h = {}, L = {}, D = {}, m = {}, C = {:?}) has more than 2^64 parameters",
                self.hidden_size,
                self.num_layers,
                self.input_dim,
                self.mlp_hidden(),
                self.num_classes
            ),
        };
        let count = self.param_count_u128().ok_or_else(too_large)?;
        u64::try_from(count).map_err(|_| too_large())
    }

    /// [`Config::param_count`] in u128; `None` on overflow. Mirrors `weights::layout`
    /// tensor by tensor (a test checks the two agree).
    fn param_count_u128(&self) -> Option<u128> {
        let h = self.hidden_size as u128;
        let d_in = self.input_dim as u128;
        let m = self.mlp_hidden() as u128;
        let f = self.time_freq_dim() as u128;
        let layers = self.num_layers as u128;
        // A Linear layer `out × inp` with its bias.
        let linear = |out: u128, inp: u128| out.checked_mul(inp)?.checked_add(out);
        let sum =
            |terms: &[Option<u128>]| terms.iter().try_fold(0u128, |acc, &t| acc.checked_add(t?));
        let edifice = self.flavor == Flavor::Edifice;
        let classes = match (self.num_classes, edifice) {
            (Some(c), true) => sum(&[linear(h, c as u128), linear(h, h)]),
            (Some(c), false) => (c as u128).checked_add(1)?.checked_mul(h),
            (None, _) => Some(0),
        };
        let block = sum(&[
            linear(h.checked_mul(6)?, h),
            if edifice { h.checked_mul(4) } else { Some(0) }, // norm1, norm2: gamma and beta
            linear(h.checked_mul(3)?, h),
            linear(h, h),
            linear(m, h),
            linear(h, m),
        ])?;
        let final_layer = if edifice {
            sum(&[h.checked_mul(2), linear(d_in, h)])
        } else {
            sum(&[linear(h.checked_mul(2)?, h), linear(d_in, h)])
        };
        sum(&[
            linear(h, d_in),
            if edifice { Some(h) } else { Some(0) }, // pos_embed
            linear(h, f),
            linear(h, h),
            classes,
            layers.checked_mul(block),
            final_layer,
        ])
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
        assert_eq!(dit.param_count().unwrap(), 57_700_928);
        let edifice = Config {
            flavor: Flavor::Edifice,
            ..Config::recommended()
        };
        assert_eq!(edifice.param_count().unwrap(), 57_332_800);
    }

    #[test]
    fn closed_form_param_count_matches_the_layout() {
        for flavor in [Flavor::Dit, Flavor::Edifice] {
            for num_classes in [None, Some(1), Some(10)] {
                let config = Config {
                    hidden_size: 28,
                    num_layers: 3,
                    num_heads: 7,
                    mlp_ratio: 1.5,
                    num_classes,
                    flavor,
                    ..Config::new(12)
                };
                let by_layout: usize = crate::weights::tensor_layout(&config)
                    .unwrap()
                    .iter()
                    .map(|t| t.numel())
                    .sum();
                assert_eq!(
                    config.param_count().unwrap(),
                    by_layout as u64,
                    "{config:?}"
                );
            }
        }
    }

    #[test]
    fn param_count_of_a_billion_layers_is_fast_and_exact() {
        let config = Config {
            num_layers: 1_000_000_000,
            ..Config::recommended()
        };
        let started = std::time::Instant::now();
        let count = config.param_count().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(10));
        // Independently, by SPEC's table: h = 512, D = 64, m = 2048, F = 256, dit, no classes.
        let (h, d, m, f) = (512u64, 64u64, 2048u64, 256u64);
        let block =
            (6 * h * h + 6 * h) + (3 * h * h + 3 * h) + (h * h + h) + (m * h + m) + (h * m + h);
        let rest = (h * d + h) + (h * f + h) + (h * h + h) + (2 * h * h + 2 * h) + (d * h + d);
        assert_eq!(count, 1_000_000_000 * block + rest);
        // Not a valid config, though: it is above the num_layers cap.
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("num_layers") && e.contains("at most"), "{e}");
    }

    #[test]
    fn param_count_overflow_is_an_error() {
        let config = Config {
            hidden_size: 1 << 40,
            num_layers: 1 << 40,
            mlp_ratio: 1.0,
            ..Config::recommended()
        };
        let e = config.param_count().unwrap_err().to_string();
        assert!(e.contains("param_count") && e.contains("2^64"), "{e}");
        let huge = Config {
            hidden_size: usize::MAX,
            num_classes: Some(usize::MAX),
            ..Config::recommended()
        };
        assert!(huge.param_count().is_err());
        // Neither panics in flops_per_token, nor does num_heads = 0.
        assert!(huge.flops_per_token(1).is_finite());
        let no_heads = Config {
            num_heads: 0,
            ..Config::recommended()
        };
        assert!(no_heads.flops_per_token(0).is_finite());
        assert!(no_heads.validate().is_err());
    }

    #[test]
    fn caps_bound_every_size() {
        for (field, config) in [
            (
                "hidden_size",
                Config {
                    hidden_size: (1 << 20) + 4,
                    num_heads: 1,
                    ..Config::recommended()
                },
            ),
            (
                "num_steps",
                Config {
                    num_steps: (1 << 24) + 1,
                    ..Config::recommended()
                },
            ),
            (
                "patch_size",
                Config {
                    patch_size: 1025,
                    ..Config::recommended()
                },
            ),
            ("input_dim", Config::new((1 << 40) + 1)),
            (
                "num_classes",
                Config {
                    num_classes: Some(usize::MAX),
                    ..Config::recommended()
                },
            ),
        ] {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("at most"), "{field}: {e}");
        }
        // At the caps every size product still fits: param_count answers (or refuses) cleanly.
        let widest = Config {
            hidden_size: caps::MAX_HIDDEN_SIZE,
            num_layers: caps::MAX_NUM_LAYERS,
            num_heads: 1,
            mlp_ratio: 1.0,
            num_classes: Some(caps::MAX_LINEAR_DIM),
            ..Config::new(caps::MAX_LINEAR_DIM)
        };
        widest.validate().unwrap();
        assert!(widest.param_count().unwrap() > 1 << 60);
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

impl ConfigOverrides {
    /// A config from these fields over SPEC's defaults (`input_dim` defaults to 64, as in
    /// [`Config::recommended`]); validated.
    pub fn to_config(&self) -> Result<Config> {
        let config = self.apply_to(Config::recommended());
        config.validate()?;
        Ok(config)
    }

    /// The sources of [`ConfigOverrides::to_config`]'s fields: given when set, else default.
    pub fn sources(&self) -> ConfigSources {
        let set = self.set_fields();
        std::array::from_fn(|i| {
            let source = if set[i] {
                FieldSource::Given
            } else {
                FieldSource::Default
            };
            (CONFIG_FIELDS[i], source)
        })
    }
}

/// Where one config field's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldSource {
    /// The weights file's `linear_dit.config` metadata.
    Metadata,
    /// The tensor shapes of a weights file without metadata.
    Inferred,
    /// A flag or an explicit setting ([`ConfigOverrides`]), or the caller's [`Config`].
    Given,
    /// SPEC's default (only for fields the forward does not depend on, or with no file).
    Default,
}

impl FieldSource {
    /// `metadata`, `inferred`, `given` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldSource::Metadata => "metadata",
            FieldSource::Inferred => "inferred",
            FieldSource::Given => "given",
            FieldSource::Default => "default",
        }
    }
}

/// The source of every config field, in [`CONFIG_FIELDS`] order.
pub type ConfigSources = [(&'static str, FieldSource); FIELD_COUNT];

/// Every field from the same source.
pub fn all_from(source: FieldSource) -> ConfigSources {
    CONFIG_FIELDS.map(|field| (field, source))
}
