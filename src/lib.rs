//! # linear-dit
//!
//! An inference runtime for Linear Diffusion Transformers: DiT with O(N) linear attention
//! (SANA-style), in two flavors: `dit` (DiT conventions) and `edifice` (bit-for-bit Elixir's
//! `Edifice.Generative.LinearDiT`). `docs/SPEC.md` is the contract for the math, the weights file
//! and the command line.
//!
//! The crate is laid out as the runtime is:
//! - [`config`]: hyper-parameters, validation, parameter and FLOP counts;
//! - [`weights`]: safetensors loading (memory-mapped; canonical and Axon names), init, save;
//! - [`model`]: the validated forward, inputs, fixed embeddings, patchify;
//! - [`backends`]: where the forward runs ([`backends::cpu`] is the reference).
//!
//! ```
//! use linear_dit::{Config, Device, Input, InitKind, Model, Tensor, Weights};
//! let config = Config { hidden_size: 32, num_layers: 1, num_heads: 2, num_classes: Some(10), ..Config::new(4) };
//! let model = Model::new(&Weights::init(&config, InitKind::Random, 7)?, Device::Cpu)?;
//! let x = Tensor::zeros(vec![1, 64, 4]);
//! let eps = model.forward(&Input::new(&x, &[250.0]).with_labels(&[3]))?;
//! assert_eq!(eps.shape(), &[1, 64, 4]);
//! # Ok::<(), linear_dit::Error>(())
//! ```

pub mod backends;
pub mod dtype;
pub mod engine;
pub mod error;
pub mod image;
pub mod limits;
pub mod model;
pub mod rng;
pub mod runtime;
pub mod sampling;
pub mod server;
pub mod tensor;
pub mod tensor_file;
pub mod weights;

pub use backends::cpu::Block;
pub use backends::{Device, Precision};
pub use dtype::DType;
pub use error::{Error, Result};
pub use model::{Config, ConfigOverrides, Flavor, Grid, Input, patchify, unpatchify};
pub use runtime::Model;
pub use tensor::Tensor;
pub use weights::{InitKind, Weights};
