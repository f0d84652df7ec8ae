#!/usr/bin/env bash
# Memory of idle HTTP/2 client connections (issue #11, "10,000 idle HTTP/2 connections cost
# at most nginx's RSS"). weir and nginx 1.22 (`listen ... http2`), 1 worker each, in front of
# the same one-worker nginx origin. For each mode (h2c: prior knowledge on a plain port;
# tls: ALPN h2) and each round, each proxy is started fresh (a heap grown by an earlier run
# hides what new connections cost), its RSS is read, bench/h2_idle_conns.py opens COUNT
# connections to it, each does one GET and reads the response, then all are held; the RSS
# is read again after SETTLE seconds (the highest of 5 samples over a second), the client
# checks that none was closed, and resets them all. RSS is VmRSS and RssAnon from
# /proc/PID/status, summed over the proxy's processes (nginx: master and worker).
# Usage: bench/h2_idle.sh [ROUNDS] [COUNT] [--no-record]   (MODES="h2c tls" by default;
# WEIR_BIN picks the binary, else it builds target/release/weir)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; count=${2:-10000}; record=${3:-}
modes=${MODES:-h2c tls}
settle=2
for tool in nginx openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench/h2_idle.sh needs $tool (apt-get install nginx-light openssl)" >&2; exit 1; }
done
. bench/lib.sh
if [ -z "${WEIR_BIN:-}" ]; then cargo build --release --quiet; fi
weir_bin=${WEIR_BIN:-target/release/weir}

# COUNT connections need as many fds in the proxy and in the client (the client raises its
# own soft limit up to this hard limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ "$nofile" -lt $((count + 200)) ]; then
    echo "bench/h2_idle.sh: the fd limit $nofile is below $count connections + 200" >&2; exit 1
fi

make_cert

origin=$(free_port)
start_origin "$origin"

# start_proxy NAME PLAIN_PORT TLS_PORT: starts it in the background; sets `proxy_pid`.
start_proxy() {
    local name=$1 plain=$2 tls=$3
    case $name in
        weir)
            cat > "$tmp/weir.toml" <<CONF
[server]
workers = 1
listen = ["127.0.0.1:$plain"]
keepalive_timeout = "300s"
[[server.tls]]
listen = "127.0.0.1:$tls"
certs = [{ cert = "$tmp/server.pem", key = "$tmp/server.key" }]
[admin]
listen = "off"
[[pool]]
name = "origin"
backends = ["127.0.0.1:$origin"]
CONF
            RUST_LOG=warn "$weir_bin" --config "$tmp/weir.toml" 2>>"$tmp/weir.log" &
            ;;
        nginx)
            mkdir -p "$tmp/nginx"
            cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process on; pid $tmp/nginx/nginx.pid;
worker_rlimit_nofile $nofile; error_log $tmp/nginx/error.log warn;
events { worker_connections $((count + 1000)); }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
    upstream backend { server 127.0.0.1:$origin; keepalive 64; }
    server {
        listen 127.0.0.1:$tls ssl http2 backlog=4096;
        listen 127.0.0.1:$plain http2 backlog=4096;
        ssl_certificate $tmp/server.pem; ssl_certificate_key $tmp/server.key;
$(nginx_proxy_location)
    }
}
CONF
            nginx -e stderr -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>>"$tmp/nginx.log" &
            ;;
    esac
    proxy_pid=$!
}

# rss PIDS...: "VmRSS RssAnon" in KiB, summed.
rss() {
    local pid vm=0 anon=0
    for pid in "$@"; do
        vm=$((vm + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
        anon=$((anon + $(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")))
    done
    echo "$vm $anon"
}

# one MODE PROXY: one fresh proxy, COUNT connections; appends
# "held failed vm_before anon_before vm_held anon_held still_open" to $tmp/MODE.PROXY.
one() {
    local mode=$1 name=$2 plain tls port pids before held best line report
    plain=$(free_port); tls=$(free_port)
    start_proxy "$name" "$plain" "$tls"
    port=$([ "$mode" = tls ] && echo "$tls" || echo "$plain")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    sleep 1
    pids=("$proxy_pid" $(pgrep -P "$proxy_pid" || true))
    before=$(rss "${pids[@]}")
    coproc CLIENT { exec python3 bench/h2_idle_conns.py --port "$port" --count "$count" \
        $([ "$mode" = tls ] && echo --tls); }
    read -r report <&"${CLIENT[0]}"
    sleep "$settle"
    best="0 0"
    for _ in 1 2 3 4 5; do
        line=$(rss "${pids[@]}")
        if [ "${line% *}" -gt "${best% *}" ]; then best=$line; fi
        sleep 0.2
    done
    echo check >&"${CLIENT[1]}"
    read -r line <&"${CLIENT[0]}"
    echo release >&"${CLIENT[1]}"
    wait "$CLIENT_PID" || true
    kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
    python3 - "$report" "$line" "$before" "$best" >> "$tmp/$mode.$name" <<'PY'
import json, sys
report, check = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(report["held"], report["failed"] + report["non200"], sys.argv[3], sys.argv[4],
      check["still_open"])
PY
    echo "round $round $mode $name: $(tail -1 "$tmp/$mode.$name") (held failed VmRSS/RssAnon before, held; still open)" >&2
}

for round in $(seq "$rounds"); do
    for mode in $modes; do
        for name in weir nginx; do one "$mode" "$name"; done
    done
done

table=$(python3 - "$tmp" "$count" $modes <<'PY'
import statistics, sys
tmp, count, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| mode | proxy | held (min) | failed | VmRSS before MiB | VmRSS held MiB | VmRSS KiB/conn "
      "| RssAnon before MiB | RssAnon held MiB | RssAnon KiB/conn |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
per = {}
for mode in modes:
    for proxy in ("weir", "nginx"):
        rows = [list(map(int, l.split())) for l in open(f"{tmp}/{mode}.{proxy}") if l.strip()]
        held = min(min(r[0], r[6]) for r in rows)
        failed = sum(r[1] for r in rows)
        med = lambda i: statistics.median(r[i] for r in rows)
        kib = lambda b, h: statistics.median((r[h] - r[b]) / max(r[0], 1) for r in rows)
        per[mode, proxy] = (kib(2, 4), kib(3, 5))
        print(f"| {mode} | {proxy} | {held:,} | {failed} | {med(2) / 1024:.1f} | {med(4) / 1024:.1f} "
              f"| **{per[mode, proxy][0]:.2f}** | {med(3) / 1024:.1f} | {med(5) / 1024:.1f} "
              f"| **{per[mode, proxy][1]:.2f}** |")
print()
for mode in modes:
    w, n = per[mode, "weir"], per[mode, "nginx"]
    print(f"- {mode}: weir / nginx per connection: VmRSS **{w[0] / n[0]:.2f}**, RssAnon **{w[1] / n[1]:.2f}**")
PY
)
echo "$table"
if [ "$record" != "--no-record" ]; then
    {
        echo "## 10,000 idle HTTP/2 connections: weir vs nginx ($(date -u '+%Y-%m-%d %H:%M UTC'))"
        echo
        echo "\`bench/h2_idle.sh $rounds $count\`, weir $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo -dirty), $(nginx -v 2>&1 | sed 's/.*: //'), $(nproc) cores, fd limit $nofile; 1 worker each, a fresh proxy per figure; each connection did one GET, then idled; medians of $rounds rounds (KiB/conn: (held − before) / connections held)."
        echo
        echo "$table"
        echo
    } > "$tmp/section"
    prepend_results "$tmp/section"
fi
