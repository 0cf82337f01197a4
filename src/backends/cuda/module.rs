//! Loading the kernels onto a device: the fatbin nvcc built into the binary when the build
//! machine had a toolkit and it holds code the device runs, otherwise the embedded sources
//! compiled by NVRTC for the device's architecture, with the PTX cached on disk (keyed by the
//! sources, the architecture and the NVRTC version) so the compile happens once per machine.

use super::device::{CudaLibrary, device_error, guarded, unavailable};
use crate::error::{Error, Result};
use cudarc::driver::sys::CUresult as CuResult;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use serde::Serialize;
use std::path::{Path, PathBuf};
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

/// Whether a fatbin built for `archs` (build.rs names: `sm_86`, `sm_90a`, `compute_80`) holds
/// code a device of compute capability `cc` runs: SASS for `sm_XY` runs on X.Z with Z ≥ Y,
/// `sm_XYa` only on X.Y exactly, and PTX for `compute_XY` is compiled by the driver for any
/// device from X.Y on.
pub fn fatbin_runs_on(archs: &[String], cc: (i32, i32)) -> bool {
    archs.iter().any(|arch| {
        let (sass, digits) = match (arch.strip_prefix("sm_"), arch.strip_prefix("compute_")) {
            (Some(digits), _) => (true, digits),
            (None, Some(digits)) => (false, digits),
            (None, None) => return false,
        };
        let (digits, specific) = match digits.strip_suffix('a') {
            Some(digits) => (digits, true),
            None => (digits, false),
        };
        let Ok(number) = digits.parse::<i32>() else {
            return false;
        };
        let target = (number / 10, number % 10);
        match (specific, sass) {
            (true, _) => cc == target,
            (false, true) => cc.0 == target.0 && cc.1 >= target.1,
            (false, false) => cc >= target,
        }
    })
}

/// Where a device's kernels are loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelSource {
    /// The fatbin built into the binary.
    Fatbin,
    /// The embedded sources, compiled by NVRTC.
    Nvrtc,
}

/// The first source to try for a device of compute capability `cc`: the fatbin when the
/// binary has one with code for the device, else NVRTC.
pub fn first_source(has_fatbin: bool, archs: &[String], cc: (i32, i32)) -> KernelSource {
    if has_fatbin && fatbin_runs_on(archs, cc) {
        KernelSource::Fatbin
    } else {
        KernelSource::Nvrtc
    }
}

/// Whether a fatbin that `cuModuleLoadData` refused with `error` is worth replacing by NVRTC:
/// the driver found no code for this GPU, or could not compile the fatbin's PTX (built by an
/// nvcc newer than the driver). Other failures (out of memory, ...) would fail NVRTC's PTX too.
pub fn retry_with_nvrtc(error: CuResult) -> bool {
    matches!(
        error,
        CuResult::CUDA_ERROR_NO_BINARY_FOR_GPU
            | CuResult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
            | CuResult::CUDA_ERROR_INVALID_PTX
    )
}

/// Why no kernels can be loaded on a device of compute capability `cc` (the fatbin has no
/// code for it and NVRTC is absent), or `None`.
pub fn kernels_unavailable(cc: (i32, i32)) -> Option<Error> {
    let build = kernel_build();
    let fatbin = first_source(FATBIN.is_some(), &build.archs, cc) == KernelSource::Fatbin;
    (!fatbin && !CudaLibrary::Nvrtc.is_present()).then(|| {
        unavailable(format!(
            "no kernels for sm_{}{}: the binary's fatbin covers [{}] and libnvrtc.so was not found to compile them",
            cc.0,
            cc.1,
            build.archs.join(", ")
        ))
    })
}

/// The loaded kernel module of one device.
pub struct Kernels {
    module: Arc<CudaModule>,
    /// How they were obtained (for logs and `doctor`).
    pub origin: String,
}

impl Kernels {
    /// Loads the fatbin when it has code for the device, otherwise (or when the driver
    /// refuses it for want of such code) compiles — or reads from the disk cache — the NVRTC
    /// PTX.
    pub fn load(ctx: &Arc<CudaContext>, compute_capability: (i32, i32)) -> Result<Self> {
        let (major, minor) = compute_capability;
        let archs = kernel_build().archs;
        if let Some(fatbin) = FATBIN {
            if first_source(true, &archs, compute_capability) == KernelSource::Fatbin {
                match load_image(ctx, Ptx::from_binary(fatbin.to_vec()))? {
                    Ok(module) => {
                        return Ok(Kernels {
                            module,
                            origin: "nvcc fatbin".to_string(),
                        });
                    }
                    Err(e) if retry_with_nvrtc(e.0) => tracing::warn!(
                        error = %e,
                        "the driver refused the fatbin's code for sm_{major}{minor}; compiling the kernels with NVRTC"
                    ),
                    Err(e) => return Err(device_error("cuModuleLoadData (the kernel fatbin)", e)),
                }
            } else {
                tracing::warn!(
                    archs = %archs.join(","),
                    "the kernel fatbin has no code for sm_{major}{minor}; compiling the kernels with NVRTC"
                );
            }
        }
        let arch = nvrtc_arch(major, minor);
        let (ptx, origin) = cached_ptx(arch)?;
        let module = load_image(ctx, Ptx::from_src(ptx))?
            .map_err(|e| device_error("cuModuleLoadData (NVRTC PTX for this GPU)", e))?;
        Ok(Kernels { module, origin })
    }

    /// The kernel called `name`.
    pub fn function(&self, name: &str) -> Result<CudaFunction> {
        self.module
            .load_function(name)
            .map_err(|e| device_error(&format!("kernel `{name}` is missing from the module"), e))
    }
}

/// `cuModuleLoadData` of `image`: the module, or the driver's refusal (for the caller to
/// judge); a panic inside cudarc is the outer error.
fn load_image(
    ctx: &Arc<CudaContext>,
    image: Ptx,
) -> Result<std::result::Result<Arc<CudaModule>, cudarc::driver::DriverError>> {
    guarded("loading the kernel module", || Ok(ctx.load_module(image)))
}

/// NVRTC's version (major, minor).
fn nvrtc_version() -> Result<(i32, i32)> {
    if !CudaLibrary::Nvrtc.is_present() {
        return Err(unavailable("libnvrtc.so was not found"));
    }
    guarded("reading the NVRTC version", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| device_error("nvrtcVersion", format!("{e:?}")))?;
        Ok((major, minor))
    })
}

/// The cache file name of the PTX NVRTC `nvrtc` (major, minor) makes of `source` for `arch`:
/// a different NVRTC may emit different (or, for an older driver, unloadable) PTX, so its
/// version is part of the key, beside a hash of the sources that is stable across Rust
/// versions (64-bit FNV-1a).
fn ptx_cache_name(source: &str, arch: &str, nvrtc: (i32, i32)) -> String {
    let hash = source.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "kernels-{arch}-nvrtc{}.{}-{hash:016x}.ptx",
        nvrtc.0, nvrtc.1
    )
}

/// Writes `contents` to `path` so that a reader never sees a partial file (two processes
/// compiling at once, or a crash mid-write): into a temporary file of the same folder, then
/// renamed over `path` (atomic on one file system).
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let written = std::fs::write(&temp, contents).and_then(|_| std::fs::rename(&temp, path));
    if written.is_err() {
        // Best effort: the temporary file is garbage either way.
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// NVRTC PTX for `arch`, from the disk cache when an identical compile (same sources, same
/// architecture, same NVRTC) was done before.
fn cached_ptx(arch: &'static str) -> Result<(String, String)> {
    let version = nvrtc_version()?;
    let file = cache_dir().map(|dir| dir.join(ptx_cache_name(KERNEL_SOURCE, arch, version)));
    if let Some(ptx) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        return Ok((ptx, format!("NVRTC {arch} (cached)")));
    }
    let ptx = compile_with_nvrtc(arch)?;
    if let Some(file) = &file
        && let Err(e) = write_atomically(file, ptx.as_bytes())
    {
        tracing::warn!(path = %file.display(), error = %e, "could not cache the compiled kernels");
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

    fn archs(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_fatbin_is_used_only_for_devices_it_has_code_for() {
        let default = archs(&["sm_80", "sm_86", "sm_89", "sm_90a", "compute_80"]);
        for cc in [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)] {
            assert!(fatbin_runs_on(&default, cc), "{cc:?}");
        }
        let h200_only = archs(&["sm_90a"]);
        assert!(fatbin_runs_on(&h200_only, (9, 0)));
        for cc in [(8, 0), (8, 9), (10, 0), (12, 0)] {
            assert!(!fatbin_runs_on(&h200_only, cc), "{cc:?}");
            assert_eq!(first_source(true, &h200_only, cc), KernelSource::Nvrtc);
        }
        // SASS runs on later minors of its major only; PTX from its version on.
        assert!(fatbin_runs_on(&archs(&["sm_80"]), (8, 6)));
        assert!(!fatbin_runs_on(&archs(&["sm_86"]), (8, 0)));
        assert!(!fatbin_runs_on(&archs(&["sm_80"]), (9, 0)));
        assert!(!fatbin_runs_on(&archs(&["compute_90"]), (8, 9)));
        assert!(!fatbin_runs_on(&archs(&["bogus", "sm_x"]), (9, 0)));
        assert_eq!(first_source(true, &default, (9, 0)), KernelSource::Fatbin);
        assert_eq!(first_source(false, &default, (9, 0)), KernelSource::Nvrtc);
    }

    #[test]
    fn only_missing_code_for_the_gpu_falls_back_to_nvrtc() {
        assert!(retry_with_nvrtc(CuResult::CUDA_ERROR_NO_BINARY_FOR_GPU));
        assert!(retry_with_nvrtc(
            CuResult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
        ));
        assert!(!retry_with_nvrtc(CuResult::CUDA_ERROR_OUT_OF_MEMORY));
        assert!(!retry_with_nvrtc(CuResult::CUDA_ERROR_INVALID_CONTEXT));
    }

    #[test]
    fn ptx_cache_key_covers_sources_arch_and_nvrtc_version() {
        let key = ptx_cache_name("src", "compute_90", (13, 0));
        assert_eq!(key, ptx_cache_name("src", "compute_90", (13, 0)));
        assert!(key.starts_with("kernels-compute_90-nvrtc13.0-"), "{key}");
        for other in [
            ptx_cache_name("src", "compute_90", (13, 1)),
            ptx_cache_name("src", "compute_90", (12, 0)),
            ptx_cache_name("src", "compute_80", (13, 0)),
            ptx_cache_name("src2", "compute_90", (13, 0)),
        ] {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn the_ptx_cache_is_written_atomically() {
        let dir = std::env::temp_dir().join(format!("linear-dit-cache-{}", std::process::id()));
        let file = dir.join("nested").join("kernels.ptx");
        write_atomically(&file, b"first").unwrap();
        write_atomically(&file, b"second version").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"second version");
        // Nothing but the file itself is left in the folder (no temporary).
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kernels.ptx")]);
        // A folder that cannot be created is an error, and leaves no temporary behind.
        let blocked = dir.join("blocker");
        std::fs::write(&blocked, b"a file, not a folder").unwrap();
        assert!(write_atomically(&blocked.join("kernels.ptx"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        let version = nvrtc_version().unwrap_or_else(|e| panic!("nvrtcVersion: {e}"));
        assert!(version.0 >= 12, "NVRTC {version:?}");
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
