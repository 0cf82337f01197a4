#!/usr/bin/env bash
# lean-check.sh: the library without its default features stays what a service linking it
# for a CPU forward expects (README, "Features"):
#
# 1. its normal dependency tree holds none of the binary's, engine's, server's or CUDA
#    backend's crates (a dependency made unconditional again fails here, by name);
# 2. it builds: `cargo build --lib --no-default-features`;
# 3. its tests pass: unit tests, the integration tests that need no feature, doc tests;
# 4. each feature alone still compiles: `engine`, `cuda`, `server` with nothing else.
#
# Extra arguments go to step 3's `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Crates only the optional features may bring in.
FORBIDDEN=(clap indicatif anyhow tracing-subscriber axum hyper hyper-util tonic tonic-prost
    prost tokio cudarc libloading)

tree=$(cargo tree -e normal --no-default-features --prefix none)
found=()
for crate in "${FORBIDDEN[@]}"; do
    if grep -q "^$crate v" <<<"$tree"; then
        found+=("$crate")
    fi
done
if ((${#found[@]} > 0)); then
    echo "lean-check.sh: the --no-default-features library depends on: ${found[*]}" >&2
    echo "lean-check.sh: (cargo tree -e normal --no-default-features -i CRATE shows why)" >&2
    exit 1
fi
crates=$(sed 's/ (\*)$//' <<<"$tree" | sort -u | wc -l)
echo "lean-check.sh: $crates crates without default features, none of: ${FORBIDDEN[*]}"

cargo build --lib --no-default-features
cargo test --no-default-features "$@"
for feature in engine cuda server; do
    cargo check --lib --no-default-features --features "$feature"
done
