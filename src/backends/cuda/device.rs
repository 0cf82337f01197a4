//! Finding the GPU without ever panicking: which CUDA libraries load (and from where), the
//! driver version, the devices. Every failure is a typed reason, never a crash: cudarc
//! panics when a library is absent, so every entry into it is guarded first, and the few
//! calls that could still panic run under `catch_unwind` ([`guarded`]), which tells a missing
//! library (the backend is unavailable) from a bug (an internal error, never a fallback).

use crate::error::{Error, Result};
use serde::Serialize;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A CUDA shared library the backend needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudaLibrary {
    /// The driver API (`libcuda.so`), installed with the NVIDIA driver.
    Driver,
    /// cuBLASLt (`libcublasLt.so`), for the GEMMs.
    CublasLt,
    /// NVRTC (`libnvrtc.so`), to compile the kernels when the binary carries no fatbin.
    Nvrtc,
}

impl CudaLibrary {
    /// The library's base name (`cuda`, `cublasLt`, `nvrtc`).
    pub fn name(self) -> &'static str {
        match self {
            CudaLibrary::Driver => "cuda",
            CudaLibrary::CublasLt => "cublasLt",
            CudaLibrary::Nvrtc => "nvrtc",
        }
    }

    /// Whether cudarc can load it (the check cudarc itself would otherwise panic on).
    pub fn is_present(self) -> bool {
        // SAFETY: these only try to dlopen the library by name and close it again.
        let present = catch_unwind(|| unsafe {
            match self {
                CudaLibrary::Driver => cudarc::driver::sys::is_culib_present(),
                CudaLibrary::CublasLt => cudarc::cublaslt::sys::is_culib_present(),
                CudaLibrary::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
            }
        });
        present.unwrap_or(false)
    }

    /// Where the library is loaded from, if it loads: the mapped file's path.
    pub fn locate(self) -> Option<String> {
        let candidates = cudarc::get_lib_name_candidates(self.name());
        for candidate in candidates {
            // SAFETY: loading a CUDA library runs no user code beyond its initialisers.
            let Ok(library) = (unsafe { libloading::Library::new(&candidate) }) else {
                continue;
            };
            let path = mapped_path(&format!("lib{}", self.name())).unwrap_or(candidate);
            drop(library);
            return Some(path);
        }
        None
    }
}

/// The path of a mapped shared object whose file name starts with `prefix.so`
/// (Linux: `/proc/self/maps`).
fn mapped_path(prefix: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            std::path::Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{prefix}.so")))
        })
        .map(str::to_string)
}

/// One GPU.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// CUDA ordinal.
    pub index: usize,
    /// Marketing name, e.g. "NVIDIA H200".
    pub name: String,
    /// (major, minor).
    pub compute_capability: (i32, i32),
    /// Total memory, bytes.
    pub memory_bytes: usize,
    /// Streaming multiprocessors.
    pub multiprocessors: i32,
}

/// The start of the reason of every [`Error::Device`] that reports a panic of our own code
/// (or an unexpected one inside cudarc): a bug to report, never a missing GPU.
pub const INTERNAL_ERROR: &str = "internal error (a bug in linear-dit)";

/// What a panic caught at the boundary into cudarc means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicKind {
    /// cudarc's dynamic loading found no library, or a library without a symbol it needs:
    /// the GPU stack is absent or too old here, which is not a bug.
    LibraryMissing,
    /// Anything else: a bug (ours, or cudarc's).
    Bug,
}

/// Classifies a panic message. cudarc 0.19 (dynamic loading) panics with exactly these
/// texts when a library is absent (`panic_no_lib_found` in its `lib.rs`) or lacks a symbol
/// (`load` in every `*/sys/mod.rs`); every other panic is a bug and must not pass for a
/// machine without a GPU.
pub fn classify_panic(message: &str) -> PanicKind {
    let missing_library = message.starts_with("Unable to dynamically load the \"")
        && message.contains("\" shared library - searched for library names: ");
    if missing_library || message.starts_with("Missing symbol ") {
        PanicKind::LibraryMissing
    } else {
        PanicKind::Bug
    }
}

/// Runs `f`, turning a panic into an error: a missing CUDA library into
/// [`Error::BackendUnavailable`], anything else into an [`Error::Device`] whose reason starts
/// with [`INTERNAL_ERROR`] (see [`is_internal_error`]).
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        Err(match classify_panic(message) {
            PanicKind::LibraryMissing => unavailable(format!("{what}: {message}")),
            PanicKind::Bug => internal_error(format!("{what}: {message}")),
        })
    })
}

/// Whether `error` reports a bug caught by [`guarded`] (after which the backend's state
/// cannot be trusted).
pub fn is_internal_error(error: &Error) -> bool {
    matches!(error, Error::Device { backend: "cuda", reason } if reason.starts_with(INTERNAL_ERROR))
}

/// An [`Error::Device`] reporting a bug of ours (see [`is_internal_error`]): `what` went wrong.
pub fn internal_error(what: impl std::fmt::Display) -> Error {
    Error::Device {
        backend: "cuda",
        reason: format!("{INTERNAL_ERROR}: {what}"),
    }
}

/// A [`Error::BackendUnavailable`] for the CUDA backend.
pub fn unavailable(reason: impl Into<String>) -> Error {
    Error::BackendUnavailable {
        backend: "cuda",
        reason: reason.into(),
    }
}

/// A [`Error::Device`] for the CUDA backend.
pub fn device_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Device {
        backend: "cuda",
        reason: format!("{what}: {error}"),
    }
}

/// The driver's CUDA version as (major, minor), after checking the driver library loads.
pub fn driver_version() -> Result<(i32, i32)> {
    if !CudaLibrary::Driver.is_present() {
        return Err(unavailable(
            "no NVIDIA driver: libcuda.so was not found (no GPU on this machine, or the driver is not installed)",
        ));
    }
    guarded("reading the driver version", || {
        cudarc::driver::result::init().map_err(|e| unavailable(format!("cuInit failed: {e}")))?;
        let mut version = 0;
        // SAFETY: cuDriverGetVersion writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(|e| unavailable(format!("cuDriverGetVersion failed: {e}")))?;
        Ok((version / 1000, (version % 1000) / 10))
    })
}

/// Every visible device, or why there is none.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    driver_version()?;
    guarded("listing devices", || {
        let count = cudarc::driver::result::device::get_count()
            .map_err(|e| unavailable(format!("cuDeviceGetCount failed: {e}")))?;
        if count <= 0 {
            return Err(unavailable("the driver reports no CUDA device"));
        }
        (0..count as usize).map(describe).collect()
    })
}

fn describe(index: usize) -> Result<DeviceInfo> {
    use cudarc::driver::sys::CUdevice_attribute as A;
    let dev = cudarc::driver::result::device::get(index as i32)
        .map_err(|e| device_error("cuDeviceGet", e))?;
    let attribute = |attr| {
        // SAFETY: `dev` is a valid device handle.
        unsafe { cudarc::driver::result::device::get_attribute(dev, attr) }
            .map_err(|e| device_error("cuDeviceGetAttribute", e))
    };
    let name = cudarc::driver::result::device::get_name(dev)
        .map_err(|e| device_error("cuDeviceGetName", e))?;
    // SAFETY: `dev` is a valid device handle.
    let memory_bytes = unsafe { cudarc::driver::result::device::total_mem(dev) }
        .map_err(|e| device_error("cuDeviceTotalMem", e))?;
    Ok(DeviceInfo {
        index,
        name,
        compute_capability: (
            attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attribute(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        memory_bytes,
        multiprocessors: attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cudarc_library_absence_panics_are_classified_as_missing_libraries() {
        // The exact texts of cudarc 0.19.10 (lib.rs `panic_no_lib_found`, sys/mod.rs `load`).
        let no_lib = "Unable to dynamically load the \"cublasLt\" shared library - searched for \
                      library names: [\"libcublasLt.so\", \"libcublasLt.so.13\"]. Ensure that \
                      `LD_LIBRARY_PATH` has the correct path to the installed library.";
        assert_eq!(classify_panic(no_lib), PanicKind::LibraryMissing);
        let no_symbol = "Missing symbol cuGraphInstantiateWithFlags: undefined symbol";
        assert_eq!(classify_panic(no_symbol), PanicKind::LibraryMissing);
    }

    #[test]
    fn other_panics_are_classified_as_bugs() {
        for message in [
            "index out of bounds: the len is 3 but the index is 7",
            "called `Option::unwrap()` on a `None` value",
            "Unsupported target pointer width",
            "Unable to dynamically load the plan",
            "a panic without a message",
            "",
        ] {
            assert_eq!(classify_panic(message), PanicKind::Bug, "{message}");
        }
    }

    #[test]
    fn guarded_reports_bugs_as_internal_errors_and_absence_as_unavailable() {
        let bug = guarded("running the forward", || -> Result<()> {
            panic!("index out of bounds: the len is 3 but the index is 7")
        });
        let bug = bug.err().map(|e| (is_internal_error(&e), e.to_string()));
        assert!(
            matches!(&bug, Some((true, text)) if text.contains("internal error (a bug in linear-dit): running the forward: index out of bounds")),
            "{bug:?}"
        );
        let absent = guarded("opening the GPU", || -> Result<()> {
            panic!(
                "Unable to dynamically load the \"cuda\" shared library - searched for library names: [\"libcuda.so\"]."
            )
        });
        assert!(
            matches!(&absent, Err(e @ Error::BackendUnavailable { .. }) if !is_internal_error(e)),
            "{absent:?}"
        );
        assert_eq!(guarded("nothing", || Ok(7)).ok(), Some(7));
    }

    /// On a machine without the driver, cudarc's real panic (not a copy of its text) is the
    /// one classified as a missing library.
    #[test]
    fn the_real_missing_driver_panic_means_unavailable() {
        if CudaLibrary::Driver.is_present() {
            println!("skipped: libcuda.so is present here, so cudarc does not panic");
            return;
        }
        let result = guarded("cuInit", || {
            cudarc::driver::result::init().map_err(|e| device_error("cuInit", e))
        });
        assert!(
            matches!(&result, Err(Error::BackendUnavailable { .. })),
            "{result:?}"
        );
    }
}
