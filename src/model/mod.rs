//! The model definition: everything that says what a Linear DiT *is*, independent of where
//! it runs. The configuration and its validation, each flavor's rules (norm epsilon, GELU,
//! embeddings), the one table of tensor names and shapes that loading, initialisation, Axon
//! import and every backend use, the adaLN column layout, the fixed embeddings, and the
//! validated forward inputs. Nothing here imports a backend: backends depend on the model,
//! and [`crate::runtime`] puts the two together.

pub mod adaln;
pub mod config;
mod config_fields;
pub mod embedding;
pub mod flavor;
mod input;
mod patchify;
pub(crate) mod position_cache;
pub mod sana;
pub mod tensors;

pub use config::{Config, ConfigOverrides};
pub use flavor::{ClassEmbeddingKind, Flavor, Gelu};
pub use input::{ForwardShape, Grid, Input, validate};
pub use patchify::{patchify, unpatchify};
pub use tensors::{BlockModule, Module, Role, TensorSpec, tensor_layout};
