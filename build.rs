//! Build script: compiles the CUDA kernels when a toolkit is present, embeds their sources
//! for run-time NVRTC compilation either way, and records the git commit.
//!
//! - The kernels are translation units: every `.cu` under `kernels/` (not `kernels/emu/`),
//!   each compiled on its own, so each kernel gets its own register allocation. Their headers
//!   (`common.cuh`, `linear_attention/*.cuh`) are included, never compiled alone.
//! - nvcc is searched in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, the repository's
//!   `.cuda/bin` (scripts/install-cuda-toolkit.sh), then `PATH`.
//! - With nvcc, every unit becomes its own fatbin (cubins for sm_80, sm_86, sm_89, sm_90a and
//!   compute_80 PTX), warnings as errors, the units compiled in parallel, all embedded in the
//!   binary. A kernel that does not compile fails the build: CI catches it.
//! - Either way every unit's source, its headers inlined, is embedded for NVRTC: without nvcc
//!   the build still succeeds, and the runtime compiles the sources for the device it finds.
//! - `$OUT_DIR/kernel_units.rs` lists the units (name, NVRTC source, fatbin) for
//!   `src/backends/cuda/module.rs`.
//! - Cargo reruns this script only when a kernel or one of these variables changes.
//! - It also compiles `proto/` (the Open Inference Protocol's gRPC service) to Rust with
//!   protox, a protobuf compiler written in Rust, so no `protoc` binary is needed.
//! - The kernel part runs only with the `cuda` feature, the proto part only with `server`.

use std::collections::HashSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `-gencode` targets of the fatbins, and their names as `doctor` reports them.
const GENCODE: [(&str, &str); 5] = [
    ("arch=compute_80,code=sm_80", "sm_80"),
    ("arch=compute_86,code=sm_86", "sm_86"),
    ("arch=compute_89,code=sm_89", "sm_89"),
    ("arch=compute_90a,code=sm_90a", "sm_90a"),
    ("arch=compute_80,code=compute_80", "compute_80"),
];

/// nvcc's options for every unit, before the `-gencode`s.
const NVCC_FLAGS: [&str; 5] = ["-fatbin", "-O3", "-std=c++17", "-Werror", "all-warnings"];

fn main() {
    record_commit();
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    #[cfg(feature = "server")]
    compile_proto(&manifest, &out);
    // The kernels belong to the CUDA backend: a build without it neither embeds nor compiles
    // them.
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_kernels(&manifest, &out);
    }
}

/// One kernel translation unit.
struct Unit {
    /// Its path under `kernels/` without `.cu`, e.g. `linear_attention/instances/apply_bf16_d64`.
    name: String,
    /// The `.cu` file.
    path: PathBuf,
    /// The file with its headers inlined: what NVRTC compiles (and what the stamp hashes).
    source: String,
}

impl Unit {
    /// The unit's name as a file name (`/` → `__`).
    fn file_stem(&self) -> String {
        self.name.replace('/', "__")
    }
}

/// The kernels: every unit's NVRTC source into `$OUT_DIR/nvrtc/`, with nvcc (unless
/// `LINEAR_DIT_SKIP_NVCC` is set) every unit's fatbin into `$OUT_DIR/fatbin/`, and the table
/// of both, `$OUT_DIR/kernel_units.rs`.
fn build_kernels(manifest: &Path, out: &Path) {
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

    let kernels = manifest.join("kernels");
    let units = kernel_units(&kernels);
    let nvrtc_dir = out.join("nvrtc");
    fs::create_dir_all(&nvrtc_dir).expect("create $OUT_DIR/nvrtc");
    for unit in &units {
        let file = nvrtc_dir.join(format!("{}.cu", unit.file_stem()));
        fs::write(&file, &unit.source).expect("write an NVRTC source");
    }

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
        find_nvcc(manifest)
    };
    let fatbins = match &nvcc {
        Some(nvcc) if !units.is_empty() => {
            let fatbins = compile_fatbins(nvcc, &kernels, &units, &gencode, &out.join("fatbin"));
            println!(
                "cargo:rustc-env=LINEAR_DIT_KERNEL_ARCHS={}",
                archs.join(",")
            );
            println!("cargo:rustc-env=LINEAR_DIT_NVCC={}", nvcc.display());
            Some(fatbins)
        }
        _ => {
            println!("cargo:rustc-env=LINEAR_DIT_KERNEL_ARCHS=");
            println!("cargo:rustc-env=LINEAR_DIT_NVCC=");
            None
        }
    };

    let mut table =
        String::from("// Generated by build.rs: the kernel translation units of kernels/.\n&[\n");
    for (i, unit) in units.iter().enumerate() {
        let source = nvrtc_dir.join(format!("{}.cu", unit.file_stem()));
        let fatbin = fatbins
            .as_ref()
            .map_or("None".to_string(), |f: &Vec<PathBuf>| {
                format!("Some(include_bytes!({:?}))", f[i].display().to_string())
            });
        table.push_str(&format!(
            "    KernelUnit {{ name: {:?}, source: include_str!({:?}), fatbin: {fatbin} }},\n",
            unit.name,
            source.display().to_string()
        ));
    }
    table.push_str("]\n");
    fs::write(out.join("kernel_units.rs"), table).expect("write kernel_units.rs");
}

/// Compiles every unit with nvcc into `dir/<unit>.fatbin`, the units in parallel (as many at
/// once as cargo gives this build jobs), and returns the fatbins in the order of `units`. A
/// unit whose source, compiler and targets are those of its last build is not recompiled
/// (this script also reruns on every commit, for the commit id).
fn compile_fatbins(
    nvcc: &Path,
    kernels: &Path,
    units: &[Unit],
    gencode: &[(&str, &str)],
    dir: &Path,
) -> Vec<PathBuf> {
    fs::create_dir_all(dir).expect("create $OUT_DIR/fatbin");
    let fatbins: Vec<PathBuf> = units
        .iter()
        .map(|u| dir.join(format!("{}.fatbin", u.file_stem())))
        .collect();
    let jobs = env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, units.len());
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(unit) = units.get(i) else {
                            return failures;
                        };
                        if let Err(e) = compile_fatbin(nvcc, kernels, unit, gencode, &fatbins[i]) {
                            failures.push(e);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an nvcc worker thread panicked"))
            .collect()
    });
    if !failures.is_empty() {
        panic!(
            "nvcc failed to compile kernels/ ({}):\n{}",
            nvcc.display(),
            failures.join("\n")
        );
    }
    fatbins
}

/// nvcc of one unit into `fatbin`, unless the stamp beside it says it is up to date; the
/// error is nvcc's output.
fn compile_fatbin(
    nvcc: &Path,
    kernels: &Path,
    unit: &Unit,
    gencode: &[(&str, &str)],
    fatbin: &Path,
) -> Result<(), String> {
    let stamp = fatbin.with_extension("fatbin.stamp");
    let key = stamp_key(nvcc, unit, gencode);
    if fatbin.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(());
    }
    let mut cmd = Command::new(nvcc);
    cmd.args(NVCC_FLAGS).arg(format!("-I{}", kernels.display()));
    for (target, _) in gencode {
        cmd.args(["-gencode", target]);
    }
    cmd.arg("-o").arg(fatbin).arg(&unit.path);
    let output = cmd
        .output()
        .map_err(|e| format!("{}: running nvcc: {e}", unit.name))?;
    if !output.status.success() {
        return Err(format!(
            "{}:\n{}{}",
            unit.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::write(&stamp, key).map_err(|e| format!("{}: writing the stamp: {e}", unit.name))
}

/// What a unit's fatbin depends on: the compiler, the flags and targets, and the unit's
/// source with its headers.
fn stamp_key(nvcc: &Path, unit: &Unit, gencode: &[(&str, &str)]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    NVCC_FLAGS.hash(&mut hasher);
    unit.source.hash(&mut hasher);
    format!("{}\n{gencode:?}\n{:016x}", nvcc.display(), hasher.finish())
}

/// Every `.cu` under `kernels/` but `kernels/emu/`, sorted by name, with its NVRTC source.
fn kernel_units(kernels: &Path) -> Vec<Unit> {
    let mut paths = Vec::new();
    collect_sources(kernels, &kernels.join("emu"), &mut paths);
    let mut units: Vec<Unit> = paths
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(kernels)
                .unwrap_or(&path)
                .with_extension("");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let mut seen = HashSet::new();
            let mut source = String::new();
            inline_includes(&path, kernels, &mut seen, &mut source);
            Unit { name, path, source }
        })
        .collect();
    units.sort_by(|a, b| a.name.cmp(&b.name));
    units
}

/// The `.cu` files under `dir`, recursively, leaving out `skip`.
fn collect_sources(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            if path != skip {
                collect_sources(&path, skip, out);
            }
        } else if path.extension().is_some_and(|x| x == "cu") {
            out.push(path);
        }
    }
}

/// Appends `path` to `out` with every `#include "…"` replaced by the file it names (found
/// beside the including file, then in `kernels/`, as nvcc's `-I kernels` finds it), each
/// file once (the headers have include guards too); `#line` directives keep NVRTC's messages
/// pointing at the real files.
fn inline_includes(path: &Path, kernels: &Path, seen: &mut HashSet<PathBuf>, out: &mut String) {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let shown = path
        .strip_prefix(kernels)
        .unwrap_or(path)
        .display()
        .to_string();
    out.push_str(&format!("#line 1 \"{shown}\"\n"));
    for (number, line) in text.lines().enumerate() {
        let included = line
            .trim()
            .strip_prefix("#include")
            .map(str::trim)
            .and_then(|rest| rest.strip_prefix('"'))
            .and_then(|rest| rest.split('"').next());
        let Some(included) = included else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let beside = path.parent().map(|dir| dir.join(included));
        let header = beside
            .filter(|p| p.is_file())
            .unwrap_or_else(|| kernels.join(included));
        let header = header
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: #include \"{included}\": {e}", path.display()));
        if seen.insert(header.clone()) {
            inline_includes(&header, kernels, seen, out);
            out.push_str(&format!("#line {} \"{shown}\"\n", number + 2));
        }
    }
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
