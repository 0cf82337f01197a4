#!/usr/bin/env bash
# kernel-check.sh: runs the CUDA kernels of kernels/ on the CPU (kernels/emu, the CPU executor)
# against exact references, so they are tested on every machine, GPU or not. Needs only g++
# (C++20; Debian's g++ 12).
#
#   scripts/kernel-check.sh                  the three builds below, then the mutation check
#   scripts/kernel-check.sh --no-mutations
#   scripts/kernel-check.sh --mutations-only   (needs the plain build's objects: builds them)
#
# 1. plain (-O2): every case;
# 2. -fsanitize=thread: the quick subset (data races between the threads of a block: a
#    missing __syncthreads);
# 3. -fsanitize=address,undefined: the quick subset (out-of-bounds global and shared memory,
#    the dynamic shared buffer included, and undefined behaviour).
# 4. mutations: known bugs put into a copy of kernels/ (a deleted __syncthreads, a wrong
#    epsilon, an off-by-one, a lost fp16 clamp, ...); each must make the harness fail, and raw
#    inline asm must fail to compile. A surviving mutant fails the script.
#
# The kernels are compiled as one generated translation unit: cuda_emu.hpp, then every
# translation unit of kernels/ (every .cu but kernels/emu/, sorted, as build.rs finds them)
# from a copy of kernels/ whose shared-memory declaration lines (headers included) are
# rewritten into the executor's macros (see cuda_emu.hpp for why). Build outputs:
# target/kernel-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

mutations=1
builds=1
for arg in "$@"; do
    case "$arg" in
        --no-mutations) mutations=0 ;;
        --mutations-only) builds=0 ;;
        *) echo "kernel-check.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

if ! command -v g++ >/dev/null 2>&1; then
    echo "kernel-check.sh: g++ not found; the CPU kernel check needs g++ with C++20 (Debian: apt-get install g++)" >&2
    exit 1
fi

out=target/kernel-check
mkdir -p "$out"
emu=kernels/emu
# -Wno-unknown-pragmas: the kernels and common.cuh use #pragma unroll, which g++ does not know.
cxx=(g++ -std=c++20 -Wall -Wextra -Werror -Wno-unknown-pragmas -pthread)
harness_sources=("$emu"/runtime.cpp "$emu"/ptx_models.cpp "$emu"/kernel_check.cpp
    "$emu"/emu_selftest.cpp "$emu"/check_pointwise.cpp "$emu"/check_small_linear.cpp
    "$emu"/check_norm.cpp "$emu"/check_attention.cpp "$emu"/check_sana.cpp)

# kernel_files KERNEL_DIR: the kernel sources and headers under KERNEL_DIR (not emu/), sorted.
kernel_files() {
    (cd "$1" && find . -path ./emu -prune -o -type f \( -name '*.cu' -o -name '*.cuh' \) -print | sed 's|^\./||' | LC_ALL=C sort)
}

# gen_kernels KERNEL_DIR OUT_CPP: the kernels' translation unit, including the translation
# units of OUT_CPP's folder src/, a copy of KERNEL_DIR with the shared-memory declarations
# rewritten (#line keeps the messages pointing at KERNEL_DIR). Everything of the kernels is in
# namespace ldt_kernels (the extern "C" names are not affected), so the harness's own copy of
# the common.cuh helpers never stands in for a mutant's at link time.
gen_kernels() {
    local dir=$1 cpp=$2 src f
    src=$(dirname "$cpp")/src
    rm -rf "$src"
    while IFS= read -r f; do
        mkdir -p "$src/$(dirname "$f")"
        {
            echo "#line 1 \"$dir/$f\""
            sed -E \
                -e 's/^([[:space:]]*)extern __shared__ ([A-Za-z0-9_]+) ([A-Za-z0-9_]+)\[\];/\1LDT_EMU_DYNAMIC_SHARED(\2, \3);/' \
                -e 's/^([[:space:]]*)__shared__ ((__align__\([0-9]+\) )?[A-Za-z0-9_:<>]+) ([A-Za-z0-9_]+)\[(.+)\];/\1LDT_EMU_SHARED(\2, \4, \5);/' \
                "$dir/$f"
        } >"$src/$f"
    done < <(kernel_files "$dir")
    {
        echo '#include "cuda_emu.hpp"'
        echo 'namespace ldt_kernels {'
        echo '#include "common.cuh"'
        echo '#include "kernels.hpp"'
        kernel_files "$dir" | grep '\.cu$' | sed 's|.*|#include "&"|'
        echo '}  // namespace ldt_kernels'
    } >"$cpp"
}

# Waits for the background compiles; fails if any failed.
wait_all() {
    local pid status=0
    for pid in $(jobs -p); do
        wait "$pid" || status=1
    done
    return $status
}

# build_harness NAME FLAGS...: the harness and runtime objects of build NAME, recompiled when
# a source of kernels/emu or common.cuh is newer.
build_harness() {
    local bdir=$out/$1 src obj
    shift
    mkdir -p "$bdir"
    for src in "${harness_sources[@]}"; do
        obj=$bdir/$(basename "${src%.cpp}").o
        if [[ ! -f $obj || -n $(find "$emu" kernels/common.cuh -newer "$obj" -print -quit) ]]; then
            "${cxx[@]}" "$@" -I kernels -I "$emu" -c "$src" -o "$obj" &
        fi
    done
    wait_all
}

# build_kernels KERNEL_DIR OBJ FLAGS...: the kernels of KERNEL_DIR as one object.
build_kernels() {
    local dir=$1 obj=$2
    shift 2
    gen_kernels "$dir" "${obj%.o}.cpp"
    "${cxx[@]}" "$@" -I "$(dirname "$obj")/src" -I "$emu" -c "${obj%.o}.cpp" -o "$obj"
}

# link NAME KERNEL_OBJ EXE FLAGS...
link() {
    local bdir=$out/$1 kobj=$2 exe=$3 src objs=()
    shift 3
    for src in "${harness_sources[@]}"; do
        objs+=("$bdir/$(basename "${src%.cpp}").o")
    done
    "${cxx[@]}" "$@" "${objs[@]}" "$kobj" -o "$exe"
}

# build NAME FLAGS...: build NAME of the harness against kernels/.
build() {
    local name=$1
    shift
    build_harness "$name" "$@" &
    mkdir -p "$out/$name"
    build_kernels kernels "$out/$name/kernels_emu.o" "$@" &
    wait_all
    link "$name" "$out/$name/kernels_emu.o" "$out/$name/kernel_check" "$@"
}

# Every extern "C" kernel the kernel object defines must be one the harness covers.
check_coverage() {
    local bdir=$out/$1
    nm --defined-only -g "$bdir/kernels_emu.o" | awk '$2 == "T" && $3 !~ /^_Z/ {print $3}' | sort >"$bdir/defined.txt"
    "$bdir/kernel_check" --list | sort >"$bdir/covered.txt"
    if ! diff -u "$bdir/defined.txt" "$bdir/covered.txt"; then
        echo "kernel-check.sh: the kernels defined (-) and those the harness covers (+) differ" >&2
        exit 1
    fi
}

# mutant NAME FILE FAMILY EXPECT SED_SCRIPT: a copy of kernels/ with FILE edited by SED_SCRIPT
# (which must change it), built against the plain harness objects; EXPECT is "run" (the
# harness, on family FAMILY, must fail) or "build" (the kernels must not compile, because of
# unmodelled inline asm). Counts a survivor in $survivors.
mutant() {
    local name=$1 file=$2 family=$3 expect=$4 script=$5 dir=$mutants_dir/$1 f
    while IFS= read -r f; do
        mkdir -p "$dir/kernels/$(dirname "$f")"
        cp "kernels/$f" "$dir/kernels/$f"
    done < <(kernel_files kernels)
    sed -E -i -e "$script" "$dir/kernels/$file"
    if cmp -s "kernels/$file" "$dir/kernels/$file"; then
        echo "kernel-check.sh: mutation $name did not change kernels/$file (stale pattern?)" >&2
        exit 1
    fi
    # -Wno-error: a mutant may leave a variable unused.
    if ! build_kernels "$dir/kernels" "$dir/kernels_emu.o" -O1 -Wno-error >"$dir/build.log" 2>&1; then
        if [[ $expect == build ]] && grep -q LDT_EMU_inline_asm_without_a_cpu_model "$dir/build.log"; then
            echo "  killed   $name (does not compile)"
        else
            echo "kernel-check.sh: mutant $name failed to build unexpectedly:" >&2
            cat "$dir/build.log" >&2
            exit 1
        fi
        return
    fi
    if [[ $expect == build ]]; then
        echo "  SURVIVED $name (compiled)"
        survivors=$((survivors + 1))
        return
    fi
    link plain "$dir/kernels_emu.o" "$dir/kernel_check" -O1
    if "$dir/kernel_check" --quick --only="$family" >"$dir/run.log" 2>&1; then
        echo "  SURVIVED $name (kernel_check --quick --only=$family passed)"
        survivors=$((survivors + 1))
    else
        echo "  killed   $name: $(grep -m1 '^FAIL' "$dir/run.log" | cut -c1-110)"
    fi
}

run_mutants() {
    mutants_dir=$out/mutants
    rm -rf "$mutants_dir"
    survivors=0
    # Deleted barriers: shared memory read before the other threads wrote it.
    mutant sync-attention-apply linear_attention/apply.cuh attention run \
        's|__syncthreads\(\);  // the state and den are in place|// mutant: barrier deleted|'
    mutant sync-block-sum common.cuh norm run \
        '/red\[threadIdx\.x >> 5\] = v;/{n;n;s|__syncthreads\(\);|// mutant: barrier deleted|}'
    mutant sync-small-linear small_linear.cu small_linear run \
        '/xs\[idx\] = v;/{n;n;s|__syncthreads\(\);|// mutant: barrier deleted|}'
    # Wrong epsilons.
    mutant eps-attention linear_attention/params.cuh attention run \
        's|#define LINATTN_EPS 1e-6f|#define LINATTN_EPS 1e-5f|'
    mutant eps-layernorm layer_norm_modulate.cu norm run \
        's|rsqrtf\(team_sum<TEAM>\(sq, red\) / \(float\)h \+ a\.eps\)|rsqrtf(team_sum<TEAM>(sq, red) / (float)h + 10.0f * a.eps)|'
    # Off-by-ones.
    mutant mean-over-h-minus-1 layer_norm_modulate.cu norm run \
        's|const float mean = block_sum\(sum, red\) / \(float\)h;|const float mean = block_sum(sum, red) / (float)(h - 1);|'
    mutant reduce-skips-last-chunk linear_attention/reduce.cu attention run \
        's|for \(int c = 0; c < num_chunks; \+\+c\) \{|for (int c = 0; c < num_chunks - 1; ++c) {|'
    # The fp16 overflow policy, and the hi/lo split of the tensor-core path.
    mutant fp16-no-saturation common.cuh pointwise run \
        's|#define LDT_FP16_MAX 65504.0f|#define LDT_FP16_MAX 65520.0f|'
    mutant mma-drops-lo-part linear_attention/policies.cuh attention run \
        's|mma_tf32\(acc\[mt\]\[nt\], alo\[mt\], b\);|// mutant: lo part dropped|'
    # The sana kernels: the ReLU attention's ε and map, the RMSNorm ε, the conv's padding edge
    # and staging barrier, the softmax's mask, the final layer's shared timestep row.
    mutant relu-eps linear_attention/params.cuh attention run \
        's|#define LINATTN_RELU_EPS 1e-15f|#define LINATTN_RELU_EPS 1e-12f|'
    mutant relu-map-identity linear_attention/params.cuh attention run \
        's|return z > 0\.0f \? z : 0\.0f;|return z;|'
    mutant eps-rms-norm rms_norm.cu sana run \
        's|rsqrtf\(total / \(float\)a\.h \+ a\.eps\)|rsqrtf(total / (float)a.h + 10.0f * a.eps)|'
    mutant conv-padding-edge depthwise_conv_glu.cu sana run \
        's|gx >= 0 && gx < a\.cols|gx >= 0 \&\& gx <= a.cols|'
    mutant sync-conv-staging depthwise_conv_glu.cu sana run \
        's|__syncthreads\(\);  // the halo is staged|// mutant: barrier deleted|'
    mutant softmax-no-mask masked_softmax.cu sana run \
        's|return scale \* s\[j\] \+ \(1\.0f - mask\[j\]\) \* SMX_MASKED_BIAS;|return scale * s[j];|'
    mutant table-ignores-row-stride modulation.cu sana run \
        's|\(long long\)r \* row_stride|(long long)r * h|'
    # Inline PTX without a CPU model must not compile.
    mutant unmodelled-asm common.cuh pointwise build \
        's|^LDT_DEVICE float silu\(float x\) \{ return x / \(1.0f \+ expf\(-x\)\); \}|LDT_DEVICE float silu(float x) { float e; asm("ex2.approx.f32 %0, %1;" : "=f"(e) : "f"(-x)); return x / (1.0f + e); }|'
    if [[ $survivors -gt 0 ]]; then
        echo "kernel-check.sh: $survivors mutant(s) survived" >&2
        exit 1
    fi
}

timed() {
    local start=$SECONDS
    "$@"
    echo "kernel-check.sh: '$*' took $((SECONDS - start)) s"
}

if [[ $builds == 0 ]]; then
    build_harness plain -O2
    timed run_mutants
    exit 0
fi

echo "== plain build (-O2), every case"
timed build plain -O2
check_coverage plain
# The sanitizer builds compile while the plain run (mostly thread switches) runs.
(
    timed build tsan -O1 -g -fsanitize=thread
    timed build asan -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
) >"$out/sanitizer-builds.log" 2>&1 &
sanitizer_builds=$!
timed "$out/plain/kernel_check"
if ! wait "$sanitizer_builds"; then
    cat "$out/sanitizer-builds.log" >&2
    echo "kernel-check.sh: a sanitizer build failed" >&2
    exit 1
fi
cat "$out/sanitizer-builds.log"

echo "== -fsanitize=thread, quick subset"
TSAN_OPTIONS="halt_on_error=1 exitcode=66" timed "$out/tsan/kernel_check" --quick

echo "== -fsanitize=address,undefined, quick subset"
ASAN_OPTIONS="detect_leaks=1" timed "$out/asan/kernel_check" --quick

if [[ $mutations == 1 ]]; then
    echo "== mutations (each must be caught)"
    timed run_mutants
fi
echo "kernel-check.sh: all passed"
