#!/usr/bin/env bash
# Where the machine's time goes in the small-GET keep-alive scenario: weir and nginx as
# proxies (1 worker each, the same forwarding headers as bench/conf) in front of one
# nginx origin, `wrk -t1 -c64`, in alternation. Per run it prints req/s, CPU µs per
# request of the proxy, the origin and wrk, how idle the whole machine was, and how often
# the proxy slept (voluntary context switches) or was preempted (involuntary), per 1,000
# requests. It answers "is the proxy the bottleneck?", which req/s alone cannot.
#
# --pin puts the proxy on CPU 0 and wrk and the origin on CPU 1 (needs 2+ CPUs): the
# layout where the proxy has a core to itself, so req/s is bounded by the other core.
#
# Usage: bench/sched.sh [--pin] [ROUNDS] [SECONDS]     (weir: target/release/weir or $WEIR)
set -euo pipefail
cd "$(dirname "$0")/.."
pin=""
if [ "${1:-}" = "--pin" ]; then pin=1; shift; fi
rounds=${1:-3}
seconds=${2:-8}
command -v python3 >/dev/null || { echo "sched.sh needs python3" >&2; exit 1; }
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || {
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light wrk
    }
done
if [ -n "${WEIR:-}" ]; then
    weir=$WEIR
    [ -x "$weir" ] || { echo "WEIR=$weir is not an executable" >&2; exit 1; }
else
    cargo build --release -q   # so the binary measured is the checkout's
    weir=${CARGO_TARGET_DIR:-target}/release/weir
fi
. bench/lib.sh
on_cpu_argv() { if [ -n "$pin" ]; then echo taskset -c "$1"; fi; }

origin=$(free_port); port_weir=$(free_port); port_nginx=$(free_port)
start_origin "$origin"
RUST_LOG=warn $(on_cpu_argv 0) "$weir" -b "127.0.0.1:$origin" -l "127.0.0.1:$port_weir" -w 1 \
    --admin off 2>"$tmp/weir.log" & pids+=($!)
weir_pid=$!
# The same nginx proxy config as bench/compare.sh, rendered from its template.
mkdir -p "$tmp/proxy"
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
sed -e "s|@USER_LINE@|$user_line|; s|@WORKERS@|1|; s|@NOFILE@|$(ulimit -n)|" \
    -e "s|@PREFIX@|$tmp/proxy|g; s|@BACKEND_PORT@|$origin|; s|@LISTEN_PORT@|$port_nginx|" \
    bench/conf/proxy-nginx.conf.in > "$tmp/proxy.conf"
$(on_cpu_argv 0) nginx -e stderr -p "$tmp/proxy/" -c "$tmp/proxy.conf" 2>"$tmp/proxy.log" & pids+=($!)
# The worker processes, once both nginx have forked them (bounded: 10 s).
worker_of() {
    local pidfile=$1 worker="" _
    for _ in $(seq 100); do
        [ -s "$pidfile" ] && worker=$(pgrep -P "$(cat "$pidfile")" | head -1) && [ -n "$worker" ] && break
        sleep 0.1
    done
    [ -n "$worker" ] || { echo "no nginx worker behind $pidfile: $(cat "$tmp"/*.log)" >&2; exit 1; }
    echo "$worker"
}
nginx_pid=$(worker_of "$tmp/proxy/nginx.pid")
origin_pid=$(worker_of "$tmp/origin.pid")
sleep 0.5   # weir's listener
if [ -n "$pin" ]; then
    for p in $(cat "$tmp/origin.pid") "$origin_pid"; do taskset -p -c 1 "$p" >/dev/null; done
fi

# utime+stime of every thread, in clock ticks; voluntary and involuntary switches.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary/ {v += $2} /^nonvoluntary/ {n += $2} END {print v, n}'; }

for port in "$port_weir" "$port_nginx"; do wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null; done
for round in $(seq "$rounds"); do
    for side in weir nginx; do
        if [ "$side" = weir ]; then port=$port_weir; pid=$weir_pid; else port=$port_nginx; pid=$nginx_pid; fi
        stat0=$(head -1 /proc/stat); p0=$(ticks "$pid"); o0=$(ticks "$origin_pid"); s0=$(switches "$pid")
        # wrk's CPU seconds, from its rusage as a child of this python.
        wrk_s=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$tmp/wrk.out" $(on_cpu_argv 1) wrk -t1 -c64 -d"${seconds}s" \
            "http://127.0.0.1:$port/")
        stat1=$(head -1 /proc/stat); p1=$(ticks "$pid"); o1=$(ticks "$origin_pid"); s1=$(switches "$pid")
        requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
        python3 - "$side" "$round" "$requests" "$seconds" "$p0 $p1" "$o0 $o1" "$wrk_s" "$s0 $s1" \
            "$stat0" "$stat1" "$(getconf CLK_TCK)" <<'PY'
import sys
side, rnd, req, secs, proxy, origin, wrk, sw, st0, st1, hz = sys.argv[1:]
req, hz = int(req), int(hz)
us = lambda ticks: ticks * 1e6 / hz / req
p0, p1 = map(int, proxy.split()); o0, o1 = map(int, origin.split())
v0, n0, v1, n1 = map(int, sw.split())
a = list(map(int, st0.split()[1:9])); b = list(map(int, st1.split()[1:9]))
d = [y - x for x, y in zip(a, b)]
idle = 100.0 * (d[3] + d[4]) / sum(d)
print(f"round {rnd} {side:5} {req / float(secs):8,.0f} req/s | CPU µs/req: proxy {us(p1 - p0):4.1f}"
      f" origin {us(o1 - o0):4.1f} wrk {float(wrk) * 1e6 / req:4.1f} | machine idle {idle:4.1f}%"
      f" | proxy slept {(v1 - v0) * 1000 / req:4.1f}, preempted {(n1 - n0) * 1000 / req:4.1f}"
      f" per 1,000 requests")
PY
    done
done
