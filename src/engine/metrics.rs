//! Engine metrics, rendered in the Prometheus text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with images.
    Ok,
    /// Rejected as invalid (HTTP 400).
    Invalid,
    /// Rejected because the queue was full (HTTP 429).
    QueueFull,
    /// Rejected or failed because the engine was shutting down (HTTP 503).
    ShuttingDown,
    /// Its caller went away; its slot was freed.
    Cancelled,
    /// Its deadline passed (HTTP 504).
    DeadlineExceeded,
    /// A forward failed (HTTP 500).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Invalid,
        Outcome::QueueFull,
        Outcome::ShuttingDown,
        Outcome::Cancelled,
        Outcome::DeadlineExceeded,
        Outcome::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Invalid => "invalid",
            Outcome::QueueFull => "queue_full",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::Cancelled => "cancelled",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::Failed => "failed",
        }
    }
}

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    state: Mutex<HistogramState>,
}

#[derive(Debug, Default, Clone)]
struct HistogramState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len()];
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                counts,
                ..Default::default()
            }),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            s.counts[i] += 1;
        }
        s.sum += value;
        s.count += 1;
    }

    /// (count, sum) so far.
    pub fn totals(&self) -> (u64, f64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.count, s.sum)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&s.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", s.sum, s.count);
    }
}

/// Everything the engine counts.
#[derive(Debug)]
pub struct Metrics {
    outcomes: [AtomicU64; 7],
    /// Rows (samples, CFG halves included) per forward.
    pub batch_rows: Histogram,
    /// Wall time of one scheduler iteration (all its forwards plus bookkeeping), seconds.
    pub step_seconds: Histogram,
    /// Wall time of the forwards alone, seconds.
    pub forward_seconds: Histogram,
    /// Iteration time not spent in forwards (batch assembly, sampler updates), seconds.
    pub overhead_seconds: Histogram,
    tokens_total: AtomicU64,
    tokens_per_second_bits: AtomicU64,
    queue_depth: AtomicU64,
    active: AtomicU64,
    /// HTTP responses by (route, status).
    http_responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// gRPC calls by (method, status code name).
    grpc_calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let rows = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let seconds = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Metrics {
            outcomes: Default::default(),
            batch_rows: Histogram::new(rows),
            step_seconds: Histogram::new(seconds.clone()),
            forward_seconds: Histogram::new(seconds.clone()),
            overhead_seconds: Histogram::new(seconds),
            tokens_total: AtomicU64::new(0),
            tokens_per_second_bits: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            active: AtomicU64::new(0),
            http_responses: Mutex::new(BTreeMap::new()),
            grpc_calls: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        let i = Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0);
        self.outcomes[i].load(Ordering::Relaxed)
    }

    /// Records `tokens` processed by an iteration of `seconds`.
    pub fn record_tokens(&self, tokens: u64, seconds: f64) {
        self.tokens_total.fetch_add(tokens, Ordering::Relaxed);
        if seconds > 0.0 {
            // Exponential moving average over ~10 iterations.
            let now = tokens as f64 / seconds;
            let old = f64::from_bits(self.tokens_per_second_bits.load(Ordering::Relaxed));
            let new = if old == 0.0 {
                now
            } else {
                0.9 * old + 0.1 * now
            };
            self.tokens_per_second_bits
                .store(new.to_bits(), Ordering::Relaxed);
        }
    }

    /// Sets the number of waiting and of running requests.
    pub fn set_load(&self, queued: usize, active: usize) {
        self.queue_depth.store(queued as u64, Ordering::Relaxed);
        self.active.store(active as u64, Ordering::Relaxed);
    }

    /// Counts one HTTP response of `route` (a route pattern, from a bounded set) with
    /// `status`.
    pub fn record_http(&self, route: &'static str, status: u16) {
        let mut counts = self
            .http_responses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *counts.entry((route, status)).or_default() += 1;
    }

    /// HTTP responses of `route` with `status` so far.
    pub fn http_count(&self, route: &str, status: u16) -> u64 {
        let counts = self
            .http_responses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .filter(|((r, s), _)| *r == route && *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// Counts one answered gRPC call of `method` (from a bounded set) with status `code`
    /// (the code's name, e.g. `INVALID_ARGUMENT`).
    pub fn record_grpc(&self, method: &'static str, code: &'static str) {
        let mut counts = self.grpc_calls.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((method, code)).or_default() += 1;
    }

    /// gRPC calls of `method` answered with `code` so far.
    pub fn grpc_count(&self, method: &str, code: &str) -> u64 {
        let counts = self.grpc_calls.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .filter(|((m, c), _)| *m == method && *c == code)
            .map(|(_, n)| n)
            .sum()
    }

    /// Waiting requests.
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Running requests (admitted, not yet answered).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP linear_dit_requests_total Requests by outcome.\n# TYPE linear_dit_requests_total counter"
        );
        for (outcome, count) in Outcome::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "linear_dit_requests_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "linear_dit_queue_depth",
            "Requests waiting for a slot.",
            self.queue_depth() as f64,
        );
        gauge(
            &mut out,
            "linear_dit_active_requests",
            "Requests being denoised.",
            self.active.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "linear_dit_tokens_per_second",
            "Tokens processed per second (moving average over recent iterations).",
            f64::from_bits(self.tokens_per_second_bits.load(Ordering::Relaxed)),
        );
        let _ = writeln!(
            out,
            "# HELP linear_dit_tokens_total Tokens processed by forwards.\n# TYPE linear_dit_tokens_total counter\nlinear_dit_tokens_total {}",
            self.tokens_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP linear_dit_http_responses_total HTTP responses by route and status.\n# TYPE linear_dit_http_responses_total counter"
        );
        let http = self
            .http_responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((route, status), count) in http {
            let _ = writeln!(
                out,
                "linear_dit_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP linear_dit_grpc_calls_total gRPC calls by method and status code.\n# TYPE linear_dit_grpc_calls_total counter"
        );
        let grpc = self
            .grpc_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((method, code), count) in grpc {
            let _ = writeln!(
                out,
                "linear_dit_grpc_calls_total{{method=\"{method}\",code=\"{code}\"}} {count}"
            );
        }
        self.batch_rows.render(
            &mut out,
            "linear_dit_batch_rows",
            "Rows per forward (CFG halves count).",
        );
        self.step_seconds.render(
            &mut out,
            "linear_dit_step_seconds",
            "Scheduler iteration latency.",
        );
        self.forward_seconds
            .render(&mut out, "linear_dit_forward_seconds", "Forward latency.");
        self.overhead_seconds.render(
            &mut out,
            "linear_dit_scheduler_overhead_seconds",
            "Iteration time outside forwards.",
        );
        out
    }
}
