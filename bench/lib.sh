# Shared by bench/ab.sh and bench/metrics_overhead.sh: a temp dir cleaned on exit, the
# processes to kill then, free loopback ports, a one-worker nginx origin answering "ok",
# and alternating wrk rounds with medians. Source it; it sets `tmp` and `pids`.
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_origin PORT: nginx with one worker and a tiny fixed response.
start_origin() {
    cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1; location / { return 200 "ok\n"; } } }
CONF
    nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
}

# alternate ROUNDS SECONDS NAME_A PORT_A NAME_B PORT_B: wrk -t1 -c64 rounds, A B A B ...;
# leaves one req/s figure per line in $tmp/NAME_A and $tmp/NAME_B.
alternate() {
    local rounds=$1 seconds=$2 a=$3 port_a=$4 b=$5 port_b=$6 side port rps
    for port in "$port_a" "$port_b"; do wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null; done
    : > "$tmp/$a"; : > "$tmp/$b"
    for round in $(seq "$rounds"); do
        for side in "$a" "$b"; do
            port=$([ "$side" = "$a" ] && echo "$port_a" || echo "$port_b")
            rps=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
            echo "round $round $side $rps req/s"
            echo "$rps" >> "$tmp/$side"
        done
    done
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
