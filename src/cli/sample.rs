//! `linear-dit sample`: generate images with a trained model and write them as a PNG grid
//! (and optionally as a tensor file); with a diffusers SANA folder, latents from caption
//! embeddings ([`super::sana_sample`]).

use super::device_flags::DeviceFlags;
use super::progress;
use anyhow::{Context, Result, bail};
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::image::{default_columns, default_scale, write_png_grid};
use linear_dit::sampling::ModelDescription;
use linear_dit::sampling::{
    SamplerKind, ScheduleKind, Spacing, check_sampling_size, image_classes, sample,
};
use linear_dit::tensor_file::write_tensors;
use linear_dit::weights::is_diffusers_folder;
use linear_dit::{Grid, Weights};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// Generate images from a trained model: a PNG grid, and optionally the raw tensor. With a
/// diffusers SANA folder as --weights: latents from precomputed caption embeddings.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Trained weights (e.g. assets/digits.safetensors), or a diffusers SANA model or
    /// pipeline folder (see "SANA" below).
    #[arg(long)]
    pub(super) weights: PathBuf,
    /// Class to generate [default: cycle through all classes; unconditional models: none].
    #[arg(long = "class")]
    pub(super) class: Option<usize>,
    /// Number of images [default: 16; SANA: 1].
    #[arg(long = "num")]
    pub(super) num: Option<usize>,
    /// Inference steps [default: 20; SANA-Sprint: 2].
    #[arg(long)]
    pub(super) steps: Option<usize>,
    /// Sampler: ddim, ddpm or dpmpp2m [default: ddim]; SANA: flow-dpmpp2m, flow-euler or
    /// scm (SANA-Sprint) [default: flow-dpmpp2m; Sprint: scm].
    #[arg(long)]
    pub(super) sampler: Option<String>,
    /// DDIM stochasticity η in [0, 1] (0: deterministic) [default: 0; ddim only].
    #[arg(long)]
    pub(super) eta: Option<f64>,
    /// Guidance scale, 1 = off [default: 4 for class-conditional models, 1 otherwise; other
    /// values need a class-conditional model]. SANA: classifier-free guidance against
    /// --negative-embeds when > 1 [4.5]; SANA-Sprint: the embedded guidance value [4.5].
    #[arg(long)]
    pub(super) guidance: Option<f32>,
    /// Seed: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Noise schedule [default: the weights' `linear_dit.schedule` metadata, else linear].
    #[arg(long)]
    pub(super) schedule: Option<ScheduleKind>,
    /// Timestep spacing: trailing, leading or linspace [default: trailing].
    #[arg(long)]
    pub(super) spacing: Option<Spacing>,
    /// Do not clamp each step's x̂₀ to [−1, 1] (for latent-space models).
    #[arg(long)]
    pub(super) no_clip: bool,
    /// Image size HxW in pixels [default: the weights' `linear_dit.image` metadata].
    #[arg(long)]
    pub(super) size: Option<Grid>,
    /// Output PNG (a grid of the samples, upscaled). Required, except for SANA.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Also write the samples as safetensors: `images`, F32 [N, C, H, W] in [−1, 1].
    #[arg(long)]
    pub(super) out_tensor: Option<PathBuf>,
    /// Upscaling factor of the PNG [default: so each image is at least 64 pixels tall].
    #[arg(long)]
    pub(super) scale: Option<usize>,
    #[command(flatten)]
    pub(super) sana: super::sana_sample::SanaSampleFlags,
    #[command(flatten)]
    pub(super) config: ConfigOverrides,
    #[command(flatten)]
    pub(super) device: DeviceFlags,
}

pub fn run(args: SampleArgs) -> Result<()> {
    if is_diffusers_folder(&args.weights) {
        return super::sana_sample::run(args);
    }
    if let Some(flag) = args.sana.given() {
        bail!(
            "{flag} is for SANA models (a diffusers folder as --weights); {} is not one",
            args.weights.display()
        );
    }
    let Some(out) = args.out.clone() else {
        bail!("--out is required: the PNG grid to write");
    };
    let sampler = args
        .sampler
        .as_deref()
        .map(str::parse::<SamplerKind>)
        .transpose()?;
    let num = args.num.unwrap_or(16);
    let weights = Weights::load(&args.weights, &args.config)?;
    let config = weights.config().clone();
    let mut description = ModelDescription::from_weights(&weights)?;
    if let Some(size) = args.size {
        description = description.with_image_size(size.rows, size.cols)?;
    }
    if let Some(schedule) = args.schedule {
        description = description.with_schedule(schedule);
    }
    let grid = description.default_grid()?;
    if num == 0 {
        bail!("--num must be at least 1");
    }
    let defaults = description.default_sampling();
    let sampler = sampler.unwrap_or(defaults.sampler).with_eta(args.eta)?;
    let (steps, guidance) = (defaults.steps, defaults.guidance);
    let params = defaults
        .with_sampler(sampler)
        .with_steps(args.steps.unwrap_or(steps))
        .with_guidance(args.guidance.unwrap_or(guidance))
        .with_spacing(args.spacing.unwrap_or_default())
        .with_clip_x0(!args.no_clip);
    check_sampling_size(&config, grid, num)?;
    let classes = image_classes(&config, args.class, num);
    let model = args.device.model(&weights)?;

    let bar = progress::bar(params.steps as u64, "steps");
    let start = Instant::now();
    let images = sample(&model, &params, &classes, args.seed, grid, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        images = num,
        seconds = format!("{seconds:.2}"),
        ms_per_image = format!("{:.1}", seconds * 1e3 / num as f64),
        sampler = params.sampler.name(),
        steps = params.steps,
        guidance = params.guidance,
        backend = model.backend_name(),
        "sampled"
    );

    // The grid is known here (`default_grid` succeeded above), so the pixel size is too.
    let height = description.image_size().map_or(0, |(height, _)| height);
    let scale = args.scale.unwrap_or_else(|| default_scale(height));
    let columns = default_columns(
        num,
        description.num_classes().filter(|_| args.class.is_none()),
    );
    write_png_grid(&out, &images, columns, scale)
        .with_context(|| format!("writing {}", out.display()))?;
    tracing::info!(path = %out.display(), "wrote PNG grid");
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
