//! The command-line contract of SPEC: `info`, `init`, `forward`, `bench`, `sample`; bad input
//! exits non-zero with one line naming the problem, never a panic.

mod common;

use common::digits::{Classifier, asset};
use common::{fixture, rel_error};
use linear_dit::Tensor;
use linear_dit::tensor_file::TensorFile;
use std::path::Path;
use std::process::{Command, Output};

fn linear_dit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run linear-dit")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, one `error:` line naming `words`, no panic.
fn assert_clean_failure(out: &Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line expected: {stderr}");
    for w in words {
        assert!(
            error_lines[0].contains(w),
            "`{}` should mention `{w}`",
            error_lines[0]
        );
    }
}

fn json_line(out: &Output) -> serde_json::Value {
    let text = stdout(out);
    let last = text.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

#[test]
fn info_reports_spec_param_counts() {
    for (flavor, count) in [("dit", 57_700_928u64), ("edifice", 57_332_800)] {
        let out = linear_dit(&["info", "--json", "--input-dim", "64", "--flavor", flavor]);
        assert!(out.status.success());
        let json = json_line(&out);
        assert_eq!(json["param_count"].as_u64(), Some(count), "{flavor}");
        assert!(json["flops_per_token"].as_f64().unwrap() > 7e7);
        assert_eq!(json["config"]["flavor"], flavor);
    }
}

fn forward_fixture(name: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("eps.safetensors");
    let weights = fixture(&format!("{name}.weights.safetensors"));
    let input = fixture(&format!("{name}.io.safetensors"));
    let mut args = vec![
        "forward",
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--backend",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let out = linear_dit(&args);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |path: &Path, t: &str| {
        let file = TensorFile::open(path).unwrap();
        Tensor::from_raw(t, &file.tensor(t).unwrap()).unwrap()
    };
    let got = read(&output, "eps");
    let expected = read(&input, "eps");
    assert_eq!(got.shape(), expected.shape());
    let err = rel_error(got.data(), expected.data());
    assert!(err <= 1e-4, "{name}: relative error {err:.3e}");
}

#[test]
fn forward_reproduces_every_fixture() {
    for name in [
        "dit_uncond",
        "dit_class",
        "dit_bf16",
        "edifice_uncond",
        "edifice_class",
        "edifice_odd",
    ] {
        forward_fixture(name, &[]);
    }
}

#[test]
fn forward_reads_axon_files_with_config_flags() {
    let flags = [
        "--input-dim",
        "4",
        "--hidden-size",
        "20",
        "--num-layers",
        "3",
        "--num-heads",
        "4",
        "--mlp-ratio",
        "1.5",
        "--num-classes",
        "3",
        "--num-steps",
        "1000",
    ];
    forward_fixture("edifice_axon", &flags);
    // The shapes give all but num_heads and num_steps, which have no default: a clear error.
    let dir = tempfile::tempdir().unwrap();
    let out = linear_dit(&[
        "forward",
        "--weights",
        fixture("edifice_axon.weights.safetensors")
            .to_str()
            .unwrap(),
        "--input",
        fixture("edifice_axon.io.safetensors").to_str().unwrap(),
        "--output",
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["hidden_size", "num_heads"]);
}

#[test]
fn forward_rejects_bad_files_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(fixture("dit_class.weights.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let output = dir.path().join("o.safetensors");
    let run = |weights: &Path, input: &Path, extra: &[&str]| {
        let mut args = vec![
            "forward",
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        linear_dit(&args)
    };
    let io = fixture("dit_class.io.safetensors");
    assert_clean_failure(&run(&truncated, &io, &[]), &["truncated", "bytes"]);
    // Inputs of the wrong model: D = 4 against input_dim 8.
    let wrong = fixture("dit_uncond.io.safetensors");
    assert_clean_failure(
        &run(&fixture("dit_class.weights.safetensors"), &wrong, &[]),
        &["`x`", "input_dim is 8"],
    );
    // A weights file given as input: no `x`.
    let weights = fixture("dit_class.weights.safetensors");
    assert_clean_failure(&run(&weights, &weights, &[]), &["no tensor `x`"]);
    assert_clean_failure(
        &run(&weights, &io, &["--grid", "2x7"]),
        &["grid", "2x7", "N = 15"],
    );
    assert_clean_failure(
        &run(&weights, &io, &["--backend", "cpu", "--precision", "bf16"]),
        &["cpu", "f32"],
    );
}

#[test]
fn init_then_forward_round_trips_every_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["f32", "bf16", "f16"] {
        let path = dir.path().join(format!("w-{dtype}.safetensors"));
        let out = linear_dit(&[
            "init",
            "--out",
            path.to_str().unwrap(),
            "--init",
            "random",
            "--dtype",
            dtype,
            "--input-dim",
            "4",
            "--hidden-size",
            "16",
            "--num-layers",
            "1",
            "--num-heads",
            "2",
            "--num-classes",
            "3",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info = linear_dit(&["info", "--json", "--weights", path.to_str().unwrap()]);
        let json = json_line(&info);
        assert_eq!(json["config"]["num_classes"], 3);
        assert_eq!(json["storage_dtype"], dtype.to_uppercase());
    }
}

#[test]
fn bench_prints_a_json_summary() {
    let out = linear_dit(&[
        "bench",
        "--backend",
        "cpu",
        "--batch",
        "2",
        "--tokens",
        "16",
        "--hidden-size",
        "32",
        "--num-layers",
        "1",
        "--num-heads",
        "2",
        "--input-dim",
        "4",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json_line(&out);
    assert!(json["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(json["ms_per_forward"].as_f64().unwrap() > 0.0);
    assert_eq!(json["backend"], "cpu");
}

#[test]
fn bad_flags_are_usage_errors_not_panics() {
    let out = linear_dit(&["bench", "--backend", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend `tpu`"));
    let out = linear_dit(&["info", "--hidden-size", "30", "--num-heads", "4"]);
    assert_clean_failure(&out, &["hidden_size", "num_heads"]);
}

#[test]
fn sample_writes_the_digits_asked_for_byte_identically() {
    // The README's main command, smaller: a PNG grid and the tensor file, twice with one seed.
    let dir = tempfile::tempdir().unwrap();
    let weights = asset("digits.safetensors");
    let run = |name: &str| {
        let (png, tensor) = (
            dir.path().join(format!("{name}.png")),
            dir.path().join(format!("{name}.safetensors")),
        );
        let out = linear_dit(&[
            "sample",
            "--weights",
            weights.to_str().unwrap(),
            "--class",
            "7",
            "--num",
            "6",
            "--seed",
            "11",
            "--backend",
            "cpu",
            "--out",
            png.to_str().unwrap(),
            "--out-tensor",
            tensor.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (std::fs::read(png).unwrap(), std::fs::read(tensor).unwrap())
    };
    let (png, tensor) = run("a");
    assert_eq!(
        run("b"),
        (png.clone(), tensor.clone()),
        "same seed, different bytes"
    );
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let file = TensorFile::open(dir.path().join("a.safetensors")).unwrap();
    let images = Tensor::from_raw("images", &file.tensor("images").unwrap()).unwrap();
    assert_eq!(images.shape(), &[6, 1, 16, 16]);
    assert!(images.data().iter().all(|v| (-1.0..=1.0).contains(v)));
    let sevens = Classifier::load()
        .classify(&images)
        .iter()
        .filter(|&&c| c == 7)
        .count();
    assert!(sevens >= 5, "only {sevens}/6 samples read as a 7");
}

#[test]
fn sample_rejects_bad_requests_cleanly() {
    let weights = asset("digits.safetensors");
    let w = weights.to_str().unwrap();
    let out = "/nonexistent-dir/never-written.png";
    for (flags, words) in [
        (vec!["--sampler", "euler"], vec!["euler"]),
        (vec!["--steps", "0"], vec!["steps"]),
        (vec!["--steps", "1001"], vec!["steps", "1000"]),
        (vec!["--class", "10"], vec!["class", "10"]),
        (vec!["--guidance", "NaN"], vec!["guidance"]),
    ] {
        let mut args = vec!["sample", "--weights", w, "--backend", "cpu", "--out", out];
        args.extend(flags);
        assert_clean_failure(&linear_dit(&args), &words);
    }
}
