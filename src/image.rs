//! Writing samples as a PNG grid a person can look at: values in [−1, 1] mapped to 0–255,
//! each image upscaled (nearest neighbour) and separated by a 2-pixel gutter.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::path::Path;

/// The largest width or height of a PNG image (the format stores 31-bit sizes).
const PNG_MAX_SIDE: usize = (1 << 31) - 1;

/// The upscaling that makes images at least 64 pixels tall.
pub fn default_scale(height: usize) -> usize {
    64usize.div_ceil(height.max(1)).max(1)
}

/// Grid columns for `n` samples: one row per cycle through `cycled_classes` classes, else 8.
pub fn default_columns(n: usize, cycled_classes: Option<usize>) -> usize {
    cycled_classes.unwrap_or(8).clamp(1, n.max(1))
}

/// Writes the grid of [`png_grid_bytes`] to `path`.
pub fn write_png_grid(path: &Path, images: &Tensor, columns: usize, scale: usize) -> Result<()> {
    let bytes = png_grid_bytes(images, columns, scale)?;
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Lays out `images` (`[n, C, H, W]`, C = 1 grey or 3 RGB; other C show channel 0) in a grid
/// of `columns` columns, each pixel `scale`×`scale`; returns the PNG file's bytes.
pub fn png_grid_bytes(images: &Tensor, columns: usize, scale: usize) -> Result<Vec<u8>> {
    let &[n, c, h, w] = images.shape() else {
        return Err(Error::input(
            "images",
            format!("must be [n, C, H, W]; got {:?}", images.shape()),
        ));
    };
    if n == 0 || c == 0 || columns == 0 || scale == 0 {
        return Err(Error::input("images", "nothing to draw"));
    }
    let color = c == 3;
    let channels = if color { 3 } else { 1 };
    let gutter = 2;
    let cols = columns.min(n);
    let rows = n.div_ceil(cols);
    // Sizes from the caller (image size, count, scale): checked before anything is allocated.
    let side = |cells: usize, pixels: usize| -> Option<usize> {
        cells
            .checked_mul(pixels.checked_mul(scale)?.checked_add(gutter)?)?
            .checked_add(gutter)
            .filter(|&side| side <= PNG_MAX_SIDE)
    };
    let (Some(width), Some(height)) = (side(cols, w), side(rows, h)) else {
        return Err(Error::TooLarge {
            what: "the PNG grid".into(),
            reason: format!(
                "{rows}×{cols} images of {h}×{w} pixels at scale {scale} exceed the PNG limit of {PNG_MAX_SIDE} pixels a side"
            ),
        });
    };
    crate::limits::check_alloc(
        "the PNG grid",
        crate::limits::bytes_of(&[width, height, channels], 1),
    )?;
    let (cell_w, cell_h) = (w * scale + gutter, h * scale + gutter);
    let mut pixels = vec![32u8; width * height * channels];
    let data = images.data();
    for i in 0..n {
        let (gx, gy) = (gutter + (i % cols) * cell_w, gutter + (i / cols) * cell_h);
        for y in 0..h * scale {
            for x in 0..w * scale {
                for ch in 0..channels {
                    let v = data[((i * c + ch) * h + y / scale) * w + x / scale];
                    let byte = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                    pixels[((gy + y) * width + gx + x) * channels + ch] = byte;
                }
            }
        }
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(if color {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    encoder.set_depth(png::BitDepth::Eight);
    let encode_error =
        |e: png::EncodingError| Error::input("images", format!("cannot encode PNG: {e}"));
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer.write_image_data(&pixels).map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(bytes)
}
