//! The `sana` flavor against diffusers' own `SanaTransformer2DModel`, on fixtures that
//! `python/make_sana_fixtures.py` wrote with diffusers (not with this crate): tiny random
//! configs with every parameter perturbed, outputs computed by diffusers in float64. The CPU
//! backend must be within 1e-4 relative (Frobenius) of them, and within 1e-4 of the largest
//! output value element-wise.

mod common;

use common::rel_error;
use linear_dit::model::sana::{SanaConfig, SanaInput};
use linear_dit::tensor_file::TensorFile;
use linear_dit::weights::SanaWeights;
use linear_dit::{Device, SanaModel, Tensor};
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sana")
        .join(name)
}

fn read(file: &TensorFile, name: &str) -> Option<Tensor> {
    file.contains(name)
        .then(|| Tensor::from_raw(name, &file.tensor(name).unwrap()).unwrap())
}

fn check(name: &str, folder: PathBuf) {
    let weights = SanaWeights::load(&folder).unwrap();
    let model = SanaModel::new(&weights, Device::Cpu).unwrap();
    let inputs = TensorFile::open(fixture(name).join("input.safetensors")).unwrap();
    let expected = TensorFile::open(fixture(name).join("expected.safetensors")).unwrap();
    let x = read(&inputs, "x").unwrap();
    let t = read(&inputs, "t").unwrap();
    let captions = read(&inputs, "encoder_hidden_states").unwrap();
    let mask = read(&inputs, "encoder_attention_mask");
    let guidance = read(&inputs, "guidance");
    let v = read(&expected, "v").unwrap();
    let out = model
        .forward(&SanaInput {
            x: &x,
            t: t.data(),
            captions: &captions,
            mask: mask.as_ref().map(|m| m.data()),
            guidance: guidance.as_ref().map(|g| g.data()),
        })
        .unwrap();
    assert_eq!(out.shape(), v.shape(), "{name}: output shape");
    let err = rel_error(out.data(), v.data());
    let largest = v.data().iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let worst = out
        .data()
        .iter()
        .zip(v.data())
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    println!("{name}: relative error {err:.3e}, max abs error {worst:.3e} (max |v| {largest:.2})");
    assert!(
        err <= TOLERANCE,
        "{name}: relative error {err:.3e} > {TOLERANCE:e}"
    );
    assert!(
        worst <= TOLERANCE * largest,
        "{name}: max abs error {worst:.3e}"
    );
}

#[test]
fn base() {
    check("base", fixture("base/transformer"));
}

#[test]
fn caption_mask_affine_ffn_norm_and_attention_bias() {
    check("mask", fixture("mask/transformer"));
}

#[test]
fn qk_norm_across_heads() {
    check("qk_norm", fixture("qk_norm/transformer"));
}

#[test]
fn sprint_guidance_embedding() {
    check("sprint", fixture("sprint/transformer"));
}

#[test]
fn sincos_position_embedding() {
    check("pos_embed", fixture("pos_embed/transformer"));
}

#[test]
fn patch_2_on_a_non_square_latent_batch_3() {
    check("patch2_nonsquare", fixture("patch2_nonsquare/transformer"));
}

#[test]
fn bf16_weights() {
    check("bf16", fixture("bf16/transformer"));
}

#[test]
fn sharded_weights_in_a_pipeline_folder() {
    check("sharded_pipeline", fixture("sharded_pipeline"));
}

/// The parameter counts of the published 600M and 1600M configs equal diffusers' `numel()`
/// totals (computed on the meta device by the fixture script).
#[test]
fn param_counts_of_the_published_configs() {
    let text = std::fs::read_to_string(fixture("variants.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let counts = summary["param_counts"].as_object().unwrap();
    assert_eq!(counts.len(), 2);
    for (name, entry) in counts {
        let mut config = entry["config"].clone();
        config["_class_name"] = "SanaTransformer2DModel".into();
        let config = SanaConfig::from_json(&config.to_string()).unwrap();
        let expected = entry["param_count"].as_u64().unwrap();
        assert_eq!(config.param_count().unwrap(), expected, "{name}");
    }
}

/// Malformed inputs are errors that name the input, before any work.
#[test]
fn malformed_inputs_are_refused_by_name() {
    let model = SanaModel::load(fixture("base/transformer")).unwrap();
    let x = Tensor::zeros(vec![1, 4, 8, 8]);
    let captions = Tensor::zeros(vec![1, 3, 12]);
    let ok = SanaInput {
        x: &x,
        t: &[10.0],
        captions: &captions,
        mask: None,
        guidance: None,
    };
    assert!(model.forward(&ok).is_ok());
    let wrong_channels = Tensor::zeros(vec![1, 3, 8, 8]);
    let wide_captions = Tensor::zeros(vec![1, 3, 13]);
    let cases: Vec<(SanaInput<'_>, &str)> = vec![
        (
            SanaInput {
                x: &wrong_channels,
                ..ok
            },
            "`x`",
        ),
        (SanaInput { t: &[1e9], ..ok }, "`t`"),
        (
            SanaInput {
                t: &[f32::NAN],
                ..ok
            },
            "`t`",
        ),
        (
            SanaInput {
                t: &[1.0, 2.0],
                ..ok
            },
            "`t`",
        ),
        (
            SanaInput {
                captions: &wide_captions,
                ..ok
            },
            "encoder_hidden_states",
        ),
        (
            SanaInput {
                mask: Some(&[1.0, 0.0]),
                ..ok
            },
            "encoder_attention_mask",
        ),
        (
            SanaInput {
                mask: Some(&[1.0, 2.0, 0.0]),
                ..ok
            },
            "encoder_attention_mask",
        ),
        (
            SanaInput {
                guidance: Some(&[4.5]),
                ..ok
            },
            "guidance",
        ),
    ];
    for (input, name) in cases {
        let err = model.forward(&input).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}
