#!/usr/bin/env python3
"""serve_signal.py QILIN STORIES — `qilin serve` as a process: it answers /health, and SIGTERM
while a completion streams ends that stream properly (a last chunk with a finish_reason, then
`data: [DONE]`), stops accepting connections, and exits 0 within the grace period plus a margin.

The port is reserved as tests/reserve_ports.py does (bound with SO_REUSEADDR, never listening):
the server, which binds with SO_REUSEADDR, can listen there and nothing else can take it."""
import http.client
import json
import signal
import subprocess
import sys

from serve_process import reserve_port, wait_healthy


def fail(why):
    print("serve_signal: FAIL: " + why)
    sys.exit(1)


def main():
    qilin, stories = sys.argv[1], sys.argv[2]
    hold, port = reserve_port()
    server = subprocess.Popen([qilin, "serve", "--model", stories, "--port", str(port), "--dtype", "float32",
                               "--max-num-seqs", "2", "--max-model-len", "128", "--grace-seconds", "0.5"],
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(server, port, fail)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = {"prompt": "Once upon a time", "max_tokens": 120, "temperature": 0, "ignore_eos": True, "stream": True}
        c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            fail("stream status %d" % r.status)
        first = r.readline()
        if not first.startswith(b"data: {"):
            fail("first line %r" % first)
        server.send_signal(signal.SIGTERM)
        rest = (first + r.read()).decode()
        events = [e for e in rest.split("\n\n") if e]
        if events[-1] != "data: [DONE]":
            fail("the stream did not end with [DONE]: %r" % events[-3:])
        last = json.loads(events[-2][len("data: "):])
        reason = last["choices"][0]["finish_reason"]
        if reason not in ("abort", "length"):
            fail("last chunk finish_reason %r" % reason)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("still running 30 s after SIGTERM")
        err = server.stderr.read()
        if code != 0 or "SIGTERM: stopping" not in err:
            fail("exit status %d, stderr: %s" % (code, err))
        print("serve_signal: stream ended with finish_reason %s and [DONE]; exit 0" % reason)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
