#!/usr/bin/env bash
# Build the four OCG programs in release mode, always the same way (the same
# packages in one cargo invocation, so the same features): scripts/run.sh
# installs what this builds into ./bin, and the benchmarks measure exactly
# that, without cargo recompiling the programs for another feature set.
set -euo pipefail
cd "$(dirname "$0")/.."
# ocg-embedding links FAISS's shared libraries (built once, cached).
scripts/setup-faiss.sh >/dev/null
cargo build --release --locked "$@" -p ocg -p ocg-embedding -p ocg-agent -p ocg-gateway
