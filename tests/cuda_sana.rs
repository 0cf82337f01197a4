//! The `sana` flavor on the GPU (`SanaCudaBackend`) against the CPU backend, the f32
//! reference that `sana_parity.rs` holds within 1e-4 of diffusers itself, on the same
//! diffusers fixtures (`tests/fixtures/sana/`). Tolerances are those of the other flavors'
//! GPU tests (`tests/common/devices.rs`), relative Frobenius error against the CPU output:
//! 1e-4 in f32, 5e-3 in f16 (10 mantissa bits), 2e-2 in bf16 (7 bits); a sample inside a
//! mixed batch against the same sample alone: 1e-5 in f32 (GEMM tilings may differ with the
//! batch size), the precision's tolerance in 16 bits.
//!
//! Without a usable GPU every test prints why and passes, unless `LINEAR_DIT_REQUIRE_GPU` is
//! set (`scripts/gpu-check.sh`), which turns every skip into a failure.

mod common;

use common::rel_error;
use linear_dit::backends::cuda::{GraphStats, SanaCudaBackend, skip_gpu_test, unavailable_reason};
use linear_dit::model::sana::{SanaInput, validate_sana};
use linear_dit::tensor_file::TensorFile;
use linear_dit::weights::SanaWeights;
use linear_dit::{DType, Device, Precision, SanaModel, Tensor};
use std::path::PathBuf;

/// (label, precision, tolerance against the CPU, tolerance of a sample in a batch vs alone).
const PRECISIONS: [(&str, DType, f64, f64); 3] = [
    ("cuda f32", DType::F32, 1e-4, 1e-5),
    ("cuda f16", DType::F16, 5e-3, 5e-3),
    ("cuda bf16", DType::BF16, 2e-2, 2e-2),
];

fn gpu_available() -> bool {
    match unavailable_reason() {
        None => true,
        Some(reason) => {
            skip_gpu_test(&reason);
            false
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sana")
        .join(name)
}

/// A fixture's inputs, owned.
struct Inputs {
    x: Tensor,
    t: Tensor,
    captions: Tensor,
    mask: Option<Tensor>,
    guidance: Option<Tensor>,
}

impl Inputs {
    fn load(name: &str) -> Self {
        let file = TensorFile::open(fixture(name).join("input.safetensors")).unwrap();
        let read = |n: &str| {
            file.contains(n)
                .then(|| Tensor::from_raw(n, &file.tensor(n).unwrap()).unwrap())
        };
        Inputs {
            x: read("x").unwrap(),
            t: read("t").unwrap(),
            captions: read("encoder_hidden_states").unwrap(),
            mask: read("encoder_attention_mask"),
            guidance: read("guidance"),
        }
    }

    fn input(&self) -> SanaInput<'_> {
        SanaInput {
            x: &self.x,
            t: self.t.data(),
            captions: &self.captions,
            mask: self.mask.as_ref().map(|m| m.data()),
            guidance: self.guidance.as_ref().map(|g| g.data()),
        }
    }

    /// Sample `b` alone.
    fn sample(&self, b: usize) -> Inputs {
        let one = |t: &Tensor| {
            let mut shape = t.shape().to_vec();
            let per: usize = shape[1..].iter().product();
            shape[0] = 1;
            Tensor::new(shape, t.data()[b * per..(b + 1) * per].to_vec()).unwrap()
        };
        let texts = self.captions.shape()[1];
        Inputs {
            x: one(&self.x),
            t: Tensor::new(vec![1], vec![self.t.data()[b]]).unwrap(),
            captions: one(&self.captions),
            mask: self.mask.as_ref().map(|m| {
                Tensor::new(
                    vec![1, texts],
                    m.data()[b * texts..(b + 1) * texts].to_vec(),
                )
                .unwrap()
            }),
            guidance: self
                .guidance
                .as_ref()
                .map(|g| Tensor::new(vec![1], vec![g.data()[b]]).unwrap()),
        }
    }
}

fn weights(name: &str) -> SanaWeights {
    let folder = match name {
        "sharded_pipeline" => fixture(name),
        _ => fixture(name).join("transformer"),
    };
    SanaWeights::load(folder).unwrap()
}

/// Fixture `name` on every CUDA precision against the CPU backend.
fn check_against_the_cpu(name: &str) {
    if !gpu_available() {
        return;
    }
    let weights = weights(name);
    let inputs = Inputs::load(name);
    let cpu = SanaModel::new(&weights, Device::Cpu).unwrap();
    let reference = cpu.forward(&inputs.input()).unwrap();
    for (label, dtype, tolerance, _) in PRECISIONS {
        let model = SanaModel::on(&weights, Device::Cuda, Precision::Fixed(dtype))
            .unwrap_or_else(|e| panic!("{name} on {label}: {e}"));
        assert_eq!(model.backend_name(), "cuda");
        let out = model.forward(&inputs.input()).unwrap();
        assert_eq!(out.shape(), reference.shape(), "{name} on {label}");
        let err = rel_error(out.data(), reference.data());
        println!("{name} on {label}: relative error {err:.3e} against the CPU");
        assert!(
            err <= tolerance,
            "{name} on {label}: {err:.3e} > {tolerance:e}"
        );
    }
}

#[test]
fn base() {
    check_against_the_cpu("base");
}

#[test]
fn caption_mask_affine_ffn_norm_and_attention_bias() {
    check_against_the_cpu("mask");
}

#[test]
fn qk_norm_across_heads() {
    check_against_the_cpu("qk_norm");
}

#[test]
fn sprint_guidance_embedding() {
    check_against_the_cpu("sprint");
}

#[test]
fn sincos_position_embedding() {
    check_against_the_cpu("pos_embed");
}

#[test]
fn patch_2_on_a_non_square_latent_batch_3() {
    check_against_the_cpu("patch2_nonsquare");
}

#[test]
fn bf16_weights_uploaded_as_stored() {
    check_against_the_cpu("bf16");
}

#[test]
fn sharded_weights_in_a_pipeline_folder() {
    check_against_the_cpu("sharded_pipeline");
}

/// A sample inside a batch whose samples keep different numbers of caption tokens (the
/// mask fixture drops b + 1 tokens of sample b; the non-square fixture masks too) equals the
/// same sample run alone: the batch bucket's padding and the other samples' masks change
/// nothing about it.
#[test]
fn a_sample_in_a_mixed_batch_equals_it_alone() {
    if !gpu_available() {
        return;
    }
    for name in ["mask", "patch2_nonsquare", "sprint"] {
        let weights = weights(name);
        let inputs = Inputs::load(name);
        let batch = inputs.x.shape()[0];
        for (label, dtype, _, batch_tolerance) in PRECISIONS {
            let model = SanaModel::on(&weights, Device::Cuda, Precision::Fixed(dtype)).unwrap();
            let together = model.forward(&inputs.input()).unwrap();
            let per = together.data().len() / batch;
            for b in 0..batch {
                let alone = model.forward(&inputs.sample(b).input()).unwrap();
                let err = rel_error(&together.data()[b * per..(b + 1) * per], alone.data());
                assert!(
                    err <= batch_tolerance,
                    "{name} on {label}, sample {b}: {err:.3e} > {batch_tolerance:e}"
                );
            }
        }
    }
}

/// The first forward of a shape runs eagerly, the second captures a graph (and launches
/// it), the third replays it — each with the eager result; a new shape (another caption
/// length, or the transposed grid) gets its own arena and graph.
#[test]
fn the_forward_is_captured_once_and_replayed() {
    if !gpu_available() {
        return;
    }
    let weights = weights("mask");
    let inputs = Inputs::load("mask");
    let eager = SanaCudaBackend::new(&weights, Precision::Fixed(DType::BF16)).unwrap();
    eager.set_graphs(false);
    let backend = SanaCudaBackend::new(&weights, Precision::Fixed(DType::BF16)).unwrap();
    let input = inputs.input();
    let shape = validate_sana(weights.config(), &input).unwrap();
    let reference = eager.forward(&input, shape).unwrap();
    let runs: Vec<Tensor> = (0..3)
        .map(|_| backend.forward(&input, shape).unwrap())
        .collect();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(
            run.data(),
            reference.data(),
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
    assert_eq!(eager.graph_stats(), GraphStats::default());
    // Fewer caption tokens: another shape, warmed up eagerly first.
    let short = Tensor::new(
        vec![2, 3, 12],
        inputs.captions.data()[..2 * 3 * 12].to_vec(),
    )
    .unwrap();
    let short_input = SanaInput {
        captions: &short,
        mask: None,
        ..input
    };
    let short_shape = validate_sana(weights.config(), &short_input).unwrap();
    for _ in 0..2 {
        backend.forward(&short_input, short_shape).unwrap();
    }
    assert_eq!(backend.graph_stats().captures, 2);
    // Graphs off: nothing is replayed any more, and the result does not change.
    backend.set_graphs(false);
    let after = backend.forward(&input, shape).unwrap();
    assert_eq!(after.data(), reference.data());
    assert_eq!(backend.graph_stats().replays, 3);
}

/// A latent whose token grid is the transpose of another's is another shape (the depthwise
/// conv and the positions see the grid), and on it the GPU still matches the CPU.
#[test]
fn a_transposed_grid_is_its_own_shape() {
    if !gpu_available() {
        return;
    }
    let weights = weights("patch2_nonsquare");
    let inputs = Inputs::load("patch2_nonsquare");
    // [3, 4, 8, 12] → [3, 4, 12, 8], values reused (any finite latent will do).
    let transposed = Tensor::new(vec![3, 4, 12, 8], inputs.x.data().to_vec()).unwrap();
    let input = SanaInput {
        x: &transposed,
        ..inputs.input()
    };
    let cpu = SanaModel::new(&weights, Device::Cpu).unwrap();
    let reference = cpu.forward(&input).unwrap();
    let model = SanaModel::on(&weights, Device::Cuda, Precision::Fixed(DType::F32)).unwrap();
    let square = model.forward(&inputs.input()).unwrap();
    let out = model.forward(&input).unwrap();
    assert_eq!(out.shape(), &[3, 3, 12, 8]);
    assert_eq!(square.shape(), &[3, 3, 8, 12]);
    let err = rel_error(out.data(), reference.data());
    assert!(err <= 1e-4, "transposed grid: {err:.3e}");
}
