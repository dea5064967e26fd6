#!/usr/bin/env bash
# Agent overhead benchmark (see bench/agent/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p ocg-agent -p bench-agent
exec target/release/bench-agent target/release/ocg-agent
