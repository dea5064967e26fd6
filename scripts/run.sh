#!/usr/bin/env bash
# The README's run command: installs what OCG needs (scripts/setup.sh), builds
# the four release binaries into ./bin and starts OCG in the background
# (`ocg start`) on the local default models. `ocg start` returns once the
# local model answers. Idempotent: a second run restarts.
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$SECONDS
# llama-server and the local models (cached in ~/.cache/ocg): with no
# OPENAI_API_KEY / ANTHROPIC_API_KEY, the agent answers with the local model.
scripts/setup.sh >/dev/null

echo "[run] building the OCG binaries (release; the first build takes a few minutes)" >&2
scripts/build-release.sh
mkdir -p bin
for name in ocg ocg-embedding ocg-agent ocg-gateway; do
    install -m 0755 "target/release/$name" "bin/$name"
done
echo "[run] set up in $((SECONDS - t0)) s; starting" >&2
exec ./bin/ocg start "$@"
