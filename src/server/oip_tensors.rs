//! Open Inference Protocol tensors, whatever carried them (HTTP JSON `data`, HTTP binary
//! data, gRPC `raw_input_contents` or typed `contents`): the model's input specs (`x` FP32
//! `[B, N, D]`, `t` FP32 `[B]`, `y` INT64 `[B]`), shape checks, raw little-endian bytes ↔
//! values, and the assembly of the forward's inputs. One place, so that every transport
//! checks the same things in the same order and gives bit-identical values.
//!
//! Every size comes from the client: a shape's element count and byte count are computed with
//! checked arithmetic and compared with the bytes actually received before anything is
//! allocated, so an allocation is never larger than the (size-limited) request itself.

use crate::model::Config;
use crate::model::Grid;
use crate::tensor::Tensor;

/// The model's output tensor.
pub const OUTPUT_NAME: &str = "eps";

/// The element types this model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// IEEE 754 binary32.
    Fp32,
    /// Two's-complement 64-bit integer.
    Int64,
}

impl DataType {
    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Fp32 => "FP32",
            DataType::Int64 => "INT64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DataType::Fp32 => 4,
            DataType::Int64 => 8,
        }
    }
}

/// What an input must be: its datatype and rank.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    /// The element type.
    pub datatype: DataType,
    /// The number of dimensions.
    pub rank: usize,
}

/// A checked input header: the input's name, shape, spec and element count.
#[derive(Debug, Clone)]
pub struct CheckedInput {
    /// `x`, `t` or `y`.
    pub name: String,
    /// The dimensions, each a size.
    pub shape: Vec<usize>,
    /// Its datatype and rank.
    pub spec: InputSpec,
    /// The product of `shape`, checked not to wrap.
    pub numel: usize,
}

impl CheckedInput {
    /// Checks an input's header (name, datatype, rank, shape) before any of its data is
    /// looked at. Dimensions come as the protocol's signed integers; a negative one is an
    /// error, and so is a shape whose product wraps 64 bits.
    pub fn new(name: &str, datatype: &str, shape: &[i64]) -> Result<CheckedInput, String> {
        let spec = match name {
            "x" => InputSpec {
                datatype: DataType::Fp32,
                rank: 3,
            },
            "t" => InputSpec {
                datatype: DataType::Fp32,
                rank: 1,
            },
            "y" => InputSpec {
                datatype: DataType::Int64,
                rank: 1,
            },
            other => return Err(format!("unknown input `{other}` (expected x, t, y)")),
        };
        if datatype != spec.datatype.name() {
            let hint = match datatype {
                "FP16" | "BF16" => "; half-precision inputs are not converted, send FP32",
                _ => "",
            };
            return Err(format!(
                "input `{name}` must be {}, got {datatype}{hint}",
                spec.datatype.name()
            ));
        }
        if shape.len() != spec.rank {
            return Err(format!(
                "input `{name}` must have rank {}, got shape {shape:?}",
                spec.rank
            ));
        }
        let shape = shape
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| format!("input `{name}`: shape {shape:?} has a negative size"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        let numel = crate::limits::checked_product(name, &shape).map_err(|e| e.to_string())?;
        Ok(CheckedInput {
            name: name.to_string(),
            shape,
            spec,
            numel,
        })
    }

    /// The byte count of the input's raw contents, checked not to wrap.
    pub fn byte_len(&self) -> Result<usize, String> {
        self.numel
            .checked_mul(self.spec.datatype.size())
            .ok_or_else(|| {
                format!(
                    "input `{}`: shape {:?} of {} needs more than 2^64 bytes",
                    self.name,
                    self.shape,
                    self.spec.datatype.name()
                )
            })
    }

    /// Decodes the input's raw little-endian contents, after checking that there are exactly
    /// as many bytes as its shape and datatype say (so nothing larger than `bytes` is
    /// allocated).
    pub fn decode_raw(&self, bytes: &[u8]) -> Result<Values, String> {
        let expected = self.byte_len()?;
        if bytes.len() != expected {
            return Err(format!(
                "input `{}`: shape {:?} of {} needs {expected} bytes, got {}",
                self.name,
                self.shape,
                self.spec.datatype.name(),
                bytes.len()
            ));
        }
        Ok(match self.spec.datatype {
            DataType::Fp32 => Values::Fp32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::Int64 => Values::Int64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
        })
    }

    /// Checks that decoded values match the input's datatype and element count.
    pub fn check_values(&self, values: &Values) -> Result<(), String> {
        let (datatype, len) = match values {
            Values::Fp32(v) => (DataType::Fp32, v.len()),
            Values::Int64(v) => (DataType::Int64, v.len()),
        };
        if datatype != self.spec.datatype {
            return Err(format!(
                "input `{}` is {} but its contents are {}",
                self.name,
                self.spec.datatype.name(),
                datatype.name()
            ));
        }
        if len != self.numel {
            return Err(format!(
                "input `{}`: shape {:?} holds {} values but data has {len}",
                self.name, self.shape, self.numel
            ));
        }
        Ok(())
    }
}

/// An input's elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// FP32 elements.
    Fp32(Vec<f32>),
    /// INT64 elements.
    Int64(Vec<i64>),
}

/// The decoded inputs of an infer request.
#[derive(Debug)]
pub struct InferInputs {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// `x [B, N, D]`.
    pub x: Tensor,
    /// `t [B]`.
    pub t: Vec<f32>,
    /// `y [B]` (class-conditional models).
    pub y: Option<Vec<i64>>,
    /// The `grid` parameter (`"ROWSxCOLS"`).
    pub grid: Option<Grid>,
}

/// Collects checked inputs, each at most once, into [`InferInputs`].
#[derive(Debug, Default)]
pub struct InputSet {
    x: Option<Tensor>,
    t: Option<Vec<f32>>,
    y: Option<Vec<i64>>,
}

impl InputSet {
    /// Adds one input's values (checked against its header here too).
    pub fn insert(&mut self, input: CheckedInput, values: Values) -> Result<(), String> {
        input.check_values(&values)?;
        let duplicate = match (input.name.as_str(), values) {
            ("x", Values::Fp32(data)) => {
                let tensor = Tensor::new(input.shape, data).map_err(|e| e.to_string())?;
                self.x.replace(tensor).is_some()
            }
            ("t", Values::Fp32(data)) => self.t.replace(data).is_some(),
            ("y", Values::Int64(data)) => self.y.replace(data).is_some(),
            // `CheckedInput::new` admits only the three names, each with its datatype.
            (name, _) => return Err(format!("unknown input `{name}` (expected x, t, y)")),
        };
        if duplicate {
            return Err(format!("input `{}` is given more than once", input.name));
        }
        Ok(())
    }

    /// The forward's inputs; `x` and `t` are required.
    pub fn finish(self, id: Option<String>, grid: Option<Grid>) -> Result<InferInputs, String> {
        Ok(InferInputs {
            id,
            x: self.x.ok_or("missing input `x` (FP32 [B, N, D])")?,
            t: self.t.ok_or("missing input `t` (FP32 [B])")?,
            y: self.y,
            grid,
        })
    }
}

/// A tensor as model metadata describes it.
#[derive(Debug, Clone)]
pub struct TensorMeta {
    /// The tensor's name.
    pub name: &'static str,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape; -1 marks a size the request chooses.
    pub shape: Vec<i64>,
}

/// The model's inputs: `x [B, N, D]`, `t [B]` and, for class-conditional models, `y [B]`.
pub fn input_metadata(config: &Config) -> Vec<TensorMeta> {
    let d = i64::try_from(config.input_dim).unwrap_or(-1);
    let mut inputs = vec![
        TensorMeta {
            name: "x",
            datatype: DataType::Fp32,
            shape: vec![-1, -1, d],
        },
        TensorMeta {
            name: "t",
            datatype: DataType::Fp32,
            shape: vec![-1],
        },
    ];
    if config.num_classes.is_some() {
        inputs.push(TensorMeta {
            name: "y",
            datatype: DataType::Int64,
            shape: vec![-1],
        });
    }
    inputs
}

/// The model's output: `eps [B, N, D]`.
pub fn output_metadata(config: &Config) -> TensorMeta {
    TensorMeta {
        name: OUTPUT_NAME,
        datatype: DataType::Fp32,
        shape: vec![-1, -1, i64::try_from(config.input_dim).unwrap_or(-1)],
    }
}

/// Refuses the parameters of extensions this server does not offer (shared memory,
/// classification), given a tensor's parameter names; `kind` is `input` or `output`.
pub fn refuse_unsupported<'a>(
    mut keys: impl Iterator<Item = &'a str>,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    match keys.find(|k| k.starts_with("shared_memory_") || *k == "classification") {
        Some(key) => Err(format!(
            "{kind} `{name}`: parameter `{key}` belongs to an extension this server does not offer (GET /v2 lists those it does)"
        )),
        None => Ok(()),
    }
}

/// Checks a requested output's name: this model has only `eps`.
pub fn check_output_name(name: &str) -> Result<(), String> {
    if name == OUTPUT_NAME {
        Ok(())
    } else {
        Err(format!(
            "unknown output `{name}` (this model has `{OUTPUT_NAME}`)"
        ))
    }
}

/// Parses the `grid` parameter (`"ROWSxCOLS"`).
pub fn parse_grid(text: &str) -> Result<Grid, String> {
    text.parse::<Grid>().map_err(|e| e.to_string())
}

/// The output `eps` as raw little-endian FP32 bytes.
pub fn encode_fp32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A shape as the protocol's signed integers (sizes of real tensors always fit).
pub fn shape_i64(shape: &[usize]) -> Vec<i64> {
    shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_round_trip_bit_for_bit() {
        let values = [0.1f32, -0.0, f32::MIN_POSITIVE, 1e-45, 3.4e38];
        let input = CheckedInput::new("t", "FP32", &[5]).unwrap();
        let Values::Fp32(back) = input.decode_raw(&encode_fp32(&values)).unwrap() else {
            panic!("FP32 expected");
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
    }

    #[test]
    fn sizes_are_checked_before_decoding() {
        let wrap = CheckedInput::new("x", "FP32", &[1, 4611686018427387905, 4]).unwrap_err();
        assert!(wrap.contains("2^64"), "{wrap}");
        // The element count fits, the byte count does not.
        let input = CheckedInput::new("x", "FP32", &[1, 1 << 31, 1 << 31]).unwrap();
        assert!(input.byte_len().unwrap_err().contains("2^64"));
        let negative = CheckedInput::new("t", "FP32", &[-1]).unwrap_err();
        assert!(negative.contains("negative"), "{negative}");
        let short = CheckedInput::new("y", "INT64", &[2]).unwrap();
        let err = short.decode_raw(&[0; 12]).unwrap_err();
        assert!(err.contains("needs 16 bytes, got 12"), "{err}");
        let half = CheckedInput::new("x", "FP16", &[1, 1, 1]).unwrap_err();
        assert!(half.contains("FP32"), "{half}");
    }
}
