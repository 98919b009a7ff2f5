#!/usr/bin/env python3
"""Builds tests/fixtures/models/llama_fp8: a tiny Llama stored as a DeepSeek-V3-style FP8 checkpoint.

Every attention and MLP projection is stored as float8_e4m3fn with a `<name>_scale_inv` F32 tensor of
128x128 block scales (a multiplier despite the name: W = fp8 · scale, edge blocks ragged: hidden 160
and intermediate 144 give scale grids [2, 2]); config.json carries
quantization_config {quant_method fp8, fmt e4m3, activation_scheme dynamic, weight_block_size [128, 128]}
as DeepSeek-V3's does. Embedding (tied lm_head) and norms stay BF16, as in the released checkpoints.

Goldens come from transformers' LlamaForCausalLM in fp32 holding the DEQUANTISED weights (fp8 value ×
block scale, exact in fp32), so a runtime that dequantises exactly matches them to fp32 rounding.
(transformers' own FP8 loader needs a GPU; the dequantised model is what it computes up to its fp8
matmul's rounding.)

  python3 scripts/make_fp8_fixture.py
  python3 scripts/make_fp8_fixture.py --search 0:10    # margins of seeds 0..9, writes nothing
"""

import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402
import make_fixtures as mf  # noqa: E402

NAME = "llama_fp8"
BLOCK = 128
FP8_MAX = 448.0
SPEC = dict(
    seed=3, std=0.1, emb_std=1.0, bias_std=0.1, norm=(0.6, 1.4), signed_final_norm=True,
    config=mf.llama_like(
        "LlamaForCausalLM", "llama",
        vocab_size=256, hidden_size=160, intermediate_size=144,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False, pretraining_tp=1),
    highlights="FP8 e4m3 block-quantised projections (weight_scale_inv, 128x128 blocks, ragged edges: "
               "hidden 160, intermediate 144, head_dim 40), BF16 embedding (tied) and norms.",
    notes="")
QUANTISED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantise(w):
    """(fp8 tensor, F32 scales [ceil(r/128), ceil(c/128)], dequantised fp32) of a 2-D fp32 weight."""
    r, c = w.shape
    gr, gc = (r + BLOCK - 1) // BLOCK, (c + BLOCK - 1) // BLOCK
    scales = torch.ones(gr, gc)
    q = torch.empty(r, c, dtype=torch.float8_e4m3fn)
    deq = torch.empty(r, c)
    for i in range(gr):
        for j in range(gc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = float(blk.abs().max())
            s = amax / FP8_MAX if amax > 0 else 1.0
            scales[i, j] = s
            qb = (blk / scales[i, j]).to(torch.float8_e4m3fn)
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb
            deq[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = qb.to(torch.float32) * scales[i, j]
    return q, scales, deq


def quantised_model(seed):
    """(config, fp32 model holding the dequantised projections, tensors to store)."""
    cfg, model, _ = mf.build(NAME, SPEC, seed)
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "lm_head.weight":
                continue  # tied
            if name.endswith(".weight") and name.split(".")[-2] in QUANTISED:
                q, s, deq = quantise(p.data)
                p.copy_(deq)
                tensors[name] = q.contiguous()
                tensors[name + "_scale_inv"] = s.contiguous()
            else:
                tensors[name] = p.data.to(torch.bfloat16).contiguous()
    return cfg, model, tensors


def search(seeds):
    for seed in seeds:
        cfg, model, _ = quantised_model(seed)
        new, rel, absm = fc.greedy(model, mf.prompts_for(cfg["vocab_size"])[0], mf.N_GREEDY)
        ok = rel >= mf.MIN_REL_MARGIN and len(set(new)) >= mf.MIN_DISTINCT_GREEDY
        print(f"seed {seed}: margin rel {rel:.4g} abs {absm:.4g} distinct {len(set(new))} {'OK' if ok else ''}",
              flush=True)


def main(argv):
    fc.setup_torch()
    fc.print_versions("make_fp8_fixture")
    if argv and argv[0] == "--search":  # --search A:B  try seeds A..B-1, write nothing
        search(range(*map(int, argv[1].split(":"))))
        return
    out_dir = os.path.join(fc.FIXTURE_ROOT, NAME)
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, fn))
    cfg, model, tensors = quantised_model(SPEC["seed"])
    cfg = dict(cfg)
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [BLOCK, BLOCK]}
    save_file(dict(sorted(tensors.items())), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    fc.write_json(os.path.join(out_dir, "config.json"), cfg)
    prompts = mf.prompts_for(cfg["vocab_size"])
    g = fc.make_golden(model, out_dir, cfg["architectures"][0], prompts, mf.N_GREEDY,
                       notes=f"Random weights (seed {SPEC['seed']}), projections then FP8-quantised per 128x128 "
                             "block (scale = amax / 448); goldens from the dequantised weights in fp32.",
                       extra={"config_highlights": SPEC["highlights"]})
    assert g["min_greedy_margin"] >= mf.MIN_REL_MARGIN, g["min_greedy_margin"]
    assert g["greedy_matches_kv_cache_decode"]
    assert len(set(g["greedy"])) >= mf.MIN_DISTINCT_GREEDY, g["greedy"]
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    print(f"  {NAME}: {size / 1024:.0f} KiB, margin {g['min_greedy_margin']:.4g}, "
          f"hf bf16 {g['hf_bf16']['rel_error']}")
    fc.write_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
