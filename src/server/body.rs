//! Reading a request body within the server's limits: at most `max_body_bytes` (413
//! otherwise, before reading when `Content-Length` already says so) and within
//! `body_timeout` of the handler starting to read (408 otherwise), so a client that sends
//! slowly or too much holds neither memory nor a connection for long.

use super::HttpLimits;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a body could not be read: the status to answer and a message.
pub type BodyError = (StatusCode, String);

/// The whole body of a request, or the reason it was refused.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &HttpLimits,
) -> Result<Bytes, BodyError> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server's limit of {} bytes (--max-body-bytes)",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let collect = Limited::new(body, limits.max_body_bytes).collect();
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                limits.body_timeout.as_millis()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(error)) => Err((
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {error}"),
        )),
    }
}
