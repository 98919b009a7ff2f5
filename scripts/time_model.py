#!/usr/bin/env python3
"""time_model.py — predicts a decode step's time from a launch log (QILIN_LAUNCH_LOG), with no GPU.

Usage:
  time_model.py LOG --profile h100|h200|a100 [--ranks R] [--step S]
                [--more LOG2 --kept L --total N]          # extrapolate to N layers
                [--config config.json --batch B --ctx C --tp T [--weight-bytes 2]]  # roofline
                [--json]

Every launch i of the step costs
    t_i = t_launch + max(bytes_i / (eff * BW * fill_i), flops_i / PEAK, t_roundtrip)
    fill_i = min(1, blocks_i / SMs)        (blocks_i = grid x*y*z)
  - bytes_i: the launcher's declared "bytes" (QILIN_LAUNCH_BYTES); a launch that declares
    none is charged t_launch + t_roundtrip only (the small per-row kernels: norms' siblings,
    RoPE, routing, embedding ...) and is listed as "undeclared".
  - flops_i: the log's "flops" field when present (no launcher declares it yet; decode at
    batch 1-64 is memory-bound, see perf.md §2), else 0.
  - fill_i: a grid with fewer blocks than SMs can at best pull its share of the bandwidth
    (first-order and optimistic: one block per SM rarely saturates an SM's share).
  - t_launch = 4 us: the launch cost without CUDA graphs (CPU issue + GPU launch), serialised
    per launch. ASSUMPTION, not a measured figure; to be calibrated on a GPU (perf.md §5 quotes
    7.22x from CUDA graphs at batch 1, which says launch cost dominates there).
  - t_roundtrip = 1 us: the least a kernel takes — one dependent HBM round trip plus the
    grid's ramp-up and drain. ASSUMPTION (HBM latency is ~0.6-0.8 us), to be calibrated.
  - eff = 0.9: the fraction of HBM bandwidth a good streaming kernel reaches (perf.md §1.2:
    FlashMLA 90 %, FlashInfer decode attention ~100 %, calm 76 % whole-model).
The step is the sum over launches (one stream, no overlap). With --ranks R (a TP log holds
every rank's launches) counts and times are divided by R: each rank launches the same.

--more/--kept/--total: LOG holds the step at L kept layers, LOG2 at L+1; every kernel's launches
and bytes grow by (LOG2 - LOG) per layer, so the step at N layers = LOG + (N - L)(LOG2 - LOG)
(valid when layers L+1..N are all like layer L+1: true of DeepSeek-V3 past its 3 dense layers,
Qwen3-MoE and Llama).

Roofline (--config): the bytes one decode step must read at least, per rank, at the datasheet
bandwidth: the active weights (attention, dense MLPs, the expected distinct routed experts of
the batch E(1 - (1 - k/E)^B), shared experts, router, lm_head; split evenly over --tp) plus the
KV cache once (B x ctx positions; GQA KV heads split over tp, at least one per rank; MLA's
latent replicated on every rank). --weight-bytes: bytes per weight (2: bf16, what qilin keeps
on the device today; 1: FP8).

Device figures (perf.md §1 row 1 and the table under it, datasheet dense peaks; SM counts from
cuda/sim/device_sim.cpp's profiles = NVIDIA's specifications):
  h100: 3.35 TB/s, 989 TFLOP/s BF16, 132 SMs   h200: 4.8 TB/s, 989, 132   a100: 2.039 TB/s, 312, 108
"""
import argparse
import json
import sys
from collections import OrderedDict

PROFILES = {
    "h100": {"bw": 3.35e12, "peak": 989e12, "sms": 132},
    "h200": {"bw": 4.8e12, "peak": 989e12, "sms": 132},
    "a100": {"bw": 2.039e12, "peak": 312e12, "sms": 108},
}
T_LAUNCH = 4e-6
T_ROUNDTRIP = 1e-6
EFF = 0.9


def read_log(path, step=None):
    """The launches of one step (the last one in the file unless given)."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                sys.exit(f"{path}:{n}: not a JSON line: {e}")
    if not rows:
        sys.exit(f"{path}: no launches")
    want = step if step is not None else max(r["step"] for r in rows)
    out = [r for r in rows if r["step"] == want]
    if not out:
        sys.exit(f"{path}: no launches in step {want}")
    return out


def launch_time(r, dev):
    g = r["grid"]
    blocks = g[0] * g[1] * g[2]
    fill = min(1.0, blocks / dev["sms"])
    t_bytes = r.get("bytes", 0) / (EFF * dev["bw"] * fill) if r.get("bytes") is not None else 0.0
    t_flops = r.get("flops", 0) / dev["peak"]
    return T_LAUNCH + max(t_bytes, t_flops, T_ROUNDTRIP)


def per_kernel(rows, dev, ranks):
    """kernel -> [launches, bytes, seconds, min blocks, declared], per rank."""
    table = OrderedDict()
    for r in rows:
        g = r["grid"]
        e = table.setdefault(r["kernel"], [0.0, 0.0, 0.0, 1 << 62, True])
        e[0] += 1 / ranks
        e[1] += r.get("bytes", 0) / ranks
        e[2] += launch_time(r, dev) / ranks
        e[3] = min(e[3], g[0] * g[1] * g[2])
        e[4] = e[4] and "bytes" in r
    return table


def extrapolate(base, more, kept, total):
    out = OrderedDict()
    for k in list(base) + [k for k in more if k not in base]:
        b = base.get(k, [0.0, 0.0, 0.0, 1 << 62, True])
        m = more.get(k, b)
        grow = total - kept
        out[k] = [b[i] + grow * (m[i] - b[i]) for i in range(3)] + [min(b[3], m[3]), b[4] and m[4]]
    return out


def roofline_bytes(cfg, batch, ctx, tp, wbytes):
    """Bytes per rank one decode step reads at least (see the module doc)."""
    H = cfg["hidden_size"]
    L = cfg["num_hidden_layers"]
    V = cfg["vocab_size"]
    nh = cfg["num_attention_heads"]
    kvh = cfg.get("num_key_value_heads", nh)
    mla = "kv_lora_rank" in cfg
    if mla:
        r, dr, dn, dv = cfg["kv_lora_rank"], cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]
        ql = cfg.get("q_lora_rank") or 0
        q = H * ql + ql * nh * (dn + dr) if ql else H * nh * (dn + dr)
        attn = q + H * (r + dr) + r * nh * (dn + dv) + nh * dv * H
        kv_per_pos_layer = (r + dr) * tp  # replicated on every rank: tp copies in total
    else:
        hd = cfg.get("head_dim") or H // nh
        attn = H * nh * hd + 2 * H * kvh * hd + nh * hd * H
        kv_per_pos_layer = 2 * hd * max(kvh, tp)  # at least one KV head per rank
    E = cfg.get("n_routed_experts") or cfg.get("num_experts") or cfg.get("num_local_experts") or 0
    k = cfg.get("num_experts_per_tok") or 0
    moe_ffn = cfg.get("moe_intermediate_size") or 0
    dense_layers = cfg.get("first_k_dense_replace", 0) if E else L
    ffn = 0
    if E:
        distinct = E * (1 - (1 - k / E) ** batch)
        shared = cfg.get("n_shared_experts") or 0
        moe = H * E + distinct * 3 * H * moe_ffn + shared * 3 * H * moe_ffn
        ffn = dense_layers * 3 * H * cfg["intermediate_size"] + (L - dense_layers) * moe
    else:
        ffn = L * 3 * H * cfg["intermediate_size"]
    weights = (L * attn + ffn + V * H) * wbytes / tp
    kv = batch * ctx * L * kv_per_pos_layer * 2 / tp  # KV kept in bf16
    return weights, kv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--profile", required=True, choices=sorted(PROFILES))
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--step", type=int)
    ap.add_argument("--more")
    ap.add_argument("--kept", type=int)
    ap.add_argument("--total", type=int)
    ap.add_argument("--config")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--weight-bytes", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    dev = PROFILES[a.profile]
    if a.ranks < 1:
        sys.exit("--ranks must be >= 1")
    table = per_kernel(read_log(a.log, a.step), dev, a.ranks)
    if a.more:
        if a.kept is None or a.total is None or a.total < a.kept:
            sys.exit("--more needs --kept L and --total N >= L")
        table = extrapolate(table, per_kernel(read_log(a.more), dev, a.ranks), a.kept, a.total)
    total_t = sum(e[2] for e in table.values())
    total_n = sum(e[0] for e in table.values())
    result = {"profile": a.profile, "launches": total_n, "step_s": total_t,
              "kernels": {k: {"launches": e[0], "bytes": e[1], "seconds": e[2], "min_blocks": e[3],
                              "declared": e[4]} for k, e in table.items()}}
    if a.config:
        with open(a.config) as f:
            w, kv = roofline_bytes(json.load(f), a.batch, a.ctx, a.tp, a.weight_bytes)
        result.update(roofline_weight_bytes=w, roofline_kv_bytes=kv, roofline_s=(w + kv) / dev["bw"])
    if a.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'kernel':<48} {'launches':>8} {'MB read':>9} {'min blk':>7} {'us':>9} {'share':>6}")
    for k, e in sorted(table.items(), key=lambda kv: -kv[1][2]):
        mark = "" if e[4] else "  (no bytes declared)"
        print(f"{k:<48} {e[0]:8.0f} {e[1] / 1e6:9.2f} {e[3]:7d} {e[2] * 1e6:9.1f} {e[2] / total_t:6.1%}{mark}")
    print(f"{'step':<48} {total_n:8.0f} {sum(e[1] for e in table.values()) / 1e6:9.2f} {'':>7} "
          f"{total_t * 1e6:9.1f}")
    print(f"launch latency alone: {total_n * T_LAUNCH * 1e6:.1f} us ({total_n:.0f} x {T_LAUNCH * 1e6:.0f} us)")
    if a.config:
        r = result
        print(f"roofline: weights {r['roofline_weight_bytes'] / 1e9:.3f} GB + KV {r['roofline_kv_bytes'] / 1e9:.3f} GB "
              f"per rank at {dev['bw'] / 1e12:.3g} TB/s = {r['roofline_s'] * 1e6:.1f} us; "
              f"predicted / roofline = {total_t / r['roofline_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
