#!/usr/bin/env bash
# Build the four OCG programs in release mode, always the same way:
# scripts/run.sh installs what this builds into ./bin, and the benchmarks
# measure exactly that, without cargo recompiling the programs for another
# feature set.
#
# Two cargo invocations, because cargo unifies features across the packages
# of one: built together with the agent and the gateway, `ocg` and
# `ocg-embedding` would link reqwest's TLS stack (rustls, aws-lc) that only
# the programs reaching the internet need: 8.3 MB and 11.6 MB instead of
# 4.2 MB and 7.1 MB, and 2 MB more resident when idle.
set -euo pipefail
cd "$(dirname "$0")/.."
# ocg-embedding links FAISS's shared libraries (built once, cached).
scripts/setup-faiss.sh >/dev/null
cargo build --release --locked "$@" -p ocg -p ocg-embedding
cargo build --release --locked "$@" -p ocg-agent -p ocg-gateway
