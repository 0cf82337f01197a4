//! The `linear-dit` command line (SPEC, "Command line"): one file per subcommand.

mod bench;
#[cfg(feature = "cuda")]
mod bench_profile;
#[cfg(not(feature = "cuda"))]
#[path = "bench_profile_unavailable.rs"]
mod bench_profile;
mod device_flags;
mod doctor;
mod forward;
mod info;
mod init;
mod loadgen;
mod progress;
mod sample;
mod sana;
mod sana_sample;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// linear-dit: inference runtime for Linear Diffusion Transformers (DiT with O(N) linear
/// attention). See docs/SPEC.md for the model contract.
#[derive(Debug, Parser)]
#[command(name = "linear-dit", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads for the CPU backend, 1 to 1024 [default: all cores].
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS))]
    pub threads: Option<u16>,
    /// Largest allocation plan one command or request may make, e.g. `4G`, `512M` [default:
    /// 3/4 of physical memory, or $LINEAR_DIT_MAX_MEMORY]. Anything that would need more is
    /// refused with the size it needs, before allocating.
    #[arg(long, global = true, value_parser = linear_dit::limits::parse_bytes)]
    pub max_memory: Option<u64>,
    /// Log filter (tracing EnvFilter syntax), e.g. `debug` or `linear_dit=trace`; RUST_LOG
    /// works too.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a config's parameter count, FLOPs per token and shapes.
    Info(info::InfoArgs),
    /// Write seeded initial weights (AdaLN-Zero `dit`, or `random`) to a safetensors file.
    Init(init::InitArgs),
    /// Run one forward: read x, t (and y) from a safetensors file, write eps.
    Forward(forward::ForwardArgs),
    /// Measure forward throughput (ms/forward, tokens/s, GFLOP/s).
    Bench(bench::BenchArgs),
    /// Generate images with a trained model (DDIM, DDPM or DPM-Solver++, guidance) into a PNG;
    /// SANA latents from caption embeddings (flow-dpmpp2m, flow-euler, scm).
    Sample(sample::SampleArgs),
    /// Serve a trained model over HTTP with step-level continuous batching.
    Serve(serve::ServeArgs),
    /// Load-test a local server: throughput, latency percentiles, batching gain.
    Loadgen(loadgen::LoadgenArgs),
    /// Diagnose the GPU set-up: driver, devices, CUDA libraries, how kernels were built.
    Doctor(doctor::DoctorArgs),
}

/// Most CPU worker threads `--threads` accepts: far above any core count we run on, and low
/// enough that creating them takes milliseconds rather than exhausting the process limit.
const MAX_THREADS: i64 = 1024;

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(bytes) = cli.max_memory {
        linear_dit::limits::set_max_alloc_bytes(bytes);
    }
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(threads))
            .build_global()
            .map_err(|e| anyhow::anyhow!("cannot start {threads} CPU worker threads: {e}"))?;
    }
    match cli.command {
        Command::Info(args) => info::run(args),
        Command::Init(args) => init::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}
