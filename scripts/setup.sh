#!/usr/bin/env bash
# What both README commands need, installed once and cached outside the
# source tree: the Debian packages that building OCG takes (C/C++ toolchain,
# cmake and BLAS/LAPACK for the FAISS vector index, python3-venv for the model
# tools), then llama.cpp's llama-server and the local models
# (scripts/setup-llama.sh), then FAISS's shared libraries, one per SIMD level
# (scripts/setup-faiss.sh).
#
# Progress goes to stderr; stdout gets the paths as KEY=path lines, e.g.
#   eval "$(scripts/setup.sh)"; "$LLAMA_SERVER_BIN" --version
# Idempotent: a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for pkg in build-essential g++ cmake libopenblas-dev curl python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

scripts/setup-llama.sh
scripts/setup-faiss.sh
