//! The tokens into the residual stream: x = x_embedder(x_in) + bias + positions (fp32), and
//! the first block's norm1 of it.

use super::super::arena::ForwardArena;
use super::super::device::internal_error;
use super::super::launch_params::{EmbedAdd, NormModulate};
use super::ForwardContext;
use crate::dtype::DType;
use crate::error::Result;

/// Enqueues the token embedding and the first norm.
pub fn enqueue(ctx: &mut ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    embed(ctx, arena)?;
    ctx.mark("embed")?;
    first_norm(ctx, arena)?;
    ctx.mark("norm_modulate")
}

/// x = x_embedder(x_in) + bias + positions: dit's sin-cos table of the grid, or edifice's
/// one learned vector.
fn embed(ctx: &mut ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let (ops, weights) = (ctx.ops, ctx.weights);
    let buffers = &arena.buffers;
    let rows = arena.batch * arena.tokens;
    if ops.dtype != DType::F32 {
        let values = rows * ctx.config.input_dim;
        // SAFETY: arena views (see the module docs of `forward`).
        unsafe { ops.cast_in(buffers.x_upload, buffers.x_in, values) }?;
    }
    ctx.linear_f32_out(rows, buffers.x_in, &weights.x_embedder, buffers.residual)?;
    let (table, table_rows) = match (&weights.pos_embed, ctx.positions) {
        (Some(vector), _) => (vector.slice(), 1),
        (None, Some(positions)) => (positions, arena.tokens),
        (None, None) => return Err(internal_error("a dit forward without its position table")),
    };
    let params = EmbedAdd {
        x: buffers.residual,
        bias: weights.x_embedder.bias.slice(),
        table,
        rows,
        hidden: ctx.config.hidden_size,
        table_rows,
    };
    // SAFETY: arena views, weights and the position table (see the module docs of `forward`).
    unsafe { ops.embed_add(params) }
}

/// The first block's norm1 (affine pair 0) of the residual stream.
fn first_norm(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let buffers = &arena.buffers;
    let h = ctx.config.hidden_size;
    let (scale, shift) = buffers.affine(0, arena.batch, h)?;
    let params = NormModulate {
        x: buffers.residual,
        out: buffers.normed,
        scale,
        shift,
        rows: arena.batch * arena.tokens,
        hidden: h,
        tokens: arena.tokens,
        eps: ctx.eps(),
    };
    // SAFETY: arena views (see the module docs of `forward`).
    unsafe { ctx.ops.norm_modulate(params) }
}
