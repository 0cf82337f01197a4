//! Open Inference Protocol (KServe v2) REST endpoints for the raw forward: tensors `x`
//! (FP32 `[B, N, D]`), `t` (FP32 `[B]`) and, for class-conditional models, `y` (INT64 `[B]`)
//! in; `eps` (FP32 `[B, N, D]`) out. Errors follow the protocol: `{"error": "message"}`.
//!
//! Tensors travel as JSON `data` or, with the binary tensor data extension (the default of
//! Triton's clients), as raw little-endian bytes after the JSON header: the request header
//! `Inference-Header-Content-Length` gives the JSON's length and each binary input its
//! `parameters.binary_data_size`; `binary_data` (per requested output) or
//! `binary_data_output` (per request) asks for `eps` the same way. Both decode through
//! [`super::oip_tensors`], so JSON and binary give the same bits.

use super::ApiError;
use super::AppState;
use super::body::read_body;
use super::oip_tensors::{
    CheckedInput, Collector, DataType, ForwardRequest, InferInputs, Schema, TensorMeta, Values,
    check_output_name_for, encode_fp32, model_tensors, parse_grid, refuse_unsupported,
};
use crate::engine::Outcome;
use crate::tensor::Tensor;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// The model's name in the protocol.
pub const MODEL_NAME: &str = "linear-dit";

/// The protocol extensions this server offers (`GET /v2`, gRPC `ServerMetadata`).
pub const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

fn oip_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn unknown_model(name: &str) -> Response {
    oip_error(
        StatusCode::NOT_FOUND,
        format!("unknown model `{name}`; this server serves `{MODEL_NAME}`"),
    )
}

pub async fn server_metadata() -> impl IntoResponse {
    Json(
        json!({"name": "linear-dit", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}),
    )
}

pub async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    if model != MODEL_NAME {
        return unknown_model(&model);
    }
    let (inputs, output) = model_tensors(&state.engine);
    let describe =
        |t: TensorMeta| json!({"name": t.name, "datatype": t.datatype.name(), "shape": t.shape});
    let inputs: Vec<Value> = inputs.into_iter().map(describe).collect();
    Json(json!({
        "name": MODEL_NAME,
        "versions": ["1"],
        "platform": "linear-dit",
        "inputs": inputs,
        "outputs": [describe(output)],
    }))
    .into_response()
}

pub async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    match (model == MODEL_NAME, state.engine.is_ready()) {
        (false, _) => unknown_model(&model),
        (true, true) => StatusCode::OK.into_response(),
        (true, false) => oip_error(
            StatusCode::SERVICE_UNAVAILABLE,
            state.engine.unready_reason(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

type Parameters = serde_json::Map<String, Value>;

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    /// Absent when the input's elements follow the JSON header as binary data.
    #[serde(default)]
    data: Option<FlatNumbers>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}
/// The row-major numbers of a (flat or nested) JSON array, kept as JSON numbers so that
/// INT64 values stay exact (an f64 would round 9007199254740993).
#[derive(Debug, Default)]
struct FlatNumbers(Vec<serde_json::Number>);

impl<'de> Deserialize<'de> for FlatNumbers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = FlatNumbers::default();
        deserializer.deserialize_any(FlatVisitor(&mut out.0))?;
        Ok(out)
    }
}

struct FlatVisitor<'a>(&'a mut Vec<serde_json::Number>);

impl<'de> serde::de::Visitor<'de> for FlatVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number or a (nested) array of numbers")
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(v.into());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(v.into());
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        let number = serde_json::Number::from_f64(v)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))?;
        self.0.push(number);
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlatSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct FlatSeed<'a>(&'a mut Vec<serde_json::Number>);

impl<'de> serde::de::DeserializeSeed<'de> for FlatSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(FlatVisitor(self.0))
    }
}

/// The request header that says how many leading body bytes are the JSON header (the binary
/// tensor data extension); the rest of the body is the inputs' raw bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A decoded infer body: the forward's inputs and how to answer.
#[derive(Debug)]
pub struct DecodedInfer {
    /// The inputs.
    pub inputs: InferInputs,
    /// Answer `eps` as binary data after a JSON header (`binary_data` of the requested output,
    /// else the request's `binary_data_output`), not as JSON `data`.
    pub binary_output: bool,
}

/// Decodes an Open Inference Protocol infer body of JSON tensors `x`, `t`, `y` and the
/// optional `grid` parameter. Used by the fuzz target; every malformed body is an `Err` with
/// the message for a 400. See [`decode_infer_body`].
pub fn decode_infer_request(body: &[u8]) -> Result<InferInputs, String> {
    decode_infer_body(body, None).map(|decoded| decoded.inputs)
}

/// Decodes an infer body. With `header_length` (the `Inference-Header-Content-Length`
/// header, in bytes), the body is that many bytes of JSON followed by the raw little-endian
/// bytes of every input that has `parameters.binary_data_size`, in input order; without it,
/// the whole body is JSON. Every size is checked before it is used: the header length
/// against the body, each input's shape (checked product) and its byte count against its
/// `binary_data_size` and against the bytes left, and no byte may be left over. Names,
/// datatypes and ranks are checked; each input may appear once.
pub fn decode_infer_body(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<DecodedInfer, String> {
    let decoded = decode_infer_body_for(Schema::Dit, body, header_length)?;
    match decoded.inputs {
        ForwardRequest::Dit(inputs) => Ok(DecodedInfer {
            inputs,
            binary_output: decoded.binary_output,
        }),
        ForwardRequest::Sana(_) => Err("a DiT body decoded as a sana forward".into()),
    }
}

/// A decoded infer body of either schema.
#[derive(Debug)]
pub struct DecodedForward {
    /// The forward.
    pub inputs: ForwardRequest,
    /// Answer the output as binary data (see [`DecodedInfer::binary_output`]).
    pub binary_output: bool,
}

/// [`decode_infer_body`] for the inputs of `schema`: the same checks, in the same order.
pub fn decode_infer_body_for(
    schema: Schema,
    body: &[u8],
    header_length: Option<usize>,
) -> Result<DecodedForward, String> {
    let (header, mut binary) = match header_length {
        None => (body, &[][..]),
        Some(n) if n > body.len() => {
            return Err(format!(
                "the Inference-Header-Content-Length header says {n} bytes of JSON, but the body has only {}",
                body.len()
            ));
        }
        Some(n) => body.split_at(n),
    };
    let request: InferRequest =
        serde_json::from_slice(header).map_err(|e| format!("malformed JSON body: {e}"))?;
    let mut inputs = Collector::new(schema);
    for input in request.inputs {
        let checked = CheckedInput::new_for(schema, &input.name, &input.datatype, &input.shape)?;
        let name = checked.name.as_str();
        let parameters = input.parameters.unwrap_or_default();
        refuse_unsupported(parameters.keys().map(String::as_str), "input", name)?;
        let values = match (input.data, parameters.get("binary_data_size")) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "input `{name}` has both `data` and `parameters.binary_data_size`"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "input `{name}` has neither `data` nor `parameters.binary_data_size`"
                ));
            }
            (Some(data), None) => json_values(&checked, &data.0)?,
            (None, Some(size)) => {
                let size = size.as_u64().ok_or_else(|| {
                    format!("input `{name}`: binary_data_size must be a byte count, got {size}")
                })?;
                let expected = checked.byte_len()?;
                if size != expected as u64 {
                    return Err(format!(
                        "input `{name}`: binary_data_size is {size} but shape {:?} of {} needs {expected} bytes",
                        checked.shape,
                        checked.spec.datatype.name()
                    ));
                }
                if expected > binary.len() {
                    return Err(format!(
                        "input `{name}`: binary_data_size {expected} runs past the end of the body ({} binary bytes left)",
                        binary.len()
                    ));
                }
                let (bytes, rest) = binary.split_at(expected);
                binary = rest;
                checked.decode_raw(bytes)?
            }
        };
        inputs.insert(checked, values)?;
    }
    if !binary.is_empty() {
        return Err(format!(
            "{} bytes after the JSON header belong to no input's binary_data_size",
            binary.len()
        ));
    }
    let parameters = request.parameters.unwrap_or_default();
    let grid = match parameters.get("grid") {
        Some(Value::String(text)) => Some(parse_grid(text)?),
        Some(other) => {
            return Err(format!(
                "parameter `grid` must be a \"ROWSxCOLS\" string, got {other}"
            ));
        }
        None => None,
    };
    let mut binary_output = bool_parameter(&parameters, "binary_data_output")?.unwrap_or(false);
    for output in request.outputs.unwrap_or_default() {
        check_output_name_for(schema, &output.name)?;
        let parameters = output.parameters.unwrap_or_default();
        refuse_unsupported(
            parameters.keys().map(String::as_str),
            "output",
            schema.output_name(),
        )?;
        if let Some(binary) = bool_parameter(&parameters, "binary_data")? {
            binary_output = binary;
        }
    }
    Ok(DecodedForward {
        inputs: inputs.finish(request.id, grid)?,
        binary_output,
    })
}

/// A JSON input's numbers as values of its datatype, after checking their count.
fn json_values(input: &CheckedInput, numbers: &[serde_json::Number]) -> Result<Values, String> {
    let name = &input.name;
    if numbers.len() != input.numel {
        return Err(format!(
            "input `{name}`: shape {:?} holds {} values but data has {}",
            input.shape,
            input.numel,
            numbers.len()
        ));
    }
    Ok(match input.spec.datatype {
        DataType::Fp32 => Values::Fp32(numbers.iter().map(fp32).collect::<Result<_, _>>()?),
        DataType::Int64 => Values::Int64(
            numbers
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| format!("input `{name}`: {v} is not an INT64 integer"))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A boolean parameter, if given.
fn bool_parameter(parameters: &Parameters, key: &str) -> Result<Option<bool>, String> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!(
            "parameter `{key}` must be true or false, got {other}"
        )),
    }
}

/// A JSON number as FP32; an error when it does not fit (finite f32 range).
fn fp32(value: &serde_json::Number) -> Result<f32, String> {
    let v = value
        .as_f64()
        .ok_or_else(|| format!("{value} is not a number"))?;
    let narrowed = v as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(format!("{value} does not fit FP32"))
    }
}

pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if model != MODEL_NAME {
        return unknown_model(&model);
    }
    let invalid = |status: StatusCode, message: String| {
        state.engine.metrics().record(Outcome::Invalid);
        oip_error(status, message)
    };
    let header_length = match header_length(&headers) {
        Ok(n) => n,
        Err(e) => return invalid(StatusCode::BAD_REQUEST, e),
    };
    let body = match read_body(&headers, body, &state.limits).await {
        Ok(body) => body,
        Err((status, message)) => return invalid(status, message),
    };
    let schema = Schema::of(&state.engine);
    let decoded = match decode_infer_body_for(schema, &body, header_length) {
        Ok(decoded) => decoded,
        Err(e) => return invalid(StatusCode::BAD_REQUEST, e),
    };
    // The request's bytes are no longer needed while the forward waits and runs.
    drop(body);
    let output = schema.output_name();
    match decoded.inputs.run(&state.engine).await {
        Ok((id, eps)) if decoded.binary_output => binary_answer(id, output, &eps),
        Ok((id, eps)) => Json(json!({
            "model_name": MODEL_NAME,
            "model_version": "1",
            "id": id,
            "outputs": [{"name": output, "datatype": "FP32", "shape": eps.shape(), "data": eps.data()}],
        }))
        .into_response(),
        Err(e) => {
            let api = ApiError::from(e);
            oip_error(api.status(), api.message())
        }
    }
}

/// The `Inference-Header-Content-Length` request header, if present.
fn header_length(headers: &HeaderMap) -> Result<Option<usize>, String> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "the Inference-Header-Content-Length header {:?} is not a byte count",
                String::from_utf8_lossy(value.as_bytes())
            )
        })
}

/// `eps` as the binary tensor data extension answers it: a JSON header whose length is in
/// the `Inference-Header-Content-Length` response header, then the raw little-endian FP32
/// bytes, their count in the output's `parameters.binary_data_size`.
fn binary_answer(id: Option<String>, output: &str, eps: &Tensor) -> Response {
    let raw = encode_fp32(eps.data());
    let header = json!({
        "model_name": MODEL_NAME,
        "model_version": "1",
        "id": id,
        "outputs": [{
            "name": output,
            "datatype": "FP32",
            "shape": eps.shape(),
            "parameters": {"binary_data_size": raw.len()},
        }],
    });
    let mut body = header.to_string().into_bytes();
    let header_length = body.len();
    body.extend_from_slice(&raw);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                header_length.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}
