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

# alternate ROUNDS SECONDS NAME_A PORT_A NAME_B PORT_B [PID_A PID_B]: wrk -t1 -c64 rounds,
# A B A B ...; leaves one req/s figure per line in $tmp/NAME_A and $tmp/NAME_B. With pids,
# also the proxy's CPU time per request (user + system, µs) in $tmp/NAME_A.cpu and
# $tmp/NAME_B.cpu. WRK_SCRIPT (e.g. bench/wrk/post.lua) picks the request; default GET /.
alternate() {
    local rounds=$1 seconds=$2 a=$3 port_a=$4 b=$5 port_b=$6 pid_a=${7:-} pid_b=${8:-}
    local side port pid rps out before after script=()
    [ -n "${WRK_SCRIPT:-}" ] && script=(-s "$WRK_SCRIPT")
    for port in "$port_a" "$port_b"; do
        wrk -t1 -c64 -d1s "${script[@]}" "http://127.0.0.1:$port/" >/dev/null
    done
    : > "$tmp/$a"; : > "$tmp/$b"; : > "$tmp/$a.cpu"; : > "$tmp/$b.cpu"
    for round in $(seq "$rounds"); do
        for side in "$a" "$b"; do
            port=$([ "$side" = "$a" ] && echo "$port_a" || echo "$port_b")
            pid=$([ "$side" = "$a" ] && echo "$pid_a" || echo "$pid_b")
            [ -n "$pid" ] && before=$(cpu_ticks "$pid")
            out=$(wrk -t1 -c64 -d"${seconds}s" "${script[@]}" "http://127.0.0.1:$port/")
            rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
            echo "$rps" >> "$tmp/$side"
            if [ -n "$pid" ]; then
                after=$(cpu_ticks "$pid")
                python3 -c "print(round(($after - $before) / $(getconf CLK_TCK) * 1e6 / ($rps * $seconds), 2))" >> "$tmp/$side.cpu"
                echo "round $round $side $rps req/s $(tail -1 "$tmp/$side.cpu") µs CPU/req"
            else
                echo "round $round $side $rps req/s"
            fi
        done
    done
}

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
