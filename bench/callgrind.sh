#!/usr/bin/env bash
# Counts weir's user-space instructions per request with callgrind: one worker, small GET,
# keep-alive, against a one-worker nginx origin. Instruction counts do not depend on how
# busy the machine is, so this measures hot-path changes when wrk timings cannot.
# Usage: bench/callgrind.sh [SECONDS] [WEIR_BIN]; prints instructions per request and keeps
# the callgrind output in bench/out/callgrind.out for `callgrind_annotate`.
# CONFIG=FILE runs weir from a config file (see below).
# CLIENT=h2c profiles HTTP/2 streams instead: h2load with prior knowledge, -c64 -m10, for
# about SECONDS (at callgrind's speed, about 1,000 requests a second).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
bin=${2:-target/release/weir}
command -v valgrind >/dev/null || { sudo apt-get update && sudo apt-get install -y valgrind; }
. bench/lib.sh
origin=$(free_port); port=$(free_port); admin=$(free_port)
start_origin "$origin"
mkdir -p bench/out
# CONFIG=FILE runs weir from FILE (its line marked `# ORIGIN` pointed at the origin, as
# bench/ab.sh does) instead of `-b ORIGIN`, to count what a config's policy costs.
source_args=(-b "127.0.0.1:$origin")
if [ -n "${CONFIG:-}" ]; then
    sed "/# ORIGIN/s/\"[0-9.]*:[0-9]*\"/\"127.0.0.1:$origin\"/" "$CONFIG" > "$tmp/config.toml"
    source_args=(-c "$tmp/config.toml")
fi
valgrind --tool=callgrind --callgrind-out-file=bench/out/callgrind.out \
    "$bin" -w 1 -l "127.0.0.1:$port" --admin "127.0.0.1:$admin" "${source_args[@]}" \
    2>"$tmp/valgrind.log" & weir=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
# Start counting once weir serves: start-up (config, a limit's table, threads) is not a
# request's cost, and spread over fewer requests it would weigh more in a slower config.
callgrind_control -z "$weir" >/dev/null 2>&1
if [ "${CLIENT:-wrk}" = h2c ]; then
    command -v h2load >/dev/null || { echo "CLIENT=h2c needs h2load (nghttp2-client)" >&2; exit 1; }
    requests=$(h2load -c64 -m10 -D"$seconds" "http://127.0.0.1:$port/" \
        | awk '/^requests:/ {print $8}')
else
    requests=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" \
        | awk '/requests in/ {print $1}')
fi
kill -TERM "$weir"; wait "$weir" || true
total=$(awk '/^summary:|^totals:/ {print $2; exit}' bench/out/callgrind.out)
echo "requests $requests, instructions $total, per request $((total / requests))"
