"""quantised_fixture.py — a fixture holding another fixture's weights with some of them stored
quantised, and goldens from transformers in fp32 on the DEQUANTISED weights (so a runtime that
dequantises exactly matches them to fp32 rounding). make_fp8_moe_fixture.py and
make_int4_fixture.py say which weights and how.
"""

import copy
import os
import shutil
import tempfile

import torch
from safetensors.torch import load_file, save_file

import fixture_common as fc
import make_fixtures as mf
from transformers import AutoModelForCausalLM


def _on_disk_bf16(model, prefix):
    """The model's bf16 state dict under the names save_pretrained writes (per-expert tensors)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        model.to(torch.bfloat16).save_pretrained(tmp)
        return load_file(os.path.join(tmp, "model.safetensors"))
    finally:
        shutil.rmtree(tmp)


def _reference(deq_sd, cfg, name):
    """transformers' model in fp32 holding the dequantised weights."""
    tmp = tempfile.mkdtemp(prefix=f"fx_{name}_ref_")
    try:
        save_file(deq_sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        fc.write_json(os.path.join(tmp, "config.json"), cfg)
        ref, info = AutoModelForCausalLM.from_pretrained(tmp, **fc.LOAD_KW, output_loading_info=True)
    finally:
        shutil.rmtree(tmp)
    ref.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{name}: loading info {bad}"
    return ref


def make(name, base, quantise, disk_config, described, highlight, label, prog):
    """Writes tests/fixtures/models/<name> from fixture <base>.

    quantise(tensor_name, w_bf16) -> ({stored name: tensor}, dequantised fp32 weight), or None to
    store w as it is; disk_config(cfg) -> the config.json to write; described: what was quantised
    and how, for the golden's notes; highlight: added to the config highlights; label: "FP8" ..."""
    fc.setup_torch()
    fc.print_versions(prog)
    spec = copy.deepcopy(mf.FIXTURES[base])
    cfg, model, f32 = mf.build(base, spec, spec["seed"])
    sd = _on_disk_bf16(model, f"fx_{name}_")
    stored, deq_sd, n = {}, {}, 0
    for k in sorted(sd):
        if k.endswith(mf.NON_WEIGHT_SUFFIXES):
            continue
        if k.endswith("e_score_correction_bias"):  # fp32 in the release, as in the bf16 fixture
            src = [v for nm, v in f32.items() if nm.endswith(k.split("model.", 1)[-1])]
            assert len(src) == 1, k
            stored[k] = deq_sd[k] = src[0].to(torch.float32).contiguous()
            continue
        q = quantise(k, sd[k])
        if q is None:
            stored[k] = sd[k].contiguous()
            deq_sd[k] = sd[k].to(torch.float32)
        else:
            tensors, deq_sd[k] = q
            stored.update(tensors)
            n += 1
    assert n > 0
    ref = _reference(deq_sd, cfg, name)

    out_dir = os.path.join(fc.FIXTURE_ROOT, name)
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, fn))
    save_file(stored, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    fc.write_json(os.path.join(out_dir, "config.json"), disk_config(dict(cfg)))
    prompts = mf.prompts_for(cfg["vocab_size"])
    g = fc.make_golden(ref, out_dir, cfg["architectures"][0], prompts, mf.N_GREEDY,
                       notes=f"The {base} fixture's weights (seed {spec['seed']}) with its {n} {described}; "
                             "goldens from the dequantised weights in fp32.",
                       extra={"config_highlights": spec["highlights"] + " " + highlight})
    assert g["greedy_matches_kv_cache_decode"]
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    assert size <= 512 * 1024, size
    print(f"  {name}: {size / 1024:.0f} KiB, {n} {label} tensors, margin {g['min_greedy_margin']:.4g}, "
          f"router gap {g['min_router_gap']}")
