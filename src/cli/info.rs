//! `linear-dit info`: a config's parameter count, FLOPs and shapes.

use anyhow::Result;
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::Weights;
use linear_dit::model::config::{ConfigSources, FieldSource};
use linear_dit::weights::is_diffusers_folder;
use std::path::PathBuf;

/// Print a model's config, exact parameter count and FLOPs per token.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Read the config from this weights file (its metadata, or its tensor shapes), or from
    /// a diffusers SANA model folder (`config.json`; see docs/SPEC.md §9).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Tokens per sample used for `flops_per_token` (per-sample work is divided by it).
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigOverrides,
}

pub fn run(args: InfoArgs) -> Result<()> {
    if let Some(folder) = args.weights.as_deref().filter(|p| is_diffusers_folder(p)) {
        return super::sana::info(folder, args.json);
    }
    let overrides = args.config.clone();
    let (config, storage, sources) = match &args.weights {
        Some(path) => {
            let weights = Weights::load(path, &overrides)?;
            let sources = *weights.config_sources();
            (
                weights.config().clone(),
                Some(weights.storage_dtype()),
                sources,
            )
        }
        None => (overrides.to_config()?, None, overrides.sources()),
    };
    // Closed form: exact and instant for any valid config.
    let params = config.param_count()?;
    let flops = config.flops_per_token(args.tokens);
    if args.json {
        let mut json = serde_json::json!({
            "param_count": params,
            "flops_per_token": flops,
            "tokens": args.tokens,
            "head_dim": config.head_dim(),
            "mlp_hidden": config.mlp_hidden(),
            "output_size": config.output_size(),
            "config": config,
            "config_sources": sources
                .iter()
                .map(|(field, source)| (field.to_string(), source.as_str().into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        });
        if let Some(dtype) = storage {
            json["storage_dtype"] = dtype.as_str().into();
        }
        println!("{json}");
    } else {
        println!("flavor          {}", config.flavor);
        println!(
            "shape           D={} h={} L={} H={} (d={}) m={}",
            config.input_dim,
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.head_dim(),
            config.mlp_hidden()
        );
        match config.num_classes {
            Some(c) => println!("classes         {c} (+ null class)"),
            None => println!("classes         none (unconditional)"),
        }
        println!("num_steps       {}", config.num_steps);
        println!("patch_size      {}", config.patch_size);
        println!("param_count     {params}");
        println!(
            "flops/token     {:.1} MFLOP (N = {})",
            flops / 1e6,
            args.tokens
        );
        if let Some(dtype) = storage {
            println!("stored as       {dtype}");
        }
        for source in [
            FieldSource::Metadata,
            FieldSource::Inferred,
            FieldSource::Given,
            FieldSource::Default,
        ] {
            let fields = fields_from(&sources, source);
            if !fields.is_empty() {
                println!("{:<16}{fields}", format!("{}:", source.as_str()));
            }
        }
    }
    Ok(())
}

/// The fields that came from `source`, space-separated.
fn fields_from(sources: &ConfigSources, source: FieldSource) -> String {
    sources
        .iter()
        .filter(|(_, s)| *s == source)
        .map(|(field, _)| *field)
        .collect::<Vec<_>>()
        .join(" ")
}
