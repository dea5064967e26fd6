#!/usr/bin/env bash
# Time from `ocg start` to the first answered question on the local default
# model (no API key), as a new user meets it:
#
#   ./bin/ocg start; echo "What is the capital of France?" | ./bin/ocg chat
#
# Uses ./bin (run scripts/run.sh first) and the cached models; each run is a
# fresh install (data, pids, logs, ports) in a temp dir. Prints the median of
# RUNS runs of: `ocg start` until it returns (it waits for the local model),
# the first answer after that, and both together, beside OpenClaw's published
# 5.6 s from start to /healthz (a health answer only, no model).
#
#   RUNS=5 bench/first-answer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
BIN=$PWD/bin
[ -x "$BIN/ocg" ] || { echo "run scripts/run.sh first (no ./bin/ocg)" >&2; exit 2; }
eval "$(scripts/setup.sh 2>/dev/null)"
export LLAMA_SERVER_BIN EMBEDDING_MODEL_PATH
export OCG_CHAT_MODEL_PATH="$CHAT_MODEL_PATH"

WORK=$(mktemp -d /tmp/ocg-first-answer.XXXXXX)
cleanup() { "$BIN/ocg" stop --force >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
unset OCG_CONFIG OPENAI_API_KEY ANTHROPIC_API_KEY OPENAI_BASE_URL

starts=() answers=() totals=()
for run in $(seq "$RUNS"); do
    dir="$WORK/$run"
    mkdir -p "$dir"
    export OCG_PID_DIR=$dir/pids OCG_LOG_DIR=$dir/logs OCG_DATA_DIR=$dir/data
    export OCG_AGENT_SOCK=$dir/agent.sock OCG_PORT=$(free_port) OCG_EMBEDDING_PORT=$(free_port)
    cd "$dir"
    t0=$(now)
    "$BIN/ocg" start >/dev/null
    t1=$(now)
    reply=$(echo "What is the capital of France?" | "$BIN/ocg" chat)
    t2=$(now)
    cd - >/dev/null
    case "${reply,,}" in
        *paris*) ;;
        *) echo "run $run: the answer does not name Paris: $reply" >&2 ;;
    esac
    starts+=("$(echo "$t1 - $t0" | bc)")
    answers+=("$(echo "$t2 - $t1" | bc)")
    totals+=("$(echo "$t2 - $t0" | bc)")
    "$BIN/ocg" stop >/dev/null
done

start=$(printf '%s\n' "${starts[@]}" | median)
answer=$(printf '%s\n' "${answers[@]}" | median)
total=$(printf '%s\n' "${totals[@]}" | median)
echo "model: $(basename "$OCG_CHAT_MODEL_PATH"); $(nproc) CPUs; median of $RUNS fresh installs"
echo
echo "| step | s | vs OpenClaw start to /healthz (5.6 s) |"
echo "|---|---|---|"
printf '| `ocg start` returns (three services up, local model loaded) | %.2f | %.2fx |\n' "$start" "$(echo "$start / 5.6" | bc -l)"
printf '| first answer after it ("What is the capital of France?") | %.2f | |\n' "$answer"
printf '| **start to first answer** | **%.2f** | %.2fx |\n' "$total" "$(echo "$total / 5.6" | bc -l)"
