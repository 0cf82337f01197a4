//! The output head: eps = final_linear(u) + bias, written in fp32 (u already carries the
//! final norm, fused into the last block's residual).

use super::super::arena::ForwardArena;
use super::super::blas::Epilogue;
use super::{ForwardContext, Gemm};
use crate::error::Result;

/// Enqueues the output projection into the arena's eps.
pub fn enqueue(ctx: &mut ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let weights = ctx.weights;
    let buffers = &arena.buffers;
    ctx.gemm(Gemm {
        rows: arena.batch * arena.tokens,
        n: ctx.config.input_dim,
        k: ctx.config.hidden_size,
        x: buffers.normed,
        weight: weights.final_weight.slice(),
        bias: Some(weights.final_bias_f32.slice()),
        epilogue: Epilogue::Bias,
        out: buffers.eps,
    })?;
    ctx.mark("gemm_out")
}
