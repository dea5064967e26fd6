#!/usr/bin/env python3
"""Evaluate small GGUF chat models served by llama-server on a checkable question set.

Python 3 standard library only. For each --model it starts llama-server on a free
127.0.0.1 port, measures load time (spawn until /health answers 200), asks every
question of questions.json once per --sampling setting through POST
/v1/chat/completions (non-streaming, fixed seed), scores the replies, reads the
server's RSS from /proc/PID/status, and always stops the server (try/finally).

Example:
  python3 eval.py --server-bin ~/.cache/ocg/llama.cpp-0.3.36/build-dispatch/bin/llama-server \
      --model smollm2=/path/SmolLM2-135M-Instruct.Q4_1.gguf \
      --model gemma3=/path/gemma-3-270m-q4_k_m.gguf \
      --sampling 'greedy={"temperature":0}' \
      --sampling 'low={"temperature":0.2,"top_p":0.9,"top_k":40,"min_p":0.05,"repeat_penalty":1.1}' \
      --sampling 'default={}' --out results.json

A server that dies with SIGILL (ggml's AMX/repacked Q4 path on some Xeons) is
restarted once with --no-repack added, and the result row says so.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- checkers

def _norm_exact(s):
    s = s.strip()
    # drop markdown emphasis / code fences / quotes around a short answer
    s = re.sub(r"^```\w*\s*|\s*```$", "", s)
    s = s.strip().strip("*_`\"' ").strip()
    s = re.sub(r"[.!]+$", "", s).strip()
    return s


def _words(s):
    return re.findall(r"[\w'’]+", s.lower())


def _find_json_object(s):
    s = re.sub(r"```(?:json)?", "", s)
    start = s.find("{")
    while start != -1:
        depth = 0
        for i in range(start, len(s)):
            if s[i] == "{":
                depth += 1
            elif s[i] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(s[start:i + 1])
                    except ValueError:
                        break
        start = s.find("{", start + 1)
    return None


def check(spec, content, tool_calls):
    """Return (passed: bool, note: str)."""
    text = content or ""
    low = text.lower()
    cs = spec.get("case_sensitive", False)
    if "all_of" in spec:
        notes = []
        for sub in spec["all_of"]:
            ok, note = check(sub, content, tool_calls)
            notes.append(note)
            if not ok:
                return False, "; ".join(n for n in notes if n)
        return True, "; ".join(n for n in notes if n)
    if "any_of" in spec:
        for sub in spec["any_of"]:
            ok, note = check(sub, content, tool_calls)
            if ok:
                return True, note
        return False, ""
    if "tool" in spec:
        name, arg = spec["tool"], spec.get("arg_contains", "")
        for tc in tool_calls or []:
            fn = tc.get("function") or {}
            args = fn.get("arguments")
            args = args if isinstance(args, str) else json.dumps(args)
            if fn.get("name") == name and arg.lower() in (args or "").lower():
                return True, "mode=tool_call"
        if tool_calls:
            return False, "mode=wrong_tool_call"
        if name.lower() in low and arg.lower() in low:
            return True, "mode=text"
        return False, "mode=none"
    if "any" in spec:
        return any((w if cs else w.lower()) in (text if cs else low) for w in spec["any"]), ""
    if "all" in spec:
        return all((w if cs else w.lower()) in (text if cs else low) for w in spec["all"]), ""
    if "none" in spec:
        return not any(w.lower() in low for w in spec["none"]), ""
    if "regex" in spec:
        flags = re.M | (0 if cs else re.I)
        return re.search(spec["regex"], text.strip(), flags) is not None, ""
    if "exact" in spec:
        got = _norm_exact(text)
        want = spec["exact"]
        return (got == want) if cs else (got.lower() == want.lower()), ""
    if "count_any" in spec:
        ws = set(_words(text))
        hits = [w for w in spec["count_any"] if w.lower() in ws]
        return len(hits) >= spec.get("min", 1), "hits=%d" % len(hits)
    if "word_count" in spec:
        lo, hi = spec["word_count"]
        n = len(re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text))
        return lo <= n <= hi, "words=%d" % n
    if "json" in spec:
        # the whole reply (markdown code fence allowed) must be exactly this JSON value
        body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text)
        try:
            obj = json.loads(body)
        except ValueError:
            return False, "not only json" if isinstance(_find_json_object(text), dict) else "no json"
        return obj == spec["json"], ""
    if "lang" in spec:
        lg = spec["lang"]
        ws = _words(text)
        want = {w.lower() for w in lg["words"]}
        eng = {w.lower() for w in lg.get("english", [])}
        hits = sum(1 for w in ws if w in want)
        ehits = sum(1 for w in ws if w in eng)
        return hits >= lg.get("min", 2) and hits > ehits, "lang=%d/en=%d" % (hits, ehits)
    raise ValueError("unknown checker spec: %r" % (spec,))


# ----------------------------------------------------------------------------- server

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, body=None, timeout=300):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        raw = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw}


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return out


class ServerDied(Exception):
    def __init__(self, code):
        super().__init__("llama-server exited with code %s" % code)
        self.code = code


class Server:
    def __init__(self, binary, model, args, log_path):
        self.binary, self.model, self.args, self.log_path = binary, model, args, log_path
        self.proc = None
        self.port = None

    def start(self, load_timeout=300):
        self.port = free_port()
        cmd = [self.binary, "-m", self.model, "--host", "127.0.0.1", "--port", str(self.port)] + self.args
        self.cmd = cmd
        self.log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while True:
            if self.proc.poll() is not None:
                raise ServerDied(self.proc.returncode)
            try:
                st, _ = http_json(self.url("/health"), timeout=2)
                if st == 200:
                    return time.monotonic() - t0
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() - t0 > load_timeout:
                raise TimeoutError("llama-server did not become healthy in %ds" % load_timeout)
            time.sleep(0.05)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise ServerDied(self.proc.returncode)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


# ----------------------------------------------------------------------------- run

SAMPLING_KEYS = {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed",
                 "presence_penalty", "frequency_penalty", "typical_p", "repeat_last_n"}


def ask(server, q, sampling, seed, max_tokens, timeout):
    body = {"messages": q["messages"], "max_tokens": max_tokens, "seed": seed, "stream": False}
    body.update(sampling)
    if q.get("tools"):
        body["tools"] = q["tools"]
    t0 = time.monotonic()
    err = None
    try:
        status, resp = http_json(server.url("/v1/chat/completions"), body, timeout=timeout)
    except (urllib.error.URLError, OSError) as e:
        try:  # a crash mid-request shows up as a reset connection: give the exit a moment to land
            server.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        server.check_alive()  # raises ServerDied if it crashed
        status, resp, err = 0, None, repr(e)
    wall = time.monotonic() - t0
    rec = {"id": q["id"], "category": q["category"], "wall_s": round(wall, 3)}
    if status != 200 or not isinstance(resp, dict) or "choices" not in resp:
        server.check_alive()
        rec.update(passed=False, error=err or {"status": status, "body": resp}, content=None, tool_calls=None)
        return rec
    choice = resp["choices"][0]
    msg = choice.get("message") or {}
    content = msg.get("content")
    tool_calls = msg.get("tool_calls")
    ok, note = check(q["check"], content, tool_calls)
    rec.update(passed=ok, note=note, content=content, tool_calls=tool_calls,
               finish_reason=choice.get("finish_reason"), timings=resp.get("timings"),
               usage=resp.get("usage"))
    return rec


def run_model(name, path, args, samplings, questions, log_dir):
    """Start a server for one model, run every sampling setting, return result rows."""
    extra = list(args.extra_args)
    retried = False
    while True:
        log_path = os.path.join(log_dir, "%s%s.log" % (name, "-norepack" if retried else ""))
        srv = Server(args.server_bin, path, args.base_args + extra, log_path)
        try:
            load_s = srv.start()
            rows = []
            for sname, sparams in samplings:
                answers = []
                for q in questions:
                    rec = ask(srv, q, sparams, args.seed, args.max_tokens, args.request_timeout)
                    answers.append(rec)
                    if args.verbose:
                        print("  [%s/%s] %-22s %s %r" % (name, sname, q["id"], "PASS" if rec["passed"] else "fail",
                                                         (rec.get("content") or "")[:80]), file=sys.stderr)
                rows.append({"model": name, "model_path": path, "sampling": sname, "params": sparams,
                             "answers": answers})
            mem = proc_status(srv.proc.pid)
            for r in rows:
                r.update(load_s=round(load_s, 2), rss_mb=round(mem.get("VmRSS", 0), 1),
                         hwm_mb=round(mem.get("VmHWM", 0), 1), server_cmd=srv.cmd,
                         no_repack_added_after_sigill=retried)
            return rows
        except ServerDied as e:
            if e.code == -signal.SIGILL and not retried and "--no-repack" not in extra and args.retry_sigill:
                print("!! %s: llama-server died with SIGILL; retrying with --no-repack (log: %s)"
                      % (name, log_path), file=sys.stderr)
                extra.append("--no-repack")
                retried = True
                continue
            raise RuntimeError("%s: %s (log: %s)" % (name, e, log_path))
        finally:
            srv.stop()


def summarize(row, categories):
    ans = row["answers"]
    pn = sum((a.get("timings") or {}).get("predicted_n", 0) for a in ans)
    pms = sum((a.get("timings") or {}).get("predicted_ms", 0) for a in ans)
    qn = sum((a.get("timings") or {}).get("prompt_n", 0) for a in ans)
    qms = sum((a.get("timings") or {}).get("prompt_ms", 0) for a in ans)
    s = {"score": sum(a["passed"] for a in ans), "n": len(ans),
         "gen_tps": pn / pms * 1000 if pms else 0.0, "prompt_tps": qn / qms * 1000 if qms else 0.0,
         "gen_tokens": pn, "cat": {}}
    for c in categories:
        sub = [a for a in ans if a["category"] == c]
        s["cat"][c] = (sum(a["passed"] for a in sub), len(sub))
    return s


def markdown(rows, categories):
    head = ["model", "sampling", "score"] + categories + ["gen tok/s", "prompt tok/s", "RSS MB", "load s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["summary"]
        cells = [r["model"] + (" (no-repack)" if r.get("no_repack_added_after_sigill") else ""), r["sampling"],
                 "%d/%d" % (s["score"], s["n"])]
        cells += ["%d/%d" % s["cat"][c] for c in categories]
        cells += ["%.1f" % s["gen_tps"], "%.1f" % s["prompt_tps"], "%.0f" % r["rss_mb"], "%.2f" % r["load_s"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rescore(args):
    questions = {q["id"]: q for q in json.load(open(args.questions))["questions"]}
    prev = json.load(open(args.rescore))
    categories = []
    for q in questions.values():
        if q["category"] not in categories:
            categories.append(q["category"])
    for r in prev["results"]:
        for a in r["answers"]:
            q = questions.get(a["id"])
            if q is None or a.get("error"):
                continue
            a["passed"], a["note"] = check(q["check"], a.get("content"), a.get("tool_calls"))
        r["summary"] = summarize(r, categories)
    prev["table"] = markdown(prev["results"], categories)
    print(prev["table"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(prev, f, indent=1, ensure_ascii=False)
    return 0


def parse_kv(s, what):
    if "=" not in s:
        raise SystemExit("%s must be NAME=VALUE, got %r" % (what, s))
    k, v = s.split("=", 1)
    return k.strip(), v.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server-bin", help="path to llama-server (required unless --rescore)")
    ap.add_argument("--model", action="append", help="NAME=PATH.gguf (repeatable; required unless --rescore)")
    ap.add_argument("--sampling", action="append", help="NAME=JSON of request sampling fields (repeatable); "
                    "default: greedy={\"temperature\":0}")
    ap.add_argument("--questions", default=os.path.join(HERE, "questions.json"))
    ap.add_argument("--extra-args", default="", help="extra llama-server args, e.g. \"--no-repack\"")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--request-timeout", type=float, default=300)
    ap.add_argument("--no-retry-sigill", dest="retry_sigill", action="store_false",
                    help="do not restart with --no-repack when the server dies with SIGILL")
    ap.add_argument("--log-dir", default=None, help="where server logs go (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write per-question answers and summaries as JSON here")
    ap.add_argument("--rescore", metavar="RESULTS.json", default=None,
                    help="re-score the answers saved in a previous --out file with the current checkers "
                         "(no server is started) and print the table")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.rescore:
        return rescore(args)
    if not args.server_bin or not args.model:
        ap.error("--server-bin and at least one --model are required")

    args.server_bin = os.path.expanduser(args.server_bin)
    args.extra_args = args.extra_args.split()
    args.base_args = ["-c", str(args.ctx), "-t", str(args.threads), "--no-webui", "--jinja"]
    models = [parse_kv(m, "--model") for m in args.model]
    samplings = []
    for s in args.sampling or ['greedy={"temperature":0}']:
        k, v = parse_kv(s, "--sampling")
        params = json.loads(v)
        bad = set(params) - SAMPLING_KEYS
        if bad:
            raise SystemExit("unknown sampling fields %s in %r" % (sorted(bad), s))
        samplings.append((k, params))
    questions = json.load(open(args.questions))["questions"]
    categories = []
    for q in questions:
        if q["category"] not in categories:
            categories.append(q["category"])
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="ocg-model-eval-")
    os.makedirs(log_dir, exist_ok=True)

    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "server_bin": args.server_bin,
            "base_args": args.base_args, "extra_args": args.extra_args, "seed": args.seed,
            "max_tokens": args.max_tokens, "questions": args.questions, "n_questions": len(questions),
            "loadavg_start": os.getloadavg(), "cpus": os.cpu_count(), "log_dir": log_dir}
    rows, errors = [], []
    t_all = time.monotonic()
    try:
        for name, path in models:
            t0 = time.monotonic()
            print("== %s (%s)" % (name, path), file=sys.stderr)
            try:
                got = run_model(name, os.path.expanduser(path), args, samplings, questions, log_dir)
            except RuntimeError as e:
                print("!! %s" % e, file=sys.stderr)
                errors.append(str(e))
                continue
            for r in got:
                r["summary"] = summarize(r, categories)
                print("   %-10s %d/%d" % (r["sampling"], r["summary"]["score"], r["summary"]["n"]), file=sys.stderr)
            rows.extend(got)
            print("   done in %.0fs" % (time.monotonic() - t0), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
    finally:
        meta["elapsed_s"] = round(time.monotonic() - t_all, 1)
        meta["loadavg_end"] = os.getloadavg()
        table = markdown(rows, categories) if rows else "(no results)"
        print(table)
        if errors:
            print("\nerrors:\n" + "\n".join("- " + e for e in errors))
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "table": table, "errors": errors, "results": rows}, f,
                          indent=1, ensure_ascii=False)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
