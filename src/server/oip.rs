//! Open Inference Protocol (KServe v2) REST endpoints for the raw forward: tensors `x`
//! (FP32 `[B, N, D]`), `t` (FP32 `[B]`) and, for class-conditional models, `y` (INT64 `[B]`)
//! in; `eps` (FP32 `[B, N, D]`) out. Errors follow the protocol: `{"error": "message"}`.

use super::ApiError;
use super::AppState;
use super::body::read_body;
use crate::engine::Outcome;
use crate::model::Grid;
use crate::tensor::Tensor;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// The model's name in the protocol.
pub const MODEL_NAME: &str = "linear-dit";

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
    Json(json!({"name": "linear-dit", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

pub async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    if model != MODEL_NAME {
        return unknown_model(&model);
    }
    let d = state.engine.model_config().input_dim as i64;
    let mut inputs = vec![
        json!({"name": "x", "datatype": "FP32", "shape": [-1, -1, d]}),
        json!({"name": "t", "datatype": "FP32", "shape": [-1]}),
    ];
    if state.engine.model_config().num_classes.is_some() {
        inputs.push(json!({"name": "y", "datatype": "INT64", "shape": [-1]}));
    }
    Json(json!({
        "name": MODEL_NAME,
        "versions": ["1"],
        "platform": "linear-dit",
        "inputs": inputs,
        "outputs": [{"name": "eps", "datatype": "FP32", "shape": [-1, -1, d]}],
    }))
    .into_response()
}

pub async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    match (model == MODEL_NAME, state.engine.is_ready()) {
        (false, _) => unknown_model(&model),
        (true, true) => StatusCode::OK.into_response(),
        (true, false) => oip_error(StatusCode::SERVICE_UNAVAILABLE, state.engine.unready_reason()),
    }
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: FlatNumbers,
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

/// Decodes an Open Inference Protocol infer body (JSON tensors `x`, `t`, `y` and the
/// optional `grid` parameter). Used by the handler and by the fuzz target; every malformed
/// body is an `Err` with the message for a 400. Shapes are checked against the data with
/// checked arithmetic; names, datatypes and ranks are checked; each input may appear once.
pub fn decode_infer_request(body: &[u8]) -> Result<InferInputs, String> {
    let request: InferRequest =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))?;
    let mut x = None;
    let mut t = None;
    let mut y = None;
    for input in &request.inputs {
        let name = input.name.as_str();
        let values = &input.data.0;
        let numel = crate::limits::checked_product(name, &input.shape).map_err(|e| e.to_string())?;
        if values.len() != numel {
            return Err(format!(
                "input `{name}`: shape {:?} holds {numel} values but data has {}",
                input.shape,
                values.len()
            ));
        }
        let expect = |datatype: &str, rank: usize| -> Result<(), String> {
            if input.datatype != datatype {
                return Err(format!(
                    "input `{name}` must be {datatype}, got {}",
                    input.datatype
                ));
            }
            if input.shape.len() != rank {
                return Err(format!(
                    "input `{name}` must have rank {rank}, got shape {:?}",
                    input.shape
                ));
            }
            Ok(())
        };
        let duplicate = match name {
            "x" => {
                expect("FP32", 3)?;
                let data = values.iter().map(fp32).collect::<Result<_, _>>()?;
                let tensor = Tensor::new(input.shape.clone(), data).map_err(|e| e.to_string())?;
                x.replace(tensor).is_some()
            }
            "t" => {
                expect("FP32", 1)?;
                t.replace(values.iter().map(fp32).collect::<Result<_, _>>()?)
                    .is_some()
            }
            "y" => {
                expect("INT64", 1)?;
                let labels = values
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .ok_or_else(|| format!("input `y`: {v} is not an INT64 integer"))
                    })
                    .collect::<Result<_, _>>()?;
                y.replace(labels).is_some()
            }
            other => return Err(format!("unknown input `{other}` (expected x, t, y)")),
        };
        if duplicate {
            return Err(format!("input `{name}` is given more than once"));
        }
    }
    let grid = match request.parameters.as_ref().and_then(|p| p.get("grid")) {
        Some(Value::String(text)) => Some(text.parse::<Grid>().map_err(|e| e.to_string())?),
        Some(other) => {
            return Err(format!(
                "parameter `grid` must be a \"ROWSxCOLS\" string, got {other}"
            ));
        }
        None => None,
    };
    Ok(InferInputs {
        id: request.id,
        x: x.ok_or("missing input `x` (FP32 [B, N, D])")?,
        t: t.ok_or("missing input `t` (FP32 [B])")?,
        y,
        grid,
    })
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
    let body = match read_body(&headers, body, &state.limits).await {
        Ok(body) => body,
        Err((status, message)) => {
            state.engine.metrics().record(Outcome::Invalid);
            return oip_error(status, message);
        }
    };
    let inputs = match decode_infer_request(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            state.engine.metrics().record(Outcome::Invalid);
            return oip_error(StatusCode::BAD_REQUEST, e);
        }
    };
    match state
        .engine
        .forward(inputs.x, inputs.t, inputs.y, inputs.grid)
        .await
    {
        Ok(eps) => Json(json!({
            "model_name": MODEL_NAME,
            "model_version": "1",
            "id": inputs.id,
            "outputs": [{"name": "eps", "datatype": "FP32", "shape": eps.shape(), "data": eps.data()}],
        }))
        .into_response(),
        Err(e) => {
            let api = ApiError::from(e);
            oip_error(api.status(), api.message())
        }
    }
}
