//! `linear-dit doctor`: what this machine offers the CUDA backend, and why not when it
//! cannot run: driver, devices, where each CUDA library was found, how kernels were built.

use anyhow::Result;
use clap::Args;
#[cfg(feature = "cuda")]
use linear_dit::backends::cuda::{
    CudaLibrary, devices, driver_version, kernel_build, unavailable_reason,
};
use serde_json::json;

/// Diagnose the GPU set-up (works, and explains, without any GPU).
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "cuda")]
pub fn run(args: DoctorArgs) -> Result<()> {
    let driver = driver_version();
    let devices = devices();
    let libraries: Vec<_> = [
        CudaLibrary::Driver,
        CudaLibrary::CublasLt,
        CudaLibrary::Nvrtc,
    ]
    .into_iter()
    .map(|lib| (lib.name(), lib.locate()))
    .collect();
    let kernels = kernel_build();
    let blocker = unavailable_reason();
    let backend = if blocker.is_none() { "cuda" } else { "cpu" };

    if args.json {
        let libs: serde_json::Map<String, serde_json::Value> = libraries
            .iter()
            .map(|(name, path)| {
                (
                    name.to_string(),
                    json!({"found": path.is_some(), "path": path}),
                )
            })
            .collect();
        let report = json!({
            "driver": match &driver {
                Ok((major, minor)) => json!({"found": true, "cuda_version": format!("{major}.{minor}")}),
                Err(e) => json!({"found": false, "error": e.to_string()}),
            },
            "devices": match &devices {
                Ok(list) => json!(list),
                Err(_) => json!([]),
            },
            "device_error": devices.as_ref().err().map(|e| e.to_string()),
            "libraries": libs,
            "kernels": kernels,
            "auto_backend": backend,
            "cuda_unavailable_reason": blocker.map(|e| e.to_string()),
        });
        println!("{report}");
        return Ok(());
    }
    match &driver {
        Ok((major, minor)) => println!("driver     CUDA {major}.{minor}"),
        Err(e) => println!("driver     not usable: {e}"),
    }
    match &devices {
        Ok(list) => {
            for d in list {
                println!(
                    "device {}   {} (compute {}.{}, {} SMs, {:.1} GiB)",
                    d.index,
                    d.name,
                    d.compute_capability.0,
                    d.compute_capability.1,
                    d.multiprocessors,
                    d.memory_bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
        Err(e) => println!("devices    none: {e}"),
    }
    for (name, path) in &libraries {
        println!("lib{name:<9} {}", path.as_deref().unwrap_or("not found"));
    }
    match kernels.source {
        "nvcc-fatbin" => println!(
            "kernels    nvcc fatbin ({}) built by {}",
            kernels.archs.join(", "),
            kernels.nvcc.as_deref().unwrap_or("nvcc")
        ),
        _ => {
            println!("kernels    embedded sources, compiled with NVRTC for the device at first use")
        }
    }
    match blocker {
        None => println!("backend    auto → cuda"),
        Some(reason) => println!("backend    auto → cpu ({reason})"),
    }
    Ok(())
}

/// A build without the `cuda` feature has no CUDA backend to diagnose: `auto` is the CPU.
#[cfg(not(feature = "cuda"))]
pub fn run(args: DoctorArgs) -> Result<()> {
    let reason = linear_dit::backends::cuda_not_built();
    if args.json {
        let report = json!({
            "auto_backend": "cpu",
            "cuda_unavailable_reason": reason.to_string(),
        });
        println!("{report}");
    } else {
        println!("backend    auto → cpu ({reason})");
    }
    Ok(())
}
