//! # linear-dit
//!
//! An inference runtime for Linear Diffusion Transformers: DiT with O(N) linear attention
//! (SANA-style), in two flavors: `dit` (DiT conventions) and `edifice` (bit-for-bit Elixir's
//! `Edifice.Generative.LinearDiT`). `docs/SPEC.md` is the contract for the math, the weights file
//! and the command line.
//!
//! The crate is laid out as the runtime is, each layer using only those before it:
//! - [`model`]: the model definition — config, flavor rules, the tensor-name table, the adaLN
//!   layout, fixed embeddings, validated inputs — importing no backend;
//! - [`weights`]: safetensors loading (memory-mapped; canonical and Axon names), init, save;
//! - [`backends`]: where the forward runs ([`backends::cpu`] is the reference);
//! - [`runtime`]: [`Model`], a model definition on a backend;
//! - [`sampling`]: schedules, samplers, step batching and [`sampling::ModelDescription`];
//! - `engine` and `server` (with their features): step-level continuous batching, and the
//!   HTTP/gRPC server on top of it.
//!
//! [`dtype`], [`tensor`], [`tensor_file`], [`limits`] and [`error`] are shared by all.
//!
//! ## Features
//!
//! | feature  | what it adds | what it pulls in |
//! |----------|--------------|------------------|
//! | `cuda`   | `backends::cuda`, `Device::Cuda` and the GPU choice of `Device::Auto` | cudarc, libloading; nvcc compiles `kernels/` at build time when a toolkit is found |
//! | `engine` | `engine`: the serving engine | tokio |
//! | `server` | `server`: HTTP and gRPC (Open Inference Protocol); implies `engine` | axum, hyper, hyper-util, tonic, prost, base64; protox compiles `proto/` at build time |
//! | `cli`    | the `linear-dit` binary; implies `server` | clap, indicatif, anyhow, tracing-subscriber |
//!
//! All four are on by default. A service that only needs the CPU forward links the lean
//! library, with none of them:
//!
//! ```toml
//! linear-dit = { version = "0.1", default-features = false }
//! ```
//!
//! Without `cuda`, [`Device::Cuda`] answers [`Error::BackendUnavailable`] ("built without the
//! cuda feature") and [`Device::Auto`] runs on the CPU.
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

#![warn(missing_docs)]

pub mod backends;
pub(crate) mod byte_lru;
pub mod dtype;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod image;
pub mod limits;
pub mod model;
pub mod rng;
pub mod runtime;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod tensor;
pub mod tensor_file;
#[cfg(test)]
mod test_support;
pub mod weights;

pub use backends::cpu::Block;
pub use backends::{Device, Precision};
pub use dtype::DType;
pub use error::{Error, Result};
pub use model::{Config, ConfigOverrides, Flavor, Grid, Input, patchify, unpatchify};
pub use runtime::{Model, SanaModel};
pub use tensor::Tensor;
pub use weights::{InitKind, Weights};
