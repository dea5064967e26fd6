#!/usr/bin/env bash
# Matrix, email, Discord and Slack channel benchmark (see bench/channels/src/main.rs).
# Prints a table per channel; `bench/channels.sh matrix`, `email`, `discord` or `slack` runs one.
# The release binaries are copied to a temporary directory first, so a build
# in a shared target directory cannot swap them during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/build.sh
build_bench bench-channels
BIN="$(mktemp -d "${TMPDIR:-/tmp}/ocg-bench-channels-XXXXXX")"
trap 'rm -rf "$BIN"' EXIT
cp "$BENCH_BIN"/{ocg,ocg-embedding,ocg-agent,ocg-gateway,bench-channels} "$BIN"/
"$BIN/bench-channels" "$BIN" "$@"
