#!/usr/bin/env bash
# The scheduler with 10,000 jobs: idle CPU and RSS of the real ocg-agent
# against the same agent without jobs, and the delay from due time to turn
# start for 100 jobs due in the same second against one job alone (see
# bench/schedule/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-schedule
exec "$BENCH_BIN/bench-schedule" "$BENCH_BIN/ocg-agent" "$@"
