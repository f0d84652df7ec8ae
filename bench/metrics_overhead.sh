#!/usr/bin/env bash
# Measures what per-request metrics cost: the same weir binary with `[admin] metrics =
# true` (the default) against `false`, in front of one nginx origin, 1 worker each,
# `wrk -t1 -c64` small GETs in alternation (A B A B ...). Prints each round and the
# medians. Usage: bench/metrics_overhead.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-10}
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk; }
done
cargo build --release -q
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin=$(free_port); on=$(free_port); off=$(free_port)
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin; location / { return 200 "ok\n"; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
for pair in "$on true" "$off false"; do
    set -- $pair
    cat > "$tmp/weir-$1.toml" <<CONF
[server]
listen = ["127.0.0.1:$1"]
workers = 1
[admin]
listen = "off"
metrics = $2
[[pool]]
name = "web"
backends = ["127.0.0.1:$origin"]
CONF
    RUST_LOG=warn target/release/weir -c "$tmp/weir-$1.toml" 2>"$tmp/weir-$1.log" & pids+=($!)
done
sleep 1
for port in $on $off; do wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null; done
: > "$tmp/on"; : > "$tmp/off"
for round in $(seq "$rounds"); do
    for side in on off; do
        port=$([ "$side" = on ] && echo "$on" || echo "$off")
        rps=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
        echo "round $round metrics=$side $rps req/s"
        echo "$rps" >> "$tmp/$side"
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_on=$(median "$tmp/on"); m_off=$(median "$tmp/off")
python3 -c "on=$m_on; off=$m_off; print(f'median req/s: metrics on {on:,.0f}, off {off:,.0f}; on/off = {on/off:.3f} (overhead {100*(1-on/off):.1f}%)')"
