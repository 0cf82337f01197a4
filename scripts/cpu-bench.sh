#!/usr/bin/env bash
# The CPU speed measurement of the model-core issue: linear-dit's CPU backend beside PyTorch
# eager on the same machine, in the same run, same config (defaults, input_dim 64, f32),
# same weights file, same shape (B = 4, N = 256), same thread count (2). The two alternate for
# ROUNDS rounds (a shared machine drifts by ±10% from minute to minute; alternating exposes
# both to the same drift) and the ratio is of the medians. Writes bench/results/cpu-<date>.json
# with every round, both medians, their ratio, the machine and the commit.
#
# Needs: a release build (built here) and python3 with torch, numpy and safetensors
# (pip install torch numpy safetensors). Usage: scripts/cpu-bench.sh [THREADS] [BATCH] [TOKENS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
BATCH="${2:-4}"
TOKENS="${3:-256}"
ROUNDS="${4:-3}"
cargo build --release --bins 2>&1 | tail -1
BIN=target/release/linear-dit
W=$(mktemp -d)/weights.safetensors
"$BIN" init --out "$W" --init random --input-dim 64 --log warn
OURS=()
PEER=()
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS: linear-dit (CPU backend, $THREADS threads)"
    OURS+=("$("$BIN" --threads "$THREADS" --log warn bench --backend cpu --weights "$W" --batch "$BATCH" \
        --tokens "$TOKENS" --warmup 2 --iters 10 --json | tail -n 1)")
    echo "round $round/$ROUNDS: PyTorch eager ($THREADS threads)"
    PEER+=("$(python3 python/peer_bench.py --device cpu --dtype f32 --threads "$THREADS" --weights "$W" \
        --batch "$BATCH" --tokens "$TOKENS" --warmup 2 --iters 10 | tail -n 1)")
done
DATE=$(date -u +%F)
mkdir -p bench/results
python3 - "$THREADS" "$ROUNDS" "${OURS[@]}" "${PEER[@]}" > "bench/results/cpu-$DATE.json" <<'PY'
import json, platform, statistics, subprocess, sys
threads, rounds = int(sys.argv[1]), int(sys.argv[2])
ours = [json.loads(s) for s in sys.argv[3:3 + rounds]]
peer = [json.loads(s) for s in sys.argv[3 + rounds:3 + 2 * rounds]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
ours_tps = statistics.median(o["tokens_per_s"] for o in ours)
peer_tps = statistics.median(p["tokens_per_s"] for p in peer)
print(json.dumps({
    "what": "CPU forward throughput, linear-dit CPU backend vs PyTorch eager, alternating in one run",
    "commit": commit,
    "machine": {"cpu": cpu, "logical_cpus": len([l for l in open("/proc/cpuinfo") if l.startswith("processor")]),
                "simd": [f for f in ("avx2", "fma", "avx512f") if f in flags], "threads_used": threads},
    "shape": {"batch": ours[0]["batch"], "tokens": ours[0]["tokens"], "config": ours[0]["config"]},
    "linear_dit": {"tokens_per_s_median": ours_tps,
                   "rounds": [{"tokens_per_s": o["tokens_per_s"], "ms_per_forward": o["ms_per_forward"],
                               "gflops_per_s": o["gflops_per_s"]} for o in ours]},
    "pytorch_eager": {"tokens_per_s_median": peer_tps, "torch_version": peer[0]["torch_version"],
                      "rounds": [{"tokens_per_s": p["tokens_per_s"], "ms_per_forward": p["ms_per_forward"]}
                                 for p in peer]},
    "ratio_tokens_per_s": ours_tps / peer_tps,
}, indent=2))
PY
cat "bench/results/cpu-$DATE.json"
