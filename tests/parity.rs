//! Every device against the float64 PyTorch reference (`python/reference.py`), on the
//! committed fixtures: for every flavor, with and without classes, square and non-square
//! grids, F32/BF16/F16 storage and Axon names. The CPU backend (always run) must be within
//! 1e-5 relative Frobenius error; a GPU within its precision's tolerance
//! (`common::devices`).

mod common;

use common::devices::devices;
use common::{load_fixture, pseudo_random, rel_error};
use linear_dit::{Config, Device, Flavor, Grid, InitKind, Input, Model, Tensor, Weights};

fn check(name: &str) {
    let f = load_fixture(name);
    let mut input = Input::new(&f.x, &f.t).with_grid(f.grid);
    if let Some(y) = &f.y {
        input = input.with_labels(y);
    }
    for device in devices() {
        let out = device.model(&f.weights).forward(&input).unwrap();
        assert_eq!(out.shape(), f.eps.shape(), "{name}: output shape");
        let err = rel_error(out.data(), f.eps.data());
        let (label, tolerance) = (device.label, device.tolerance);
        println!("{name} on {label}: relative error {err:.3e}");
        assert!(
            err <= tolerance,
            "{name} on {label}: relative error {err:.3e} > {tolerance:e}"
        );
    }
}

#[test]
fn dit_unconditional() {
    check("dit_uncond");
}

#[test]
fn dit_with_classes_on_a_non_square_grid() {
    check("dit_class");
}

#[test]
fn dit_bf16_weights() {
    check("dit_bf16");
}

#[test]
fn edifice_unconditional() {
    check("edifice_uncond");
}

#[test]
fn edifice_with_classes_and_null_labels() {
    check("edifice_class");
}

#[test]
fn edifice_odd_hidden_size_f16_weights() {
    check("edifice_odd");
}

#[test]
fn edifice_axon_names_without_metadata() {
    check("edifice_axon");
}

/// Shapes the fixtures do not cover (a single token row, N = 4097 past every chunk size,
/// h = 256 across 4 heads), each device against the CPU backend.
#[test]
fn every_device_matches_the_cpu_backend_on_ragged_shapes() {
    for flavor in [Flavor::Dit, Flavor::Edifice] {
        let config = Config {
            hidden_size: 256,
            num_layers: 3,
            num_heads: 4,
            num_classes: Some(10),
            flavor,
            ..Config::new(16)
        };
        let weights = Weights::init(&config, InitKind::Random, 21).unwrap();
        let cpu = Model::new(&weights, Device::Cpu).unwrap();
        let models: Vec<_> = devices()
            .into_iter()
            .filter(|device| device.device != Device::Cpu)
            .map(|device| (device.model(&weights), device))
            .collect();
        for (batch, tokens, grid) in [
            (3, 64, Grid::new(8, 8)),
            (2, 7, Grid::new(1, 7)),
            (1, 4097, Grid::new(17, 241)),
        ] {
            let x = Tensor::new(
                vec![batch, tokens, 16],
                pseudo_random(batch * tokens * 16, 3, 1.5),
            )
            .unwrap();
            let t: Vec<f32> = (0..batch).map(|i| (i * 331 % 1000) as f32 + 0.5).collect();
            let y: Vec<i64> = (0..batch).map(|i| (i % 11) as i64).collect();
            let input = Input::new(&x, &t).with_labels(&y).with_grid(grid);
            let reference = cpu.forward(&input).unwrap();
            for (model, device) in &models {
                let err = rel_error(model.forward(&input).unwrap().data(), reference.data());
                let (label, tolerance) = (device.label, device.tolerance);
                println!("{flavor} on {label}, B={batch} N={tokens}: relative error {err:.2e}");
                assert!(
                    err <= tolerance,
                    "{flavor} on {label}, B={batch} N={tokens}: {err:.3e} > {tolerance:e}"
                );
            }
        }
    }
}
