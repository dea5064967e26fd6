#!/usr/bin/env bash
# Gateway benchmark (see bench/gateway/src/main.rs). Prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-gateway
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$BENCH_BIN/bench-gateway" "$BENCH_BIN"
