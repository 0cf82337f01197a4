#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu-check.sh runs on the GPU machine,
# into the git-ignored .gpu-bundle/ (carried to the device; < 64 MiB): the release binary and
# the GPU test executables, kernels compiled by nvcc for sm_90a only (the H200), stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cuda-toolkit.sh
export LINEAR_DIT_CUDA_ARCHS=sm_90a
export CARGO_TARGET_DIR="$PWD/target/gpu-bundle"
BUNDLE=.gpu-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"
cargo build --release --bins
cp "$CARGO_TARGET_DIR/release/linear-dit" "$BUNDLE/linear-dit"
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
git rev-parse --short=12 HEAD > "$BUNDLE/COMMIT"
du -sh "$BUNDLE"
ls -la "$BUNDLE"
