#!/usr/bin/env python3
"""Latency of `xcomp serve` on the shipped models, through real HTTP requests.

Starts the server on a free port, sends arXiv test abstracts and questions, prints median
milliseconds per kind of request (client-side wall time, HTTP included) and the sizes of what
is stored. Standard library only; the server is the C++ binary.

    bench/serve.py [--xcomp build/release/xcomp] [--models models] [--data ../shared/data]
                   [--compressor kv-qa-n4] [--texts 20] [--dtype auto] [--clients 8] [--batch-rows 16]
                   [--temperature 0] [--num-beams 1]
"""
import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import threading
import time
import urllib.request


def post(url, body):
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        out = json.loads(r.read())
    return out, (time.perf_counter() - t0) * 1000


def stream(url, body):
    """POSTs with "stream": true; returns (ms to the first text event, ms to the end, final data)."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(dict(body, stream=True)).encode(),
                                 headers={"Content-Type": "application/json"})
    first, event, final = None, "message", None
    with urllib.request.urlopen(req) as r:
        for raw in r:  # server-sent events, a line at a time as they arrive
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "message" and first is None:
                    first = (time.perf_counter() - t0) * 1000
                if event == "done":
                    final = json.loads(line[6:])
                if event == "error":
                    raise SystemExit("stream failed: " + line[6:])
            elif not line:
                event = "message"
    total = (time.perf_counter() - t0) * 1000
    return (first if first is not None else total), total, final


def get(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        data = r.read()
    return data, (time.perf_counter() - t0) * 1000


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xcomp", default=os.path.join(root, "build/release/xcomp"))
    ap.add_argument("--models", default=os.path.join(root, "models"))
    ap.add_argument("--data", default=os.environ.get("XCOMP_DATA_DIR", os.path.join(root, "../shared/data")))
    ap.add_argument("--compressor", default="kv-qa-n4")
    ap.add_argument("--texts", type=int, default=20)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients in the load test")
    ap.add_argument("--batch-rows", type=int, default=16, help="the server's --batch-rows")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="the load test's asks sample at this temperature (a seed each); 0: greedy")
    ap.add_argument("--num-beams", type=int, default=1, help="the load test's asks search with this many beams")
    a = ap.parse_args()

    texts = []
    with gzip.open(os.path.join(a.data, "arxiv/test.jsonl.gz"), "rt") as f:
        for line in f:
            j = json.loads(line)
            texts.append(j.get("abstract") or j.get("text"))
            if len(texts) == a.texts:
                break
    question = "What do we propose?"

    server = subprocess.Popen([a.xcomp, "serve", "--models", a.models, "--compressors", a.compressor,
                               "--port", "0", "--dtype", a.dtype, "--batch-rows", str(a.batch_rows)],
                              stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in server.stderr:
            m = re.match(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("serve did not start")
        url = f"http://127.0.0.1:{port}"
        t = {k: [] for k in ["compress", "compress (cached)", "ask by id, 1 question", "ask by id, 4 questions",
                             "regenerate by id", "ask, full context", "download prompt",
                             "first text, regenerate by id (streamed)", "first text, ask by id (streamed)",
                             "first text, ask, full context (streamed)"]}
        sizes, text_tokens = [], []
        gen = {"ask by id, 1 question": [], "ask, full context": [], "regenerate by id": []}
        for text in texts:
            c, ms = post(url + "/v1/compress", {"compressor": a.compressor, "text": text})
            t["compress"].append(ms)
            sizes.append(c["bytes"])
            text_tokens.append(c["text_tokens"])
            t["compress (cached)"].append(post(url + "/v1/compress", {"compressor": a.compressor, "text": text})[1])
            r, ms = post(url + "/v1/ask", {"id": c["id"], "question": question})
            t["ask by id, 1 question"].append(ms)
            gen["ask by id, 1 question"].append(r["tokens"])
            t["ask by id, 4 questions"].append(post(url + "/v1/ask", {"id": c["id"], "questions": [question] * 4})[1])
            r, ms = post(url + "/v1/regenerate", {"id": c["id"]})
            t["regenerate by id"].append(ms)
            gen["regenerate by id"].append(r["tokens"])
            r, ms = post(url + "/v1/ask", {"text": text, "question": question})
            t["ask, full context"].append(ms)
            gen["ask, full context"].append(r["tokens"])
            t["download prompt"].append(get(url + "/v1/prompts/" + c["id"])[1])
            # Time to the first piece of text when streaming: the prefill of the compressed
            # prompt (N positions) against that of the whole text.
            t["first text, regenerate by id (streamed)"].append(stream(url + "/v1/regenerate", {"id": c["id"]})[0])
            t["first text, ask by id (streamed)"].append(
                stream(url + "/v1/ask", {"id": c["id"], "question": question})[0])
            t["first text, ask, full context (streamed)"].append(
                stream(url + "/v1/ask", {"text": text, "question": question})[0])
        # Load: `clients` threads, each asking about every stored text in turn, all at once.
        ids = [post(url + "/v1/compress", {"compressor": a.compressor, "text": t})[0]["id"] for t in texts]
        errors = []

        def client(k):
            try:
                for i in range(len(ids)):
                    body = {"id": ids[(i + k) % len(ids)], "question": question}
                    if a.temperature > 0:
                        body.update(temperature=a.temperature, seed=k * len(ids) + i)
                    if a.num_beams > 1:
                        body.update(num_beams=a.num_beams)
                    post(url + "/v1/ask", body)
            except Exception as e:  # reported below
                errors.append(e)

        def counter(text, name):
            m = re.search(r"^" + name + r" (\S+)$", text, re.M)
            return float(m.group(1)) if m else float("nan")  # older servers lack some

        before = get(url + "/metrics")[0].decode()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        load_s = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"load test failed: {errors[0]}")
        metrics = get(url + "/metrics")[0].decode()
        steps = counter(metrics, "xcomp_decode_steps_total") - counter(before, "xcomp_decode_steps_total")
        step_rows = (counter(metrics, "xcomp_decode_step_rows_total") -
                     counter(before, "xcomp_decode_step_rows_total"))
        info = json.loads(get(url + "/v1/info")[0])
    finally:
        server.terminate()
        server.wait()
    print(f"xcomp serve, {a.compressor}, dtype {info['dtype']}, {len(texts)} arXiv test abstracts "
          f"(median {statistics.median(text_tokens):.0f} tokens), base fingerprint {info['fingerprint']}")
    print("| request | median ms | min ms | generated tokens, mean |")
    print("|---|---|---|---|")
    for k, v in t.items():
        g = f"{statistics.mean(gen[k]):.1f}" if k in gen else ""
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} | {g} |")
    print(f"compressed prompt: {statistics.median(sizes):.0f} bytes of tensors per text")
    n = a.clients * len(texts)
    sampling = f"sampled at temperature {a.temperature}" if a.temperature > 0 else "greedy"
    if a.num_beams > 1:
        sampling = f"beam search, {a.num_beams} beams"
    print(f"load: {a.clients} concurrent clients, {n} asks by id ({sampling}) in {load_s:.2f} s: "
          f"{n / load_s:.1f} requests/s (--batch-rows {a.batch_rows}; a decode step computed "
          f"{step_rows / steps if steps else float('nan'):.2f} rows on average)")
    comp = next(c for c in info["compressors"] if c["name"] == a.compressor)
    if comp["method"] == "kv":  # the prompt is K/V of N positions: the full text's would be this per token
        per_token = statistics.median(sizes) / comp["memory_tokens"]
        print(f"the full text's K/V at the same dtype: {per_token * statistics.median(text_tokens):.0f} bytes "
              f"({statistics.median(text_tokens) / comp['memory_tokens']:.0f}x more)")

if __name__ == "__main__":
    main()
