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
import make_fp8_fixture as f8  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

NAME = "deepseek_v3_fp8"
BASE = "deepseek_v3"


def main():
    fc.setup_torch()
    fc.print_versions("make_fp8_moe_fixture")
    spec = copy.deepcopy(mf.FIXTURES[BASE])
    cfg, model, f32 = mf.build(BASE, spec, spec["seed"])
    tmp = tempfile.mkdtemp(prefix="fx_fp8moe_")
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
        elif k.endswith("_proj.weight") or k.endswith("_proj_with_mqa.weight"):
            q, s, deq = f8.quantise(sd[k].to(torch.float32))
            stored[k] = q.contiguous()
            stored[k + "_scale_inv"] = s.contiguous()
            deq_sd[k] = deq
        else:
            stored[k] = sd[k].contiguous()
            deq_sd[k] = sd[k].to(torch.float32)
    n_fp8 = sum(1 for k in stored if k.endswith("_scale_inv"))

    tmp = tempfile.mkdtemp(prefix="fx_fp8moe_ref_")
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
    disk_cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                       "weight_block_size": [f8.BLOCK, f8.BLOCK]}
    fc.write_json(os.path.join(out_dir, "config.json"), disk_cfg)
    prompts = mf.prompts_for(cfg["vocab_size"])
    g = fc.make_golden(ref, out_dir, cfg["architectures"][0], prompts, mf.N_GREEDY,
                       notes=f"The {BASE} fixture's weights (seed {spec['seed']}) with its {n_fp8} linear projections "
                             "FP8-quantised per 128x128 block (scale = amax / 448); goldens from the dequantised "
                             "weights in fp32.",
                       extra={"config_highlights": spec["highlights"] + " Projections FP8 e4m3 block-scaled."})
    assert g["greedy_matches_kv_cache_decode"]
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    assert size <= 512 * 1024, size
    print(f"  {NAME}: {size / 1024:.0f} KiB, {n_fp8} FP8 tensors, margin {g['min_greedy_margin']:.4g}, "
          f"router gap {g['min_router_gap']}")


if __name__ == "__main__":
    main()
