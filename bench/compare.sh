#!/usr/bin/env bash
# weir vs nginx vs HAProxy benchmark (issue #3). See bench/README.md.
#
#   bench/compare.sh [--workers 1,2] [--rounds 3] [--duration 10] [--no-record] ...
#
# Installs what is missing (apt-get install -y nginx-light haproxy wrk), raises the
# fd limit, builds weir (cargo build --release, inside compare.py) and runs
# bench/compare.py with a private mktemp directory. Every process started is killed
# on exit, and the temp directory is removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

for arg in "$@"; do
    case "$arg" in -h|--help) exec python3 "$here/compare.py" --help ;; esac
done

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# --- tools -------------------------------------------------------------------
missing=()
for tool in nginx haproxy wrk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "compare.sh: missing: ${missing[*]}; installing nginx-light haproxy wrk" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y nginx-light haproxy wrk; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y nginx-light haproxy wrk
    fi
fi
command -v python3 >/dev/null 2>&1 || { echo "compare.sh: python3 is required" >&2; exit 1; }

# --- fd limit (proxies, wrk -c1000 and the 10,000 idle connections) -------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 65536 ]; then
    echo "compare.sh: note: fd limit is $(ulimit -n) (hard limit); 65536 was not possible" >&2
fi

# --- temp dir and cleanup ----------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")"
driver=""
cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$driver" 2>/dev/null || true
    fi
    # compare.py keeps the process-group ids of its live children in $tmp/pids
    if [ -f "$tmp/pids" ]; then
        while read -r pgid; do
            [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
        done < "$tmp/pids"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# run in the background so that the traps fire at once on a signal
python3 "$here/compare.py" --tmpdir "$tmp" "$@" &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=""
exit "$rc"
