//! Batched timestep evaluation, on every device: one batch mixing timesteps and classes
//! gives each sample what it gets when run alone, so samples never interact. On the CPU
//! exactly (bit for bit: the rounding of one sample never depends on what shares its batch;
//! the larger shapes take the GEMM's multi-threaded path when run alone and the
//! per-sample-parallel path batched); on a GPU within 1e-5 (`common::devices`).

mod common;

use common::devices::{TestDevice, devices};
use common::{pseudo_random, rel_error};
use linear_dit::{Config, Flavor, InitKind, Input, Tensor, Weights};

fn check(flavor: Flavor, hidden: usize, n: usize) {
    for device in devices() {
        check_on(&device, flavor, hidden, n);
    }
}

fn check_on(device: &TestDevice, flavor: Flavor, hidden: usize, n: usize) {
    let config = Config {
        hidden_size: hidden,
        num_layers: 2,
        num_heads: 4,
        num_classes: Some(5),
        flavor,
        ..Config::new(8)
    };
    let model = device.model(&Weights::init(&config, InitKind::Random, 3).unwrap());
    let label = device.label;
    let (b, d) = (5, 8);
    let x = Tensor::new(vec![b, n, d], pseudo_random(b * n * d, 11, 1.5)).unwrap();
    let t = [0.0, 999.0, 250.5, 13.0, 600.0];
    let y = [0, 5, 2, 4, 1];
    let together = model.forward(&Input::new(&x, &t).with_labels(&y)).unwrap();
    for i in 0..b {
        let xi = Tensor::new(vec![1, n, d], x.data()[i * n * d..(i + 1) * n * d].to_vec()).unwrap();
        let alone = model
            .forward(&Input::new(&xi, &t[i..=i]).with_labels(&y[i..=i]))
            .unwrap();
        let part = &together.data()[i * n * d..(i + 1) * n * d];
        let max_diff = part
            .iter()
            .zip(alone.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if device.batch_tolerance == 0.0 {
            assert_eq!(
                part,
                alone.data(),
                "{flavor} on {label}: sample {i} differs by up to {max_diff}"
            );
        } else {
            let err = rel_error(part, alone.data());
            assert!(
                err <= device.batch_tolerance,
                "{flavor} on {label}: sample {i}: {err:.3e} (max difference {max_diff})"
            );
        }
    }
}

#[test]
fn mixed_batch_equals_per_sample_runs_dit() {
    check(Flavor::Dit, 32, 36);
    check(Flavor::Dit, 128, 100);
}

#[test]
fn mixed_batch_equals_per_sample_runs_edifice() {
    check(Flavor::Edifice, 32, 36);
    check(Flavor::Edifice, 128, 100);
}
