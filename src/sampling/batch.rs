//! Batched timestep evaluation: any set of trajectories advances one step with one forward
//! per token count, each sample carrying its own timestep and label, the conditional and
//! unconditional halves of classifier-free guidance in the same forward.

use super::trajectory::{NoiseKey, SamplingParams, SamplingPlan, Trajectory, check_sampling_size};
use crate::error::Result;
use crate::model::{Grid, Input};
use crate::runtime::Model;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// The rows one step of a set of trajectories sends through the model.
#[derive(Debug, Default)]
pub struct StepBatch {
    x: Vec<f32>,
    t: Vec<f32>,
    y: Vec<i64>,
    rows: usize,
}

impl StepBatch {
    /// Appends a trajectory's conditional row and, when guided, its unconditional row.
    pub fn push(&mut self, trajectory: &Trajectory) {
        let mut row = |label: Option<i64>| {
            self.x.extend_from_slice(trajectory.tokens());
            self.t.push(trajectory.timestep());
            if let Some(label) = label {
                self.y.push(label);
            }
            self.rows += 1;
        };
        row(trajectory.label());
        if trajectory.is_guided() {
            row(trajectory.null_label());
        }
    }

    /// Forward rows a trajectory needs per step.
    pub fn rows_of(trajectory: &Trajectory) -> usize {
        1 + usize::from(trajectory.is_guided())
    }

    /// Number of rows so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Runs the batch through `model`; returns ε `[rows, N, D]` (row-major).
    pub fn run(self, model: &Model, grid: Grid) -> Result<Tensor> {
        self.run_with(grid, |input| model.forward(input))
    }

    /// Runs the batch through `forward` (e.g. a model's forward behind a panic guard).
    pub fn run_with<E: From<crate::Error>>(
        self,
        grid: Grid,
        forward: impl FnOnce(&Input<'_>) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<Tensor, E> {
        let d = self
            .x
            .len()
            .checked_div(self.rows.saturating_mul(grid.tokens()))
            .unwrap_or(0);
        let x = Tensor::new(vec![self.rows, grid.tokens(), d], self.x)?;
        let y = (!self.y.is_empty()).then_some(self.y.as_slice());
        forward(&Input {
            x: &x,
            t: &self.t,
            y,
            grid: Some(grid),
        })
    }
}

/// Advances every unfinished trajectory by one step: one forward per distinct grid.
pub fn step_all(model: &Model, trajectories: &mut [&mut Trajectory]) -> Result<()> {
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, tr) in trajectories.iter().enumerate() {
        if !tr.is_done() {
            groups
                .entry((tr.grid().rows, tr.grid().cols))
                .or_default()
                .push(i);
        }
    }
    for ((rows, cols), members) in groups {
        let mut batch = StepBatch::default();
        for &i in &members {
            batch.push(trajectories[i]);
        }
        let eps = batch.run(model, Grid::new(rows, cols))?;
        let width = eps.data().len() / eps.shape()[0];
        let mut offset = 0;
        for &i in &members {
            let tr = &mut *trajectories[i];
            let cond = &eps.data()[offset * width..(offset + 1) * width];
            let uncond = tr
                .is_guided()
                .then(|| &eps.data()[(offset + 1) * width..(offset + 2) * width]);
            offset += StepBatch::rows_of(tr);
            tr.advance(cond, uncond)?;
        }
    }
    Ok(())
}

/// Generates one image per entry of `classes` (`None`: unconditional), image `i` seeded by
/// (`seed`, `i`); returns `[n, C, H, W]` in [−1, 1]. `on_step(done, total)` reports progress.
pub fn sample(
    model: &Model,
    params: &SamplingParams,
    classes: &[Option<usize>],
    seed: u64,
    grid: Grid,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let config = model.config();
    let plan = SamplingPlan::new(config, params)?;
    check_sampling_size(config, grid, classes.len())?;
    let mut trajectories = classes
        .iter()
        .enumerate()
        .map(|(i, &class)| {
            let key = NoiseKey {
                seed,
                image: i as u32,
            };
            Trajectory::new(config, plan.clone(), class, key, grid)
        })
        .collect::<Result<Vec<_>>>()?;
    let total = params.steps;
    for done in 0..total {
        let mut refs: Vec<&mut Trajectory> = trajectories.iter_mut().collect();
        step_all(model, &mut refs)?;
        on_step(done + 1, total);
    }
    let mut data = Vec::new();
    let mut shape = vec![trajectories.len()];
    for tr in &trajectories {
        let image = tr.image()?;
        if shape.len() == 1 {
            shape.extend_from_slice(image.shape());
        }
        data.extend_from_slice(image.data());
    }
    Tensor::new(shape, data)
}
