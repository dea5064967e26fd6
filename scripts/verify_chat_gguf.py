#!/usr/bin/env python3
"""Check that a llama-server build runs a chat model on this CPU and answers.

Starts `llama-server` on 127.0.0.1 with the GGUF, asks one question at
temperature 0 and checks that the answer contains the expected word. If the
server dies of SIGILL (an instruction path ggml chose that this machine
cannot run, such as its AMX kernels on some virtual machines), it tries again
with `--no-repack`, the fallback the agent takes by itself, and says so.
Exit status 0 when one of the two works, 1 otherwise. Standard library only.

Usage: verify_chat_gguf.py --server-bin BIN --gguf MODEL.gguf
           [--question Q] [--expect WORD] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(server_bin: str, gguf: str, extra: list[str], question: str, timeout: float):
    """(returncode or None while running, answer or None, log tail)."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [server_bin, "-m", gguf, "--host", "127.0.0.1", "--port", str(port),
             "-c", "2048", "-t", "2", "--no-webui", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        answer = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.1)
            if proc.poll() is None:
                body = json.dumps({
                    "messages": [{"role": "user", "content": question}],
                    "temperature": 0, "max_tokens": 48, "seed": 1,
                }).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                    headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=timeout) as r:
                        answer = json.load(r)["choices"][0]["message"]["content"] or ""
                except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
                    answer = None
        finally:
            code = proc.poll()
            if code is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.seek(0)
            tail = log.read().decode(errors="replace").splitlines()[-5:]
        return code, answer, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--question", default="What is the capital of France?")
    parser.add_argument("--expect", default="paris")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    for extra in ([], ["--no-repack"]):
        started = time.monotonic()
        code, answer, tail = ask(args.server_bin, args.gguf, extra, args.question, args.timeout)
        took = time.monotonic() - started
        how = " ".join(extra) or "default options"
        if code == -signal.SIGILL:
            print(f"llama-server died of SIGILL with {how}: an instruction this CPU cannot run",
                  file=sys.stderr)
            continue
        if answer is None:
            print(f"llama-server did not answer with {how} (exit {code}):", file=sys.stderr)
            for line in tail:
                print(f"  {line}", file=sys.stderr)
            return 1
        if args.expect.lower() not in answer.lower():
            print(f"unexpected answer with {how}: {answer!r} (wanted {args.expect!r})",
                  file=sys.stderr)
            return 1
        note = " (the agent takes this fallback by itself)" if extra else ""
        print(f"ok with {how}{note}: {answer.strip()[:80]!r} in {took:.1f} s", file=sys.stderr)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
