//! Another Rust service linking linear-dit: it loads a model once, starts the serving engine
//! in-process, and asks it for images from many tasks at once. The engine batches their
//! denoising steps together; each caller gets exactly the images it would get alone.
//!
//! ```sh
//! cargo run --release --example embed_engine -- assets/digits.safetensors
//! ```

use linear_dit::engine::{Engine, EngineConfig, GenerateRequest};
use linear_dit::sampling::ModelDescription;
use linear_dit::{ConfigOverrides, Device, Model, Weights};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "assets/digits.safetensors".into());
    let weights = Weights::load(&path, &ConfigOverrides::default())?;
    // The image size, schedule and sampling defaults the weights file says; requests that
    // give no grid get the model's.
    let description = ModelDescription::from_weights(&weights)?;
    let params = description.default_sampling();
    let model = Arc::new(Model::new(&weights, Device::Auto)?);
    let engine = Engine::start_with_description(model, description, EngineConfig::default())?;

    // Ten callers, one per digit, all at once.
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|digit| {
            let (engine, params) = (engine.clone(), params.clone());
            tokio::spawn(async move {
                let request = GenerateRequest::default()
                    .with_class(digit)
                    .with_num_images(2)
                    .with_params(params)
                    .with_seed(42);
                (digit, engine.generate(request).await)
            })
        })
        .collect();
    for task in tasks {
        let (digit, result) = task.await?;
        let generated = result?;
        println!(
            "digit {digit}: images {:?}, waited {:.0} ms, done after {:.0} ms",
            generated.images.shape(),
            generated.queued.as_secs_f64() * 1e3,
            generated.elapsed.as_secs_f64() * 1e3
        );
    }
    let (forwards, rows) = engine.metrics().batch_rows.totals();
    println!(
        "20 images in {:.2} s: {forwards} batched forwards, {:.1} rows each on average",
        start.elapsed().as_secs_f64(),
        rows / forwards.max(1) as f64
    );
    engine.shutdown().await;
    Ok(())
}
