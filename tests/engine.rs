//! The serving engine: concurrent mixed requests, batch-independent results, overload,
//! cancellation, deadlines and graceful shutdown — nothing is ever silently lost.

mod common;

use common::digits::{Classifier, demo_weights};
use common::tiny_class_conditional;
use linear_dit::engine::{
    Engine, EngineConfig, EngineError, EngineHandle, GenerateRequest, Outcome,
};
use linear_dit::sampling::metadata::{image_grid, schedule_of};
use linear_dit::sampling::{SamplerKind, SamplingParams, image_classes, sample};
use linear_dit::{Device, Grid, Model};
use std::sync::Arc;
use std::time::Duration;

fn model() -> Arc<Model> {
    Arc::new(Model::new(&tiny_class_conditional(9), Device::Cpu).unwrap())
}

fn request(
    class: usize,
    seed: u64,
    sampler: SamplerKind,
    steps: usize,
    images: usize,
) -> GenerateRequest {
    GenerateRequest::default()
        .with_class(class)
        .with_num_images(images)
        .with_params(
            SamplingParams::default()
                .with_sampler(sampler)
                .with_steps(steps)
                .with_guidance(4.0),
        )
        .with_seed(seed)
        .with_grid(Grid::new(4, 4))
}

fn start(model: Arc<Model>, max_batch: usize, max_queue: usize) -> EngineHandle {
    let config = EngineConfig::default()
        .with_max_batch(max_batch)
        .with_max_queue(max_queue);
    Engine::start(model, config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_requests_match_their_solo_runs() {
    let model = model();
    let engine = start(model.clone(), 64, 64);
    let samplers = [
        SamplerKind::Ddim { eta: 0.0 },
        SamplerKind::Ddpm,
        SamplerKind::DpmPp2m,
    ];
    let requests: Vec<GenerateRequest> = (0..12)
        .map(|i| {
            request(
                i % 10,
                100 + i as u64,
                samplers[i % 3],
                3 + i % 5,
                1 + i % 3,
            )
        })
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|r| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.generate(r).await })
        })
        .collect();
    for (task, r) in tasks.into_iter().zip(&requests) {
        let generated = task.await.unwrap().unwrap();
        let classes = image_classes(model.config(), r.class_label, r.num_images);
        let grid = r.grid.unwrap();
        let solo = sample(&model, &r.params, &classes, r.seed, grid, |_, _| {}).unwrap();
        assert_eq!(
            generated.images, solo,
            "a request's images changed inside a busy batch"
        );
    }
    assert_eq!(engine.metrics().count(Outcome::Ok), 12);
    let (forwards, rows) = engine.metrics().batch_rows.totals();
    assert!(
        rows / forwards as f64 > 2.0,
        "requests were not batched: {rows} rows in {forwards} forwards"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_digit_requests_get_the_digits_they_asked_for() {
    // The trained demo model behind the engine: every class, three samplers, two step counts,
    // all in flight at once. The digit classifier judges what comes back.
    let weights = demo_weights();
    let grid = image_grid(&weights, None).unwrap();
    let schedule = schedule_of(&weights).unwrap();
    let engine = start(Arc::new(Model::new(&weights, Device::Cpu).unwrap()), 64, 64);
    let samplers = [
        (SamplerKind::Ddim { eta: 0.0 }, 20),
        (SamplerKind::DpmPp2m, 15),
        (SamplerKind::Ddpm, 50),
    ];
    let tasks: Vec<_> = (0..10)
        .map(|class| {
            let (sampler, steps) = samplers[class % 3];
            let request = GenerateRequest::default()
                .with_class(class)
                .with_num_images(2)
                .with_params(
                    SamplingParams::default()
                        .with_sampler(sampler)
                        .with_steps(steps)
                        .with_schedule(schedule)
                        .with_guidance(4.0),
                )
                .with_seed(40 + class as u64)
                .with_grid(grid);
            let engine = engine.clone();
            tokio::spawn(async move { engine.generate(request).await })
        })
        .collect();
    let judge = Classifier::load();
    let mut correct = 0;
    for (class, task) in tasks.into_iter().enumerate() {
        let generated = task.await.unwrap().expect("every request succeeds");
        let predicted = judge.classify(&generated.images);
        println!("class {class}: classified as {predicted:?}");
        correct += predicted.iter().filter(|&&p| p == class).count();
    }
    println!("engine, mixed samplers: {correct}/20 samples are the digit asked for");
    assert!(
        correct >= 18,
        "only {correct}/20 samples are the digit asked for"
    );
    assert_eq!(engine.metrics().count(Outcome::Ok), 10);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_rejects_with_queue_full_and_completes_every_accepted_request() {
    let engine = start(model(), 4, 3);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .generate(request(i % 10, i as u64, SamplerKind::Ddpm, 4, 1))
                    .await
            })
        })
        .collect();
    let (mut ok, mut rejected) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(g) => {
                assert_eq!(g.images.shape(), &[1, 1, 8, 8]);
                ok += 1;
            }
            Err(EngineError::QueueFull(_)) => rejected += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(
        rejected > 0,
        "40 clients against a queue of 3 must see rejections"
    );
    assert_eq!(ok + rejected, 40, "every request is answered");
    let m = engine.metrics();
    assert_eq!(m.count(Outcome::Ok), ok as u64);
    assert_eq!(m.count(Outcome::QueueFull), rejected as u64);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_frees_its_slot() {
    let engine = start(model(), 2, 8);
    // A long request, abandoned after it starts; the next one must still run.
    let long = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .generate(request(1, 1, SamplerKind::Ddpm, 1000, 1))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    long.abort();
    let quick = engine
        .generate(request(2, 2, SamplerKind::Ddpm, 3, 1))
        .await;
    assert!(quick.is_ok());
    for _ in 0..50 {
        if engine.metrics().count(Outcome::Cancelled) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.metrics().count(Outcome::Cancelled), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_enforced() {
    let engine = start(model(), 8, 8);
    let mut r = request(3, 3, SamplerKind::Ddpm, 1000, 1);
    r.deadline = Some(Duration::from_millis(50));
    match engine.generate(r).await {
        Err(EngineError::DeadlineExceeded(limit)) => assert_eq!(limit, Duration::from_millis(50)),
        other => panic!(
            "expected a deadline error, got {:?}",
            other.map(|g| g.steps)
        ),
    }
    assert_eq!(engine.metrics().count(Outcome::DeadlineExceeded), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_accepted_requests_and_refuses_new_ones() {
    let engine = start(model(), 4, 64);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .generate(request(i % 10, i as u64, SamplerKind::Ddpm, 8, 1))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    engine.shutdown().await;
    assert!(!engine.is_ready());
    let mut answered = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => answered += 1,
            Err(EngineError::ShuttingDown) => answered += 1, // arrived after shutdown began
            Err(other) => panic!("accepted request lost: {other}"),
        }
    }
    assert_eq!(answered, 10);
    let m = engine.metrics();
    assert_eq!(m.count(Outcome::Ok) + m.count(Outcome::ShuttingDown), 10);
    assert!(matches!(
        engine
            .generate(request(0, 0, SamplerKind::Ddpm, 2, 1))
            .await,
        Err(EngineError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_oversized_requests_are_rejected_up_front() {
    let engine = start(model(), 4, 8);
    let bad_class = engine
        .generate(request(10, 0, SamplerKind::Ddpm, 2, 1))
        .await;
    assert!(matches!(bad_class, Err(EngineError::Invalid(_))));
    let too_big = engine
        .generate(request(1, 0, SamplerKind::Ddpm, 2, 3))
        .await; // 3 guided images = 6 rows > 4
    assert!(matches!(too_big, Err(EngineError::TooLarge(_))));
    assert_eq!(engine.metrics().count(Outcome::Invalid), 2);
    engine.shutdown().await;
}
