#!/usr/bin/env python3
"""test_serve_load.py [QILIN MODEL_DIR] — bench/serve_load.py against a stub OpenAI server on
loopback (in this process), then, given a qilin binary and a model, against `qilin serve`.

The stub streams max_tokens chunks of one word, DELAY_S apart, then a usage chunk and [DONE];
it answers 500 to the model name "broken", and records how many requests it had in flight. Checks:
  - the JSON has vLLM's field names, counts add up (completed, input/output tokens = the
    requested lengths, since the stub honours max_tokens and reports usage), percentiles are
    ordered, ITL and TPOT are at least the stub's delay and TTFT/E2EL consistent with it;
  - the same --seed gives the same lengths, another seed others (uniform and sharegpt dists);
  - --max-concurrency 2 never has more than 2 requests at the server; --duration stops sending;
  - a failing server gives failed requests with the server's error, exit status 2;
  - chat completions stream deltas and are timed the same way;
  - bad arguments are refused (exit 2).
Against qilin serve (stories260K in the sim, a few requests of 8 tokens): every request completes
with exactly the requested output tokens (ignore_eos)."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SERVE_LOAD = os.path.join(HERE, "..", "bench", "serve_load.py")
DELAY_S = 0.004
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    served = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("model") == "broken":
            msg = b'{"error": {"message": "the stub is broken", "type": "server_error"}}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        with Stub.lock:
            Stub.in_flight += 1
            Stub.peak = max(Stub.peak, Stub.in_flight)
            Stub.served += 1
        self.counted = True
        try:
            self.stream(body)
        finally:
            self.uncount()

    def uncount(self):
        """The request leaves the in-flight count before its [DONE] goes out: a client that has
        read [DONE] may send its next request before this thread runs again."""
        with Stub.lock:
            if self.counted:
                Stub.in_flight -= 1
                self.counted = False

    def stream(self, body):
        chat = self.path.endswith("/chat/completions")
        n_in = len(body["messages"][0]["content"].split()) if chat else len(body["prompt"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj):
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i in range(body["max_tokens"]):
            time.sleep(DELAY_S)
            choice = {"index": 0, "delta": {"content": " w%d" % i}} if chat else {"index": 0, "text": " w%d" % i}
            event({"choices": [choice]})
        if (body.get("stream_options") or {}).get("include_usage"):
            event({"choices": [], "usage": {"prompt_tokens": n_in, "completion_tokens": body["max_tokens"]}})
        self.uncount()
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client closing after [DONE] without reading the chunked terminator resets the
        connection the handler waits on for a next request: not an error here."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def serve_load(url, *args, model="stub"):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        p = subprocess.run([sys.executable, SERVE_LOAD, "--base-url", url, "--model", model, "--result-file", out,
                            *args], capture_output=True, text=True, timeout=120)
        res = json.load(open(out)) if os.path.exists(out) else None
    return p, res


FIELDS = ["date", "model_id", "num_prompts", "request_rate", "max_concurrency", "duration", "completed", "failed",
          "total_input_tokens", "total_output_tokens", "request_throughput", "output_throughput",
          "total_token_throughput", "input_lens", "output_lens", "ttfts", "itls", "errors"] + [
    "%s_%s_ms" % (s, m) for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "std", "p50", "p90", "p99")]


def stub_checks(url):
    # Poisson arrivals, fixed lengths: every count is known.
    p, r = serve_load(url, "--num-prompts", "20", "--request-rate", "100", "--input-len", "16", "--output-len", "6",
                      "--seed", "3")
    check(p.returncode == 0 and r is not None, "fixed run exits 0 (%d: %s)" % (p.returncode, p.stderr[-300:]))
    if r is None:
        return
    missing = [f for f in FIELDS if f not in r]
    check(not missing, "vLLM field names present (missing %s)" % missing)
    check(r["completed"] == 20 and r["failed"] == 0, "20 completed, 0 failed")
    check(r["total_input_tokens"] == 320 and r["total_output_tokens"] == 120, "input 20 x 16, output 20 x 6 tokens")
    check(r["input_lens"] == [16] * 20 and r["output_lens"] == [6] * 20, "per-request lengths")
    check(all(len(x) == 5 for x in r["itls"]), "5 inter-token gaps per 6-token request")
    for m in ("ttft", "tpot", "itl", "e2el"):
        check(r["p50_%s_ms" % m] <= r["p90_%s_ms" % m] <= r["p99_%s_ms" % m], "%s percentiles ordered" % m)
    # Timing consistency that load on the machine cannot break (a slow reader may see chunks
    # bunched, so no gap is compared with the stub's delay one by one): the gaps of a request add
    # up to its time after the first token, and on average they cannot be far below the delay.
    check(r["mean_itl_ms"] > 0.25 * DELAY_S * 1000 and r["mean_tpot_ms"] > 0.25 * DELAY_S * 1000,
          "ITL %.2f and TPOT %.2f ms are the stub's ~%.0f ms" % (r["mean_itl_ms"], r["mean_tpot_ms"], DELAY_S * 1e3))
    check(r["mean_e2el_ms"] > r["mean_ttft_ms"] and r["p99_ttft_ms"] <= r["p99_e2el_ms"], "E2EL after TTFT")
    check(abs(r["output_throughput"] - 120 / r["duration"]) < 1e-6 * r["output_throughput"], "output tok/s = 120 / duration")
    check(abs(r["request_throughput"] - 20 / r["duration"]) < 1e-6 * r["request_throughput"], "req/s = 20 / duration")
    # 20 requests at 100/s take ~0.2 s to send: the run cannot be much shorter.
    check(r["duration"] > 0.05, "Poisson sends are spread out (duration %.3f s)" % r["duration"])

    # Seeded length distributions.
    def lens(dist, seed):
        _, x = serve_load(url, "--num-prompts", "12", "--dist", dist, "--input-len", "40", "--output-len", "4",
                          "--seed", str(seed), "--max-len", "200")
        return x["input_lens"] if x else None

    u1, u2, u3 = lens("uniform", 5), lens("uniform", 5), lens("uniform", 6)
    check(u1 == u2 and u1 != u3, "same seed, same uniform lengths; another seed, others")
    check(u1 is not None and all(20 <= n <= 60 for n in u1) and len(set(u1)) > 1, "uniform lengths in [20, 60]: %s" % u1)
    s1 = lens("sharegpt", 5)
    check(s1 is not None and all(1 <= n <= 199 for n in s1) and len(set(s1)) > 3, "sharegpt-like lengths vary: %s" % s1)

    # Fixed concurrency, and --duration ends the run.
    Stub.peak = 0
    t0 = time.time()
    p, r = serve_load(url, "--duration", "1", "--max-concurrency", "2", "--input-len", "4", "--output-len", "10")
    check(p.returncode == 0 and r is not None and r["completed"] >= 4, "duration run completes requests")
    check(Stub.peak <= 2 and r is not None and r["max_concurrent_requests"] <= 2,
          "at most 2 in flight (server saw %d)" % Stub.peak)
    check(time.time() - t0 < 10, "--duration 1 stops sending")

    # A failing server: every request failed, with its message; exit status 2.
    p, r = serve_load(url, "--num-prompts", "3", model="broken")
    check(p.returncode == 2 and r is not None and r["failed"] == 3 and r["completed"] == 0, "broken server: 3 failed")
    check(r is not None and all("the stub is broken" in e for e in r["errors"]), "errors carry the server's message")

    # Chat: deltas are timed the same way; input tokens from the server's usage.
    p, r = serve_load(url, "--endpoint", "/v1/chat/completions", "--num-prompts", "4", "--input-len", "9",
                      "--output-len", "3")
    check(p.returncode == 0 and r is not None and r["total_output_tokens"] == 12 and r["total_input_tokens"] == 36,
          "chat: 4 x 3 output, 4 x 9 input tokens")

    # Careless arguments.
    for bad in (["--request-rate", "0"], ["--max-concurrency", "0"], ["--dist", "zipf"], ["--id-range", "5,5"],
                ["--percentiles", "50,x"], ["--duration", "nan"]):
        p = subprocess.run([sys.executable, SERVE_LOAD, "--base-url", url, "--model", "m", *bad], capture_output=True,
                           text=True, timeout=60)
        check(p.returncode == 2 and "error" in p.stderr, "refused: %s" % " ".join(bad))
    p = subprocess.run([sys.executable, SERVE_LOAD, "--base-url", "localhost:80", "--model", "m"], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 2 and "expected http://HOST:PORT" in p.stderr, "refused: a base URL with no scheme")


def qilin_checks(qilin, model):
    sys.path.insert(0, HERE)
    from serve_process import reserve_port, wait_healthy
    sock, port = reserve_port()
    server = subprocess.Popen([qilin, "serve", "--model", model, "--port", str(port), "--served-model-name", "m"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def fail(why):
            check(False, "qilin serve: " + why)
            raise RuntimeError(why)

        wait_healthy(server, port, fail)  # the cuda build without a GPU: ctest skips on QILIN_ERR_NO_DEVICE
        p, r = serve_load("http://127.0.0.1:%d" % port, "--num-prompts", "4", "--max-concurrency", "2",
                          "--input-len", "8", "--output-len", "8", model="m")
        check(p.returncode == 0 and r is not None, "qilin serve run exits 0 (%d: %s)" % (p.returncode, p.stderr[-300:]))
        if r:
            check(r["completed"] == 4 and r["total_output_tokens"] == 32, "qilin: 4 requests of 8 tokens")
            check(r["total_input_tokens"] == 32, "qilin: usage says 4 x 8 prompt tokens")
            print(json.dumps({k: r[k] for k in ("duration", "output_throughput", "mean_ttft_ms", "mean_itl_ms")}))
    except RuntimeError:
        pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        sock.close()


def main():
    httpd = StubServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        stub_checks("http://127.0.0.1:%d" % httpd.server_address[1])
    finally:
        httpd.shutdown()
    if len(sys.argv) >= 3:
        qilin_checks(sys.argv[1], sys.argv[2])
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
