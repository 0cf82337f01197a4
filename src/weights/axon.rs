//! Edifice (Axon) parameter names, converted to the canonical layout as SPEC describes:
//! kernels `[in, out]` are transposed, the q/k/v kernels concatenate into `attn.qkv`, the two
//! adaLN projections into `adaLN_modulation.1`, and LayerNorm `gamma`/`beta` become
//! `weight`/`bias`.

use crate::error::{Error, Result};
use crate::limits::{bytes_of, check_alloc, checked_product};
use crate::model::tensors::POS_EMBED;
use crate::model::{BlockModule, Module};
use crate::tensor_file::{RawTensor, TensorFile};
use std::collections::{BTreeMap, BTreeSet};

/// Whether the file uses Axon names (any `input_embed.*` or `linear_dit_block_*` tensor).
pub fn is_axon(file: &TensorFile) -> bool {
    file.names()
        .iter()
        .any(|n| n.starts_with("input_embed.") || n.starts_with("linear_dit_block_"))
}

/// One canonical tensor and the Axon tensors it is made of (concatenated along the output
/// axis, in order), plus whether they are kernels to transpose.
struct Source {
    canonical: String,
    parts: Vec<String>,
    transpose: bool,
}

/// Reads every tensor of an Axon-named file and returns them under canonical names.
pub fn to_canonical(file: &TensorFile) -> Result<BTreeMap<String, RawTensor>> {
    let sources = plan(file)?;
    let mut out = BTreeMap::new();
    for source in sources {
        let parts = source
            .parts
            .iter()
            .map(|name| {
                if file.contains(name) {
                    file.tensor(name)
                } else {
                    Err(Error::MissingTensor {
                        name: name.clone(),
                        expected: vec![],
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let tensor = assemble(&source, &parts)?;
        out.insert(source.canonical, tensor);
    }
    Ok(out)
}

/// Decides, for every tensor in the file, which canonical tensor it feeds.
fn plan(file: &TensorFile) -> Result<Vec<Source>> {
    let mut sources: Vec<Source> = Vec::new();
    let mut seen_groups = BTreeSet::new();
    for name in file.names() {
        let unknown = || Error::UnknownTensor {
            name: name.to_string(),
            shape: file.shape(name).unwrap_or_default().to_vec(),
        };
        let (layer, param) = name.rsplit_once('.').ok_or_else(unknown)?;
        let (canonical_param, transpose) = match param {
            "kernel" => ("weight", true),
            "bias" => ("bias", false),
            "gamma" => ("weight", false),
            "beta" => ("bias", false),
            _ => return Err(unknown()),
        };
        let single = |module: Module| Source {
            canonical: format!("{}.{canonical_param}", module.prefix()),
            parts: vec![name.to_string()],
            transpose,
        };
        let source = match layer {
            "input_embed" => single(Module::XEmbedder),
            "pos_embed" if param == "bias" => Source {
                canonical: POS_EMBED.into(),
                parts: vec![name.to_string()],
                transpose: false,
            },
            "time_mlp_1" => single(Module::TimeMlpIn),
            "time_mlp_2" => single(Module::TimeMlpOut),
            "class_embed_1" => single(Module::ClassMlpIn),
            "class_embed_2" => single(Module::ClassMlpOut),
            "final_norm" => single(Module::FinalNorm),
            "output_proj" => single(Module::FinalLinear),
            _ => {
                let rest = layer
                    .strip_prefix("linear_dit_block_")
                    .ok_or_else(unknown)?;
                let (k, part) = rest.split_once('_').ok_or_else(unknown)?;
                let k: usize = k.parse().map_err(|_| unknown())?;
                if k == 0 {
                    return Err(unknown());
                }
                let block = |part| Module::Block(k - 1, part);
                let axon = |suffix: &str| format!("linear_dit_block_{k}_{suffix}.{param}");
                match part {
                    "attn_norm" => single(block(BlockModule::Norm1)),
                    "mlp_norm" => single(block(BlockModule::Norm2)),
                    "attn_out_proj" => single(block(BlockModule::Proj)),
                    "mlp_up" => single(block(BlockModule::Fc1)),
                    "mlp_down" => single(block(BlockModule::Fc2)),
                    "attn_q" | "attn_k" | "attn_v" => {
                        let qkv = block(BlockModule::Qkv).prefix();
                        if !seen_groups.insert(format!("{qkv}.{param}")) {
                            continue;
                        }
                        Source {
                            canonical: format!("{qkv}.{canonical_param}"),
                            parts: vec![axon("attn_q"), axon("attn_k"), axon("attn_v")],
                            transpose,
                        }
                    }
                    "adaln_attn" | "adaln_mlp" => {
                        let adaln = block(BlockModule::Adaln).prefix();
                        if !seen_groups.insert(format!("{adaln}.{param}")) {
                            continue;
                        }
                        Source {
                            canonical: format!("{adaln}.{canonical_param}"),
                            parts: vec![axon("adaln_attn"), axon("adaln_mlp")],
                            transpose,
                        }
                    }
                    _ => return Err(unknown()),
                }
            }
        };
        sources.push(source);
    }
    Ok(sources)
}

/// Transposes (kernels) and concatenates the parts of one canonical tensor. The parts must
/// agree: one float dtype, rank 1 or 2, the same input width (kernels `[in, out_i]`
/// concatenate along `out`) or the same column count, and bytes that match their shapes.
fn assemble(source: &Source, parts: &[RawTensor]) -> Result<RawTensor> {
    let Some(first) = parts.first() else {
        return Err(Error::MissingTensor {
            name: source.canonical.clone(),
            expected: vec![],
        });
    };
    let mismatch = |name: &str, part: &RawTensor| Error::ShapeMismatch {
        name: name.to_string(),
        expected: first.shape.clone(),
        actual: part.shape.clone(),
    };
    let mut rows = 0usize;
    for (name, part) in source.parts.iter().zip(parts) {
        if part.dtype != first.dtype || part.dtype.size() == 8 {
            return Err(Error::UnsupportedDtype {
                name: name.clone(),
                dtype: part.dtype.to_string(),
                expected: "F32, BF16 or F16, the same for every part of its group",
            });
        }
        // The axis shared by every part: a kernel's input width, a matrix's column count.
        let shared = match (part.shape.as_slice(), first.shape.as_slice()) {
            ([_], [_]) => true,
            ([i, _], [i0, _]) if source.transpose => i == i0,
            ([_, c], [_, c0]) => c == c0,
            _ => false,
        };
        if !shared {
            return Err(mismatch(name, part));
        }
        let added = match (source.transpose, part.shape.as_slice()) {
            (true, [_, out]) => *out,
            (_, shape) => shape[0],
        };
        rows = rows.checked_add(added).ok_or_else(|| Error::TooLarge {
            what: source.canonical.clone(),
            reason: format!("its parts' sizes add up past 2^64 (at `{name}`)"),
        })?;
        // Safetensors checked the bytes of a file's tensors; this keeps `transpose` in bounds
        // whatever made the part.
        let numel = checked_product(name, &part.shape)?;
        if bytes_of(&[numel], part.dtype.size()) != part.bytes.as_slice().len() as u128 {
            return Err(mismatch(name, part));
        }
    }
    let shape = match (source.transpose, first.shape.as_slice()) {
        (true, [inp, _]) => vec![rows, *inp],
        (_, [_, cols]) => vec![rows, *cols],
        _ => vec![rows],
    };
    let total = checked_product(&source.canonical, &shape)?;
    check_alloc(&source.canonical, bytes_of(&[total], first.dtype.size()))?;
    // Within the budget, so the byte count fits.
    let mut bytes = Vec::with_capacity(total * first.dtype.size());
    for part in parts {
        match (source.transpose, part.shape.as_slice()) {
            (true, &[inp, out]) => {
                bytes.extend(transpose(
                    part.bytes.as_slice(),
                    inp,
                    out,
                    part.dtype.size(),
                ));
            }
            _ => bytes.extend_from_slice(part.bytes.as_slice()),
        }
    }
    Ok(RawTensor::owned(first.dtype, shape, bytes))
}

/// Transposes a row-major `[rows, cols]` matrix of `elem`-byte elements (`data` holds
/// exactly `rows × cols × elem` bytes).
fn transpose(data: &[u8], rows: usize, cols: usize, elem: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    // An empty matrix may still have one huge side: never loop over it.
    if data.is_empty() {
        return out;
    }
    for r in 0..rows {
        for c in 0..cols {
            let src = (r * cols + c) * elem;
            let dst = (c * rows + r) * elem;
            out[dst..dst + elem].copy_from_slice(&data[src..src + elem]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_moves_elements() {
        let m: Vec<u8> = (0u8..6).collect(); // [[0,1,2],[3,4,5]] of 1-byte elements
        assert_eq!(transpose(&m, 2, 3, 1), vec![0, 3, 1, 4, 2, 5]);
    }
}
