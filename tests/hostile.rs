//! Hostile input, as an attacker or a careless client would send it: every case gets one
//! clean error (an HTTP status with a JSON body, or a non-zero exit with one `error:` line),
//! and the server goes on answering normal requests with readiness that tells the truth.
//!
//! The cases reproduce the issue's reports (a wrapped shape product reaching unsafe code,
//! a worker killed by a panic, unbounded allocations, unbounded connections, silently wrong
//! values) and their neighbours on other dimensions, endpoints, the CLI and the library.

mod common;

use common::server::{TestServer as Server, exchange, http, read_response};
use common::tiny_class_conditional;
use linear_dit::backends::Backend;
use linear_dit::backends::cpu::CpuBackend;
use linear_dit::engine::{Engine, EngineConfig, WorkerState};
use linear_dit::model::ForwardShape;
use linear_dit::server::HttpLimits;
use linear_dit::{Config, Device, Flavor, Grid, InitKind, Input, Model, Tensor, Weights};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The timestep at which [`PanickingBackend`] panics.
const PANIC_T: f32 = 123.0;

/// The CPU backend, except that a forward whose first timestep is [`PANIC_T`] panics: a
/// stand-in for a bug deep inside a backend.
struct PanickingBackend(CpuBackend);

impl Backend for PanickingBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn describe(&self) -> String {
        "cpu (panics at t = 123)".into()
    }

    fn forward(&self, input: &Input<'_>, shape: ForwardShape) -> linear_dit::Result<Tensor> {
        assert!(input.t[0] != PANIC_T, "injected backend bug");
        self.0.forward(input, shape)
    }
}

/// The tiny class-conditional model on a [`PanickingBackend`].
fn panicking_model() -> Arc<Model> {
    let weights = tiny_class_conditional(4);
    let backend = PanickingBackend(CpuBackend::new(&weights).unwrap());
    Arc::new(Model::from_backend(
        weights.config().clone(),
        Box::new(backend),
    ))
}

async fn start(engine: EngineConfig, limits: HttpLimits) -> Server {
    Server::start(panicking_model(), engine, limits, false).await
}

fn small_engine() -> EngineConfig {
    EngineConfig::default()
        .with_max_batch(8)
        .with_max_queue(4)
        .with_max_images_per_request(4)
        .with_max_steps_per_request(50)
}

fn tight_http() -> HttpLimits {
    HttpLimits::default()
        .with_max_body_bytes(64 * 1024)
        .with_header_timeout(Duration::from_millis(500))
        .with_body_timeout(Duration::from_millis(500))
        .with_max_connections(8)
        .with_drain_timeout(Duration::from_secs(10))
}

/// One JSON exchange with extra header lines: (status, head, body).
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    let headers = format!("Content-Type: application/json\r\n{headers}");
    exchange(addr, method, path, &headers, body.as_bytes()).await
}

const INFER: &str = "/v2/models/linear-dit/infer";

/// A valid OIP body for the tiny model: B samples of 4×4 tokens.
fn infer_body(batch: usize, t: f32) -> Value {
    let x: Vec<f32> = (0..batch * 16 * 4)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    json!({"inputs": [
        {"name": "x", "shape": [batch, 16, 4], "datatype": "FP32", "data": x},
        {"name": "t", "shape": [batch], "datatype": "FP32", "data": vec![t; batch]},
        {"name": "y", "shape": [batch], "datatype": "INT64", "data": vec![3; batch]},
    ]})
}

/// Asserts an OIP error answer: `status`, a JSON `{"error": "…", "request_id": …}` whose
/// message contains every word.
fn assert_oip_error(answer: &(u16, String, Vec<u8>), status: u16, words: &[&str]) {
    let (got, head, body) = answer;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "{head}\n{text}");
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    let message = json["error"].as_str().unwrap_or_else(|| panic!("{text}"));
    for w in words {
        assert!(message.contains(w), "`{message}` should mention `{w}`");
    }
    assert!(json["request_id"].is_string(), "{text}");
}

/// Asserts a `/v1` error answer with `code`.
fn assert_api_error(answer: &(u16, String, Vec<u8>), status: u16, code: &str) {
    let (got, head, body) = answer;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got, status, "{head}\n{text}");
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["error"]["code"], code, "{text}");
    assert!(json["error"]["message"].is_string(), "{text}");
    assert!(json["request_id"].is_string(), "{text}");
}

/// The server still serves: ready, a normal forward and a normal generate succeed.
async fn assert_still_serving(server: &Server) {
    assert_eq!(http(server.addr, "GET", "/readyz", "").await.0, 200);
    let answer = http(server.addr, "POST", INFER, &infer_body(2, 10.0).to_string()).await;
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
    let answer = http(
        server.addr,
        "POST",
        "/v1/generate",
        r#"{"class_label": 1, "num_steps": 2}"#,
    )
    .await;
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_and_oversized_shapes_are_400_and_the_server_keeps_serving() {
    let server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    let post = |body: String| async move { http(addr, "POST", INFER, &body).await };

    // The SIGSEGV reproducer: 1 × (2^62 + 1) × 4 wraps to 4 in 64 bits.
    let segv = r#"{"inputs":[{"name":"x","shape":[1,4611686018427387905,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"t","shape":[1],"datatype":"FP32","data":[1]},{"name":"y","shape":[1],"datatype":"INT64","data":[1]}],"parameters":{"grid":"1x4611686018427387905"}}"#;
    assert_oip_error(&post(segv.into()).await, 400, &["2^64"]);
    // The worker-killer: the product wraps to 0 with empty data.
    let empty = segv
        .replace("4611686018427387905,4", "4611686018427387904,4")
        .replace("[1,2,3,4]", "[]");
    assert_oip_error(&post(empty).await, 400, &["x"]);
    // Other dimensions wrap too.
    for shape in ["[4611686018427387904,1,4]", "[2,2,4611686018427387904]"] {
        let body = segv.replace("[1,4611686018427387905,4]", shape);
        assert_oip_error(&post(body).await, 400, &["x"]);
    }
    // A grid whose rows × cols wraps to 16 beside a valid 16-token x.
    let mut grid = infer_body(1, 10.0);
    grid["parameters"] = json!({"grid": "9223372036854775816x2"});
    assert_oip_error(&post(grid.to_string()).await, 400, &["grid"]);
    // More rows than --max-batch, and more tokens than --max-tokens: refused, not run.
    assert_oip_error(
        &post(infer_body(9, 10.0).to_string()).await,
        400,
        &["at most 8 rows"],
    );
    // Ready, nothing stuck in the queue, normal requests still served.
    assert_still_serving(&server).await;
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", "").await.2).unwrap();
    assert!(metrics.contains("linear_dit_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains(
            "linear_dit_http_responses_total{route=\"/v2/models/{model}/infer\",status=\"400\"} 6"
        ),
        "{metrics}"
    );
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_requests_are_capped_before_anything_is_built() {
    let server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    let start_time = Instant::now();
    for body in [
        r#"{"class_label": 1, "num_images": 100000000}"#,
        r#"{"class_label": 1, "num_images": 18446744073709551615}"#,
        r#"{"class_label": 1, "num_images": 5}"#,
        r#"{"class_label": 1, "num_steps": 51}"#,
        r#"{"class_label": 1, "num_steps": 18446744073709551615}"#,
        r#"{"class_label": 1, "num_steps": 0}"#,
        r#"{"class_label": 10}"#,
        r#"{"class_label": -1}"#,
        r#"{"class_label": 1, "guidance_scale": 1e39}"#,
        r#"{"class_label": 1, "sampler": "ddpm", "eta": 0.5}"#,
        r#"{"class_label": 1, "num_images": 1, "extra": true}"#,
        r#"[1, 2, 3]"#,
        "{\"class_label\": 1",
    ] {
        let answer = http(addr, "POST", "/v1/generate", body).await;
        assert_api_error(&answer, 400, "invalid_request");
    }
    assert!(
        start_time.elapsed() < Duration::from_secs(5),
        "the caps answer at once"
    );
    assert_still_serving(&server).await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_values_are_exact_and_unique() {
    let server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    let post = |body: Value| async move { http(addr, "POST", INFER, &body.to_string()).await };

    // 2^53 + 1 must not round to a valid-looking label.
    let mut big = infer_body(1, 10.0);
    big["inputs"][2]["data"] = json!([9007199254740993u64]);
    assert_oip_error(&post(big).await, 400, &["9007199254740993"]);
    let mut float_label = infer_body(1, 10.0);
    float_label["inputs"][2]["data"] = serde_json::from_str("[1e20]").unwrap();
    assert_oip_error(&post(float_label).await, 400, &["INT64"]);
    let mut fraction = infer_body(1, 10.0);
    fraction["inputs"][2]["data"] = json!([1.5]);
    assert_oip_error(&post(fraction).await, 400, &["INT64"]);
    // Duplicate inputs are refused, whichever comes last.
    let mut duplicate = infer_body(1, 10.0);
    let again = duplicate["inputs"][1].clone();
    duplicate["inputs"].as_array_mut().unwrap().push(again);
    assert_oip_error(&post(duplicate).await, 400, &["more than once"]);
    // t = num_steps is outside [0, num_steps).
    assert_oip_error(&post(infer_body(1, 1000.0)).await, 400, &["num_steps"]);
    // A value beyond FP32, ranks, datatypes, unknown inputs, non-numbers.
    let mut huge = infer_body(1, 10.0);
    huge["inputs"][0]["data"][0] = serde_json::from_str("1e39").unwrap();
    assert_oip_error(&post(huge).await, 400, &["FP32"]);
    let mut rank = infer_body(1, 10.0);
    rank["inputs"][1]["shape"] = json!([1, 1]);
    assert_oip_error(&post(rank).await, 400, &["rank"]);
    let mut dtype = infer_body(1, 10.0);
    dtype["inputs"][2]["datatype"] = json!("FP32");
    assert_oip_error(&post(dtype).await, 400, &["INT64"]);
    let mut unknown = infer_body(1, 10.0);
    unknown["inputs"][0]["name"] = json!("z");
    assert_oip_error(&post(unknown).await, 400, &["unknown input"]);
    let mut text = infer_body(1, 10.0);
    text["inputs"][0]["data"][3] = json!("NaN");
    assert_oip_error(&post(text).await, 400, &["malformed"]);
    assert_still_serving(&server).await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_has_a_json_body_and_a_request_id() {
    let server = start(small_engine().with_max_queue(1), tight_http()).await;
    let addr = server.addr;
    let answer = http(addr, "GET", "/no/such/path", "").await;
    assert_api_error(&answer, 404, "not_found");
    let answer = http(addr, "GET", "/v1/generate", "").await;
    assert_api_error(&answer, 405, "method_not_allowed");
    let answer = http(addr, "GET", INFER, "").await;
    assert_eq!(answer.0, 405);
    let big = format!(
        r#"{{"class_label": 1, "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let answer = http(addr, "POST", "/v1/generate", &big).await;
    assert_api_error(&answer, 413, "payload_too_large");
    assert_oip_error(&http(addr, "POST", INFER, &big).await, 413, &["limit"]);
    // The client's request id is echoed in the header and the body.
    let answer = http_with(
        addr,
        "POST",
        "/v1/generate",
        "x-request-id: abc-123\r\n",
        "{",
    )
    .await;
    assert!(
        answer
            .1
            .to_ascii_lowercase()
            .contains("x-request-id: abc-123"),
        "{}",
        answer.1
    );
    let json: Value = serde_json::from_slice(&answer.2).unwrap();
    assert_eq!(json["request_id"], "abc-123");
    // A full queue answers 429 with Retry-After.
    let slow = r#"{"class_label": 1, "num_steps": 50, "num_images": 4}"#;
    let flood: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { http(addr, "POST", "/v1/generate", slow).await }))
        .collect();
    let mut saw_429 = false;
    for task in flood {
        let answer = task.await.unwrap();
        if answer.0 == 429 {
            saw_429 = true;
            assert!(
                answer.1.to_ascii_lowercase().contains("retry-after: 1"),
                "{}",
                answer.1
            );
            assert_api_error(&answer, 429, "queue_full");
        } else {
            assert_eq!(answer.0, 200);
        }
    }
    assert!(
        saw_429,
        "8 slow requests into a queue of 1 must overflow it"
    );
    assert_still_serving(&server).await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_numerous_connections_cannot_exhaust_the_server() {
    let server = start(small_engine(), tight_http()).await;
    let addr = server.addr;
    // Many more half-sent requests than the connection limit (8).
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    // The header timeout (500 ms) frees their slots; a normal client gets through.
    let begin = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        http(
            addr,
            "POST",
            "/v1/generate",
            r#"{"class_label": 2, "num_steps": 2}"#,
        ),
    )
    .await
    .expect("a normal request gets through behind the slow ones");
    assert_eq!(answer.0, 200);
    assert!(begin.elapsed() < Duration::from_secs(20));
    // A body that never completes is answered 408 after the body timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"class",
        )
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(stream))
        .await
        .expect("the body timeout answers");
    assert_api_error(&answer, 408, "request_timeout");
    drop(idle);
    assert_still_serving(&server).await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_forward_fails_only_its_requests() {
    let server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    let answer = http(addr, "POST", INFER, &infer_body(1, PANIC_T).to_string()).await;
    assert_oip_error(&answer, 500, &["internal error", "injected backend bug"]);
    assert_still_serving(&server).await;
    let answer = http(addr, "POST", INFER, &infer_body(1, PANIC_T).to_string()).await;
    assert_eq!(answer.0, 500);
    assert_still_serving(&server).await;
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", "").await.2).unwrap();
    assert!(
        metrics.contains("linear_dit_requests_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_go_on_turns_unready_and_the_server_exits_with_an_error() {
    let mut server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    for _ in 0..3 {
        let answer = http(addr, "POST", INFER, &infer_body(1, PANIC_T).to_string()).await;
        assert!(answer.0 == 500 || answer.0 == 503, "{}", answer.0);
    }
    // Three panics in a row: the worker stops, readiness and every request say so.
    let state = tokio::time::timeout(Duration::from_secs(5), server.engine.stopped())
        .await
        .expect("the worker stops");
    assert!(matches!(state, WorkerState::Failed(_)), "{state:?}");
    // serve returns the failure (so the process exits non-zero) and stops listening.
    let result = tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("serve returns")
        .unwrap();
    let error = result.expect_err("serve must fail when the worker failed");
    assert!(error.to_string().contains("worker failed"), "{error}");
    assert!(!server.engine.is_ready());
    assert!(server.engine.unready_reason().contains("failed"));
    drop(server.stop.take());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_worker_answers_queued_requests_and_never_says_shutting_down() {
    let weights = tiny_class_conditional(4);
    let backend = PanickingBackend(CpuBackend::new(&weights).unwrap());
    let model = Arc::new(Model::from_backend(
        weights.config().clone(),
        Box::new(backend),
    ));
    let engine = Engine::start(model, small_engine().with_max_queue(16)).unwrap();
    let x = Tensor::new(vec![1, 16, 4], vec![0.1; 64]).unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (engine, x) = (engine.clone(), x.clone());
            tokio::spawn(async move { engine.forward(x, vec![PANIC_T], Some(vec![1]), None).await })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().expect_err("every call fails");
        let text = error.to_string();
        assert!(!text.contains("shutting down"), "{text}");
        assert!(
            text.contains("panicked") || text.contains("worker"),
            "{text}"
        );
    }
    let state = engine.stopped().await;
    assert!(matches!(state, WorkerState::Failed(_)), "{state:?}");
    let after = engine.forward(x, vec![10.0], Some(vec![1]), None).await;
    let text = after
        .expect_err("a failed engine serves nothing")
        .to_string();
    assert!(text.contains("worker has failed"), "{text}");
}

#[test]
fn engine_limits_that_can_never_be_met_are_refused_at_start() {
    let config = tiny_class_conditional(1).config().clone();
    let bad_queue = EngineConfig::default().with_max_queue(0);
    assert!(
        bad_queue
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_queue")
    );
    let one_row = EngineConfig::default().with_max_batch(1);
    let error = one_row.check_serves(&config, Grid::new(4, 4)).unwrap_err();
    assert!(error.to_string().contains("guided"), "{error}");
    let few_tokens = EngineConfig::default().with_max_tokens_per_forward(16);
    assert!(few_tokens.check_serves(&config, Grid::new(4, 4)).is_err());
    EngineConfig::default()
        .check_serves(&config, Grid::new(4, 4))
        .unwrap();
}

#[test]
fn library_inputs_are_checked_before_use() {
    // Shapes whose product wraps are errors, in every dimension.
    for shape in [
        vec![1, 4611686018427387905, 4],
        vec![4611686018427387904, 4, 1],
        vec![usize::MAX, 2],
    ] {
        assert!(
            Tensor::new(shape.clone(), vec![0.0; 4]).is_err(),
            "{shape:?}"
        );
    }
    // Grids whose product wraps cannot be parsed.
    for text in [
        "9223372036854775816x2",
        "4294967296x4294967296",
        "1x0",
        "x",
        "",
    ] {
        assert!(text.parse::<Grid>().is_err(), "{text}");
    }
    let weights = tiny_class_conditional(2);
    let model = Model::new(&weights, Device::Cpu).unwrap();
    let x = Tensor::new(vec![1, 16, 4], vec![0.2; 64]).unwrap();
    // t = num_steps is outside [0, num_steps).
    let error = model
        .forward(&Input::new(&x, &[1000.0]).with_labels(&[1]))
        .unwrap_err();
    assert!(error.to_string().contains("num_steps"), "{error}");
    assert!(
        model
            .forward(&Input::new(&x, &[999.5]).with_labels(&[1]))
            .is_ok()
    );
}

#[test]
fn the_edifice_flavor_takes_any_token_count_without_a_grid() {
    let config = Config {
        hidden_size: 24,
        num_layers: 1,
        num_heads: 3,
        flavor: Flavor::Edifice,
        ..Config::new(4)
    };
    let model = Model::new(
        &Weights::init(&config, InitKind::Random, 3).unwrap(),
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::new(vec![2, 17, 4], vec![0.3; 2 * 17 * 4]).unwrap();
    let eps = model.forward(&Input::new(&x, &[1.0, 500.0])).unwrap();
    assert_eq!(eps.shape(), &[2, 17, 4]);
    // The dit flavor still needs a square N or a grid.
    let dit = tiny_class_conditional(2);
    let model = Model::new(&dit, Device::Cpu).unwrap();
    let x = Tensor::new(vec![1, 17, 4], vec![0.3; 17 * 4]).unwrap();
    let error = model
        .forward(&Input::new(&x, &[1.0]).with_labels(&[0]))
        .unwrap_err();
    assert!(error.to_string().contains("grid"), "{error}");
}

fn linear_dit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run linear-dit")
}

/// A clean failure: exit status 1 (2 for a flag clap refuses; never a signal), one `error:`
/// line naming `words`, no panic, within `seconds`.
fn assert_clean_failure(args: &[&str], words: &[&str], seconds: u64) {
    let begin = Instant::now();
    let out = linear_dit(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?}: {:?} {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?}: one error line expected: {stderr}"
    );
    for w in words {
        assert!(
            errors[0].contains(w),
            "{args:?}: `{}` should mention `{w}`",
            errors[0]
        );
    }
    assert!(
        begin.elapsed() < Duration::from_secs(seconds),
        "{args:?} took {:?}",
        begin.elapsed()
    );
}

fn digits() -> String {
    format!("{}/assets/digits.safetensors", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn cli_sizes_from_flags_are_checked() {
    let weights = digits();
    let out = std::env::temp_dir().join(format!("hostile-{}.png", std::process::id()));
    let out = out.to_str().unwrap();
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", "--weights", &weights, "--out", out];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, words: &[&str]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_failure(&refs, words, 20);
    };
    run(sample(&["--size", "9223372036854775810x2"]), &["size"]);
    run(sample(&["--size", "4611686018427387904x2"]), &["too large"]);
    run(sample(&["--num", "1000000000"]), &["too large"]);
    run(sample(&["--num", "1", "--scale", "100000"]), &["PNG"]);
    run(sample(&["--num", "1", "--max-memory", "1K"]), &["limit"]);
    assert_clean_failure(&["--threads", "100000", "info"], &["threads"], 20);
    assert_clean_failure(&["--threads", "0", "info"], &["threads"], 20);
    assert_clean_failure(
        &[
            "bench",
            "--tokens",
            "4611686018427387904",
            "--hidden-size",
            "32",
            "--num-layers",
            "1",
            "--num-heads",
            "4",
        ],
        &["too large"],
        20,
    );
    assert_clean_failure(
        &[
            "bench",
            "--batch",
            "100000",
            "--tokens",
            "1000000",
            "--hidden-size",
            "32",
            "--num-layers",
            "1",
            "--num-heads",
            "4",
        ],
        &["limit"],
        20,
    );
    let fixture = common::fixture("dit_class.weights.safetensors");
    let io = common::fixture("dit_class.io.safetensors");
    let eps = std::env::temp_dir().join(format!("hostile-{}.safetensors", std::process::id()));
    assert_clean_failure(
        &[
            "forward",
            "--weights",
            fixture.to_str().unwrap(),
            "--input",
            io.to_str().unwrap(),
            "--output",
            eps.to_str().unwrap(),
            "--grid",
            "9223372036854775816x2",
        ],
        &["grid"],
        20,
    );
}

// ---- The binary tensor data extension and gRPC: the same guarantees on every wire. ----

use linear_dit::server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use linear_dit::server::grpc::proto::model_infer_request::InferInputTensor;
use linear_dit::server::grpc::proto::{InferTensorContents, ModelInferRequest};

/// One HTTP/1.1 infer with a raw (binary) body and extra header lines.
async fn post_bytes(addr: SocketAddr, headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    exchange(addr, "POST", INFER, headers, body).await
}

/// A binary-extension request: its extra header line and its body.
type BinaryBody = (String, Vec<u8>);

/// A binary-extension body for one sample: `x` binary with `x_size` declared and `x_bytes`
/// sent, `t` and `y` as JSON; returns the header line and the body.
fn binary_infer(x_shape: Value, x_size: Value, x_bytes: usize) -> BinaryBody {
    let header = json!({"inputs": [
        {"name": "x", "shape": x_shape, "datatype": "FP32", "parameters": {"binary_data_size": x_size}},
        {"name": "t", "shape": [1], "datatype": "FP32", "data": [10.0]},
        {"name": "y", "shape": [1], "datatype": "INT64", "data": [3]},
    ]});
    let mut body = header.to_string().into_bytes();
    let length = body.len();
    body.extend(std::iter::repeat_n(0u8, x_bytes));
    (
        format!("Inference-Header-Content-Length: {length}\r\n"),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_binary_bodies_are_400_naming_the_input_and_the_server_keeps_serving() {
    let server = start(small_engine(), HttpLimits::default()).await;
    let addr = server.addr;
    let good = 16 * 4 * 4;
    // The well-formed body is served (all zeros is a valid x).
    let (headers, body) = binary_infer(json!([1, 16, 4]), json!(good), good);
    let answer = post_bytes(addr, &headers, &body).await;
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));

    let cases: Vec<(BinaryBody, &[&str])> = vec![
        // binary_data_size ≠ shape × 4.
        (
            binary_infer(json!([1, 16, 4]), json!(good - 1), good - 1),
            &["`x`", "needs 256 bytes"],
        ),
        // Negative, fractional, huge and non-numeric sizes.
        (
            binary_infer(json!([1, 16, 4]), json!(-4), 0),
            &["`x`", "byte count"],
        ),
        (
            binary_infer(json!([1, 16, 4]), json!(4.5), 0),
            &["`x`", "byte count"],
        ),
        (
            binary_infer(json!([1, 16, 4]), json!(u64::MAX), good),
            &["`x`", "needs 256 bytes"],
        ),
        (
            binary_infer(json!([1, 16, 4]), json!("256"), good),
            &["`x`", "byte count"],
        ),
        // A shape whose element count wraps 64 bits, one whose byte count does, a negative one.
        (
            binary_infer(json!([1, 4611686018427387905u64, 4]), json!(16), 16),
            &["x", "2^64"],
        ),
        (
            binary_infer(json!([1, 1u64 << 31, 1u64 << 31]), json!(0), 0),
            &["`x`", "2^64"],
        ),
        (
            binary_infer(json!([1, -16, 4]), json!(good), good),
            &["`x`", "negative"],
        ),
        // The declared size runs past the body; bytes left over after the last input.
        (
            binary_infer(json!([1, 16, 4]), json!(good), good - 8),
            &["`x`", "past the end"],
        ),
        (
            binary_infer(json!([1, 16, 4]), json!(good), good + 3),
            &["3 bytes", "no input"],
        ),
    ];
    for ((headers, body), words) in &cases {
        assert_oip_error(&post_bytes(addr, headers, body).await, 400, words);
    }
    // The header length past the body, and header lengths that are not byte counts.
    let (_, body) = binary_infer(json!([1, 16, 4]), json!(good), good);
    let past = format!("Inference-Header-Content-Length: {}\r\n", body.len() + 1);
    assert_oip_error(&post_bytes(addr, &past, &body).await, 400, &["only"]);
    for bad in ["-1", "abc", "99999999999999999999999"] {
        let header = format!("Inference-Header-Content-Length: {bad}\r\n");
        assert_oip_error(
            &post_bytes(addr, &header, &body).await,
            400,
            &["byte count"],
        );
    }
    // Binary inputs without the header: the body is all JSON, so it is malformed.
    assert_oip_error(&post_bytes(addr, "", &body).await, 400, &["malformed"]);
    // Both or neither of data and binary_data_size; outputs and extensions it lacks.
    let mut both = infer_body(1, 10.0);
    both["inputs"][1]["parameters"] = json!({"binary_data_size": 4});
    let mut neither = infer_body(1, 10.0);
    neither["inputs"][1].as_object_mut().unwrap().remove("data");
    let mut output = infer_body(1, 10.0);
    output["outputs"] = json!([{"name": "logits"}]);
    let mut shm = infer_body(1, 10.0);
    shm["inputs"][0]["parameters"] = json!({"shared_memory_region": "r"});
    let mut flag = infer_body(1, 10.0);
    flag["parameters"] = json!({"binary_data_output": "yes"});
    for (body, words) in [
        (both, &["`t`", "both"][..]),
        (neither, &["`t`", "neither"]),
        (output, &["unknown output `logits`"]),
        (shm, &["`x`", "shared_memory_region"]),
        (flag, &["binary_data_output"]),
    ] {
        let answer = post_bytes(addr, "", body.to_string().as_bytes()).await;
        assert_oip_error(&answer, 400, words);
    }
    assert_still_serving(&server).await;
    let errors = cases.len() as u64 + 1 + 3 + 1 + 5;
    assert_eq!(
        server
            .engine
            .metrics()
            .http_count("/v2/models/{model}/infer", 400),
        errors
    );
    server.engine.shutdown().await;
}

/// The hostile server with the gRPC endpoint too: (server, gRPC address).
async fn start_grpc(engine: EngineConfig, limits: HttpLimits) -> (Server, SocketAddr) {
    let server = Server::start(panicking_model(), engine, limits, true).await;
    let grpc = server.grpc.expect("started with gRPC");
    (server, grpc)
}

fn grpc_tensor(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents: None,
    }
}

/// A valid raw-contents ModelInfer of one sample whose `x` has `x_shape` and `x_bytes` bytes.
fn grpc_infer(x_shape: &[i64], x_bytes: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "linear-dit".into(),
        inputs: vec![
            grpc_tensor("x", "FP32", x_shape),
            grpc_tensor("t", "FP32", &[1]),
            grpc_tensor("y", "INT64", &[1]),
        ],
        raw_input_contents: vec![
            vec![0; x_bytes],
            10f32.to_le_bytes().to_vec(),
            3i64.to_le_bytes().to_vec(),
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grpc_requests_are_clean_errors_and_the_server_keeps_serving() {
    let (server, grpc) = start_grpc(small_engine(), tight_http()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let good = 16 * 4 * 4;
    client
        .model_infer(grpc_infer(&[1, 16, 4], good))
        .await
        .unwrap();

    let mut count_mismatch = grpc_infer(&[1, 16, 4], good);
    count_mismatch.raw_input_contents.pop();
    let mut typed_and_raw = grpc_infer(&[1, 16, 4], good);
    typed_and_raw.inputs[1].contents = Some(InferTensorContents {
        fp32_contents: vec![10.0],
        ..Default::default()
    });
    let mut wrong_field = grpc_infer(&[1, 16, 4], good);
    wrong_field.raw_input_contents.clear();
    for (i, input) in wrong_field.inputs.iter_mut().enumerate() {
        input.contents = Some(InferTensorContents {
            fp64_contents: vec![0.0; if i == 0 { 64 } else { 1 }],
            ..Default::default()
        });
    }
    let mut half = grpc_infer(&[1, 16, 4], good / 2);
    half.inputs[0].datatype = "FP16".into();
    let mut rows = grpc_infer(&[9, 16, 4], 9 * good);
    rows.inputs[1].shape = vec![9];
    rows.raw_input_contents[1] = [10f32; 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    rows.inputs[2].shape = vec![9];
    rows.raw_input_contents[2] = [3i64; 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    let cases = [
        // The element count wraps 64 bits; the byte count does; a negative size.
        (grpc_infer(&[1, 4611686018427387905, 4], 16), &["2^64"][..]),
        (grpc_infer(&[1, 1 << 31, 1 << 31], 16), &["`x`", "2^64"]),
        (grpc_infer(&[1, -16, 4], good), &["`x`", "negative"]),
        // Raw contents of the wrong size, or not one per input.
        (
            grpc_infer(&[1, 16, 4], good - 4),
            &["`x`", "needs 256 bytes, got 252"],
        ),
        (count_mismatch, &["2 entries for 3 inputs"]),
        (typed_and_raw, &["`t`", "raw_input_contents"]),
        (wrong_field, &["`x`", "fp32_contents"]),
        (half, &["`x`", "FP32", "FP16"]),
        // More rows than --max-batch: refused before it is queued.
        (rows, &["at most 8 rows"]),
    ];
    let n = cases.len() as u64;
    for (request, words) in cases {
        let error = client.model_infer(request).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        for w in words {
            assert!(
                error.message().contains(w),
                "`{}` should mention `{w}`",
                error.message()
            );
        }
        assert!(error.metadata().get("x-request-id").is_some());
    }
    // A message over the body limit (64 KiB here).
    let big = client
        .model_infer(grpc_infer(&[1, 16 * 1024 + 16, 4], good * 1025))
        .await
        .unwrap_err();
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    // Not gRPC at all on the gRPC port: the connection is closed, nothing else happens.
    let mut junk = TcpStream::connect(grpc).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), junk.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection that is not HTTP/2"
    );

    // Still serving, on both ports.
    client
        .model_infer(grpc_infer(&[1, 16, 4], good))
        .await
        .unwrap();
    assert_still_serving(&server).await;
    let metrics = server.engine.metrics();
    assert_eq!(metrics.grpc_count("ModelInfer", "INVALID_ARGUMENT"), n);
    assert_eq!(metrics.grpc_count("ModelInfer", "RESOURCE_EXHAUSTED"), 1);
    assert_eq!(metrics.grpc_count("ModelInfer", "OK"), 2);
    assert_eq!(metrics.queue_depth(), 0);
    drop(client);
    let Server { stop, task, .. } = server;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    task.await.unwrap().unwrap();
}
