#!/usr/bin/env bash
# The Open Inference Protocol with the clients people really use: installs the pinned
# `tritonclient[http,grpc]` from PyPI into the git-ignored `.oip-clients/` (a pip --target
# folder, like scripts/install-cuda-toolkit.sh's `.cuda/`: no root, no system Python
# changes, an idempotent stamp), builds `linear-dit`, starts two servers on free loopback
# ports — one with the defaults and one with `--max-queue 1 --max-batch 2` to overload — and
# runs python/oip_clients_test.py against them (health, metadata, JSON, binary and gRPC
# forwards bit-identical, 400/INVALID_ARGUMENT, 429/RESOURCE_EXHAUSTED). The servers are
# stopped on exit, whatever happens; any failure exits non-zero.
#
# Without Python 3 and pip it prints a warning and skips (exit 0), except under CI=true or
# LINEAR_DIT_REQUIRE_OIP_CLIENTS=1, where a skip is a failure.
# Usage: scripts/oip-clients-test.sh [--force-install]
set -euo pipefail
cd "$(dirname "$0")/.."

PIN="tritonclient[http,grpc]==2.73.0"
ROOT="$PWD/.oip-clients"
SITE="$ROOT/site"
STAMP="$ROOT/.stamp"
PYTHON="${PYTHON:-python3}"

skip() {
    if [[ "${CI:-}" == "true" || "${LINEAR_DIT_REQUIRE_OIP_CLIENTS:-}" == "1" ]]; then
        echo "oip-clients-test: error: $1 (required here: CI or LINEAR_DIT_REQUIRE_OIP_CLIENTS=1)" >&2
        exit 1
    fi
    echo "oip-clients-test: warning: $1; skipping the real-client OIP test" >&2
    exit 0
}

command -v "$PYTHON" > /dev/null 2>&1 || skip "$PYTHON not found"
"$PYTHON" -m pip --version > /dev/null 2>&1 || skip "'$PYTHON -m pip' does not work"

if [[ "${1:-}" == "--force-install" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$PIN" ]]; then
    echo "oip-clients-test: installing $PIN into $SITE"
    rm -rf "$ROOT"
    mkdir -p "$SITE"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --no-compile --target "$SITE" "$PIN" || skip "pip could not install $PIN"
    echo "$PIN" > "$STAMP"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

cargo build --quiet --bin linear-dit
BIN="$PWD/target/debug/linear-dit"
WEIGHTS="$PWD/assets/digits.safetensors"
LOGS="$(mktemp -d)"
PIDS=()

stop() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2> /dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$LOGS"/*.log; do
            echo "--- $log (last 30 lines)" >&2
            tail -30 "$log" >&2 || true
        done
        echo "oip-clients-test: FAILED" >&2
    fi
    rm -rf "$LOGS"
    exit $status
}
trap stop EXIT

# Four free loopback ports, chosen by the kernel (all held at once, so they differ); they
# stay free until the servers bind them unless another process races for them (then a
# server fails to start and the log says so).
read -r HTTP GRPC OVER_HTTP OVER_GRPC < <("$PYTHON" -c '
import socket
held = [socket.socket() for _ in range(4)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))
')

# start NAME HTTP_PORT GRPC_PORT [flags...]: a server in the background, waited on until ready.
start() {
    local name=$1 http=$2 grpc=$3
    shift 3
    RUST_LOG=info "$BIN" serve --weights "$WEIGHTS" --backend cpu --host 127.0.0.1 \
        --port "$http" --grpc-port "$grpc" "$@" > "$LOGS/$name.log" 2>&1 &
    PIDS+=($!)
    local pid=$!
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2> /dev/null; then
            echo "oip-clients-test: the $name server exited before it was ready" >&2
            return 1
        fi
        if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$http/readyz', timeout=1)" 2> /dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "oip-clients-test: the $name server was not ready within 30 s" >&2
    return 1
}

start main "$HTTP" "$GRPC"
start overload "$OVER_HTTP" "$OVER_GRPC" --max-queue 1 --max-batch 2
SECONDS=0
"$PYTHON" python/oip_clients_test.py --http "127.0.0.1:$HTTP" --grpc "127.0.0.1:$GRPC" \
    --overload-http "127.0.0.1:$OVER_HTTP" --overload-grpc "127.0.0.1:$OVER_GRPC"
echo "oip-clients-test: passed in $SECONDS s ($PIN)"
