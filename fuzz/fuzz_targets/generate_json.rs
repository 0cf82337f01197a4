#![no_main]
// max_len: 4096
//! Arbitrary bytes as a `/v1/generate` body: decoding must never panic, and a decoded
//! request must pass or fail the engine's own checks (caps, sampling plan, size budget)
//! without panicking or allocating past what its caps allow.

use libfuzzer_sys::fuzz_target;
use linear_dit::engine::EngineConfig;
use linear_dit::sampling::ModelDescription;
use linear_dit::sampling::{SamplingPlan, check_sampling_size};
use linear_dit::server::decode_generate_request;
use linear_dit::{Config, Grid};

fuzz_target!(|data: &[u8]| {
    let config = Config {
        hidden_size: 32,
        num_layers: 1,
        num_heads: 4,
        num_classes: Some(10),
        ..Config::new(4)
    };
    let description = ModelDescription::of(&config).with_grid(Grid::new(4, 4));
    let Ok((request, _format)) = decode_generate_request(data, &description) else {
        return;
    };
    let limits = EngineConfig::default();
    if request.num_images == 0
        || request.num_images > limits.max_images_per_request
        || request.params.steps > limits.max_steps_per_request
    {
        return;
    }
    if SamplingPlan::new(&config, &request.params).is_ok() {
        let grid = request.grid.unwrap_or(Grid::new(4, 4));
        let _ = check_sampling_size(&config, grid, request.num_images);
    }
});
