//! The CPU backend: f32 throughout, the reference every other backend is checked against and
//! the fallback where no GPU is usable. Multi-threaded with rayon (the calling thread's pool);
//! GEMMs through the `gemm` crate; elementwise work fused into the passes around them.

pub(crate) mod activation;
pub(crate) mod attention;
#[cfg(test)]
mod attention_reference;
mod block;
pub(crate) mod conditioning;
mod gemm;
pub(crate) mod linear;
pub(crate) mod norm;
pub(crate) mod params;
pub(crate) mod sana;

pub use block::Block;
pub(crate) use sana::SanaCpu;

use super::Backend;
use crate::error::Result;
use crate::model::embedding::sincos_positions;
use crate::model::position_cache::{DEFAULT_POSITION_CACHE_BYTES, PositionCache};
use crate::model::{ForwardShape, Grid, Input};
use crate::tensor::Tensor;
use crate::weights::Weights;
use block::{Workspace, run_block};
use conditioning::{activate_condition, block_modulation, condition, final_modulation};
use linear::linear_into;
use norm::norm_rows;
use params::CpuParams;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// The CPU backend for one set of weights. `Send + Sync`: one instance serves any number of
/// threads; each forward allocates its own scratch space.
pub struct CpuBackend {
    params: CpuParams,
    /// `dit` position embeddings per grid (`[N, h]`), the most recently used up to
    /// [`DEFAULT_POSITION_CACHE_BYTES`].
    positions: Mutex<PositionCache<Vec<f32>>>,
}

impl CpuBackend {
    /// Prepares `weights` (zero-copy where the file stores aligned F32).
    pub fn new(weights: &Weights) -> Result<Self> {
        Ok(CpuBackend {
            params: CpuParams::load(weights)?,
            positions: Mutex::new(PositionCache::new(DEFAULT_POSITION_CACHE_BYTES)),
        })
    }

    /// Adds the position embedding to every token of `x`: the learned vector (`edifice`) or
    /// the 2-D sin-cos table of the grid (`dit`).
    fn add_positions(&self, x: &mut [f32], shape: ForwardShape) {
        let h = self.params.config.hidden_size;
        let add = |x: &mut [f32], p: &[f32]| x.iter_mut().zip(p).for_each(|(x, p)| *x += p);
        match &self.params.pos_embed {
            Some(vector) => x
                .par_chunks_mut(h)
                .for_each(|row| add(row, vector.as_slice())),
            None => {
                let table = self.positions(shape.grid);
                x.par_chunks_mut(h)
                    .enumerate()
                    .for_each(|(row, x)| add(x, &table[(row % shape.tokens) * h..][..h]));
            }
        }
    }

    fn positions(&self, grid: Grid) -> Arc<Vec<f32>> {
        let h = self.params.config.hidden_size;
        let bytes = grid.tokens() * h * size_of::<f32>();
        let mut cache = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        cache.get_or_insert_with(grid, bytes, || sincos_positions(h, grid))
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn describe(&self) -> String {
        format!("cpu (f32, {} threads)", rayon::current_num_threads())
    }

    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> Result<Tensor> {
        let params = &self.params;
        let config = &params.config;
        let (batch, tokens, h) = (shape.batch, shape.tokens, config.hidden_size);
        let rows = batch * tokens;
        let eps = config.flavor.layer_norm_eps();

        let c = activate_condition(config.flavor, condition(params, input.t, input.y));
        let modulations: Vec<_> = params
            .blocks
            .iter()
            .map(|block| block_modulation(block, &c, batch, h, eps))
            .collect();
        let final_norm = final_modulation(params, &c, batch, eps);

        let mut x = vec![0.0f32; rows * h];
        linear_into(
            input.x.data(),
            batch,
            tokens,
            &params.x_embedder,
            &mut x,
            true,
        );
        self.add_positions(&mut x, shape);

        let mut u = vec![0.0f32; rows * h];
        let mut ws = Workspace::new(config, rows);
        let first = modulations.first().map_or(&final_norm, |m| &m.norm1);
        norm_rows(&x, &mut u, h, tokens, first);
        for (i, (block, modulation)) in params.blocks.iter().zip(&modulations).enumerate() {
            let next = modulations.get(i + 1).map_or(&final_norm, |m| &m.norm1);
            run_block(
                block,
                config,
                batch,
                tokens,
                &mut x,
                &mut u,
                modulation,
                Some(next),
                &mut ws,
            );
        }
        let mut out = vec![0.0f32; rows * config.input_dim];
        linear_into(&u, batch, tokens, &params.final_linear, &mut out, true);
        Tensor::new(vec![batch, tokens, config.input_dim], out)
    }
}
