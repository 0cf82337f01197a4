//! ModelInfer's tensors: a request's inputs, from `raw_input_contents` (one little-endian
//! byte string per input, in input order) or from typed `contents`, decoded and checked by
//! [`crate::server::oip_tensors`] exactly as the HTTP endpoint does; and the answer's `eps`
//! in `raw_output_contents`, which is where Triton's clients read it.

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::server::oip::MODEL_NAME;
use crate::server::oip_tensors::{
    CheckedInput, Collector, DataType, ForwardRequest, InferInputs, Schema, Values,
    check_output_name_for, encode_fp32, parse_grid, refuse_unsupported, shape_i64,
};
use crate::tensor::Tensor;

/// Decodes a ModelInferRequest's inputs and the `grid` parameter (the model name is checked
/// by the caller). Every malformed request is an `Err` with the message for an
/// INVALID_ARGUMENT: raw contents must be given for every input or for none, each exactly
/// as long as its shape and datatype say (checked before decoding); typed contents must be
/// in the field of the input's datatype.
pub fn decode_model_infer(request: ModelInferRequest) -> Result<InferInputs, String> {
    match decode_model_infer_for(Schema::Dit, request)? {
        ForwardRequest::Dit(inputs) => Ok(inputs),
        ForwardRequest::Sana(_) => Err("a DiT request decoded as a sana forward".into()),
    }
}

/// [`decode_model_infer`] for the inputs of `schema` (a `sana` model's too).
pub fn decode_model_infer_for(
    schema: Schema,
    request: ModelInferRequest,
) -> Result<ForwardRequest, String> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in input order",
            raw.len(),
            request.inputs.len()
        ));
    }
    let mut inputs = Collector::new(schema);
    for (i, input) in request.inputs.into_iter().enumerate() {
        let checked = CheckedInput::new_for(schema, &input.name, &input.datatype, &input.shape)?;
        refuse_unsupported(
            input.parameters.keys().map(String::as_str),
            "input",
            &checked.name,
        )?;
        let values = match (raw.get(i), input.contents) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "input `{}` has typed contents beside raw_input_contents; use one or the other",
                    checked.name
                ));
            }
            (Some(bytes), None) => checked.decode_raw(bytes)?,
            (None, Some(contents)) => typed_values(&checked, contents)?,
            (None, None) => {
                return Err(format!(
                    "input `{}` has no contents (typed contents or raw_input_contents)",
                    checked.name
                ));
            }
        };
        inputs.insert(checked, values)?;
    }
    for output in &request.outputs {
        check_output_name_for(schema, &output.name)?;
        refuse_unsupported(
            output.parameters.keys().map(String::as_str),
            "output",
            schema.output_name(),
        )?;
    }
    let grid = match request
        .parameters
        .get("grid")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        Some(ParameterChoice::StringParam(text)) => Some(parse_grid(text)?),
        Some(other) => {
            return Err(format!(
                "parameter `grid` must be a \"ROWSxCOLS\" string, got {other:?}"
            ));
        }
        None => None,
    };
    let id = Some(request.id).filter(|id| !id.is_empty());
    inputs.finish(id, grid)
}

/// An input's typed contents: the field of its datatype, every other field empty.
fn typed_values(input: &CheckedInput, contents: InferTensorContents) -> Result<Values, String> {
    let others_empty = |fp32: bool, int64: bool| {
        contents.bool_contents.is_empty()
            && contents.int_contents.is_empty()
            && (int64 || contents.int64_contents.is_empty())
            && contents.uint_contents.is_empty()
            && contents.uint64_contents.is_empty()
            && (fp32 || contents.fp32_contents.is_empty())
            && contents.fp64_contents.is_empty()
            && contents.bytes_contents.is_empty()
    };
    let expected = input.spec.datatype;
    let consistent = match expected {
        DataType::Fp32 => others_empty(true, false),
        DataType::Int64 => others_empty(false, true),
    };
    if !consistent {
        return Err(format!(
            "input `{}` is {} but its contents fill another type's field (use {})",
            input.name,
            expected.name(),
            match expected {
                DataType::Fp32 => "fp32_contents",
                DataType::Int64 => "int64_contents",
            }
        ));
    }
    Ok(match expected {
        DataType::Fp32 => Values::Fp32(contents.fp32_contents),
        DataType::Int64 => Values::Int64(contents.int64_contents),
    })
}

/// The answer: the output (`eps`, or a `sana` model's `v`) described in `outputs` and its
/// bytes in `raw_output_contents`.
pub fn model_infer_response(id: Option<String>, output: &str, eps: &Tensor) -> ModelInferResponse {
    ModelInferResponse {
        model_name: MODEL_NAME.to_string(),
        model_version: "1".to_string(),
        id: id.unwrap_or_default(),
        parameters: Default::default(),
        outputs: vec![InferOutputTensor {
            name: output.to_string(),
            datatype: DataType::Fp32.name().to_string(),
            shape: shape_i64(eps.shape()),
            parameters: Default::default(),
            contents: None,
        }],
        raw_output_contents: vec![encode_fp32(eps.data())],
    }
}
