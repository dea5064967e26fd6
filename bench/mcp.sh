#!/usr/bin/env bash
# MCP benchmark (see bench/mcp/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-mcp
exec "$BENCH_BIN/bench-mcp"
