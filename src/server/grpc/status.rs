//! Errors as gRPC status codes, with the same meaning as the HTTP statuses: fix the request
//! (INVALID_ARGUMENT, NOT_FOUND), send less or retry later (RESOURCE_EXHAUSTED), go elsewhere
//! (UNAVAILABLE), took too long (DEADLINE_EXCEEDED), our fault (INTERNAL).

use crate::engine::EngineError;
use tonic::{Code, Status};

/// The status of an engine error: invalid or too large for this engine → INVALID_ARGUMENT
/// (HTTP 400), queue full → RESOURCE_EXHAUSTED (429), shutting down or a failed worker →
/// UNAVAILABLE (503), deadline → DEADLINE_EXCEEDED (504), a failed forward → INTERNAL (500).
pub fn from_engine(error: EngineError) -> Status {
    let code = match &error {
        EngineError::Invalid(_) | EngineError::TooLarge(_) => Code::InvalidArgument,
        EngineError::QueueFull(_) => Code::ResourceExhausted,
        EngineError::ShuttingDown | EngineError::WorkerFailed(_) => Code::Unavailable,
        EngineError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        EngineError::Failed(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// A code's canonical name (`INVALID_ARGUMENT`), for metrics labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
