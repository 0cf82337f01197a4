//! One `sana` image being denoised by a flow-matching sampler: its latents, where it is in
//! its schedule, its captions and where its noise comes from. Like the ε-prediction
//! trajectories, any set of them — different samplers, step counts, resolutions, captions —
//! advances together ([`super::batch`]).

use super::caption::Caption;
use super::kind::FlowSamplerKind;
use super::params::{FlowPlan, SCM_SIGMA_DATA};
use super::solver::{self, FlowSolverMemory};
use crate::error::{Error, Result};
use crate::sampling::NoiseKey;
use crate::tensor::Tensor;
use std::sync::Arc;

/// Where a trajectory's noise comes from: the initial latents (draw 0) and, for scm, the
/// fresh noise of each step k ≥ 1.
#[derive(Debug, Clone)]
pub enum FlowNoise {
    /// Drawn from the request's seed: a pure function of (seed, image, draw, position).
    Seeded(NoiseKey),
    /// Given draws, each `[C, H, W]` (e.g. the noise diffusers drew, to reproduce its run).
    Given(Arc<Vec<Vec<f32>>>),
}

impl FlowNoise {
    fn fill(&self, draw: usize, out: &mut [f32]) -> Result<()> {
        match self {
            FlowNoise::Seeded(key) => {
                let draw = u32::try_from(draw)
                    .map_err(|_| Error::input("noise", format!("draw {draw} is past 2^32")))?;
                key.fill(draw, out);
                Ok(())
            }
            FlowNoise::Given(draws) => match draws.get(draw) {
                Some(d) if d.len() == out.len() => {
                    out.copy_from_slice(d);
                    Ok(())
                }
                Some(d) => Err(Error::input(
                    "noise",
                    format!(
                        "draw {draw} has {} values; the latents have {}",
                        d.len(),
                        out.len()
                    ),
                )),
                None => Err(Error::input(
                    "noise",
                    format!("has {} draws; step needs draw {draw}", draws.len()),
                )),
            },
        }
    }
}

/// One image being denoised.
#[derive(Debug, Clone)]
pub struct SanaTrajectory {
    plan: Arc<FlowPlan>,
    /// `[C, H, W]`.
    x: Vec<f32>,
    /// The last x̂₀ (scm returns it as the result).
    denoised: Option<Vec<f32>>,
    step: usize,
    memory: FlowSolverMemory,
    noise: FlowNoise,
    prompt: Arc<Caption>,
    negative: Option<Arc<Caption>>,
    height: usize,
    width: usize,
}

impl SanaTrajectory {
    /// A trajectory at pure noise on a `height × width` latent grid. `negative` is required
    /// when the plan is guided (and refused otherwise).
    pub fn new(
        plan: Arc<FlowPlan>,
        prompt: Arc<Caption>,
        negative: Option<Arc<Caption>>,
        noise: FlowNoise,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        match (plan.is_guided(), negative.is_some()) {
            (true, false) => {
                return Err(Error::input(
                    "negative_embeds",
                    format!(
                        "are required: guidance {} > 1 is classifier-free guidance against the negative captions",
                        plan.params().guidance
                    ),
                ));
            }
            (false, true) => {
                return Err(Error::input(
                    "negative_embeds",
                    "were given but the request is not guided (guidance ≤ 1, or a guidance_embeds model)",
                ));
            }
            _ => {}
        }
        let len = crate::limits::checked_product("latents", &[plan.in_channels(), height, width])?;
        crate::limits::check_alloc("the latents", crate::limits::bytes_of(&[len, 4], 4))?;
        let mut x = vec![0.0f32; len];
        noise.fill(0, &mut x)?;
        if plan.params().sampler == FlowSamplerKind::Scm {
            x.iter_mut().for_each(|v| *v *= SCM_SIGMA_DATA);
        }
        Ok(SanaTrajectory {
            plan,
            x,
            denoised: None,
            step: 0,
            memory: FlowSolverMemory::default(),
            noise,
            prompt,
            negative,
            height,
            width,
        })
    }

    /// Whether every step has run.
    pub fn is_done(&self) -> bool {
        self.step >= self.plan.schedule().steps()
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Steps in all.
    pub fn steps_total(&self) -> usize {
        self.plan.schedule().steps()
    }

    /// Whether the next step also runs the negative captions.
    pub fn is_guided(&self) -> bool {
        self.plan.is_guided()
    }

    /// The latent size (H, W).
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// The captions of the conditional row.
    pub fn prompt(&self) -> &Caption {
        &self.prompt
    }

    /// The captions of the unconditional row (guided only).
    pub fn negative(&self) -> Option<&Caption> {
        self.negative.as_deref()
    }

    /// The timestep the transformer gets for the next step.
    pub fn model_timestep(&self) -> f32 {
        self.plan
            .model_timestep(self.step.min(self.steps_total() - 1))
    }

    /// The guidance value the model embeds (`guidance_embeds` models).
    pub fn embedded_guidance(&self) -> Option<f32> {
        self.plan.embedded_guidance()
    }

    /// scm's √(t² + (1 − t)²) at the next step: the model input's scale.
    fn scm_scale(&self) -> f32 {
        let t = self.model_timestep();
        (t * t + (1.0 - t) * (1.0 - t)).sqrt()
    }

    /// The latents the transformer sees at the next step, appended to `out`: the latents
    /// themselves, or for scm x / σ_d · √(t² + (1 − t)²) as `SanaSprintPipeline` feeds them.
    pub fn push_model_input(&self, out: &mut Vec<f32>) {
        match self.plan.params().sampler {
            FlowSamplerKind::Scm => {
                let scale = self.scm_scale() / SCM_SIGMA_DATA;
                out.extend(self.x.iter().map(|v| v * scale));
            }
            _ => out.extend_from_slice(&self.x),
        }
    }

    /// Advances one step from the model's output for the prompt row and, when guided, the
    /// negative row (each `[C_out, H, W]`).
    pub fn advance(&mut self, v_cond: &[f32], v_uncond: Option<&[f32]>) -> Result<()> {
        if self.is_done() {
            return Err(Error::input("trajectory", "is already finished"));
        }
        let len = self.x.len();
        let out_len = len / self.plan.in_channels() * self.plan.out_channels();
        if v_cond.len() != out_len || v_uncond.is_some_and(|u| u.len() != out_len) {
            return Err(Error::input(
                "v",
                format!("a row has the wrong size; expected {out_len} values"),
            ));
        }
        // A learned-sigma model's output is [velocity; sigma]: keep the velocity.
        let (v_cond, v_uncond) = (&v_cond[..len], v_uncond.map(|u| &u[..len]));
        let g = self.plan.params().guidance;
        let mut v: Vec<f32> = match v_uncond {
            Some(u) => u
                .iter()
                .zip(v_cond)
                .map(|(&u, &c)| u + g * (c - u))
                .collect(),
            None => v_cond.to_vec(),
        };
        let sigmas = self.plan.schedule().sigmas();
        let i = self.step;
        match self.plan.params().sampler {
            FlowSamplerKind::Euler => solver::euler_step(sigmas[i], sigmas[i + 1], &mut self.x, &v),
            FlowSamplerKind::DpmPp2m => {
                solver::dpmpp2m_step(sigmas, i, &mut self.x, &v, &mut self.memory)
            }
            FlowSamplerKind::Scm => {
                // The pipeline's conversion of the model output to the trigflow F.
                let t = self.model_timestep();
                let scale = self.scm_scale();
                let input_scale = scale / SCM_SIGMA_DATA;
                let (a, b) = (1.0 - 2.0 * t, 1.0 - 2.0 * t + 2.0 * t * t);
                for (f, &x) in v.iter_mut().zip(&self.x) {
                    *f = (a * (x * input_scale) + b * *f) / scale * SCM_SIGMA_DATA;
                }
                let mut draw = Ok(());
                let x0 = solver::scm_step(
                    sigmas[i],
                    sigmas[i + 1],
                    SCM_SIGMA_DATA,
                    &mut self.x,
                    &v,
                    |z| draw = self.noise.fill(i + 1, z),
                );
                draw?;
                self.denoised = Some(x0);
            }
        }
        self.step += 1;
        Ok(())
    }

    /// The final latents `[C, H, W]` (scm: its last x̂₀ / σ_d, as `SanaSprintPipeline`
    /// returns them).
    pub fn latents(&self) -> Result<Tensor> {
        let shape = vec![self.plan.in_channels(), self.height, self.width];
        match &self.denoised {
            Some(x0) => Tensor::new(shape, x0.iter().map(|v| v / SCM_SIGMA_DATA).collect()),
            None => Tensor::new(shape, self.x.clone()),
        }
    }
}
