//! The HTTP server: images identical to `linear-dit sample`, JSON errors with the right
//! status (400, 429, 503), a disconnecting client frees its slot, shutdown loses nothing,
//! health, readiness, metrics and the Open Inference Protocol endpoints.

mod common;

use common::server::{TestServer, http};
use common::tiny_class_conditional;

use linear_dit::engine::{EngineConfig, Outcome};
use linear_dit::server::HttpLimits;
use linear_dit::{Device, Model, Weights};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn weights() -> Weights {
    tiny_class_conditional(4)
}

async fn start(max_batch: usize, max_queue: usize) -> TestServer {
    let model = Arc::new(Model::new(&weights(), Device::Cpu).unwrap());
    let config = EngineConfig::default()
        .with_max_batch(max_batch)
        .with_max_queue(max_queue);
    TestServer::start(model, config, HttpLimits::default(), false).await
}

fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
    json["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_is_identical_to_the_sample_command() {
    let server = start(64, 64).await;
    let (status, head, png) = http(
        server.addr,
        "POST",
        "/v1/generate",
        r#"{"class_label": 3, "num_images": 4, "seed": 11}"#,
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/png")
    );
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    weights().save(&w, linear_dit::DType::F32).unwrap();
    let out = dir.path().join("cli.png");
    let status = Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args([
            "sample",
            "--weights",
            w.to_str().unwrap(),
            "--size",
            "8x8",
            "--class",
            "3",
            "--num",
            "4",
            "--seed",
            "11",
        ])
        .args(["--backend", "cpu", "--out", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        png,
        "the server's PNG differs from `linear-dit sample`"
    );

    let (status, _, body) = http(
        server.addr,
        "POST",
        "/v1/generate",
        r#"{"class_label": 3, "num_images": 2, "seed": 11, "format": "safetensors"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let file = dir.path().join("images.safetensors");
    std::fs::write(&file, body).unwrap();
    let images = linear_dit::tensor_file::TensorFile::open(&file)
        .unwrap()
        .tensor("images")
        .unwrap();
    assert_eq!(images.shape, vec![2, 1, 8, 8]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_a_json_error() {
    let server = start(64, 64).await;
    for body in [
        r#"{"class_label": 3"#,
        r#"{"class_label": 10}"#,
        r#"{"class_label": -2}"#,
        r#"{"class_label": 1, "sampler": "euler"}"#,
        r#"{"class_label": 1, "format": "gif"}"#,
        r#"{"class_label": 1, "num_steps": 0}"#,
        r#"{"class_label": 1, "num_steps": 1001}"#,
        r#"{"class_label": 1, "guidance_scale": -1}"#,
        r#"{"class_label": 1, "bogus": true}"#,
        r#"{"class_label": 1, "num_images": 0}"#,
        r#"{"class_label": 1, "num_images": 1000}"#,
    ] {
        let (status, _, response) = http(server.addr, "POST", "/v1/generate", body).await;
        assert_eq!(
            status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&response)
        );
        assert_eq!(error_code(&response), "invalid_request", "{body}");
    }
    assert_eq!(server.engine.metrics().count(Outcome::Invalid), 11);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_429_and_completes_every_accepted_request() {
    let server = start(2, 2).await;
    let addr = server.addr;
    let clients: Vec<_> = (0..24)
        .map(|i| {
            tokio::spawn(async move {
                let body = format!(r#"{{"class_label": {}, "num_steps": 6, "seed": {i}, "format": "safetensors"}}"#, i % 10);
                http(addr, "POST", "/v1/generate", &body).await
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for client in clients {
        let (status, _, body) = client.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(error_code(&body), "queue_full");
                busy += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    assert!(busy > 0, "24 clients against a queue of 2 must see 429s");
    assert_eq!(ok + busy, 24);
    assert_eq!(server.engine.metrics().count(Outcome::Ok), ok as u64);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_its_slot() {
    let server = start(2, 8).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let body = r#"{"class_label": 1, "num_steps": 1000}"#;
    let request = format!(
        "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Disconnect only once the request runs (on a loaded machine that can take a while).
    let metrics = server.engine.metrics();
    wait_for(|| metrics.active() == 1, "the 1000-step request to start").await;
    drop(stream);
    // The slot (all of max_batch) must come free for the next request.
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/v1/generate",
        r#"{"class_label": 2, "num_steps": 3}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(server.engine.metrics().count(Outcome::Cancelled), 1);
    server.shutdown().await;
}

/// Polls `condition` every 10 ms for up to 30 s.
async fn wait_for(condition: impl Fn() -> bool, what: &str) {
    for _ in 0..3000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_accepted_requests() {
    let server = start(4, 64).await;
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                http(
                    addr,
                    "POST",
                    "/v1/generate",
                    &format!(r#"{{"class_label": {i}, "num_steps": 10}}"#),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let engine = server.engine.clone();
    server.shutdown().await;
    for client in clients {
        let (status, _, body) = client.await.unwrap();
        assert!(
            status == 200 || status == 503,
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let m = engine.metrics();
    assert_eq!(
        m.count(Outcome::Ok) + m.count(Outcome::ShuttingDown),
        8,
        "a request was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_open_inference_protocol() {
    let server = start(8, 8).await;
    assert_eq!(http(server.addr, "GET", "/healthz", "").await.0, 200);
    assert_eq!(http(server.addr, "GET", "/readyz", "").await.0, 200);
    assert_eq!(
        http(server.addr, "GET", "/v2/health/ready", "").await.0,
        200
    );
    let (status, _, body) = http(server.addr, "GET", "/v2/models/linear-dit", "").await;
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["inputs"][2]["name"], "y");
    assert_eq!(
        http(server.addr, "GET", "/v2/models/other", "").await.0,
        404
    );

    let x: Vec<f32> = (0..2 * 16 * 4).map(|i| (i as f32 * 0.1).sin()).collect();
    let infer = serde_json::json!({"id": "r1", "inputs": [
        {"name": "x", "shape": [2, 16, 4], "datatype": "FP32", "data": x},
        {"name": "t", "shape": [2], "datatype": "FP32", "data": [10.0, 900.0]},
        {"name": "y", "shape": [2], "datatype": "INT64", "data": [3, 10]},
    ]});
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/v2/models/linear-dit/infer",
        &infer.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["outputs"][0]["name"], "eps");
    assert_eq!(answer["outputs"][0]["shape"], serde_json::json!([2, 16, 4]));
    assert_eq!(answer["id"], "r1");
    let bad = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 16, 4], "datatype": "FP32", "data": [1.0]}]});
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/v2/models/linear-dit/infer",
        &bad.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"].is_string());

    http(
        server.addr,
        "POST",
        "/v1/generate",
        r#"{"class_label": 5, "num_steps": 2}"#,
    )
    .await;
    let (status, head, body) = http(server.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"));
    let text = String::from_utf8(body).unwrap();
    for metric in [
        // The OIP forward and the generate request; the malformed OIP body is invalid.
        "linear_dit_requests_total{outcome=\"ok\"} 2",
        "linear_dit_requests_total{outcome=\"invalid\"} 1",
        "linear_dit_http_responses_total{route=\"/v2/models/{model}/infer\",status=\"400\"} 1",
        "linear_dit_queue_depth",
        "linear_dit_batch_rows_bucket",
        "linear_dit_step_seconds_count",
        "linear_dit_tokens_per_second",
    ] {
        assert!(text.contains(metric), "metrics lack `{metric}`:\n{text}");
    }
    server.shutdown().await;
}
