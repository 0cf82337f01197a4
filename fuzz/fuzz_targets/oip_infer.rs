#![no_main]
// max_len: 8192
//! Arbitrary bytes as an Open Inference Protocol infer body, JSON or with the binary tensor
//! data extension: decoding must never panic, and whatever it decodes must satisfy the
//! invariants the engine relies on (the tensor holds exactly the elements its shape says; the
//! grid's token count does not wrap), and pass or fail the model's input validation cleanly.
//!
//! Input layout: byte 0 = 0 means a plain JSON body (the rest); otherwise bytes 1..3 are the
//! `Inference-Header-Content-Length` (u16, little-endian) of a binary body (the rest).

use libfuzzer_sys::fuzz_target;
use linear_dit::model::validate;
use linear_dit::server::decode_infer_body;
use linear_dit::{Config, Input};

fuzz_target!(|data: &[u8]| {
    let decoded = match data {
        [0, body @ ..] => decode_infer_body(body, None),
        [_, lo, hi, body @ ..] => {
            decode_infer_body(body, Some(usize::from(u16::from_le_bytes([*lo, *hi]))))
        }
        _ => return,
    };
    let Ok(decoded) = decoded else {
        return;
    };
    let inputs = decoded.inputs;
    let numel = inputs.x.shape().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    assert_eq!(numel, Some(inputs.x.data().len()), "shape and data disagree");
    if let Some(grid) = inputs.grid {
        assert!(grid.rows.checked_mul(grid.cols).is_some(), "grid {grid} wraps");
    }
    let config = Config {
        hidden_size: 32,
        num_layers: 1,
        num_heads: 4,
        num_classes: Some(10),
        ..Config::new(4)
    };
    let input = Input {
        x: &inputs.x,
        t: &inputs.t,
        y: inputs.y.as_deref(),
        grid: inputs.grid,
    };
    let _ = validate(&config, &input);
});
