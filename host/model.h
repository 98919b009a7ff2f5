/* model.h — architecture descriptors: everything the forward pass, the
 * sharding plan and the loader need to know about a model, read from a
 * Hugging Face config.json or a GGUF file's metadata (models.md).
 *
 * A descriptor holds the hyper-parameters (resolved: defaults applied, derived
 * values such as head_dim and the softmax scale computed once) and the list of
 * tensors the checkpoint must contain — name, qilin weight slot, layer,
 * expert, logical shape. The list is computed from the hyper-parameters alone;
 * binding it to a checkpoint (qilin_model_bind) checks that every required
 * tensor is present with that shape and that nothing unexpected is left over.
 *
 * Shapes are logical and row-major in Hugging Face order: a linear layer is
 * [out, in]; GGUF's ne[] is the reverse. Stacked GGUF experts are 3-D
 * [experts, out, in] with expert = -1. */
#ifndef QILIN_HOST_MODEL_H
#define QILIN_HOST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/activation.h"
#include "cuda/moe.h"
#include "cuda/rope.h"
#include "cuda/status.h"
#include "host/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/*      enum                     HF architectures[0]          GGUF general.architecture */
#define QILIN_ARCH_TABLE(X)                                                          \
    X(QILIN_ARCH_LLAMA,          "LlamaForCausalLM",          "llama")               \
    X(QILIN_ARCH_MISTRAL,        "MistralForCausalLM",        NULL)                  \
    X(QILIN_ARCH_QWEN2,          "Qwen2ForCausalLM",          "qwen2")               \
    X(QILIN_ARCH_QWEN3,          "Qwen3ForCausalLM",          "qwen3")               \
    X(QILIN_ARCH_MIXTRAL,        "MixtralForCausalLM",        NULL)                  \
    X(QILIN_ARCH_QWEN2_MOE,      "Qwen2MoeForCausalLM",       "qwen2moe")            \
    X(QILIN_ARCH_QWEN3_MOE,      "Qwen3MoeForCausalLM",       "qwen3moe")            \
    X(QILIN_ARCH_DEEPSEEK_V2,    "DeepseekV2ForCausalLM",     NULL)                  \
    X(QILIN_ARCH_DEEPSEEK_V3,    "DeepseekV3ForCausalLM",     "deepseek2")           \
    X(QILIN_ARCH_GPT_NEOX,       "GPTNeoXForCausalLM",        "gptneox")             \
    X(QILIN_ARCH_GPTJ,           "GPTJForCausalLM",           "gptj")

typedef enum qilin_arch {
#define QILIN_ARCH_ENUM_(e, hf, gguf) e,
    QILIN_ARCH_TABLE(QILIN_ARCH_ENUM_)
#undef QILIN_ARCH_ENUM_
    QILIN_ARCH_COUNT
} qilin_arch;

const char *qilin_arch_hf_name(qilin_arch a);
/* "LlamaForCausalLM, MistralForCausalLM, ..." — for "unsupported" messages. */
const char *qilin_arch_supported_list(void);

typedef enum qilin_norm_kind { QILIN_NORM_RMS = 0, QILIN_NORM_LAYER } qilin_norm_kind;

typedef enum qilin_block_kind {
    QILIN_BLOCK_SEQUENTIAL = 0,   /* h = x + attn(n1(x)); out = h + ffn(n2(h)) */
    QILIN_BLOCK_PARALLEL,         /* GPT-NeoX: out = x + attn(n1(x)) + ffn(n2(x)) */
    QILIN_BLOCK_PARALLEL_SHARED,  /* GPT-J: n = n1(x); out = x + attn(n) + ffn(n) */
} qilin_block_kind;

typedef enum qilin_attn_kind { QILIN_ATTN_GQA = 0, QILIN_ATTN_MLA } qilin_attn_kind;

typedef enum qilin_ffn_kind {
    QILIN_FFN_GATED = 0,          /* down(act(gate x) * up x) */
    QILIN_FFN_PLAIN,              /* down(act(up x + b) ) + b: GPT-NeoX / GPT-J (up = fc_in) */
    QILIN_FFN_MOE,                /* routed experts (+ shared) */
} qilin_ffn_kind;

/* Where a tensor goes. Per-layer slots come after QILIN_W_LAYER_FIRST. */
#define QILIN_SLOT_TABLE(X)                                                        \
    X(QILIN_W_EMBED,            "embed")                                           \
    X(QILIN_W_FINAL_NORM,       "final_norm")                                      \
    X(QILIN_W_FINAL_NORM_BIAS,  "final_norm_bias")                                 \
    X(QILIN_W_LM_HEAD,          "lm_head")         /* absent when tied */          \
    X(QILIN_W_LM_HEAD_BIAS,     "lm_head_bias")    /* GPT-J */                     \
    X(QILIN_W_ROPE_FREQS,       "rope_freqs")      /* GGUF llama3: [rot/2] divisors, optional */ \
    X(QILIN_W_ATTN_NORM,        "attn_norm")                                       \
    X(QILIN_W_ATTN_NORM_BIAS,   "attn_norm_bias")                                  \
    X(QILIN_W_FFN_NORM,         "ffn_norm")        /* post_attention_layernorm */  \
    X(QILIN_W_FFN_NORM_BIAS,    "ffn_norm_bias")                                   \
    X(QILIN_W_Q,                "q")                                               \
    X(QILIN_W_Q_BIAS,           "q_bias")                                          \
    X(QILIN_W_K,                "k")                                               \
    X(QILIN_W_K_BIAS,           "k_bias")                                          \
    X(QILIN_W_V,                "v")                                               \
    X(QILIN_W_V_BIAS,           "v_bias")                                          \
    X(QILIN_W_QKV,              "qkv")             /* GPT-NeoX fused, per-head [q k v] */ \
    X(QILIN_W_QKV_BIAS,         "qkv_bias")                                        \
    X(QILIN_W_O,                "o")                                               \
    X(QILIN_W_O_BIAS,           "o_bias")                                          \
    X(QILIN_W_Q_NORM,           "q_norm")          /* Qwen3 per-head RMSNorm */    \
    X(QILIN_W_K_NORM,           "k_norm")                                          \
    X(QILIN_W_Q_A,              "q_a")             /* MLA */                       \
    X(QILIN_W_Q_A_NORM,         "q_a_norm")                                        \
    X(QILIN_W_Q_B,              "q_b")                                             \
    X(QILIN_W_KV_A,             "kv_a")            /* [r + dr, H] */               \
    X(QILIN_W_KV_A_NORM,        "kv_a_norm")                                       \
    X(QILIN_W_KV_B,             "kv_b")            /* [nh (dn + dv), r] */         \
    X(QILIN_W_K_B,              "k_b")             /* GGUF split kv_b */           \
    X(QILIN_W_V_B,              "v_b")                                             \
    X(QILIN_W_GATE,             "gate")            /* dense MLP */                 \
    X(QILIN_W_UP,               "up")                                              \
    X(QILIN_W_UP_BIAS,          "up_bias")                                         \
    X(QILIN_W_DOWN,             "down")                                            \
    X(QILIN_W_DOWN_BIAS,        "down_bias")                                       \
    X(QILIN_W_ROUTER,           "router")          /* [E, H] */                    \
    X(QILIN_W_ROUTER_BIAS,      "router_bias")     /* e_score_correction_bias [E] */ \
    X(QILIN_W_EXP_GATE,         "exp_gate")        /* per expert [F, H] (GGUF: [E, F, H]) */ \
    X(QILIN_W_EXP_UP,           "exp_up")                                          \
    X(QILIN_W_EXP_DOWN,         "exp_down")                                        \
    X(QILIN_W_SHARED_GATE,      "shared_gate")     /* shared experts, merged */    \
    X(QILIN_W_SHARED_UP,        "shared_up")                                       \
    X(QILIN_W_SHARED_DOWN,      "shared_down")                                     \
    X(QILIN_W_SHARED_EXPERT_GATE, "shared_expert_gate") /* Qwen2-MoE [1, H] */

typedef enum qilin_slot {
#define QILIN_SLOT_ENUM_(e, text) e,
    QILIN_SLOT_TABLE(QILIN_SLOT_ENUM_)
#undef QILIN_SLOT_ENUM_
    QILIN_SLOT_COUNT
} qilin_slot;
#define QILIN_W_LAYER_FIRST QILIN_W_ATTN_NORM

const char *qilin_slot_name(qilin_slot s);

typedef struct qilin_tensor_spec {
    char name[96];                /* checkpoint name */
    qilin_slot slot;
    int layer;                    /* -1 for global tensors */
    int expert;                   /* -1 unless one routed expert's tensor */
    int n_dims;                   /* 1, 2 or 3 */
    int64_t shape[3];             /* logical, row-major, HF order */
    bool optional;                /* may be absent (GGUF rope_freqs) */
} qilin_tensor_spec;

/* Bounds on what a config or GGUF may describe, checked before anything is
 * sized by it (a few bytes of config must not cost gigabytes):
 *   QILIN_MAX_DIM      any width, head count, rank or vocabulary size (the
 *                      largest released models use ~2^17 vocab, 2^14 hidden);
 *   QILIN_MAX_EXPERTS  routed experts, the MoE routing kernel's bound (cuda/moe.h);
 *   QILIN_MAX_TENSORS  entries in the tensor list (Kimi K2 has ~70k);
 *   QILIN_MAX_TENSOR_ELEMS, QILIN_MAX_PARAMS: one tensor (2^40) and the model
 *                      (2^44, ~17.6T parameters), which keeps every byte count
 *                      the plan and loader compute from overflowing int64. */
enum { QILIN_MAX_LAYERS = 256, QILIN_MAX_EOS = 8, QILIN_MAX_EXPERTS = 2048, QILIN_MAX_TENSORS = 1 << 20 };
#define QILIN_MAX_DIM (1 << 24)
#define QILIN_MAX_TENSOR_ELEMS ((int64_t)1 << 40)
#define QILIN_MAX_PARAMS ((int64_t)1 << 44)

typedef struct qilin_model_desc {
    qilin_arch arch;
    char source[512];             /* config.json or .gguf path, for messages */
    char model_type[48];          /* config's model_type ("kimi_k2", "deepseek_v3", ...) */
    bool from_gguf;

    /* sizes */
    int vocab, hidden, n_layers;
    int n_heads, n_kv_heads, head_dim, head_dim_v; /* MLA: head_dim = dn + dr, head_dim_v = dv */
    int ffn_dim;                  /* dense MLP intermediate */
    int64_t max_position;         /* max_position_embeddings / context_length */

    /* block structure */
    qilin_block_kind block;
    qilin_norm_kind norm;
    float norm_eps;
    qilin_act act;
    bool qkv_bias, o_bias, mlp_bias, qk_norm;
    bool tied_embeddings, lm_head_bias;
    int sliding_window;           /* 0 = none */

    /* attention */
    qilin_attn_kind attn;
    float attn_scale;             /* softmax scale, mscale² included for DeepSeek YaRN */
    qilin_rope_config rope;
    int q_lora_rank;              /* MLA; 0 = plain q_proj */
    int kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;
    float mla_norm_eps;           /* q_a / kv_a layernorm eps (1e-6, models.md §7.1) */

    /* MoE */
    qilin_ffn_kind layer_ffn[QILIN_MAX_LAYERS]; /* per layer: GATED/PLAIN or MOE */
    int n_moe_layers;
    int n_experts, top_k, moe_ffn_dim;
    int n_shared_experts, shared_ffn_dim; /* merged shared MLP width; 0 = none */
    bool shared_expert_gate;      /* Qwen2-MoE sigmoid gate */
    qilin_moe_score moe_score;
    qilin_moe_group_score moe_group_score;
    int n_group, topk_group;
    bool norm_topk_prob, router_bias;
    float routed_scale;

    /* tokens */
    int64_t bos_id;               /* -1 = none */
    int64_t eos_ids[QILIN_MAX_EOS]; /* config's eos_token_id (+ generation_config.json's) */
    int n_eos;
    hf_generation_config gen;     /* generation_config.json (sampling defaults) when has_gen */
    bool has_gen;

    /* checkpoint format hints */
    int n_mtp_layers;             /* num_nextn_predict_layers: layers n_layers.. are ignored */
    char quant_method[32];        /* quantization_config.quant_method ("fp8", ...); "" = none */
    int weight_block[2];          /* FP8 block-scale block [rows, cols]; 0 = not FP8 */
    int weight_group;             /* INT4 compressed-tensors group size; 0 = none */

    /* the checkpoint's tensors, computed from the above */
    qilin_tensor_spec *tensors;
    int n_tensors;
    int *spec_index;              /* private: qilin_model_find_spec's lookup table */
    int64_t n_params_listed;      /* private: elements of the specs so far (QILIN_MAX_PARAMS) */
} qilin_model_desc;

/* Builds a descriptor from a model directory (config.json), a config.json
 * path, or a .gguf file. An unsupported architecture is QILIN_ERR_UNSUPPORTED
 * naming it and listing the supported ones; a missing or inconsistent
 * hyper-parameter is QILIN_ERR_FORMAT naming the file and key. */
qilin_status qilin_model_desc_load(const char *path, qilin_model_desc **out);
void qilin_model_desc_free(qilin_model_desc *d); /* NULL does nothing */
/* Keeps layers 0 .. n - 1 (their specs, the global ones) and drops the rest:
 * `--layers N`. n outside 1 .. n_layers is QILIN_ERR_INVALID_ARGUMENT. */
qilin_status qilin_model_desc_keep_layers(qilin_model_desc *d, int n);

/* Parameter counts from the tensor list. total: every tensor; activated: per
 * token, i.e. routed experts counted top_k / n_experts. Embedding rows count
 * in both; qilin_model_param_definition says so in words. */
typedef struct qilin_param_counts {
    int64_t total, activated;
    int64_t embedding, lm_head;   /* included above; lm_head 0 when tied */
    int64_t routed_experts;       /* all routed-expert parameters */
} qilin_param_counts;
void qilin_model_param_counts(const qilin_model_desc *d, qilin_param_counts *out);
const char *qilin_model_param_definition(void);

/* Index of the spec for (slot, layer, expert), or -1. */
int qilin_model_find_spec(const qilin_model_desc *d, qilin_slot slot, int layer, int expert);

/* Prints architecture, hyper-parameters and parameter counts (qilin inspect). */
void qilin_model_desc_print(const qilin_model_desc *d, void *file /* FILE * */);

/* ---- descriptor construction, shared by host/model.c and host/model_gguf.c
 * (not for other callers) ---- */

/* Per-load scratch: the names of the hyper-parameter keys in the source (for
 * messages) and what the GGUF reader learnt from the tensor table. */
typedef struct qilin_model_keys {
    const char *vocab, *hidden, *layers, *heads, *kv_heads, *head_dim, *ffn;
    const char *experts, *top_k, *n_group, *topk_group, *rot_dim, *act;
    char store[16][96];           /* storage for GGUF key names ("llama.embedding_length") */
    bool gguf_split_kv_b;         /* deepseek2: attn_k_b + attn_v_b instead of attn_kv_b */
    bool gguf_rope_freqs;         /* llama: a rope_freqs tensor is present */
} qilin_model_keys;
/* Fills the hyper-parameters of `d` from a GGUF file (host/model_gguf.c). */
qilin_status qilin_model_read_gguf(const char *path, qilin_model_desc *d, qilin_model_keys *keys);
/* Finds the single *.gguf file in `dir` (host/model_gguf.c). */
bool qilin_model_find_gguf(const char *dir, char *out, size_t cap);
/* Appends the GGUF tensor list (host/model_gguf.c). */
qilin_status qilin_model_gguf_tensors(qilin_model_desc *d, const qilin_model_keys *keys);
/* Appends one spec; the name is printf-formatted. */
#if defined(__GNUC__)
__attribute__((format(printf, 7, 8)))
#endif
qilin_status qilin_model_add_tensor(qilin_model_desc *d, qilin_slot slot, int layer, int expert, int n_dims,
                                    const int64_t shape[3], const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_MODEL_H */
