//! Reading a config off the tensor shapes, for weights files that carry no
//! `linear_dit.config` metadata (an Axon export, a hand-converted checkpoint).
//!
//! Shapes fix `input_dim`, `hidden_size`, `num_layers`, `mlp_ratio`, `num_classes` and the
//! flavor. `num_heads` and `num_steps` are visible in no shape and the forward depends on
//! both, so they are left unset: the caller must give them (SPEC, "Weights file").
//! `patch_size` is not visible either, but only patchify uses it.

use crate::model::tensors::POS_EMBED;
use crate::model::{BlockModule, ConfigOverrides, Flavor, Module};
use crate::tensor_file::RawTensor;
use std::collections::BTreeMap;

/// The fields the canonical `tensors` determine (`num_heads`, `num_steps` and `patch_size`
/// unset). A field whose tensor is absent or oddly shaped stays unset too; the layout check
/// then names that tensor. `num_classes` unset means unconditional (no class tensors).
pub fn fields_from_shapes(tensors: &BTreeMap<String, RawTensor>) -> ConfigOverrides {
    let shape = |name: String| tensors.get(&name).map(|t| t.shape.as_slice());
    let edifice = tensors.contains_key(POS_EMBED)
        || tensors.contains_key(&Module::FinalNorm.weight())
        || tensors.contains_key(&Module::Block(0, BlockModule::Norm1).weight());
    let (hidden_size, input_dim) = match shape(Module::XEmbedder.weight()) {
        Some(&[h, d]) => (Some(h), Some(d)),
        _ => (None, None),
    };
    let num_layers = (0..)
        .take_while(|&i| tensors.contains_key(&Module::Block(i, BlockModule::Qkv).weight()))
        .count()
        .max(1);
    let mlp_ratio = match shape(Module::Block(0, BlockModule::Fc1).weight()) {
        Some(&[m, h]) if h > 0 => Some(m as f64 / h as f64),
        _ => None,
    };
    let num_classes = match (
        shape(Module::ClassTable.weight()),
        shape(Module::ClassMlpIn.weight()),
    ) {
        (Some(&[rows, _]), _) if rows > 1 => Some(rows - 1),
        (_, Some(&[_, c])) => Some(c),
        _ => None,
    };
    ConfigOverrides {
        input_dim,
        hidden_size,
        num_layers: Some(num_layers),
        mlp_ratio,
        num_classes,
        flavor: Some(if edifice {
            Flavor::Edifice
        } else {
            Flavor::Dit
        }),
        ..ConfigOverrides::default()
    }
}
