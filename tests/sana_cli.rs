//! The `sana` flavor end to end through the command line (`info`, `forward` on a diffusers
//! folder), and hostile folders: each refused with an error naming the problem, never a panic.
#![cfg(feature = "cli")]

use linear_dit::tensor_file::TensorFile;
use linear_dit::weights::SanaWeights;
use linear_dit::{Error, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sana")
        .join(name)
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `forward` on a fixture variant's transformer folder and input, writing `output`.
fn forward(variant: &Path, output: &Path, extra: &[&str]) -> (bool, String, String) {
    let (folder, input) = (
        variant.join("transformer"),
        variant.join("input.safetensors"),
    );
    let mut args = vec![
        "forward",
        "--weights",
        folder.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn info_reports_the_exact_parameter_count() {
    let folder = fixture("sprint/transformer");
    let (ok, stdout, stderr) = cli(&["info", "--weights", folder.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("variants.json")).unwrap()).unwrap();
    assert_eq!(json["flavor"], "sana");
    assert_eq!(
        json["param_count"],
        summary["variants"]["sprint"]["param_count"]
    );
}

#[test]
fn forward_writes_diffusers_velocity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.safetensors");
    let variant = fixture("patch2_nonsquare");
    let (ok, _, stderr) = forward(&variant, &out, &[]);
    assert!(ok, "{stderr}");
    let read = |path: &Path| {
        let file = TensorFile::open(path).unwrap();
        Tensor::from_raw("v", &file.tensor("v").unwrap()).unwrap()
    };
    let (got, expected) = (read(&out), read(&variant.join("expected.safetensors")));
    assert_eq!(got.shape(), expected.shape());
    let worst = got
        .data()
        .iter()
        .zip(expected.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "max abs error {worst}");
}

#[test]
fn forward_refuses_config_flags_on_a_folder() {
    let variant = fixture("base");
    let (ok, _, stderr) = forward(&variant, Path::new("/dev/null"), &["--hidden-size", "64"]);
    assert!(!ok && stderr.contains("config.json"), "{stderr}");
}

/// A copy of the `base` transformer folder with `edit` applied.
fn hostile(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, Error) {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("base/transformer");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit(dir.path());
    let err = SanaWeights::load(dir.path()).unwrap_err();
    (dir, err)
}

fn edit_config(folder: &Path, from: &str, to: &str) {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn hostile_folders_are_refused_by_name() {
    let (_d, err) = hostile(|f| edit_config(f, "\"mlp_ratio\"", "\"mlp_ratio_x\""));
    assert!(err.to_string().contains("mlp_ratio_x"), "{err}");
    let (_d, err) = hostile(|f| edit_config(f, "\"num_layers\": 2", "\"num_layers\": 3"));
    assert!(err.to_string().contains("transformer_blocks.2"), "{err}");
    let (_d, err) =
        hostile(|f| edit_config(f, "\"caption_channels\": 12", "\"caption_channels\": 13"));
    assert!(
        err.to_string()
            .contains("caption_projection.linear_1.weight"),
        "{err}"
    );
    let (_d, err) = hostile(|f| edit_config(f, "\"num_layers\": 2", "\"num_layers\": 1"));
    assert!(err.to_string().contains("transformer_blocks.1"), "{err}");
    let (_d, err) = hostile(|f| {
        std::fs::remove_file(f.join("diffusion_pytorch_model.safetensors")).unwrap();
        std::fs::write(
            f.join("diffusion_pytorch_model.safetensors.index.json"),
            r#"{"weight_map": {"scale_shift_table": "../../etc/passwd"}}"#,
        )
        .unwrap();
    });
    assert!(
        err.to_string()
            .contains("a shard must be a file in the model folder"),
        "{err}"
    );
    let (_d, err) = hostile(|f| {
        std::fs::write(
            f.join("diffusion_pytorch_model.safetensors"),
            b"not a safetensors file",
        )
        .unwrap()
    });
    assert!(
        err.to_string()
            .contains("diffusion_pytorch_model.safetensors"),
        "{err}"
    );
    let (_d, err) = hostile(|f| std::fs::write(f.join("config.json"), "{").unwrap());
    assert!(err.to_string().contains("config.json"), "{err}");
}
