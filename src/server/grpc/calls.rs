//! What every gRPC call goes through before and after the service: the request message is
//! read within the HTTP limits (at most `max_body_bytes` plus its 5-byte frame header, else
//! RESOURCE_EXHAUSTED; within `body_timeout`, else DEADLINE_EXCEEDED), so a slow or huge
//! sender holds neither memory nor a stream for long; the `x-request-id` (the client's,
//! echoed, or a fresh one) goes into the response metadata and the call's tracing span; and
//! the call is counted by method and status code in `/metrics`.

use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use super::service::Inference;
use super::status::code_name;
use crate::server::tracking::request_id_of;
use crate::server::{AppState, REQUEST_ID};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::http::{HeaderValue, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use tonic::codegen::Service as _;
use tonic::{Code, Status};
use tracing::Instrument;

/// The gRPC message frame header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// The methods, for metrics labels (a bounded set, whatever the paths).
const METHODS: [&str; 6] = [
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
];

/// The gRPC service with its limits, request ids and metrics, as a hyper service.
#[derive(Clone)]
pub struct GrpcService {
    inner: GrpcInferenceServiceServer<Inference>,
    state: AppState,
}

impl GrpcService {
    /// The service for `state`: messages up to `state.limits.max_body_bytes`.
    pub fn new(state: AppState) -> Self {
        let inner = GrpcInferenceServiceServer::new(Inference::new(state.clone()))
            .max_decoding_message_size(state.limits.max_body_bytes);
        GrpcService { inner, state }
    }

    /// Reads the request message within the limits, then runs the service.
    async fn answer(
        mut inner: GrpcInferenceServiceServer<Inference>,
        state: AppState,
        request: Request<Incoming>,
    ) -> Response<tonic::body::Body> {
        let limits = &state.limits;
        let (parts, body) = request.into_parts();
        let limit = limits.max_body_bytes.saturating_add(FRAME_HEADER);
        let read = Limited::new(body, limit).collect();
        let status = match tokio::time::timeout(limits.body_timeout, read).await {
            Ok(Ok(collected)) => {
                let request = Request::from_parts(parts, Full::new(collected.to_bytes()));
                return match inner.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            Err(_) => Status::deadline_exceeded(format!(
                "the request message did not arrive within {} ms",
                limits.body_timeout.as_millis()
            )),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                Status::resource_exhausted(format!(
                    "the request message is larger than this server's limit of {} bytes (--max-body-bytes)",
                    limits.max_body_bytes
                ))
            }
            Ok(Err(error)) => Status::cancelled(format!("the request could not be read: {error}")),
        };
        state
            .engine
            .metrics()
            .record(crate::engine::Outcome::Invalid);
        status.into_http()
    }
}

impl hyper::service::Service<Request<Incoming>> for GrpcService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let method = method_label(request.uri().path());
        let id = request_id_of(request.headers());
        let (inner, state) = (self.inner.clone(), self.state.clone());
        let span = tracing::info_span!("grpc", request_id = %id, method);
        Box::pin(
            async move {
                let start = Instant::now();
                let mut response = Self::answer(inner, state.clone(), request).await;
                // Errors travel in the headers (a trailers-only answer); success in trailers.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32);
                state.engine.metrics().record_grpc(method, code_name(code));
                let ms = start.elapsed().as_secs_f64() * 1e3;
                match code {
                    Code::Internal | Code::Unknown | Code::DataLoss => {
                        tracing::warn!(code = code_name(code), ms, "answered");
                    }
                    _ => tracing::debug!(code = code_name(code), ms, "answered"),
                }
                if let Ok(value) = HeaderValue::from_str(&id) {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The method a path calls, for metrics labels.
fn method_label(path: &str) -> &'static str {
    path.strip_prefix("/inference.GRPCInferenceService/")
        .and_then(|m| METHODS.iter().find(|known| **known == m))
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_bounded_set() {
        assert_eq!(
            method_label("/inference.GRPCInferenceService/ModelInfer"),
            "ModelInfer"
        );
        assert_eq!(
            method_label("/inference.GRPCInferenceService/Nope"),
            "unknown"
        );
        assert_eq!(method_label("/other.Service/ModelInfer"), "unknown");
    }
}
