//! Loading the kernels onto a device: the fatbin nvcc built into the binary when the build
//! machine had a toolkit, otherwise the embedded sources compiled by NVRTC for the device's
//! architecture, with the PTX cached on disk so the compile happens once per machine.

use super::device::{CudaLibrary, device_error, guarded, unavailable};
use crate::error::Result;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// The concatenated kernel sources (common.cuh + kernels/*.cu), for NVRTC.
pub const KERNEL_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels_nvrtc.cu"));

/// The fatbin built by nvcc, when the build had a toolkit.
#[cfg(kernels_fatbin)]
const FATBIN: Option<&[u8]> = Some(include_bytes!(env!("LINEAR_DIT_FATBIN")));
#[cfg(not(kernels_fatbin))]
const FATBIN: Option<&[u8]> = None;

/// How the kernels of this binary are built.
#[derive(Debug, Clone, Serialize)]
pub struct KernelBuild {
    /// `nvcc-fatbin` (compiled at build time) or `nvrtc` (compiled at first use).
    pub source: &'static str,
    /// Architectures in the fatbin (empty for NVRTC: the device's own).
    pub archs: Vec<String>,
    /// The nvcc that built the fatbin, if any.
    pub nvcc: Option<String>,
}

/// What this binary carries.
pub fn kernel_build() -> KernelBuild {
    let archs: Vec<String> = env!("LINEAR_DIT_KERNEL_ARCHS")
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    match FATBIN {
        Some(_) => KernelBuild {
            source: "nvcc-fatbin",
            archs,
            nvcc: Some(env!("LINEAR_DIT_NVCC").to_string()),
        },
        None => KernelBuild {
            source: "nvrtc",
            archs: Vec::new(),
            nvcc: None,
        },
    }
}

/// Compiles [`KERNEL_SOURCE`] with NVRTC to PTX for `arch` (e.g. `compute_90`).
pub fn compile_with_nvrtc(arch: &'static str) -> Result<String> {
    if !CudaLibrary::Nvrtc.is_present() {
        return Err(unavailable(
            "the binary has no prebuilt kernels and libnvrtc.so was not found to compile them \
             (install the CUDA toolkit or scripts/install-cuda-toolkit.sh and put its lib/ on LD_LIBRARY_PATH)",
        ));
    }
    guarded("compiling kernels with NVRTC", || {
        let options = CompileOptions {
            arch: Some(arch),
            options: vec!["--std=c++17".into()],
            name: Some("linear_dit_kernels.cu".into()),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNEL_SOURCE, options)
            .map_err(|e| device_error("NVRTC could not compile kernels/", nvrtc_log(&e)))?;
        Ok(ptx.to_src())
    })
}

fn nvrtc_log(error: &cudarc::nvrtc::CompileError) -> String {
    match error {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
        other => format!("{other:?}"),
    }
}

/// The NVRTC virtual architecture for a compute capability.
pub fn nvrtc_arch(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (9, _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6) | (8, 7) => "compute_86",
        (m, _) if m >= 10 => "compute_90",
        _ => "compute_80",
    }
}

/// The loaded kernel module of one device.
pub struct Kernels {
    module: Arc<CudaModule>,
    /// How they were obtained (for logs and `doctor`).
    pub origin: String,
}

impl Kernels {
    /// Loads the fatbin, or compiles (or reads from the disk cache) the NVRTC PTX.
    pub fn load(ctx: &Arc<CudaContext>, compute_capability: (i32, i32)) -> Result<Self> {
        let (image, origin) = match FATBIN {
            Some(fatbin) => (Ptx::from_binary(fatbin.to_vec()), "nvcc fatbin".to_string()),
            None => {
                let arch = nvrtc_arch(compute_capability.0, compute_capability.1);
                let (ptx, origin) = cached_ptx(arch)?;
                (Ptx::from_src(ptx), origin)
            }
        };
        let module = guarded("loading the kernel module", || {
            ctx.load_module(image)
                .map_err(|e| device_error("cuModuleLoadData (kernels for this GPU)", e))
        })?;
        Ok(Kernels { module, origin })
    }

    /// The kernel called `name`.
    pub fn function(&self, name: &str) -> Result<CudaFunction> {
        self.module
            .load_function(name)
            .map_err(|e| device_error(&format!("kernel `{name}` is missing from the module"), e))
    }
}

/// NVRTC PTX for `arch`, from the disk cache when an identical compile was done before.
fn cached_ptx(arch: &'static str) -> Result<(String, String)> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    KERNEL_SOURCE.hash(&mut hasher);
    arch.hash(&mut hasher);
    let file =
        cache_dir().map(|dir| dir.join(format!("kernels-{arch}-{:016x}.ptx", hasher.finish())));
    if let Some(ptx) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        return Ok((ptx, format!("NVRTC {arch} (cached)")));
    }
    let ptx = compile_with_nvrtc(arch)?;
    if let Some(file) = &file {
        let written = file
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(file, &ptx));
        if let Err(e) = written {
            tracing::warn!(path = %file.display(), error = %e, "could not cache the compiled kernels");
        }
    }
    Ok((ptx, format!("NVRTC {arch}")))
}

/// `$LINEAR_DIT_CACHE`, else `$XDG_CACHE_HOME/linear-dit`, else `~/.cache/linear-dit`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LINEAR_DIT_CACHE") {
        return Some(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("linear-dit"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/linear-dit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernel syntax errors fail here even without a GPU: the embedded sources must compile
    /// with NVRTC for every architecture family we target (libnvrtc comes from
    /// scripts/install-cuda-toolkit.sh; scripts/test.sh puts it on LD_LIBRARY_PATH).
    #[test]
    fn embedded_kernels_compile_with_nvrtc() {
        if !CudaLibrary::Nvrtc.is_present() {
            println!(
                "skipped: libnvrtc.so not found (run scripts/install-cuda-toolkit.sh and put .cuda/lib on LD_LIBRARY_PATH)"
            );
            return;
        }
        for arch in ["compute_80", "compute_90"] {
            let ptx = compile_with_nvrtc(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            for kernel in [
                "norm_modulate_bf16",
                "linear_attention_apply_f16",
                "small_linear_f32",
                "class_onehot",
            ] {
                assert!(ptx.contains(kernel), "{arch}: PTX lacks `{kernel}`");
            }
        }
    }
}
