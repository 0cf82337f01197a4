//! One Linear DiT block on the CPU, fused around its four GEMMs:
//!
//! ```text
//! u            = LN1(x)·(1+scale1) + shift1            (done by the previous pass)
//! qkv          = u Wqkvᵀ + b                          GEMM (bias pre-filled)
//! a            = LinAttn(qkv)                          φ fused, streamed
//! p            = a Wprojᵀ                              GEMM
//! x += gate1·(p + b);  v = LN2(x)·(1+scale2) + shift2  one pass
//! g            = GELU(v W1ᵀ + b1)                      GEMM, then one pass
//! o            = g W2ᵀ                                 GEMM
//! x += gate2·(o + b2); u' = next norm of x             one pass (next block or final layer)
//! ```
//!
//! [`Block`] is the public, stand-alone form (Edifice's `build_linear_dit_block`).

use super::activation::{gelu_erf, gelu_tanh};
use super::attention::{AttentionShape, linear_attention};
use super::conditioning::{BlockModulation, activate_condition, block_modulation};
use super::linear::linear_into;
use super::norm::{NormAffine, norm_rows, residual_rows};
use super::params::BlockParams;
use crate::error::{Error, Result};
use crate::model::{Config, Gelu};
use crate::tensor::Tensor;
use crate::weights::Weights;
use rayon::prelude::*;

/// Scratch buffers of one forward, reused by every block.
pub struct Workspace {
    qkv: Vec<f32>,
    attention: Vec<f32>,
    hidden_out: Vec<f32>,
    mlp: Vec<f32>,
}

impl Workspace {
    /// Buffers for `rows` tokens of `config`'s model.
    pub fn new(config: &Config, rows: usize) -> Self {
        let h = config.hidden_size;
        Workspace {
            qkv: vec![0.0; rows * 3 * h],
            attention: vec![0.0; rows * h],
            hidden_out: vec![0.0; rows * h],
            mlp: vec![0.0; rows * config.mlp_hidden()],
        }
    }
}

/// Runs one block on the residual stream `x` (`[B·N, h]`). On entry `u` holds the block's
/// first modulated norm of `x`; on exit `x` is updated and, when `next` is given, `u` holds
/// `next`'s normalisation of the new `x`.
#[allow(clippy::too_many_arguments)]
pub fn run_block(
    block: &BlockParams,
    config: &Config,
    batch: usize,
    tokens: usize,
    x: &mut [f32],
    u: &mut [f32],
    modulation: &BlockModulation,
    next: Option<&NormAffine>,
    ws: &mut Workspace,
) {
    let h = config.hidden_size;
    linear_into(u, batch, tokens, &block.qkv, &mut ws.qkv, true);
    let shape = AttentionShape {
        batch,
        tokens,
        heads: config.num_heads,
        head_dim: config.head_dim(),
    };
    linear_attention(&ws.qkv, &mut ws.attention, shape);
    linear_into(
        &ws.attention,
        batch,
        tokens,
        &block.proj,
        &mut ws.hidden_out,
        false,
    );
    residual_rows(
        x,
        &ws.hidden_out,
        block.proj.bias.as_slice(),
        &modulation.gate1,
        h,
        tokens,
        Some((&modulation.norm2, &mut *u)),
    );
    linear_into(u, batch, tokens, &block.fc1, &mut ws.mlp, false);
    bias_gelu_rows(&mut ws.mlp, block.fc1.bias.as_slice(), config.flavor.gelu());
    linear_into(
        &ws.mlp,
        batch,
        tokens,
        &block.fc2,
        &mut ws.hidden_out,
        false,
    );
    residual_rows(
        x,
        &ws.hidden_out,
        block.fc2.bias.as_slice(),
        &modulation.gate2,
        h,
        tokens,
        next.map(|n| (n, u)),
    );
}

/// `v = GELU(v + b)` on every row, with the flavor's GELU.
fn bias_gelu_rows(values: &mut [f32], bias: &[f32], gelu: Gelu) {
    let rows = values.par_chunks_mut(bias.len()).with_min_len(4);
    match gelu {
        Gelu::Tanh => rows.for_each(|row| {
            row.iter_mut()
                .zip(bias)
                .for_each(|(v, b)| *v = gelu_tanh(*v + b));
        }),
        Gelu::Erf => rows.for_each(|row| {
            row.iter_mut()
                .zip(bias)
                .for_each(|(v, b)| *v = gelu_erf(*v + b));
        }),
    }
}

/// One Linear DiT block on its own: `x [B, N, h]` and condition `c [B, h]` in, the block's
/// output `[B, N, h]` out. The condition is taken before the flavor's activation (the block
/// applies SiLU for `dit`), as Edifice's `build_linear_dit_block` takes it.
///
/// ```no_run
/// use linear_dit::{Block, Tensor, Weights, ConfigOverrides};
/// let weights = Weights::load("model.safetensors", &ConfigOverrides::default())?;
/// let block = Block::from_weights(&weights, 0)?;
/// let h = weights.config().hidden_size;
/// let x = Tensor::zeros(vec![1, 16, h]);
/// let c = Tensor::zeros(vec![1, h]);
/// let y = block.forward(&x, &c)?;
/// assert_eq!(y.shape(), &[1, 16, h]);
/// # Ok::<(), linear_dit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Block {
    params: BlockParams,
    config: Config,
}

impl Block {
    /// Block `index` (0-based) of `weights`.
    pub fn from_weights(weights: &Weights, index: usize) -> Result<Self> {
        let config = weights.config().clone();
        if index >= config.num_layers {
            return Err(Error::input(
                "block",
                format!(
                    "index {index} is out of range: the model has {} blocks",
                    config.num_layers
                ),
            ));
        }
        Ok(Block {
            params: BlockParams::load(weights, index)?,
            config,
        })
    }

    /// The block's forward; see [`Block`].
    pub fn forward(&self, x: &Tensor, c: &Tensor) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let &[batch, tokens, width] = x.shape() else {
            return Err(Error::input(
                "x",
                format!("must be [B, N, h]; got {:?}", x.shape()),
            ));
        };
        if width != h {
            return Err(Error::input(
                "x",
                format!("has width {width}, the block's hidden_size is {h}"),
            ));
        }
        if c.shape() != [batch, h] {
            return Err(Error::input(
                "c",
                format!("must be [B, h] = [{batch}, {h}]; got {:?}", c.shape()),
            ));
        }
        let eps = self.config.flavor.layer_norm_eps();
        let c_act = activate_condition(self.config.flavor, c.data().to_vec());
        let modulation = block_modulation(&self.params, &c_act, batch, h, eps);
        let mut out = x.data().to_vec();
        let mut u = vec![0.0f32; out.len()];
        norm_rows(&out, &mut u, h, tokens, &modulation.norm1);
        let mut ws = Workspace::new(&self.config, batch * tokens);
        run_block(
            &self.params,
            &self.config,
            batch,
            tokens,
            &mut out,
            &mut u,
            &modulation,
            None,
            &mut ws,
        );
        Tensor::new(vec![batch, tokens, h], out)
    }
}
