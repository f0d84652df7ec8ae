#!/usr/bin/env bash
# Idle HTTP/2 connection memory, before/after one change: two weir binaries in turn.
#
#   bench/h2_idle_ab.sh BIN_A BIN_B [ROUNDS] [COUNT] [BODY]
#
# Each round starts each weir fresh (one worker, h2c) in front of a one-worker nginx
# origin serving a BODY-byte file (default 16,384) with a per-response `X-Id`, opens
# COUNT connections (default 2,000) with bench/h2_idle_conns.py, each doing one GET and
# reading the response, holds them, and reads weir's VmRSS 2 s later. Prints the RSS
# growth per held connection. What a connection keeps after its one response shows here:
# the codec's buffers, and anything its HPACK tables keep alive.
set -u
cd "$(dirname "$0")/.."
. bench/lib.sh
[ $# -ge 2 ] || { echo "usage: bench/h2_idle_ab.sh BIN_A BIN_B [ROUNDS] [COUNT] [BODY]" >&2; exit 2; }
A=$1; B=$2; rounds=${3:-2}; count=${4:-2000}; body=${5:-16384}
ulimit -n "$(ulimit -Hn)"
origin=$(free_port)
# nginx's worker runs as another user: it must reach the file.
chmod 755 "$tmp"; mkdir -p "$tmp/www"
head -c "$body" /dev/zero | tr '\0' 'a' > "$tmp/www/file"
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin; root $tmp/www;
    location / { try_files /file =404; add_header X-Id \$request_id; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
for round in $(seq "$rounds"); do
    for side in A B; do
        if [ "$side" = A ]; then bin=$A; else bin=$B; fi
        port=$(free_port)
        cat > "$tmp/weir.toml" <<CONF
[server]
workers = 1
listen = ["127.0.0.1:$port"]
keepalive_timeout = "300s"
[admin]
listen = "off"
[[pool]]
name = "origin"
backends = ["127.0.0.1:$origin"]
CONF
        RUST_LOG=warn "$bin" --config "$tmp/weir.toml" 2>>"$tmp/weir.log" & wpid=$!
        for _ in $(seq 50); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.1; done
        before=$(rss "$wpid")
        coproc CLIENT { python3 bench/h2_idle_conns.py --port "$port" --count "$count"; }
        read -r opened <&"${CLIENT[0]}"
        sleep 2
        after=$(rss "$wpid")
        echo release >&"${CLIENT[1]}"; wait "$CLIENT_PID" 2>/dev/null
        kill "$wpid"; wait "$wpid" 2>/dev/null
        held=$(echo "$opened" | sed -n "s/.*\"held\": \([0-9]*\).*/\1/p"); held=${held:-0}
        echo "round $round $side: $opened; RSS $before -> $after KiB: $(( (after - before) * 1024 / (held > 0 ? held : 1) )) B a held connection"
    done
done
