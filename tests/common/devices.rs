//! Every device this machine has, for tests written once: the CPU backend always, and the
//! CUDA backend in each precision when a usable GPU is present. A test loops over
//! [`devices`] and checks each against the same reference, with the tolerance the device
//! states. Without a GPU the CUDA entries are skipped with the reason printed (and, under
//! `LINEAR_DIT_REQUIRE_GPU`, the skip is a failure).

use linear_dit::{Config, DType, Device, Error, InitKind, Model, Precision, Weights};

/// One backend and precision to run a test on.
pub struct TestDevice {
    /// For messages: `cpu`, `cuda f32`, ….
    pub label: &'static str,
    /// The backend.
    pub device: Device,
    /// Its compute precision.
    pub precision: Precision,
    /// Relative error (Frobenius) allowed against an f64 or CPU reference of the whole
    /// model: 1e-5 on the CPU (f32); on a GPU 1e-4 in f32, 5e-3 in f16 (10 mantissa bits),
    /// 2e-2 in bf16 (7 bits).
    pub tolerance: f64,
    /// Relative error allowed between a sample run inside a mixed batch and run alone: the
    /// CPU backend is bit-exact (0); a GPU's GEMMs may pick other tilings per batch size,
    /// which in f32 moves results by rounding (1e-5) and in 16 bits by one storage rounding
    /// of an intermediate (the precision's tolerance).
    pub batch_tolerance: f64,
}

impl TestDevice {
    /// A model over `weights` on this device.
    pub fn model(&self, weights: &Weights) -> Model {
        Model::with_precision(weights, self.device, self.precision)
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }
}

/// The CPU, then every CUDA precision when a GPU is usable.
pub fn devices() -> Vec<TestDevice> {
    let mut devices = vec![TestDevice {
        label: "cpu",
        device: Device::Cpu,
        precision: Precision::Fixed(DType::F32),
        tolerance: 1e-5,
        batch_tolerance: 0.0,
    }];
    if cuda_usable() {
        for (label, precision, tolerance, batch_tolerance) in [
            ("cuda f32", Precision::Fixed(DType::F32), 1e-4, 1e-5),
            ("cuda f16", Precision::Fixed(DType::F16), 5e-3, 5e-3),
            ("cuda bf16", Precision::Fixed(DType::BF16), 2e-2, 2e-2),
        ] {
            devices.push(TestDevice {
                label,
                device: Device::Cuda,
                precision,
                tolerance,
                batch_tolerance,
            });
        }
    }
    devices
}

/// Whether the CUDA backend builds here; prints why not (or fails under
/// `LINEAR_DIT_REQUIRE_GPU`) when it does not.
fn cuda_usable() -> bool {
    let config = Config {
        hidden_size: 32,
        num_layers: 1,
        num_heads: 2,
        ..Config::new(4)
    };
    let weights = Weights::init(&config, InitKind::Random, 0).expect("probe weights");
    match Model::with_precision(&weights, Device::Cuda, Precision::Fixed(DType::F32)) {
        Ok(_) => true,
        Err(unavailable @ Error::BackendUnavailable { .. }) => {
            skip_cuda(&unavailable);
            false
        }
        Err(other) => panic!("the CUDA backend failed on a usable device: {other}"),
    }
}

#[cfg(feature = "cuda")]
fn skip_cuda(unavailable: &Error) {
    linear_dit::backends::cuda::skip_gpu_test(unavailable);
}

/// Without the `cuda` feature there is no GPU backend to require.
#[cfg(not(feature = "cuda"))]
fn skip_cuda(unavailable: &Error) {
    println!("skipped: {unavailable}");
}
