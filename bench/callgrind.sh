#!/usr/bin/env bash
# Counts weir's user-space instructions per request with callgrind: one worker, small GET,
# keep-alive, against a one-worker nginx origin. Instruction counts do not depend on how
# busy the machine is, so this measures hot-path changes when wrk timings cannot.
# Usage: bench/callgrind.sh [SECONDS] [WEIR_BIN]; prints instructions per request and keeps
# the callgrind output in bench/out/callgrind.out for `callgrind_annotate`.
# CONFIG=FILE runs weir from a config file (see below).
# CLIENT=h2c profiles HTTP/2 streams instead: h2load with prior knowledge, -c64 -m10, for
# about SECONDS (at callgrind's speed, about 1,000 requests a second).
# CLIENT=grpc profiles HTTP/2 to an HTTP/2 backend as bench/grpc.sh measures it: weir with
# `protocol = "h2c"` in front of a one-worker nginx origin over h2c, h2load -c64 -m100
# sending unary-shaped gRPC POSTs. (nginx counts each stream as a connection, so the
# origin's worker_connections must exceed the 6,400 streams in flight.)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
bin=${2:-target/release/weir}
command -v valgrind >/dev/null || { sudo apt-get update && sudo apt-get install -y valgrind; }
. bench/lib.sh
origin=$(free_port); port=$(free_port); admin=$(free_port)
if [ "${CLIENT:-wrk}" = grpc ]; then
    cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:$origin http2;
    location / { add_header grpc-status 0; return 200 "ok\n"; } } }
CONF
    nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
    printf '[[pool]]\nname = "origin"\nbackends = ["127.0.0.1:0"] # ORIGIN\nprotocol = "h2c"\n' \
        > "$tmp/grpc.toml"
    CONFIG=${CONFIG:-$tmp/grpc.toml}
    printf '\x00\x00\x00\x00\x0bhello grpc!' > "$tmp/body"
else
    start_origin "$origin"
    if [ "${CLIENT:-wrk}" = h2c ]; then
        # 640 streams in flight need as many HTTP/1.1 connections to the origin: keep them
        # all idle between bursts, as bench/h2.sh does (`max_idle` 256, the default, closed
        # and reopened about one connection for every three requests, a cost h2.sh's
        # timings do not have).
        printf '[[pool]]\nname = "origin"\nbackends = ["127.0.0.1:0"] # ORIGIN\nmax_idle = 8192\n' \
            > "$tmp/h2c.toml"
        CONFIG=${CONFIG:-$tmp/h2c.toml}
    fi
fi
mkdir -p bench/out
# CONFIG=FILE runs weir from FILE (its line marked `# ORIGIN` pointed at the origin, as
# bench/ab.sh does) instead of `-b ORIGIN`, to count what a config's policy costs.
source_args=(-b "127.0.0.1:$origin")
if [ -n "${CONFIG:-}" ]; then
    sed "/# ORIGIN/s/\"[0-9.]*:[0-9]*\"/\"127.0.0.1:$origin\"/" "$CONFIG" > "$tmp/config.toml"
    source_args=(-c "$tmp/config.toml")
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=bench/out/callgrind.out \
    "$bin" -w 1 -l "127.0.0.1:$port" --admin "127.0.0.1:$admin" "${source_args[@]}" \
    2>"$tmp/valgrind.log" & weir=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
# Start counting from here: weir's start (config, TLS, runtime) is not a request's cost.
callgrind_control -i on "$weir" >/dev/null
if [ "${CLIENT:-wrk}" = grpc ]; then
    requests=$(h2load -c64 -m100 -D"$seconds" -d "$tmp/body" -H 'content-type: application/grpc' \
        -H 'te: trailers' "http://127.0.0.1:$port/bench.Echo/Unary" | awk '/^requests:/ {print $8}')
elif [ "${CLIENT:-wrk}" = h2c ]; then
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
