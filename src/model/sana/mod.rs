//! The `sana` flavor: diffusers' `SanaTransformer2DModel` (the SANA family: Sana 600M /
//! 1600M, SANA 1.5, SANA-Sprint). Its config is diffusers' `config.json`, its tensors are
//! diffusers' parameter names; docs/SPEC.md §9 states the math. Like the rest of `model`,
//! nothing here imports a backend.

pub mod config;
pub mod embedding;
mod input;
pub mod patches;
pub mod tensors;

pub use config::{QK_NORM_ACROSS_HEADS, SANA_CLASS_NAME, SanaConfig, SanaDims};
pub use input::{
    MAX_TEXT_TOKENS, MAX_TIMESTEP, SANA_VAE_FACTOR, SanaInput, SanaShape, latent_side,
    sana_forward_bytes, validate_sana,
};
pub use tensors::{BlockPart, SanaTensor, sana_tensors};
