//! Build script: compiles the CUDA kernels when a toolkit is present, embeds their sources
//! for run-time NVRTC compilation either way, and records the git commit.
//!
//! - nvcc is searched in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, the repository's
//!   `.cuda/bin` (scripts/install-cuda-toolkit.sh), then `PATH`.
//! - With nvcc, every `kernels/*.cu` goes into one fatbin (cubins for sm_80, sm_86, sm_89,
//!   sm_90a and compute_80 PTX), warnings as errors, embedded in the binary (cfg
//!   `kernels_fatbin`). A kernel that does not compile fails the build: CI catches it.
//! - Without nvcc the build still succeeds: the runtime compiles the embedded sources with
//!   NVRTC for the device it finds.
//! - Cargo reruns this script only when a kernel or one of these variables changes.
//! - It also compiles `proto/` (the Open Inference Protocol's gRPC service) to Rust with
//!   protox, a protobuf compiler written in Rust, so no `protoc` binary is needed.
//! - The kernel part runs only with the `cuda` feature, the proto part only with `server`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `-gencode` targets of the fatbin, and their names as `doctor` reports them.
const GENCODE: [(&str, &str); 5] = [
    ("arch=compute_80,code=sm_80", "sm_80"),
    ("arch=compute_86,code=sm_86", "sm_86"),
    ("arch=compute_89,code=sm_89", "sm_89"),
    ("arch=compute_90a,code=sm_90a", "sm_90a"),
    ("arch=compute_80,code=compute_80", "compute_80"),
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kernels_fatbin)");
    println!("cargo:rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "LINEAR_DIT_SKIP_NVCC",
        "LINEAR_DIT_CUDA_ARCHS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=.cuda/bin/nvcc");
    record_commit();

    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    #[cfg(feature = "server")]
    compile_proto(&manifest, &out);
    // The kernels belong to the CUDA backend: a build without it neither embeds nor compiles
    // them.
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let kernels = manifest.join("kernels");
    let sources = kernel_sources(&kernels);

    // The NVRTC source: the shared header, then every kernel file without its include line.
    let header = fs::read_to_string(kernels.join("common.cuh")).unwrap_or_default();
    let mut nvrtc = header.clone();
    for path in &sources {
        let text = fs::read_to_string(path).unwrap_or_default();
        nvrtc.push_str(&format!("\n// ---- {} ----\n", file_name(path)));
        for line in text
            .lines()
            .filter(|l| l.trim() != "#include \"common.cuh\"")
        {
            nvrtc.push_str(line);
            nvrtc.push('\n');
        }
    }
    fs::write(out.join("kernels_nvrtc.cu"), nvrtc).expect("write kernels_nvrtc.cu");

    // LINEAR_DIT_CUDA_ARCHS=sm_90a (comma-separated) builds only those targets, e.g. a small
    // binary for one known GPU (scripts/gpu-bundle.sh).
    let only = env::var("LINEAR_DIT_CUDA_ARCHS").ok();
    let gencode: Vec<(&str, &str)> = GENCODE
        .iter()
        .copied()
        .filter(|(_, name)| {
            only.as_deref()
                .is_none_or(|list| list.split(',').any(|a| a.trim() == *name))
        })
        .collect();
    let archs: Vec<&str> = gencode.iter().map(|(_, name)| *name).collect();
    let nvcc = if env::var_os("LINEAR_DIT_SKIP_NVCC").is_some() {
        None
    } else {
        find_nvcc(&manifest)
    };
    match nvcc {
        Some(nvcc) if !sources.is_empty() => {
            let unit = out.join("kernels_all.cu");
            let includes: String = sources
                .iter()
                .map(|p| format!("#include \"{}\"\n", p.display()))
                .collect();
            fs::write(&unit, includes).expect("write kernels_all.cu");
            let fatbin = out.join("kernels.fatbin");
            // Skip nvcc when neither the kernels nor the compiler changed since the last build
            // (this script also reruns on every commit, for the commit id).
            let stamp = out.join("kernels.fatbin.stamp");
            let key = format!(
                "{}\n{}\n{archs:?}",
                nvcc.display(),
                fingerprint(&sources, &header)
            );
            if fatbin.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
                emit_fatbin(&fatbin, &nvcc, &archs);
                return;
            }
            let mut cmd = Command::new(&nvcc);
            cmd.arg("-fatbin")
                .args(["-O3", "-std=c++17", "-Werror", "all-warnings"])
                .arg(format!("-I{}", kernels.display()));
            for (target, _) in &gencode {
                cmd.args(["-gencode", target]);
            }
            cmd.arg("-o").arg(&fatbin).arg(&unit);
            let output = cmd
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
            if !output.status.success() {
                panic!(
                    "nvcc failed to compile kernels/ ({}):\n{}{}",
                    nvcc.display(),
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            fs::write(&stamp, key).expect("write the fatbin stamp");
            emit_fatbin(&fatbin, &nvcc, &archs);
        }
        _ => {
            println!("cargo:rustc-env=LINEAR_DIT_KERNEL_ARCHS=");
            println!("cargo:rustc-env=LINEAR_DIT_NVCC=");
        }
    }
}

/// Tells the crate where the fatbin is and what it holds.
fn emit_fatbin(fatbin: &Path, nvcc: &Path, archs: &[&str]) {
    println!("cargo:rustc-cfg=kernels_fatbin");
    println!("cargo:rustc-env=LINEAR_DIT_FATBIN={}", fatbin.display());
    println!(
        "cargo:rustc-env=LINEAR_DIT_KERNEL_ARCHS={}",
        archs.join(",")
    );
    println!("cargo:rustc-env=LINEAR_DIT_NVCC={}", nvcc.display());
}

/// A hash of the kernel sources and the compile flags.
fn fingerprint(sources: &[PathBuf], header: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    header.hash(&mut hasher);
    GENCODE.hash(&mut hasher);
    for path in sources {
        path.hash(&mut hasher);
        fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// `kernels/*.cu`, sorted.
fn kernel_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The first working nvcc among the documented locations.
fn find_nvcc(manifest: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(nvcc) = env::var_os("NVCC") {
        candidates.push(nvcc.into());
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env::var_os(var) {
            candidates.push(PathBuf::from(root).join("bin/nvcc"));
        }
    }
    candidates.push(manifest.join(".cuda/bin/nvcc"));
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path).map(|dir| dir.join("nvcc")));
    }
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Generates the gRPC messages, server and (transport-free) client of
/// `proto/grpc_predict_v2.proto` into `$OUT_DIR/inference.rs` (the `server` feature's, so
/// protox and tonic-prost-build are optional build-dependencies).
#[cfg(feature = "server")]
fn compile_proto(manifest: &Path, out: &Path) {
    println!("cargo:rerun-if-changed=proto");
    let dir = manifest.join("proto");
    let files = protox::compile([dir.join("grpc_predict_v2.proto")], [&dir])
        .unwrap_or_else(|e| panic!("compiling proto/grpc_predict_v2.proto: {e}"));
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The client is generic over its connection: the library links no client transport.
        .build_transport(false)
        .out_dir(out)
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("generating Rust for proto/grpc_predict_v2.proto: {e}"));
}

fn record_commit() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LINEAR_DIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
}
