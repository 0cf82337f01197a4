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

/// `x += gate ⊙ (y + bias)` with no norm after it (`residual_norm_modulate_T` with a null
/// `out`): sana's self-attention residual, which the cross-attention reads un-normalised.
#[derive(Debug, Clone, Copy)]
pub struct ResidualAdd {
    /// The residual stream, fp32 `[rows, hidden]`, updated in place.
    pub x: DeviceSlice<f32>,
    /// The branch output `[rows, hidden]` (before its bias).
    pub y: DeviceSlice<Storage>,
    /// The branch's bias `[hidden]` (the kernel reads it unconditionally: zeros for none).
    pub bias: DeviceSlice<Storage>,
    /// Per-sample gate, fp32: `hidden` values at the start of each `gate_stride`-long row.
    pub gate: DeviceSlice<f32>,
    /// Elements from one sample's gate to the next's.
    pub gate_stride: usize,
    /// Rows.
    pub rows: usize,
    /// Row width h.
    pub hidden: usize,
    /// Tokens per sample.
    pub tokens: usize,
}

/// `out = x · rsqrt(mean(x²) + eps) · w` per row of `hidden` values, rows `stride` apart
/// (`rms_norm_T`; in place when `out` is `x`): sana's caption norm and qk_norm.
#[derive(Debug, Clone, Copy)]
pub struct RmsNorm {
    /// Input rows, from the first row's first value.
    pub x: DeviceSlice<Storage>,
    /// Elements from one input row to the next.
    pub x_stride: usize,
    /// Output rows (may be `x`).
    pub out: DeviceSlice<Storage>,
    /// Elements from one output row to the next.
    pub out_stride: usize,
    /// The norm's weight `[hidden]`.
    pub weight: DeviceSlice<Storage>,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub hidden: usize,
    /// Epsilon.
    pub eps: f32,
}

/// sana's Mix-FFN middle (`depthwise_conv_glu_T`): `a = SiLU(input + in_bias)` on
/// `[batch, rows·cols, 2m]`, the depthwise 3×3 conv of `a` on each sample's grid (zero
/// padding) plus `bias`, then `value ⊙ SiLU(gate)` into `[batch, rows·cols, m]`.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConvGlu {
    /// The inverted 1×1 conv's output `[batch·rows·cols, 2m]`.
    pub input: DeviceSlice<Storage>,
    /// The inverted conv's bias `[2m]` (`None` when the GEMM added it).
    pub in_bias: Option<DeviceSlice<Storage>>,
    /// The depthwise weight `[2m, 1, 3, 3]` as stored (`c·9 + di·3 + dj`).
    pub weight: DeviceSlice<Storage>,
    /// The depthwise bias `[2m]`.
    pub bias: Option<DeviceSlice<Storage>>,
    /// Output `[batch·rows·cols, m]`.
    pub out: DeviceSlice<Storage>,
    /// Samples.
    pub batch: usize,
    /// Grid rows of each sample.
    pub rows: usize,
    /// Grid columns of each sample.
    pub cols: usize,
    /// m: value channels (the input has 2m).
    pub channels: usize,
}

/// `probs[r] = softmax(scale·scores[r] + (1 − mask[b])·(−10000))` (`masked_softmax_T`), b =
/// r / rows_per_sample.
#[derive(Debug, Clone, Copy)]
pub struct MaskedSoftmax {
    /// fp32 `[batch·rows_per_sample, texts]`.
    pub scores: DeviceSlice<f32>,
    /// `[batch·rows_per_sample, texts]`.
    pub probs: DeviceSlice<Storage>,
    /// fp32 `[batch, texts]`, 1 keeps a caption token.
    pub mask: DeviceSlice<f32>,
    /// Score rows per sample.
    pub rows_per_sample: usize,
    /// Caption tokens (row length).
    pub texts: usize,
    /// Samples.
    pub batch: usize,
    /// Factor on the scores (1/√d).
    pub scale: f32,
}

/// `out[b, r·h + j] = table[r·h + j] + modulation[b·mod_stride + r·row_stride + j]`
/// (`modulation_table_T`): sana's adaLN-single table added to the per-sample modulation.
#[derive(Debug, Clone, Copy)]
pub struct ModulationTable {
    /// fp32 per-sample modulation, from its first row.
    pub modulation: DeviceSlice<f32>,
    /// Elements from one sample's modulation to the next's.
    pub mod_stride: usize,
    /// Elements from one table row's modulation to the next's (0: the same row for all).
    pub row_stride: usize,
    /// The learned table `[table_rows, hidden]`.
    pub table: DeviceSlice<Storage>,
    /// fp32 `[batch, table_rows·hidden]`.
    pub out: DeviceSlice<f32>,
    /// Samples.
    pub batch: usize,
    /// Rows of the table.
    pub table_rows: usize,
    /// h.
    pub hidden: usize,
}
