//! What every response goes through, whatever produced it (a handler, a rejected extractor,
//! the router's 404 or 405): the `x-request-id` (the client's, echoed, or a fresh one) in a
//! header, in the request's tracing span and in the body of every error; a count by route
//! and status in `/metrics`; a structured JSON body for every error (`/v1` style
//! `{"error": {"code", "message"}}`, Open Inference Protocol style `{"error": "message"}`
//! under `/v2`); and `Retry-After` on 429.

use super::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

/// The request id header, read and written.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest client request id echoed; a longer (or non-printable) one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Seconds a client told 429 should wait before retrying: about one denoising request.
const RETRY_AFTER_SECONDS: &str = "1";

/// Error bodies larger than this are passed through as they are (ours are far smaller).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The request's id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn track(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let id = request_id_of(request.headers());
    let route = route_label(request.uri().path());
    let method = request.method().clone();
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("http", request_id = %id, %method, route);
    let start = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    state.engine.metrics().record_http(route, status.as_u16());
    span.in_scope(|| {
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "answered");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "answered");
        }
    });
    if status.is_client_error() || status.is_server_error() {
        response = structured_error(response, &id, route.starts_with("/v2")).await;
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The request id of a request (HTTP or gRPC) with `headers`: the client's `x-request-id`
/// when it is short and printable, else a fresh one.
pub(crate) fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN)
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(fresh_id, str::to_string)
}

/// A process-unique id: the process start time and a counter.
fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    format!("{epoch:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The route a path belongs to, for metrics labels (a bounded set, whatever the paths).
fn route_label(path: &str) -> &'static str {
    const FIXED: [&str; 7] = [
        "/v1/generate",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    ];
    if let Some(route) = FIXED.iter().find(|r| **r == path) {
        return route;
    }
    match path
        .strip_prefix("/v2/models/")
        .map(|rest| rest.split('/').count())
    {
        Some(1) => "/v2/models/{model}",
        Some(2) if path.ends_with("/ready") => "/v2/models/{model}/ready",
        Some(2) if path.ends_with("/infer") => "/v2/models/{model}/infer",
        _ => "unmatched",
    }
}

/// The error code of a status whose body did not come from our handlers.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// Rewrites an error response's body as structured JSON that carries the request id.
async fn structured_error(response: Response, id: &str, oip: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let mut value = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => {
            let message = if text.is_empty() {
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_string()
            } else {
                text
            };
            if oip {
                json!({ "error": message })
            } else {
                json!({ "error": { "code": code_of(parts.status), "message": message } })
            }
        }
    };
    if let Value::Object(object) = &mut value {
        object.insert("request_id".into(), Value::String(id.to_string()));
    }
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_bounded_set() {
        assert_eq!(route_label("/v1/generate"), "/v1/generate");
        assert_eq!(
            route_label("/v2/models/linear-dit/infer"),
            "/v2/models/{model}/infer"
        );
        assert_eq!(route_label("/v2/models/anything"), "/v2/models/{model}");
        assert_eq!(route_label("/v2/models/a/b/c"), "unmatched");
        assert_eq!(route_label("/random/path"), "unmatched");
    }
}
