//! Images ↔ tokens (SPEC): `[B, c, H, W]` latents cut into p×p patches; tokens in row-major
//! grid order, each patch vector ordered (channel, row-in-patch, col-in-patch), D = c·p².

use crate::error::{Error, Result};
use crate::model::Grid;
use crate::tensor::Tensor;

/// `[B, c, H, W]` → `[B, N, c·p²]` with N = (H/p)·(W/p); also returns the token grid.
pub fn patchify(images: &Tensor, patch: usize) -> Result<(Tensor, Grid)> {
    let &[batch, channels, height, width] = images.shape() else {
        return Err(Error::input(
            "images",
            format!("must be [B, c, H, W]; got {:?}", images.shape()),
        ));
    };
    if patch == 0 || height % patch != 0 || width % patch != 0 {
        return Err(Error::input(
            "images",
            format!("{height}×{width} is not divisible into {patch}×{patch} patches"),
        ));
    }
    let grid = Grid::new(height / patch, width / patch);
    let dim = channels * patch * patch;
    let src = images.data();
    let mut out = vec![0.0f32; batch * grid.tokens() * dim];
    for b in 0..batch {
        for (token, chunk) in out[b * grid.tokens() * dim..(b + 1) * grid.tokens() * dim]
            .chunks_mut(dim)
            .enumerate()
        {
            let (gr, gc) = (token / grid.cols, token % grid.cols);
            for ch in 0..channels {
                for pr in 0..patch {
                    for pc in 0..patch {
                        let (y, x) = (gr * patch + pr, gc * patch + pc);
                        chunk[(ch * patch + pr) * patch + pc] =
                            src[((b * channels + ch) * height + y) * width + x];
                    }
                }
            }
        }
    }
    Ok((Tensor::new(vec![batch, grid.tokens(), dim], out)?, grid))
}

/// `[B, N, c·p²]` → `[B, c, H, W]`, the inverse of [`patchify`].
pub fn unpatchify(tokens: &Tensor, patch: usize, channels: usize, grid: Grid) -> Result<Tensor> {
    let &[batch, n, dim] = tokens.shape() else {
        return Err(Error::input(
            "tokens",
            format!("must be [B, N, D]; got {:?}", tokens.shape()),
        ));
    };
    if n != grid.tokens() || dim != channels * patch * patch {
        return Err(Error::input(
            "tokens",
            format!(
                "shape {:?} does not match grid {grid} with {channels} channels and patch {patch}",
                tokens.shape()
            ),
        ));
    }
    let (height, width) = (grid.rows * patch, grid.cols * patch);
    let src = tokens.data();
    let mut out = vec![0.0f32; batch * channels * height * width];
    for b in 0..batch {
        for token in 0..n {
            let (gr, gc) = (token / grid.cols, token % grid.cols);
            let chunk = &src[(b * n + token) * dim..(b * n + token + 1) * dim];
            for ch in 0..channels {
                for pr in 0..patch {
                    for pc in 0..patch {
                        let (y, x) = (gr * patch + pr, gc * patch + pc);
                        out[((b * channels + ch) * height + y) * width + x] =
                            chunk[(ch * patch + pr) * patch + pc];
                    }
                }
            }
        }
    }
    Tensor::new(vec![batch, channels, height, width], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_orders_channel_row_col_and_round_trips() {
        let (b, c, hh, ww, p) = (2, 3, 4, 6, 2);
        let data: Vec<f32> = (0..b * c * hh * ww).map(|i| i as f32).collect();
        let images = Tensor::new(vec![b, c, hh, ww], data).unwrap();
        let (tokens, grid) = patchify(&images, p).unwrap();
        assert_eq!(grid, Grid::new(2, 3));
        assert_eq!(tokens.shape(), &[2, 6, 12]);
        // Token 1 of sample 0 is patch (row 0, col 1): channel 0 rows 0-1, cols 2-3 first.
        assert_eq!(&tokens.data()[12..16], &[2.0, 3.0, 8.0, 9.0]);
        assert_eq!(unpatchify(&tokens, p, c, grid).unwrap(), images);
    }
}
