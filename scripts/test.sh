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

# The real llama-server and models (local chat default, embeddings): built
# and converted once, cached in ~/.cache/ocg (OCG_CACHE_DIR).
eval "$(scripts/setup-llama.sh)"
export LLAMA_SERVER_BIN EMBEDDING_MODEL_PATH CHAT_MODEL_PATH

cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the
# last of which is often an empty doc-test run).
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
