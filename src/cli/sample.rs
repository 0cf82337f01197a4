//! `linear-dit sample`: generate images with a trained model and write them as a PNG grid
//! (and optionally as a tensor file).

use super::progress;
use anyhow::{Context, Result, bail};
use clap::Args;
use linear_dit::image::write_png_grid;
use linear_dit::sampling::{SamplerKind, SamplingParams, ScheduleKind, Spacing, sample};
use linear_dit::tensor_file::write_tensors;
use linear_dit::{ConfigOverrides, Device, Grid, Model, Precision, Weights};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// Metadata key of a trained model's image shape, e.g. `1x16x16 [-1,1]`.
const IMAGE_KEY: &str = "linear_dit.image";
/// Metadata key of a trained model's noise schedule, e.g. `linear 1e-4 0.02 1000`.
const SCHEDULE_KEY: &str = "linear_dit.schedule";

/// Generate images from a trained model: a PNG grid, and optionally the raw tensor.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Trained weights (e.g. assets/digits.safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Class to generate [default: cycle through all classes; unconditional models: none].
    #[arg(long = "class")]
    class: Option<usize>,
    /// Number of images.
    #[arg(long = "num", default_value_t = 16)]
    num: usize,
    /// Inference steps (1 … num_steps).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Sampler: ddim, ddpm or dpmpp2m.
    #[arg(long, default_value = "ddim")]
    sampler: SamplerKind,
    /// DDIM stochasticity η in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Classifier-free guidance scale, 1 = off [default: 4 for class-conditional models, 1
    /// otherwise; other values need a class-conditional model].
    #[arg(long)]
    guidance: Option<f32>,
    /// Seed: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise schedule [default: the weights' `linear_dit.schedule` metadata, else linear].
    #[arg(long)]
    schedule: Option<ScheduleKind>,
    /// Timestep spacing: trailing, leading or linspace.
    #[arg(long, default_value = "trailing")]
    spacing: Spacing,
    /// Do not clamp each step's x̂₀ to [−1, 1] (for latent-space models).
    #[arg(long)]
    no_clip: bool,
    /// Image size HxW in pixels [default: the weights' `linear_dit.image` metadata].
    #[arg(long)]
    size: Option<Grid>,
    /// auto (GPU if usable, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    backend: Device,
    /// Compute precision: auto, f32, bf16 or f16.
    #[arg(long, default_value = "auto")]
    precision: Precision,
    /// Output PNG (a grid of the samples, upscaled).
    #[arg(long)]
    out: PathBuf,
    /// Also write the samples as safetensors: `images`, F32 [N, C, H, W] in [−1, 1].
    #[arg(long)]
    out_tensor: Option<PathBuf>,
    /// Upscaling factor of the PNG [default: so each image is at least 64 pixels tall].
    #[arg(long)]
    scale: Option<usize>,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let weights = Weights::load(&args.weights, &ConfigOverrides::default())?;
    let config = weights.config().clone();
    let metadata = weights.metadata();
    let p = config.patch_size;
    let (height, width) = match (args.size, metadata.get(IMAGE_KEY)) {
        (Some(size), _) => (size.rows, size.cols),
        (None, Some(text)) => parse_image_shape(text).with_context(|| {
            format!(
                "metadata `{IMAGE_KEY}` = `{text}` of {}",
                args.weights.display()
            )
        })?,
        (None, None) => {
            bail!("the weights have no `{IMAGE_KEY}` metadata: give the image size with --size HxW")
        }
    };
    if height % p != 0 || width % p != 0 {
        bail!("image size {height}x{width} is not divisible by patch_size {p}");
    }
    let grid = Grid::new(height / p, width / p);
    let schedule = match (args.schedule, metadata.get(SCHEDULE_KEY)) {
        (Some(kind), _) => kind,
        (None, Some(text)) => text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse::<ScheduleKind>()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("metadata `{SCHEDULE_KEY}`"))?,
        (None, None) => ScheduleKind::Linear,
    };
    if args.num == 0 {
        bail!("--num must be at least 1");
    }
    let sampler = match args.sampler {
        SamplerKind::Ddim { .. } => SamplerKind::Ddim { eta: args.eta },
        other => other,
    };
    let params = SamplingParams {
        sampler,
        steps: args.steps,
        guidance: args.guidance.unwrap_or(if config.num_classes.is_some() {
            4.0
        } else {
            1.0
        }),
        schedule,
        spacing: args.spacing,
        clip_x0: !args.no_clip,
    };
    let classes: Vec<Option<usize>> = match (args.class, config.num_classes) {
        (Some(k), _) => vec![Some(k); args.num],
        (None, Some(c)) => (0..args.num).map(|i| Some(i % c)).collect(),
        (None, None) => vec![None; args.num],
    };
    let model = Model::with_precision(&weights, args.backend, args.precision)?;

    let bar = progress::bar(args.steps as u64, "steps");
    let start = Instant::now();
    let images = sample(&model, &params, &classes, args.seed, grid, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        images = args.num,
        seconds = format!("{seconds:.2}"),
        ms_per_image = format!("{:.1}", seconds * 1e3 / args.num as f64),
        sampler = params.sampler.name(),
        steps = params.steps,
        guidance = params.guidance,
        backend = model.backend_name(),
        "sampled"
    );

    let scale = args
        .scale
        .unwrap_or_else(|| 64usize.div_ceil(height).max(1));
    let columns = config
        .num_classes
        .filter(|_| args.class.is_none())
        .unwrap_or(8)
        .min(args.num);
    write_png_grid(&args.out, &images, columns, scale)
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(path = %args.out.display(), "wrote PNG grid");
    if let Some(path) = &args.out_tensor {
        write_tensors(
            path,
            &[("images".to_string(), images.to_raw())],
            HashMap::new(),
        )?;
        tracing::info!(path = %path.display(), shape = ?images.shape(), "wrote tensor");
    }
    Ok(())
}

/// `CxHxW …` → (H, W).
fn parse_image_shape(text: &str) -> Result<(usize, usize)> {
    let first = text.split_whitespace().next().unwrap_or_default();
    let dims: Vec<usize> = first
        .split(['x', 'X'])
        .map(|d| d.parse::<usize>())
        .collect::<Result<_, _>>()
        .context("expected CxHxW")?;
    match dims.as_slice() {
        [_, h, w] if *h > 0 && *w > 0 => Ok((*h, *w)),
        _ => bail!("expected CxHxW"),
    }
}
