#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu-check.sh runs on the GPU machine,
# into the git-ignored .gpu-bundle/ (carried to the device; < 64 MiB): the release binary and
# the GPU test executables, kernels compiled by nvcc for sm_90a only (the H200), stripped; the
# sana_bench example and diffusers' Python packages (py.tar.xz) for scripts/gpu-check-sana.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cuda-toolkit.sh
export LINEAR_DIT_CUDA_ARCHS=sm_90a
export CARGO_TARGET_DIR="$PWD/target/gpu-bundle"
BUNDLE=.gpu-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
cargo build --release --bins --example sana_bench
cp "$CARGO_TARGET_DIR/release/linear-dit" "$BUNDLE/linear-dit"
cp "$CARGO_TARGET_DIR/release/examples/sana_bench" "$BUNDLE/sana_bench"
# The test executables: the library's unit tests (per-kernel parity), tests/cuda.rs and
# tests/cuda_sana.rs (the sana flavor against the CPU backend).
cargo test --release --no-run --message-format=json --lib --test cuda --test cuda_sana 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    msg = json.loads(line)
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe and msg.get("profile", {}).get("test"):
        kind = msg["target"]["kind"][0]
        name = "lib-tests" if kind == "lib" else msg["target"]["name"] + "-tests"
        shutil.copy(exe, sys.argv[1] + "/" + name)
        print("bundled", name)
' "$BUNDLE"
strip "$BUNDLE"/* 2>/dev/null || true
# diffusers for python/sana_gpu_bench.py (scripts/gpu-check-sana.sh): the device machine has
# Python 3.12 with torch, numpy and safetensors, but not diffusers, and reaches no registry.
# Its pure-Python dependencies and the cp312 wheels of the compiled ones, less what the
# machine has (torch's own dependencies must stay torch's) or what an offline run never uses.
PY_VENDOR=$(mktemp -d)
python3 -m pip install -q --target "$PY_VENDOR" --python-version 3.12 --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "diffusers==0.42.1"
(cd "$PY_VENDOR" && rm -rf bin numpy numpy.libs numpy-* safetensors safetensors-* hf_xet hf_xet-* \
    filelock filelock-* fsspec fsspec-* typing_extensions* &&
    find . -name __pycache__ -type d -prune -exec rm -rf {} +)
tar -cJf "$BUNDLE/py.tar.xz" -C "$PY_VENDOR" .
rm -rf "$PY_VENDOR"
git rev-parse --short=12 HEAD > "$BUNDLE/COMMIT"
du -sh "$BUNDLE"
ls -la "$BUNDLE"
