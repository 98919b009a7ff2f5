/* model_gguf.c — architecture descriptors from a llama.cpp GGUF file
 * (models.md §1.4, §11): hyper-parameters from "<arch>.*" metadata, the
 * choices the metadata does not record (biases, tied output, MoE layers,
 * split MLA kv_b) from the tensor table, and the GGUF tensor list:
 * "blk.N.*" names, HF-order logical shapes (ne reversed), routed experts
 * stacked into one 3-D [E, out, in] tensor per projection (expert = -1).
 *
 * Pairing: llama.cpp permutes Llama/Mistral/Mixtral q/k rows into
 * interleaved order on conversion and leaves Qwen, GPT-NeoX and DeepSeek
 * alone, so llama and deepseek2 (and GPT-J) rotate interleaved pairs, the
 * others half-split (llama_model_rope_type). */
#include "host/model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/fileio.h"
#include "host/gguf.h"

bool qilin_model_find_gguf(const char *dir, char *out, size_t cap) {
    return qilin_file_find_single(dir, ".gguf", out, cap);
}

typedef struct reader {
    const gguf_file *f;
    const char *arch;    /* general.architecture */
    qilin_model_keys *k; /* key-name storage */
    int n_store;
} reader;

/* "<arch>.<key>", kept in k->store when `keep` (for later messages). */
static const char *key_name(reader *r, const char *key, bool keep, char *tmp, size_t cap) {
    if (keep) {
        if (r->n_store == (int)(sizeof r->k->store / sizeof r->k->store[0])) return key;
        tmp = r->k->store[r->n_store++], cap = sizeof r->k->store[0];
    }
    if ((size_t)snprintf(tmp, cap, "%s.%s", r->arch, key) >= cap) return key; /* arch names are short */
    return tmp;
}

/* The value of an integer-typed key, whatever its width. */
static bool int_value(const gguf_kv *kv, int64_t *v) {
    switch (kv->type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_UINT64:
        *v = kv->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u;
        return true;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        *v = kv->v.i;
        return true;
    default:
        return false;
    }
}

/* An integer of any width; required when def is NULL. */
static qilin_status get_int(reader *r, const char *key, const int64_t *def, int64_t min, int64_t max,
                            int *out) {
    char tmp[96];
    const char *name = key_name(r, key, false, tmp, sizeof tmp);
    const gguf_kv *kv = gguf_find_kv(r->f, name);
    int64_t v;
    if (!kv) {
        if (!def)
            return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is missing", gguf_path(r->f), name);
        v = *def;
    } else if (!int_value(kv, &v)) {
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is %s; expected an integer",
                           gguf_path(r->f), name, gguf_type_name(kv->type));
    }
    if (v < min || v > max)
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is %lld; expected %lld .. %lld",
                           gguf_path(r->f), name, (long long)v, (long long)min, (long long)max);
    *out = (int)v;
    return QILIN_OK;
}
/* Sizes and counts: at most QILIN_MAX_DIM (model.h). */
#define REQ(key, out) QILIN_TRY(get_int(r, (key), NULL, 1, QILIN_MAX_DIM, (out)))
#define OPT(key, def, min, out) QILIN_TRY(get_int(r, (key), &(int64_t){def}, (min), QILIN_MAX_DIM, (out)))

static qilin_status get_float(reader *r, const char *key, double def, double *out) {
    char tmp[96];
    const char *name = key_name(r, key, false, tmp, sizeof tmp);
    const gguf_kv *kv = gguf_find_kv(r->f, name);
    int64_t i;
    if (!kv)
        *out = def;
    else if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64)
        *out = kv->v.f;
    else if (int_value(kv, &i))
        *out = (double)i;
    else
        return qilin_error(QILIN_ERR_FORMAT, "%s: metadata key '%s' is %s; expected a number",
                           gguf_path(r->f), name, gguf_type_name(kv->type));
    return QILIN_OK;
}

static bool get_bool(reader *r, const char *key, bool def) {
    char tmp[96];
    const gguf_kv *kv = gguf_find_kv(r->f, key_name(r, key, false, tmp, sizeof tmp));
    return kv && kv->type == GGUF_TYPE_BOOL ? kv->v.b : def;
}

static bool has_tensor(reader *r, const char *fmt, int layer) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    return gguf_find_tensor(r->f, name) != NULL;
}

static int64_t token_id(const gguf_file *f, const char *key) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    int64_t v;
    return kv && int_value(kv, &v) ? v : -1;
}

static const struct {
    const char *name;
    qilin_arch arch;
} gguf_archs[] = {{"llama", QILIN_ARCH_LLAMA},        {"qwen2", QILIN_ARCH_QWEN2},
                  {"qwen3", QILIN_ARCH_QWEN3},        {"qwen2moe", QILIN_ARCH_QWEN2_MOE},
                  {"qwen3moe", QILIN_ARCH_QWEN3_MOE}, {"deepseek2", QILIN_ARCH_DEEPSEEK_V3},
                  {"gptneox", QILIN_ARCH_GPT_NEOX},   {"gptj", QILIN_ARCH_GPTJ}};

static qilin_status read_rope(reader *r, qilin_model_desc *d) {
    qilin_rope_config *rp = &d->rope;
    OPT("rope.dimension_count", d->attn == QILIN_ATTN_MLA ? d->qk_rope_dim : d->head_dim, 0, &rp->rot_dim);
    QILIN_TRY(get_float(r, "rope.freq_base", 10000.0, &rp->theta));
    char tmp[96];
    gguf_str type = {"none", 4};
    const gguf_kv *kv = gguf_find_kv(r->f, key_name(r, "rope.scaling.type", false, tmp, sizeof tmp));
    if (kv && kv->type == GGUF_TYPE_STRING) type = kv->v.str;
    double linear;
    QILIN_TRY(get_float(r, "rope.scale_linear", 0, &linear)); /* older files */
    if (type.len == 4 && !memcmp(type.data, "none", 4) && linear > 1) {
        rp->scaling = QILIN_ROPE_SCALING_LINEAR;
        rp->factor = linear;
    } else if (type.len == 6 && !memcmp(type.data, "linear", 6)) {
        rp->scaling = QILIN_ROPE_SCALING_LINEAR;
        QILIN_TRY(get_float(r, "rope.scaling.factor", 1.0, &rp->factor));
    } else if (type.len == 4 && !memcmp(type.data, "yarn", 4)) {
        double mult;
        rp->scaling = QILIN_ROPE_SCALING_YARN;
        QILIN_TRY(get_float(r, "rope.scaling.factor", 1.0, &rp->factor));
        QILIN_TRY(get_float(r, "rope.scaling.original_context_length", (double)d->max_position,
                            &rp->original_max_position));
        QILIN_TRY(get_float(r, "rope.scaling.yarn_beta_fast", 32, &rp->beta_fast));
        QILIN_TRY(get_float(r, "rope.scaling.yarn_beta_slow", 1, &rp->beta_slow));
        /* the deepseek2 converter writes 0.1 * mscale_all_dim (and DeepSeek sets mscale == mscale_all_dim) */
        QILIN_TRY(get_float(r, "rope.scaling.yarn_log_multiplier", 0, &mult));
        rp->mscale = rp->mscale_all_dim = mult * 10.0;
    } else if (!(type.len == 4 && !memcmp(type.data, "none", 4))) {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: metadata key '%s' is '%.*s'; supported: none, linear, yarn", gguf_path(r->f),
                           tmp, (int)type.len, type.data);
    }
    return QILIN_OK;
}

static qilin_status read_moe(reader *r, qilin_model_desc *d) {
    qilin_arch a = d->arch;
    OPT("expert_count", 0, 0, &d->n_experts);
    if (d->n_experts == 0) return QILIN_OK;
    r->k->experts = key_name(r, "expert_count", true, NULL, 0);
    r->k->top_k = key_name(r, "expert_used_count", true, NULL, 0);
    r->k->n_group = key_name(r, "expert_group_count", true, NULL, 0);
    r->k->topk_group = key_name(r, "expert_group_used_count", true, NULL, 0);
    REQ("expert_used_count", &d->top_k);
    if (a == QILIN_ARCH_MIXTRAL)
        d->moe_ffn_dim = d->ffn_dim, d->ffn_dim = 0;
    else
        REQ("expert_feed_forward_length", &d->moe_ffn_dim);
    int first_dense = 0;
    d->moe_score = QILIN_MOE_SOFTMAX;
    d->moe_group_score = QILIN_MOE_GROUP_MAX;
    d->n_group = d->topk_group = 1;
    d->routed_scale = 1.0f;
    d->norm_topk_prob = a == QILIN_ARCH_MIXTRAL || a == QILIN_ARCH_QWEN3_MOE; /* llama.cpp's fixed choices */
    if (a == QILIN_ARCH_QWEN2_MOE) {
        OPT("expert_shared_feed_forward_length", 0, 0, &d->shared_ffn_dim);
        d->n_shared_experts = d->shared_ffn_dim > 0;
        d->shared_expert_gate = d->shared_ffn_dim > 0;
    }
    if (a == QILIN_ARCH_DEEPSEEK_V3) {
        int gating;
        double scale;
        OPT("leading_dense_block_count", 0, 0, &first_dense);
        OPT("expert_shared_count", 0, 0, &d->n_shared_experts);
        if ((int64_t)d->n_shared_experts * d->moe_ffn_dim > QILIN_MAX_DIM)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: expert_shared_count (%d) x expert_feed_forward_length (%d) "
                               "exceeds %d",
                               gguf_path(r->f), d->n_shared_experts, d->moe_ffn_dim, QILIN_MAX_DIM);
        d->shared_ffn_dim = d->n_shared_experts * d->moe_ffn_dim;
        OPT("expert_gating_func", 1, 0, &gating); /* 1 softmax, 2 sigmoid; absent in V2-era files */
        QILIN_TRY(get_float(r, "expert_weights_scale", 1.0, &scale));
        d->routed_scale = (float)scale;
        d->norm_topk_prob = get_bool(r, "expert_weights_norm", false);
        OPT("expert_group_count", 1, 1, &d->n_group);
        OPT("expert_group_used_count", 1, 1, &d->topk_group);
        if (gating == 2) {
            d->moe_score = QILIN_MOE_SIGMOID;
            d->moe_group_score = QILIN_MOE_GROUP_TOP2_SUM;
            d->router_bias = true;
        } else {
            d->arch = QILIN_ARCH_DEEPSEEK_V2; /* softmax routing: the V2 family */
        }
    }
    bool tensors = gguf_tensor_count(r->f) > 0;
    for (int l = 0; l < d->n_layers; l++) {
        bool moe = tensors ? has_tensor(r, "blk.%d.ffn_gate_inp.weight", l) : l >= first_dense;
        d->layer_ffn[l] = moe ? QILIN_FFN_MOE : QILIN_FFN_GATED;
    }
    return QILIN_OK;
}

static qilin_status read_mla(reader *r, qilin_model_desc *d) {
    int key_mla, value_mla;
    d->attn = QILIN_ATTN_MLA;
    OPT("attention.q_lora_rank", 0, 0, &d->q_lora_rank);
    REQ("attention.kv_lora_rank", &d->kv_lora_rank);
    REQ("rope.dimension_count", &d->qk_rope_dim);
    /* newer files: key_length_mla = dn + dr, value_length_mla = dv; older: key/value_length */
    OPT("attention.key_length", 0, 0, &key_mla);
    OPT("attention.value_length", 0, 0, &value_mla);
    OPT("attention.key_length_mla", key_mla, 1, &key_mla);
    OPT("attention.value_length_mla", value_mla, 1, &value_mla);
    if (key_mla <= d->qk_rope_dim)
        return qilin_error(
            QILIN_ERR_FORMAT,
            "%s: metadata key '%s.attention.key_length_mla' (%d) must exceed the rope dims (%d)",
            gguf_path(r->f), r->arch, key_mla, d->qk_rope_dim);
    d->qk_nope_dim = key_mla - d->qk_rope_dim;
    d->v_head_dim = value_mla;
    d->n_kv_heads = d->n_heads; /* the converter's head_count_kv = 1 describes the absorbed form */
    d->head_dim = key_mla;
    d->head_dim_v = value_mla;
    d->mla_norm_eps = 1e-6f;
    r->k->gguf_split_kv_b = has_tensor(r, "blk.%d.attn_k_b.weight", 0);
    return QILIN_OK;
}

static qilin_status read_arch(reader *r, qilin_model_desc *d) {
    const gguf_file *f = r->f;
    gguf_str a;
    QILIN_TRY(gguf_get_str(f, "general.architecture", &a));
    snprintf(d->model_type, sizeof d->model_type, "%.*s", (int)a.len, a.data);
    r->arch = d->model_type;
    for (size_t i = 0; i < sizeof gguf_archs / sizeof gguf_archs[0]; i++)
        if (!strcmp(d->model_type, gguf_archs[i].name)) return d->arch = gguf_archs[i].arch, QILIN_OK;
    return qilin_error(
        QILIN_ERR_UNSUPPORTED,
        "%s: general.architecture '%s' is not supported; supported: llama, qwen2, qwen3, qwen2moe, "
        "qwen3moe, deepseek2, gptneox, gptj",
        gguf_path(f), d->model_type);
}

static qilin_status read_sizes(reader *r, qilin_model_desc *d) {
    qilin_model_keys *k = r->k;
    k->vocab = key_name(r, "vocab_size", true, NULL, 0);
    k->hidden = key_name(r, "embedding_length", true, NULL, 0);
    k->layers = key_name(r, "block_count", true, NULL, 0);
    k->heads = key_name(r, "attention.head_count", true, NULL, 0);
    k->kv_heads = key_name(r, "attention.head_count_kv", true, NULL, 0);
    k->head_dim = key_name(r, "attention.key_length", true, NULL, 0);
    k->ffn = key_name(r, "feed_forward_length", true, NULL, 0);
    k->rot_dim = key_name(r, "rope.dimension_count", true, NULL, 0);
    k->act = "general.architecture";
    REQ("embedding_length", &d->hidden);
    REQ("block_count", &d->n_layers);
    REQ("attention.head_count", &d->n_heads);
    if (d->n_layers > QILIN_MAX_LAYERS)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: metadata key '%s' is %d; at most %d layers are supported", gguf_path(r->f),
                           k->layers, d->n_layers, QILIN_MAX_LAYERS);
    OPT("attention.head_count_kv", d->n_heads, 1, &d->n_kv_heads);
    if (d->hidden % d->n_heads && !gguf_find_kv(r->f, k->head_dim))
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: metadata key '%s' (%d) is not a multiple of '%s' (%d) and '%s' is absent",
                           gguf_path(r->f), k->hidden, d->hidden, k->heads, d->n_heads, k->head_dim);
    OPT("attention.key_length", d->hidden / d->n_heads, 1, &d->head_dim);
    OPT("attention.value_length", d->head_dim, 1, &d->head_dim_v);
    OPT("feed_forward_length", 0, 0, &d->ffn_dim);
    int ctx;
    QILIN_TRY(get_int(r, "context_length", &(int64_t){2048}, 1, INT_MAX, &ctx)); /* a number, not a size */
    d->max_position = ctx;
    /* vocabulary: embedding rows, else the metadata */
    const gguf_tensor *emb = gguf_find_tensor(r->f, "token_embd.weight");
    const gguf_kv *tokens = gguf_find_kv(r->f, "tokenizer.ggml.tokens");
    if (emb && emb->n_dims == 2 && emb->ne[1] <= INT_MAX)
        d->vocab = (int)emb->ne[1];
    else if (gguf_find_kv(r->f, k->vocab))
        REQ("vocab_size", &d->vocab);
    else if (tokens && tokens->type == GGUF_TYPE_ARRAY && tokens->v.arr.count <= INT_MAX)
        d->vocab = (int)tokens->v.arr.count;
    else
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: no token_embd.weight, '%s' or tokenizer.ggml.tokens to size the vocabulary",
                           gguf_path(r->f), k->vocab);
    return QILIN_OK;
}

static qilin_status read_all(reader *r, qilin_model_desc *d) {
    QILIN_TRY(read_arch(r, d));
    QILIN_TRY(read_sizes(r, d));
    qilin_arch a = d->arch;
    bool neox = a == QILIN_ARCH_GPT_NEOX, gptj = a == QILIN_ARCH_GPTJ, tensors = gguf_tensor_count(r->f) > 0;
    int n_exp = 0;
    OPT("expert_count", 0, 0, &n_exp);
    if (a == QILIN_ARCH_LLAMA && n_exp > 0) d->arch = a = QILIN_ARCH_MIXTRAL;
    double eps;
    d->norm = neox || gptj ? QILIN_NORM_LAYER : QILIN_NORM_RMS;
    QILIN_TRY(get_float(
        r, d->norm == QILIN_NORM_LAYER ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
        1e-5, &eps));
    d->norm_eps = (float)eps;
    d->act = neox ? QILIN_ACT_GELU_ERF : gptj ? QILIN_ACT_GELU_TANH : QILIN_ACT_SILU;
    d->block =
        neox   ? (get_bool(r, "use_parallel_residual", true) ? QILIN_BLOCK_PARALLEL : QILIN_BLOCK_SEQUENTIAL)
        : gptj ? QILIN_BLOCK_PARALLEL_SHARED
               : QILIN_BLOCK_SEQUENTIAL;
    /* biases: what the tensor table holds (the architecture's usual choice for a tensor-less file) */
    bool qwen2 = a == QILIN_ARCH_QWEN2 || a == QILIN_ARCH_QWEN2_MOE;
    d->qkv_bias = tensors ? has_tensor(r, "blk.%d.attn_q.bias", 0) || has_tensor(r, "blk.%d.attn_qkv.bias", 0)
                          : qwen2 || neox;
    d->o_bias = tensors ? has_tensor(r, "blk.%d.attn_output.bias", 0) : neox;
    d->mlp_bias = neox || gptj;
    d->lm_head_bias = gptj;
    d->qk_norm = a == QILIN_ARCH_QWEN3 || a == QILIN_ARCH_QWEN3_MOE;
    d->tied_embeddings = tensors && !gguf_find_tensor(r->f, "output.weight");
    d->attn = QILIN_ATTN_GQA;
    if (a == QILIN_ARCH_DEEPSEEK_V3) QILIN_TRY(read_mla(r, d));
    QILIN_TRY(read_rope(r, d));
    d->rope.pairing = a == QILIN_ARCH_LLAMA || a == QILIN_ARCH_MIXTRAL || a == QILIN_ARCH_DEEPSEEK_V3 || gptj
                          ? QILIN_ROPE_INTERLEAVED
                          : QILIN_ROPE_HALF_SPLIT;
    r->k->gguf_rope_freqs = gguf_find_tensor(r->f, "rope_freqs.weight") != NULL;
    if (n_exp > 0)
        QILIN_TRY(read_moe(r, d));
    else
        for (int l = 0; l < d->n_layers; l++)
            d->layer_ffn[l] = neox || gptj ? QILIN_FFN_PLAIN : QILIN_FFN_GATED;
    d->bos_id = token_id(r->f, "tokenizer.ggml.bos_token_id");
    const char *stops[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                           "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 3; i++) {
        int64_t id = token_id(r->f, stops[i]);
        bool dup = false;
        for (int j = 0; j < d->n_eos; j++) dup |= d->eos_ids[j] == id;
        if (id >= 0 && !dup) d->eos_ids[d->n_eos++] = id;
    }
    return QILIN_OK;
}

qilin_status qilin_model_read_gguf(const char *path, qilin_model_desc *d, qilin_model_keys *keys) {
    gguf_file *f = NULL;
    QILIN_TRY(gguf_open(path, &f));
    reader r = {f, "", keys, 0};
    qilin_status s = read_all(&r, d);
    gguf_close(f);
    return s;
}

/* ---- tensor list ---------------------------------------------------------- */

#define S1(a) ((const int64_t[3]){(a), 0, 0})
#define S2(a, b) ((const int64_t[3]){(a), (b), 0})
#define S3(a, b, c) ((const int64_t[3]){(a), (b), (c)})
#define ADD(slot, dims, shape, ...)                                                                          \
    QILIN_TRY(qilin_model_add_tensor(d, (slot), l, -1, (dims), (shape), __VA_ARGS__))

static qilin_status attention(qilin_model_desc *d, const qilin_model_keys *k, int l) {
    int64_t H = d->hidden, nh = d->n_heads, hd = d->head_dim, q = nh * hd, kv = (int64_t)d->n_kv_heads * hd;
    if (d->attn == QILIN_ATTN_MLA) {
        int64_t r = d->kv_lora_rank, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim,
                ql = d->q_lora_rank;
        if (ql > 0) {
            ADD(QILIN_W_Q_A, 2, S2(ql, H), "blk.%d.attn_q_a.weight", l);
            ADD(QILIN_W_Q_A_NORM, 1, S1(ql), "blk.%d.attn_q_a_norm.weight", l);
            ADD(QILIN_W_Q_B, 2, S2(nh * (dn + dr), ql), "blk.%d.attn_q_b.weight", l);
        } else {
            ADD(QILIN_W_Q, 2, S2(nh * (dn + dr), H), "blk.%d.attn_q.weight", l);
        }
        ADD(QILIN_W_KV_A, 2, S2(r + dr, H), "blk.%d.attn_kv_a_mqa.weight", l);
        ADD(QILIN_W_KV_A_NORM, 1, S1(r), "blk.%d.attn_kv_a_norm.weight", l);
        if (k->gguf_split_kv_b) { /* k_b transposed per head: [nh, r, dn]; v_b [nh, dv, r] (models.md §11.1)
                                   */
            ADD(QILIN_W_K_B, 3, S3(nh, r, dn), "blk.%d.attn_k_b.weight", l);
            ADD(QILIN_W_V_B, 3, S3(nh, dv, r), "blk.%d.attn_v_b.weight", l);
        } else {
            ADD(QILIN_W_KV_B, 2, S2(nh * (dn + dv), r), "blk.%d.attn_kv_b.weight", l);
        }
        ADD(QILIN_W_O, 2, S2(H, nh * dv), "blk.%d.attn_output.weight", l);
        return QILIN_OK;
    }
    if (d->arch == QILIN_ARCH_GPT_NEOX) {
        ADD(QILIN_W_QKV, 2, S2(3 * q, H), "blk.%d.attn_qkv.weight", l);
        if (d->qkv_bias) ADD(QILIN_W_QKV_BIAS, 1, S1(3 * q), "blk.%d.attn_qkv.bias", l);
    } else {
        ADD(QILIN_W_Q, 2, S2(q, H), "blk.%d.attn_q.weight", l);
        if (d->qkv_bias) ADD(QILIN_W_Q_BIAS, 1, S1(q), "blk.%d.attn_q.bias", l);
        ADD(QILIN_W_K, 2, S2(kv, H), "blk.%d.attn_k.weight", l);
        if (d->qkv_bias) ADD(QILIN_W_K_BIAS, 1, S1(kv), "blk.%d.attn_k.bias", l);
        ADD(QILIN_W_V, 2, S2(kv, H), "blk.%d.attn_v.weight", l);
        if (d->qkv_bias) ADD(QILIN_W_V_BIAS, 1, S1(kv), "blk.%d.attn_v.bias", l);
    }
    ADD(QILIN_W_O, 2, S2(H, q), "blk.%d.attn_output.weight", l);
    if (d->o_bias) ADD(QILIN_W_O_BIAS, 1, S1(H), "blk.%d.attn_output.bias", l);
    if (d->qk_norm) {
        ADD(QILIN_W_Q_NORM, 1, S1(hd), "blk.%d.attn_q_norm.weight", l);
        ADD(QILIN_W_K_NORM, 1, S1(hd), "blk.%d.attn_k_norm.weight", l);
    }
    return QILIN_OK;
}

static qilin_status ffn(qilin_model_desc *d, int l) {
    int64_t H = d->hidden, F = d->ffn_dim, E = d->n_experts, M = d->moe_ffn_dim, S = d->shared_ffn_dim;
    if (d->layer_ffn[l] == QILIN_FFN_PLAIN) {
        ADD(QILIN_W_UP, 2, S2(F, H), "blk.%d.ffn_up.weight", l);
        ADD(QILIN_W_UP_BIAS, 1, S1(F), "blk.%d.ffn_up.bias", l);
        ADD(QILIN_W_DOWN, 2, S2(H, F), "blk.%d.ffn_down.weight", l);
        ADD(QILIN_W_DOWN_BIAS, 1, S1(H), "blk.%d.ffn_down.bias", l);
        return QILIN_OK;
    }
    if (d->layer_ffn[l] == QILIN_FFN_GATED) {
        ADD(QILIN_W_GATE, 2, S2(F, H), "blk.%d.ffn_gate.weight", l);
        ADD(QILIN_W_UP, 2, S2(F, H), "blk.%d.ffn_up.weight", l);
        ADD(QILIN_W_DOWN, 2, S2(H, F), "blk.%d.ffn_down.weight", l);
        return QILIN_OK;
    }
    ADD(QILIN_W_ROUTER, 2, S2(E, H), "blk.%d.ffn_gate_inp.weight", l);
    if (d->router_bias) ADD(QILIN_W_ROUTER_BIAS, 1, S1(E), "blk.%d.exp_probs_b.bias", l);
    ADD(QILIN_W_EXP_GATE, 3, S3(E, M, H), "blk.%d.ffn_gate_exps.weight", l);
    ADD(QILIN_W_EXP_UP, 3, S3(E, M, H), "blk.%d.ffn_up_exps.weight", l);
    ADD(QILIN_W_EXP_DOWN, 3, S3(E, H, M), "blk.%d.ffn_down_exps.weight", l);
    if (S > 0) {
        ADD(QILIN_W_SHARED_GATE, 2, S2(S, H), "blk.%d.ffn_gate_shexp.weight", l);
        ADD(QILIN_W_SHARED_UP, 2, S2(S, H), "blk.%d.ffn_up_shexp.weight", l);
        ADD(QILIN_W_SHARED_DOWN, 2, S2(H, S), "blk.%d.ffn_down_shexp.weight", l);
        if (d->shared_expert_gate)
            ADD(QILIN_W_SHARED_EXPERT_GATE, 2, S2(1, H), "blk.%d.ffn_gate_inp_shexp.weight", l);
    }
    return QILIN_OK;
}

qilin_status qilin_model_gguf_tensors(qilin_model_desc *d, const qilin_model_keys *k) {
    int64_t V = d->vocab, H = d->hidden;
    bool layer_norm = d->norm == QILIN_NORM_LAYER;
    int l = -1;
    ADD(QILIN_W_EMBED, 2, S2(V, H), "token_embd.weight");
    if (k->gguf_rope_freqs) ADD(QILIN_W_ROPE_FREQS, 1, S1(d->rope.rot_dim / 2), "rope_freqs.weight");
    for (l = 0; l < d->n_layers; l++) {
        ADD(QILIN_W_ATTN_NORM, 1, S1(H), "blk.%d.attn_norm.weight", l);
        if (layer_norm) ADD(QILIN_W_ATTN_NORM_BIAS, 1, S1(H), "blk.%d.attn_norm.bias", l);
        QILIN_TRY(attention(d, k, l));
        if (d->block != QILIN_BLOCK_PARALLEL_SHARED) {
            ADD(QILIN_W_FFN_NORM, 1, S1(H), "blk.%d.ffn_norm.weight", l);
            if (layer_norm) ADD(QILIN_W_FFN_NORM_BIAS, 1, S1(H), "blk.%d.ffn_norm.bias", l);
        }
        QILIN_TRY(ffn(d, l));
    }
    l = -1;
    ADD(QILIN_W_FINAL_NORM, 1, S1(H), "output_norm.weight");
    if (layer_norm) ADD(QILIN_W_FINAL_NORM_BIAS, 1, S1(H), "output_norm.bias");
    if (!d->tied_embeddings) {
        ADD(QILIN_W_LM_HEAD, 2, S2(V, H), "output.weight");
        if (d->lm_head_bias) ADD(QILIN_W_LM_HEAD_BIAS, 1, S1(V), "output.bias");
    }
    return QILIN_OK;
}
