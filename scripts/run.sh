#!/usr/bin/env bash
# The README's run command: builds the release binaries into ./bin and starts
# OCG in the background (`ocg start`) on the local default models.
# Idempotent: a second run restarts.
set -euo pipefail
cd "$(dirname "$0")/.."

# llama-server and the local models (cached in ~/.cache/ocg): with no
# OPENAI_API_KEY / ANTHROPIC_API_KEY, the agent answers with SmolLM2 locally.
scripts/setup-llama.sh >/dev/null

cargo build --workspace --bins --release --locked
mkdir -p bin
for name in ocg ocg-embedding ocg-agent ocg-gateway; do
    install -m 0755 "target/release/$name" "bin/$name"
done
exec ./bin/ocg start "$@"
