#!/usr/bin/env bash
# CI's fuzz step: builds every target and runs the oracle's unit tests, then runs each over its committed seed corpus plus
# a fixed number of new inputs with a fixed seed, so a run is short and repeatable. The
# long runs (>= 10 minutes a target) are done by hand with run.sh.
set -euo pipefail
cd "$(dirname "$0")"

# New inputs per target: a few seconds each (config, the slowest, runs about 20,000 a
# second), so the instrumented build is nearly all of the step's time.
runs=${FUZZ_RUNS:-200000}
targets=(request response chunked admin_head config sticky proxy_protocol resp h2_frames)

start=$(date +%s)
./run.sh --build
echo "fuzz: built in $(($(date +%s) - start)) s"
./run.sh --test
failed=0
for target in "${targets[@]}"; do
    # A fresh work corpus each time: CI's result depends on the seeds and the seed only.
    rm -rf "target/corpus/$target"
    # -timeout: one input taking a second is a hang worth reporting; -rss_limit_mb bounds
    # memory well under the machine's.
    if ./run.sh "$target" -runs="$runs" -seed=1 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"target/$target.log" 2>&1; then
        echo "fuzz: $target passed ($(grep -o 'stat::number_of_executed_units: *[0-9]*' \
            "target/$target.log" | grep -o '[0-9]*$') runs)"
    else
        echo "fuzz: $target FAILED (fuzz/target/$target.log):"
        # The assertion that failed (with the bytes at fault), then libFuzzer's input.
        grep -A 4 'panicked at' "target/$target.log" | head -n 12 || true
        grep -B 1 -A 2 '^artifact_prefix' "target/$target.log" || tail -n 20 "target/$target.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $((${#targets[@]} - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
