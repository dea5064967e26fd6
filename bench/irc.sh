#!/usr/bin/env bash
# IRC channel benchmark (see bench/irc/src/main.rs). Prints the table.
# The release binaries are copied to a temporary directory first, so a build
# in a shared target directory cannot swap them during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-irc
BIN="$(mktemp -d "${TMPDIR:-/tmp}/ocg-bench-irc-XXXXXX")"
trap 'rm -rf "$BIN"' EXIT
cp "$BENCH_BIN"/{ocg,ocg-embedding,ocg-agent,ocg-gateway,bench-irc} "$BIN"/
"$BIN/bench-irc" "$BIN"
