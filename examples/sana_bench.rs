//! Times the `sana` forward, or the whole flow-matching sampling loop, on a diffusers folder
//! and an input file, for `python/sana_cpu_bench.py` and `python/sana_gpu_bench.py` (which
//! time diffusers on the same weights and inputs in the same run).
//!
//! ```text
//! sana_bench [OPTIONS] FOLDER INPUT.safetensors [ROUNDS]
//!   --loop STEPS     time flow-dpmpp2m over STEPS steps instead of one forward; INPUT holds
//!                    noise [images, C, H, W], prompt_embeds [S, C_cap], prompt_mask [S] and,
//!                    when guided, negative_embeds / negative_mask
//!   --guidance G     classifier-free guidance of the loop (default 4.5: the negative
//!                    captions run in the same batch as the prompt)
//!   --latents OUT    write the loop's final latents to OUT (safetensors, `latents`)
//!   --interleave     wait for a line on stdin before each round and print that round's
//!                    seconds at once, so the caller can alternate its own rounds with ours
//!   --device D       cpu, cuda or auto (default cpu)
//!   --precision P    auto, f32, bf16 or f16 (default auto: f32 on the CPU, bf16 on a GPU)
//! ```
//!
//! After one untimed warm-up round, prints one JSON line per round with `--interleave`, and
//! always a last JSON line with the median seconds over `ROUNDS` (default 5) rounds.

use linear_dit::backends::{Device, Precision};
use linear_dit::model::sana::SanaInput;
use linear_dit::sampling::flow::{
    Caption, FlowNoise, FlowParams, FlowPlan, FlowSamplerKind, SanaTrajectory, run_to_end,
    stack_latents,
};
use linear_dit::tensor_file::{RawTensor, TensorFile, write_tensors};
use linear_dit::weights::SanaWeights;
use linear_dit::{SanaModel, Tensor};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// The command line.
struct Args {
    folder: String,
    input: String,
    rounds: usize,
    loop_steps: Option<usize>,
    guidance: f32,
    latents: Option<String>,
    interleave: bool,
    device: Device,
    precision: Precision,
}

fn parse_args() -> Fallible<Args> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut loop_steps, mut guidance, mut latents, mut interleave) = (None, 4.5, None, false);
    let (mut device, mut precision) = (Device::Cpu, Precision::Auto);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--loop" => loop_steps = Some(value("--loop")?.parse()?),
            "--guidance" => guidance = value("--guidance")?.parse()?,
            "--latents" => latents = Some(value("--latents")?),
            "--interleave" => interleave = true,
            "--device" => device = value("--device")?.parse()?,
            "--precision" => precision = value("--precision")?.parse()?,
            _ => positional.push(arg),
        }
    }
    let [folder, input, rest @ ..] = positional.as_slice() else {
        return Err("usage: sana_bench [--loop STEPS] [--guidance G] [--latents OUT] [--interleave] [--device D] [--precision P] FOLDER INPUT.safetensors [ROUNDS]".into());
    };
    Ok(Args {
        folder: folder.clone(),
        input: input.clone(),
        rounds: rest.first().map_or(Ok(5), |r| r.parse())?.max(1),
        loop_steps,
        guidance,
        latents,
        interleave,
        device,
        precision,
    })
}

fn read(file: &TensorFile, name: &str) -> Result<Tensor, linear_dit::Error> {
    Tensor::from_raw(name, &file.tensor(name)?)
}

/// One forward of the model on the input file's `x`, `t`, `encoder_hidden_states` and
/// optional `encoder_attention_mask`.
fn forward_round(model: &SanaModel, file: &TensorFile) -> Fallible<impl Fn() -> Fallible<()>> {
    let (x, t, captions) = (
        read(file, "x")?,
        read(file, "t")?,
        read(file, "encoder_hidden_states")?,
    );
    let mask = match file.contains("encoder_attention_mask") {
        true => Some(read(file, "encoder_attention_mask")?),
        false => None,
    };
    Ok(move || {
        // Each round is a new request's forward: it pays for its captions' keys and values.
        model.forget_captions();
        model.forward(&SanaInput {
            x: &x,
            t: t.data(),
            captions: &captions,
            mask: mask.as_ref().map(|m| m.data()),
            guidance: None,
        })?;
        Ok(())
    })
}

/// What one sampling round needs: the plan, the captions and each image's initial noise.
struct LoopInput {
    plan: Arc<FlowPlan>,
    prompt: Arc<Caption>,
    negative: Option<Arc<Caption>>,
    noise: Vec<Arc<Vec<Vec<f32>>>>,
    size: (usize, usize),
}

impl LoopInput {
    fn load(model: &SanaModel, file: &TensorFile, steps: usize, guidance: f32) -> Fallible<Self> {
        let params = FlowParams::default()
            .with_sampler(FlowSamplerKind::DpmPp2m)
            .with_steps(steps)
            .with_guidance(guidance);
        let plan = FlowPlan::new(model.config(), &params)?;
        let caption = |embeds: &str, mask: &str| -> Fallible<Arc<Caption>> {
            let mask = read(file, mask)?.into_data();
            Ok(Arc::new(Caption::new(
                model.config(),
                read(file, embeds)?,
                Some(mask),
            )?))
        };
        let prompt = caption("prompt_embeds", "prompt_mask")?;
        let negative = match plan.is_guided() {
            true => Some(caption("negative_embeds", "negative_mask")?),
            false => None,
        };
        let noise = read(file, "noise")?;
        let &[images, _, height, width] = noise.shape() else {
            return Err(
                format!("noise has shape {:?}; expected [n, C, H, W]", noise.shape()).into(),
            );
        };
        let per_image = noise.data().len() / images.max(1);
        let noise = noise
            .data()
            .chunks(per_image.max(1))
            .map(|n| Arc::new(vec![n.to_vec()]))
            .collect();
        Ok(LoopInput {
            plan,
            prompt,
            negative,
            noise,
            size: (height, width),
        })
    }

    /// The whole loop from the given noise: the final latents `[images, C, H, W]`. Each run
    /// is a new request: it computes its captions' keys and values once, not zero times.
    fn run(&self, model: &SanaModel) -> Fallible<Tensor> {
        model.forget_captions();
        let mut trajectories = self
            .noise
            .iter()
            .map(|n| {
                SanaTrajectory::new(
                    self.plan.clone(),
                    self.prompt.clone(),
                    self.negative.clone(),
                    FlowNoise::Given(n.clone()),
                    self.size.0,
                    self.size.1,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        run_to_end(model, &mut trajectories, &mut |_, _| {})?;
        Ok(stack_latents(&trajectories)?)
    }
}

/// Runs `round` once untimed, then `rounds` times timed (each after a stdin line when
/// `interleave`); the sorted seconds.
fn time_rounds(
    rounds: usize,
    interleave: bool,
    round: impl Fn() -> Fallible<()>,
) -> Fallible<Vec<f64>> {
    round()?;
    let mut lines = std::io::stdin().lock().lines();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        if interleave && lines.next().transpose()?.is_none() {
            break;
        }
        let start = Instant::now();
        round()?;
        let seconds = start.elapsed().as_secs_f64();
        if interleave {
            println!("{}", serde_json::json!({ "s": seconds }));
        }
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn main() -> Fallible<()> {
    let args = parse_args()?;
    let model = SanaModel::on(
        &SanaWeights::load(&args.folder)?,
        args.device,
        args.precision,
    )?;
    let file = TensorFile::open(&args.input)?;
    let times = match args.loop_steps {
        None => time_rounds(args.rounds, args.interleave, forward_round(&model, &file)?)?,
        Some(steps) => {
            let input = LoopInput::load(&model, &file, steps, args.guidance)?;
            let times = time_rounds(args.rounds, args.interleave, || input.run(&model).map(drop))?;
            if let Some(out) = &args.latents {
                let latents = input.run(&model)?;
                let raw = RawTensor::from_f32(latents.shape().to_vec(), latents.data());
                write_tensors(out, &[("latents".to_string(), raw)], Default::default())?;
            }
            times
        }
    };
    let median = times.get(times.len() / 2).copied().ok_or("no round ran")?;
    println!(
        "{}",
        serde_json::json!({"median_s": median, "rounds": times, "threads": rayon::current_num_threads()})
    );
    Ok(())
}
