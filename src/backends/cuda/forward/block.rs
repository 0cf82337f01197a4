//! One transformer block on the normalised, modulated activations u of its norm1:
//! x += gate_msa ⊙ proj(attention(qkv(u))), then x += gate_mlp ⊙ fc2(GELU(fc1(u'))) — each
//! residual fused with the LayerNorm + modulation that follows it (the next block's norm1,
//! or the final norm after the last block).

use super::super::arena::ForwardArena;
use super::super::blas::Epilogue;
use super::super::device_slice::{DeviceSlice, Storage};
use super::super::launch_params::{LinearAttention, ResidualNormModulate};
use super::super::weights::{DeviceBlock, DeviceLinear};
use super::adaln::{BlockModulation, Branch};
use super::{ForwardContext, fc1_activation};
use crate::error::Result;

/// Enqueues block `index` (`block`'s weights) of the forward of `arena`.
pub fn enqueue(
    ctx: &mut ForwardContext<'_>,
    arena: &ForwardArena,
    index: usize,
    block: &DeviceBlock,
) -> Result<()> {
    let buffers = &arena.buffers;
    let rows = arena.batch * arena.tokens;
    ctx.linear(
        rows,
        buffers.normed,
        &block.qkv,
        Epilogue::Bias,
        buffers.qkv,
    )?;
    ctx.mark("gemm_qkv")?;
    attention(ctx, arena)?;
    ctx.mark("linear_attention")?;
    let proj = &block.proj;
    ctx.linear(
        rows,
        buffers.attention,
        proj,
        Epilogue::None,
        buffers.branch_out,
    )?;
    ctx.mark("gemm_proj")?;
    // The attention branch's residual, then norm2 (affine pair 2i + 1).
    residual(ctx, arena, index, Branch::Attention, proj, 2 * index + 1)?;
    ctx.mark("residual_norm_modulate")?;
    mlp_hidden(ctx, arena, &block.fc1)?;
    ctx.mark("gemm_fc1")?;
    ctx.linear(
        rows,
        buffers.mlp,
        &block.fc2,
        Epilogue::None,
        buffers.branch_out,
    )?;
    ctx.mark("gemm_fc2")?;
    // The MLP branch's residual, then the next block's norm1 — pair 2(i + 1) — or, after the
    // last block, the final norm: pair 2L, which is the same number.
    residual(ctx, arena, index, Branch::Mlp, &block.fc2, 2 * (index + 1))?;
    ctx.mark("residual_norm_modulate")
}

/// Linear attention of the arena's qkv into its attention output.
fn attention(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let buffers = &arena.buffers;
    let params = LinearAttention {
        qkv: buffers.qkv,
        partial: buffers.partial,
        state: buffers.attention_state,
        out: buffers.attention,
        batch: arena.batch,
        tokens: arena.tokens,
        heads: ctx.config.num_heads,
        head_dim: ctx.config.head_dim(),
        chunk: arena.attention_chunk,
    };
    // SAFETY: arena views (see the module docs of `forward`).
    unsafe { ctx.ops.linear_attention(params) }
}

/// The MLP's hidden layer GELU(fc1(u)): bias and GELU in the GEMM's epilogue or by our
/// kernel after it ([`fc1_activation`]).
fn mlp_hidden(
    ctx: &mut ForwardContext<'_>,
    arena: &ForwardArena,
    fc1: &DeviceLinear,
) -> Result<()> {
    let buffers = &arena.buffers;
    let rows = arena.batch * arena.tokens;
    let (epilogue, gelu_kernel) = fc1_activation(ctx.config.flavor, ctx.ops.dtype);
    ctx.linear(rows, buffers.normed, fc1, epilogue, buffers.mlp)?;
    if let Some(gelu) = gelu_kernel {
        let bias: DeviceSlice<Storage> = fc1.bias.slice();
        // SAFETY: arena views and weights (see the module docs of `forward`).
        unsafe { ctx.ops.bias_gelu(buffers.mlp, bias, rows, fc1.out, gelu) }?;
    }
    Ok(())
}

/// x += gate ⊙ (branch output + `linear`'s bias) for `branch` of block `index`, then the
/// norm of affine pair `next_pair` into u.
fn residual(
    ctx: &ForwardContext<'_>,
    arena: &ForwardArena,
    index: usize,
    branch: Branch,
    linear: &DeviceLinear,
    next_pair: usize,
) -> Result<()> {
    let buffers = &arena.buffers;
    let h = ctx.config.hidden_size;
    let modulation = BlockModulation::new(buffers.modulation, ctx.config);
    let (scale, shift) = buffers.affine(next_pair, arena.batch, h)?;
    let params = ResidualNormModulate {
        x: buffers.residual,
        y: buffers.branch_out,
        bias: linear.bias.slice(),
        gate: modulation.gate(index, branch)?,
        gate_stride: modulation.stride(),
        out: buffers.normed,
        scale,
        shift,
        rows: arena.batch * arena.tokens,
        hidden: h,
        tokens: arena.tokens,
        eps: ctx.eps(),
    };
    // SAFETY: arena views and weights (see the module docs of `forward`).
    unsafe { ctx.ops.residual_norm_modulate(params) }
}
