#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds the four
# binaries and runs the whole suite. Idempotent; caches outside the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v cc >/dev/null || need_apt+=(build-essential)
# FAISS (the embedding service's vector index) is compiled from source by
# the faiss crate's `static` feature: C++, cmake >= 3.24, BLAS + LAPACK.
command -v g++ >/dev/null || need_apt+=(g++)
command -v cmake >/dev/null || need_apt+=(cmake)
# (libblas.so and liblapack.so come with libopenblas-dev)
dpkg -s libopenblas-dev >/dev/null 2>&1 || need_apt+=(libopenblas-dev)
if ((${#need_apt[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

# The real llama-server and models (local chat default, embeddings): built
# and converted once, cached in ~/.cache/ocg (OCG_CACHE_DIR).
eval "$(scripts/setup-llama.sh)"
export LLAMA_SERVER_BIN EMBEDDING_MODEL_PATH CHAT_MODEL_PATH

# The official OpenAI Python SDK, for the compatibility test of the gateway.
PY_OPENAI="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/py-openai"
if [ ! -x "$PY_OPENAI/bin/python" ] || ! "$PY_OPENAI/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$PY_OPENAI"
    "$PY_OPENAI/bin/pip" install -q "openai==3.57.0"
fi
export OCG_TEST_PYTHON="$PY_OPENAI/bin/python"

cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked 2>&1 | tee "$log" || status=$?
# The web UI in a real headless Chromium, against the real stack.
tests/ui/run.sh --stack 2>&1 | tee -a "$log" || status=$?

# One closing line for the whole run (cargo prints one per test binary, the
# UI test its own).
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     /^ui: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
