//! What a trained model's weights file says about sampling it, beyond the model config:
//! the image shape (`linear_dit.image`, e.g. `1x16x16 [-1,1]`) and the training noise
//! schedule (`linear_dit.schedule`, e.g. `linear 1e-4 0.02 1000`).

use super::schedule::ScheduleKind;
use crate::error::{Error, Result};
use crate::model::Grid;
use crate::weights::Weights;

/// Metadata key of the image shape `CxHxW`.
pub const IMAGE_KEY: &str = "linear_dit.image";
/// Metadata key of the noise schedule.
pub const SCHEDULE_KEY: &str = "linear_dit.schedule";

/// The token grid of `height × width`-pixel images for `weights`' patch size; `None` size:
/// read it from the `linear_dit.image` metadata.
pub fn image_grid(weights: &Weights, size: Option<(usize, usize)>) -> Result<Grid> {
    let (height, width) = match (size, weights.metadata().get(IMAGE_KEY)) {
        (Some(size), _) => size,
        (None, Some(text)) => parse_image_shape(text).ok_or_else(|| {
            Error::input(
                "image",
                format!("metadata `{IMAGE_KEY}` = `{text}` is not CxHxW"),
            )
        })?,
        (None, None) => {
            return Err(Error::input(
                "image",
                format!(
                    "size is unknown: the weights have no `{IMAGE_KEY}` metadata; give it as HxW"
                ),
            ));
        }
    };
    pixel_grid(height, width, weights.config().patch_size)
}

/// The token grid of `height × width`-pixel images cut in `patch × patch` patches: an error
/// unless both are positive multiples of the patch size.
pub fn pixel_grid(height: usize, width: usize, patch: usize) -> Result<Grid> {
    if height == 0 || width == 0 || !height.is_multiple_of(patch) || !width.is_multiple_of(patch) {
        return Err(Error::input(
            "image",
            format!("size {height}x{width} is not a positive multiple of patch_size {patch}"),
        ));
    }
    Ok(Grid::new(height / patch, width / patch))
}

/// The schedule named in the metadata (its first word), or `Linear` when absent.
pub fn schedule_of(weights: &Weights) -> Result<ScheduleKind> {
    match weights.metadata().get(SCHEDULE_KEY) {
        None => Ok(ScheduleKind::Linear),
        Some(text) => text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e: crate::error::ParseError| {
                Error::input("schedule", format!("metadata `{SCHEDULE_KEY}`: {e}"))
            }),
    }
}

/// `CxHxW …` → (H, W).
fn parse_image_shape(text: &str) -> Option<(usize, usize)> {
    let first = text.split_whitespace().next()?;
    let dims: Vec<usize> = first
        .split(['x', 'X'])
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    match dims.as_slice() {
        [_, h, w] if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}
