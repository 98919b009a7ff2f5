#!/usr/bin/env python3
"""Builds tests/fixtures/models/deepseek_v3_fp8: the tiny deepseek_v3 fixture stored as the DeepSeek-V3
release is — every linear projection (MLA q_a/q_b/kv_a/kv_b/o, the dense MLP, shared and routed experts)
float8_e4m3fn with a `<name>_scale_inv` F32 tensor of 128x128 block scales (scale = amax / 448; hidden 64
makes every block ragged), quantization_config {quant_method fp8, fmt e4m3, weight_block_size [128, 128]};
embeddings, norms, router and e_score_correction_bias as in the bf16 fixture.

Goldens come from transformers' DeepseekV3ForCausalLM in fp32 holding the DEQUANTISED weights (fp8 value
× block scale), so a runtime that dequantises exactly matches them to fp32 rounding. It exercises the
forward's FP8 paths on MLA and MoE: projections kept FP8 on the device and those still dequantised at
load (routed experts, kv_a / kv_b).

  python3 scripts/make_fp8_moe_fixture.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fp8_fixture as f8  # noqa: E402
import quantised_fixture as qf  # noqa: E402

NAME = "deepseek_v3_fp8"
BASE = "deepseek_v3"


def quantise(name, w):
    """Every linear projection: e4m3 bytes + <name>_scale_inv block scales."""
    if not (name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight")):
        return None
    q, s, deq = f8.quantise(w.float())
    return {name: q.contiguous(), name + "_scale_inv": s.contiguous()}, deq


def disk_config(cfg):
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [f8.BLOCK, f8.BLOCK]}
    return cfg


def main():
    qf.make(NAME, BASE, quantise, disk_config,
            "linear projections FP8-quantised per 128x128 block (scale = amax / 448)",
            "Projections FP8 e4m3 block-scaled.", "FP8", "make_fp8_moe_fixture")


if __name__ == "__main__":
    main()
