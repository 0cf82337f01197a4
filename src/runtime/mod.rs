//! The runtime layer: a model definition put together with a backend. [`Model`] is what a
//! caller loads and runs; it validates every input against the model's config and hands the
//! forward to the backend the [`Device`] choice selected. It sits above both `model` (what the
//! network is) and `backends` (where it runs), so neither imports the other's user.

use crate::backends::{self, Backend, Device, Precision};
use crate::error::{Error, Result};
use crate::model::{Config, ConfigOverrides, Input, validate};
use crate::tensor::Tensor;
use crate::weights::Weights;
use std::path::Path;

mod sana;
pub use sana::SanaModel;

/// A loaded Linear DiT, ready to run forwards.
///
/// `Model` is `Send + Sync` and holds no global state: load it once and call
/// [`Model::forward`] from as many threads as you like.
///
/// ```
/// use linear_dit::{Config, Device, Input, InitKind, Model, Tensor, Weights};
/// let config = Config { hidden_size: 32, num_layers: 2, num_heads: 4, ..Config::new(4) };
/// let weights = Weights::init(&config, InitKind::Random, 0)?;
/// let model = Model::new(&weights, Device::Cpu)?;
/// let x = Tensor::zeros(vec![2, 16, 4]); // B = 2 samples of 4×4 tokens
/// let eps = model.forward(&Input::new(&x, &[10.0, 500.0]))?;
/// assert_eq!(eps.shape(), &[2, 16, 4]);
/// # Ok::<(), linear_dit::Error>(())
/// ```
pub struct Model {
    config: Config,
    backend: Box<dyn Backend>,
}

impl Model {
    /// A model over `weights` on `device`, in the device's natural precision.
    pub fn new(weights: &Weights, device: Device) -> Result<Self> {
        Model::with_precision(weights, device, Precision::Auto)
    }

    /// A model over `weights` on `device`, computing in `precision`.
    pub fn with_precision(weights: &Weights, device: Device, precision: Precision) -> Result<Self> {
        let backend = backends::create(weights, device, precision)?;
        tracing::info!(backend = %backend.describe(), "model ready");
        Ok(Model {
            config: weights.config().clone(),
            backend,
        })
    }

    /// A model over an already built backend (e.g. a `backends::cuda::CudaBackend`
    /// configured by hand).
    pub fn from_backend(config: Config, backend: Box<dyn Backend>) -> Self {
        Model { config, backend }
    }

    /// Loads a weights file (config from its metadata) onto the best available device.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Model::new(
            &Weights::load(path, &ConfigOverrides::default())?,
            Device::Auto,
        )
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The backend's name (`cpu`, `cuda`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// One line describing the backend.
    pub fn describe_backend(&self) -> String {
        self.backend.describe()
    }

    /// Predicted noise `[B, N, D]` for `input`. Inputs are validated first (shape, finite
    /// values, timestep and label ranges, grid); a non-finite output is an error too.
    pub fn forward(&self, input: &Input<'_>) -> Result<Tensor> {
        let shape = validate(&self.config, input)?;
        crate::limits::check_alloc(
            "the forward",
            forward_bytes(&self.config, shape.batch, shape.tokens),
        )?;
        let span = tracing::debug_span!("forward", batch = shape.batch, tokens = shape.tokens);
        let _guard = span.enter();
        let out = self.backend.forward(input, shape)?;
        if let Some(i) = out.data().iter().position(|v| !v.is_finite()) {
            let d = self.config.input_dim;
            return Err(Error::NonFinite {
                name: "eps",
                detail: format!(
                    "output [{}, {}, {}] is {} (check the weights for overflow)",
                    i / (shape.tokens * d),
                    i / d % shape.tokens,
                    i % d,
                    out.data()[i]
                ),
            });
        }
        Ok(out)
    }
}

/// Host memory a forward of `batch` samples of `tokens` tokens holds at its peak on the CPU backend, in bytes: per row
/// the residual stream, the normalised stream, qkv, attention out, projection out and the MLP
/// hidden layer (7h + m values) plus the output (D); per sample the block modulations
/// (6h per layer); per token of the grid the position table (h). Exact in u128 for any
/// sizes, so the allocation budget can refuse a forward before anything is allocated.
pub fn forward_bytes(config: &Config, batch: usize, tokens: usize) -> u128 {
    let h = config.hidden_size as u128;
    let per_row = 7 * h + config.mlp_hidden() as u128 + config.input_dim as u128;
    let rows = batch as u128 * tokens as u128;
    let per_sample = 6 * h * config.num_layers as u128 + 2 * h;
    let values = rows
        .saturating_mul(per_row)
        .saturating_add((batch as u128).saturating_mul(per_sample))
        .saturating_add((tokens as u128).saturating_mul(h));
    values.saturating_mul(4)
}
