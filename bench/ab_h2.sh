#!/usr/bin/env bash
# Before/after of one change on the HTTP/2 paths: two weir binaries, alternating rounds.
#
#   bench/ab_h2.sh BIN_A BIN_B [ROUNDS] [REQUESTS]   (SCEN="tls m10" picks loads; default "m10 grpc h1")
#
# Both weirs run pinned to CPU 0 (one worker each, started together and idle in turn);
# h2load and one nginx origin run on CPU 1. Loads, `REQUESTS` each (default 100,000):
#   m10   h2load -c64 -m10 over h2c, small GETs, to an HTTP/1.1 origin (max_idle 8192)
#   m100  the same at -m100
#   tls   -c64 -m10 over TLS (ALPN h2)
#   h1    HTTP/1.1, -c64
#   grpc  gRPC-shaped POSTs at -c64 -m100 to an h2c origin (`protocol = "h2c"`)
# Rounds alternate A B, then B A, so neither side always goes first (an order bias of a
# few percent was seen on this machine). Prints medians of req/s and of each weir's CPU
# µs per request (user + system, from /proc), with B/A, and every round's req/s. An A/A
# run of one binary against itself showed about 2% between the sides.
set -u
cd "$(dirname "$0")/.."
. bench/lib.sh
[ $# -ge 2 ] || { echo "usage: bench/ab_h2.sh BIN_A BIN_B [ROUNDS] [REQUESTS]" >&2; exit 2; }
A=$1; B=$2; R=${3:-6}; N=${4:-100000}
ulimit -n "$(ulimit -Hn)"
origin=$(free_port); gorigin=$(free_port)
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:$origin backlog=4096; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$gorigin http2 backlog=4096; location / { add_header grpc-status 0; return 200 "ok\n"; } } }
CONF
taskset -c 1 nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
declare -A port gport tport pid gpid
make_cert
for s in A B; do
  port[$s]=$(free_port); gport[$s]=$(free_port); tport[$s]=$(free_port)
  weir_h2_config "${port[$s]}" "${tport[$s]}" "$origin" > "$tmp/$s.toml"
  cat > "$tmp/$s.g.toml" <<CONF
[server]
workers = 1
listen = ["127.0.0.1:${gport[$s]}"]
[admin]
listen = "off"
[[pool]]
name = "origin"
backends = ["127.0.0.1:$gorigin"]
protocol = "h2c"
CONF
  bin=$([ $s = A ] && echo $A || echo $B)
  RUST_LOG=warn taskset -c 0 $bin --config $tmp/$s.toml 2>$tmp/$s.log & pids+=($!); pid[$s]=$!
  RUST_LOG=warn taskset -c 0 $bin --config $tmp/$s.g.toml 2>$tmp/$s.g.log & pids+=($!); gpid[$s]=$!
done
sleep 1
printf '\x00\x00\x00\x00\x0bhello grpc!' > "$tmp/body"
st() { awk '{print $14+$15}' /proc/$1/stat; }
one() { # scen side
  local sc=$1 s=$2 p u args
  case $sc in
    m10) p=${pid[$s]}; u=http://127.0.0.1:${port[$s]}/; args=(-c64 -m10);;
    tls) p=${pid[$s]}; u=https://localhost:${tport[$s]}/; args=(-c64 -m10);;
    m100) p=${pid[$s]}; u=http://127.0.0.1:${port[$s]}/; args=(-c64 -m100);;
    h1) p=${pid[$s]}; u=http://127.0.0.1:${port[$s]}/; args=(-c64 --h1);;
    grpc) p=${gpid[$s]}; u=http://127.0.0.1:${gport[$s]}/x.Y/Z; args=(-c64 -m100 -d $tmp/body -H 'content-type: application/grpc' -H 'te: trailers');;
  esac
  local t0=$(st $p)
  out=$(taskset -c 1 h2load -n $N -t1 "${args[@]}" "$u" 2>&1)
  local t1=$(st $p)
  rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
  echo "$out" | grep -q "succeeded, 0 failed" || echo "FAIL $sc $s" >&2
  echo "$rps $(python3 -c "print(round(($t1-$t0)*1e4/$N,2))")" >> $tmp/$sc.$s
}
SC=${SCEN:-m10 grpc h1}
for sc in $SC; do for s in A B; do N0=$N; N=5000; one $sc $s; N=$N0; : > $tmp/$sc.$s; done; done
for r in $(seq $R); do
  for sc in $SC; do
    if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for s in $order; do one $sc $s; done
  done
done
python3 - $tmp $SC <<'PY'
import sys,statistics as st
tmp=sys.argv[1]
for sc in sys.argv[2:]:
    m={}
    for s in "AB":
        rows=[tuple(map(float,l.split())) for l in open(f"{tmp}/{sc}.{s}") if l.strip()]
        m[s]=(st.median(r[0] for r in rows), st.median(r[1] for r in rows), [int(r[0]) for r in rows])
    print(f"{sc}: A {m['A'][0]:,.0f} req/s {m['A'][1]} us  B {m['B'][0]:,.0f} req/s {m['B'][1]} us  B/A rps {m['B'][0]/m['A'][0]:.3f} cpu {m['B'][1]/m['A'][1]:.3f}")
    print("   A", m['A'][2], " B", m['B'][2])
PY
