//! How a `sana` model is sampled: the sampler, steps, guidance and shift, checked against the
//! model once per request ([`FlowPlan`]).

use super::kind::FlowSamplerKind;
use super::schedule::{DEFAULT_FLOW_SHIFT, FlowSchedule};
use crate::error::{Error, Result};
use crate::model::sana::SanaConfig;
use std::sync::Arc;

/// The guidance scale of the SANA pipelines (`guidance_scale`): classifier-free guidance
/// for Sana / SANA 1.5, the embedded guidance value for SANA-Sprint.
pub const DEFAULT_SANA_GUIDANCE: f32 = 4.5;

/// SCM's `sigma_data`: the data scale of trigflow.
pub const SCM_SIGMA_DATA: f32 = 0.5;

/// The sampling parameters of a `sana` request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlowParams {
    /// The sampler.
    pub sampler: FlowSamplerKind,
    /// Steps, 1 ≤ steps ≤ 1000.
    pub steps: usize,
    /// For models without `guidance_embeds`: the classifier-free guidance scale g,
    /// v = v_neg + g (v_pos − v_neg), applied when g > 1 as `SanaPipeline` does (otherwise
    /// one forward per step, no negative captions). For SANA-Sprint
    /// (`guidance_embeds`): the guidance value the model embeds (times the config's
    /// `guidance_embeds_scale`, as `SanaSprintPipeline` passes it).
    pub guidance: f32,
    /// The shift of the flow sigmas (`flow_shift`; scm has none).
    pub shift: f64,
}

impl Default for FlowParams {
    /// 20 steps of flow-dpmpp2m, guidance 4.5, shift 3: `SanaPipeline`'s defaults.
    fn default() -> Self {
        FlowParams {
            sampler: FlowSamplerKind::DpmPp2m,
            steps: 20,
            guidance: DEFAULT_SANA_GUIDANCE,
            shift: DEFAULT_FLOW_SHIFT,
        }
    }
}

impl FlowParams {
    /// The defaults for `config`: SANA-Sprint (`guidance_embeds`) samples with 2 steps of
    /// scm, the others as [`FlowParams::default`].
    pub fn for_model(config: &SanaConfig) -> Self {
        match config.guidance_embeds {
            true => FlowParams::default()
                .with_sampler(FlowSamplerKind::Scm)
                .with_steps(2),
            false => FlowParams::default(),
        }
    }

    /// With `sampler`.
    pub fn with_sampler(mut self, sampler: FlowSamplerKind) -> Self {
        self.sampler = sampler;
        self
    }

    /// With `steps` steps.
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// With guidance `guidance` (see [`FlowParams::guidance`]).
    pub fn with_guidance(mut self, guidance: f32) -> Self {
        self.guidance = guidance;
        self
    }

    /// With flow shift `shift`.
    pub fn with_shift(mut self, shift: f64) -> Self {
        self.shift = shift;
        self
    }
}

/// What every trajectory of one request shares: its parameters, schedule and the model
/// facts the loop needs, checked once.
#[derive(Debug)]
pub struct FlowPlan {
    params: FlowParams,
    schedule: FlowSchedule,
    timestep_scale: f32,
    /// `Some(g · guidance_embeds_scale)` for `guidance_embeds` models.
    embedded_guidance: Option<f32>,
    in_channels: usize,
    out_channels: usize,
}

impl FlowPlan {
    /// Checks `params` against `config` and builds the schedule.
    pub fn new(config: &SanaConfig, params: &FlowParams) -> Result<Arc<Self>> {
        let dims = config.dims()?;
        let g = params.guidance;
        if !(g.is_finite() && (0.0..=100.0).contains(&g)) {
            return Err(Error::input(
                "guidance",
                format!("is {g}; it must be a finite number in [0, 100]"),
            ));
        }
        match (params.sampler, config.guidance_embeds) {
            (FlowSamplerKind::Scm, false) => {
                return Err(Error::input(
                    "sampler",
                    "scm samples SANA-Sprint models (guidance_embeds); this model has none: use flow-dpmpp2m or flow-euler",
                ));
            }
            (FlowSamplerKind::Scm, true) if params.steps > 4 => {
                return Err(Error::input(
                    "steps",
                    format!(
                        "is {}; SANA-Sprint's scm sampler takes 1 to 4 steps",
                        params.steps
                    ),
                ));
            }
            _ => {}
        }
        if dims.out_channels != dims.in_channels && dims.out_channels != 2 * dims.in_channels {
            return Err(Error::input(
                "weights",
                format!(
                    "out_channels {} is neither in_channels {} nor twice it (learned sigma): the model's output is not a velocity of its latents",
                    dims.out_channels, dims.in_channels
                ),
            ));
        }
        let schedule = FlowSchedule::new(params.sampler, params.steps, params.shift)?;
        Ok(Arc::new(FlowPlan {
            params: params.clone(),
            schedule,
            timestep_scale: config.timestep_scale as f32,
            embedded_guidance: config
                .guidance_embeds
                .then_some(g * config.guidance_embeds_scale as f32),
            in_channels: dims.in_channels,
            out_channels: dims.out_channels,
        }))
    }

    /// The parameters.
    pub fn params(&self) -> &FlowParams {
        &self.params
    }

    /// The schedule.
    pub fn schedule(&self) -> &FlowSchedule {
        &self.schedule
    }

    /// Whether each step runs the negative captions too (classifier-free guidance).
    pub fn is_guided(&self) -> bool {
        self.embedded_guidance.is_none() && self.params.guidance > 1.0
    }

    /// The guidance value the model embeds (`guidance_embeds` models).
    pub fn embedded_guidance(&self) -> Option<f32> {
        self.embedded_guidance
    }

    /// The timestep the transformer gets at `step`: scm's t as is, the flow samplers'
    /// timestep times `timestep_scale` (as `SanaPipeline` passes it).
    pub fn model_timestep(&self, step: usize) -> f32 {
        let t = self.schedule.timesteps()[step];
        match self.params.sampler {
            FlowSamplerKind::Scm => t,
            _ => t * self.timestep_scale,
        }
    }

    /// Latent channels C.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels of the model (C, or 2C with a learned sigma whose second half is
    /// dropped).
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
}
