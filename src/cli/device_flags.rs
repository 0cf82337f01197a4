//! The device flags every model-running subcommand shares: `--backend` and `--precision`.

use clap::Args;
use linear_dit::{Device, Model, Precision, Weights};

/// Where and in what precision the model runs.
#[derive(Debug, Clone, Copy, Args)]
#[command(next_help_heading = "Device")]
pub struct DeviceFlags {
    /// auto (the GPU when one works, else the CPU, saying which), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub backend: Device,
    /// Compute precision: auto (f32 on the CPU, bf16 on a GPU), f32, bf16 or f16.
    #[arg(long, default_value = "auto")]
    pub precision: Precision,
}

impl DeviceFlags {
    /// The model over `weights` on the chosen device.
    pub fn model(&self, weights: &Weights) -> linear_dit::Result<Model> {
        Model::with_precision(weights, self.backend, self.precision)
    }
}
