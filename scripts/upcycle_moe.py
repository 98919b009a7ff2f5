#!/usr/bin/env python3
"""Builds MoE fixtures whose output equals the dense stories260K model ("upcycling").

  python3 scripts/upcycle_moe.py        # needs models/stories260K (scripts/convert_llama2c.py)

Outputs (F32 weights, goldens like scripts/make_fixtures.py):
  tests/fixtures/models/stories260K_mixtral   MixtralForCausalLM, 4 experts top-2, every expert a copy
      of the dense FFN (w1 = gate_proj, w3 = up_proj, w2 = down_proj), random router. Mixtral always
      renormalises the top-2 softmax weights to sum 1, so Σ w_k · FFN(x) = FFN(x).
  tests/fixtures/models/stories260K_qwen2moe  Qwen2MoeForCausalLM, 4 experts top-2, norm_topk_prob
      true, random router. The dense FFN's 172 intermediate units are split in two halves A (units
      0..85) and B (86..171): FFN(x) = down_A(silu(gate_A x) ⊙ up_A x) + down_B(...). Every routed
      expert is half A (renormalised weights sum to 1), the shared expert is half B with its
      down_proj multiplied by 2, and shared_expert_gate is all zeros, so sigmoid(0) = 0.5 exactly
      undoes the 2. q/k/v biases exist (qkv_bias true, as in the released Qwen1.5-MoE) and are 0.

Why no Qwen3-MoE: Qwen3MoeAttention always applies RMSNorm over each head of q and k (q_norm,
k_norm) before RoPE. Even with unit weights that divides q and k by their per-head RMS, which
changes q·k by a position- and token-dependent factor, so no choice of Qwen3-MoE weights reproduces
a Llama attention layer; an exact dense equivalent of stories260K in Qwen3-MoE does not exist.
Qwen2-MoE is the same graph as Qwen3-MoE minus q/k norm (plus biases / shared expert, neutralised
as above), so it is used instead.

Verification (asserted): greedy 256 ids from BOS equal the dense model's (= llama2.c's).
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402

from transformers import AutoModelForCausalLM, LlamaForCausalLM  # noqa: E402

DENSE = os.path.join(fc.REPO, "models", "stories260K")
N_EXPERTS = 4
TOP_K = 2
ROUTER_STD = 0.5
SEED = {"stories260K_mixtral": 1, "stories260K_qwen2moe": 2}


def common_cfg(dense_cfg):
    keep = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "initializer_range", "use_cache"]
    c = {k: dense_cfg[k] for k in keep}
    c["rope_scaling"] = None
    c["torch_dtype"] = "float32"
    return c


def attn_and_norms(dense, L):
    out = {"model.embed_tokens.weight": dense["model.embed_tokens.weight"],
           "model.norm.weight": dense["model.norm.weight"]}
    if "lm_head.weight" in dense:
        out["lm_head.weight"] = dense["lm_head.weight"]
    for i in range(L):
        p = f"model.layers.{i}."
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                  "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"):
            out[p + n] = dense[p + n]
    return out


def make_mixtral(dense, dense_cfg, g):
    L = dense_cfg["num_hidden_layers"]
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral"}
    cfg.update(common_cfg(dense_cfg))
    cfg.update({"intermediate_size": dense_cfg["intermediate_size"], "num_local_experts": N_EXPERTS,
                "num_experts_per_tok": TOP_K, "sliding_window": None, "output_router_logits": False,
                "router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0, "attention_dropout": 0.0})
    sd = attn_and_norms(dense, L)
    for i in range(L):
        p = f"model.layers.{i}."
        q = p + "block_sparse_moe."
        sd[q + "gate.weight"] = ROUTER_STD * torch.randn(N_EXPERTS, dense_cfg["hidden_size"], generator=g)
        for e in range(N_EXPERTS):
            sd[q + f"experts.{e}.w1.weight"] = dense[p + "mlp.gate_proj.weight"]
            sd[q + f"experts.{e}.w3.weight"] = dense[p + "mlp.up_proj.weight"]
            sd[q + f"experts.{e}.w2.weight"] = dense[p + "mlp.down_proj.weight"]
    notes = ("MixtralForCausalLM upcycled from stories260K: 4 experts top-2, each expert an exact copy of the "
             f"dense FFN (w1 = gate_proj, w3 = up_proj, w2 = down_proj), router N(0, {ROUTER_STD}²) random. "
             "Mixtral renormalises the top-2 weights, so the output equals the dense model's up to rounding. "
             "Since all experts are equal, this fixture checks the MoE plumbing (names, expert FFN, weighting "
             "that sums to 1) but NOT which experts are chosen — use the random mixtral fixture for routing.")
    hl = (f"stories260K dims, {N_EXPERTS} experts top-{TOP_K} (intermediate_size 172 per expert), "
          "tie_word_embeddings true, F32.")
    return cfg, sd, notes, hl


def make_qwen2moe(dense, dense_cfg, g):
    L = dense_cfg["num_hidden_layers"]
    H = dense_cfg["hidden_size"]
    F = dense_cfg["intermediate_size"]
    assert F % 2 == 0
    Fa = F // 2
    hd = dense_cfg["head_dim"]
    cfg = {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe"}
    cfg.update(common_cfg(dense_cfg))
    cfg.update({"intermediate_size": F, "moe_intermediate_size": Fa, "shared_expert_intermediate_size": F - Fa,
                "num_experts": N_EXPERTS, "num_experts_per_tok": TOP_K, "norm_topk_prob": True,
                "decoder_sparse_step": 1, "mlp_only_layers": [], "qkv_bias": True, "use_sliding_window": False,
                "sliding_window": None, "max_window_layers": L, "output_router_logits": False,
                "router_aux_loss_coef": 0.001, "attention_dropout": 0.0})
    sd = attn_and_norms(dense, L)
    for i in range(L):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.bias"] = torch.zeros(dense_cfg["num_attention_heads"] * hd)
        sd[p + "self_attn.k_proj.bias"] = torch.zeros(dense_cfg["num_key_value_heads"] * hd)
        sd[p + "self_attn.v_proj.bias"] = torch.zeros(dense_cfg["num_key_value_heads"] * hd)
        gate = dense[p + "mlp.gate_proj.weight"]
        up = dense[p + "mlp.up_proj.weight"]
        down = dense[p + "mlp.down_proj.weight"]
        q = p + "mlp."
        sd[q + "gate.weight"] = ROUTER_STD * torch.randn(N_EXPERTS, H, generator=g)
        for e in range(N_EXPERTS):
            sd[q + f"experts.{e}.gate_proj.weight"] = gate[:Fa].clone()
            sd[q + f"experts.{e}.up_proj.weight"] = up[:Fa].clone()
            sd[q + f"experts.{e}.down_proj.weight"] = down[:, :Fa].clone()
        sd[q + "shared_expert.gate_proj.weight"] = gate[Fa:].clone()
        sd[q + "shared_expert.up_proj.weight"] = up[Fa:].clone()
        sd[q + "shared_expert.down_proj.weight"] = (2.0 * down[:, Fa:]).clone()  # exact (power of two)
        sd[q + "shared_expert_gate.weight"] = torch.zeros(1, H)
    notes = ("Qwen2MoeForCausalLM upcycled from stories260K (Qwen3-MoE is impossible: its per-head q/k RMSNorm "
             "cannot be made an identity; see scripts/upcycle_moe.py). FFN units 0..85 -> every routed expert "
             "(4 experts top-2, norm_topk_prob true, router N(0, 0.5²) random), units 86..171 -> shared expert "
             "with down_proj × 2, shared_expert_gate all zeros so sigmoid(0) = 0.5 cancels the 2 exactly. "
             "q/k/v biases present and zero. Output equals the dense model's up to rounding. Routing choice "
             "is not observable (equal experts); the shared-expert sigmoid gate is (a runtime without it "
             "would double the shared half).")
    hl = (f"stories260K dims, {N_EXPERTS} experts top-{TOP_K} with moe_intermediate_size {Fa}, shared expert "
          f"width {F - Fa}, zero shared_expert_gate, zero q/k/v biases, tie_word_embeddings true, F32.")
    return cfg, sd, notes, hl


def main(argv):
    fc.setup_torch()
    fc.print_versions("upcycle_moe")
    dense_cfg = json.load(open(os.path.join(DENSE, "config.json")))
    dense = load_file(os.path.join(DENSE, "model.safetensors"))
    dense_model = LlamaForCausalLM.from_pretrained(DENSE, **fc.LOAD_KW).eval()
    dense_golden = json.load(open(os.path.join(fc.FIXTURE_ROOT, "stories260K", "golden.json")))
    dense_256 = fc.greedy(dense_model, [1], 256)[0]
    assert dense_256 == dense_golden["greedy256_from_bos"]
    prompts = dense_golden["prompts"]
    dense_logits = [fc.full_logits(dense_model, p) for p in prompts]

    for name, make in (("stories260K_mixtral", make_mixtral), ("stories260K_qwen2moe", make_qwen2moe)):
        g = torch.Generator().manual_seed(SEED[name])
        cfg, sd, notes, hl = make(dense, dense_cfg, g)
        out_dir = os.path.join(fc.FIXTURE_ROOT, name)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.makedirs(out_dir)
        fc.write_json(os.path.join(out_dir, "config.json"), cfg)
        sd = {k: v.to(torch.float32).contiguous().clone() for k, v in sd.items()}
        save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)

        model, info = AutoModelForCausalLM.from_pretrained(out_dir, **fc.LOAD_KW, output_loading_info=True)
        model.eval()
        bad = {k: v for k, v in info.items() if v}
        assert not bad, (name, bad)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        ids, rel, absm = fc.greedy(model, [1], 256)
        same = ids == dense_256
        diff = max(float((fc.full_logits(model, p) - d).abs().max()) for p, d in zip(prompts, dense_logits))
        print(f"{name}: greedy 256 from BOS {'EQUALS' if same else 'DIFFERS FROM'} dense; "
              f"max |logit - dense logit| on the golden prompts {diff:.3g}")
        assert same
        gd = fc.make_golden(model, out_dir, cfg["architectures"][0], prompts, 32, notes=notes,
                            extra={"config_highlights": hl,
                                   "greedy256_from_bos_equals_dense": same,
                                   "max_abs_logit_diff_vs_dense": diff})
        assert gd["greedy"] == dense_golden["greedy"]
        print(f"  {os.path.getsize(os.path.join(out_dir, 'model.safetensors')) / 1024:.0f} KiB, "
              f"margin rel {gd['min_greedy_margin']:.4g}, router gap {gd['min_router_gap']:.4g}")
    fc.write_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
