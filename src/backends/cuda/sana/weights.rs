//! A `sana` model's weights on the device, in the storage type, read by the names of the one
//! tensor table ([`crate::model::sana::tensors`]).
//!
//! **Stored bytes go up as they are**: a tensor whose stored dtype is the storage type (bf16
//! checkpoints on the bf16 path, the common case) is copied from the memory map straight to
//! the device, with no f32 copy on the host; any other tensor is converted element by element
//! into one reusable host buffer (never a whole-model f32 copy). No layout changes either: a
//! 1×1 conv `[out, in, 1, 1]` and the patch conv `[h, C, p, p]` are already the `[out, in]`
//! matrices the GEMMs read (the patch features are laid out in the conv weight's order,
//! [`crate::model::sana::patches`]), and the depthwise 3×3 weight `[2m, 1, 3, 3]` is already
//! `weight[c·9 + di·3 + dj]`, the layout `depthwise_conv_glu_T` reads. The only assembly is
//! the self-attention's q, k and v weights side by side as one `[3h, h]` matrix (one GEMM
//! into the `[R, 3h]` qkv the attention kernels read).

use super::super::device::{device_error, internal_error};
use super::super::device_slice::Storage;
use super::super::weights::DeviceArray;
use crate::dtype::{DType, f16_saturating};
use crate::error::Result;
use crate::model::sana::tensors::{
    self, BlockPart, CAPTION_LINEAR_1, CAPTION_LINEAR_2, CAPTION_NORM, FINAL_SCALE_SHIFT_TABLE,
    GUIDANCE_EMBEDDER, PATCH_EMBED, PROJ_OUT, TIME_LINEAR, bias, block, weight,
};
use crate::model::sana::{SanaConfig, SanaDims};
use crate::tensor_file::RawTensor;
use crate::weights::SanaWeights;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// A Linear (or 1×1 / patch conv) on the device: `[out, in]` and its bias, if it has one.
pub struct SanaLinear {
    /// `[out, in]` in the storage type.
    pub weight: DeviceArray<Storage>,
    /// `[out]` in the storage type.
    pub bias: Option<DeviceArray<Storage>>,
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
}

/// diffusers' `TimestepEmbedding` on the device: Linear `256 → h`, SiLU, Linear `h → h`.
pub struct SanaTimestepMlp {
    /// `256 → h`.
    pub first: SanaLinear,
    /// `h → h`.
    pub second: SanaLinear,
}

/// One transformer block's weights.
pub struct SanaDeviceBlock {
    /// `[6, h]`: shift, scale, gate of the attention, then of the Mix-FFN.
    pub scale_shift_table: DeviceArray<Storage>,
    /// q, k, v side by side: `[3h, h]` (and `[3h]` biases with `attention_bias`).
    pub qkv: SanaLinear,
    /// qk_norm weights of q and k, `[h]` each.
    pub self_qk_norm: Option<[DeviceArray<Storage>; 2]>,
    /// Self-attention output projection `h → h`.
    pub self_out: SanaLinear,
    /// The pre-FFN LayerNorm's γ, β (`norm_elementwise_affine`).
    pub ffn_norm: Option<[DeviceArray<Storage>; 2]>,
    /// Cross-attention q `h → cross`.
    pub cross_q: SanaLinear,
    /// Cross-attention k `h → cross` (of the captions).
    pub cross_k: SanaLinear,
    /// Cross-attention v `h → cross`.
    pub cross_v: SanaLinear,
    /// qk_norm weights of the cross-attention q and k, `[cross]` each.
    pub cross_qk_norm: Option<[DeviceArray<Storage>; 2]>,
    /// Cross-attention output projection `cross → h`.
    pub cross_out: SanaLinear,
    /// Mix-FFN 1×1 conv `h → 2m` (with bias).
    pub ffn_inverted: SanaLinear,
    /// Depthwise 3×3 weight `[2m, 1, 3, 3]` as stored.
    pub ffn_depthwise: DeviceArray<Storage>,
    /// Depthwise bias `[2m]`.
    pub ffn_depthwise_bias: DeviceArray<Storage>,
    /// Mix-FFN 1×1 conv `m → h` (no bias).
    pub ffn_point: SanaLinear,
}

/// Every weight of a `sana` model on the device.
pub struct SanaDeviceWeights {
    /// The patch conv as a Linear `C·p·p → h`.
    pub patch_embed: SanaLinear,
    /// The timestep MLP.
    pub timestep: SanaTimestepMlp,
    /// The guidance MLP (Sprint).
    pub guidance: Option<SanaTimestepMlp>,
    /// adaLN-single `h → 6h` (after SiLU).
    pub time_linear: SanaLinear,
    /// Caption projection, first Linear `caption → h` (then tanh GELU).
    pub caption_first: SanaLinear,
    /// Caption projection, second Linear `h → h`.
    pub caption_second: SanaLinear,
    /// The caption RMSNorm's weight `[h]`.
    pub caption_norm: DeviceArray<Storage>,
    /// The blocks.
    pub blocks: Vec<SanaDeviceBlock>,
    /// `[2, h]`: the final norm's shift row, then its scale row.
    pub final_table: DeviceArray<Storage>,
    /// `h → p²·C_out`, weight in the storage type.
    pub proj_out: SanaLinear,
    /// proj_out's bias in fp32 (the output GEMM writes fp32, and its bias has its type).
    pub proj_out_bias_f32: DeviceArray<f32>,
}

/// The bytes of `raw` (tensor `name`) in `dtype`'s little-endian encoding: the stored bytes
/// themselves when `raw` is stored as `dtype`, otherwise each element converted into
/// `buffer` (cleared first; reused across tensors, so no per-tensor allocation once it has
/// grown). The conversion rounds once: bf16 to nearest even, fp16 to nearest even with the
/// crate's saturation at ±65504 ([`f16_saturating`]), the same bits `encode_f32` gives.
pub fn stored_as<'a>(
    name: &str,
    raw: &'a RawTensor,
    dtype: DType,
    buffer: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    let numel = raw.numel()?;
    let bytes = raw.bytes.as_slice();
    let expected = numel.checked_mul(raw.dtype.size());
    if expected != Some(bytes.len()) || !raw.dtype.is_float() || !dtype.is_float() {
        return Err(internal_error(format!(
            "tensor `{name}`: {} bytes of {} for shape {:?}, to {dtype}",
            bytes.len(),
            raw.dtype,
            raw.shape
        )));
    }
    if raw.dtype == dtype {
        return Ok(bytes);
    }
    buffer.clear();
    buffer.reserve(numel * dtype.size());
    let source = raw.dtype;
    for element in bytes.chunks_exact(source.size()) {
        let value = match source {
            DType::F32 => f32::from_le_bytes([element[0], element[1], element[2], element[3]]),
            DType::BF16 => half::bf16::from_le_bytes([element[0], element[1]]).to_f32(),
            DType::F16 => half::f16::from_le_bytes([element[0], element[1]]).to_f32(),
            DType::I64 => unreachable!("integer tensors are refused above"),
        };
        match dtype {
            DType::F32 => buffer.extend_from_slice(&value.to_le_bytes()),
            DType::BF16 => buffer.extend_from_slice(&half::bf16::from_f32(value).to_le_bytes()),
            DType::F16 => buffer.extend_from_slice(&f16_saturating(value).to_le_bytes()),
            DType::I64 => unreachable!("integer storage is refused above"),
        }
    }
    Ok(buffer)
}

/// Uploads tensors in one storage type, converting through one reusable host buffer.
struct Uploader<'a> {
    weights: &'a SanaWeights,
    dtype: DType,
    stream: &'a Arc<CudaStream>,
    buffer: Vec<u8>,
}

impl Uploader<'_> {
    /// Tensor `name` in the storage type.
    fn tensor(&mut self, name: &str) -> Result<DeviceArray<Storage>> {
        let weights = self.weights;
        let raw = weights.raw(name)?;
        let converted = raw.dtype != self.dtype;
        let array = {
            let bytes = stored_as(name, raw, self.dtype, &mut self.buffer)?;
            DeviceArray::upload_storage_bytes(self.stream, bytes, self.dtype)?
        };
        if converted {
            // The copy was from `buffer`, which the next tensor overwrites: wait for it
            // (cheap, and only on the conversion path) rather than rely on the driver's
            // staging of pageable memory.
            self.synchronize()?;
        }
        Ok(array)
    }

    /// Several tensors side by side (each whole, in order) as one device array.
    fn concatenated(&mut self, names: &[String]) -> Result<DeviceArray<Storage>> {
        let mut joined = Vec::new();
        let weights = self.weights;
        for name in names {
            let raw = weights.raw(name)?;
            joined.extend_from_slice(stored_as(name, raw, self.dtype, &mut self.buffer)?);
        }
        let array = DeviceArray::upload_storage_bytes(self.stream, &joined, self.dtype)?;
        // `joined` is freed on return: wait for the copy from it (a few per block, at load).
        self.synchronize()?;
        Ok(array)
    }

    /// Tensor `name` as f32 (small vectors only: proj_out's bias).
    fn f32_vector(&mut self, name: &str) -> Result<DeviceArray<f32>> {
        let values = self.weights.f32(name)?;
        DeviceArray::upload(self.stream, values.as_slice())
    }

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| device_error("uploading weights", e))
    }

    /// The Linear `prefix` with `out` outputs and `inp` inputs (bias when the model has one).
    fn linear(&mut self, prefix: &str, out: usize, inp: usize) -> Result<SanaLinear> {
        let bias_name = bias(prefix);
        let bias = if self.weights.contains(&bias_name) {
            Some(self.tensor(&bias_name)?)
        } else {
            None
        };
        Ok(SanaLinear {
            weight: self.tensor(&weight(prefix))?,
            bias,
            out,
            inp,
        })
    }

    fn timestep_mlp(&mut self, prefix: &str, h: usize) -> Result<SanaTimestepMlp> {
        Ok(SanaTimestepMlp {
            first: self.linear(
                &format!("{prefix}.linear_1"),
                h,
                tensors::TIME_FREQUENCY_WIDTH,
            )?,
            second: self.linear(&format!("{prefix}.linear_2"), h, h)?,
        })
    }

    /// A pair of weight-only tensors (qk norms) or weight + bias (an affine LayerNorm).
    fn pair(&mut self, first: &str, second: &str) -> Result<[DeviceArray<Storage>; 2]> {
        Ok([self.tensor(first)?, self.tensor(second)?])
    }

    fn block(&mut self, config: &SanaConfig, d: &SanaDims, i: usize) -> Result<SanaDeviceBlock> {
        let h = d.hidden;
        let cross = d.cross_heads * d.cross_head_dim;
        let name = |part| block(i, part);
        let qkv_parts = [BlockPart::SelfQ, BlockPart::SelfK, BlockPart::SelfV];
        let qkv_weights: Vec<String> = qkv_parts.iter().map(|&p| weight(&name(p))).collect();
        let qkv_biases: Vec<String> = qkv_parts.iter().map(|&p| bias(&name(p))).collect();
        let qkv = SanaLinear {
            weight: self.concatenated(&qkv_weights)?,
            bias: if config.attention_bias {
                Some(self.concatenated(&qkv_biases)?)
            } else {
                None
            },
            out: 3 * h,
            inp: h,
        };
        let qk = |me: &mut Self, q: BlockPart, k: BlockPart| {
            if config.has_qk_norm() {
                me.pair(&weight(&name(q)), &weight(&name(k))).map(Some)
            } else {
                Ok(None)
            }
        };
        let ffn_norm = if config.norm_elementwise_affine {
            let prefix = name(BlockPart::FfnNorm);
            Some(self.pair(&weight(&prefix), &bias(&prefix))?)
        } else {
            None
        };
        Ok(SanaDeviceBlock {
            scale_shift_table: self.tensor(&name(BlockPart::ScaleShiftTable))?,
            qkv,
            self_qk_norm: qk(self, BlockPart::SelfNormQ, BlockPart::SelfNormK)?,
            self_out: self.linear(&name(BlockPart::SelfOut), h, h)?,
            ffn_norm,
            cross_q: self.linear(&name(BlockPart::CrossQ), cross, h)?,
            cross_k: self.linear(&name(BlockPart::CrossK), cross, h)?,
            cross_v: self.linear(&name(BlockPart::CrossV), cross, h)?,
            cross_qk_norm: qk(self, BlockPart::CrossNormQ, BlockPart::CrossNormK)?,
            cross_out: self.linear(&name(BlockPart::CrossOut), h, cross)?,
            ffn_inverted: self.linear(&name(BlockPart::FfnInverted), 2 * d.ffn_hidden, h)?,
            ffn_depthwise: self.tensor(&weight(&name(BlockPart::FfnDepthwise)))?,
            ffn_depthwise_bias: self.tensor(&bias(&name(BlockPart::FfnDepthwise)))?,
            ffn_point: self.linear(&name(BlockPart::FfnPoint), h, d.ffn_hidden)?,
        })
    }
}

impl SanaDeviceWeights {
    /// Uploads `weights` as `dtype` on `stream` (the caller synchronises before use).
    pub fn upload(weights: &SanaWeights, dtype: DType, stream: &Arc<CudaStream>) -> Result<Self> {
        let config = weights.config();
        let d = config.dims()?;
        let h = d.hidden;
        let mut up = Uploader {
            weights,
            dtype,
            stream,
            buffer: Vec::new(),
        };
        let blocks = (0..config.num_layers)
            .map(|i| up.block(config, &d, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(SanaDeviceWeights {
            patch_embed: up.linear(PATCH_EMBED, h, d.in_channels * d.patch * d.patch)?,
            timestep: up.timestep_mlp(tensors::timestep_embedder(config), h)?,
            guidance: if config.guidance_embeds {
                Some(up.timestep_mlp(GUIDANCE_EMBEDDER, h)?)
            } else {
                None
            },
            time_linear: up.linear(TIME_LINEAR, 6 * h, h)?,
            caption_first: up.linear(CAPTION_LINEAR_1, h, d.caption)?,
            caption_second: up.linear(CAPTION_LINEAR_2, h, h)?,
            caption_norm: up.tensor(&weight(CAPTION_NORM))?,
            blocks,
            final_table: up.tensor(FINAL_SCALE_SHIFT_TABLE)?,
            proj_out: up.linear(PROJ_OUT, d.patch * d.patch * d.out_channels, h)?,
            proj_out_bias_f32: up.f32_vector(&bias(PROJ_OUT))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_in_the_storage_type_are_their_stored_bytes() {
        let raw = RawTensor::from_f32_as(DType::BF16, vec![2, 2], &[1.0, -2.5, 3.0e-3, 7.0]);
        let mut buffer = Vec::new();
        let bytes = stored_as("w", &raw, DType::BF16, &mut buffer).unwrap();
        // The very bytes of the map (no copy), and the buffer untouched.
        assert_eq!(bytes.as_ptr(), raw.bytes.as_slice().as_ptr());
        assert!(buffer.is_empty());
    }

    #[test]
    fn other_tensors_convert_as_the_crate_codec_does() {
        let values = [1.0f32, -2.5, 3.0e-3, 7.0e5, f32::MIN_POSITIVE, 65519.0];
        let mut buffer = Vec::new();
        for (from, to) in [
            (DType::F32, DType::BF16),
            (DType::F32, DType::F16),
            (DType::BF16, DType::F32),
            (DType::F16, DType::BF16),
            (DType::BF16, DType::F16),
        ] {
            let raw = RawTensor::from_f32_as(from, vec![values.len()], &values);
            let stored = raw.to_f32_vec("w").unwrap();
            let expected = crate::dtype::encode_f32(to, &stored).unwrap();
            let got = stored_as("w", &raw, to, &mut buffer).unwrap();
            assert_eq!(got, expected.as_slice(), "{from} → {to}");
        }
    }

    #[test]
    fn integer_or_short_tensors_are_refused() {
        let mut buffer = Vec::new();
        let labels = RawTensor::from_i64(vec![2], &[1, 2]);
        assert!(stored_as("y", &labels, DType::BF16, &mut buffer).is_err());
        let short = RawTensor::owned(DType::F32, vec![3], vec![0; 8]);
        assert!(stored_as("w", &short, DType::F32, &mut buffer).is_err());
    }
}
