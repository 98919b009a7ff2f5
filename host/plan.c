/* plan.c — sharding plan and memory plan (see plan.h for the rules and the
 * formulas). Storage formats and their byte counts come first, then the
 * split rule of each tensor, the per-GPU slices, and the memory arithmetic;
 * printing is in the last part. */
#include "host/plan.h"

#include "host/gguf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "host/config.h"

#define GIB(x) ((double)(x) / (double)(1ull << 30))

static const char *const wfmt_names[] = {
#define QILIN_WFMT_NAME_(e, name) name,
    QILIN_WFMT_TABLE(QILIN_WFMT_NAME_)
#undef QILIN_WFMT_NAME_
};
static const char *const split_names[] = {
#define QILIN_SPLIT_NAME_(e, name) name,
    QILIN_SPLIT_TABLE(QILIN_SPLIT_NAME_)
#undef QILIN_SPLIT_NAME_
};
static const char *const wcat_names[] = {
#define QILIN_WCAT_NAME_(e, name) name,
    QILIN_WCAT_TABLE(QILIN_WCAT_NAME_)
#undef QILIN_WCAT_NAME_
};

const char *qilin_wfmt_name(qilin_wfmt f) { return (unsigned)f < QILIN_WFMT_COUNT ? wfmt_names[f] : "?"; }
const char *qilin_split_name(qilin_split s) { return (unsigned)s < QILIN_SPLIT_COUNT ? split_names[s] : "?"; }
const char *qilin_wcat_name(qilin_wcat c) { return (unsigned)c < QILIN_WCAT_COUNT ? wcat_names[c] : "?"; }

/* ---- storage formats ---------------------------------------------------- */

static void format_init(qilin_weight_format *wf, qilin_wfmt linear, qilin_wfmt dense, const char *origin) {
    memset(wf, 0, sizeof *wf);
    wf->linear = linear;
    wf->dense = dense;
    wf->block_rows = wf->block_cols = 128;
    wf->group = 32;
    snprintf(wf->origin, sizeof wf->origin, "%s", origin);
}

qilin_status qilin_weight_format_parse(const char *name, qilin_weight_format *out) {
    for (int f = 0; name && f < QILIN_WFMT_COUNT; f++) {
        if (strcmp(name, wfmt_names[f]) != 0) continue;
        bool quant = f == QILIN_WFMT_FP8_BLOCK || f == QILIN_WFMT_INT4_GROUP;
        format_init(out, (qilin_wfmt)f, quant ? QILIN_WFMT_BF16 : (qilin_wfmt)f, "--dtype");
        return QILIN_OK;
    }
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                       "weight format '%s' is not one of bf16, fp16, fp32, fp8 (e4m3, 128x128 block "
                       "scales), int4 (group 32)",
                       name ? name : "(null)");
}

static qilin_status dense_from_torch_dtype(const hf_config *c, qilin_wfmt *dense, bool *known) {
    const char *dt = NULL;
    /* transformers >= 4.56 writes "dtype", older versions "torch_dtype". */
    QILIN_TRY(hf_config_string_or(c, "torch_dtype", NULL, &dt));
    if (!dt) QILIN_TRY(hf_config_string_or(c, "dtype", NULL, &dt));
    *dense = QILIN_WFMT_BF16;
    if (!dt) return QILIN_OK;
    if (strcmp(dt, "bfloat16") == 0)
        *dense = QILIN_WFMT_BF16;
    else if (strcmp(dt, "float16") == 0)
        *dense = QILIN_WFMT_FP16;
    else if (strcmp(dt, "float32") == 0)
        *dense = QILIN_WFMT_FP32;
    else
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: torch_dtype '%s' is not bfloat16, float16 or float32",
                           hf_config_name(c), dt);
    *known = true;
    return QILIN_OK;
}

/* compressed-tensors: config_groups.<any>.weights.{num_bits, group_size}. */
static qilin_status compressed_tensors_group(const hf_config *c, int *bits, int *group) {
    json_t *q = json_object_get((json_t *)hf_config_json(c), "quantization_config");
    json_t *groups = json_object_get(q, "config_groups");
    const char *key;
    json_t *g;
    json_object_foreach(groups, key, g) {
        json_t *w = json_object_get(g, "weights");
        json_t *nb = json_object_get(w, "num_bits"), *gs = json_object_get(w, "group_size");
        if (json_is_integer(nb) && json_is_integer(gs)) { /* out of range: -1 / 0, refused by the caller */
            *bits = json_integer_value(nb) >= 0 && json_integer_value(nb) <= 64 ? (int)json_integer_value(nb)
                                                                                : -1;
            *group = json_integer_value(gs) > 0 && json_integer_value(gs) <= QILIN_MAX_DIM
                         ? (int)json_integer_value(gs)
                         : 0;
            return QILIN_OK;
        }
    }
    return qilin_error(QILIN_ERR_FORMAT,
                       "%s: quantization_config.config_groups has no weights.num_bits/group_size",
                       hf_config_name(c));
}

static qilin_status format_from_hf(const hf_config *c, qilin_weight_format *out, bool *known) {
    qilin_wfmt dense;
    QILIN_TRY(dense_from_torch_dtype(c, &dense, known));
    format_init(out, dense, dense, *known ? "config.json torch_dtype" : "default");
    if (!hf_config_has(c, "quantization_config")) return QILIN_OK;
    const char *method = NULL;
    QILIN_TRY(hf_config_string(c, "quantization_config.quant_method", &method));
    *known = true;
    if (strcmp(method, "fp8") == 0) {
        int64_t blk[2] = {128, 128};
        size_t n = 0;
        QILIN_TRY(hf_config_int_list(c, "quantization_config.weight_block_size", blk, 2, &n));
        if (n != 0 &&
            (n != 2 || blk[0] <= 0 || blk[1] <= 0 || blk[0] > QILIN_MAX_DIM || blk[1] > QILIN_MAX_DIM))
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: quantization_config.weight_block_size is not [rows, cols]",
                               hf_config_name(c));
        if (n == 0) blk[0] = blk[1] = 128;
        out->linear = QILIN_WFMT_FP8_BLOCK;
        out->block_rows = (int)blk[0];
        out->block_cols = (int)blk[1];
        snprintf(out->origin, sizeof out->origin, "config.json quantization_config fp8 %dx%d blocks",
                 out->block_rows, out->block_cols);
        return QILIN_OK;
    }
    int bits = 0, group = 0;
    if (strcmp(method, "compressed-tensors") == 0) {
        QILIN_TRY(compressed_tensors_group(c, &bits, &group));
        out->experts_only = true;
    } else if (strcmp(method, "gptq") == 0 || strcmp(method, "awq") == 0) {
        int64_t b, g;
        QILIN_TRY(hf_config_int(c, "quantization_config.bits", &b));
        QILIN_TRY(hf_config_int(c, "quantization_config.group_size", &g));
        bits = b >= 0 && b <= 64 ? (int)b : -1; /* range-checked before the cast; refused below unless 4 */
        group = g > 0 && g <= QILIN_MAX_DIM ? (int)g : 0;
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: quantization_config.quant_method '%s' is not fp8, compressed-tensors, "
                           "gptq or awq",
                           hf_config_name(c), method);
    }
    if (bits != 4 || group <= 0)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: %s with %d-bit weights, group %d: only 4-bit groups are supported",
                           hf_config_name(c), method, bits, group);
    out->linear = QILIN_WFMT_INT4_GROUP;
    out->group = group;
    snprintf(out->origin, sizeof out->origin, "config.json quantization_config %s int4 group %d%s", method,
             group, out->experts_only ? ", routed experts" : "");
    return QILIN_OK;
}

/* A float GGUF type as a storage format; quantised blocks are dequantised to bf16 when loaded. */
static qilin_wfmt gguf_wfmt(gguf_dtype t) {
    return t == GGUF_DT_F32 ? QILIN_WFMT_FP32 : t == GGUF_DT_F16 ? QILIN_WFMT_FP16 : QILIN_WFMT_BF16;
}

/* A GGUF says how its weights are stored in its tensor table: the projections
 * take the type most 2-D tensors have, the rest the embedding's. */
static qilin_status format_from_gguf(const char *path, qilin_weight_format *out, bool *known) {
    gguf_file *g = NULL;
    QILIN_TRY(gguf_open(path, &g));
    int64_t count[64] = {0}; /* by type id; GGUF types are below 64 */
    gguf_dtype common = GGUF_DT_BF16, embed = GGUF_DT_BF16;
    bool have_embed = false;
    for (int64_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->n_dims == 2 && (unsigned)t->type < 64 && ++count[t->type] > count[common]) common = t->type;
        if (!strcmp(t->name, "token_embd.weight")) embed = t->type, have_embed = true;
    }
    if (gguf_tensor_count(g) > 0) {
        *known = true;
        qilin_wfmt linear = gguf_wfmt(common), dense = gguf_wfmt(have_embed ? embed : common);
        if (dense == QILIN_WFMT_BF16 && linear != QILIN_WFMT_BF16) dense = linear; /* quantised embedding */
        char origin[96];
        snprintf(origin, sizeof origin, "GGUF tensors %s%s", gguf_dtype_name(common),
                 common != GGUF_DT_F32 && common != GGUF_DT_F16 && common != GGUF_DT_BF16
                     ? " (dequantised to bf16)"
                     : "");
        format_init(out, linear, dense, origin);
    }
    gguf_close(g);
    return QILIN_OK;
}

qilin_status qilin_weight_format_from_config(const char *path, qilin_weight_format *out, bool *known) {
    *known = false;
    format_init(out, QILIN_WFMT_BF16, QILIN_WFMT_BF16, "default");
    size_t n = path ? strlen(path) : 0;
    if (n == 0) return QILIN_OK;
    if (n > 5 && strcmp(path + n - 5, ".gguf") == 0) return format_from_gguf(path, out, known);
    char file[1024];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    hf_config *c = NULL;
    QILIN_TRY(hf_config_open(file, &c));
    qilin_status s = format_from_hf(c, out, known);
    hf_config_close(c);
    return s;
}

static bool slot_is_projection(qilin_slot s) {
    switch (s) {
    case QILIN_W_Q:
    case QILIN_W_K:
    case QILIN_W_V:
    case QILIN_W_QKV:
    case QILIN_W_O:
    case QILIN_W_Q_A:
    case QILIN_W_Q_B:
    case QILIN_W_KV_A:
    case QILIN_W_KV_B:
    case QILIN_W_K_B:
    case QILIN_W_V_B:
    case QILIN_W_GATE:
    case QILIN_W_UP:
    case QILIN_W_DOWN:
    case QILIN_W_EXP_GATE:
    case QILIN_W_EXP_UP:
    case QILIN_W_EXP_DOWN:
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
    case QILIN_W_SHARED_DOWN:
        return true;
    default:
        return false;
    }
}

static bool slot_is_routed(qilin_slot s) {
    return s == QILIN_W_EXP_GATE || s == QILIN_W_EXP_UP || s == QILIN_W_EXP_DOWN;
}

qilin_wfmt qilin_weight_format_of(const qilin_weight_format *wf, const qilin_tensor_spec *spec) {
    if (spec->slot == QILIN_W_ROUTER_BIAS) return QILIN_WFMT_FP32;
    if (spec->n_dims < 2 || !slot_is_projection(spec->slot)) return wf->dense;
    if (wf->experts_only && !slot_is_routed(spec->slot)) return wf->dense;
    return wf->linear;
}

bool qilin_slot_stays_fp8(qilin_slot s) {
    switch (s) {
    case QILIN_W_Q:
    case QILIN_W_K:
    case QILIN_W_V:
    case QILIN_W_O:
    case QILIN_W_Q_A:
    case QILIN_W_Q_B:
    case QILIN_W_GATE:
    case QILIN_W_UP:
    case QILIN_W_DOWN:
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
    case QILIN_W_SHARED_DOWN:
        return true;
    default:
        return false;
    }
}

bool qilin_experts_stay_quantized(const qilin_model_desc *d, qilin_dtype dtype, int expert_ffn) {
    bool fp8 = strcmp(d->quant_method, "fp8") == 0;
    bool int4 = strcmp(d->quant_method, "compressed-tensors") == 0 && d->weight_group > 0 && d->weight_group % 8 == 0;
    return (fp8 || int4) && d->n_experts > 0 && (dtype == QILIN_BF16 || dtype == QILIN_F16) && d->hidden % 8 == 0 &&
           expert_ffn > 0 && expert_ffn % 8 == 0;
}

void qilin_upload_formats_fe(const qilin_model_desc *d, qilin_dtype dtype, int expert_ffn, qilin_wfmt *out) {
    qilin_wfmt act = dtype == QILIN_F32   ? QILIN_WFMT_FP32
                     : dtype == QILIN_F16 ? QILIN_WFMT_FP16
                                          : QILIN_WFMT_BF16;
    bool fp8 = strcmp(d->quant_method, "fp8") == 0;
    bool experts_q = qilin_experts_stay_quantized(d, dtype, expert_ffn);
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec *s = &d->tensors[i];
        bool per_expert = s->n_dims == 2 && s->layer >= 0 && s->expert >= 0 && slot_is_routed(s->slot);
        out[i] = s->slot == QILIN_W_ROUTER_BIAS ? QILIN_WFMT_FP32
                 : fp8 && s->n_dims == 2 && s->layer >= 0 && qilin_slot_stays_fp8(s->slot)
                     ? QILIN_WFMT_FP8_BLOCK
                 : experts_q && per_expert ? (fp8 ? QILIN_WFMT_FP8_BLOCK : QILIN_WFMT_INT4_GROUP)
                                           : act;
    }
}

void qilin_upload_formats(const qilin_model_desc *d, qilin_dtype dtype, qilin_wfmt *out) {
    qilin_upload_formats_fe(d, dtype, d->moe_ffn_dim, out);
}

/* Blocks of size b that [start, start + count) touches. */
static int64_t cover(int64_t start, int64_t count, int64_t b) {
    if (count <= 0) return 0;
    return (start + count + b - 1) / b - start / b;
}

uint64_t qilin_weight_bytes(const qilin_weight_format *wf, qilin_wfmt f, int n_dims, const int64_t shape[3],
                            int dim, int64_t start, int64_t count) {
    int64_t ext[3] = {1, 1, 1};
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        ext[i] = (i == dim) ? count : shape[i];
        n *= (uint64_t)ext[i];
    }
    if (n_dims < 2 && (f == QILIN_WFMT_FP8_BLOCK || f == QILIN_WFMT_INT4_GROUP)) f = wf->dense;
    switch (f) {
    case QILIN_WFMT_BF16:
    case QILIN_WFMT_FP16:
        return 2 * n;
    case QILIN_WFMT_FP32:
        return 4 * n;
    default:
        break;
    }
    int od = n_dims - 2, id = n_dims - 1; /* [out, in] are the last two dims */
    uint64_t outer = n_dims == 3 ? (uint64_t)ext[0] : 1;
    if (f == QILIN_WFMT_FP8_BLOCK) {
        int64_t rb = dim == od ? cover(start, count, wf->block_rows) : cover(0, shape[od], wf->block_rows);
        int64_t cb = dim == id ? cover(start, count, wf->block_cols) : cover(0, shape[id], wf->block_cols);
        return n + outer * (uint64_t)rb * (uint64_t)cb * 4;
    }
    /* int4: packed nibbles (8 per int32 along in) + bf16 scales per group. */
    int64_t groups = dim == id ? cover(start, count, wf->group) : cover(0, shape[id], wf->group);
    uint64_t rows = outer * (uint64_t)ext[od];
    return rows * (uint64_t)((ext[id] + 7) / 8) * 4 + rows * (uint64_t)groups * 2;
}

/* ---- split rules -------------------------------------------------------- */

qilin_wcat qilin_wcat_of(qilin_slot slot) {
    switch (slot) {
    case QILIN_W_EMBED:
    case QILIN_W_LM_HEAD:
    case QILIN_W_LM_HEAD_BIAS:
        return QILIN_WCAT_EMBED;
    case QILIN_W_FINAL_NORM:
    case QILIN_W_FINAL_NORM_BIAS:
    case QILIN_W_ATTN_NORM:
    case QILIN_W_ATTN_NORM_BIAS:
    case QILIN_W_FFN_NORM:
    case QILIN_W_FFN_NORM_BIAS:
    case QILIN_W_Q_NORM:
    case QILIN_W_K_NORM:
    case QILIN_W_Q_A_NORM:
    case QILIN_W_KV_A_NORM:
        return QILIN_WCAT_NORMS;
    case QILIN_W_GATE:
    case QILIN_W_UP:
    case QILIN_W_UP_BIAS:
    case QILIN_W_DOWN:
    case QILIN_W_DOWN_BIAS:
        return QILIN_WCAT_DENSE_MLP;
    case QILIN_W_ROUTER:
    case QILIN_W_ROUTER_BIAS:
    case QILIN_W_EXP_GATE:
    case QILIN_W_EXP_UP:
    case QILIN_W_EXP_DOWN:
        return QILIN_WCAT_ROUTED;
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
    case QILIN_W_SHARED_DOWN:
    case QILIN_W_SHARED_EXPERT_GATE:
        return QILIN_WCAT_SHARED;
    default:
        return QILIN_WCAT_ATTENTION;
    }
}

/* How a GPU's range along the split dim is chosen. */
typedef enum range_kind {
    R_WHOLE,    /* replicated */
    R_EVEN,     /* extent / tp each */
    R_Q_HEADS,  /* the GPU's query heads × rows per head */
    R_KV_HEADS, /* the GPU's KV heads × rows per head */
    R_VOCAB,    /* ceil(extent / tp), padded */
    R_OWNER,    /* whole tensor on the expert's owner only */
} range_kind;

typedef struct rule {
    qilin_split split;
    range_kind range;
    int dim;
} rule;

static rule rule_of(const qilin_model_desc *d, const qilin_tensor_spec *s, bool ep) {
    int last = s->n_dims - 1;
    bool stacked = s->n_dims == 3;
    switch (s->slot) {
    case QILIN_W_EMBED:
    case QILIN_W_LM_HEAD:
    case QILIN_W_LM_HEAD_BIAS:
        return (rule){QILIN_SPLIT_VOCAB, R_VOCAB, 0};
    case QILIN_W_Q:
    case QILIN_W_Q_BIAS:
    case QILIN_W_QKV:
    case QILIN_W_QKV_BIAS:
    case QILIN_W_Q_B:
    case QILIN_W_KV_B:
    case QILIN_W_K_B:
    case QILIN_W_V_B:
        return (rule){QILIN_SPLIT_COLUMN, R_Q_HEADS, 0};
    case QILIN_W_K:
    case QILIN_W_K_BIAS:
    case QILIN_W_V:
    case QILIN_W_V_BIAS:
        return (rule){QILIN_SPLIT_COLUMN, d->attn == QILIN_ATTN_MLA ? R_Q_HEADS : R_KV_HEADS, 0};
    case QILIN_W_O:
        return (rule){QILIN_SPLIT_ROW, R_Q_HEADS, last};
    case QILIN_W_GATE:
    case QILIN_W_UP:
    case QILIN_W_UP_BIAS:
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
        return (rule){QILIN_SPLIT_COLUMN, R_EVEN, 0};
    case QILIN_W_DOWN:
    case QILIN_W_SHARED_DOWN:
        return (rule){QILIN_SPLIT_ROW, R_EVEN, last};
    case QILIN_W_EXP_GATE:
    case QILIN_W_EXP_UP:
        if (ep)
            return stacked ? (rule){QILIN_SPLIT_EXPERT, R_EVEN, 0} : (rule){QILIN_SPLIT_EXPERT, R_OWNER, -1};
        return (rule){QILIN_SPLIT_COLUMN, R_EVEN, stacked ? 1 : 0};
    case QILIN_W_EXP_DOWN:
        if (ep)
            return stacked ? (rule){QILIN_SPLIT_EXPERT, R_EVEN, 0} : (rule){QILIN_SPLIT_EXPERT, R_OWNER, -1};
        return (rule){QILIN_SPLIT_ROW, R_EVEN, last};
    default: /* norms, q_norm/k_norm, MLA q_a/kv_a, router, row-parallel biases */
        return (rule){QILIN_SPLIT_REPLICATED, R_WHOLE, -1};
    }
}

/* Attention heads of GPU g (heads % tp and the KV rule were checked). */
static void heads_of(const qilin_model_desc *d, int tp, int g, qilin_gpu_plan *gp) {
    gp->n_q_heads = d->n_heads / tp;
    gp->q_head_first = g * gp->n_q_heads;
    if (d->attn == QILIN_ATTN_MLA || d->n_kv_heads <= 0) return;
    if (d->n_kv_heads >= tp) {
        gp->n_kv_heads = d->n_kv_heads / tp;
        gp->kv_head_first = g * gp->n_kv_heads;
    } else {
        gp->n_kv_heads = 1;
        gp->kv_head_first = g * d->n_kv_heads / tp;
    }
}

static bool has_layer_kind(const qilin_model_desc *d, qilin_ffn_kind k) {
    for (int l = 0; l < d->n_layers && l < QILIN_MAX_LAYERS; l++)
        if (d->layer_ffn[l] == k) return true;
    return false;
}

/* Whole-model divisibility checks; the message goes into msg. */
static bool check_split(const qilin_model_desc *d, int tp, bool ep, char *msg, size_t cap) {
    if (d->n_heads <= 0 || d->n_heads % tp != 0) {
        snprintf(msg, cap, "%d attention heads do not split over %d GPUs", d->n_heads, tp);
        return false;
    }
    int kv = d->n_kv_heads;
    if (d->attn == QILIN_ATTN_GQA && kv > 0 && kv % tp != 0 && tp % kv != 0) {
        snprintf(msg, cap,
                 "%d KV heads neither split over %d GPUs nor divide into them (every GPU must hold "
                 "whole KV heads, and only the ones its query heads use)",
                 kv, tp);
        return false;
    }
    bool dense = has_layer_kind(d, QILIN_FFN_GATED) || has_layer_kind(d, QILIN_FFN_PLAIN);
    if (dense && d->ffn_dim % tp != 0) {
        snprintf(msg, cap, "MLP intermediate size %d does not split over %d GPUs", d->ffn_dim, tp);
        return false;
    }
    if (has_layer_kind(d, QILIN_FFN_MOE)) {
        if (ep && d->n_experts % tp != 0) {
            snprintf(msg, cap, "%d routed experts do not split over %d GPUs (expert parallelism)",
                     d->n_experts, tp);
            return false;
        }
        if (!ep && d->moe_ffn_dim % tp != 0) {
            snprintf(msg, cap, "expert intermediate size %d does not split over %d GPUs", d->moe_ffn_dim, tp);
            return false;
        }
        if (d->shared_ffn_dim % tp != 0) {
            snprintf(msg, cap, "shared-expert intermediate size %d does not split over %d GPUs",
                     d->shared_ffn_dim, tp);
            return false;
        }
    }
    return true;
}

/* The range of spec s on GPU g along r->dim; false when the GPU holds none. */
static qilin_status slice_of(const qilin_model_desc *d, const qilin_tensor_spec *s, rule r, int tp, int g,
                             const qilin_gpu_plan *gp, qilin_shard_slice *out, bool *held) {
    *held = true;
    out->split = r.split;
    out->dim = r.dim;
    out->start = out->count = out->alloc_count = 0;
    if (r.range == R_WHOLE) return QILIN_OK;
    if (r.range == R_OWNER) {
        int per = d->n_experts / tp;
        *held = s->expert >= 0 && per > 0 && s->expert / per == g;
        return QILIN_OK;
    }
    if (r.dim < 0 || r.dim >= s->n_dims)
        return qilin_error(QILIN_ERR_INTERNAL, "%s: split dim %d of a %d-D tensor", s->name, r.dim,
                           s->n_dims);
    int64_t ext = s->shape[r.dim];
    int64_t parts = tp, first = g, count = 1;
    const char *what = "GPUs";
    if (r.range == R_Q_HEADS)
        parts = d->n_heads, first = gp->q_head_first, count = gp->n_q_heads, what = "attention heads";
    if (r.range == R_KV_HEADS)
        parts = d->n_kv_heads, first = gp->kv_head_first, count = gp->n_kv_heads, what = "KV heads";
    if (r.range == R_VOCAB) {
        int64_t rows = (ext + tp - 1) / tp;
        out->start = g * rows < ext ? g * rows : ext;
        out->count = (out->start + rows <= ext ? rows : ext - out->start);
        out->alloc_count = rows;
        return QILIN_OK;
    }
    if (parts <= 0 || ext % parts != 0)
        return qilin_error(QILIN_ERR_FORMAT, "%s: dim %d of size %lld does not split into %lld %s", s->name,
                           r.dim, (long long)ext, (long long)parts, what);
    int64_t unit = ext / parts;
    out->start = first * unit;
    out->count = out->alloc_count = count * unit;
    return QILIN_OK;
}

static qilin_status build_gpu(qilin_plan *p, int g) {
    const qilin_model_desc *d = p->desc;
    qilin_gpu_plan *gp = &p->gpus[g];
    int tp = p->opt.tp;
    heads_of(d, tp, g, gp);
    gp->n_experts = p->opt.ep ? d->n_experts / tp : d->n_experts;
    gp->expert_first = p->opt.ep ? g * gp->n_experts : 0;
    gp->slices = calloc(d->n_tensors ? (size_t)d->n_tensors : 1, sizeof *gp->slices);
    if (!gp->slices) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "plan: %d slices", d->n_tensors);
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec *s = &d->tensors[i];
        qilin_shard_slice sl = {.spec = i};
        bool held;
        QILIN_TRY(slice_of(d, s, rule_of(d, s, p->opt.ep), tp, g, gp, &sl, &held));
        if (!held) continue;
        sl.format =
            p->opt.tensor_formats ? p->opt.tensor_formats[i] : qilin_weight_format_of(&p->opt.format, s);
        sl.bytes = qilin_weight_bytes(&p->opt.format, sl.format, s->n_dims, s->shape, sl.dim, sl.start,
                                      sl.alloc_count);
        if (sl.split == QILIN_SPLIT_VOCAB) {
            gp->vocab_first = sl.start;
            gp->n_vocab = sl.count;
        }
        gp->slices[gp->n_slices++] = sl;
        gp->weight_bytes += sl.bytes;
        gp->category_bytes[qilin_wcat_of(s->slot)] += sl.bytes;
    }
    return QILIN_OK;
}

void qilin_plan_options_default(qilin_plan_options *o) {
    memset(o, 0, sizeof *o);
    o->tp = 1;
    format_init(&o->format, QILIN_WFMT_BF16, QILIN_WFMT_BF16, "default");
}

static void valid_degrees(const qilin_model_desc *d, bool ep, char *buf, size_t cap) {
    char scratch[256];
    size_t n = 0;
    buf[0] = 0;
    for (int t = 1; t <= 64; t++) {
        if (!check_split(d, t, ep, scratch, sizeof scratch)) continue;
        int w = snprintf(buf + n, cap - n, "%s%d", n ? ", " : "", t);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

qilin_status qilin_plan_create(const qilin_model_desc *d, const qilin_plan_options *o, qilin_plan **out) {
    *out = NULL;
    if (!d || !o) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_plan_create: NULL argument");
    if (o->tp < 1 || o->tp > 1024)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "tensor-parallel degree %d is not in 1..1024", o->tp);
    char msg[512];
    if (!check_split(d, o->tp, o->ep, msg, sizeof msg)) {
        char ok[256];
        valid_degrees(d, o->ep, ok, sizeof ok);
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: %s; degrees that work%s: %s", d->source, msg,
                           o->ep ? " with expert parallelism" : "", ok[0] ? ok : "none up to 64");
    }
    qilin_plan *p = calloc(1, sizeof *p);
    if (p) p->gpus = calloc((size_t)o->tp, sizeof *p->gpus);
    if (p && d->n_tensors > 0) p->spec_split = calloc((size_t)d->n_tensors, sizeof *p->spec_split);
    if (!p || !p->gpus || (d->n_tensors > 0 && !p->spec_split)) {
        qilin_plan_free(p);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "plan for %d GPUs", o->tp);
    }
    p->desc = d;
    p->opt = *o;
    p->n_gpus = o->tp;
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec *s = &d->tensors[i];
        p->spec_split[i] = rule_of(d, s, o->ep).split;
        qilin_wfmt f = o->tensor_formats ? o->tensor_formats[i] : qilin_weight_format_of(&o->format, s);
        p->total_weight_bytes += qilin_weight_bytes(&o->format, f, s->n_dims, s->shape, -1, 0, 0);
    }
    for (int g = 0; g < o->tp; g++) {
        qilin_status st = build_gpu(p, g);
        if (st != QILIN_OK) {
            qilin_plan_free(p);
            return qilin_error_context(st, "%s, %d GPUs: ", d->source, o->tp);
        }
    }
    *out = p;
    return QILIN_OK;
}

void qilin_plan_free(qilin_plan *p) {
    if (!p) return;
    for (int g = 0; p->gpus && g < p->n_gpus; g++) free(p->gpus[g].slices);
    free(p->gpus);
    free(p->spec_split);
    free(p);
}

const qilin_shard_slice *qilin_plan_find_slice(const qilin_plan *p, int gpu, int spec) {
    if (!p || gpu < 0 || gpu >= p->n_gpus) return NULL;
    const qilin_gpu_plan *gp = &p->gpus[gpu];
    /* slices are in spec order: binary search */
    int lo = 0, hi = gp->n_slices - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (gp->slices[mid].spec == spec) return &gp->slices[mid];
        if (gp->slices[mid].spec < spec)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* ---- memory plan -------------------------------------------------------- */

void qilin_memory_options_default(qilin_memory_options *m) {
    memset(m, 0, sizeof *m);
    m->util = 0.9;
    m->max_batch_tokens = 4096;
    m->max_batch_seqs = 256;
    m->kv_elem_bytes = 2;
    m->act_elem_bytes = 2;
    m->reserve_bytes = 1ull << 30;
}

uint64_t qilin_kv_bytes_per_token_layer(const qilin_model_desc *d, int tp, int kv_elem_bytes) {
    if (d->attn == QILIN_ATTN_MLA)
        return (uint64_t)(d->kv_lora_rank + d->qk_rope_dim) * (uint64_t)kv_elem_bytes;
    int kv = d->n_kv_heads > 0 ? d->n_kv_heads : d->n_heads;
    int kv_local = kv >= tp ? kv / tp : 1;
    int hd_v = d->head_dim_v > 0 ? d->head_dim_v : d->head_dim;
    return (uint64_t)kv_local * (uint64_t)(d->head_dim + hd_v) * (uint64_t)kv_elem_bytes;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* The most loaded GPU's step buffers (plan_workspace.c). */
static uint64_t workspace_bytes(const qilin_plan *p, const qilin_memory_options *m) {
    const qilin_model_desc *d = p->desc;
    int ctx = m->max_ctx > 0 ? m->max_ctx : d->max_position > 0 && d->max_position < 4096 ? (int)d->max_position : 4096;
    int T = m->max_batch_tokens < (1 << 30) ? (int)m->max_batch_tokens : 1 << 30;
    uint64_t most = 0;
    for (int g = 0; g < p->n_gpus; g++) {
        qilin_workspace_plan w;
        qilin_plan_workspace(p, g, T, m->max_batch_seqs, ctx, m->act_elem_bytes, &w);
        most = max_u64(most, w.total);
    }
    return most;
}

qilin_status qilin_plan_memory(const qilin_plan *p, const qilin_memory_options *m, qilin_memory_plan *out) {
    memset(out, 0, sizeof *out);
    if (!p || !m || m->gpu_mem_bytes == 0 || !(m->util > 0 && m->util <= 1) || m->max_batch_tokens < 1 ||
        m->max_batch_seqs < 1 || m->kv_elem_bytes < 1 || m->act_elem_bytes < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "memory plan: need gpu memory > 0, util in (0, 1], batch tokens/seqs >= 1 and "
                           "element sizes >= 1 (got %llu bytes, util %g, %lld tokens, %d seqs)",
                           m ? (unsigned long long)m->gpu_mem_bytes : 0ull, m ? m->util : 0.0,
                           m ? (long long)m->max_batch_tokens : 0ll, m ? m->max_batch_seqs : 0);
    const qilin_model_desc *d = p->desc;
    out->gpu_mem = m->gpu_mem_bytes;
    out->budget = (uint64_t)((double)m->gpu_mem_bytes * m->util);
    for (int g = 0; g < p->n_gpus; g++) out->weights = max_u64(out->weights, p->gpus[g].weight_bytes);
    out->workspace = workspace_bytes(p, m);
    out->reserve = m->reserve_bytes;
    out->kv_bytes_per_token_layer = qilin_kv_bytes_per_token_layer(d, p->opt.tp, m->kv_elem_bytes);
    out->kv_bytes_per_token = out->kv_bytes_per_token_layer * (uint64_t)d->n_layers;
    out->min_kv_tokens = m->min_kv_tokens > 0 ? m->min_kv_tokens : m->max_batch_tokens;
    uint64_t fixed = out->weights + out->workspace + out->reserve;
    uint64_t need = fixed + out->kv_bytes_per_token * (uint64_t)out->min_kv_tokens;
    if (need > out->budget) {
        out->shortfall = need - out->budget;
        return qilin_error(
            QILIN_ERR_OUT_OF_MEMORY,
            "%s does not fit on %d x %.1f GiB at %.0f%% use: per GPU it needs weights %.2f GiB "
            "+ workspace %.2f GiB + reserve %.2f GiB + KV cache for %lld tokens %.2f GiB = "
            "%.2f GiB, but only %.2f GiB is usable: short by %.2f GiB per GPU",
            d->source, p->n_gpus, GIB(m->gpu_mem_bytes), m->util * 100, GIB(out->weights),
            GIB(out->workspace), GIB(out->reserve), (long long)out->min_kv_tokens,
            GIB(out->kv_bytes_per_token * (uint64_t)out->min_kv_tokens), GIB(need), GIB(out->budget),
            GIB(out->shortfall));
    }
    out->fits = true;
    out->kv_tokens = out->kv_bytes_per_token ? (int64_t)((out->budget - fixed) / out->kv_bytes_per_token) : 0;
    out->kv_bytes = (uint64_t)out->kv_tokens * out->kv_bytes_per_token;
    return QILIN_OK;
}

/* ---- printing ----------------------------------------------------------- */

static bool gpus_alike(const qilin_plan *p) {
    for (int g = 1; g < p->n_gpus; g++)
        if (memcmp(p->gpus[g].category_bytes, p->gpus[0].category_bytes, sizeof p->gpus[0].category_bytes))
            return false;
    return true;
}

static void row(FILE *f, const char *label, const uint64_t *v, int n) {
    fprintf(f, "  %-26s", label);
    for (int i = 0; i < n; i++) fprintf(f, " %10.2f", GIB(v[i]));
    fprintf(f, "\n");
}

void qilin_plan_print(const qilin_plan *p, const qilin_memory_plan *m, void *file) {
    FILE *f = file;
    const qilin_model_desc *d = p->desc;
    const qilin_plan_options *o = &p->opt;
    fprintf(f, "model      %s (%s, %s)\n", d->source, qilin_arch_hf_name(d->arch), d->model_type);
    bool a2a = o->ep && o->ep_all_to_all && p->n_gpus > 1;
    fprintf(f, "GPUs       %d, tensor parallel%s\n", p->n_gpus,
            !d->n_moe_layers ? ""
            : a2a            ? "; routed experts whole per GPU (ep), tokens sent to them by all-to-all"
            : o->ep          ? "; routed experts whole per GPU (ep)"
                             : "; routed experts split by intermediate dim (tp)");
    fprintf(f, "weights    %s projections, %s others (%s); %.2f GiB unsharded\n",
            qilin_wfmt_name(o->format.linear), qilin_wfmt_name(o->format.dense), o->format.origin,
            GIB(p->total_weight_bytes));
    const qilin_gpu_plan *g0 = &p->gpus[0];
    if (d->attn == QILIN_ATTN_MLA)
        fprintf(f, "attention  MLA, %d of %d heads per GPU, latent KV cache replicated\n", g0->n_q_heads,
                d->n_heads);
    else
        fprintf(f, "attention  %d of %d query heads and %d of %d KV heads per GPU%s\n", g0->n_q_heads,
                d->n_heads, g0->n_kv_heads, d->n_kv_heads,
                d->n_kv_heads < p->n_gpus ? " (KV heads shared)" : "");
    if (d->n_moe_layers)
        fprintf(f, "experts    %d of %d routed experts per GPU%s\n", g0->n_experts, d->n_experts,
                o->ep ? "" : ", 1/tp of each");
    if (d->vocab % p->n_gpus)
        fprintf(f, "vocab      %d rows do not split over %d GPUs: padded to %lld rows per GPU\n", d->vocab,
                p->n_gpus, (long long)((d->vocab + p->n_gpus - 1) / p->n_gpus));

    int cols = gpus_alike(p) ? 1 : (p->n_gpus < 8 ? p->n_gpus : 8);
    fprintf(f, "\n  %-26s", "GiB per GPU");
    for (int c = 0; c < cols; c++) {
        if (cols == 1)
            fprintf(f, " %10s", "each");
        else
            fprintf(f, "      GPU %d", c);
    }
    fprintf(f, "\n");
    uint64_t v[8];
    for (int k = 0; k < QILIN_WCAT_COUNT; k++) {
        uint64_t any = 0;
        for (int c = 0; c < cols; c++) any |= v[c] = p->gpus[c].category_bytes[k];
        if (any) row(f, qilin_wcat_name((qilin_wcat)k), v, cols); /* a dense model has no experts */
    }
    for (int c = 0; c < cols; c++) v[c] = p->gpus[c].weight_bytes;
    row(f, "weights", v, cols);
    if (!m) return;
    uint64_t one[1];
    one[0] = m->workspace, row(f, "workspace", one, 1);
    one[0] = m->reserve, row(f, "reserve (context, cuBLAS)", one, 1);
    one[0] = m->kv_bytes, row(f, "KV cache", one, 1);
    one[0] = m->budget, row(f, "usable", one, 1);
    fprintf(f, "\nKV cache   %llu B/token per GPU (%d layers x %llu B)\n",
            (unsigned long long)m->kv_bytes_per_token, d->n_layers,
            (unsigned long long)m->kv_bytes_per_token_layer);
    if (m->fits)
        fprintf(f, "fits       %lld tokens of KV cache (%.2f GiB per GPU) on %d x %.1f GiB\n",
                (long long)m->kv_tokens, GIB(m->kv_bytes), p->n_gpus, GIB(m->gpu_mem));
    else
        fprintf(f, "DOES NOT FIT on %d x %.1f GiB: short by %.2f GiB per GPU (minimum KV: %lld tokens)\n",
                p->n_gpus, GIB(m->gpu_mem), GIB(m->shortfall), (long long)m->min_kv_tokens);
}

void qilin_plan_print_slices(const qilin_plan *p, int gpu, void *file) {
    FILE *f = file;
    if (gpu < 0 || gpu >= p->n_gpus) return;
    const qilin_gpu_plan *gp = &p->gpus[gpu];
    fprintf(f, "GPU %d: %d slices, %.2f GiB\n", gpu, gp->n_slices, GIB(gp->weight_bytes));
    for (int i = 0; i < gp->n_slices; i++) {
        const qilin_shard_slice *s = &gp->slices[i];
        const qilin_tensor_spec *t = &p->desc->tensors[s->spec];
        fprintf(f, "  %-56s %-10s %-4s", t->name, qilin_split_name(s->split), qilin_wfmt_name(s->format));
        if (s->dim >= 0)
            fprintf(f, " dim %d [%lld, %lld)", s->dim, (long long)s->start, (long long)(s->start + s->count));
        fprintf(f, " %llu B\n", (unsigned long long)s->bytes);
    }
}
