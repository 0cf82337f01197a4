//! Sampling: requests advanced together give exactly the samples each gives alone (CPU,
//! f32), the same seed gives the same samples, and bad sampling requests are clear errors.

mod common;

use linear_dit::sampling::{
    NoiseKey, SamplerKind, SamplingParams, SamplingPlan, ScheduleKind, Spacing, Trajectory, sample,
    step_all,
};
use linear_dit::{Config, Device, Grid, InitKind, Model, Weights};

fn model(classes: Option<usize>) -> Model {
    let config = Config {
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_classes: classes,
        ..Config::new(4)
    };
    Model::new(
        &Weights::init(&config, InitKind::Random, 5).unwrap(),
        Device::Cpu,
    )
    .unwrap()
}

fn params(sampler: SamplerKind, steps: usize, guidance: f32) -> SamplingParams {
    SamplingParams::default()
        .with_sampler(sampler)
        .with_steps(steps)
        .with_guidance(guidance)
        .with_schedule(ScheduleKind::Linear)
        .with_spacing(Spacing::Trailing)
        .with_clip_x0(true)
}

/// Runs one trajectory alone to the end.
fn alone(
    model: &Model,
    p: &SamplingParams,
    class: Option<usize>,
    key: NoiseKey,
    grid: Grid,
) -> Vec<f32> {
    let plan = SamplingPlan::new(model.config(), p).unwrap();
    let mut tr = Trajectory::new(model.config(), plan, class, key, grid).unwrap();
    while !tr.is_done() {
        step_all(model, &mut [&mut tr]).unwrap();
    }
    tr.tokens().to_vec()
}

#[test]
fn requests_run_together_equal_each_run_alone() {
    let model = model(Some(10));
    let config = model.config().clone();
    // Different samplers, step counts, guidance, classes, seeds and grids, started at
    // different times so they sit at different points of their schedules.
    let requests = [
        (
            params(SamplerKind::Ddim { eta: 0.0 }, 12, 4.0),
            Some(3),
            7u64,
            Grid::new(4, 4),
            0usize,
        ),
        (
            params(SamplerKind::Ddpm, 9, 1.0),
            Some(1),
            8,
            Grid::new(4, 4),
            2,
        ),
        (
            params(SamplerKind::DpmPp2m, 6, 2.5),
            Some(9),
            9,
            Grid::new(3, 5),
            1,
        ),
        (
            params(SamplerKind::Ddim { eta: 0.5 }, 5, 1.5),
            Some(0),
            7,
            Grid::new(4, 4),
            4,
        ),
        (
            params(SamplerKind::DpmPp2m, 15, 1.0),
            None,
            10,
            Grid::new(4, 4),
            0,
        ),
    ];
    let mut trajectories: Vec<Trajectory> = Vec::new();
    let mut pending: Vec<usize> = (0..requests.len()).collect();
    let mut tick = 0;
    loop {
        pending.retain(|&i| {
            let (p, class, seed, grid, start) = &requests[i];
            if *start > tick {
                return true;
            }
            let guided = params(
                p.sampler,
                p.steps,
                if class.is_some() { p.guidance } else { 1.0 },
            );
            let plan = SamplingPlan::new(&config, &guided).unwrap();
            let key = NoiseKey {
                seed: *seed,
                image: i as u32,
            };
            trajectories.push(Trajectory::new(&config, plan, *class, key, *grid).unwrap());
            false
        });
        let mut refs: Vec<&mut Trajectory> =
            trajectories.iter_mut().filter(|t| !t.is_done()).collect();
        if refs.is_empty() && pending.is_empty() {
            break;
        }
        step_all(&model, &mut refs).unwrap();
        tick += 1;
    }
    // Trajectories were pushed in start order; match each back to its request.
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| (requests[i].4, i));
    for (tr, &i) in trajectories.iter().zip(&order) {
        let (p, class, seed, grid, _) = &requests[i];
        let guided = params(
            p.sampler,
            p.steps,
            if class.is_some() { p.guidance } else { 1.0 },
        );
        let expect = alone(
            &model,
            &guided,
            *class,
            NoiseKey {
                seed: *seed,
                image: i as u32,
            },
            *grid,
        );
        assert_eq!(
            tr.tokens(),
            expect.as_slice(),
            "request {i} differs when batched"
        );
    }
}

#[test]
fn same_seed_same_samples_different_seed_different_samples() {
    let model = model(Some(10));
    let p = params(SamplerKind::Ddpm, 4, 3.0);
    let grid = Grid::new(4, 4);
    let a = sample(&model, &p, &[Some(1), Some(2)], 42, grid, |_, _| {}).unwrap();
    let b = sample(&model, &p, &[Some(1), Some(2)], 42, grid, |_, _| {}).unwrap();
    let c = sample(&model, &p, &[Some(1), Some(2)], 43, grid, |_, _| {}).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.shape(), &[2, 1, 8, 8]);
    assert!(a.data().iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn bad_sampling_requests_are_clear_errors() {
    let conditional = model(Some(10));
    let unconditional = model(None);
    let config = conditional.config();
    let err =
        |p: SamplingParams, m: &Model| SamplingPlan::new(m.config(), &p).unwrap_err().to_string();
    let ddim = SamplerKind::Ddim { eta: 0.0 };
    assert!(err(params(ddim, 0, 4.0), &conditional).contains("`steps` is 0"));
    assert!(err(params(ddim, 1001, 4.0), &conditional).contains("num_steps = 1000"));
    assert!(err(params(ddim, 10, f32::NAN), &conditional).contains("guidance"));
    assert!(err(params(ddim, 10, f32::INFINITY), &conditional).contains("finite"));
    assert!(err(params(ddim, 10, -1.0), &conditional).contains("≥ 0"));
    assert!(err(params(ddim, 10, 3.0), &unconditional).contains("unconditional"));
    assert!(
        err(
            params(SamplerKind::Ddim { eta: 2.0 }, 10, 3.0),
            &conditional
        )
        .contains("eta")
    );
    let plan = SamplingPlan::new(config, &params(ddim, 10, 3.0)).unwrap();
    let key = NoiseKey { seed: 0, image: 0 };
    let e = Trajectory::new(config, plan.clone(), Some(10), key, Grid::new(4, 4)).unwrap_err();
    assert!(e.to_string().contains("classes 0..9"), "{e}");
    let e = Trajectory::new(config, plan, None, key, Grid::new(4, 4)).unwrap_err();
    assert!(e.to_string().contains("guidance"), "{e}");
    assert!(
        "euler"
            .parse::<SamplerKind>()
            .unwrap_err()
            .to_string()
            .contains("unknown sampler")
    );
}

#[test]
fn parsing_a_sampler_gives_the_complete_sampler() {
    assert_eq!(
        SamplerKind::parse("ddim", None).unwrap(),
        SamplerKind::Ddim { eta: 0.0 }
    );
    assert_eq!(
        SamplerKind::parse("DDIM", Some(0.5)).unwrap(),
        SamplerKind::Ddim { eta: 0.5 }
    );
    assert_eq!(SamplerKind::parse("ddpm", None).unwrap(), SamplerKind::Ddpm);
    assert_eq!(
        SamplerKind::parse("dpm++2m", None).unwrap(),
        SamplerKind::DpmPp2m
    );
    let e = SamplerKind::parse("ddpm", Some(0.5)).unwrap_err();
    assert!(e.to_string().contains("eta"), "{e}");
    let e = SamplerKind::parse("euler", None).unwrap_err();
    assert!(e.to_string().contains("unknown sampler `euler`"), "{e}");
}
