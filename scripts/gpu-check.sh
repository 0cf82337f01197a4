#!/usr/bin/env bash
# The one prepared GPU check (see ../shared/GPU.md), run on the GPU machine in one call with
# .gpu-bundle/ (built here by scripts/gpu-bundle.sh) carried along:
#
#   1. nvidia-smi and `linear-dit doctor` (libraries, compute capability);
#   2. the GPU test suite: every kernel against its CPU twin, the whole model against the CPU
#      backend per precision, mixed batches, graph replay vs eager;
#   3. compute-sanitizer memcheck and racecheck on a small forward;
#   4. the benchmark sweep, N = 256 … 65,536 and B = 1 … 64, beside PyTorch eager,
#      torch.compile and the softmax (SDPA/FlashAttention) model on the same weights file,
#      plus the measured ceilings (bf16 GEMM TFLOP/s, copy GB/s) and per-phase profiles;
#   5. the demo model on the GPU: classifier-judged samples (bf16) and the serving batching
#      gain (serve + loadgen, 1 vs 32 clients);
#   6. one result JSON and the logs under $OUT (commit the JSON under bench/results/).
#
# Every step runs even when an earlier one fails; the summary says what passed.
# Usage: scripts/gpu-check.sh [--quick]   (--quick: a 3-shape sweep)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
BIN="$PWD/.gpu-bundle"
LOG="$OUT/log.txt"
STATUS="$OUT/status.txt"
: > "$STATUS"
QUICK="${1:-}"
say() { echo "== $*" | tee -a "$LOG"; }
step() { # step NAME COMMAND...: runs, logs, records pass/fail
    local name="$1"; shift
    say "$name: $*"
    if "$@" >> "$LOG" 2>&1; then echo "$name pass" >> "$STATUS"; else echo "$name FAIL" >> "$STATUS"; fi
}

# cudarc loads libraries by name: put the CUDA libraries (cuBLASLt, NVRTC) on the path.
PY_NVIDIA=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__))' 2>/dev/null || true)
LIBS=""
if [[ -n "$PY_NVIDIA" ]]; then
    LIBS=$(find "$PY_NVIDIA" -maxdepth 3 -type d -name lib | tr '\n' ':')
fi
export LD_LIBRARY_PATH="${LIBS}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export RUST_LOG=warn

say "commit $(cat "$BIN/COMMIT" 2>/dev/null), $(date -u +%FT%TZ)"
nvidia-smi 2>&1 | tee -a "$LOG" > "$OUT/nvidia-smi.txt"
"$BIN/linear-dit" doctor --json > "$OUT/doctor.json" 2>> "$LOG"
cat "$OUT/doctor.json" >> "$LOG"

# 2. Tests (each prints its relative errors).
step kernel-tests "$BIN/lib-tests" backends::cuda --test-threads=1 --nocapture
step model-tests "$BIN/cuda-tests" --test-threads=1 --nocapture

# 3. compute-sanitizer on small forwards (fixtures of the repo; bf16 and f16).
FIX=tests/fixtures
for precision in bf16 f16; do
    step "memcheck-$precision" compute-sanitizer --tool memcheck --error-exitcode 1 \
        "$BIN/linear-dit" forward --backend cuda --precision "$precision" \
        --weights "$FIX/edifice_class.weights.safetensors" --input "$FIX/edifice_class.io.safetensors" \
        --output /tmp/sanitizer-eps.safetensors
done
"$BIN/linear-dit" init --out /tmp/sanitize.safetensors --init random --input-dim 16 --hidden-size 256 \
    --num-layers 2 --num-heads 4 --num-classes 10 >> "$LOG" 2>&1
step memcheck-bench compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$BIN/linear-dit" bench --backend cuda --weights /tmp/sanitize.safetensors --batch 3 --tokens 300 \
    --grid 15x20 --warmup 1 --iters 2
step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$BIN/linear-dit" bench --backend cuda --weights /tmp/sanitize.safetensors --batch 2 --tokens 300 \
    --grid 15x20 --warmup 0 --iters 1

# 4. Benchmarks: default config (h512 L12, input_dim 64), bf16, the same weights file for all.
W=/tmp/bench.safetensors
"$BIN/linear-dit" init --out "$W" --init random --input-dim 64 --dtype bf16 >> "$LOG" 2>&1
if [[ "$QUICK" == "--quick" ]]; then
    SHAPES="1x256 16x4096 4x16384"
else
    SHAPES="1x256 4x256 16x256 64x256 1x1024 16x1024 64x1024 1x4096 4x4096 16x4096 64x4096 1x16384 4x16384 16x16384 1x65536 4x65536 16x65536"
fi
COMPILE_SHAPES=" 1x256 64x256 16x4096 4x16384 1x65536 "
PROFILE_SHAPES=" 1x256 4x16384 16x4096 "
BENCH="$OUT/bench.jsonl"
: > "$BENCH"
last_json() { tail -n 1 | python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())))'; }
for shape in $SHAPES; do
    b=${shape%x*}; n=${shape#*x}
    extra=""
    [[ "$PROFILE_SHAPES" == *" $shape "* ]] && extra="--profile"
    say "bench B=$b N=$n"
    "$BIN/linear-dit" bench --backend cuda --precision bf16 --weights "$W" --batch "$b" --tokens "$n" \
        --warmup 3 --iters 20 --json $extra 2>> "$LOG" | tee -a "$LOG" | last_json >> "$BENCH" \
        || echo "bench-$shape FAIL" >> "$STATUS"
    for attention in linear softmax; do
        python3 python/peer_bench.py --device cuda --dtype bf16 --weights "$W" --batch "$b" --tokens "$n" \
            --attention "$attention" --warmup 3 --iters 10 2>> "$LOG" | tee -a "$LOG" | last_json >> "$BENCH" \
            || echo "peer-$attention-$shape FAIL" >> "$STATUS"
    done
    if [[ "$COMPILE_SHAPES" == *" $shape "* ]]; then
        python3 python/peer_bench.py --device cuda --dtype bf16 --weights "$W" --batch "$b" --tokens "$n" \
            --compile --warmup 3 --iters 10 2>> "$LOG" | tee -a "$LOG" | last_json >> "$BENCH" \
            || echo "peer-compile-$shape FAIL" >> "$STATUS"
    fi
done

# 5. The demo model on the GPU: are its bf16 samples still the digits asked for, and what does
#    step-level batching gain when serving it?
DIGITS=/tmp/digits.jsonl
: > "$DIGITS"
for class in 0 1 2 3 4 5 6 7 8 9; do
    "$BIN/linear-dit" sample --backend cuda --precision bf16 --weights assets/digits.safetensors \
        --class "$class" --num 20 --seed "$((100 + class))" --out /tmp/digits.png \
        --out-tensor /tmp/digits.safetensors >> "$LOG" 2>&1 &&
        python3 python/judge_samples.py /tmp/digits.safetensors --class "$class" | tee -a "$LOG" >> "$DIGITS" ||
        echo "digits-$class FAIL" >> "$STATUS"
done
SERVE=/tmp/serve.json
"$BIN/linear-dit" --log warn serve --backend cuda --weights assets/digits.safetensors --port 18181 >> "$LOG" 2>&1 &
SERVER=$!
for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/18181) 2>/dev/null && break; sleep 0.1; done
step serve-loadgen bash -c "'$BIN/linear-dit' --log warn loadgen --addr 127.0.0.1:18181 --clients 1,32 \
    --requests 512 --seconds 60 --json | tee '$SERVE'"
kill "$SERVER" 2>/dev/null

# 6. One result file.
python3 scripts/gpu_report.py "$BENCH" "$OUT/doctor.json" "$STATUS" "$(cat "$BIN/COMMIT" 2>/dev/null)" \
    "$SERVE" "$DIGITS" > "$OUT/gpu-check.json" 2>> "$LOG"
say "status:"
cat "$STATUS" | tee -a "$LOG"
