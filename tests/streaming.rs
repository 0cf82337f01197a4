//! `POST /v1/generate` with `"stream": true`: server-sent events, one `step` per finished
//! denoising step in order, then a `result` whose bytes equal the plain answer's for the
//! same seed (or an `error` with the plain answer's JSON body); a client that leaves
//! mid-stream frees its slot; a refused streaming request is a plain JSON error, not a
//! stream.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::server::{TestServer, dechunk, http};
use common::tiny_class_conditional;
use linear_dit::engine::{EngineConfig, Outcome};
use linear_dit::server::HttpLimits;
use linear_dit::{Device, Model};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(max_batch: usize, max_queue: usize) -> TestServer {
    let model = Arc::new(Model::new(&tiny_class_conditional(4), Device::Cpu).unwrap());
    let config = EngineConfig::default()
        .with_max_batch(max_batch)
        .with_max_queue(max_queue);
    TestServer::start(model, config, HttpLimits::default(), false).await
}

/// Sends a `POST /v1/generate` with `body` on a fresh connection.
async fn post(addr: SocketAddr, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The whole answer: (status, lower-cased header, de-chunked body).
async fn exchange(addr: SocketAddr, body: &str) -> (u16, String, Vec<u8>) {
    let (status, head, body) = http(addr, "POST", "/v1/generate", body).await;
    (status, head.to_ascii_lowercase(), body)
}

/// Server-sent events as (event name, JSON data); keep-alive comments skipped.
fn parse_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_arrive_in_order_then_the_same_png_as_the_plain_answer() {
    let server = start(64, 64).await;
    let steps = 7;
    let plain =
        format!(r#"{{"class_label": 3, "num_images": 1, "seed": 11, "num_steps": {steps}}}"#);
    let (status, head, png) = exchange(server.addr, &plain).await;
    assert_eq!(status, 200, "{head}");

    let streamed = format!(
        r#"{{"class_label": 3, "num_images": 1, "seed": 11, "num_steps": {steps}, "stream": true}}"#
    );
    let (status, head, body) = exchange(server.addr, &streamed).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let events = parse_events(&body);
    assert_eq!(events.len(), steps + 1, "{events:?}");
    let mut last_elapsed = 0;
    for (k, (name, data)) in events[..steps].iter().enumerate() {
        assert_eq!(name, "step");
        assert_eq!(data["step"], k + 1, "{data}");
        assert_eq!(data["total"], steps, "{data}");
        let elapsed = data["elapsed_ms"].as_u64().unwrap();
        assert!(elapsed >= last_elapsed, "elapsed went back: {events:?}");
        last_elapsed = elapsed;
    }
    let (name, result) = &events[steps];
    assert_eq!(name, "result", "{result}");
    assert_eq!(result["format"], "png");
    assert_eq!(result["content_type"], "image/png");
    assert_eq!(result["steps"], steps);
    assert!(result["queue_ms"].is_u64() && result["elapsed_ms"].is_u64());
    let bytes = BASE64.decode(result["images"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, png, "the streamed PNG differs from the plain answer");

    // safetensors too: the same bytes as the plain answer.
    let plain = r#"{"class_label": 5, "num_images": 2, "seed": 3, "num_steps": 4, "format": "safetensors"}"#;
    let (status, _, tensors) = exchange(server.addr, plain).await;
    assert_eq!(status, 200);
    let streamed = r#"{"class_label": 5, "num_images": 2, "seed": 3, "num_steps": 4, "format": "safetensors", "stream": true}"#;
    let (status, _, body) = exchange(server.addr, streamed).await;
    assert_eq!(status, 200);
    let events = parse_events(&body);
    let (name, result) = events.last().unwrap();
    assert_eq!(name, "result");
    assert_eq!(result["format"], "safetensors");
    let bytes = BASE64.decode(result["images"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, tensors);
    assert_eq!(server.engine.metrics().count(Outcome::Ok), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_frees_its_slot() {
    // max_batch 2: the guided image takes every row, so nothing else runs until it leaves.
    let server = start(2, 8).await;
    let mut stream = post(
        server.addr,
        r#"{"class_label": 1, "num_steps": 1000, "stream": true}"#,
    )
    .await;
    // Wait for the first step event: the request is running.
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: step") {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("a step event within 30 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a step: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    drop(stream);
    let (status, _, body) = exchange(
        server.addr,
        r#"{"class_label": 2, "num_steps": 3, "stream": true}"#,
    )
    .await;
    assert_eq!(status, 200);
    let events = parse_events(&body);
    assert_eq!(events.last().unwrap().0, "result", "{events:?}");
    assert_eq!(server.engine.metrics().count(Outcome::Cancelled), 1);
    assert_eq!(server.engine.metrics().count(Outcome::Ok), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_streaming_request_is_a_plain_json_error() {
    let server = start(64, 64).await;
    for body in [
        r#"{"class_label": 10, "stream": true}"#,
        r#"{"class_label": 1, "num_steps": 0, "stream": true}"#,
        r#"{"class_label": 1, "num_images": 1000, "stream": true}"#,
        r#"{"class_label": 1, "stream": "yes"}"#,
    ] {
        let (status, head, response) = exchange(server.addr, body).await;
        assert_eq!(
            status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&response)
        );
        assert!(
            head.contains("content-type: application/json"),
            "{body}: {head}"
        );
        let json: Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(json["error"]["code"], "invalid_request", "{body}: {json}");
        assert!(json["request_id"].is_string(), "{json}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_stream_started_is_an_error_event_with_the_plain_body() {
    let server = start(64, 64).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"class_label": 1, "num_steps": 1000, "deadline_ms": 1, "stream": true}"#;
    let request = format!(
        "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nx-request-id: stream-deadline-1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let events = parse_events(&dechunk(&response[split + 4..]));
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(error["error"]["code"], "deadline_exceeded", "{error}");
    assert!(error["error"]["message"].is_string(), "{error}");
    assert_eq!(error["request_id"], "stream-deadline-1");
    assert!(events[..events.len() - 1].iter().all(|(n, _)| n == "step"));
    assert_eq!(server.engine.metrics().count(Outcome::DeadlineExceeded), 1);
    server.shutdown().await;
}
