#!/usr/bin/env python3
"""make_corpus.py — writes the malformed-input corpus (tests/fixtures/malformed/)
and the small valid fuzz seeds (fuzz/seeds/) byte by byte.

Every malformed file carries one defect, named by the file; each is one edit
away from a valid file, so the files double as fuzz seeds. tests/test_malformed.cpp
holds the expected status and message for each (and fails on a file missing
from its table). Re-run after changing a case; the output is deterministic:

    python3 fuzz/make_corpus.py
"""
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MALFORMED = os.path.join(ROOT, "tests", "fixtures", "malformed")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def write(base, sub, name, data):
    d = os.path.join(base, sub)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- safetensors

def st(header, data=b"", hlen=None):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def ent(name, dtype, shape, b, e):
    return '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}' % (name, dtype, shape, b, e)


def obj(*entries):
    return "{" + ",".join(entries) + "}"


W = ent("w", "F32", "[2,2]", 0, 16)
D16 = bytes(range(16))

SAFETENSORS = {
    "empty.safetensors": b"",
    "shorter_than_header_length.safetensors": b"\x05\x00\x00",
    "header_length_past_end.safetensors": st(obj(W), D16, hlen=1000),
    "header_length_over_limit.safetensors": st(obj(W), D16, hlen=1 << 40),
    "header_not_json.safetensors": st('{"w": ', D16),
    "header_not_object.safetensors": st("[1,2]", D16),
    "header_duplicate_key.safetensors": st(obj(W, W), D16),
    "header_invalid_utf8.safetensors": st(b'{"w\xff":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}', D16),
    "entry_not_object.safetensors": st('{"w":5}', b""),
    "dtype_missing.safetensors": st('{"w":{"shape":[2,2],"data_offsets":[0,16]}}', D16),
    "dtype_unknown.safetensors": st(obj(ent("w", "F128", "[2,2]", 0, 16)), D16),
    "shape_not_array.safetensors": st(obj(ent("w", "F32", "4", 0, 16)), D16),
    "shape_negative_dim.safetensors": st(obj(ent("w", "F32", "[2,-2]", 0, 16)), D16),
    "shape_real_dim.safetensors": st(obj(ent("w", "F32", "[4.0]", 0, 16)), D16),
    "shape_too_many_dims.safetensors": st(obj(ent("w", "F32", "[1,1,1,1,1,1,1,1,4]", 0, 16)), D16),
    "shape_product_overflows.safetensors": st(obj(ent("w", "F32", "[4294967296,4294967296,16]", 0, 16)), D16),
    "offsets_not_pair.safetensors": st('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}}', D16),
    "offsets_end_before_begin.safetensors": st(obj(ent("w", "F32", "[1]", 8, 4)), D16),
    "offsets_past_buffer.safetensors": st(obj(ent("w", "F32", "[8]", 0, 32)), D16),
    "offsets_span_mismatches_shape.safetensors": st(obj(ent("w", "F32", "[2]", 0, 12)), D16[:12]),
    "tensors_overlap.safetensors": st(obj(ent("a", "F32", "[3]", 0, 12), ent("b", "F32", "[2]", 8, 16)), D16),
    "hole_between_tensors.safetensors": st(obj(ent("a", "F32", "[1]", 0, 4), ent("b", "F32", "[2]", 8, 16)), D16),
    "trailing_bytes_after_last_tensor.safetensors": st(obj(ent("w", "F32", "[3]", 0, 12)), D16),
    "metadata_not_object.safetensors": st(obj('"__metadata__":["pt"]', W), D16),
    "metadata_value_not_string.safetensors": st(obj('"__metadata__":{"n":3}', W), D16),
}

# Index files beside two shards: shard-ok (tensor "a") and shard-bad (malformed).
SHARD_OK = st(obj(ent("a", "BF16", "[2]", 0, 4)), b"\x80\x3f\x00\x40")
INDEX = {
    "index_not_json.json": '{"weight_map": {"a": ',
    "index_no_weight_map.json": '{"metadata": {}}',
    "index_weight_map_not_object.json": '{"weight_map": ["shard-ok.safetensors"]}',
    "index_shard_name_not_string.json": '{"weight_map": {"a": 1}}',
    "index_shard_path_traversal.json": '{"weight_map": {"a": "../safetensors_index/shard-ok.safetensors"}}',
    "index_shard_missing.json": '{"weight_map": {"a": "missing.safetensors"}}',
    "index_tensor_not_in_shard.json": '{"weight_map": {"a": "shard-ok.safetensors", "zz": "shard-ok.safetensors"}}',
    "index_shard_malformed.json": '{"weight_map": {"a": "shard-bad.safetensors"}}',
    "index_duplicate_tensor.json": '{"weight_map": {"a": "shard-ok.safetensors", "a": "shard-ok.safetensors"}}',
}

# ----------------------------------------------------------------------- gguf

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 13, 14, 30


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, t, payload):
    return gstr(key) + struct.pack("<I", t) + payload


def tinfo(name, ne, t, off):
    return gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", t, off)


def gguf(kvs, tinfos, data=b"", version=3, align=32, n_kv=None, n_t=None, raw_version=None):
    v = struct.pack("<I", version) if raw_version is None else raw_version
    h = b"GGUF" + v + struct.pack("<QQ", len(tinfos) if n_t is None else n_t, len(kvs) if n_kv is None else n_kv)
    h += b"".join(kvs) + b"".join(tinfos)
    h += b"\0" * (-len(h) % align)
    return h + data


ARCH = kv("general.architecture", T_STR, gstr("llama"))
T1 = [tinfo("w", [8], F32, 0)]
D32 = bytes(range(32))

GGUF = {
    "empty.gguf": b"",
    "bad_magic.gguf": b"GGUX" + gguf([ARCH], T1, D32)[4:],
    "version_1.gguf": gguf([ARCH], T1, D32, version=1),
    "version_big_endian.gguf": gguf([ARCH], T1, D32, raw_version=struct.pack(">I", 3)),
    "truncated_after_version.gguf": b"GGUF" + struct.pack("<I", 3) + b"\1\0\0",
    "kv_count_exceeds_file.gguf": gguf([ARCH], T1, D32, n_kv=1 << 40),
    "tensor_count_exceeds_file.gguf": gguf([ARCH], T1, D32, n_t=1 << 40),
    "key_length_exceeds_file.gguf": gguf([struct.pack("<Q", 1 << 63) + b"general"], [], b""),
    "key_contains_nul.gguf": gguf([kv("general.na\0me", T_STR, gstr("x"))], T1, D32),
    "value_type_unknown.gguf": gguf([kv("general.name", 13, gstr("x"))], T1, D32),
    "bool_value_2.gguf": gguf([kv("general.flag", T_BOOL, b"\2")], T1, D32),
    "string_length_exceeds_file.gguf": gguf([kv("general.name", T_STR, struct.pack("<Q", 1 << 50) + b"x")], [], b""),
    "array_nested.gguf": gguf([kv("a", T_ARR, struct.pack("<IQ", T_ARR, 1) + struct.pack("<IQ", T_U8, 0))], T1, D32),
    "array_element_type_unknown.gguf": gguf([kv("a", T_ARR, struct.pack("<IQ", 77, 1) + b"\0")], T1, D32),
    "array_count_exceeds_file.gguf": gguf([kv("a", T_ARR, struct.pack("<IQ", T_U32, 1 << 60) + b"\0" * 8)], [], b""),
    "string_array_count_exceeds_file.gguf": gguf([kv("a", T_ARR, struct.pack("<IQ", T_STR, 1 << 40) + gstr("x"))], [], b""),
    "bool_array_element_2.gguf": gguf([kv("a", T_ARR, struct.pack("<IQ", T_BOOL, 3) + b"\1\2\0")], T1, D32),
    "duplicate_key.gguf": gguf([kv("general.name", T_STR, gstr("a")), ARCH, kv("general.name", T_STR, gstr("b"))], T1, D32),
    "alignment_not_power_of_two.gguf": gguf([kv("general.alignment", T_U32, struct.pack("<I", 48))], T1, D32, align=48),
    "alignment_zero.gguf": gguf([kv("general.alignment", T_U32, struct.pack("<I", 0))], T1, D32),
    "alignment_wrong_type.gguf": gguf([kv("general.alignment", T_U64, struct.pack("<Q", 32))], T1, D32),
    "tensor_name_length_exceeds_file.gguf": gguf([ARCH], [struct.pack("<Q", 1 << 40) + b"w"], b""),
    "tensor_name_contains_nul.gguf": gguf([ARCH], [tinfo("w\0x", [8], F32, 0)], D32),
    "tensor_n_dims_5.gguf": gguf([ARCH], [tinfo("w", [8, 1, 1, 1, 1], F32, 0)], D32),
    "tensor_dim_exceeds_int64.gguf": gguf([ARCH], [tinfo("w", [8, (1 << 64) - 1], F32, 0)], D32),
    "tensor_type_unknown.gguf": gguf([ARCH], [tinfo("w", [8], 99, 0)], D32),
    "tensor_ne0_not_block_multiple.gguf": gguf([ARCH], [tinfo("w", [100], Q4_K, 0)], bytes(144)),
    "tensor_bytes_exceed_file.gguf": gguf([ARCH], [tinfo("w", [1024, 1024], F32, 0)], D32),
    "tensor_byte_count_wraps.gguf": gguf([ARCH], [tinfo("w", [1 << 62], F32, 0)], D32),
    "tensor_byte_count_wraps_to_small.gguf": gguf([ARCH], [tinfo("w", [(1 << 62) + 2], F32, 0)], D32),
    "tensor_offset_unaligned.gguf": gguf([ARCH], [tinfo("w", [4], F32, 4)], D32),
    "tensor_data_past_end.gguf": gguf([ARCH], [tinfo("w", [8], F32, 32)], D32),
    "tensors_overlap.gguf": gguf([ARCH], [tinfo("a", [8], F32, 0), tinfo("b", [8], F32, 0)], D32),
    "duplicate_tensor_name.gguf": gguf([ARCH], [tinfo("w", [4], F32, 0), tinfo("w", [4], F32, 32)], D32 + D32),
}

# --------------------------------------------------------------------- config

CONFIG = {
    "empty.json": "",
    "truncated_object.json": '{"hidden_size": 4096',
    "top_level_array.json": '[{"hidden_size": 4096}]',
    "top_level_string.json": '"llama"',
    "duplicate_key.json": '{"hidden_size": 4096, "hidden_size": 2048}',
    "trailing_garbage.json": '{"hidden_size": 4096} x',
    "invalid_utf8.json": b'{"model_type": "ll\xc3\x28ama"}',
    "nul_in_string.json": '{"model_type": "ll\\u0000ama"}',
    "nesting_too_deep.json": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "real_overflow.json": '{"rope_theta": 1e999}',
    "integer_overflow.json": '{"hidden_size": 99999999999999999999999}',
    "nan_literal.json": '{"rope_theta": NaN}',
    "single_quotes.json": "{'hidden_size': 4096}",
    # Well-formed JSON, wrong types: rejected by the getter that reads the key.
    "hidden_size_is_string.json": '{"hidden_size": "4096"}',
    "hidden_size_fractional.json": '{"hidden_size": 4096.5}',
    "rope_scaling_factor_is_bool.json": '{"rope_scaling": {"factor": true}}',
    "text_config_is_array.json": '{"text_config": [1, 2]}',
    "generation_eos_too_many.json": '{"eos_token_id": [1, 2, 3, 4, 5, 6, 7, 8, 9]}',
    "generation_eos_list_has_string.json": '{"eos_token_id": [1, "2"]}',
    "generation_temperature_is_string.json": '{"temperature": "0.7"}',
    "generation_do_sample_is_int.json": '{"do_sample": 1}',
}

# ---------------------------------------------------------------- valid seeds


def seeds():
    meta = '"__metadata__":{"format":"pt"}'
    s = {
        "plain.safetensors": st(obj(meta, ent("model.embed_tokens.weight", "BF16", "[2,4]", 0, 16),
                                    ent("model.norm.weight", "F32", "[4]", 16, 32),
                                    ent("h", "F16", "[2]", 32, 36)), bytes(range(36))),
        "fp8.safetensors": st(obj(ent("l.weight", "F8_E4M3", "[2,3]", 0, 6),
                                  ent("l.weight_scale_inv", "F32", "[1,1]", 6, 10)),
                              b"\x38\x40\x01\xb8\x7e\x00" + struct.pack("<f", 0.5)),
        "int4.safetensors": st(obj(ent("e.weight_packed", "I32", "[2,2]", 0, 16),
                                   ent("e.weight_scale", "BF16", "[2,1]", 16, 20),
                                   ent("e.weight_shape", "I64", "[2]", 20, 36)),
                               bytes(range(0x40, 0x50)) + b"\x80\x3f\x00\x40" + struct.pack("<qq", 2, 12)),
        "empty_tensor.safetensors": st(obj(ent("z", "BOOL", "[0,5]", 0, 0)), b""),
        "index.json": '{"weight_map": {"a": "shard-ok.safetensors"}}',
    }
    for k, v in s.items():
        write(SEEDS, "safetensors", k, v)

    kvs = [ARCH,
           kv("general.alignment", T_U32, struct.pack("<I", 32)),
           kv("llama.block_count", T_U32, struct.pack("<I", 2)),
           kv("llama.rope.freq_base", T_F32, struct.pack("<f", 10000.0)),
           kv("llama.flag", T_BOOL, b"\1"),
           kv("llama.i64", T_I64, struct.pack("<q", -5)),
           kv("llama.f64", T_F64, struct.pack("<d", 0.5)),
           kv("tokenizer.ggml.tokens", T_ARR, struct.pack("<IQ", T_STR, 3) + gstr("a") + gstr("") + gstr("bc")),
           kv("tokenizer.ggml.token_type", T_ARR, struct.pack("<IQ", T_I32, 3) + struct.pack("<iii", 1, 2, 3)),
           kv("tokenizer.ggml.scores", T_ARR, struct.pack("<IQ", T_F32, 2) + struct.pack("<ff", 0.5, -1.0))]
    tensors, data = [], b""
    for name, ne, t, nbytes in [("token_embd.weight", [4, 2], F32, 32), ("blk.0.attn_q.weight", [32, 2], Q8_0, 68),
                                ("blk.0.ffn_up.weight", [256, 1], Q4_K, 144), ("blk.0.ffn_down.weight", [256, 1], Q6_K, 210),
                                ("blk.0.ffn_gate.weight", [256, 1], Q5_K, 176), ("blk.0.attn_k.weight", [32, 1], Q4_0, 18),
                                ("output_norm.weight", [4], BF16, 8), ("blk.0.attn_norm.weight", [4], F16, 8),
                                ("blk.0.ffn_up_exps.weight", [32, 1, 2], Q8_0, 68)]:
        data += b"\0" * (-len(data) % 32)
        tensors.append(tinfo(name, ne, t, len(data)))
        data += bytes((i * 37 + len(data)) & 0xFF for i in range(nbytes))
    write(SEEDS, "gguf", "small_llama.gguf", gguf(kvs, tensors, data))
    write(SEEDS, "gguf", "metadata_only.gguf", gguf(kvs, [], b"", version=2))

    write(SEEDS, "config", "nested.json",
          '{"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "rope_theta": 1e6, '
          '"rope_scaling": {"type": "yarn", "factor": 4.0}, "tie_word_embeddings": false, '
          '"eos_token_id": [1, 2], "text_config": {"hidden_size": 64, "a.b": 3}, "x": null}')
    write(SEEDS, "config", "generation.json",
          '{"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "eos_token_id": 151645, '
          '"bos_token_id": 1.0, "pad_token_id": 0, "max_new_tokens": 512, "repetition_penalty": 1.05}')


# ---------------------------------------------------------------- hostile seeds (issue 12)
# Absurd counts and ids that once cost gigabytes, alias conflicts and normalizers that
# grow text without bound: the fuzzers start from them (tests/test_malformed.cpp and
# tests/test_tokenizer.cpp check the same shapes under a 1 GiB address-space limit).


def byte_level_vocab():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    n, table = 0, {}
    for b in range(256):
        if b in printable:
            table[b] = b
        else:
            table[b] = 256 + n
            n += 1
    return {chr(table[b]): b for b in range(256)}


def tokenizer_json(vocab=None, added=(), normalizer=None, post=None, decoder=None):
    import json
    vocab = dict(byte_level_vocab()) if vocab is None else vocab
    return json.dumps({"version": "1.0", "added_tokens": list(added), "normalizer": normalizer,
                       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                       "post_processor": post, "decoder": decoder or {"type": "ByteLevel"},
                       "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab, "merges": []}},
                      ensure_ascii=False)


def hostile_seeds():
    qwen3_moe = ('{"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 256, "hidden_size": 64, '
                 '"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, '
                 '"moe_intermediate_size": 32, "num_experts_per_tok": 2, %s}')
    write(SEEDS, "config", "experts_int_max.json", qwen3_moe % '"num_experts": 2147483647')
    write(SEEDS, "config", "alias_conflict.json", qwen3_moe % '"num_experts": 8, "num_local_experts": 9')
    write(SEEDS, "config", "alias_only.json", qwen3_moe % '"num_local_experts": 8')
    write(SEEDS, "config", "sizes_2_24.json",
          '{"architectures": ["LlamaForCausalLM"], "vocab_size": 16777216, "hidden_size": 16777216, '
          '"intermediate_size": 16777216, "num_hidden_layers": 256, "num_attention_heads": 1, '
          '"max_position_embeddings": 2147483647, "rotary_pct": 1e30, "eos_token_id": [%s]}'
          % ", ".join(str(i) for i in range(1000)))

    vocab = byte_level_vocab()
    huge = dict(vocab)
    huge["hostile"] = 200000000
    write(SEEDS, "tokenizer", "huge_vocab_id.json", tokenizer_json(huge))
    write(SEEDS, "tokenizer", "huge_added_id.json",
          tokenizer_json(added=[{"id": 200000000, "content": "<x>", "special": True}]))
    write(SEEDS, "tokenizer", "post_processor_huge_id.json",
          tokenizer_json(post={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}},
                                                                         {"Sequence": {"id": "A"}}],
                               "special_tokens": {"<s>": {"ids": [200000000]}}}))
    write(SEEDS, "tokenizer", "chained_replace.json",
          tokenizer_json(normalizer={"type": "Sequence", "normalizers": [
              {"type": "Replace", "pattern": {"String": "e"}, "content": "eeeeeeee"}] * 16}))
    write(SEEDS, "tokenizer", "long_decoder_replace.json",
          tokenizer_json(decoder={"type": "Sequence", "decoders": [
              {"type": "Replace", "pattern": {"String": "\u0120"}, "content": "<space-space-space-space>"},
              {"type": "ByteFallback"}, {"type": "Fuse"}]}))


def main():
    shutil.rmtree(MALFORMED, ignore_errors=True)
    for sub in ("safetensors", "gguf", "config"):  # the jinja and tokenizer seeds are not all written here
        shutil.rmtree(os.path.join(SEEDS, sub), ignore_errors=True)
    for k, v in SAFETENSORS.items():
        write(MALFORMED, "safetensors", k, v)
    write(MALFORMED, "safetensors_index", "shard-ok.safetensors", SHARD_OK)
    write(MALFORMED, "safetensors_index", "shard-bad.safetensors", SAFETENSORS["offsets_past_buffer.safetensors"])
    for k, v in INDEX.items():
        write(MALFORMED, "safetensors_index", k, v)
    for k, v in GGUF.items():
        write(MALFORMED, "gguf", k, v)
    for k, v in CONFIG.items():
        write(MALFORMED, "config", k, v)
    seeds()
    hostile_seeds()
    # The index seed resolves against a valid shard beside it.
    write(SEEDS, "safetensors", "shard-ok.safetensors", SHARD_OK)


if __name__ == "__main__":
    main()
