//! The CUDA backend against the CPU backend, whole model: both flavors, with classes, ragged
//! token counts; fp32 ≤ 1e-4, fp16 ≤ 5e-3, bf16 ≤ 2e-2 relative error (Frobenius). Also a
//! mixed-timestep batch against per-sample runs, and CUDA-graph replay (counted: a graph must
//! really be captured and replayed) against eager launch. Without a usable GPU every test
//! prints why and passes, unless `LINEAR_DIT_REQUIRE_GPU` is set (`scripts/gpu-check.sh`),
//! which turns every skip into a failure.

mod common;

use common::{pseudo_random, rel_error};
use linear_dit::backends::cuda::{CudaBackend, GraphStats, skip_gpu_test, unavailable_reason};
use linear_dit::{
    Config, Device, Flavor, Grid, InitKind, Input, Model, Precision, Tensor, Weights,
};
use std::sync::Arc;

fn gpu_available() -> bool {
    match unavailable_reason() {
        None => true,
        Some(reason) => {
            skip_gpu_test(&reason);
            false
        }
    }
}

fn weights(flavor: Flavor, hidden: usize, heads: usize) -> Weights {
    let config = Config {
        hidden_size: hidden,
        num_layers: 3,
        num_heads: heads,
        num_classes: Some(10),
        flavor,
        ..Config::new(16)
    };
    Weights::init(&config, InitKind::Random, 21).unwrap()
}

fn inputs(batch: usize, tokens: usize, d: usize) -> (Tensor, Vec<f32>, Vec<i64>) {
    let x = Tensor::new(
        vec![batch, tokens, d],
        pseudo_random(batch * tokens * d, 3, 1.5),
    )
    .unwrap();
    let t = (0..batch).map(|i| (i * 331 % 1000) as f32 + 0.5).collect();
    let y = (0..batch).map(|i| (i % 11) as i64).collect();
    (x, t, y)
}

#[test]
fn whole_model_matches_cpu_in_every_precision() {
    if !gpu_available() {
        return;
    }
    for flavor in [Flavor::Dit, Flavor::Edifice] {
        let w = weights(flavor, 256, 4);
        let cpu = Model::new(&w, Device::Cpu).unwrap();
        for (batch, tokens, grid) in [
            (3, 64, Grid::new(8, 8)),
            (2, 7, Grid::new(1, 7)),
            (1, 4097, Grid::new(17, 241)),
        ] {
            let (x, t, y) = inputs(batch, tokens, 16);
            let input = Input::new(&x, &t).with_labels(&y).with_grid(grid);
            let reference = cpu.forward(&input).unwrap();
            for (precision, tolerance) in [
                (Precision::F32, 1e-4),
                (Precision::F16, 5e-3),
                (Precision::Bf16, 2e-2),
            ] {
                let gpu = Model::with_precision(&w, Device::Cuda, precision).unwrap();
                let out = gpu.forward(&input).unwrap();
                let err = rel_error(out.data(), reference.data());
                println!("{flavor} {precision:?} B={batch} N={tokens}: relative error {err:.2e}");
                assert!(
                    err <= tolerance,
                    "{flavor} {precision:?} B={batch} N={tokens}: {err:.3e} > {tolerance:e}"
                );
            }
        }
    }
}

#[test]
fn mixed_timestep_batch_matches_per_sample_runs() {
    if !gpu_available() {
        return;
    }
    let w = weights(Flavor::Dit, 256, 4);
    let gpu = Model::with_precision(&w, Device::Cuda, Precision::F32).unwrap();
    let (x, t, y) = inputs(5, 64, 16);
    let together = gpu.forward(&Input::new(&x, &t).with_labels(&y)).unwrap();
    for i in 0..5 {
        let n = 64 * 16;
        let xi = Tensor::new(vec![1, 64, 16], x.data()[i * n..(i + 1) * n].to_vec()).unwrap();
        let alone = gpu
            .forward(&Input::new(&xi, &t[i..=i]).with_labels(&y[i..=i]))
            .unwrap();
        let err = rel_error(&together.data()[i * n..(i + 1) * n], alone.data());
        assert!(err <= 1e-5, "sample {i}: {err:.3e}");
    }
}

#[test]
fn graph_replay_equals_eager_launch() {
    if !gpu_available() {
        return;
    }
    let w = weights(Flavor::Dit, 256, 4);
    let config = w.config().clone();
    let eager_backend = Arc::new(CudaBackend::new(&w, Precision::Bf16).unwrap());
    eager_backend.set_graphs(false);
    let eager_model = Model::from_backend(config.clone(), Box::new(eager_backend.clone()));
    let backend = Arc::new(CudaBackend::new(&w, Precision::Bf16).unwrap());
    let model = Model::from_backend(config, Box::new(backend.clone()));
    let (x, t, y) = inputs(4, 256, 16);
    let input = Input::new(&x, &t).with_labels(&y);
    let eager = eager_model.forward(&input).unwrap();
    // First call eager (warm-up), second captures (and launches), third replays.
    let runs: Vec<Tensor> = (0..3).map(|_| model.forward(&input).unwrap()).collect();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(
            run.data(),
            eager.data(),
            "run {i} differs from the eager forward"
        );
    }
    assert_eq!(
        backend.graph_stats(),
        GraphStats {
            captures: 1,
            replays: 2
        },
        "the second forward must capture a graph and the third replay it"
    );
    assert_eq!(eager_backend.graph_stats(), GraphStats::default());
    // Graphs off: the captured graph is not replayed again, and the result does not change.
    backend.set_graphs(false);
    let after = model.forward(&input).unwrap();
    assert_eq!(after.data(), eager.data());
    assert_eq!(
        backend.graph_stats().replays,
        2,
        "a graph ran after set_graphs(false)"
    );
}
