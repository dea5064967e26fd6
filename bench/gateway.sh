#!/usr/bin/env bash
# Gateway benchmark (see bench/gateway/src/main.rs). Prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --bins
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec target/release/bench-gateway target/release
