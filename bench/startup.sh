#!/usr/bin/env bash
# Benchmark of the process manager and idle services (issue: workspace and
# `ocg`). Prints one table: median of RUNS runs, the budget, the ratio to
# the budget, and a floor measured in the same run (fork+exec+reap of three
# `/bin/true`, the least any start of three processes can cost). `ocg start`
# returns once the local chat model answers (its load is about 0.7 s here),
# so that row is above its budget by design.
#
#   bench/startup.sh            # builds release binaries first
#   RUNS=20 bench/startup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}

. bench/build.sh
build_bench
BIN=$BENCH_BIN
WORK=$(mktemp -d /tmp/ocg-bench.XXXXXX)
trap '"$BIN/ocg" stop --force >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export OCG_PID_DIR=$WORK/pids OCG_LOG_DIR=$WORK/logs OCG_DATA_DIR=$WORK/data
export OCG_AGENT_SOCK=$WORK/agent.sock OCG_PORT=$(free_port) OCG_EMBEDDING_PORT=$(free_port)
unset OCG_CONFIG
cd "$WORK"

now_ms() { date +%s%N | awk '{printf "%.3f", $1/1e6}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# "anonymous / file-backed" resident MB: the heap and stacks against mapped
# code (the binary, FAISS, OpenBLAS, libstdc++), which is shared and
# dropped by the kernel under pressure.
rss_split() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {printf "%.1f / %.1f", a/1024, f/1024}' "/proc/$1/status"; }

starts=() stops=() floors=() rss_e=() rss_a=() rss_g=()
for _ in $(seq "$RUNS"); do
    t0=$(now_ms); /bin/true; /bin/true; /bin/true; t1=$(now_ms)
    floors+=("$(echo "$t1 - $t0" | bc)")

    t0=$(now_ms); "$BIN/ocg" start >/dev/null; t1=$(now_ms)
    starts+=("$(echo "$t1 - $t0" | bc)")
    "$BIN/ocg" status >/dev/null || { echo "status not healthy after start" >&2; exit 1; }
    sleep 1 # idle
    rss_e+=("$(rss_kb "$(cut -d' ' -f1 pids/ocg-embedding.pid)")")
    rss_a+=("$(rss_kb "$(cut -d' ' -f1 pids/ocg-agent.pid)")")
    rss_g+=("$(rss_kb "$(cut -d' ' -f1 pids/ocg-gateway.pid)")")
    split_e=$(rss_split "$(cut -d' ' -f1 pids/ocg-embedding.pid)")

    t0=$(now_ms); "$BIN/ocg" stop >/dev/null; t1=$(now_ms)
    stops+=("$(echo "$t1 - $t0" | bc)")
done

m() { printf '%s\n' "$@" | median; }
floor=$(m "${floors[@]}")
row() { # name value unit budget
    awk -v n="$1" -v v="$2" -v u="$3" -v b="$4" -v f="$5" 'BEGIN {
        printf "| %-28s | %10.1f %-2s | %8s %-2s | %6.2f | %s |\n", n, v, u, b, u, v/b, f }'
}
echo
echo "OCG process manager, release build, median of $RUNS runs ($(nproc) cores)"
echo
printf '| %-28s | %13s | %11s | %6s | %s |\n' metric measured budget ratio "same-run baseline"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------" "---------------" "-------------" "--------" "------------------"
row "ocg start (3 healthy, model up)" "$(m "${starts[@]}")" ms 300 "floor 3x fork+exec ${floor} ms ($(echo "scale=1; $(m "${starts[@]}") / $floor" | bc)x)"
row "ocg stop (cooperative)" "$(m "${stops[@]}")" ms 200 "-"
row "idle RSS ocg-embedding" "$(echo "$(m "${rss_e[@]}") / 1024" | bc -l)" MB 15 "Go OCG claims ~50 MB; last run anonymous / file-backed: $split_e MB"
row "idle RSS ocg-agent" "$(echo "$(m "${rss_a[@]}") / 1024" | bc -l)" MB 15 "Go OCG claims ~50 MB"
row "idle RSS ocg-gateway" "$(echo "$(m "${rss_g[@]}") / 1024" | bc -l)" MB 15 "Go OCG claims ~50 MB"
echo
echo "Binary sizes (release, stripped):"
for name in ocg ocg-embedding ocg-agent ocg-gateway; do
    printf '  %-14s %6.1f MB\n' "$name" "$(echo "$(stat -c %s "$BIN/$name") / 1048576" | bc -l)"
done
