#![no_main]
// max_len: 16384
//! Arbitrary bytes as a weights file, loaded the way `--weights` loads it (Axon names are
//! detected and imported): never a panic, a hang or an allocation past the budget.
//! Inputs that start with Axon names reach the import; the flags the import needs
//! (num_heads, num_steps) come from the input's first byte so both the "missing flag" and
//! the full import paths are exercised.

use libfuzzer_sys::fuzz_target;
use linear_dit::tensor_file::TensorFile;
use linear_dit::{ConfigOverrides, Weights};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let Ok(file) = TensorFile::from_bytes("fuzz.safetensors", bytes) else {
        return;
    };
    let overrides = ConfigOverrides {
        num_heads: (flags & 1 != 0).then_some(usize::from(flags >> 4).max(1)),
        num_steps: (flags & 2 != 0).then_some(1000),
        ..Default::default()
    };
    if let Ok(weights) = Weights::from_file(&file, &overrides) {
        for name in weights.tensors().keys() {
            let _ = weights.f32(name);
        }
        let _ = weights.config().param_count();
    }
});
