//! `linear-dit forward`: one forward from a safetensors input file to a safetensors output.

use super::device_flags::DeviceFlags;
use anyhow::{Context, Result, bail};
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::tensor_file::{TensorFile, write_tensors};
use linear_dit::weights::is_diffusers_folder;
use linear_dit::{Grid, Input, Tensor, Weights};
use std::collections::HashMap;
use std::path::PathBuf;

/// Run one forward: read `x` [B,N,D], `t` [B] (and `y` [B] for class-conditional models)
/// from --input, write the predicted noise `eps` [B,N,D] (F32) to --output.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Weights file (safetensors; canonical or Edifice/Axon names), or a diffusers SANA model
    /// folder: then --input holds `x` [B,C,H,W], `t` [B], `encoder_hidden_states` [B,S,E]
    /// (optional `encoder_attention_mask` [B,S], `guidance` [B]) and --output gets `v`.
    #[arg(long)]
    weights: PathBuf,
    /// Input safetensors with `x` (F32 [B,N,D]), `t` (F32 [B]) and, with classes, `y` (I64 [B]).
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors; receives `eps` (F32 [B,N,D]).
    #[arg(long)]
    output: PathBuf,
    /// Token grid ROWSxCOLS [default: the input file's `grid` metadata, else square].
    #[arg(long)]
    grid: Option<Grid>,
    #[command(flatten)]
    config: ConfigOverrides,
    #[command(flatten)]
    device: DeviceFlags,
}

pub fn run(args: ForwardArgs) -> Result<()> {
    if is_diffusers_folder(&args.weights) {
        // The folder's config.json is the whole config: a flag that would change it, or a
        // grid the latents' own (H, W) decide, is refused rather than ignored.
        if args.config.set_fields().iter().any(|&set| set) || args.grid.is_some() {
            bail!(
                "{}: a diffusers SANA folder takes its config from config.json and its grid from x's (H, W); drop the config and --grid flags",
                args.weights.display()
            );
        }
        return super::sana::forward(&args.weights, args.device, &args.input, &args.output);
    }
    let weights = Weights::load(&args.weights, &args.config)?;
    let model = args.device.model(&weights)?;
    let file = TensorFile::open(&args.input)?;
    let read = |name: &str| -> Result<Tensor> {
        if !file.contains(name) {
            bail!(
                "{}: no tensor `{name}` (expected x [B,N,D], t [B], y [B])",
                args.input.display()
            );
        }
        Ok(Tensor::from_raw(name, &file.tensor(name)?)?)
    };
    let x = read("x")?;
    let t = read("t")?;
    if t.shape().len() != 1 {
        bail!(
            "{}: `t` must be 1-D [B]; got shape {:?}",
            args.input.display(),
            t.shape()
        );
    }
    let y = if file.contains("y") {
        let y = file.tensor("y")?;
        if y.shape.len() != 1 {
            bail!(
                "{}: `y` must be 1-D [B]; got shape {:?}",
                args.input.display(),
                y.shape
            );
        }
        Some(y.to_i64_vec("y")?)
    } else {
        None
    };
    let grid = match (args.grid, file.metadata().get("grid")) {
        (Some(grid), _) => Some(grid),
        (None, Some(text)) => Some(
            text.parse::<Grid>()
                .with_context(|| format!("{}: metadata `grid`", args.input.display()))?,
        ),
        (None, None) => None,
    };
    let input = Input {
        x: &x,
        t: t.data(),
        y: y.as_deref(),
        grid,
    };
    let eps = model.forward(&input)?;
    write_tensors(
        &args.output,
        &[("eps".to_string(), eps.to_raw())],
        HashMap::new(),
    )?;
    tracing::info!(
        output = %args.output.display(),
        shape = ?eps.shape(),
        backend = model.backend_name(),
        "wrote eps"
    );
    Ok(())
}
