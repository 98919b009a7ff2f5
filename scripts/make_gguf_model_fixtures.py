#!/usr/bin/env python3
"""Writes the quantized GGUF model fixtures in tests/fixtures/gguf/ and their goldens:

  qwen2-q8_0.gguf    tests/fixtures/models/qwen2 (3 layers, hidden 64) with every matrix Q8_0, the
                     embedding and output included; norms and biases F32 (as llama.cpp stores them).
  qwen2-q4_k.gguf    a fresh random Qwen2 (1 layer, hidden 256, ffn 256, vocab 512: K-quants need rows
                     of 256) holding the stories260K tokenizer, formats mixed: attn_q, ffn_gate Q4_K;
                     attn_k, attn_v Q5_K; ffn_up and token_embd (tied output) Q6_K; attn_output Q4_0
                     and ffn_down Q8_0 (row-parallel: at --tp 2 their 128-column halves are whole
                     32-weight blocks). `qilin run` can generate text from it.
  qwen2moe-q8_0.gguf tests/fixtures/models/qwen2_moe (8 experts, top 4, a gated shared expert) with
                     the matrices Q8_0, the routed experts as GGUF stacks (ffn_{gate,up,down}_exps),
                     the routers (ffn_gate_inp, ffn_gate_inp_shexp) and ffn_down_shexp F32 (so
                     that --tp 2 splits only whole blocks).

Q8_0 and Q4_0 come from gguf-py's quantizer; gguf-py has no K-quant quantizer, so Q4_K, Q5_K and
Q6_K are quantized here (the simple scheme host/quant.h documents, not llama.cpp's search). Every
quantized tensor is then DEQUANTIZED WITH GGUF-PY (an implementation independent of qilin's) and the
goldens come from transformers in fp32 holding those dequantized weights: NAME.json (prompts, vocab)
and NAME.logitsK.f32 (raw float32 [len(prompt K), vocab], every position); hf_bf16_error: per prompt,
max|diff|/max|ref| of transformers' own bf16 run against them. So a runtime that reads
the blocks as llama.cpp defines them matches the goldens to fp32 rounding.

Also blocks.gguf: two rows of random bytes in each of Q8_0, Q4_0, Q4_K, Q5_K, Q6_K (fp16 scales
finite) and, beside each, gguf-py's dequantization of them as F32 (`<type>.f32`): known values for
qilin's host and device decoders.

Needs torch, transformers, numpy and gguf (pip install gguf; made with gguf 0.19.0). Run by hand:
  python3 scripts/make_gguf_model_fixtures.py
"""

import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402

OUT = os.path.join(fc.REPO, "tests", "fixtures", "gguf")
MODELS = os.path.join(fc.REPO, "tests", "fixtures", "models")


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


# ---- K-quant quantizers (host/quant.h's scheme; layouts as ggml's block_q4_K / q5_K / q6_K) ----

def quant_q45_k(w, five):
    """bytes [rows, nb * (176 if five else 144)] of a float32 [rows, cols] matrix, cols % 256 == 0."""
    rows, cols = w.shape
    top = 31 if five else 15
    x = w.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(0.0, x.min(axis=2))
    span = (x.max(axis=2) - lo) / top
    mins = -lo
    d = f16(span.max(axis=1) / 63).astype(np.float32)
    dmin = f16(mins.max(axis=1) / 63).astype(np.float32)
    sc = np.clip(np.rint(np.divide(span, d[:, None], out=np.zeros_like(span), where=d[:, None] > 0)), 0, 63)
    m = np.clip(np.rint(np.divide(mins, dmin[:, None], out=np.zeros_like(mins), where=dmin[:, None] > 0)), 0, 63)
    step = (d[:, None] * sc)[:, :, None]
    u = np.divide(x + (dmin[:, None] * m)[:, :, None], step, out=np.zeros_like(x), where=step > 0)
    u = np.clip(np.rint(u), 0, top).astype(np.uint8)
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    nb = x.shape[0]
    scales = np.zeros((nb, 12), np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | (sc[:, 4:8] >> 4) << 6
    scales[:, 4:8] = m[:, 0:4] | (m[:, 4:8] >> 4) << 6
    scales[:, 8:12] = (sc[:, 4:8] & 15) | (m[:, 4:8] & 15) << 4
    qs = np.zeros((nb, 4, 32), np.uint8)
    for c in range(4):
        qs[:, c] = (u[:, 2 * c] & 15) | (u[:, 2 * c + 1] & 15) << 4
    parts = [d.astype(np.float16).view(np.uint8).reshape(nb, 2),
             dmin.astype(np.float16).view(np.uint8).reshape(nb, 2), scales]
    if five:
        qh = np.zeros((nb, 32), np.uint8)
        for s in range(8):
            qh |= ((u[:, s] >> 4) & 1) << s
        parts.append(qh)
    parts.append(qs.reshape(nb, 128))
    return np.concatenate(parts, axis=1).reshape(rows, -1)


def quant_q6_k(w):
    rows, cols = w.shape
    x = w.reshape(-1, 16, 16).astype(np.float32)
    span = np.abs(x).max(axis=2) / 31
    d = f16(span.max(axis=1) / 127).astype(np.float32)
    sc = np.clip(np.rint(np.divide(span, d[:, None], out=np.zeros_like(span), where=d[:, None] > 0)), -128, 127)
    step = (d[:, None] * sc)[:, :, None]
    q = np.clip(np.rint(np.divide(x, step, out=np.zeros_like(x), where=step > 0)), -32, 31)
    u = (q + 32).astype(np.uint8).reshape(-1, 256)
    nb = u.shape[0]
    ql = np.zeros((nb, 128), np.uint8)
    qh = np.zeros((nb, 64), np.uint8)
    for e in range(256):
        h, r = divmod(e, 128)
        quarter, l = divmod(r, 32)
        i = 64 * h + l + 32 * (quarter & 1)
        ql[:, i] |= (u[:, e] & 15) << (4 if quarter >= 2 else 0)
        qh[:, 32 * h + l] |= (u[:, e] >> 4) << (2 * quarter)
    parts = [ql, qh, sc.astype(np.int8).view(np.uint8), d.astype(np.float16).view(np.uint8).reshape(nb, 2)]
    return np.concatenate(parts, axis=1).reshape(rows, -1)


def quantize(w, qtype):
    """(bytes, gguf-py's dequantization) of float32 matrix or expert stack w in ggml type qtype."""
    import gguf
    Q = gguf.GGMLQuantizationType
    flat = w.reshape(-1, w.shape[-1]).astype(np.float32)
    if qtype in (Q.Q8_0, Q.Q4_0):
        raw = gguf.quants.quantize(flat, qtype)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        raw = quant_q45_k(flat, qtype == Q.Q5_K)
    elif qtype == Q.Q6_K:
        raw = quant_q6_k(flat)
    else:
        raise ValueError(qtype)
    deq = gguf.quants.dequantize(raw, qtype).reshape(w.shape)
    err = np.abs(deq - w).max() / max(np.abs(w).max(), 1e-30)
    assert err < (0.02 if qtype == Q.Q8_0 else 0.2), f"{qtype.name}: relative error {err}"
    return raw.reshape(*w.shape[:-1], -1), deq


# ---- HF -> GGUF ----

def gguf_names(sd, moe, tied):
    """(gguf name, HF key (or fused key, half), is a matrix) for a Qwen2 / Qwen2-MoE state dict."""
    out = [("token_embd.weight", "model.embed_tokens.weight", True),
           ("output_norm.weight", "model.norm.weight", False)]
    if not tied:
        out.append(("output.weight", "lm_head.weight", True))
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("model.layers."))
    for i in range(n_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out += [(b + "attn_norm.weight", p + "input_layernorm.weight", False),
                (b + "ffn_norm.weight", p + "post_attention_layernorm.weight", False)]
        for hf, g in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            out.append((b + g + ".weight", p + f"self_attn.{hf}.weight", True))
            if p + f"self_attn.{hf}.bias" in sd:
                out.append((b + g + ".bias", p + f"self_attn.{hf}.bias", False))
        if not moe:
            for hf, g in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
                out.append((b + g + ".weight", p + f"mlp.{hf}.weight", True))
            continue
        out += [(b + "ffn_gate_inp.weight", p + "mlp.gate.weight", False),
                (b + "ffn_gate_exps.weight", (p + "mlp.experts.gate_up_proj", 0), True),
                (b + "ffn_up_exps.weight", (p + "mlp.experts.gate_up_proj", 1), True),
                (b + "ffn_down_exps.weight", p + "mlp.experts.down_proj", True),
                (b + "ffn_gate_inp_shexp.weight", p + "mlp.shared_expert_gate.weight", False)]
        for hf, g in (("gate_proj", "ffn_gate_shexp"), ("up_proj", "ffn_up_shexp"), ("down_proj", "ffn_down_shexp")):
            out.append((b + g + ".weight", p + f"mlp.shared_expert.{hf}.weight", True))
    return out


def hf_tensor(sd, key):
    if isinstance(key, tuple):  # one half of a fused gate_up [E, 2M, H]
        t = sd[key[0]]
        half = t.shape[1] // 2
        return t[:, key[1] * half:(key[1] + 1) * half, :]
    return sd[key]


def put_back(sd, key, value):
    if isinstance(key, tuple):
        half = sd[key[0]].shape[1] // 2
        sd[key[0]][:, key[1] * half:(key[1] + 1) * half, :] = value
    else:
        sd[key].copy_(value)


def write_model(name, model, cfg, moe, qtype_of, prompts, tokenizer=None):
    import gguf
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = os.path.join(OUT, name + ".gguf")
    arch = "qwen2moe" if moe else "qwen2"
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if moe:
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)
    if tokenizer:
        tokenizer(w)
    counts = {}
    for gname, key, matrix in gguf_names(sd, moe, cfg.tie_word_embeddings):
        t = hf_tensor(sd, key).float().numpy()
        qtype = qtype_of(gname) if matrix else None
        if qtype is None:
            w.add_tensor(gname, np.ascontiguousarray(t, dtype=np.float32))
            continue
        raw, deq = quantize(t, qtype)
        w.add_tensor(gname, np.ascontiguousarray(raw), raw_dtype=qtype)
        put_back(sd, key, torch.from_numpy(deq.astype(np.float32)))
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd)
    files, ref = [], []
    for k, ids in enumerate(prompts):
        f = f"{name}.logits{k}.f32"
        ref.append(fc.full_logits(model, ids))
        fc.write_logits(os.path.join(OUT, f), ref[-1])
        files.append(f)
    # transformers itself in bf16 on the same weights: the scale of a careful bf16 run's error
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    hf_bf16 = [float((fc.full_logits(model16, ids) - r).abs().max() / r.abs().max()) for ids, r in zip(prompts, ref)]
    fc.write_json(os.path.join(OUT, name + ".json"), {
        "gguf": name + ".gguf", "prompts": prompts, "logits_files": files, "vocab": cfg.vocab_size,
        "hf_bf16_error": hf_bf16, "quantized": counts, **fc.versions(),
        "notes": "goldens: transformers fp32 on gguf-py's dequantization of the stored blocks"})
    print(f"{name}.gguf: {os.path.getsize(path)} bytes, {counts}")


def load_fixture(name):
    import transformers
    return transformers.AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, name), **fc.LOAD_KW).eval()


def stories_tokenizer(w):
    import make_gguf_fixture as vocab
    pieces, scores, types, sp = vocab.read_sentencepiece(os.path.join(vocab.STORIES_DIR, "tok512.model"))
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)


def write_blocks():
    """blocks.gguf: random blocks of each format and gguf-py's dequantization of them."""
    import gguf
    Q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(15)
    w = gguf.GGUFWriter(os.path.join(OUT, "blocks.gguf"), arch="llama")
    for qtype, d_at, n_d in ((Q.Q8_0, 0, 1), (Q.Q4_0, 0, 1), (Q.Q4_K, 0, 2), (Q.Q5_K, 0, 2), (Q.Q6_K, 208, 1)):
        block, bb = gguf.GGML_QUANT_SIZES[qtype]
        nblk = 2 * (512 // block) if block == 32 else 4  # two rows of 512 (K: 2 x 2 blocks)
        raw = rng.integers(0, 256, size=(nblk, bb), dtype=np.uint8)
        for j in range(n_d):  # finite fp16 scales of moderate size
            h = f16(rng.uniform(0.5, 2.0, nblk) * rng.choice([-1, 1], nblk) * 2.0 ** rng.integers(-12, 2, nblk))
            raw[:, d_at + 2 * j:d_at + 2 * j + 2] = h.view(np.uint8).reshape(nblk, 2)
        raw = raw.reshape(2, -1)
        name = qtype.name.lower()
        w.add_tensor(name, raw, raw_dtype=qtype)
        w.add_tensor(name + ".f32", gguf.quants.dequantize(raw, qtype).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"blocks.gguf: {os.path.getsize(os.path.join(OUT, 'blocks.gguf'))} bytes")


def main():
    import gguf
    import transformers
    Q = gguf.GGMLQuantizationType
    fc.setup_torch()
    os.makedirs(OUT, exist_ok=True)
    write_blocks()
    short, longer = [1, 17, 42, 7, 99, 3, 250, 12], [(i * 37 + 11) % 250 + 2 for i in range(24)]

    write_model("qwen2-q8_0", load_fixture("qwen2"), load_fixture("qwen2").config, False,
                lambda n: Q.Q8_0, [short, longer])

    # the row-parallel matrices (attn_output, ffn_down: their input columns split at --tp 2 into
    # 128, half a K-quant block) take 32-weight formats, so the file also runs at --tp 2
    mix = {"attn_q": Q.Q4_K, "ffn_gate": Q.Q4_K, "attn_k": Q.Q5_K, "attn_v": Q.Q5_K, "ffn_up": Q.Q6_K,
           "token_embd": Q.Q6_K, "attn_output": Q.Q4_0, "ffn_down": Q.Q8_0}
    torch.manual_seed(15)
    cfg = transformers.Qwen2Config(vocab_size=512, hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM._from_config(cfg, **{k: v for k, v in fc.LOAD_KW.items()
                                                                if k != "experts_implementation"}).eval()
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dim() == 2:
                v.normal_(0.0, 1.0 if "embed" in k else 0.08)
            elif "norm" in k:
                v.uniform_(0.6, 1.4)
            else:
                v.normal_(0.0, 0.1)
    write_model("qwen2-q4_k", model, cfg, False, lambda n: mix[n.split(".")[-2]], [short, longer],
                tokenizer=stories_tokenizer)

    moe = load_fixture("qwen2_moe")
    # ffn_down_shexp stays F32 (its 96 input columns split in two are 1.5 Q8_0 blocks), so the
    # file also runs at --tp 2, with and without --ep
    write_model("qwen2moe-q8_0", moe, moe.config, True, lambda n: None if "ffn_down_shexp" in n else Q.Q8_0,
                [short, longer])


if __name__ == "__main__":
    main()
