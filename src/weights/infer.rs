//! Reading a config off the tensor shapes, for weights files that carry no
//! `linear_dit.config` metadata (an Axon export, a hand-converted checkpoint).
//!
//! Shapes fix `input_dim`, `hidden_size`, `num_layers`, `mlp_ratio`, `num_classes` and the
//! flavor; `num_heads`, `num_steps` and `patch_size` are not visible in any shape and keep
//! SPEC's defaults unless the caller overrides them.

use crate::config::{Config, Flavor};
use crate::tensor_file::RawTensor;
use std::collections::BTreeMap;

/// The config the canonical `tensors` imply, with SPEC defaults for what shapes cannot tell.
pub fn config_from_shapes(tensors: &BTreeMap<String, RawTensor>) -> Config {
    let shape = |name: &str| tensors.get(name).map(|t| t.shape.as_slice());
    let edifice = tensors.contains_key("pos_embed")
        || tensors.contains_key("final_layer.norm_final.weight")
        || tensors.contains_key("blocks.0.norm1.weight");
    let mut config = Config::recommended();
    config.flavor = if edifice {
        Flavor::Edifice
    } else {
        Flavor::Dit
    };
    if let Some(&[h, d]) = shape("x_embedder.weight") {
        config.hidden_size = h;
        config.input_dim = d;
    }
    config.num_layers = (0..)
        .take_while(|i| tensors.contains_key(&format!("blocks.{i}.attn.qkv.weight")))
        .count()
        .max(1);
    if let Some(&[m, h]) = shape("blocks.0.mlp.fc1.weight")
        && h > 0
    {
        config.mlp_ratio = m as f64 / h as f64;
    }
    config.num_classes = match (
        shape("y_embedder.embedding_table.weight"),
        shape("y_embedder.mlp.0.weight"),
    ) {
        (Some(&[rows, _]), _) if rows > 1 => Some(rows - 1),
        (_, Some(&[_, c])) => Some(c),
        _ => None,
    };
    config
}
