//! Compute backends. Every backend runs the same validated forward; the CPU backend is the
//! reference the others are checked against.

pub mod cpu;

use crate::error::{Error, Result};
use crate::model::{ForwardShape, Input};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// A device that can run the model's forward.
pub trait Backend: Send + Sync {
    /// Short name: `cpu`, `cuda`.
    fn name(&self) -> &'static str;

    /// One line for logs: device, precision, threads.
    fn describe(&self) -> String;

    /// The forward of already validated inputs.
    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> Result<Tensor>;
}

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU when one works, otherwise the CPU (the choice is logged).
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend; an error when no usable GPU is present.
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            other => Err(format!(
                "unknown backend `{other}` (expected auto, cpu or cuda)"
            )),
        }
    }
}

/// Builds the backend `device` asks for.
pub fn create(weights: &Weights, device: Device) -> Result<Box<dyn Backend>> {
    match device {
        Device::Cpu => Ok(Box::new(cpu::CpuBackend::new(weights)?)),
        Device::Cuda => Err(cuda_unavailable()),
        Device::Auto => {
            tracing::info!(reason = %cuda_unavailable(), "using the CPU backend");
            Ok(Box::new(cpu::CpuBackend::new(weights)?))
        }
    }
}

fn cuda_unavailable() -> Error {
    Error::BackendUnavailable {
        backend: "cuda",
        reason: "this build has no CUDA backend yet; use --backend cpu".into(),
    }
}
