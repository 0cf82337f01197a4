//! The library in a few lines: load a weights file (memory-mapped), run one forward on a
//! batch whose samples sit at different timesteps, from several threads at once.
//!
//! ```sh
//! cargo run --release --example forward -- tests/fixtures/dit_class.weights.safetensors
//! ```

use linear_dit::sampling::ModelDescription;
use linear_dit::{ConfigOverrides, Device, Grid, Input, Model, Tensor, Weights};
use std::sync::Arc;

fn main() -> Result<(), linear_dit::Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/fixtures/dit_class.weights.safetensors".into());
    let weights = Weights::load(&path, &ConfigOverrides::default())?;
    let config = weights.config().clone();
    // The grid of the file's image metadata; a checkpoint without it gets 4×4 tokens.
    let description = ModelDescription::from_weights(&weights)?;
    let model = Arc::new(Model::new(&weights, Device::Auto)?);
    println!("{} on {}", path, model.describe_backend());

    let (batch, grid) = (4, description.grid().unwrap_or(Grid::new(4, 4)));
    let x = Tensor::new(
        vec![batch, grid.tokens(), config.input_dim],
        (0..batch * grid.tokens() * config.input_dim)
            .map(|i| (i as f32 * 0.37).sin())
            .collect(),
    )?;
    let t = [0.0, 250.0, 500.5, 999.0];
    let y: Option<Vec<i64>> = description
        .num_classes()
        .map(|c| (0..batch as i64).map(|i| i % c as i64).collect());

    // `Model` is Send + Sync: share it between threads, no locking on the caller's side.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (model, x, y) = (model.clone(), x.clone(), y.clone());
            std::thread::spawn(move || {
                let mut input = Input::new(&x, &t).with_grid(grid);
                if let Some(y) = &y {
                    input = input.with_labels(y);
                }
                model.forward(&input)
            })
        })
        .collect();
    for handle in handles {
        let eps = handle.join().expect("forward thread")?;
        println!("eps {:?}, first values {:?}", eps.shape(), &eps.data()[..4]);
    }
    Ok(())
}
