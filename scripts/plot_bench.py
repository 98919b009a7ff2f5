#!/usr/bin/env python3
"""plot_bench.py — PNGs from benchmark JSON: decode tokens/s against batch size next to the roofline,
and serving latency percentiles against request rate.

Usage:
  plot_bench.py --out DIR [--roofline PLAN.json ...] [--measured BENCH.json ...] [--serve RUN.json ...]
                [--title TEXT]

  --roofline  `qilin plan MODEL --gpus G --predict --json PLAN.json` output: one line per file, the
              predicted decode tokens/s per batch size (its "decode" rows), labelled model, GPUs,
              weight format; batches whose KV does not fit the memory plan are drawn hollow.
  --measured  measured decode throughput to put against it: any JSON holding objects with a "batch"
              and one of "decode_tokens_per_s", "decode_tok_s", "tokens_per_s" (a list, or under
              "rows", "results" or "decode"), e.g. `qilin bench --json`; drawn as points.
  --serve     bench/serve_load.py --result-file outputs, one per request rate: TTFT, TPOT and ITL
              p50/p90/p99 against the request rate (the configured one; the achieved
              request_throughput for "inf" runs), and output tokens/s in a third panel.

Writes DIR/decode_roofline.png (with --roofline or --measured) and DIR/serve_latency.png (with
--serve), and prints their paths. Needs matplotlib (not needed by the build or CI; the test skips
without it).
"""
import argparse
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("plot_bench: %s: %s" % (path, e))


MEASURED_KEYS = ("decode_tokens_per_s", "decode_tok_s", "tokens_per_s")


def measured_points(doc):
    """(batch, tokens/s) pairs from a measured-results JSON (see --measured)."""
    rows = doc
    if isinstance(doc, dict):
        rows = next((doc[k] for k in ("rows", "results", "decode") if isinstance(doc.get(k), list)), [])
    out = []
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict) or "batch" not in r:
            continue
        key = next((k for k in MEASURED_KEYS if isinstance(r.get(k), (int, float))), None)
        if key:
            out.append((r["batch"], r[key]))
    return sorted(out)


def roofline_label(doc):
    path = doc["model"]  # MODEL/config.json, NAME.config.json or a .gguf
    if path.endswith(".config.json"):
        model = os.path.basename(path)[: -len(".config.json")]
    elif path.endswith("config.json"):
        model = os.path.basename(os.path.dirname(path))
    else:
        model = os.path.basename(path)
    return "%s, %d x %s, %s, ctx %d (roofline)" % (model, doc["tp"], doc["gpu"], doc["format"], doc["context"])


def plot_decode(plt, rooflines, measured, title, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, doc in rooflines:
        rows = doc.get("decode") or []
        if not rows:
            sys.exit("plot_bench: %s: no \"decode\" rows (qilin plan --predict --json output?)" % name)
        xs = [r["batch"] for r in rows]
        ys = [r["tokens_per_s"] for r in rows]
        line, = ax.plot(xs, ys, "-", label=roofline_label(doc))
        fit = [r.get("kv_fits", True) for r in rows]
        ax.plot([x for x, f in zip(xs, fit) if f], [y for y, f in zip(ys, fit) if f], "o", color=line.get_color())
        ax.plot([x for x, f in zip(xs, fit) if not f], [y for y, f in zip(ys, fit) if not f], "o",
                markerfacecolor="none", color=line.get_color())
    for name, pts in measured:
        if not pts:
            sys.exit("plot_bench: %s: no objects with \"batch\" and one of %s" % (name, ", ".join(MEASURED_KEYS)))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", label="%s (measured)" % os.path.basename(name))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (sequences decoding together)")
    ax.set_ylabel("output tokens/s")
    ax.set_title(title or "decode throughput against the roofline (hollow: KV does not fit)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def serve_rate(doc):
    r = doc.get("request_rate")
    return float(r) if isinstance(r, (int, float)) else float(doc["request_throughput"])


def plot_serve(plt, runs, title, path):
    runs = sorted(runs, key=lambda nd: serve_rate(nd[1]))
    xs = [serve_rate(d) for _, d in runs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, metric, label in ((axes[0], "ttft", "TTFT"), (axes[1], "tpot", "TPOT"), (axes[2], "itl", "ITL")):
        for p, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            key = "%s_%s_ms" % (p, metric)
            if all(key in d for _, d in runs):
                ax.plot(xs, [d[key] for _, d in runs], style, label="%s %s" % (label, p))
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("ms")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    tput = axes[2].twinx()
    tput.plot(xs, [d["output_throughput"] for _, d in runs], "k-", alpha=0.35, label="output tok/s")
    tput.set_ylabel("output tokens/s (grey)")
    model = runs[0][1].get("model_id", "")
    fig.suptitle(title or "serving latency against request rate (%s)" % model)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--roofline", nargs="*", default=[])
    ap.add_argument("--measured", nargs="*", default=[])
    ap.add_argument("--serve", nargs="*", default=[])
    ap.add_argument("--title")
    a = ap.parse_args(argv)
    if not (a.roofline or a.measured or a.serve):
        ap.error("nothing to plot: give --roofline, --measured or --serve files")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 77
    os.makedirs(a.out, exist_ok=True)
    if a.roofline or a.measured:
        path = os.path.join(a.out, "decode_roofline.png")
        plot_decode(plt, [(p, load(p)) for p in a.roofline], [(p, measured_points(load(p))) for p in a.measured],
                    a.title, path)
        print(path)
    if a.serve:
        runs = [(p, load(p)) for p in a.serve]
        for p, d in runs:
            if "request_throughput" not in d or "output_throughput" not in d:
                sys.exit("plot_bench: %s: not a serve_load.py result (no request_throughput)" % p)
        path = os.path.join(a.out, "serve_latency.png")
        plot_serve(plt, runs, a.title, path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
