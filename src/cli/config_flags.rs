//! The config flags every subcommand shares (`--input-dim … --flavor`, SPEC's list).

use clap::Args;
use linear_dit::{ConfigOverrides, Flavor};

/// Model configuration flags; unset flags come from the weights file or SPEC's defaults.
#[derive(Debug, Clone, Default, Args)]
#[command(
    next_help_heading = "Model config (default: SPEC's recommended config; a weights file's metadata wins)"
)]
pub struct ConfigFlags {
    /// Patch dimension D = channels × patch_size² [default: 64].
    #[arg(long)]
    pub input_dim: Option<usize>,
    /// Transformer width h [default: 512].
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Number of blocks L [default: 12].
    #[arg(long)]
    pub num_layers: Option<usize>,
    /// Attention heads H [default: 8; required with a weights file that has no config
    /// metadata, whose shapes cannot tell it].
    #[arg(long)]
    pub num_heads: Option<usize>,
    /// MLP width ratio, m = round(h × ratio) [default: 4.0].
    #[arg(long)]
    pub mlp_ratio: Option<f64>,
    /// Number of classes C [default: none, unconditional].
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Diffusion steps of the training schedule [default: 1000; required with a weights file
    /// that has no config metadata].
    #[arg(long)]
    pub num_steps: Option<usize>,
    /// Patch size p [default: 2].
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Architecture flavor: dit or edifice [default: dit].
    #[arg(long, value_parser = parse_flavor)]
    pub flavor: Option<Flavor>,
}

fn parse_flavor(s: &str) -> Result<Flavor, String> {
    s.parse()
        .map_err(|e: linear_dit::error::ParseError| e.to_string())
}

impl ConfigFlags {
    /// The flags as overrides.
    pub fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            input_dim: self.input_dim,
            hidden_size: self.hidden_size,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            mlp_ratio: self.mlp_ratio,
            num_classes: self.num_classes,
            num_steps: self.num_steps,
            patch_size: self.patch_size,
            flavor: self.flavor,
        }
    }
}
