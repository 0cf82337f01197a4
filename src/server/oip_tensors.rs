//! Open Inference Protocol tensors, whatever carried them (HTTP JSON `data`, HTTP binary
//! data, gRPC `raw_input_contents` or typed `contents`): the model's input specs (`x` FP32
//! `[B, N, D]`, `t` FP32 `[B]`, `y` INT64 `[B]`), shape checks, raw little-endian bytes ↔
//! values, and the assembly of the forward's inputs. One place, so that every transport
//! checks the same things in the same order and gives bit-identical values.
//!
//! Every size comes from the client: a shape's element count and byte count are computed with
//! checked arithmetic and compared with the bytes actually received before anything is
//! allocated, so an allocation is never larger than the (size-limited) request itself.

use crate::engine::{EngineHandle, SanaForward};
use crate::model::Config;
use crate::model::Grid;
use crate::model::sana::SanaConfig;
use crate::tensor::Tensor;

/// The model's output tensor.
pub const OUTPUT_NAME: &str = "eps";

/// The output tensor of a `sana` model: the velocity.
pub const SANA_OUTPUT_NAME: &str = "v";

/// Which inputs a forward takes: a DiT's `x [B, N, D]`, `t [B]`, `y [B]`, or a `sana`
/// model's `x [B, C, H, W]`, `t [B]`, `encoder_hidden_states [B, S, caption_channels]`,
/// optional `encoder_attention_mask [B, S]` (INT64 or FP32) and, for `guidance_embeds`
/// models, `guidance [B]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// A DiT.
    Dit,
    /// A `sana` model.
    Sana,
}

impl Schema {
    /// The schema of the model `engine` serves.
    pub fn of(engine: &EngineHandle) -> Self {
        match engine.sana_config() {
            Some(_) => Schema::Sana,
            None => Schema::Dit,
        }
    }

    /// The output's name.
    pub fn output_name(self) -> &'static str {
        match self {
            Schema::Dit => OUTPUT_NAME,
            Schema::Sana => SANA_OUTPUT_NAME,
        }
    }

    /// The inputs, for messages.
    fn expected(self) -> &'static str {
        match self {
            Schema::Dit => "x, t, y",
            Schema::Sana => "x, t, encoder_hidden_states, encoder_attention_mask, guidance",
        }
    }

    /// What input `name` must be (the mask's datatype is the one given, INT64 or FP32).
    fn spec(self, name: &str, datatype: &str) -> Result<InputSpec, String> {
        let spec = |datatype, rank| Ok(InputSpec { datatype, rank });
        match (self, name) {
            (Schema::Dit, "x") => spec(DataType::Fp32, 3),
            (Schema::Dit, "t") | (Schema::Sana, "t" | "guidance") => spec(DataType::Fp32, 1),
            (Schema::Dit, "y") => spec(DataType::Int64, 1),
            (Schema::Sana, "x") => spec(DataType::Fp32, 4),
            (Schema::Sana, "encoder_hidden_states") => spec(DataType::Fp32, 3),
            (Schema::Sana, "encoder_attention_mask") => match datatype {
                "INT64" => spec(DataType::Int64, 2),
                _ => spec(DataType::Fp32, 2),
            },
            (_, other) => Err(format!(
                "unknown input `{other}` (expected {})",
                self.expected()
            )),
        }
    }
}

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
        CheckedInput::new_for(Schema::Dit, name, datatype, shape)
    }

    /// [`Self::new`] for the inputs of `schema`.
    pub fn new_for(
        schema: Schema,
        name: &str,
        datatype: &str,
        shape: &[i64],
    ) -> Result<CheckedInput, String> {
        let spec = schema.spec(name, datatype)?;
        if name == "encoder_attention_mask" && !matches!(datatype, "INT64" | "FP32") {
            return Err(format!(
                "input `{name}` must be INT64 or FP32, got {datatype}"
            ));
        }
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

/// The decoded inputs of a `sana` infer request.
#[derive(Debug)]
pub struct SanaInferInputs {
    /// The request's `id`, echoed in the response.
    pub id: Option<String>,
    /// The forward.
    pub forward: SanaForward,
}

/// Collects checked `sana` inputs, each at most once, into [`SanaInferInputs`].
#[derive(Debug, Default)]
pub struct SanaInputSet {
    x: Option<Tensor>,
    t: Option<Vec<f32>>,
    captions: Option<Tensor>,
    /// The mask's shape and values (INT64 read as 0/1 floats).
    mask: Option<(Vec<usize>, Vec<f32>)>,
    guidance: Option<Vec<f32>>,
}

impl SanaInputSet {
    /// Adds one input's values (checked against its header here too).
    pub fn insert(&mut self, input: CheckedInput, values: Values) -> Result<(), String> {
        input.check_values(&values)?;
        let tensor = |data| Tensor::new(input.shape.clone(), data).map_err(|e| e.to_string());
        let duplicate = match (input.name.as_str(), values) {
            ("x", Values::Fp32(data)) => self.x.replace(tensor(data)?).is_some(),
            ("t", Values::Fp32(data)) => self.t.replace(data).is_some(),
            ("guidance", Values::Fp32(data)) => self.guidance.replace(data).is_some(),
            ("encoder_hidden_states", Values::Fp32(data)) => {
                self.captions.replace(tensor(data)?).is_some()
            }
            ("encoder_attention_mask", values) => {
                let data = match values {
                    Values::Fp32(v) => v,
                    // Exact for 0 and 1; any other value is refused by the forward's check.
                    Values::Int64(v) => v.into_iter().map(|v| v as f32).collect(),
                };
                self.mask.replace((input.shape.clone(), data)).is_some()
            }
            (name, _) => {
                return Err(format!(
                    "unknown input `{name}` (expected {})",
                    Schema::Sana.expected()
                ));
            }
        };
        if duplicate {
            return Err(format!("input `{}` is given more than once", input.name));
        }
        Ok(())
    }

    /// The forward's inputs; `x`, `t` and `encoder_hidden_states` are required, and the
    /// mask must have the captions' `[B, S]`.
    pub fn finish(self, id: Option<String>) -> Result<SanaInferInputs, String> {
        let x = self.x.ok_or("missing input `x` (FP32 [B, C, H, W])")?;
        let t = self.t.ok_or("missing input `t` (FP32 [B])")?;
        let captions = self
            .captions
            .ok_or("missing input `encoder_hidden_states` (FP32 [B, S, caption_channels])")?;
        let mask = match self.mask {
            None => None,
            Some((shape, data)) => {
                if shape.as_slice() != &captions.shape()[..2] {
                    return Err(format!(
                        "input `encoder_attention_mask` has shape {shape:?}; it must be [B, S] = {:?} like encoder_hidden_states",
                        &captions.shape()[..2]
                    ));
                }
                Some(data)
            }
        };
        Ok(SanaInferInputs {
            id,
            forward: SanaForward {
                x,
                t,
                captions,
                mask,
                guidance: self.guidance,
            },
        })
    }
}

/// Inputs being collected for the model's schema.
#[derive(Debug)]
pub enum Collector {
    /// A DiT's.
    Dit(InputSet),
    /// A `sana` model's.
    Sana(SanaInputSet),
}

/// A decoded infer request of either schema.
#[derive(Debug)]
pub enum ForwardRequest {
    /// A DiT forward.
    Dit(InferInputs),
    /// A `sana` forward.
    Sana(SanaInferInputs),
}

impl ForwardRequest {
    /// The request's `id`.
    pub fn id(&self) -> Option<&String> {
        match self {
            ForwardRequest::Dit(inputs) => inputs.id.as_ref(),
            ForwardRequest::Sana(inputs) => inputs.id.as_ref(),
        }
    }

    /// Runs the forward on `engine`; returns the request's id and the output.
    pub async fn run(
        self,
        engine: &EngineHandle,
    ) -> Result<(Option<String>, Tensor), crate::engine::EngineError> {
        match self {
            ForwardRequest::Dit(inputs) => {
                let out = engine
                    .forward(inputs.x, inputs.t, inputs.y, inputs.grid)
                    .await?;
                Ok((inputs.id, out))
            }
            ForwardRequest::Sana(inputs) => {
                Ok((inputs.id, engine.forward_sana(inputs.forward).await?))
            }
        }
    }
}

impl Collector {
    /// An empty collector for `schema`.
    pub fn new(schema: Schema) -> Self {
        match schema {
            Schema::Dit => Collector::Dit(InputSet::default()),
            Schema::Sana => Collector::Sana(SanaInputSet::default()),
        }
    }

    /// Adds one input's values.
    pub fn insert(&mut self, input: CheckedInput, values: Values) -> Result<(), String> {
        match self {
            Collector::Dit(set) => set.insert(input, values),
            Collector::Sana(set) => set.insert(input, values),
        }
    }

    /// The forward's inputs; the `grid` parameter belongs to DiT forwards only (a `sana`
    /// forward's latent size is `x`'s).
    pub fn finish(self, id: Option<String>, grid: Option<Grid>) -> Result<ForwardRequest, String> {
        match self {
            Collector::Dit(set) => set.finish(id, grid).map(ForwardRequest::Dit),
            Collector::Sana(_) if grid.is_some() => Err(
                "parameter `grid` is for DiT models; a sana forward's latent size is x's [B, C, H, W]"
                    .into(),
            ),
            Collector::Sana(set) => set.finish(id).map(ForwardRequest::Sana),
        }
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

/// The inputs of a `sana` model: `x [B, C, H, W]`, `t [B]`,
/// `encoder_hidden_states [B, S, caption_channels]`, `encoder_attention_mask [B, S]` (INT64
/// or FP32; optional: it says INT64, the pipelines' type) and, for `guidance_embeds` models,
/// `guidance [B]`.
pub fn sana_input_metadata(config: &SanaConfig) -> Vec<TensorMeta> {
    let size = |v: usize| i64::try_from(v).unwrap_or(-1);
    let mut inputs = vec![
        TensorMeta {
            name: "x",
            datatype: DataType::Fp32,
            shape: vec![-1, size(config.in_channels), -1, -1],
        },
        TensorMeta {
            name: "t",
            datatype: DataType::Fp32,
            shape: vec![-1],
        },
        TensorMeta {
            name: "encoder_hidden_states",
            datatype: DataType::Fp32,
            shape: vec![-1, -1, size(config.caption_channels)],
        },
        TensorMeta {
            name: "encoder_attention_mask",
            datatype: DataType::Int64,
            shape: vec![-1, -1],
        },
    ];
    if config.guidance_embeds {
        inputs.push(TensorMeta {
            name: "guidance",
            datatype: DataType::Fp32,
            shape: vec![-1],
        });
    }
    inputs
}

/// The inputs and output of the model `engine` serves.
pub fn model_tensors(engine: &EngineHandle) -> (Vec<TensorMeta>, TensorMeta) {
    match (engine.model_config(), engine.sana_config()) {
        (Some(config), _) => (input_metadata(config), output_metadata(config)),
        (None, Some(config)) => {
            let out_channels = config.out_channels.unwrap_or(config.in_channels);
            let output = TensorMeta {
                name: SANA_OUTPUT_NAME,
                datatype: DataType::Fp32,
                shape: vec![-1, i64::try_from(out_channels).unwrap_or(-1), -1, -1],
            };
            (sana_input_metadata(config), output)
        }
        (None, None) => (Vec::new(), output_metadata(&Config::new(1))),
    }
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
    check_output_name_for(Schema::Dit, name)
}

/// Checks a requested output's name against `schema`'s one output.
pub fn check_output_name_for(schema: Schema, name: &str) -> Result<(), String> {
    let output = schema.output_name();
    if name == output {
        Ok(())
    } else {
        Err(format!(
            "unknown output `{name}` (this model has `{output}`)"
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
