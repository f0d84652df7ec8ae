#!/usr/bin/env bash
# Soak test (issue #9), not run in CI: 10 minutes of mixed traffic through a release weir
# while it reloads every 10 s, takes an API change every 15 s and loses a backend every
# minute. Checks RSS drift (<5%), fd count back to baseline, and 0 unexpected errors.
#   bench/soak.sh [--duration SECONDS] [--warmup SECONDS] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/soak.py --weir target/release/weir "$@"
