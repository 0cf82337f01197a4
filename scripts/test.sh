#!/usr/bin/env bash
# The test command (README, .ci/run): everything `cargo test` needs, then `cargo test`.
# Works on a clean machine with no GPU, no CUDA toolkit and no Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
cargo test --doc
