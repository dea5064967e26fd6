#!/usr/bin/env bash
# Build FAISS, the vector index of the embedding service, as shared
# libraries in the SIMD levels its CMake offers, cached outside the source
# tree, and print where they are:
#
#   FAISS_LIB_DIR   libfaiss_c.so (the C API the faiss crate binds) and
#                   libfaiss.so in three builds:
#                     libfaiss.so                            baseline x86-64
#                     glibc-hwcaps/x86-64-v3/libfaiss.so     FAISS's "avx2" level
#                     glibc-hwcaps/x86-64-v4/libfaiss.so     FAISS's "avx512" level
#
# FAISS 1.12.0 has no dispatch inside one library: each level is a library
# of its own, compiled with that level's flags. The dynamic loader picks the
# best one this CPU runs when ocg-embedding starts (glibc-hwcaps, glibc >=
# 2.33: an x86-64-v4 CPU has AVX-512 F/BW/CD/DQ/VL, a v3 CPU AVX2/FMA/F16C),
# so the same cache and binaries run on any x86-64 machine, AMD or Intel,
# and use AVX-512 where there is one. On another architecture only the
# baseline is built.
#
# The source is the FAISS that the faiss-sys crate (crates.io, pinned in
# Cargo.lock) vendors, so the C API matches the Rust bindings exactly.
#
# Idempotent: a second run takes about a second. Progress goes to stderr.
# Env: OCG_CACHE_DIR (default ~/.cache/ocg).
set -euo pipefail

SETUP_TAG=setup-faiss
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=setup-common.sh
. "$SCRIPT_DIR/setup-common.sh"

CACHE="${OCG_CACHE_DIR:-$HOME/.cache/ocg}"
FAISS_VERSION=1.12.0
FAISS_SYS_VERSION=0.7.0
HOME_DIR="$CACHE/faiss-$FAISS_VERSION"
LIB="$HOME_DIR/lib"

# The levels, as FAISS's own CMake compiles faiss_avx2 and faiss_avx512.
AVX2_FLAGS="-mavx2 -mfma -mf16c -mpopcnt"
AVX512_FLAGS="$AVX2_FLAGS -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw"
if [ "$(uname -m)" = x86_64 ]; then
    LEVELS="generic x86-64-v3 x86-64-v4"
else
    LEVELS="generic"
fi
BUILD_CONFIG="faiss-$FAISS_VERSION shared $LEVELS 1"

level_flags() {
    case "$1" in
        generic) echo "" ;;
        x86-64-v3) echo "$AVX2_FLAGS" ;;
        x86-64-v4) echo "$AVX512_FLAGS" ;;
    esac
}

level_dir() {
    case "$1" in
        generic) echo "$2" ;;
        *) echo "$2/glibc-hwcaps/$1" ;;
    esac
}

libs_work() {
    [ "$(cat "$LIB/.build-config" 2>/dev/null)" = "$BUILD_CONFIG" ] || return 1
    ! ldd "$LIB/libfaiss_c.so" 2>/dev/null | grep -q "not found"
}

# The vendored FAISS of the pinned faiss-sys, through cargo (which checks
# the crate against Cargo.lock's checksum).
faiss_source() {
    local repo="$SCRIPT_DIR/.." metadata manifest
    metadata="$(cd "$repo" && cargo metadata --format-version 1 --locked)" \
        || die "cargo metadata failed (it fetches the crates of Cargo.lock)"
    manifest="$(printf '%s' "$metadata" | python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "faiss-sys" and p["version"] == sys.argv[1]:
        print(p["manifest_path"])' "$FAISS_SYS_VERSION")"
    [ -n "$manifest" ] || die "faiss-sys $FAISS_SYS_VERSION is not in Cargo.lock"
    local src; src="$(dirname "$manifest")/faiss"
    grep -q "VERSION $FAISS_VERSION" "$src/CMakeLists.txt" \
        || die "faiss-sys $FAISS_SYS_VERSION does not vendor FAISS $FAISS_VERSION"
    echo "$src"
}

build_level() {  # build_level LEVEL SRC OUT
    local level="$1" src="$2" out="$3" build="$HOME_DIR/build-$1" targets="faiss"
    [ "$level" = generic ] && targets="faiss faiss_c"
    log "configuring FAISS $FAISS_VERSION, $level"
    rm -rf "$build"
    nice -n 19 cmake -S "$src" -B "$build" -Wno-dev \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON \
        -DBUILD_TESTING=OFF \
        -DFAISS_OPT_LEVEL=generic \
        -DCMAKE_CXX_FLAGS="$(level_flags "$level")" \
        -DFAISS_ENABLE_GPU=OFF \
        -DFAISS_ENABLE_PYTHON=OFF \
        -DFAISS_ENABLE_EXTRAS=OFF \
        -DFAISS_ENABLE_MKL=OFF \
        -DFAISS_ENABLE_C_API=ON \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
        -DCMAKE_INSTALL_RPATH='$ORIGIN' \
        >"$HOME_DIR/configure-$level.log" 2>&1 \
        || { tail -30 "$HOME_DIR/configure-$level.log" >&2; die "cmake configure of FAISS ($level) failed"; }
    log "building FAISS, $level (first time only: 2 to 7 min on 2 cores; log: $HOME_DIR/build-$level.log)"
    local t0=$SECONDS
    # shellcheck disable=SC2086
    nice -n 19 cmake --build "$build" -j"$(nproc)" --target $targets \
        >"$HOME_DIR/build-$level.log" 2>&1 &
    local pid=$!
    watch_build "$pid" "$HOME_DIR/build-$level.log" "FAISS $level"
    wait "$pid" || { tail -30 "$HOME_DIR/build-$level.log" >&2; die "FAISS build ($level) failed"; }
    log "FAISS $level built in $(mmss $((SECONDS - t0)))"
    local dir; dir="$(level_dir "$level" "$out")"
    mkdir -p "$dir"
    cp "$build/faiss/libfaiss.so" "$dir/"
    [ "$level" = generic ] && cp "$build/c_api/libfaiss_c.so" "$out/"
    rm -rf "$build"
}

mkdir -p "$HOME_DIR"
exec 9>"$CACHE/.setup.lock"
flock 9

if ! libs_work; then
    ensure_apt cmake build-essential g++ libopenblas-dev
    t0=$SECONDS
    src="$(faiss_source)"
    rm -rf "$LIB.tmp"
    mkdir -p "$LIB.tmp"
    for level in $LEVELS; do
        build_level "$level" "$src" "$LIB.tmp"
    done
    printf '%s' "$BUILD_CONFIG" >"$LIB.tmp/.build-config"
    rm -rf "$LIB" && mv "$LIB.tmp" "$LIB"
    libs_work || { ldd "$LIB/libfaiss_c.so" >&2; die "the FAISS libraries do not load"; }
    log "FAISS ready in $(mmss $((SECONDS - t0)))"
fi
log "FAISS on this CPU: $(ldd "$LIB/libfaiss_c.so" | awk '$1 == "libfaiss.so" { print $3 }')"
echo "FAISS_LIB_DIR=$LIB"
