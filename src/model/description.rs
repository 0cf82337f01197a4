//! What a caller needs to know to sample a model, in one place: the image a sample is (its
//! token grid, channels, patch and pixel size), the training schedule, the classes, and the
//! sampling defaults. The CLI, the server, the engine and embedders read it here instead of
//! each re-deriving it from the config and the weights file's metadata.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::Grid;
use crate::sampling::metadata::{IMAGE_KEY, image_grid, pixel_grid, schedule_of};
use crate::sampling::{SamplingParams, ScheduleKind};
use crate::weights::Weights;

/// Classifier-free guidance scale of a class-conditional model's default sampling: good
/// digits from the demo model.
pub const DEFAULT_GUIDANCE: f32 = 4.0;

/// A model as its samplers see it.
///
/// ```
/// use linear_dit::model::ModelDescription;
/// use linear_dit::{Config, Grid};
/// let config = Config { num_classes: Some(10), ..Config::new(4) };
/// let description = ModelDescription::of(&config).with_grid(Grid::new(8, 8));
/// assert_eq!(description.image_size(), Some((16, 16)));
/// assert_eq!(description.channels(), Some(1));
/// assert_eq!(description.default_sampling().guidance, 4.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    input_dim: usize,
    patch_size: usize,
    num_steps: usize,
    num_classes: Option<usize>,
    schedule: ScheduleKind,
    grid: ImageGrid,
}

/// Where the default token grid comes from.
#[derive(Debug, Clone, PartialEq)]
enum ImageGrid {
    /// Known (the weights' metadata, or given).
    Known(Grid),
    /// Unknown: why, in the words of [`ModelDescription::default_grid`]'s error.
    Unknown(String),
}

impl ModelDescription {
    /// The description of a model of `config` alone: the linear schedule, and no default
    /// grid (give one with [`Self::with_grid`] or [`Self::with_image_size`]).
    pub fn of(config: &Config) -> Self {
        ModelDescription {
            input_dim: config.input_dim,
            patch_size: config.patch_size,
            num_steps: config.num_steps,
            num_classes: config.num_classes,
            schedule: ScheduleKind::Linear,
            grid: ImageGrid::Unknown(format!(
                "size is unknown: the model's description has no image size (the weights' \
                 `{IMAGE_KEY}` metadata); give it as HxW"
            )),
        }
    }

    /// The description of a trained model: its config, the image size of the weights'
    /// `linear_dit.image` metadata and the schedule of their `linear_dit.schedule` metadata
    /// (absent: linear). Malformed schedule metadata is an error here; missing or malformed
    /// image metadata only when the default grid is asked for, since a given size
    /// ([`Self::with_image_size`]) replaces it.
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        let mut description = ModelDescription::of(weights.config());
        description.schedule = schedule_of(weights)?;
        description.grid = match image_grid(weights, None) {
            Ok(grid) => ImageGrid::Known(grid),
            Err(e) => ImageGrid::Unknown(match e {
                Error::InvalidInput { reason, .. } => reason,
                other => other.to_string(),
            }),
        };
        Ok(description)
    }

    /// With samples of `grid` tokens by default.
    pub fn with_grid(mut self, grid: Grid) -> Self {
        self.grid = ImageGrid::Known(grid);
        self
    }

    /// With samples of `height × width` pixels by default: an error unless both are positive
    /// multiples of the patch size.
    pub fn with_image_size(self, height: usize, width: usize) -> Result<Self> {
        let grid = pixel_grid(height, width, self.patch_size)?;
        Ok(self.with_grid(grid))
    }

    /// With the training noise schedule `schedule`.
    pub fn with_schedule(mut self, schedule: ScheduleKind) -> Self {
        self.schedule = schedule;
        self
    }

    /// The token grid of a sample, when known.
    pub fn grid(&self) -> Option<Grid> {
        match &self.grid {
            ImageGrid::Known(grid) => Some(*grid),
            ImageGrid::Unknown(_) => None,
        }
    }

    /// The token grid of a sample, or why it is unknown.
    pub fn default_grid(&self) -> Result<Grid> {
        match &self.grid {
            ImageGrid::Known(grid) => Ok(*grid),
            ImageGrid::Unknown(reason) => Err(Error::input("image", reason.clone())),
        }
    }

    /// Image channels C = input_dim / patch_size²; `None` when input_dim is not a multiple of
    /// patch_size² (the model's tokens are then no image patches).
    pub fn channels(&self) -> Option<usize> {
        let p2 = self.patch_size.checked_mul(self.patch_size)?;
        self.input_dim
            .checked_div(p2)
            .filter(|_| self.input_dim.is_multiple_of(p2))
    }

    /// Patch size p, in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch_size
    }

    /// A sample's size (height, width) in pixels, when its grid is known.
    pub fn image_size(&self) -> Option<(usize, usize)> {
        let grid = self.grid()?;
        Some((
            grid.rows.checked_mul(self.patch_size)?,
            grid.cols.checked_mul(self.patch_size)?,
        ))
    }

    /// Diffusion steps of the training schedule; sampling takes at most this many.
    pub fn num_steps(&self) -> usize {
        self.num_steps
    }

    /// The training noise schedule.
    pub fn schedule(&self) -> ScheduleKind {
        self.schedule
    }

    /// Whether samples are conditioned on a class label.
    pub fn is_class_conditional(&self) -> bool {
        self.num_classes.is_some()
    }

    /// Number of classes C (labels 0 … C−1); `None` for an unconditional model.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// How to sample this model by default: [`SamplingParams::default`] on the model's
    /// schedule, with guidance [`DEFAULT_GUIDANCE`] when the model is class-conditional
    /// (an unconditional model has no guidance).
    pub fn default_sampling(&self) -> SamplingParams {
        let guidance = if self.is_class_conditional() {
            DEFAULT_GUIDANCE
        } else {
            1.0
        };
        SamplingParams::default()
            .with_schedule(self.schedule)
            .with_guidance(guidance)
    }
}
