//! Bad input of every kind is a clear error that names the problem — never a panic.

mod common;

use common::{fixture, load_fixture};
use linear_dit::tensor_file::{RawTensor, TensorFile, write_tensors};
use linear_dit::{Config, ConfigOverrides, Device, Grid, InitKind, Input, Model, Tensor, Weights};
use std::collections::HashMap;
use std::path::Path;

fn class_model() -> Model {
    let config = Config {
        hidden_size: 16,
        num_layers: 1,
        num_heads: 2,
        num_classes: Some(3),
        ..Config::new(4)
    };
    Model::new(
        &Weights::init(&config, InitKind::Random, 1).unwrap(),
        Device::Cpu,
    )
    .unwrap()
}

/// Runs a forward that must fail; returns the message.
fn forward_error(
    model: &Model,
    x: &Tensor,
    t: &[f32],
    y: Option<&[i64]>,
    grid: Option<Grid>,
) -> String {
    let input = Input { x, t, y, grid };
    model
        .forward(&input)
        .expect_err("forward must fail")
        .to_string()
}

fn assert_mentions(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "`{message}` should mention `{w}`");
    }
}

#[test]
fn forward_rejects_bad_inputs_by_name() {
    let model = class_model();
    let x = Tensor::zeros(vec![2, 16, 4]);
    let (t, y) = ([1.0, 2.0], [0i64, 1]);
    let e = forward_error(&model, &Tensor::zeros(vec![2, 16, 5]), &t, Some(&y), None);
    assert_mentions(&e, &["`x`", "D = 5", "input_dim is 4"]);
    let e = forward_error(&model, &Tensor::zeros(vec![2, 16]), &t, Some(&y), None);
    assert_mentions(&e, &["`x`", "[B, N, D]"]);
    let e = forward_error(&model, &x, &[1.0], Some(&y), None);
    assert_mentions(&e, &["`t`", "1 timesteps", "B = 2"]);
    let e = forward_error(&model, &x, &t, Some(&[0]), None);
    assert_mentions(&e, &["`y`", "1 labels", "B = 2"]);
    let mut nan = x.clone();
    nan.data_mut()[37] = f32::NAN;
    let e = forward_error(&model, &nan, &t, Some(&y), None);
    assert_mentions(&e, &["`x`", "non-finite", "NaN", "[0, 9, 1]"]);
    let mut inf = x.clone();
    inf.data_mut()[70] = f32::INFINITY;
    assert_mentions(
        &forward_error(&model, &inf, &t, Some(&y), None),
        &["`x`", "inf"],
    );
    assert_mentions(
        &forward_error(&model, &x, &[1.0, f32::NAN], Some(&y), None),
        &["`t`", "[1]", "NaN"],
    );
    assert_mentions(
        &forward_error(&model, &x, &[1.0, f32::INFINITY], Some(&y), None),
        &["`t`", "inf"],
    );
    assert_mentions(
        &forward_error(&model, &x, &[-0.5, 1.0], Some(&y), None),
        &["`t`", "-0.5", "outside"],
    );
    assert_mentions(
        &forward_error(&model, &x, &[1.0, 1000.5], Some(&y), None),
        &["`t`", "1000.5", "num_steps = 1000"],
    );
    assert_mentions(
        &forward_error(&model, &x, &t, Some(&[0, 4]), None),
        &["`y`", "[1] = 4", "outside [0, 3]"],
    );
    assert_mentions(
        &forward_error(&model, &x, &t, Some(&[-1, 0]), None),
        &["`y`", "-1"],
    );
    assert_mentions(
        &forward_error(&model, &x, &t, None, None),
        &["`y`", "required", "num_classes = 3"],
    );
    let x15 = Tensor::zeros(vec![2, 15, 4]);
    assert_mentions(
        &forward_error(&model, &x15, &t, Some(&y), None),
        &["grid", "15", "perfect square"],
    );
    let e = forward_error(&model, &x, &t, Some(&y), Some(Grid::new(3, 5)));
    assert_mentions(&e, &["grid", "3x5", "N = 16"]);
    // SPEC: t lies in [0, num_steps): num_steps itself is outside, just below it is valid,
    // and so is the null class C.
    assert_mentions(
        &forward_error(&model, &x, &[1.0, 1000.0], Some(&y), None),
        &["`t`", "1000", "num_steps = 1000"],
    );
    model
        .forward(&Input::new(&x, &[0.0, 999.9]).with_labels(&[3, 2]))
        .unwrap();
}

#[test]
fn unconditional_model_rejects_labels() {
    let config = Config {
        hidden_size: 16,
        num_layers: 1,
        num_heads: 2,
        ..Config::new(4)
    };
    let model = Model::new(
        &Weights::init(&config, InitKind::Random, 1).unwrap(),
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::zeros(vec![1, 4, 4]);
    assert_mentions(
        &forward_error(&model, &x, &[1.0], Some(&[0]), None),
        &["`y`", "unconditional"],
    );
}

#[test]
fn invalid_configs_name_the_field() {
    let bad = Config {
        hidden_size: 30,
        num_heads: 4,
        ..Config::recommended()
    };
    let e = Weights::init(&bad, InitKind::Dit, 0)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["hidden_size", "30", "num_heads", "4"]);
}

/// Writes `tensors` to a fresh file with the config metadata of `config`.
fn write_weights(
    dir: &Path,
    name: &str,
    config: &Config,
    tensors: Vec<(String, RawTensor)>,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let meta = HashMap::from([("linear_dit.config".to_string(), config.to_json())]);
    write_tensors(&path, &tensors, meta).unwrap();
    path
}

fn fixture_tensors(name: &str) -> (Config, Vec<(String, RawTensor)>) {
    let f = load_fixture(name);
    let tensors = f
        .weights
        .tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    (f.weights.config().clone(), tensors)
}

fn load_error(path: &Path) -> String {
    Weights::load(path, &ConfigOverrides::default())
        .expect_err("load must fail")
        .to_string()
}

#[test]
fn weights_files_with_missing_extra_or_misshaped_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tensors) = fixture_tensors("dit_class");

    let mut missing = tensors.clone();
    missing.retain(|(n, _)| n != "blocks.1.attn.proj.weight");
    let e = load_error(&write_weights(
        dir.path(),
        "missing.safetensors",
        &config,
        missing,
    ));
    assert_mentions(&e, &["missing", "blocks.1.attn.proj.weight", "[24, 24]"]);

    let mut extra = tensors.clone();
    extra.push((
        "blocks.7.attn.qkv.weight".into(),
        RawTensor::from_f32(vec![2], &[1.0, 2.0]),
    ));
    let e = load_error(&write_weights(
        dir.path(),
        "extra.safetensors",
        &config,
        extra,
    ));
    assert_mentions(&e, &["unknown", "blocks.7.attn.qkv.weight", "[2]"]);

    let mut misshaped = tensors.clone();
    for (name, t) in &mut misshaped {
        if name == "blocks.0.mlp.fc1.bias" {
            *t = RawTensor::from_f32(vec![47], &[0.5; 47]);
        }
    }
    let e = load_error(&write_weights(
        dir.path(),
        "shape.safetensors",
        &config,
        misshaped,
    ));
    assert_mentions(&e, &["blocks.0.mlp.fc1.bias", "[47]", "expected [48]"]);

    let mut integer = tensors;
    for (name, t) in &mut integer {
        if name == "x_embedder.bias" {
            *t = RawTensor::from_i64(vec![24], &[1; 24]);
        }
    }
    let e = load_error(&write_weights(
        dir.path(),
        "int.safetensors",
        &config,
        integer,
    ));
    assert_mentions(&e, &["x_embedder.bias", "I64"]);
}

#[test]
fn truncated_and_corrupt_files_name_the_byte_range() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("dit_uncond.weights.safetensors")).unwrap();
    let path = dir.path().join("truncated.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let e = load_error(&path);
    assert_mentions(
        &e,
        &["truncated", "file ends at byte", "truncated.safetensors"],
    );

    std::fs::write(&path, &bytes[..100]).unwrap();
    assert_mentions(
        &load_error(&path),
        &["truncated", "header claims bytes 8.."],
    );

    std::fs::write(&path, &bytes[..5]).unwrap();
    assert_mentions(&load_error(&path), &["truncated", "5 bytes"]);

    let mut corrupt = bytes.clone();
    corrupt[10] = b'#';
    std::fs::write(&path, &corrupt).unwrap();
    assert_mentions(&load_error(&path), &["truncated.safetensors", "header"]);

    let e = load_error(&dir.path().join("absent.safetensors"));
    assert_mentions(&e, &["absent.safetensors", "No such file"]);
}

#[test]
fn config_flags_that_contradict_the_file_are_errors() {
    let overrides = ConfigOverrides {
        num_heads: Some(4),
        ..Default::default()
    };
    let e = Weights::load(fixture("dit_class.weights.safetensors"), &overrides)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["num_heads", "4", "weights file says 3"]);
}

#[test]
fn raw_tensor_readers_reject_the_wrong_dtype() {
    let io = TensorFile::open(fixture("dit_class.io.safetensors")).unwrap();
    let e = io
        .tensor("y")
        .unwrap()
        .to_f32_vec("y")
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["`y`", "I64"]);
    assert_mentions(
        &io.tensor("nope").unwrap_err().to_string(),
        &["no tensor named `nope`"],
    );
}
