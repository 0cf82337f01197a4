//! The fixed embeddings of the `sana` flavor, computed the way diffusers computes them (the
//! precision of each step matters at the 1e-4 contract: the timestep sinusoid is f32 in
//! diffusers even for an f64 model).

use super::tensors::TIME_FREQUENCY_WIDTH;

/// diffusers' `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)` of `t`:
/// `[cos(t·f_k) …, sin(t·f_k) …]` with `f_k = exp(−ln(10⁴)·k/128)`, all in f32 as
/// `get_timestep_embedding` computes it. torch's f32 `exp`, `sin` and `cos` are (nearly
/// always) correctly rounded, which the libm f32 functions are not: at t ≈ 1000 one ulp of
/// f_k moves t·f_k by 6e-5, so each is evaluated in f64 and rounded once to f32.
pub fn timestep_features(t: f32) -> [f32; TIME_FREQUENCY_WIDTH] {
    let half = TIME_FREQUENCY_WIDTH / 2;
    let mut out = [0.0f32; TIME_FREQUENCY_WIDTH];
    let log_period = -(10_000f64.ln() as f32);
    for k in 0..half {
        let exponent = log_period * k as f32 / half as f32;
        let arg = t * (f64::from(exponent).exp() as f32);
        out[k] = f64::from(arg).cos() as f32;
        out[half + k] = f64::from(arg).sin() as f32;
    }
    out
}

/// diffusers' 2-D sin-cos position embedding (`get_2d_sincos_pos_embed`) for a token grid of
/// `rows × cols`, `[rows·cols, width]` row-major over the grid: the first half of each row
/// encodes the column coordinate, the second half the row coordinate (diffusers' meshgrid
/// puts w first), each as `[sin(pos·ω_k) …, cos(pos·ω_k) …]` with `ω_k = 10⁴^(−k/(width/4))`
/// in f64; positions are `index / (n / base) / interpolation_scale` in f32.
pub fn sincos_positions(
    rows: usize,
    cols: usize,
    width: usize,
    base: usize,
    interpolation_scale: f64,
) -> Vec<f32> {
    let quarter = width / 4;
    let position = |index: usize, n: usize| {
        // torch: arange(n, f32) / (n / base) / scale, each division rounding to f32.
        let step = (n as f64 / base as f64) as f32;
        ((index as f32) / step / interpolation_scale as f32) as f64
    };
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10_000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut out = vec![0.0f32; rows * cols * width];
    for i in 0..rows {
        for j in 0..cols {
            let row = &mut out[(i * cols + j) * width..][..width];
            for (half, pos) in [(0, position(j, cols)), (1, position(i, rows))] {
                let part = &mut row[half * 2 * quarter..][..2 * quarter];
                for (k, &w) in omega.iter().enumerate() {
                    part[k] = (pos * w).sin() as f32;
                    part[quarter + k] = (pos * w).cos() as f32;
                }
            }
        }
    }
    out
}
