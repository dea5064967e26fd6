#!/usr/bin/env bash
# The web UI's real-browser test (headless Debian Chromium + playwright-core).
#
#   tests/ui/run.sh            against a running gateway: OCG_UI_URL, OCG_UI_TOKEN
#   tests/ui/run.sh --stack    starts a fake LLM and the real stack
#                              (target/debug/ocg start) in a temp dir, tests, stops
#   tests/ui/run.sh --mock     against tests/ui/mock-gateway.mjs (no Rust needed)
#
# Installs Debian's chromium when /usr/bin/chromium is missing, and the npm
# packages into ${OCG_CACHE_DIR:-$HOME/.cache/ocg}/ui-node_modules (reused
# while package-lock.json is unchanged); nothing is written in the source tree.
# Screenshots go to $OCG_UI_SHOTS (default: a new temp dir, printed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODE="${1:-}"
case "$MODE" in
  ""|--stack|--mock) ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--stack|--mock]" >&2; exit 2 ;;
esac

log() { echo "ui: $*" >&2; }

# --- Chromium ---------------------------------------------------------------
CHROMIUM="${OCG_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  log "installing Debian chromium"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export OCG_CHROMIUM="$CHROMIUM"

# --- npm packages, cached outside the source tree ---------------------------
command -v node >/dev/null || { log "node (20+) is required"; exit 2; }
CACHE="${OCG_CACHE_DIR:-${HOME:-/tmp}/.cache/ocg}/ui-node_modules"
if ! cmp -s "$HERE/package-lock.json" "$CACHE/package-lock.json" \
   || [ ! -f "$CACHE/node_modules/playwright-core/package.json" ] \
   || [ ! -f "$CACHE/node_modules/ws/package.json" ]; then
  log "installing npm packages into $CACHE"
  mkdir -p "$(dirname "$CACHE")"
  TMP_CACHE="$(mktemp -d "$CACHE.tmp.XXXXXX")"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$TMP_CACHE/"
  npm ci --prefix "$TMP_CACHE" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  rm -rf "$CACHE"
  mv "$TMP_CACHE" "$CACHE"
fi
export OCG_UI_NODE_MODULES="$CACHE/node_modules"

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Wait until a process prints a line matching $2 into file $1 (max 15 s).
wait_line() {
  local file="$1" pattern="$2" pid="$3"
  for _ in $(seq 150); do
    if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$file" >&2; return 1; fi
    sleep 0.1
  done
  cat "$file" >&2
  return 1
}

run_test() {
  node "$HERE/ui.test.mjs"
}

case "$MODE" in
  "")
    if [ -z "${OCG_UI_URL:-}" ] || [ -z "${OCG_UI_TOKEN:-}" ]; then
      log "set OCG_UI_URL and OCG_UI_TOKEN, or use --stack or --mock"
      exit 2
    fi
    run_test
    ;;

  --mock)
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/ocg-ui-mock-XXXXXX")"
    MOCK_PID=""
    cleanup() {
      if [ -n "$MOCK_PID" ]; then kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; fi
      rm -rf "$WORK"
    }
    trap cleanup EXIT
    TOKEN="mock-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    node "$HERE/mock-gateway.mjs" --port 0 --token "$TOKEN" >"$WORK/mock.log" 2>&1 &
    MOCK_PID=$!
    wait_line "$WORK/mock.log" "listening on" "$MOCK_PID"
    URL="$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$WORK/mock.log" | head -1)"
    log "mock gateway at $URL"
    OCG_UI_URL="$URL" OCG_UI_TOKEN="$TOKEN" OCG_UI_EXPECT_TOOLS=1 OCG_UI_EXPECT_MEMORY=1 OCG_UI_EXPECT_CRON=1 OCG_UI_EXPECT_PAIRING=1 OCG_UI_EXPECT_MCP=1 run_test
    ;;

  --stack)
    BIN_DIR="${OCG_BIN_DIR:-$ROOT/target/debug}"
    OCG="$BIN_DIR/ocg"
    [ -x "$OCG" ] || { log "$OCG is missing: run cargo build --workspace first"; exit 2; }
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/ocg-ui-stack-XXXXXX")"
    LLM_PID=""
    STARTED=""
    STATUS=1
    TOKEN="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    GATEWAY_PORT="$(free_port)"
    EMBEDDING_PORT="$(free_port)"
    LLM_PORT="$(free_port)"
    ocg_env() {
      env -u OCG_CONFIG -u OCG_EMBEDDING_URL -u OPENAI_API_KEY -u ANTHROPIC_API_KEY \
        -u API_KEY -u BASE_URL -u MODEL -u OCG_HOST \
        OCG_PID_DIR="$WORK/pids" OCG_LOG_DIR="$WORK/logs" OCG_DATA_DIR="$WORK/data" \
        OCG_AGENT_SOCK="$WORK/agent.sock" OCG_PORT="$GATEWAY_PORT" \
        OCG_EMBEDDING_PORT="$EMBEDDING_PORT" OCG_EMBEDDING_PORT_MAX="$((EMBEDDING_PORT + 20))" \
        OPENAI_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" OPENAI_MODEL="fake-model" \
        OCG_UI_TOKEN="$TOKEN" "$@"
    }
    cleanup() {
      if [ -n "$STARTED" ]; then (cd "$WORK" && ocg_env "$OCG" stop >"$WORK/stop.log" 2>&1) || cat "$WORK/stop.log" >&2; fi
      if [ -n "$LLM_PID" ]; then kill "$LLM_PID" 2>/dev/null || true; wait "$LLM_PID" 2>/dev/null || true; fi
      if [ "$STATUS" -eq 0 ]; then rm -rf "$WORK"; else log "kept the stack's files and logs in $WORK"; fi
    }
    trap cleanup EXIT
    node "$HERE/fake-llm.mjs" --port "$LLM_PORT" >"$WORK/fake-llm.log" 2>&1 &
    LLM_PID=$!
    wait_line "$WORK/fake-llm.log" "listening on" "$LLM_PID"
    log "fake LLM at http://127.0.0.1:$LLM_PORT/v1; starting the stack in $WORK"
    # A real MCP server for the status view, when the test command installed one.
    if [ -x "${OCG_TEST_MCP_NPM:-}" ]; then
      mkdir -p -m 700 "$WORK/data"
      printf '{"mcpServers": {"everything": {"command": "%s", "args": ["stdio"]}}}\n' \
        "$OCG_TEST_MCP_NPM" >"$WORK/data/mcp.json"
      export OCG_UI_EXPECT_MCP=1
    fi
    STARTED=1
    if ! (cd "$WORK" && ocg_env "$OCG" start) >"$WORK/start.log" 2>&1; then
      cat "$WORK/start.log" >&2
      for f in "$WORK"/logs/*; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }; done
      log "ocg start failed"
      exit 1
    fi
    URL="http://127.0.0.1:$GATEWAY_PORT"
    for _ in $(seq 100); do
      if node -e "fetch('$URL/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; then break; fi
      sleep 0.2
    done
    log "gateway at $URL"
    set +e
    OCG_UI_URL="$URL" OCG_UI_TOKEN="$TOKEN" OCG_UI_EXPECT_MEMORY=1 OCG_UI_EXPECT_CRON=1 run_test
    STATUS=$?
    set -e
    if [ "$STATUS" -ne 0 ]; then
      for f in "$WORK"/logs/*; do [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 30 "$f" >&2; }; done
    fi
    exit "$STATUS"
    ;;
esac
