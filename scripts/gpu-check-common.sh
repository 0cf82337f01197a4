# The helpers both prepared GPU checks (scripts/gpu-check.sh, scripts/gpu-check-sana.sh) use,
# sourced by them after they set START, BUDGET_S, LOG, STATUS and SKIPPED: a budgeted run of
# named steps whose pass/fail lines land in $STATUS and whose skips for time land in $SKIPPED,
# and the CUDA libraries of the machine on the loader's path.

say() { echo "== [$((SECONDS - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
# fits NAME ESTIMATE_S: whether ESTIMATE_S seconds are left; records NAME as skipped if not.
fits() {
    if (( $(left) >= $2 )); then return 0; fi
    echo "$1 (needs ~$2 s, $(left) s left)" >> "$SKIPPED"
    say "skipped for time: $1 (needs ~$2 s, $(left) s left)"
    return 1
}
# step NAME LIMIT_S COMMAND...: runs under a time limit, logs, records pass/fail.
step() {
    local name="$1" limit="$2"; shift 2
    say "$name (limit ${limit}s): $*"
    if timeout "$limit" "$@" >> "$LOG" 2>&1; then echo "$name pass" >> "$STATUS"; else echo "$name FAIL" >> "$STATUS"; fi
}

# cudarc loads libraries by name: put the CUDA libraries (cuBLASLt, NVRTC) on the path.
PY_NVIDIA=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__))' 2>/dev/null || true)
LIBS=""
if [[ -n "$PY_NVIDIA" ]]; then
    LIBS=$(find "$PY_NVIDIA" -maxdepth 3 -type d -name lib | tr '\n' ':')
fi
export LD_LIBRARY_PATH="${LIBS}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export RUST_LOG=warn
# Every GPU test fails instead of skipping when it cannot reach the GPU.
export LINEAR_DIT_REQUIRE_GPU=1

# finish WHAT: prints the status and what was skipped for time; exits non-zero, with a
# `GPU CHECK FAILED` line, when any step failed, else says WHAT passed.
finish() {
    say "status:"
    tee -a "$LOG" < "$STATUS"
    if [[ -s "$SKIPPED" ]]; then
        say "skipped for time:"
        tee -a "$LOG" < "$SKIPPED"
    fi
    if grep -q " FAIL$" "$STATUS"; then
        say "GPU CHECK FAILED: $(grep ' FAIL$' "$STATUS" | cut -d' ' -f1 | tr '\n' ' ')"
        exit 1
    fi
    say "$1 passed in $((SECONDS - START)) s"
}
