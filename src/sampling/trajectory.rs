//! One image being denoised: its noisy tokens, where it is in its schedule, and how it is
//! conditioned. Trajectories are independent of each other, so any set of them — different
//! classes, seeds, samplers, step counts, positions in their schedules — can advance together
//! in one batched forward ([`super::batch`]).

use super::schedule::{NoiseSchedule, ScheduleKind, Spacing};
use super::solver::{self, SamplerKind, SolverMemory};
use crate::error::{Error, Result};
use crate::model::Config;
use crate::model::{Grid, unpatchify};
use crate::rng::NormalStream;
use crate::tensor::Tensor;
use std::sync::Arc;

/// How to sample: the sampler, its step count, guidance and schedule.
///
/// Start from [`SamplingParams::default`] (valid for every model) or from a model's own
/// defaults ([`crate::sampling::ModelDescription::default_sampling`]), and change fields with
/// the `with_*` methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SamplingParams {
    /// The sampler.
    pub sampler: SamplerKind,
    /// Inference steps, 1 ≤ steps ≤ num_steps.
    pub steps: usize,
    /// Classifier-free guidance scale g: ε = ε_u + g(ε_c − ε_u). 1 disables guidance (one
    /// forward per step instead of two).
    pub guidance: f32,
    /// The training noise schedule.
    pub schedule: ScheduleKind,
    /// Timestep spacing.
    pub spacing: Spacing,
    /// Clamp each step's x̂₀ to [−1, 1] (pixel-space models).
    pub clip_x0: bool,
}

impl Default for SamplingParams {
    /// 20 deterministic DDIM steps without guidance, on the linear schedule, trailing
    /// spacing, x̂₀ clipped: valid for every model, conditional or not. A model's own
    /// defaults (its schedule, guidance for class-conditional models) are
    /// [`crate::sampling::ModelDescription::default_sampling`].
    fn default() -> Self {
        SamplingParams {
            sampler: SamplerKind::Ddim { eta: 0.0 },
            steps: 20,
            guidance: 1.0,
            schedule: ScheduleKind::Linear,
            spacing: Spacing::Trailing,
            clip_x0: true,
        }
    }
}

impl SamplingParams {
    /// With `sampler`.
    pub fn with_sampler(mut self, sampler: SamplerKind) -> Self {
        self.sampler = sampler;
        self
    }

    /// With `steps` inference steps (1 ≤ steps ≤ the model's num_steps).
    pub fn with_steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// With classifier-free guidance scale `guidance` (1: none).
    pub fn with_guidance(mut self, guidance: f32) -> Self {
        self.guidance = guidance;
        self
    }

    /// With the training noise schedule `schedule`.
    pub fn with_schedule(mut self, schedule: ScheduleKind) -> Self {
        self.schedule = schedule;
        self
    }

    /// With timestep spacing `spacing`.
    pub fn with_spacing(mut self, spacing: Spacing) -> Self {
        self.spacing = spacing;
        self
    }

    /// Whether each step's x̂₀ is clamped to [−1, 1] (pixel-space models: yes).
    pub fn with_clip_x0(mut self, clip_x0: bool) -> Self {
        self.clip_x0 = clip_x0;
        self
    }
}

/// The class of each of `num` images: `class` for all of them, or — for a class-conditional
/// model given no class — classes cycling 0, 1, …, C−1, 0, … (a grid of every class).
pub fn image_classes(config: &Config, class: Option<usize>, num: usize) -> Vec<Option<usize>> {
    match (class, config.num_classes) {
        (None, Some(c)) => (0..num).map(|i| Some(i % c)).collect(),
        _ => vec![class; num],
    }
}

/// Checks that `images` images on `grid` can be denoised within the allocation budget
/// before any trajectory is built: each image holds its tokens, the solver's history and its
/// rows of the step batch (guided: twice), about 6 copies of `tokens × input_dim` f32 values.
/// Also refuses more images than noise keys can tell apart (2^32).
pub fn check_sampling_size(config: &Config, grid: Grid, images: usize) -> Result<()> {
    if u32::try_from(images).is_err() {
        return Err(Error::TooLarge {
            what: "num_images".into(),
            reason: format!("{images} images; at most 2^32 images per request"),
        });
    }
    let per_image = crate::limits::bytes_of(&[grid.tokens(), config.input_dim, 6], 4);
    crate::limits::check_alloc(
        &format!("{images} images of {grid} tokens"),
        per_image.saturating_mul(images as u128),
    )
}

/// The schedule and timesteps shared by the trajectories of one request.
#[derive(Debug)]
pub struct SamplingPlan {
    params: SamplingParams,
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
}

impl SamplingPlan {
    /// Validates `params` against `config` and precomputes the timesteps.
    pub fn new(config: &Config, params: &SamplingParams) -> Result<Arc<Self>> {
        if !params.guidance.is_finite() || params.guidance < 0.0 {
            return Err(Error::input(
                "guidance",
                format!("is {}; it must be a finite number ≥ 0", params.guidance),
            ));
        }
        if params.guidance != 1.0 && config.num_classes.is_none() {
            return Err(Error::input(
                "guidance",
                format!(
                    "is {} but the model is unconditional; classifier-free guidance needs a class-conditional model (use guidance 1)",
                    params.guidance
                ),
            ));
        }
        if let SamplerKind::Ddim { eta } = params.sampler
            && !(0.0..=1.0).contains(&eta)
        {
            return Err(Error::input(
                "eta",
                format!("is {eta}; it must lie in [0, 1]"),
            ));
        }
        let schedule = NoiseSchedule::new(params.schedule, config.num_steps)?;
        let timesteps = schedule.timesteps(params.steps, params.spacing)?;
        Ok(Arc::new(SamplingPlan {
            params: params.clone(),
            schedule,
            timesteps,
        }))
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }
}

/// One trajectory per entry of `classes` (`None`: unconditional), at pure noise, image `i`
/// seeded by (`seed`, `i`): the images of one request, whatever else runs beside them.
pub fn request_trajectories(
    config: &Config,
    plan: &Arc<SamplingPlan>,
    classes: &[Option<usize>],
    seed: u64,
    grid: Grid,
) -> Result<Vec<Trajectory>> {
    classes
        .iter()
        .enumerate()
        .map(|(i, &class)| {
            let key = NoiseKey {
                seed,
                image: i as u32,
            };
            Trajectory::new(config, plan.clone(), class, key, grid)
        })
        .collect()
}

/// Where a trajectory's noise comes from: its request's seed and its index in the request.
/// The noise of step k at position p is a pure function of (seed, image, k, p).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey {
    /// The request's seed.
    pub seed: u64,
    /// The image's index within its request.
    pub image: u32,
}

impl NoiseKey {
    /// Fills `out` with the standard normal noise of `step` (0 = the initial x_T).
    pub(crate) fn fill(&self, step: u32, out: &mut [f32]) {
        NormalStream::new(self.seed, (u64::from(self.image) << 32) | u64::from(step)).fill(0, out);
    }
}

/// One image being denoised.
#[derive(Debug, Clone)]
pub struct Trajectory {
    plan: Arc<SamplingPlan>,
    x: Vec<f32>,
    step: usize,
    label: Option<i64>,
    null_label: Option<i64>,
    noise: NoiseKey,
    memory: SolverMemory,
    grid: Grid,
    input_dim: usize,
    channels: usize,
    patch: usize,
}

impl Trajectory {
    /// A fresh trajectory at pure noise. `class` is the label to generate (`None`: the
    /// unconditional / null class); `grid` the token grid of the image.
    pub fn new(
        config: &Config,
        plan: Arc<SamplingPlan>,
        class: Option<usize>,
        noise: NoiseKey,
        grid: Grid,
    ) -> Result<Self> {
        let null_label = config.num_classes.map(|c| c as i64);
        let label = match (class, config.num_classes) {
            (Some(k), Some(c)) if k < c => Some(k as i64),
            (Some(k), Some(c)) => {
                return Err(Error::input(
                    "class",
                    format!("is {k}; the model has classes 0..{}", c - 1),
                ));
            }
            (Some(_), None) => {
                return Err(Error::input(
                    "class",
                    "was given but the model is unconditional",
                ));
            }
            (None, Some(c)) => {
                if plan.params.guidance != 1.0 {
                    return Err(Error::input(
                        "class",
                        "is required for classifier-free guidance (guidance ≠ 1)",
                    ));
                }
                Some(c as i64)
            }
            (None, None) => None,
        };
        let p2 = config.patch_size * config.patch_size;
        if !config.input_dim.is_multiple_of(p2) {
            return Err(Error::input(
                "image",
                format!(
                    "input_dim {} is not channels × patch_size² (patch {})",
                    config.input_dim, config.patch_size
                ),
            ));
        }
        let mut x = vec![0.0f32; grid.tokens() * config.input_dim];
        noise.fill(0, &mut x);
        Ok(Trajectory {
            plan,
            x,
            step: 0,
            label,
            null_label,
            noise,
            memory: SolverMemory::default(),
            grid,
            input_dim: config.input_dim,
            channels: config.input_dim / p2,
            patch: config.patch_size,
        })
    }

    /// Whether every step has run.
    pub fn is_done(&self) -> bool {
        self.step >= self.plan.timesteps.len()
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Total steps of this trajectory.
    pub fn steps_total(&self) -> usize {
        self.plan.timesteps.len()
    }

    /// The timestep the next forward evaluates.
    pub fn timestep(&self) -> f32 {
        self.plan.timesteps[self.step.min(self.plan.timesteps.len() - 1)] as f32
    }

    /// Whether the next step needs the unconditional prediction too (guidance ≠ 1).
    pub fn is_guided(&self) -> bool {
        self.plan.params.guidance != 1.0
    }

    /// The label of the conditional forward (`None` for unconditional models).
    pub fn label(&self) -> Option<i64> {
        self.label
    }

    /// The null label of the unconditional forward (class-conditional models).
    pub fn null_label(&self) -> Option<i64> {
        self.null_label
    }

    /// The current noisy tokens `[N, D]`.
    pub fn tokens(&self) -> &[f32] {
        &self.x
    }

    /// The token grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Advances one step from the model's conditional prediction and, when guided, its
    /// unconditional one.
    pub fn advance(&mut self, eps_cond: &[f32], eps_uncond: Option<&[f32]>) -> Result<()> {
        if self.is_done() {
            return Err(Error::input("trajectory", "is already finished"));
        }
        let g = self.plan.params.guidance;
        let eps: Vec<f32> = match eps_uncond {
            Some(uncond) => uncond
                .iter()
                .zip(eps_cond)
                .map(|(&u, &c)| u + g * (c - u))
                .collect(),
            None => eps_cond.to_vec(),
        };
        let t = self.plan.timesteps[self.step];
        let s = self.plan.timesteps.get(self.step + 1).copied();
        let (noise, step) = (self.noise, self.step as u32 + 1);
        solver::step(
            self.plan.params.sampler,
            &self.plan.schedule,
            t,
            s,
            &mut self.x,
            &eps,
            &mut self.memory,
            self.plan.params.clip_x0,
            |z| noise.fill(step, z),
        );
        self.step += 1;
        Ok(())
    }

    /// The image `[C, H, W]`, clamped to [−1, 1].
    pub fn image(&self) -> Result<Tensor> {
        let tokens = Tensor::new(
            vec![1, self.grid.tokens(), self.input_dim],
            self.x.iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
        )?;
        let image = unpatchify(&tokens, self.patch, self.channels, self.grid)?;
        let shape = image.shape()[1..].to_vec();
        Tensor::new(shape, image.into_data())
    }
}
