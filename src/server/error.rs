//! Errors as HTTP responses: `{"error": {"code": …, "message": …}, "request_id": …}` with
//! the status that says what the client should do (400 fix the request, 413 send less, 429
//! retry later, 503 go elsewhere, 504 took too long, 500 our fault). The request id is added
//! by [`super::tracking`].

use crate::engine::EngineError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer of the `/v1` API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// `status` with `message`; the code follows from the status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            s if s.is_server_error() => "internal",
            _ => "invalid_request",
        };
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let (status, code) = match &error {
            EngineError::Invalid(_) | EngineError::TooLarge(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            EngineError::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            EngineError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::DeadlineExceeded(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            EngineError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            EngineError::WorkerFailed(_) => (StatusCode::SERVICE_UNAVAILABLE, "worker_failed"),
        };
        ApiError {
            status,
            code,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
