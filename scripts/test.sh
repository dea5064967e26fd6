#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds the four
# binaries and runs the whole suite. Idempotent; caches outside the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v cc >/dev/null || need_apt+=(build-essential)
if ((${#need_apt[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

cargo build --workspace --bins --locked
cargo test --workspace --all-features --locked
