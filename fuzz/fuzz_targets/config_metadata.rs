#![no_main]
// max_len: 1024
//! Arbitrary bytes as the `linear_dit.config` metadata JSON: parsing, validation, the
//! parameter count and the FLOP count must never panic, and a config that validates must
//! have a layout that agrees with its closed-form parameter count.

use libfuzzer_sys::fuzz_target;
use linear_dit::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_json(json) else {
        return;
    };
    let _ = config.flops_per_token(256);
    let _ = config.flops_per_token(0);
    if let Ok(count) = config.param_count()
        && config.num_layers <= 64
    {
        // Small enough to list: the layout must agree with the closed form.
        let layout = linear_dit::weights::tensor_layout(&config).expect("validated config");
        let listed: u128 = layout.iter().map(|t| t.numel() as u128).sum();
        assert_eq!(listed, u128::from(count), "{config:?}");
    }
});
