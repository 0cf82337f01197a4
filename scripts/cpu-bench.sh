#!/usr/bin/env bash
# The CPU speed measurement of the model-core issue: linear-dit's CPU backend beside PyTorch
# eager on the same machine, in the same run, same config (defaults, input_dim 64, f32),
# same weights file, same shape (B = 4, N = 256), same thread count (2). Writes
# bench/results/cpu-<date>.json with both figures, their ratio, the machine and the commit.
#
# Needs: a release build (built here) and python3 with torch, numpy and safetensors
# (pip install torch numpy safetensors). Usage: scripts/cpu-bench.sh [THREADS] [BATCH] [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
BATCH="${2:-4}"
TOKENS="${3:-256}"
cargo build --release --bins 2>&1 | tail -1
BIN=target/release/linear-dit
W=$(mktemp -d)/weights.safetensors
"$BIN" init --out "$W" --init random --input-dim 64 --log warn
last() { tail -n 1; }
echo "linear-dit (CPU backend, $THREADS threads):"
OURS=$("$BIN" --threads "$THREADS" --log warn bench --backend cpu --weights "$W" --batch "$BATCH" --tokens "$TOKENS" \
    --warmup 2 --iters 10 --json | tee /dev/stderr | last)
echo "PyTorch eager ($THREADS threads):"
PEER=$(python3 python/peer_bench.py --device cpu --dtype f32 --threads "$THREADS" --weights "$W" \
    --batch "$BATCH" --tokens "$TOKENS" --warmup 2 --iters 10 | tee /dev/stderr | last)
DATE=$(date -u +%F)
mkdir -p bench/results
python3 - "$OURS" "$PEER" "$THREADS" > "bench/results/cpu-$DATE.json" <<'PY'
import json, platform, subprocess, sys
ours, peer, threads = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
print(json.dumps({
    "what": "CPU forward throughput, linear-dit CPU backend vs PyTorch eager, same run",
    "commit": commit,
    "machine": {"cpu": cpu, "logical_cpus": len([l for l in open("/proc/cpuinfo") if l.startswith("processor")]),
                "simd": [f for f in ("avx2", "fma", "avx512f") if f in flags], "threads_used": threads},
    "shape": {"batch": ours["batch"], "tokens": ours["tokens"], "config": ours["config"]},
    "linear_dit": {"tokens_per_s": ours["tokens_per_s"], "ms_per_forward": ours["ms_per_forward"],
                   "gflops_per_s": ours["gflops_per_s"]},
    "pytorch_eager": {"tokens_per_s": peer["tokens_per_s"], "ms_per_forward": peer["ms_per_forward"],
                      "torch_version": peer["torch_version"]},
    "ratio_tokens_per_s": ours["tokens_per_s"] / peer["tokens_per_s"],
}, indent=2))
PY
cat "bench/results/cpu-$DATE.json"
