//! A forward's inputs and their validation, shared by every backend: each bad input is a
//! clear error naming it, before any work is done.

use crate::error::{Error, Result};
use crate::model::{Config, Flavor};
use crate::tensor::Tensor;

/// The token grid (rows × cols = N) of a sample, needed for 2-D positions and unpatchify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grid {
    /// Token rows.
    pub rows: usize,
    /// Token columns.
    pub cols: usize,
}

impl Grid {
    /// A `rows × cols` grid.
    pub fn new(rows: usize, cols: usize) -> Self {
        Grid { rows, cols }
    }

    /// The square grid of `tokens` tokens; an error when `tokens` is not a perfect square.
    pub fn square(tokens: usize) -> Result<Self> {
        let side = (tokens as f64).sqrt().round() as usize;
        if side.checked_mul(side) != Some(tokens) {
            return Err(Error::input(
                "grid",
                format!(
                    "is needed: N = {tokens} tokens is not a perfect square, so give the grid as ROWSxCOLS"
                ),
            ));
        }
        Ok(Grid::new(side, side))
    }

    /// Number of tokens (saturating: a grid too large to count matches no real input, and
    /// [`Grid::from_str`](std::str::FromStr) already refuses one).
    pub fn tokens(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }
}

impl std::fmt::Display for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

impl std::str::FromStr for Grid {
    type Err = crate::error::ParseError;

    /// `ROWSxCOLS`; a grid whose token count overflows is refused too.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let parsed = s.split_once(['x', 'X']).and_then(|(r, c)| {
            Some((
                r.trim().parse::<usize>().ok()?,
                c.trim().parse::<usize>().ok()?,
            ))
        });
        match parsed {
            Some((rows, cols)) if rows > 0 && cols > 0 && rows.checked_mul(cols).is_some() => {
                Ok(Grid::new(rows, cols))
            }
            _ => Err(crate::error::ParseError::new(
                "grid",
                s,
                "ROWSxCOLS, two positive numbers whose product does not overflow",
            )),
        }
    }
}

/// The inputs of one forward: `x [B, N, D]`, per-sample timesteps `t [B]`, per-sample class
/// labels `y [B]` (class-conditional models only), and the token grid (default: square).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Noisy tokens `[B, N, D]`.
    pub x: &'a Tensor,
    /// Timesteps `[B]`, in `[0, num_steps)`.
    pub t: &'a [f32],
    /// Class labels `[B]`.
    pub y: Option<&'a [i64]>,
    /// Token grid; `None` means square where the flavor uses positions (`dit`), and no grid
    /// at all for `edifice`, whose math has no notion of position.
    pub grid: Option<Grid>,
}

impl<'a> Input<'a> {
    /// Inputs for an unconditional model on a square grid.
    pub fn new(x: &'a Tensor, t: &'a [f32]) -> Self {
        Input {
            x,
            t,
            y: None,
            grid: None,
        }
    }

    /// With class labels.
    pub fn with_labels(mut self, y: &'a [i64]) -> Self {
        self.y = Some(y);
        self
    }

    /// With an explicit grid.
    pub fn with_grid(mut self, grid: Grid) -> Self {
        self.grid = Some(grid);
        self
    }
}

/// Sizes of a validated forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardShape {
    /// Samples B.
    pub batch: usize,
    /// Tokens per sample N.
    pub tokens: usize,
    /// The token grid.
    pub grid: Grid,
}

/// Checks `input` against `config`; returns the forward's sizes.
pub fn validate(config: &Config, input: &Input<'_>) -> Result<ForwardShape> {
    let &[batch, tokens, dim] = input.x.shape() else {
        return Err(Error::input(
            "x",
            format!("must be [B, N, D]; got shape {:?}", input.x.shape()),
        ));
    };
    if dim != config.input_dim {
        return Err(Error::input(
            "x",
            format!(
                "has D = {dim} per token, but the model's input_dim is {}",
                config.input_dim
            ),
        ));
    }
    if batch == 0 || tokens == 0 {
        return Err(Error::input(
            "x",
            format!("is empty (shape {:?})", input.x.shape()),
        ));
    }
    if let Some(i) = input.x.data().iter().position(|v| !v.is_finite()) {
        let (b, n, d) = (i / (tokens * dim), i / dim % tokens, i % dim);
        return Err(Error::input(
            "x",
            format!(
                "holds a non-finite value ({}) at [{b}, {n}, {d}]",
                input.x.data()[i]
            ),
        ));
    }
    if input.t.len() != batch {
        return Err(Error::input(
            "t",
            format!(
                "has {} timesteps but x has B = {batch} samples",
                input.t.len()
            ),
        ));
    }
    let max_t = config.num_steps as f32;
    for (b, &t) in input.t.iter().enumerate() {
        if !t.is_finite() {
            return Err(Error::input(
                "t",
                format!("[{b}] is {t}, not a finite timestep"),
            ));
        }
        if !(0.0..max_t).contains(&t) {
            return Err(Error::input(
                "t",
                format!(
                    "[{b}] = {t} is outside [0, num_steps = {})",
                    config.num_steps
                ),
            ));
        }
    }
    match (config.num_classes, input.y) {
        (None, Some(_)) => {
            return Err(Error::input(
                "y",
                "was given but the model is unconditional (num_classes is null)",
            ));
        }
        (Some(c), None) => {
            return Err(Error::input(
                "y",
                format!("is required: the model is class-conditional (num_classes = {c})"),
            ));
        }
        (Some(c), Some(y)) => {
            if y.len() != batch {
                return Err(Error::input(
                    "y",
                    format!("has {} labels but x has B = {batch} samples", y.len()),
                ));
            }
            // `dit` has C + 1 table rows (row C is the null class); `edifice` maps any label
            // outside [0, C) to the all-zero one-hot, its null class, so every label is valid.
            let out_of_range = y.iter().enumerate().find(|&(_, &l)| l < 0 || l > c as i64);
            if let (Flavor::Dit, Some((b, &label))) = (config.flavor, out_of_range) {
                return Err(Error::input(
                    "y",
                    format!(
                        "[{b}] = {label} is outside [0, {c}] (classes 0..{c}, {c} = null class)"
                    ),
                ));
            }
        }
        (None, None) => {}
    }
    let grid = match input.grid {
        Some(grid) if grid.tokens() != tokens => {
            return Err(Error::input(
                "grid",
                format!("{grid} has {} tokens but x has N = {tokens}", grid.tokens()),
            ));
        }
        Some(grid) => grid,
        // Edifice adds one learned vector to every token: any N works, as in Edifice.
        None if config.flavor == Flavor::Edifice => Grid::new(1, tokens),
        None => Grid::square(tokens)?,
    };
    Ok(ForwardShape {
        batch,
        tokens,
        grid,
    })
}
