//! The model's weights on the device, uploaded once in the storage type. The adaLN
//! projections of all blocks are concatenated into one `[L·6h, h]` matrix so a single
//! launch computes every block's modulation.

use super::device::{device_error, internal_error};
use super::device_slice::{DeviceSlice, Element, FixedElement, Storage};
use crate::dtype::{DType, encode_f32};
use crate::error::Result;
use crate::model::tensors::POS_EMBED;
use crate::model::{BlockModule, ClassEmbeddingKind, Module};
use crate::weights::Weights;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::sync::Arc;

/// Device memory and its raw address (valid for the buffer's lifetime), untyped.
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

/// Device memory holding elements of one type: the memory and the view of all of it.
pub struct DeviceArray<T> {
    _memory: DeviceBuffer,
    view: DeviceSlice<T>,
}

impl<T: Element> DeviceArray<T> {
    /// The view of every element (valid while `self` lives).
    pub fn slice(&self) -> DeviceSlice<T> {
        self.view
    }
}

impl<T: FixedElement + bytemuck::Pod> DeviceArray<T> {
    /// Uploads `values`.
    pub fn upload(stream: &Arc<CudaStream>, values: &[T]) -> Result<Self> {
        let memory = DeviceBuffer::upload(stream, bytemuck::cast_slice(values))?;
        let view = DeviceSlice::new(memory.addr(), values.len());
        Ok(DeviceArray {
            _memory: memory,
            view,
        })
    }

    /// `len` zeros (for the kernel tests' outputs).
    #[cfg(test)]
    pub fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Self> {
        let memory = DeviceBuffer::zeros(stream, len * T::SIZE)?;
        let view = DeviceSlice::new(memory.addr(), len);
        Ok(DeviceArray {
            _memory: memory,
            view,
        })
    }
}

impl DeviceArray<Storage> {
    /// Uploads `values` converted to `dtype` ([`storage_bytes`]).
    pub fn upload_storage(stream: &Arc<CudaStream>, values: &[f32], dtype: DType) -> Result<Self> {
        let memory = DeviceBuffer::upload(stream, &storage_bytes(values, dtype)?)?;
        let view = DeviceSlice::storage(memory.addr(), values.len(), dtype);
        Ok(DeviceArray {
            _memory: memory,
            view,
        })
    }

    /// Uploads `bytes`, already in `dtype`'s little-endian encoding (sana's weights as
    /// stored: no f32 copy on the way); an internal error unless they are whole elements.
    pub fn upload_storage_bytes(
        stream: &Arc<CudaStream>,
        bytes: &[u8],
        dtype: DType,
    ) -> Result<Self> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(internal_error(format!(
                "{} bytes are not whole {dtype} elements",
                bytes.len()
            )));
        }
        let memory = DeviceBuffer::upload(stream, bytes)?;
        let view = DeviceSlice::storage(memory.addr(), bytes.len() / dtype.size(), dtype);
        Ok(DeviceArray {
            _memory: memory,
            view,
        })
    }

    /// `len` zeros of `dtype` (for the kernel tests' outputs).
    #[cfg(test)]
    pub fn zeros_storage(stream: &Arc<CudaStream>, len: usize, dtype: DType) -> Result<Self> {
        let memory = DeviceBuffer::zeros(stream, len * dtype.size())?;
        let view = DeviceSlice::storage(memory.addr(), len, dtype);
        Ok(DeviceArray {
            _memory: memory,
            view,
        })
    }
}

/// `values` in the storage type's little-endian bytes, through the crate's one codec
/// ([`encode_f32`]: fp16 under the saturating policy the file writer uses too). The storage
/// type is a float type by construction ([`super::CudaBackend::new`]); an integer one is a
/// bug, reported as such.
pub fn storage_bytes(values: &[f32], dtype: DType) -> Result<Vec<u8>> {
    encode_f32(dtype, values)
        .ok_or_else(|| internal_error(format!("{dtype} is not a storage type for weights")))
}

/// A Linear layer on the device.
pub struct DeviceLinear {
    /// `[out, in]` in the storage type.
    pub weight: DeviceArray<Storage>,
    /// `[out]` in the storage type.
    pub bias: DeviceArray<Storage>,
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
    pub norms: Option<[DeviceArray<Storage>; 4]>,
}

/// Every weight of the model on the device.
pub struct DeviceWeights {
    /// D → h.
    pub x_embedder: DeviceLinear,
    /// edifice's learned position vector, fp32 `[1, h]`.
    pub pos_embed: Option<DeviceArray<f32>>,
    /// Timestep MLP.
    pub t_mlp: (DeviceLinear, DeviceLinear),
    /// dit class table `[C+1, h]`.
    pub class_table: Option<DeviceArray<Storage>>,
    /// edifice class MLP.
    pub class_mlp: Option<(DeviceLinear, DeviceLinear)>,
    /// Every block's adaLN weight, concatenated: `[L·6h, h]`.
    pub adaln_weight: DeviceArray<Storage>,
    /// Every block's adaLN bias: `[L·6h]`.
    pub adaln_bias: DeviceArray<Storage>,
    /// The blocks.
    pub blocks: Vec<DeviceBlock>,
    /// dit final adaLN h → 2h.
    pub final_adaln: Option<DeviceLinear>,
    /// edifice final norm (γ, β).
    pub final_norm: Option<[DeviceArray<Storage>; 2]>,
    /// Output projection weight `[D, h]`.
    pub final_weight: DeviceArray<Storage>,
    /// Output projection bias, fp32 `[D]` (the output GEMM writes fp32).
    pub final_bias_f32: DeviceArray<f32>,
}

impl DeviceWeights {
    /// Converts and uploads `weights` as `dtype`.
    pub fn upload(weights: &Weights, dtype: DType, stream: &Arc<CudaStream>) -> Result<Self> {
        let config = weights.config();
        let values =
            |name: &str| -> Result<Vec<f32>> { Ok(weights.f32(name)?.as_slice().to_vec()) };
        let tensor = |name: &str| -> Result<DeviceArray<Storage>> {
            DeviceArray::upload_storage(stream, &values(name)?, dtype)
        };
        let linear = |module: Module| -> Result<DeviceLinear> {
            let shape = weights.raw(&module.weight())?.shape.clone();
            Ok(DeviceLinear {
                weight: tensor(&module.weight())?,
                bias: tensor(&module.bias())?,
                out: shape[0],
                inp: shape[1],
            })
        };
        let flavor = config.flavor;
        let norm = |module: Module| -> Result<[DeviceArray<Storage>; 2]> {
            Ok([tensor(&module.weight())?, tensor(&module.bias())?])
        };
        let mut adaln_weights = Vec::new();
        let mut adaln_biases = Vec::new();
        let mut blocks = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let block = |part| Module::Block(i, part);
            adaln_weights.extend(values(&block(BlockModule::Adaln).weight())?);
            adaln_biases.extend(values(&block(BlockModule::Adaln).bias())?);
            let norms = if flavor.affine_norms() {
                let [g1, b1] = norm(block(BlockModule::Norm1))?;
                let [g2, b2] = norm(block(BlockModule::Norm2))?;
                Some([g1, b1, g2, b2])
            } else {
                None
            };
            blocks.push(DeviceBlock {
                qkv: linear(block(BlockModule::Qkv))?,
                proj: linear(block(BlockModule::Proj))?,
                fc1: linear(block(BlockModule::Fc1))?,
                fc2: linear(block(BlockModule::Fc2))?,
                norms,
            });
        }
        let f32_buffer = |v: &[f32]| DeviceArray::upload(stream, v);
        let class_kind = config.num_classes.map(|_| flavor.class_embedding());
        Ok(DeviceWeights {
            x_embedder: linear(Module::XEmbedder)?,
            pos_embed: if flavor.learned_position() {
                Some(f32_buffer(&values(POS_EMBED)?)?)
            } else {
                None
            },
            t_mlp: (linear(Module::TimeMlpIn)?, linear(Module::TimeMlpOut)?),
            class_table: match class_kind {
                Some(ClassEmbeddingKind::Table) => Some(tensor(&Module::ClassTable.weight())?),
                _ => None,
            },
            class_mlp: match class_kind {
                Some(ClassEmbeddingKind::Mlp) => {
                    Some((linear(Module::ClassMlpIn)?, linear(Module::ClassMlpOut)?))
                }
                _ => None,
            },
            adaln_weight: DeviceArray::upload_storage(stream, &adaln_weights, dtype)?,
            adaln_bias: DeviceArray::upload_storage(stream, &adaln_biases, dtype)?,
            blocks,
            final_adaln: if flavor.modulated_final_layer() {
                Some(linear(Module::FinalAdaln)?)
            } else {
                None
            },
            final_norm: if flavor.modulated_final_layer() {
                None
            } else {
                Some(norm(Module::FinalNorm)?)
            },
            final_weight: tensor(&Module::FinalLinear.weight())?,
            final_bias_f32: f32_buffer(&values(&Module::FinalLinear.bias())?)?,
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
        let bytes = storage_bytes(&[1e6, -1e6, 65519.0, 1.5, f32::NAN], DType::F16).unwrap();
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
