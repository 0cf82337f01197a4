#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (the libfuzzer-sys crate), on the stable toolchain.
#
#   scripts/fuzz.sh build                 build every target (instrumented, fuzz/target/)
#   scripts/fuzz.sh run TARGET SECONDS    fuzz one target; crashes go to fuzz/artifacts/TARGET/
#   scripts/fuzz.sh merge TARGET          minimise fuzz/corpus/TARGET/ plus what runs found
#   scripts/fuzz.sh replay [TARGET...]    run every committed corpus file once (no fuzzing)
#   scripts/fuzz.sh ci                    build, replay every corpus, fuzz each target briefly
#
# A target is a file fuzz/fuzz_targets/NAME.rs (registered in fuzz/Cargo.toml on the next
# build if it is not yet) with its seeds in fuzz/corpus/NAME/. A line `// max_len: N` in the
# file sets libFuzzer's -max_len (bytes; default 4096). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ=$ROOT/fuzz
HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$FUZZ/target/$HOST/release
# Each run's new inputs go here (not into the committed corpus, which `merge` minimises).
WORK=$FUZZ/target/corpus
CI_SECONDS=${FUZZ_CI_SECONDS:-20}
RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-2048}

# What cargo-fuzz passes, less the sanitizer (-Zsanitizer needs nightly; safe Rust's
# memory errors are panics anyway, and the overflow and debug checks below stay on).
# --target keeps these flags off build scripts and proc macros, which must not be
# instrumented.
FUZZ_RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

targets() {
    for f in "$FUZZ"/fuzz_targets/*.rs; do
        basename "$f" .rs
    done
}

# Adds a [[bin]] entry for every target file that has none, so a new target is one file.
register() {
    local t
    for t in $(targets); do
        if ! grep -q "^name = \"$t\"\$" "$FUZZ/Cargo.toml"; then
            printf '\n[[bin]]\nname = "%s"\npath = "fuzz_targets/%s.rs"\ntest = false\ndoc = false\nbench = false\n' \
                "$t" "$t" >>"$FUZZ/Cargo.toml"
            echo "fuzz.sh: registered fuzz/fuzz_targets/$t.rs in fuzz/Cargo.toml (commit it)" >&2
        fi
    done
}

build() {
    register
    # The kernels are irrelevant to the parsers under test: skip the nvcc step of build.rs.
    LINEAR_DIT_SKIP_NVCC=1 RUSTFLAGS="$FUZZ_RUSTFLAGS" cargo build --release \
        --manifest-path "$FUZZ/Cargo.toml" --target "$HOST" --target-dir "$FUZZ/target" --bins
}

binary() {
    local bin=$BIN_DIR/$1
    if [[ ! -x $bin ]]; then
        echo "fuzz.sh: no target \`$1\` (known: $(targets | tr '\n' ' '); run \`scripts/fuzz.sh build\`)" >&2
        exit 2
    fi
    echo "$bin"
}

max_len() {
    local n
    n=$(sed -n 's|^// max_len: *\([0-9][0-9]*\).*|\1|p' "$FUZZ/fuzz_targets/$1.rs" | head -n 1)
    echo "${n:-4096}"
}

# run TARGET SECONDS: fuzzes on the committed corpus plus this machine's work corpus.
run() {
    local target=$1 seconds=$2 bin
    bin=$(binary "$target")
    mkdir -p "$WORK/$target" "$FUZZ/corpus/$target" "$FUZZ/artifacts/$target"
    "$bin" -max_total_time="$seconds" -rss_limit_mb="$RSS_LIMIT_MB" \
        -max_len="$(max_len "$target")" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$FUZZ/artifacts/$target/" \
        "$WORK/$target" "$FUZZ/corpus/$target"
}

# replay TARGET: every committed corpus file once; fails on any crash.
replay() {
    local target=$1 bin
    bin=$(binary "$target")
    if [[ -z $(ls -A "$FUZZ/corpus/$target" 2>/dev/null) ]]; then
        echo "fuzz.sh: $target has no committed corpus" >&2
        return 0
    fi
    mkdir -p "$FUZZ/artifacts/$target"
    "$bin" -runs=0 -rss_limit_mb="$RSS_LIMIT_MB" \
        -max_len="$(max_len "$target")" -timeout=10 \
        -artifact_prefix="$FUZZ/artifacts/$target/" "$FUZZ/corpus/$target"
}

# merge TARGET: rewrites fuzz/corpus/TARGET/ as a small set (a greedy set cover) of its files and the work
# corpus's that keeps all the coverage.
merge() {
    local target=$1 bin tmp
    bin=$(binary "$target")
    tmp=$(mktemp -d "$FUZZ/target/merge.XXXXXX")
    mkdir -p "$WORK/$target" "$FUZZ/corpus/$target"
    "$bin" -set_cover_merge=1 -use_counters=0 -rss_limit_mb="$RSS_LIMIT_MB" -max_len="$(max_len "$target")" \
        "$tmp" "$FUZZ/corpus/$target" "$WORK/$target"
    rm -rf "$FUZZ/corpus/$target"
    mv "$tmp" "$FUZZ/corpus/$target"
    echo "fuzz.sh: fuzz/corpus/$target: $(ls "$FUZZ/corpus/$target" | wc -l) files," \
        "$(du -sh "$FUZZ/corpus/$target" | cut -f1)"
}

case ${1:-} in
build) build ;;
run)
    [[ $# -eq 3 ]] || { echo "usage: scripts/fuzz.sh run TARGET SECONDS" >&2; exit 2; }
    run "$2" "$3"
    ;;
merge)
    [[ $# -eq 2 ]] || { echo "usage: scripts/fuzz.sh merge TARGET" >&2; exit 2; }
    merge "$2"
    ;;
replay)
    shift
    for t in ${@:-$(targets)}; do replay "$t"; done
    ;;
ci)
    build
    for t in $(targets); do replay "$t"; done
    for t in $(targets); do
        # A fresh work corpus each time, so CI fuzzes from the committed seeds only.
        rm -rf "${WORK:?}/$t"
        run "$t" "$CI_SECONDS"
    done
    echo "fuzz.sh: every target replayed its corpus and fuzzed ${CI_SECONDS}s without a crash"
    ;;
*)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
