//! Hostile weights files, configs and flags: every one is a clean error that names the
//! problem — never a panic, a wrapped size, a huge allocation or a silently assumed value.

mod common;

use common::fixture;
use linear_dit::tensor_file::{DType, RawTensor, TensorFile};
use linear_dit::{Config, ConfigOverrides, Error, InitKind, Tensor, Weights};
use std::process::Command;

/// A safetensors buffer from a literal header and `data_len` zero bytes of data.
fn safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// Opens `bytes`, which must fail with `BadFile`; returns the message.
fn bad_file(bytes: &[u8]) -> String {
    match TensorFile::from_bytes("hostile.safetensors", bytes) {
        Err(e @ Error::BadFile { .. }) => e.to_string(),
        Err(other) => panic!("expected BadFile, got {other:?}"),
        Ok(_) => panic!("expected an error"),
    }
}

fn assert_mentions(message: &str, words: &[&str]) {
    for w in words {
        assert!(message.contains(w), "`{message}` should mention `{w}`");
    }
}

#[test]
fn duplicate_header_keys_are_errors_naming_the_key() {
    let tensor = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let e = bad_file(&safetensors(
        &format!(r#"{{"w":{tensor},"w":{tensor}}}"#),
        4,
    ));
    assert_mentions(&e, &["duplicate key `w`", "hostile.safetensors"]);
    let e = bad_file(&safetensors(
        &format!(
            r#"{{"__metadata__":{{"linear_dit.config":"a","linear_dit.config":"b"}},"w":{tensor}}}"#
        ),
        4,
    ));
    assert_mentions(&e, &["duplicate key `linear_dit.config`"]);
    let e = bad_file(&safetensors(
        r#"{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}"#,
        4,
    ));
    assert_mentions(&e, &["duplicate key `dtype`"]);
}

#[test]
fn malformed_headers_are_one_clean_error() {
    let cases: &[(&str, usize, &[&str])] = &[
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#,
            4,
            &["header"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0.0,4.0]}}"#,
            4,
            &["header"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#,
            4,
            &["truncated", "`w`"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551611,18446744073709551615]}}"#,
            4,
            &["truncated", "`w`"],
        ),
        // Overlapping and out-of-order ranges.
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            &["offset"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#,
            8,
            &["not a valid safetensors file"],
        ),
        // Byte counts that do not match dtype × shape.
        (
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
            &["not a valid"],
        ),
        (
            r#"{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}}"#,
            16,
            &["not a valid"],
        ),
        // A shape whose product wraps to 4 elements (16 bytes) in 64 bits.
        (
            r#"{"x":{"dtype":"F32","shape":[1,4611686018427387905,4],"data_offsets":[0,16]}}"#,
            16,
            &["not a valid"],
        ),
        (
            r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            4,
            &["header"],
        ),
        (
            r#"{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#,
            4,
            &["header"],
        ),
        // Metadata values must be strings.
        (
            r#"{"__metadata__":{"k":1},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
            &["header"],
        ),
        (r#"{"__metadata__":{"k":{"nested":"x"}}}"#, 0, &["header"]),
        (r#"[1,2,3]"#, 0, &["expected a JSON object"]),
        // Trailing bytes after the last tensor.
        (
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            12,
            &["not a valid"],
        ),
    ];
    for (header, data_len, words) in cases {
        let e = bad_file(&safetensors(header, *data_len));
        assert_mentions(&e, words);
    }
    // Header lengths near u64::MAX, and just past the end.
    for claimed in [u64::MAX, u64::MAX - 7, 1 << 63, 30] {
        let mut bytes = claimed.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert_mentions(&bad_file(&bytes), &["header claims bytes 8.."]);
    }
    // A header above 16 MiB is refused before it is parsed.
    let mut big = ((16u64 << 20) + 8).to_le_bytes().to_vec();
    big.resize(8 + (16 << 20) + 8, b' ');
    assert_mentions(&bad_file(&big), &["header of 16777224 bytes"]);
    // Deep nesting is refused by the JSON parser's depth limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_mentions(&bad_file(&safetensors(&deep, 0)), &["header"]);
}

#[test]
fn from_bytes_reads_what_open_reads() {
    let path = fixture("dit_class.io.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (a, b) = (
        TensorFile::open(&path).unwrap(),
        TensorFile::from_bytes("mem.safetensors", &bytes).unwrap(),
    );
    assert_eq!(a.names(), b.names());
    for name in a.names() {
        let (ta, tb) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(ta.bytes.as_slice(), tb.bytes.as_slice(), "{name}");
    }
    assert_eq!(a.metadata(), b.metadata());
}

#[test]
fn shapes_whose_product_overflows_are_errors() {
    let e = Tensor::new(vec![1, 4611686018427387905, 4], vec![0.0; 4]).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    let e = Tensor::try_zeros(vec![1 << 40, 1 << 40]).unwrap_err();
    assert_mentions(&e.to_string(), &["too large"]);
    let raw = RawTensor::owned(DType::F32, vec![1, 4611686018427387905, 4], vec![0; 16]);
    assert!(raw.numel().is_err());
    assert_mentions(
        &Tensor::from_raw("x", &raw).unwrap_err().to_string(),
        &["`x`", "2^64"],
    );
    // Bytes that do not match the shape are refused by readers and by the writer.
    let short = RawTensor::owned(DType::F32, vec![2, 2], vec![0; 12]);
    assert_mentions(
        &short.to_f32_vec("w").unwrap_err().to_string(),
        &["`w`", "12 bytes"],
    );
    let dir = tempfile::tempdir().unwrap();
    let e = linear_dit::tensor_file::write_tensors(
        dir.path().join("w.safetensors"),
        &[("w".to_string(), short)],
        Default::default(),
    )
    .unwrap_err();
    assert_mentions(&e.to_string(), &["`w`"]);
}

#[test]
fn f16_files_saturate_like_the_device() {
    let values = [65504.5f32, 1e6, -1e6, f32::INFINITY, f32::NEG_INFINITY, 1.0];
    let raw = RawTensor::from_f32_as(DType::F16, vec![values.len()], &values);
    let back = raw.to_f32_vec("w").unwrap();
    assert_eq!(back, [65504.0, 65504.0, -65504.0, 65504.0, -65504.0, 1.0]);
    let nan = RawTensor::from_f32_as(DType::F16, vec![1], &[f32::NAN]);
    assert!(nan.to_f32_vec("w").unwrap()[0].is_nan());
}

/// The Axon fixture's tensors, for building broken variants.
fn axon_tensors() -> Vec<(String, RawTensor)> {
    let file = TensorFile::open(fixture("edifice_axon.weights.safetensors")).unwrap();
    file.names()
        .into_iter()
        .map(|n| (n.to_string(), file.tensor(n).unwrap()))
        .collect()
}

/// The flags the Axon fixture needs (no metadata: num_heads and num_steps must be given).
fn axon_overrides() -> ConfigOverrides {
    ConfigOverrides {
        num_heads: Some(4),
        num_steps: Some(1000),
        ..Default::default()
    }
}

fn load_axon_variant(tensors: &[(String, RawTensor)]) -> String {
    let bytes = linear_dit::tensor_file::serialize_tensors(tensors, Default::default()).unwrap();
    let file = TensorFile::from_bytes("axon.safetensors", &bytes).unwrap();
    Weights::from_file(&file, &axon_overrides())
        .expect_err("load must fail")
        .to_string()
}

#[test]
fn malformed_axon_files_are_clean_errors() {
    let good = axon_tensors();
    let bytes = linear_dit::tensor_file::serialize_tensors(&good, Default::default()).unwrap();
    let file = TensorFile::from_bytes("axon.safetensors", &bytes).unwrap();
    Weights::from_file(&file, &axon_overrides()).unwrap();

    let replace = |name: &str, t: RawTensor| {
        let mut v = good.clone();
        for (n, old) in &mut v {
            if n == name {
                *old = t.clone();
            }
        }
        v
    };
    // A k kernel whose input width differs from q's.
    let e = load_axon_variant(&replace(
        "linear_dit_block_1_attn_k.kernel",
        RawTensor::from_f32(vec![19, 20], &[0.5; 380]),
    ));
    assert_mentions(
        &e,
        &["linear_dit_block_1_attn_k.kernel", "[19, 20]", "[20, 20]"],
    );
    // A rank-3 kernel, a rank-2 bias.
    let e = load_axon_variant(&replace(
        "linear_dit_block_2_adaln_mlp.kernel",
        RawTensor::from_f32(vec![20, 3, 20], &[0.5; 1200]),
    ));
    assert_mentions(&e, &["linear_dit_block_2_adaln_mlp.kernel", "[20, 3, 20]"]);
    let e = load_axon_variant(&replace(
        "linear_dit_block_1_attn_v.bias",
        RawTensor::from_f32(vec![4, 5], &[0.5; 20]),
    ));
    assert_mentions(&e, &["linear_dit_block_1_attn_v.bias", "[4, 5]"]);
    // A missing piece of a group.
    let mut missing = good.clone();
    missing.retain(|(n, _)| n != "linear_dit_block_3_attn_v.kernel");
    assert_mentions(
        &load_axon_variant(&missing),
        &["missing", "linear_dit_block_3_attn_v.kernel"],
    );
    // Layer indices past usize, at usize::MAX, and zero.
    for name in [
        "linear_dit_block_99999999999999999999_attn_q.kernel",
        "linear_dit_block_18446744073709551615_attn_out_proj.bias",
        "linear_dit_block_0_mlp_up.bias",
        "linear_dit_block_x_mlp_up.bias",
    ] {
        let mut extra = good.clone();
        extra.push((name.to_string(), RawTensor::from_f32(vec![1], &[1.0])));
        let e = load_axon_variant(&extra);
        assert!(e.contains("unknown tensor"), "{name}: {e}");
    }
    // Empty kernels with one huge side: no endless transpose, no wrapped row count.
    let mut empty = good.clone();
    for part in ["q", "k", "v"] {
        empty.retain(|(n, _)| n != &format!("linear_dit_block_1_attn_{part}.kernel"));
        empty.push((
            format!("linear_dit_block_1_attn_{part}.kernel"),
            RawTensor::owned(DType::F32, vec![0, usize::MAX / 2], vec![]),
        ));
    }
    assert_mentions(&load_axon_variant(&empty), &["blocks.0.attn.qkv.weight"]);
}

#[test]
fn files_without_metadata_need_num_heads_and_num_steps() {
    let path = fixture("edifice_axon.weights.safetensors");
    let e = Weights::load(&path, &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert_mentions(
        &e,
        &["num_heads", "--num-heads", "hidden_size = 20", "metadata"],
    );
    let only_heads = ConfigOverrides {
        num_heads: Some(4),
        ..Default::default()
    };
    let e = Weights::load(&path, &only_heads).unwrap_err().to_string();
    assert_mentions(&e, &["num_steps", "--num-steps"]);
    let weights = Weights::load(&path, &axon_overrides()).unwrap();
    let sources = weights.config_sources();
    let source = |field: &str| {
        sources
            .iter()
            .find(|(f, _)| *f == field)
            .unwrap()
            .1
            .as_str()
    };
    assert_eq!(source("hidden_size"), "inferred");
    assert_eq!(source("num_classes"), "inferred");
    assert_eq!(source("num_heads"), "given");
    assert_eq!(source("num_steps"), "given");
    assert_eq!(source("patch_size"), "default");
    let with_metadata = Weights::load(
        fixture("dit_class.weights.safetensors"),
        &ConfigOverrides::default(),
    )
    .unwrap();
    assert!(
        with_metadata
            .config_sources()
            .iter()
            .all(|(_, s)| s.as_str() == "metadata")
    );
}

#[test]
fn init_over_the_budget_is_refused_before_allocating() {
    let config = Config {
        hidden_size: 512,
        ..Config::new(1_000_000_000_000)
    };
    let e = Weights::init(&config, InitKind::Dit, 0)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["init", "needs", "limit"]);
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args(args)
        .output()
        .expect("run linear-dit")
}

/// A failure with a one-line message and no panic.
fn clean_failure(out: &std::process::Output, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_mentions(&stderr, words);
}

#[test]
fn cli_info_and_init_refuse_huge_configs_at_once() {
    let started = std::time::Instant::now();
    clean_failure(
        &cli(&["info", "--num-layers", "1000000000"]),
        &["num_layers", "at most"],
    );
    clean_failure(
        &cli(&["info", "--hidden-size", "1000000000", "--mlp-ratio", "1"]),
        &["hidden_size", "at most"],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    clean_failure(
        &cli(&[
            "init",
            "--out",
            out.to_str().unwrap(),
            "--input-dim",
            "1000000000000",
        ]),
        &["needs", "limit"],
    );
    assert!(!out.exists());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The largest valid depth answers with its exact count.
    let ok = cli(&["info", "--num-layers", "10000", "--json"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let (h, d, m, f) = (512u64, 64u64, 2048u64, 256u64);
    let block = (6 * h * h + 6 * h) + (3 * h * h + 3 * h) + (h * h + h) + (m * h + m) + (h * m + h);
    let rest = (h * d + h) + (h * f + h) + (h * h + h) + (2 * h * h + 2 * h) + (d * h + d);
    assert_eq!(json["param_count"].as_u64(), Some(10_000 * block + rest));
    assert_eq!(json["config_sources"]["num_layers"], "given");
    assert_eq!(json["config_sources"]["hidden_size"], "default");
}

#[test]
fn cli_info_says_where_each_field_came_from() {
    let path = fixture("edifice_axon.weights.safetensors");
    let out = cli(&["info", "--weights", path.to_str().unwrap()]);
    clean_failure(&out, &["num_heads", "--num-heads"]);
    let out = cli(&[
        "info",
        "--weights",
        path.to_str().unwrap(),
        "--num-heads",
        "4",
        "--num-steps",
        "1000",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_mentions(
        &stdout,
        &[
            "inferred:       input_dim hidden_size num_layers mlp_ratio num_classes flavor",
            "given:          num_heads num_steps",
            "default:        patch_size",
        ],
    );
}
