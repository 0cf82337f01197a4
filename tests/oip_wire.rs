//! The Open Inference Protocol's wire formats as real clients use them: the HTTP binary
//! tensor data extension (binary in and out, mixed with JSON inputs, `binary_data_output`)
//! and the gRPC service (every RPC, raw and typed contents, status codes, readiness,
//! deadlines, drain) all give the same `eps` bits as HTTP JSON.

mod common;

use common::server::{TestServer, exchange};
use common::tiny_class_conditional;
use linear_dit::engine::EngineConfig;
use linear_dit::server::HttpLimits;
use linear_dit::server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use linear_dit::server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use linear_dit::server::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use linear_dit::{Device, Model};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

const INFER: &str = "/v2/models/linear-dit/infer";

async fn start(config: EngineConfig) -> TestServer {
    let model = Arc::new(Model::new(&tiny_class_conditional(4), Device::Cpu).unwrap());
    TestServer::start(model, config, HttpLimits::default(), true).await
}

/// A gRPC client of `server`.
async fn client(server: &TestServer) -> Client {
    let addr = server.grpc.expect("started with gRPC");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GrpcInferenceServiceClient::new(channel)
}

/// One `POST` of a raw body to the infer endpoint, with extra header lines.
async fn post(addr: SocketAddr, headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let answer = exchange(addr, "POST", INFER, headers, body).await;
    assert!(
        !answer.1.to_ascii_lowercase().contains("transfer-encoding"),
        "{}",
        answer.1
    );
    answer
}

/// A response header's value.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The tiny model's inputs: B samples of 4×4 tokens of D = 4.
fn inputs(batch: usize) -> (Vec<f32>, Vec<f32>, Vec<i64>) {
    let x = (0..batch * 16 * 4)
        .map(|i| (i as f32 * 0.37).sin() * 1.7)
        .collect();
    let t = (0..batch).map(|b| 10.0 + 97.5 * b as f32).collect();
    let y = (0..batch as i64).map(|b| b % 10).collect();
    (x, t, y)
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_i64(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// `eps` of a JSON answer.
fn json_eps(body: &[u8]) -> Vec<f32> {
    let json: Value = serde_json::from_slice(body).unwrap();
    let output = &json["outputs"][0];
    assert_eq!(output["name"], "eps");
    output["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// `eps` of a binary answer, after checking its framing.
fn binary_eps(head: &str, body: &[u8], batch: usize) -> Vec<f32> {
    let length: usize = header(head, "inference-header-content-length")
        .unwrap_or_else(|| panic!("no Inference-Header-Content-Length in {head}"))
        .parse()
        .unwrap();
    let json: Value = serde_json::from_slice(&body[..length]).unwrap();
    let output = &json["outputs"][0];
    assert_eq!(output["name"], "eps");
    assert_eq!(output["datatype"], "FP32");
    assert_eq!(output["shape"], json!([batch, 16, 4]));
    assert!(output.get("data").is_none(), "{json}");
    let raw = &body[length..];
    assert_eq!(output["parameters"]["binary_data_size"], raw.len());
    assert_eq!(raw.len(), batch * 16 * 4 * 4);
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The JSON request of the inputs.
fn json_request(batch: usize) -> Value {
    let (x, t, y) = inputs(batch);
    json!({"inputs": [
        {"name": "x", "shape": [batch, 16, 4], "datatype": "FP32", "data": x},
        {"name": "t", "shape": [batch], "datatype": "FP32", "data": t},
        {"name": "y", "shape": [batch], "datatype": "INT64", "data": y},
    ]})
}

/// The HTTP JSON answer's `eps`: the reference every other format must match bit for bit.
async fn reference_eps(server: &TestServer, batch: usize) -> Vec<f32> {
    let body = json_request(batch).to_string();
    let (status, head, answer) = post(server.addr, "", body.as_bytes()).await;
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&answer));
    assert!(header(&head, "inference-header-content-length").is_none());
    json_eps(&answer)
}

/// A binary-extension body: the JSON header and the binary inputs after it.
fn binary_body(header: &Value, binary: &[&[u8]]) -> (String, Vec<u8>) {
    let mut body = header.to_string().into_bytes();
    let length = body.len();
    for part in binary {
        body.extend_from_slice(part);
    }
    (
        format!("Inference-Header-Content-Length: {length}\r\n"),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_json_tensors_give_bit_identical_eps() {
    let server = start(EngineConfig::default()).await;
    let batch = 3;
    let reference = reference_eps(&server, batch).await;
    let (x, t, y) = inputs(batch);
    let (xb, tb, yb) = (le_f32(&x), le_f32(&t), le_i64(&y));

    // Binary in, binary out (what tritonclient sends by default).
    let all_binary = json!({
        "inputs": [
            {"name": "x", "shape": [batch, 16, 4], "datatype": "FP32", "parameters": {"binary_data_size": xb.len()}},
            {"name": "t", "shape": [batch], "datatype": "FP32", "parameters": {"binary_data_size": tb.len()}},
            {"name": "y", "shape": [batch], "datatype": "INT64", "parameters": {"binary_data_size": yb.len()}},
        ],
        "outputs": [{"name": "eps", "parameters": {"binary_data": true}}],
    });
    let (headers, body) = binary_body(&all_binary, &[&xb, &tb, &yb]);
    let (status, head, answer) = post(server.addr, &headers, &body).await;
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&answer));
    assert_eq!(
        header(&head, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(bits(&binary_eps(&head, &answer, batch)), bits(&reference));

    // Mixed: x binary, t and y as JSON data; no outputs listed, `binary_data_output` asks
    // for binary (tritonclient's default when it lists no outputs).
    let mixed = json!({
        "inputs": [
            {"name": "x", "shape": [batch, 16, 4], "datatype": "FP32", "parameters": {"binary_data_size": xb.len()}},
            {"name": "t", "shape": [batch], "datatype": "FP32", "data": t},
            {"name": "y", "shape": [batch], "datatype": "INT64", "data": y},
        ],
        "parameters": {"binary_data_output": true},
    });
    let (headers, body) = binary_body(&mixed, &[&xb]);
    let (status, head, answer) = post(server.addr, &headers, &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(bits(&binary_eps(&head, &answer, batch)), bits(&reference));

    // Binary in, JSON out: the output asks for no binary data, which wins over the request.
    let mut json_out = all_binary.clone();
    json_out["outputs"] = json!([{"name": "eps", "parameters": {"binary_data": false}}]);
    json_out["parameters"] = json!({"binary_data_output": true});
    let (headers, body) = binary_body(&json_out, &[&xb, &tb, &yb]);
    let (status, head, answer) = post(server.addr, &headers, &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(header(&head, "inference-header-content-length").is_none());
    assert_eq!(bits(&json_eps(&answer)), bits(&reference));

    // JSON in (no length header), binary out.
    let mut json_in = json_request(batch);
    json_in["parameters"] = json!({"binary_data_output": true});
    let (status, head, answer) = post(server.addr, "", json_in.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(bits(&binary_eps(&head, &answer, batch)), bits(&reference));

    // The extension is advertised.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(
        String::from_utf8_lossy(&response).contains("\"extensions\":[\"binary_tensor_data\"]"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    server.shutdown().await;
}

fn grpc_input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: None,
    }
}

/// A ModelInfer request of the inputs with raw contents.
fn raw_request(batch: usize) -> ModelInferRequest {
    let (x, t, y) = inputs(batch);
    let b = batch as i64;
    ModelInferRequest {
        model_name: "linear-dit".into(),
        model_version: String::new(),
        id: "wire-1".into(),
        parameters: Default::default(),
        inputs: vec![
            grpc_input("x", "FP32", &[b, 16, 4]),
            grpc_input("t", "FP32", &[b]),
            grpc_input("y", "INT64", &[b]),
        ],
        outputs: vec![InferRequestedOutputTensor {
            name: "eps".into(),
            parameters: Default::default(),
        }],
        raw_input_contents: vec![le_f32(&x), le_f32(&t), le_i64(&y)],
    }
}

/// `eps` of a ModelInfer answer, from `raw_output_contents` as Triton's clients read it.
fn grpc_eps(response: &linear_dit::server::grpc::proto::ModelInferResponse) -> Vec<f32> {
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(response.outputs[0].name, "eps");
    assert_eq!(response.outputs[0].datatype, "FP32");
    assert_eq!(response.raw_output_contents.len(), 1);
    response.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_serves_every_rpc_and_matches_http_json_bit_for_bit() {
    let server = start(EngineConfig::default()).await;
    let mut client = client(&server).await;
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |name: &str| ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        client
            .model_ready(ready("linear-dit"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let unknown = client.model_ready(ready("other")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let metadata = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.extensions, ["binary_tensor_data"]);
    let model = client
        .model_metadata(ModelMetadataRequest {
            name: "linear-dit".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = model.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["x", "t", "y"]);
    assert_eq!(model.inputs[0].shape, [-1, -1, 4]);
    assert_eq!(model.outputs[0].name, "eps");

    let batch = 2;
    let reference = reference_eps(&server, batch).await;
    // Raw contents.
    let answer = client
        .model_infer(raw_request(batch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.id, "wire-1");
    assert_eq!(answer.outputs[0].shape, [batch as i64, 16, 4]);
    assert_eq!(bits(&grpc_eps(&answer)), bits(&reference));
    // Typed contents.
    let (x, t, y) = inputs(batch);
    let mut typed = raw_request(batch);
    typed.raw_input_contents.clear();
    let contents = [
        InferTensorContents {
            fp32_contents: x,
            ..Default::default()
        },
        InferTensorContents {
            fp32_contents: t,
            ..Default::default()
        },
        InferTensorContents {
            int64_contents: y,
            ..Default::default()
        },
    ];
    for (input, contents) in typed.inputs.iter_mut().zip(contents) {
        input.contents = Some(contents);
    }
    let answer = client.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(bits(&grpc_eps(&answer)), bits(&reference));

    let metrics = server.engine.metrics();
    assert_eq!(metrics.grpc_count("ModelInfer", "OK"), 2);
    assert_eq!(metrics.grpc_count("ModelReady", "NOT_FOUND"), 1);
    let text = metrics.render();
    assert!(
        text.contains("linear_dit_grpc_calls_total{method=\"ModelInfer\",code=\"OK\"} 2"),
        "{text}"
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_map_to_status_codes() {
    let config = EngineConfig::default().with_max_batch(2).with_max_queue(1);
    let server = start(config).await;
    let mut client = client(&server).await;

    // A bad shape: t's batch disagrees with x's.
    let mut bad = raw_request(2);
    bad.inputs[1].shape = vec![1];
    bad.raw_input_contents[1].truncate(4);
    let error = client.model_infer(bad).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.metadata().get("x-request-id").is_some());
    // An unknown model.
    let mut other = raw_request(1);
    other.model_name = "other".into();
    let error = client.model_infer(other).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");

    // Queue full: generate requests (one guided image fills max_batch, one more waits in
    // the queue of 1) keep the engine busy while forwards arrive.
    let http = server.addr;
    let generates: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(http).await.unwrap();
                let body = format!(r#"{{"class_label": 1, "num_steps": 1000, "seed": {i}}}"#);
                let request = format!(
                    "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let mut late = tonic::Request::new(raw_request(1));
        // A deadline the forward cannot always meet behind the generates. The client enforces
        // it too, so either side may end the call first.
        late.set_timeout(Duration::from_millis(30));
        codes.push(match client.model_infer(late).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        });
    }
    for generate in generates {
        generate.await.unwrap();
    }
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    assert!(
        codes.iter().all(|c| matches!(
            c,
            Code::Ok | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled
        )),
        "{codes:?}"
    );

    // Shutting down: not ready, and a forward is UNAVAILABLE.
    server.engine.shutdown().await;
    let ready = client
        .server_ready(ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let error = client.model_infer(raw_request(1)).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let metrics = server.engine.metrics();
    assert_eq!(metrics.grpc_count("ModelInfer", "INVALID_ARGUMENT"), 1);
    let exhausted = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!(
        metrics.grpc_count("ModelInfer", "RESOURCE_EXHAUSTED"),
        exhausted as u64
    );
    assert_eq!(metrics.grpc_count("ModelInfer", "UNAVAILABLE"), 1);
    drop(client);
    server.shutdown().await;
}
