//! What a caller needs to know to sample a model, in one place: the image a sample is (its
//! token grid, channels, patch and pixel size), the training schedule, the classes, and the
//! sampling defaults. The CLI, the server, the engine and embedders read it here instead of
//! each re-deriving it from the config and the weights file's metadata.

use super::metadata::{IMAGE_KEY, image_grid, pixel_grid, schedule_of};
use super::{SamplingParams, ScheduleKind};
use crate::error::{Error, Result};
use crate::model::{Config, Grid};
use crate::weights::Weights;

/// Classifier-free guidance scale of a class-conditional model's default sampling: good
/// digits from the demo model.
pub const DEFAULT_GUIDANCE: f32 = 4.0;

/// A model as its samplers see it.
///
/// ```
/// use linear_dit::sampling::ModelDescription;
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
                "size is unknown: nothing describes this model's images (no `{IMAGE_KEY}` \
                 metadata, no size given); give the size as HxW or the token grid"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConfigOverrides;
    use crate::sampling::metadata::SCHEDULE_KEY;
    use crate::sampling::{SamplerKind, SamplingPlan};
    use crate::tensor_file::{TensorFile, serialize_tensors};
    use crate::weights::{CONFIG_METADATA_KEY, InitKind};
    use std::collections::HashMap;

    fn config(classes: Option<usize>) -> Config {
        Config {
            hidden_size: 32,
            num_layers: 1,
            num_heads: 4,
            num_classes: classes,
            ..Config::new(4)
        }
    }

    /// A model's default sampling is valid for it, conditional or not; the plain default is
    /// valid for both.
    #[test]
    fn defaults_are_valid_for_the_model_they_describe() {
        for classes in [None, Some(10)] {
            let config = config(classes);
            let defaults = ModelDescription::of(&config).default_sampling();
            assert_eq!(defaults.guidance != 1.0, classes.is_some());
            assert_eq!(defaults.sampler, SamplerKind::Ddim { eta: 0.0 });
            assert_eq!(defaults.steps, 20);
            SamplingPlan::new(&config, &defaults).unwrap();
            SamplingPlan::new(&config, &SamplingParams::default()).unwrap();
        }
    }

    #[test]
    fn the_grid_comes_from_the_image_metadata_or_a_given_size() {
        let config = config(Some(10));
        let weights = Weights::init(&config, InitKind::Random, 0).unwrap();
        let plain = ModelDescription::from_weights(&weights).unwrap();
        assert_eq!(plain.grid(), None);
        let e = plain.default_grid().unwrap_err().to_string();
        assert!(e.contains("size is unknown"), "{e}");
        let sized = plain.clone().with_image_size(16, 8).unwrap();
        assert_eq!(sized.grid(), Some(Grid::new(8, 4)));
        assert_eq!(sized.image_size(), Some((16, 8)));
        assert!(plain.with_image_size(15, 8).is_err());

        let tensors: Vec<_> = weights.tensors().clone().into_iter().collect();
        let metadata = HashMap::from([
            (CONFIG_METADATA_KEY.to_string(), config.to_json()),
            (IMAGE_KEY.to_string(), "1x12x20 [-1,1]".to_string()),
            (SCHEDULE_KEY.to_string(), "cosine".to_string()),
        ]);
        let bytes = serialize_tensors(&tensors, metadata).unwrap();
        let file = TensorFile::from_bytes("described.safetensors", &bytes).unwrap();
        let trained = Weights::from_file(&file, &ConfigOverrides::default()).unwrap();
        let described = ModelDescription::from_weights(&trained).unwrap();
        assert_eq!(described.grid(), Some(Grid::new(6, 10)));
        assert_eq!(described.schedule(), ScheduleKind::Cosine);
        assert_eq!(described.default_sampling().schedule, ScheduleKind::Cosine);
        assert_eq!(described.channels(), Some(1));
        assert_eq!(described.num_classes(), Some(10));
        assert_eq!(described.num_steps(), 1000);
    }
}
