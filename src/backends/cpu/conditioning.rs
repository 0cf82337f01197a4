//! The condition vector `c [B, h]` of each sample: timestep MLP plus class embedding, and the
//! per-sample modulation vectors the blocks and the final layer derive from it.

use super::activation::silu;
use super::linear::linear_rows;
use super::norm::NormAffine;
use super::params::{BlockParams, ClassEmbedding, CpuParams, FinalNorm, Linear, NormParams};
use crate::model::Flavor;
use crate::model::adaln::{BLOCK_CHUNKS, BlockChunk, FINAL_CHUNKS, FinalChunk};
use crate::model::embedding::timestep_features;

/// Applies SiLU to every value.
pub fn silu_in_place(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = silu(*v));
}

/// `mlp.2(SiLU(mlp.0(x)))`.
fn mlp(x: &[f32], rows: usize, first: &Linear, second: &Linear) -> Vec<f32> {
    let mut hidden = linear_rows(x, rows, first);
    silu_in_place(&mut hidden);
    linear_rows(&hidden, rows, second)
}

/// The condition `c = t_emb(t) + y_emb(y)` for every sample, `[B, h]`, before the flavor's
/// activation `a` (SiLU for `dit`, identity for `edifice`).
pub fn condition(params: &CpuParams, t: &[f32], y: Option<&[i64]>) -> Vec<f32> {
    let config = &params.config;
    let (batch, h) = (t.len(), config.hidden_size);
    let f = config.time_freq_dim();
    let mut features = vec![0.0f32; batch * f];
    for (row, &t) in features.chunks_mut(f).zip(t) {
        timestep_features(config, t, row);
    }
    let mut c = mlp(&features, batch, &params.t_mlp.0, &params.t_mlp.1);
    match (&params.class, y) {
        (ClassEmbedding::Table(table), Some(y)) => {
            for (row, &label) in c.chunks_mut(h).zip(y) {
                let label = label as usize;
                let emb = &table.as_slice()[label * h..(label + 1) * h];
                row.iter_mut().zip(emb).for_each(|(c, e)| *c += e);
            }
        }
        (ClassEmbedding::Mlp(first, second), Some(y)) => {
            let classes = first.inp;
            let mut onehot = vec![0.0f32; batch * classes];
            for (row, &label) in onehot.chunks_mut(classes).zip(y) {
                if (0..classes as i64).contains(&label) {
                    row[label as usize] = 1.0;
                }
            }
            let emb = mlp(&onehot, batch, first, second);
            c.iter_mut().zip(&emb).for_each(|(c, e)| *c += e);
        }
        _ => {}
    }
    c
}

/// `a(c)`: SiLU for `dit`, identity for `edifice` (SPEC, "The block").
pub fn activate_condition(flavor: Flavor, mut c: Vec<f32>) -> Vec<f32> {
    if flavor.silu_before_adaln() {
        silu_in_place(&mut c);
    }
    c
}

/// The per-sample modulation of one block, from `adaLN(a(c))`.
pub struct BlockModulation {
    /// Before attention.
    pub norm1: NormAffine,
    /// Attention residual gate `[B, h]`.
    pub gate1: Vec<f32>,
    /// Before the MLP.
    pub norm2: NormAffine,
    /// MLP residual gate `[B, h]`.
    pub gate2: Vec<f32>,
}

/// `[shift1, scale1, gate1, shift2, scale2, gate2] = split6(adaLN(a(c)))`, folded with the
/// block's LayerNorm affine (if any) into the `scale`/`shift` form of [`NormAffine`].
pub fn block_modulation(
    block: &BlockParams,
    c_act: &[f32],
    batch: usize,
    h: usize,
    eps: f32,
) -> BlockModulation {
    let m = linear_rows(c_act, batch, &block.adaln);
    let part = |chunk: BlockChunk| column_chunk(&m, BLOCK_CHUNKS * h, chunk.column(h), h);
    let (norm1, norm2) = match &block.norms {
        Some((n1, n2)) => (Some(n1), Some(n2)),
        None => (None, None),
    };
    BlockModulation {
        norm1: modulated(
            norm1,
            &part(BlockChunk::ShiftAttention),
            &part(BlockChunk::ScaleAttention),
            h,
            eps,
        ),
        gate1: part(BlockChunk::GateAttention),
        norm2: modulated(
            norm2,
            &part(BlockChunk::ShiftMlp),
            &part(BlockChunk::ScaleMlp),
            h,
            eps,
        ),
        gate2: part(BlockChunk::GateMlp),
    }
}

/// The final layer's normalisation: `dit` modulated by `[shift, scale]` of its adaLN,
/// `edifice` a plain affine LayerNorm.
pub fn final_modulation(params: &CpuParams, c_act: &[f32], batch: usize, eps: f32) -> NormAffine {
    let h = params.config.hidden_size;
    match &params.final_norm {
        FinalNorm::Modulated(adaln) => {
            let m = linear_rows(c_act, batch, adaln);
            let part = |chunk: FinalChunk| column_chunk(&m, FINAL_CHUNKS * h, chunk.column(h), h);
            modulated(
                None,
                &part(FinalChunk::Shift),
                &part(FinalChunk::Scale),
                h,
                eps,
            )
        }
        FinalNorm::Affine(norm) => NormAffine {
            scale: norm.weight.as_slice().repeat(batch),
            shift: norm.bias.as_slice().repeat(batch),
            eps,
        },
    }
}

/// Columns `[column, column + width)` of every `row_width`-wide row of `rows`, packed.
fn column_chunk(rows: &[f32], row_width: usize, column: usize, width: usize) -> Vec<f32> {
    rows.chunks(row_width)
        .flat_map(|row| &row[column..column + width])
        .copied()
        .collect()
}

/// `LN(x)·γ + β` then `·(1 + scale) + shift` as one affine: scale' = γ(1 + s), shift' = β(1 + s) + t.
pub(crate) fn modulated(
    norm: Option<&NormParams>,
    shift: &[f32],
    scale: &[f32],
    h: usize,
    eps: f32,
) -> NormAffine {
    let affine = norm.map(|n| (n.weight.as_slice(), n.bias.as_slice()));
    modulated_affine(affine, shift, scale, h, eps)
}

/// [`modulated`] on plain slices: `affine` is (γ, β) of an affine LayerNorm.
pub(crate) fn modulated_affine(
    affine: Option<(&[f32], &[f32])>,
    shift: &[f32],
    scale: &[f32],
    h: usize,
    eps: f32,
) -> NormAffine {
    let mut out_scale = Vec::with_capacity(shift.len());
    let mut out_shift = Vec::with_capacity(shift.len());
    for (i, (&t, &s)) in shift.iter().zip(scale).enumerate() {
        let (gamma, beta) = match affine {
            Some((g, b)) => (g[i % h], b[i % h]),
            None => (1.0, 0.0),
        };
        out_scale.push(gamma * (1.0 + s));
        out_shift.push(beta * (1.0 + s) + t);
    }
    NormAffine {
        scale: out_scale,
        shift: out_shift,
        eps,
    }
}
