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

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quantised_fixture as qf  # noqa: E402

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


def quantise_expert(name, w):
    """Routed expert projections: weight_packed, weight_scale and weight_shape."""
    if not is_routed_expert(name):
        return None
    packed, scale, deq = quantise(w.float())
    base = name[: -len(".weight")]
    return {base + ".weight_packed": packed, base + ".weight_scale": scale,
            base + ".weight_shape": torch.tensor(list(w.shape), dtype=torch.int32)}, deq


def disk_config(cfg):
    cfg["model_type"] = "kimi_k2"
    cfg["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                      "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                  "strategy": "group", "group_size": GROUP, "dynamic": False}}},
        "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                   "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    return cfg


def main():
    qf.make(NAME, BASE, quantise_expert, disk_config,
            f"routed expert projections INT4-quantised (symmetric, group {GROUP}, bf16 scale = amax / 7)",
            "Routed experts INT4 pack-quantized.", "INT4", "make_int4_fixture")


if __name__ == "__main__":
    main()
