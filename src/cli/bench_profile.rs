//! The CUDA part of `bench --profile`: each phase of the forward timed (eager, events between
//! phases), set against the device's measured ceilings — achieved TFLOP/s and % of the bf16
//! GEMM peak for the GEMMs, achieved GB/s and % of the copy bandwidth for the memory-bound
//! kernels — and the graph-replayed forward against the sum of its phases.

use super::device_flags::DeviceFlags;
use anyhow::{Result, bail};
use linear_dit::backends::cuda::CudaBackend;
use linear_dit::{Config, Device, Input, Model, Weights};
use serde_json::{Value, json};
use std::sync::Arc;

/// The backend `--profile` times: the CUDA backend, the one with per-phase timers.
pub struct Profiler(Arc<CudaBackend>);

impl Profiler {
    /// The CUDA backend over `weights`; `--profile` with any other `--backend` is an error.
    pub fn new(weights: &Weights, device: &DeviceFlags) -> Result<Self> {
        match device.backend {
            Device::Cuda => Ok(Profiler(Arc::new(CudaBackend::new(
                weights,
                device.precision,
            )?))),
            _ => bail!("--profile needs --backend cuda"),
        }
    }

    /// A model that runs on the profiled backend.
    pub fn model(&self, config: &Config) -> Model {
        Model::from_backend(config.clone(), Box::new(self.0.clone()))
    }

    /// Prints the phase table of `input`'s forward and returns it as JSON.
    pub fn report(&self, input: &Input<'_>, config: &Config, ms_per_forward: f64) -> Result<Value> {
        report(&self.0, input, config, ms_per_forward)
    }
}

/// Bytes moved and FLOPs done by one occurrence of a phase (per forward of `rows` tokens).
fn work(phase: &str, config: &Config, rows: f64, t: f64) -> (f64, f64) {
    let (h, m, d_in) = (
        config.hidden_size as f64,
        config.mlp_hidden() as f64,
        config.input_dim as f64,
    );
    match phase {
        // Read x (fp32), write u.
        "norm_modulate" => (rows * h * (4.0 + t), 0.0),
        // Read x (fp32) and y, write x and u.
        "residual_norm_modulate" => (2.0 * rows * h * (4.0 + t), 0.0),
        // Read q, k, v (k and v in pass 1, q in pass 3), write the output.
        "linear_attention" => (
            rows * 4.0 * h * t,
            rows * config.num_heads as f64 * 4.0 * (h / config.num_heads as f64).powi(2),
        ),
        "gemm_qkv" => (0.0, 2.0 * rows * h * 3.0 * h),
        "gemm_proj" => (0.0, 2.0 * rows * h * h),
        "gemm_fc1" => (0.0, 2.0 * rows * h * m),
        "gemm_fc2" => (0.0, 2.0 * rows * m * h),
        "gemm_out" => (0.0, 2.0 * rows * h * d_in),
        _ => (0.0, 0.0),
    }
}

/// Prints the phase table and returns it as JSON.
fn report(
    cuda: &CudaBackend,
    input: &Input<'_>,
    config: &Config,
    ms_per_forward: f64,
) -> Result<Value> {
    let ceilings = cuda.ceilings()?;
    cuda.profile(input)?; // warm: plans and algorithms for the eager path
    let phases = cuda.profile(input)?;
    let rows = (input.x.shape()[0] * input.x.shape()[1]) as f64;
    let t = if cuda.describe_precision() == "f32" {
        4.0
    } else {
        2.0
    };
    let summed: f64 = phases.iter().map(|(_, ms, _)| ms).sum();
    println!(
        "ceilings: copy {:.0} GB/s, bf16 GEMM {:.0} TFLOP/s | phases sum to {:.3} ms (eager); graph-replayed forward {:.3} ms end to end ({:.2}x the phase sum)",
        ceilings.copy_gb_per_s,
        ceilings.bf16_gemm_tflops,
        summed,
        ms_per_forward,
        ms_per_forward / summed.max(1e-9)
    );
    println!(
        "{:<24} {:>6} {:>10} {:>9} {:>8} {:>9} {:>8}",
        "phase", "count", "ms", "GB/s", "% copy", "TFLOP/s", "% peak"
    );
    let mut rows_json = Vec::new();
    for (name, ms, count) in &phases {
        let (bytes, flops) = work(name, config, rows, t);
        let seconds = ms / 1e3;
        let gbps = bytes * *count as f64 / seconds / 1e9;
        let tflops = flops * *count as f64 / seconds / 1e12;
        println!(
            "{name:<24} {count:>6} {ms:>10.3} {gbps:>9.0} {:>7.1}% {tflops:>9.1} {:>7.1}%",
            100.0 * gbps / ceilings.copy_gb_per_s,
            100.0 * tflops / ceilings.bf16_gemm_tflops
        );
        rows_json.push(json!({
            "phase": name, "count": count, "ms": ms,
            "gb_per_s": gbps, "pct_copy_bandwidth": 100.0 * gbps / ceilings.copy_gb_per_s,
            "tflops": tflops, "pct_bf16_peak": 100.0 * tflops / ceilings.bf16_gemm_tflops,
        }));
    }
    let model_tflops =
        config.flops_per_token(input.x.shape()[1]) * rows / (ms_per_forward / 1e3) / 1e12;
    println!(
        "model: {model_tflops:.1} TFLOP/s = {:.1}% of the measured bf16 GEMM peak",
        100.0 * model_tflops / ceilings.bf16_gemm_tflops
    );
    Ok(json!({
        "ceilings": ceilings,
        "phases": rows_json,
        "phases_sum_ms": summed,
        "graph_forward_ms": ms_per_forward,
        "model_tflops": model_tflops,
        "mfu_pct_of_measured_peak": 100.0 * model_tflops / ceilings.bf16_gemm_tflops,
    }))
}
