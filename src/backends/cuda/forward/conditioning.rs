//! The conditioning, per sample: c = t_emb(t) + y_emb(y); every block's modulation from c in
//! one launch; and from it the per-sample scale and shift of every norm of the model.

use super::super::arena::ForwardArena;
use super::super::device_slice::{DeviceSlice, Storage};
use super::super::launch_params::{
    ModulationAffine, ModulationColumns, NormWeights, SmallLinear, SmallLinearInput,
    SmallLinearOutput,
};
use super::super::ops::Ops;
use super::super::weights::{DeviceArray, DeviceLinear};
use super::ForwardContext;
use super::adaln::{BlockModulation, Branch, final_norm_columns};
use crate::error::Result;
use crate::model::Flavor;

/// Enqueues the conditioning of `arena`'s batch: c, the modulation, the norm affines.
pub fn enqueue(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    condition(ctx, arena)?;
    let modulation = block_modulation(ctx, arena)?;
    for index in 0..ctx.weights.blocks.len() {
        block_affines(ctx, arena, &modulation, index)?;
    }
    final_affine(ctx, arena)
}

/// c = t_emb(t) + y_emb(y): the timestep MLP over the timestep features, plus dit's class
/// table row or edifice's class MLP over the one-hot label.
fn condition(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let (ops, weights, config) = (ctx.ops, ctx.weights, ctx.config);
    let buffers = &arena.buffers;
    let batch = arena.batch;
    timestep_features(ctx, arena)?;
    small_mlp(
        ops,
        &weights.t_mlp,
        buffers.features,
        buffers.timestep_hidden,
        buffers.condition,
        batch,
        SmallLinearOutput::Overwrite,
    )?;
    if let Some(table) = &weights.class_table {
        let h = config.hidden_size;
        // SAFETY: arena views and weights (see the module docs of `forward`); the labels are
        // validated to index the table's rows (the null class included).
        unsafe {
            ops.add_class_embedding(buffers.condition, table.slice(), buffers.labels, batch, h)
        }?;
    }
    if let (Some(mlp), Some(classes)) = (&weights.class_mlp, config.num_classes) {
        // SAFETY: arena views (see the module docs of `forward`).
        unsafe { ops.class_onehot(buffers.labels, buffers.onehot, batch, classes) }?;
        small_mlp(
            ops,
            mlp,
            buffers.onehot,
            buffers.class_hidden,
            buffers.condition,
            batch,
            SmallLinearOutput::Accumulate,
        )?;
    }
    Ok(())
}

/// The timestep features of the flavor: dit's 256 fixed frequencies, edifice's h/2 sines
/// and cosines of t / num_steps.
fn timestep_features(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let (ops, config) = (ctx.ops, ctx.config);
    let buffers = &arena.buffers;
    let (t, features, batch) = (buffers.timesteps, buffers.features, arena.batch);
    match config.flavor {
        Flavor::Edifice => {
            let half = config.hidden_size / 2;
            let num_steps = config.num_steps as f32;
            // SAFETY: arena views (see the module docs of `forward`).
            unsafe { ops.timestep_features_edifice(t, features, batch, half, num_steps) }
        }
        // SAFETY: arena views (see the module docs of `forward`).
        Flavor::Dit => unsafe { ops.timestep_features_dit(t, features, batch) },
    }
}

/// Every block's modulation in one launch: adaLN(a(c)), a = SiLU for dit.
fn block_modulation(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<BlockModulation> {
    let (weights, config) = (ctx.weights, ctx.config);
    let buffers = &arena.buffers;
    let modulation = BlockModulation::new(buffers.modulation, config);
    let input = match config.flavor {
        Flavor::Dit => SmallLinearInput::Silu,
        Flavor::Edifice => SmallLinearInput::Plain,
    };
    let params = SmallLinear {
        x: buffers.condition,
        weight: weights.adaln_weight.slice(),
        bias: weights.adaln_bias.slice(),
        out: buffers.modulation,
        rows: arena.batch,
        inputs: config.hidden_size,
        outputs: modulation.stride(),
        input,
        output: SmallLinearOutput::Overwrite,
    };
    // SAFETY: arena views and weights (see the module docs of `forward`).
    unsafe { ctx.ops.small_linear(params) }?;
    Ok(modulation)
}

/// Block `index`'s two norm affines: its modulation folded with its norms' γ, β (edifice).
fn block_affines(
    ctx: &ForwardContext<'_>,
    arena: &ForwardArena,
    modulation: &BlockModulation,
    index: usize,
) -> Result<()> {
    let norms = ctx.weights.blocks[index].norms.as_ref();
    let (norm1, norm2) = match norms {
        Some([gamma1, beta1, gamma2, beta2]) => (
            Some(norm_weights(gamma1, beta1)),
            Some(norm_weights(gamma2, beta2)),
        ),
        None => (None, None),
    };
    let attention = modulation.norm_columns(index, Branch::Attention)?;
    affine(ctx, arena, 2 * index, Some(attention), norm1)?;
    let mlp = modulation.norm_columns(index, Branch::Mlp)?;
    affine(ctx, arena, 2 * index + 1, Some(mlp), norm2)
}

/// The final norm's affine: dit's final adaLN (SiLU input) and its shift and scale, or
/// edifice's plain affine norm.
fn final_affine(ctx: &ForwardContext<'_>, arena: &ForwardArena) -> Result<()> {
    let weights = ctx.weights;
    let buffers = &arena.buffers;
    let pair = 2 * ctx.config.num_layers;
    match (&weights.final_adaln, &weights.final_norm) {
        (Some(adaln), _) => {
            small_layer(
                ctx.ops,
                adaln,
                buffers.condition,
                buffers.final_modulation,
                arena.batch,
                SmallLinearInput::Silu,
                SmallLinearOutput::Overwrite,
            )?;
            let columns = final_norm_columns(buffers.final_modulation, ctx.config.hidden_size);
            affine(ctx, arena, pair, Some(columns), None)
        }
        (None, Some([gamma, beta])) => {
            affine(ctx, arena, pair, None, Some(norm_weights(gamma, beta)))
        }
        (None, None) => Ok(()),
    }
}

/// A norm's γ and β as launch arguments.
fn norm_weights(gamma: &DeviceArray<Storage>, beta: &DeviceArray<Storage>) -> NormWeights {
    NormWeights {
        gamma: gamma.slice(),
        beta: beta.slice(),
    }
}

/// Affine pair `pair` of the arena from `modulation` and `norm`.
fn affine(
    ctx: &ForwardContext<'_>,
    arena: &ForwardArena,
    pair: usize,
    modulation: Option<ModulationColumns>,
    norm: Option<NormWeights>,
) -> Result<()> {
    let (batch, h) = (arena.batch, ctx.config.hidden_size);
    let (scale_out, shift_out) = arena.buffers.affine(pair, batch, h)?;
    let params = ModulationAffine {
        modulation,
        norm,
        scale_out,
        shift_out,
        samples: batch,
        hidden: h,
    };
    // SAFETY: arena views and weights (see the module docs of `forward`).
    unsafe { ctx.ops.modulation_affine(params) }
}

/// `out (+)= a(x) Wᵀ + b` for one Linear on a few fp32 rows.
fn small_layer(
    ops: &Ops,
    linear: &DeviceLinear,
    x: DeviceSlice<f32>,
    out: DeviceSlice<f32>,
    rows: usize,
    input: SmallLinearInput,
    output: SmallLinearOutput,
) -> Result<()> {
    let params = SmallLinear {
        x,
        weight: linear.weight.slice(),
        bias: linear.bias.slice(),
        out,
        rows,
        inputs: linear.inp,
        outputs: linear.out,
        input,
        output,
    };
    // SAFETY: arena views and weights (see the module docs of `forward`).
    unsafe { ops.small_linear(params) }
}

/// `out (+)= SiLU(x W0ᵀ + b0) W1ᵀ + b1` on a few fp32 rows: the timestep and class MLPs.
fn small_mlp(
    ops: &Ops,
    (first, second): &(DeviceLinear, DeviceLinear),
    x: DeviceSlice<f32>,
    hidden: DeviceSlice<f32>,
    out: DeviceSlice<f32>,
    rows: usize,
    output: SmallLinearOutput,
) -> Result<()> {
    use SmallLinearInput::{Plain, Silu};
    small_layer(
        ops,
        first,
        x,
        hidden,
        rows,
        Plain,
        SmallLinearOutput::Overwrite,
    )?;
    small_layer(ops, second, hidden, out, rows, Silu, output)
}
