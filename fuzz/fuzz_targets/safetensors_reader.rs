#![no_main]
// max_len: 16384
//! Arbitrary bytes as a safetensors file: opening it and reading every tensor must never
//! panic or allocate past the budget; any malformed file is one `BadFile`-style error.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = linear_dit::tensor_file::TensorFile::from_bytes("fuzz.safetensors", data) else {
        return;
    };
    for name in file.names() {
        if let Ok(raw) = file.tensor(name) {
            let _ = raw.to_f32_vec(name);
            let _ = raw.to_i64_vec(name);
        }
    }
});
