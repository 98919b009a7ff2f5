"""Shared helpers for the golden-fixture scripts (make_fixtures.py, convert_llama2c.py,
upcycle_moe.py).

These scripts are run by hand (they need torch + transformers); their outputs are committed and
CI only reads the files. Nothing here is imported by the C/CUDA build.

Golden format (tests/fixtures/models/<name>/golden.json):
  arch                  architectures[0] of config.json
  transformers_version, torch_version
  prompts               list of token-id lists
  logits_files          logitsK.f32 = raw little-endian float32 [len(prompts[K]), vocab],
                        logits of every position of prompt K (one full forward, no cache)
  vocab                 V
  greedy_prompt         index of the prompt the greedy continuation starts from (0)
  greedy                new token ids (argmax, full recompute every step, fp32)
  min_greedy_margin     min over greedy steps of (top1 - top2) / (max - min) of that step's logits
  min_greedy_margin_abs min over greedy steps of (top1 - top2)
  min_router_gap        (MoE only) smallest gap, over every MoE layer and every token of both
                        sequences, between the last selected and the first rejected candidate
                        in the router's selection space (see router_gaps()); null for dense
  hf_bf16               transformers itself in bf16 vs these fp32 logits (hf_bf16_report())
  notes
"""

import copy
import json
import os
import re
import struct
import sys

import numpy as np
import torch
import transformers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_ROOT = os.path.join(REPO, "tests", "fixtures", "models")


# Reference settings: fp32, eager attention, eager (per-expert loop) MoE experts. transformers 5
# otherwise picks a grouped_mm experts kernel by default.
LOAD_KW = {"dtype": torch.float32, "attn_implementation": "eager", "experts_implementation": "eager"}


def setup_torch():
    # One thread: deterministic summation order (bit-for-bit reruns) and lean on shared machines.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def versions():
    return {"transformers_version": transformers.__version__, "torch_version": torch.__version__}


def print_versions(prog):
    v = versions()
    print(f"{prog}: python {sys.version.split()[0]}, torch {v['torch_version']}, "
          f"transformers {v['transformers_version']}, numpy {np.__version__}")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# forward / greedy / margins


@torch.no_grad()
def full_logits(model, ids):
    out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, prompt, n_new):
    """Greedy continuation with a full recompute every step (no KV cache).
    Returns (new_ids, min_rel_margin, min_abs_margin)."""
    ids = list(prompt)
    new = []
    rel, absm = float("inf"), float("inf")
    for _ in range(n_new):
        last = full_logits(model, ids)[-1]
        top = torch.topk(last, 2)
        m = float(top.values[0] - top.values[1])
        r = float(last.max() - last.min())
        rel = min(rel, m / r)
        absm = min(absm, m)
        nxt = int(top.indices[0])
        ids.append(nxt)
        new.append(nxt)
    return new, rel, absm


@torch.no_grad()
def greedy_with_cache(model, prompt, n_new):
    """Same continuation decoded incrementally with a KV cache (prefill, then one token per
    forward); used only as a cross-check of the full-recompute ids. (Not model.generate: its
    default logits processors, e.g. EOS suppression, would alter plain argmax.)"""
    cache = transformers.DynamicCache(config=model.config)
    out = model(torch.tensor([prompt], dtype=torch.long), past_key_values=cache, use_cache=True)
    new = []
    pos = len(prompt)
    for _ in range(n_new):
        nxt = int(out.logits[0, -1].argmax())
        new.append(nxt)
        out = model(torch.tensor([[nxt]], dtype=torch.long), past_key_values=out.past_key_values,
                    use_cache=True, position_ids=torch.tensor([[pos]], dtype=torch.long))
        pos += 1
    return new


def _kth_gap(s, k):
    """s: [T, N] selection scores (-inf = masked). Gap between the k-th and (k+1)-th largest."""
    if k >= s.shape[1]:
        return float("inf")
    v = torch.sort(s, dim=-1, descending=True).values
    g = v[:, k - 1] - v[:, k]
    return float(g.min())


def router_gaps(mod, x):
    """Smallest selection gap of one router module over the tokens x [T, H].

    Selection space per router type (the comparisons that decide which experts run):
      softmax top-k (Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2 greedy): router logits
        (softmax is monotonic, so logit gaps decide the order);
      DeepSeek-V2 group_limited_greedy: per-group max logit (group choice), then logits of the
        experts of kept groups;
      DeepSeek-V3 noaux_tc: sigmoid(logit) + e_score_correction_bias, group score = sum of the
        two largest, then the biased scores of kept groups.
    Returns (gap, extra) where extra is a dict of additional per-router facts."""
    name = type(mod).__name__
    x = x.reshape(-1, x.shape[-1]).float()
    logits = x @ mod.weight.float().t()
    T, E = logits.shape
    k = mod.top_k
    extra = {}
    if name == "DeepseekV3TopkRouter":
        s = logits.sigmoid() + mod.e_score_correction_bias.float()
        G, tg = mod.num_group, mod.topk_group
        grp = s.view(T, G, E // G).topk(2, dim=-1).values.sum(-1)
        gap_g = _kth_gap(grp, tg)
        keep = torch.zeros(T, G, dtype=torch.bool)
        keep.scatter_(1, grp.topk(tg, dim=-1).indices, True)
        keep = keep.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
        masked = s.masked_fill(~keep, float("-inf"))
        gap_e = _kth_gap(masked, k)
        # The 0.0-vs-(-inf) group-mask discrepancy (models.md §13.3) can only matter when fewer
        # than k experts of the kept groups have a positive biased score, i.e. when the k-th
        # largest kept biased score is <= 0.
        kth_kept = torch.sort(masked, dim=-1, descending=True).values[:, k - 1]
        extra["min_kth_biased_score_in_kept_groups"] = float(kth_kept.min())
        extra["min_biased_score"] = float(s.min())
        if tg < G:
            extra["group_gap"] = gap_g
        return min(gap_g, gap_e), extra
    if name == "DeepseekV2TopkRouter" and mod.topk_method == "group_limited_greedy":
        G, tg = mod.num_group, mod.topk_group
        grp = logits.view(T, G, E // G).max(-1).values
        gap_g = _kth_gap(grp, tg)
        keep = torch.zeros(T, G, dtype=torch.bool)
        keep.scatter_(1, grp.topk(tg, dim=-1).indices, True)
        keep = keep.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
        masked = logits.masked_fill(~keep, float("-inf"))
        extra["group_gap"] = gap_g
        return min(gap_g, _kth_gap(masked, k)), extra
    return _kth_gap(logits, k), extra


def router_modules(model):
    return [(n, m) for n, m in model.named_modules() if type(m).__name__.endswith(("TopkRouter", "TopKRouter"))]


@torch.no_grad()
def min_router_gap(model, seqs):
    mods = router_modules(model)
    if not mods:
        return None, {}
    captured = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append((mod, inp[0].detach())))
             for _, m in mods]
    try:
        for s in seqs:
            full_logits(model, s)
    finally:
        for h in hooks:
            h.remove()
    gap = float("inf")
    extra_min = {}
    for mod, x in captured:
        g, extra = router_gaps(mod, x)
        gap = min(gap, g)
        for key, val in extra.items():
            extra_min[key] = min(extra_min.get(key, float("inf")), val)
    return gap, extra_min


# --------------------------------------------------------------------------------------------
# bf16 run of transformers itself (how far plain bf16 inference drifts from the fp32 golden)

# bf16 reference: weights and activations bf16 as transformers runs them (its RMSNorm / softmax
# upcast to fp32 internally); buffers (rotary inv_freq, DeepSeek-V3 e_score_correction_bias) stay
# fp32, as from_pretrained(dtype=bfloat16) leaves them.
BF16_LOAD_KW = {"dtype": torch.bfloat16, "attn_implementation": "eager", "experts_implementation": "eager"}
# a position is "confident" when its fp32 top-1/top-2 gap exceeds this fraction of its logit range
CONFIDENT_MARGIN = 0.01


def bf16_copy(model, fp32_routers=False):
    """Copy of an fp32 model with parameters cast to bf16 and buffers left as they are: the same
    model from_pretrained(dtype=bfloat16) builds from the stored bf16 file. fp32_routers: keep the
    router weights fp32 and feed the routers fp32 inputs (bf16 activations upcast), i.e. router
    logits / softmax in fp32 as DeepSeek's routers always do, instead of Mixtral's / Qwen's bf16
    F.linear."""
    m = copy.deepcopy(model)
    routers = {id(r) for _, r in router_modules(m)} if fp32_routers else set()
    with torch.no_grad():
        for mod in m.modules():
            if id(mod) in routers:
                mod.register_forward_pre_hook(lambda _m, args: (args[0].float(),) + tuple(args[1:]))
                continue
            for p in mod.parameters(recurse=False):
                p.data = p.data.to(torch.bfloat16)
    m.eval()
    return m


@torch.no_grad()
def routing_choices(model, seqs):
    """Expert sets chosen by every router call (one forward per sequence, no cache): list of
    [T, k] tensors sorted along k, in call order (sequence-major, then layer)."""
    mods = router_modules(model)
    out = []
    hooks = [m.register_forward_hook(lambda mod, inp, o: out.append(torch.sort(o[2], dim=-1).values))
             for _, m in mods]
    try:
        for s in seqs:
            full_logits(model, s)
    finally:
        for h in hooks:
            h.remove()
    return out


def _router_inputs(model, seqs):
    """[(router module, input [T, H])] for every router call over seqs (one forward each)."""
    captured = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append((mod, inp[0].detach())))
             for _, m in router_modules(model)]
    try:
        with torch.no_grad():
            for s in seqs:
                full_logits(model, s)
    finally:
        for h in hooks:
            h.remove()
    return captured


def _selection_scores(mod, x):
    """fp32 selection scores (router logits, or DeepSeek-V3's biased sigmoid) of tokens x [T, H]."""
    logits = x.reshape(-1, x.shape[-1]).float() @ mod.weight.float().t()
    if type(mod).__name__ == "DeepseekV3TopkRouter":
        return logits.sigmoid() + mod.e_score_correction_bias.float()
    return logits


@torch.no_grad()
def router_bf16_safety(model32, model16, seqs):
    """How far the routing is from being flipped by bf16 (MoE only; None for dense models).

    For every router call and token: gap = the token's routing gap in fp32 (router_gaps), and
    D = max over experts of |s16 - s32| + 2^-9 max|s32|, where s32 are the fp32 selection scores
    and s16 the same scores computed (in fp32) from the bf16 model's router input; the 2^-9 term
    is the rounding of the scores themselves to bf16. A choice flips only if some pair moves
    against each other by more than the gap, i.e. by at most 2 D (4 D for DeepSeek-V3 group
    scores, sums of two scores), so safety = gap / (2 D) (/ (4 D) for V3) > 1 means this bf16
    drift plus rounding cannot flip it, and the value is the headroom factor. rounding_safety is
    the same with D = 2^-9 max|s32| alone: > 1 means rounding the fp32 scores to bf16 cannot flip
    any choice. Returns (min safety, min rounding_safety, min gap / range of the token's scores)."""
    a = _router_inputs(model32, seqs)
    b = _router_inputs(model16, seqs)
    assert len(a) == len(b)
    safety = rel = rounding = float("inf")
    for (mod, x32), (_, x16) in zip(a, b):
        x32 = x32.reshape(-1, x32.shape[-1]).float()
        s32 = _selection_scores(mod, x32)
        s16 = _selection_scores(mod, x16.reshape(-1, x16.shape[-1]).float())
        R = 2.0 ** -9 * s32.abs().max(-1).values
        D = (s16 - s32).abs().max(-1).values + R
        rng = (s32.max(-1).values - s32.min(-1).values).clamp_min(1e-30)
        f = 4.0 if type(mod).__name__ == "DeepseekV3TopkRouter" else 2.0
        for t in range(x32.shape[0]):
            g, _ = router_gaps(mod, x32[t:t + 1])
            safety = min(safety, g / (f * float(D[t])))
            rounding = min(rounding, g / (f * float(R[t])))
            rel = min(rel, g / float(rng[t]))
    return safety, rounding, rel


@torch.no_grad()
def hf_bf16_report(model32, model16, prompts, ref_logits, greedy_ids):
    """Compares transformers' own bf16 forward (model16) with the fp32 golden logits.

    ref_logits: list of fp32 [T, V] golden logits of prompts. Returns a dict:
      rel_error             per prompt, max|bf16 - fp32| / max|fp32| over all positions
      confident_mismatches  per prompt, positions whose fp32 top-1/top-2 gap exceeds
                            CONFIDENT_MARGIN of the row's range and whose bf16 top-1 differs
      greedy_flips          teacher-forced on prompt 0 + greedy ids: greedy steps whose bf16 top-1
                            is not the fp32 greedy token (informative; greedy margins may be < 1%)
      routing_mismatches    MoE only: [plain bf16, bf16 with fp32 routers] counts of (token, MoE
                            layer) pairs, over prompt 0 + greedy ids and prompt 1, where that
                            bf16 run routes to another expert set than fp32
      router_safety         MoE only: min over routing decisions of gap / (the most this bf16
                            run's drift plus bf16 rounding of the scores can close it); > 1 means
                            they cannot flip it, the value is the headroom (router_bf16_safety)
      router_rounding_safety  MoE only: the same for rounding the fp32 router scores to bf16
                            alone (> 1: that rounding cannot flip any choice)
      min_router_gap_rel    MoE only: min_router_gap with each token's gap divided by the range
                            of its selection scores (fp32)"""
    rel, conf = [], []
    for p, ref in zip(prompts, ref_logits):
        lg = full_logits(model16, p)
        ref = ref.float()
        rel.append(float((lg - ref).abs().max() / ref.abs().max()))
        top = torch.topk(ref, 2, dim=-1).values
        margin = (top[:, 0] - top[:, 1]) / (ref.max(-1).values - ref.min(-1).values)
        bad = (margin > CONFIDENT_MARGIN) & (lg.argmax(-1) != ref.argmax(-1))
        conf.append([int(i) for i in torch.nonzero(bad).flatten()])
    seq = list(prompts[0]) + list(greedy_ids)
    lg = full_logits(model16, seq)
    n0 = len(prompts[0])
    pred = lg[n0 - 1:-1].argmax(-1)
    flips = int((pred != torch.tensor(greedy_ids)).sum())
    r = {"rel_error": rel, "confident_mismatches": conf, "greedy_flips": flips}
    if router_modules(model32):
        seqs = [seq, list(prompts[1])]
        a = routing_choices(model32, seqs)
        mm = []
        for m16 in (model16, bf16_copy(model32, fp32_routers=True)):
            b = routing_choices(m16, seqs)
            assert len(a) == len(b)
            mm.append(int(sum(int((x != y).any(-1).sum()) for x, y in zip(a, b))))
        r["routing_mismatches"] = mm
        r["router_safety"], r["router_rounding_safety"], r["min_router_gap_rel"] = \
            router_bf16_safety(model32, model16, seqs)
    return r


@torch.no_grad()
def rope_sensitivity(model, prompt, ref=None):
    """max|Δ| / max|ref| of the fp32 logits of prompt when rotary embedding is switched off (every
    inv_freq buffer zeroed; GPT-J's [sin | cos] table set to [0 | 1]): how visible position
    encoding is in the logits (None without either buffer)."""
    bufs = [b for n, b in model.named_buffers() if n.endswith(("inv_freq", "embed_positions"))]
    if not bufs:
        return None
    if ref is None:
        ref = full_logits(model, prompt)
    saved = [b.clone() for b in bufs]
    try:
        for n, b in [(n, b) for n, b in model.named_buffers() if n.endswith(("inv_freq", "embed_positions"))]:
            if n.endswith("inv_freq"):
                b.zero_()
            else:
                half = b.shape[-1] // 2
                b[..., :half] = 0.0
                b[..., half:] = 1.0
        lg = full_logits(model, prompt)
    finally:
        for b, v in zip(bufs, saved):
            b.copy_(v)
    return float((lg - ref).abs().max() / ref.abs().max())


def hf_bf16_of_dir(fx_dir, golden=None):
    """hf_bf16_report for a fixture directory (reloads it in fp32 and in bf16)."""
    from transformers import AutoModelForCausalLM
    g = golden or json.load(open(os.path.join(fx_dir, "golden.json")))
    m32 = AutoModelForCausalLM.from_pretrained(fx_dir, **LOAD_KW).eval()
    m16 = AutoModelForCausalLM.from_pretrained(fx_dir, **BF16_LOAD_KW).eval()
    refs = []
    for p, fn in zip(g["prompts"], g["logits_files"]):
        a = np.fromfile(os.path.join(fx_dir, fn), dtype="<f4").reshape(len(p), g["vocab"])
        refs.append(torch.from_numpy(a.copy()))
    return hf_bf16_report(m32, m16, g["prompts"], refs, g["greedy"])


def write_logits(path, logits):
    arr = logits.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    arr.tofile(path)


def make_golden(model, out_dir, arch, prompts, n_greedy, notes, extra=None, check_cache=True):
    """Computes and writes logitsK.f32 + golden.json (hf_bf16 included, see hf_bf16_report).
    Returns the golden dict."""
    V = model.config.vocab_size
    files = []
    refs = []
    for k, p in enumerate(prompts):
        lg = full_logits(model, p)
        assert lg.shape == (len(p), V), lg.shape
        assert torch.isfinite(lg).all()
        refs.append(lg)
        fn = f"logits{k}.f32"
        write_logits(os.path.join(out_dir, fn), lg)
        files.append(fn)
    new, rel, absm = greedy(model, prompts[0], n_greedy)
    gap, gap_extra = min_router_gap(model, [prompts[0] + new, prompts[1]])
    g = {"arch": arch}
    g.update(versions())
    g.update({
        "prompts": prompts,
        "logits_files": files,
        "vocab": V,
        "greedy_prompt": 0,
        "greedy": new,
        "min_greedy_margin": rel,
        "min_greedy_margin_abs": absm,
        "min_router_gap": gap,
        "reference": "fp32 CPU, attn_implementation eager, experts_implementation eager, no KV cache",
    })
    if gap_extra:
        g["router_facts"] = gap_extra
    if check_cache:
        cached = greedy_with_cache(model, prompts[0], n_greedy)
        g["greedy_matches_kv_cache_decode"] = cached == new
        if cached != new:
            print(f"  WARNING: KV-cache decode differs from full-recompute greedy: {cached}")
    if extra:
        g.update(extra)
    g["hf_bf16"] = hf_bf16_report(model, bf16_copy(model), prompts, refs, new)
    g["notes"] = notes
    write_json(os.path.join(out_dir, "golden.json"), g)
    return g


# --------------------------------------------------------------------------------------------
# safetensors listing + README generation


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    return hdr


def _compress_names(hdr):
    """Groups tensor names that differ only by layer / expert index."""
    groups = {}
    order = []
    for name in sorted(hdr, key=_natural_key):
        info = hdr[name]
        layer = expert = None
        pat = name
        m = re.search(r"\.(layers|h)\.(\d+)\.", pat)
        if m:
            layer = int(m.group(2))
            pat = pat[:m.start(2)] + "{L}" + pat[m.end(2):]
        m = re.search(r"\.experts\.(\d+)\.", pat)
        if m:
            expert = int(m.group(1))
            pat = pat[:m.start(1)] + "{e}" + pat[m.end(1):]
        key = (pat, tuple(info["shape"]), info["dtype"])
        if key not in groups:
            groups[key] = (set(), set())
            order.append(key)
        if layer is not None:
            groups[key][0].add(layer)
        if expert is not None:
            groups[key][1].add(expert)
    rows = []
    for key in order:
        pat, shape, dtype = key
        layers, experts = groups[key]
        idx = []
        if layers:
            idx.append("L=" + _ranges(layers))
        if experts:
            idx.append("e=" + _ranges(experts))
        rows.append((pat, list(shape), dtype, ", ".join(idx)))
    return rows


def _natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _ranges(vals):
    vals = sorted(vals)
    out = []
    start = prev = vals[0]
    for v in vals[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ",".join(out)


README_HEAD = """# Tiny model fixtures with golden outputs

Generated by hand (they need torch + transformers; CI does not) with:

* `scripts/make_fixtures.py` — random-weight tiny models, one per supported architecture;
* `scripts/convert_llama2c.py` — `stories260K` (real trained llama2.c weights converted to HF Llama);
* `scripts/upcycle_moe.py` — `stories260K_mixtral`, `stories260K_qwen2moe` (stories260K with its dense
  FFN copied into MoE experts; output mathematically equal to the dense model). There is no
  `stories260K_qwen3moe`: an exact dense-equivalent Qwen3-MoE is impossible, because Qwen3's per-head
  q_norm/k_norm RMSNorm rescales q and k even with unit weights, which no Llama attention does; the
  same graph minus q/k norm, Qwen2-MoE, is used instead (shared expert and biases neutralised exactly);
* `scripts/make_fp8_fixture.py` — `llama_fp8`: a Llama stored DeepSeek-V3-style, projections FP8 e4m3 with
  128x128 `weight_scale_inv` block scales (ragged edges), goldens from the dequantised weights in fp32;
* `scripts/make_fp8_moe_fixture.py` — `deepseek_v3_fp8`: the `deepseek_v3` fixture stored as the DeepSeek-V3
  release is (every linear projection FP8 e4m3 with 128x128 `weight_scale_inv`), goldens from the
  dequantised weights in fp32;
* `scripts/make_int4_fixture.py` — `kimi_k2_int4`: the `deepseek_v3` fixture stored as a Kimi K2-Thinking
  checkpoint (model_type kimi_k2, routed experts INT4 compressed-tensors pack-quantized, group 32, bf16
  scales, `ignore` list), goldens from the dequantised weights in fp32;
* `scripts/make_generation_goldens.py` — extra goldens inside existing fixture directories:
  `generate.json` (stories260K, llama: greedy with a repetition penalty, transformers
  `generate(do_sample=False, repetition_penalty=R)`, with the unpenalised ids) and `decode.json` +
  `decode.f32` (qwen2, mistral_swa, qwen2_yarn, llama: a prompt of `len(prompt)` ids and the fp32 logits
  rows of positions `prefill..len-1`, for a runtime that prefills `prefill` ids and then feeds one token
  per decode step; qwen2 and mistral_swa have 300-id prompts, past the 256 cached keys at which decode
  attention splits its keys).

This README is regenerated by each of those scripts (do not edit by hand). See `scripts/README.md`.

Every fixture directory holds `config.json`, `model.safetensors`, `golden.json`, `logits0.f32`,
`logits1.f32`. `golden.json` fields:

| field | meaning |
|---|---|
| `prompts` | two token-id lists; prompt 0 is short (~7 ids), prompt 1 is longer than 64 ids |
| `logits_files` | `logitsK.f32` = raw little-endian float32 `[len(prompts[K]), vocab]`, every position, one full forward |
| `greedy_prompt`, `greedy` | 32 argmax tokens continuing prompt 0 (full recompute each step, fp32) |
| `min_greedy_margin` | min over the greedy steps of (top1 − top2) / (max − min) of that step's logits |
| `min_greedy_margin_abs` | the same without the division |
| `min_router_gap` | MoE only: smallest gap between the last selected and the first rejected routing candidate over every MoE layer and every token of prompt 1 and of prompt 0 + greedy ids, in the router's selection space (router logits for softmax routers; for DeepSeek-V2 `group_limited_greedy` also the per-group max logit; for DeepSeek-V3 `noaux_tc` the biased sigmoid scores, both the group choice and the expert choice) |
| `greedy_matches_kv_cache_decode` | cross-check: incremental decoding with a transformers KV cache (prefill + one token per step) gave the same ids |
| `hf_bf16` | transformers itself run in bfloat16 on the same prompts, compared with these fp32 goldens (a yardstick for a runtime's bf16 mode; see below) |

Reference numerics: weights as stored (BF16 for the random fixtures, F32 for the stories260K family)
are loaded with `from_pretrained(..., dtype=float32, attn_implementation="eager",
experts_implementation="eager")`, i.e. BF16 values upcast exactly to fp32, MoE experts run as the
plain per-expert loop (transformers 5 otherwise defaults to a `grouped_mm` kernel), and every
computation is fp32 on CPU with one thread.

`hf_bf16` (written by every generator and by `scripts/bf16_reference.py`): the same checkpoint loaded
with `dtype=bfloat16` (eager attention / experts, CPU, one thread; bf16 weights and activations,
transformers' own fp32 upcasts in RMSNorm and softmax, rotary `inv_freq` kept fp32), teacher-forced:

| key | meaning |
|---|---|
| `rel_error` | per prompt, max\|bf16 − fp32\| / max\|fp32\| over all positions and the vocabulary |
| `confident_mismatches` | per prompt, positions whose fp32 top-1/top-2 gap exceeds 1% of that position's logit range (max − min) and whose bf16 top-1 differs |
| `greedy_flips` | steps of the greedy continuation (teacher-forced on prompt 0 + `greedy`) whose bf16 top-1 is not the fp32 greedy id (informative: greedy margins may be below bf16 noise) |
| `routing_mismatches` | MoE: [plain bf16, bf16 with fp32 routers] counts of (token, MoE layer) pairs over prompt 0 + greedy and prompt 1 where that run picks another expert set than fp32 |
| `router_safety` | MoE: min over routing decisions of gap / (the most that this bf16 run's drift of the router scores plus bf16 rounding of the scores can close it); > 1 means neither can flip any choice, the value is the headroom |
| `router_rounding_safety` | MoE: the same for rounding the fp32 router scores to bf16 alone (> 1: rounding the router logits cannot flip any choice) |
| `min_router_gap_rel` | MoE: `min_router_gap` with each token's gap divided by the range of its router scores |

The random fixtures are built so that this run stays within 1e-2 on both prompts with no confident
mismatch and no routing difference (asserted by `make_fixtures.py`); a runtime's bf16 mode should land in
the same range. The stories260K family is real / upcycled and only records the numbers.

`config.json` files are written in the classic Hugging Face Hub style (`rope_theta` + `rope_scaling`,
`rotary_pct`/`rotary_emb_base` for GPT-NeoX), as the released checkpoints ship them. transformers ≥ 5
itself would write `rope_parameters` instead; a runtime that reads configs saved by new transformers
must accept that spelling too (not covered by these fixtures).

## transformers 5.23 behaviour relative to models.md (checked in its source)

* DeepSeek-V3 `noaux_tc` router: dropped groups are filled with **−inf** (models.md §7.6/§13.3 says
  0.0; that was older transformers). The fixtures keep the k-th largest biased score of the kept
  groups positive at every token (`router_facts`), so 0.0 and −inf give the same experts.
* DeepSeek-V2 attention **does** multiply the softmax scale by mscale² when `rope_scaling` has
  `mscale_all_dim` (models.md §13.2 says the native port omits it). The V2 fixtures have no
  rope_scaling, so either reading gives the same result.
* DeepSeek-V2 router never renormalises (ignores `norm_topk_prob`); `group_limited_greedy` masks
  dropped groups' probabilities with 0.0 (equivalent to −inf for softmax probabilities when the kept
  groups hold ≥ k experts, as here). V2 fixtures use `norm_topk_prob: false`.
* `q_a_layernorm` / `kv_a_layernorm` use eps 1e-6 regardless of `rms_norm_eps` (as models.md says);
  the DeepSeek fixtures use `rms_norm_eps` 1e-6.
* DeepSeek-V3 config defaults `num_key_value_heads` to 128 and `num_nextn_predict_layers` to 1; the
  fixtures set `num_key_value_heads` = heads and `num_nextn_predict_layers` 0 (no MTP weights stored).
* transformers 5 keeps MoE experts fused in memory (`gate_up_proj` 3-D) but `save_pretrained` writes
  the per-expert on-disk names of the released checkpoints, which is what the fixtures contain.
"""


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return str(v)


def _bf16_cells(h):
    if not h:
        return "— | — | —"
    conf = sum(len(c) for c in h["confident_mismatches"])
    rm = h.get("routing_mismatches")
    route = "—" if rm is None else f"{'+'.join(str(x) for x in rm)} / {h['router_safety']:.2g}"
    return f"{h['rel_error'][0]:.4f} / {h['rel_error'][1]:.4f} | {conf} | {route}"


def write_readme():
    names = sorted(d for d in os.listdir(FIXTURE_ROOT)
                   if os.path.isfile(os.path.join(FIXTURE_ROOT, d, "golden.json")))
    lines = [README_HEAD, "## Summary\n",
             "| fixture | arch | size (safetensors) | weights | V | prompts (len) | min greedy margin (rel / abs) | min router gap | HF bf16 rel error (p0 / p1) | conf. mismatches | routing mismatches / safety | transformers |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    details = []
    for n in names:
        d = os.path.join(FIXTURE_ROOT, n)
        g = json.load(open(os.path.join(d, "golden.json")))
        hdr = safetensors_header(os.path.join(d, "model.safetensors"))
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        dtypes = sorted({v["dtype"] for v in hdr.values()})
        rg = g.get("min_router_gap")
        lines.append(
            f"| `{n}` | `{g['arch']}` | {size / 1024:.0f} KiB | {'+'.join(dtypes)} | {g['vocab']} | "
            f"{', '.join(str(len(p)) for p in g['prompts'])} | "
            f"{g['min_greedy_margin']:.3g} / {g['min_greedy_margin_abs']:.3g} | "
            f"{'—' if rg is None else f'{rg:.3g}'} | {_bf16_cells(g.get('hf_bf16'))} | {g['transformers_version']} |")
        det = [f"### `{n}`\n"]
        if g.get("config_highlights"):
            det.append("Config highlights: " + g["config_highlights"] + "\n")
        det.append("Notes: " + g["notes"] + "\n")
        h = g.get("hf_bf16")
        if h:
            det.append("HF bf16: " + ", ".join(f"{k} = {_short(v)}" for k, v in h.items()) + "\n")
        if g.get("router_facts"):
            det.append("Router facts: " + ", ".join(f"{k} = {v:.4g}" for k, v in g["router_facts"].items()) + "\n")
        det.append("| tensor (L = layer, e = expert) | shape | dtype | indices |")
        det.append("|---|---|---|---|")
        for pat, shape, dtype, idx in _compress_names(hdr):
            det.append(f"| `{pat}` | {shape} | {dtype} | {idx} |")
        det.append("")
        details.append("\n".join(det))
    lines.append("")
    lines.append("## Fixtures\n")
    text = "\n".join(lines) + "\n" + "\n".join(details)
    with open(os.path.join(FIXTURE_ROOT, "README.md"), "w") as f:
        f.write(text)
