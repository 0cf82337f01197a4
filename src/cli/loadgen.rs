//! `linear-dit loadgen`: drives a local server with C concurrent clients and reports
//! throughput, latency percentiles, and the batching gain (throughput at the largest client
//! count ÷ at one client). Loopback only, and bounded in requests and time. Around each run it
//! reads the server's `/metrics`, so it also reports what the engine saw: rows per forward
//! and the scheduler's overhead as a share of forward time.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Load-test a local `linear-dit serve`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// Server address (loopback only), e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Client counts to measure, comma-separated; the batching gain compares the last to the
    /// first.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    clients: Vec<usize>,
    /// Requests per client count (a bound).
    #[arg(long, default_value_t = 64)]
    requests: usize,
    /// Seconds per client count (a bound).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Request body (JSON for POST /v1/generate).
    #[arg(
        long,
        default_value = r#"{"class_label": 7, "num_steps": 20, "format": "safetensors"}"#
    )]
    body: String,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// One client-count run.
struct Run {
    clients: usize,
    ok: usize,
    errors: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
    /// The engine's side of the run (`None` when `/metrics` could not be read).
    engine: Option<EngineDelta>,
    /// Failed requests by reason.
    failures: BTreeMap<String, usize>,
}

/// Sums read from the server's Prometheus histograms at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct EngineTotals {
    forwards: f64,
    rows: f64,
    forward_seconds: f64,
    overhead_seconds: f64,
}

impl EngineTotals {
    /// Parses the `_sum` / `_count` lines of `GET /metrics`.
    fn parse(text: &str) -> Option<Self> {
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        };
        Some(Self {
            forwards: value("linear_dit_batch_rows_count")?,
            rows: value("linear_dit_batch_rows_sum")?,
            forward_seconds: value("linear_dit_forward_seconds_sum")?,
            overhead_seconds: value("linear_dit_scheduler_overhead_seconds_sum")?,
        })
    }
}

/// What the engine did during one run: the difference of two readings.
#[derive(Debug, Clone, Copy)]
struct EngineDelta {
    rows_per_forward: f64,
    /// Scheduler iteration time outside forwards ÷ forward time.
    overhead_fraction: f64,
}

impl EngineDelta {
    fn between(before: EngineTotals, after: EngineTotals) -> Option<Self> {
        let forwards = after.forwards - before.forwards;
        let forward_seconds = after.forward_seconds - before.forward_seconds;
        (forwards > 0.0 && forward_seconds > 0.0).then(|| Self {
            rows_per_forward: (after.rows - before.rows) / forwards,
            overhead_fraction: (after.overhead_seconds - before.overhead_seconds) / forward_seconds,
        })
    }
}

impl Run {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * p).round() as usize;
        self.latencies_ms[i]
    }
}

pub fn run(args: LoadgenArgs) -> Result<()> {
    let addr = args
        .addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", args.addr))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.addr))?;
    if !is_loopback(addr.ip()) {
        bail!("loadgen only targets loopback addresses; {addr} is not one");
    }
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients must list positive counts");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .context("starting the async runtime")?;
    let body: Arc<str> = args.body.clone().into();
    let mut runs = Vec::new();
    for &clients in &args.clients {
        let before = runtime.block_on(engine_totals(addr));
        let mut run = runtime.block_on(drive(
            addr,
            clients,
            args.requests,
            Duration::from_secs(args.seconds),
            body.clone(),
        ));
        let after = runtime.block_on(engine_totals(addr));
        run.engine = before
            .zip(after)
            .and_then(|(before, after)| EngineDelta::between(before, after));
        let engine = run.engine.map_or(String::new(), |e| {
            format!(
                " | {:.1} rows/forward, scheduler overhead {:.2}% of forward time",
                e.rows_per_forward,
                e.overhead_fraction * 100.0
            )
        });
        println!(
            "clients {:>3}: {:>4} ok, {:>3} errors in {:>6.2} s | {:>7.2} req/s | latency p50 {:>8.1} ms  p95 {:>8.1} ms  p99 {:>8.1} ms{engine}",
            run.clients,
            run.ok,
            run.errors,
            run.seconds,
            run.throughput(),
            run.percentile(0.50),
            run.percentile(0.95),
            run.percentile(0.99)
        );
        runs.push(run);
    }
    let gain = match (runs.first(), runs.last()) {
        (Some(first), Some(last)) if runs.len() > 1 => {
            Some(last.throughput() / first.throughput().max(1e-9))
        }
        _ => None,
    };
    if let Some(gain) = gain {
        println!(
            "batching gain ({} clients ÷ {}): {gain:.2}x",
            runs[runs.len() - 1].clients,
            runs[0].clients
        );
    }
    if args.json {
        let runs_json: Vec<_> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "clients": r.clients, "ok": r.ok, "errors": r.errors, "seconds": r.seconds,
                    "requests_per_s": r.throughput(), "p50_ms": r.percentile(0.5),
                    "p95_ms": r.percentile(0.95), "p99_ms": r.percentile(0.99),
                    "rows_per_forward": r.engine.map(|e| e.rows_per_forward),
                    "scheduler_overhead_fraction": r.engine.map(|e| e.overhead_fraction),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"runs": runs_json, "batching_gain": gain})
        );
    }
    let failed: usize = runs.iter().map(|r| r.errors).sum();
    if failed > 0 {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for run in &runs {
            for (why, n) in &run.failures {
                *reasons.entry(why).or_default() += n;
            }
        }
        for (why, n) in &reasons {
            eprintln!("loadgen: {n} × {why}");
        }
        let sent: usize = runs.iter().map(|r| r.ok + r.errors).sum();
        bail!("{failed} of {sent} requests failed (reasons above)");
    }
    Ok(())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// `clients` concurrent clients sending requests back to back until `requests` were sent or
/// `limit` passed.
async fn drive(
    addr: SocketAddr,
    clients: usize,
    requests: usize,
    limit: Duration,
    body: Arc<str>,
) -> Run {
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (sent, body) = (sent.clone(), body.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while sent.fetch_add(1, Ordering::Relaxed) < requests && start.elapsed() < limit {
                    let begin = Instant::now();
                    let outcome = match http(addr, "POST", "/v1/generate", &body).await {
                        Ok((200, _)) => Ok(()),
                        Ok((status, body)) => {
                            Err(format!("HTTP {status}: {}", error_message(&body)))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    results.push((outcome, begin.elapsed().as_secs_f64() * 1e3));
                }
                results
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    let mut errors = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let results = task
            .await
            .unwrap_or_else(|e| vec![(Err(format!("client task failed: {e}")), 0.0)]);
        for (outcome, ms) in results {
            match outcome {
                Ok(()) => latencies_ms.push(ms),
                Err(why) => {
                    errors += 1;
                    *failures.entry(why).or_default() += 1;
                }
            }
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    Run {
        clients,
        ok: latencies_ms.len(),
        errors,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ms,
        engine: None,
        failures,
    }
}

/// The message of an error body (`{"error": {"message"}}` or `{"error": "…"}`), else the
/// start of the body.
fn error_message(body: &[u8]) -> String {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = value.as_ref().and_then(|v| v.get("error"));
    match error {
        Some(serde_json::Value::String(message)) => message.clone(),
        Some(e) => e
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| e.to_string(), str::to_string),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// The server's engine totals now, or `None` (with a warning) when `/metrics` is unreadable.
async fn engine_totals(addr: SocketAddr) -> Option<EngineTotals> {
    match http(addr, "GET", "/metrics", "").await {
        Ok((200, body)) => EngineTotals::parse(&String::from_utf8_lossy(&body)),
        other => {
            tracing::warn!("could not read {addr}/metrics: {other:?}");
            None
        }
    }
}

/// A minimal HTTP/1.1 request; returns the status code and everything after the headers.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let status = std::str::from_utf8(&response[..response.len().min(32)])
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body_start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    Ok((status, response.split_off(body_start)))
}
