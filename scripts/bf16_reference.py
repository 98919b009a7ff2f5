#!/usr/bin/env python3
"""Runs transformers itself in bfloat16 on every fixture's golden prompts and records how far it
lands from the fp32 golden logits, as golden.json["hf_bf16"] (see fixture_common.hf_bf16_report):

  rel_error             [prompt 0, prompt 1]: max|bf16 - fp32| / max|fp32|
  confident_mismatches  [[...], [...]]: positions whose fp32 top-1/top-2 gap exceeds 1% of the
                        position's logit range and whose bf16 top-1 differs (teacher-forced)
  greedy_flips          greedy steps (teacher-forced on prompt 0 + greedy) whose bf16 top-1 differs
  routing_mismatches    MoE: [plain bf16, bf16 with fp32 routers] counts of (token, layer)
                        pairs where that run picks other experts than fp32
  router_safety         MoE: min over routing decisions of gap / (what this run's bf16 drift of
                        the router scores plus bf16 rounding of them can close); > 1: no flip
  router_rounding_safety  MoE: the same for bf16 rounding of the fp32 router scores alone
  min_router_gap_rel    MoE: smallest routing gap relative to the token's router-score range

bf16 here = from_pretrained(dtype=bfloat16, attn_implementation="eager",
experts_implementation="eager") on CPU, one thread: bf16 weights and activations, transformers'
own fp32 upcasts (RMSNorm, attention softmax, router softmax), rotary inv_freq kept fp32.
This is a yardstick for a runtime's bf16 mode: a fixture whose own transformers bf16 run misses
the golden by much more than ~1e-2 is too sensitive to test bf16 against.

  python3 scripts/bf16_reference.py            # all fixtures; rewrites golden.json + README
  python3 scripts/bf16_reference.py llama      # only these
  python3 scripts/bf16_reference.py --check    # print only, write nothing
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402


def with_hf_bf16(g, r):
    """golden dict with hf_bf16 set, placed before notes (key order of make_golden)."""
    out = {}
    for k, v in g.items():
        if k == "hf_bf16":
            continue
        if k == "notes":
            out["hf_bf16"] = r
        out[k] = v
    if "hf_bf16" not in out:
        out["hf_bf16"] = r
    return out


HEADER = (f"{'fixture':22s} {'rel p0':>7s} {'rel p1':>7s}  {'confident mismatches p0 / p1':30s} "
          f"{'gflips':>6s} {'routing mm':>10s} {'safety':>7s} {'rnd saf':>7s} {'gap rel':>8s}")


def fmt_row(n, r):
    def num(k, f):
        return "-" if r.get(k) is None else format(r[k], f)
    rm = r.get("routing_mismatches")
    conf = f"{r['confident_mismatches'][0]} / {r['confident_mismatches'][1]}"
    return (f"{n:22s} {r['rel_error'][0]:7.4f} {r['rel_error'][1]:7.4f}  {conf:30s} "
            f"{r['greedy_flips']:6d} {'-' if rm is None else '+'.join(map(str, rm)):>10s} "
            f"{num('router_safety', '7.3f'):>7s} {num('router_rounding_safety', '7.3f'):>7s} "
            f"{num('min_router_gap_rel', '8.5f'):>8s}")


def main(argv):
    fc.setup_torch()
    fc.print_versions("bf16_reference")
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")]
    if not names:
        names = sorted(d for d in os.listdir(fc.FIXTURE_ROOT)
                       if os.path.isfile(os.path.join(fc.FIXTURE_ROOT, d, "golden.json")))
    print(HEADER)
    for n in names:
        d = os.path.join(fc.FIXTURE_ROOT, n)
        path = os.path.join(d, "golden.json")
        g = json.load(open(path))
        r = fc.hf_bf16_of_dir(d, g)
        print(fmt_row(n, r), flush=True)
        if not check:
            fc.write_json(path, with_hf_bf16(g, r))
    if not check:
        fc.write_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
