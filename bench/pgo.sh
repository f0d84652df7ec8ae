#!/usr/bin/env bash
# Builds weir with profile-guided optimisation (PGO) and prints the binary's path.
#
#   bench/pgo.sh            -> target/pgo/release/weir
#   WEIR_BIN=$(bench/pgo.sh | tail -1) bench/h2.sh
#
# Three steps: an instrumented release build (-Cprofile-generate), a training run of that
# binary (HTTP/1.1, HTTP/2 over h2c and TLS, uploads, 64 KiB responses and gRPC-shaped
# POSTs to an h2c backend, against a one-worker nginx origin; see step 2), then a release
# build that uses the merged profile (-Cprofile-use). The profile
# is rebuilt from the checkout each time, and named by its hash so that every crate is
# rebuilt with it: it never goes stale against the source.
#
# Why: weir runs fewer instructions per HTTP/2 stream than HAProxy at -m10 yet more CPU,
# because its code is spread out: under callgrind's cache model it takes 2.3x HAProxy's
# instruction-cache misses and 7.7x its mispredicted indirect branches per request
# (bench/RESULTS.md). PGO lays the hot paths out together and inlines by measured
# frequency. It needs llvm-profdata from the toolchain's llvm-tools component
# (`rustup component add llvm-tools`, installed here if missing). It changes no
# behaviour: the same source, compiled with different layout and inlining choices.
# Plain `cargo build --release` stays the default build; this is the build to ship where
# speed counts, and the one bench/RESULTS.md names when it is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
for tool in nginx h2load openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench/pgo.sh needs $tool (apt-get install nginx-light nghttp2-client openssl python3)" >&2; exit 1; }
done
# The profile flags are added to the user's RUSTFLAGS; CARGO_ENCODED_RUSTFLAGS would make
# cargo ignore RUSTFLAGS altogether, and the result would be a plain build.
if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    echo "bench/pgo.sh: unset CARGO_ENCODED_RUSTFLAGS (it overrides the RUSTFLAGS this script sets)" >&2
    exit 1
fi
sysroot=$(rustc --print sysroot)
profdata=$(find "$sysroot" -name llvm-profdata -type f | head -1)
if [ -z "$profdata" ]; then
    rustup component add llvm-tools >&2
    profdata=$(find "$sysroot" -name llvm-profdata -type f | head -1)
fi
root=$(pwd)/target/pgo
rm -rf "$root/train"; mkdir -p "$root/train"

# 1. The instrumented build, in its own target directory so that neither build
# invalidates the other's (or the plain release build's) artifacts.
# Build scripts are instrumented too; their profiles go to gen/ and are not merged.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$root/gen/profiles" \
    cargo build --release --quiet --target-dir "$root/gen"

# 2. Training: a mix of what a balancer carries, deliberately not the benchmarks' exact
# shapes (they run -c64 -m10 and -m100 on one small response), so that a gain the
# benchmarks then show is not one tuned to them: HTTP/1.1 GETs and 4 KiB POSTs,
# HTTP/2 over h2c and TLS at other concurrencies with small and 64 KiB responses and
# 16 KiB uploads, HTTP/1.1 over TLS, and gRPC-shaped POSTs to an h2c backend.
make_cert
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
origin=$(free_port); h2origin=$(free_port)
mkdir -p "$tmp/www"
chmod a+rx "$tmp" "$tmp/www"   # nginx's worker (user nobody) reads the file
head -c 65536 /dev/zero | tr '\0' x > "$tmp/www/big"
cat > "$tmp/origin.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin.pid; error_log stderr;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:$origin backlog=4096; root $tmp/www;
    location = /big { }
    location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$h2origin http2 backlog=4096;
    location / { add_header grpc-status 0; return 200 "ok\n"; } } }
CONF
nginx -e stderr -p "$tmp" -c "$tmp/origin.conf" 2>"$tmp/origin.log" & pids+=($!)
plain=$(free_port); tls=$(free_port)
{ weir_h2_config "$plain" "$tls" "$origin"; cat <<CONF; } > "$tmp/weir.toml"
[[pool]]
name = "grpc"
backends = ["127.0.0.1:$h2origin"]
protocol = "h2c"
[[route]]
path_prefix = "/bench."
pool = "grpc"
[[route]]
pool = "origin"
CONF
LLVM_PROFILE_FILE="$root/train/weir-%p.profraw" RUST_LOG=warn "$root/gen/release/weir" \
    --config "$tmp/weir.toml" 2>"$tmp/weir.log" & pids+=($!); weir=$!
for _ in $(seq 100); do
    h2load -n1 "http://127.0.0.1:$plain/" 2>/dev/null | grep -q "1 succeeded" && break
    sleep 0.2
done
printf '\x00\x00\x00\x00\x0bhello grpc!' > "$tmp/grpc"
head -c 4096 /dev/zero > "$tmp/4k"; head -c 16384 /dev/zero > "$tmp/16k"
train() {
    local out
    # Every answer a 2xx (h2load counts a 502 as succeeded): a profile of error paths
    # would optimise the wrong code.
    out=$(h2load -D"${PGO_SECONDS:-4}" -t1 "$@" 2>&1) || true
    if ! echo "$out" | grep -q ' 0 failed, 0 errored' \
        || ! echo "$out" | grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx'; then
        echo "bench/pgo.sh: training failed: $* $out" >&2
        exit 1
    fi
    echo "$out" | grep '^requests:' >&2
}
http=http://127.0.0.1:$plain https=https://localhost:$tls
train -c32 --h1 "$http/"
train -c16 --h1 -d "$tmp/4k" "$http/upload"
train -c16 -m32 "$http/" "$http/big"
train -c8 -m8 -d "$tmp/16k" "$http/upload"
train -c32 -m20 "$https/" "$https/big"
train -c32 --h1 "$https/"
train -c16 -m50 -d "$tmp/grpc" -H 'content-type: application/grpc' -H 'te: trailers' \
    "$http/bench.Echo/Unary"
# A clean exit writes the profile (SIGTERM drains and returns from main).
kill -TERM "$weir"; wait "$weir" || true
ls "$root"/train/*.profraw >/dev/null

# 3. The optimised build from the merged profile.
# The profile's name carries its hash: cargo rebuilds registry crates (h2, tokio, http)
# when their flags change, not when a file their flags name does, so a profile kept
# under one name would leave them built from an older one.
"$profdata" merge -o "$root/merged.profdata" "$root"/train/*.profraw
profile="$root/weir-$(sha256sum "$root/merged.profdata" | cut -c1-16).profdata"
rm -f "$root"/weir-*.profdata
mv "$root/merged.profdata" "$profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" \
    cargo build --release --quiet --target-dir "$root"
echo "$root/release/weir"
