//! Helpers the crate's unit tests share (the integration tests have `tests/common`).

use crate::rng::NormalStream;

/// A deterministic pseudo-random vector, uniform in [-scale, scale].
pub fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let stream = NormalStream::new(seed, 0);
    (0..n as u64)
        .map(|i| (stream.uniform_at(i) as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// ‖got − expected‖ / ‖expected‖ (Frobenius), in f64.
pub fn rel_error(got: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(got.len(), expected.len(), "length mismatch");
    let diff: f64 = got
        .iter()
        .zip(expected)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let norm: f64 = expected.iter().map(|&b| (b as f64).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}
