//! Batched timestep evaluation: any set of trajectories advances one step with one forward
//! per token count, each sample carrying its own timestep and label, the conditional and
//! unconditional halves of classifier-free guidance in the same forward.

use super::trajectory::{
    SamplingParams, SamplingPlan, Trajectory, check_sampling_size, request_trajectories,
};
use crate::error::{Error, Result};
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

    /// Appends every unfinished trajectory of `trajectories`, in order.
    pub fn extend<'t>(&mut self, trajectories: impl IntoIterator<Item = &'t Trajectory>) {
        for trajectory in trajectories.into_iter().filter(|t| !t.is_done()) {
            self.push(trajectory);
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

/// Groups `items` by the token grid `grid_of` gives them, one group per distinct grid —
/// one forward each — in grid order (rows, then columns); a group keeps its items' order.
pub fn group_by_grid<T>(
    items: impl IntoIterator<Item = T>,
    grid_of: impl Fn(&T) -> Grid,
) -> Vec<(Grid, Vec<T>)> {
    let mut groups: BTreeMap<(usize, usize), Vec<T>> = BTreeMap::new();
    for item in items {
        let grid = grid_of(&item);
        groups.entry((grid.rows, grid.cols)).or_default().push(item);
    }
    groups
        .into_iter()
        .map(|((rows, cols), members)| (Grid::new(rows, cols), members))
        .collect()
}

/// The ε `[rows, N, D]` of a [`StepBatch`], handed back to the trajectories that were pushed,
/// in the order they were pushed: each takes its conditional row and, when guided, its
/// unconditional one.
pub struct StepEps<'a> {
    rows: std::slice::ChunksExact<'a, f32>,
}

impl<'a> StepEps<'a> {
    /// The rows of `eps`.
    pub fn new(eps: &'a Tensor) -> Self {
        let width = eps.shape().iter().skip(1).product::<usize>();
        StepEps {
            rows: eps.data().chunks_exact(width.max(1)),
        }
    }

    /// Advances `trajectory` by its next rows; an error when ε has fewer rows than the batch.
    pub fn advance(&mut self, trajectory: &mut Trajectory) -> Result<()> {
        match next_rows(&mut self.rows, trajectory.is_guided()) {
            Some((cond, uncond)) => trajectory.advance(cond, uncond),
            None => Err(Error::input("eps", "has fewer rows than the step batch")),
        }
    }

    /// Advances every unfinished trajectory of `trajectories` (the ones
    /// [`StepBatch::extend`] pushed), each whatever the others do; returns the first error.
    pub fn advance_unfinished<'t>(
        &mut self,
        trajectories: impl IntoIterator<Item = &'t mut Trajectory>,
    ) -> Result<()> {
        let mut failure = None;
        for trajectory in trajectories.into_iter().filter(|t| !t.is_done()) {
            if let Err(e) = self.advance(trajectory) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The next conditional row of `rows` and, when `guided`, the unconditional row after it;
/// `None` when a row is missing.
pub(crate) fn next_rows<'a>(
    rows: &mut std::slice::ChunksExact<'a, f32>,
    guided: bool,
) -> Option<(&'a [f32], Option<&'a [f32]>)> {
    let cond = rows.next()?;
    match guided {
        true => rows.next().map(|uncond| (cond, Some(uncond))),
        false => Some((cond, None)),
    }
}

/// Advances every unfinished trajectory by one step: one forward per distinct grid.
pub fn step_all(model: &Model, trajectories: &mut [&mut Trajectory]) -> Result<()> {
    let unfinished = (0..trajectories.len()).filter(|&i| !trajectories[i].is_done());
    for (grid, members) in group_by_grid(unfinished, |&i| trajectories[i].grid()) {
        let mut batch = StepBatch::default();
        batch.extend(members.iter().map(|&i| &*trajectories[i]));
        let eps = batch.run(model, grid)?;
        let mut eps = StepEps::new(&eps);
        for &i in &members {
            eps.advance(trajectories[i])?;
        }
    }
    Ok(())
}

/// `[n, C, H, W]`: the images of finished `trajectories`, in order.
pub fn stack_images(trajectories: &[Trajectory]) -> Result<Tensor> {
    let mut data = Vec::new();
    let mut shape = vec![trajectories.len()];
    for tr in trajectories {
        let image = tr.image()?;
        if shape.len() == 1 {
            shape.extend_from_slice(image.shape());
        }
        data.extend_from_slice(image.data());
    }
    Tensor::new(shape, data)
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
    let mut trajectories = request_trajectories(config, &plan, classes, seed, grid)?;
    let total = params.steps;
    for done in 0..total {
        let mut refs: Vec<&mut Trajectory> = trajectories.iter_mut().collect();
        step_all(model, &mut refs)?;
        on_step(done + 1, total);
    }
    stack_images(&trajectories)
}
