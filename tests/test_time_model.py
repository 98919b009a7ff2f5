#!/usr/bin/env python3
"""test_time_model.py — scripts/time_model.py's arithmetic on a hand-made launch log
(tests/fixtures/launch_log/). On h100 (3.35 TB/s, 132 SMs), eff 0.9, 4 us per launch, 1 us
round trip:
  full_wave  132 blocks, 301.5 MB: 301.5e6 / (0.9 * 3.35e12)       = 100 us -> 104 us
  half_wave   66 blocks, 30.15 MB: 30.15e6 / (0.9 * 3.35e12 * 0.5) =  20 us ->  24 us
  undeclared  no bytes: the round trip                                       ->   5 us
  tiny       1 kB: below the round trip                                      ->   5 us
  step 2 (the last; step 1's launch is not counted)                           = 138 us
With --ranks 2 everything halves; with the second log (one more full_wave per layer) kept 1,
total 3: 138 + 2 * 104 = 346 us. Roofline of the tiny config (H 4, 1 layer, vocab 8, 2 heads,
1 KV head, head_dim 2, ffn 8), bf16, batch 1, ctx 10: weights (16 + 16 + 16 + 96 + 32) * 2 =
352 B, KV 10 * 2 * 2 * 2 = 80 B."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "time_model.py")
FIX = os.path.join(ROOT, "tests", "fixtures", "launch_log")


def run(*args, ok=True):
    p = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"time_model.py {args} failed: {p.stderr}")
    return p


def close(a, b, what):
    if abs(a - b) > 1e-9 + 1e-6 * abs(b):
        raise AssertionError(f"{what}: {a} != {b}")


def main():
    log, more, cfg = (os.path.join(FIX, f) for f in ("step.jsonl", "step_more.jsonl", "tiny_config.json"))
    r = json.loads(run(log, "--profile", "h100", "--json").stdout)
    k = r["kernels"]
    close(k["full_wave"]["seconds"], 104e-6, "full wave")
    close(k["half_wave"]["seconds"], 24e-6, "half wave")
    close(k["undeclared"]["seconds"], 5e-6, "undeclared")
    close(k["tiny"]["seconds"], 5e-6, "tiny")
    assert "prefill_only" not in k, "a launch of another step was counted"
    assert not k["undeclared"]["declared"] and k["full_wave"]["declared"]
    close(r["step_s"], 138e-6, "step")
    close(r["launches"], 4, "launches")
    r2 = json.loads(run(log, "--profile", "h100", "--ranks", "2", "--json").stdout)
    close(r2["step_s"], 69e-6, "step over 2 ranks")
    r3 = json.loads(run(log, "--profile", "h100", "--more", more, "--kept", "1", "--total", "3", "--json").stdout)
    close(r3["step_s"], 346e-6, "extrapolated step")
    close(r3["kernels"]["full_wave"]["launches"], 3, "extrapolated launches")
    r4 = json.loads(run(log, "--profile", "a100", "--json").stdout)  # 2.039 TB/s, 108 SMs: all fill less
    close(r4["kernels"]["full_wave"]["seconds"], 4e-6 + 301.5e6 / (0.9 * 2.039e12), "a100 full wave")
    r5 = json.loads(run(log, "--profile", "h100", "--config", cfg, "--batch", "1", "--ctx", "10", "--json").stdout)
    close(r5["roofline_weight_bytes"], 352, "roofline weights")
    close(r5["roofline_kv_bytes"], 80, "roofline KV")
    close(r5["roofline_s"], 432 / 3.35e12, "roofline time")
    # hostile: no such step, a bad line, an empty log
    assert run(log, "--profile", "h100", "--step", "7", ok=False).returncode != 0
    bad = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"time_model_bad_{os.getpid()}.jsonl")
    with open(bad, "w") as f:
        f.write('{"kernel": "x", "grid": [1,1,1]\n')
    try:
        p = run(bad, "--profile", "h100", ok=False)
        assert p.returncode != 0 and "not a JSON line" in p.stderr, p.stderr
    finally:
        os.remove(bad)
    print("time_model: all checks passed")


if __name__ == "__main__":
    main()
