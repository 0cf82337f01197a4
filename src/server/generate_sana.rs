//! `POST /v1/generate` for a `sana` model: latents from caption embeddings.
//!
//! The captions come as the SANA pipelines' `encode_prompt` returns them, in a safetensors
//! file sent base64-encoded: `prompt_embeds` (F32, BF16 or F16 `[S, caption_channels]` or
//! `[1, S, caption_channels]`) and optionally `prompt_attention_mask` (I64 or float `[S]` or
//! `[1, S]`). A negative-captions file holds the same two names — it is the file
//! `linear-dit sample --negative-embeds` reads — so one encoder script writes both. The
//! answer is a safetensors body `latents` F32 `[n, C, height/32, width/32]`: decoding them
//! to pixels needs the DC-AE, which is not built, so `format: png` is refused.

use crate::engine::SanaGenerateRequest;
use crate::model::sana::{SANA_VAE_FACTOR, SanaConfig, latent_side};
use crate::sampling::flow::{Caption, FlowParams, FlowSamplerKind};
use crate::tensor_file::TensorFile;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Fields of the DiT body that mean nothing to a `sana` model.
const DIT_FIELDS: [&str; 2] = ["class_label", "eta"];

/// Fields of this body that mean nothing to a DiT.
pub const SANA_FIELDS: [&str; 5] = [
    "prompt_embeds",
    "negative_embeds",
    "height",
    "width",
    "flow_shift",
];

/// The request body. Defaults are [`FlowParams::for_model`]'s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanaGenerateBody {
    /// Base64 of a safetensors file: `prompt_embeds` and optional `prompt_attention_mask`.
    pub prompt_embeds: Option<String>,
    /// Base64 of a safetensors file of the same two names: the negative captions, required
    /// for classifier-free guidance (guidance_scale > 1 on a model without
    /// `guidance_embeds`).
    pub negative_embeds: Option<String>,
    /// Image height in pixels, a multiple of 32 [the model's `sample_size` × 32].
    pub height: Option<u64>,
    /// Image width in pixels, a multiple of 32 [the model's `sample_size` × 32].
    pub width: Option<u64>,
    /// Inference steps [20; scm 2].
    pub num_steps: Option<usize>,
    /// `flow-dpmpp2m` | `flow-euler` | `scm` [flow-dpmpp2m; scm for `guidance_embeds`].
    pub sampler: Option<String>,
    /// Classifier-free guidance, or SANA-Sprint's embedded guidance (default 4.5).
    pub guidance_scale: Option<f32>,
    /// Shift of the flow sigmas (default 3).
    pub flow_shift: Option<f64>,
    /// Noise seed (default 0).
    pub seed: Option<u64>,
    /// Images (default 1).
    pub num_images: Option<usize>,
    /// `safetensors` [safetensors]; `png` is refused (no DC-AE decoder).
    pub format: Option<String>,
    /// Give up after this many milliseconds (HTTP 504).
    pub deadline_ms: Option<u64>,
    /// Answer with server-sent events [false].
    pub stream: Option<bool>,
}

/// Decodes a `/v1/generate` body for the `sana` model `config` describes; returns the
/// engine request and whether to stream. Every malformed body is an `Err` with the message
/// for a 400, naming the field.
pub fn decode_sana_generate_request(
    body: &[u8],
    config: &SanaConfig,
) -> Result<(SanaGenerateRequest, bool), String> {
    let body: SanaGenerateBody = serde_json::from_slice(body).map_err(|e| {
        foreign_field(body, &DIT_FIELDS, "DiT", "a sana")
            .unwrap_or_else(|| format!("malformed JSON body: {e}"))
    })?;
    match body.format.as_deref().unwrap_or("safetensors") {
        "safetensors" => {}
        "png" => {
            return Err(
                "`format` png is not available for sana models: decoding latents to pixels needs the DC-AE, which is not built; ask for safetensors (the default: `latents` [n, C, height/32, width/32])"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "unknown format `{other}` (a sana model answers safetensors)"
            ));
        }
    }
    let prompt = match &body.prompt_embeds {
        Some(text) => caption(config, "prompt_embeds", text)?,
        None => {
            return Err(
                "missing field `prompt_embeds` (base64 of a safetensors file holding `prompt_embeds` [S, caption_channels])"
                    .into(),
            );
        }
    };
    let negative = match &body.negative_embeds {
        Some(text) => Some(caption(config, "negative_embeds", text)?),
        None => None,
    };
    let default_side = (config.sample_size as u64).saturating_mul(SANA_VAE_FACTOR as u64);
    let side = |what, pixels: Option<u64>| {
        latent_side(what, pixels.unwrap_or(default_side)).map_err(|e| e.to_string())
    };
    let (height, width) = (side("height", body.height)?, side("width", body.width)?);
    let mut params = FlowParams::for_model(config);
    if let Some(name) = &body.sampler {
        let sampler: FlowSamplerKind = name.parse().map_err(|e| format!("`sampler`: {e}"))?;
        // A sampler chosen without steps takes its own default (scm: 2).
        if body.num_steps.is_none() && sampler != params.sampler {
            params = params.with_steps(match sampler {
                FlowSamplerKind::Scm => 2,
                _ => FlowParams::default().steps,
            });
        }
        params = params.with_sampler(sampler);
    }
    if let Some(steps) = body.num_steps {
        params = params.with_steps(steps);
    }
    if let Some(guidance) = body.guidance_scale {
        params = params.with_guidance(guidance);
    }
    if let Some(shift) = body.flow_shift {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(format!(
                "`flow_shift` is {shift}; it must be a finite number > 0"
            ));
        }
        params = params.with_shift(shift);
    }
    let mut request = SanaGenerateRequest::new(prompt, height, width)
        .with_num_images(body.num_images.unwrap_or(1))
        .with_seed(body.seed.unwrap_or(0))
        .with_params(params);
    if let Some(negative) = negative {
        request = request.with_negative(negative);
    }
    if let Some(ms) = body.deadline_ms {
        request = request.with_deadline(Duration::from_millis(ms));
    }
    Ok((request, body.stream.unwrap_or(false)))
}

/// When `body` is a JSON object holding one of `fields` (the other flavor's), the refusal
/// that names it.
pub fn foreign_field(body: &[u8], fields: &[&str], owner: &str, served: &str) -> Option<String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    let field = fields.iter().find(|f| object.contains_key(**f))?;
    Some(format!(
        "field `{field}` belongs to {owner} models; this server serves {served} model"
    ))
}

/// The captions of the base64 safetensors file `text` of field `field`.
fn caption(config: &SanaConfig, field: &'static str, text: &str) -> Result<Arc<Caption>, String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("`{field}` is not valid base64: {e}"))?;
    let file = TensorFile::from_bytes(field, &bytes)
        .map_err(|e| format!("`{field}` is not a safetensors file: {e}"))?;
    drop(bytes);
    let caption = Caption::from_file(config, &file, field).map_err(|e| e.to_string())?;
    Ok(Arc::new(caption))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_multiples_of_the_vae_factor() {
        assert_eq!(latent_side("height", 256).unwrap(), 8);
        for bad in [0, 31, 33] {
            let e = latent_side("width", bad).unwrap_err().to_string();
            assert!(e.contains("`width`") && e.contains("multiple of 32"), "{e}");
        }
    }

    #[test]
    fn foreign_fields_are_named() {
        let e = foreign_field(br#"{"class_label": 3}"#, &DIT_FIELDS, "DiT", "a sana").unwrap();
        assert!(e.contains("`class_label`") && e.contains("DiT"), "{e}");
        assert!(foreign_field(br#"{"seed": 3}"#, &DIT_FIELDS, "DiT", "a sana").is_none());
        assert!(foreign_field(b"not json", &DIT_FIELDS, "DiT", "a sana").is_none());
    }
}
