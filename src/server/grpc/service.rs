//! The GRPCInferenceService methods: liveness, readiness (the engine's truth), metadata (the
//! same as the REST endpoints'), and ModelInfer (decoded by [`super::infer`], run by the
//! engine under its admission and limits, bounded by the client's `grpc-timeout`).

use super::infer::{decode_model_infer_for, model_infer_response};
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::status::from_engine;
use crate::engine::Outcome;
use crate::server::AppState;
use crate::server::oip::{EXTENSIONS, MODEL_NAME};
use crate::server::oip_tensors::{Schema, TensorMeta, model_tensors};
use std::time::Duration;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

/// The service implementation over the server's state.
pub struct Inference {
    state: AppState,
}

impl Inference {
    /// The service for `state`.
    pub fn new(state: AppState) -> Self {
        Inference { state }
    }
}

/// Checks a model name and version (empty: the server's choice; this model has version 1).
fn check_model(name: &str, version: &str) -> Result<(), Status> {
    if name != MODEL_NAME {
        return Err(Status::not_found(format!(
            "unknown model `{name}`; this server serves `{MODEL_NAME}`"
        )));
    }
    if !version.is_empty() && version != "1" {
        return Err(Status::not_found(format!(
            "unknown version `{version}` of `{MODEL_NAME}`; it has version 1"
        )));
    }
    Ok(())
}

fn tensor_metadata(tensor: TensorMeta) -> TensorMetadata {
    TensorMetadata {
        name: tensor.name.to_string(),
        datatype: tensor.datatype.name().to_string(),
        shape: tensor.shape,
    }
}

/// The client's deadline from the `grpc-timeout` header (`<at most 8 digits><H|M|S|m|u|n>`),
/// if it sent one.
fn client_timeout(metadata: &MetadataMap) -> Result<Option<Duration>, Status> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let invalid = || Status::invalid_argument(format!("malformed grpc-timeout header {value:?}"));
    let text = value.to_str().map_err(|_| invalid())?;
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    // At most 8 digits: every product below fits in a u64.
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let timeout = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(invalid()),
    };
    Ok(Some(timeout))
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.engine.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        check_model(&request.name, &request.version)?;
        Ok(Response::new(ModelReadyResponse {
            ready: self.state.engine.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: MODEL_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        check_model(&request.name, &request.version)?;
        let (inputs, output) = model_tensors(&self.state.engine);
        Ok(Response::new(ModelMetadataResponse {
            name: MODEL_NAME.to_string(),
            versions: vec!["1".to_string()],
            platform: "linear-dit".to_string(),
            inputs: inputs.into_iter().map(tensor_metadata).collect(),
            outputs: vec![tensor_metadata(output)],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let engine = &self.state.engine;
        let invalid = |status: Status| {
            engine.metrics().record(Outcome::Invalid);
            status
        };
        let timeout = client_timeout(request.metadata()).map_err(invalid)?;
        let request = request.into_inner();
        check_model(&request.model_name, &request.model_version).map_err(invalid)?;
        let schema = Schema::of(engine);
        let inputs = decode_model_infer_for(schema, request)
            .map_err(|e| invalid(Status::invalid_argument(e)))?;
        let forward = inputs.run(engine);
        let answer = match timeout {
            // Dropping the forward at the deadline cancels it: its slot is freed.
            Some(limit) => tokio::time::timeout(limit, forward).await.map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the client's deadline of {} ms passed before the forward finished",
                    limit.as_millis()
                ))
            })?,
            None => forward.await,
        };
        let (id, eps) = answer.map_err(from_engine)?;
        Ok(Response::new(model_infer_response(
            id,
            schema.output_name(),
            &eps,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_malformed_ones_are_refused() {
        let parse = |text: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", text.parse().unwrap());
            client_timeout(&metadata)
        };
        assert_eq!(parse("50m").unwrap(), Some(Duration::from_millis(50)));
        assert_eq!(
            parse("99999999H").unwrap(),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse("7u").unwrap(), Some(Duration::from_micros(7)));
        for bad in ["m", "123456789S", "10x", "-1S", "1.5S"] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert_eq!(client_timeout(&MetadataMap::new()).unwrap(), None);
    }
}
