#!/usr/bin/env bash
# Measures what a rate limit costs a request that it never throttles: the same weir
# binary with one `[[limit]]` (key client_ip, a rate no client reaches) on its route
# against none, in front of one nginx origin, 1 worker each, `wrk -t1 -c64` small GETs
# in alternation (A B A B ...), with each side's CPU µs per request. Prints each round
# and the medians. Usage: bench/limit_overhead.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-10}
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk; }
done
cargo build --release -q
. bench/lib.sh
origin=$(free_port); limited=$(free_port); plain=$(free_port)
start_origin "$origin"
for pair in "$limited limits" "$plain none"; do
    set -- $pair
    cat > "$tmp/weir-$1.toml" <<CONF
[server]
listen = ["127.0.0.1:$1"]
workers = 1
[admin]
listen = "off"
[[pool]]
name = "web"
backends = ["127.0.0.1:$origin"]
CONF
    if [ "$2" = limits ]; then
        cat >> "$tmp/weir-$1.toml" <<CONF
[[limit]]
name = "never"
key = "client_ip"
rate = "1000000/s"
burst = 1000000
[[route]]
pool = "web"
limits = ["never"]
CONF
    else
        printf '[[route]]\npool = "web"\n' >> "$tmp/weir-$1.toml"
    fi
    RUST_LOG=warn target/release/weir -c "$tmp/weir-$1.toml" 2>"$tmp/weir-$1.log" & pids+=($!)
done
sleep 1
alternate "$rounds" "$seconds" limit "$limited" plain "$plain" "${pids[1]}" "${pids[2]}"
python3 - "$(median "$tmp/limit")" "$(median "$tmp/plain")" \
    "$(median "$tmp/limit.cpu")" "$(median "$tmp/plain.cpu")" <<'PY'
import sys
rps_l, rps_p, cpu_l, cpu_p = map(float, sys.argv[1:])
print(f"median req/s: limit {rps_l:,.0f}, none {rps_p:,.0f} ({100 * (rps_l / rps_p - 1):+.1f}%)")
print(f"median CPU µs/req: limit {cpu_l:.2f}, none {cpu_p:.2f} ({100 * (cpu_l / cpu_p - 1):+.1f}%)")
PY
