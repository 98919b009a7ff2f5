#!/usr/bin/env python3
"""Goldens for generation paths that golden.json does not reach, from Hugging Face transformers.

Writes into existing fixture directories (tests/fixtures/models/<name>/):

  generate.json   greedy generation with a repetition penalty: transformers
                  generate(do_sample=False, repetition_penalty=R), i.e. RepetitionPenaltyLogitsProcessor
                  over input_ids = prompt + generated ids, then argmax. Also checked against a plain loop
                  that applies the penalty itself (full recompute each step), which gives the margins.
  decode.json     teacher-forced decode rows: a prompt of `len` ids whose logits rows at positions
  decode.f32      prefill .. len-1 are stored ([len - prefill, vocab] little-endian float32, one full
                  fp32 forward). A runtime prefills `prefill` ids, then feeds the rest one token per
                  step through its decode path and compares every step's FULL row. A prompt longer than
                  256 puts more than 256 keys in the cache, so decode attention splits its keys
                  (flash-decoding; cuda/attention_tile.cuh kMinChunk = 256).

  python3 scripts/make_generation_goldens.py        # every fixture listed below

Needs torch + transformers (CPU), like scripts/make_fixtures.py; one thread, bit-for-bit reruns.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_common as fc  # noqa: E402

from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: E402

N_NEW = 24
# fixture -> (prompt, penalty). Penalties chosen so that the ids differ from plain greedy early on.
REPETITION = {
    "stories260K": ([1, 403, 407, 261, 378, 430, 274, 9, 402, 268, 437], 1.3),
    "llama": ([1, 45, 120, 7, 213, 88, 19], 1.5),
}
# fixture -> (prompt length, prefill length, prompt seed)
DECODE = {
    "qwen2": (300, 288, 7),        # 289..300 cached keys: split-KV decode
    "mistral_swa": (300, 288, 8),  # sliding window 6 with split-KV decode
    "qwen2_yarn": (48, 24, 9),     # YaRN, 24 decode rows
    "llama": (40, 8, 10),          # llama3 rope scaling, tied embeddings: 32 decode rows
}


def load(name):
    d = os.path.join(fc.FIXTURE_ROOT, name)
    m = AutoModelForCausalLM.from_pretrained(d, **fc.LOAD_KW)
    m.eval()
    return d, m


@torch.no_grad()
def penalised_greedy(model, prompt, penalty, n_new):
    """The HF rule by hand: each distinct id of prompt + generated so far, logit > 0 divided by
    the penalty, < 0 multiplied; argmax. Returns (ids, min relative top-2 margin)."""
    ids, new, rel = list(prompt), [], float("inf")
    for _ in range(n_new):
        last = fc.full_logits(model, ids)[-1].clone()
        seen = torch.tensor(sorted(set(ids)))
        v = last[seen]
        last[seen] = torch.where(v < 0, v * penalty, v / penalty)
        top = torch.topk(last, 2)
        rel = min(rel, float(top.values[0] - top.values[1]) / float(last.max() - last.min()))
        ids.append(int(top.indices[0]))
        new.append(ids[-1])
    return new, rel


@torch.no_grad()
def hf_generate(model, prompt, penalty, n_new):
    gc = GenerationConfig(do_sample=False, repetition_penalty=penalty, max_new_tokens=n_new,
                          min_new_tokens=n_new, eos_token_id=None, pad_token_id=0, bos_token_id=None)
    out = model.generate(torch.tensor([prompt]), generation_config=gc)
    return out[0, len(prompt):].tolist()


def repetition_golden(name, prompt, penalty):
    d, model = load(name)
    ids = hf_generate(model, prompt, penalty, N_NEW)
    plain = hf_generate(model, prompt, 1.0, N_NEW)
    mine, rel = penalised_greedy(model, prompt, penalty, N_NEW)
    assert ids == mine, (name, ids, mine)
    first_diff = next(i for i in range(N_NEW) if ids[i] != plain[i])
    assert first_diff <= N_NEW // 2, (name, "the penalty changes nothing early", ids, plain)
    # an fp32 runtime stays within 1e-5 of max|logit| (tests/golden.h), below a tenth of this margin
    assert rel >= 1e-4, (name, "margin too small for an fp32 runtime", rel)
    g = {"reference": "transformers generate(do_sample=False, repetition_penalty=R, max_new_tokens=N), "
                      "fp32 CPU eager; equal to a hand loop applying the penalty to prompt + generated ids",
         **fc.versions(),
         "prompt": prompt, "repetition_penalty": penalty, "ids": ids, "ids_without_penalty": plain,
         "first_difference": first_diff, "min_margin_rel": rel}
    fc.write_json(os.path.join(d, "generate.json"), g)
    print(f"  {name}: penalty {penalty}, ids differ from plain greedy from step {first_diff}, margin {rel:.4g}")


def decode_golden(name, length, prefill, seed):
    d, model = load(name)
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, V, (length,), generator=g).tolist()
    rows = fc.full_logits(model, prompt)[prefill:]
    assert torch.isfinite(rows).all()
    fc.write_logits(os.path.join(d, "decode.f32"), rows)
    fc.write_json(os.path.join(d, "decode.json"), {
        "reference": "one full fp32 forward (CPU, eager, no cache) of `prompt`; rows prefill..len-1",
        **fc.versions(), "prompt": prompt, "prefill": prefill, "vocab": V, "logits_file": "decode.f32"})
    print(f"  {name}: decode rows {prefill}..{length - 1} ({(length - prefill) * V * 4 // 1024} KiB)")


def main():
    fc.setup_torch()
    fc.print_versions("make_generation_goldens")
    for name, (prompt, penalty) in REPETITION.items():
        repetition_golden(name, prompt, penalty)
    for name, (length, prefill, seed) in DECODE.items():
        decode_golden(name, length, prefill, seed)


if __name__ == "__main__":
    main()
