#!/usr/bin/env bash
# Per-turn cost of the session store at 1, 10,000 and 100,000 turns (see
# bench/sessions/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-sessions
exec "$BENCH_BIN/bench-sessions" "$@"
