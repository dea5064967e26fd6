#!/usr/bin/env python3
"""Check a converted all-MiniLM-L6-v2 GGUF against an independent reference.

The reference is a plain numpy BERT forward pass over the original
safetensors weights (embeddings + 6 encoder layers, erf-GELU, LayerNorm
eps from config.json, mean pooling over the attention mask, L2 normalise),
tokenised by the HF `tokenizers` WordPiece tokenizer from tokenizer.json.
The candidate is a real `llama-server --embeddings --pooling mean` serving
the GGUF on 127.0.0.1. Every sentence must reach cosine >= --min-cos, the
token ids llama.cpp produces must equal the reference ids, and a paraphrase
pair must score higher than an unrelated pair. Exit status 1 on any failure.

Usage: verify_minilm_gguf.py --server-bin BIN --gguf MODEL.gguf --model-dir DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast, dark-coloured fox leaps above a sleepy hound.",  # paraphrase of [0]
    "Quarterly revenue grew 12% thanks to strong cloud sales.",  # unrelated to [0]
    "Café owners in Zürich said NAÏVE pricing hurt them!",  # casing + accents exercise the normaliser
    "hello",
    "Rust's borrow checker enforces aliasing XOR mutability at compile time, "
    "which rules out data races in safe code without a garbage collector.",
]
PARAPHRASE = (0, 1)
UNRELATED = (0, 2)


# ---------------------------------------------------------------- reference

class ReferenceBert:
    def __init__(self, model_dir: Path):
        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.w = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()
                  if v.dtype.kind == "f"}
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships with fixed padding to 128; padding is done below with a mask instead.
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=256)  # sentence-transformers' max_seq_length

    def token_ids(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.cfg["layer_norm_eps"]) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    @staticmethod
    def _gelu(x):
        # HF "gelu" is the exact erf form (ggml uses the tanh approximation; the gap is ~1e-4).
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))

    def embed(self, texts: list[str]) -> np.ndarray:
        ids = [self.token_ids(t) for t in texts]
        B, T = len(ids), max(map(len, ids))
        H = self.cfg["num_attention_heads"]
        D = self.cfg["hidden_size"] // H
        tok = np.zeros((B, T), dtype=np.int64)
        mask = np.zeros((B, T))
        for b, seq in enumerate(ids):
            tok[b, : len(seq)] = seq
            mask[b, : len(seq)] = 1.0

        x = (self.w["embeddings.word_embeddings.weight"][tok]
             + self.w["embeddings.position_embeddings.weight"][:T][None]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        neg = (1.0 - mask)[:, None, None, :] * -1e9  # padded keys get no attention

        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            def heads(t):
                return t.reshape(B, T, H, D).transpose(0, 2, 1, 3)
            q = heads(self._lin(x, p + "attention.self.query"))
            k = heads(self._lin(x, p + "attention.self.key"))
            v = heads(self._lin(x, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + neg
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self._gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")

        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[np.float64])


# ---------------------------------------------------------------- llama-server

def free_port(lo=18000, hi=19000) -> int:
    for port in range(lo + os.getpid() % 200, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def http_json(url: str, body: dict | None = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, binary: str, gguf: str, port: int, log_path: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "wb")
        self.log_path = log_path
        # A non-causal model must see each input in one ubatch, and the server
        # forces n_batch = n_ubatch for embeddings anyway; 512 is also the
        # model's position limit. 4 slots x 512 lets one request carry a batch.
        cmd = [binary, "-m", gguf, "--embeddings", "--pooling", "mean",
               "--host", "127.0.0.1", "--port", str(port),
               "-c", "2048", "-np", "4", "-b", "512", "-ub", "512"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}")
            try:
                if http_json(self.url + "/health", timeout=2).get("status") == "ok":
                    return
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("llama-server did not become healthy in time")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self, n=30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description="verify an all-MiniLM-L6-v2 GGUF against a numpy reference")
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--model-dir", required=True, type=Path, help="folder with model.safetensors + tokenizer.json")
    ap.add_argument("--port", type=int, default=0, help="default: first free port in 18000-19000")
    ap.add_argument("--min-cos", type=float, default=0.999)
    args = ap.parse_args()

    ref = ReferenceBert(args.model_dir)
    t0 = time.monotonic()
    ref_emb = ref.embed(SENTENCES)
    t_ref = time.monotonic() - t0

    tmp = Path(tempfile.mkdtemp(prefix="verify-minilm-"))
    srv = Server(args.server_bin, args.gguf, args.port or free_port(), tmp / "llama-server.log")
    failures = []
    try:
        srv.wait_ready()
        t0 = time.monotonic()
        # One batched OpenAI-style request: exercises several sequences per batch.
        resp = http_json(srv.url + "/v1/embeddings", {"input": SENTENCES, "model": "minilm"})
        t_srv = time.monotonic() - t0
        got = np.array([d["embedding"] for d in sorted(resp["data"], key=lambda d: d["index"])])
        # The native endpoint as well, single input, to make sure both paths agree.
        native = http_json(srv.url + "/embedding", {"content": SENTENCES[0]})
        native0 = np.array(native[0]["embedding"][0] if isinstance(native[0]["embedding"][0], list)
                           else native[0]["embedding"])
        llama_ids = [http_json(srv.url + "/tokenize", {"content": s, "add_special": True})["tokens"]
                     for s in SENTENCES]
    except Exception as e:  # noqa: BLE001 - report and show the server log
        print(f"FAIL: {e}\n--- llama-server log tail ({srv.log_path}) ---\n{srv.tail()}", file=sys.stderr)
        return 1
    finally:
        srv.stop()

    if got.shape != ref_emb.shape:
        print(f"FAIL: shape {got.shape} from server, expected {ref_emb.shape} (server log: {srv.log_path})")
        return 1

    print(f"dimension: {got.shape[1]}   reference: {t_ref:.2f}s   server batch of {len(SENTENCES)}: {t_srv*1000:.0f} ms")
    print(f"{'#':>2}  {'tokens':>6}  {'ids match':>9}  {'cosine':>9}  {'|norm|':>7}  sentence")
    for i, s in enumerate(SENTENCES):
        c = cos(got[i], ref_emb[i])
        ids_ok = llama_ids[i] == ref.token_ids(s)
        ok = c >= args.min_cos and ids_ok
        if not ok:
            failures.append(i)
        print(f"{i:>2}  {len(llama_ids[i]):>6}  {str(ids_ok):>9}  {c:9.6f}  {np.linalg.norm(got[i]):7.4f}  "
              f"{'' if ok else 'FAIL '}{s[:60]}")
        if not ids_ok:
            print(f"      llama.cpp ids: {llama_ids[i]}\n      reference ids: {ref.token_ids(s)}")

    c_native = cos(native0, got[0])
    print(f"/embedding vs /v1/embeddings (sentence 0): cosine {c_native:.6f}")
    if c_native < 0.99999:
        failures.append("native-endpoint")

    para = cos(got[PARAPHRASE[0]], got[PARAPHRASE[1]])
    unrel = cos(got[UNRELATED[0]], got[UNRELATED[1]])
    rpara = cos(ref_emb[PARAPHRASE[0]], ref_emb[PARAPHRASE[1]])
    runrel = cos(ref_emb[UNRELATED[0]], ref_emb[UNRELATED[1]])
    print(f"paraphrase sim {para:.4f} (ref {rpara:.4f})   unrelated sim {unrel:.4f} (ref {runrel:.4f})")
    if not para > unrel:
        failures.append("semantic")

    if failures:
        print(f"FAILED: {failures} (server log: {srv.log_path})")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"OK: all {len(SENTENCES)} sentences >= {args.min_cos} cosine, token ids identical, paraphrase > unrelated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
