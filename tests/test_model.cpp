// test_model.cpp — architecture descriptors (host/model.h) and checkpoint
// binding (host/checkpoint.h): parameter counts of the real and published
// configs against the published figures, resolved hyper-parameters and
// tensor lists per architecture, error messages naming file and key, binding
// of tiny checkpoints written here (and their mutations), GGUF descriptors,
// and the `qilin inspect` printout.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "host/checkpoint.h"
#include "host/gguf.h"
#include "host/model.h"
#include "tempdir.h"
#include "test_util.h"

namespace {

#define CONFIG_FIXTURE(name) QILIN_SOURCE_DIR "/tests/fixtures/configs/" name

struct Desc {
    qilin_model_desc *d = nullptr;
    ~Desc() { qilin_model_desc_free(d); }
};

std::string temp_path(const std::string &name) { return process_temp_dir() + "qilin_model_" + name; }

void write_file(const std::string &path, const std::string &bytes) {
    unlink(path.c_str());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), (std::streamsize)bytes.size());
}

// A config.json from key -> raw JSON value pairs.
using Keys = std::map<std::string, std::string>;
std::string json_of(const Keys &k) {
    std::string s = "{";
    for (auto &kv : k) s += (s.size() > 1 ? ",\n\"" : "\n\"") + kv.first + "\": " + kv.second;
    return s + "\n}\n";
}

Keys with(Keys base, const Keys &changes) { // a value of "" removes the key
    for (auto &kv : changes) {
        if (kv.second.empty())
            base.erase(kv.first);
        else
            base[kv.first] = kv.second;
    }
    return base;
}

// Writes `keys` as <dir>/config.json (dir created) and returns the dir.
std::string write_config(const std::string &name, const Keys &keys) {
    std::string dir = temp_path(name);
    mkdir(dir.c_str(), 0755);
    write_file(dir + "/config.json", json_of(keys));
    unlink((dir + "/generation_config.json").c_str());
    return dir;
}

const Keys kTinyLlama = {{"architectures", "[\"LlamaForCausalLM\"]"},
                         {"model_type", "\"llama\""},
                         {"vocab_size", "64"},
                         {"hidden_size", "32"},
                         {"intermediate_size", "48"},
                         {"num_hidden_layers", "2"},
                         {"num_attention_heads", "4"},
                         {"num_key_value_heads", "2"},
                         {"rms_norm_eps", "1e-5"},
                         {"rope_theta", "10000.0"},
                         {"max_position_embeddings", "128"},
                         {"bos_token_id", "1"},
                         {"eos_token_id", "2"},
                         {"tie_word_embeddings", "false"},
                         {"hidden_act", "\"silu\""}};

// ---- parameter counts against published figures ----------------------------

// Published figures and their conventions. Totals are every tensor of the
// main model (embedding and untied lm_head once each), which reproduces the
// exact Hugging Face counts (Llama-3.1-8B 8,030,261,248; Qwen2.5-7B
// 7,615,616,512; Mixtral 46,702,792,704). Activated counts follow two vendor
// conventions: Qwen and Mistral include the input embedding, DeepSeek and
// Moonshot leave it out (their figures match activated - embedding and miss
// activated by more than their rounding). Qwen truncates (7.6156 -> "7.61");
// the others round. [lo, hi) is the interval the published digits allow.
struct Published {
    const char *file;
    double total_lo, total_hi;   // billions
    double active_lo, active_hi; // 0, 0 = dense
    bool active_without_embedding;
};

class ParamCounts : public testing::TestWithParam<Published> {};

TEST_P(ParamCounts, MatchPublished) {
    const Published &p = GetParam();
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load((std::string(CONFIG_FIXTURE("")) + p.file).c_str(), &m.d));
    qilin_param_counts c;
    qilin_model_param_counts(m.d, &c);
    double total = c.total / 1e9,
           active = (c.activated - (p.active_without_embedding ? c.embedding : 0)) / 1e9;
    printf("%-34s total %.4fB in [%g, %g)  activated%s %.4fB in [%g, %g)\n", p.file, total, p.total_lo,
           p.total_hi, p.active_without_embedding ? " - embedding" : "", active, p.active_lo, p.active_hi);
    EXPECT_GE(total, p.total_lo);
    EXPECT_LT(total, p.total_hi);
    if (p.active_hi > 0) {
        EXPECT_GE(active, p.active_lo);
        EXPECT_LT(active, p.active_hi);
        EXPECT_EQ(c.total - c.activated, c.routed_experts / m.d->n_experts * (m.d->n_experts - m.d->top_k));
    } else {
        EXPECT_EQ(c.activated, c.total);
        EXPECT_EQ(c.routed_experts, 0);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Models, ParamCounts,
    testing::Values(
        // DeepSeek-V3 report: 671B total (within 0.5%), 37B activated.
        Published{"DeepSeek-V3.config.json", 671 * 0.995, 671 * 1.005, 36.5, 37.5, true},
        Published{"Qwen2.5-7B-Instruct.config.json", 7.61, 7.62, 0, 0, false},
        Published{"Qwen3-8B.config.json", 8.19, 8.20, 0, 0, false},
        Published{"Llama-3.1-8B-Instruct.config.json", 8.025, 8.035, 0, 0, false},
        Published{"Qwen2-1.5B-Instruct.config.json", 1.54, 1.55, 0, 0, false},
        // Kimi K2 README: "1T total, 32B activated" (one significant digit for the total).
        Published{"Kimi-K2-Instruct.config.json", 950, 1050, 31.5, 32.5, true},
        Published{"Qwen3-30B-A3B.config.json", 30.5, 30.6, 3.3, 3.4, false},
        Published{"Qwen3-235B-A22B.config.json", 234.5, 235.5, 21.5, 22.5, false},
        Published{"Mixtral-8x7B-v0.1.config.json", 46.65, 46.75, 12.85, 12.95, false},
        // DeepSeek-V2 paper: V2-Lite 15.7B total, 2.4B activated (2.45 written as 2.4).
        Published{"DeepSeek-V2-Lite.config.json", 15.65, 15.75, 2.4, 2.5, true}),
    [](const testing::TestParamInfo<Published> &i) {
        std::string n = i.param.file;
        n = n.substr(0, n.find(".config"));
        for (char &ch : n)
            if (!isalnum((unsigned char)ch)) ch = '_';
        return n;
    });

TEST(ParamCounts, ExactHuggingFaceTotals) {
    const std::pair<const char *, int64_t> exact[] = {{"Llama-3.1-8B-Instruct.config.json", 8030261248LL},
                                                      {"Qwen2.5-7B-Instruct.config.json", 7615616512LL},
                                                      {"Mixtral-8x7B-v0.1.config.json", 46702792704LL}};
    for (auto &e : exact) {
        Desc m;
        QILIN_ASSERT_OK(qilin_model_desc_load((std::string(CONFIG_FIXTURE("")) + e.first).c_str(), &m.d));
        qilin_param_counts c;
        qilin_model_param_counts(m.d, &c);
        EXPECT_EQ(c.total, e.second) << e.first;
    }
    EXPECT_NE(std::string(qilin_model_param_definition()).find("activated"), std::string::npos);
}

// ---- resolved hyper-parameters and tensor lists -----------------------------

const qilin_tensor_spec *spec(const qilin_model_desc *d, qilin_slot slot, int layer, int expert = -1) {
    int i = qilin_model_find_spec(d, slot, layer, expert);
    return i < 0 ? nullptr : &d->tensors[i];
}

std::string shape_of(const qilin_tensor_spec *s) {
    if (!s) return "absent";
    std::string r = "[";
    for (int i = 0; i < s->n_dims; i++) r += (i ? ", " : "") + std::to_string(s->shape[i]);
    return r + "]";
}

#define EXPECT_SPEC(d, slot, layer, expert, want_name, want_shape)                                           \
    do {                                                                                                     \
        const qilin_tensor_spec *s_ = spec((d), (slot), (layer), (expert));                                  \
        ASSERT_NE(s_, nullptr) << qilin_slot_name(slot) << " layer " << (layer) << " expert " << (expert);   \
        EXPECT_STREQ(s_->name, (want_name));                                                                 \
        EXPECT_EQ(shape_of(s_), (want_shape)) << s_->name;                                                   \
    } while (0)

TEST(ModelDesc, DeepSeekV3) {
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("DeepSeek-V3.config.json"), &m.d));
    const qilin_model_desc *d = m.d;
    EXPECT_EQ(d->arch, QILIN_ARCH_DEEPSEEK_V3);
    EXPECT_STREQ(d->model_type, "deepseek_v3");
    EXPECT_EQ(d->attn, QILIN_ATTN_MLA);
    EXPECT_NEAR(d->attn_scale, 0.1352338, 5e-7); // (128 + 64)^-1/2 * mscale(40, 1)^2, models.md §1.5
    EXPECT_EQ(d->head_dim, 192);
    EXPECT_EQ(d->head_dim_v, 128);
    EXPECT_EQ(d->n_kv_heads, 128);
    EXPECT_EQ(d->q_lora_rank, 1536);
    EXPECT_FLOAT_EQ(d->mla_norm_eps, 1e-6f);
    EXPECT_EQ(d->rope.pairing, QILIN_ROPE_INTERLEAVED);
    EXPECT_EQ(d->rope.rot_dim, 64);
    EXPECT_EQ(d->rope.scaling, QILIN_ROPE_SCALING_YARN);
    EXPECT_DOUBLE_EQ(d->rope.factor, 40);
    EXPECT_DOUBLE_EQ(d->rope.original_max_position, 4096);
    EXPECT_DOUBLE_EQ(d->rope.beta_fast, 32);
    EXPECT_DOUBLE_EQ(d->rope.mscale_all_dim, 1);
    EXPECT_EQ(d->n_moe_layers, 58);
    EXPECT_EQ(d->layer_ffn[2], QILIN_FFN_GATED);
    EXPECT_EQ(d->layer_ffn[3], QILIN_FFN_MOE);
    EXPECT_EQ(d->n_experts, 256);
    EXPECT_EQ(d->top_k, 8);
    EXPECT_EQ(d->moe_score, QILIN_MOE_SIGMOID);
    EXPECT_EQ(d->moe_group_score, QILIN_MOE_GROUP_TOP2_SUM);
    EXPECT_EQ(d->n_group, 8);
    EXPECT_EQ(d->topk_group, 4);
    EXPECT_TRUE(d->router_bias);
    EXPECT_TRUE(d->norm_topk_prob);
    EXPECT_FLOAT_EQ(d->routed_scale, 2.5f);
    EXPECT_EQ(d->n_shared_experts, 1);
    EXPECT_EQ(d->shared_ffn_dim, 2048);
    EXPECT_EQ(d->n_mtp_layers, 1);
    EXPECT_STREQ(d->quant_method, "fp8");
    EXPECT_EQ(d->weight_block[0], 128);
    EXPECT_EQ(d->weight_block[1], 128);
    EXPECT_EQ(d->bos_id, 0);
    ASSERT_EQ(d->n_eos, 1);
    EXPECT_EQ(d->eos_ids[0], 1);
    // 3 dense layers x 12 tensors, 58 MoE layers x (9 attention/norm + 2 router + 768 experts + 3 shared), 3
    // global
    EXPECT_EQ(d->n_tensors, 3 * 12 + 58 * (9 + 2 + 768 + 3) + 3);
    EXPECT_SPEC(d, QILIN_W_Q_B, 0, -1, "model.layers.0.self_attn.q_b_proj.weight", "[24576, 1536]");
    EXPECT_SPEC(d, QILIN_W_KV_A, 0, -1, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "[576, 7168]");
    EXPECT_SPEC(d, QILIN_W_KV_B, 60, -1, "model.layers.60.self_attn.kv_b_proj.weight", "[32768, 512]");
    EXPECT_SPEC(d, QILIN_W_O, 5, -1, "model.layers.5.self_attn.o_proj.weight", "[7168, 16384]");
    EXPECT_SPEC(d, QILIN_W_GATE, 2, -1, "model.layers.2.mlp.gate_proj.weight", "[18432, 7168]");
    EXPECT_SPEC(d, QILIN_W_ROUTER_BIAS, 3, -1, "model.layers.3.mlp.gate.e_score_correction_bias", "[256]");
    EXPECT_SPEC(d, QILIN_W_EXP_DOWN, 3, 255, "model.layers.3.mlp.experts.255.down_proj.weight",
                "[7168, 2048]");
    EXPECT_SPEC(d, QILIN_W_EXP_UP, 60, 17, "model.layers.60.mlp.experts.17.up_proj.weight", "[2048, 7168]");
    EXPECT_SPEC(d, QILIN_W_SHARED_DOWN, 3, -1, "model.layers.3.mlp.shared_experts.down_proj.weight",
                "[7168, 2048]");
    EXPECT_SPEC(d, QILIN_W_LM_HEAD, -1, -1, "lm_head.weight", "[129280, 7168]");
    EXPECT_EQ(spec(d, QILIN_W_ROUTER, 2), nullptr); // dense layer
    EXPECT_EQ(spec(d, QILIN_W_EXP_GATE, 3, 256), nullptr);
    EXPECT_EQ(qilin_model_find_spec(d, QILIN_W_ATTN_NORM, 61, -1), -1); // MTP layer not listed
    for (int i = 0; i < d->n_tensors; i++)
        ASSERT_EQ(std::string(d->tensors[i].name).find("layers.61."), std::string::npos);
}

TEST(ModelDesc, KimiK2AndV2Lite) {
    Desc k, v;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Kimi-K2-Instruct.config.json"), &k.d));
    EXPECT_EQ(k.d->arch, QILIN_ARCH_DEEPSEEK_V3);
    EXPECT_STREQ(k.d->model_type, "kimi_k2");
    EXPECT_NEAR(k.d->attn_scale, 0.1308608, 5e-7);
    EXPECT_EQ(k.d->n_moe_layers, 60);
    EXPECT_EQ(k.d->n_group, 1);
    EXPECT_SPEC(k.d, QILIN_W_Q_B, 0, -1, "model.layers.0.self_attn.q_b_proj.weight", "[12288, 1536]");
    EXPECT_SPEC(k.d, QILIN_W_O, 0, -1, "model.layers.0.self_attn.o_proj.weight", "[7168, 8192]");
    EXPECT_SPEC(k.d, QILIN_W_EXP_GATE, 1, 383, "model.layers.1.mlp.experts.383.gate_proj.weight",
                "[2048, 7168]");

    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("DeepSeek-V2-Lite.config.json"), &v.d));
    EXPECT_EQ(v.d->arch, QILIN_ARCH_DEEPSEEK_V2);
    EXPECT_NEAR(v.d->attn_scale, 0.1147214, 5e-7);
    EXPECT_EQ(v.d->q_lora_rank, 0);
    EXPECT_EQ(v.d->moe_score, QILIN_MOE_SOFTMAX);
    EXPECT_FALSE(v.d->router_bias);
    EXPECT_FALSE(v.d->norm_topk_prob);
    EXPECT_EQ(v.d->n_group, 1);
    EXPECT_EQ(v.d->shared_ffn_dim, 2816);
    EXPECT_SPEC(v.d, QILIN_W_Q, 0, -1, "model.layers.0.self_attn.q_proj.weight", "[3072, 2048]");
    EXPECT_SPEC(v.d, QILIN_W_KV_B, 0, -1, "model.layers.0.self_attn.kv_b_proj.weight", "[4096, 512]");
    EXPECT_SPEC(v.d, QILIN_W_SHARED_GATE, 1, -1, "model.layers.1.mlp.shared_experts.gate_proj.weight",
                "[2816, 2048]");
    EXPECT_EQ(spec(v.d, QILIN_W_Q_A, 0), nullptr);
    EXPECT_EQ(spec(v.d, QILIN_W_ROUTER_BIAS, 1), nullptr);
}

TEST(ModelDesc, DenseFamilies) {
    Desc l, q2, q25, q3;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Llama-3.1-8B-Instruct.config.json"), &l.d));
    EXPECT_EQ(l.d->arch, QILIN_ARCH_LLAMA);
    EXPECT_EQ(l.d->rope.pairing, QILIN_ROPE_HALF_SPLIT);
    EXPECT_EQ(l.d->rope.rot_dim, 128);
    EXPECT_EQ(l.d->rope.scaling, QILIN_ROPE_SCALING_LLAMA3);
    EXPECT_DOUBLE_EQ(l.d->rope.factor, 8);
    EXPECT_DOUBLE_EQ(l.d->rope.low_freq_factor, 1);
    EXPECT_DOUBLE_EQ(l.d->rope.high_freq_factor, 4);
    EXPECT_DOUBLE_EQ(l.d->rope.original_max_position, 8192);
    EXPECT_DOUBLE_EQ(l.d->rope.theta, 500000);
    EXPECT_NEAR(l.d->attn_scale, 1 / std::sqrt(128.0), 1e-7);
    EXPECT_EQ(l.d->n_kv_heads, 8);
    EXPECT_FALSE(l.d->qkv_bias);
    EXPECT_EQ(l.d->n_moe_layers, 0);
    EXPECT_EQ(l.d->layer_ffn[31], QILIN_FFN_GATED);
    ASSERT_EQ(l.d->n_eos, 3);
    EXPECT_EQ(l.d->eos_ids[2], 128009);
    EXPECT_EQ(l.d->max_position, 131072);
    EXPECT_EQ(l.d->n_tensors, 32 * 9 + 3);
    EXPECT_SPEC(l.d, QILIN_W_K, 7, -1, "model.layers.7.self_attn.k_proj.weight", "[1024, 4096]");
    EXPECT_SPEC(l.d, QILIN_W_DOWN, 31, -1, "model.layers.31.mlp.down_proj.weight", "[4096, 14336]");

    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Qwen2-1.5B-Instruct.config.json"), &q2.d));
    EXPECT_TRUE(q2.d->tied_embeddings);
    EXPECT_TRUE(q2.d->qkv_bias);
    EXPECT_FALSE(q2.d->o_bias);
    EXPECT_EQ(q2.d->sliding_window, 0); // use_sliding_window false
    EXPECT_EQ(spec(q2.d, QILIN_W_LM_HEAD, -1), nullptr);
    EXPECT_SPEC(q2.d, QILIN_W_K_BIAS, 0, -1, "model.layers.0.self_attn.k_proj.bias", "[256]");
    EXPECT_EQ(spec(q2.d, QILIN_W_O_BIAS, 0), nullptr);

    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Qwen2.5-7B-Instruct.config.json"), &q25.d));
    EXPECT_FLOAT_EQ(q25.d->norm_eps, 1e-6f);
    EXPECT_SPEC(q25.d, QILIN_W_Q_BIAS, 27, -1, "model.layers.27.self_attn.q_proj.bias", "[3584]");

    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Qwen3-8B.config.json"), &q3.d));
    EXPECT_TRUE(q3.d->qk_norm);
    EXPECT_FALSE(q3.d->qkv_bias);
    EXPECT_EQ(q3.d->rope.scaling, QILIN_ROPE_SCALING_NONE);
    EXPECT_SPEC(q3.d, QILIN_W_K_NORM, 35, -1, "model.layers.35.self_attn.k_norm.weight", "[128]");
}

TEST(ModelDesc, QwenMoeAndMixtral) {
    Desc q, x;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Qwen3-30B-A3B.config.json"), &q.d));
    EXPECT_EQ(q.d->arch, QILIN_ARCH_QWEN3_MOE);
    EXPECT_EQ(q.d->n_moe_layers, 48);
    EXPECT_TRUE(q.d->norm_topk_prob);
    EXPECT_EQ(q.d->moe_score, QILIN_MOE_SOFTMAX);
    EXPECT_EQ(q.d->shared_ffn_dim, 0);
    EXPECT_SPEC(q.d, QILIN_W_Q, 0, -1, "model.layers.0.self_attn.q_proj.weight",
                "[4096, 2048]"); // nh*hd != H
    EXPECT_SPEC(q.d, QILIN_W_O, 0, -1, "model.layers.0.self_attn.o_proj.weight", "[2048, 4096]");
    EXPECT_SPEC(q.d, QILIN_W_ROUTER, 47, -1, "model.layers.47.mlp.gate.weight", "[128, 2048]");
    EXPECT_SPEC(q.d, QILIN_W_EXP_DOWN, 47, 127, "model.layers.47.mlp.experts.127.down_proj.weight",
                "[2048, 768]");

    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Mixtral-8x7B-v0.1.config.json"), &x.d));
    EXPECT_EQ(x.d->arch, QILIN_ARCH_MIXTRAL);
    EXPECT_EQ(x.d->moe_ffn_dim, 14336);
    EXPECT_EQ(x.d->ffn_dim, 0);
    EXPECT_TRUE(x.d->norm_topk_prob);
    EXPECT_EQ(x.d->sliding_window, 0);
    EXPECT_SPEC(x.d, QILIN_W_ROUTER, 0, -1, "model.layers.0.block_sparse_moe.gate.weight", "[8, 4096]");
    EXPECT_SPEC(x.d, QILIN_W_EXP_GATE, 31, 7, "model.layers.31.block_sparse_moe.experts.7.w1.weight",
                "[14336, 4096]");
    EXPECT_SPEC(x.d, QILIN_W_EXP_UP, 31, 7, "model.layers.31.block_sparse_moe.experts.7.w3.weight",
                "[14336, 4096]");
    EXPECT_SPEC(x.d, QILIN_W_EXP_DOWN, 0, 0, "model.layers.0.block_sparse_moe.experts.0.w2.weight",
                "[4096, 14336]");
}

TEST(ModelDesc, Qwen2MoeLayerRuleAndSharedExpert) {
    Keys k = with(kTinyLlama, {{"architectures", "[\"Qwen2MoeForCausalLM\"]"},
                               {"model_type", "\"qwen2_moe\""},
                               {"num_hidden_layers", "6"},
                               {"num_experts", "4"},
                               {"num_experts_per_tok", "2"},
                               {"moe_intermediate_size", "8"},
                               {"shared_expert_intermediate_size", "24"},
                               {"decoder_sparse_step", "2"},
                               {"mlp_only_layers", "[3]"}});
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(write_config("qwen2moe", k).c_str(), &m.d));
    // MoE iff (i + 1) % 2 == 0 and i not in mlp_only_layers: layers 1 and 5.
    const qilin_ffn_kind want[6] = {QILIN_FFN_GATED, QILIN_FFN_MOE,   QILIN_FFN_GATED,
                                    QILIN_FFN_GATED, QILIN_FFN_GATED, QILIN_FFN_MOE};
    for (int l = 0; l < 6; l++) EXPECT_EQ(m.d->layer_ffn[l], want[l]) << "layer " << l;
    EXPECT_EQ(m.d->n_moe_layers, 2);
    EXPECT_TRUE(m.d->qkv_bias);
    EXPECT_TRUE(m.d->shared_expert_gate);
    EXPECT_FALSE(m.d->norm_topk_prob);
    EXPECT_SPEC(m.d, QILIN_W_SHARED_UP, 1, -1, "model.layers.1.mlp.shared_expert.up_proj.weight", "[24, 32]");
    EXPECT_SPEC(m.d, QILIN_W_SHARED_EXPERT_GATE, 5, -1, "model.layers.5.mlp.shared_expert_gate.weight",
                "[1, 32]");
    EXPECT_SPEC(m.d, QILIN_W_UP, 3, -1, "model.layers.3.mlp.up_proj.weight", "[48, 32]");
}

TEST(ModelDesc, GptNeoxAndGptj) {
    Keys neox = {{"architectures", "[\"GPTNeoXForCausalLM\"]"},
                 {"model_type", "\"gpt_neox\""},
                 {"vocab_size", "50304"},
                 {"hidden_size", "512"},
                 {"intermediate_size", "2048"},
                 {"num_hidden_layers", "6"},
                 {"num_attention_heads", "8"},
                 {"rotary_pct", "0.25"},
                 {"rotary_emb_base", "10000"},
                 {"hidden_act", "\"gelu\""},
                 {"layer_norm_eps", "1e-5"},
                 {"use_parallel_residual", "true"},
                 {"max_position_embeddings", "2048"},
                 {"tie_word_embeddings", "false"},
                 {"bos_token_id", "0"},
                 {"eos_token_id", "0"}};
    Desc n;
    QILIN_ASSERT_OK(qilin_model_desc_load(write_config("neox", neox).c_str(), &n.d)); // Pythia-70m's shape
    EXPECT_EQ(n.d->norm, QILIN_NORM_LAYER);
    EXPECT_EQ(n.d->block, QILIN_BLOCK_PARALLEL);
    EXPECT_EQ(n.d->act, QILIN_ACT_GELU_ERF);
    EXPECT_EQ(n.d->rope.rot_dim, 16);
    EXPECT_EQ(n.d->rope.pairing, QILIN_ROPE_HALF_SPLIT);
    EXPECT_EQ(n.d->layer_ffn[0], QILIN_FFN_PLAIN);
    EXPECT_TRUE(n.d->qkv_bias);
    EXPECT_TRUE(n.d->o_bias);
    EXPECT_SPEC(n.d, QILIN_W_QKV, 5, -1, "gpt_neox.layers.5.attention.query_key_value.weight", "[1536, 512]");
    EXPECT_SPEC(n.d, QILIN_W_QKV_BIAS, 5, -1, "gpt_neox.layers.5.attention.query_key_value.bias", "[1536]");
    EXPECT_SPEC(n.d, QILIN_W_DOWN_BIAS, 0, -1, "gpt_neox.layers.0.mlp.dense_4h_to_h.bias", "[512]");
    EXPECT_SPEC(n.d, QILIN_W_LM_HEAD, -1, -1, "embed_out.weight", "[50304, 512]");
    qilin_param_counts c;
    qilin_model_param_counts(n.d, &c);
    EXPECT_EQ(c.total, 70426624); // Pythia-70m (Hugging Face count)

    Keys gptj = {{"architectures", "[\"GPTJForCausalLM\"]"},
                 {"model_type", "\"gptj\""},
                 {"vocab_size", "50400"},
                 {"n_embd", "4096"},
                 {"n_head", "16"},
                 {"n_layer", "28"},
                 {"n_inner", "null"},
                 {"rotary_dim", "64"},
                 {"n_positions", "2048"},
                 {"activation_function", "\"gelu_new\""},
                 {"layer_norm_epsilon", "1e-5"},
                 {"tie_word_embeddings", "false"},
                 {"bos_token_id", "50256"},
                 {"eos_token_id", "50256"}};
    Desc j;
    QILIN_ASSERT_OK(qilin_model_desc_load(write_config("gptj", gptj).c_str(), &j.d));
    EXPECT_EQ(j.d->block, QILIN_BLOCK_PARALLEL_SHARED);
    EXPECT_EQ(j.d->ffn_dim, 16384);
    EXPECT_EQ(j.d->head_dim, 256);
    EXPECT_EQ(j.d->rope.rot_dim, 64);
    EXPECT_EQ(j.d->rope.pairing, QILIN_ROPE_INTERLEAVED);
    EXPECT_EQ(j.d->act, QILIN_ACT_GELU_TANH);
    EXPECT_TRUE(j.d->lm_head_bias);
    EXPECT_EQ(j.d->max_position, 2048);
    EXPECT_SPEC(j.d, QILIN_W_UP, 27, -1, "transformer.h.27.mlp.fc_in.weight", "[16384, 4096]");
    EXPECT_SPEC(j.d, QILIN_W_LM_HEAD_BIAS, -1, -1, "lm_head.bias", "[50400]");
    qilin_model_param_counts(j.d, &c);
    EXPECT_EQ(c.total, 6050882784); // GPT-J-6B (Hugging Face count)
}

TEST(ModelDesc, DefaultsForAbsentKeys) {
    Keys k = with(kTinyLlama, {{"num_key_value_heads", ""},
                               {"rms_norm_eps", ""},
                               {"rope_theta", ""},
                               {"hidden_act", ""},
                               {"tie_word_embeddings", ""},
                               {"eos_token_id", ""},
                               {"bos_token_id", ""},
                               {"max_position_embeddings", ""}});
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(write_config("defaults", k).c_str(), &m.d));
    EXPECT_EQ(m.d->n_kv_heads, 4);
    EXPECT_EQ(m.d->head_dim, 8);
    EXPECT_FLOAT_EQ(m.d->norm_eps, 1e-6f);
    EXPECT_DOUBLE_EQ(m.d->rope.theta, 10000);
    EXPECT_EQ(m.d->act, QILIN_ACT_SILU);
    EXPECT_FALSE(m.d->tied_embeddings);
    EXPECT_EQ(m.d->n_eos, 0);
    EXPECT_EQ(m.d->bos_id, -1);
    EXPECT_EQ(m.d->max_position, 2048);
    // A config.json path works as well as its directory; generation_config.json adds stop ids.
    std::string dir = write_config("genconfig", kTinyLlama);
    write_file(dir + "/generation_config.json", "{\"eos_token_id\": [2, 7]}");
    Desc g;
    QILIN_ASSERT_OK(qilin_model_desc_load((dir + "/config.json").c_str(), &g.d));
    ASSERT_EQ(g.d->n_eos, 2);
    EXPECT_EQ(g.d->eos_ids[0], 2);
    EXPECT_EQ(g.d->eos_ids[1], 7);
}

// ---- errors ----------------------------------------------------------------

void expect_error(const std::string &name, const Keys &keys, qilin_status want,
                  std::initializer_list<const char *> what) {
    std::string dir = write_config(name, keys);
    qilin_model_desc *d = reinterpret_cast<qilin_model_desc *>(1);
    qilin_status s = qilin_model_desc_load(dir.c_str(), &d);
    EXPECT_EQ(s, want) << name << ": " << qilin_last_error();
    EXPECT_EQ(d, nullptr);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find(dir + "/config.json"), std::string::npos) << msg;
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
    qilin_model_desc_free(s == QILIN_OK ? d : nullptr);
}

TEST(ModelDescErrors, UnsupportedArchitectureListsSupported) {
    expect_error(
        "foo", with(kTinyLlama, {{"architectures", "[\"FooForCausalLM\"]"}}), QILIN_ERR_UNSUPPORTED,
        {"architecture 'FooForCausalLM' is not supported; supported: LlamaForCausalLM, MistralForCausalLM",
         "DeepseekV3ForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM"});
    expect_error("foo_type", with(kTinyLlama, {{"architectures", ""}, {"model_type", "\"foo\""}}),
                 QILIN_ERR_UNSUPPORTED, {"architecture 'foo' is not supported"});
}

TEST(ModelDescErrors, MissingKeyNamed) {
    expect_error("missing", with(kTinyLlama, {{"intermediate_size", ""}}), QILIN_ERR_FORMAT,
                 {"intermediate_size"});
    expect_error("missing_mla",
                 with(kTinyLlama, {{"architectures", "[\"DeepseekV3ForCausalLM\"]"},
                                   {"n_routed_experts", "4"},
                                   {"num_experts_per_tok", "2"},
                                   {"moe_intermediate_size", "8"},
                                   {"kv_lora_rank", "16"},
                                   {"qk_nope_head_dim", "8"},
                                   {"v_head_dim", "8"}}),
                 QILIN_ERR_FORMAT, {"qk_rope_head_dim"});
    expect_error("wrong_type", with(kTinyLlama, {{"hidden_size", "\"32\""}}), QILIN_ERR_FORMAT,
                 {"hidden_size"});
}

TEST(ModelDescErrors, InconsistentShapes) {
    expect_error("heads", with(kTinyLlama, {{"num_attention_heads", "5"}, {"num_key_value_heads", "5"}}),
                 QILIN_ERR_FORMAT,
                 {"'hidden_size' (32) is not a multiple of 'num_attention_heads' (5)", "head_dim"});
    expect_error("kvheads", with(kTinyLlama, {{"num_key_value_heads", "3"}}), QILIN_ERR_FORMAT,
                 {"'num_key_value_heads' (3) does not divide 'num_attention_heads' (4)"});
    Keys moe = with(kTinyLlama, {{"architectures", "[\"Qwen3MoeForCausalLM\"]"},
                                 {"num_experts", "4"},
                                 {"num_experts_per_tok", "5"},
                                 {"moe_intermediate_size", "8"}});
    expect_error("topk", moe, QILIN_ERR_FORMAT,
                 {"'num_experts_per_tok' (5) must be in 1 .. 'num_experts' (4)"});
    Keys ds = with(kTinyLlama, {{"architectures", "[\"DeepseekV3ForCausalLM\"]"},
                                {"n_routed_experts", "6"},
                                {"num_experts_per_tok", "2"},
                                {"moe_intermediate_size", "8"},
                                {"kv_lora_rank", "16"},
                                {"qk_nope_head_dim", "8"},
                                {"qk_rope_head_dim", "4"},
                                {"v_head_dim", "8"},
                                {"n_group", "4"},
                                {"topk_group", "2"}});
    expect_error("ngroup", ds, QILIN_ERR_FORMAT, {"'n_group' (4) does not divide 'n_routed_experts' (6)"});
    expect_error("layers", with(kTinyLlama, {{"num_hidden_layers", "300"}}), QILIN_ERR_UNSUPPORTED,
                 {"'num_hidden_layers' is 300", "256"});
    expect_error("act", with(kTinyLlama, {{"hidden_act", "\"relu2\""}}), QILIN_ERR_UNSUPPORTED,
                 {"'hidden_act' is 'relu2'"});
    expect_error("rope", with(kTinyLlama, {{"rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2}"}}),
                 QILIN_ERR_UNSUPPORTED, {"rope_scaling", "'dynamic'"});
    expect_error("rotary",
                 with(kTinyLlama, {{"architectures", "[\"GPTNeoXForCausalLM\"]"}, {"rotary_pct", "0.1"}}),
                 QILIN_ERR_FORMAT, {"'rotary_pct' gives 0 rotary dims"});
}

TEST(ModelDescErrors, BadPaths) {
    qilin_model_desc *d = nullptr;
    EXPECT_EQ(qilin_model_desc_load("/nonexistent/qilin/model", &d), QILIN_ERR_IO);
    EXPECT_NE(std::string(qilin_last_error()).find("/nonexistent/qilin/model"), std::string::npos);
    std::string dir = temp_path("empty_dir");
    mkdir(dir.c_str(), 0755);
    EXPECT_EQ(qilin_model_desc_load(dir.c_str(), &d), QILIN_ERR_IO);
    EXPECT_NE(std::string(qilin_last_error()).find("config.json"), std::string::npos);
    qilin_model_desc_free(nullptr);
}

// ---- binding tiny checkpoints written here ----------------------------------

struct StTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string data; // empty: filled with a per-tensor byte pattern
};

size_t st_size(const std::string &dtype) {
    if (dtype == "F64" || dtype == "I64") return 8;
    if (dtype == "F32" || dtype == "I32") return 4;
    if (dtype == "BF16" || dtype == "F16" || dtype == "I16") return 2;
    return 1;
}

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; i++) s[i] = (char)(v >> (8 * i));
    return s;
}

// A .safetensors image of `ts` (data in the given order).
std::string st_image(std::vector<StTensor> ts) {
    std::string header = "{", data;
    for (size_t i = 0; i < ts.size(); i++) {
        StTensor &t = ts[i];
        size_t n = st_size(t.dtype);
        for (int64_t d : t.shape) n *= (size_t)d;
        if (t.data.empty()) t.data = std::string(n, (char)(0x10 + i % 200));
        std::string shape;
        for (int64_t d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
        header += (i ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" + t.dtype +
                  "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                  std::to_string(data.size() + t.data.size()) + "]}";
        data += t.data;
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    return le64(header.size()) + header + data;
}

// Every spec of `d` as a BF16 tensor of its shape (FP8 + block scale for
// 2-D attention/MLP weights when `fp8`).
std::vector<StTensor> tensors_for(const qilin_model_desc *d, bool fp8 = false) {
    std::vector<StTensor> ts;
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec &s = d->tensors[i];
        std::vector<int64_t> shape(s.shape, s.shape + s.n_dims);
        bool linear =
            s.n_dims == 2 && s.slot != QILIN_W_EMBED && s.slot != QILIN_W_LM_HEAD && s.slot != QILIN_W_ROUTER;
        if (fp8 && linear) {
            ts.push_back({s.name, "F8_E4M3", shape, ""});
            int64_t bo = d->weight_block[0], bi = d->weight_block[1];
            ts.push_back({std::string(s.name) + "_scale_inv",
                          "F32",
                          {(shape[0] + bo - 1) / bo, (shape[1] + bi - 1) / bi},
                          ""});
        } else {
            ts.push_back({s.name, s.slot == QILIN_W_ROUTER_BIAS ? "F32" : "BF16", shape, ""});
        }
    }
    return ts;
}

struct Bound {
    qilin_checkpoint *c = nullptr;
    qilin_bound_model *b = nullptr;
    ~Bound() {
        qilin_bound_model_free(b);
        qilin_checkpoint_close(c);
    }
};

// Writes `ts` as dir/model.safetensors and binds it to `d`.
qilin_status bind_dir(const qilin_model_desc *d, const std::string &dir, const std::vector<StTensor> &ts,
                      Bound &out) {
    write_file(dir + "/model.safetensors", st_image(ts));
    qilin_status s = qilin_checkpoint_open(dir.c_str(), &out.c);
    if (s != QILIN_OK) return s;
    return qilin_model_bind(d, out.c, &out.b);
}

void expect_bind_error(const qilin_model_desc *d, const std::string &dir, const std::vector<StTensor> &ts,
                       std::initializer_list<const char *> what) {
    Bound b;
    qilin_status s = bind_dir(d, dir, ts, b);
    EXPECT_EQ(s, QILIN_ERR_FORMAT) << qilin_last_error();
    EXPECT_EQ(b.b, nullptr);
    std::string msg = qilin_last_error();
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
}

std::vector<StTensor> without(std::vector<StTensor> ts, const std::string &name) {
    for (size_t i = 0; i < ts.size(); i++)
        if (ts[i].name == name) ts.erase(ts.begin() + (long)i);
    return ts;
}

StTensor *find_st(std::vector<StTensor> &ts, const std::string &name) {
    for (auto &t : ts)
        if (t.name == name) return &t;
    return nullptr;
}

TEST(Bind, TinyLlamaAndMutations) {
    std::string dir = write_config("bind_llama", kTinyLlama);
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    std::vector<StTensor> ts = tensors_for(m.d);
    ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {4}, ""}); // ignorable buffer
    {
        Bound b;
        QILIN_ASSERT_OK(bind_dir(m.d, dir, ts, b));
        ASSERT_EQ(b.b->n_tensors, m.d->n_tensors);
        EXPECT_EQ(b.b->n_ignored, 1);
        EXPECT_FALSE(qilin_checkpoint_is_gguf(b.c));
        for (int i = 0; i < b.b->n_tensors; i++) {
            const qilin_bound_tensor &t = b.b->tensors[i];
            EXPECT_EQ(t.spec, i);
            EXPECT_STREQ(t.name, m.d->tensors[i].name);
            EXPECT_EQ(t.dtype, QILIN_WDT_BF16);
            EXPECT_EQ(t.quant, QILIN_WQ_NONE);
            const qilin_ckpt_tensor *ct = qilin_checkpoint_find(b.c, t.name);
            ASSERT_NE(ct, nullptr);
            EXPECT_EQ(t.data, ct->data); // zero-copy into the mapping
            EXPECT_EQ(t.nbytes, ct->nbytes);
        }
        const qilin_bound_tensor *k = qilin_bound_get(b.b, QILIN_W_K, 1, -1);
        ASSERT_NE(k, nullptr);
        EXPECT_EQ(k->nbytes, 16u * 32 * 2);
        EXPECT_EQ(((const unsigned char *)k->data)[0],
                  (unsigned char)(0x10 + (find_st(ts, k->name) - ts.data())));
        EXPECT_STREQ(qilin_wdtype_name(k->dtype), "BF16");
    }
    expect_bind_error(
        m.d, dir, without(ts, "model.layers.1.mlp.up_proj.weight"),
        {"tensor 'model.layers.1.mlp.up_proj.weight' (up [48, 32]) is missing", "qilin_model_bind_llama: "});
    std::vector<StTensor> two_missing =
        without(without(ts, "model.norm.weight"), "model.layers.0.mlp.gate_proj.weight");
    expect_bind_error(m.d, dir, two_missing,
                      {"'model.layers.0.mlp.gate_proj.weight'", "1 more required tensors are missing"});
    std::vector<StTensor> misshaped = ts;
    find_st(misshaped, "model.layers.0.self_attn.k_proj.weight")->shape = {17, 32};
    expect_bind_error(
        m.d, dir, misshaped,
        {"tensor 'model.layers.0.self_attn.k_proj.weight' has shape [17, 32]", "expects [16, 32]"});
    std::vector<StTensor> extra = ts;
    extra.push_back({"model.layers.0.self_attn.extra.weight", "BF16", {2}, ""});
    expect_bind_error(m.d, dir, extra,
                      {"unexpected tensor 'model.layers.0.self_attn.extra.weight'", "LlamaForCausalLM"});
    std::vector<StTensor> ints = ts;
    find_st(ints, "model.norm.weight")->dtype = "I16";
    expect_bind_error(m.d, dir, ints, {"'model.norm.weight' is I16, which cannot hold weights"});
    std::vector<StTensor> mtp = ts; // no MTP layers declared: layer 2 is unexpected
    mtp.push_back({"model.layers.2.input_layernorm.weight", "BF16", {32}, ""});
    expect_bind_error(m.d, dir, mtp, {"unexpected tensor 'model.layers.2.input_layernorm.weight'"});
}

TEST(Bind, ShardedCheckpoint) {
    std::string dir = write_config("bind_sharded", kTinyLlama);
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    std::vector<StTensor> ts = tensors_for(m.d), a(ts.begin(), ts.begin() + 7), b(ts.begin() + 7, ts.end());
    write_file(dir + "/model-00001-of-00002.safetensors", st_image(a));
    write_file(dir + "/model-00002-of-00002.safetensors", st_image(b));
    std::string index = "{\"metadata\":{},\"weight_map\":{";
    for (size_t i = 0; i < ts.size(); i++)
        index += (i ? ",\"" : "\"") + ts[i].name + "\":\"model-0000" + (i < 7 ? "1" : "2") +
                 "-of-00002.safetensors\"";
    write_file(dir + "/model.safetensors.index.json", index + "}}");
    unlink((dir + "/model.safetensors").c_str());
    Bound bd;
    QILIN_ASSERT_OK(qilin_checkpoint_open((dir + "/config.json").c_str(), &bd.c));
    QILIN_ASSERT_OK(qilin_model_bind(m.d, bd.c, &bd.b));
    EXPECT_NE(std::string(bd.b->tensors[0].file).find("model-00001-of-00002"), std::string::npos);
    EXPECT_NE(std::string(bd.b->tensors[m.d->n_tensors - 1].file).find("model-00002-of-00002"),
              std::string::npos);
    unlink((dir + "/model.safetensors.index.json").c_str());
}

const Keys kTinyDeepSeekV3 = {
    {"architectures", "[\"DeepseekV3ForCausalLM\"]"},
    {"model_type", "\"deepseek_v3\""},
    {"vocab_size", "64"},
    {"hidden_size", "32"},
    {"intermediate_size", "48"},
    {"moe_intermediate_size", "8"},
    {"num_hidden_layers", "2"},
    {"num_attention_heads", "2"},
    {"num_key_value_heads", "2"},
    {"q_lora_rank", "16"},
    {"kv_lora_rank", "16"},
    {"qk_nope_head_dim", "8"},
    {"qk_rope_head_dim", "4"},
    {"v_head_dim", "8"},
    {"n_routed_experts", "4"},
    {"num_experts_per_tok", "2"},
    {"n_shared_experts", "1"},
    {"first_k_dense_replace", "1"},
    {"n_group", "2"},
    {"topk_group", "1"},
    {"scoring_func", "\"sigmoid\""},
    {"topk_method", "\"noaux_tc\""},
    {"norm_topk_prob", "true"},
    {"routed_scaling_factor", "2.5"},
    {"num_nextn_predict_layers", "1"},
    {"rms_norm_eps", "1e-6"},
    {"rope_theta", "10000"},
    {"max_position_embeddings", "256"},
    {"bos_token_id", "0"},
    {"eos_token_id", "1"},
    {"quantization_config",
     "{\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [16, 16]}"}};

TEST(Bind, TinyDeepSeekV3Fp8WithMtp) {
    std::string dir = write_config("bind_dsv3", kTinyDeepSeekV3);
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    EXPECT_EQ(m.d->n_moe_layers, 1);
    std::vector<StTensor> ts = tensors_for(m.d, true);
    // The MTP module is stored as layer 2 (models.md §9) and ignored.
    for (const char *n : {"model.layers.2.enorm.weight", "model.layers.2.hnorm.weight",
                          "model.layers.2.input_layernorm.weight"})
        ts.push_back({n, "BF16", {32}, ""});
    ts.push_back({"model.layers.2.eh_proj.weight", "BF16", {32, 64}, ""});
    ts.push_back({"model.layers.2.mlp.experts.3.down_proj.weight", "F8_E4M3", {32, 8}, ""});
    ts.push_back({"model.layers.2.mlp.experts.3.down_proj.weight_scale_inv", "F32", {2, 1}, ""});
    {
        Bound b;
        QILIN_ASSERT_OK(bind_dir(m.d, dir, ts, b));
        EXPECT_EQ(b.b->n_ignored, 6);
        const qilin_bound_tensor *qb = qilin_bound_get(b.b, QILIN_W_Q_B, 0, -1);
        ASSERT_NE(qb, nullptr);
        EXPECT_EQ(qb->dtype, QILIN_WDT_F8_E4M3);
        EXPECT_EQ(qb->quant, QILIN_WQ_FP8_BLOCK);
        EXPECT_EQ(qb->shape[0], 24); // nh (dn + dr)
        EXPECT_EQ(qb->scale_dtype, QILIN_WDT_F32);
        EXPECT_EQ(qb->scale_shape[0], 2);
        EXPECT_EQ(qb->scale_shape[1], 1);
        EXPECT_EQ(qb->block[0], 16);
        EXPECT_EQ(qb->scale,
                  qilin_checkpoint_find(b.c, "model.layers.0.self_attn.q_b_proj.weight_scale_inv")->data);
        EXPECT_EQ(b.b->n_companions, 0 + (int64_t)std::count_if(ts.begin(), ts.end(), [](const StTensor &t) {
                                         return t.name.find("_scale_inv") != std::string::npos &&
                                                t.name.find("layers.2.") == std::string::npos;
                                     }));
        const qilin_bound_tensor *rb = qilin_bound_get(b.b, QILIN_W_ROUTER_BIAS, 1, -1);
        ASSERT_NE(rb, nullptr);
        EXPECT_EQ(rb->dtype, QILIN_WDT_F32);
        EXPECT_EQ(rb->quant, QILIN_WQ_NONE);
        EXPECT_NE(qilin_bound_get(b.b, QILIN_W_EXP_DOWN, 1, 3), nullptr);
        EXPECT_EQ(qilin_bound_get(b.b, QILIN_W_EXP_DOWN, 1, 4), nullptr);
    }
    const std::string w = "model.layers.1.mlp.experts.2.up_proj.weight";
    expect_bind_error(m.d, dir, without(ts, w + "_scale_inv"), {("FP8 tensor '" + w + "' has no").c_str()});
    std::vector<StTensor> bad_scale = ts;
    find_st(bad_scale, w + "_scale_inv")->shape = {1, 1};
    expect_bind_error(m.d, dir, bad_scale, {(w + "_scale_inv' has shape [1, 1]").c_str(), "expects [1, 2]"});
    std::vector<StTensor> orphan = ts; // a scale next to a BF16 weight is not a companion
    orphan.push_back({"model.layers.0.input_layernorm.weight_scale_inv", "F32", {1}, ""});
    expect_bind_error(m.d, dir, orphan,
                      {"unexpected tensor 'model.layers.0.input_layernorm.weight_scale_inv'"});
    std::vector<StTensor> mtp2 = ts; // only num_nextn_predict_layers layers are ignored
    mtp2.push_back({"model.layers.3.enorm.weight", "BF16", {32}, ""});
    expect_bind_error(m.d, dir, mtp2, {"unexpected tensor 'model.layers.3.enorm.weight'"});
}

TEST(Bind, Int4CompressedTensorsExperts) {
    Keys k = with(
        kTinyDeepSeekV3,
        {{"num_nextn_predict_layers", "0"},
         {"quantization_config",
          "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\", \"config_groups\": "
          "{\"group_0\": {\"weights\": {\"num_bits\": 4, \"type\": \"int\", \"group_size\": 8}}}}"}});
    std::string dir = write_config("bind_int4", k);
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    EXPECT_EQ(m.d->weight_group, 8);
    std::vector<StTensor> ts;
    for (auto &t : tensors_for(m.d)) {
        if (t.name.find(".experts.") == std::string::npos) {
            ts.push_back(t);
            continue;
        }
        std::string base = t.name.substr(0, t.name.size() - strlen("weight"));
        int64_t out = t.shape[0], in = t.shape[1];
        ts.push_back({base + "weight_packed", "I32", {out, (in + 7) / 8}, ""});
        ts.push_back({base + "weight_scale", "BF16", {out, in / 8}, ""});
        std::string shape(8, '\0');
        memcpy(&shape[0], &out, 4), memcpy(&shape[4], &in, 4); // little-endian I32 pair
        ts.push_back({base + "weight_shape", "I32", {2}, shape});
    }
    {
        Bound b;
        QILIN_ASSERT_OK(bind_dir(m.d, dir, ts, b));
        const qilin_bound_tensor *e = qilin_bound_get(b.b, QILIN_W_EXP_DOWN, 1, 0);
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(e->quant, QILIN_WQ_INT4_GROUP);
        EXPECT_STREQ(e->name, "model.layers.1.mlp.experts.0.down_proj.weight_packed");
        EXPECT_EQ(e->dtype, QILIN_WDT_I32);
        EXPECT_EQ(e->shape[0], 32);
        EXPECT_EQ(e->shape[1], 1);
        EXPECT_EQ(e->scale_dtype, QILIN_WDT_BF16);
        EXPECT_EQ(e->block[1], 8);
        EXPECT_EQ(b.b->n_companions, 2 * 4 * 3);
    }
    std::vector<StTensor> bad = ts;
    int32_t wrong = 31;
    memcpy(&find_st(bad, "model.layers.1.mlp.experts.1.gate_proj.weight_shape")->data[4], &wrong, 4);
    expect_bind_error(m.d, dir, bad,
                      {"'model.layers.1.mlp.experts.1.gate_proj.weight_shape' (I32 [8, 31])", "[8, 32]"});
}

TEST(Bind, TiedEmbeddingsAcceptAStoredCopy) {
    std::string dir = write_config("bind_tied", with(kTinyLlama, {{"tie_word_embeddings", "true"}}));
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    EXPECT_EQ(qilin_model_find_spec(m.d, QILIN_W_LM_HEAD, -1, -1), -1);
    std::vector<StTensor> ts = tensors_for(m.d);
    ts.push_back({"lm_head.weight", "BF16", {64, 32}, ""});
    Bound b;
    QILIN_ASSERT_OK(bind_dir(m.d, dir, ts, b));
    EXPECT_EQ(b.b->n_ignored, 1);
}

// ---- the tiny transformers-written fixtures bind cleanly ---------------------

class FixtureModels : public testing::TestWithParam<const char *> {};

TEST_P(FixtureModels, Bind) {
    std::string dir = std::string(QILIN_SOURCE_DIR "/tests/fixtures/models/") + GetParam();
    struct stat st;
    if (stat((dir + "/config.json").c_str(), &st) != 0) GTEST_SKIP() << dir << " has no config.json";
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    Bound b;
    QILIN_ASSERT_OK(qilin_checkpoint_open(dir.c_str(), &b.c));
    QILIN_ASSERT_OK(qilin_model_bind(m.d, b.c, &b.b));
    EXPECT_EQ(b.b->n_ignored, 0);
    EXPECT_EQ(qilin_checkpoint_tensor_count(b.c), m.d->n_tensors); // nothing left over, nothing missing
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureModels,
                         testing::Values("deepseek_v2", "deepseek_v2_group", "deepseek_v3",
                                         "deepseek_v3_noqlora", "gpt_neox", "gptj", "llama", "mistral",
                                         "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "stories260K",
                                         "stories260K_mixtral"),
                         [](const testing::TestParamInfo<const char *> &i) { return std::string(i.param); });

TEST(ModelDesc, RopeParametersSpelling) { // transformers >= 5 writes rope_parameters
    Keys k = with(kTinyLlama,
                  {{"rope_theta", ""},
                   {"rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 50000.0, \"factor\": 4.0, "
                                       "\"original_max_position_embeddings\": 32}"}});
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(write_config("rope_parameters", k).c_str(), &m.d));
    EXPECT_DOUBLE_EQ(m.d->rope.theta, 50000);
    EXPECT_EQ(m.d->rope.scaling, QILIN_ROPE_SCALING_YARN);
    EXPECT_DOUBLE_EQ(m.d->rope.factor, 4);
    EXPECT_DOUBLE_EQ(m.d->rope.original_max_position, 32);
}

// ---- GGUF ------------------------------------------------------------------

// GGUF image writer: metadata (typed) and tensors (ne = reversed shape).
struct GgufWriter {
    std::string kvs;
    uint64_t n_kvs = 0;
    struct T {
        std::string name;
        std::vector<uint64_t> ne;
        uint32_t type;
        uint64_t nbytes;
    };
    std::vector<T> tensors;

    void raw(uint64_t v, int n) {
        for (int i = 0; i < n; i++) kvs.push_back((char)(v >> (8 * i)));
    }
    void key(const std::string &k, gguf_type t) {
        raw(k.size(), 8);
        kvs += k;
        raw(t, 4);
        n_kvs++;
    }
    void str(const std::string &k, const std::string &v) {
        key(k, GGUF_TYPE_STRING);
        raw(v.size(), 8);
        kvs += v;
    }
    void u32(const std::string &k, uint32_t v) { key(k, GGUF_TYPE_UINT32), raw(v, 4); }
    void f32(const std::string &k, float v) {
        uint32_t x;
        memcpy(&x, &v, 4);
        key(k, GGUF_TYPE_FLOAT32), raw(x, 4);
    }
    void boolean(const std::string &k, bool v) { key(k, GGUF_TYPE_BOOL), raw(v, 1); }
    void tensor(const std::string &name, std::vector<int64_t> shape, uint32_t type = GGUF_DT_F32) {
        std::vector<uint64_t> ne(shape.rbegin(), shape.rend());
        uint64_t n = 1;
        for (uint64_t d : ne) n *= d;
        uint64_t bytes = type == GGUF_DT_F32 ? 4 * n : type == GGUF_DT_Q8_0 ? n / 32 * 34 : 2 * n;
        tensors.push_back({name, ne, type, bytes});
    }
    std::string image() const {
        std::string out = "GGUF";
        auto put = [&](uint64_t v, int n) {
            for (int i = 0; i < n; i++) out.push_back((char)(v >> (8 * i)));
        };
        put(3, 4), put(tensors.size(), 8), put(n_kvs, 8);
        out += kvs;
        uint64_t off = 0;
        for (auto &t : tensors) {
            put(t.name.size(), 8);
            out += t.name;
            put(t.ne.size(), 4);
            for (uint64_t d : t.ne) put(d, 8);
            put(t.type, 4), put(off, 8);
            off = (off + t.nbytes + 31) / 32 * 32;
        }
        while (out.size() % 32) out.push_back('\0');
        return out + std::string(off, '\x3c');
    }
};

// Writes the metadata alone, loads it, then writes the file again with every
// spec of that descriptor as a tensor (plus `extra`, minus `drop`).
std::string write_gguf_model(const std::string &name, GgufWriter meta,
                             const std::vector<GgufWriter::T> &extra = {}, const std::string &drop = "",
                             std::map<std::string, uint32_t> types = {}) {
    std::string path = temp_path(name + ".gguf");
    write_file(path, meta.image());
    Desc bare;
    EXPECT_EQ(qilin_model_desc_load(path.c_str(), &bare.d), QILIN_OK) << qilin_last_error();
    if (!bare.d) return path;
    for (int i = 0; i < bare.d->n_tensors; i++) {
        const qilin_tensor_spec &s = bare.d->tensors[i];
        if (s.name == drop) continue;
        auto t = types.find(s.name);
        meta.tensor(s.name, std::vector<int64_t>(s.shape, s.shape + s.n_dims),
                    t == types.end() ? (uint32_t)GGUF_DT_F32 : t->second);
    }
    for (auto &t : extra) meta.tensors.push_back(t);
    write_file(path, meta.image());
    return path;
}

GgufWriter tiny_mixtral_meta() {
    GgufWriter w;
    w.str("general.architecture", "llama");
    w.u32("llama.block_count", 2);
    w.u32("llama.context_length", 256);
    w.u32("llama.embedding_length", 32);
    w.u32("llama.feed_forward_length", 48);
    w.u32("llama.attention.head_count", 4);
    w.u32("llama.attention.head_count_kv", 2);
    w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.f32("llama.rope.freq_base", 1e6f);
    w.u32("llama.rope.dimension_count", 8);
    w.u32("llama.expert_count", 4);
    w.u32("llama.expert_used_count", 2);
    w.u32("llama.vocab_size", 64);
    w.u32("tokenizer.ggml.bos_token_id", 1);
    w.u32("tokenizer.ggml.eos_token_id", 2);
    return w;
}

TEST(Gguf, TinyMixtralDescriptorAndBind) {
    GgufWriter::T rope_freqs{"rope_freqs.weight", {4}, GGUF_DT_F32, 16};
    std::string path = write_gguf_model("mixtral", tiny_mixtral_meta(), {rope_freqs}, "",
                                        {{"blk.0.attn_q.weight", GGUF_DT_Q8_0}});
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(path.c_str(), &m.d));
    const qilin_model_desc *d = m.d;
    EXPECT_TRUE(d->from_gguf);
    EXPECT_EQ(d->arch, QILIN_ARCH_MIXTRAL);
    EXPECT_STREQ(d->model_type, "llama");
    EXPECT_EQ(d->rope.pairing, QILIN_ROPE_INTERLEAVED); // llama.cpp permuted q/k
    EXPECT_DOUBLE_EQ(d->rope.theta, 1e6);
    EXPECT_EQ(d->vocab, 64);
    EXPECT_EQ(d->moe_ffn_dim, 48);
    EXPECT_TRUE(d->norm_topk_prob);
    EXPECT_FALSE(d->tied_embeddings);
    EXPECT_EQ(d->n_moe_layers, 2);
    ASSERT_EQ(d->n_eos, 1);
    EXPECT_EQ(d->bos_id, 1);
    EXPECT_SPEC(d, QILIN_W_EXP_GATE, 1, -1, "blk.1.ffn_gate_exps.weight", "[4, 48, 32]");
    EXPECT_SPEC(d, QILIN_W_EXP_DOWN, 0, -1, "blk.0.ffn_down_exps.weight", "[4, 32, 48]");
    EXPECT_SPEC(d, QILIN_W_ROUTER, 0, -1, "blk.0.ffn_gate_inp.weight", "[4, 32]");
    EXPECT_SPEC(d, QILIN_W_K, 1, -1, "blk.1.attn_k.weight", "[16, 32]");
    EXPECT_SPEC(d, QILIN_W_ROPE_FREQS, -1, -1, "rope_freqs.weight", "[4]");
    qilin_param_counts c;
    qilin_model_param_counts(d, &c); // same count as the per-expert HF layout; rope_freqs is no parameter
    int64_t per_layer = 32 + 2 * 32 * 32 + 2 * 16 * 32 + 32 + 4 * 32 + 3 * 4 * 48 * 32;
    EXPECT_EQ(c.total, 2 * 64 * 32 + 32 + 2 * per_layer);
    EXPECT_EQ(c.routed_experts, 2 * 3 * 4 * 48 * 32);
    {
        Bound b;
        QILIN_ASSERT_OK(qilin_checkpoint_open(path.c_str(), &b.c));
        EXPECT_TRUE(qilin_checkpoint_is_gguf(b.c));
        QILIN_ASSERT_OK(qilin_model_bind(d, b.c, &b.b));
        const qilin_bound_tensor *q = qilin_bound_get(b.b, QILIN_W_Q, 0, -1);
        ASSERT_NE(q, nullptr);
        EXPECT_EQ(q->dtype, QILIN_WDT_Q8_0);
        EXPECT_STREQ(qilin_wdtype_name(q->dtype), "Q8_0");
        EXPECT_EQ(q->nbytes, 32u * 34);
        const qilin_bound_tensor *e = qilin_bound_get(b.b, QILIN_W_EXP_UP, 1, -1);
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(e->n_dims, 3);
        EXPECT_EQ(e->shape[0], 4);
        EXPECT_EQ(e->nbytes, 4u * 48 * 32 * 4);
    }
    // Mutations: a missing stacked expert tensor, a wrong expert count.
    std::string missing =
        write_gguf_model("mixtral_missing", tiny_mixtral_meta(), {}, "blk.1.ffn_down_exps.weight");
    Desc m2;
    QILIN_ASSERT_OK(qilin_model_desc_load(missing.c_str(), &m2.d));
    Bound b2;
    QILIN_ASSERT_OK(qilin_checkpoint_open(missing.c_str(), &b2.c));
    EXPECT_EQ(qilin_model_bind(m2.d, b2.c, &b2.b), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error())
                  .find("'blk.1.ffn_down_exps.weight' (exp_down [4, 32, 48]) is missing"),
              std::string::npos)
        << qilin_last_error();
    GgufWriter::T wrong{"blk.1.ffn_down_exps.weight", {48, 32, 5}, GGUF_DT_F32, 48 * 32 * 5 * 4};
    std::string misshaped =
        write_gguf_model("mixtral_shape", tiny_mixtral_meta(), {wrong}, "blk.1.ffn_down_exps.weight");
    Bound b3;
    QILIN_ASSERT_OK(qilin_checkpoint_open(misshaped.c_str(), &b3.c));
    EXPECT_EQ(qilin_model_bind(m2.d, b3.c, &b3.b), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error())
                  .find("has shape [5, 32, 48]; the MixtralForCausalLM descriptor expects [4, 32, 48]"),
              std::string::npos)
        << qilin_last_error();
}

TEST(Gguf, TinyDeepSeek2SplitKvB) {
    GgufWriter w;
    w.str("general.architecture", "deepseek2");
    w.u32("deepseek2.block_count", 2);
    w.u32("deepseek2.context_length", 256);
    w.u32("deepseek2.embedding_length", 32);
    w.u32("deepseek2.feed_forward_length", 48);
    w.u32("deepseek2.attention.head_count", 2);
    w.u32("deepseek2.attention.head_count_kv", 1);
    w.u32("deepseek2.attention.key_length", 20);   // kv_lora + dr (absorbed MQA view)
    w.u32("deepseek2.attention.value_length", 16); // kv_lora
    w.u32("deepseek2.attention.key_length_mla", 12);
    w.u32("deepseek2.attention.value_length_mla", 8);
    w.u32("deepseek2.attention.q_lora_rank", 16);
    w.u32("deepseek2.attention.kv_lora_rank", 16);
    w.f32("deepseek2.attention.layer_norm_rms_epsilon", 1e-6f);
    w.u32("deepseek2.rope.dimension_count", 4);
    w.f32("deepseek2.rope.freq_base", 10000);
    w.str("deepseek2.rope.scaling.type", "yarn");
    w.f32("deepseek2.rope.scaling.factor", 40);
    w.u32("deepseek2.rope.scaling.original_context_length", 4096);
    w.f32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1f);
    w.u32("deepseek2.expert_count", 4);
    w.u32("deepseek2.expert_used_count", 2);
    w.u32("deepseek2.expert_shared_count", 1);
    w.u32("deepseek2.expert_feed_forward_length", 8);
    w.u32("deepseek2.leading_dense_block_count", 1);
    w.f32("deepseek2.expert_weights_scale", 2.5f);
    w.boolean("deepseek2.expert_weights_norm", true);
    w.u32("deepseek2.expert_gating_func", 2);
    w.u32("deepseek2.expert_group_count", 2);
    w.u32("deepseek2.expert_group_used_count", 1);
    w.u32("deepseek2.vocab_size", 64);
    // The metadata-only pass lists attn_kv_b; a split file carries attn_k_b / attn_v_b instead.
    std::string path = write_gguf_model("ds2", w);
    Desc bare;
    QILIN_ASSERT_OK(qilin_model_desc_load(path.c_str(), &bare.d));
    EXPECT_NE(qilin_model_find_spec(bare.d, QILIN_W_KV_B, 0, -1), -1);
    GgufWriter full = w;
    for (int i = 0; i < bare.d->n_tensors; i++) {
        const qilin_tensor_spec &s = bare.d->tensors[i];
        if (s.slot == QILIN_W_KV_B) {
            full.tensor("blk." + std::to_string(s.layer) + ".attn_k_b.weight", {2, 16, 8});
            full.tensor("blk." + std::to_string(s.layer) + ".attn_v_b.weight", {2, 8, 16});
        } else {
            full.tensor(s.name, std::vector<int64_t>(s.shape, s.shape + s.n_dims));
        }
    }
    write_file(path, full.image());
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(path.c_str(), &m.d));
    const qilin_model_desc *d = m.d;
    EXPECT_EQ(d->arch, QILIN_ARCH_DEEPSEEK_V3);
    EXPECT_EQ(d->attn, QILIN_ATTN_MLA);
    EXPECT_EQ(d->n_kv_heads, 2);
    EXPECT_EQ(d->qk_nope_dim, 8);
    EXPECT_EQ(d->v_head_dim, 8);
    EXPECT_EQ(d->rope.pairing, QILIN_ROPE_INTERLEAVED);
    EXPECT_DOUBLE_EQ(d->rope.mscale_all_dim, 1.0000000149011612); // 0.1f * 10
    EXPECT_NEAR(d->attn_scale, 1.873854 / std::sqrt(12.0), 1e-6);
    EXPECT_EQ(d->moe_score, QILIN_MOE_SIGMOID);
    EXPECT_EQ(d->moe_group_score, QILIN_MOE_GROUP_TOP2_SUM);
    EXPECT_TRUE(d->router_bias);
    EXPECT_TRUE(d->norm_topk_prob);
    EXPECT_FLOAT_EQ(d->routed_scale, 2.5f);
    EXPECT_EQ(d->n_group, 2);
    EXPECT_EQ(d->layer_ffn[0], QILIN_FFN_GATED);
    EXPECT_EQ(d->layer_ffn[1], QILIN_FFN_MOE);
    EXPECT_EQ(d->shared_ffn_dim, 8);
    EXPECT_EQ(qilin_model_find_spec(d, QILIN_W_KV_B, 0, -1), -1);
    EXPECT_SPEC(d, QILIN_W_K_B, 0, -1, "blk.0.attn_k_b.weight", "[2, 16, 8]");
    EXPECT_SPEC(d, QILIN_W_V_B, 1, -1, "blk.1.attn_v_b.weight", "[2, 8, 16]");
    EXPECT_SPEC(d, QILIN_W_ROUTER_BIAS, 1, -1, "blk.1.exp_probs_b.bias", "[4]");
    EXPECT_SPEC(d, QILIN_W_SHARED_DOWN, 1, -1, "blk.1.ffn_down_shexp.weight", "[32, 8]");
    Bound b;
    QILIN_ASSERT_OK(qilin_checkpoint_open(path.c_str(), &b.c));
    QILIN_ASSERT_OK(qilin_model_bind(d, b.c, &b.b));
}

TEST(Gguf, VocabOnlyGptNeoxFixture) { // llama.cpp's gpt-neox-20b vocab file: metadata, no tensors
    Desc m;
    QILIN_ASSERT_OK(
        qilin_model_desc_load(QILIN_SOURCE_DIR "/tests/fixtures/gguf/ggml-vocab-gpt-neox.gguf", &m.d));
    const qilin_model_desc *d = m.d;
    EXPECT_EQ(d->arch, QILIN_ARCH_GPT_NEOX);
    EXPECT_EQ(d->hidden, 6144);
    EXPECT_EQ(d->n_layers, 44);
    EXPECT_EQ(d->n_heads, 64);
    EXPECT_EQ(d->head_dim, 96);
    EXPECT_EQ(d->rope.rot_dim, 24);
    EXPECT_EQ(d->rope.pairing, QILIN_ROPE_HALF_SPLIT);
    EXPECT_EQ(d->block, QILIN_BLOCK_PARALLEL);
    EXPECT_EQ(d->vocab, 50432);
    EXPECT_EQ(d->max_position, 2048);
    EXPECT_FALSE(d->tied_embeddings);
    EXPECT_SPEC(d, QILIN_W_QKV, 43, -1, "blk.43.attn_qkv.weight", "[18432, 6144]");
    qilin_param_counts c;
    qilin_model_param_counts(d, &c);
    EXPECT_EQ(c.total, 20554567680LL); // GPT-NeoX-20B (Hugging Face count)
}

TEST(Gguf, UnsupportedArchitecture) {
    GgufWriter w;
    w.str("general.architecture", "phi3");
    std::string path = temp_path("phi3.gguf");
    write_file(path, w.image());
    qilin_model_desc *d = nullptr;
    EXPECT_EQ(qilin_model_desc_load(path.c_str(), &d), QILIN_ERR_UNSUPPORTED);
    std::string msg = qilin_last_error();
    EXPECT_NE(msg.find(path + ": general.architecture 'phi3' is not supported; supported: llama"),
              std::string::npos)
        << msg;
    GgufWriter missing = tiny_mixtral_meta();
    missing.kvs.clear(), missing.n_kvs = 0;
    missing.str("general.architecture", "qwen2");
    missing.u32("qwen2.embedding_length", 32);
    write_file(path, missing.image());
    EXPECT_EQ(qilin_model_desc_load(path.c_str(), &d), QILIN_ERR_FORMAT);
    EXPECT_NE(std::string(qilin_last_error()).find("metadata key 'qwen2.block_count' is missing"),
              std::string::npos)
        << qilin_last_error();
}

// ---- qilin inspect's printout -------------------------------------------------

std::string printed(const qilin_model_desc *d) {
    FILE *f = tmpfile();
    qilin_model_desc_print(d, f);
    std::string out(ftell(f), '\0');
    rewind(f);
    EXPECT_EQ(fread(&out[0], 1, out.size(), f), out.size());
    fclose(f);
    return out;
}

TEST(Inspect, PrintsGroupsAndCounts) {
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("DeepSeek-V3.config.json"), &m.d));
    std::string out = printed(m.d);
    for (const char *want :
         {"model: DeepseekV3ForCausalLM (model_type deepseek_v3)", "sizes:\n",
          "  layers                 61 (3 dense, 58 MoE)", "attention:\n",
          "  kind                   MLA, 128 heads",
          "q_lora 1536, kv_lora 512, qk_nope 128, qk_rope 64, v_head 128",
          "  softmax_scale          0.1352338", "rope:\n", "interleaved, rot_dim 64, theta 10000",
          "yarn, factor 40, original 4096, beta 32/1, mscale 1/1", "moe:\n",
          "  experts                256, top_k 8, expert ffn 2048",
          "sigmoid + bias, groups 8 keep 4 (top2-sum)", "  total                  671026419200 (671.03B)",
          "  activated              37552297472 (37.55B)", "  activated - embedding  36625618432 (36.63B)",
          "definition: every stored tensor", "quantization:\n  method                 fp8, block 128x128\n"})
        EXPECT_NE(out.find(want), std::string::npos) << "missing '" << want << "' in:\n" << out;
    Desc l;
    QILIN_ASSERT_OK(qilin_model_desc_load(CONFIG_FIXTURE("Llama-3.1-8B-Instruct.config.json"), &l.d));
    out = printed(l.d);
    for (const char *want :
         {"  kind                   GQA, 32 heads, 8 kv heads, head_dim 128", "half-split, rot_dim 128",
          "llama3, factor 8, low 1, high 4, original 8192", "  eos                    128001 128008 128009",
          "  total                  8030261248 (8.03B)"})
        EXPECT_NE(out.find(want), std::string::npos) << "missing '" << want << "' in:\n" << out;
    EXPECT_EQ(out.find("moe:"), std::string::npos);
}

TEST(Inspect, WeightsSummary) {
    std::string dir = write_config("inspect_dsv3", kTinyDeepSeekV3);
    Desc m;
    QILIN_ASSERT_OK(qilin_model_desc_load(dir.c_str(), &m.d));
    std::vector<StTensor> ts = tensors_for(m.d, true);
    ts.push_back({"model.layers.2.enorm.weight", "BF16", {32}, ""}); // MTP, ignored
    Bound b;
    QILIN_ASSERT_OK(bind_dir(m.d, dir, ts, b));
    FILE *f = tmpfile();
    qilin_checkpoint_print_summary(b.c, b.b, f);
    std::string out(ftell(f), '\0');
    rewind(f);
    ASSERT_EQ(fread(&out[0], 1, out.size(), f), out.size());
    fclose(f);
    size_t fp8 = 0, bytes = 0;
    for (auto &t : ts) {
        size_t n = st_size(t.dtype);
        for (int64_t d : t.shape) n *= (size_t)d;
        fp8 += t.dtype == "F8_E4M3", bytes += n;
    }
    for (std::string want : {"weights: " + dir + " (safetensors)",
                             "  F8_E4M3                " + std::to_string(fp8) + " tensors",
                             "  all                    " + std::to_string(ts.size()) +
                                 " tensors, 0.000 GiB (" + std::to_string(bytes) + " bytes)",
                             "  binding                " + std::to_string(m.d->n_tensors) + " of " +
                                 std::to_string(m.d->n_tensors) + " specs bound, " + std::to_string(fp8) +
                                 " scale/shape companions, 1 ignored"})
        EXPECT_NE(out.find(want), std::string::npos) << "missing '" << want << "' in:\n" << out;
}

} // namespace
