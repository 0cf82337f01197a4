//! The patch layout of the `sana` flavor, shared by every backend: a `[C, H, W]` latent as
//! `[tokens, C·p·p]` patch features (the patch conv as a GEMM), and the output projection's
//! `[tokens, p·p·C_out]` rows back to `[C_out, H, W]` (diffusers' unpatchify). Both are
//! host-side reshuffles of the input and the output.

use super::SanaShape;

/// The `[tokens, C·p·p]` patch features of one `[C, H, W]` latent, in the conv weight's
/// (channel, patch row, patch column) order, tokens row-major over the grid.
pub fn patch_features(x: &[f32], channels: usize, shape: SanaShape, p: usize) -> Vec<f32> {
    let width = channels * p * p;
    let mut out = vec![0.0f32; shape.tokens() * width];
    for (token, row) in out.chunks_mut(width).enumerate() {
        let (i, j) = (token / shape.cols, token % shape.cols);
        for c in 0..channels {
            for di in 0..p {
                for dj in 0..p {
                    row[(c * p + di) * p + dj] =
                        x[(c * shape.height + i * p + di) * shape.width + j * p + dj];
                }
            }
        }
    }
    out
}

/// `[tokens, p·p·C]` (feature order patch row, patch column, channel: diffusers' unpatchify)
/// to `[C, H, W]`.
pub fn unpatchify(out: &[f32], channels: usize, shape: SanaShape, p: usize) -> Vec<f32> {
    let mut image = vec![0.0f32; channels * shape.height * shape.width];
    for (token, row) in out.chunks(p * p * channels).enumerate() {
        let (i, j) = (token / shape.cols, token % shape.cols);
        for di in 0..p {
            for dj in 0..p {
                for c in 0..channels {
                    image[(c * shape.height + i * p + di) * shape.width + j * p + dj] =
                        row[(di * p + dj) * channels + c];
                }
            }
        }
    }
    image
}
