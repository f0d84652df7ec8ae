#!/usr/bin/env bash
# HTTPS-backend benchmark (issue #6). One nginx origin speaking TLS (a CA and a server
# certificate for "localhost" made here with openssl), and three proxies in front of it,
# each with 1 worker, all taking plain HTTP from `wrk -t1 -c64` small GETs:
#   weir-pooled   weir with its pool on: TLS connections reused, new ones resumed
#   weir-nopool   weir with `max_idle = 0`: a new TLS connection (resumed) per request
#   nginx         nginx with `keepalive` and `proxy_ssl_session_reuse on`
#   nginx-nopool  nginx with `proxy_ssl_session_reuse on` and no upstream keepalive: what
#                 the best peer's pooled / pool-off ratio is on the same machine
#   weir-plain    weir pooled to the same origin over plain HTTP: the ceiling of any pooled
#                 path, so pooled-plain / pool-off bounds the pooled / pool-off ratio a
#                 TLS pool could reach here even if TLS cost nothing
# Rounds alternate (A B C A B C ...); the table shows medians. The share of new upstream
# TLS connections that resumed comes from weir's own counters
# (weir_backend_tls_handshakes_total{resumed}).
#
#   bench/tls.sh [--rounds N] [--seconds S] [--tls13] [--no-record]
#
# The origin speaks what Debian's nginx 1.22 enables by default, TLS 1.2 (resumed by
# session ticket: no key exchange). --tls13 makes the origin and the nginx proxy speak
# TLS 1.3 only, as nginx does by default since 1.23.4: resumption is then PSK with
# (EC)DHE, one X25519 exchange per side per new connection.
#
# WEIR_BIN picks the weir binary (default: target/release/weir, built if missing). The
# table is appended to bench/RESULTS.md unless --no-record.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3; seconds=10; record=1; protocols=""; version="TLS 1.2"
while (($#)); do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --no-record) record=0; shift ;;
        --tls13) protocols=TLSv1.3; version="TLS 1.3"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "tls.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for tool in nginx wrk openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "tls.sh: $tool is required" >&2; exit 1; }
done
weir=${WEIR_BIN:-target/release/weir}
[ -x "$weir" ] || cargo build --release
. bench/lib.sh

# --- certificates: a CA and a server certificate for localhost -------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=weir bench CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 2 -extfile "$tmp/ext" -out "$tmp/server.pem" 2>/dev/null

origin=$(free_port); pooled=$(free_port); nopool=$(free_port); proxy=$(free_port)
admin_pooled=$(free_port); admin_nopool=$(free_port)
plain_origin=$(free_port); plain=$(free_port); admin_plain=$(free_port); proxy_nopool=$(free_port)

# --- the HTTPS origin ----------------------------------------------------------------
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  ssl_session_cache shared:origin:10m; ssl_session_tickets on; ${protocols:+ssl_protocols $protocols;}
  server { listen 127.0.0.1:$origin ssl;
    ssl_certificate $tmp/server.pem; ssl_certificate_key $tmp/server.key;
    location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$plain_origin; location / { return 200 "ok\n"; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)

# --- weir, pooled and not ------------------------------------------------------------
weir_conf() { # PORT ADMIN MAX_IDLE
    cat <<CONF
[server]
listen = ["127.0.0.1:$1"]
workers = 1
[admin]
listen = "127.0.0.1:$2"
[[pool]]
name = "tls"
backends = ["https://127.0.0.1:$origin"]
max_idle = $3
[pool.tls]
server_name = "localhost"
ca_file = "$tmp/ca.pem"
CONF
}
weir_conf "$pooled" "$admin_pooled" 256 > "$tmp/pooled.toml"
weir_conf "$nopool" "$admin_nopool" 0 > "$tmp/nopool.toml"
RUST_LOG=warn "$weir" -c "$tmp/pooled.toml" 2>"$tmp/pooled.log" & pids+=($!)
RUST_LOG=warn "$weir" -c "$tmp/nopool.toml" 2>"$tmp/nopool.log" & pids+=($!)
RUST_LOG=warn "$weir" -w 1 -l "127.0.0.1:$plain" --admin "127.0.0.1:$admin_plain" \
    -b "127.0.0.1:$plain_origin" 2>"$tmp/plain.log" & pids+=($!)

# --- nginx as the proxy --------------------------------------------------------------
cat > "$tmp/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/proxy.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$origin; keepalive 256; }
  server { listen 127.0.0.1:$proxy;
    location / { proxy_pass https://origin; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_ssl_session_reuse on;
      ${protocols:+proxy_ssl_protocols $protocols;}
      proxy_ssl_server_name on; proxy_ssl_name localhost;
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $tmp/ca.pem; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/proxy.conf" 2>"$tmp/proxy.log" & pids+=($!)
# The same nginx proxy without upstream keepalive: a new, resumed TLS connection per request.
sed -e "s/ keepalive 256;//" -e "s/:$proxy;/:$proxy_nopool;/" -e "s/proxy.pid/proxy-nopool.pid/" \
    "$tmp/proxy.conf" > "$tmp/proxy-nopool.conf"
nginx -e stderr -p "$tmp" -c "$tmp/proxy-nopool.conf" 2>"$tmp/proxy-nopool.log" & pids+=($!)

# --- wait until every proxy answers ok -------------------------------------------------
for port in "$pooled" "$nopool" "$proxy" "$proxy_nopool" "$plain"; do
    for _ in $(seq 100); do
        [ "$(curl -s "http://127.0.0.1:$port/" || true)" = ok ] && break
        sleep 0.1
    done
    [ "$(curl -s "http://127.0.0.1:$port/" || true)" = ok ] || {
        echo "tls.sh: proxy on port $port does not answer; logs:" >&2
        tail -n 20 "$tmp"/*.log >&2; exit 1; }
done

# --- alternating rounds ----------------------------------------------------------------
sides=(weir-pooled weir-nopool nginx nginx-nopool weir-plain)
ports=("$pooled" "$nopool" "$proxy" "$proxy_nopool" "$plain")
for i in "${!sides[@]}"; do
    wrk -t1 -c64 -d1s "http://127.0.0.1:${ports[$i]}/" >/dev/null
    : > "$tmp/${sides[$i]}"
done
for round in $(seq "$rounds"); do
    for i in "${!sides[@]}"; do
        rps=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:${ports[$i]}/" \
            | awk '/Requests\/sec/ {print $2}')
        echo "round $round ${sides[$i]} $rps req/s"
        echo "$rps" >> "$tmp/${sides[$i]}"
    done
done

# --- resumption share from weir's counters ------------------------------------------------
handshakes() { # ADMIN_PORT RESUMED
    curl -s "http://127.0.0.1:$1/metrics" \
        | awk -v r="resumed=\"$2\"" '$1 ~ /^weir_backend_tls_handshakes_total/ && index($1, r) {s += $2} END {print s + 0}'
}
full=$(( $(handshakes "$admin_pooled" false) + $(handshakes "$admin_nopool" false) ))
resumed=$(( $(handshakes "$admin_pooled" true) + $(handshakes "$admin_nopool" true) ))

table=$(python3 - "$(median "$tmp/weir-pooled")" "$(median "$tmp/weir-nopool")" \
    "$(median "$tmp/nginx")" "$full" "$resumed" "$rounds" "$seconds" \
    "$(median "$tmp/nginx-nopool")" "$(median "$tmp/weir-plain")" "$version" <<'PY'
import sys
pooled, nopool, nginx = (float(x) for x in sys.argv[1:4])
full, resumed, rounds, seconds = (int(x) for x in sys.argv[4:8])
nginx_nopool, plain = (float(x) for x in sys.argv[8:10])
version = sys.argv[10]
share = resumed / (full + resumed) if full + resumed else 0.0
rows = [
    ("weir pooled + resumed", pooled),
    ("weir, pool off (max_idle = 0)", nopool),
    ("nginx keepalive + proxy_ssl_session_reuse", nginx),
    ("nginx, no upstream keepalive (proxy_ssl_session_reuse on)", nginx_nopool),
    ("weir pooled, plain HTTP origin (ceiling of any pooled path)", plain),
]
print(f"wrk -t1 -c64, 1 worker each, HTTPS origin (nginx, 1 worker, {version}), "
      f"median of {rounds} rounds of {seconds} s\n")
print("| proxy | req/s |")
print("|---|---:|")
for name, rps in rows:
    print(f"| {name} | {rps:,.0f} |")
print()
print(f"- weir pooled / pool off: **{pooled / nopool:.1f}x** (goal: at least 10x)" if nopool else "")
print(f"- weir pooled / nginx: **{pooled / nginx:.2f}x** (goal: at least 0.9x)" if nginx else "")
print(f"- nginx keepalive / nginx without: {nginx / nginx_nopool:.1f}x" if nginx_nopool else "")
print(f"- ceiling, weir pooled plain HTTP / weir TLS pool off: {plain / nopool:.1f}x" if nopool else "")
print(f"- new upstream TLS connections resumed: **{resumed:,} of {full + resumed:,} "
      f"({100 * share:.1f}%)** (goal: at least 95%)")
PY
)
echo
echo "$table"
if [ "$record" = 1 ]; then
    {
        echo
        echo "## HTTPS backends (bench/tls.sh, $(date -u +%Y-%m-%d))"
        echo
        echo "$table"
    } >> bench/RESULTS.md
    echo "(appended to bench/RESULTS.md)"
fi
