#!/usr/bin/env python3
"""Builds tiny random-weight models with transformers and their golden outputs.

Output: tests/fixtures/models/<name>/{config.json, model.safetensors, golden.json, logits0.f32,
logits1.f32} and tests/fixtures/models/README.md (regenerated).

  python3 scripts/make_fixtures.py               # all fixtures
  python3 scripts/make_fixtures.py llama qwen2   # only these
  python3 scripts/make_fixtures.py --search NAME [N [key=val ...]]
      # try seeds 0..N-1 (optionally overriding std/router_std/escb), print margins, write nothing

Weights are drawn by this script (not by transformers' initialisers) from a torch.Generator
seeded with the fixture's fixed seed, rounded to bfloat16 and stored as BF16 (except
DeepSeek-V3's e_score_correction_bias, stored F32 like the real checkpoints). Goldens come from
the stored file reloaded in float32 with eager attention. Reruns are bit-for-bit identical
(same torch/transformers versions, one CPU thread).
"""

import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

N_GREEDY = 32
PROMPT0 = [1, 45, 120, 7, 213, 88, 19]
PROMPT1_LEN = 77
PROMPT_SEED = 20240607

# Thresholds the chosen seeds satisfy (checked on every run).
MIN_REL_MARGIN = 1e-3
MIN_ROUTER_GAP = 1e-3
# bf16 robustness (transformers' own bf16 run, fixture_common.hf_bf16_report), checked too:
# max|bf16 - fp32| / max|fp32| ≤ MAX_BF16_REL per prompt, no confident top-1 mismatch,
# and (MoE) no routing difference, neither with bf16 nor with fp32 routers.
MAX_BF16_REL = 1e-2
# the greedy continuation must not be degenerate (e.g. a tied-embedding model that only copies its
# last token): at least this many distinct ids among the 32
MIN_DISTINCT_GREEDY = 8


def llama_like(arch, model_type, **kw):
    c = {"architectures": [arch], "model_type": model_type, "hidden_act": "silu",
         "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "use_cache": True,
         "attention_dropout": 0.0}
    c.update(kw)
    return c


def deepseek(arch, model_type, **kw):
    c = {"architectures": [arch], "model_type": model_type, "hidden_act": "silu",
         "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1, "use_cache": True,
         "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
         "moe_layer_freq": 1, "ep_size": 1, "aux_loss_alpha": 0.001, "seq_aux": True,
         "num_nextn_predict_layers": 0, "pretraining_tp": 1}
    c.update(kw)
    return c


# name -> spec. std: weight std (also written as initializer_range); router_std: router weight
# std; bias_std: std of linear biases; norm: (lo, hi) uniform range of norm weights.
# Optional: emb_std: token-embedding std; expert_std: std of the routed experts' weights;
# signed_final_norm: give model.norm.weight random signs; escb: DeepSeek-V3 bias range.
#
# Scales are chosen for bf16 robustness as well as fp32 margins: std ≈ 0.8/sqrt(hidden) keeps each
# matrix's gain below 1 (the old 0.25 doubled activations per matrix and made transformers' own
# bf16 run miss the fp32 goldens by up to 0.7, with routing flips), and embeddings N(0, 1) make the
# exactly stored embedding a large share of the residual stream, which roughly halves the bf16
# drift of the router inputs. Tied-embedding models (llama, qwen3) would then just repeat their
# last token (its own logit is |e|² times the final norm weights), so their final norm weights
# carry random signs. gpt_neox and gptj keep 0.25 (their bf16 run already stays within 1e-2).
# deepseek_v2_group's routed_scaling_factor 16 made the routed experts dominate
# the residual and amplify drift, so its experts are drawn 2× smaller (output ~8× smaller).
# Seeds: the one with the largest hf_bf16 router_safety (MoE; searched 0..149, qwen3_moe and
# DeepSeek-V3 0..399, deepseek_v2_group 0..119) / a good greedy margin and low bf16 error (dense,
# 0..29) among seeds passing every check, from `--search`.
FIXTURES = {
    "deepseek_v3": dict(
        seed=189, std=0.1, emb_std=1.0, router_std=0.3, bias_std=0.1, norm=(0.6, 1.4), escb=0.02,
        config=deepseek(
            "DeepseekV3ForCausalLM", "deepseek_v3",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
            q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
            topk_method="noaux_tc", scoring_func="sigmoid", n_group=4, topk_group=2,
            norm_topk_prob=True, routed_scaling_factor=2.5,
            max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
            rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                          "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
        highlights="MLA with q_lora_rank 32 (q_a_proj/q_a_layernorm/q_b_proj), kv_lora_rank 32, "
                   "qk_nope 32 / qk_rope 16 / v 32, 4 heads; YaRN factor 4, original_max_position_embeddings 32, "
                   "beta_fast 32 / beta_slow 1, mscale = mscale_all_dim = 1 (cos/sin factor 1, softmax scale × "
                   "(0.1·ln 4 + 1)² = 1.296477); layer 0 dense, layers 1-2 MoE: 8 routed experts top-2, "
                   "noaux_tc sigmoid routing, n_group 4 / topk_group 2, random e_score_correction_bias "
                   "(uniform ±0.02, F32), norm_topk_prob, routed_scaling_factor 2.5, 1 shared expert.",
        notes="rms_norm_eps 1e-6 so the q_a/kv_a_layernorm eps question (transformers builds them with the "
              "default 1e-6, models.md §7.1) cannot matter. e_score_correction_bias is small (|b| ≤ 0.02) "
              "and at every token the k-th largest biased score of the kept groups stays positive "
              "(router_facts.min_kth_biased_score_in_kept_groups; a few scores of other experts are slightly "
              "negative, router_facts.min_biased_score), so a dropped group's experts filled with 0.0 can never "
              "outrank a chosen one and the 0.0-vs-−inf group-mask fill (models.md §13.3) cannot change the selection; "
              "transformers 5.23 itself already fills with −inf. factor 4 = max_position_embeddings / original_max_position_embeddings, "
              "so implementations that derive the factor from that ratio agree."),
    "deepseek_v3_noqlora": dict(
        seed=305, std=0.1, emb_std=1.0, router_std=0.3, bias_std=0.1, norm=(0.6, 1.4), escb=0.02,
        config=deepseek(
            "DeepseekV3ForCausalLM", "deepseek_v3",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
            q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
            n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1, first_k_dense_replace=1,
            topk_method="noaux_tc", scoring_func="sigmoid", n_group=1, topk_group=1,
            norm_topk_prob=True, routed_scaling_factor=2.0,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=50000.0, rope_scaling=None),
        highlights="Moonlight-style: MLA with q_lora_rank null (plain q_proj [4·48, 64]), kv_lora_rank 32, "
                   "rope_theta 5e4, no rope_scaling (softmax scale 48^-0.5); layer 0 dense, layers 1-2 MoE: "
                   "8 experts top-3, noaux_tc sigmoid + random bias, n_group 1 / topk_group 1, norm_topk_prob, "
                   "routed_scaling_factor 2.0, 1 shared expert.",
        notes="n_group = topk_group = 1 makes the group step a no-op (no group is ever dropped, so the group-mask "
              "fill value cannot matter). Bias small (±0.02) as in deepseek_v3."),
    "deepseek_v2": dict(
        seed=46, std=0.1, emb_std=1.0, router_std=0.5, bias_std=0.1, norm=(0.6, 1.4),
        config=deepseek(
            "DeepseekV2ForCausalLM", "deepseek_v2",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
            q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=2, first_k_dense_replace=1,
            topk_method="greedy", scoring_func="softmax", n_group=1, topk_group=1,
            norm_topk_prob=False, routed_scaling_factor=1.5,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None),
        highlights="V2-Lite style: MLA with q_lora_rank null, kv_lora_rank 32, qk_nope 32 / qk_rope 16 / v 32; "
                   "layer 0 dense, layers 1-2 MoE: 8 experts top-2, softmax routing, topk_method greedy, "
                   "norm_topk_prob false, routed_scaling_factor 1.5, 2 shared experts (merged width 64); "
                   "no rope_scaling.",
        notes="No rope_scaling on purpose: transformers' native V2 port historically omitted the mscale² softmax "
              "factor (models.md §13.2; transformers 5.23 does apply it), so YaRN V2 is avoided. "
              "transformers 5.23's V2 router ignores norm_topk_prob (never renormalises); with false as here "
              "that matches DeepSeek's code."),
    "deepseek_v2_group": dict(
        seed=44, std=0.1, emb_std=1.0, router_std=0.25, expert_std=0.05, bias_std=0.1, norm=(0.6, 1.4),
        config=deepseek(
            "DeepseekV2ForCausalLM", "deepseek_v2",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
            q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
            n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1, first_k_dense_replace=1,
            topk_method="group_limited_greedy", scoring_func="softmax", n_group=4, topk_group=2,
            norm_topk_prob=False, routed_scaling_factor=16.0,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None),
        highlights="V2 (236B) style: MLA with q_lora_rank 32; layer 0 dense, layers 1-2 MoE: 8 experts top-3, "
                   "softmax routing, topk_method group_limited_greedy (group score = max prob), n_group 4 / "
                   "topk_group 2, norm_topk_prob false, routed_scaling_factor 16, 1 shared expert; no rope_scaling.",
        notes="transformers masks the dropped groups' probabilities with 0.0 before top-k; since softmax "
              "probabilities are > 0 and the kept groups hold 4 ≥ k = 3 experts, that equals −inf masking. "
              "No rope_scaling (see deepseek_v2)."),
    "qwen3_moe": dict(
        seed=301, std=0.1, emb_std=1.0, router_std=0.5, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "Qwen3MoeForCausalLM", "qwen3_moe",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
            mlp_only_layers=[1], max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1000000.0,
            rope_scaling=None, attention_bias=False, tie_word_embeddings=False, use_sliding_window=False,
            sliding_window=None, max_window_layers=3, output_router_logits=False,
            router_aux_loss_coef=0.001),
        highlights="head_dim 32 explicit with nh·hd = 128 ≠ hidden 64, GQA 4/2, per-head q_norm/k_norm "
                   "(random weights), layers 0 and 2 MoE (8 experts top-2, softmax, norm_topk_prob true), "
                   "layer 1 dense via mlp_only_layers [1] (intermediate_size 128).",
        notes="Layer rule: MoE iff i ∉ mlp_only_layers and (i+1) % decoder_sparse_step == 0."),
    "qwen2_moe": dict(
        seed=50, std=0.1, emb_std=1.0, router_std=0.5, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "Qwen2MoeForCausalLM", "qwen2_moe",
            vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            shared_expert_intermediate_size=96,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            num_experts=8, num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1,
            mlp_only_layers=[], qkv_bias=True, max_position_embeddings=512, rms_norm_eps=1e-6,
            rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=False, use_sliding_window=False,
            sliding_window=None, max_window_layers=2, output_router_logits=False,
            router_aux_loss_coef=0.001),
        highlights="MHA 4/4 heads with q/k/v biases (random), all layers MoE: 8 experts top-4, softmax, "
                   "norm_topk_prob false; shared expert (width 96) gated by sigmoid(shared_expert_gate · x).",
        notes=""),
    "mixtral": dict(
        seed=40, std=0.1, emb_std=1.0, router_std=0.5, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "MixtralForCausalLM", "mixtral",
            vocab_size=256, hidden_size=64, intermediate_size=96,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=512, rms_norm_eps=1e-5,
            rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False,
            output_router_logits=False, router_aux_loss_coef=0.02, router_jitter_noise=0.0),
        highlights="GQA 4/2, 4 experts top-2 (softmax over all experts, top-2 renormalised), "
                   "block_sparse_moe.experts.e.w1/w2/w3 naming.",
        notes="sliding_window null."),
    "llama": dict(
        seed=14, std=0.08, emb_std=1.0, signed_final_norm=True, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "LlamaForCausalLM", "llama",
            vocab_size=256, hidden_size=128, intermediate_size=192,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 32, "rope_type": "llama3"},
            tie_word_embeddings=True, attention_bias=False, mlp_bias=False, pretraining_tp=1),
        highlights="head_dim 32, GQA 4/2, tie_word_embeddings true (no lm_head.weight on disk), "
                   "llama3 rope scaling factor 8, low/high_freq_factor 1/4, original_max_position_embeddings 32: "
                   "with θ = 1e4 and 16 frequencies, j = 0 keeps its frequency (wavelength 6.3 < 8), j = 1, 2 are "
                   "smoothly interpolated (11.2, 19.9 in [8, 32]) and j ≥ 3 are divided by 8.",
        notes=""),
    "qwen2": dict(
        seed=23, std=0.1, emb_std=1.0, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "Qwen2ForCausalLM", "qwen2",
            vocab_size=288, hidden_size=64, intermediate_size=160,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None,
            tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096, max_window_layers=3),
        highlights="GQA 4/2, head_dim 16, q/k/v biases (random, non-zero), vocab 288 (not a power of two), "
                   "use_sliding_window false.",
        notes=""),
    "qwen3": dict(
        seed=19, std=0.1, emb_std=1.0, signed_final_norm=True, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "Qwen3ForCausalLM", "qwen3",
            vocab_size=256, hidden_size=64, intermediate_size=128, head_dim=32,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None,
            attention_bias=False, tie_word_embeddings=True, use_sliding_window=False, sliding_window=None,
            max_window_layers=2),
        highlights="dense Qwen3: per-head q_norm/k_norm (random weights) before RoPE, head_dim 32 with "
                   "nh·hd = 128 ≠ hidden 64, GQA 4/2, tie_word_embeddings true.",
        notes=""),
    "mistral": dict(
        seed=17, std=0.1, emb_std=1.0, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "MistralForCausalLM", "mistral",
            vocab_size=256, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
            max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            sliding_window=4096, tie_word_embeddings=False),
        highlights="MQA (num_key_value_heads 1), head_dim 16, sliding_window 4096 as in Mistral-7B-v0.1's config.",
        notes="sliding_window 4096 is far above every sequence here (≤ 77 tokens), so the window never "
              "masks anything; a runtime may ignore it for these goldens."),
    "mistral_swa": dict(
        seed=1, std=0.1, emb_std=1.0, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "MistralForCausalLM", "mistral",
            vocab_size=256, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
            sliding_window=6, tie_word_embeddings=False),
        highlights="sliding_window 6, shorter than both prompts and the greedy continuation: query i sees "
                   "keys i-5..i, so a window one key too wide (or none) changes the logits.",
        notes="The window really masks here (the mistral fixture's 4096 never does)."),
    "qwen2_yarn": dict(
        seed=3, std=0.1, emb_std=1.0, bias_std=0.1, norm=(0.6, 1.4),
        config=llama_like(
            "Qwen2ForCausalLM", "qwen2",
            vocab_size=256, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
            rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
            tie_word_embeddings=False, use_sliding_window=False, sliding_window=None, max_window_layers=2),
        highlights="Qwen-style YaRN: rope_scaling {type yarn, factor 4, original_max_position_embeddings 32}, "
                   "no mscale keys, so cos and sin are both scaled by the attention factor 0.1 ln 4 + 1 = 1.139 "
                   "(cos_sin_scale != 1); beta_fast/slow defaults 32/1.",
        notes=""),
    "gpt_neox": dict(
        seed=8, std=0.25, bias_std=0.1, norm=(0.6, 1.4),
        config={"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "torch_dtype": "bfloat16",
                "vocab_size": 300, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                "num_attention_heads": 4, "rotary_pct": 0.5, "rotary_emb_base": 10000,
                "hidden_act": "gelu", "layer_norm_eps": 1e-5, "use_parallel_residual": True,
                "max_position_embeddings": 256, "tie_word_embeddings": False, "attention_bias": True,
                "bos_token_id": 0, "eos_token_id": 0, "use_cache": True, "attention_dropout": 0.0,
                "hidden_dropout": 0.0},
        highlights="head_dim 16, rotary_pct 0.5 → 8 rotary dims (half-split pairs (j, j+4) within them), "
                   "use_parallel_residual true, exact gelu, LayerNorm with random weights and biases, "
                   "fused per-head [q|k|v] query_key_value with bias, vocab 300.",
        notes=""),
    "gptj": dict(
        seed=1, std=0.25, bias_std=0.1, norm=(0.6, 1.4),
        config={"architectures": ["GPTJForCausalLM"], "model_type": "gptj", "torch_dtype": "bfloat16",
                "vocab_size": 320, "n_embd": 64, "n_head": 2, "n_layer": 2, "rotary_dim": 16,
                "n_inner": None, "n_positions": 256, "activation_function": "gelu_new",
                "layer_norm_epsilon": 1e-5, "tie_word_embeddings": False, "bos_token_id": 0,
                "eos_token_id": 0, "use_cache": True, "attn_pdrop": 0.0, "embd_pdrop": 0.0,
                "resid_pdrop": 0.0},
        highlights="head_dim 32, rotary_dim 16 < head_dim (interleaved pairs (2j, 2j+1) on dims 0..15), "
                   "n_inner null → 4·64 = 256, gelu_new, single ln_1 shared by parallel attention and MLP, "
                   "fc_in/fc_out and lm_head with bias, no attention biases, vocab 320.",
        notes=""),
}

# Tensors that are buffers, not weights (old checkpoints carried some of them); never stored.
NON_WEIGHT_SUFFIXES = ("inv_freq", "original_inv_freq", "embed_positions", "masked_bias", "attn.bias",
                       "attention.bias", "rotary_emb.inv_freq")


def prompts_for(vocab):
    g = torch.Generator().manual_seed(PROMPT_SEED)
    p1 = torch.randint(3, vocab, (PROMPT1_LEN,), generator=g).tolist()
    return [list(PROMPT0), p1]


def is_norm_weight(name, t):
    return t.ndim == 1 and not name.endswith("bias")


def randomize(model, spec, seed):
    """Overwrites every parameter (and the noaux_tc bias buffer) from a seeded generator.
    Returns {name: fp32 tensor} of tensors that must be stored in F32."""
    g = torch.Generator().manual_seed(seed)
    std = spec["std"]
    f32 = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_norm_weight(name, p):
                lo, hi = spec["norm"]
                v = lo + (hi - lo) * torch.rand(p.shape, generator=g)
                if name == "model.norm.weight" and spec.get("signed_final_norm"):
                    # tied lm_head: random signs stop the final-position token's own embedding
                    # (a large part of the residual) from always winning its own logit
                    v = v * (2 * torch.randint(0, 2, p.shape, generator=g) - 1)
            elif name.endswith("bias"):
                v = spec["bias_std"] * torch.randn(p.shape, generator=g)
            elif name.endswith(("embed_tokens.weight", "embed_in.weight", "wte.weight")) and "emb_std" in spec:
                v = spec["emb_std"] * torch.randn(p.shape, generator=g)
            elif ".experts." in name and "expert_std" in spec:
                v = spec["expert_std"] * torch.randn(p.shape, generator=g)
            elif name.endswith(".gate.weight") and "router_std" in spec:
                v = spec["router_std"] * torch.randn(p.shape, generator=g)
            else:
                v = std * torch.randn(p.shape, generator=g)
            # round to bf16 now so the fp32 model used for seed search equals the stored one
            p.copy_(v.to(torch.bfloat16).to(torch.float32))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                v = spec["escb"] * (2 * torch.rand(b.shape, generator=g) - 1)
                b.copy_(v)
                f32[name] = v.clone()
    return f32


def build(name, spec, seed):
    """Returns (config_dict, model fp32 with bf16-representable weights, f32-only tensors)."""
    cfg = dict(spec["config"])
    cfg["initializer_range"] = spec["std"]
    tmp = tempfile.mkdtemp(prefix=f"fx_{name}_")
    try:
        fc.write_json(os.path.join(tmp, "config.json"), cfg)
        config = AutoConfig.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, **fc.LOAD_KW)
    model.eval()
    f32 = randomize(model, spec, seed)
    return cfg, model, f32


def evaluate(model, vocab):
    prompts = prompts_for(vocab)
    new, rel, absm = fc.greedy(model, prompts[0], N_GREEDY)
    gap, extra = fc.min_router_gap(model, [prompts[0] + new, prompts[1]])
    refs = [fc.full_logits(model, p) for p in prompts]
    b16 = fc.hf_bf16_report(model, fc.bf16_copy(model), prompts, refs, new)
    b16["rope_sensitivity"] = fc.rope_sensitivity(model, prompts[1], refs[1])
    b16["distinct_greedy"] = len(set(new))
    return rel, absm, gap, extra, b16


def bf16_ok(b16):
    """The bf16-robustness requirements (see MAX_BF16_REL)."""
    return (max(b16["rel_error"]) <= MAX_BF16_REL and not any(b16["confident_mismatches"])
            and not any(b16.get("routing_mismatches", [])))


def save(name, spec, seed, out_dir):
    cfg, model, f32 = build(name, spec, seed)
    built = {k: v.clone() for k, v in model.state_dict().items()}
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, fn))
    tmp = tempfile.mkdtemp(prefix=f"fx_{name}_")
    try:
        model.to(torch.bfloat16).save_pretrained(tmp)  # writes the on-disk (per-expert) names
        sd = load_file(os.path.join(tmp, "model.safetensors"))
    finally:
        shutil.rmtree(tmp)
    out = {}
    for k in sorted(sd):
        if k.endswith(NON_WEIGHT_SUFFIXES):
            print(f"  dropping non-weight tensor {k}")
            continue
        if k.endswith("e_score_correction_bias"):
            src = [v for n, v in f32.items() if n.endswith(k.split("model.", 1)[-1])]
            assert len(src) == 1, k
            out[k] = src[0].to(torch.float32).contiguous()
        else:
            assert sd[k].dtype == torch.bfloat16, (k, sd[k].dtype)
            out[k] = sd[k].contiguous()
    save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    fc.write_json(os.path.join(out_dir, "config.json"), cfg)

    ref, info = AutoModelForCausalLM.from_pretrained(out_dir, **fc.LOAD_KW, output_loading_info=True)
    ref.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{name}: loading info {bad}"
    # the reloaded model must be the model we built (bf16 round trip is exact by construction)
    b = ref.state_dict()
    assert set(built) == set(b), (name, set(built) ^ set(b))
    for k in built:
        assert torch.equal(built[k], b[k]), f"{name}: reload mismatch in {k}"
    if name == "llama":
        assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()

    prompts = prompts_for(cfg["vocab_size"])
    g = fc.make_golden(ref, out_dir, cfg["architectures"][0], prompts, N_GREEDY,
                       notes=(spec["notes"] + " " if spec["notes"] else "")
                       + f"Random weights (seed {seed}): matrices N(0, {spec['std']}²)"
                       + (f", token embeddings N(0, {spec['emb_std']}²)" if "emb_std" in spec else "")
                       + (f", routed experts N(0, {spec['expert_std']}²)" if "expert_std" in spec else "")
                       + (f", router N(0, {spec['router_std']}²)" if "router_std" in spec else "")
                       + f", biases N(0, {spec['bias_std']}²), norm weights U{tuple(spec['norm'])}"
                       + (" (model.norm.weight with random signs)" if spec.get("signed_final_norm") else "")
                       + (f", e_score_correction_bias U(±{spec['escb']})" if "escb" in spec else "")
                       + "; stored BF16, goldens computed in fp32 from the stored values.",
                       extra={"config_highlights": spec["highlights"]})
    assert g["min_greedy_margin"] >= MIN_REL_MARGIN, (name, g["min_greedy_margin"])
    assert g["greedy_matches_kv_cache_decode"], name
    assert len(set(g["greedy"])) >= MIN_DISTINCT_GREEDY, (name, g["greedy"])
    assert bf16_ok(g["hf_bf16"]), (name, g["hf_bf16"])
    if g["min_router_gap"] is not None:
        assert g["min_router_gap"] >= MIN_ROUTER_GAP, (name, g["min_router_gap"])
    rf = g.get("router_facts", {})
    if "min_kth_biased_score_in_kept_groups" in rf:
        assert rf["min_kth_biased_score_in_kept_groups"] > 0
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    assert size <= 2 * 1024 * 1024, (name, size)
    print(f"  {name}: seed {seed}, {size / 1024:.0f} KiB, margin rel {g['min_greedy_margin']:.4g} "
          f"abs {g['min_greedy_margin_abs']:.4g}, router gap {g['min_router_gap']}, "
          f"kv-cache decode match {g['greedy_matches_kv_cache_decode']}")


def apply_overrides(spec, overrides):
    """key=val overrides a spec number (std, router_std, bias_std, escb, seed);
    cfg.key=val (val as JSON) a config field."""
    spec = dict(spec)
    for o in overrides:
        k, v = o.split("=", 1)
        if k.startswith("cfg."):
            spec["config"] = dict(spec["config"])
            spec["config"][k[4:]] = json.loads(v)
        else:
            spec[k] = float(v)
    return spec


def search(name, seeds, overrides=()):
    spec = apply_overrides(FIXTURES[name], overrides)
    for seed in seeds:
        cfg, model, _ = build(name, spec, seed)
        rel, absm, gap, extra, b16 = evaluate(model, cfg["vocab_size"])
        ok = (rel >= MIN_REL_MARGIN and (gap is None or gap >= MIN_ROUTER_GAP) and bf16_ok(b16)
              and b16["distinct_greedy"] >= MIN_DISTINCT_GREEDY
              and all(v > 0 for k, v in extra.items() if k == "min_kth_biased_score_in_kept_groups"))
        gr = b16.get("min_router_gap_rel")
        print(f"{name} seed {seed}: margin rel {rel:.4g} abs {absm:.4g} router {gap if gap is None else f'{gap:.4g}'}"
              f" rel {gr if gr is None else f'{gr:.4g}'} | bf16 rel {b16['rel_error'][0]:.4f}/{b16['rel_error'][1]:.4f}"
              f" conf {b16['confident_mismatches']} gflips {b16['greedy_flips']}"
              f" rope {b16['rope_sensitivity'] and round(b16['rope_sensitivity'], 3)} distinct {b16['distinct_greedy']}"
              f" routeMM {b16.get('routing_mismatches')} safety {b16.get('router_safety') and round(b16['router_safety'], 3)}"
              f"/{b16.get('router_rounding_safety') and round(b16['router_rounding_safety'], 3)}"
              f" {'OK' if ok else ''}", flush=True)


def main(argv):
    fc.setup_torch()
    fc.print_versions("make_fixtures")
    if argv and argv[0] == "--search":
        n = argv[2] if len(argv) > 2 else "20"
        seeds = range(*map(int, n.split(":"))) if ":" in n else range(int(n))
        search(argv[1], seeds, argv[3:])
        return
    names = argv or list(FIXTURES)
    for n in names:
        spec = FIXTURES[n]
        print(f"building {n}")
        save(n, spec, spec["seed"], os.path.join(fc.FIXTURE_ROOT, n))
    fc.write_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
