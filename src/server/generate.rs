//! `POST /v1/generate`: images for a class, as a PNG grid or a safetensors body.

use super::AppState;
use super::body::read_body;
use super::error::ApiError;
use crate::config::Config;
use crate::engine::{EngineError, GenerateRequest, Outcome};
use crate::image::{default_columns, default_scale, png_grid_bytes};
use crate::model::Grid;
use crate::sampling::{SamplerKind, SamplingParams, ScheduleKind};
use crate::tensor_file::serialize_tensors;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// The request body. Every field is optional; defaults match `linear-dit sample`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// Class to generate; omitted: cycle through the classes (class-conditional models).
    pub class_label: Option<i64>,
    /// Inference steps [20].
    pub num_steps: Option<usize>,
    /// `ddim` | `ddpm` | `dpmpp2m` [ddim].
    pub sampler: Option<String>,
    /// DDIM η [0].
    pub eta: Option<f64>,
    /// Classifier-free guidance [4 for class-conditional models, else 1].
    pub guidance_scale: Option<f32>,
    /// Noise seed [0].
    pub seed: Option<u64>,
    /// Images [1].
    pub num_images: Option<usize>,
    /// `png` | `safetensors` [png].
    pub format: Option<String>,
    /// Give up after this many milliseconds (HTTP 504).
    pub deadline_ms: Option<u64>,
}

/// Decodes a `/v1/generate` body into an engine request for a model of `config`, whose
/// images are of `grid` and whose training schedule is `schedule`. Used by the handler and
/// by the fuzz target; every malformed body is an `Err` with the message for a 400.
pub fn decode_generate_request(
    body: &[u8],
    config: &Config,
    schedule: ScheduleKind,
    grid: Grid,
) -> Result<(GenerateRequest, ResponseFormat), String> {
    let body: GenerateBody =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))?;
    let sampler = match body
        .sampler
        .as_deref()
        .unwrap_or("ddim")
        .parse::<SamplerKind>()?
    {
        SamplerKind::Ddim { .. } => SamplerKind::Ddim {
            eta: body.eta.unwrap_or(0.0),
        },
        _ if body.eta.is_some() => return Err("eta applies to the ddim sampler only".into()),
        other => other,
    };
    let format = match body.format.as_deref().unwrap_or("png") {
        "png" => ResponseFormat::Png,
        "safetensors" => ResponseFormat::Safetensors,
        other => {
            return Err(format!(
                "unknown format `{other}` (expected png or safetensors)"
            ));
        }
    };
    let class_label = match body.class_label {
        None => None,
        Some(k) => Some(
            usize::try_from(k).map_err(|_| format!("class_label {k} is negative"))?,
        ),
    };
    let params = SamplingParams {
        sampler,
        steps: body.num_steps.unwrap_or(20),
        guidance: body
            .guidance_scale
            .unwrap_or(if config.num_classes.is_some() {
                4.0
            } else {
                1.0
            }),
        schedule,
        ..SamplingParams::default()
    };
    let request = GenerateRequest {
        class_label,
        num_images: body.num_images.unwrap_or(1),
        params,
        seed: body.seed.unwrap_or(0),
        grid,
        deadline: body.deadline_ms.map(Duration::from_millis),
    };
    Ok((request, format))
}

/// What `/v1/generate` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// A PNG grid, as `linear-dit sample` writes it.
    Png,
    /// The images as a safetensors tensor `images [n, C, H, W]`.
    Safetensors,
}

pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Requests rejected here, before the engine sees them, still count as invalid.
    let invalid = |message: String| {
        state.engine.metrics().record(Outcome::Invalid);
        ApiError::bad_request(message)
    };
    let body = read_body(&headers, body, &state.limits)
        .await
        .map_err(|(status, message)| {
            state.engine.metrics().record(Outcome::Invalid);
            ApiError::new(status, message)
        })?;
    let config = state.engine.model_config();
    let (request, format) =
        decode_generate_request(&body, config, state.schedule, state.grid).map_err(invalid)?;
    let (num_images, class_label) = (request.num_images, request.class_label);
    let generated = state.engine.generate(request).await?;
    let timing = [
        (
            "x-linear-dit-queue-ms",
            generated.queued.as_millis().to_string(),
        ),
        (
            "x-linear-dit-elapsed-ms",
            generated.elapsed.as_millis().to_string(),
        ),
    ];
    let internal = |e: crate::Error| ApiError::from(EngineError::Failed(e.to_string()));
    let mut response = if format == ResponseFormat::Png {
        // The same layout as `linear-dit sample`, so the bytes are identical for the same seed.
        let cycled = config.num_classes.filter(|_| class_label.is_none());
        let columns = default_columns(num_images, cycled);
        let scale = default_scale(generated.images.shape()[2]);
        let bytes = png_grid_bytes(&generated.images, columns, scale).map_err(internal)?;
        (StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], bytes).into_response()
    } else {
        let images = [("images".to_string(), generated.images.to_raw())];
        let bytes = serialize_tensors(&images, HashMap::new()).map_err(internal)?;
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response()
    };
    for (name, value) in timing {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
