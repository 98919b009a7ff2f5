#!/usr/bin/env python3
"""Builds tests/fixtures/models/kimi_k2_int4: the tiny deepseek_v3 fixture stored as a Kimi K2-Thinking
checkpoint — routed experts INT4 (compressed-tensors `pack-quantized`, symmetric, group 32), the rest BF16.

Each routed expert projection W [out, in] becomes
  <name>.weight_packed  I32 [out, in / 8]   nibble j of word w = u of column 8 w + j (bits 4j..4j+3),
                                            u = q + 8, q = round(W / s) clamped to -8..7
  <name>.weight_scale   BF16 [out, in / 32]  s = bf16(amax(group) / 7)  (1 for an all-zero group)
  <name>.weight_shape   I32 [2] = {out, in}
config.json: model_type kimi_k2 (Kimi K2's DeepseekV3ForCausalLM), quantization_config compressed-tensors
with config group `weights: {num_bits 4, type int, symmetric, strategy group, group_size 32}` and an
`ignore` list naming attention, the dense MLP, shared experts and lm_head, as Kimi K2-Thinking's does.

Goldens come from transformers' DeepseekV3ForCausalLM in fp32 holding the DEQUANTISED expert weights
(q · s, exact in fp32), so a runtime that dequantises exactly matches them to fp32 rounding.

  python3 scripts/make_int4_fixture.py
"""

import copy
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402
import make_fixtures as mf  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

NAME = "kimi_k2_int4"
BASE = "deepseek_v3"
GROUP = 32


def quantise(w):
    """(packed I32 [out, in/8], bf16 scales [out, in/GROUP], dequantised fp32) of a 2-D fp32 weight."""
    out, n_in = w.shape
    assert n_in % GROUP == 0 and n_in % 8 == 0, w.shape
    g = w.reshape(out, n_in // GROUP, GROUP)
    amax = g.abs().amax(dim=2)
    s = torch.where(amax > 0, amax / 7, torch.ones_like(amax)).to(torch.bfloat16)
    sf = s.to(torch.float32).unsqueeze(2)
    q = torch.clamp(torch.round(g / sf), -8, 7)
    deq = (q * sf).reshape(out, n_in)
    u = (q.reshape(out, n_in) + 8).to(torch.int64).reshape(out, n_in // 8, 8)
    words = torch.zeros(out, n_in // 8, dtype=torch.int64)
    for j in range(8):
        words |= u[:, :, j] << (4 * j)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.contiguous(), s.contiguous(), deq


def is_routed_expert(name):
    return ".mlp.experts." in name and name.endswith("_proj.weight")


def main():
    fc.setup_torch()
    fc.print_versions("make_int4_fixture")
    spec = copy.deepcopy(mf.FIXTURES[BASE])
    cfg, model, f32 = mf.build(BASE, spec, spec["seed"])
    tmp = tempfile.mkdtemp(prefix="fx_int4_")
    try:
        model.to(torch.bfloat16).save_pretrained(tmp)  # the on-disk (per-expert) names
        sd = load_file(os.path.join(tmp, "model.safetensors"))
    finally:
        shutil.rmtree(tmp)
    stored, deq_sd = {}, {}
    for k in sorted(sd):
        if k.endswith(mf.NON_WEIGHT_SUFFIXES):
            continue
        if k.endswith("e_score_correction_bias"):
            src = [v for n, v in f32.items() if n.endswith(k.split("model.", 1)[-1])]
            assert len(src) == 1, k
            stored[k] = deq_sd[k] = src[0].to(torch.float32).contiguous()
        elif is_routed_expert(k):
            packed, scale, deq = quantise(sd[k].to(torch.float32))
            base = k[: -len(".weight")]
            stored[base + ".weight_packed"] = packed
            stored[base + ".weight_scale"] = scale
            stored[base + ".weight_shape"] = torch.tensor(list(sd[k].shape), dtype=torch.int32)
            deq_sd[k] = deq
        else:
            stored[k] = sd[k].contiguous()
            deq_sd[k] = sd[k].to(torch.float32)
    n_int4 = sum(1 for k in stored if k.endswith(".weight_packed"))
    assert n_int4 > 0

    # the fp32 reference: the same model holding the dequantised expert weights
    tmp = tempfile.mkdtemp(prefix="fx_int4_ref_")
    try:
        save_file(deq_sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        fc.write_json(os.path.join(tmp, "config.json"), cfg)
        ref, info = AutoModelForCausalLM.from_pretrained(tmp, **fc.LOAD_KW, output_loading_info=True)
    finally:
        shutil.rmtree(tmp)
    ref.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{NAME}: loading info {bad}"

    out_dir = os.path.join(fc.FIXTURE_ROOT, NAME)
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, fn))
    save_file(stored, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    disk_cfg = dict(cfg)
    disk_cfg["model_type"] = "kimi_k2"
    disk_cfg["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                      "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                  "strategy": "group", "group_size": GROUP, "dynamic": False}}},
        "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                   "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    fc.write_json(os.path.join(out_dir, "config.json"), disk_cfg)
    prompts = mf.prompts_for(cfg["vocab_size"])
    g = fc.make_golden(ref, out_dir, cfg["architectures"][0], prompts, mf.N_GREEDY,
                       notes=f"The {BASE} fixture's weights (seed {spec['seed']}) with its {n_int4} routed expert "
                             f"projections INT4-quantised (symmetric, group {GROUP}, bf16 scale = amax / 7); "
                             "goldens from the dequantised weights in fp32.",
                       extra={"config_highlights": spec["highlights"] + " Routed experts INT4 pack-quantized."})
    assert g["greedy_matches_kv_cache_decode"]
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    assert size <= 512 * 1024, size
    print(f"  {NAME}: {size / 1024:.0f} KiB, {n_int4} INT4 tensors, margin {g['min_greedy_margin']:.4g}, "
          f"router gap {g['min_router_gap']}")


if __name__ == "__main__":
    main()
