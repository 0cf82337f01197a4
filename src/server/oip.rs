//! Open Inference Protocol (KServe v2) REST endpoints for the raw forward: tensors `x`
//! (FP32 `[B, N, D]`), `t` (FP32 `[B]`) and, for class-conditional models, `y` (INT64 `[B]`)
//! in; `eps` (FP32 `[B, N, D]`) out. Errors follow the protocol: `{"error": "message"}`.

use super::ApiError;
use super::AppState;
use crate::model::Grid;
use crate::tensor::Tensor;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
        (true, false) => oip_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: Value,
}

/// Row-major values of a (flat or nested) JSON array.
fn flatten(value: &Value, out: &mut Vec<f64>) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        Value::Number(n) => n
            .as_f64()
            .map(|v| out.push(v))
            .ok_or_else(|| format!("{n} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

/// The decoded inputs of an infer request.
struct ForwardInputs {
    x: Tensor,
    t: Vec<f32>,
    y: Option<Vec<i64>>,
    grid: Option<Grid>,
}

fn parse_inputs(request: &InferRequest) -> Result<ForwardInputs, String> {
    let mut x = None;
    let mut t = None;
    let mut y = None;
    for input in &request.inputs {
        let mut values = Vec::new();
        flatten(&input.data, &mut values).map_err(|e| format!("input `{}`: {e}", input.name))?;
        let numel: usize = input.shape.iter().product();
        if values.len() != numel {
            return Err(format!(
                "input `{}`: shape {:?} holds {numel} values but data has {}",
                input.name,
                input.shape,
                values.len()
            ));
        }
        let expect = |datatype: &str| -> Result<(), String> {
            if input.datatype == datatype {
                Ok(())
            } else {
                Err(format!(
                    "input `{}` must be {datatype}, got {}",
                    input.name, input.datatype
                ))
            }
        };
        match input.name.as_str() {
            "x" => {
                expect("FP32")?;
                let data = values.iter().map(|&v| v as f32).collect();
                x = Some(Tensor::new(input.shape.clone(), data).map_err(|e| e.to_string())?);
            }
            "t" => {
                expect("FP32")?;
                t = Some(values.iter().map(|&v| v as f32).collect());
            }
            "y" => {
                expect("INT64")?;
                if values.iter().any(|v| v.fract() != 0.0) {
                    return Err("input `y` must hold integers".into());
                }
                y = Some(values.iter().map(|&v| v as i64).collect());
            }
            other => return Err(format!("unknown input `{other}` (expected x, t, y)")),
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
    Ok(ForwardInputs {
        x: x.ok_or("missing input `x` (FP32 [B, N, D])")?,
        t: t.ok_or("missing input `t` (FP32 [B])")?,
        y,
        grid,
    })
}

pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    if model != MODEL_NAME {
        return unknown_model(&model);
    }
    let request: InferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return oip_error(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")),
    };
    let inputs = match parse_inputs(&request) {
        Ok(parsed) => parsed,
        Err(e) => return oip_error(StatusCode::BAD_REQUEST, e),
    };
    match state.engine.forward(inputs.x, inputs.t, inputs.y, inputs.grid).await {
        Ok(eps) => Json(json!({
            "model_name": MODEL_NAME,
            "model_version": "1",
            "id": request.id,
            "outputs": [{"name": "eps", "datatype": "FP32", "shape": eps.shape(), "data": eps.data()}],
        }))
        .into_response(),
        Err(e) => {
            let api = ApiError::from(e);
            oip_error(api.status(), api.message())
        }
    }
}
