#!/usr/bin/env bash
# Tool benchmark (see bench/tools/src/main.rs). Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p bench-tools -p ocg-agent
OCG_AGENT_BIN="$(realpath "${CARGO_TARGET_DIR:-target}/release/ocg-agent")" \
    exec "${CARGO_TARGET_DIR:-target}/release/bench-tools"
