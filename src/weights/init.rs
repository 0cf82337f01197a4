//! Seeded weight initialisation: DiT's AdaLN-Zero scheme, and a `random` scheme in which every
//! tensor is non-zero (for tests and benchmarks, where a zero layer would hide bugs).

use crate::error::Result;
use crate::model::Config;
use crate::model::tensors::{Role, TensorSpec, tensor_layout};
use crate::rng::NormalStream;
use rayon::prelude::*;

/// How to initialise weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitKind {
    /// AdaLN-Zero (SPEC): adaLN and final-layer weights and biases zero, other linears
    /// Xavier-uniform with zero bias, timestep MLP and class table normal(0, 0.02). For the
    /// `edifice` flavor (which SPEC leaves open): class MLP weights as the timestep MLP's,
    /// LayerNorms γ = 1, β = 0, `pos_embed` zero — as `python/reference.py` does.
    #[default]
    Dit,
    /// Every tensor non-zero, scaled so each layer contributes: weights normal(0, 1/fan_in),
    /// biases normal(0, 0.1²), LayerNorm gammas 1 + normal(0, 0.1²).
    Random,
}

impl std::str::FromStr for InitKind {
    type Err = crate::error::ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dit" => Ok(InitKind::Dit),
            "random" => Ok(InitKind::Random),
            other => Err(crate::error::ParseError::new(
                "init",
                other,
                "dit or random",
            )),
        }
    }
}

/// Values for every tensor of `layout`, in layout order. Tensor `i` draws from stream `i`
/// of `seed`, so the result does not depend on the number of threads.
pub fn init_tensors(
    layout: Vec<TensorSpec>,
    kind: InitKind,
    seed: u64,
) -> Vec<(TensorSpec, Vec<f32>)> {
    layout
        .into_par_iter()
        .enumerate()
        .map(|(i, spec)| {
            let values = init_one(&spec, kind, NormalStream::new(seed, i as u64));
            (spec, values)
        })
        .collect()
}

/// The layout of `config`, after checking that initialising it fits the allocation budget:
/// every parameter as f32 (4 bytes), plus the largest tensor's byte copy in flight while the
/// values become file tensors.
pub fn planned_layout(config: &Config) -> Result<Vec<TensorSpec>> {
    let params = config.param_count()?;
    let layout = tensor_layout(config)?;
    let largest = layout.iter().map(TensorSpec::numel).max().unwrap_or(0);
    crate::limits::check_alloc(
        "init",
        (u128::from(params) + largest as u128).saturating_mul(4),
    )?;
    Ok(layout)
}

fn init_one(spec: &TensorSpec, kind: InitKind, stream: NormalStream) -> Vec<f32> {
    let n = spec.numel();
    let normal = |std: f32, mean: f32| {
        let mut v = vec![0.0f32; n];
        v.par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(c, chunk)| {
                stream.fill((c as u64) << 16, chunk);
                chunk.iter_mut().for_each(|x| *x = mean + std * *x);
            });
        v
    };
    let fan_in = spec.shape.last().copied().unwrap_or(1) as f32;
    let matrix = spec.shape.len() == 2;
    match kind {
        InitKind::Dit => match spec.role {
            Role::ZeroInit | Role::Bias | Role::NormBias | Role::PosEmbed => vec![0.0; n],
            Role::NormWeight => vec![1.0; n],
            Role::Embedding => normal(0.02, 0.0),
            Role::Linear => {
                // Xavier-uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
                let fan_out = spec.shape[0] as f64;
                let a = (6.0 / (fan_in as f64 + fan_out)).sqrt();
                (0..n as u64)
                    .map(|i| ((2.0 * stream.uniform_at(i) - 1.0) * a) as f32)
                    .collect()
            }
        },
        InitKind::Random => match spec.role {
            Role::NormWeight => normal(0.1, 1.0),
            _ if matrix => normal(1.0 / fan_in.sqrt(), 0.0),
            _ => normal(0.1, 0.0),
        },
    }
}
