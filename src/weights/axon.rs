//! Edifice (Axon) parameter names, converted to the canonical layout as SPEC describes:
//! kernels `[in, out]` are transposed, the q/k/v kernels concatenate into `attn.qkv`, the two
//! adaLN projections into `adaLN_modulation.1`, and LayerNorm `gamma`/`beta` become
//! `weight`/`bias`.

use crate::error::{Error, Result};
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
        let single = |prefix: &str| Source {
            canonical: format!("{prefix}.{canonical_param}"),
            parts: vec![name.to_string()],
            transpose,
        };
        let source = match layer {
            "input_embed" => single("x_embedder"),
            "pos_embed" if param == "bias" => Source {
                canonical: "pos_embed".into(),
                parts: vec![name.to_string()],
                transpose: false,
            },
            "time_mlp_1" => single("t_embedder.mlp.0"),
            "time_mlp_2" => single("t_embedder.mlp.2"),
            "class_embed_1" => single("y_embedder.mlp.0"),
            "class_embed_2" => single("y_embedder.mlp.2"),
            "final_norm" => single("final_layer.norm_final"),
            "output_proj" => single("final_layer.linear"),
            _ => {
                let rest = layer
                    .strip_prefix("linear_dit_block_")
                    .ok_or_else(unknown)?;
                let (k, part) = rest.split_once('_').ok_or_else(unknown)?;
                let k: usize = k.parse().map_err(|_| unknown())?;
                if k == 0 {
                    return Err(unknown());
                }
                let block = format!("blocks.{}", k - 1);
                let axon = |suffix: &str| format!("linear_dit_block_{k}_{suffix}.{param}");
                match part {
                    "attn_norm" => single(&format!("{block}.norm1")),
                    "mlp_norm" => single(&format!("{block}.norm2")),
                    "attn_out_proj" => single(&format!("{block}.attn.proj")),
                    "mlp_up" => single(&format!("{block}.mlp.fc1")),
                    "mlp_down" => single(&format!("{block}.mlp.fc2")),
                    "attn_q" | "attn_k" | "attn_v" => {
                        if !seen_groups.insert(format!("{block}.qkv.{param}")) {
                            continue;
                        }
                        Source {
                            canonical: format!("{block}.attn.qkv.{canonical_param}"),
                            parts: vec![axon("attn_q"), axon("attn_k"), axon("attn_v")],
                            transpose,
                        }
                    }
                    "adaln_attn" | "adaln_mlp" => {
                        if !seen_groups.insert(format!("{block}.adaln.{param}")) {
                            continue;
                        }
                        Source {
                            canonical: format!("{block}.adaLN_modulation.1.{canonical_param}"),
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

/// Transposes (kernels) and concatenates the parts of one canonical tensor.
fn assemble(source: &Source, parts: &[RawTensor]) -> Result<RawTensor> {
    let first = &parts[0];
    let mut rows = 0;
    let mut bytes = Vec::new();
    for (name, part) in source.parts.iter().zip(parts) {
        if part.dtype != first.dtype {
            return Err(Error::UnsupportedDtype {
                name: name.clone(),
                dtype: part.dtype.to_string(),
                expected: "the same dtype as the other parts of its group",
            });
        }
        if part.dtype.size() == 8 {
            return Err(Error::UnsupportedDtype {
                name: name.clone(),
                dtype: part.dtype.to_string(),
                expected: "F32, BF16 or F16",
            });
        }
        let consistent = part.shape.len() == first.shape.len()
            && (!source.transpose || part.shape[0] == first.shape[0]);
        if !consistent || part.shape.is_empty() || part.shape.len() > 2 {
            return Err(Error::ShapeMismatch {
                name: name.clone(),
                expected: first.shape.clone(),
                actual: part.shape.clone(),
            });
        }
        if source.transpose && part.shape.len() == 2 {
            let (inp, out) = (part.shape[0], part.shape[1]);
            bytes.extend(transpose(
                part.bytes.as_slice(),
                inp,
                out,
                part.dtype.size(),
            ));
            rows += out;
        } else {
            bytes.extend_from_slice(part.bytes.as_slice());
            rows += part.shape[0];
        }
    }
    let shape = match (source.transpose, first.shape.as_slice()) {
        (true, [inp, _]) => vec![rows, *inp],
        (_, [_]) => vec![rows],
        (_, [_, cols]) => vec![rows, *cols],
        _ => first.shape.clone(),
    };
    Ok(RawTensor::owned(first.dtype, shape, bytes))
}

/// Transposes a row-major `[rows, cols]` matrix of `elem`-byte elements.
fn transpose(data: &[u8], rows: usize, cols: usize, elem: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
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
