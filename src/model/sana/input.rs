//! The inputs of one `sana` forward (SPEC §9, "Forward input") and their validation: every
//! size is checked before anything is allocated from it.

use super::config::{SanaConfig, SanaDims};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The most caption tokens a forward takes. SANA pipelines use 300; the cap keeps the
/// cross-attention's `tokens × texts` score rows small and documented.
pub const MAX_TEXT_TOKENS: usize = 4096;

/// The largest timestep accepted, before the config's `timestep_scale`: diffusers' SANA
/// schedules run over `[0, 1000]`.
pub const MAX_TIMESTEP: f32 = 1000.0;

/// Pixels per latent cell of SANA's DC-AE (the pipelines' `vae_scale_factor`): an image of
/// H × W pixels is denoised as H/32 × W/32 latents.
pub const SANA_VAE_FACTOR: usize = 32;

/// The latent side of an image side of `pixels` pixels, or an error naming `what` when it is
/// not a positive multiple of [`SANA_VAE_FACTOR`].
pub fn latent_side(what: &'static str, pixels: u64) -> Result<usize> {
    let factor = SANA_VAE_FACTOR as u64;
    if pixels == 0 || !pixels.is_multiple_of(factor) {
        return Err(Error::input(
            what,
            format!(
                "is {pixels}; it must be a positive multiple of {factor} pixels (the DC-AE's factor: latents are {what}/{factor})"
            ),
        ));
    }
    usize::try_from(pixels / factor)
        .map_err(|_| Error::input(what, format!("is {pixels}; too large for this machine")))
}

/// The inputs of a forward over `B` samples.
#[derive(Debug, Clone, Copy)]
pub struct SanaInput<'a> {
    /// Latents `[B, C, H, W]` (diffusers' `hidden_states`).
    pub x: &'a Tensor,
    /// Timesteps `[B]`.
    pub t: &'a [f32],
    /// Caption embeddings `[B, S, caption_channels]`.
    pub captions: &'a Tensor,
    /// `[B·S]`: 1 keeps a caption token, 0 drops it; `None` keeps all.
    pub mask: Option<&'a [f32]>,
    /// `[B]` guidance values for `guidance_embeds` models (what diffusers' forward receives).
    pub guidance: Option<&'a [f32]>,
}

/// The sizes of a validated forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanaShape {
    /// Samples B.
    pub batch: usize,
    /// Latent height H.
    pub height: usize,
    /// Latent width W.
    pub width: usize,
    /// Token grid rows H/p.
    pub rows: usize,
    /// Token grid columns W/p.
    pub cols: usize,
    /// Caption tokens S.
    pub texts: usize,
}

impl SanaShape {
    /// Image tokens per sample.
    pub fn tokens(&self) -> usize {
        self.rows * self.cols
    }
}

fn all_finite(name: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::NonFinite {
            name,
            detail: format!("value {i} is {}", values[i]),
        }),
        None => Ok(()),
    }
}

/// Checks `input` against `config`; the error names the input and what is wrong.
pub fn validate_sana(config: &SanaConfig, input: &SanaInput<'_>) -> Result<SanaShape> {
    let d = config.dims()?;
    let [batch, channels, height, width] = *input.x.shape() else {
        return Err(Error::input(
            "x",
            format!("has shape {:?}; expected [B, C, H, W]", input.x.shape()),
        ));
    };
    if batch == 0 || height == 0 || width == 0 {
        return Err(Error::input(
            "x",
            format!(
                "has shape {:?}; every size must be at least 1",
                input.x.shape()
            ),
        ));
    }
    if channels != d.in_channels {
        return Err(Error::input(
            "x",
            format!(
                "has {channels} channels; the model takes in_channels = {}",
                d.in_channels
            ),
        ));
    }
    if !height.is_multiple_of(d.patch) || !width.is_multiple_of(d.patch) {
        return Err(Error::input(
            "x",
            format!(
                "is {height}×{width}; both must be multiples of patch_size = {}",
                d.patch
            ),
        ));
    }
    if input.t.len() != batch {
        return Err(Error::input(
            "t",
            format!("has {} values for B = {batch}", input.t.len()),
        ));
    }
    let max_t = MAX_TIMESTEP * config.timestep_scale.max(1.0) as f32;
    if let Some(t) = input
        .t
        .iter()
        .find(|t| !(t.is_finite() && (0.0..=max_t).contains(*t)))
    {
        return Err(Error::input(
            "t",
            format!("holds {t}; timesteps lie in [0, {max_t}]"),
        ));
    }
    let [cap_batch, texts, cap_width] = *input.captions.shape() else {
        return Err(Error::input(
            "encoder_hidden_states",
            format!(
                "has shape {:?}; expected [B, S, caption_channels]",
                input.captions.shape()
            ),
        ));
    };
    if cap_batch != batch || cap_width != d.caption || texts == 0 || texts > MAX_TEXT_TOKENS {
        return Err(Error::input(
            "encoder_hidden_states",
            format!(
                "has shape {:?}; expected [{batch}, S, {}] with 1 ≤ S ≤ {MAX_TEXT_TOKENS}",
                input.captions.shape(),
                d.caption
            ),
        ));
    }
    if let Some(mask) = input.mask {
        if mask.len() != batch * texts {
            return Err(Error::input(
                "encoder_attention_mask",
                format!(
                    "has {} values; expected B × S = {batch} × {texts}",
                    mask.len()
                ),
            ));
        }
        if let Some(v) = mask.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::input(
                "encoder_attention_mask",
                format!("holds {v}; a mask entry is 1 (keep) or 0 (drop)"),
            ));
        }
    }
    match (config.guidance_embeds, input.guidance) {
        (true, None) => {
            return Err(Error::input(
                "guidance",
                "is required: the model has guidance_embeds",
            ));
        }
        (false, Some(_)) => {
            return Err(Error::input(
                "guidance",
                "is given but the model has no guidance_embeds",
            ));
        }
        (true, Some(g)) if g.len() != batch => {
            return Err(Error::input(
                "guidance",
                format!("has {} values for B = {batch}", g.len()),
            ));
        }
        (true, Some(g)) => all_finite("guidance", g)?,
        (false, None) => {}
    }
    all_finite("x", input.x.data())?;
    all_finite("encoder_hidden_states", input.captions.data())?;
    Ok(SanaShape {
        batch,
        height,
        width,
        rows: height / d.patch,
        cols: width / d.patch,
        texts,
    })
}

/// Peak host bytes of a CPU forward, exact in u128 so a hostile size is refused before any
/// allocation: per image token the stream, its norm, q/k/v, two attention outputs and the
/// Mix-FFN's 2m + m values (+ the patch features), per caption token its kept row and the
/// memo's key of it, its projection and every block's cross k/v (the text memo computes them
/// at once), per sample the modulation vectors; all f32.
pub fn sana_forward_bytes(d: &SanaDims, shape: &SanaShape) -> u128 {
    let h = d.hidden as u128;
    let cross = (d.cross_heads * d.cross_head_dim) as u128;
    let per_token = 7 * h
        + 2 * cross
        + 3 * d.ffn_hidden as u128
        + (d.in_channels * d.patch * d.patch + d.patch * d.patch * d.out_channels) as u128;
    let per_text = 2 * h + 2 * cross * (d.layers as u128 + 1) + 2 * d.caption as u128;
    let batch = shape.batch as u128;
    let values =
        batch * (shape.tokens() as u128 * per_token + shape.texts as u128 * per_text + 8 * h);
    values * 4
}
