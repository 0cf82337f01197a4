//! The sana forward on the GPU: the CPU backend's computation (`backends/cpu/sana`, the
//! reference) as kernel launches and cuBLASLt GEMMs on one stream, reading and writing only
//! the shape's arena and the weights — so the whole sequence can be captured once as a CUDA
//! graph. In order:
//!
//! 1. conditioning: the timestep MLP (+ Sprint's guidance MLP) into the condition,
//!    adaLN-single (`time_linear` of SiLU(condition)), each block's table + modulation and
//!    its two norm affines, the final table + condition and its affine;
//! 2. captions: Linear, tanh GELU, Linear, RMSNorm (all caption tokens: the mask enters as
//!    the softmax bias, where a dropped token gets weight e^(−10000) = 0 as on the CPU, which
//!    leaves such rows out instead);
//! 3. patch embedding: one GEMM over the patch features into the fp32 residual stream, plus
//!    its bias and the positions, then block 0's norm1;
//! 4. each block: qkv GEMM, qk_norm (RMSNorm in place on the q and k columns), ReLU linear
//!    attention (fp32 state, ε = 1e−15), out projection and gated residual; cross-attention
//!    (`cross_attention.rs`) and its ungated residual fused with norm2; the Mix-FFN (inverted
//!    1×1 conv GEMM, SiLU + depthwise 3×3 + GLU kernel, point 1×1 conv GEMM) and its gated
//!    residual fused with the next norm (the next block's norm1, or the final norm);
//! 5. proj_out into fp32 rows, unpatchified on the host.
//!
//! Why the launches are sound: every view they pass is cut from the arena of the shape being
//! run (sized by the checked [`super::shape::SanaSizes`]) or from the weights. The weights
//! live as long as the backend; the arena lives in the shape cache beside the graph captured
//! over it; every launch is on the compute stream, which the host waits for (through the
//! download) before a forward returns.

use super::super::blas::{Blas, Epilogue};
use super::super::device_slice::{DeviceSlice, Storage};
use super::super::forward::{Gemm, GemmOutput, checked_gemm};
use super::super::launch_params::{
    DepthwiseConvGlu, EmbedAdd, LinearAttention, ModulationAffine, ModulationColumns,
    ModulationTable, NormModulate, NormWeights, ResidualAdd, ResidualNormModulate, RmsNorm,
    SmallLinear, SmallLinearInput, SmallLinearOutput,
};
use super::super::ops::Ops;
use super::arena::SanaArena;
use super::cross_attention;
use super::weights::{SanaDeviceBlock, SanaDeviceWeights, SanaLinear, SanaTimestepMlp};
use crate::dtype::DType;
use crate::error::Result;
use crate::model::Gelu;
use crate::model::sana::tensors::TIME_FREQUENCY_WIDTH;

/// Epsilon of the caption RMSNorm and the qk norms (diffusers' `RMSNorm(eps=1e-5)`), as the
/// CPU backend's `RMS_NORM_EPS`.
pub const RMS_NORM_EPS: f32 = 1e-5;
/// Epsilon of the final LayerNorm (`SanaModulatedNorm(eps=1e-6)`).
pub const FINAL_NORM_EPS: f32 = 1e-6;

/// Rows of the adaLN-single table of a block (shift, scale, gate of each branch) and of the
/// final layer (shift, scale).
const BLOCK_TABLE_ROWS: usize = 6;
const FINAL_TABLE_ROWS: usize = 2;

/// Everything a forward needs besides the arena.
pub struct SanaContext<'a> {
    /// Kernels (with the ReLU attention instances).
    pub ops: &'a Ops,
    /// GEMMs.
    pub blas: &'a mut Blas,
    /// Weights.
    pub weights: &'a SanaDeviceWeights,
    /// Epsilon of the block LayerNorms (`norm_eps`).
    pub norm_eps: f32,
}

impl SanaContext<'_> {
    /// Enqueues the whole forward of `arena` (inputs already in its upload buffers).
    pub fn enqueue(&mut self, arena: &SanaArena) -> Result<()> {
        conditioning(self, arena)?;
        captions(self, arena)?;
        embed(self, arena)?;
        let weights = self.weights;
        for (index, block) in weights.blocks.iter().enumerate() {
            self.block(arena, index, block)?;
        }
        let s = &arena.sizes;
        let b = &arena.buffers;
        checked_gemm(
            self.blas,
            self.ops.dtype,
            Gemm {
                rows: s.token_rows,
                n: s.out_width,
                k: s.hidden,
                x: b.normed,
                weight: weights.proj_out.weight.slice(),
                bias: Some(weights.proj_out_bias_f32.slice()),
                epilogue: Epilogue::Bias,
                out: b.out,
            },
        )
    }

    /// `out = x · Wᵀ (+ bias in the epilogue when the layer has one)` for `rows` rows.
    pub(super) fn linear(
        &mut self,
        rows: usize,
        x: DeviceSlice<Storage>,
        layer: &SanaLinear,
        out: DeviceSlice<Storage>,
    ) -> Result<()> {
        let bias = layer.bias.as_ref().map(|b| b.slice());
        self.gemm(Gemm {
            rows,
            n: layer.out,
            k: layer.inp,
            x,
            weight: layer.weight.slice(),
            bias,
            epilogue: if bias.is_some() {
                Epilogue::Bias
            } else {
                Epilogue::None
            },
            out,
        })
    }

    /// `out = x · Wᵀ` without the bias (a later kernel adds it).
    fn linear_no_bias<O: GemmOutput>(
        &mut self,
        rows: usize,
        x: DeviceSlice<Storage>,
        layer: &SanaLinear,
        out: DeviceSlice<O>,
    ) -> Result<()> {
        self.gemm(Gemm {
            rows,
            n: layer.out,
            k: layer.inp,
            x,
            weight: layer.weight.slice(),
            bias: None,
            epilogue: Epilogue::None,
            out,
        })
    }

    fn gemm<O: GemmOutput>(&mut self, gemm: Gemm<O>) -> Result<()> {
        checked_gemm(self.blas, self.ops.dtype, gemm)
    }

    /// `x → out` cast from the fp32 upload to the storage type (nothing for fp32, whose
    /// storage view is the upload itself).
    fn cast_in(&self, x: DeviceSlice<f32>, out: DeviceSlice<Storage>, n: usize) -> Result<()> {
        if self.ops.dtype == DType::F32 {
            return Ok(());
        }
        // SAFETY: arena views (see the module docs).
        unsafe { self.ops.cast_in(x, out, n) }
    }

    /// Block `index` on u = its norm1 output (in `normed`); leaves the next norm's output
    /// there.
    fn block(&mut self, arena: &SanaArena, index: usize, block: &SanaDeviceBlock) -> Result<()> {
        let (s, b) = (&arena.sizes, &arena.buffers);
        let (rows, h) = (s.token_rows, s.hidden);
        let modulation = b.block_modulation(index, s.batch, h)?;
        let stride = BLOCK_TABLE_ROWS * h;
        // Self-attention.
        self.linear(rows, b.normed, &block.qkv, b.qkv)?;
        if let Some([norm_q, norm_k]) = &block.self_qk_norm {
            self.rms_norm_in_place(b.qkv, 3 * h, rows, h, norm_q.slice())?;
            self.rms_norm_in_place(b.qkv.skip(h)?, 3 * h, rows, h, norm_k.slice())?;
        }
        let attention = LinearAttention {
            qkv: b.qkv,
            partial: b.partial,
            state: b.attention_state,
            out: b.attention,
            batch: s.batch,
            tokens: s.tokens,
            heads: s.heads,
            head_dim: s.head_dim,
            chunk: s.attention_chunk,
        };
        // SAFETY: arena views (see the module docs); the ops carry the ReLU instances.
        unsafe { self.ops.linear_attention(attention) }?;
        self.linear_no_bias(rows, b.attention, &block.self_out, b.branch_out)?;
        let residual = ResidualAdd {
            x: b.residual,
            y: b.branch_out,
            bias: bias_or(&block.self_out, b.zero_bias),
            gate: modulation.skip(2 * h)?,
            gate_stride: stride,
            rows,
            hidden: h,
            tokens: s.tokens,
        };
        // SAFETY: arena views and weights (see the module docs).
        unsafe { self.ops.residual_add(residual) }?;
        // Cross-attention on the un-normalised stream, then its ungated residual and norm2.
        cross_attention::enqueue(self, arena, block)?;
        self.linear_no_bias(rows, b.cross_attention, &block.cross_out, b.branch_out)?;
        let (scale, shift) = b.affine(2 * index + 1, s.batch, h)?;
        let residual = ResidualNormModulate {
            x: b.residual,
            y: b.branch_out,
            bias: bias_or(&block.cross_out, b.zero_bias),
            gate: b.ones,
            gate_stride: 0,
            out: b.normed,
            scale,
            shift,
            rows,
            hidden: h,
            tokens: s.tokens,
            eps: self.norm_eps,
        };
        // SAFETY: arena views and weights (see the module docs).
        unsafe { self.ops.residual_norm_modulate(residual) }?;
        // Mix-FFN.
        self.linear_no_bias(rows, b.normed, &block.ffn_inverted, b.ffn_wide)?;
        let conv = DepthwiseConvGlu {
            input: b.ffn_wide,
            in_bias: block.ffn_inverted.bias.as_ref().map(|bias| bias.slice()),
            weight: block.ffn_depthwise.slice(),
            bias: Some(block.ffn_depthwise_bias.slice()),
            out: b.ffn_gated,
            batch: s.batch,
            rows: s.rows,
            cols: s.cols,
            channels: s.ffn,
        };
        // SAFETY: arena views and weights (see the module docs).
        unsafe { self.ops.depthwise_conv_glu(conv) }?;
        self.linear_no_bias(rows, b.ffn_gated, &block.ffn_point, b.branch_out)?;
        // The next norm: the next block's norm1 (pair 2(i + 1)), or after the last block the
        // final norm (pair 2L, the same number) with its own epsilon.
        let last = index + 1 == s.layers;
        let (scale, shift) = b.affine(2 * (index + 1), s.batch, h)?;
        let residual = ResidualNormModulate {
            x: b.residual,
            y: b.branch_out,
            bias: bias_or(&block.ffn_point, b.zero_bias),
            gate: modulation.skip(5 * h)?,
            gate_stride: stride,
            out: b.normed,
            scale,
            shift,
            rows,
            hidden: h,
            tokens: s.tokens,
            eps: if last { FINAL_NORM_EPS } else { self.norm_eps },
        };
        // SAFETY: arena views and weights (see the module docs).
        unsafe { self.ops.residual_norm_modulate(residual) }
    }

    /// RMSNorm in place on `rows` rows of `width` values, `stride` apart, from `x`.
    pub(super) fn rms_norm_in_place(
        &self,
        x: DeviceSlice<Storage>,
        stride: usize,
        rows: usize,
        width: usize,
        weight: DeviceSlice<Storage>,
    ) -> Result<()> {
        let params = RmsNorm {
            x,
            x_stride: stride,
            out: x,
            out_stride: stride,
            weight,
            rows,
            hidden: width,
            eps: RMS_NORM_EPS,
        };
        // SAFETY: arena views and weights (see the module docs); `out` is `x` exactly.
        unsafe { self.ops.rms_norm(params) }
    }
}

/// The layer's bias, or `zeros` for a layer without one (the residual kernel reads a bias
/// unconditionally).
fn bias_or(layer: &SanaLinear, zeros: DeviceSlice<Storage>) -> DeviceSlice<Storage> {
    layer.bias.as_ref().map_or(zeros, |bias| bias.slice())
}

/// The condition, adaLN-single, every block's modulation and every norm's affine.
fn conditioning(ctx: &SanaContext<'_>, arena: &SanaArena) -> Result<()> {
    let (s, b, w) = (&arena.sizes, &arena.buffers, ctx.weights);
    let (batch, h) = (s.batch, s.hidden);
    timestep_mlp(
        ctx.ops,
        &w.timestep,
        b.timestep_features,
        b,
        batch,
        SmallLinearOutput::Overwrite,
    )?;
    if let Some(guidance) = &w.guidance {
        timestep_mlp(
            ctx.ops,
            guidance,
            b.guidance_features,
            b,
            batch,
            SmallLinearOutput::Accumulate,
        )?;
    }
    small_linear(
        ctx.ops,
        &w.time_linear,
        b.condition,
        b.time6,
        batch,
        SmallLinearInput::Silu,
        SmallLinearOutput::Overwrite,
    )?;
    for (index, block) in w.blocks.iter().enumerate() {
        let modulation = b.block_modulation(index, batch, h)?;
        let table = ModulationTable {
            modulation: b.time6,
            mod_stride: BLOCK_TABLE_ROWS * h,
            row_stride: h,
            table: block.scale_shift_table.slice(),
            out: modulation,
            batch,
            table_rows: BLOCK_TABLE_ROWS,
            hidden: h,
        };
        // SAFETY: arena views and weights (see the module docs); `out` does not overlap
        // `time6`.
        unsafe { ctx.ops.modulation_table(table) }?;
        let columns = |shift: usize, scale: usize| ModulationColumns {
            matrix: modulation,
            stride: BLOCK_TABLE_ROWS * h,
            shift_col: shift * h,
            scale_col: scale * h,
        };
        // Rows: 0 shift_msa, 1 scale_msa, 2 gate_msa, 3 shift_mlp, 4 scale_mlp, 5 gate_mlp.
        affine(ctx, arena, 2 * index, columns(0, 1), None)?;
        let ffn_norm = block.ffn_norm.as_ref().map(|[gamma, beta]| NormWeights {
            gamma: gamma.slice(),
            beta: beta.slice(),
        });
        affine(ctx, arena, 2 * index + 1, columns(3, 4), ffn_norm)?;
    }
    let table = ModulationTable {
        modulation: b.condition,
        mod_stride: h,
        row_stride: 0,
        table: w.final_table.slice(),
        out: b.final_modulation,
        batch,
        table_rows: FINAL_TABLE_ROWS,
        hidden: h,
    };
    // SAFETY: arena views and weights (see the module docs); `out` does not overlap the
    // condition.
    unsafe { ctx.ops.modulation_table(table) }?;
    let columns = ModulationColumns {
        matrix: b.final_modulation,
        stride: FINAL_TABLE_ROWS * h,
        shift_col: 0,
        scale_col: h,
    };
    affine(ctx, arena, 2 * s.layers, columns, None)
}

/// diffusers' `TimestepEmbedding` of the features: Linear, SiLU, Linear, into (or added to)
/// the condition.
fn timestep_mlp(
    ops: &Ops,
    mlp: &SanaTimestepMlp,
    features: DeviceSlice<f32>,
    b: &super::arena::SanaBuffers,
    batch: usize,
    output: SmallLinearOutput,
) -> Result<()> {
    features.require("timestep features", batch * TIME_FREQUENCY_WIDTH)?;
    small_linear(
        ops,
        &mlp.first,
        features,
        b.timestep_hidden,
        batch,
        SmallLinearInput::Plain,
        SmallLinearOutput::Overwrite,
    )?;
    small_linear(
        ops,
        &mlp.second,
        b.timestep_hidden,
        b.condition,
        batch,
        SmallLinearInput::Silu,
        output,
    )
}

/// `out (+)= a(x) Wᵀ + b` for one Linear on a few fp32 rows.
fn small_linear(
    ops: &Ops,
    layer: &SanaLinear,
    x: DeviceSlice<f32>,
    out: DeviceSlice<f32>,
    rows: usize,
    input: SmallLinearInput,
    output: SmallLinearOutput,
) -> Result<()> {
    let bias = layer.bias.as_ref().ok_or_else(|| {
        super::super::device::internal_error("a conditioning Linear without its bias")
    })?;
    let params = SmallLinear {
        x,
        weight: layer.weight.slice(),
        bias: bias.slice(),
        out,
        rows,
        inputs: layer.inp,
        outputs: layer.out,
        input,
        output,
    };
    // SAFETY: arena views and weights (see the module docs).
    unsafe { ops.small_linear(params) }
}

/// Norm affine pair `pair` from modulation `columns` (and an affine norm's γ, β).
fn affine(
    ctx: &SanaContext<'_>,
    arena: &SanaArena,
    pair: usize,
    columns: ModulationColumns,
    norm: Option<NormWeights>,
) -> Result<()> {
    let (batch, h) = (arena.sizes.batch, arena.sizes.hidden);
    let (scale_out, shift_out) = arena.buffers.affine(pair, batch, h)?;
    let params = ModulationAffine {
        modulation: Some(columns),
        norm,
        scale_out,
        shift_out,
        samples: batch,
        hidden: h,
    };
    // SAFETY: arena views and weights (see the module docs).
    unsafe { ctx.ops.modulation_affine(params) }
}

/// The caption projection: Linear, tanh GELU, Linear, RMSNorm.
fn captions(ctx: &mut SanaContext<'_>, arena: &SanaArena) -> Result<()> {
    let (s, b) = (&arena.sizes, &arena.buffers);
    let weights = ctx.weights;
    let rows = s.text_rows;
    ctx.cast_in(b.captions_upload, b.captions, rows * s.caption)?;
    let first = &weights.caption_first;
    ctx.linear_no_bias(rows, b.captions, first, b.text_hidden)?;
    let bias = bias_or(first, b.zero_bias);
    // SAFETY: arena views and weights (see the module docs).
    unsafe {
        ctx.ops
            .bias_gelu(b.text_hidden, bias, rows, first.out, Gelu::Tanh)
    }?;
    ctx.linear(rows, b.text_hidden, &weights.caption_second, b.text)?;
    ctx.rms_norm_in_place(
        b.text,
        s.hidden,
        rows,
        s.hidden,
        weights.caption_norm.slice(),
    )
}

/// The patch embedding into the residual stream (+ bias + positions), then block 0's norm1
/// (or, without blocks, the final norm).
fn embed(ctx: &mut SanaContext<'_>, arena: &SanaArena) -> Result<()> {
    let (s, b) = (&arena.sizes, &arena.buffers);
    let weights = ctx.weights;
    let (rows, h) = (s.token_rows, s.hidden);
    ctx.cast_in(b.patches_upload, b.patches, rows * s.patch_width)?;
    ctx.linear_no_bias(rows, b.patches, &weights.patch_embed, b.residual)?;
    let params = EmbedAdd {
        x: b.residual,
        bias: bias_or(&weights.patch_embed, b.zero_bias),
        table: b.positions,
        rows,
        hidden: h,
        table_rows: arena.position_rows,
    };
    // SAFETY: arena views and weights (see the module docs).
    unsafe { ctx.ops.embed_add(params) }?;
    let (scale, shift) = b.affine(0, s.batch, h)?;
    let params = NormModulate {
        x: b.residual,
        out: b.normed,
        scale,
        shift,
        rows,
        hidden: h,
        tokens: s.tokens,
        eps: if s.layers == 0 {
            FINAL_NORM_EPS
        } else {
            ctx.norm_eps
        },
    };
    // SAFETY: arena views (see the module docs).
    unsafe { ctx.ops.norm_modulate(params) }
}
