#!/usr/bin/env bash
# The test command (README, .ci/run). On a clean machine with no GPU it installs what the
# tests need — the pinned CUDA toolkit from PyPI into .cuda/ (so build.rs compiles the
# kernels with nvcc and a test compiles them with NVRTC) — then runs every test. GPU tests
# skip with a printed reason when there is no device. scripts/lean-check.sh then builds and
# tests the library without its default features.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! scripts/install-cuda-toolkit.sh; then
    echo "test.sh: warning: the CUDA toolkit could not be installed; kernels will not be compiled by nvcc or NVRTC in this run" >&2
fi
if [[ -d .cuda/lib ]]; then
    export LD_LIBRARY_PATH="$PWD/.cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
scripts/module-deps.py
scripts/kernel-check.sh
cargo test --all-targets "$@"
scripts/lean-check.sh
scripts/oip-clients-test.sh
cargo test --doc
