//! `linear-dit init`: write freshly initialised weights.

use super::progress;
use anyhow::{Context, Result};
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::{DType, InitKind, Weights};
use std::path::PathBuf;

/// Write a weights file with seeded initial weights for a config.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// `dit`: AdaLN-Zero (zero adaLN and output layers); `random`: every tensor non-zero.
    #[arg(long, default_value = "dit")]
    init: InitKind,
    /// Seed of the counter-based generator (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Storage dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: DType,
    #[command(flatten)]
    config: ConfigOverrides,
}

pub fn run(args: InitArgs) -> Result<()> {
    let config = args.config.clone().to_config()?;
    // At its peak, init holds every parameter as f32 and, for bf16/f16, the converted copy
    // being written: refuse a config over the budget before allocating anything.
    let params = config.param_count()?;
    let stored = match args.dtype {
        DType::F32 => 0,
        other => other.size() as u128,
    };
    linear_dit::limits::check_alloc("init", u128::from(params) * (4 + stored))?;
    let spinner = progress::spinner(format!(
        "initialising {params} parameters ({:?})",
        args.init
    ));
    let weights = Weights::init(&config, args.init, args.seed)?;
    spinner.set_message(format!("writing {}", args.out.display()));
    weights
        .save(&args.out, args.dtype)
        .with_context(|| format!("writing {}", args.out.display()))?;
    spinner.finish_and_clear();
    tracing::info!(
        path = %args.out.display(),
        params,
        dtype = %args.dtype,
        "wrote weights"
    );
    Ok(())
}
