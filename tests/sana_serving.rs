//! Serving the `sana` flavor end to end over HTTP, on the tiny diffusers fixtures
//! (`tests/fixtures/sana/base`: classifier-free guidance; `sana/sprint`: `guidance_embeds`,
//! scm):
//!
//! - `/v1/generate` answers the latents `sample_sana` computes for the same request, bit for
//!   bit — solo, and with requests of other resolutions and caption lengths in flight at
//!   the same time (step-level batching, captions padded with masked tokens);
//! - streaming reports every step, then the same latents;
//! - the Open Inference Protocol infer equals `SanaModel::forward`, over HTTP and gRPC;
//! - every hostile body is a 4xx naming the problem, limits are enforced, and the worker
//!   keeps serving afterwards.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::server::{TestServer, exchange, http};
use common::{pseudo_random, tiny_class_conditional};
use linear_dit::engine::{Engine, EngineConfig, EngineHandle};
use linear_dit::model::sana::SanaInput;
use linear_dit::sampling::flow::{Caption, FlowParams, FlowSamplerKind, SanaRequest, sample_sana};
use linear_dit::server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use linear_dit::server::grpc::proto::model_infer_request::InferInputTensor;
use linear_dit::server::grpc::proto::{ModelInferRequest, ModelMetadataRequest};
use linear_dit::server::{AppState, HttpLimits, serve_with_grpc};
use linear_dit::tensor_file::{RawTensor, TensorFile, serialize_tensors};
use linear_dit::{Device, Model, SanaModel, Tensor};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sana")
        .join(name)
}

fn model(name: &str) -> Arc<SanaModel> {
    Arc::new(SanaModel::load(fixture(name)).unwrap())
}

/// A server around a `sana` engine.
struct SanaServer {
    addr: SocketAddr,
    grpc: SocketAddr,
    engine: EngineHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SanaServer {
    async fn start(model: Arc<SanaModel>, config: EngineConfig, limits: HttpLimits) -> Self {
        let engine = Engine::start_sana(model, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_grpc(
            listener,
            Some(grpc_listener),
            AppState::new(engine.clone(), limits),
            async move {
                let _ = stopped.await;
            },
        ));
        SanaServer {
            addr,
            grpc,
            engine,
            stop,
            task,
        }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    async fn post(&self, body: &Value) -> (u16, String, Vec<u8>) {
        http(self.addr, "POST", "/v1/generate", &body.to_string()).await
    }
}

/// Caption embeddings `[S, 12]` (the fixtures' caption_channels) and a mask that drops
/// the last token when `drop_last`.
fn caption_tensors(tokens: usize, seed: u64, drop_last: bool) -> (Tensor, Option<Vec<f32>>) {
    let embeds = Tensor::new(vec![tokens, 12], pseudo_random(tokens * 12, seed, 1.0)).unwrap();
    let mask = drop_last.then(|| {
        let mut m = vec![1.0; tokens];
        m[tokens - 1] = 0.0;
        m
    });
    (embeds, mask)
}

/// Base64 of a safetensors file of `tensors`.
fn file_b64(tensors: Vec<(&str, RawTensor)>) -> String {
    let tensors: Vec<(String, RawTensor)> = tensors
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    BASE64.encode(serialize_tensors(&tensors, HashMap::new()).unwrap())
}

/// A captions file as the pipelines' `encode_prompt` writes it: `prompt_embeds` [1, S, C]
/// and an I64 `prompt_attention_mask` [1, S].
fn captions_b64(embeds: &Tensor, mask: Option<&[f32]>) -> String {
    let mut shape = vec![1];
    shape.extend_from_slice(embeds.shape());
    let mut tensors = vec![("prompt_embeds", RawTensor::from_f32(shape, embeds.data()))];
    if let Some(mask) = mask {
        let ints: Vec<i64> = mask.iter().map(|&v| v as i64).collect();
        tensors.push((
            "prompt_attention_mask",
            RawTensor::from_i64(vec![1, mask.len()], &ints),
        ));
    }
    file_b64(tensors)
}

/// One request, as the test sends it and as `sample_sana` runs it.
struct Case {
    prompt: (usize, u64, bool),
    negative: Option<(usize, u64, bool)>,
    height: usize,
    width: usize,
    images: usize,
    seed: u64,
    sampler: FlowSamplerKind,
    steps: usize,
    guidance: f32,
}

impl Case {
    fn body(&self) -> Value {
        let (embeds, mask) = caption_tensors(self.prompt.0, self.prompt.1, self.prompt.2);
        let mut body = json!({
            "prompt_embeds": captions_b64(&embeds, mask.as_deref()),
            "height": self.height * 32,
            "width": self.width * 32,
            "num_images": self.images,
            "seed": self.seed,
            "sampler": self.sampler.name(),
            "num_steps": self.steps,
            "guidance_scale": self.guidance,
        });
        if let Some((s, seed, drop)) = self.negative {
            let (embeds, mask) = caption_tensors(s, seed, drop);
            body["negative_embeds"] = json!(captions_b64(&embeds, mask.as_deref()));
        }
        body
    }

    /// The latents of a solo run of the library's sampler.
    fn solo(&self, model: &SanaModel) -> Tensor {
        let caption = |(s, seed, drop): (usize, u64, bool)| {
            let (embeds, mask) = caption_tensors(s, seed, drop);
            Arc::new(Caption::new(model.config(), embeds, mask).unwrap())
        };
        let params = FlowParams::for_model(model.config())
            .with_sampler(self.sampler)
            .with_steps(self.steps)
            .with_guidance(self.guidance);
        let request = SanaRequest {
            prompt: caption(self.prompt),
            negative: self.negative.map(caption),
            height: self.height,
            width: self.width,
            images: self.images,
            seed: self.seed,
        };
        sample_sana(model, &params, &request, |_, _| {}).unwrap()
    }
}

fn latents(body: &[u8]) -> Tensor {
    let file = TensorFile::from_bytes("answer", body).unwrap();
    assert_eq!(file.names(), vec!["latents"]);
    Tensor::from_raw("latents", &file.tensor("latents").unwrap()).unwrap()
}

fn assert_bitwise(ours: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    let differ = ours
        .data()
        .iter()
        .zip(want.data())
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differ, 0,
        "{what}: {differ} values differ from the solo run"
    );
}

fn guided_case() -> Case {
    Case {
        prompt: (5, 11, true),
        negative: Some((3, 12, false)),
        height: 8,
        width: 8,
        images: 2,
        seed: 7,
        sampler: FlowSamplerKind::DpmPp2m,
        steps: 6,
        guidance: 4.5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_with_guidance_equals_sample_sana() {
    let model = model("base");
    let server = SanaServer::start(
        model.clone(),
        EngineConfig::default(),
        HttpLimits::default(),
    )
    .await;
    let case = guided_case();
    let (status, head, body) = server.post(&case.body()).await;
    assert_eq!(status, 200, "{head} {}", String::from_utf8_lossy(&body));
    let ours = latents(&body);
    assert_eq!(ours.shape(), &[2, 4, 8, 8]);
    assert_bitwise(&ours, &case.solo(&model), "guided request");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_together_equal_their_solo_runs() {
    let model = model("base");
    let server = SanaServer::start(
        model.clone(),
        EngineConfig::default(),
        HttpLimits::default(),
    )
    .await;
    let cases = [
        guided_case(),
        // Another resolution, longer captions.
        Case {
            prompt: (9, 21, false),
            negative: Some((2, 22, false)),
            height: 4,
            width: 6,
            images: 1,
            seed: 3,
            sampler: FlowSamplerKind::DpmPp2m,
            steps: 6,
            guidance: 3.0,
        },
        // The first one's size with a caption of another length, unguided, another sampler.
        Case {
            prompt: (2, 31, false),
            negative: None,
            height: 8,
            width: 8,
            images: 1,
            seed: 5,
            sampler: FlowSamplerKind::Euler,
            steps: 6,
            guidance: 1.0,
        },
    ];
    let solo_forwards: u64 = cases.iter().map(|c| c.steps as u64).sum();
    let before = server.engine.metrics().forward_seconds.totals().0;
    let bodies: Vec<Value> = cases.iter().map(Case::body).collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|b| server.post(b))).await;
    let forwards = server.engine.metrics().forward_seconds.totals().0 - before;
    for (i, ((status, _, body), case)) in answers.iter().zip(&cases).enumerate() {
        assert_eq!(*status, 200, "{i}: {}", String::from_utf8_lossy(body));
        assert_bitwise(&latents(body), &case.solo(&model), &format!("request {i}"));
    }
    println!("{forwards} forwards for {solo_forwards} solo steps");
    server.shutdown().await;
}

/// The engine batching equivalence without HTTP timing in the way: requests queued
/// before the worker takes any are admitted together, so every step of the two 8×8
/// requests (captions of 5 and 2 tokens) shares one forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_batches_latent_sizes_and_caption_lengths() {
    let model = model("base");
    let engine = Engine::start_sana(model.clone(), EngineConfig::default()).unwrap();
    let cases = [
        guided_case(),
        Case {
            prompt: (9, 41, true),
            negative: Some((4, 42, false)),
            height: 4,
            width: 6,
            images: 2,
            seed: 9,
            sampler: FlowSamplerKind::Euler,
            steps: 6,
            guidance: 2.0,
        },
        Case {
            prompt: (2, 43, false),
            negative: None,
            height: 8,
            width: 8,
            images: 1,
            seed: 1,
            sampler: FlowSamplerKind::DpmPp2m,
            steps: 6,
            guidance: 1.0,
        },
    ];
    let requests: Vec<_> = cases
        .iter()
        .map(|case| {
            let body = case.body().to_string();
            linear_dit::server::decode_sana_generate_request(body.as_bytes(), model.config())
                .unwrap()
                .0
        })
        .collect();
    let generations: Vec<_> = requests
        .into_iter()
        .map(|r| engine.generate_sana_with_progress(r).unwrap())
        .collect();
    for (i, (mut generation, case)) in generations.into_iter().zip(&cases).enumerate() {
        let generated = loop {
            match generation.next().await.unwrap() {
                linear_dit::engine::GenerationEvent::Step(_) => {}
                linear_dit::engine::GenerationEvent::Done(answer) => break answer.unwrap(),
            }
        };
        assert_bitwise(
            &generated.images,
            &case.solo(&model),
            &format!("request {i}"),
        );
    }
    // Two latent sizes, six steps each: 12 forwards when all three share their steps; at
    // most 18 if the first step ran before the others were queued.
    let forwards = engine.metrics().forward_seconds.totals().0;
    assert!(
        forwards <= 14,
        "{forwards} forwards: the requests were not batched"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_on_the_sprint_model_equals_sample_sana() {
    let model = model("sprint");
    let server = SanaServer::start(
        model.clone(),
        EngineConfig::default(),
        HttpLimits::default(),
    )
    .await;
    let case = Case {
        prompt: (6, 51, true),
        negative: None,
        height: 8,
        width: 4,
        images: 2,
        seed: 13,
        sampler: FlowSamplerKind::Scm,
        steps: 2,
        guidance: 4.5,
    };
    let (status, _, body) = server.post(&case.body()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_bitwise(&latents(&body), &case.solo(&model), "scm request");
    // The defaults of a guidance_embeds model are scm, 2 steps.
    let mut defaults = case.body();
    let object = defaults.as_object_mut().unwrap();
    object.remove("sampler");
    object.remove("num_steps");
    let (status, _, again) = server.post(&defaults).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&again));
    assert_bitwise(&latents(&again), &latents(&body), "defaults: scm, 2 steps");
    server.shutdown().await;
}

/// Server-sent events as (event name, JSON data).
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
async fn streaming_reports_every_step_then_the_latents() {
    let model = model("base");
    let server = SanaServer::start(
        model.clone(),
        EngineConfig::default(),
        HttpLimits::default(),
    )
    .await;
    let case = guided_case();
    let mut body = case.body();
    body["stream"] = json!(true);
    let (status, head, events) = server.post(&body).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let events = parse_events(&events);
    let steps: Vec<u64> = events
        .iter()
        .filter(|(name, _)| name == "step")
        .map(|(_, data)| data["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=case.steps as u64).collect::<Vec<_>>());
    let (name, result) = events.last().unwrap();
    assert_eq!(name, "result", "{result}");
    assert_eq!(result["format"], "safetensors");
    let bytes = BASE64.decode(result["latents"].as_str().unwrap()).unwrap();
    assert_bitwise(&latents(&bytes), &case.solo(&model), "streamed latents");
    server.shutdown().await;
}

/// `[B, S]` masks as INT64 JSON, the rest as FP32 JSON.
fn infer_body(
    x: &Tensor,
    t: &[f32],
    captions: &Tensor,
    mask: &[i64],
    guidance: Option<&[f32]>,
) -> Value {
    let mut inputs = vec![
        json!({"name": "x", "datatype": "FP32", "shape": x.shape(), "data": x.data()}),
        json!({"name": "t", "datatype": "FP32", "shape": [t.len()], "data": t}),
        json!({"name": "encoder_hidden_states", "datatype": "FP32", "shape": captions.shape(), "data": captions.data()}),
        json!({"name": "encoder_attention_mask", "datatype": "INT64", "shape": &captions.shape()[..2], "data": mask}),
    ];
    if let Some(g) = guidance {
        inputs.push(json!({"name": "guidance", "datatype": "FP32", "shape": [g.len()], "data": g}));
    }
    json!({"id": "sana-1", "inputs": inputs})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oip_infer_equals_the_forward() {
    for (name, guidance) in [("base", None), ("sprint", Some(vec![0.45f32, 0.3]))] {
        let model = model(name);
        let server = SanaServer::start(
            model.clone(),
            EngineConfig::default(),
            HttpLimits::default(),
        )
        .await;
        let x = Tensor::new(vec![2, 4, 6, 8], pseudo_random(2 * 4 * 48, 61, 1.0)).unwrap();
        let t = match name {
            "base" => vec![900.0f32, 12.5],
            _ => vec![0.9f32, 0.3],
        };
        let captions = Tensor::new(vec![2, 5, 12], pseudo_random(120, 62, 1.0)).unwrap();
        let mask = vec![1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1];
        let body = infer_body(&x, &t, &captions, &mask, guidance.as_deref());
        let (status, _, answer) = http(
            server.addr,
            "POST",
            "/v2/models/linear-dit/infer",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["id"], "sana-1");
        let output = &answer["outputs"][0];
        assert_eq!(output["name"], "v");
        assert_eq!(output["shape"], json!([2, 4, 6, 8]));
        let ours: Vec<f32> = output["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mask_f: Vec<f32> = mask.iter().map(|&v| v as f32).collect();
        let want = model
            .forward(&SanaInput {
                x: &x,
                t: &t,
                captions: &captions,
                mask: Some(&mask_f),
                guidance: guidance.as_deref(),
            })
            .unwrap();
        // JSON carries f32 exactly (serde writes the shortest round-tripping decimal).
        let differ = ours
            .iter()
            .zip(want.data())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "{name}: the infer answer differs from the forward"
        );
        // The metadata describes the sana inputs.
        let (status, _, meta) = http(server.addr, "GET", "/v2/models/linear-dit", "").await;
        assert_eq!(status, 200);
        let meta: Value = serde_json::from_slice(&meta).unwrap();
        let names: Vec<&str> = meta["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        let mut expected = vec!["x", "t", "encoder_hidden_states", "encoder_attention_mask"];
        if guidance.is_some() {
            expected.push("guidance");
        }
        assert_eq!(names, expected, "{name}");
        assert_eq!(meta["outputs"][0]["name"], "v");
        assert_eq!(meta["inputs"][2]["shape"], json!([-1, -1, 12]));
        server.shutdown().await;
    }
}

/// A body with `field` set to `value` over the valid guided request.
fn with(field: &str, value: Value) -> Value {
    let mut body = guided_case().body();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = guided_case().body();
    body.as_object_mut().unwrap().remove(field);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_generate_bodies_are_refused_by_name_and_the_worker_keeps_serving() {
    let model = model("base");
    let limits = HttpLimits::default().with_max_body_bytes(1 << 20);
    let config = EngineConfig::default()
        .with_max_images_per_request(4)
        .with_max_steps_per_request(30)
        .with_max_tokens_per_forward(512);
    let server = SanaServer::start(model.clone(), config, limits).await;
    let (embeds, _) = caption_tensors(4, 70, false);
    let b64 = |t: Vec<(&str, RawTensor)>| json!(file_b64(t));
    let f32_file = |name: &str, shape: Vec<usize>, values: Vec<f32>| {
        b64(vec![(name, RawTensor::from_f32(shape, &values))])
    };
    let with_mask = |mask: RawTensor| {
        b64(vec![
            ("prompt_embeds", embeds.to_raw()),
            ("prompt_attention_mask", mask),
        ])
    };
    let mut nan = embeds.data().to_vec();
    nan[5] = f32::NAN;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "bad base64",
            with("prompt_embeds", json!("@@not base64@@")),
            "`prompt_embeds` is not valid base64",
        ),
        (
            "not safetensors",
            with("prompt_embeds", json!(BASE64.encode(b"hello, world"))),
            "`prompt_embeds` is not a safetensors file",
        ),
        (
            "wrong tensor name",
            with(
                "prompt_embeds",
                f32_file("embeds", vec![4, 12], embeds.data().to_vec()),
            ),
            "holds a tensor `embeds`",
        ),
        (
            "negative names",
            with(
                "negative_embeds",
                f32_file("negative_embeds", vec![4, 12], embeds.data().to_vec()),
            ),
            "`negative_embeds` holds a tensor `negative_embeds`",
        ),
        (
            "no embeds",
            with(
                "prompt_embeds",
                b64(vec![(
                    "prompt_attention_mask",
                    RawTensor::from_i64(vec![4], &[1; 4]),
                )]),
            ),
            "has no tensor `prompt_embeds`",
        ),
        (
            "rank 3 batch 2",
            with(
                "prompt_embeds",
                f32_file(
                    "prompt_embeds",
                    vec![2, 2, 12],
                    embeds.data()[..48].to_vec(),
                ),
            ),
            "has shape [2, 2, 12]",
        ),
        (
            "wrong width",
            with(
                "prompt_embeds",
                f32_file("prompt_embeds", vec![6, 8], embeds.data()[..48].to_vec()),
            ),
            "S × 12",
        ),
        (
            "integer embeds",
            with(
                "prompt_embeds",
                b64(vec![(
                    "prompt_embeds",
                    RawTensor::from_i64(vec![2, 12], &[0; 24]),
                )]),
            ),
            "is I64",
        ),
        (
            "too many tokens",
            with(
                "prompt_embeds",
                f32_file("prompt_embeds", vec![4097, 12], vec![0.5; 4097 * 12]),
            ),
            "S ≤ 4096",
        ),
        (
            "NaN",
            with("prompt_embeds", f32_file("prompt_embeds", vec![4, 12], nan)),
            "non-finite",
        ),
        (
            "mask value",
            with(
                "prompt_embeds",
                with_mask(RawTensor::from_i64(vec![4], &[1, 2, 1, 1])),
            ),
            "prompt_attention_mask",
        ),
        (
            "mask drops all",
            with(
                "prompt_embeds",
                with_mask(RawTensor::from_i64(vec![1, 4], &[0; 4])),
            ),
            "drops every caption token",
        ),
        (
            "mask length",
            with(
                "prompt_embeds",
                with_mask(RawTensor::from_f32(vec![3], &[1.0; 3])),
            ),
            "3 values for S = 4",
        ),
        (
            "mask rank",
            with(
                "prompt_embeds",
                with_mask(RawTensor::from_f32(vec![2, 2], &[1.0; 4])),
            ),
            "expected [S] or [1, S]",
        ),
        ("height", with("height", json!(100)), "`height` is 100"),
        ("width 0", with("width", json!(0)), "`width` is 0"),
        (
            "huge height",
            with("height", json!(1u64 << 60)),
            "latents need",
        ),
        (
            "negative height",
            with("height", json!(-32)),
            "malformed JSON",
        ),
        (
            "unknown field",
            with("colour", json!("red")),
            "unknown field `colour`",
        ),
        (
            "class_label",
            with("class_label", json!(3)),
            "`class_label` belongs to DiT models",
        ),
        (
            "eta",
            with("eta", json!(0.5)),
            "`eta` belongs to DiT models",
        ),
        ("png", with("format", json!("png")), "DC-AE"),
        (
            "format",
            with("format", json!("jpeg")),
            "unknown format `jpeg`",
        ),
        (
            "sampler",
            with("sampler", json!("ddim")),
            "`sampler`: unknown sampler `ddim`",
        ),
        (
            "scm on base",
            with("sampler", json!("scm")),
            "scm samples SANA-Sprint",
        ),
        (
            "no negative",
            without("negative_embeds"),
            "`negative_embeds` are required",
        ),
        (
            "no prompt",
            without("prompt_embeds"),
            "missing field `prompt_embeds`",
        ),
        (
            "negative unguided",
            with("guidance_scale", json!(1.0)),
            "`negative_embeds` were given but the request is not guided",
        ),
        (
            "guidance",
            with("guidance_scale", json!(1e39)),
            "`guidance`",
        ),
        ("shift", with("flow_shift", json!(-1.0)), "`flow_shift`"),
        ("zero steps", with("num_steps", json!(0)), "steps"),
        (
            "zero images",
            with("num_images", json!(0)),
            "`num_images` must be at least 1",
        ),
        (
            "images limit",
            with("num_images", json!(5)),
            "at most 4 per request",
        ),
        (
            "steps limit",
            with("num_steps", json!(31)),
            "at most 30 per request",
        ),
        (
            "tokens limit",
            with("height", json!(32 * 32)),
            "at most 64 rows and 512 tokens",
        ),
        ("not JSON", json!("just a string"), "malformed JSON"),
    ];
    for (what, body, needle) in &cases {
        let (status, _, answer) = server.post(body).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{what}: {text}");
        let error: Value = serde_json::from_slice(&answer).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{what}: `{needle}` not in {message}"
        );
    }
    // The body limit applies: 413 before anything is read (the server answers from the
    // declared length and closes, so the body is not sent).
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/generate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        2 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let (status, _, answer) = common::server::read_response(stream).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    // And the worker serves on.
    let case = guided_case();
    let (status, _, body) = server.post(&case.body()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_bitwise(
        &latents(&body),
        &case.solo(&model),
        "after the hostile bodies",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_infer_bodies_are_refused_by_name() {
    let model = model("base");
    let config = EngineConfig::default().with_max_tokens_per_forward(256);
    let server = SanaServer::start(model.clone(), config, HttpLimits::default()).await;
    let x = Tensor::new(vec![1, 4, 4, 4], vec![0.1; 64]).unwrap();
    let captions = Tensor::new(vec![1, 3, 12], vec![0.2; 36]).unwrap();
    let good = infer_body(&x, &[500.0], &captions, &[1, 1, 0], None);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        f(&mut body);
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no captions",
            edit(&|b| {
                b["inputs"].as_array_mut().unwrap().remove(2);
            }),
            "missing input `encoder_hidden_states`",
        ),
        (
            "x rank",
            edit(&|b| b["inputs"][0]["shape"] = json!([1, 4, 16])),
            "input `x` must have rank 4",
        ),
        (
            "mask shape",
            edit(&|b| {
                b["inputs"][3]["shape"] = json!([3, 1]);
            }),
            "must be [B, S] = [1, 3]",
        ),
        (
            "mask dtype",
            edit(&|b| b["inputs"][3]["datatype"] = json!("BOOL")),
            "must be INT64 or FP32",
        ),
        (
            "mask value",
            edit(&|b| b["inputs"][3]["data"] = json!([1, 7, 0])),
            "encoder_attention_mask",
        ),
        (
            "DiT input",
            edit(&|b| b["inputs"][1]["name"] = json!("y")),
            "unknown input `y`",
        ),
        (
            "guidance on base",
            edit(&|b| {
                b["inputs"].as_array_mut().unwrap().push(
                    json!({"name": "guidance", "datatype": "FP32", "shape": [1], "data": [1.0]}),
                )
            }),
            "`guidance` is given but the model has no guidance_embeds",
        ),
        (
            "grid",
            edit(&|b| b["parameters"] = json!({"grid": "4x4"})),
            "parameter `grid` is for DiT models",
        ),
        (
            "output name",
            edit(&|b| b["outputs"] = json!([{"name": "eps"}])),
            "unknown output `eps` (this model has `v`)",
        ),
        (
            "channels",
            edit(&|b| {
                b["inputs"][0]["shape"] = json!([1, 2, 4, 8]);
            }),
            "channels",
        ),
        (
            "tokens",
            edit(&|b| {
                b["inputs"][0]["shape"] = json!([1, 4, 16, 20]);
                b["inputs"][0]["data"] = json!(vec![0.0; 1280]);
            }),
            "at most 64 rows and 256 tokens",
        ),
    ];
    for (what, body, needle) in &cases {
        let (status, _, answer) = http(
            server.addr,
            "POST",
            "/v2/models/linear-dit/infer",
            &body.to_string(),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains(needle), "{what}: `{needle}` not in {text}");
    }
    let (status, _, answer) = http(
        server.addr,
        "POST",
        "/v2/models/linear-dit/infer",
        &good.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dit_server_refuses_sana_fields_by_name() {
    let model = Arc::new(Model::new(&tiny_class_conditional(3), Device::Cpu).unwrap());
    let server =
        TestServer::start(model, EngineConfig::default(), HttpLimits::default(), false).await;
    for field in ["prompt_embeds", "negative_embeds", "height", "flow_shift"] {
        let body = json!({ field: "x", "num_steps": 2 }).to_string();
        let (status, _, answer) = exchange(
            server.addr,
            "POST",
            "/v1/generate",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{field}: {text}");
        assert!(
            text.contains(&format!("`{field}` belongs to sana models")),
            "{field}: {text}"
        );
    }
    server.shutdown().await;
}

#[test]
fn serve_limits_that_cannot_hold_one_image_fail_at_start() {
    let config = linear_dit::model::sana::SanaConfig::from_json(
        &std::fs::read_to_string(fixture("base/transformer/config.json")).unwrap(),
    )
    .unwrap();
    // sample_size 8: one guided image is 2 rows of 64 tokens.
    let fits = EngineConfig::default().with_max_tokens_per_forward(128);
    fits.check_serves_sana(&config).unwrap();
    let small = EngineConfig::default().with_max_tokens_per_forward(127);
    let err = small.check_serves_sana(&config).unwrap_err().to_string();
    assert!(err.contains("2 rows of 64 tokens"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_infer_equals_the_forward() {
    let model = model("sprint");
    let server = SanaServer::start(
        model.clone(),
        EngineConfig::default(),
        HttpLimits::default(),
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let x = Tensor::new(vec![1, 4, 4, 8], pseudo_random(128, 81, 1.0)).unwrap();
    let t = [0.7f32];
    let captions = Tensor::new(vec![1, 4, 12], pseudo_random(48, 82, 1.0)).unwrap();
    let mask = [1.0f32, 1.0, 0.0, 1.0];
    let guidance = [0.45f32];
    let input = |name: &str, shape: &[usize]| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: shape.iter().map(|&d| d as i64).collect(),
        parameters: Default::default(),
        contents: None,
    };
    let le = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let request = ModelInferRequest {
        model_name: "linear-dit".into(),
        model_version: String::new(),
        id: "g-1".into(),
        parameters: Default::default(),
        inputs: vec![
            input("x", x.shape()),
            input("t", &[1]),
            input("encoder_hidden_states", captions.shape()),
            input("encoder_attention_mask", &[1, 4]),
            input("guidance", &[1]),
        ],
        outputs: Vec::new(),
        raw_input_contents: vec![
            le(x.data()),
            le(&t),
            le(captions.data()),
            le(&mask),
            le(&guidance),
        ],
    };
    let answer = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(answer.outputs[0].name, "v");
    assert_eq!(answer.outputs[0].shape, vec![1, 4, 4, 8]);
    let want = model
        .forward(&SanaInput {
            x: &x,
            t: &t,
            captions: &captions,
            mask: Some(&mask),
            guidance: Some(&guidance),
        })
        .unwrap();
    assert_eq!(answer.raw_output_contents[0], le(want.data()));
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: "linear-dit".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "x",
            "t",
            "encoder_hidden_states",
            "encoder_attention_mask",
            "guidance"
        ]
    );
    server.shutdown().await;
}
