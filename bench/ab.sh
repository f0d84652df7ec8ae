#!/usr/bin/env bash
# Before/after check of one optimisation: two weir binaries (A = before, B = after), each
# with 1 worker in front of the same nginx origin, `wrk -t1 -c64` small GETs in
# alternation (A B A B ...). Prints each round and the medians with B/A.
# Usage: bench/ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin_a=$1; bin_b=$2; rounds=${3:-5}; seconds=${4:-10}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(free_port); port_a=$(free_port); port_b=$(free_port)
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin; location / { return 200 "ok\n"; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
RUST_LOG=warn "$bin_a" -b "127.0.0.1:$origin" -l "127.0.0.1:$port_a" -w 1 --admin off 2>"$tmp/a.log" & pids+=($!)
RUST_LOG=warn "$bin_b" -b "127.0.0.1:$origin" -l "127.0.0.1:$port_b" -w 1 --admin off 2>"$tmp/b.log" & pids+=($!)
sleep 1
for port in $port_a $port_b; do wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null; done
: > "$tmp/a"; : > "$tmp/b"
for round in $(seq "$rounds"); do
    for side in a b; do
        port=$([ "$side" = a ] && echo "$port_a" || echo "$port_b")
        rps=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
        echo "round $round $side $rps req/s"
        echo "$rps" >> "$tmp/$side"
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
python3 -c "a=$(median "$tmp/a"); b=$(median "$tmp/b"); print(f'median req/s: A {a:,.0f}, B {b:,.0f}; B/A = {b/a:.3f}')"
