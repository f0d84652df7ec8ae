#!/usr/bin/env bash
# Before/after check of one change: two weir binaries (A = before, B = after), each with
# 1 worker in front of the same nginx origin, `wrk -t1 -c64` rounds in alternation
# (A B A B ...). Prints each round, and the medians of req/s and of weir's CPU µs per
# request with B/A. Small keep-alive GETs by default; `WRK_SCRIPT=bench/wrk/post.lua`
# sends 1 KiB POSTs (the post-1k scenario of compare.sh); `WORKERS=N` runs N workers each.
# Usage: [WRK_SCRIPT=...] [WORKERS=N] [CONFIG_B=FILE] bench/ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin_a=$1; bin_b=$2; rounds=${3:-5}; seconds=${4:-10}; workers=${WORKERS:-1}
. bench/lib.sh
origin=$(free_port); port_a=$(free_port); port_b=$(free_port)
start_origin "$origin"
RUST_LOG=warn "$bin_a" -b "127.0.0.1:$origin" -l "127.0.0.1:$port_a" -w "$workers" --admin off 2>"$tmp/a.log" & pids+=($!)
pid_a=$!
# CONFIG_B=FILE runs B from FILE instead of `-b` (its line marked `# ORIGIN` gets the
# origin's address): with the same binary as A and B, it measures what the file's
# policy costs (bench/policy.toml, issue #20).
b_source=(-b "127.0.0.1:$origin")
if [ -n "${CONFIG_B:-}" ]; then
    sed "/# ORIGIN/s/\"[0-9.]*:[0-9]*\"/\"127.0.0.1:$origin\"/" "$CONFIG_B" > "$tmp/b.toml"
    b_source=(--config "$tmp/b.toml")
fi
RUST_LOG=warn "$bin_b" "${b_source[@]}" -l "127.0.0.1:$port_b" -w "$workers" --admin off 2>"$tmp/b.log" & pids+=($!)
pid_b=$!
sleep 1
alternate "$rounds" "$seconds" a "$port_a" b "$port_b" "$pid_a" "$pid_b"
python3 -c "a=$(median "$tmp/a"); b=$(median "$tmp/b"); print(f'median req/s: A {a:,.0f}, B {b:,.0f}; B/A = {b/a:.3f}')"
python3 -c "a=$(median "$tmp/a.cpu"); b=$(median "$tmp/b.cpu"); print(f'median CPU µs/req: A {a:.2f}, B {b:.2f}; B/A = {b/a:.3f}')"
