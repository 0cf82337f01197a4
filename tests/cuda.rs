//! What only the CUDA backend has: CUDA-graph replay (counted: a graph must really be
//! captured and replayed) against eager launch. Its numerics are checked by the tests every
//! device runs (`parity.rs`, `batching.rs`, via `common::devices`). Without a usable GPU
//! every test prints why and passes, unless `LINEAR_DIT_REQUIRE_GPU` is set
//! (`scripts/gpu-check.sh`), which turns every skip into a failure.

mod common;

use common::pseudo_random;
use linear_dit::backends::cuda::{CudaBackend, GraphStats, skip_gpu_test, unavailable_reason};
use linear_dit::{Config, DType, Flavor, InitKind, Input, Model, Precision, Tensor, Weights};
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
fn graph_replay_equals_eager_launch() {
    if !gpu_available() {
        return;
    }
    let w = weights(Flavor::Dit, 256, 4);
    let config = w.config().clone();
    let eager_backend = Arc::new(CudaBackend::new(&w, Precision::Fixed(DType::BF16)).unwrap());
    eager_backend.set_graphs(false);
    let eager_model = Model::from_backend(config.clone(), Box::new(eager_backend.clone()));
    let backend = Arc::new(CudaBackend::new(&w, Precision::Fixed(DType::BF16)).unwrap());
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
