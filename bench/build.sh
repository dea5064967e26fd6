# Sourced by the bench scripts. `build_bench BENCH...` builds the four OCG
# programs exactly as scripts/run.sh does (scripts/build-release.sh), then the
# named bench binaries in a cargo invocation of their own, so their test
# dependencies never change the programs' features. `$BENCH_BIN` is where
# both are.
BENCH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
build_bench() {
    scripts/build-release.sh -q
    local packages=()
    for name in "$@"; do packages+=(-p "$name"); done
    if [ ${#packages[@]} -gt 0 ]; then
        cargo build --release --locked -q "${packages[@]}"
    fi
}
