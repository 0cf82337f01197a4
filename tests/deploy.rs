//! The deployment files (`deploy/`) agree with the server they deploy. No schema validator
//! for KServe's CRDs installs from the registries CI reaches (kubeconform and KServe's CRD
//! bundle come from GitHub), so the manifests are checked here, structurally: the kinds and
//! API versions, the runtime and model format the InferenceService names, ports that match
//! the container's flags, the Dockerfile and the server's defaults, probe and metrics paths
//! that the real router answers, container args that `linear-dit serve --help` accepts, a
//! drain shorter than the pod's grace period, and KEDA autoscaling on a metric `/metrics`
//! really exports.

mod common;

use linear_dit::engine::{Engine, EngineConfig};
use linear_dit::server::{AppState, HttpLimits, serve};
use linear_dit::{Device, Model};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// A YAML manifest as JSON values.
fn manifest(file: &str) -> Value {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {value}"))
}

/// The runtime container's args as a flag → value map (args[0] is the subcommand).
fn container_args(runtime: &Value) -> (String, Vec<(String, String)>) {
    let args: Vec<&str> = runtime["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("every arg is a string"))
        .collect();
    let flags = args[1..]
        .chunks(2)
        .map(|pair| {
            assert!(pair[0].starts_with("--"), "{pair:?}: flag then value");
            assert_eq!(pair.len(), 2, "{pair:?}: every flag has a value");
            (pair[0].to_string(), pair[1].to_string())
        })
        .collect();
    (args[0].to_string(), flags)
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> &'a str {
    flags
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} missing from the container args"))
}

fn serve_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_linear-dit"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_serving_runtime_matches_the_server() {
    let runtime = manifest("kserve/servingruntime.yaml");
    assert_eq!(
        str_at(&runtime, "/apiVersion"),
        "serving.kserve.io/v1alpha1"
    );
    assert_eq!(str_at(&runtime, "/kind"), "ServingRuntime");
    assert_eq!(str_at(&runtime, "/metadata/name"), "linear-dit");
    let spec = &runtime["spec"];
    assert!(
        spec["supportedModelFormats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "linear-dit")
    );
    assert_eq!(
        spec["protocolVersions"],
        serde_json::json!(["v2", "grpc-v2"])
    );
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["name"], "kserve-container");

    // Every flag is one `serve` takes; the server listens where the ports say.
    let (command, flags) = container_args(&runtime);
    assert_eq!(command, "serve");
    let help = serve_help();
    for (name, _) in &flags {
        assert!(
            help.contains(&format!("{name} <")),
            "`linear-dit serve` has no flag {name}"
        );
    }
    assert_eq!(
        flag(&flags, "--host"),
        "0.0.0.0",
        "reachable from outside the pod"
    );
    let http: u16 = flag(&flags, "--port").parse().unwrap();
    let grpc: u16 = flag(&flags, "--grpc-port").parse().unwrap();
    assert_eq!(
        http, 8080,
        "the server's default port and KServe's HTTP port"
    );
    assert!(
        help.contains("[default: 8080]"),
        "serve's default port changed"
    );
    assert_eq!(grpc, 8081);
    let ports: Vec<(String, u64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["protocol"], "TCP");
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("http1".to_string(), http as u64),
            ("h2c".to_string(), grpc as u64)
        ],
        "KServe names the HTTP port http1 and the gRPC port h2c"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], http, "{probe}");
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        str_at(&runtime, "/spec/annotations/prometheus.kserve.io~1port"),
        http.to_string()
    );
    assert_eq!(
        str_at(&runtime, "/spec/annotations/prometheus.kserve.io~1path"),
        "/metrics"
    );
    for side in ["requests", "limits"] {
        assert_eq!(
            container["resources"][side]["nvidia.com/gpu"], "1",
            "{side}"
        );
    }

    // The weights are where the image puts them.
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let weights = flag(&flags, "--weights");
    assert!(
        dockerfile.contains(&format!("COPY assets/digits.safetensors {weights}")),
        "the image has no {weights}"
    );
}

#[test]
fn the_inference_service_uses_the_runtime_and_scales_on_queue_depth() {
    let runtime = manifest("kserve/servingruntime.yaml");
    let service = manifest("kserve/inferenceservice.yaml");
    assert_eq!(str_at(&service, "/apiVersion"), "serving.kserve.io/v1beta1");
    assert_eq!(str_at(&service, "/kind"), "InferenceService");
    // KServe reads annotations as strings only.
    let annotations = service["metadata"]["annotations"].as_object().unwrap();
    assert!(
        annotations.values().all(Value::is_string),
        "{annotations:?}"
    );
    assert_eq!(annotations["serving.kserve.io/autoscalerClass"], "keda");
    assert_eq!(
        annotations["serving.kserve.io/deploymentMode"], "RawDeployment",
        "KEDA autoscaling needs RawDeployment"
    );
    assert_eq!(
        annotations["serving.kserve.io/enable-prometheus-scraping"],
        "true"
    );
    let predictor = &service["spec"]["predictor"];
    let model = &predictor["model"];
    assert_eq!(model["runtime"], runtime["metadata"]["name"]);
    let format = &model["modelFormat"]["name"];
    assert!(
        runtime["spec"]["supportedModelFormats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| &f["name"] == format)
    );
    assert!(
        runtime["spec"]["protocolVersions"]
            .as_array()
            .unwrap()
            .contains(&model["protocolVersion"])
    );
    let (min, max) = (
        predictor["minReplicas"].as_u64().unwrap(),
        predictor["maxReplicas"].as_u64().unwrap(),
    );
    assert!(1 <= min && min <= max, "{min}..{max}");

    // The drain ends before Kubernetes kills the pod.
    let (_, flags) = container_args(&runtime);
    let drain: u64 = flag(&flags, "--drain-timeout-s").parse().unwrap();
    let grace = predictor["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        drain < grace,
        "--drain-timeout-s {drain} ≥ grace period {grace}"
    );

    // Autoscaling: an external Prometheus metric on the queue depth, with a target.
    let metrics = predictor["autoScaling"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1);
    let external = &metrics[0];
    assert_eq!(external["type"], "External");
    assert_eq!(external["external"]["metric"]["backend"], "prometheus");
    assert!(
        str_at(external, "/external/metric/serverAddress").starts_with("http"),
        "{external}"
    );
    assert!(str_at(external, "/external/metric/query").contains("linear_dit_queue_depth"));
    assert_eq!(external["external"]["target"]["type"], "Value");
    let target: f64 = str_at(external, "/external/target/value").parse().unwrap();
    assert!(target > 0.0);
    assert_eq!(annotations["prometheus.io/port"], flag(&flags, "--port"));
}

#[test]
fn the_image_exposes_the_ports_and_runs_as_a_user() {
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let from: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(from[1].starts_with("FROM nvidia/cuda:13.0."), "{}", from[1]);
    assert!(from[1].contains("-runtime-"), "{}", from[1]);
    // The runtime's CUDA matches the toolkit the kernels are compiled with.
    let toolkit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/install-cuda-toolkit.sh"),
    )
    .unwrap();
    assert!(toolkit.contains("nvidia-cuda-nvcc==13.0."));
    assert!(dockerfile.contains("scripts/install-cuda-toolkit.sh"));
    assert!(dockerfile.contains("cargo build --release --locked --bin linear-dit"));
    assert!(lines.contains(&"EXPOSE 8080 8081"));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(dockerfile.contains(r#""--port", "8080", "--grpc-port", "8081""#));
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_and_metrics_paths_are_served() {
    let runtime = manifest("kserve/servingruntime.yaml");
    let container = &runtime["spec"]["containers"][0];
    let paths = [
        str_at(container, "/livenessProbe/httpGet/path"),
        str_at(container, "/readinessProbe/httpGet/path"),
        str_at(&runtime, "/spec/annotations/prometheus.kserve.io~1path"),
    ];
    let model = Arc::new(Model::new(&common::tiny_class_conditional(4), Device::Cpu).unwrap());
    let engine = Engine::start(model, EngineConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(engine, HttpLimits::default());
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    for path in paths {
        let (status, text) = get(addr, path).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    let (_, metrics) = get(addr, "/metrics").await;
    let service = manifest("kserve/inferenceservice.yaml");
    let query = str_at(
        &service,
        "/spec/predictor/autoScaling/metrics/0/external/metric/query",
    );
    let metric = query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|word| word.starts_with("linear_dit_"))
        .unwrap();
    assert!(
        metrics.contains(&format!("\n{metric} ")),
        "/metrics has no {metric}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
