//! What one generate request denoises, for either flavor the engine serves: the
//! ε-prediction trajectories of a DiT on one token grid, or the flow-matching trajectories
//! of a `sana` model on one latent size. The worker's loop is the same for both; only how
//! a group of same-size trajectories becomes one forward, and how its output is handed
//! back, differ — and live here.

use super::request::EngineError;
use crate::error::Result;
use crate::model::Grid;
use crate::runtime::{Model, SanaModel};
use crate::sampling::flow::{SanaStepBatch, SanaStepRows, SanaTrajectory, stack_latents};
use crate::sampling::{StepBatch, StepEps, Trajectory, stack_images};
use crate::tensor::Tensor;

/// The trajectories of one request.
pub enum Work {
    /// A DiT request: every image on `grid`.
    Dit {
        /// The token grid of its images.
        grid: Grid,
        /// One trajectory per image.
        trajectories: Vec<Trajectory>,
    },
    /// A `sana` request: every image on one latent size.
    Sana {
        /// One trajectory per image.
        trajectories: Vec<SanaTrajectory>,
    },
}

/// Which requests share a forward: those of one token grid (DiT), or of one latent size
/// (`sana`, whose captions of different lengths are padded with masked tokens). Ordered as
/// the forwards run: by rows, then columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKey {
    /// A DiT token grid (rows, cols).
    Grid(usize, usize),
    /// A `sana` latent size (H, W).
    Latent(usize, usize),
}

impl Work {
    /// The forward this request's next step joins.
    pub fn group(&self) -> GroupKey {
        match self {
            Work::Dit { grid, .. } => GroupKey::Grid(grid.rows, grid.cols),
            Work::Sana { trajectories } => {
                let (h, w) = trajectories.first().map_or((0, 0), |t| t.size());
                GroupKey::Latent(h, w)
            }
        }
    }

    /// Steps every image has finished.
    pub fn steps_done(&self) -> usize {
        match self {
            Work::Dit { trajectories, .. } => trajectories.iter().map(Trajectory::steps_done).min(),
            Work::Sana { trajectories } => trajectories.iter().map(|t| t.steps_done()).min(),
        }
        .unwrap_or(0)
    }

    /// Steps the longest image takes.
    pub fn steps_total(&self) -> usize {
        match self {
            Work::Dit { trajectories, .. } => {
                trajectories.iter().map(Trajectory::steps_total).max()
            }
            Work::Sana { trajectories } => trajectories.iter().map(|t| t.steps_total()).max(),
        }
        .unwrap_or(0)
    }

    /// Whether every image is done.
    pub fn is_done(&self) -> bool {
        match self {
            Work::Dit { trajectories, .. } => trajectories.iter().all(|t| t.is_done()),
            Work::Sana { trajectories } => trajectories.iter().all(|t| t.is_done()),
        }
    }

    /// The finished request's answer: images `[n, C, H, W]` (DiT) or latents (`sana`).
    pub fn outputs(&self) -> Result<Tensor> {
        match self {
            Work::Dit { trajectories, .. } => stack_images(trajectories),
            Work::Sana { trajectories } => stack_latents(trajectories),
        }
    }

    /// Advances the unfinished trajectories by their rows of the group's output.
    pub fn advance(&mut self, rows: &mut GroupRows<'_>) -> Result<()> {
        match (self, rows) {
            (Work::Dit { trajectories, .. }, GroupRows::Dit(eps)) => {
                eps.advance_unfinished(trajectories)
            }
            (Work::Sana { trajectories }, GroupRows::Sana(v)) => {
                let mut failure = None;
                for trajectory in trajectories.iter_mut().filter(|t| !t.is_done()) {
                    // The rows are taken even when advancing fails, so the requests after
                    // this one still get theirs.
                    if let Err(e) = v.advance(trajectory) {
                        failure.get_or_insert(e);
                    }
                }
                failure.map_or(Ok(()), Err)
            }
            _ => Err(crate::Error::input(
                "work",
                "a request joined a forward of the other flavor (a bug in the engine)",
            )),
        }
    }
}

/// The served model, as the worker runs it.
#[derive(Clone)]
pub enum Served {
    /// A DiT on its backend.
    Dit(std::sync::Arc<Model>),
    /// A `sana` model (CPU).
    Sana(std::sync::Arc<SanaModel>),
}

/// The rows one group sends through the model.
pub enum GroupBatch<'a> {
    /// DiT rows on one grid.
    Dit(StepBatch, Grid),
    /// `sana` rows of one latent size.
    Sana(SanaStepBatch<'a>, (usize, usize)),
}

impl<'a> GroupBatch<'a> {
    /// The rows of every unfinished trajectory of `works`, which share `key`.
    pub fn new(key: GroupKey, works: impl IntoIterator<Item = &'a Work>) -> Self {
        match key {
            GroupKey::Grid(rows, cols) => {
                let mut batch = StepBatch::default();
                for work in works {
                    if let Work::Dit { trajectories, .. } = work {
                        batch.extend(trajectories);
                    }
                }
                GroupBatch::Dit(batch, Grid::new(rows, cols))
            }
            GroupKey::Latent(h, w) => {
                let mut batch = SanaStepBatch::default();
                for work in works {
                    if let Work::Sana { trajectories } = work {
                        for trajectory in trajectories.iter().filter(|t| !t.is_done()) {
                            batch.push(trajectory);
                        }
                    }
                }
                GroupBatch::Sana(batch, (h, w))
            }
        }
    }

    /// Rows in the forward.
    pub fn rows(&self) -> usize {
        match self {
            GroupBatch::Dit(batch, _) => batch.rows(),
            GroupBatch::Sana(batch, _) => batch.rows(),
        }
    }

    /// Runs the forward through `guard` (the worker's panic guard), on `model`.
    pub fn run(
        self,
        model: &Served,
        guard: impl FnOnce(&dyn Fn() -> Result<Tensor>) -> Result<Tensor, EngineError>,
    ) -> Result<Tensor, EngineError> {
        match (self, model) {
            (GroupBatch::Dit(batch, grid), Served::Dit(model)) => {
                batch.run_with(grid, |input| guard(&|| model.forward(input)))
            }
            (GroupBatch::Sana(batch, size), Served::Sana(model)) => {
                let channels = model.config().in_channels;
                batch.run_with(channels, size, |input| guard(&|| model.forward(input)))
            }
            _ => Err(EngineError::Failed(
                "a request of one flavor reached a model of the other (a bug in the engine)".into(),
            )),
        }
    }
}

/// A group's output, handed back to its requests in the order they were batched.
pub enum GroupRows<'a> {
    /// DiT ε rows.
    Dit(StepEps<'a>),
    /// `sana` velocity rows.
    Sana(SanaStepRows<'a>),
}

impl<'a> GroupRows<'a> {
    /// The rows of `out`, the output of a forward of `key`'s group.
    pub fn new(key: GroupKey, out: &'a Tensor) -> Self {
        match key {
            GroupKey::Grid(..) => GroupRows::Dit(StepEps::new(out)),
            GroupKey::Latent(..) => GroupRows::Sana(SanaStepRows::new(out)),
        }
    }
}
