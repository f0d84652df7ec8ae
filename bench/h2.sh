#!/usr/bin/env bash
# HTTP/2 from clients (issue #11): weir, nginx (`http2`) and HAProxy (`alpn h2` / `proto h2`),
# 1 worker each, in front of the same one-worker nginx origin over HTTP/1.1 keep-alive.
# h2load (Debian nghttp2-client) sends small GETs over TLS (ALPN h2) and over h2c (prior
# knowledge), with -c64 -m10 and -c64 -m100, and the same over HTTP/1.1 (`--h1`, 64
# keep-alive connections) as the regression row. Rounds alternate between the proxies;
# the table shows medians of req/s and of each proxy's CPU µs per request (user + system
# of its whole process tree, from /proc), and weir's ratios to the best peer.
# PIN=1 puts each proxy on CPU 0 and h2load and the origin on CPU 1 (as bench/sched.sh
# --pin): on 2 cores, unpinned, where the scheduler places three busy processes moves a
# proxy's CPU per request by a quarter from round to round (weir's h2c-m10 rounds split
# into 14.5 and 19.3 µs); pinned, each proxy has a core to itself in every round.
# Usage: [PIN=1] bench/h2.sh [ROUNDS] [REQUESTS_PER_ROUND] [--no-record]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; requests=${2:-200000}; record=${3:-}
for tool in nginx haproxy h2load openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench/h2.sh needs $tool (apt-get install nginx-light haproxy nghttp2-client openssl)" >&2; exit 1; }
done
. bench/lib.sh
# PGO=1 measures the profile-guided build (bench/pgo.sh), the build to ship where speed
# counts; WEIR_BIN=PATH a binary built before. Otherwise `cargo build --release`.
if [ "${PGO:-0}" = 1 ]; then
    [ -z "${WEIR_BIN:-}" ] || { echo "bench/h2.sh: PGO=1 and WEIR_BIN exclude each other" >&2; exit 1; }
    WEIR_BIN=$(bench/pgo.sh | tail -1)
fi
if [ -z "${WEIR_BIN:-}" ]; then cargo build --release --quiet; fi
weir_bin=${WEIR_BIN:-target/release/weir}
# Named in the recorded header: a binary given by WEIR_BIN may be of another commit.
if [ "${PGO:-0}" = 1 ]; then build="PGO build of this commit, bench/pgo.sh"
elif [ -n "${WEIR_BIN:-}" ]; then build="binary $WEIR_BIN, built before"
else build="cargo build --release"; fi

make_cert
cat "$tmp/server.pem" "$tmp/server.key" > "$tmp/server.bundle"

# -m100 keeps 6,400 requests in flight, so every proxy opens thousands of upstream
# connections: the origin and the fd limit must hold them, and each proxy may keep up to
# 8,192 of them idle (weir `max_idle`, nginx `keepalive`; HAProxy keeps all by default).
# With the defaults (256 and 64) weir and nginx close most of them after each response and
# connect again per request, a tenth of HAProxy's rate (first run of this script).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# on_cpu N: the command prefix that runs on CPU N when PIN=1, nothing otherwise.
on_cpu() { if [ -n "${PIN:-}" ]; then echo taskset -c "$1"; fi; }
origin=$(free_port)
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin backlog=4096; location / { return 200 "ok\n"; } } }
CONF
$(on_cpu 1) nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)

declare -A tls_port plain_port h1_port pid
for p in weir nginx haproxy; do
    tls_port[$p]=$(free_port); plain_port[$p]=$(free_port); h1_port[$p]=$(free_port)
done
# weir serves HTTP/1.1 and h2c on one plain port (it reads the client preface); nginx 1.22
# and HAProxy need a port per protocol.
h1_port[weir]=${plain_port[weir]}

weir_h2_config "${plain_port[weir]}" "${tls_port[weir]}" "$origin" > "$tmp/weir.toml"
RUST_LOG=warn $(on_cpu 0) "$weir_bin" --config "$tmp/weir.toml" 2>"$tmp/weir.log" & pids+=($!); pid[weir]=$!

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process on; pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 20000; }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
    http2_max_concurrent_streams 128;
    upstream backend { server 127.0.0.1:$origin; keepalive 8192; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${tls_port[nginx]} ssl http2;
        listen 127.0.0.1:${plain_port[nginx]} http2;
        listen 127.0.0.1:${h1_port[nginx]};
        ssl_certificate $tmp/server.pem; ssl_certificate_key $tmp/server.key;
$(nginx_proxy_location)
    }
}
CONF
$(on_cpu 0) nginx -e stderr -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.log" & pids+=($!); pid[nginx]=$!

cat > "$tmp/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 40000
    no strict-limits
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    maxconn 40000
frontend fe
    bind 127.0.0.1:${tls_port[haproxy]} ssl crt $tmp/server.bundle alpn h2,http/1.1
    bind 127.0.0.1:${plain_port[haproxy]} proto h2
    bind 127.0.0.1:${h1_port[haproxy]}
    default_backend be
backend be
    http-reuse always
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    server origin 127.0.0.1:$origin
CONF
$(on_cpu 0) haproxy -f "$tmp/haproxy.cfg" -db 2>"$tmp/haproxy.log" & pids+=($!); pid[haproxy]=$!
sleep 1

# tree_ticks PID: clock ticks used by PID and its children (nginx's workers).
tree_ticks() {
    local total=0 child
    total=$(cpu_ticks "$1")
    for child in $(pgrep -P "$1" || true); do total=$((total + $(cpu_ticks "$child"))); done
    echo "$total"
}

# one SCENARIO PROXY: one h2load run; appends "req/s cpu_us" to $tmp/SCENARIO.PROXY.
one() {
    local scenario=$1 proxy=$2 url args before after out rps
    case $scenario in
        tls-m10)  url="https://localhost:${tls_port[$proxy]}/"; args=(-c64 -m10) ;;
        tls-m100) url="https://localhost:${tls_port[$proxy]}/"; args=(-c64 -m100) ;;
        h2c-m10)  url="http://127.0.0.1:${plain_port[$proxy]}/"; args=(-c64 -m10) ;;
        h2c-m100) url="http://127.0.0.1:${plain_port[$proxy]}/"; args=(-c64 -m100) ;;
        h1)       url="http://127.0.0.1:${h1_port[$proxy]}/"; args=(-c64 --h1) ;;
    esac
    before=$(tree_ticks "${pid[$proxy]}")
    out=$($(on_cpu 1) h2load -n "$requests" -t1 "${args[@]}" "$url" 2>&1)
    after=$(tree_ticks "${pid[$proxy]}")
    rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
    if ! echo "$out" | grep -q "succeeded, 0 failed, 0 errored"; then
        echo "$scenario $proxy: failures: $(echo "$out" | grep '^requests:')" >&2
    fi
    python3 -c "print($rps, round(($after - $before) / $(getconf CLK_TCK) * 1e6 / $requests, 2))" \
        >> "$tmp/$scenario.$proxy"
    echo "round $round $scenario $proxy $(tail -1 "$tmp/$scenario.$proxy")"
}

scenarios=(tls-m10 tls-m100 h2c-m10 h2c-m100 h1)
for scenario in "${scenarios[@]}"; do
    for proxy in weir nginx haproxy; do
        round=warm requests_saved=$requests; requests=5000; one "$scenario" "$proxy" >/dev/null
        requests=$requests_saved; : > "$tmp/$scenario.$proxy"
    done
done
for round in $(seq "$rounds"); do
    for scenario in "${scenarios[@]}"; do
        for proxy in weir nginx haproxy; do one "$scenario" "$proxy"; done
    done
done

table=$(python3 - "$tmp" "${scenarios[@]}" <<'PY'
import statistics, sys
tmp, scenarios = sys.argv[1], sys.argv[2:]
print("| scenario | weir req/s | nginx req/s | HAProxy req/s | weir / best | weir CPU µs/req | nginx | HAProxy | weir / best |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in scenarios:
    med = {}
    for p in ("weir", "nginx", "haproxy"):
        rows = [tuple(map(float, l.split())) for l in open(f"{tmp}/{s}.{p}") if l.strip()]
        med[p] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
    best_rps = max(med["nginx"][0], med["haproxy"][0])
    best_cpu = min(med["nginx"][1], med["haproxy"][1])
    print(f"| {s} | {med['weir'][0]:,.0f} | {med['nginx'][0]:,.0f} | {med['haproxy'][0]:,.0f} "
          f"| **{med['weir'][0] / best_rps:.2f}** | {med['weir'][1]:.1f} | {med['nginx'][1]:.1f} "
          f"| {med['haproxy'][1]:.1f} | **{med['weir'][1] / best_cpu:.2f}** |")
PY
)
echo "$table"
if [ "$record" != "--no-record" ]; then
    {
        echo "## HTTP/2 from clients: h2load, weir vs nginx vs HAProxy ($(date -u '+%Y-%m-%d %H:%M UTC'))"
        echo
        echo "\`bench/h2.sh $rounds $requests\`, weir $(git rev-parse --short HEAD) ($build), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), $(h2load --version | head -1), $(nproc) cores; 1 worker each; medians of $rounds rounds. CPU is the proxy's whole process tree.${PIN:+ Pinned: each proxy on CPU 0, h2load and the origin on CPU 1.}"
        echo
        echo "$table"
        echo
    } > "$tmp/section"
    prepend_results "$tmp/section"
fi
