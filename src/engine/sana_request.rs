//! What callers ask of an engine that serves a `sana` model: latents sampled from captions
//! ([`SanaGenerateRequest`]), or one raw forward ([`SanaForward`]).

use crate::sampling::flow::{Caption, FlowParams, SanaRequest};
use crate::tensor::Tensor;
use std::sync::Arc;
use std::time::Duration;

/// A request for `num_images` latents of one size from one caption.
///
/// Image `i` is seeded by (`seed`, `i`), as [`crate::sampling::flow::sample_sana`] seeds
/// it, so the result equals a solo run whatever else the engine is running.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SanaGenerateRequest {
    /// The prompt's captions.
    pub prompt: Arc<Caption>,
    /// The negative prompt's captions: required for classifier-free guidance (guidance > 1
    /// on a model without `guidance_embeds`), refused otherwise.
    pub negative: Option<Arc<Caption>>,
    /// Latent height H (pixels / 32 for DC-AE).
    pub height: usize,
    /// Latent width W.
    pub width: usize,
    /// Images (default 1).
    pub num_images: usize,
    /// Noise seed (default 0).
    pub seed: u64,
    /// Sampler, steps, guidance, shift; `None`: [`FlowParams::for_model`].
    pub params: Option<FlowParams>,
    /// Give up (HTTP 504) if not done within this time of submission; `None`: the engine's
    /// default.
    pub deadline: Option<Duration>,
}

impl SanaGenerateRequest {
    /// One image of `height × width` latents for `prompt`, seed 0, the model's sampling
    /// defaults and no negative captions.
    pub fn new(prompt: Arc<Caption>, height: usize, width: usize) -> Self {
        SanaGenerateRequest {
            prompt,
            negative: None,
            height,
            width,
            num_images: 1,
            seed: 0,
            params: None,
            deadline: None,
        }
    }

    /// With negative captions `negative` (classifier-free guidance).
    pub fn with_negative(mut self, negative: Arc<Caption>) -> Self {
        self.negative = Some(negative);
        self
    }

    /// With `num_images` images.
    pub fn with_num_images(mut self, num_images: usize) -> Self {
        self.num_images = num_images;
        self
    }

    /// With noise seed `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With sampling parameters `params` instead of the model's defaults.
    pub fn with_params(mut self, params: FlowParams) -> Self {
        self.params = Some(params);
        self
    }

    /// Giving up after `deadline` from submission.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The request as [`crate::sampling::flow::sample_sana`] takes it.
    pub fn sampling_request(&self) -> SanaRequest {
        SanaRequest {
            prompt: self.prompt.clone(),
            negative: self.negative.clone(),
            height: self.height,
            width: self.width,
            images: self.num_images,
            seed: self.seed,
        }
    }
}

/// One raw `sana` forward, as [`crate::SanaModel::forward`] takes it, with owned inputs.
#[derive(Debug, Clone)]
pub struct SanaForward {
    /// Latents `[B, C, H, W]`.
    pub x: Tensor,
    /// Timesteps `[B]`.
    pub t: Vec<f32>,
    /// Caption embeddings `[B, S, caption_channels]`.
    pub captions: Tensor,
    /// `[B·S]` mask (1 keeps a caption token, 0 drops it); `None` keeps all.
    pub mask: Option<Vec<f32>>,
    /// `[B]` guidance values (`guidance_embeds` models).
    pub guidance: Option<Vec<f32>>,
}

impl SanaForward {
    /// The borrowed input.
    pub fn input(&self) -> crate::model::sana::SanaInput<'_> {
        crate::model::sana::SanaInput {
            x: &self.x,
            t: &self.t,
            captions: &self.captions,
            mask: self.mask.as_deref(),
            guidance: self.guidance.as_deref(),
        }
    }
}
