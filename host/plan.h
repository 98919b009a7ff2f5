/* plan.h — the sharding plan (which slice of which tensor goes to which GPU)
 * and the memory plan (weights, KV cache, workspace per GPU; how many KV
 * tokens fit), computed from an architecture descriptor (model.h) alone, so
 * `qilin plan` answers "will it fit" before any weight byte is read.
 *
 * Sharding (tensor parallelism over tp GPUs, Megatron naming; a linear
 * weight is [out, in]):
 *   replicated  every GPU holds the whole tensor: norms, q_norm/k_norm (Qwen3),
 *               MLA q_a/kv_a and their norms (small), the MoE router and its
 *               bias, Qwen2-MoE's shared_expert_gate, and the biases of
 *               row-parallel layers (o_bias, down_bias: added once, after the
 *               all-reduce).
 *   column      rows (output features, dim 0) split: q/k/v by head, NeoX's fused
 *               qkv by head (its rows are per-head [q k v] blocks), MLA q_b /
 *               plain q by head (dn + dr rows each) and kv_b by head (dn + dv
 *               rows each), dense gate/up, shared-expert gate/up; their biases
 *               follow. GQA with n_kv_heads < tp: every GPU gets the one KV head
 *               its query heads use (GPU g: head g·n_kv/tp), which needs
 *               tp % n_kv_heads == 0.
 *   row         columns (input features, last dim) split: o by head, dense and
 *               shared down.
 *   vocab       embedding and lm_head rows split. When vocab % tp != 0 every GPU
 *               gets ceil(vocab/tp) rows, the last one fewer, and its buffer is
 *               zero-padded to ceil(vocab/tp) rows (the padded logits are
 *               masked); the byte counts include the padding.
 *   expert      routed experts. mode "tp": every expert split like a dense MLP
 *               (gate/up column, down row, by moe_ffn_dim). mode "ep": whole
 *               experts, GPU g owns experts [g·E/tp, (g+1)·E/tp), i.e. expert e
 *               lives on GPU e / (E/tp); needs E % tp == 0. Shared experts are
 *               split "tp"-style in both modes.
 * GGUF's stacked experts ([E, F, H], expert = -1) split dim 1 (gate/up) or
 * dim 2 (down) in "tp" mode and dim 0 in "ep" mode.
 *
 * Storage formats (qilin_weight_format): projection weights (attention, dense
 * MLP, experts) may be quantised, everything else (embeddings, lm_head, norms,
 * router, biases) is stored dense. Bytes of a [out, in] weight:
 *   bf16/fp16 2·out·in; fp32 4·out·in;
 *   fp8  out·in + 4·ceil(out/128)·ceil(in/128) (fp32 block scales, models.md §10.1);
 *   int4 out·in/2 + 2·out·ceil(in/32) (packed nibbles + bf16 group scales, §10.2).
 * A slice holds the scale blocks its range touches (a split inside a block
 * keeps the whole block on both sides). The router bias
 * (e_score_correction_bias) is fp32 in every release and counted so.
 *
 * Memory (per GPU, documented with qilin_memory_options below):
 *   budget    = util · gpu_mem
 *   kv_tokens = (budget − weights − workspace − reserve) / kv_bytes_per_token
 *
 * Thread safety: all functions are pure; a plan is immutable once created. */
#ifndef QILIN_HOST_PLAN_H
#define QILIN_HOST_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"
#include "host/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- storage formats ---------------------------------------------------- */

/* clang-format off */
/*      enum                   name    */
#define QILIN_WFMT_TABLE(X)               \
    X(QILIN_WFMT_BF16,         "bf16")    \
    X(QILIN_WFMT_FP16,         "fp16")    \
    X(QILIN_WFMT_FP32,         "fp32")    \
    X(QILIN_WFMT_FP8_BLOCK,    "fp8")     /* e4m3 + fp32 block scales */ \
    X(QILIN_WFMT_INT4_GROUP,   "int4")    /* packed nibbles + bf16 group scales */
/* clang-format on */

typedef enum qilin_wfmt {
#define QILIN_WFMT_ENUM_(e, name) e,
    QILIN_WFMT_TABLE(QILIN_WFMT_ENUM_)
#undef QILIN_WFMT_ENUM_
        QILIN_WFMT_COUNT
} qilin_wfmt;

const char *qilin_wfmt_name(qilin_wfmt f); /* "?" outside the table */

typedef struct qilin_weight_format {
    qilin_wfmt linear;          /* projection weights (attention, MLPs, experts) */
    qilin_wfmt dense;           /* everything else: bf16, fp16 or fp32 */
    bool experts_only;          /* `linear` applies to routed experts only, other
                                   projections use `dense` (compressed-tensors INT4,
                                   Kimi-K2-Thinking) */
    int block_rows, block_cols; /* fp8 scale block (128 × 128) */
    int group;                  /* int4 group along the input dim (32) */
    char origin[96];            /* where it came from, for printing */
} qilin_weight_format;

/* "bf16", "fp16", "fp32", "fp8" (128×128 blocks, dense bf16) or "int4" (group
 * 32, dense bf16); anything else is QILIN_ERR_INVALID_ARGUMENT listing these. */
qilin_status qilin_weight_format_parse(const char *name, qilin_weight_format *out);

/* The format a checkpoint declares in its config.json (`path`: the file or its
 * directory): torch_dtype gives the dense format; quantization_config with
 * quant_method "fp8" gives fp8 blocks of weight_block_size, "compressed-tensors"
 * with 4-bit weights gives int4 for routed experts only (the Kimi-K2-Thinking
 * layout), "gptq"/"awq" with bits 4 give int4 of group_size for all
 * projections. A .gguf path gives its tensor types: F32 -> fp32, F16 -> fp16,
 * BF16 and quantised blocks (dequantised when loaded) -> bf16; projections take
 * the type most 2-D tensors have, the rest token_embd's. *known is false (and
 * *out bf16) when the config says nothing or the GGUF has no tensors; an
 * unreadable file or an unknown quant_method is an error. */
qilin_status qilin_weight_format_from_config(const char *path, qilin_weight_format *out, bool *known);

/* The format `spec` is stored in under `wf`. */
qilin_wfmt qilin_weight_format_of(const qilin_weight_format *wf, const qilin_tensor_spec *spec);

/* The projections the forward pass multiplies straight from FP8 block-scaled
 * weights (forward_load.c keeps them e4m3 on the device): attention q/k/v/o,
 * MLA q / q_a / q_b, dense and shared-expert gate/up/down. Routed experts
 * and MLA's kv_a / kv_b are still dequantised to the activation dtype at
 * load (no FP8 grouped GEMM yet). */
bool qilin_slot_stays_fp8(qilin_slot s);

/* The format the forward pass uploads each of desc's tensors in, at
 * activation dtype `dtype` (f32, bf16 or f16): FP8 for 2-D tensors of a
 * quant_method "fp8" model in a qilin_slot_stays_fp8 slot, fp32 for the
 * router bias, `dtype` for the rest. out: desc->n_tensors entries, for
 * qilin_plan_options.tensor_formats (with format's block 128 x 128). */
void qilin_upload_formats(const qilin_model_desc *d, qilin_dtype dtype, qilin_wfmt *out);

/* Whether the forward keeps the routed experts of desc's FP8 (quant_method
 * "fp8") or INT4 (compressed-tensors, group a multiple of 8) checkpoint in
 * that format on the device (qilin_moe_experts' quantized weights), when
 * each GPU holds expert_ffn intermediate rows of every expert it holds
 * (moe_ffn_dim / tp, or all of it under expert parallelism): activations
 * bf16 or f16 (fp32 mode dequantizes them to fp32 at load, as before), and
 * hidden and expert_ffn multiples of 8 (the tensor-core kernel's k chunks). */
bool qilin_experts_stay_quantized(const qilin_model_desc *d, qilin_dtype dtype, int expert_ffn);

/* qilin_upload_formats with the per-GPU expert width: the routed experts'
 * per-expert tensors (not GGUF's stacked ones) in FP8_BLOCK or INT4_GROUP
 * when qilin_experts_stay_quantized; qilin_upload_formats is this at
 * expert_ffn = moe_ffn_dim. */
void qilin_upload_formats_fe(const qilin_model_desc *d, qilin_dtype dtype, int expert_ffn, qilin_wfmt *out);

/* Device bytes of a tensor of `shape` in format `f` restricted to [
 * start + count) along `dim` (dim = -1: the whole tensor), scales included.
 * Quantised formats apply to the last two dims ([out, in]); 1-D tensors are
 * never quantised (dense format bytes are returned for them). */
uint64_t qilin_weight_bytes(const qilin_weight_format *wf, qilin_wfmt f, int n_dims, const int64_t shape[3],
                            int dim, int64_t start, int64_t count);

/* ---- sharding plan ------------------------------------------------------ */

/* clang-format off */
/*      enum                   name */
#define QILIN_SPLIT_TABLE(X)                 \
    X(QILIN_SPLIT_REPLICATED,  "replicated") \
    X(QILIN_SPLIT_COLUMN,      "column")     \
    X(QILIN_SPLIT_ROW,         "row")        \
    X(QILIN_SPLIT_VOCAB,       "vocab")      \
    X(QILIN_SPLIT_EXPERT,      "expert")
/* clang-format on */

typedef enum qilin_split {
#define QILIN_SPLIT_ENUM_(e, name) e,
    QILIN_SPLIT_TABLE(QILIN_SPLIT_ENUM_)
#undef QILIN_SPLIT_ENUM_
        QILIN_SPLIT_COUNT
} qilin_split;

const char *qilin_split_name(qilin_split s);

/* What the weights are, for the per-GPU table. The router belongs to the
 * routed experts; q_norm/k_norm and MLA's q_a/kv_a norms to the norms. */
/* clang-format off */
#define QILIN_WCAT_TABLE(X)                    \
    X(QILIN_WCAT_EMBED,      "embeddings")     \
    X(QILIN_WCAT_ATTENTION,  "attention")      \
    X(QILIN_WCAT_DENSE_MLP,  "dense MLP")      \
    X(QILIN_WCAT_ROUTED,     "routed experts") \
    X(QILIN_WCAT_SHARED,     "shared experts") \
    X(QILIN_WCAT_NORMS,      "norms")
/* clang-format on */

typedef enum qilin_wcat {
#define QILIN_WCAT_ENUM_(e, name) e,
    QILIN_WCAT_TABLE(QILIN_WCAT_ENUM_)
#undef QILIN_WCAT_ENUM_
        QILIN_WCAT_COUNT
} qilin_wcat;

const char *qilin_wcat_name(qilin_wcat c);
qilin_wcat qilin_wcat_of(qilin_slot slot);

typedef struct qilin_plan_options {
    int tp;  /* GPUs, >= 1 */
    bool ep; /* MoE mode "ep" (whole experts per GPU); false: "tp" */
    bool ep_all_to_all; /* with ep and tp > 1: tokens reach their experts by all-to-all
                           (QILIN_EP_ALL_TO_ALL), which adds its exchange buffers */
    qilin_weight_format format;
    /* Optional, desc->n_tensors entries: the format each tensor really has
     * (from a bound checkpoint); overrides `format` per tensor. NULL: none. */
    const qilin_wfmt *tensor_formats;
} qilin_plan_options;

/* tp 1, mode "tp", bf16. */
void qilin_plan_options_default(qilin_plan_options *o);

/* One tensor's piece on one GPU. A tensor a GPU does not hold (another GPU's
 * expert in "ep" mode) has no slice there. */
typedef struct qilin_shard_slice {
    int spec; /* index into desc->tensors */
    qilin_split split;
    int dim;              /* split dim of the logical shape; -1 = the whole tensor */
    int64_t start, count; /* range along dim (0, 0 when dim = -1) */
    int64_t alloc_count;  /* >= count: extent allocated along dim (vocab padding) */
    qilin_wfmt format;
    uint64_t bytes; /* device bytes: format, scales and padding included */
} qilin_shard_slice;

typedef struct qilin_gpu_plan {
    qilin_shard_slice *slices;
    int n_slices;
    uint64_t weight_bytes;
    uint64_t category_bytes[QILIN_WCAT_COUNT];
    int q_head_first, n_q_heads;   /* attention heads this GPU computes */
    int kv_head_first, n_kv_heads; /* GQA KV heads it stores (0 for MLA: latent) */
    int expert_first, n_experts;   /* routed experts it holds (all in "tp" mode) */
    int64_t vocab_first, n_vocab;  /* embedding / lm_head rows (without padding) */
} qilin_gpu_plan;

typedef struct qilin_plan {
    const qilin_model_desc *desc; /* borrowed: must outlive the plan */
    qilin_plan_options opt;
    qilin_gpu_plan *gpus; /* opt.tp entries */
    int n_gpus;
    qilin_split *spec_split;     /* per spec: how it is split */
    uint64_t total_weight_bytes; /* the unsharded model in its storage format */
} qilin_plan;

/* Checks that `d` splits over o->tp GPUs (heads % tp, KV heads, vocab, experts
 * % tp in "ep" mode, every intermediate size % tp) and builds the plan. A
 * model that does not split is QILIN_ERR_INVALID_ARGUMENT naming the numbers
 * ("28 attention heads do not split over 8 GPUs") and the degrees that would
 * work. */
qilin_status qilin_plan_create(const qilin_model_desc *d, const qilin_plan_options *o, qilin_plan **out);
void qilin_plan_free(qilin_plan *p); /* NULL does nothing */

/* The slice of spec `spec` on `gpu`, or NULL when that GPU holds none. */
const qilin_shard_slice *qilin_plan_find_slice(const qilin_plan *p, int gpu, int spec);

/* ---- memory plan -------------------------------------------------------- */

typedef struct qilin_memory_options {
    uint64_t gpu_mem_bytes;   /* per GPU, required */
    double util;              /* fraction of gpu_mem qilin may use (0.9) */
    int64_t max_batch_tokens; /* tokens in one forward step, prefill chunks included (4096) */
    int max_batch_seqs;       /* sequences in one step = rows of logits (256) */
    int kv_elem_bytes;        /* KV cache element (2: bf16) */
    int act_elem_bytes;       /* activations (2: bf16) */
    uint64_t reserve_bytes;   /* CUDA context (~0.5 GiB on H100), cuBLAS workspaces,
                                 NCCL buffers, allocator slack: 1 GiB */
    int64_t min_kv_tokens;    /* fewer KV tokens than this is "does not fit";
                                 0 = max_batch_tokens (one full step) */
    int max_ctx;              /* positions per sequence the step buffers are sized
                                 for; 0 = the model's max_position, at most 4096
                                 (what qilin_model_load picks) */
} qilin_memory_options;

void qilin_memory_options_default(qilin_memory_options *m); /* gpu_mem_bytes 0 */

/* All byte counts are per GPU (the most loaded one). Workspace: what
 * qilin_plan_workspace gives for T = max_batch_tokens, S = max_batch_seqs,
 * ctx = max_ctx, a = act_elem_bytes on the most loaded GPU (GPU 0, which
 * holds the full logits); the forward pass allocates the same.
 * KV per token: GQA n_layers·nkv_l·(hd + hd_v)·kv_elem_bytes (nkv_l = n_kv/tp,
 * or 1 when n_kv < tp); MLA n_layers·(r + dr)·kv_elem_bytes, the latent
 * replicated on every GPU. Sliding windows are not taken into account (full
 * cache). */
typedef struct qilin_memory_plan {
    uint64_t gpu_mem, budget; /* budget = util · gpu_mem */
    uint64_t weights;         /* max over GPUs */
    uint64_t workspace, reserve;
    uint64_t kv_bytes_per_token_layer; /* one layer */
    uint64_t kv_bytes_per_token;       /* all layers */
    int64_t min_kv_tokens;
    int64_t kv_tokens; /* tokens that fit (0 when it does not fit) */
    uint64_t kv_bytes; /* kv_tokens · kv_bytes_per_token */
    bool fits;
    uint64_t shortfall; /* bytes per GPU missing when !fits */
} qilin_memory_plan;

/* Fills *out (always, also when it does not fit) and returns QILIN_OK, or
 * QILIN_ERR_OUT_OF_MEMORY with a message giving weights, workspace, reserve,
 * the minimum KV, the budget and the shortfall per GPU. */
qilin_status qilin_plan_memory(const qilin_plan *p, const qilin_memory_options *m, qilin_memory_plan *out);

/* The forward pass's per-step buffers on GPU `gpu` (forward_load.c
 * allocates exactly these), for T tokens per step, S sequences (KV slots)
 * of up to ctx positions and activations of act_elem_bytes:
 *   activations  R, X, N [T, H] and four scratch rows [T, width], width the
 *                widest intermediate row on this GPU (heads, MLP/expert
 *                columns, MLA latents)
 *   attention    the attention kernel's workspace; MLA: plus the
 *                up-projected K/V and per-head keys of one sequence [ctx, ..]
 *   routing      router logits [T, E] fp32, top-k ids and weights (and local
 *                ids with expert parallelism), expert counts [layers, E_l],
 *                the MoE kernel's workspace
 *   logits       GPU 0: full rows [T, vocab] fp32 and sampling; with tp > 1
 *                every GPU: its vocab columns [T, Vp] and the all-gathered
 *                [tp, T, Vp]
 *   indices      the step's index arrays and the rope frequencies */
typedef struct qilin_workspace_plan {
    int width;
    uint64_t attn_ws, mla_kvb, mla_k, moe_ws, sample_ws; /* single buffers the forward sizes from here */
    int ep_chunk; /* all-to-all dispatch: row slots per destination rank (0: not used) */
    uint64_t activations, attention, routing, logits, indices;
    uint64_t total;
} qilin_workspace_plan;

void qilin_plan_workspace(const qilin_plan *p, int gpu, int tokens, int seqs, int ctx, int act_elem_bytes,
                          qilin_workspace_plan *out);

/* KV-cache bytes per token and layer on one GPU of a tp-way plan. */
uint64_t qilin_kv_bytes_per_token_layer(const qilin_model_desc *d, int tp, int kv_elem_bytes);

/* Prints the per-GPU table (weights by category, KV bytes/token, workspace,
 * reserve, KV tokens); `m` may be NULL (sharding only). `file` is a FILE *. */
void qilin_plan_print(const qilin_plan *p, const qilin_memory_plan *m, void *file);
/* With QILIN_PRINT_PLANS=1 also one line per slice of GPU 0. */
void qilin_plan_print_slices(const qilin_plan *p, int gpu, void *file);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_PLAN_H */
