// test_plan.cpp — sharding and memory plans (host/plan.h) on real model
// shapes: Llama-3.1-8B, Qwen2.5-7B, Qwen3-8B, DeepSeek-V3 (FP8) and Qwen3-MoE
// from their config.json fixtures (through qilin_model_desc_load), plus small
// hand-built descriptors for the cases no fixture has (GPT-NeoX fused qkv, a
// vocabulary that does not split, KV heads that neither split nor divide).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include "host/plan.h"
#include "test_util.h"

namespace {

constexpr uint64_t GiB = 1ull << 30;

struct Desc {
    qilin_model_desc d{};
    std::vector<qilin_tensor_spec> specs;

    void add(const std::string &name, qilin_slot slot, int layer, int expert, std::vector<int64_t> shape) {
        qilin_tensor_spec s{};
        std::snprintf(s.name, sizeof s.name, "%s", name.c_str());
        s.slot = slot;
        s.layer = layer;
        s.expert = expert;
        s.n_dims = (int)shape.size();
        for (size_t i = 0; i < shape.size(); i++) s.shape[i] = shape[i];
        specs.push_back(s);
    }
    const qilin_model_desc *get() {
        d.tensors = specs.data();
        d.n_tensors = (int)specs.size();
        return &d;
    }
    int find(const std::string &name) const {
        for (size_t i = 0; i < specs.size(); i++)
            if (name == specs[i].name) return (int)i;
        return -1;
    }
};

std::string L(int i, const char *rest) { return "model.layers." + std::to_string(i) + "." + rest; }

// Llama / Qwen2 / Qwen3 / Mistral: GQA + gated MLP.
Desc gqa_dense(const char *name, int vocab, int H, int layers, int nh, int nkv, int hd, int ffn,
               bool qkv_bias, bool qk_norm) {
    Desc m;
    qilin_model_desc &d = m.d;
    std::snprintf(d.source, sizeof d.source, "%s", name);
    std::snprintf(d.model_type, sizeof d.model_type, "%s", name);
    d.vocab = vocab, d.hidden = H, d.n_layers = layers, d.n_heads = nh, d.n_kv_heads = nkv;
    d.head_dim = d.head_dim_v = hd, d.ffn_dim = ffn, d.attn = QILIN_ATTN_GQA;
    m.add("model.embed_tokens.weight", QILIN_W_EMBED, -1, -1, {vocab, H});
    for (int i = 0; i < layers; i++) {
        d.layer_ffn[i] = QILIN_FFN_GATED;
        m.add(L(i, "input_layernorm.weight"), QILIN_W_ATTN_NORM, i, -1, {H});
        m.add(L(i, "self_attn.q_proj.weight"), QILIN_W_Q, i, -1, {nh * hd, H});
        m.add(L(i, "self_attn.k_proj.weight"), QILIN_W_K, i, -1, {nkv * hd, H});
        m.add(L(i, "self_attn.v_proj.weight"), QILIN_W_V, i, -1, {nkv * hd, H});
        if (qkv_bias) {
            m.add(L(i, "self_attn.q_proj.bias"), QILIN_W_Q_BIAS, i, -1, {nh * hd});
            m.add(L(i, "self_attn.k_proj.bias"), QILIN_W_K_BIAS, i, -1, {nkv * hd});
            m.add(L(i, "self_attn.v_proj.bias"), QILIN_W_V_BIAS, i, -1, {nkv * hd});
        }
        if (qk_norm) {
            m.add(L(i, "self_attn.q_norm.weight"), QILIN_W_Q_NORM, i, -1, {hd});
            m.add(L(i, "self_attn.k_norm.weight"), QILIN_W_K_NORM, i, -1, {hd});
        }
        m.add(L(i, "self_attn.o_proj.weight"), QILIN_W_O, i, -1, {H, nh * hd});
        m.add(L(i, "post_attention_layernorm.weight"), QILIN_W_FFN_NORM, i, -1, {H});
        m.add(L(i, "mlp.gate_proj.weight"), QILIN_W_GATE, i, -1, {ffn, H});
        m.add(L(i, "mlp.up_proj.weight"), QILIN_W_UP, i, -1, {ffn, H});
        m.add(L(i, "mlp.down_proj.weight"), QILIN_W_DOWN, i, -1, {H, ffn});
    }
    m.add("model.norm.weight", QILIN_W_FINAL_NORM, -1, -1, {H});
    m.add("lm_head.weight", QILIN_W_LM_HEAD, -1, -1, {vocab, H});
    return m;
}

// A descriptor loaded from tests/fixtures/configs/<name>.config.json.
struct Model {
    qilin_model_desc *d = nullptr;
    explicit Model(const char *name) {
        std::string path = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/" + name + ".config.json";
        EXPECT_EQ(qilin_model_desc_load(path.c_str(), &d), QILIN_OK) << qilin_last_error();
    }
    ~Model() { qilin_model_desc_free(d); }
    const qilin_model_desc *get() const { return d; }
    int find(const std::string &name) const {
        for (int i = 0; d && i < d->n_tensors; i++)
            if (name == d->tensors[i].name) return i;
        return -1;
    }
};

qilin_weight_format fmt(const char *name) {
    qilin_weight_format f;
    EXPECT_EQ(qilin_weight_format_parse(name, &f), QILIN_OK) << qilin_last_error();
    return f;
}

struct Plan {
    qilin_plan *p = nullptr;
    ~Plan() { qilin_plan_free(p); }
};

qilin_status make_plan(const qilin_model_desc *d, int tp, bool ep, const char *format, Plan *out) {
    qilin_plan_options o;
    qilin_plan_options_default(&o);
    o.tp = tp;
    o.ep = ep;
    o.format = fmt(format);
    return qilin_plan_create(d, &o, &out->p);
}

qilin_memory_options mem(double gib) {
    qilin_memory_options m;
    qilin_memory_options_default(&m);
    m.gpu_mem_bytes = (uint64_t)(gib * (double)GiB);
    return m;
}

template <class M>
const qilin_shard_slice *slice(const Plan &p, const M &m, int gpu, const std::string &name) {
    int i = m.find(name);
    EXPECT_GE(i, 0) << name;
    return qilin_plan_find_slice(p.p, gpu, i);
}

// ---- GGUF tensor types ----------------------------------------------------------------------

// A GGUF v3 file with the given 2-D tensors (name, type id, element bytes) of 4 x 8 elements.
std::string write_gguf(const std::string &name, const std::vector<std::pair<std::string, uint32_t>> &tensors) {
    std::string out = "GGUF";
    auto raw = [&out](uint64_t v, int n) {
        for (int i = 0; i < n; i++) out += (char)(v >> (8 * i) & 0xFF);
    };
    raw(3, 4);
    raw(tensors.size(), 8);
    raw(0, 8); // no metadata
    uint64_t offset = 0;
    for (const auto &t : tensors) {
        raw(t.first.size(), 8);
        out += t.first;
        raw(2, 4);
        raw(8, 8), raw(4, 8); // ne = {8, 4}
        raw(t.second, 4);
        raw(offset, 8);
        uint64_t bytes = 32 * (t.second == 0 ? 4 : 2);
        offset += (bytes + 31) / 32 * 32;
    }
    while (out.size() % 32) out += '\0';
    out += std::string(offset, '\0');
    std::string path = std::string("/tmp/qilin_plan_") + std::to_string(getpid()) + "_" + name;
    std::FILE *f = std::fopen(path.c_str(), "wb");
    std::fwrite(out.data(), 1, out.size(), f);
    std::fclose(f);
    return path;
}

// `qilin plan` on a GGUF once said it assumed bf16; the tensor table says how it is stored.
TEST(WeightFormat, FromGgufTensorTypes) {
    const uint32_t F32 = 0, F16 = 1, BF16 = 30;
    struct {
        uint32_t proj, embd;
        qilin_wfmt linear, dense;
    } cases[] = {
        {F32, F32, QILIN_WFMT_FP32, QILIN_WFMT_FP32},
        {F16, F32, QILIN_WFMT_FP16, QILIN_WFMT_FP32},
        {BF16, BF16, QILIN_WFMT_BF16, QILIN_WFMT_BF16},
    };
    for (const auto &c : cases) {
        std::string path = write_gguf("model.gguf", {{"token_embd.weight", c.embd},
                                                     {"blk.0.attn_q.weight", c.proj},
                                                     {"blk.0.attn_k.weight", c.proj}});
        qilin_weight_format f;
        bool known = false;
        QILIN_ASSERT_OK(qilin_weight_format_from_config(path.c_str(), &f, &known));
        EXPECT_TRUE(known);
        EXPECT_EQ(f.linear, c.linear) << f.origin;
        EXPECT_EQ(f.dense, c.dense) << f.origin;
        EXPECT_NE(std::string(f.origin).find("GGUF tensors"), std::string::npos) << f.origin;
        std::printf("%s\n", f.origin);
        std::remove(path.c_str());
    }
}

} // namespace
