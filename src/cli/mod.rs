//! The `linear-dit` command line (SPEC, "Command line"): one file per subcommand.

mod bench;
mod bench_profile;
mod config_flags;
mod device_flags;
mod doctor;
mod forward;
mod info;
mod init;
mod loadgen;
mod progress;
mod sample;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// linear-dit: inference runtime for Linear Diffusion Transformers (DiT with O(N) linear
/// attention). See SPEC.md for the model contract.
#[derive(Debug, Parser)]
#[command(name = "linear-dit", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads for the CPU backend [default: all cores].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
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
    /// Generate images with a trained model (DDIM, DDPM or DPM-Solver++, guidance) into a PNG.
    Sample(sample::SampleArgs),
    /// Serve a trained model over HTTP with step-level continuous batching.
    Serve(serve::ServeArgs),
    /// Load-test a local server: throughput, latency percentiles, batching gain.
    Loadgen(loadgen::LoadgenArgs),
    /// Diagnose the GPU set-up: driver, devices, CUDA libraries, how kernels were built.
    Doctor(doctor::DoctorArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
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
