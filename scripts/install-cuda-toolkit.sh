#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 toolkit (nvcc, NVRTC, headers) from PyPI into the repository's
# git-ignored `.cuda/`, without root and without touching the system Python:
#
#   .cuda/site/          pip --target folder (the wheels land under site/nvidia/cu13/)
#   .cuda/bin/nvcc       -> site/nvidia/cu13/bin/nvcc   (and the rest of bin/: ptxas, fatbinary, ...)
#   .cuda/include        -> site/nvidia/cu13/include
#   .cuda/lib            -> site/nvidia/cu13/lib        (libnvrtc.so.13, libcudart.so.13, ...)
#   .cuda/nvvm           -> site/nvidia/cu13/nvvm       (cicc and libdevice, which nvcc needs)
#   .cuda/.stamp         the pinned versions; when it matches, the script returns at once
#
# The versions are pinned together: nvcc 13.0 emits PTX that the H200's driver (580, CUDA 13.0)
# accepts; an unpinned nvidia-nvvm would pull a newer one whose PTX that driver rejects.
# Called by CI on every run; idempotent. Usage: scripts/install-cuda-toolkit.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-nvvm==13.0.88
)
ROOT="$PWD/.cuda"
SITE="$ROOT/site"
STAMP="$ROOT/.stamp"
WANT="${PINS[*]}"

if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$ROOT/bin/nvcc" ]]; then
    echo "install-cuda-toolkit: CUDA toolkit already in $ROOT ($("$ROOT/bin/nvcc" --version | tail -1))"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" > /dev/null 2>&1; then
    echo "install-cuda-toolkit: error: $PYTHON not found; install Python 3 (with pip) first" >&2
    exit 1
fi
if ! "$PYTHON" -m pip --version > /dev/null 2>&1; then
    echo "install-cuda-toolkit: error: '$PYTHON -m pip' does not work; install pip" \
        "(e.g. apt-get install python3-pip, or $PYTHON -m ensurepip)" >&2
    exit 1
fi

echo "install-cuda-toolkit: installing ${PINS[*]} into $SITE"
rm -rf "$ROOT"
mkdir -p "$SITE"
# --no-deps: exactly the pinned set (nvcc's own unpinned requirements would pull a newer nvvm).
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    --no-deps --no-compile --target "$SITE" "${PINS[@]}"

CU="$SITE/nvidia/cu13"
for d in bin include lib nvvm; do
    if [[ ! -d "$CU/$d" ]]; then
        echo "install-cuda-toolkit: error: $CU/$d missing after pip install" >&2
        exit 1
    fi
    ln -sfn "site/nvidia/cu13/$d" "$ROOT/$d"
done
# nvcc finds cicc through ../nvvm/bin and the crt headers through ../include/crt relative to
# its own directory, so the cu13 tree works as-is; check that it really compiles.
NVCC="$ROOT/bin/nvcc"
chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2> /dev/null || true
if [[ ! -f "$CU/lib/libnvrtc.so.13" ]]; then
    echo "install-cuda-toolkit: error: libnvrtc.so.13 missing from $CU/lib" >&2
    exit 1
fi

PROBE="$(mktemp -d)"
trap 'rm -rf "$PROBE"' EXIT
cat > "$PROBE/probe.cu" << 'EOF'
extern "C" __global__ void probe(float* x) { x[threadIdx.x] += 1.0f; }
EOF
if ! "$NVCC" -arch=sm_90a -cubin -o "$PROBE/probe.cubin" "$PROBE/probe.cu"; then
    echo "install-cuda-toolkit: error: $NVCC cannot compile a probe kernel" >&2
    exit 1
fi

echo "$WANT" > "$STAMP"
echo "install-cuda-toolkit: ok: $("$NVCC" --version | tail -1)"
echo "install-cuda-toolkit: nvcc $NVCC, headers $ROOT/include, libraries $ROOT/lib (libnvrtc.so.13)"
