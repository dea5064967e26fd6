#!/usr/bin/env bash
# Vector search benchmark: pgvector HNSW against FAISS HNSW on the same
# vectors (see bench/postgres/src/main.rs). Needs the PostgreSQL of the
# test command (scripts/test.sh installs it). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-postgres
exec "$BENCH_BIN/bench-postgres" "$BENCH_BIN"
