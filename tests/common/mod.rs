//! Helpers shared by the integration tests: fixture loading and error measures.
#![allow(dead_code)]

use linear_dit::tensor_file::TensorFile;
use linear_dit::{Config, ConfigOverrides, Grid, InitKind, Tensor, Weights};
use std::path::PathBuf;

pub mod devices;
pub mod digits;
#[cfg(feature = "server")]
pub mod server;

/// `tests/fixtures/<file>`.
pub fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
}

/// One parity fixture written by `python/make_fixtures.py`.
pub struct Fixture {
    pub weights: Weights,
    pub x: Tensor,
    pub t: Vec<f32>,
    pub y: Option<Vec<i64>>,
    pub grid: Grid,
    pub eps: Tensor,
}

/// Loads fixture `name` (its config from metadata, or from `NAME.config.json` when present).
pub fn load_fixture(name: &str) -> Fixture {
    let overrides = match std::fs::read_to_string(fixture(&format!("{name}.config.json"))) {
        Ok(json) => {
            let config = linear_dit::Config::from_json(&json).expect("config json");
            ConfigOverrides::from(&config)
        }
        Err(_) => ConfigOverrides::default(),
    };
    let weights = Weights::load(fixture(&format!("{name}.weights.safetensors")), &overrides)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let io = TensorFile::open(fixture(&format!("{name}.io.safetensors"))).expect("io file");
    let read = |n: &str| Tensor::from_raw(n, &io.tensor(n).expect(n)).expect(n);
    let y = io
        .contains("y")
        .then(|| io.tensor("y").unwrap().to_i64_vec("y").unwrap());
    Fixture {
        weights,
        x: read("x"),
        t: read("t").into_data(),
        y,
        grid: io.metadata()["grid"].parse().expect("grid"),
        eps: read("eps"),
    }
}

/// ‖a − b‖ / ‖b‖ (Frobenius), in f64.
pub fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// A deterministic pseudo-random vector in [-scale, scale].
pub fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let stream = linear_dit::rng::NormalStream::new(seed, 0);
    (0..n as u64)
        .map(|i| (stream.uniform_at(i) as f32 * 2.0 - 1.0) * scale)
        .collect()
}

/// A tiny class-conditional model (h32, 2 layers, 10 classes, D = 4) with `random` weights:
/// fast enough for tests that run many requests.
pub fn tiny_class_conditional(seed: u64) -> Weights {
    let config = Config {
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_classes: Some(10),
        ..Config::new(4)
    };
    Weights::init(&config, InitKind::Random, seed).expect("tiny model")
}
