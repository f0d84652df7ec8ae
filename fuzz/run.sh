#!/usr/bin/env bash
# Builds one fuzz target (or all with --build) and runs it under libFuzzer, on the stable
# toolchain: the coverage instrumentation cargo-fuzz would add, passed as plain rustc flags.
#
#   fuzz/run.sh TARGET [libFuzzer args]   e.g. fuzz/run.sh request -max_total_time=600
#   fuzz/run.sh --build                   builds every target
#   fuzz/run.sh --test                    the oracle's unit tests, on the same build
#
# New inputs go to fuzz/target/corpus/TARGET (ignored by git); the committed seeds in
# fuzz/corpus/TARGET are read, never written. Crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$PWD/target"
# The flags cargo-fuzz passes with `--sanitizer none`. `--target` keeps them off build
# scripts and proc macros, which must not be instrumented.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

target=${1:?usage: fuzz/run.sh TARGET [libFuzzer args] | fuzz/run.sh --build | --test}
shift
case "$target" in
    --build) exec cargo build --locked --release --target "$host" --bins ;;
    --test) exec cargo test --locked --release --target "$host" --lib ;;
esac
# A dictionary of the format's tokens: without one, libFuzzer needs far longer to spell
# `Connection: Content-Length` out of bytes.
case "$target" in
    request | response | admin_head) dict=dict/http.dict ;;
    *) dict=dict/$target.dict ;;
esac
cargo build --locked --release --target "$host" --bin "$target"
mkdir -p "artifacts/$target" "target/corpus/$target"
exec "target/$host/release/$target" -artifact_prefix="artifacts/$target/" -dict="$dict" "$@" \
    "target/corpus/$target" "corpus/$target"
