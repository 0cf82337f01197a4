#!/usr/bin/env bash
# The prepared GPU check of the `sana` flavor (see ../shared/GPU.md): a second device call,
# beside scripts/gpu-check.sh (whose budget the DiT checks fill), run with .gpu-bundle/
# (built here by scripts/gpu-bundle.sh) carried along:
#
#   1. nvidia-smi and `linear-dit doctor`;
#   2. the sana GPU tests (tests/cuda_sana.rs): the CUDA forward in f32/bf16/f16 against the
#      CPU backend on the diffusers fixtures, mixed batches, graph capture and replay;
#   3. the benchmark (python/sana_gpu_bench.py): random-weight 600M- and 1600M-shaped models in
#      bf16 at 1024, 512 and 2048 px, 20 flow-DPM steps with CFG, transformer and scheduler
#      only, against diffusers eager and torch.compile on the same weights, in one run;
#   4. one result JSON and the log under $OUT (commit it under bench/results/).
#
# The device has torch but not diffusers and no registry: gpu-bundle.sh packs diffusers and
# the pure-Python packages it needs (py.tar.xz); they are put *after* the machine's own on the
# import path (LINEAR_DIT_PY_VENDOR), so torch keeps its own dependencies.
#
# Budgeted to BUDGET_S (default 540 s) like gpu-check.sh: correctness first, then benchmark
# shapes while time is left; what was skipped is listed in the JSON. Exit status non-zero,
# with a `GPU CHECK FAILED` line, when any step failed.
# Usage: scripts/gpu-check-sana.sh
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
BUDGET_S="${BUDGET_S:-540}"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
BIN="$PWD/.gpu-bundle"
LOG="$OUT/sana-log.txt"
STATUS="$OUT/sana-status.txt"
SKIPPED="$OUT/sana-skipped.txt"
: > "$STATUS"
: > "$SKIPPED"
source scripts/gpu-check-common.sh

# 1. The machine (~5 s).
say "commit $(cat "$BIN/COMMIT" 2>/dev/null), $(date -u +%FT%TZ), budget ${BUDGET_S}s"
nvidia-smi 2>&1 | tee -a "$LOG" > "$OUT/nvidia-smi.txt"
"$BIN/linear-dit" doctor --json > "$OUT/doctor.json" 2>> "$LOG"

# 2. The sana GPU tests (~40 s, estimate: a few tiny models per precision).
TESTS_OUT=/tmp/gpu-sana-tests.txt
: > "$TESTS_OUT"
step sana-tests 150 bash -c "'$BIN/cuda_sana-tests' --test-threads=1 --nocapture 2>&1 | tee -a '$TESTS_OUT'"
if grep -q "skipped (no usable GPU)" "$TESTS_OUT"; then
    echo "sana-tests-ran FAIL" >> "$STATUS"
    say "GPU TESTS SKIPPED: $(grep -m1 'skipped (no usable GPU)' "$TESTS_OUT")"
fi

# 3. The benchmark, in what is left (the script checks each shape's estimate itself).
PY=/tmp/linear-dit-py
rm -rf "$PY" && mkdir -p "$PY" && tar -xJf "$BIN/py.tar.xz" -C "$PY"
export LINEAR_DIT_PY_VENDOR="$PY"
step diffusers-import 60 python3 python/sana_gpu_bench.py --check-import
BENCH_S=$(( $(left) - 15 ))
if fits sana-bench 60; then
    step sana-bench "$BENCH_S" python3 python/sana_gpu_bench.py --binary "$BIN/sana_bench" \
        --budget-s $(( BENCH_S - 10 )) --commit "$(cat "$BIN/COMMIT" 2>/dev/null)" --out "$OUT/sana-gpu.json"
fi

finish "sana GPU check"
