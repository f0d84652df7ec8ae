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
. bench/lib.sh
origin=$(free_port); on=$(free_port); off=$(free_port)
start_origin "$origin"
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
alternate "$rounds" "$seconds" on "$on" off "$off"
m_on=$(median "$tmp/on"); m_off=$(median "$tmp/off")
python3 -c "on=$m_on; off=$m_off; print(f'median req/s: metrics on {on:,.0f}, off {off:,.0f}; on/off = {on/off:.3f} (overhead {100*(1-on/off):.1f}%)')"
