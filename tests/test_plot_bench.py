#!/usr/bin/env python3
"""test_plot_bench.py QILIN CONFIGS — `qilin plan --predict --json` writes the roofline JSON that
scripts/plot_bench.py reads, and the script turns it and serve_load.py results into PNGs.

Checks: scripts/time_model.py's roofline agrees with it (device figures, bytes); the JSON has the device figures and one "decode" row per --batch with the fields the plot
uses, predicted tokens/s rise with the batch, batch 1 of Qwen3-30B-A3B on H100 reads 6.08 GB;
the plot script writes two non-trivial PNG files (with a measured series and three serve runs) and
refuses a file that is not its input. Exit 77 (skipped) without matplotlib."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "scripts", "plot_bench.py")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def serve_result(rate, scale):
    r = {"model_id": "stub", "request_rate": rate, "request_throughput": rate * 0.98, "output_throughput": 100 * rate,
         "completed": 10, "failed": 0}
    for m in ("ttft", "tpot", "itl"):
        for i, p in enumerate(("p50", "p90", "p99")):
            r["%s_%s_ms" % (p, m)] = scale * (1 + i) * (10 if m == "ttft" else 1)
    return r


def main():
    qilin, configs = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        plan = os.path.join(tmp, "plan.json")
        p = subprocess.run([qilin, "plan", os.path.join(configs, "Qwen3-30B-A3B.config.json"), "--gpus", "H100",
                            "--predict", "--batch", "1,4,16,64,256", "--json", plan], capture_output=True, text=True)
        check(p.returncode == 0, "qilin plan --predict --json exits 0 (%s)" % p.stderr[-300:])
        doc = json.load(open(plan))
        check(doc["gpu"] == "H100" and doc["hbm_bytes_per_s"] == 3.35e12 and "perf.md" in doc["gpu_source"],
              "device figures and their source")
        rows = doc["decode"]
        check([r["batch"] for r in rows] == [1, 4, 16, 64, 256], "one row per --batch")
        check(all(k in rows[0] for k in ("tokens_per_s", "weight_bytes", "kv_bytes", "flops", "t_step_s", "kv_fits",
                                          "experts_touched", "bound")), "row fields")
        check(all(a["tokens_per_s"] < b["tokens_per_s"] for a, b in zip(rows, rows[1:])), "tok/s rise with batch")
        check(abs(rows[0]["weight_bytes"] - 6.083e9) < 0.01 * 6.083e9, "batch 1 reads 6.08 GB")
        check(rows[-1]["kv_fits"] is False and rows[0]["kv_fits"] is True, "256 x 1024 KV does not fit one H100")
        check(doc["prefill"]["tokens"] == 1024 and doc["prefill"]["tokens_per_s"] > 0, "prefill of 1024 tokens")
        # The launch-level model (scripts/time_model.py) uses the same device figures and, for its
        # --config roofline, the same bytes: weights within 0.5 % (it leaves out norms), KV the same.
        sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
        import time_model
        prof = time_model.PROFILES["h100"]
        check(prof["bw"] == doc["hbm_bytes_per_s"] and prof["peak"] == doc["bf16_flops_per_s"],
              "time_model.py's H100 figures are the plan's")
        cfg = json.load(open(os.path.join(configs, "Qwen3-30B-A3B.config.json")))
        for row in rows[:3]:
            w, kv = time_model.roofline_bytes(cfg, row["batch"], 1024, 1, 2)
            check(abs(w - row["weight_bytes"]) < 0.005 * w and abs(kv - row["kv_bytes"]) <= 1e-9 * kv,
                  "batch %d: time_model.py %.4g + %.4g B, plan %.4g + %.4g B" % (
                      row["batch"], w, kv, row["weight_bytes"], row["kv_bytes"]))
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("skipped: matplotlib is not installed")
            return 77 if not failures else 1
        measured = os.path.join(tmp, "measured.json")
        json.dump({"rows": [{"batch": 1, "decode_tokens_per_s": 400.0}, {"batch": 16, "decode_tokens_per_s": 900.0}]},
                  open(measured, "w"))
        serves = []
        for i, rate in enumerate((1.0, 4.0, 16.0)):
            serves.append(os.path.join(tmp, "serve%d.json" % i))
            json.dump(serve_result(rate, 1 + i), open(serves[-1], "w"))
        out = os.path.join(tmp, "png")
        p = subprocess.run([sys.executable, PLOT, "--out", out, "--roofline", plan, "--measured", measured,
                            "--serve", *serves], capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "plot_bench exits 0 (%s)" % p.stderr[-300:])
        for name in ("decode_roofline.png", "serve_latency.png"):
            path = os.path.join(out, name)
            ok = os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 10000
            check(ok, "%s written, a PNG of > 10 kB" % name)
        p = subprocess.run([sys.executable, PLOT, "--out", out, "--roofline", measured], capture_output=True,
                           text=True, timeout=120)
        check(p.returncode != 0 and "no \"decode\" rows" in p.stderr, "a file that is not plan JSON is refused")
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
