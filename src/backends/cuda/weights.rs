//! The model's weights on the device, uploaded once in the storage type. The adaLN
//! projections of all blocks are concatenated into one `[L·6h, h]` matrix so a single
//! launch computes every block's modulation.

use super::device::device_error;
use super::ops::StorageType;
use crate::error::Result;
use crate::model::Flavor;
use crate::weights::Weights;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::sync::Arc;

/// A device buffer and its raw address (valid for the buffer's lifetime).
pub struct DeviceBuffer {
    /// Owns the memory (freed on drop).
    _slice: CudaSlice<u8>,
    addr: u64,
}

impl DeviceBuffer {
    /// Uploads `bytes`.
    pub fn upload(stream: &Arc<CudaStream>, bytes: &[u8]) -> Result<Self> {
        let slice = stream
            .clone_htod(bytes)
            .map_err(|e| device_error("uploading weights", e))?;
        let addr = slice.device_ptr(stream).0;
        Ok(DeviceBuffer {
            _slice: slice,
            addr,
        })
    }

    /// A zeroed buffer of `bytes` bytes.
    pub fn zeros(stream: &Arc<CudaStream>, bytes: usize) -> Result<Self> {
        let slice = stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| device_error(&format!("allocating {bytes} bytes of device memory"), e))?;
        let addr = slice.device_ptr(stream).0;
        Ok(DeviceBuffer {
            _slice: slice,
            addr,
        })
    }

    /// The device address.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// `values` in the storage type's little-endian bytes; fp16 under the one saturating policy
/// the file writer uses too ([`crate::dtype::f16_saturating`]).
pub fn storage_bytes(values: &[f32], dtype: StorageType) -> Vec<u8> {
    match dtype {
        StorageType::F32 => bytemuck::cast_slice(values).to_vec(),
        StorageType::Bf16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        StorageType::F16 => values
            .iter()
            .flat_map(|&v| crate::dtype::f16_saturating(v).to_le_bytes())
            .collect(),
    }
}

/// A Linear layer on the device.
pub struct DeviceLinear {
    /// `[out, in]` in the storage type.
    pub weight: DeviceBuffer,
    /// `[out]` in the storage type.
    pub bias: DeviceBuffer,
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
}

/// One block's GEMM weights.
pub struct DeviceBlock {
    /// h → 3h.
    pub qkv: DeviceLinear,
    /// h → h.
    pub proj: DeviceLinear,
    /// h → m.
    pub fc1: DeviceLinear,
    /// m → h.
    pub fc2: DeviceLinear,
    /// edifice: norm1 (γ, β) and norm2 (γ, β).
    pub norms: Option<[DeviceBuffer; 4]>,
}

/// Every weight of the model on the device.
pub struct DeviceWeights {
    /// D → h.
    pub x_embedder: DeviceLinear,
    /// edifice's learned position vector, fp32 `[1, h]`.
    pub pos_embed: Option<DeviceBuffer>,
    /// Timestep MLP.
    pub t_mlp: (DeviceLinear, DeviceLinear),
    /// dit class table `[C+1, h]`.
    pub class_table: Option<DeviceBuffer>,
    /// edifice class MLP.
    pub class_mlp: Option<(DeviceLinear, DeviceLinear)>,
    /// Every block's adaLN weight, concatenated: `[L·6h, h]`.
    pub adaln_weight: DeviceBuffer,
    /// Every block's adaLN bias: `[L·6h]`.
    pub adaln_bias: DeviceBuffer,
    /// The blocks.
    pub blocks: Vec<DeviceBlock>,
    /// dit final adaLN h → 2h.
    pub final_adaln: Option<DeviceLinear>,
    /// edifice final norm (γ, β).
    pub final_norm: Option<[DeviceBuffer; 2]>,
    /// Output projection weight `[D, h]`.
    pub final_weight: DeviceBuffer,
    /// Output projection bias, fp32 `[D]` (the output GEMM writes fp32).
    pub final_bias_f32: DeviceBuffer,
}

impl DeviceWeights {
    /// Converts and uploads `weights` as `dtype`.
    pub fn upload(weights: &Weights, dtype: StorageType, stream: &Arc<CudaStream>) -> Result<Self> {
        let config = weights.config();
        let values =
            |name: &str| -> Result<Vec<f32>> { Ok(weights.f32(name)?.as_slice().to_vec()) };
        let tensor = |name: &str| -> Result<DeviceBuffer> {
            DeviceBuffer::upload(stream, &storage_bytes(&values(name)?, dtype))
        };
        let linear = |prefix: &str| -> Result<DeviceLinear> {
            let shape = weights.raw(&format!("{prefix}.weight"))?.shape.clone();
            Ok(DeviceLinear {
                weight: tensor(&format!("{prefix}.weight"))?,
                bias: tensor(&format!("{prefix}.bias"))?,
                out: shape[0],
                inp: shape[1],
            })
        };
        let edifice = config.flavor == Flavor::Edifice;
        let norm = |prefix: &str| -> Result<[DeviceBuffer; 2]> {
            Ok([
                tensor(&format!("{prefix}.weight"))?,
                tensor(&format!("{prefix}.bias"))?,
            ])
        };
        let mut adaln_w = Vec::new();
        let mut adaln_b = Vec::new();
        let mut blocks = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let b = format!("blocks.{i}");
            adaln_w.extend(values(&format!("{b}.adaLN_modulation.1.weight"))?);
            adaln_b.extend(values(&format!("{b}.adaLN_modulation.1.bias"))?);
            let norms = if edifice {
                let [g1, b1] = norm(&format!("{b}.norm1"))?;
                let [g2, b2] = norm(&format!("{b}.norm2"))?;
                Some([g1, b1, g2, b2])
            } else {
                None
            };
            blocks.push(DeviceBlock {
                qkv: linear(&format!("{b}.attn.qkv"))?,
                proj: linear(&format!("{b}.attn.proj"))?,
                fc1: linear(&format!("{b}.mlp.fc1"))?,
                fc2: linear(&format!("{b}.mlp.fc2"))?,
                norms,
            });
        }
        let f32_buffer = |v: &[f32]| DeviceBuffer::upload(stream, bytemuck::cast_slice(v));
        Ok(DeviceWeights {
            x_embedder: linear("x_embedder")?,
            pos_embed: if edifice {
                Some(f32_buffer(&values("pos_embed")?)?)
            } else {
                None
            },
            t_mlp: (linear("t_embedder.mlp.0")?, linear("t_embedder.mlp.2")?),
            class_table: match (config.num_classes, edifice) {
                (Some(_), false) => Some(tensor("y_embedder.embedding_table.weight")?),
                _ => None,
            },
            class_mlp: match (config.num_classes, edifice) {
                (Some(_), true) => Some((linear("y_embedder.mlp.0")?, linear("y_embedder.mlp.2")?)),
                _ => None,
            },
            adaln_weight: DeviceBuffer::upload(stream, &storage_bytes(&adaln_w, dtype))?,
            adaln_bias: DeviceBuffer::upload(stream, &storage_bytes(&adaln_b, dtype))?,
            blocks,
            final_adaln: if edifice {
                None
            } else {
                Some(linear("final_layer.adaLN_modulation.1")?)
            },
            final_norm: if edifice {
                Some(norm("final_layer.norm_final")?)
            } else {
                None
            },
            final_weight: tensor("final_layer.linear.weight")?,
            final_bias_f32: f32_buffer(&values("final_layer.linear.bias")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_weights_saturate_at_the_largest_finite_value() {
        // The fp16 overflow policy on the host side: out-of-range weights become ±65504, not
        // ±inf; NaN stays NaN (and is refused earlier, when the weights are validated).
        let bytes = storage_bytes(&[1e6, -1e6, 65519.0, 1.5, f32::NAN], StorageType::F16);
        let halves: Vec<half::f16> = bytes
            .chunks(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(halves[0], half::f16::MAX);
        assert_eq!(halves[1], half::f16::MIN);
        assert_eq!(halves[2], half::f16::MAX);
        assert_eq!(halves[3].to_f32(), 1.5);
        assert!(halves[4].is_nan());
    }
}
