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

} // namespace

TEST(WeightFormat, BytesPerFormat) {
    qilin_weight_format f = fmt("fp8");
    const int64_t qa[3] = {1536, 7168, 0};
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_BF16, 2, qa, -1, 0, 0), 1536ull * 7168 * 2);
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_FP32, 2, qa, -1, 0, 0), 1536ull * 7168 * 4);
    // fp8: bytes + fp32 scales [12, 56] (models.md §7.3)
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_FP8_BLOCK, 2, qa, -1, 0, 0), 1536ull * 7168 + 12 * 56 * 4);
    // kv_a [576, 7168]: ragged edge, scales [5, 56]
    const int64_t kva[3] = {576, 7168, 0};
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_FP8_BLOCK, 2, kva, -1, 0, 0), 576ull * 7168 + 5 * 56 * 4);
    // A slice that starts inside a block keeps the blocks it touches: rows [100, 300) -> blocks 0..2.
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_FP8_BLOCK, 2, qa, 0, 100, 200), 200ull * 7168 + 3 * 56 * 4);
    // int4 group 32: packed nibbles + bf16 scales per group.
    qilin_weight_format g = fmt("int4");
    const int64_t ex[3] = {2048, 7168, 0};
    EXPECT_EQ(qilin_weight_bytes(&g, QILIN_WFMT_INT4_GROUP, 2, ex, -1, 0, 0),
              2048ull * 7168 / 2 + 2048ull * (7168 / 32) * 2);
    // 1-D tensors are never quantised.
    const int64_t n[3] = {7168, 0, 0};
    EXPECT_EQ(qilin_weight_bytes(&f, QILIN_WFMT_FP8_BLOCK, 1, n, -1, 0, 0), 7168ull * 2);
    qilin_weight_format bad;
    EXPECT_EQ(qilin_weight_format_parse("q4_k", &bad), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("fp8"), std::string::npos) << qilin_last_error();
}

TEST(WeightFormat, FromConfig) {
    std::string dir = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/";
    qilin_weight_format f;
    bool known = false;
    QILIN_ASSERT_OK(qilin_weight_format_from_config((dir + "DeepSeek-V3.config.json").c_str(), &f, &known));
    EXPECT_TRUE(known);
    EXPECT_EQ(f.linear, QILIN_WFMT_FP8_BLOCK);
    EXPECT_EQ(f.dense, QILIN_WFMT_BF16);
    EXPECT_EQ(f.block_rows, 128);
    EXPECT_EQ(f.block_cols, 128);
    std::printf("DeepSeek-V3: %s\n", f.origin);
    QILIN_ASSERT_OK(
        qilin_weight_format_from_config((dir + "Llama-3.1-8B-Instruct.config.json").c_str(), &f, &known));
    EXPECT_TRUE(known);
    EXPECT_EQ(f.linear, QILIN_WFMT_BF16);
    // A GGUF is opened for its tensor types: a missing one is an I/O error, not "bf16".
    EXPECT_EQ(qilin_weight_format_from_config("missing-model.gguf", &f, &known), QILIN_ERR_IO);
    EXPECT_EQ(qilin_weight_format_from_config((dir + "missing.json").c_str(), &f, &known), QILIN_ERR_IO)
        << qilin_last_error();
}

TEST(ShardPlan, LlamaTp1HoldsEverything) {
    Model m("Llama-3.1-8B-Instruct");
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 1, false, "bf16", &p));
    EXPECT_EQ(p.p->gpus[0].n_slices, m.d->n_tensors);
    EXPECT_EQ(p.p->gpus[0].weight_bytes, p.p->total_weight_bytes);
    // 8.03 B parameters in bf16
    EXPECT_EQ(p.p->total_weight_bytes, 2ull * 8030261248ull);
}

TEST(ShardPlan, QwenHeadsMustSplit) {
    Model m("Qwen2.5-7B-Instruct");
    Plan p8, p4;
    EXPECT_EQ(make_plan(m.get(), 8, false, "bf16", &p8), QILIN_ERR_INVALID_ARGUMENT);
    std::string err = qilin_last_error();
    std::printf("tp 8: %s\n", err.c_str());
    EXPECT_NE(err.find("28 attention heads do not split over 8 GPUs"), std::string::npos) << err;
    EXPECT_NE(err.find("1, 2, 4"), std::string::npos) << err;
    EXPECT_EQ(p8.p, nullptr);
    QILIN_ASSERT_OK(make_plan(m.get(), 4, false, "bf16", &p4));
    // GPU 2: query heads 14..20, KV head 2 (rows 256..383), bias follows.
    const qilin_gpu_plan &g2 = p4.p->gpus[2];
    EXPECT_EQ(g2.q_head_first, 14);
    EXPECT_EQ(g2.n_q_heads, 7);
    EXPECT_EQ(g2.kv_head_first, 2);
    EXPECT_EQ(g2.n_kv_heads, 1);
    const qilin_shard_slice *k = slice(p4, m, 2, L(5, "self_attn.k_proj.weight"));
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(k->split, QILIN_SPLIT_COLUMN);
    EXPECT_EQ(k->dim, 0);
    EXPECT_EQ(k->start, 256);
    EXPECT_EQ(k->count, 128);
    EXPECT_EQ(k->bytes, 128ull * 3584 * 2);
    const qilin_shard_slice *kb = slice(p4, m, 2, L(5, "self_attn.k_proj.bias"));
    EXPECT_EQ(kb->start, 256);
    EXPECT_EQ(kb->count, 128);
    const qilin_shard_slice *o = slice(p4, m, 2, L(5, "self_attn.o_proj.weight"));
    EXPECT_EQ(o->split, QILIN_SPLIT_ROW);
    EXPECT_EQ(o->dim, 1);
    EXPECT_EQ(o->start, 14 * 128);
    EXPECT_EQ(o->count, 7 * 128);
    const qilin_shard_slice *down = slice(p4, m, 3, L(5, "mlp.down_proj.weight"));
    EXPECT_EQ(down->split, QILIN_SPLIT_ROW);
    EXPECT_EQ(down->start, 3 * 18944 / 4);
    const qilin_shard_slice *up = slice(p4, m, 3, L(5, "mlp.up_proj.weight"));
    EXPECT_EQ(up->split, QILIN_SPLIT_COLUMN);
    EXPECT_EQ(up->count, 18944 / 4);
    const qilin_shard_slice *norm = slice(p4, m, 3, L(5, "input_layernorm.weight"));
    EXPECT_EQ(norm->split, QILIN_SPLIT_REPLICATED);
    EXPECT_EQ(norm->dim, -1);
}

TEST(ShardPlan, KvHeadsSharedWhenFewerThanGpus) {
    // Llama-3.1-8B (8 KV heads) over 16 GPUs: two query heads per GPU, GPUs 2g and 2g+1 share KV head g.
    Model m("Llama-3.1-8B-Instruct");
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 16, false, "bf16", &p));
    for (int g = 0; g < 16; g++) {
        EXPECT_EQ(p.p->gpus[g].n_kv_heads, 1);
        EXPECT_EQ(p.p->gpus[g].kv_head_first, g / 2);
        const qilin_shard_slice *v = slice(p, m, g, L(0, "self_attn.v_proj.weight"));
        EXPECT_EQ(v->start, (g / 2) * 128);
        EXPECT_EQ(v->count, 128);
    }
    // 6 KV heads over 4 GPUs: neither divides.
    Desc odd = gqa_dense("odd", 1000, 768, 2, 12, 6, 64, 3072, false, false);
    Plan q;
    EXPECT_EQ(make_plan(odd.get(), 4, false, "bf16", &q), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("6 KV heads"), std::string::npos) << qilin_last_error();
}

TEST(ShardPlan, VocabPaddedWhenNotDivisible) {
    Desc m = gqa_dense("odd-vocab", 1001, 256, 1, 4, 4, 64, 512, false, false);
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 4, false, "bf16", &p));
    int64_t covered = 0;
    for (int g = 0; g < 4; g++) {
        const qilin_shard_slice *e = slice(p, m, g, "model.embed_tokens.weight");
        EXPECT_EQ(e->split, QILIN_SPLIT_VOCAB);
        EXPECT_EQ(e->start, 251 * g);
        EXPECT_EQ(e->alloc_count, 251);
        EXPECT_EQ(e->bytes, 251ull * 256 * 2);
        covered += e->count;
    }
    EXPECT_EQ(covered, 1001);
    EXPECT_EQ(slice(p, m, 3, "lm_head.weight")->count, 1001 - 3 * 251);
}

TEST(ShardPlan, Qwen3QkNormReplicated) {
    Model m("Qwen3-8B");
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 8, false, "bf16", &p));
    EXPECT_EQ(slice(p, m, 5, L(3, "self_attn.q_norm.weight"))->split, QILIN_SPLIT_REPLICATED);
    EXPECT_EQ(slice(p, m, 5, L(3, "self_attn.k_norm.weight"))->bytes, 128u * 2);
}

TEST(ShardPlan, NeoxFusedQkvByHead) {
    // GPT-NeoX: fused qkv rows are per-head [q k v] blocks of 3·hd.
    Desc m;
    m.d.n_heads = m.d.n_kv_heads = 8, m.d.head_dim = 32, m.d.hidden = 256, m.d.vocab = 512, m.d.n_layers = 1;
    m.d.ffn_dim = 1024;
    m.d.layer_ffn[0] = QILIN_FFN_PLAIN;
    m.add("gpt_neox.layers.0.attention.query_key_value.weight", QILIN_W_QKV, 0, -1, {3 * 256, 256});
    m.add("gpt_neox.layers.0.attention.query_key_value.bias", QILIN_W_QKV_BIAS, 0, -1, {3 * 256});
    m.add("gpt_neox.layers.0.attention.dense.bias", QILIN_W_O_BIAS, 0, -1, {256});
    m.add("gpt_neox.layers.0.mlp.dense_4h_to_h.bias", QILIN_W_DOWN_BIAS, 0, -1, {256});
    m.add("gpt_neox.layers.0.mlp.dense_h_to_4h.bias", QILIN_W_UP_BIAS, 0, -1, {1024});
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 4, false, "fp16", &p));
    const qilin_shard_slice *w = slice(p, m, 1, "gpt_neox.layers.0.attention.query_key_value.weight");
    EXPECT_EQ(w->start, 2 * 96);
    EXPECT_EQ(w->count, 2 * 96);
    const qilin_shard_slice *b = slice(p, m, 1, "gpt_neox.layers.0.attention.query_key_value.bias");
    EXPECT_EQ(b->start, 2 * 96);
    EXPECT_EQ(slice(p, m, 1, "gpt_neox.layers.0.attention.dense.bias")->split, QILIN_SPLIT_REPLICATED);
    EXPECT_EQ(slice(p, m, 1, "gpt_neox.layers.0.mlp.dense_4h_to_h.bias")->split, QILIN_SPLIT_REPLICATED);
    EXPECT_EQ(slice(p, m, 1, "gpt_neox.layers.0.mlp.dense_h_to_4h.bias")->start, 256);
}

TEST(ShardPlan, DeepSeekMlaAndExperts) {
    Model m("DeepSeek-V3");
    Plan tp, ep;
    QILIN_ASSERT_OK(make_plan(m.get(), 8, false, "fp8", &tp));
    QILIN_ASSERT_OK(make_plan(m.get(), 8, true, "fp8", &ep));
    // q_a / kv_a replicated, fp8 with scales.
    const qilin_shard_slice *qa = slice(tp, m, 3, L(10, "self_attn.q_a_proj.weight"));
    EXPECT_EQ(qa->split, QILIN_SPLIT_REPLICATED);
    EXPECT_EQ(qa->format, QILIN_WFMT_FP8_BLOCK);
    EXPECT_EQ(qa->bytes, 1536ull * 7168 + 12 * 56 * 4);
    EXPECT_EQ(slice(tp, m, 3, L(10, "self_attn.kv_a_proj_with_mqa.weight"))->split, QILIN_SPLIT_REPLICATED);
    // q_b by head (192 rows each), kv_b by head (256 rows each), o row-parallel (128 columns per head).
    const qilin_shard_slice *qb = slice(tp, m, 3, L(10, "self_attn.q_b_proj.weight"));
    EXPECT_EQ(qb->start, 3 * 16 * 192);
    EXPECT_EQ(qb->count, 16 * 192);
    const qilin_shard_slice *kvb = slice(tp, m, 3, L(10, "self_attn.kv_b_proj.weight"));
    EXPECT_EQ(kvb->start, 3 * 16 * 256);
    EXPECT_EQ(kvb->bytes, 16ull * 256 * 512 + 32 * 4 * 4);
    const qilin_shard_slice *o = slice(tp, m, 3, L(10, "self_attn.o_proj.weight"));
    EXPECT_EQ(o->split, QILIN_SPLIT_ROW);
    EXPECT_EQ(o->start, 3 * 2048);
    EXPECT_EQ(o->count, 2048);
    // Router bf16, its bias fp32, embeddings bf16.
    EXPECT_EQ(slice(tp, m, 0, L(10, "mlp.gate.weight"))->format, QILIN_WFMT_BF16);
    EXPECT_EQ(slice(tp, m, 0, L(10, "mlp.gate.e_score_correction_bias"))->bytes, 256u * 4);
    EXPECT_EQ(slice(tp, m, 0, "model.embed_tokens.weight")->bytes, 16160ull * 7168 * 2);
    // "tp": every GPU holds 1/8 of every expert (256 of 2048 rows: two scale blocks).
    const qilin_shard_slice *eg = slice(tp, m, 5, L(10, "mlp.experts.37.gate_proj.weight"));
    ASSERT_NE(eg, nullptr);
    EXPECT_EQ(eg->split, QILIN_SPLIT_COLUMN);
    EXPECT_EQ(eg->start, 5 * 256);
    EXPECT_EQ(eg->bytes, 256ull * 7168 + 2 * 56 * 4);
    const qilin_shard_slice *ed = slice(tp, m, 5, L(10, "mlp.experts.37.down_proj.weight"));
    EXPECT_EQ(ed->split, QILIN_SPLIT_ROW);
    EXPECT_EQ(ed->dim, 1);
    // "ep": expert 37 lives on GPU 37 / 32 = 1, whole.
    for (int g = 0; g < 8; g++) {
        const qilin_shard_slice *s = slice(ep, m, g, L(10, "mlp.experts.37.up_proj.weight"));
        if (g == 1) {
            ASSERT_NE(s, nullptr);
            EXPECT_EQ(s->split, QILIN_SPLIT_EXPERT);
            EXPECT_EQ(s->bytes, 2048ull * 7168 + 16 * 56 * 4);
        } else {
            EXPECT_EQ(s, nullptr) << "GPU " << g;
        }
        EXPECT_EQ(ep.p->gpus[g].expert_first, 32 * g);
        EXPECT_EQ(ep.p->gpus[g].n_experts, 32);
    }
    // Shared experts split tp-style in both modes.
    EXPECT_EQ(slice(ep, m, 2, L(10, "mlp.shared_experts.up_proj.weight"))->count, 256);
    // Both modes put the same bytes on every GPU; ep's routed experts sum to the model's.
    uint64_t routed = 0;
    for (int g = 0; g < 8; g++) routed += ep.p->gpus[g].category_bytes[QILIN_WCAT_ROUTED];
    uint64_t routed_total = 0;
    for (int i = 0; i < m.d->n_tensors; i++) {
        const qilin_tensor_spec &t = m.d->tensors[i];
        if (qilin_wcat_of(t.slot) == QILIN_WCAT_ROUTED && t.slot != QILIN_W_ROUTER &&
            t.slot != QILIN_W_ROUTER_BIAS)
            routed_total +=
                qilin_weight_bytes(&ep.p->opt.format, qilin_weight_format_of(&ep.p->opt.format, &t), t.n_dims,
                                   t.shape, -1, 0, 0);
    }
    uint64_t routers = 58ull * 8 * (256 * 7168 * 2 + 256 * 4);
    EXPECT_EQ(routed, routed_total + routers);
    // Experts do not split into 3 in ep mode; 2048 does not split over 3 either.
    Plan bad;
    EXPECT_EQ(make_plan(m.get(), 3, true, "fp8", &bad), QILIN_ERR_INVALID_ARGUMENT);
    std::printf("tp 3: %s\n", qilin_last_error());
}

TEST(MemoryPlan, KvBytesPerTokenMatchModelsMd) {
    Model llama("Llama-3.1-8B-Instruct"), qwen("Qwen2.5-7B-Instruct"), ds("DeepSeek-V3");
    // models.md §0.2: bf16, per layer, whole model on one GPU.
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(llama.get(), 1, 2), 4096u);
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(qwen.get(), 1, 2), 2048u);
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(ds.get(), 1, 2), 1152u);
    // Per GPU: GQA heads split (a shared KV head counts once), the MLA latent is replicated.
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(llama.get(), 8, 2), 512u);
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(llama.get(), 16, 2), 512u);
    EXPECT_EQ(qilin_kv_bytes_per_token_layer(ds.get(), 8, 2), 1152u);
}

TEST(MemoryPlan, Llama8bFitsOnOneH100) {
    Model m("Llama-3.1-8B-Instruct");
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 1, false, "bf16", &p));
    qilin_memory_options o = mem(80);
    qilin_memory_plan r;
    QILIN_ASSERT_OK(qilin_plan_memory(p.p, &o, &r));
    EXPECT_TRUE(r.fits);
    EXPECT_EQ(r.kv_bytes_per_token, 32u * 4096);
    EXPECT_EQ(r.kv_tokens,
              (int64_t)((r.budget - r.weights - r.workspace - r.reserve) / r.kv_bytes_per_token));
    EXPECT_GT(r.kv_tokens, 400000);
    qilin_plan_print(p.p, &r, stdout);
}

TEST(MemoryPlan, DeepSeekV3Fp8On8xH200FitsOn8xH100DoesNot) {
    Model m("DeepSeek-V3");
    std::string cfg = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/configs/DeepSeek-V3.config.json";
    qilin_plan_options o;
    qilin_plan_options_default(&o);
    bool known = false;
    QILIN_ASSERT_OK(qilin_weight_format_from_config(cfg.c_str(), &o.format, &known));
    o.tp = 8;
    Plan p;
    QILIN_ASSERT_OK(qilin_plan_create(m.get(), &o, &p.p));

    qilin_memory_options h200 = mem(141), h100 = mem(80);
    qilin_memory_plan r;
    QILIN_ASSERT_OK(qilin_plan_memory(p.p, &h200, &r));
    EXPECT_TRUE(r.fits);
    EXPECT_EQ(r.kv_bytes_per_token, 61u * 1152);
    EXPECT_GT(r.kv_tokens, 100000);
    qilin_plan_print(p.p, &r, stdout);

    EXPECT_EQ(qilin_plan_memory(p.p, &h100, &r), QILIN_ERR_OUT_OF_MEMORY);
    std::string err = qilin_last_error();
    std::printf("8 x H100: %s\n", err.c_str());
    EXPECT_FALSE(r.fits);
    EXPECT_EQ(r.kv_tokens, 0);
    EXPECT_GT(r.shortfall, 0u);
    EXPECT_EQ(r.shortfall, r.weights + r.workspace + r.reserve +
                               r.kv_bytes_per_token * (uint64_t)r.min_kv_tokens - r.budget);
    EXPECT_NE(err.find("short by"), std::string::npos) << err;
    qilin_plan_print(p.p, &r, stdout);
}

TEST(MemoryPlan, RejectsBadOptions) {
    Model m("Llama-3.1-8B-Instruct");
    Plan p;
    QILIN_ASSERT_OK(make_plan(m.get(), 1, false, "bf16", &p));
    qilin_memory_options o = mem(80);
    o.util = 1.5;
    qilin_memory_plan r;
    EXPECT_EQ(qilin_plan_memory(p.p, &o, &r), QILIN_ERR_INVALID_ARGUMENT);
    o = mem(0);
    EXPECT_EQ(qilin_plan_memory(p.p, &o, &r), QILIN_ERR_INVALID_ARGUMENT);
    // Too small a GPU: refused with the numbers.
    o = mem(8);
    EXPECT_EQ(qilin_plan_memory(p.p, &o, &r), QILIN_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(qilin_last_error()).find("weights 14.96 GiB"), std::string::npos)
        << qilin_last_error();
}

TEST(ShardPlan, Qwen3MoeKvSharedAndExpertModes) {
    // Qwen3-30B-A3B: 32 heads, 4 KV heads, 128 experts of 768 rows, no shared expert.
    Model m("Qwen3-30B-A3B");
    Plan tp, ep;
    QILIN_ASSERT_OK(make_plan(m.get(), 8, false, "bf16", &tp));
    QILIN_ASSERT_OK(make_plan(m.get(), 8, true, "bf16", &ep));
    int gate = qilin_model_find_spec(m.d, QILIN_W_EXP_GATE, 7, 37);
    int down = qilin_model_find_spec(m.d, QILIN_W_EXP_DOWN, 7, 37);
    int k = qilin_model_find_spec(m.d, QILIN_W_K, 7, -1);
    ASSERT_GE(gate, 0);
    ASSERT_GE(down, 0);
    ASSERT_GE(k, 0);
    for (int g = 0; g < 8; g++) {
        const qilin_shard_slice *s = qilin_plan_find_slice(tp.p, g, gate);
        ASSERT_NE(s, nullptr);
        EXPECT_EQ(s->start, 96 * g);
        EXPECT_EQ(s->count, 96);
        EXPECT_EQ(qilin_plan_find_slice(tp.p, g, down)->start, 96 * g);
        EXPECT_EQ(qilin_plan_find_slice(tp.p, g, k)->start, (g / 2) * 128); // KV head g/2
        EXPECT_EQ(qilin_plan_find_slice(ep.p, g, gate) != nullptr, g == 37 / 16);
    }
    EXPECT_EQ(tp.p->gpus[0].weight_bytes, ep.p->gpus[0].weight_bytes);
    // Mixtral: 8 experts of 14336 rows; "ep" over 8 GPUs gives one expert each, over 16 none splits.
    Model mx("Mixtral-8x7B-v0.1");
    Plan e8, e16;
    QILIN_ASSERT_OK(make_plan(mx.get(), 8, true, "bf16", &e8));
    EXPECT_EQ(e8.p->gpus[5].expert_first, 5);
    EXPECT_EQ(e8.p->gpus[5].n_experts, 1);
    EXPECT_EQ(make_plan(mx.get(), 16, true, "bf16", &e16), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("8 routed experts do not split over 16 GPUs"),
              std::string::npos)
        << qilin_last_error();
}

namespace {

// ---- GGUF tensor types ----------------------------------------------------------------------

// A GGUF v3 file with the given 2-D tensors (name, type id, element bytes) of 4 x 8 elements.
std::string write_gguf(const std::string &name,
                       const std::vector<std::pair<std::string, uint32_t>> &tensors) {
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

// Quantisation sizes are range-checked before the int cast: a block of 2^32 rows once became 0
// (and a division by zero in the byte counts), a group of 2^32 + 32 became 32.
TEST(WeightFormat, AbsurdQuantSizesAreRefused) {
    struct {
        const char *json;
        qilin_status status;
    } cases[] = {
        {R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [4294967296, 128]}})",
         QILIN_ERR_FORMAT},
        {R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 4294967328}})",
         QILIN_ERR_UNSUPPORTED},
        {R"({"quantization_config": {"quant_method": "awq", "bits": 4294967300, "group_size": 32}})",
         QILIN_ERR_UNSUPPORTED},
    };
    std::string path = std::string("/tmp/qilin_plan_") + std::to_string(getpid()) + "_config.json";
    for (const auto &c : cases) {
        std::FILE *f = std::fopen(path.c_str(), "w");
        std::fputs(c.json, f);
        std::fclose(f);
        qilin_weight_format wf;
        bool known;
        EXPECT_EQ(qilin_weight_format_from_config(path.c_str(), &wf, &known), c.status) << c.json;
    }
    std::remove(path.c_str());
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
