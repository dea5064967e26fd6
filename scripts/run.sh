#!/usr/bin/env bash
# The README's run command: builds the release binaries into ./bin and starts
# OCG in the background (`ocg start`). Idempotent: a second run restarts.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins --release --locked
mkdir -p bin
for name in ocg ocg-embedding ocg-agent ocg-gateway; do
    install -m 0755 "target/release/$name" "bin/$name"
done
exec ./bin/ocg start "$@"
