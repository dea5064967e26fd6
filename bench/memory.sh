#!/usr/bin/env bash
# Agent benchmark (issue 5). Prints one table per part:
#
# 1. Tool-loop overhead per call: a turn whose model calls a no-op tool, minus
#    the same turn answered without tools (baseline), in process with an
#    instant scripted model and the real SQLite session store. Budget < 1 ms.
# 2. Memory recall latency added to a turn, with 10,000 memories in the real
#    embedding service (release ocg-embedding, llama-server, all-MiniLM-L6-v2).
#    Baseline: embedding the query alone (POST /embed). Budget: p50 < 15 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup-llama.sh)"
export LLAMA_SERVER_BIN EMBEDDING_MODEL_PATH
. bench/build.sh
build_bench bench-memory
exec "$BENCH_BIN/bench-memory" "$BENCH_BIN"
