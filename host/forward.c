/* forward.c — the forward pass of every supported architecture on one
 * device, as a sequence of kernel launches (models.md has the math).
 *
 * Data flow of one step over T new tokens (all sequences back to back):
 *
 *   ids -> embedding -> R (the residual stream, [T, hidden])
 *   per layer:
 *     N = norm1(R)                       (fused: R += X of the previous sub-layer)
 *     X = attention(N) | MLA(N)          (writes this step's K/V into the cache)
 *     sequential blocks:  N = norm2(R += X);  X = ffn(N)
 *     parallel blocks:    X += ffn(norm2(R) or N);  R += X at the next norm
 *   N = final_norm(R += X) -> lm_head -> fp32 logits
 *
 * The residual add rides in the norm kernels (qilin_rmsnorm/qilin_layernorm
 * with `residual`), rounded to the activation dtype as Hugging Face adds.
 * Linear layers: qilin_gemv for up to QILIN_GEMV_MAX_M rows (decode), cuBLAS
 * (qilin_gemm) otherwise. Weights are stored in the activation dtype; the
 * gate and up projections of each gated MLP are stacked into one [2F, H]
 * matrix (one GEMM, then qilin_act_and_mul), and the routed experts of a
 * layer into [E, 2F, H] and [E, H, F] for qilin_moe_experts. */
#include "host/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/blas.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "host/checkpoint.h"
#include "host/quant.h"

/* ---- the model ---------------------------------------------------------- */

typedef struct layer {
    void *w[QILIN_SLOT_COUNT];    /* device pointers, activation dtype; NULL when absent */
    void *gate_up;                /* dense gated MLP [2F, H] */
    void *shared_gate_up;         /* shared experts [2Fs, H] */
    void *exp_gate_up, *exp_down; /* routed experts [E, 2Fe, H], [E, H, Fe] */
    float *router_bias;           /* [E] fp32 */
    void *k_cache, *v_cache;      /* GQA: [slots, ctx, nkv, hd(v)]; MLA: latent [slots, ctx, r], pe [slots, ctx, dr] */
} layer;

struct qilin_model {
    qilin_model_desc *desc;
    qilin_model_options opt;
    size_t es;                    /* bytes per activation element */
    qilin_blas *blas;
    qilin_stream *stream;
    int n_sms;

    void *global[QILIN_W_LAYER_FIRST]; /* embed, final norm (+bias), lm_head (+bias) */
    float *lm_head_bias_f32;      /* GPT-J's lm_head bias again in fp32, for the GEMM path's fp32 logits */
    layer *layers;
    float *inv_freq;
    float cos_sin_scale;
    qilin_kv_layout k_layout, v_layout, latent_layout, pe_layout;

    /* per-step buffers, sized for max_batch_tokens rows */
    int width;                    /* widest intermediate row */
    void *R, *X, *N, *B1, *B2, *B3, *B4;
    float *router_logits, *topk_w, *logits;
    int *topk_ids;
    int *d_tokens, *d_positions, *d_token_slot, *d_q_start, *d_kv_len, *d_seq_slot, *d_rows;
    int *d_error;
    int *d_single;                /* [max_seqs][4]: {0, n_q, kv_len, 0} for one-sequence launches */
    void *attn_ws, *moe_ws, *mla_kvb, *mla_k;
    size_t attn_ws_bytes, moe_ws_bytes;
    int *d_sample_ids;
    qilin_sampling_params *d_params;
    void *sample_ws;
    size_t sample_ws_bytes;
    int logits_rows_cap;
};

void qilin_model_options_default(qilin_model_options *o) {
    memset(o, 0, sizeof *o);
    o->dtype = QILIN_BF16;
    o->max_seqs = 8;
    o->max_ctx = 0;
    o->max_batch_tokens = 512;
    o->mla_mode = QILIN_MLA_AUTO;
}

const qilin_model_desc *qilin_model_get_desc(const qilin_model *m) { return m->desc; }
const qilin_model_options *qilin_model_get_options(const qilin_model *m) { return &m->opt; }

static qilin_status dalloc(void **p, size_t bytes, const char *what) {
    return qilin_malloc(p, bytes ? bytes : 1, what);
}

/* ---- loading ------------------------------------------------------------ */

static int64_t numel(const qilin_tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->n_dims; i++) n *= s->shape[i];
    return n;
}

/* Where spec s lands: *dst (allocating the whole destination on first use)
 * and the dtype stored there. */
static qilin_status destination(qilin_model *m, const qilin_tensor_spec *s, void **dst, qilin_dtype *dtype) {
    const qilin_model_desc *d = m->desc;
    size_t es = m->es;
    char what[160];
    snprintf(what, sizeof what, "%s", s->name);
    *dtype = m->opt.dtype;
    if (s->layer < 0) {
        void **slot = &m->global[s->slot];
        if (!*slot) QILIN_TRY(dalloc(slot, (size_t)numel(s) * es, what));
        *dst = *slot;
        return QILIN_OK;
    }
    layer *L = &m->layers[s->layer];
    size_t H = (size_t)d->hidden;
    switch (s->slot) {
    case QILIN_W_GATE:
    case QILIN_W_UP:
        if (d->layer_ffn[s->layer] != QILIN_FFN_GATED) break; /* plain MLP: up = fc_in, own buffer */
        if (!L->gate_up) QILIN_TRY(dalloc(&L->gate_up, 2 * (size_t)d->ffn_dim * H * es, what));
        *dst = (char *)L->gate_up + (s->slot == QILIN_W_UP ? (size_t)d->ffn_dim * H * es : 0);
        return QILIN_OK;
    case QILIN_W_SHARED_GATE:
    case QILIN_W_SHARED_UP:
        if (!L->shared_gate_up) QILIN_TRY(dalloc(&L->shared_gate_up, 2 * (size_t)d->shared_ffn_dim * H * es, what));
        *dst = (char *)L->shared_gate_up + (s->slot == QILIN_W_SHARED_UP ? (size_t)d->shared_ffn_dim * H * es : 0);
        return QILIN_OK;
    case QILIN_W_EXP_GATE:
    case QILIN_W_EXP_UP:
    case QILIN_W_EXP_DOWN: {
        if (s->expert < 0)
            return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: tensor %s: stacked (GGUF) experts are not loaded by the forward pass yet",
                               d->source, s->name);
        size_t F = (size_t)d->moe_ffn_dim, E = (size_t)d->n_experts, e = (size_t)s->expert;
        if (!L->exp_gate_up) QILIN_TRY(dalloc(&L->exp_gate_up, E * 2 * F * H * es, what));
        if (!L->exp_down) QILIN_TRY(dalloc(&L->exp_down, E * H * F * es, what));
        if (s->slot == QILIN_W_EXP_DOWN) *dst = (char *)L->exp_down + e * H * F * es;
        else *dst = (char *)L->exp_gate_up + (e * 2 * F + (s->slot == QILIN_W_EXP_UP ? F : 0)) * H * es;
        return QILIN_OK;
    }
    case QILIN_W_ROUTER_BIAS:
        *dtype = QILIN_F32;
        if (!L->router_bias) QILIN_TRY(dalloc((void **)&L->router_bias, (size_t)numel(s) * 4, what));
        *dst = L->router_bias;
        return QILIN_OK;
    default: break;
    }
    if (!L->w[s->slot]) QILIN_TRY(dalloc(&L->w[s->slot], (size_t)numel(s) * es, what));
    *dst = L->w[s->slot];
    return QILIN_OK;
}

/* The bound tensor b as a quant_weight: F32/F16/BF16, or FP8 with the
 * 128x128 block scales binding found beside it. The forward pass runs in
 * the activation dtype, so everything is dequantised on the host; native
 * FP8/INT4/GGUF GEMMs come with the quantized-matmul work. */
static qilin_status weight_of(const qilin_model *m, const qilin_bound_tensor *b, quant_weight *w) {
    const qilin_tensor_spec *s = &m->desc->tensors[b->spec];
    int64_t cols = b->n_dims ? b->shape[b->n_dims - 1] : 1, n = 1;
    for (int i = 0; i < b->n_dims; i++) n *= b->shape[i];
    *w = (quant_weight){.rows = cols ? n / cols : 0, .cols = cols, .data = b->data, .data_bytes = b->nbytes,
                        .name = b->name};
    if (b->quant == QILIN_WQ_FP8_BLOCK) {
        w->format = QILIN_WF_FP8_BLOCK, w->scales = b->scale, w->scale_bytes = b->scale_nbytes;
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_F32) {
        w->format = QILIN_WF_F32;
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_F16) {
        w->format = QILIN_WF_F16;
    } else if (b->quant == QILIN_WQ_NONE && b->dtype == QILIN_WDT_BF16) {
        w->format = QILIN_WF_BF16;
    } else {
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "%s: tensor %s is %s%s; the forward pass loads F32, F16, BF16 and FP8 block-scaled weights",
                           b->file, b->name, qilin_wdtype_name(b->dtype),
                           b->quant == QILIN_WQ_INT4_GROUP ? " (INT4 groups)" : "");
    }
    if (n != numel(s))
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor %s has %lld elements, the %s descriptor expects %lld", b->file,
                           b->name, (long long)n, qilin_arch_hf_name(m->desc->arch), (long long)numel(s));
    return QILIN_OK;
}

/* Dequantises w into dtype on the host and copies it to dst. */
static qilin_status upload_as(qilin_model *m, const quant_weight *w, qilin_dtype dtype, void *dst) {
    size_t bytes = (size_t)(w->rows * w->cols) * qilin_dtype_size(dtype);
    void *tmp = malloc(bytes ? bytes : 1);
    if (!tmp) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "no host memory to convert %s", w->name);
    qilin_status st = quant_dequantize(w, 0, w->rows, dtype, tmp);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(dst, tmp, bytes, m->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(m->stream);
    free(tmp);
    return st;
}

static qilin_status upload_tensor(qilin_model *m, const qilin_bound_tensor *b) {
    const qilin_tensor_spec *s = &m->desc->tensors[b->spec];
    quant_weight w;
    QILIN_TRY(weight_of(m, b, &w));
    void *dst = NULL;
    qilin_dtype dtype;
    QILIN_TRY(destination(m, s, &dst, &dtype));
    QILIN_TRY(upload_as(m, &w, dtype, dst));
    if (s->slot != QILIN_W_LM_HEAD_BIAS) return QILIN_OK;
    /* GPT-J's lm_head bias again in fp32, for the GEMM path's fp32 logits */
    QILIN_TRY(dalloc((void **)&m->lm_head_bias_f32, (size_t)numel(s) * sizeof(float), "lm_head bias (fp32)"));
    return upload_as(m, &w, QILIN_F32, m->lm_head_bias_f32);
}

/* Binds the checkpoint first — a missing, misshaped or unexpected tensor is
 * reported before anything is uploaded — then uploads the bound tensors. */
static qilin_status load_weights(qilin_model *m, const char *path) {
    const qilin_model_desc *d = m->desc;
    qilin_checkpoint *ck = NULL;
    qilin_bound_model *bound = NULL;
    QILIN_TRY(qilin_checkpoint_open(path, &ck));
    const char *where = qilin_checkpoint_path(ck);
    qilin_status st = qilin_model_bind(d, ck, &bound);
    int64_t done = 0, total = 0;
    for (int i = 0; i < d->n_tensors; i++) total += numel(&d->tensors[i]);
    for (int i = 0; st == QILIN_OK && i < bound->n_tensors; i++) {
        const qilin_bound_tensor *b = &bound->tensors[i];
        if (!b->data) continue; /* an absent optional tensor */
        st = upload_tensor(m, b);
        done += numel(&d->tensors[b->spec]);
        if (m->opt.progress)
            fprintf(stderr, "\rloading %s: %5.1f%%", where, total ? 100.0 * (double)done / (double)total : 100.0);
    }
    if (m->opt.progress) fprintf(stderr, "\n");
    if (st == QILIN_OK) {
        if (d->tied_embeddings) m->global[QILIN_W_LM_HEAD] = m->global[QILIN_W_EMBED];
        if (!m->global[QILIN_W_EMBED] || !m->global[QILIN_W_LM_HEAD])
            st = qilin_error(QILIN_ERR_FORMAT, "%s: no embedding or lm_head weights", where);
    }
    qilin_bound_model_free(bound);
    qilin_checkpoint_close(ck);
    return st;
}

/* ---- buffers ------------------------------------------------------------ */

static int imax(int a, int b) { return a > b ? a : b; }

static qilin_status alloc_cache(qilin_model *m) {
    const qilin_model_desc *d = m->desc;
    size_t slots = (size_t)m->opt.max_seqs, ctx = (size_t)m->opt.max_ctx, es = m->es;
    if (d->attn == QILIN_ATTN_MLA) {
        size_t r = (size_t)d->kv_lora_rank, dr = (size_t)d->qk_rope_dim;
        m->latent_layout = (qilin_kv_layout){(int64_t)(ctx * r), (int64_t)r, 0};
        m->pe_layout = (qilin_kv_layout){(int64_t)(ctx * dr), (int64_t)dr, 0};
        for (int l = 0; l < d->n_layers; l++) {
            QILIN_TRY(dalloc(&m->layers[l].k_cache, slots * ctx * r * es, "MLA latent cache"));
            QILIN_TRY(dalloc(&m->layers[l].v_cache, slots * ctx * dr * es, "MLA rope-key cache"));
        }
        return QILIN_OK;
    }
    size_t nkv = (size_t)d->n_kv_heads, hd = (size_t)d->head_dim, hdv = (size_t)d->head_dim_v;
    m->k_layout = (qilin_kv_layout){(int64_t)(ctx * nkv * hd), (int64_t)(nkv * hd), (int64_t)hd};
    m->v_layout = (qilin_kv_layout){(int64_t)(ctx * nkv * hdv), (int64_t)(nkv * hdv), (int64_t)hdv};
    for (int l = 0; l < d->n_layers; l++) {
        QILIN_TRY(dalloc(&m->layers[l].k_cache, slots * ctx * nkv * hd * es, "K cache"));
        QILIN_TRY(dalloc(&m->layers[l].v_cache, slots * ctx * nkv * hdv * es, "V cache"));
    }
    return QILIN_OK;
}

static qilin_status alloc_buffers(qilin_model *m) {
    const qilin_model_desc *d = m->desc;
    int T = m->opt.max_batch_tokens, S = m->opt.max_seqs;
    int w = imax(d->hidden, d->n_heads * d->head_dim);
    w = imax(w, 3 * d->n_heads * d->head_dim);           /* fused NeoX qkv */
    w = imax(w, d->n_heads * d->head_dim_v);
    w = imax(w, 2 * d->ffn_dim);
    w = imax(w, 2 * d->shared_ffn_dim);
    w = imax(w, 2 * d->moe_ffn_dim);
    if (d->attn == QILIN_ATTN_MLA) {
        w = imax(w, d->q_lora_rank);
        w = imax(w, d->kv_lora_rank + d->qk_rope_dim);
        w = imax(w, d->n_heads * d->kv_lora_rank);       /* absorbed q and output */
    }
    m->width = w;
    size_t es = m->es, row = (size_t)w * es;
    QILIN_TRY(dalloc(&m->R, (size_t)T * d->hidden * es, "residual stream"));
    QILIN_TRY(dalloc(&m->X, (size_t)T * d->hidden * es, "sub-layer output"));
    QILIN_TRY(dalloc(&m->N, (size_t)T * d->hidden * es, "normed input"));
    QILIN_TRY(dalloc(&m->B1, (size_t)T * row, "scratch 1"));
    QILIN_TRY(dalloc(&m->B2, (size_t)T * row, "scratch 2"));
    QILIN_TRY(dalloc(&m->B3, (size_t)T * row, "scratch 3"));
    QILIN_TRY(dalloc(&m->B4, (size_t)T * row, "scratch 4"));
    QILIN_TRY(dalloc((void **)&m->d_single, (size_t)S * 4 * sizeof(int), "per-sequence launch arguments"));
    QILIN_TRY(dalloc((void **)&m->logits, (size_t)T * d->vocab * 4, "logits"));
    m->logits_rows_cap = T;
    if (d->n_experts > 0) {
        QILIN_TRY(dalloc((void **)&m->router_logits, (size_t)T * d->n_experts * 4, "router logits"));
        QILIN_TRY(dalloc((void **)&m->topk_w, (size_t)T * d->top_k * 4, "top-k weights"));
        QILIN_TRY(dalloc((void **)&m->topk_ids, (size_t)T * d->top_k * 4, "top-k ids"));
        m->moe_ws_bytes = qilin_moe_experts_workspace(T, d->top_k, d->n_experts, d->hidden, d->moe_ffn_dim, m->opt.dtype);
        QILIN_TRY(dalloc(&m->moe_ws, m->moe_ws_bytes, "MoE workspace"));
    }
    QILIN_TRY(dalloc((void **)&m->d_tokens, (size_t)T * 4, "token ids"));
    QILIN_TRY(dalloc((void **)&m->d_positions, (size_t)T * 4, "positions"));
    QILIN_TRY(dalloc((void **)&m->d_token_slot, (size_t)T * 4, "token slots"));
    QILIN_TRY(dalloc((void **)&m->d_q_start, (size_t)(S + 1) * 4, "query starts"));
    QILIN_TRY(dalloc((void **)&m->d_kv_len, (size_t)S * 4, "kv lengths"));
    QILIN_TRY(dalloc((void **)&m->d_seq_slot, (size_t)S * 4, "sequence slots"));
    QILIN_TRY(dalloc((void **)&m->d_rows, (size_t)T * 4, "logit rows"));
    QILIN_TRY(dalloc((void **)&m->d_error, 4, "embedding error flag"));
    QILIN_TRY(dalloc((void **)&m->d_sample_ids, (size_t)S * 4, "sampled ids"));
    QILIN_TRY(dalloc((void **)&m->d_params, (size_t)S * sizeof(qilin_sampling_params), "sampling params"));
    m->sample_ws_bytes = qilin_sample_workspace(S, d->vocab);
    QILIN_TRY(dalloc(&m->sample_ws, m->sample_ws_bytes, "sampling workspace"));
    int ctx = m->opt.max_ctx;
    if (d->attn == QILIN_ATTN_MLA) {
        m->attn_ws_bytes = qilin_mla_attention_workspace(T, d->n_heads, d->kv_lora_rank, ctx);
        size_t naive = qilin_attention_decode_workspace(S, d->n_heads, d->v_head_dim, ctx);
        if (naive > m->attn_ws_bytes) m->attn_ws_bytes = naive;
        size_t kvb = (size_t)ctx * d->n_heads * (d->qk_nope_dim + d->v_head_dim) * es;
        size_t k = (size_t)ctx * d->n_heads * (d->qk_nope_dim + d->qk_rope_dim) * es;
        QILIN_TRY(dalloc(&m->mla_kvb, kvb, "MLA up-projected K/V"));
        QILIN_TRY(dalloc(&m->mla_k, k, "MLA per-head keys"));
    } else {
        m->attn_ws_bytes = qilin_attention_decode_workspace(S, d->n_heads, d->head_dim_v, ctx);
    }
    QILIN_TRY(dalloc(&m->attn_ws, m->attn_ws_bytes, "attention workspace"));
    return alloc_cache(m);
}

static qilin_status init_rope(qilin_model *m) {
    const qilin_model_desc *d = m->desc;
    int half = d->rope.rot_dim / 2;
    if (half <= 0) return QILIN_OK;
    float *inv = malloc((size_t)half * sizeof *inv);
    if (!inv) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "rope frequencies");
    qilin_status st = qilin_rope_inv_freq(&d->rope, inv, &m->cos_sin_scale);
    if (st == QILIN_OK) st = dalloc((void **)&m->inv_freq, (size_t)half * 4, "rope inv_freq");
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->inv_freq, inv, (size_t)half * 4, m->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(m->stream);
    free(inv);
    return st;
}

qilin_status qilin_model_load(const char *path, const qilin_model_options *options, qilin_model **out) {
    *out = NULL;
    qilin_model_options opt;
    if (options) opt = *options;
    else qilin_model_options_default(&opt);
    if (opt.dtype != QILIN_F32 && opt.dtype != QILIN_BF16 && opt.dtype != QILIN_F16)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: dtype %s: use f32, bf16 or f16",
                           qilin_dtype_name(opt.dtype));
    if (opt.max_seqs < 1 || opt.max_batch_tokens < 1 || opt.max_ctx < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_model_load: max_seqs %d, max_batch_tokens %d, max_ctx %d",
                           opt.max_seqs, opt.max_batch_tokens, opt.max_ctx);
    qilin_model *m = calloc(1, sizeof *m);
    if (!m) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: host memory");
    qilin_status st = qilin_model_desc_load(path, &m->desc);
    if (st != QILIN_OK) {
        free(m);
        return st;
    }
    const qilin_model_desc *d = m->desc;
    if (opt.max_ctx == 0) opt.max_ctx = d->max_position > 0 && d->max_position < 4096 ? (int)d->max_position : 4096;
    m->opt = opt;
    m->es = qilin_dtype_size(opt.dtype);
    qilin_device_props props;
    if ((st = qilin_device_set(opt.device)) == QILIN_OK && (st = qilin_device_get_props(opt.device, &props)) == QILIN_OK)
        m->n_sms = props.sm_count;
    if (st == QILIN_OK) st = qilin_stream_create(&m->stream);
    if (st == QILIN_OK) st = qilin_blas_create(&m->blas);
    if (st == QILIN_OK && !(m->layers = calloc((size_t)d->n_layers, sizeof *m->layers)))
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_model_load: host memory");
    if (st == QILIN_OK) st = load_weights(m, path);
    if (st == QILIN_OK) st = alloc_buffers(m);
    if (st == QILIN_OK) st = init_rope(m);
    if (st != QILIN_OK) {
        qilin_model_free(m);
        return st;
    }
    *out = m;
    return QILIN_OK;
}

void qilin_model_free(qilin_model *m) {
    if (!m) return;
    if (m->desc && m->layers) {
        for (int l = 0; l < m->desc->n_layers; l++) {
            layer *L = &m->layers[l];
            for (int s = 0; s < QILIN_SLOT_COUNT; s++) qilin_free(L->w[s]);
            qilin_free(L->gate_up);
            qilin_free(L->shared_gate_up);
            qilin_free(L->exp_gate_up);
            qilin_free(L->exp_down);
            qilin_free(L->router_bias);
            qilin_free(L->k_cache);
            qilin_free(L->v_cache);
        }
    }
    if (m->desc && m->desc->tied_embeddings) m->global[QILIN_W_LM_HEAD] = NULL;
    for (int s = 0; s < QILIN_W_LAYER_FIRST; s++) qilin_free(m->global[s]);
    void *bufs[] = {m->lm_head_bias_f32, m->inv_freq, m->R, m->X, m->N, m->B1, m->B2, m->B3, m->B4, m->d_single, m->router_logits, m->topk_w, m->logits,
                    m->topk_ids, m->d_tokens, m->d_positions, m->d_token_slot, m->d_q_start, m->d_kv_len,
                    m->d_seq_slot, m->d_rows, m->d_error, m->attn_ws, m->moe_ws, m->mla_kvb, m->mla_k,
                    m->d_sample_ids, m->d_params, m->sample_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qilin_free(bufs[i]);
    qilin_blas_destroy(m->blas);
    qilin_stream_destroy(m->stream);
    free(m->layers);
    qilin_model_desc_free(m->desc);
    free(m);
}

/* ---- building blocks ---------------------------------------------------- */

/* y[rows, out] = x[rows, in] W[out, in]^T (+ bias), x row stride ldx, y row
 * stride ldy; y in the activation dtype or f32 (y_f32). */
static qilin_status linear(qilin_model *m, void *y, int64_t ldy, const void *x, int64_t ldx, const void *w,
                           const void *bias, int rows, int out, int in, bool y_f32) {
    qilin_dtype dt = m->opt.dtype;
    if (rows <= QILIN_GEMV_MAX_M) {
        qilin_gemv_args g = {.y = y, .x = x, .w = w, .bias = bias, .m = rows, .n = out, .k = in,
                             .ldx = ldx, .ldw = in, .ldy = ldy, .dtype = dt, .y_dtype = y_f32 ? QILIN_F32 : dt};
        return qilin_gemv(&g, m->stream);
    }
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR, .trans_a = QILIN_OP_N, .trans_b = QILIN_OP_T,
                         .m = rows, .n = out, .k = in, .ab_type = dt, .c_type = y_f32 ? QILIN_F32 : dt,
                         .a = x, .lda = ldx, .b = w, .ldb = in, .c = y, .ldc = ldy, .batch = 1,
                         .alpha = 1.0f, .beta = 0.0f};
    QILIN_TRY(qilin_gemm(m->blas, &g, m->stream));
    if (!bias) return QILIN_OK;
    if (y_f32) { /* fp32 output (logits): the bias add needs an fp32 copy of the bias */
        if (bias != m->global[QILIN_W_LM_HEAD_BIAS] || !m->lm_head_bias_f32)
            return qilin_error(QILIN_ERR_INTERNAL, "linear: an fp32 output with a bias other than lm_head's");
        bias = m->lm_head_bias_f32;
    }
    qilin_add_bias_args b = {.x = y, .bias = bias, .rows = rows, .cols = out, .ld = ldy, .dtype = y_f32 ? QILIN_F32 : dt};
    return qilin_add_bias(&b, m->stream);
}

/* out = norm(x) with the layer's norm kind; with residual: residual += x first. */
static qilin_status norm(qilin_model *m, void *out, void *residual, const void *x, const void *w, const void *b,
                         int rows, int dim, float eps) {
    if (m->desc->norm == QILIN_NORM_LAYER) {
        qilin_layernorm_args a = {.out = out, .residual = residual, .x = x, .weight = w, .bias = b,
                                  .rows = rows, .dim = dim, .eps = eps, .dtype = m->opt.dtype};
        return qilin_layernorm(&a, m->stream);
    }
    qilin_rmsnorm_args a = {.out = out, .residual = residual, .x = x, .weight = w, .rows = rows, .dim = dim,
                            .eps = eps, .dtype = m->opt.dtype};
    return qilin_rmsnorm(&a, m->stream);
}

/* What one step needs to know about its batch, host and device side. */
typedef struct step {
    int T, n_seqs, max_q, max_kv;
    bool decode;                  /* every sequence has one new token */
    const qilin_batch *b;
    int *kv_len;                  /* host copies */
} step;

static char *slot_ptr(void *base, int64_t elems, size_t es) { return (char *)base + (size_t)elems * es; }

/* ---- attention ---------------------------------------------------------- */

static qilin_status rope(qilin_model *m, const step *s, void *q, int64_t q_ts, int64_t q_hs, int nq, void *k,
                         int64_t k_ts, int64_t k_hs, int nk) {
    const qilin_model_desc *d = m->desc;
    if (d->rope.rot_dim <= 0) return QILIN_OK;
    qilin_rope_args r = {.q = q, .q_token_stride = q_ts, .q_head_stride = q_hs, .n_q_heads = nq,
                         .k = k, .k_token_stride = k_ts, .k_head_stride = k_hs, .n_k_heads = nk,
                         .positions = m->d_positions, .inv_freq = m->inv_freq, .cos_sin_scale = m->cos_sin_scale,
                         .tokens = s->T, .rot_dim = d->rope.rot_dim, .pairing = d->rope.pairing, .dtype = m->opt.dtype};
    return qilin_rope(&r, m->stream);
}

/* Standard attention: Q, K, V projections (fused for GPT-NeoX), optional
 * per-head q/k RMSNorm (Qwen3), RoPE, cache append, attention, o_proj -> X. */
static qilin_status gqa_attention(qilin_model *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden, nh = d->n_heads, nkv = d->n_kv_heads, hd = d->head_dim, hdv = d->head_dim_v;
    size_t es = m->es;
    void *q, *k, *v;
    int64_t q_ts, q_hs, k_ts, k_hs, v_ts, v_hs;
    if (L->w[QILIN_W_QKV]) { /* GPT-NeoX: per head [q k v] */
        QILIN_TRY(linear(m, m->B1, 3 * nh * hd, m->N, H, L->w[QILIN_W_QKV], L->w[QILIN_W_QKV_BIAS], T, 3 * nh * hd, H, false));
        q = m->B1, k = slot_ptr(m->B1, hd, es), v = slot_ptr(m->B1, 2 * hd, es);
        q_ts = k_ts = v_ts = 3 * nh * hd;
        q_hs = k_hs = v_hs = 3 * hd;
    } else {
        q = m->B1, k = m->B2, v = m->B4;
        q_ts = nh * hd, k_ts = nkv * hd, v_ts = nkv * hdv;
        q_hs = k_hs = hd, v_hs = hdv;
        QILIN_TRY(linear(m, q, q_ts, m->N, H, L->w[QILIN_W_Q], L->w[QILIN_W_Q_BIAS], T, nh * hd, H, false));
        QILIN_TRY(linear(m, k, k_ts, m->N, H, L->w[QILIN_W_K], L->w[QILIN_W_K_BIAS], T, nkv * hd, H, false));
        QILIN_TRY(linear(m, v, v_ts, m->N, H, L->w[QILIN_W_V], L->w[QILIN_W_V_BIAS], T, nkv * hdv, H, false));
        if (d->qk_norm) { /* Qwen3: RMSNorm over each head's dims, before RoPE */
            QILIN_TRY(norm(m, q, NULL, q, L->w[QILIN_W_Q_NORM], NULL, T * nh, hd, d->norm_eps));
            QILIN_TRY(norm(m, k, NULL, k, L->w[QILIN_W_K_NORM], NULL, T * nkv, hd, d->norm_eps));
        }
    }
    QILIN_TRY(rope(m, s, q, q_ts, q_hs, nh, k, k_ts, k_hs, nkv));
    qilin_kv_append_args ap = {.k_cache = L->k_cache, .v_cache = L->v_cache, .k_layout = m->k_layout,
                               .v_layout = m->v_layout, .k = k, .k_token_stride = k_ts, .k_head_stride = k_hs,
                               .v = v, .v_token_stride = v_ts, .v_head_stride = v_hs, .token_slot = m->d_token_slot,
                               .positions = m->d_positions, .tokens = T, .n_kv_heads = nkv, .head_dim = hd,
                               .head_dim_v = hdv, .max_ctx = m->opt.max_ctx, .dtype = m->opt.dtype};
    QILIN_TRY(qilin_kv_append(&ap, m->stream));
    void *o = m->B3;
    qilin_attention_args a = {.out = o, .out_token_stride = (int64_t)nh * hdv, .out_head_stride = hdv,
                              .q = q, .q_token_stride = q_ts, .q_head_stride = q_hs,
                              .k_cache = L->k_cache, .v_cache = L->v_cache, .k_layout = m->k_layout,
                              .v_layout = m->v_layout, .q_start = m->d_q_start, .kv_len = m->d_kv_len,
                              .seq_slot = m->d_seq_slot, .n_seqs = s->n_seqs, .tokens = T, .max_q_len = s->max_q,
                              .max_kv_len = s->max_kv, .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                              .head_dim_v = hdv, .scale = d->attn_scale, .sliding_window = d->sliding_window,
                              .dtype = m->opt.dtype, .workspace = m->attn_ws, .workspace_bytes = m->attn_ws_bytes};
    QILIN_TRY(s->decode ? qilin_attention_decode(&a, m->stream) : qilin_attention_prefill(&a, m->stream));
    return linear(m, m->X, H, o, (int64_t)nh * hdv, L->w[QILIN_W_O], L->w[QILIN_W_O_BIAS], T, H, nh * hdv, false);
}

/* Per-head GEMM against kv_b [nh (dn + dv), r], batched over heads:
 * C_h[T, n] = A_h[T, k] op(B_h) with B_h = kv_b rows h (dn + dv) + row0 on. */
static qilin_status per_head_gemm(qilin_model *m, void *c, int64_t ldc, int64_t stride_c, const void *a, int64_t lda,
                                  int64_t stride_a, const void *kv_b, int row0, bool trans_b, int T, int n, int k) {
    const qilin_model_desc *d = m->desc;
    int r = d->kv_lora_rank, per_head = d->qk_nope_dim + d->v_head_dim;
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR, .trans_a = QILIN_OP_N, .trans_b = trans_b ? QILIN_OP_T : QILIN_OP_N,
                         .m = T, .n = n, .k = k, .ab_type = m->opt.dtype, .c_type = m->opt.dtype,
                         .a = a, .lda = lda, .stride_a = stride_a,
                         .b = slot_ptr((void *)kv_b, (int64_t)row0 * r, m->es), .ldb = r,
                         .stride_b = (int64_t)per_head * r, .c = c, .ldc = ldc, .stride_c = stride_c,
                         .batch = d->n_heads, .alpha = 1.0f, .beta = 0.0f};
    return qilin_gemm(m->blas, &g, m->stream);
}

/* Naive MLA for sequence b (rows q_row .. q_row + n_q of q): up-project its
 * cached latents with kv_b, assemble per-head keys [k_nope ; k_pe], run the
 * ordinary attention kernel with head_dim dn + dr, head_dim_v dv. */
static qilin_status mla_naive_seq(qilin_model *m, layer *L, const step *s, int b, int q_row, const void *q, void *o) {
    const qilin_model_desc *d = m->desc;
    int nh = d->n_heads, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim, r = d->kv_lora_rank;
    int slot = s->b->slot[b], kv_len = s->kv_len[b], n_q = s->b->n_tokens[b];
    size_t es = m->es;
    const void *latent = slot_ptr(L->k_cache, (int64_t)slot * m->latent_layout.slot_stride, es);
    const void *pe = slot_ptr(L->v_cache, (int64_t)slot * m->pe_layout.slot_stride, es);
    int kvw = nh * (dn + dv);
    QILIN_TRY(linear(m, m->mla_kvb, kvw, latent, r, L->w[QILIN_W_KV_B], NULL, kv_len, kvw, r, false));
    qilin_mla_expand_k_args e = {.k = m->mla_k, .kv = m->mla_kvb, .k_pe = pe, .pe_stride = dr, .n = kv_len,
                                 .n_heads = nh, .dn = dn, .dv = dv, .dr = dr, .dtype = m->opt.dtype};
    QILIN_TRY(qilin_mla_expand_k(&e, m->stream));
    int64_t q_ts = (int64_t)nh * (dn + dr);
    int *one = m->d_single + 4 * b; /* {0, n_q, kv_len, 0}: q_start[2], kv_len, slot */
    qilin_attention_args a = {.out = slot_ptr(o, (int64_t)q_row * nh * dv, es), .out_token_stride = (int64_t)nh * dv,
                              .out_head_stride = dv, .q = slot_ptr((void *)q, q_row * q_ts, es), .q_token_stride = q_ts,
                              .q_head_stride = dn + dr, .k_cache = m->mla_k, .v_cache = slot_ptr(m->mla_kvb, dn, es),
                              .k_layout = {0, (int64_t)nh * (dn + dr), dn + dr}, .v_layout = {0, kvw, dn + dv},
                              .q_start = one, .kv_len = one + 2, .seq_slot = one + 3, .n_seqs = 1, .tokens = n_q,
                              .max_q_len = n_q, .max_kv_len = kv_len, .n_heads = nh, .n_kv_heads = nh,
                              .head_dim = dn + dr, .head_dim_v = dv, .scale = d->attn_scale, .dtype = m->opt.dtype,
                              .workspace = m->attn_ws, .workspace_bytes = m->attn_ws_bytes};
    return qilin_attention_prefill(&a, m->stream);
}

/* Multi-head latent attention (DeepSeek V2/V3, Kimi K2), models.md §7.4-7.5. */
static qilin_status mla_attention(qilin_model *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden, nh = d->n_heads, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim;
    int r = d->kv_lora_rank, qw = nh * (dn + dr);
    size_t es = m->es;
    void *q = m->B1;
    if (d->q_lora_rank > 0) {
        void *qa = m->B3;
        QILIN_TRY(linear(m, qa, d->q_lora_rank, m->N, H, L->w[QILIN_W_Q_A], NULL, T, d->q_lora_rank, H, false));
        QILIN_TRY(norm(m, qa, NULL, qa, L->w[QILIN_W_Q_A_NORM], NULL, T, d->q_lora_rank, d->mla_norm_eps));
        QILIN_TRY(linear(m, q, qw, qa, d->q_lora_rank, L->w[QILIN_W_Q_B], NULL, T, qw, d->q_lora_rank, false));
    } else {
        QILIN_TRY(linear(m, q, qw, m->N, H, L->w[QILIN_W_Q], NULL, T, qw, H, false));
    }
    /* kv_a_proj_with_mqa rows [0, r) give the latent, [r, r + dr) the rope key:
     * two GEMMs over the two row ranges keep both outputs contiguous. */
    void *c = m->B2, *k_pe = slot_ptr(m->B2, (int64_t)T * r, es);
    const void *w_kv_a = L->w[QILIN_W_KV_A];
    QILIN_TRY(linear(m, c, r, m->N, H, w_kv_a, NULL, T, r, H, false));
    QILIN_TRY(linear(m, k_pe, dr, m->N, H, slot_ptr((void *)w_kv_a, (int64_t)r * H, es), NULL, T, dr, H, false));
    QILIN_TRY(norm(m, c, NULL, c, L->w[QILIN_W_KV_A_NORM], NULL, T, r, d->mla_norm_eps));
    QILIN_TRY(rope(m, s, slot_ptr(q, dn, es), qw, dn + dr, nh, k_pe, dr, dr, 1));
    qilin_mla_append_args ap = {.latent_cache = L->k_cache, .pe_cache = L->v_cache, .latent_layout = m->latent_layout,
                                .pe_layout = m->pe_layout, .latent = c, .k_pe = k_pe, .latent_stride = r,
                                .pe_stride = dr, .token_slot = m->d_token_slot, .positions = m->d_positions,
                                .tokens = T, .r = r, .dr = dr, .max_ctx = m->opt.max_ctx, .dtype = m->opt.dtype};
    QILIN_TRY(qilin_mla_append(&ap, m->stream));

    void *o = m->B3; /* [T, nh dv] */
    bool absorbed = m->opt.mla_mode == QILIN_MLA_ABSORBED || (m->opt.mla_mode == QILIN_MLA_AUTO && s->decode);
    if (absorbed) {
        void *q_lat = m->B3, *o_lat = m->B4;
        /* q_lat[t, h] = W_UK[h]^T q_nope[t, h]: [T, dn] x [dn, r] per head */
        QILIN_TRY(per_head_gemm(m, q_lat, (int64_t)nh * r, r, q, qw, dn + dr, L->w[QILIN_W_KV_B], 0, false, T, r, dn));
        qilin_mla_attention_args a = {.out = o_lat, .out_token_stride = (int64_t)nh * r, .out_head_stride = r,
                                      .q_lat = q_lat, .q_lat_token_stride = (int64_t)nh * r, .q_lat_head_stride = r,
                                      .q_pe = slot_ptr(q, dn, es), .q_pe_token_stride = qw, .q_pe_head_stride = dn + dr,
                                      .latent_cache = L->k_cache, .pe_cache = L->v_cache,
                                      .latent_layout = m->latent_layout, .pe_layout = m->pe_layout,
                                      .q_start = m->d_q_start, .kv_len = m->d_kv_len, .seq_slot = m->d_seq_slot,
                                      .n_seqs = s->n_seqs, .tokens = T, .max_q_len = s->max_q, .max_kv_len = s->max_kv,
                                      .n_heads = nh, .r = r, .dr = dr, .scale = d->attn_scale, .dtype = m->opt.dtype,
                                      .workspace = m->attn_ws, .workspace_bytes = m->attn_ws_bytes};
        QILIN_TRY(qilin_mla_attention(&a, m->stream));
        /* o[t, h] = W_UV[h] o_lat[t, h]: [T, r] x [dv, r]^T per head */
        QILIN_TRY(per_head_gemm(m, o, (int64_t)nh * dv, dv, o_lat, (int64_t)nh * r, r, L->w[QILIN_W_KV_B], dn, true,
                                T, dv, r));
    } else {
        for (int b = 0, row = 0; b < s->n_seqs; row += s->b->n_tokens[b], b++)
            QILIN_TRY(mla_naive_seq(m, L, s, b, row, q, o));
    }
    return linear(m, m->X, H, o, (int64_t)nh * dv, L->w[QILIN_W_O], NULL, T, H, nh * dv, false);
}

/* ---- feed-forward ------------------------------------------------------- */

/* out = down(act(gate x) * up x) with gate_up stacked [2F, H]; out row stride H. */
static qilin_status gated_mlp(qilin_model *m, void *out, const void *x, const void *gate_up, const void *down, int T,
                              int F) {
    int H = m->desc->hidden;
    QILIN_TRY(linear(m, m->B1, 2 * F, x, H, gate_up, NULL, T, 2 * F, H, false));
    qilin_act_and_mul_args a = {.out = m->B2, .in = m->B1, .tokens = T, .d = F, .act = m->desc->act, .dtype = m->opt.dtype};
    QILIN_TRY(qilin_act_and_mul(&a, m->stream));
    return linear(m, out, H, m->B2, F, down, NULL, T, H, F, false);
}

/* GPT-NeoX / GPT-J: out = fc_out(act(fc_in x + b)) + b. */
static qilin_status plain_mlp(qilin_model *m, layer *L, void *out, const void *x, int T) {
    int H = m->desc->hidden, F = m->desc->ffn_dim;
    QILIN_TRY(linear(m, m->B1, F, x, H, L->w[QILIN_W_UP], L->w[QILIN_W_UP_BIAS], T, F, H, false));
    qilin_activation_args a = {.out = m->B1, .in = m->B1, .n = (size_t)T * F, .act = m->desc->act, .dtype = m->opt.dtype};
    QILIN_TRY(qilin_activation(&a, m->stream));
    return linear(m, out, H, m->B1, F, L->w[QILIN_W_DOWN], L->w[QILIN_W_DOWN_BIAS], T, H, F, false);
}

static qilin_status moe(qilin_model *m, layer *L, void *out, const void *x, int T) {
    const qilin_model_desc *d = m->desc;
    int H = d->hidden, E = d->n_experts;
    QILIN_TRY(linear(m, m->router_logits, E, x, H, L->w[QILIN_W_ROUTER], NULL, T, E, H, true));
    qilin_moe_route_args r = {.topk_ids = m->topk_ids, .topk_weights = m->topk_w, .logits = m->router_logits,
                              .correction_bias = L->router_bias, .tokens = T, .n_experts = E, .top_k = d->top_k,
                              .n_group = d->n_group > 0 ? d->n_group : 1, .topk_group = d->topk_group > 0 ? d->topk_group : 1,
                              .score = d->moe_score, .group_score = d->moe_group_score,
                              .renormalize = d->norm_topk_prob, .routed_scale = d->routed_scale};
    QILIN_TRY(qilin_moe_route(&r, m->stream));
    qilin_moe_experts_args e = {.out = out, .accumulate = false, .x = x, .topk_ids = m->topk_ids,
                                .topk_weights = m->topk_w, .gate_up = L->exp_gate_up, .down = L->exp_down,
                                .tokens = T, .top_k = d->top_k, .n_experts = E, .hidden = H, .ffn_dim = d->moe_ffn_dim,
                                .act = d->act, .dtype = m->opt.dtype, .workspace = m->moe_ws,
                                .workspace_bytes = m->moe_ws_bytes};
    QILIN_TRY(qilin_moe_experts(&e, m->stream));
    if (!L->shared_gate_up) return QILIN_OK;
    void *shared = m->B3;
    QILIN_TRY(gated_mlp(m, shared, x, L->shared_gate_up, L->w[QILIN_W_SHARED_DOWN], T, d->shared_ffn_dim));
    if (L->w[QILIN_W_SHARED_EXPERT_GATE]) { /* Qwen2-MoE: out += sigmoid(x . w_g) * shared */
        void *g = m->B4;
        QILIN_TRY(linear(m, g, 1, x, H, L->w[QILIN_W_SHARED_EXPERT_GATE], NULL, T, 1, H, false));
        qilin_sigmoid_gate_add_args a = {.out = out, .y = shared, .gate = g, .tokens = T, .dim = H, .dtype = m->opt.dtype};
        return qilin_sigmoid_gate_add(&a, m->stream);
    }
    qilin_add_args a = {.out = out, .a = out, .b = shared, .n = (size_t)T * H, .dtype = m->opt.dtype};
    return qilin_add(&a, m->stream);
}

static qilin_status ffn(qilin_model *m, int l, void *out, const void *x, int T) {
    layer *L = &m->layers[l];
    switch (m->desc->layer_ffn[l]) {
    case QILIN_FFN_GATED: return gated_mlp(m, out, x, L->gate_up, L->w[QILIN_W_DOWN], T, m->desc->ffn_dim);
    case QILIN_FFN_PLAIN: return plain_mlp(m, L, out, x, T);
    case QILIN_FFN_MOE: return moe(m, L, out, x, T);
    }
    return qilin_error(QILIN_ERR_INTERNAL, "layer %d: unknown FFN kind", l);
}

/* ---- one step ----------------------------------------------------------- */

static qilin_status layer_forward(qilin_model *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden;
    float eps = d->norm_eps;
    /* N = norm1(R), where R first absorbs the previous layer's output X */
    QILIN_TRY(norm(m, m->N, l > 0 ? m->R : NULL, l > 0 ? m->X : m->R, L->w[QILIN_W_ATTN_NORM],
                   L->w[QILIN_W_ATTN_NORM_BIAS], T, H, eps));
    QILIN_TRY(d->attn == QILIN_ATTN_MLA ? mla_attention(m, l, s) : gqa_attention(m, l, s));
    if (d->block != QILIN_BLOCK_SEQUENTIAL) {
        /* parallel residual: X = attn + ffn, both reading the block input (HF
         * adds the two branches first, then the residual: so does the next norm) */
        const void *ffn_in = m->N;
        if (d->block == QILIN_BLOCK_PARALLEL) { /* GPT-NeoX: a second norm of R */
            QILIN_TRY(norm(m, m->B4, NULL, m->R, L->w[QILIN_W_FFN_NORM], L->w[QILIN_W_FFN_NORM_BIAS], T, H, eps));
            ffn_in = m->B4;
        }
        QILIN_TRY(ffn(m, l, m->B3, ffn_in, T)); /* uses B1, B2 only */
        qilin_add_args a = {.out = m->X, .a = m->X, .b = m->B3, .n = (size_t)T * H, .dtype = m->opt.dtype};
        return qilin_add(&a, m->stream);
    }
    QILIN_TRY(norm(m, m->N, m->R, m->X, L->w[QILIN_W_FFN_NORM], L->w[QILIN_W_FFN_NORM_BIAS], T, H, eps));
    return ffn(m, l, m->X, m->N, T);
}

/* Checks the batch against the model's limits and uploads its index arrays. */
static qilin_status prepare_step(qilin_model *m, const qilin_batch *b, step *s, int *kv_len) {
    const qilin_model_desc *d = m->desc;
    const qilin_model_options *o = &m->opt;
    if (b->n_seqs < 1 || b->n_seqs > o->max_seqs)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: %d sequences; this model was loaded for 1 to %d",
                           b->n_seqs, o->max_seqs);
    int T = 0, max_q = 0, max_kv = 0;
    bool decode = true;
    for (int i = 0; i < b->n_seqs; i++) {
        int n = b->n_tokens[i], start = b->start_pos[i], slot = b->slot[i];
        if (n < 1) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: sequence %d has %d new tokens", i, n);
        if (slot < 0 || slot >= o->max_seqs)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: sequence %d: slot %d outside [0, %d)", i, slot,
                               o->max_seqs);
        for (int j = 0; j < i; j++)
            if (b->slot[j] == slot)
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: sequences %d and %d share slot %d", j, i, slot);
        if (start < 0 || (int64_t)start + n > o->max_ctx)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_forward: sequence %d: %d cached + %d new tokens exceed the context of %d", i, start,
                               n, o->max_ctx);
        kv_len[i] = start + n;
        T += n;
        if (n > max_q) max_q = n;
        if (kv_len[i] > max_kv) max_kv = kv_len[i];
        if (n != 1) decode = false;
    }
    if (T > o->max_batch_tokens)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: %d new tokens in one step; the limit is %d", T,
                           o->max_batch_tokens);
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= d->vocab)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_forward: token %d has id %d; the vocabulary has %d ids",
                               t, b->tokens[t], d->vocab);
    int *pos = malloc((size_t)T * sizeof *pos), *tslot = malloc((size_t)T * sizeof *tslot);
    int *q_start = malloc((size_t)(b->n_seqs + 1) * sizeof *q_start), *single = malloc((size_t)b->n_seqs * 4 * sizeof *single);
    qilin_status st = QILIN_OK;
    if (!pos || !tslot || !q_start || !single) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory");
    for (int i = 0, t = 0; st == QILIN_OK && i < b->n_seqs; i++) {
        q_start[i] = t;
        single[4 * i + 0] = 0, single[4 * i + 1] = b->n_tokens[i], single[4 * i + 2] = kv_len[i], single[4 * i + 3] = 0;
        for (int j = 0; j < b->n_tokens[i]; j++, t++) pos[t] = b->start_pos[i] + j, tslot[t] = b->slot[i];
        q_start[i + 1] = t;
    }
    size_t ns = (size_t)b->n_seqs * sizeof(int);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_tokens, b->tokens, (size_t)T * sizeof(int), m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_positions, pos, (size_t)T * sizeof(int), m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_token_slot, tslot, (size_t)T * sizeof(int), m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_q_start, q_start, ns + sizeof(int), m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_kv_len, kv_len, ns, m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_seq_slot, b->slot, ns, m->stream);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_single, single, 4 * ns, m->stream);
    if (st == QILIN_OK) st = qilin_stream_synchronize(m->stream); /* the host arrays are freed next */
    free(pos), free(tslot), free(q_start), free(single);
    *s = (step){.T = T, .n_seqs = b->n_seqs, .max_q = max_q, .max_kv = max_kv, .decode = decode, .b = b, .kv_len = kv_len};
    return st;
}

/* Runs the layers and leaves fp32 logits of `rows` rows in m->logits. */
static qilin_status run_step(qilin_model *m, const qilin_batch *b, int *rows_out) {
    const qilin_model_desc *d = m->desc;
    int *kv_len = malloc((size_t)b->n_seqs * sizeof *kv_len);
    if (!kv_len) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory");
    step s = {0};
    qilin_status st = prepare_step(m, b, &s, kv_len);
    int T = s.T, H = d->hidden;
    if (st == QILIN_OK) {
        qilin_embedding_args e = {.out = m->R, .table = m->global[QILIN_W_EMBED], .ids = m->d_tokens, .error = NULL,
                                  .tokens = T, .dim = H, .vocab = d->vocab, .dtype = m->opt.dtype,
                                  .out_dtype = m->opt.dtype};
        st = qilin_embedding(&e, m->stream);
    }
    for (int l = 0; st == QILIN_OK && l < d->n_layers; l++) {
        st = layer_forward(m, l, &s);
        if (st != QILIN_OK) st = qilin_error_context(st, "layer %d", l);
    }
    /* the rows that get logits: all, or the last token of each sequence */
    int rows = b->all_logits ? T : b->n_seqs;
    const void *final_in = m->N;
    if (st == QILIN_OK)
        st = norm(m, m->N, m->R, m->X, m->global[QILIN_W_FINAL_NORM], m->global[QILIN_W_FINAL_NORM_BIAS], T, H,
                  d->norm_eps);
    if (st == QILIN_OK && !b->all_logits) {
        int *last = malloc((size_t)b->n_seqs * sizeof *last);
        if (!last) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_forward: host memory");
        for (int i = 0, t = 0; st == QILIN_OK && i < b->n_seqs; i++) t += b->n_tokens[i], last[i] = t - 1;
        if (st == QILIN_OK) st = qilin_memcpy_h2d(m->d_rows, last, (size_t)b->n_seqs * sizeof(int), m->stream);
        if (st == QILIN_OK) st = qilin_stream_synchronize(m->stream);
        free(last);
        qilin_gather_rows_args g = {.out = m->B1, .in = m->N, .rows = m->d_rows, .n = b->n_seqs, .cols = H,
                                    .ld_out = H, .ld_in = H, .dtype = m->opt.dtype};
        if (st == QILIN_OK) st = qilin_gather_rows(&g, m->stream);
        final_in = m->B1;
    }
    if (st == QILIN_OK)
        st = linear(m, m->logits, d->vocab, final_in, H, m->global[QILIN_W_LM_HEAD], m->global[QILIN_W_LM_HEAD_BIAS],
                    rows, d->vocab, H, true);
    free(kv_len);
    *rows_out = rows;
    return st;
}

qilin_status qilin_forward(qilin_model *m, const qilin_batch *b, float *logits) {
    int rows = 0;
    QILIN_TRY(run_step(m, b, &rows));
    QILIN_TRY(qilin_memcpy_d2h(logits, m->logits, (size_t)rows * m->desc->vocab * sizeof(float), m->stream));
    return qilin_stream_synchronize(m->stream);
}

/* ---- generation --------------------------------------------------------- */

static qilin_status sample(qilin_model *m, int rows, const qilin_sampling_params *params, int *ids) {
    QILIN_TRY(qilin_memcpy_h2d(m->d_params, params, (size_t)rows * sizeof *params, m->stream));
    qilin_sample_args a = {.out_ids = m->d_sample_ids, .logits = m->logits, .ld = m->desc->vocab, .rows = rows,
                           .vocab = m->desc->vocab, .params = m->d_params, .workspace = m->sample_ws,
                           .workspace_bytes = m->sample_ws_bytes};
    QILIN_TRY(qilin_sample(&a, m->stream));
    QILIN_TRY(qilin_memcpy_d2h(ids, m->d_sample_ids, (size_t)rows * sizeof(int), m->stream));
    return qilin_stream_synchronize(m->stream);
}

/* Prefills sequence i's prompt in chunks of at most max_batch_tokens and
 * samples its first new token from the last chunk's logits. */
static qilin_status prefill_one(qilin_model *m, int slot, const int *prompt, int len, const qilin_sampling_params *params,
                                int *first) {
    int chunk_max = m->opt.max_batch_tokens;
    for (int start = 0; start < len; start += chunk_max) {
        int n = len - start < chunk_max ? len - start : chunk_max, rows = 0;
        qilin_batch b = {.n_seqs = 1, .slot = &slot, .start_pos = &start, .n_tokens = &n, .tokens = prompt + start};
        QILIN_TRY(run_step(m, &b, &rows));
    }
    return sample(m, 1, params, first);
}

qilin_status qilin_generate_stream(qilin_model *m, int n_seqs, const int *const *prompts, const int *prompt_lens,
                                   const qilin_sampling_params *params, int max_new, qilin_token_fn on_token,
                                   void *user) {
    if (n_seqs < 1 || n_seqs > m->opt.max_seqs || max_new < 0 || !on_token)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: %d sequences (max %d), %d new tokens%s", n_seqs,
                           m->opt.max_seqs, max_new, on_token ? "" : ", no callback");
    for (int i = 0; i < n_seqs; i++) {
        if (prompt_lens[i] < 1)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: prompt %d is empty", i);
        if ((int64_t)prompt_lens[i] + max_new > m->opt.max_ctx)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_generate: prompt %d has %d tokens; with %d new ones that exceeds the context of %d",
                               i, prompt_lens[i], max_new, m->opt.max_ctx);
    }
    if (max_new == 0) return QILIN_OK;
    /* live[k] is the k-th sequence still generating; its arrays are compacted as sequences end */
    int *live = malloc((size_t)n_seqs * sizeof *live), *slot = malloc((size_t)n_seqs * sizeof *slot);
    int *start = malloc((size_t)n_seqs * sizeof *start), *n_tok = malloc((size_t)n_seqs * sizeof *n_tok);
    int *tokens = malloc((size_t)n_seqs * sizeof *tokens), *next = malloc((size_t)n_seqs * sizeof *next);
    qilin_sampling_params *p = malloc((size_t)n_seqs * sizeof *p);
    qilin_status st = QILIN_OK;
    if (!live || !slot || !start || !n_tok || !tokens || !next || !p)
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_generate");
    int n_live = 0;
    for (int i = 0; st == QILIN_OK && i < n_seqs; i++) {
        p[0] = params[i];
        int first = 0;
        st = prefill_one(m, i, prompts[i], prompt_lens[i], &p[0], &first);
        if (st == QILIN_OK && on_token(user, i, first) && max_new > 1) {
            live[n_live] = i, slot[n_live] = i, start[n_live] = prompt_lens[i], n_tok[n_live] = 1;
            tokens[n_live++] = first;
        }
    }
    /* decode: one token for every live sequence per step */
    for (int j = 1; st == QILIN_OK && n_live > 0 && j < max_new; j++) {
        qilin_batch b = {.n_seqs = n_live, .slot = slot, .start_pos = start, .n_tokens = n_tok, .tokens = tokens};
        int rows = 0;
        st = run_step(m, &b, &rows);
        for (int k = 0; st == QILIN_OK && k < n_live; k++) p[k] = params[live[k]], p[k].step = params[live[k]].step + (uint64_t)j;
        if (st == QILIN_OK) st = sample(m, n_live, p, next);
        int kept = 0;
        for (int k = 0; st == QILIN_OK && k < n_live; k++) {
            if (!on_token(user, live[k], next[k]) || j + 1 == max_new) continue;
            live[kept] = live[k], slot[kept] = slot[k], start[kept] = start[k] + 1, n_tok[kept] = 1;
            tokens[kept++] = next[k];
        }
        n_live = kept;
    }
    free(live), free(slot), free(start), free(n_tok), free(tokens), free(next), free(p);
    return st;
}

typedef struct fixed_output {
    int *out, n_new, *count;
} fixed_output;

static bool store_token(void *user, int seq, int token) {
    fixed_output *f = user;
    f->out[seq * f->n_new + f->count[seq]++] = token;
    return true;
}

qilin_status qilin_generate(qilin_model *m, int n_seqs, const int *const *prompts, const int *prompt_lens,
                            const qilin_sampling_params *params, int n_new, int *out) {
    if (n_seqs < 1 || n_seqs > m->opt.max_seqs)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_generate: %d sequences (max %d)", n_seqs, m->opt.max_seqs);
    int *count = calloc((size_t)n_seqs, sizeof *count);
    if (!count) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_generate");
    fixed_output f = {.out = out, .n_new = n_new, .count = count};
    qilin_status st = qilin_generate_stream(m, n_seqs, prompts, prompt_lens, params, n_new, store_token, &f);
    free(count);
    return st;
}
