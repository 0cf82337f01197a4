//! A loaded `sana` model (diffusers' `SanaTransformer2DModel`) ready to run forwards: the
//! runtime layer for the flavor, validating every input before the backend sees it. The CPU
//! backend runs it today; the CUDA kernels for the flavor are not written yet, so asking for
//! a GPU is an error that says so.

use crate::backends::Device;
use crate::backends::cpu::SanaCpu;
use crate::error::{Error, Result};
use crate::model::sana::{SanaConfig, SanaDims, SanaInput, sana_forward_bytes, validate_sana};
use crate::tensor::Tensor;
use crate::weights::SanaWeights;
use std::path::Path;

/// A `sana` model on a backend. `Send + Sync`.
pub struct SanaModel {
    config: SanaConfig,
    dims: SanaDims,
    cpu: SanaCpu,
}

impl SanaModel {
    /// The model over `weights` on `device` (`Auto` and `Cpu` run on the CPU).
    pub fn new(weights: &SanaWeights, device: Device) -> Result<Self> {
        if device == Device::Cuda {
            return Err(Error::BackendUnavailable {
                backend: "cuda",
                reason: "the sana flavor runs on the CPU backend only so far (its CUDA kernels are not written yet)".to_string(),
            });
        }
        tracing::info!(backend = "cpu", flavor = "sana", "model ready");
        Ok(SanaModel {
            config: weights.config().clone(),
            dims: weights.config().dims()?,
            cpu: SanaCpu::new(weights)?,
        })
    }

    /// Loads a diffusers model (or pipeline) folder onto the CPU.
    pub fn load(folder: impl AsRef<Path>) -> Result<Self> {
        SanaModel::new(&SanaWeights::load(folder)?, Device::Cpu)
    }

    /// The config.
    pub fn config(&self) -> &SanaConfig {
        &self.config
    }

    /// The velocity `[B, C_out, H, W]` (diffusers' `sample`) for `input`, validated first; a
    /// non-finite output is an error.
    pub fn forward(&self, input: &SanaInput<'_>) -> Result<Tensor> {
        let shape = validate_sana(&self.config, input)?;
        crate::limits::check_alloc("the sana forward", sana_forward_bytes(&self.dims, &shape))?;
        let span =
            tracing::debug_span!("sana_forward", batch = shape.batch, tokens = shape.tokens());
        let _guard = span.enter();
        let out = self.cpu.forward(input, shape)?;
        if let Some(i) = out.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                name: "v",
                detail: format!(
                    "output value {i} is {} (check the weights for overflow)",
                    out.data()[i]
                ),
            });
        }
        Ok(out)
    }
}
