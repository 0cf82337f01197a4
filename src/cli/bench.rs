//! `linear-dit bench`: forward throughput of one shape, as ms per forward, tokens/s and
//! achieved GFLOP/s; `--json` ends with one JSON object for side-by-side comparisons with
//! `python/peer_bench.py`.

use super::bench_profile::Profiler;
use super::device_flags::DeviceFlags;
use super::progress;
use anyhow::Result;
use clap::Args;
use linear_dit::ConfigOverrides;
use linear_dit::limits::{bytes_of, check_alloc, checked_product};
use linear_dit::runtime::forward_bytes;
use linear_dit::{Grid, InitKind, Input, Tensor, Weights};
use std::path::PathBuf;
use std::time::Instant;

/// Measure forward throughput for one (batch, tokens) shape.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Weights file [default: `random` init of the config flags].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Samples per forward B.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Tokens per sample N.
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Token grid ROWSxCOLS [default: square].
    #[arg(long)]
    grid: Option<Grid>,
    /// Untimed forwards first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed forwards.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Seed for the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON object (tokens_per_s, ms_per_forward, …) on the last line.
    #[arg(long)]
    json: bool,
    /// CUDA only: also time each phase (eager, with events) and measure the device's copy
    /// bandwidth and bf16 GEMM peak, and report every phase against them.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    config: ConfigOverrides,
    #[command(flatten)]
    device: DeviceFlags,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let overrides = args.config.clone();
    let weights = match &args.weights {
        Some(path) => Weights::load(path, &overrides)?,
        None => {
            let config = overrides.to_config()?;
            let spinner = progress::spinner(format!(
                "random init of {} parameters",
                config.param_count()?
            ));
            let weights = Weights::init(&config, InitKind::Random, args.seed)?;
            spinner.finish_and_clear();
            weights
        }
    };
    let config = weights.config().clone();
    let profiler = match args.profile {
        true => Some(Profiler::new(&weights, &args.device)?),
        false => None,
    };
    let model = match &profiler {
        Some(profiler) => profiler.model(&config),
        None => args.device.model(&weights)?,
    };

    let (b, n, d) = (args.batch, args.tokens, config.input_dim);
    let numel = checked_product("the benchmark input", &[b, n, d])?;
    let input_bytes = bytes_of(&[numel], 4);
    check_alloc(
        &format!("a benchmark of B={b} N={n}"),
        input_bytes.saturating_add(forward_bytes(&config, b, n)),
    )?;
    let x = Tensor::new(vec![b, n, d], random_values(numel, args.seed))?;
    let t: Vec<f32> = (0..b)
        .map(|i| ((i * 379 + 17) % config.num_steps) as f32 + 0.5)
        .map(|t| t.min(config.num_steps as f32))
        .collect();
    let y: Option<Vec<i64>> = config
        .num_classes
        .map(|c| (0..b).map(|i| (i % (c + 1)) as i64).collect());
    let input = Input {
        x: &x,
        t: &t,
        y: y.as_deref(),
        grid: args.grid,
    };

    let bar = progress::bar((args.warmup + args.iters) as u64, "forwards");
    for _ in 0..args.warmup {
        model.forward(&input)?;
        bar.inc(1);
    }
    let mut times_ms = Vec::with_capacity(args.iters);
    for _ in 0..args.iters.max(1) {
        let start = Instant::now();
        model.forward(&input)?;
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        bar.inc(1);
    }
    bar.finish_and_clear();

    times_ms.sort_by(f64::total_cmp);
    let ms_mean = times_ms.iter().sum::<f64>() / times_ms.len() as f64;
    let ms_median = times_ms[times_ms.len() / 2];
    let tokens_per_s = (b * n) as f64 / (ms_mean / 1e3);
    let flops_per_forward = config.flops_per_token(n) * (b * n) as f64;
    let gflops = flops_per_forward / (ms_mean / 1e3) / 1e9;
    let threads = rayon::current_num_threads();

    println!(
        "{} | B={b} N={n} | {:.3} ms/forward (median {:.3}, min {:.3}) | {:.0} tokens/s | {:.1} GFLOP/s",
        model.describe_backend(),
        ms_mean,
        ms_median,
        times_ms[0],
        tokens_per_s,
        gflops
    );
    let profile = match &profiler {
        Some(profiler) => Some(profiler.report(&input, &config, ms_mean)?),
        None => None,
    };
    if args.json {
        let mut json = serde_json::json!({
            "impl": "linear-dit",
            "backend": model.backend_name(),
            "backend_detail": model.describe_backend(),
            "precision": args.device.precision.as_str(),
            "batch": b,
            "tokens": n,
            "threads": threads,
            "iters": times_ms.len(),
            "ms_per_forward": ms_mean,
            "ms_median": ms_median,
            "ms_min": times_ms[0],
            "tokens_per_s": tokens_per_s,
            "flops_per_forward": flops_per_forward,
            "gflops_per_s": gflops,
            "commit": env!("LINEAR_DIT_COMMIT"),
            "config": config,
        });
        if let Some(profile) = profile {
            json["profile"] = profile;
        }
        println!("{json}");
    }
    Ok(())
}

/// Deterministic inputs in [-1, 1].
fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let stream = linear_dit::rng::NormalStream::new(seed, u64::MAX);
    (0..n as u64)
        .map(|i| stream.uniform_at(i) as f32 * 2.0 - 1.0)
        .collect()
}
