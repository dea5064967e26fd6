#!/usr/bin/env bash
# Fuzz the parsers that take outside input (fuzz/fuzz_targets/*.rs), each for
# a bounded time, and print one table: executions, executions per second,
# corpus growth and findings. Not part of CI: run it by hand.
#
#   bench/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECONDS=600 bench/fuzz.sh sse apply_patch
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz from crates.io when missing. The corpus grows across runs in
# ~/.cache/ocg/fuzz/corpus/<target> (seeded from fuzz/seeds/<target>);
# inputs that crash, leak or time out are kept in
# ~/.cache/ocg/fuzz/artifacts/<target>/ and make the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
cache="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# Build every target first, then run the binaries: the runs measure the
# code as it was when the script started.
for target in "${targets[@]}"; do
    echo "fuzz: building $target" >&2
    cargo +nightly fuzz build -O "$target" 2>&1 | grep -Ev '^\s*(Compiling|Building)' >&2
done
bin="target/x86_64-unknown-linux-gnu/release"

stat() { # stat NAME LOG: a libFuzzer final statistic
    sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

status=0
rows=()
for target in "${targets[@]}"; do
    corpus="$cache/corpus/$target"
    artifacts="$cache/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "seeds/$target" ]; then
        cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    fi
    before=$(find "$corpus" -type f | wc -l)
    found_before=$(find "$artifacts" -type f | wc -l)
    log="$cache/$target.log"
    echo "fuzz: $target for $seconds s" >&2
    # -timeout: one input taking over 10 s is a finding (a hang);
    # -rss_limit_mb: so is memory past 2 GB.
    set +e
    "$bin/$target" "$corpus" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(stat number_of_executed_units "$log")
    speed=$(stat average_exec_per_sec "$log")
    rss=$(stat peak_rss_mb "$log")
    after=$(find "$corpus" -type f | wc -l)
    findings=$(($(find "$artifacts" -type f | wc -l) - found_before))
    if [ "$rc" -ne 0 ] || [ "$findings" -gt 0 ]; then
        status=1
        echo "fuzz: $target FAILED (rc $rc), see $log and $artifacts" >&2
        grep -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -n 5 >&2 || true
    fi
    rows+=("$(printf '| %-16s | %10s | %8s | %6s -> %-6s | %6s | %8s |' \
        "$target" "${runs:-?}" "${speed:-?}" "$before" "$after" "${rss:-?}" "$findings")")
done

echo
echo "Fuzzing, $seconds s per target ($(nproc) CPU, $(date -u +%Y-%m-%d))"
echo
echo "| target           |       runs |  execs/s | corpus before -> after | RSS MB | findings |"
echo "|------------------|-----------:|---------:|-----------------------:|-------:|---------:|"
printf '%s\n' "${rows[@]}"
exit "$status"
