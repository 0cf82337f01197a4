//! `sample` for a `sana` model: latents from precomputed caption embeddings (Gemma-2 hidden
//! states, as the SANA pipelines' `encode_prompt` returns them), with flow-matching
//! sampling. Decoding the latents to pixels needs SANA's DC-AE, which this crate does not
//! have yet: the output is the latents.

use super::progress;
use super::sample::SampleArgs;
use anyhow::{Context, Result, bail};
use clap::Args;
use linear_dit::SanaModel;
use linear_dit::model::sana::{SANA_VAE_FACTOR, latent_side};
use linear_dit::sampling::flow::{Caption, FlowParams, FlowSamplerKind, SanaRequest, sample_sana};
use linear_dit::tensor_file::{TensorFile, write_tensors};
use linear_dit::weights::SanaWeights;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The flags of `sample` that only a SANA model takes.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "SANA (--weights is a diffusers folder)")]
pub struct SanaSampleFlags {
    /// Caption embeddings: a safetensors file with `prompt_embeds` F32/BF16/F16
    /// [S, caption_channels] (or [1, S, …]) and optionally `prompt_attention_mask` I64/F32 [S].
    #[arg(long)]
    pub prompt_embeds: Option<PathBuf>,
    /// Negative caption embeddings (same format): classifier-free guidance when
    /// --guidance > 1 on a model without guidance_embeds (required there).
    #[arg(long)]
    pub negative_embeds: Option<PathBuf>,
    /// Image height in pixels, a multiple of 32 (the latents are height/32 tall) [the model's
    /// sample_size × 32, e.g. 1024].
    #[arg(long)]
    pub height: Option<usize>,
    /// Image width in pixels, a multiple of 32 [as the height].
    #[arg(long)]
    pub width: Option<usize>,
    /// Flow shift of the sigmas (flow samplers) [3.0; the 4K models use 6.0].
    #[arg(long)]
    pub shift: Option<f64>,
    /// Output: the latents as safetensors, `latents` F32 [N, C, H/32, W/32] (decode them
    /// with SANA's DC-AE, e.g. diffusers' AutoencoderDC; not built in).
    #[arg(long)]
    pub out_latents: Option<PathBuf>,
}

impl SanaSampleFlags {
    /// The first SANA-only flag given, for refusing it on a non-SANA model.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.prompt_embeds.is_some(), "--prompt-embeds"),
            (self.negative_embeds.is_some(), "--negative-embeds"),
            (self.height.is_some(), "--height"),
            (self.width.is_some(), "--width"),
            (self.shift.is_some(), "--shift"),
            (self.out_latents.is_some(), "--out-latents"),
        ]
        .into_iter()
        .find_map(|(set, flag)| set.then_some(flag))
    }
}

/// The flags of `sample` that a SANA model does not take, for refusing them by name.
fn dit_only_flag(args: &SampleArgs) -> Option<&'static str> {
    [
        (args.class.is_some(), "--class"),
        (args.eta.is_some(), "--eta"),
        (args.schedule.is_some(), "--schedule"),
        (args.spacing.is_some(), "--spacing"),
        (args.no_clip, "--no-clip"),
        (args.size.is_some(), "--size (use --height and --width)"),
        (args.out.is_some(), "--out (use --out-latents)"),
        (
            args.out_tensor.is_some(),
            "--out-tensor (use --out-latents)",
        ),
        (args.scale.is_some(), "--scale"),
        (
            args.config.set_fields().iter().any(|&set| set),
            "config flags (the folder's config.json is the config)",
        ),
    ]
    .into_iter()
    .find_map(|(set, flag)| set.then_some(flag))
}

fn read_caption(model: &SanaModel, path: &Path, what: &'static str) -> Result<Arc<Caption>> {
    let file = TensorFile::open(path)?;
    let caption = Caption::from_file(model.config(), &file, what)
        .with_context(|| path.display().to_string())?;
    Ok(Arc::new(caption))
}

/// `sample --weights DIR --prompt-embeds P [--negative-embeds N] --out-latents L`.
pub fn run(args: SampleArgs) -> Result<()> {
    if let Some(flag) = dit_only_flag(&args) {
        bail!(
            "{flag}: not taken by a SANA model ({} is a diffusers folder)",
            args.weights.display()
        );
    }
    let flags = &args.sana;
    let (Some(prompt), Some(out)) = (&flags.prompt_embeds, &flags.out_latents) else {
        bail!(
            "a SANA model samples from caption embeddings: give --prompt-embeds P.safetensors and --out-latents L.safetensors"
        );
    };
    let weights = SanaWeights::load(&args.weights)?;
    let model = SanaModel::on(&weights, args.device.backend, args.device.precision)?;
    // Unset: the model's native resolution, sample_size latents per side.
    let native = model.config().sample_size.saturating_mul(SANA_VAE_FACTOR);
    let side = |what, pixels: Option<usize>| latent_side(what, pixels.unwrap_or(native) as u64);
    let (height, width) = (side("height", flags.height)?, side("width", flags.width)?);
    let mut params = FlowParams::for_model(model.config());
    if let Some(sampler) = &args.sampler {
        params = params.with_sampler(sampler.parse::<FlowSamplerKind>()?);
    }
    if let Some(steps) = args.steps {
        params = params.with_steps(steps);
    }
    if let Some(guidance) = args.guidance {
        params = params.with_guidance(guidance);
    }
    if let Some(shift) = flags.shift {
        params = params.with_shift(shift);
    }
    let request = SanaRequest {
        prompt: read_caption(&model, prompt, "prompt_embeds")?,
        negative: flags
            .negative_embeds
            .as_deref()
            .map(|p| read_caption(&model, p, "negative_embeds"))
            .transpose()?,
        height,
        width,
        images: args.num.unwrap_or(1),
        seed: args.seed,
    };
    if request.images == 0 {
        bail!("--num must be at least 1");
    }
    let bar = progress::bar(params.steps as u64, "steps");
    let start = Instant::now();
    let latents = sample_sana(&model, &params, &request, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        images = request.images,
        seconds = format!("{seconds:.2}"),
        sampler = params.sampler.name(),
        steps = params.steps,
        guidance = params.guidance,
        "sampled"
    );
    write_tensors(
        out,
        &[("latents".to_string(), latents.to_raw())],
        HashMap::from([
            (
                "linear_dit.sampler".to_string(),
                params.sampler.name().to_string(),
            ),
            ("linear_dit.steps".to_string(), params.steps.to_string()),
            ("linear_dit.seed".to_string(), args.seed.to_string()),
        ]),
    )?;
    tracing::info!(path = %out.display(), shape = ?latents.shape(), "wrote latents");
    Ok(())
}
