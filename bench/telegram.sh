#!/usr/bin/env bash
# Telegram channel benchmark (see bench/telegram/src/main.rs). Prints the table.
# The release binaries are copied to a temporary directory first, so a build
# in a shared target directory cannot swap them during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -q -p ocg -p ocg-embedding -p ocg-agent -p ocg-gateway -p bench-telegram
BIN="$(mktemp -d "${TMPDIR:-/tmp}/ocg-bench-telegram-XXXXXX")"
trap 'rm -rf "$BIN"' EXIT
cp "$TARGET"/release/{ocg,ocg-embedding,ocg-agent,ocg-gateway,bench-telegram} "$BIN"/
"$BIN/bench-telegram" "$BIN"
