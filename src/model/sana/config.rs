//! The `sana` flavor's hyper-parameters: diffusers' `config.json` of a
//! `SanaTransformer2DModel`, read field by field. Every field diffusers' constructor takes is
//! here with its default; any other field is refused by name, and values the forward cannot
//! honour (an unknown `qk_norm`, widths that do not fit together) are refused with the reason.

use crate::error::{Error, Result};
use crate::model::config::caps;
use serde::{Deserialize, Serialize};

/// The `_class_name` a transformer folder's `config.json` must carry.
pub const SANA_CLASS_NAME: &str = "SanaTransformer2DModel";

/// The one `qk_norm` the SANA family uses (SANA 1.5, Sprint): RMSNorm over all heads of q
/// and of k, with a learned weight.
pub const QK_NORM_ACROSS_HEADS: &str = "rms_norm_across_heads";

/// A `SanaTransformer2DModel` configuration, as diffusers writes it to `config.json`.
/// Field names and defaults are diffusers' (`SanaTransformer2DModel.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanaConfig {
    /// The model class; must be [`SANA_CLASS_NAME`].
    #[serde(rename = "_class_name")]
    pub class_name: String,
    /// The diffusers version that wrote the file (informational).
    #[serde(rename = "_diffusers_version", default)]
    pub diffusers_version: Option<String>,
    /// Where the model was loaded from when it was saved (informational).
    #[serde(rename = "_name_or_path", default)]
    pub name_or_path: Option<String>,
    /// Latent channels C of the input.
    #[serde(default = "defaults::channels")]
    pub in_channels: usize,
    /// Latent channels of the output; `None` means `in_channels`.
    #[serde(default = "defaults::out_channels")]
    pub out_channels: Option<usize>,
    /// Self-attention heads.
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Self-attention head width; the model width is heads × head width.
    #[serde(default = "defaults::attention_head_dim")]
    pub attention_head_dim: usize,
    /// Transformer blocks.
    #[serde(default = "defaults::num_layers")]
    pub num_layers: usize,
    /// Cross-attention heads.
    #[serde(default = "defaults::num_cross_attention_heads")]
    pub num_cross_attention_heads: Option<usize>,
    /// Cross-attention head width.
    #[serde(default = "defaults::cross_attention_head_dim")]
    pub cross_attention_head_dim: Option<usize>,
    /// Width of the (projected) caption tokens the cross-attention reads; must equal the
    /// model width, since the caption projection outputs that width.
    #[serde(default = "defaults::cross_attention_dim")]
    pub cross_attention_dim: Option<usize>,
    /// Width of the caption embeddings given as input (Gemma-2: 2304).
    #[serde(default = "defaults::caption_channels")]
    pub caption_channels: usize,
    /// Mix-FFN expansion: hidden width = ⌊mlp_ratio × model width⌋.
    #[serde(default = "defaults::mlp_ratio")]
    pub mlp_ratio: f64,
    /// Training dropout; inference applies none (as diffusers in eval mode).
    #[serde(default)]
    pub dropout: f64,
    /// Whether the self-attention q/k/v projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// The latent size the model was trained at; the sin-cos position embedding's base grid
    /// is `sample_size / patch_size`.
    #[serde(default = "defaults::sample_size")]
    pub sample_size: usize,
    /// Patch size p of the patch embedding and the output.
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    /// Whether the norm before the Mix-FFN has a learned affine.
    #[serde(default)]
    pub norm_elementwise_affine: bool,
    /// Epsilon of the block LayerNorms.
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f64,
    /// With a value, the patch embedding adds the 2-D sin-cos position embedding with this
    /// interpolation scale (2K/4K models); `None` adds none.
    #[serde(default)]
    pub interpolation_scale: Option<f64>,
    /// Whether the condition embeds a guidance value next to the timestep (SANA-Sprint).
    #[serde(default)]
    pub guidance_embeds: bool,
    /// The factor the Sprint pipeline multiplies the guidance scale by before the forward
    /// (the transformer itself does not apply it).
    #[serde(default = "defaults::guidance_embeds_scale")]
    pub guidance_embeds_scale: f64,
    /// `None` or [`QK_NORM_ACROSS_HEADS`].
    #[serde(default)]
    pub qk_norm: Option<String>,
    /// The factor the Sprint pipeline multiplies its timesteps by before the forward (the
    /// transformer itself does not apply it).
    #[serde(default = "defaults::timestep_scale")]
    pub timestep_scale: f64,
}

/// diffusers' constructor defaults (Sana 1600M-shaped).
mod defaults {
    pub fn channels() -> usize {
        32
    }
    pub fn out_channels() -> Option<usize> {
        Some(32)
    }
    pub fn num_attention_heads() -> usize {
        70
    }
    pub fn attention_head_dim() -> usize {
        32
    }
    pub fn num_layers() -> usize {
        20
    }
    pub fn num_cross_attention_heads() -> Option<usize> {
        Some(20)
    }
    pub fn cross_attention_head_dim() -> Option<usize> {
        Some(112)
    }
    pub fn cross_attention_dim() -> Option<usize> {
        Some(2240)
    }
    pub fn caption_channels() -> usize {
        2304
    }
    pub fn mlp_ratio() -> f64 {
        2.5
    }
    pub fn sample_size() -> usize {
        32
    }
    pub fn patch_size() -> usize {
        1
    }
    pub fn norm_eps() -> f64 {
        1e-6
    }
    pub fn guidance_embeds_scale() -> f64 {
        0.1
    }
    pub fn timestep_scale() -> f64 {
        1.0
    }
}

/// The widths a validated config implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanaDims {
    /// Model width h = heads × head width.
    pub hidden: usize,
    /// Self-attention heads.
    pub heads: usize,
    /// Self-attention head width.
    pub head_dim: usize,
    /// Cross-attention heads.
    pub cross_heads: usize,
    /// Cross-attention head width.
    pub cross_head_dim: usize,
    /// Mix-FFN hidden width m (the first 1×1 conv outputs 2m channels).
    pub ffn_hidden: usize,
    /// Input latent channels.
    pub in_channels: usize,
    /// Output latent channels.
    pub out_channels: usize,
    /// Patch size p.
    pub patch: usize,
    /// Caption embedding width.
    pub caption: usize,
    /// Transformer blocks.
    pub layers: usize,
}

impl SanaConfig {
    /// Parses and validates a `config.json`. Unknown fields are refused by name.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: SanaConfig = serde_json::from_str(json).map_err(|e| Error::InvalidConfig {
            field: "config.json",
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The widths, after [`SanaConfig::validate`]'s checks.
    pub fn dims(&self) -> Result<SanaDims> {
        self.validate()?;
        Ok(self.dims_unchecked())
    }

    fn dims_unchecked(&self) -> SanaDims {
        let hidden = self.num_attention_heads * self.attention_head_dim;
        SanaDims {
            hidden,
            heads: self.num_attention_heads,
            head_dim: self.attention_head_dim,
            cross_heads: self.num_cross_attention_heads.unwrap_or(0),
            cross_head_dim: self.cross_attention_head_dim.unwrap_or(0),
            // Python's int(mlp_ratio * dim): the product in f64, truncated.
            ffn_hidden: (self.mlp_ratio * hidden as f64) as usize,
            in_channels: self.in_channels,
            out_channels: self.out_channels.unwrap_or(self.in_channels),
            patch: self.patch_size,
            caption: self.caption_channels,
            layers: self.num_layers,
        }
    }

    /// Whether q and k pass through RMSNorm across heads (SANA 1.5, Sprint).
    pub fn has_qk_norm(&self) -> bool {
        self.qk_norm.is_some()
    }

    /// Checks every field against what the forward computes; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.class_name != SANA_CLASS_NAME {
            return Err(Error::config(
                "_class_name",
                format!(
                    "is `{}`; a sana model is `{SANA_CLASS_NAME}`",
                    self.class_name
                ),
            ));
        }
        let positive = |field: &'static str, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(Error::config(
                    field,
                    format!("is {value}; it must lie in [1, {max}]"),
                ))
            } else {
                Ok(())
            }
        };
        positive("in_channels", self.in_channels, caps::MAX_HIDDEN_SIZE)?;
        if let Some(out) = self.out_channels {
            positive("out_channels", out, caps::MAX_HIDDEN_SIZE)?;
        }
        positive(
            "num_attention_heads",
            self.num_attention_heads,
            caps::MAX_HIDDEN_SIZE,
        )?;
        positive(
            "attention_head_dim",
            self.attention_head_dim,
            caps::MAX_HIDDEN_SIZE,
        )?;
        let hidden = self.num_attention_heads as u128 * self.attention_head_dim as u128;
        if hidden > caps::MAX_HIDDEN_SIZE as u128 {
            return Err(Error::config(
                "num_attention_heads",
                format!(
                    "× attention_head_dim is {hidden}; the model width must be at most {}",
                    caps::MAX_HIDDEN_SIZE
                ),
            ));
        }
        let hidden = hidden as usize;
        positive("num_layers", self.num_layers, caps::MAX_NUM_LAYERS)?;
        positive(
            "caption_channels",
            self.caption_channels,
            caps::MAX_HIDDEN_SIZE,
        )?;
        positive("patch_size", self.patch_size, caps::MAX_PATCH_SIZE)?;
        positive("sample_size", self.sample_size, caps::MAX_HIDDEN_SIZE)?;
        // diffusers' block uses `norm2` before the Mix-FFN only when it builds the
        // cross-attention, so a model without one cannot run there either.
        let Some(cross_dim) = self.cross_attention_dim else {
            return Err(Error::config(
                "cross_attention_dim",
                "is null; every SANA block has a cross-attention (diffusers cannot run one without)",
            ));
        };
        if cross_dim != hidden {
            return Err(Error::config(
                "cross_attention_dim",
                format!(
                    "is {cross_dim}; it must equal the model width num_attention_heads × attention_head_dim = {hidden}, the width of the projected captions"
                ),
            ));
        }
        let cross_heads = self.num_cross_attention_heads.ok_or_else(|| {
            Error::config(
                "num_cross_attention_heads",
                "is null; the cross-attention needs heads",
            )
        })?;
        let cross_head_dim = self.cross_attention_head_dim.ok_or_else(|| {
            Error::config(
                "cross_attention_head_dim",
                "is null; the cross-attention needs a head width",
            )
        })?;
        positive(
            "num_cross_attention_heads",
            cross_heads,
            caps::MAX_HIDDEN_SIZE,
        )?;
        positive(
            "cross_attention_head_dim",
            cross_head_dim,
            caps::MAX_HIDDEN_SIZE,
        )?;
        if cross_heads as u128 * cross_head_dim as u128 > caps::MAX_HIDDEN_SIZE as u128 {
            return Err(Error::config(
                "num_cross_attention_heads",
                format!(
                    "× cross_attention_head_dim must be at most {}",
                    caps::MAX_HIDDEN_SIZE
                ),
            ));
        }
        let ffn = self.mlp_ratio * hidden as f64;
        if !(self.mlp_ratio.is_finite() && ffn >= 1.0 && ffn <= caps::MAX_MLP_HIDDEN as f64) {
            return Err(Error::config(
                "mlp_ratio",
                format!(
                    "is {}; ⌊mlp_ratio × {hidden}⌋ must lie in [1, {}]",
                    self.mlp_ratio,
                    caps::MAX_MLP_HIDDEN
                ),
            ));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::config(
                "dropout",
                format!(
                    "is {}; it must lie in [0, 1) (inference applies none)",
                    self.dropout
                ),
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::config(
                "norm_eps",
                format!("is {}; it must be a positive number", self.norm_eps),
            ));
        }
        if let Some(scale) = self.interpolation_scale {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(Error::config(
                    "interpolation_scale",
                    format!("is {scale}; it must be a positive number or null"),
                ));
            }
            if self.sample_size < self.patch_size {
                return Err(Error::config(
                    "sample_size",
                    format!(
                        "is {}; the position embedding's base grid sample_size / patch_size = 0",
                        self.sample_size
                    ),
                ));
            }
            if !hidden.is_multiple_of(4) {
                return Err(Error::config(
                    "num_attention_heads",
                    format!(
                        "× attention_head_dim is {hidden}; the 2-D sin-cos position embedding needs a multiple of 4"
                    ),
                ));
            }
        }
        match self.qk_norm.as_deref() {
            None | Some(QK_NORM_ACROSS_HEADS) => {}
            Some(other) => {
                return Err(Error::config(
                    "qk_norm",
                    format!("is `{other}`; a SANA model has null or `{QK_NORM_ACROSS_HEADS}`"),
                ));
            }
        }
        for (field, value) in [
            ("guidance_embeds_scale", self.guidance_embeds_scale),
            ("timestep_scale", self.timestep_scale),
        ] {
            if !value.is_finite() {
                return Err(Error::config(
                    field,
                    format!("is {value}; it must be finite"),
                ));
            }
        }
        Ok(())
    }

    /// The exact number of parameters (diffusers' `numel()` total), from the tensor table.
    pub fn param_count(&self) -> Result<u64> {
        let total: u128 = super::tensors::sana_tensors(self)?
            .iter()
            .map(|spec| spec.shape.iter().map(|&d| d as u128).product::<u128>())
            .sum();
        u64::try_from(total).map_err(|_| Error::TooLarge {
            what: "param_count".to_string(),
            reason: "the config has more than 2^64 parameters".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> String {
        r#"{"_class_name": "SanaTransformer2DModel", "_diffusers_version": "0.42.1",
            "in_channels": 4, "out_channels": 4, "num_attention_heads": 2,
            "attention_head_dim": 8, "num_layers": 2, "num_cross_attention_heads": 2,
            "cross_attention_head_dim": 8, "cross_attention_dim": 16, "caption_channels": 12,
            "mlp_ratio": 2.5, "sample_size": 8, "patch_size": 1, "interpolation_scale": null}"#
            .to_string()
    }

    #[test]
    fn reads_a_diffusers_config_and_its_widths() {
        let config = SanaConfig::from_json(&tiny()).unwrap();
        let dims = config.dims().unwrap();
        assert_eq!(
            (dims.hidden, dims.ffn_hidden, dims.out_channels),
            (16, 40, 4)
        );
        assert!(!config.has_qk_norm() && !config.guidance_embeds);
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values_by_name() {
        let unknown = tiny().replace("\"mlp_ratio\"", "\"mlp_ratios\"");
        let err = SanaConfig::from_json(&unknown).unwrap_err().to_string();
        assert!(err.contains("mlp_ratios"), "{err}");
        for (from, to, field) in [
            (
                "\"interpolation_scale\": null",
                "\"qk_norm\": \"l2\"",
                "qk_norm",
            ),
            (
                "\"cross_attention_dim\": 16",
                "\"cross_attention_dim\": 24",
                "cross_attention_dim",
            ),
            ("\"num_layers\": 2", "\"num_layers\": 0", "num_layers"),
            (
                "SanaTransformer2DModel",
                "PixArtTransformer2DModel",
                "_class_name",
            ),
            ("\"mlp_ratio\": 2.5", "\"mlp_ratio\": -1.0", "mlp_ratio"),
        ] {
            let json = tiny().replace(from, to);
            assert_ne!(json, tiny(), "{from}");
            let err = SanaConfig::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
