//! `POST /v1/generate`: images for a class, as a PNG grid or a safetensors body — or, with
//! `"stream": true`, as server-sent events: one `step` event per finished denoising step,
//! so a client of a long generation sees it advance, then one `result` (the same bytes,
//! base64) or `error` (the same JSON body as the plain answer's). A server of a `sana`
//! model takes caption embeddings instead and answers latents
//! ([`super::generate_sana`]), with the same streaming.

use super::AppState;
use super::RequestId;
use super::body::read_body;
use super::error::ApiError;
use super::generate_sana::{SANA_FIELDS, decode_sana_generate_request, foreign_field};
use crate::engine::{
    EngineError, GenerateRequest, Generated, Generation, GenerationEvent, Outcome, Progress,
};
use crate::image::{default_columns, default_scale, png_grid_bytes};
use crate::sampling::ModelDescription;
use crate::sampling::SamplerKind;
use crate::tensor_file::serialize_tensors;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// Largest error body read back to be re-sent as an `error` event (ours are far smaller).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The request body. Every field is optional; defaults are the model's
/// ([`ModelDescription::default_sampling`]), as for `linear-dit sample`.
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
    /// Classifier-free guidance [[`crate::sampling::DEFAULT_GUIDANCE`] for class-conditional
    /// models, else 1].
    pub guidance_scale: Option<f32>,
    /// Noise seed [0].
    pub seed: Option<u64>,
    /// Images [1].
    pub num_images: Option<usize>,
    /// `png` | `safetensors` [png].
    pub format: Option<String>,
    /// Give up after this many milliseconds (HTTP 504).
    pub deadline_ms: Option<u64>,
    /// Answer with server-sent events: a `step` event per finished step, then `result` or
    /// `error` [false].
    pub stream: Option<bool>,
}

/// A decoded body: the engine request and how to deliver its answer.
struct Decoded {
    request: GenerateRequest,
    format: ResponseFormat,
    stream: bool,
}

/// Decodes a `/v1/generate` body into an engine request for the model `description`
/// describes; the request leaves the grid to the engine (the model's). Used by the handler
/// and by the fuzz target; every malformed body is an `Err` with the message for a 400.
pub fn decode_generate_request(
    body: &[u8],
    description: &ModelDescription,
) -> Result<(GenerateRequest, ResponseFormat), String> {
    decode(body, description).map(|d| (d.request, d.format))
}

/// [`decode_generate_request`], with the `stream` choice.
fn decode(body: &[u8], description: &ModelDescription) -> Result<Decoded, String> {
    let body: GenerateBody = serde_json::from_slice(body).map_err(|e| {
        foreign_field(body, &SANA_FIELDS, "sana", "a DiT")
            .unwrap_or_else(|| format!("malformed JSON body: {e}"))
    })?;
    let defaults = description.default_sampling();
    let sampler = match &body.sampler {
        Some(name) => SamplerKind::parse(name, body.eta),
        None => defaults.sampler.with_eta(body.eta),
    }
    .map_err(|e| e.to_string())?;
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
        Some(k) => Some(usize::try_from(k).map_err(|_| format!("class_label {k} is negative"))?),
    };
    let (steps, guidance) = (defaults.steps, defaults.guidance);
    let params = defaults
        .with_sampler(sampler)
        .with_steps(body.num_steps.unwrap_or(steps))
        .with_guidance(body.guidance_scale.unwrap_or(guidance));
    let request = GenerateRequest {
        class_label,
        num_images: body.num_images.unwrap_or(1),
        params,
        seed: body.seed.unwrap_or(0),
        grid: None,
        deadline: body.deadline_ms.map(Duration::from_millis),
    };
    Ok(Decoded {
        request,
        format,
        stream: body.stream.unwrap_or(false),
    })
}

/// What `/v1/generate` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// A PNG grid, as `linear-dit sample` writes it.
    Png,
    /// The images as a safetensors tensor `images [n, C, H, W]`.
    Safetensors,
}

/// How finished images become a response body.
#[derive(Debug, Clone, Copy)]
struct Encoding {
    format: ResponseFormat,
    /// PNG grid columns: the layout of `linear-dit sample`, so the bytes are identical for
    /// the same seed.
    columns: usize,
    /// The safetensors tensor's name: `images` (DiT) or `latents` (`sana`).
    tensor: &'static str,
}

impl Encoding {
    fn new(
        format: ResponseFormat,
        description: &ModelDescription,
        request: &GenerateRequest,
    ) -> Self {
        let cycled = description
            .num_classes()
            .filter(|_| request.class_label.is_none());
        Encoding {
            format,
            columns: default_columns(request.num_images, cycled),
            tensor: "images",
        }
    }

    /// A `sana` answer: `latents` as safetensors.
    fn latents() -> Self {
        Encoding {
            format: ResponseFormat::Safetensors,
            columns: 1,
            tensor: "latents",
        }
    }

    /// The body's content type and bytes.
    fn encode(&self, generated: &Generated) -> Result<(&'static str, Vec<u8>), ApiError> {
        let internal = |e: crate::Error| ApiError::from(EngineError::Failed(e.to_string()));
        match self.format {
            ResponseFormat::Png => {
                let scale = default_scale(generated.images.shape()[2]);
                let bytes =
                    png_grid_bytes(&generated.images, self.columns, scale).map_err(internal)?;
                Ok(("image/png", bytes))
            }
            ResponseFormat::Safetensors => {
                let images = [(self.tensor.to_string(), generated.images.to_raw())];
                let bytes = serialize_tensors(&images, HashMap::new()).map_err(internal)?;
                Ok(("application/octet-stream", bytes))
            }
        }
    }
}

pub async fn generate(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
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
    let (generation, encoding) = match (state.engine.description(), state.engine.sana_config()) {
        (Some(description), _) => {
            let Decoded {
                request,
                format,
                stream,
            } = decode(&body, description).map_err(invalid)?;
            let encoding = Encoding::new(format, description, &request);
            let generation = match stream {
                // Refusals (invalid, too large, queue full) are plain JSON answers, before
                // any event.
                true => Pending::Stream(state.engine.generate_with_progress(request)?),
                false => Pending::Plain(Box::pin(state.engine.generate(request))),
            };
            (generation, encoding)
        }
        (None, Some(config)) => {
            let (request, stream) = decode_sana_generate_request(&body, config).map_err(invalid)?;
            drop(body);
            let generation = match stream {
                true => Pending::Stream(state.engine.generate_sana_with_progress(request)?),
                false => Pending::Plain(Box::pin(state.engine.generate_sana(request))),
            };
            (generation, Encoding::latents())
        }
        (None, None) => {
            return Err(ApiError::from(EngineError::Failed(
                "the engine serves no model".into(),
            )));
        }
    };
    let generation = match generation {
        Pending::Stream(generation) => {
            let id = request_id
                .map(|Extension(RequestId(id))| id)
                .unwrap_or_default();
            let events = events(generation, encoding, id);
            // Comments every 15 s keep proxies from closing a connection whose request waits in
            // the queue, and let a departed client be noticed by the failed write.
            return Ok(Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response());
        }
        Pending::Plain(generation) => generation,
    };
    let generated = generation.await?;
    let (content_type, bytes) = encoding.encode(&generated)?;
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        bytes,
    )
        .into_response();
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
    for (name, value) in timing {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// An accepted request: streaming its steps, or a future of its answer.
enum Pending<'a> {
    Stream(Generation),
    Plain(std::pin::Pin<Box<dyn Future<Output = Result<Generated, EngineError>> + Send + 'a>>),
}

/// The server-sent events of a streaming request. The stream owns the [`Generation`]: when
/// the client goes away, hyper drops the stream, and with it the request, whose slot the
/// worker frees at the next step.
fn events(
    generation: Generation,
    encoding: Encoding,
    request_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Some(generation), move |generation| {
        let request_id = request_id.clone();
        async move {
            let mut generation = generation?;
            match generation.next().await? {
                GenerationEvent::Step(progress) => {
                    Some((Ok(step_event(progress)), Some(generation)))
                }
                GenerationEvent::Done(answer) => {
                    Some((Ok(final_event(answer, encoding, &request_id).await), None))
                }
            }
        }
    })
}

/// `event: step`, `{"step": k, "total": n, "elapsed_ms": …}`.
fn step_event(progress: Progress) -> Event {
    let data = json!({
        "step": progress.step,
        "total": progress.total,
        "elapsed_ms": progress.elapsed.as_millis() as u64,
    });
    Event::default().event("step").data(data.to_string())
}

/// `event: result` with the body base64-encoded, or `event: error` with the JSON body the
/// plain answer would have had.
async fn final_event(
    answer: Result<Generated, EngineError>,
    encoding: Encoding,
    request_id: &str,
) -> Event {
    let encoded = answer
        .map_err(ApiError::from)
        .and_then(|generated| Ok((encoding.encode(&generated)?, generated)));
    match encoded {
        Ok(((content_type, bytes), generated)) => {
            let data = json!({
                "format": match encoding.format {
                    ResponseFormat::Png => "png",
                    ResponseFormat::Safetensors => "safetensors",
                },
                "content_type": content_type,
                encoding.tensor: BASE64.encode(bytes),
                "steps": generated.steps,
                "queue_ms": generated.queued.as_millis() as u64,
                "elapsed_ms": generated.elapsed.as_millis() as u64,
            });
            Event::default().event("result").data(data.to_string())
        }
        Err(error) => Event::default()
            .event("error")
            .data(error_body(error, request_id).await.to_string()),
    }
}

/// The JSON body [`ApiError`] answers with, and the request id as the request tracking
/// adds it to every error response.
async fn error_body(error: ApiError, request_id: &str) -> Value {
    let body = error.into_response().into_body();
    let mut value = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .unwrap_or_else(|| json!({"error": {"code": "internal", "message": "unknown error"}}));
    if let Value::Object(object) = &mut value {
        object.insert("request_id".into(), Value::String(request_id.to_string()));
    }
    value
}
