#!/usr/bin/env bash
# HTTP/2 to backends (issue #12): weir (`protocol = "h2c"`), HAProxy (`proto h2` to the
# server) and nginx (`grpc_pass`), 1 worker each, in front of the same HTTP/2 origin: a
# one-worker nginx answering `200 ok` over h2c (prior knowledge), fast and shared by all
# three. h2load (Debian nghttp2-client) sends small unary-shaped gRPC POSTs (a 5-byte
# gRPC frame header and an 11-byte message, `content-type: application/grpc`,
# `te: trailers`) over h2c with -c64 -m100. Rounds alternate between the proxies; the
# table shows medians of req/s and of each proxy's CPU µs per request (user + system of
# its whole process tree, from /proc), and weir's ratios to the best peer. The peers add
# the same request fields weir does (X-Forwarded-For, -Proto and -Host), as compare.sh
# and h2.sh have them do: without them HAProxy forwarded three fewer fields per call
# (13.8 against 16.1 µs of CPU per call in one pinned run of each, bench/RESULTS.md).
# Usage: bench/grpc.sh [ROUNDS] [REQUESTS_PER_ROUND] [--no-record]
#        bench/grpc.sh --quick     one short round with the debug build, not recorded:
#                                  checks that the script works, measures nothing
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--quick" ]; then
    rounds=1; requests=2000; record=--no-record; profile=debug
else
    rounds=${1:-3}; requests=${2:-200000}; record=${3:-}; profile=release
fi
for tool in nginx haproxy h2load python3; do
    command -v "$tool" >/dev/null || { echo "bench/grpc.sh needs $tool (apt-get install nginx-light haproxy nghttp2-client)" >&2; exit 1; }
done
. bench/lib.sh
# WEIR_BIN=PATH benchmarks a binary built before (no build here); PGO=1 the
# profile-guided build (bench/pgo.sh).
if [ "${PGO:-0}" = 1 ] && [ "$profile" = release ]; then
    [ -z "${WEIR_BIN:-}" ] || { echo "bench/grpc.sh: PGO=1 and WEIR_BIN exclude each other" >&2; exit 1; }
    WEIR_BIN=$(bench/pgo.sh | tail -1)
fi
if [ -z "${WEIR_BIN:-}" ]; then
    if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
fi
weir_bin=${WEIR_BIN:-target/$profile/weir}
# Named in the recorded header: a binary given by WEIR_BIN may be of another commit.
if [ "${PGO:-0}" = 1 ] && [ "$profile" = release ]; then build="PGO build of this commit, bench/pgo.sh"
elif [ -n "${WEIR_BIN:-}" ]; then build="binary $WEIR_BIN, built before"
elif [ "$profile" = release ]; then build="cargo build --release"
else build="cargo build (debug)"; fi

# -m100 keeps 6,400 calls in flight. weir and HAProxy multiplex them over a few upstream
# connections; nginx's grpc_pass opens one upstream connection per call in flight, so its
# keepalive cache must hold them all, and the fd limit too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
origin=$(free_port)
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:$origin http2 backlog=4096;
    location / { add_header grpc-status 0; return 200 "ok\n"; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)

declare -A port pid
for p in weir nginx haproxy; do port[$p]=$(free_port); done

cat > "$tmp/weir.toml" <<CONF
[server]
workers = 1
listen = ["127.0.0.1:${port[weir]}"]
[admin]
listen = "off"
[[pool]]
name = "origin"
backends = ["127.0.0.1:$origin"]
protocol = "h2c"
CONF
RUST_LOG=warn "$weir_bin" --config "$tmp/weir.toml" 2>"$tmp/weir.log" & pids+=($!); pid[weir]=$!

mkdir -p "$tmp/nginx"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process on; pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 20000; }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
    http2_max_concurrent_streams 128;
    upstream origin { server 127.0.0.1:$origin; keepalive 8192; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${port[nginx]} http2;
        location / {
            grpc_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            grpc_set_header X-Forwarded-Proto \$scheme;
            grpc_set_header X-Forwarded-Host \$http_host;
            grpc_pass grpc://origin;
        }
    }
}
CONF
nginx -e stderr -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.log" & pids+=($!); pid[nginx]=$!

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
    bind 127.0.0.1:${port[haproxy]} proto h2
    default_backend be
backend be
    http-reuse always
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    server origin 127.0.0.1:$origin proto h2
CONF
haproxy -f "$tmp/haproxy.cfg" -db 2>"$tmp/haproxy.log" & pids+=($!); pid[haproxy]=$!
sleep 1

# The request body: one gRPC message (flag 0, length 11) as a unary call sends it.
printf '\x00\x00\x00\x00\x0bhello grpc!' > "$tmp/body"

# tree_ticks PID: clock ticks used by PID and its children (nginx's workers).
tree_ticks() {
    local total=0 child
    total=$(cpu_ticks "$1")
    for child in $(pgrep -P "$1" || true); do total=$((total + $(cpu_ticks "$child"))); done
    echo "$total"
}

# one PROXY: one h2load run; appends "req/s cpu_us" to $tmp/unary.PROXY.
one() {
    local proxy=$1 before after out rps
    before=$(tree_ticks "${pid[$proxy]}")
    out=$(h2load -n "$requests" -t1 -c64 -m100 -d "$tmp/body" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:${port[$proxy]}/bench.Echo/Unary" 2>&1)
    after=$(tree_ticks "${pid[$proxy]}")
    rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
    if ! echo "$out" | grep -q "succeeded, 0 failed, 0 errored"; then
        echo "$proxy: failures: $(echo "$out" | grep '^requests:')" >&2
    fi
    if ! echo "$out" | grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx'; then
        echo "$proxy: not all 2xx: $(echo "$out" | grep '^status codes:')" >&2
    fi
    python3 -c "print($rps, round(($after - $before) / $(getconf CLK_TCK) * 1e6 / $requests, 2))" \
        >> "$tmp/unary.$proxy"
    echo "round $round $proxy $(tail -1 "$tmp/unary.$proxy")"
}

for proxy in weir nginx haproxy; do
    round=warm requests_saved=$requests; requests=$((requests < 5000 ? requests : 5000))
    one "$proxy" >/dev/null; requests=$requests_saved; : > "$tmp/unary.$proxy"
done
for round in $(seq "$rounds"); do
    for proxy in weir nginx haproxy; do one "$proxy"; done
done

table=$(python3 - "$tmp" <<'PY'
import statistics, sys
tmp = sys.argv[1]
med = {}
for p in ("weir", "nginx", "haproxy"):
    rows = [tuple(map(float, l.split())) for l in open(f"{tmp}/unary.{p}") if l.strip()]
    med[p] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
best_rps = max(med["nginx"][0], med["haproxy"][0])
best_cpu = min(med["nginx"][1], med["haproxy"][1])
print("| scenario | weir req/s | nginx req/s | HAProxy req/s | weir / best | weir CPU µs/req | nginx | HAProxy | weir / best |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| h2c unary -c64 -m100 | {med['weir'][0]:,.0f} | {med['nginx'][0]:,.0f} | {med['haproxy'][0]:,.0f} "
      f"| **{med['weir'][0] / best_rps:.2f}** | {med['weir'][1]:.1f} | {med['nginx'][1]:.1f} "
      f"| {med['haproxy'][1]:.1f} | **{med['weir'][1] / best_cpu:.2f}** |")
PY
)
echo "$table"
if [ "$record" != "--no-record" ]; then
    {
        echo "## gRPC-shaped calls to an HTTP/2 backend: h2load, weir vs nginx vs HAProxy ($(date -u '+%Y-%m-%d %H:%M UTC'))"
        echo
        echo "\`bench/grpc.sh $rounds $requests\`, weir $(git rev-parse --short HEAD) ($build), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), $(h2load --version | head -1), $(nproc) cores; 1 worker each; medians of $rounds rounds; origin: one nginx worker over h2c. CPU is the proxy's whole process tree."
        echo
        echo "$table"
        echo
    } > "$tmp/section"
    prepend_results "$tmp/section"
fi
