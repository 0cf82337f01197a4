//! Times the `sana` CPU forward on a diffusers folder and an input file, for
//! `python/sana_cpu_bench.py` (which times diffusers on the same weights and inputs in the
//! same run). Prints one JSON line: the median seconds per forward over `ROUNDS` runs after
//! one warm-up.
//!
//! ```text
//! cargo run --release --example sana_bench -- FOLDER INPUT.safetensors [ROUNDS]
//! ```

use linear_dit::model::sana::SanaInput;
use linear_dit::tensor_file::TensorFile;
use linear_dit::{SanaModel, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(folder), Some(input)) = (args.get(1), args.get(2)) else {
        return Err("usage: sana_bench FOLDER INPUT.safetensors [ROUNDS]".into());
    };
    let rounds: usize = args.get(3).map_or(Ok(5), |r| r.parse())?;
    let model = SanaModel::load(folder)?;
    let file = TensorFile::open(input)?;
    let read = |name: &str| -> Result<Tensor, linear_dit::Error> {
        Tensor::from_raw(name, &file.tensor(name)?)
    };
    let (x, t, captions) = (read("x")?, read("t")?, read("encoder_hidden_states")?);
    let mask = if file.contains("encoder_attention_mask") {
        Some(read("encoder_attention_mask")?)
    } else {
        None
    };
    let input = SanaInput {
        x: &x,
        t: t.data(),
        captions: &captions,
        mask: mask.as_ref().map(|m| m.data()),
        guidance: None,
    };
    model.forward(&input)?;
    let mut times: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            model.forward(&input).map(|_| start.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"median_s": times[times.len() / 2], "rounds": times, "threads": rayon::current_num_threads()})
    );
    Ok(())
}
