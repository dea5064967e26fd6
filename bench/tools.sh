#!/usr/bin/env bash
# Tool benchmark (see bench/tools/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-tools
OCG_AGENT_BIN="$(realpath "$BENCH_BIN/ocg-agent")" exec "$BENCH_BIN/bench-tools"
