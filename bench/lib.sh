# Shared by the bench/*.sh scripts: a temp dir cleaned on exit, the processes to kill
# then, free loopback ports, a one-worker nginx origin answering "ok", alternating wrk
# rounds with medians, a test certificate and nginx's proxy location. Source it; it sets
# `tmp` and `pids`.
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

# make_cert: a CA and a certificate for localhost and 127.0.0.1 (P-256) signed by it, in
# $tmp/ca.pem, $tmp/server.pem and $tmp/server.key.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bench CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 2 -extfile "$tmp/ext" -out "$tmp/server.pem" 2>/dev/null
}

# weir_h2_config PLAIN TLS ORIGIN: the config bench/h2.sh measures weir with: one worker,
# HTTP/1.1 and h2c on 127.0.0.1:PLAIN, HTTP/2 and HTTP/1.1 over TLS on 127.0.0.1:TLS
# (make_cert's certificate), no admin listener, and one pool "origin" of 127.0.0.1:ORIGIN
# that keeps up to 8,192 idle connections (every stream of -c64 -m100 needs one).
# Printed, for a caller to write out or extend.
weir_h2_config() {
    cat <<CONF
[server]
workers = 1
listen = ["127.0.0.1:$1"]
[[server.tls]]
listen = "127.0.0.1:$2"
certs = [{ cert = "$tmp/server.pem", key = "$tmp/server.key" }]
[admin]
listen = "off"
[[pool]]
name = "origin"
backends = ["127.0.0.1:$3"]
max_idle = 8192
CONF
}

# nginx_proxy_location: nginx's `location /` to `upstream backend`, sending the origin the
# same request headers as weir (Host as the client sent it, X-Forwarded-*).
nginx_proxy_location() {
    cat <<'CONF'
        location / {
            proxy_pass http://backend; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }
CONF
}

# prepend_results FILE: puts FILE's section at the top of bench/RESULTS.md, under its title.
prepend_results() {
    python3 - "$1" <<'PY'
import sys
section = open(sys.argv[1]).read()
path = "bench/RESULTS.md"
text = open(path).read()
head = "# weir benchmark results\n\n"
open(path, "w").write(head + section + text[len(head):] if text.startswith(head) else section + text)
PY
}
