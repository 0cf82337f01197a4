#!/usr/bin/env bash
# The serving measurement of the engine issue: `linear-dit serve` on the demo model, driven by
# `linear-dit loadgen` at 1 and 32 concurrent clients over loopback. Reports throughput,
# latency percentiles, the batching gain (32 clients ÷ 1) and, from the server's own /metrics,
# rows per forward and the scheduler's overhead as a share of forward time. Writes
# bench/results/serve-<backend>-<date>.json.
#
# Usage: scripts/serve-bench.sh [BACKEND] [THREADS] [REQUESTS]   (defaults: cpu 2 256)
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-cpu}"
THREADS="${2:-2}"
REQUESTS="${3:-256}"
PORT="${PORT:-18181}"
cargo build --release --bins 2>&1 | tail -1
BIN=target/release/linear-dit
"$BIN" --threads "$THREADS" --log warn serve --weights assets/digits.safetensors \
    --port "$PORT" --backend "$BACKEND" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
done
LINE=$("$BIN" --log warn loadgen --addr "127.0.0.1:$PORT" --clients 1,32 --requests "$REQUESTS" \
    --seconds 120 --json | tee /dev/stderr | tail -n 1)
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
DATE=$(date -u +%F)
mkdir -p bench/results
OUT="bench/results/serve-$BACKEND-$DATE.json"
printf '{"what": "linear-dit serve + loadgen, demo model (assets/digits.safetensors), DDIM 20 steps, guidance 4, 1 image per request", "commit": "%s", "backend": "%s", "threads": %s, "machine": {"cpu": "%s", "logical_cpus": %s}, "loadgen": %s}\n' \
    "$(git rev-parse --short=12 HEAD)" "$BACKEND" "$THREADS" "$CPU" "$(nproc)" "$LINE" > "$OUT"
echo "wrote $OUT"
