#!/usr/bin/env bash
# Agent overhead benchmark (see bench/agent/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-agent
exec "$BENCH_BIN/bench-agent" "$BENCH_BIN/ocg-agent"
