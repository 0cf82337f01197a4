//! `linear-dit sample` on a diffusers SANA folder: latents from caption embeddings, equal to
//! the library's `sample_sana` for the same request (the CLI adds no arithmetic of its own),
//! for classifier-free guidance with a negative caption of another length and for
//! SANA-Sprint's scm; and every misuse refused with a message naming it.
#![cfg(feature = "cli")]

use linear_dit::sampling::flow::{Caption, FlowParams, FlowSamplerKind, SanaRequest, sample_sana};
use linear_dit::tensor_file::{RawTensor, TensorFile, write_tensors};
use linear_dit::{SanaModel, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sana")
        .join(name)
        .join("transformer")
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .arg("sample")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A captions file of `texts` tokens (the last one masked) for a model with
/// `channels`-wide captions; returns the embeddings and mask written.
fn captions(path: &Path, texts: usize, channels: usize, salt: f32) -> (Vec<f32>, Vec<i64>) {
    let embeds: Vec<f32> = (0..texts * channels)
        .map(|i| ((i as f32 * 0.37 + salt).sin()) * 1.5)
        .collect();
    let mut mask = vec![1i64; texts];
    mask[texts - 1] = 0;
    write_tensors(
        path,
        &[
            (
                "prompt_embeds".to_string(),
                RawTensor::from_f32(vec![1, texts, channels], &embeds),
            ),
            (
                "prompt_attention_mask".to_string(),
                RawTensor::from_i64(vec![1, texts], &mask),
            ),
        ],
        HashMap::new(),
    )
    .unwrap();
    (embeds, mask)
}

fn caption(model: &SanaModel, (embeds, mask): (Vec<f32>, Vec<i64>)) -> Arc<Caption> {
    let texts = mask.len();
    let embeds = Tensor::new(vec![texts, embeds.len() / texts], embeds).unwrap();
    let mask = mask.into_iter().map(|m| m as f32).collect();
    Arc::new(Caption::new(model.config(), embeds, Some(mask)).unwrap())
}

fn latents(path: &Path) -> Tensor {
    let file = TensorFile::open(path).unwrap();
    Tensor::from_raw("latents", &file.tensor("latents").unwrap()).unwrap()
}

#[test]
fn guided_sampling_matches_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let model = SanaModel::load(folder("base")).unwrap();
    let c = model.config().caption_channels;
    let (p, n, out) = (
        dir.path().join("p.safetensors"),
        dir.path().join("n.safetensors"),
        dir.path().join("l.safetensors"),
    );
    let prompt = captions(&p, 5, c, 0.0);
    let negative = captions(&n, 3, c, 1.0);
    let (ok, err) = cli(&[
        "--weights",
        folder("base").to_str().unwrap(),
        "--prompt-embeds",
        p.to_str().unwrap(),
        "--negative-embeds",
        n.to_str().unwrap(),
        "--height",
        "256",
        "--width",
        "192",
        "--steps",
        "4",
        "--guidance",
        "3.5",
        "--seed",
        "7",
        "--num",
        "2",
        "--out-latents",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let request = SanaRequest {
        prompt: caption(&model, prompt),
        negative: Some(caption(&model, negative)),
        height: 8,
        width: 6,
        images: 2,
        seed: 7,
    };
    let params = FlowParams::default().with_steps(4).with_guidance(3.5);
    let want = sample_sana(&model, &params, &request, |_, _| {}).unwrap();
    let got = latents(&out);
    assert_eq!(got.shape(), &[2, 4, 8, 6]);
    assert_eq!(got.data(), want.data(), "CLI and library latents differ");
    assert_ne!(
        got.data()[..192],
        got.data()[192..],
        "the two images share noise"
    );
}

#[test]
fn sprint_samples_with_scm_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let model = SanaModel::load(folder("sprint")).unwrap();
    let (p, out) = (
        dir.path().join("p.safetensors"),
        dir.path().join("l.safetensors"),
    );
    let prompt = captions(&p, 4, model.config().caption_channels, 2.0);
    let (ok, err) = cli(&[
        "--weights",
        folder("sprint").to_str().unwrap(),
        "--prompt-embeds",
        p.to_str().unwrap(),
        "--height",
        "128",
        "--width",
        "128",
        "--out-latents",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let params = FlowParams::for_model(model.config());
    assert_eq!((params.sampler, params.steps), (FlowSamplerKind::Scm, 2));
    let request = SanaRequest {
        prompt: caption(&model, prompt),
        negative: None,
        height: 4,
        width: 4,
        images: 1,
        seed: 0,
    };
    let want = sample_sana(&model, &params, &request, |_, _| {}).unwrap();
    assert_eq!(latents(&out).data(), want.data());
}

#[test]
fn misuse_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = folder("base");
    let model = SanaModel::load(&base).unwrap();
    let c = model.config().caption_channels;
    let p = dir.path().join("p.safetensors");
    captions(&p, 5, c, 0.0);
    let wrong_width = dir.path().join("w.safetensors");
    captions(&wrong_width, 5, c + 1, 0.0);
    let extra = dir.path().join("x.safetensors");
    write_tensors(
        &extra,
        &[
            (
                "prompt_embeds".to_string(),
                RawTensor::from_f32(vec![2, c], &vec![0.5; 2 * c]),
            ),
            (
                "prompt_mask".to_string(),
                RawTensor::from_f32(vec![2], &[1.0, 1.0]),
            ),
        ],
        HashMap::new(),
    )
    .unwrap();
    let nan = dir.path().join("nan.safetensors");
    write_tensors(
        &nan,
        &[(
            "prompt_embeds".to_string(),
            RawTensor::from_f32(vec![1, c], &vec![f32::NAN; c]),
        )],
        HashMap::new(),
    )
    .unwrap();
    let out = dir.path().join("l.safetensors");
    let (w, p, o) = (
        base.to_str().unwrap(),
        p.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--weights", w, "--out-latents", o], "--prompt-embeds"),
        (
            vec!["--weights", w, "--prompt-embeds", p, "--out-latents", o],
            "negative_embeds",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--guidance",
                "1",
                "--height",
                "100",
            ],
            "multiple of 32",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--guidance",
                "1",
                "--sampler",
                "scm",
            ],
            "guidance_embeds",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--guidance",
                "1",
                "--sampler",
                "ddim",
            ],
            "flow-euler, flow-dpmpp2m or scm",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--class",
                "1",
            ],
            "--class",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--hidden-size",
                "64",
            ],
            "config flags",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                wrong_width.to_str().unwrap(),
                "--out-latents",
                o,
                "--guidance",
                "1",
            ],
            "prompt_embeds",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                extra.to_str().unwrap(),
                "--out-latents",
                o,
                "--guidance",
                "1",
            ],
            "prompt_mask",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                nan.to_str().unwrap(),
                "--out-latents",
                o,
                "--guidance",
                "1",
            ],
            "NaN",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--guidance",
                "1",
                "--steps",
                "0",
            ],
            "steps",
        ),
        (
            vec![
                "--weights",
                w,
                "--prompt-embeds",
                p,
                "--out-latents",
                o,
                "--guidance",
                "1",
                "--height",
                "1048576",
                "--width",
                "1048576",
            ],
            "limit",
        ),
    ];
    for (args, needle) in cases {
        let (ok, err) = cli(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    assert!(!out.exists(), "a refused run wrote latents");
    // The SANA flags on a DiT model.
    let dit = dir.path().join("dit.safetensors");
    let (ok, err) = Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args([
            "init",
            "--out",
            dit.to_str().unwrap(),
            "--input-dim",
            "4",
            "--hidden-size",
            "32",
            "--num-layers",
            "1",
            "--num-heads",
            "2",
        ])
        .output()
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(ok, "{err}");
    let (ok, err) = cli(&[
        "--weights",
        dit.to_str().unwrap(),
        "--prompt-embeds",
        p,
        "--out",
        o,
    ]);
    assert!(
        !ok && err.contains("--prompt-embeds is for SANA models"),
        "{err}"
    );
}
