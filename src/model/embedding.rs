//! The fixed (parameter-free) embeddings of SPEC: the 2-D sin-cos token positions and the
//! timestep frequency features of each flavor. Computed in f64 and rounded once to f32, so
//! every backend starts from the same values.

use crate::model::{Config, Flavor, Grid};

/// Frequencies of the `dit` timestep embedding (DiT's `frequency_embedding_size` 256 is
/// twice this: a cosine and a sine per frequency). The kernel's `LDT_DIT_TIMESTEP_FREQUENCIES`
/// must agree (checked by a test of the CUDA backend).
pub const DIT_TIMESTEP_FREQUENCIES: usize = 128;

/// Width of the timestep frequency features of `config`: `2·128` for `dit`, `2·⌊h/2⌋` for
/// `edifice` (cosine and sine halves).
pub fn timestep_feature_width(config: &Config) -> usize {
    2 * timestep_frequencies(config)
}

/// Frequencies (half the feature width) of `config`'s timestep embedding.
fn timestep_frequencies(config: &Config) -> usize {
    match config.flavor {
        Flavor::Dit => DIT_TIMESTEP_FREQUENCIES,
        Flavor::Edifice => config.hidden_size / 2,
    }
}

/// `dit` positions `P [N, h]`: `P[n] = concat(sc(h/2, col), sc(h/2, row))` with
/// `sc(E, p) = concat(sin(p·ω), cos(p·ω))`, `ω_i = 10000^(−i/(E/2))` (MAE/DiT's
/// `get_2d_sincos_pos_embed`, grid order row-major).
pub fn sincos_positions(hidden: usize, grid: Grid) -> Vec<f32> {
    let quarter = hidden / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 10000f64.powf(-(i as f64) / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(grid.tokens() * hidden);
    for row in 0..grid.rows {
        for col in 0..grid.cols {
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}

/// The timestep frequency features of one sample, width [`Config::time_freq_dim`].
///
/// - `dit`: half = 128, `concat(cos(t·ω), sin(t·ω))`, `ω_i = exp(−ln(10000)·i/half)`, t
///   unscaled.
/// - `edifice`: half = ⌊h/2⌋, `ω_i = exp(−ln(10000)·i/max(half−1, 1))`, τ = t/num_steps,
///   `concat(sin(τ·ω), cos(τ·ω))`.
pub fn timestep_features(config: &Config, t: f32, out: &mut [f32]) {
    let t = t as f64;
    let ln_10000 = 10000f64.ln();
    let half = timestep_frequencies(config);
    match config.flavor {
        Flavor::Dit => {
            for i in 0..half {
                let arg = t * (-ln_10000 * i as f64 / half as f64).exp();
                out[i] = arg.cos() as f32;
                out[half + i] = arg.sin() as f32;
            }
        }
        Flavor::Edifice => {
            let tau = t / config.num_steps as f64;
            let denom = (half.saturating_sub(1)).max(1) as f64;
            for i in 0..half {
                let arg = tau * (-ln_10000 * i as f64 / denom).exp();
                out[i] = arg.sin() as f32;
                out[half + i] = arg.cos() as f32;
            }
        }
    }
}
