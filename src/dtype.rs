//! Element types, and the one codec between f32 and the 16-bit float formats. Files,
//! forward inputs and outputs, the CPU backend and the CUDA backend's storage all name their
//! element type with [`DType`], and every f32 → bf16/f16 conversion in the crate goes through
//! [`encode_f32`], so a value has the same bits on disk and on a device.

/// Element types linear-dit reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// bfloat16.
    BF16,
    /// IEEE binary16.
    F16,
    /// Signed 64-bit integer (class labels).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::I64 => 8,
        }
    }

    /// The safetensors spelling (`F32`, `BF16`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::I64 => "I64",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = crate::error::ParseError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            other => Err(crate::error::ParseError::new(
                "dtype",
                other,
                "f32, bf16 or f16",
            )),
        }
    }
}

impl DType {
    /// The lower-case spelling of the command line and of kernel names (`f32`, `bf16`,
    /// `f16`, `i64`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I64 => "i64",
        }
    }

    /// Whether the type holds floating-point values (everything but `I64`).
    pub fn is_float(self) -> bool {
        self != DType::I64
    }
}

/// `values` stored as the float type `dtype`, little-endian: F32 as is, BF16 rounded to
/// nearest even, F16 rounded to nearest even under [`f16_saturating`]. `None` for `I64`,
/// which holds no f32 values.
pub fn encode_f32(dtype: DType, values: &[f32]) -> Option<Vec<u8>> {
    Some(match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| f16_saturating(v).to_le_bytes())
            .collect(),
        DType::I64 => return None,
    })
}

/// Little-endian `bytes` of the float type `dtype` as f32 values (exact: every BF16 and F16
/// value is an f32). `None` for `I64`. A trailing partial element is ignored; callers check
/// the length against the shape first.
pub fn decode_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::I64 => return None,
    })
}

/// The largest finite fp16 value.
const F16_MAX: f32 = 65504.0;

/// `v` as fp16 under the project's one fp16 overflow policy (kernels/README.md, "fp16
/// overflow policy"): clamped to ±65504 before rounding, so a large weight or activation
/// (±inf included, as in the kernels' clamp) saturates instead of becoming ±inf; NaN stays
/// NaN; everything else rounds to nearest even, subnormals included. The file writer and the
/// device upload both use it, so a weight has the same fp16 value on disk and on the GPU.
pub fn f16_saturating(v: f32) -> half::f16 {
    half::f16::from_f32(v.clamp(-F16_MAX, F16_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_saturates_instead_of_overflowing() {
        let f = |v: f32| f16_saturating(v).to_f32();
        assert_eq!(f(65504.0), 65504.0);
        assert_eq!(f(65504.5), 65504.0);
        assert_eq!(f(65519.0), 65504.0); // would round up to inf without the clamp
        assert_eq!(f(1e6), 65504.0);
        assert_eq!(f(-1e6), -65504.0);
        assert_eq!(f(f32::INFINITY), 65504.0);
        assert_eq!(f(f32::NEG_INFINITY), -65504.0);
        assert!(f(f32::NAN).is_nan());
        assert_eq!(f(1.5), 1.5);
        assert_eq!(f(-0.0).to_bits(), (-0.0f32).to_bits());
        // fp16 subnormals round to nearest even; an f32 subnormal underflows to zero.
        let tiny = 2f32.powi(-24); // the smallest fp16 subnormal
        assert_eq!(f(tiny), tiny);
        assert_eq!(f(tiny / 2.0), 0.0); // a tie: rounds to the even zero
        assert_eq!(f(tiny * 1.5), tiny * 2.0); // a tie: rounds to the even 2·tiny
        assert_eq!(f(1e-40), 0.0);
    }

    #[test]
    fn the_codec_round_trips_every_float_type() {
        let values = [0.0f32, -1.5, 3.140625, 65504.0, 1e6, f32::NAN];
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let bytes = encode_f32(dtype, &values).expect("a float type");
            assert_eq!(bytes.len(), values.len() * dtype.size());
            let back = decode_f32(dtype, &bytes).expect("a float type");
            let again =
                decode_f32(dtype, &encode_f32(dtype, &back).expect("float")).expect("float");
            for (a, b) in back.iter().zip(&again) {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{dtype}"
                );
            }
        }
        assert_eq!(
            decode_f32(DType::F16, &encode_f32(DType::F16, &[1e6]).expect("f16")),
            Some(vec![65504.0])
        );
        assert!(encode_f32(DType::I64, &values).is_none());
    }
}
