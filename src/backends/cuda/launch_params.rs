//! The arguments of the kernels with long parameter lists, one struct per kernel family
//! (LayerNorm + modulation, the modulation fold, the small Linear, token embedding, linear
//! attention), named as `kernels/` names them; `ops.rs` passes them on in the kernels' order.
//! Every buffer is a typed view whose length the launcher checks against the launch.

use super::device_slice::{DeviceSlice, Storage};

/// `out = LN(x) · scale + shift` per row, with one (scale, shift) pair per sample
/// (`norm_modulate_T`).
#[derive(Debug, Clone, Copy)]
pub struct NormModulate {
    /// The residual stream, fp32 `[rows, hidden]`.
    pub x: DeviceSlice<f32>,
    /// The normalised, modulated rows `[rows, hidden]`.
    pub out: DeviceSlice<Storage>,
    /// Per-sample scale, fp32 `[samples, hidden]` (samples = ⌈rows / tokens⌉).
    pub scale: DeviceSlice<f32>,
    /// Per-sample shift, fp32 `[samples, hidden]`.
    pub shift: DeviceSlice<f32>,
    /// Rows (tokens of every sample).
    pub rows: usize,
    /// Row width h.
    pub hidden: usize,
    /// Tokens per sample: row r belongs to sample r / tokens.
    pub tokens: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// `x += gate ⊙ (y + bias)`, then the next LayerNorm + modulation of x into `out`
/// (`residual_norm_modulate_T`).
#[derive(Debug, Clone, Copy)]
pub struct ResidualNormModulate {
    /// The residual stream, fp32 `[rows, hidden]`, updated in place.
    pub x: DeviceSlice<f32>,
    /// The branch output `[rows, hidden]` (proj or fc2, before its bias).
    pub y: DeviceSlice<Storage>,
    /// The branch's bias `[hidden]`.
    pub bias: DeviceSlice<Storage>,
    /// Per-sample gate, fp32: `hidden` values at the start of each `gate_stride`-long row.
    pub gate: DeviceSlice<f32>,
    /// Elements from one sample's gate to the next's.
    pub gate_stride: usize,
    /// The normalised, modulated rows `[rows, hidden]`.
    pub out: DeviceSlice<Storage>,
    /// Per-sample scale of the next norm, fp32 `[samples, hidden]`.
    pub scale: DeviceSlice<f32>,
    /// Per-sample shift of the next norm, fp32 `[samples, hidden]`.
    pub shift: DeviceSlice<f32>,
    /// Rows.
    pub rows: usize,
    /// Row width h.
    pub hidden: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// The shift and scale columns of an adaLN output, fp32 `[samples, stride]`.
#[derive(Debug, Clone, Copy)]
pub struct ModulationColumns {
    /// The modulation matrix, from its first row.
    pub matrix: DeviceSlice<f32>,
    /// Elements per row.
    pub stride: usize,
    /// First column of the shift.
    pub shift_col: usize,
    /// First column of the scale.
    pub scale_col: usize,
}

/// A LayerNorm's own affine, γ and β `[hidden]` each (edifice).
#[derive(Debug, Clone, Copy)]
pub struct NormWeights {
    /// γ.
    pub gamma: DeviceSlice<Storage>,
    /// β.
    pub beta: DeviceSlice<Storage>,
}

/// Folds a modulation (if any) and a norm's affine (if any) into per-sample scale and shift
/// (`modulation_affine_T`): `scale = γ(1 + s)`, `shift = β(1 + s) + t`.
#[derive(Debug, Clone, Copy)]
pub struct ModulationAffine {
    /// Where s and t are read; `None` for a plain affine norm (s = t = 0).
    pub modulation: Option<ModulationColumns>,
    /// γ and β; `None` for a norm without affine (γ = 1, β = 0).
    pub norm: Option<NormWeights>,
    /// Per-sample scale, fp32 `[samples, hidden]`.
    pub scale_out: DeviceSlice<f32>,
    /// Per-sample shift, fp32 `[samples, hidden]`.
    pub shift_out: DeviceSlice<f32>,
    /// Samples.
    pub samples: usize,
    /// h.
    pub hidden: usize,
}

/// What the small Linear applies to its input first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallLinearInput {
    /// x as it is.
    Plain,
    /// SiLU(x).
    Silu,
}

/// How the small Linear stores its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallLinearOutput {
    /// `out = …`.
    Overwrite,
    /// `out += …`.
    Accumulate,
}

/// `out (+)= a(x) Wᵀ + bias` on a few fp32 rows (`small_linear_T`): conditioning and adaLN.
#[derive(Debug, Clone, Copy)]
pub struct SmallLinear {
    /// Input, fp32 `[rows, inputs]`.
    pub x: DeviceSlice<f32>,
    /// Weight `[outputs, inputs]`.
    pub weight: DeviceSlice<Storage>,
    /// Bias `[outputs]`.
    pub bias: DeviceSlice<Storage>,
    /// Output, fp32 `[rows, outputs]`.
    pub out: DeviceSlice<f32>,
    /// Rows (samples).
    pub rows: usize,
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// a: identity or SiLU.
    pub input: SmallLinearInput,
    /// Overwrite or accumulate into `out`.
    pub output: SmallLinearOutput,
}

/// `x[r] += bias + table[r % table_rows]` (`embed_add_T`): the embedded tokens plus their
/// embedder's bias and the positions.
#[derive(Debug, Clone, Copy)]
pub struct EmbedAdd {
    /// The embedded tokens, fp32 `[rows, hidden]`, updated in place.
    pub x: DeviceSlice<f32>,
    /// The embedder's bias `[hidden]`.
    pub bias: DeviceSlice<Storage>,
    /// Positions, fp32 `[table_rows, hidden]`.
    pub table: DeviceSlice<f32>,
    /// Rows.
    pub rows: usize,
    /// h.
    pub hidden: usize,
    /// Rows of the position table (tokens per sample, or 1 for one learned vector).
    pub table_rows: usize,
}

/// The three passes of linear attention (`linear_attention_{partial,reduce,apply}`).
#[derive(Debug, Clone, Copy)]
pub struct LinearAttention {
    /// q, k and v `[batch·tokens, 3·heads·head_dim]`.
    pub qkv: DeviceSlice<Storage>,
    /// Pass-1 partial sums, fp32 `[batch·heads, chunks, d² + d]`.
    pub partial: DeviceSlice<f32>,
    /// Per-(sample, head) state S and z, fp32 `[batch·heads, d² + d]`.
    pub state: DeviceSlice<f32>,
    /// The attention output `[batch·tokens, heads·head_dim]`.
    pub out: DeviceSlice<Storage>,
    /// Samples.
    pub batch: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Head dimension d.
    pub head_dim: usize,
    /// Tokens per pass-1 block.
    pub chunk: usize,
}
