// test_malformed.cpp — the malformed-input corpus in tests/fixtures/malformed/
// (written by fuzz/make_corpus.py, one defect per file, named for it): every
// file is rejected by its reader with the status and message in the table
// below, the message names the file, and no handle is returned. The corpus
// directory and the table must list the same files, so a new case cannot be
// added on one side only. The same files seed the fuzzers (fuzz/README.md).
// Then: configs and GGUF metadata with absurd counts, refused under a 1 GiB
// address-space limit (tests/memlimit.h), and FIFOs, directories and devices
// in a checkpoint file's place, refused at once (host/fileio.h).
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/gguf.h"
#include "host/model.h"
#include "host/safetensors.h"
#include "memlimit.h"
#include "patched_config.h"
#include "test_util.h"

#include <jansson.h>
#include <sys/stat.h>

namespace {

enum class Reader {
    Safetensors, // st_open
    Index,       // st_checkpoint_open on an index .json beside its shards
    Gguf,        // gguf_open
    Config,      // hf_config_open
    ConfigInt,   // hf_config_open, then hf_config_int(key)
    ConfigFloat, // hf_config_open, then hf_config_float(key)
    ConfigSub,   // hf_config_open, then hf_config_sub(key)
    Generation,  // hf_generation_config_load
};

struct Case {
    Reader reader;
    const char *file;
    qilin_status status;
    const char *message; // a substring of qilin_last_error()
    const char *key = nullptr;
};

const char *dir_of(Reader r) {
    switch (r) {
    case Reader::Safetensors:
        return "safetensors";
    case Reader::Index:
        return "safetensors_index";
    case Reader::Gguf:
        return "gguf";
    default:
        return "config";
    }
}

constexpr qilin_status F = QILIN_ERR_FORMAT;
using R = Reader;

// clang-format off
const Case kCases[] = {
    {R::Safetensors, "empty.safetensors", F, "file is 0 bytes, shorter than the 8-byte header length"},
    {R::Safetensors, "shorter_than_header_length.safetensors", F, "file is 3 bytes, shorter than the 8-byte header length"},
    {R::Safetensors, "header_length_past_end.safetensors", F, "header length 1000 runs past the end of the 81-byte file"},
    {R::Safetensors, "header_length_over_limit.safetensors", F, "header length 1099511627776 exceeds the 100000000-byte limit"},
    {R::Safetensors, "header_not_json.safetensors", F, "header JSON invalid at byte 14"},
    {R::Safetensors, "header_not_object.safetensors", F, "header JSON is not an object"},
    {R::Safetensors, "header_duplicate_key.safetensors", F, "duplicate object key"},
    {R::Safetensors, "header_invalid_utf8.safetensors", F, "unable to decode byte 0xff"},
    {R::Safetensors, "entry_not_object.safetensors", F, "tensor 'w': entry is not an object"},
    {R::Safetensors, "dtype_missing.safetensors", F, "tensor 'w': dtype missing or not a string"},
    {R::Safetensors, "dtype_unknown.safetensors", F, "tensor 'w': unknown dtype 'F128'"},
    {R::Safetensors, "shape_not_array.safetensors", F, "tensor 'w': shape is not an array"},
    {R::Safetensors, "shape_negative_dim.safetensors", F, "tensor 'w': shape[1] is not a non-negative integer"},
    {R::Safetensors, "shape_real_dim.safetensors", F, "tensor 'w': shape[0] is not a non-negative integer"},
    {R::Safetensors, "shape_too_many_dims.safetensors", F, "tensor 'w': 9 dims, at most 8 supported"},
    {R::Safetensors, "shape_product_overflows.safetensors", F, "shape needs 18446744073709551615 elements"},
    {R::Safetensors, "offsets_not_pair.safetensors", F, "data_offsets is not [begin, end]"},
    {R::Safetensors, "offsets_end_before_begin.safetensors", F, "data_offsets end 4 < begin 8"},
    {R::Safetensors, "offsets_past_buffer.safetensors", F, "data_offsets [0, 32) past the 16-byte data buffer"},
    {R::Safetensors, "offsets_span_mismatches_shape.safetensors", F, "shape needs 2 elements × 4 bytes but data_offsets span 12 bytes"},
    {R::Safetensors, "tensors_overlap.safetensors", F, "tensor 'b' at data offset 8 overlaps tensor 'a'"},
    {R::Safetensors, "hole_between_tensors.safetensors", F, "leaving a 4-byte hole before it"},
    {R::Safetensors, "trailing_bytes_after_last_tensor.safetensors", F, "4 trailing bytes after the last tensor 'w'"},
    {R::Safetensors, "metadata_not_object.safetensors", F, "__metadata__ is not an object"},
    {R::Safetensors, "metadata_value_not_string.safetensors", F, "__metadata__ key 'n' is not a string"},

    {R::Index, "index_not_json.json", F, "invalid JSON at line 1"},
    {R::Index, "index_no_weight_map.json", F, "no weight_map object"},
    {R::Index, "index_weight_map_not_object.json", F, "no weight_map object"},
    {R::Index, "index_shard_name_not_string.json", F, "weight_map['a'] is not a plain shard file name"},
    {R::Index, "index_shard_path_traversal.json", F, "weight_map['a'] is not a plain shard file name"},
    {R::Index, "index_shard_missing.json", F, "shard 'missing.safetensors' (holding tensor 'a') is missing"},
    {R::Index, "index_tensor_not_in_shard.json", F, "puts tensor 'zz' in shard 'shard-ok.safetensors', which does not contain it"},
    {R::Index, "index_shard_malformed.json", F, "shard 'shard-bad.safetensors' (holding tensor 'a'): "},
    {R::Index, "index_duplicate_tensor.json", F, "duplicate object key"},

    {R::Gguf, "empty.gguf", F, "header: magic runs past end of file at byte 0"},
    {R::Gguf, "bad_magic.gguf", F, "not a GGUF file (magic 47 47 55 58)"},
    {R::Gguf, "version_1.gguf", F, "GGUF version 1 not supported"},
    {R::Gguf, "version_big_endian.gguf", F, "GGUF version 50331648 not supported"},
    {R::Gguf, "truncated_after_version.gguf", F, "tensor count runs past end of file at byte 8"},
    {R::Gguf, "kv_count_exceeds_file.gguf", F, "1099511627776 metadata entries runs past end of file"},
    {R::Gguf, "tensor_count_exceeds_file.gguf", F, "1099511627776 tensor infos runs past end of file"},
    {R::Gguf, "key_length_exceeds_file.gguf", F, "key (9223372036854775808 bytes) runs past end of file"},
    {R::Gguf, "key_contains_nul.gguf", F, "metadata key 0: name contains a NUL byte"},
    {R::Gguf, "value_type_unknown.gguf", F, "('general.name'): unknown value type 13"},
    {R::Gguf, "bool_value_2.gguf", F, "('general.flag'): bool value 2 is neither 0 nor 1"},
    {R::Gguf, "string_length_exceeds_file.gguf", F, "string value (1125899906842624 bytes) runs past end of file"},
    {R::Gguf, "array_nested.gguf", F, "array element type 9 (nested array) not supported"},
    {R::Gguf, "array_element_type_unknown.gguf", F, "array element type 77 (unknown) not supported"},
    {R::Gguf, "array_count_exceeds_file.gguf", F, "array of 1152921504606846976 uint32 runs past end of file"},
    {R::Gguf, "string_array_count_exceeds_file.gguf", F, "array of 1099511627776 strings runs past end of file"},
    {R::Gguf, "bool_array_element_2.gguf", F, "bool element 1 is neither 0 nor 1"},
    {R::Gguf, "duplicate_key.gguf", F, "duplicate metadata key 'general.name'"},
    {R::Gguf, "alignment_not_power_of_two.gguf", F, "'general.alignment' is 48, not a power of two"},
    {R::Gguf, "alignment_zero.gguf", F, "'general.alignment' is 0, not a power of two"},
    {R::Gguf, "alignment_wrong_type.gguf", F, "'general.alignment' is uint64, not uint32"},
    {R::Gguf, "tensor_name_length_exceeds_file.gguf", F, "tensor info 0: name (1099511627776 bytes) runs past end of file"},
    {R::Gguf, "tensor_name_contains_nul.gguf", F, "tensor info 0: name contains a NUL byte"},
    {R::Gguf, "tensor_n_dims_5.gguf", F, "tensor 0 ('w'): n_dims 5 exceeds 4"},
    {R::Gguf, "tensor_dim_exceeds_int64.gguf", F, "ne[1] = 18446744073709551615 is out of range"},
    {R::Gguf, "tensor_type_unknown.gguf", F, "ggml type 99 unknown or unsupported"},
    {R::Gguf, "tensor_ne0_not_block_multiple.gguf", F, "ne[0] = 100 is not a multiple of the Q4_K block size 256"},
    {R::Gguf, "tensor_bytes_exceed_file.gguf", F, "4194304 bytes of data exceed the 160-byte file"},
    // ne[0] = 2^62 (and 2^62 + 2) F32: the byte count once wrapped to 0 (8) and was accepted.
    {R::Gguf, "tensor_byte_count_wraps.gguf", F, "18446744073709551615 bytes of data exceed the"},
    {R::Gguf, "tensor_byte_count_wraps_to_small.gguf", F, "18446744073709551615 bytes of data exceed the"},
    {R::Gguf, "tensor_offset_unaligned.gguf", F, "data offset 4 is not a multiple of the alignment 32"},
    {R::Gguf, "tensor_data_past_end.gguf", F, "tensor 'w': data [32, +32) relative to the data section at byte 128 runs past end of file"},
    {R::Gguf, "tensors_overlap.gguf", F, "tensor 'b' at data offset 0 overlaps tensor 'a'"},
    {R::Gguf, "duplicate_tensor_name.gguf", F, "duplicate tensor name 'w'"},

    {R::Config, "empty.json", F, "invalid JSON at line 1 column 0: '[' or '{' expected"},
    {R::Config, "truncated_object.json", F, "'}' expected near end of file"},
    {R::Config, "top_level_array.json", F, "top level is not a JSON object"},
    {R::Config, "top_level_string.json", F, "'[' or '{' expected"},
    {R::Config, "duplicate_key.json", F, "duplicate object key near '\"hidden_size\"'"},
    {R::Config, "trailing_garbage.json", F, "end of file expected"},
    {R::Config, "invalid_utf8.json", F, "unable to decode byte 0xc3"},
    {R::Config, "nul_in_string.json", F, "\\u0000 is not allowed"},
    {R::Config, "nesting_too_deep.json", F, "maximum parsing depth reached"},
    {R::Config, "real_overflow.json", F, "real number overflow"},
    {R::Config, "integer_overflow.json", F, "too big integer"},
    {R::Config, "nan_literal.json", F, "invalid token near 'NaN'"},
    {R::Config, "single_quotes.json", F, "invalid JSON at line 1 column 2"},
    {R::ConfigInt, "hidden_size_is_string.json", F, "key 'hidden_size' is a string, expected an integer", "hidden_size"},
    {R::ConfigInt, "hidden_size_fractional.json", F, "key 'hidden_size' is a real number, expected an integer", "hidden_size"},
    {R::ConfigFloat, "rope_scaling_factor_is_bool.json", F, "key 'rope_scaling.factor' is a boolean, expected a number", "rope_scaling.factor"},
    {R::ConfigSub, "text_config_is_array.json", F, "key 'text_config' is an array, expected an object", "text_config"},
    {R::Generation, "generation_eos_too_many.json", F, "key 'eos_token_id' has 9 values, at most 8 supported"},
    {R::Generation, "generation_eos_list_has_string.json", F, "key 'eos_token_id' is a string, expected an integer"},
    {R::Generation, "generation_temperature_is_string.json", F, "key 'temperature' is a string, expected a number"},
    {R::Generation, "generation_do_sample_is_int.json", F, "key 'do_sample' is an integer, expected a boolean"},
};
// clang-format on

// Files in the corpus that are not cases: the shards the index cases point at.
const std::set<std::string> kSupportFiles = {"safetensors_index/shard-ok.safetensors",
                                             "safetensors_index/shard-bad.safetensors"};

std::string corpus_dir() { return std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/malformed/"; }

// Opens `path` with the case's reader; returns the status and whether a handle leaked out.
qilin_status run_reader(const Case &c, const std::string &path, bool *handle_returned) {
    *handle_returned = false;
    qilin_status s;
    switch (c.reader) {
    case Reader::Safetensors: {
        st_file *f = nullptr;
        s = st_open(path.c_str(), &f);
        *handle_returned = f != nullptr;
        if (s == QILIN_OK) st_close(f);
        return s;
    }
    case Reader::Index: {
        st_checkpoint *ck = nullptr;
        s = st_checkpoint_open(path.c_str(), &ck);
        *handle_returned = ck != nullptr;
        if (s == QILIN_OK) st_checkpoint_close(ck);
        return s;
    }
    case Reader::Gguf: {
        gguf_file *f = nullptr;
        s = gguf_open(path.c_str(), &f);
        *handle_returned = f != nullptr;
        if (s == QILIN_OK) gguf_close(f);
        return s;
    }
    case Reader::Generation: {
        hf_generation_config g;
        return hf_generation_config_load(path.c_str(), &g);
    }
    default:
        break;
    }
    hf_config *cfg = nullptr;
    s = hf_config_open(path.c_str(), &cfg);
    if (c.reader == Reader::Config || s != QILIN_OK) {
        *handle_returned = cfg != nullptr && s != QILIN_OK;
        hf_config_close(cfg);
        return s;
    }
    int64_t i;
    double d;
    hf_config *sub = nullptr;
    if (c.reader == Reader::ConfigInt)
        s = hf_config_int(cfg, c.key, &i);
    else if (c.reader == Reader::ConfigFloat)
        s = hf_config_float(cfg, c.key, &d);
    else {
        s = hf_config_sub(cfg, c.key, &sub);
        *handle_returned = sub != nullptr;
        hf_config_close(sub);
    }
    hf_config_close(cfg);
    return s;
}

class Malformed : public testing::TestWithParam<Case> {};

TEST_P(Malformed, RejectedWithMessage) {
    const Case &c = GetParam();
    std::string path = corpus_dir() + dir_of(c.reader) + "/" + c.file;
    bool leaked;
    qilin_clear_error();
    qilin_status s = run_reader(c, path, &leaked);
    std::string msg = qilin_last_error();
    EXPECT_EQ(s, c.status) << qilin_status_name(s) << ": " << msg;
    EXPECT_FALSE(leaked) << "a handle was returned with a failing status";
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(c.message), std::string::npos) << "missing '" << c.message << "' in: " << msg;
}

std::string case_name(const testing::TestParamInfo<Case> &info) {
    std::string n = std::string(dir_of(info.param.reader)) + "_" + info.param.file;
    for (char &ch : n)
        if (!isalnum((unsigned char)ch)) ch = '_';
    return n;
}

INSTANTIATE_TEST_SUITE_P(Corpus, Malformed, testing::ValuesIn(kCases), case_name);

std::vector<std::string> list_dir(const std::string &sub) {
    std::vector<std::string> names;
    DIR *d = opendir((corpus_dir() + sub).c_str());
    if (!d) return names;
    while (struct dirent *e = readdir(d))
        if (e->d_name[0] != '.') names.push_back(sub + "/" + e->d_name);
    closedir(d);
    return names;
}

TEST(MalformedCorpus, TableAndDirectoryAgree) {
    std::set<std::string> table, files;
    for (const Case &c : kCases)
        EXPECT_TRUE(table.insert(std::string(dir_of(c.reader)) + "/" + c.file).second)
            << "listed twice: " << c.file;
    for (const char *sub : {"safetensors", "safetensors_index", "gguf", "config"})
        for (const std::string &f : list_dir(sub))
            if (!kSupportFiles.count(f)) files.insert(f);
    for (const std::string &f : files)
        EXPECT_TRUE(table.count(f)) << f << " is in the corpus but not in kCases";
    for (const std::string &f : table)
        EXPECT_TRUE(files.count(f)) << f << " is in kCases but not in the corpus";
    printf("malformed corpus: %zu files, %zu cases\n", files.size(), table.size());
}

// ---- absurd counts under a 1 GiB address-space limit ------------------------
//
// A few bytes of config must not cost gigabytes: every count and size is
// bounded before anything is sized by it (host/model.h's QILIN_MAX_*). Each
// config below is a fixture with one field made absurd; qilin_model_desc_load
// runs in a forked child under RLIMIT_AS (memlimit.h) and must refuse it with
// the status and a message naming the field. Before the bounds, 2^31 - 1
// experts built a tensor list of 9 GB and failed with OUT_OF_MEMORY (or took
// the machine's memory).

struct Absurd {
    const char *name;
    const char *fixture; // tests/fixtures/models/<fixture>/config.json
    const char *patch;   // JSON object merged into it (null values delete keys)
    qilin_status status;
    const char *message;
};

constexpr qilin_status U = QILIN_ERR_UNSUPPORTED;

// clang-format off
const Absurd kAbsurd[] = {
    {"experts_int_max", "qwen3_moe", R"({"num_experts": 2147483647})", F, "key 'num_experts' is 2147483647; expected 0 .. 16777216"},
    {"experts_alias_int_max", "qwen3_moe", R"({"num_experts": null, "num_local_experts": 2147483647})", F, "key 'num_experts' is 2147483647"},
    {"experts_past_kernel", "qwen3_moe", R"({"num_experts": 100000})", U, "key 'num_experts' is 100000; at most 2048 experts"},
    {"mixtral_experts", "mixtral", R"({"num_local_experts": 16777216})", U, "key 'num_local_experts' is 16777216; at most 2048"},
    {"deepseek_experts", "deepseek_v3", R"({"n_routed_experts": 2147483647})", F, "key 'n_routed_experts' is 2147483647"},
    {"layers_int_max", "qwen3_moe", R"({"num_hidden_layers": 2147483647})", F, "key 'num_hidden_layers' is 2147483647"},
    {"layers_past_max", "llama", R"({"num_hidden_layers": 1000000})", U, "key 'num_hidden_layers' is 1000000; at most 256 layers"},
    {"heads_int_max", "llama", R"({"num_attention_heads": 2147483647})", F, "key 'num_attention_heads' is 2147483647"},
    {"head_dim_int_max", "qwen3_moe", R"({"head_dim": 2147483647})", F, "key 'head_dim' is 2147483647"},
    {"vocab_int_max", "llama", R"({"vocab_size": 2147483647})", F, "key 'vocab_size' is 2147483647"},
    {"embedding_2_48", "llama", R"({"vocab_size": 16777216, "hidden_size": 16777216, "num_attention_heads": 1, "num_key_value_heads": 1})", F, "tensor model.embed_tokens.weight: dimension 1 is 16777216; a tensor holds at most 2^40"},
    {"ffn_2_48", "qwen3_moe", R"({"hidden_size": 16777216, "intermediate_size": 16777216})", F, "a tensor holds at most 2^40 elements"},
    {"expert_ffn_2_48", "qwen3_moe", R"({"hidden_size": 16777216, "moe_intermediate_size": 16777216})", F, "a tensor holds at most 2^40 elements"},
    {"params_past_2_44", "qwen3_moe", R"({"hidden_size": 1048576, "moe_intermediate_size": 524288, "num_experts": 1024, "num_hidden_layers": 64})", F, "describe more than 2^44 parameters"},
    {"tensor_list_past_max", "qwen3_moe", R"({"num_experts": 2048, "num_hidden_layers": 256, "mlp_only_layers": []})", F, "give more than 1048576 tensors"},
    {"shared_experts_product", "deepseek_v3", R"({"n_shared_experts": 16777216, "moe_intermediate_size": 16777216})", F, "'n_shared_experts' (16777216) x 'moe_intermediate_size' (16777216) exceeds"},
    {"kv_lora_rank_int_max", "deepseek_v3", R"({"kv_lora_rank": 2147483647})", F, "key 'kv_lora_rank' is 2147483647"},
    {"neox_rotary_pct_huge", "gpt_neox", R"({"rotary_pct": 1e30})", F, "key 'rotary_pct' is 1e+30; expected a fraction"},
    {"mlp_only_layers_100k", "qwen3_moe", nullptr, F, "key 'mlp_only_layers' has 100000 values, at most 256"},
    {"eos_ids_100k", "llama", nullptr, F, "key 'eos_token_id' has 100000 values, at most 8"},
    {"eos_id_past_vocab", "llama", R"({"eos_token_id": 4294967297})", F, "eos_token_id 4294967297 is outside the vocabulary of 256"},
    {"bos_id_negative", "llama", R"({"bos_token_id": -7})", F, "bos_token_id -7 is outside the vocabulary"},
};
// clang-format on

// The fixture's config.json with the case's patch, or (the list cases) a list of 100000 entries.
struct ConfigDir : PatchedConfig {
    explicit ConfigDir(const Absurd &a) : PatchedConfig(a.fixture, a.patch, [&a](json_t *cfg) {
        if (a.patch) return;
        json_t *list = json_array();
        for (int i = 0; i < 100000; i++) json_array_append_new(list, json_integer(i % 2));
        json_object_set_new(cfg, std::string(a.name).rfind("eos", 0) == 0 ? "eos_token_id" : "mlp_only_layers",
                            list);
    }) {}
};

class AbsurdConfig : public testing::TestWithParam<Absurd> {};

TEST_P(AbsurdConfig, RefusedWithinOneGiB) {
    QILIN_SKIP_UNDER_ASAN();
    const Absurd &a = GetParam();
    ConfigDir d(a);
    auto load = [&] {
        qilin_model_desc *desc = nullptr;
        qilin_status s = qilin_model_desc_load(d.dir.c_str(), &desc);
        if (s == QILIN_OK) qilin_model_desc_free(desc);
        return s;
    };
    EXPECT_REFUSED_WITHIN_LIMITS(load, a.status, a.message);
    EXPECT_REFUSED_WITHIN_LIMITS(load, a.status, d.path); // the message names the file
}

INSTANTIATE_TEST_SUITE_P(Bounds, AbsurdConfig, testing::ValuesIn(kAbsurd),
                         [](const testing::TestParamInfo<Absurd> &i) { return std::string(i.param.name); });

// The same bounds on GGUF metadata: a qwen3moe GGUF without tensors whose one
// metadata value is absurd (qilin_model_desc_load on a .gguf reads it through
// host/model_gguf.c, whose integers share the size bound with config.json).
std::string gguf_meta(const std::vector<std::pair<std::string, uint32_t>> &u32s) {
    std::string out = "GGUF";
    auto raw = [&out](uint64_t v, int n) {
        for (int i = 0; i < n; i++) out += (char)(v >> (8 * i) & 0xFF);
    };
    auto str = [&](const std::string &x) { raw(x.size(), 8), out += x; };
    raw(3, 4);
    raw(0, 8);               // tensors
    raw(1 + u32s.size(), 8); // metadata entries
    str("general.architecture");
    raw(8, 4); // GGUF_TYPE_STRING
    str("qwen3moe");
    for (const auto &kv : u32s) {
        str("qwen3moe." + kv.first);
        raw(4, 4); // GGUF_TYPE_UINT32
        raw(kv.second, 4);
    }
    return out;
}

TEST(AbsurdCounts, GgufMetadataRefusedWithinOneGiB) {
    QILIN_SKIP_UNDER_ASAN();
    struct {
        uint32_t experts, layers;
        qilin_status status;
        const char *message;
    } cases[] = {
        {2147483647u, 2, F, "metadata key 'qwen3moe.expert_count' is 2147483647; expected 0 .. 16777216"},
        {100000, 2, U, "key 'qwen3moe.expert_count' is 100000; at most 2048 experts"},
        {8, 4000000000u, F, "metadata key 'qwen3moe.block_count' is 4000000000"},
    };
    for (const auto &c : cases) {
        std::string path = "/tmp/qilin_absurd_" + std::to_string(getpid()) + ".gguf";
        std::string bytes = gguf_meta({{"vocab_size", 256},
                                       {"embedding_length", 64},
                                       {"block_count", c.layers},
                                       {"attention.head_count", 4},
                                       {"expert_count", c.experts},
                                       {"expert_used_count", 2},
                                       {"expert_feed_forward_length", 32}});
        FILE *f = std::fopen(path.c_str(), "wb");
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
        EXPECT_REFUSED_WITHIN_LIMITS(([&] {
                                         qilin_model_desc *d = nullptr;
                                         qilin_status st = qilin_model_desc_load(path.c_str(), &d);
                                         qilin_model_desc_free(d);
                                         return st;
                                     }),
                                     c.status, c.message);
        std::remove(path.c_str());
    }
}

// The limit the cases above run under is real: 2 GiB cannot be had in the child.
TEST(AbsurdCounts, TheLimitIsReal) {
    QILIN_SKIP_UNDER_ASAN();
    LimitedResult r = run_limited([] {
        static void *volatile sink;
        sink = std::malloc(2ull << 30);
        bool got = sink != nullptr;
        std::free(sink);
        return got ? QILIN_ERR_INTERNAL : QILIN_OK;
    });
    EXPECT_TRUE(r.exited) << "signal " << r.signal;
    EXPECT_EQ(r.status, QILIN_OK) << "a 2 GiB allocation succeeded under the limit";
}

// The malformed corpus (GGUF array and tensor counts of 2^40 and more, header
// lengths of 1 TB, ...) is refused without using more than 1 GiB either.
TEST(AbsurdCounts, MalformedCorpusWithinOneGiB) {
    QILIN_SKIP_UNDER_ASAN();
    LimitedResult r = run_limited([] {
        for (const Case &c : kCases) {
            bool leaked;
            std::string path = corpus_dir() + dir_of(c.reader) + "/" + c.file;
            qilin_status s = run_reader(c, path, &leaked);
            if (s != c.status) return s == QILIN_OK ? QILIN_ERR_INTERNAL : s;
        }
        return QILIN_OK;
    });
    EXPECT_TRUE(r.exited) << "signal " << r.signal;
    EXPECT_EQ(r.status, QILIN_OK) << r.message;
}

// ---- files that are not regular files ----------------------------------------
//
// A FIFO with no writer blocks open() for reading forever; a directory or a
// device is no checkpoint either. Every reader goes through host/fileio.h and
// refuses them at once, naming the file. Run in a child with an alarm so a
// regression fails instead of hanging the suite.

struct SpecialDir {
    std::string dir;
    std::vector<std::string> made;
    SpecialDir() {
        char tmpl[] = "/tmp/qilin_fifo_XXXXXX";
        dir = mkdtemp(tmpl);
    }
    std::string fifo(const std::string &name) {
        std::string p = dir + "/" + name;
        EXPECT_EQ(mkfifo(p.c_str(), 0600), 0);
        made.push_back(p);
        return p;
    }
    std::string subdir(const std::string &name) {
        std::string p = dir + "/" + name;
        EXPECT_EQ(mkdir(p.c_str(), 0700), 0);
        made.push_back(p);
        return p;
    }
    ~SpecialDir() {
        for (auto it = made.rbegin(); it != made.rend(); ++it) std::remove(it->c_str());
        rmdir(dir.c_str());
    }
};

TEST(NotRegularFile, FifoConfigIsRefusedAtOnce) {
    SpecialDir d;
    std::string cfg = d.fifo("config.json");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               hf_config *c = nullptr;
                               return hf_config_open(cfg.c_str(), &c);
                           }),
                           QILIN_ERR_IO, cfg + ": is a FIFO, not a regular file");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               qilin_model_desc *m = nullptr;
                               return qilin_model_desc_load(d.dir.c_str(), &m);
                           }),
                           QILIN_ERR_IO, "config.json: is a FIFO");
    std::string gen = d.fifo("generation_config.json");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               hf_generation_config g;
                               return hf_generation_config_load(gen.c_str(), &g);
                           }),
                           QILIN_ERR_IO, "generation_config.json: is a FIFO");
}

TEST(NotRegularFile, FifoCheckpointsAreRefusedAtOnce) {
    SpecialDir d;
    std::string st = d.fifo("model.safetensors"), gg = d.fifo("model.gguf"), idx = d.fifo("index.json");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               st_file *f = nullptr;
                               return st_open(st.c_str(), &f);
                           }),
                           QILIN_ERR_IO, st + ": is a FIFO, not a regular file");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               gguf_file *f = nullptr;
                               return gguf_open(gg.c_str(), &f);
                           }),
                           QILIN_ERR_IO, gg + ": is a FIFO, not a regular file");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               st_checkpoint *c = nullptr;
                               return st_checkpoint_open(idx.c_str(), &c);
                           }),
                           QILIN_ERR_IO, "is a FIFO");
    std::string sub = d.subdir("shard.safetensors");
    EXPECT_REFUSED_AT_ONCE(([&] {
                               st_file *f = nullptr;
                               return st_open(sub.c_str(), &f);
                           }),
                           QILIN_ERR_IO, sub + ": is a directory, not a regular file");
    EXPECT_REFUSED_AT_ONCE(([] {
                               gguf_file *f = nullptr;
                               return gguf_open("/dev/zero", &f);
                           }),
                           QILIN_ERR_IO, "/dev/zero: is a character device");
}

} // namespace
