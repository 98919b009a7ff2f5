/* model.c — architecture descriptors from a Hugging Face config.json
 * (models.md §0.2, §2–§8): resolve every hyper-parameter (HF class defaults
 * for absent keys), validate them, and list the checkpoint's tensors with
 * their logical shapes. GGUF metadata is read by model_gguf.c into the same
 * descriptor; validation, the spec index, parameter counts and printing are
 * shared and live here.
 *
 * Tensor order: globals first (embedding), then per layer attention then FFN;
 * a layer's routed experts are emitted slot-major (every expert's gate, then
 * every up, then every down), so (slot, layer, expert) is found in O(1). */
#include "host/model.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "host/config.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const arch_hf_names[] = {
#define QILIN_ARCH_NAME_(e, hf, gguf) hf,
    QILIN_ARCH_TABLE(QILIN_ARCH_NAME_)
#undef QILIN_ARCH_NAME_
};

const char *qilin_arch_hf_name(qilin_arch a) {
    return (unsigned)a < QILIN_ARCH_COUNT ? arch_hf_names[a] : "?";
}

const char *qilin_arch_supported_list(void) {
#define QILIN_ARCH_LIST_(e, hf, gguf) ", " hf
    static const char list[] = "" QILIN_ARCH_TABLE(QILIN_ARCH_LIST_);
#undef QILIN_ARCH_LIST_
    return list + 2;
}

static const char *const slot_names[] = {
#define QILIN_SLOT_NAME_(e, text) text,
    QILIN_SLOT_TABLE(QILIN_SLOT_NAME_)
#undef QILIN_SLOT_NAME_
};

const char *qilin_slot_name(qilin_slot s) { return (unsigned)s < QILIN_SLOT_COUNT ? slot_names[s] : "?"; }

/* model_type values, for configs without "architectures". */
static const struct {
    const char *model_type;
    qilin_arch arch;
} model_types[] = {
    {"llama", QILIN_ARCH_LLAMA},
    {"mistral", QILIN_ARCH_MISTRAL},
    {"qwen2", QILIN_ARCH_QWEN2},
    {"qwen3", QILIN_ARCH_QWEN3},
    {"mixtral", QILIN_ARCH_MIXTRAL},
    {"qwen2_moe", QILIN_ARCH_QWEN2_MOE},
    {"qwen3_moe", QILIN_ARCH_QWEN3_MOE},
    {"deepseek_v2", QILIN_ARCH_DEEPSEEK_V2},
    {"deepseek_v3", QILIN_ARCH_DEEPSEEK_V3},
    {"kimi_k2", QILIN_ARCH_DEEPSEEK_V3},
    {"gpt_neox", QILIN_ARCH_GPT_NEOX},
    {"gptj", QILIN_ARCH_GPTJ},
};

/* transformers' attribute_map aliases (transformers 5.25 configuration_*.py):
 * a config.json may spell `key` (the name read below) as `alias`. Kimi K2
 * uses DeepseekV3's config class. The other supported classes have none. */
static const struct {
    qilin_arch arch;
    const char *key, *alias;
} config_aliases[] = {
    {QILIN_ARCH_MIXTRAL, "num_local_experts", "num_experts"},
    {QILIN_ARCH_QWEN3_MOE, "num_experts", "num_local_experts"},
    {QILIN_ARCH_DEEPSEEK_V2, "n_routed_experts", "num_experts"},
    {QILIN_ARCH_DEEPSEEK_V3, "n_routed_experts", "num_local_experts"},
    {QILIN_ARCH_DEEPSEEK_V3, "num_nextn_predict_layers", "num_mtp_layers"},
    {QILIN_ARCH_GPTJ, "n_positions", "max_position_embeddings"},
    {QILIN_ARCH_GPTJ, "n_embd", "hidden_size"},
    {QILIN_ARCH_GPTJ, "n_head", "num_attention_heads"},
    {QILIN_ARCH_GPTJ, "n_layer", "num_hidden_layers"},
};

static qilin_status apply_aliases(hf_config *c, qilin_arch arch) {
    for (size_t i = 0; i < sizeof config_aliases / sizeof config_aliases[0]; i++)
        if (config_aliases[i].arch == arch)
            QILIN_TRY(hf_config_alias(c, config_aliases[i].key, config_aliases[i].alias));
    return QILIN_OK;
}

/* ---- tensor list ---------------------------------------------------------- */

qilin_status qilin_model_add_tensor(qilin_model_desc *d, qilin_slot slot, int layer, int expert, int n_dims,
                                    const int64_t shape[3], const char *fmt, ...) {
    int n = d->n_tensors;
    if (n == 0 || (n >= 64 && (n & (n - 1)) == 0)) { /* capacity 64, then doubling at powers of two */
        size_t cap = n ? 2 * (size_t)n : 64;
        qilin_tensor_spec *t = realloc(d->tensors, cap * sizeof *t);
        if (!t) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: tensor list of %zu entries", d->source, cap);
        d->tensors = t;
    }
    qilin_tensor_spec *s = &d->tensors[d->n_tensors];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof s->name)
        return qilin_error(QILIN_ERR_INTERNAL, "%s: tensor name longer than %zu bytes", d->source,
                           sizeof s->name);
    int64_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || shape[i] > QILIN_MAX_TENSOR_ELEMS ||
            numel > QILIN_MAX_TENSOR_ELEMS / (shape[i] ? shape[i] : 1))
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: tensor %s: dimension %d is %lld; a tensor holds at most 2^40 "
                               "elements (check the sizes above)",
                               d->source, s->name, i, (long long)shape[i]);
        numel *= shape[i];
    }
    if (numel > QILIN_MAX_PARAMS - d->n_params_listed)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: the sizes describe more than 2^44 parameters (at tensor %s)", d->source,
                           s->name);
    d->n_params_listed += numel;
    s->slot = slot;
    s->layer = layer;
    s->expert = expert;
    s->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) s->shape[i] = shape[i];
    s->optional = slot == QILIN_W_ROPE_FREQS;
    d->n_tensors++;
    return QILIN_OK;
}

/* Shorthands for the builders below; `d` and `l` are in scope. */
#define S1(a) ((const int64_t[3]){(a), 0, 0})
#define S2(a, b) ((const int64_t[3]){(a), (b), 0})
#define ADD(slot, dims, shape, ...)                                                                          \
    QILIN_TRY(qilin_model_add_tensor(d, (slot), l, -1, (dims), (shape), __VA_ARGS__))

static qilin_status add_mla(qilin_model_desc *d, int l, const char *p) {
    int64_t H = d->hidden, nh = d->n_heads, r = d->kv_lora_rank, dn = d->qk_nope_dim, dr = d->qk_rope_dim,
            dv = d->v_head_dim, ql = d->q_lora_rank;
    if (ql > 0) {
        ADD(QILIN_W_Q_A, 2, S2(ql, H), "%s.self_attn.q_a_proj.weight", p);
        ADD(QILIN_W_Q_A_NORM, 1, S1(ql), "%s.self_attn.q_a_layernorm.weight", p);
        ADD(QILIN_W_Q_B, 2, S2(nh * (dn + dr), ql), "%s.self_attn.q_b_proj.weight", p);
    } else {
        ADD(QILIN_W_Q, 2, S2(nh * (dn + dr), H), "%s.self_attn.q_proj.weight", p);
    }
    ADD(QILIN_W_KV_A, 2, S2(r + dr, H), "%s.self_attn.kv_a_proj_with_mqa.weight", p);
    ADD(QILIN_W_KV_A_NORM, 1, S1(r), "%s.self_attn.kv_a_layernorm.weight", p);
    ADD(QILIN_W_KV_B, 2, S2(nh * (dn + dv), r), "%s.self_attn.kv_b_proj.weight", p);
    ADD(QILIN_W_O, 2, S2(H, nh * dv), "%s.self_attn.o_proj.weight", p);
    return QILIN_OK;
}

static qilin_status add_gqa(qilin_model_desc *d, int l, const char *p) {
    int64_t H = d->hidden, q = (int64_t)d->n_heads * d->head_dim, kv = (int64_t)d->n_kv_heads * d->head_dim;
    ADD(QILIN_W_Q, 2, S2(q, H), "%s.self_attn.q_proj.weight", p);
    if (d->qkv_bias) ADD(QILIN_W_Q_BIAS, 1, S1(q), "%s.self_attn.q_proj.bias", p);
    ADD(QILIN_W_K, 2, S2(kv, H), "%s.self_attn.k_proj.weight", p);
    if (d->qkv_bias) ADD(QILIN_W_K_BIAS, 1, S1(kv), "%s.self_attn.k_proj.bias", p);
    ADD(QILIN_W_V, 2, S2(kv, H), "%s.self_attn.v_proj.weight", p);
    if (d->qkv_bias) ADD(QILIN_W_V_BIAS, 1, S1(kv), "%s.self_attn.v_proj.bias", p);
    ADD(QILIN_W_O, 2, S2(H, q), "%s.self_attn.o_proj.weight", p);
    if (d->o_bias) ADD(QILIN_W_O_BIAS, 1, S1(H), "%s.self_attn.o_proj.bias", p);
    if (d->qk_norm) {
        ADD(QILIN_W_Q_NORM, 1, S1(d->head_dim), "%s.self_attn.q_norm.weight", p);
        ADD(QILIN_W_K_NORM, 1, S1(d->head_dim), "%s.self_attn.k_norm.weight", p);
    }
    return QILIN_OK;
}

/* Gated MLP under prefix p ("….mlp", "….mlp.shared_expert", ...): the dense or the shared slots. */
static qilin_status add_gated(qilin_model_desc *d, int l, const char *p, bool shared, int64_t F) {
    int64_t H = d->hidden;
    ADD(shared ? QILIN_W_SHARED_GATE : QILIN_W_GATE, 2, S2(F, H), "%s.gate_proj.weight", p);
    ADD(shared ? QILIN_W_SHARED_UP : QILIN_W_UP, 2, S2(F, H), "%s.up_proj.weight", p);
    ADD(shared ? QILIN_W_SHARED_DOWN : QILIN_W_DOWN, 2, S2(H, F), "%s.down_proj.weight", p);
    return QILIN_OK;
}

static qilin_status add_moe(qilin_model_desc *d, int l, const char *p) {
    int64_t H = d->hidden, E = d->n_experts, F = d->moe_ffn_dim;
    bool mixtral = d->arch == QILIN_ARCH_MIXTRAL;
    const char *m = mixtral ? "block_sparse_moe" : "mlp";
    ADD(QILIN_W_ROUTER, 2, S2(E, H), "%s.%s.gate.weight", p, m);
    if (d->router_bias) ADD(QILIN_W_ROUTER_BIAS, 1, S1(E), "%s.%s.gate.e_score_correction_bias", p, m);
    static const char *const hf[3] = {"gate_proj", "up_proj", "down_proj"}, *const mx[3] = {"w1", "w3", "w2"};
    for (int k = 0; k < 3; k++) {
        const int64_t *shape = k < 2 ? S2(F, H) : S2(H, F);
        for (int e = 0; e < E; e++)
            QILIN_TRY(qilin_model_add_tensor(d, (qilin_slot)(QILIN_W_EXP_GATE + k), l, e, 2, shape,
                                             "%s.%s.experts.%d.%s.weight", p, m, e, mixtral ? mx[k] : hf[k]));
    }
    if (d->shared_ffn_dim > 0) {
        char sp[96];
        bool qwen = d->arch == QILIN_ARCH_QWEN2_MOE;
        snprintf(sp, sizeof sp, "%s.mlp.%s", p, qwen ? "shared_expert" : "shared_experts");
        QILIN_TRY(add_gated(d, l, sp, true, d->shared_ffn_dim));
        if (d->shared_expert_gate)
            ADD(QILIN_W_SHARED_EXPERT_GATE, 2, S2(1, H), "%s.mlp.shared_expert_gate.weight", p);
    }
    return QILIN_OK;
}

/* Llama, Mistral, Qwen2/3, Mixtral, Qwen MoE, DeepSeek. */
static qilin_status llama_like_tensors(qilin_model_desc *d) {
    int64_t V = d->vocab, H = d->hidden;
    int l = -1;
    ADD(QILIN_W_EMBED, 2, S2(V, H), "model.embed_tokens.weight");
    for (l = 0; l < d->n_layers; l++) {
        char p[48];
        snprintf(p, sizeof p, "model.layers.%d", l);
        ADD(QILIN_W_ATTN_NORM, 1, S1(H), "%s.input_layernorm.weight", p);
        QILIN_TRY(d->attn == QILIN_ATTN_MLA ? add_mla(d, l, p) : add_gqa(d, l, p));
        ADD(QILIN_W_FFN_NORM, 1, S1(H), "%s.post_attention_layernorm.weight", p);
        if (d->layer_ffn[l] == QILIN_FFN_MOE) {
            QILIN_TRY(add_moe(d, l, p));
        } else {
            char mp[64];
            snprintf(mp, sizeof mp, "%s.mlp", p);
            QILIN_TRY(add_gated(d, l, mp, false, d->ffn_dim));
        }
    }
    l = -1;
    ADD(QILIN_W_FINAL_NORM, 1, S1(H), "model.norm.weight");
    if (!d->tied_embeddings) ADD(QILIN_W_LM_HEAD, 2, S2(V, H), "lm_head.weight");
    return QILIN_OK;
}

static qilin_status neox_tensors(qilin_model_desc *d) {
    int64_t V = d->vocab, H = d->hidden, F = d->ffn_dim, qkv = 3 * (int64_t)d->n_heads * d->head_dim;
    int l = -1;
    ADD(QILIN_W_EMBED, 2, S2(V, H), "gpt_neox.embed_in.weight");
    for (l = 0; l < d->n_layers; l++) {
        char p[48];
        snprintf(p, sizeof p, "gpt_neox.layers.%d", l);
        ADD(QILIN_W_ATTN_NORM, 1, S1(H), "%s.input_layernorm.weight", p);
        ADD(QILIN_W_ATTN_NORM_BIAS, 1, S1(H), "%s.input_layernorm.bias", p);
        ADD(QILIN_W_FFN_NORM, 1, S1(H), "%s.post_attention_layernorm.weight", p);
        ADD(QILIN_W_FFN_NORM_BIAS, 1, S1(H), "%s.post_attention_layernorm.bias", p);
        ADD(QILIN_W_QKV, 2, S2(qkv, H), "%s.attention.query_key_value.weight", p);
        if (d->qkv_bias) ADD(QILIN_W_QKV_BIAS, 1, S1(qkv), "%s.attention.query_key_value.bias", p);
        ADD(QILIN_W_O, 2, S2(H, qkv / 3), "%s.attention.dense.weight", p);
        if (d->o_bias) ADD(QILIN_W_O_BIAS, 1, S1(H), "%s.attention.dense.bias", p);
        ADD(QILIN_W_UP, 2, S2(F, H), "%s.mlp.dense_h_to_4h.weight", p);
        ADD(QILIN_W_UP_BIAS, 1, S1(F), "%s.mlp.dense_h_to_4h.bias", p);
        ADD(QILIN_W_DOWN, 2, S2(H, F), "%s.mlp.dense_4h_to_h.weight", p);
        ADD(QILIN_W_DOWN_BIAS, 1, S1(H), "%s.mlp.dense_4h_to_h.bias", p);
    }
    l = -1;
    ADD(QILIN_W_FINAL_NORM, 1, S1(H), "gpt_neox.final_layer_norm.weight");
    ADD(QILIN_W_FINAL_NORM_BIAS, 1, S1(H), "gpt_neox.final_layer_norm.bias");
    if (!d->tied_embeddings) ADD(QILIN_W_LM_HEAD, 2, S2(V, H), "embed_out.weight");
    return QILIN_OK;
}

static qilin_status gptj_tensors(qilin_model_desc *d) {
    int64_t V = d->vocab, H = d->hidden, F = d->ffn_dim, A = (int64_t)d->n_heads * d->head_dim;
    int l = -1;
    ADD(QILIN_W_EMBED, 2, S2(V, H), "transformer.wte.weight");
    for (l = 0; l < d->n_layers; l++) {
        char p[48];
        snprintf(p, sizeof p, "transformer.h.%d", l);
        ADD(QILIN_W_ATTN_NORM, 1, S1(H), "%s.ln_1.weight", p);
        ADD(QILIN_W_ATTN_NORM_BIAS, 1, S1(H), "%s.ln_1.bias", p);
        ADD(QILIN_W_Q, 2, S2(A, H), "%s.attn.q_proj.weight", p);
        ADD(QILIN_W_K, 2, S2(A, H), "%s.attn.k_proj.weight", p);
        ADD(QILIN_W_V, 2, S2(A, H), "%s.attn.v_proj.weight", p);
        ADD(QILIN_W_O, 2, S2(H, A), "%s.attn.out_proj.weight", p);
        ADD(QILIN_W_UP, 2, S2(F, H), "%s.mlp.fc_in.weight", p);
        ADD(QILIN_W_UP_BIAS, 1, S1(F), "%s.mlp.fc_in.bias", p);
        ADD(QILIN_W_DOWN, 2, S2(H, F), "%s.mlp.fc_out.weight", p);
        ADD(QILIN_W_DOWN_BIAS, 1, S1(H), "%s.mlp.fc_out.bias", p);
    }
    l = -1;
    ADD(QILIN_W_FINAL_NORM, 1, S1(H), "transformer.ln_f.weight");
    ADD(QILIN_W_FINAL_NORM_BIAS, 1, S1(H), "transformer.ln_f.bias");
    if (!d->tied_embeddings) {
        ADD(QILIN_W_LM_HEAD, 2, S2(V, H), "lm_head.weight");
        ADD(QILIN_W_LM_HEAD_BIAS, 1, S1(V), "lm_head.bias");
    }
    return QILIN_OK;
}

#undef ADD

/* spec_index[(layer + 1) * QILIN_SLOT_COUNT + slot] = first spec of that
 * (slot, layer), -1 when none; experts of one slot are consecutive. */
static qilin_status build_index(qilin_model_desc *d) {
    size_t n = ((size_t)d->n_layers + 1) * QILIN_SLOT_COUNT;
    d->spec_index = malloc(n * sizeof *d->spec_index);
    if (!d->spec_index) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: spec index", d->source);
    for (size_t i = 0; i < n; i++) d->spec_index[i] = -1;
    for (int i = d->n_tensors - 1; i >= 0; i--) {
        const qilin_tensor_spec *s = &d->tensors[i];
        if (s->layer < -1 || s->layer >= d->n_layers)
            return qilin_error(QILIN_ERR_INTERNAL, "%s: spec %s has layer %d", d->source, s->name, s->layer);
        d->spec_index[(size_t)(s->layer + 1) * QILIN_SLOT_COUNT + s->slot] = i;
    }
    return QILIN_OK;
}

int qilin_model_find_spec(const qilin_model_desc *d, qilin_slot slot, int layer, int expert) {
    if (!d || (unsigned)slot >= QILIN_SLOT_COUNT || layer < -1 || layer >= d->n_layers) return -1;
    if (d->spec_index) {
        int first = d->spec_index[(size_t)(layer + 1) * QILIN_SLOT_COUNT + slot];
        if (first < 0) return -1;
        int i = first + (expert > 0 ? expert : 0);
        if (i < d->n_tensors) {
            const qilin_tensor_spec *s = &d->tensors[i];
            if (s->slot == slot && s->layer == layer && s->expert == expert) return i;
        }
    }
    for (int i = 0; i < d->n_tensors; i++) { /* fallback: never taken for lists built here */
        const qilin_tensor_spec *s = &d->tensors[i];
        if (s->slot == slot && s->layer == layer && s->expert == expert) return i;
    }
    return -1;
}

/* ---- config.json ---------------------------------------------------------- */

/* An integer in min .. max: required when def is NULL. */
static qilin_status cfg_int(const hf_config *c, const char *key, const int64_t *def, int64_t min, int64_t max,
                            int *out) {
    int64_t v = 0;
    QILIN_TRY(def ? hf_config_int_or(c, key, *def, &v) : hf_config_int(c, key, &v));
    if (v < min || v > max)
        return qilin_error(QILIN_ERR_FORMAT, "%s: key '%s' is %lld; expected %lld .. %lld", hf_config_name(c),
                           key, (long long)v, (long long)min, (long long)max);
    *out = (int)v;
    return QILIN_OK;
}
/* Sizes and counts: at most QILIN_MAX_DIM, so sums and products of two stay far inside int64. */
#define REQ_INT(key, out) QILIN_TRY(cfg_int(c, (key), NULL, 1, QILIN_MAX_DIM, (out)))
#define OPT_INT(key, def, min, out) QILIN_TRY(cfg_int(c, (key), &(int64_t){def}, (min), QILIN_MAX_DIM, (out)))

static qilin_status cfg_float(const hf_config *c, const char *key, double def, float *out) {
    double v;
    QILIN_TRY(hf_config_float_or(c, key, def, &v));
    *out = (float)v;
    return QILIN_OK;
}

static qilin_status parse_act(const char *file, const char *key, const char *name, qilin_act *out) {
    static const struct {
        const char *name;
        qilin_act act;
    } acts[] = {{"silu", QILIN_ACT_SILU},           {"swish", QILIN_ACT_SILU},
                {"gelu", QILIN_ACT_GELU_ERF},       {"gelu_new", QILIN_ACT_GELU_TANH},
                {"gelu_fast", QILIN_ACT_GELU_TANH}, {"gelu_pytorch_tanh", QILIN_ACT_GELU_TANH}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(name, acts[i].name)) return *out = acts[i].act, QILIN_OK;
    return qilin_error(
        QILIN_ERR_UNSUPPORTED,
        "%s: key '%s' is '%s'; supported: silu, swish, gelu, gelu_new, gelu_fast, gelu_pytorch_tanh", file,
        key, name);
}

/* rope_scaling (classic configs) or rope_parameters (transformers >= 5: theta,
 * type and factors in one object); `obj` names the one present. */
static qilin_status read_rope_scaling(const hf_config *c, qilin_model_desc *d, const char *obj) {
    qilin_rope_config *r = &d->rope;
    if (!hf_config_has(c, obj)) return QILIN_OK;
    char key[96];
#define K(name) (snprintf(key, sizeof key, "%s.%s", obj, (name)), key)
    const char *type = NULL, *f = hf_config_name(c);
    if (hf_config_has(c, K("rope_type")))
        QILIN_TRY(hf_config_string(c, key, &type));
    else
        QILIN_TRY(hf_config_string(c, K("type"), &type));
    if (!strcmp(type, "default")) return QILIN_OK;
    if (!strcmp(type, "linear")) {
        r->scaling = QILIN_ROPE_SCALING_LINEAR;
        QILIN_TRY(hf_config_float(c, K("factor"), &r->factor));
    } else if (!strcmp(type, "llama3")) {
        r->scaling = QILIN_ROPE_SCALING_LLAMA3;
        QILIN_TRY(hf_config_float(c, K("factor"), &r->factor));
        QILIN_TRY(hf_config_float(c, K("low_freq_factor"), &r->low_freq_factor));
        QILIN_TRY(hf_config_float(c, K("high_freq_factor"), &r->high_freq_factor));
        QILIN_TRY(hf_config_float(c, K("original_max_position_embeddings"), &r->original_max_position));
        if (!(r->high_freq_factor > r->low_freq_factor))
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: %s.high_freq_factor (%g) must exceed low_freq_factor (%g)", f, obj,
                               r->high_freq_factor, r->low_freq_factor);
    } else if (!strcmp(type, "yarn")) {
        r->scaling = QILIN_ROPE_SCALING_YARN;
        QILIN_TRY(hf_config_float(c, K("factor"), &r->factor));
        QILIN_TRY(hf_config_float_or(c, K("original_max_position_embeddings"), (double)d->max_position,
                                     &r->original_max_position));
        QILIN_TRY(hf_config_float_or(c, K("beta_fast"), 32, &r->beta_fast));
        QILIN_TRY(hf_config_float_or(c, K("beta_slow"), 1, &r->beta_slow));
        QILIN_TRY(hf_config_float_or(c, K("mscale"), 0, &r->mscale));
        QILIN_TRY(hf_config_float_or(c, K("mscale_all_dim"), 0, &r->mscale_all_dim));
        QILIN_TRY(hf_config_float_or(c, K("attention_factor"), 0, &r->attention_factor));
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: key '%s' has type '%s'; supported: default, linear, llama3, yarn", f, obj,
                           type);
    }
#undef K
    if (!(r->factor > 0) || (r->scaling != QILIN_ROPE_SCALING_LINEAR && !(r->original_max_position > 0)))
        return qilin_error(QILIN_ERR_FORMAT, "%s: %s: factor %g, original_max_position_embeddings %g", f, obj,
                           r->factor, r->original_max_position);
    return QILIN_OK;
}

/* The quantisation hints bind needs: FP8 block size, INT4 group size. */
static qilin_status read_quant(const hf_config *c, qilin_model_desc *d) {
    if (!hf_config_has(c, "quantization_config")) return QILIN_OK;
    const char *method;
    QILIN_TRY(hf_config_string_or(c, "quantization_config.quant_method", "", &method));
    snprintf(d->quant_method, sizeof d->quant_method, "%s", method);
    if (!strcmp(method, "fp8") && hf_config_has(c, "quantization_config.weight_block_size")) {
        int64_t b[2];
        size_t n = 0;
        QILIN_TRY(hf_config_int_list(c, "quantization_config.weight_block_size", b, 2, &n));
        if (n != 2 || b[0] <= 0 || b[1] <= 0 || b[0] > INT_MAX || b[1] > INT_MAX)
            return qilin_error(
                QILIN_ERR_FORMAT,
                "%s: key 'quantization_config.weight_block_size' must be two positive integers",
                hf_config_name(c));
        d->weight_block[0] = (int)b[0];
        d->weight_block[1] = (int)b[1];
    }
    if (!strcmp(method, "compressed-tensors")) { /* the first config group's weight group size */
        json_t *groups =
            json_object_get(json_object_get(hf_config_json(c), "quantization_config"), "config_groups");
        const char *name;
        json_t *g;
        json_object_foreach(groups, name, g) {
            json_t *gs = json_object_get(json_object_get(g, "weights"), "group_size");
            if (json_is_integer(gs) && json_integer_value(gs) > 0 && json_integer_value(gs) <= INT_MAX) {
                d->weight_group = (int)json_integer_value(gs);
                break;
            }
        }
    }
    return QILIN_OK;
}

static void add_eos(qilin_model_desc *d, int64_t id) {
    for (int i = 0; i < d->n_eos; i++)
        if (d->eos_ids[i] == id) return;
    if (d->n_eos < QILIN_MAX_EOS) d->eos_ids[d->n_eos++] = id;
}

static qilin_status read_tokens(const hf_config *c, qilin_model_desc *d, const char *gen_path) {
    QILIN_TRY(hf_config_int_or(c, "bos_token_id", -1, &d->bos_id));
    int64_t eos[QILIN_MAX_EOS];
    size_t n = 0;
    QILIN_TRY(hf_config_int_list(c, "eos_token_id", eos, QILIN_MAX_EOS, &n));
    for (size_t i = 0; i < n; i++) add_eos(d, eos[i]);
    struct stat st;
    if (gen_path && stat(gen_path, &st) == 0) { /* generation_config.json may add stop ids */
        hf_generation_config g;
        QILIN_TRY(hf_generation_config_load(gen_path, &g));
        for (size_t i = 0; i < g.n_eos; i++) add_eos(d, g.eos_token_ids[i]);
        if (d->bos_id < 0) d->bos_id = g.bos_token_id;
        d->gen = g;
        d->has_gen = true;
    }
    return QILIN_OK;
}

static qilin_status find_arch(const hf_config *c, qilin_model_desc *d) {
    const char *f = hf_config_name(c), *name = NULL, *mt;
    QILIN_TRY(hf_config_string_or(c, "model_type", "", &mt));
    snprintf(d->model_type, sizeof d->model_type, "%s", mt);
    json_t *archs = json_object_get(hf_config_json(c), "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0) {
        if (!json_is_string(json_array_get(archs, 0)))
            return qilin_error(QILIN_ERR_FORMAT, "%s: key 'architectures' must be a list of strings", f);
        name = json_string_value(json_array_get(archs, 0));
        for (int a = 0; a < QILIN_ARCH_COUNT; a++)
            if (!strcmp(name, arch_hf_names[a])) return d->arch = (qilin_arch)a, QILIN_OK;
    } else if (archs && !json_is_null(archs)) {
        return qilin_error(QILIN_ERR_FORMAT, "%s: key 'architectures' must be a list of strings", f);
    } else {
        for (size_t i = 0; i < sizeof model_types / sizeof model_types[0]; i++)
            if (!strcmp(mt, model_types[i].model_type)) return d->arch = model_types[i].arch, QILIN_OK;
        if (!*mt)
            return qilin_error(QILIN_ERR_FORMAT, "%s: neither 'architectures' nor 'model_type' is set", f);
        name = mt;
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported; supported: %s", f,
                       name, qilin_arch_supported_list());
}

static bool is_moe_arch(qilin_arch a) {
    return a == QILIN_ARCH_MIXTRAL || a == QILIN_ARCH_QWEN2_MOE || a == QILIN_ARCH_QWEN3_MOE ||
           a == QILIN_ARCH_DEEPSEEK_V2 || a == QILIN_ARCH_DEEPSEEK_V3;
}

/* Routing, expert sizes and the per-layer FFN kind for the MoE families. */
static qilin_status read_moe(const hf_config *c, qilin_model_desc *d, qilin_model_keys *k) {
    const char *f = hf_config_name(c);
    bool ds = d->arch == QILIN_ARCH_DEEPSEEK_V2 || d->arch == QILIN_ARCH_DEEPSEEK_V3;
    d->moe_score = QILIN_MOE_SOFTMAX;
    d->moe_group_score = QILIN_MOE_GROUP_MAX;
    d->n_group = d->topk_group = 1;
    d->routed_scale = 1.0f;
    k->top_k = "num_experts_per_tok";
    switch (d->arch) {
    case QILIN_ARCH_MIXTRAL:
        k->experts = "num_local_experts";
        REQ_INT("num_local_experts", &d->n_experts);
        OPT_INT("num_experts_per_tok", 2, 1, &d->top_k);
        d->moe_ffn_dim = d->ffn_dim;
        d->ffn_dim = 0; /* intermediate_size is the expert width; no dense layers */
        d->norm_topk_prob = true;
        for (int l = 0; l < d->n_layers; l++) d->layer_ffn[l] = QILIN_FFN_MOE;
        return QILIN_OK;
    case QILIN_ARCH_QWEN2_MOE:
    case QILIN_ARCH_QWEN3_MOE: {
        bool q2 = d->arch == QILIN_ARCH_QWEN2_MOE;
        k->experts = "num_experts";
        OPT_INT("num_experts", q2 ? 60 : 128, 0, &d->n_experts);
        OPT_INT("num_experts_per_tok", q2 ? 4 : 8, 1, &d->top_k);
        OPT_INT("moe_intermediate_size", q2 ? 1408 : 768, 1, &d->moe_ffn_dim);
        QILIN_TRY(hf_config_bool_or(c, "norm_topk_prob", false, &d->norm_topk_prob));
        if (q2) {
            OPT_INT("shared_expert_intermediate_size", 5632, 0, &d->shared_ffn_dim);
            d->n_shared_experts = d->shared_ffn_dim > 0;
            d->shared_expert_gate = d->shared_ffn_dim > 0;
        }
        int step = 1;
        OPT_INT("decoder_sparse_step", 1, 1, &step);
        int64_t only[QILIN_MAX_LAYERS];
        size_t n_only = 0;
        QILIN_TRY(hf_config_int_list(c, "mlp_only_layers", only, QILIN_MAX_LAYERS, &n_only));
        for (int l = 0; l < d->n_layers; l++) {
            bool dense = d->n_experts == 0 || (l + 1) % step != 0;
            for (size_t i = 0; i < n_only; i++) dense |= only[i] == l;
            d->layer_ffn[l] = dense ? QILIN_FFN_GATED : QILIN_FFN_MOE;
        }
        return QILIN_OK;
    }
    default:
        break;
    }
    if (!ds) return QILIN_OK;
    bool v3 = d->arch == QILIN_ARCH_DEEPSEEK_V3;
    k->experts = "n_routed_experts";
    k->n_group = "n_group";
    k->topk_group = "topk_group";
    REQ_INT("n_routed_experts", &d->n_experts);
    REQ_INT("num_experts_per_tok", &d->top_k);
    REQ_INT("moe_intermediate_size", &d->moe_ffn_dim);
    OPT_INT("n_shared_experts", 0, 0, &d->n_shared_experts);
    if ((int64_t)d->n_shared_experts * d->moe_ffn_dim > QILIN_MAX_DIM)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: 'n_shared_experts' (%d) x 'moe_intermediate_size' (%d) exceeds %d", f,
                           d->n_shared_experts, d->moe_ffn_dim, QILIN_MAX_DIM);
    d->shared_ffn_dim = d->n_shared_experts * d->moe_ffn_dim;
    int first_dense = 0, freq = 1;
    OPT_INT("first_k_dense_replace", 0, 0, &first_dense);
    OPT_INT("moe_layer_freq", 1, 1, &freq);
    for (int l = 0; l < d->n_layers; l++)
        d->layer_ffn[l] = l >= first_dense && l % freq == 0 ? QILIN_FFN_MOE : QILIN_FFN_GATED;
    const char *scoring, *method;
    QILIN_TRY(hf_config_string_or(c, "scoring_func", v3 ? "sigmoid" : "softmax", &scoring));
    QILIN_TRY(hf_config_string_or(c, "topk_method", v3 ? "noaux_tc" : "greedy", &method));
    if (!strcmp(scoring, "sigmoid"))
        d->moe_score = QILIN_MOE_SIGMOID;
    else if (strcmp(scoring, "softmax"))
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: key 'scoring_func' is '%s'; supported: softmax, sigmoid", f, scoring);
    if (!strcmp(method, "noaux_tc")) {
        d->moe_group_score = QILIN_MOE_GROUP_TOP2_SUM;
        d->router_bias = true;
    } else if (strcmp(method, "group_limited_greedy") && strcmp(method, "greedy")) {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: key 'topk_method' is '%s'; supported: greedy, group_limited_greedy, noaux_tc",
                           f, method);
    }
    if (strcmp(method, "greedy")) { /* greedy ignores the groups */
        OPT_INT("n_group", 1, 1, &d->n_group);
        OPT_INT("topk_group", 1, 1, &d->topk_group);
    }
    QILIN_TRY(hf_config_bool_or(c, "norm_topk_prob", v3, &d->norm_topk_prob));
    QILIN_TRY(cfg_float(c, "routed_scaling_factor", 1.0, &d->routed_scale));
    return QILIN_OK;
}

static qilin_status read_mla(const hf_config *c, qilin_model_desc *d, qilin_model_keys *k) {
    d->attn = QILIN_ATTN_MLA;
    bool attn_bias;
    QILIN_TRY(hf_config_bool_or(c, "attention_bias", false, &attn_bias));
    if (attn_bias)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: key 'attention_bias' is true; MLA with biases is not supported",
                           hf_config_name(c));
    OPT_INT("q_lora_rank", 0, 0, &d->q_lora_rank);
    REQ_INT("kv_lora_rank", &d->kv_lora_rank);
    REQ_INT("qk_nope_head_dim", &d->qk_nope_dim);
    REQ_INT("qk_rope_head_dim", &d->qk_rope_dim);
    REQ_INT("v_head_dim", &d->v_head_dim);
    d->n_kv_heads = d->n_heads; /* no GQA grouping in MLA */
    d->head_dim = d->qk_nope_dim + d->qk_rope_dim;
    d->head_dim_v = d->v_head_dim;
    d->rope.rot_dim = d->qk_rope_dim;
    d->mla_norm_eps = 1e-6f; /* q_a/kv_a layernorms: the authors' default eps (models.md §7.1) */
    k->rot_dim = "qk_rope_head_dim";
    k->head_dim = "qk_nope_head_dim";
    return QILIN_OK;
}

static qilin_status read_hf(hf_config *c, qilin_model_desc *d, qilin_model_keys *k, const char *gen_path) {
    const char *f = hf_config_name(c);
    QILIN_TRY(find_arch(c, d));
    qilin_arch a = d->arch;
    QILIN_TRY(apply_aliases(c, a));
    bool gptj = a == QILIN_ARCH_GPTJ, neox = a == QILIN_ARCH_GPT_NEOX;
    bool ds = a == QILIN_ARCH_DEEPSEEK_V2 || a == QILIN_ARCH_DEEPSEEK_V3;
    *k = (qilin_model_keys){.vocab = "vocab_size",
                            .hidden = "hidden_size",
                            .layers = "num_hidden_layers",
                            .heads = "num_attention_heads",
                            .kv_heads = "num_key_value_heads",
                            .head_dim = "head_dim",
                            .ffn = "intermediate_size",
                            .experts = "num_experts",
                            .top_k = "num_experts_per_tok",
                            .n_group = "n_group",
                            .topk_group = "topk_group",
                            .rot_dim = "head_dim",
                            .act = "hidden_act"};
    if (gptj) {
        k->hidden = "n_embd", k->layers = "n_layer", k->heads = "n_head", k->kv_heads = "n_head";
        k->ffn = "n_inner", k->act = "activation_function", k->rot_dim = "rotary_dim";
    }
    REQ_INT("vocab_size", &d->vocab);
    REQ_INT(k->hidden, &d->hidden);
    REQ_INT(k->layers, &d->n_layers);
    REQ_INT(k->heads, &d->n_heads);
    if (d->n_layers > QILIN_MAX_LAYERS)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: key '%s' is %d; at most %d layers are supported", f,
                           k->layers, d->n_layers, QILIN_MAX_LAYERS);
    if (gptj)
        d->n_kv_heads = d->n_heads;
    else
        OPT_INT("num_key_value_heads", d->n_heads, 1, &d->n_kv_heads);
    if (!ds && !gptj && hf_config_has(c, "head_dim")) {
        REQ_INT("head_dim", &d->head_dim);
    } else if (!ds) {
        if (d->hidden % d->n_heads)
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: key '%s' (%d) is not a multiple of '%s' (%d) and 'head_dim' is absent", f,
                               k->hidden, d->hidden, k->heads, d->n_heads);
        d->head_dim = d->hidden / d->n_heads;
    }
    d->head_dim_v = d->head_dim;

    /* FFN width: dense MLP (experts' width for Mixtral, fixed up in read_moe) */
    if (gptj)
        OPT_INT("n_inner", 4 * (int64_t)d->hidden, 1, &d->ffn_dim);
    else if (a == QILIN_ARCH_QWEN2_MOE || a == QILIN_ARCH_QWEN3_MOE || ds)
        OPT_INT("intermediate_size", 0, 0, &d->ffn_dim);
    else
        REQ_INT("intermediate_size", &d->ffn_dim);
    int max_pos = 0; /* positions are not sizes: a context of 2^31 - 1 is only a number here */
    QILIN_TRY(
        cfg_int(c, gptj ? "n_positions" : "max_position_embeddings", &(int64_t){2048}, 1, INT_MAX, &max_pos));
    d->max_position = max_pos;

    /* block, norm, activation */
    const char *act;
    d->block = QILIN_BLOCK_SEQUENTIAL;
    d->norm = neox || gptj ? QILIN_NORM_LAYER : QILIN_NORM_RMS;
    if (neox) {
        bool parallel;
        QILIN_TRY(hf_config_bool_or(c, "use_parallel_residual", true, &parallel));
        d->block = parallel ? QILIN_BLOCK_PARALLEL : QILIN_BLOCK_SEQUENTIAL;
        QILIN_TRY(cfg_float(c, "layer_norm_eps", 1e-5, &d->norm_eps));
    } else if (gptj) {
        d->block = QILIN_BLOCK_PARALLEL_SHARED;
        QILIN_TRY(cfg_float(c, "layer_norm_epsilon", 1e-5, &d->norm_eps));
    } else {
        QILIN_TRY(cfg_float(c, "rms_norm_eps", a == QILIN_ARCH_MIXTRAL ? 1e-5 : 1e-6, &d->norm_eps));
    }
    QILIN_TRY(hf_config_string_or(c, k->act, gptj ? "gelu_new" : neox ? "gelu" : "silu", &act));
    QILIN_TRY(parse_act(f, k->act, act, &d->act));
    if (!neox && !gptj && d->act != QILIN_ACT_SILU)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: key 'hidden_act' is '%s'; %s uses a SwiGLU MLP (silu)",
                           f, act, qilin_arch_hf_name(a));

    /* biases and per-head norms */
    bool attn_bias = false, mlp_bias = false;
    if (a == QILIN_ARCH_LLAMA || a == QILIN_ARCH_QWEN3 || a == QILIN_ARCH_QWEN3_MOE || neox)
        QILIN_TRY(hf_config_bool_or(c, "attention_bias", neox, &attn_bias));
    if (a == QILIN_ARCH_LLAMA) QILIN_TRY(hf_config_bool_or(c, "mlp_bias", false, &mlp_bias));
    if (mlp_bias)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: key 'mlp_bias' is true; gated MLPs with biases are not supported", f);
    d->qkv_bias = d->o_bias = attn_bias;
    if (a == QILIN_ARCH_QWEN2) d->qkv_bias = true;
    if (a == QILIN_ARCH_QWEN2_MOE) QILIN_TRY(hf_config_bool_or(c, "qkv_bias", true, &d->qkv_bias));
    d->mlp_bias = neox || gptj;
    d->lm_head_bias = gptj;
    d->qk_norm = a == QILIN_ARCH_QWEN3 || a == QILIN_ARCH_QWEN3_MOE;
    QILIN_TRY(hf_config_bool_or(c, "tie_word_embeddings", false, &d->tied_embeddings));
    if (a == QILIN_ARCH_MISTRAL || a == QILIN_ARCH_MIXTRAL)
        QILIN_TRY(
            cfg_int(c, "sliding_window", &(int64_t){0}, 0, INT_MAX, &d->sliding_window)); /* a position */
    if (a == QILIN_ARCH_QWEN2 || a == QILIN_ARCH_QWEN3 || a == QILIN_ARCH_QWEN2_MOE ||
        a == QILIN_ARCH_QWEN3_MOE) {
        bool swa;
        QILIN_TRY(hf_config_bool_or(c, "use_sliding_window", false, &swa));
        if (swa)
            return qilin_error(
                QILIN_ERR_UNSUPPORTED,
                "%s: key 'use_sliding_window' is true; per-layer sliding windows are not supported", f);
    }

    /* attention and rope */
    d->attn = QILIN_ATTN_GQA;
    d->rope.pairing = gptj || ds ? QILIN_ROPE_INTERLEAVED : QILIN_ROPE_HALF_SPLIT;
    d->rope.rot_dim = d->head_dim;
    if (ds) QILIN_TRY(read_mla(c, d, k));
    bool params = hf_config_has(c, "rope_parameters"); /* transformers >= 5 spelling */
    if (neox) {
        double pct;
        k->rot_dim = params && hf_config_has(c, "rope_parameters.partial_rotary_factor")
                         ? "rope_parameters.partial_rotary_factor"
                     : hf_config_has(c, "partial_rotary_factor") ? "partial_rotary_factor"
                                                                 : "rotary_pct";
        QILIN_TRY(hf_config_float_or(c, k->rot_dim, 0.25, &pct));
        if (!(pct > 0 && pct <= 1))
            return qilin_error(QILIN_ERR_FORMAT, "%s: key '%s' is %g; expected a fraction in (0, 1]", f,
                               k->rot_dim, pct);
        d->rope.rot_dim = (int)(d->head_dim * pct);
    }
    if (gptj && hf_config_has(c, "rotary_dim")) REQ_INT("rotary_dim", &d->rope.rot_dim);
    const char *theta = params && hf_config_has(c, "rope_parameters.rope_theta")
                            ? "rope_parameters.rope_theta"
                        : neox && hf_config_has(c, "rotary_emb_base") ? "rotary_emb_base"
                                                                      : "rope_theta";
    QILIN_TRY(hf_config_float_or(c, theta, 10000.0, &d->rope.theta));
    QILIN_TRY(read_rope_scaling(c, d, params ? "rope_parameters" : "rope_scaling"));

    if (is_moe_arch(a))
        QILIN_TRY(read_moe(c, d, k));
    else
        for (int l = 0; l < d->n_layers; l++)
            d->layer_ffn[l] = neox || gptj ? QILIN_FFN_PLAIN : QILIN_FFN_GATED;

    OPT_INT("num_nextn_predict_layers", 0, 0, &d->n_mtp_layers);
    QILIN_TRY(read_quant(c, d));
    return read_tokens(c, d, gen_path);
}

/* ---- validation, shared with GGUF ----------------------------------------- */

static qilin_status bad(const qilin_model_desc *d, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qilin_error(QILIN_ERR_FORMAT, "%s: %s", d->source, msg);
}

static qilin_status validate(qilin_model_desc *d, const qilin_model_keys *k) {
    if (d->vocab <= 0 || d->hidden <= 0 || d->n_layers <= 0 || d->n_heads <= 0 || d->n_kv_heads <= 0 ||
        d->head_dim <= 0)
        return bad(d, "non-positive size ('%s' %d, '%s' %d, '%s' %d, '%s' %d, '%s' %d, head_dim %d)",
                   k->vocab, d->vocab, k->hidden, d->hidden, k->layers, d->n_layers, k->heads, d->n_heads,
                   k->kv_heads, d->n_kv_heads, d->head_dim);
    if (d->n_layers > QILIN_MAX_LAYERS)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: key '%s' is %d; at most %d layers are supported",
                           d->source, k->layers, d->n_layers, QILIN_MAX_LAYERS);
    const struct {
        const char *name;
        int v;
    } sizes[] = {{k->vocab, d->vocab},
                 {k->hidden, d->hidden},
                 {k->heads, d->n_heads},
                 {k->kv_heads, d->n_kv_heads},
                 {"head_dim", d->head_dim},
                 {"value head_dim", d->head_dim_v},
                 {k->ffn, d->ffn_dim},
                 {"expert ffn", d->moe_ffn_dim},
                 {"shared expert ffn", d->shared_ffn_dim},
                 {"q_lora_rank", d->q_lora_rank},
                 {"kv_lora_rank", d->kv_lora_rank}};
    /* Checked here too for GGUF, whose vocabulary comes from a tensor shape. */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v > QILIN_MAX_DIM)
            return bad(d, "'%s' is %d; sizes above %d are not supported", sizes[i].name, sizes[i].v,
                       QILIN_MAX_DIM);
    /* Before the tensor list, which has 3 entries per expert and layer. */
    if (d->n_experts > QILIN_MAX_EXPERTS)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: key '%s' is %d; at most %d experts are supported",
                           d->source, k->experts, d->n_experts, QILIN_MAX_EXPERTS);
    /* Token ids from the config (or generation_config.json, or GGUF) are compared with and fed
     * to the model as int32: one outside the vocabulary would be truncated into another id. */
    if (d->bos_id < -1 || d->bos_id >= d->vocab)
        return bad(d, "bos_token_id %lld is outside the vocabulary of %d", (long long)d->bos_id, d->vocab);
    for (int i = 0; i < d->n_eos; i++)
        if (d->eos_ids[i] < 0 || d->eos_ids[i] >= d->vocab)
            return bad(d, "eos_token_id %lld is outside the vocabulary of %d", (long long)d->eos_ids[i],
                       d->vocab);
    if (d->attn == QILIN_ATTN_GQA && d->n_heads % d->n_kv_heads)
        return bad(d, "key '%s' (%d) does not divide '%s' (%d)", k->kv_heads, d->n_kv_heads, k->heads,
                   d->n_heads);
    int rot_max = d->attn == QILIN_ATTN_MLA ? d->qk_rope_dim : d->head_dim;
    if (d->rope.rot_dim <= 0 || d->rope.rot_dim % 2 || d->rope.rot_dim > rot_max)
        return bad(d, "key '%s' gives %d rotary dims; expected an even number in 2 .. %d", k->rot_dim,
                   d->rope.rot_dim, rot_max);
    if (!(d->rope.theta > 0)) return bad(d, "rope theta %g is not positive", d->rope.theta);
    if (d->attn == QILIN_ATTN_MLA && (d->kv_lora_rank <= 0 || d->qk_nope_dim <= 0 || d->v_head_dim <= 0))
        return bad(d, "MLA dims: kv_lora_rank %d, qk_nope_head_dim %d, v_head_dim %d", d->kv_lora_rank,
                   d->qk_nope_dim, d->v_head_dim);
    if (!(d->norm_eps > 0)) return bad(d, "norm epsilon %g is not positive", (double)d->norm_eps);
    d->n_moe_layers = 0;
    bool dense = false;
    for (int l = 0; l < d->n_layers; l++) {
        d->n_moe_layers += d->layer_ffn[l] == QILIN_FFN_MOE;
        dense |= d->layer_ffn[l] != QILIN_FFN_MOE;
    }
    if (dense && d->ffn_dim <= 0)
        return bad(d, "key '%s' is missing or 0 but dense MLP layers exist", k->ffn);
    if ((int64_t)d->n_moe_layers * d->n_experts * 3 + (int64_t)d->n_layers * 64 > QILIN_MAX_TENSORS)
        return bad(d, "%d MoE layers of %d experts give more than %d tensors", d->n_moe_layers, d->n_experts,
                   QILIN_MAX_TENSORS);
    if (d->n_moe_layers > 0) {
        if (d->n_experts <= 0) return bad(d, "key '%s' is %d", k->experts, d->n_experts);
        if (d->top_k <= 0 || d->top_k > d->n_experts)
            return bad(d, "key '%s' (%d) must be in 1 .. '%s' (%d)", k->top_k, d->top_k, k->experts,
                       d->n_experts);
        if (d->moe_ffn_dim <= 0) return bad(d, "expert intermediate size %d is not positive", d->moe_ffn_dim);
        if (d->n_group <= 0 || d->n_experts % d->n_group)
            return bad(d, "key '%s' (%d) does not divide '%s' (%d)", k->n_group, d->n_group, k->experts,
                       d->n_experts);
        if (d->topk_group <= 0 || d->topk_group > d->n_group)
            return bad(d, "key '%s' (%d) must be in 1 .. '%s' (%d)", k->topk_group, d->topk_group, k->n_group,
                       d->n_group);
        if (d->top_k > d->topk_group * (d->n_experts / d->n_group))
            return bad(d, "key '%s' (%d) exceeds the %d experts in the '%s' (%d) kept groups", k->top_k,
                       d->top_k, d->topk_group * (d->n_experts / d->n_group), k->topk_group, d->topk_group);
    }
    /* softmax scale: head_dim^-1/2; MLA: (dn + dr)^-1/2 · mscale(s, mscale_all_dim)² under YaRN (§1.5) */
    d->attn_scale = (float)(1.0 / sqrt((double)d->head_dim));
    if (d->attn == QILIN_ATTN_MLA && d->rope.scaling == QILIN_ROPE_SCALING_YARN &&
        d->rope.mscale_all_dim != 0) {
        double m = qilin_yarn_mscale(d->rope.factor, d->rope.mscale_all_dim);
        d->attn_scale = (float)(m * m / sqrt((double)d->head_dim));
    }
    return QILIN_OK;
}

/* ---- load ----------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A directory holds config.json; without one, a single .gguf. */
static qilin_status resolve_path(const char *path, char *out, size_t cap, bool *gguf) {
    struct stat st;
    *gguf = false;
    if (stat(path, &st) != 0) return qilin_error(QILIN_ERR_IO, "%s: no such file or directory", path);
    if (!S_ISDIR(st.st_mode)) {
        *gguf = ends_with(path, ".gguf");
        if ((size_t)snprintf(out, cap, "%s", path) >= cap)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: path too long", path);
        return QILIN_OK;
    }
    if ((size_t)snprintf(out, cap, "%s/config.json", path) >= cap)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    if (stat(out, &st) == 0) return QILIN_OK;
    return qilin_model_find_gguf(path, out, cap)
               ? (*gguf = true, QILIN_OK)
               : qilin_error(QILIN_ERR_IO, "%s: no config.json or single .gguf file in the directory", path);
}

static qilin_status load(const char *path, qilin_model_desc *d) {
    bool gguf;
    QILIN_TRY(resolve_path(path, d->source, sizeof d->source, &gguf));
    qilin_model_keys keys = {0};
    if (gguf) {
        d->from_gguf = true;
        QILIN_TRY(qilin_model_read_gguf(d->source, d, &keys));
        QILIN_TRY(validate(d, &keys));
        QILIN_TRY(qilin_model_gguf_tensors(d, &keys));
        return build_index(d);
    }
    hf_config *c = NULL;
    QILIN_TRY(hf_config_open(d->source, &c));
    char gen[sizeof d->source + 32] = "";
    if (ends_with(d->source, "/config.json") || !strcmp(d->source, "config.json")) {
        size_t dir = strlen(d->source) - strlen("config.json");
        snprintf(gen, sizeof gen, "%.*sgeneration_config.json", (int)dir, d->source);
    }
    qilin_status st = read_hf(c, d, &keys, gen[0] ? gen : NULL);
    hf_config_close(c);
    QILIN_TRY(st);
    QILIN_TRY(validate(d, &keys));
    if (d->arch == QILIN_ARCH_GPT_NEOX)
        QILIN_TRY(neox_tensors(d));
    else if (d->arch == QILIN_ARCH_GPTJ)
        QILIN_TRY(gptj_tensors(d));
    else
        QILIN_TRY(llama_like_tensors(d));
    return build_index(d);
}

qilin_status qilin_model_desc_load(const char *path, qilin_model_desc **out) {
    *out = NULL;
    qilin_model_desc *d = calloc(1, sizeof *d);
    if (!d) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: model descriptor", path);
    d->bos_id = -1;
    qilin_status st = load(path, d);
    if (st != QILIN_OK) {
        qilin_model_desc_free(d);
        return st;
    }
    *out = d;
    return QILIN_OK;
}

qilin_status qilin_model_desc_keep_layers(qilin_model_desc *d, int n) {
    if (n < 1 || n > d->n_layers)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: cannot keep %d layers: the model has %d (use 1 .. %d)",
                           d->source, n, d->n_layers, d->n_layers);
    int kept = 0;
    for (int i = 0; i < d->n_tensors; i++)
        if (d->tensors[i].layer < n) d->tensors[kept++] = d->tensors[i];
    d->n_tensors = kept;
    d->n_layers = n;
    d->n_moe_layers = 0;
    for (int l = 0; l < n; l++) d->n_moe_layers += d->layer_ffn[l] == QILIN_FFN_MOE;
    d->n_mtp_layers = 0; /* the layers after the kept ones are gone, MTP ones too */
    free(d->spec_index);
    d->spec_index = NULL;
    return build_index(d);
}

void qilin_model_desc_free(qilin_model_desc *d) {
    if (!d) return;
    free(d->tensors);
    free(d->spec_index);
    free(d);
}

/* ---- parameter counts ----------------------------------------------------- */

static int64_t spec_numel(const qilin_tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->n_dims; i++) n *= s->shape[i];
    return n;
}

void qilin_model_param_counts(const qilin_model_desc *d, qilin_param_counts *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec *s = &d->tensors[i];
        if (s->slot == QILIN_W_ROPE_FREQS) continue; /* a derived table, not a parameter */
        int64_t n = spec_numel(s);
        out->total += n;
        if (s->slot == QILIN_W_EMBED) out->embedding += n;
        if (s->slot == QILIN_W_LM_HEAD || s->slot == QILIN_W_LM_HEAD_BIAS) out->lm_head += n;
        if (s->slot == QILIN_W_EXP_GATE || s->slot == QILIN_W_EXP_UP || s->slot == QILIN_W_EXP_DOWN)
            out->routed_experts += n;
    }
    out->activated = out->total;
    if (d->n_experts > 0 &&
        out->routed_experts > 0) /* exact: routed * (1 - k/E) is a whole number of experts */
        out->activated -= out->routed_experts / d->n_experts * (d->n_experts - d->top_k);
}

const char *qilin_model_param_definition(void) {
    return "every stored tensor of the main model counted once (input embedding and untied lm_head included, "
           "MTP layers excluded); activated = total - routed-expert parameters x (1 - top_k / experts), "
           "embedding "
           "included (Qwen and Mistral publish this; DeepSeek and Moonshot publish activated - embedding)";
}

/* ---- printing ------------------------------------------------------------- */

static const char *act_name(qilin_act a) {
    return a == QILIN_ACT_SILU ? "silu" : a == QILIN_ACT_GELU_ERF ? "gelu (erf)" : "gelu (tanh)";
}

static const char *scaling_name(qilin_rope_scaling s) {
    static const char *const names[] = {"none", "linear", "llama3", "yarn"};
    return (unsigned)s < 4 ? names[s] : "?";
}

static void print_count(FILE *f, const char *what, int64_t n) {
    double v = (double)n;
    fprintf(f, "  %-22s %lld (%.2f%s)\n", what, (long long)n,
            v >= 1e9   ? v / 1e9
            : v >= 1e6 ? v / 1e6
                       : v / 1e3,
            v >= 1e9   ? "B"
            : v >= 1e6 ? "M"
                       : "K");
}

void qilin_model_desc_print(const qilin_model_desc *d, void *file) {
    FILE *f = file;
    const qilin_rope_config *r = &d->rope;
    fprintf(f, "model: %s (model_type %s) from %s%s\n", qilin_arch_hf_name(d->arch),
            d->model_type[0] ? d->model_type : "-", d->source, d->from_gguf ? " [GGUF]" : "");
    fprintf(f, "sizes:\n");
    fprintf(f, "  %-22s %d\n  %-22s %d\n", "vocab", d->vocab, "hidden", d->hidden);
    fprintf(f, "  %-22s %d (%d dense, %d MoE)\n", "layers", d->n_layers, d->n_layers - d->n_moe_layers,
            d->n_moe_layers);
    if (d->ffn_dim) fprintf(f, "  %-22s %d\n", "ffn_dim", d->ffn_dim);
    fprintf(f, "  %-22s %lld\n", "max_position", (long long)d->max_position);
    fprintf(f, "  %-22s %s, eps %g, %s block, act %s\n", "norm",
            d->norm == QILIN_NORM_RMS ? "RMSNorm" : "LayerNorm", (double)d->norm_eps,
            d->block == QILIN_BLOCK_SEQUENTIAL ? "sequential"
            : d->block == QILIN_BLOCK_PARALLEL ? "parallel"
                                               : "parallel shared-norm",
            act_name(d->act));
    fprintf(f, "  %-22s %s\n", "tied_embeddings", d->tied_embeddings ? "yes" : "no");
    fprintf(f, "attention:\n");
    if (d->attn == QILIN_ATTN_MLA) {
        fprintf(f, "  %-22s MLA, %d heads\n", "kind", d->n_heads);
        fprintf(f, "  %-22s q_lora %d, kv_lora %d, qk_nope %d, qk_rope %d, v_head %d\n", "ranks",
                d->q_lora_rank, d->kv_lora_rank, d->qk_nope_dim, d->qk_rope_dim, d->v_head_dim);
        fprintf(f, "  %-22s %g\n", "mla_norm_eps", (double)d->mla_norm_eps);
    } else {
        fprintf(f, "  %-22s %s, %d heads, %d kv heads, head_dim %d\n", "kind",
                d->n_kv_heads == d->n_heads ? "MHA" : "GQA", d->n_heads, d->n_kv_heads, d->head_dim);
        fprintf(f, "  %-22s qkv %s, o %s, qk_norm %s\n", "biases", d->qkv_bias ? "yes" : "no",
                d->o_bias ? "yes" : "no", d->qk_norm ? "yes" : "no");
    }
    fprintf(f, "  %-22s %.7g\n", "softmax_scale", (double)d->attn_scale);
    if (d->sliding_window) fprintf(f, "  %-22s %d\n", "sliding_window", d->sliding_window);
    fprintf(f, "rope:\n");
    fprintf(f, "  %-22s %s, rot_dim %d, theta %g\n", "pairing",
            r->pairing == QILIN_ROPE_HALF_SPLIT ? "half-split" : "interleaved", r->rot_dim, r->theta);
    fprintf(f, "  %-22s %s", "scaling", scaling_name(r->scaling));
    if (r->scaling != QILIN_ROPE_SCALING_NONE) fprintf(f, ", factor %g", r->factor);
    if (r->scaling == QILIN_ROPE_SCALING_LLAMA3)
        fprintf(f, ", low %g, high %g, original %g", r->low_freq_factor, r->high_freq_factor,
                r->original_max_position);
    if (r->scaling == QILIN_ROPE_SCALING_YARN)
        fprintf(f, ", original %g, beta %g/%g, mscale %g/%g", r->original_max_position, r->beta_fast,
                r->beta_slow, r->mscale, r->mscale_all_dim);
    fprintf(f, "\n");
    if (d->n_moe_layers > 0) {
        fprintf(f, "moe:\n");
        fprintf(f, "  %-22s %d, top_k %d, expert ffn %d\n", "experts", d->n_experts, d->top_k,
                d->moe_ffn_dim);
        if (d->shared_ffn_dim)
            fprintf(f, "  %-22s %d (merged width %d)%s\n", "shared_experts", d->n_shared_experts,
                    d->shared_ffn_dim, d->shared_expert_gate ? ", sigmoid gate" : "");
        fprintf(f, "  %-22s %s%s, groups %d keep %d (%s), renormalize %s, scale %g\n", "routing",
                d->moe_score == QILIN_MOE_SOFTMAX ? "softmax" : "sigmoid", d->router_bias ? " + bias" : "",
                d->n_group, d->topk_group, d->moe_group_score == QILIN_MOE_GROUP_MAX ? "max" : "top2-sum",
                d->norm_topk_prob ? "yes" : "no", (double)d->routed_scale);
    }
    fprintf(f, "tokens:\n  %-22s %lld\n  %-22s", "bos", (long long)d->bos_id, "eos");
    for (int i = 0; i < d->n_eos; i++) fprintf(f, " %lld", (long long)d->eos_ids[i]);
    fprintf(f, "%s\n", d->n_eos ? "" : " -");
    if (d->quant_method[0]) {
        fprintf(f, "quantization:\n  %-22s %s", "method", d->quant_method);
        if (d->weight_block[0]) fprintf(f, ", block %dx%d", d->weight_block[0], d->weight_block[1]);
        if (d->weight_group) fprintf(f, ", group %d", d->weight_group);
        fprintf(f, "\n");
    }
    qilin_param_counts pc;
    qilin_model_param_counts(d, &pc);
    fprintf(f, "parameters: (%d tensors)\n", d->n_tensors);
    print_count(f, "total", pc.total);
    print_count(f, "activated", pc.activated);
    if (pc.routed_experts) print_count(f, "activated - embedding", pc.activated - pc.embedding);
    print_count(f, "embedding", pc.embedding);
    print_count(f, "lm_head", pc.lm_head);
    if (pc.routed_experts) print_count(f, "routed_experts", pc.routed_experts);
    fprintf(f, "  definition: %s\n", qilin_model_param_definition());
}
