//! A loaded `sana` model (diffusers' `SanaTransformer2DModel`) ready to run forwards: the
//! runtime layer for the flavor, validating every input (and the forward's allocation
//! budget) before the backend sees it, on the CPU backend (f32, the reference) or the CUDA
//! backend ([`crate::backends::cuda::SanaCudaBackend`], bf16 by default). `Device::Auto`
//! tries the GPU and falls back to the CPU only when the GPU is unavailable, as the dit
//! model does: a device failure or a bug is reported, not hidden behind a slower backend.

use crate::backends::cpu::SanaCpu;
use crate::backends::{Device, Precision, check_cpu_precision, falls_back_to_cpu};
use crate::error::{Error, Result};
use crate::model::sana::{
    SanaConfig, SanaDims, SanaInput, SanaShape, sana_forward_bytes, validate_sana,
};
use crate::tensor::Tensor;
use crate::weights::SanaWeights;
use std::path::Path;

#[cfg(feature = "cuda")]
use crate::backends::cuda::SanaCudaBackend;

/// A `sana` model on a backend. `Send + Sync`.
pub struct SanaModel {
    config: SanaConfig,
    dims: SanaDims,
    backend: SanaBackend,
}

/// Where a `sana` model runs (boxed: the model is made once, and the two differ in size).
enum SanaBackend {
    Cpu(Box<SanaCpu>),
    #[cfg(feature = "cuda")]
    Cuda(Box<SanaCudaBackend>),
}

impl SanaBackend {
    /// The backend `device` asks for, computing in `precision`.
    fn create(weights: &SanaWeights, device: Device, precision: Precision) -> Result<Self> {
        match device {
            Device::Cpu => Self::cpu(weights, precision, false),
            Device::Cuda => Self::cuda(weights, precision),
            Device::Auto => match Self::cuda(weights, precision) {
                Ok(backend) => Ok(backend),
                Err(reason) if falls_back_to_cpu(&reason) => {
                    tracing::info!(%reason, "no usable GPU; running sana on the CPU backend");
                    Self::cpu(weights, precision, true)
                }
                Err(error) => Err(error),
            },
        }
    }

    fn cpu(weights: &SanaWeights, precision: Precision, fallback: bool) -> Result<Self> {
        check_cpu_precision(precision, fallback)?;
        Ok(SanaBackend::Cpu(Box::new(SanaCpu::new(weights)?)))
    }

    #[cfg(feature = "cuda")]
    fn cuda(weights: &SanaWeights, precision: Precision) -> Result<Self> {
        Ok(SanaBackend::Cuda(Box::new(SanaCudaBackend::new(
            weights, precision,
        )?)))
    }

    /// Without the `cuda` feature there is no GPU backend: unavailable, so `Auto` runs on
    /// the CPU.
    #[cfg(not(feature = "cuda"))]
    fn cuda(_weights: &SanaWeights, _precision: Precision) -> Result<Self> {
        Err(crate::backends::cuda_not_built())
    }

    fn forward(&self, input: &SanaInput<'_>, shape: SanaShape) -> Result<Tensor> {
        match self {
            SanaBackend::Cpu(cpu) => cpu.forward(input, shape),
            #[cfg(feature = "cuda")]
            SanaBackend::Cuda(cuda) => cuda.forward(input, shape),
        }
    }
}

impl SanaModel {
    /// The model over `weights` on `device`, in the device's natural precision (f32 on the
    /// CPU, bf16 on a GPU).
    pub fn new(weights: &SanaWeights, device: Device) -> Result<Self> {
        SanaModel::on(weights, device, Precision::Auto)
    }

    /// The model over `weights` on `device`, computing in `precision` (`Auto`: f32 on the
    /// CPU, bf16 on a GPU). `Device::Cuda` without a usable GPU — or in a build without the
    /// `cuda` feature — is [`Error::BackendUnavailable`] with the reason.
    pub fn on(weights: &SanaWeights, device: Device, precision: Precision) -> Result<Self> {
        let backend = SanaBackend::create(weights, device, precision)?;
        let model = SanaModel {
            config: weights.config().clone(),
            dims: weights.config().dims()?,
            backend,
        };
        tracing::info!(backend = %model.describe_backend(), flavor = "sana", "model ready");
        Ok(model)
    }

    /// Loads a diffusers model (or pipeline) folder onto the CPU.
    pub fn load(folder: impl AsRef<Path>) -> Result<Self> {
        SanaModel::new(&SanaWeights::load(folder)?, Device::Cpu)
    }

    /// The config.
    pub fn config(&self) -> &SanaConfig {
        &self.config
    }

    /// The backend's name (`cpu`, `cuda`).
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            SanaBackend::Cpu(_) => "cpu",
            #[cfg(feature = "cuda")]
            SanaBackend::Cuda(_) => "cuda",
        }
    }

    /// One line describing the backend.
    pub fn describe_backend(&self) -> String {
        match &self.backend {
            SanaBackend::Cpu(_) => "cpu: f32".to_string(),
            #[cfg(feature = "cuda")]
            SanaBackend::Cuda(cuda) => cuda.describe(),
        }
    }

    /// The CUDA backend, when the model runs on one (graph counters, graphs on/off).
    #[cfg(feature = "cuda")]
    pub fn cuda_backend(&self) -> Option<&SanaCudaBackend> {
        match &self.backend {
            SanaBackend::Cuda(cuda) => Some(cuda),
            SanaBackend::Cpu(_) => None,
        }
    }

    /// Drops what the model memoised of the captions it has seen (the CPU backend keeps each
    /// caption's text keys and values for the later steps of its request, up to a byte
    /// budget): to free that memory, or to time a run as a new request pays for it. Later
    /// forwards compute them again. The CUDA backend keeps none.
    pub fn forget_captions(&self) {
        match &self.backend {
            SanaBackend::Cpu(cpu) => cpu.forget_captions(),
            #[cfg(feature = "cuda")]
            SanaBackend::Cuda(_) => {}
        }
    }

    /// The velocity `[B, C_out, H, W]` (diffusers' `sample`) for `input`, validated first; a
    /// non-finite output is an error.
    pub fn forward(&self, input: &SanaInput<'_>) -> Result<Tensor> {
        let shape = validate_sana(&self.config, input)?;
        crate::limits::check_alloc("the sana forward", sana_forward_bytes(&self.dims, &shape))?;
        let span =
            tracing::debug_span!("sana_forward", batch = shape.batch, tokens = shape.tokens());
        let _guard = span.enter();
        let out = self.backend.forward(input, shape)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture() -> SanaWeights {
        let folder =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sana/base/transformer");
        SanaWeights::load(folder).expect("the base fixture")
    }

    /// The CPU computes in f32: another precision is an error on `Device::Cpu`, and only a
    /// logged fallback under `Device::Auto`.
    #[test]
    fn the_cpu_refuses_16_bit_precisions_unless_it_is_the_fallback() {
        let weights = fixture();
        let bf16 = Precision::Fixed(crate::dtype::DType::BF16);
        match SanaModel::on(&weights, Device::Cpu, bf16) {
            Err(Error::BackendUnavailable { backend, .. }) => assert_eq!(backend, "cpu"),
            Err(other) => panic!("expected BackendUnavailable, got {other}"),
            Ok(_) => panic!("the CPU accepted bf16"),
        }
        let cpu = SanaModel::on(&weights, Device::Cpu, Precision::Auto).unwrap();
        assert_eq!(cpu.backend_name(), "cpu");
    }

    /// Asking for the GPU where there is none (or no `cuda` feature) is a clear
    /// BackendUnavailable, never a panic; `Auto` then runs on the CPU.
    #[test]
    fn cuda_without_a_gpu_is_unavailable_and_auto_falls_back() {
        let weights = fixture();
        match SanaModel::on(&weights, Device::Cuda, Precision::Auto) {
            Ok(model) => assert_eq!(model.backend_name(), "cuda"),
            Err(Error::BackendUnavailable { backend, reason }) => {
                assert_eq!(backend, "cuda");
                assert!(!reason.is_empty());
                let auto = SanaModel::new(&weights, Device::Auto).unwrap();
                assert_eq!(auto.backend_name(), "cpu");
            }
            Err(other) => panic!("expected a model or BackendUnavailable, got {other}"),
        }
    }
}
