#!/usr/bin/env python3
"""serve_load.py — a load generator for any OpenAI-compatible server (qilin serve, vLLM, SGLang, ...).

Sends streamed /v1/completions (or /v1/chat/completions) requests at a Poisson request rate and/or
a fixed maximum concurrency, with prompt and output lengths drawn from a distribution, and reports
request throughput, output tokens/s, and TTFT, TPOT, ITL and end-to-end latency (mean, median, p90,
p99). --result-file writes the numbers as JSON under the field names `vllm bench serve` uses
(request_throughput, output_throughput, mean_ttft_ms, median_ttft_ms, p99_ttft_ms, mean_tpot_ms,
mean_itl_ms, completed, total_input_tokens, ...), so runs against qilin and against vLLM compare
key by key. Standard library only.

Usage:
  serve_load.py --base-url http://127.0.0.1:8000 --model NAME
                [--endpoint /v1/completions | /v1/chat/completions]
                [--num-prompts 100] [--duration SECONDS]
                [--request-rate inf | R] [--max-concurrency N]
                [--input-len 128] [--output-len 128] [--dist fixed|uniform|sharegpt] [--range-ratio 0.5]
                [--max-len TOKENS] [--seed 0] [--no-ignore-eos] [--api-key KEY]
                [--percentiles 50,90,99] [--result-file out.json] [--quiet]

Definitions (the same as vLLM's benchmark, so the numbers mean the same):
  TTFT   time from sending the request to the first streamed chunk with text
  ITL    time between successive chunks with text (one list per request, all pooled)
  TPOT   per request: (end-to-end latency - TTFT) / (output tokens - 1); requests of 1 token left out
  E2EL   end-to-end latency of a request
  output tokens: the server's usage.completion_tokens (stream_options.include_usage) when it sends
  one, else the number of chunks with text; input tokens likewise from usage.prompt_tokens, else
  the number of prompt ids sent (completions) or whitespace words (chat).
  throughputs are over the benchmark's duration: first request sent to last response ended.

Prompts: on /v1/completions a prompt is a list of token ids (exact input lengths with no
tokenizer; ids drawn uniformly from --id-range, 10..500 by default, which every vocabulary holds);
on chat it is text of that many short words. Lengths:
  fixed     every request --input-len in, --output-len out
  uniform   each uniform in [len·(1 - r), len·(1 + r)], r = --range-ratio
  sharegpt  a heavy-tailed synthetic mix in the shape of ShareGPT conversations (no download):
            log-normal with the given lengths as medians, sigma 1.0 for prompts and 0.8 for
            outputs, so a few requests are ~5-10x the median and many are short
--max-len clips prompt + output to the server's context (the prompt keeps at least 1 token).
Requests are generated from --seed alone: the same seed gives the same lengths, ids and arrival
gaps whatever the server does.

Arrival: with --request-rate R, gaps between sends are exponential with mean 1/R (a Poisson
process); inf sends as fast as --max-concurrency allows (all at once without it). --duration
stops sending after that many seconds (requests in flight still finish); --num-prompts caps the
count (default 100, or unlimited with --duration).

Exit status: 0 when every request completed, 1 when some failed (the JSON says which and why),
2 on bad arguments or when no request completed.
"""
import argparse
import json
import math
import random
import statistics
import sys
import threading
import time
import urllib.parse
from datetime import datetime
import http.client

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "far", "away", "to", "see", "sun"]


# ---- requests ------------------------------------------------------------------------------------

def draw_len(rng, dist, median, ratio, sigma):
    if dist == "fixed":
        return median
    if dist == "uniform":
        lo, hi = max(1, int(median * (1 - ratio))), max(1, int(median * (1 + ratio)))
        return rng.randint(lo, hi)
    return max(1, int(round(rng.lognormvariate(math.log(median), sigma))))


def make_requests(a):
    """Yields (input_len, output_len, prompt, gap_s) for every request, from --seed alone."""
    rng = random.Random(a.seed)
    i = 0
    while a.num_prompts is None or i < a.num_prompts:
        n_in = draw_len(rng, a.dist, a.input_len, a.range_ratio, 1.0)
        n_out = draw_len(rng, a.dist, a.output_len, a.range_ratio, 0.8)
        if a.max_len:
            n_out = min(n_out, a.max_len - 1)
            n_in = max(1, min(n_in, a.max_len - n_out))
        if a.chat:
            prompt = " ".join(rng.choice(WORDS) for _ in range(n_in))
        else:
            prompt = [rng.randrange(a.id_lo, a.id_hi) for _ in range(n_in)]
        gap = rng.expovariate(a.request_rate) if math.isfinite(a.request_rate) else 0.0
        yield n_in, n_out, prompt, gap
        i += 1


def request_body(a, prompt, n_out):
    body = {"model": a.model, "max_tokens": n_out, "stream": True, "temperature": 0.0,
            "stream_options": {"include_usage": True}}
    if a.ignore_eos:
        body["ignore_eos"] = True
    if a.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return json.dumps(body).encode()


# ---- one streamed request ------------------------------------------------------------------------

def chunk_text(obj):
    """The text a streamed chunk carries (completions: choices[].text; chat: choices[].delta.content)."""
    out = ""
    for c in obj.get("choices") or []:
        out += c.get("text") or (c.get("delta") or {}).get("content") or ""
    return out


def send(a, url, n_in, n_out, prompt):
    """Runs one request; returns its record (times in seconds)."""
    rec = {"prompt_len": n_in, "max_tokens": n_out, "success": False, "ttft": 0.0, "itl": [], "latency": 0.0,
           "output_tokens": 0, "error": ""}
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if a.api_key:
        headers["Authorization"] = "Bearer " + a.api_key
    start = time.perf_counter()
    conn = conn_cls(url.hostname, url.port, timeout=a.timeout)
    try:
        conn.request("POST", url.path.rstrip("/") + a.endpoint, body=request_body(a, prompt, n_out), headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            rec["error"] = "HTTP %d: %s" % (resp.status, resp.read(500).decode("utf-8", "replace"))
            return rec
        last, chunks, usage = start, 0, None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            obj = json.loads(data)
            if obj.get("error"):
                rec["error"] = "stream error: %s" % json.dumps(obj["error"])[:500]
                return rec
            if obj.get("usage"):
                usage = obj["usage"]
            if not chunk_text(obj):
                continue
            now = time.perf_counter()
            if chunks == 0:
                rec["ttft"] = now - start
            else:
                rec["itl"].append(now - last)
            last, chunks = now, chunks + 1
        rec["latency"] = time.perf_counter() - start
        if chunks == 0:
            rec["error"] = "the stream ended with no text"
            return rec
        rec["output_tokens"] = usage.get("completion_tokens", chunks) if usage else chunks
        if usage and usage.get("prompt_tokens"):
            rec["prompt_len"] = usage["prompt_tokens"]
        rec["success"] = True
    except (OSError, http.client.HTTPException, ValueError) as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    return rec


# ---- the run -------------------------------------------------------------------------------------

def run(a, url):
    """Sends the requests on threads; returns (records in send order, duration_s, peak in flight)."""
    records, threads = [], []
    lock = threading.Lock()
    slots = threading.Semaphore(a.max_concurrency) if a.max_concurrency else None
    state = {"in_flight": 0, "peak": 0, "end": 0.0}

    def worker(i, n_in, n_out, prompt):
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        rec = send(a, url, n_in, n_out, prompt)
        with lock:
            state["in_flight"] -= 1
            state["end"] = time.perf_counter()
            records[i] = rec
        if slots:
            slots.release()

    start = time.perf_counter()
    next_send = start
    for i, (n_in, n_out, prompt, gap) in enumerate(make_requests(a)):
        next_send += gap
        if a.duration is not None and next_send - start >= a.duration:
            break
        delay = next_send - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if slots:
            slots.acquire()
            if a.duration is not None and time.perf_counter() - start >= a.duration:
                slots.release()
                break
        with lock:
            records.append(None)
        t = threading.Thread(target=worker, args=(i, n_in, n_out, prompt), daemon=True)
        t.start()
        threads.append(t)
        if not a.quiet and (i + 1) % 100 == 0:
            print("serve_load: %d requests sent" % (i + 1), file=sys.stderr)
    for t in threads:
        t.join()
    return records, max(state["end"] - start, 1e-9), state["peak"]


# ---- statistics ------------------------------------------------------------------------------------

def percentile(sorted_xs, p):
    """Linear interpolation between closest ranks (numpy's default), sorted_xs non-empty."""
    k = (len(sorted_xs) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def describe(prefix, xs_s, percentiles, out):
    """mean_/median_/std_/pNN_{prefix}_ms from values in seconds (0 when there are none)."""
    xs = sorted(x * 1000.0 for x in xs_s)
    out["mean_%s_ms" % prefix] = statistics.fmean(xs) if xs else 0.0
    out["median_%s_ms" % prefix] = statistics.median(xs) if xs else 0.0
    out["std_%s_ms" % prefix] = statistics.pstdev(xs) if xs else 0.0
    for p in percentiles:
        name = str(int(p)) if p == int(p) else str(p)
        out["p%s_%s_ms" % (name, prefix)] = percentile(xs, p) if xs else 0.0


def summarise(a, records, duration, peak):
    ok = [r for r in records if r["success"]]
    total_in = sum(r["prompt_len"] for r in ok)
    total_out = sum(r["output_tokens"] for r in ok)
    res = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "backend": "openai-chat" if a.chat else "openai",
        "base_url": a.base_url,
        "endpoint": a.endpoint,
        "model_id": a.model,
        "num_prompts": len(records),
        "request_rate": a.request_rate if math.isfinite(a.request_rate) else "inf",
        "burstiness": 1.0,
        "max_concurrency": a.max_concurrency,
        "dist": a.dist,
        "input_len": a.input_len,
        "output_len": a.output_len,
        "seed": a.seed,
        "duration": duration,
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration,
        "output_throughput": total_out / duration,
        "total_token_throughput": (total_in + total_out) / duration,
        "max_concurrent_requests": peak,
    }
    tpots = [(r["latency"] - r["ttft"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    describe("ttft", [r["ttft"] for r in ok], a.percentiles, res)
    describe("tpot", tpots, a.percentiles, res)
    describe("itl", [x for r in ok for x in r["itl"]], a.percentiles, res)
    describe("e2el", [r["latency"] for r in ok], a.percentiles, res)
    res["input_lens"] = [r["prompt_len"] for r in records]
    res["output_lens"] = [r["output_tokens"] for r in records]
    res["ttfts"] = [r["ttft"] for r in records]
    res["itls"] = [r["itl"] for r in records]
    res["errors"] = [r["error"] for r in records]
    return res


def print_summary(res, percentiles):
    rows = [("requests completed / failed", "%d / %d" % (res["completed"], res["failed"])),
            ("duration (s)", "%.2f" % res["duration"]),
            ("input / output tokens", "%d / %d" % (res["total_input_tokens"], res["total_output_tokens"])),
            ("request throughput (req/s)", "%.2f" % res["request_throughput"]),
            ("output throughput (tok/s)", "%.2f" % res["output_throughput"]),
            ("total throughput (tok/s)", "%.2f" % res["total_token_throughput"]),
            ("most requests in flight", "%d" % res["max_concurrent_requests"])]
    for label, v in rows:
        print("%-30s %s" % (label, v))
    names = ["mean", "median"] + ["p%s" % (str(int(p)) if p == int(p) else str(p)) for p in percentiles]
    print("%-30s %s" % ("latency (ms)", " ".join("%10s" % n for n in names)))
    for m, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "end to end")):
        print("%-30s %s" % (label, " ".join("%10.2f" % res["%s_%s_ms" % (n, m)] for n in names)))
    errors = sorted({e for e in res["errors"] if e})
    for e in errors[:5]:
        print("error: %s" % e, file=sys.stderr)


# ---- arguments -----------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--base-url", required=True, help="http://HOST:PORT (a path prefix is kept)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--endpoint", default="/v1/completions", choices=["/v1/completions", "/v1/chat/completions"])
    ap.add_argument("--num-prompts", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--request-rate", type=float, default=math.inf)
    ap.add_argument("--max-concurrency", type=int)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--dist", default="fixed", choices=["fixed", "uniform", "sharegpt"])
    ap.add_argument("--range-ratio", type=float, default=0.5)
    ap.add_argument("--max-len", type=int)
    ap.add_argument("--id-range", default="10,500")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false")
    ap.add_argument("--api-key")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take")
    ap.add_argument("--percentiles", default="50,90,99")
    ap.add_argument("--result-file")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    url = urllib.parse.urlparse(a.base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        ap.error("--base-url %s: expected http://HOST:PORT" % a.base_url)
    try:
        url.port
    except ValueError:
        ap.error("--base-url %s: bad port" % a.base_url)
    if a.duration is None and a.num_prompts is None:
        a.num_prompts = 100
    checks = [(a.num_prompts is None or a.num_prompts >= 1, "--num-prompts must be >= 1"),
              (a.duration is None or (math.isfinite(a.duration) and a.duration > 0), "--duration must be > 0"),
              (a.request_rate > 0 and not math.isnan(a.request_rate), "--request-rate must be > 0 (or inf)"),
              (a.max_concurrency is None or a.max_concurrency >= 1, "--max-concurrency must be >= 1"),
              (a.input_len >= 1 and a.output_len >= 1, "--input-len and --output-len must be >= 1"),
              (0 <= a.range_ratio < 1, "--range-ratio must be in [0, 1)"),
              (a.max_len is None or a.max_len >= 2, "--max-len must be >= 2"),
              (a.timeout > 0, "--timeout must be > 0")]
    for ok, why in checks:
        if not ok:
            ap.error(why)
    try:
        a.id_lo, a.id_hi = (int(x) for x in a.id_range.split(","))
        a.percentiles = [float(p) for p in a.percentiles.split(",")]
    except ValueError:
        ap.error("--id-range LO,HI and --percentiles 50,90,99 take comma-separated numbers")
    if not 0 <= a.id_lo < a.id_hi:
        ap.error("--id-range %s: need 0 <= LO < HI" % a.id_range)
    if any(not 0 <= p <= 100 for p in a.percentiles):
        ap.error("--percentiles: each in [0, 100]")
    a.chat = a.endpoint == "/v1/chat/completions"
    return a, url


def main(argv=None):
    a, url = parse_args(argv)
    records, duration, peak = run(a, url)
    res = summarise(a, records, duration, peak)
    if not a.quiet:
        print_summary(res, a.percentiles)
    if a.result_file:
        with open(a.result_file, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    if res["completed"] == 0:
        print("serve_load: no request completed%s" % (": " + next((e for e in res["errors"] if e), "none sent")),
              file=sys.stderr)
        return 2
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
