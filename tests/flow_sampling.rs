//! Flow-matching sampling of the `sana` flavor against diffusers itself, on fixtures that
//! `python/make_flow_fixtures.py` wrote with diffusers 0.42.1 (not with this crate):
//!
//! - the timesteps and sigmas of every sampler for 1–50 steps (scm 1–4) equal diffusers'
//!   (the DPM timesteps, which diffusers casts to integers, exactly; the rest within one f32
//!   rounding, 1e-6 relative);
//! - whole runs of `SanaPipeline` / `SanaSprintPipeline` (scheduler + transformer, classifier-
//!   free guidance in one batch, Sprint's embedded guidance and step noise) from the same
//!   noise end on the same latents within 1e-4 of their largest value. The reference runs
//!   diffusers' timestep sinusoid correctly rounded, as this crate computes it (torch's f32
//!   `exp` is one ulp off at 2 of its 128 frequencies, which the tiny perturbed models
//!   amplify; see the fixture script); the distance to the unpatched pipeline is printed.

mod common;

use common::rel_error;
use linear_dit::sampling::flow::{
    Caption, DEFAULT_FLOW_SHIFT, FlowNoise, FlowParams, FlowPlan, FlowSamplerKind, FlowSchedule,
    SanaTrajectory, run_to_end, stack_latents,
};
use linear_dit::tensor_file::TensorFile;
use linear_dit::{SanaModel, Tensor};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("flow").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn values(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn schedules_equal_diffusers() {
    let all = json("schedules.json");
    let mut checked = 0;
    for (name, kind) in [
        ("flow-dpmpp2m", FlowSamplerKind::DpmPp2m),
        ("flow-euler", FlowSamplerKind::Euler),
        ("scm", FlowSamplerKind::Scm),
    ] {
        for (shift, runs) in all[name].as_object().unwrap() {
            for (steps, run) in runs.as_object().unwrap() {
                let steps: usize = steps.parse().unwrap();
                // scm has no shift (the fixture files it under "0").
                let shift_value = match kind {
                    FlowSamplerKind::Scm => DEFAULT_FLOW_SHIFT,
                    _ => shift.parse().unwrap(),
                };
                let ours = FlowSchedule::new(kind, steps, shift_value).unwrap();
                let (t, s) = (values(&run["timesteps"]), values(&run["sigmas"]));
                assert_eq!(ours.timesteps().len(), t.len(), "{name} {shift} {steps}");
                assert_eq!(ours.sigmas().len(), s.len(), "{name} {shift} {steps}");
                for (what, a, b) in [
                    ("timestep", ours.timesteps(), &t),
                    ("sigma", ours.sigmas(), &s),
                ] {
                    for (i, (&a, &b)) in a.iter().zip(b.iter()).enumerate() {
                        let a = f64::from(a);
                        let exact = kind == FlowSamplerKind::DpmPp2m && what == "timestep";
                        let tolerance = if exact { 0.0 } else { 1e-6 * b.abs().max(1.0) };
                        assert!(
                            (a - b).abs() <= tolerance,
                            "{name} shift {shift}, {steps} steps, {what} {i}: ours {a}, diffusers {b}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 50 + 50 + 50 + 4, "every schedule of the fixture");
}

fn tensor(file: &TensorFile, name: &str) -> Option<Tensor> {
    file.contains(name)
        .then(|| Tensor::from_raw(name, &file.tensor(name).unwrap()).unwrap())
}

/// Runs loop `name` of loops.json with our sampler from diffusers' noise; returns the
/// relative error of the final latents.
fn run_loop(name: &str, meta: &Value) -> f64 {
    let model = SanaModel::load(
        fixtures()
            .join("sana")
            .join(meta["model"].as_str().unwrap()),
    )
    .unwrap();
    let file = TensorFile::open(fixtures().join(format!("flow/loop_{name}.safetensors"))).unwrap();
    let caption = |embeds: &str, mask: &str| {
        tensor(&file, embeds).map(|e| {
            let m = tensor(&file, mask).unwrap().into_data();
            Arc::new(Caption::new(model.config(), e, Some(m)).unwrap())
        })
    };
    let prompt = caption("prompt_embeds", "prompt_mask").unwrap();
    let negative = caption("negative_embeds", "negative_mask");
    let params = FlowParams::default()
        .with_sampler(meta["sampler"].as_str().unwrap().parse().unwrap())
        .with_steps(meta["steps"].as_u64().unwrap() as usize)
        .with_guidance(meta["guidance"].as_f64().unwrap() as f32);
    let plan = FlowPlan::new(model.config(), &params).unwrap();
    let (images, height, width) = (
        meta["images"].as_u64().unwrap() as usize,
        meta["height"].as_u64().unwrap() as usize,
        meta["width"].as_u64().unwrap() as usize,
    );
    let draws: Vec<Tensor> = (0..meta["noise_draws"].as_u64().unwrap())
        .map(|k| tensor(&file, &format!("noise_{k}")).unwrap())
        .collect();
    let mut trajectories: Vec<SanaTrajectory> = (0..images)
        .map(|i| {
            let per_image: Vec<Vec<f32>> = draws
                .iter()
                .map(|d| {
                    let n = d.data().len() / images;
                    d.data()[i * n..(i + 1) * n].to_vec()
                })
                .collect();
            SanaTrajectory::new(
                plan.clone(),
                prompt.clone(),
                negative.clone(),
                FlowNoise::Given(Arc::new(per_image)),
                height,
                width,
            )
            .unwrap()
        })
        .collect();
    run_to_end(&model, &mut trajectories, &mut |_, _| {}).unwrap();
    let ours = stack_latents(&trajectories).unwrap();
    let want = tensor(&file, "latents").unwrap();
    assert_eq!(ours.shape(), want.shape(), "{name}: latents shape");
    let largest = want.data().iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let worst = ours
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    let err = rel_error(ours.data(), want.data());
    let plain = rel_error(
        ours.data(),
        tensor(&file, "latents_torch_exp").unwrap().data(),
    );
    println!(
        "{name}: relative error {err:.3e}, max abs error {worst:.3e} (max |latent| {largest:.2}); against the pipeline with torch's exp {plain:.3e}"
    );
    assert!(
        worst <= TOLERANCE * largest,
        "{name}: max abs error {worst:.3e} > {TOLERANCE} × {largest:.2}"
    );
    err
}

#[test]
fn full_loops_equal_diffusers_pipelines() {
    let meta = json("loops.json");
    let loops = meta["loops"].as_object().unwrap();
    let mut samplers = std::collections::BTreeSet::new();
    for (name, m) in loops {
        let err = run_loop(name, m);
        assert!(err <= TOLERANCE, "{name}: relative error {err:.3e}");
        samplers.insert(m["sampler"].as_str().unwrap().to_string());
    }
    assert_eq!(samplers.len(), 3, "each sampler has a loop: {samplers:?}");
}
