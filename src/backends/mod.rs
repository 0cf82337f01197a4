//! Compute backends. Every backend runs the same validated forward; the CPU backend is the
//! reference the others are checked against.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::dtype::DType;
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

impl<B: Backend> Backend for std::sync::Arc<B> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> Result<Tensor> {
        (**self).forward(input, shape)
    }
}

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU when one works, otherwise the CPU (the choice is logged).
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend; an error when no usable GPU is present, or when the crate was built
    /// without the `cuda` feature.
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = crate::error::ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            other => Err(crate::error::ParseError::new(
                "backend",
                other,
                "auto, cpu or cuda",
            )),
        }
    }
}

/// Compute precision of a forward: the storage type of weights and activations (math
/// accumulates in fp32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// The backend's natural choice: f32 on the CPU, bf16 on a GPU.
    #[default]
    Auto,
    /// Exactly this float type (`f32` on a GPU: plain fp32 GEMMs, no TF32 — a reference).
    Fixed(DType),
}

impl Precision {
    /// The command-line spelling (`auto`, `f32`, `bf16`, `f16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fixed(dtype) => dtype.name(),
        }
    }

    /// The storage type a backend whose natural type is `natural` computes in; an error for
    /// a type that holds no floats.
    pub fn storage(self, natural: DType) -> Result<DType> {
        let dtype = match self {
            Precision::Auto => natural,
            Precision::Fixed(dtype) => dtype,
        };
        if !dtype.is_float() {
            return Err(Error::InvalidInput {
                name: "precision",
                reason: format!("is {dtype}, which holds no floats (expected f32, bf16 or f16)"),
            });
        }
        Ok(dtype)
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::error::ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Precision::Auto),
            other => other.parse().map(Precision::Fixed).map_err(|_| {
                crate::error::ParseError::new("precision", other, "auto, f32, bf16 or f16")
            }),
        }
    }
}

/// Builds the backend `device` asks for, computing in `precision`.
pub fn create(weights: &Weights, device: Device, precision: Precision) -> Result<Box<dyn Backend>> {
    match device {
        Device::Cpu => cpu_backend(weights, precision, false),
        Device::Cuda => cuda_backend(weights, precision),
        Device::Auto => match cuda_backend(weights, precision) {
            Ok(backend) => {
                tracing::info!(device = %backend.describe(), "using the CUDA backend");
                Ok(backend)
            }
            Err(reason) if falls_back_to_cpu(&reason) => {
                tracing::info!(%reason, "no usable GPU; using the CPU backend");
                cpu_backend(weights, precision, true)
            }
            Err(error) => Err(error),
        },
    }
}

/// The CUDA backend.
#[cfg(feature = "cuda")]
fn cuda_backend(weights: &Weights, precision: Precision) -> Result<Box<dyn Backend>> {
    Ok(Box::new(cuda::CudaBackend::new(weights, precision)?))
}

/// The CUDA backend, which this build does not have: unavailable, so `auto` uses the CPU.
#[cfg(not(feature = "cuda"))]
fn cuda_backend(_weights: &Weights, _precision: Precision) -> Result<Box<dyn Backend>> {
    Err(cuda_not_built())
}

/// Why the CUDA backend cannot run in a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn cuda_not_built() -> Error {
    Error::BackendUnavailable {
        backend: "cuda",
        reason: "built without the cuda feature".into(),
    }
}

/// Whether `--backend auto` runs on the CPU after the GPU backend failed with `error`: only
/// when there is no usable GPU here. A device failure or a bug of ours is reported, not
/// hidden behind a silently slower backend.
pub(crate) fn falls_back_to_cpu(error: &Error) -> bool {
    matches!(error, Error::BackendUnavailable { .. })
}

/// The CPU backend, which computes in f32: asking it for bf16/f16 explicitly is an error,
/// while `auto` falling back to the CPU says so and runs in f32.
fn cpu_backend(
    weights: &Weights,
    precision: Precision,
    fallback: bool,
) -> Result<Box<dyn Backend>> {
    check_cpu_precision(precision, fallback)?;
    Ok(Box::new(cpu::CpuBackend::new(weights)?))
}

/// Whether the CPU backend, which computes in f32, may run a model asked for in
/// `precision`: f32 and `auto` always; another type only as `auto`'s fallback from the GPU
/// (said in the log), otherwise an error naming the fix. Shared by every flavor.
pub(crate) fn check_cpu_precision(precision: Precision, fallback: bool) -> Result<()> {
    match precision.storage(DType::F32)? {
        DType::F32 => Ok(()),
        _ if fallback => {
            tracing::warn!(
                requested = precision.as_str(),
                "the CPU backend computes in f32"
            );
            Ok(())
        }
        _ => Err(Error::BackendUnavailable {
            backend: "cpu",
            reason: format!(
                "it computes in f32, not {}; use --precision f32",
                precision.as_str()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_the_cpu_only_when_the_gpu_is_unavailable() {
        let unavailable = Error::BackendUnavailable {
            backend: "cuda",
            reason: "libcuda.so was not found".into(),
        };
        assert!(falls_back_to_cpu(&unavailable));
        for error in [
            Error::Device {
                backend: "cuda",
                reason:
                    "internal error (a bug in linear-dit): running the forward: index out of bounds"
                        .into(),
            },
            Error::Device {
                backend: "cuda",
                reason: "uploading weights: CUDA_ERROR_OUT_OF_MEMORY".into(),
            },
        ] {
            assert!(!falls_back_to_cpu(&error), "{error}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_cuda_feature_cuda_is_unavailable_and_auto_runs_on_the_cpu() {
        use crate::model::Config;
        use crate::weights::InitKind;
        let config = Config {
            hidden_size: 32,
            num_layers: 1,
            num_heads: 2,
            ..Config::new(4)
        };
        let weights = Weights::init(&config, InitKind::Random, 7).expect("a valid tiny config");
        match create(&weights, Device::Cuda, Precision::Auto) {
            Err(Error::BackendUnavailable { backend, reason }) => {
                assert_eq!(backend, "cuda");
                assert_eq!(reason, "built without the cuda feature");
            }
            Err(error) => panic!("expected BackendUnavailable, got {error}"),
            Ok(backend) => panic!("expected no CUDA backend, got {}", backend.describe()),
        }
        assert!(falls_back_to_cpu(&cuda_not_built()));
        for precision in [Precision::Auto, Precision::Fixed(DType::BF16)] {
            let backend = create(&weights, Device::Auto, precision).expect("the CPU fallback");
            assert_eq!(backend.name(), "cpu");
        }
    }
}
