#!/usr/bin/env python3
"""What the portable llama-server build keeps of the speed of each CPU variant.

ggml's CPU backend is built in several variants (libggml-cpu-<name>.so beside
llama-server) and the best one this CPU runs is loaded at start. This bench
runs llama-server once per variant (a temporary directory holding the binary,
its libraries and that one variant) and once with all of them (what OCG
runs: the dispatch picks), and prints a table:

  chat model:      generation and prompt tokens/s (llama-server's timings)
  embedding model: p50 / p99 ms of one-sentence POST /v1/embeddings

Extra variant libraries (say a native build's, or a variant the setup does
not build) can be added with --extra-variant PATH. A variant that dies of
SIGILL is retried with --no-repack, as the agent does, and marked so.

Usage: bench/llama-cpu.py --dist DIR --chat-model GGUF --embedding-model GGUF
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PROMPT = "Write three sentences about the sea."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.load(r)


class Server:
    def __init__(self, binary: Path, args: list[str]):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "-t", "2",
             "--no-webui", *args], stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        return False

    def stop(self) -> int | None:
        code = self.proc.poll()
        if code is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return code


def measure(binary: Path, chat: Path, embedding: Path, runs: int, embeds: int):
    """(gen tok/s, prompt tok/s, embed p50 ms, embed p99 ms, note)."""
    note = ""
    for extra in ([], ["--no-repack"]):
        chat_server = Server(binary, ["-m", str(chat), "-c", "2048", *extra])
        try:
            if not chat_server.ready():
                code = chat_server.stop()
                if code == -signal.SIGILL and not extra:
                    note = "SIGILL; --no-repack"
                    continue
                return None, None, None, None, f"did not start (exit {code})"
            gen, prompt = [], []
            for i in range(runs):
                answer = post(chat_server.port, "/v1/chat/completions", {
                    "messages": [{"role": "user", "content": f"{PROMPT} ({i})"}],
                    "temperature": 0, "max_tokens": 64, "seed": 1,
                    "cache_prompt": False})
                gen.append(answer["timings"]["predicted_per_second"])
                prompt.append(answer["timings"]["prompt_per_second"])
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            code = chat_server.stop()
            if code == -signal.SIGILL and not extra:
                note = "SIGILL; --no-repack"
                continue
            return None, None, None, None, f"failed: {error} (exit {code})"
        finally:
            chat_server.stop()
        break
    else:
        return None, None, None, None, "SIGILL even with --no-repack"

    embed_server = Server(binary, ["-m", str(embedding), "--embeddings", "--pooling", "mean",
                                   "-c", "512", "-b", "512", "-ub", "512", *extra])
    try:
        if not embed_server.ready():
            return statistics.median(gen), statistics.median(prompt), None, None, "embedding did not start"
        for _ in range(5):
            post(embed_server.port, "/v1/embeddings", {"input": ["warm up"]})
        times = []
        for i in range(embeds):
            t0 = time.perf_counter()
            post(embed_server.port, "/v1/embeddings",
                 {"input": [f"The cat sat on the mat number {i}."]})
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    finally:
        embed_server.stop()
    return statistics.median(gen), statistics.median(prompt), p50, p99, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", required=True, type=Path,
                        help="directory of llama-server, its libraries and libggml-cpu-*.so")
    parser.add_argument("--chat-model", required=True, type=Path)
    parser.add_argument("--embedding-model", required=True, type=Path)
    parser.add_argument("--extra-variant", action="append", default=[], type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--embeds", type=int, default=200)
    args = parser.parse_args()

    dist = args.dist.resolve()
    variants = sorted(dist.glob("libggml-cpu-*.so")) + [p.resolve() for p in args.extra_variant]
    base = [p for p in dist.iterdir() if p.name != "llama-server"
            and not p.name.startswith("libggml-cpu-") and not p.name.startswith(".")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in [None, *variants]:
            name = variant.name[len("libggml-cpu-"):-3] if variant else "dispatch"
            where = Path(tmp) / name
            where.mkdir()
            shutil.copy2(dist / "llama-server", where)
            for lib in base:
                target = where / lib.name
                if lib.is_symlink():
                    os.symlink(os.readlink(lib), target)
                else:
                    shutil.copy2(lib, target)
            for lib in ([variant] if variant else sorted(dist.glob("libggml-cpu-*.so"))):
                shutil.copy2(lib, where / lib.name)
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append((name, *measure(where / "llama-server", args.chat_model,
                                        args.embedding_model, args.runs, args.embeds)))

    best = max((r[1] for r in rows if r[1]), default=None)
    print(f"chat: {args.chat_model.name}; embedding: {args.embedding_model.name}; "
          f"{os.cpu_count()} CPUs; medians of {args.runs} answers of 64 tokens; "
          f"{args.embeds} embeddings")
    print()
    print("| CPU variant | gen tok/s | gen vs fastest | prompt tok/s | embed p50 ms | embed p99 ms | note |")
    print("|---|---|---|---|---|---|---|")
    fmt = lambda v, f: "-" if v is None else f.format(v)
    for name, gen, prompt, p50, p99, note in rows:
        ratio = f"{gen / best:.2f}x" if gen and best else "-"
        label = "**dispatch (what OCG runs)**" if name == "dispatch" else name
        print(f"| {label} | {fmt(gen, '{:.1f}')} | {ratio} | {fmt(prompt, '{:.0f}')} | "
              f"{fmt(p50, '{:.2f}')} | {fmt(p99, '{:.2f}')} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
