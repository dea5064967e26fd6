#!/usr/bin/env bash
# Telegram channel benchmark (see bench/telegram/src/main.rs). Prints the table.
# The release binaries are copied to a temporary directory first, so a build
# in a shared target directory cannot swap them during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-telegram
BIN="$(mktemp -d "${TMPDIR:-/tmp}/ocg-bench-telegram-XXXXXX")"
trap 'rm -rf "$BIN"' EXIT
cp "$BENCH_BIN"/{ocg,ocg-embedding,ocg-agent,ocg-gateway,bench-telegram} "$BIN"/
"$BIN/bench-telegram" "$BIN"
