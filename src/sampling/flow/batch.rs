//! Batched steps of `sana` trajectories: every trajectory of one latent size advances with
//! one forward, each row carrying its own timestep, captions and guidance value; the
//! prompt and negative rows of classifier-free guidance share the forward. Captions of
//! different lengths are padded to the longest with masked tokens, which changes nothing:
//! a masked token's −10000 bias makes its softmax weight exactly 0 in f32 (a caption that
//! keeps no token is refused when it is built, see [`Caption::new`]).

use super::caption::Caption;
use super::params::{FlowParams, FlowPlan};
use super::trajectory::{FlowNoise, SanaTrajectory};
use crate::error::{Error, Result};
use crate::model::sana::SanaInput;
use crate::runtime::SanaModel;
use crate::sampling::NoiseKey;
use crate::sampling::batch::next_rows;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rows one step of a set of same-size trajectories sends through the model.
#[derive(Default)]
pub struct SanaStepBatch<'c> {
    x: Vec<f32>,
    t: Vec<f32>,
    guidance: Vec<f32>,
    captions: Vec<&'c Caption>,
}

impl<'c> SanaStepBatch<'c> {
    /// Appends a trajectory's prompt row and, when guided, its negative row.
    pub fn push(&mut self, trajectory: &'c SanaTrajectory) {
        let rows = std::iter::once(trajectory.prompt()).chain(trajectory.negative());
        for caption in rows {
            trajectory.push_model_input(&mut self.x);
            self.t.push(trajectory.model_timestep());
            self.guidance.extend(trajectory.embedded_guidance());
            self.captions.push(caption);
        }
    }

    /// Forward rows a trajectory needs per step.
    pub fn rows_of(trajectory: &SanaTrajectory) -> usize {
        1 + usize::from(trajectory.is_guided())
    }

    /// Rows so far.
    pub fn rows(&self) -> usize {
        self.captions.len()
    }

    /// Runs the rows, all of latent size `(height, width)`, through `forward`; returns the
    /// model output `[rows, C_out, H, W]`.
    pub fn run_with<E: From<Error>>(
        self,
        channels: usize,
        (height, width): (usize, usize),
        forward: impl FnOnce(&SanaInput<'_>) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<Tensor, E> {
        let rows = self.rows();
        let texts = self.captions.iter().map(|c| c.tokens()).max().unwrap_or(0);
        let width_c = self.captions.first().map_or(0, |c| c.embeds().shape()[1]);
        crate::limits::check_alloc(
            "the step's caption rows",
            crate::limits::bytes_of(&[rows, texts, width_c + 1], 4),
        )?;
        let mut embeds = vec![0.0f32; rows * texts * width_c];
        let mut mask = vec![0.0f32; rows * texts];
        for (r, caption) in self.captions.iter().enumerate() {
            let n = caption.tokens();
            embeds[r * texts * width_c..][..n * width_c].copy_from_slice(caption.embeds().data());
            mask[r * texts..][..n].copy_from_slice(caption.mask());
        }
        let x = Tensor::new(vec![rows, channels, height, width], self.x)?;
        let captions = Tensor::new(vec![rows, texts, width_c], embeds)?;
        forward(&SanaInput {
            x: &x,
            t: &self.t,
            captions: &captions,
            mask: Some(&mask),
            guidance: (!self.guidance.is_empty()).then_some(self.guidance.as_slice()),
        })
    }
}

/// The output `[rows, C_out, H, W]` of a [`SanaStepBatch`], handed back to the trajectories
/// pushed, in the order they were pushed: each takes its prompt row and, when guided, its
/// negative row.
pub struct SanaStepRows<'a> {
    rows: std::slice::ChunksExact<'a, f32>,
}

impl<'a> SanaStepRows<'a> {
    /// The rows of `v`.
    pub fn new(v: &'a Tensor) -> Self {
        let width = v.shape().iter().skip(1).product::<usize>();
        SanaStepRows {
            rows: v.data().chunks_exact(width.max(1)),
        }
    }

    /// Advances `trajectory` by its next rows; an error when `v` has fewer rows than the
    /// batch.
    pub fn advance(&mut self, trajectory: &mut SanaTrajectory) -> Result<()> {
        match next_rows(&mut self.rows, trajectory.is_guided()) {
            Some((cond, uncond)) => trajectory.advance(cond, uncond),
            None => Err(Error::input("v", "has fewer rows than the step batch")),
        }
    }
}

/// Advances every unfinished trajectory by one step: one forward per latent size, in size
/// order.
pub fn step_all_sana(model: &SanaModel, trajectories: &mut [&mut SanaTrajectory]) -> Result<()> {
    let channels = model.config().in_channels;
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, trajectory) in trajectories.iter().enumerate() {
        if !trajectory.is_done() {
            groups.entry(trajectory.size()).or_default().push(i);
        }
    }
    for (size, members) in groups {
        let mut batch = SanaStepBatch::default();
        for &i in &members {
            batch.push(&*trajectories[i]);
        }
        let v = batch.run_with(channels, size, |input| model.forward(input))?;
        let mut rows = SanaStepRows::new(&v);
        for &i in &members {
            rows.advance(trajectories[i])?;
        }
    }
    Ok(())
}

/// The latents `[n, C, H, W]` of finished trajectories, in order.
pub fn stack_latents(trajectories: &[SanaTrajectory]) -> Result<Tensor> {
    let mut data = Vec::new();
    let mut shape = vec![trajectories.len()];
    for trajectory in trajectories {
        let latents = trajectory.latents()?;
        if shape.len() == 1 {
            shape.extend_from_slice(latents.shape());
        }
        data.extend_from_slice(latents.data());
    }
    Tensor::new(shape, data)
}

/// What one `sana` sampling request asks for.
#[derive(Debug, Clone)]
pub struct SanaRequest {
    /// The prompt's captions.
    pub prompt: Arc<Caption>,
    /// The negative prompt's captions (classifier-free guidance).
    pub negative: Option<Arc<Caption>>,
    /// Latent height H (pixels / the VAE's factor, 32 for DC-AE).
    pub height: usize,
    /// Latent width W.
    pub width: usize,
    /// Images.
    pub images: usize,
    /// Seed of image i's noise: (seed, i).
    pub seed: u64,
}

/// The trajectories of `request` under `plan`, image i seeded by (seed, i).
pub fn request_sana_trajectories(
    plan: &Arc<FlowPlan>,
    request: &SanaRequest,
) -> Result<Vec<SanaTrajectory>> {
    let images =
        u32::try_from(request.images).map_err(|_| Error::input("num_images", "is past 2^32"))?;
    (0..images)
        .map(|image| {
            let key = NoiseKey {
                seed: request.seed,
                image,
            };
            SanaTrajectory::new(
                plan.clone(),
                request.prompt.clone(),
                request.negative.clone(),
                FlowNoise::Seeded(key),
                request.height,
                request.width,
            )
        })
        .collect()
}

/// Samples `request` on `model`: latents `[images, C, H, W]`. `on_step(done, total)`
/// reports progress.
pub fn sample_sana(
    model: &SanaModel,
    params: &FlowParams,
    request: &SanaRequest,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let plan = FlowPlan::new(model.config(), params)?;
    let mut trajectories = request_sana_trajectories(&plan, request)?;
    run_to_end(model, &mut trajectories, &mut on_step)?;
    stack_latents(&trajectories)
}

/// Steps `trajectories` until every one is done.
pub fn run_to_end(
    model: &SanaModel,
    trajectories: &mut [SanaTrajectory],
    on_step: &mut impl FnMut(usize, usize),
) -> Result<()> {
    let total = trajectories
        .iter()
        .map(|t| t.steps_total())
        .max()
        .unwrap_or(0);
    for done in 0..total {
        let mut refs: Vec<&mut SanaTrajectory> = trajectories.iter_mut().collect();
        step_all_sana(model, &mut refs)?;
        on_step(done + 1, total);
    }
    Ok(())
}
