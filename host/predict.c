/* predict.c — the roofline of predict.h: bytes, FLOPs and collectives of one
 * forward step per GPU, from a sharding plan, and the time they take at a
 * GPU's published rates. */
#define _POSIX_C_SOURCE 200809L /* strcasecmp */
#include "host/predict.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Device figures, all from /work/shared/reference/perf.md (the source tags are
 * its §8 index). Bandwidth and BF16 peak match scripts/time_model.py's
 * PROFILES, so the launch-level and the model-level predictions agree on the
 * device. Memory sizes are what `qilin plan --gpus` has always used.
 *   HBM, BF16 and FP8 dense peaks: §1.1 table (datasheets S1 H100 SXM5,
 *     S2 H200 SXM, S3 A100 SXM4 80GB); sparse figures are 2x and not used.
 *   NVLink: §1.1, 450 GB/s per direction (NVLink4, 18 links) on H100/H200,
 *     300 GB/s (NVLink3) on A100 — line rate; NCCL reaches ~82 % (§1.2).
 *   Per-collective latency: §1.3, 6 µs for a small NCCL NVLSTree
 *     all-reduce on H100 inside CUDA graphs (S22); the A100 figure is the
 *     same assumption. One-shot 8-GPU all-reduces measured ~17 µs (S23), so
 *     this is the optimistic end. */
static const qilin_gpu_perf gpus[] = {
    {"H100", 3.35e12, 989e12, 1979e12, 450e9, 6e-6, 80ull << 30,
     "perf.md 1.1: H100 SXM5 datasheet (S1): 3.35 TB/s HBM3, 989/1979 TFLOP/s BF16/FP8 dense, "
     "NVLink4 450 GB/s per direction; 6 us per collective (1.3, S22)"},
    {"H200", 4.8e12, 989e12, 1979e12, 450e9, 6e-6, 141ull << 30,
     "perf.md 1.1: H200 SXM datasheet (S2): 4.8 TB/s HBM3e, 989/1979 TFLOP/s BF16/FP8 dense, "
     "NVLink4 450 GB/s per direction; 6 us per collective (1.3, S22)"},
    {"A100", 2.039e12, 312e12, 0, 300e9, 6e-6, 80ull << 30,
     "perf.md 1.1: A100 SXM4 80GB datasheet (S3): 2.039 TB/s HBM2e, 312 TFLOP/s BF16 dense, no FP8 "
     "(FP8 weights run at the BF16 rate), NVLink3 300 GB/s per direction; 6 us per collective (assumed as "
     "H100)"},
};

const qilin_gpu_perf *qilin_gpu_perf_find(const char *name) {
    for (size_t i = 0; name && i < sizeof gpus / sizeof gpus[0]; i++)
        if (strcasecmp(name, gpus[i].name) == 0) return &gpus[i];
    return NULL;
}

const char *qilin_gpu_perf_names(void) { return "H100, H200, A100"; }

/* ---- the step's shape ---------------------------------------------------- */

typedef struct step_shape {
    double tokens;       /* new tokens in the step (T) */
    double seqs;         /* sequences, = rows of logits (S) */
    double kv_positions; /* KV positions moved through HBM, all sequences */
    double attn_pairs;   /* (query, key) pairs per layer and head */
} step_shape;

static bool is_routed_expert(qilin_slot s) {
    return s == QILIN_W_EXP_GATE || s == QILIN_W_EXP_UP || s == QILIN_W_EXP_DOWN;
}

/* Elements of a slice: the spec's, scaled by the share of the split dim. */
static double slice_elems(const qilin_tensor_spec *t, const qilin_shard_slice *s) {
    double n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= (double)t->shape[i];
    if (s->dim >= 0 && t->shape[s->dim] > 0) n *= (double)s->count / (double)t->shape[s->dim];
    return n;
}

/* Probability that a given routed expert is picked by at least one of T
 * tokens, each picking k of E uniformly (perf.md §2.3). */
static double expert_touched(const qilin_model_desc *d, double tokens) {
    if (d->n_experts <= 0 || d->top_k <= 0) return 0;
    return 1.0 - pow(1.0 - (double)d->top_k / d->n_experts, tokens);
}

/* Weight bytes and matmul FLOPs of GPU `g` for the step. */
static void gpu_weights(const qilin_plan *p, int g, const step_shape *sh, bool has_fp8,
                        qilin_step_prediction *out) {
    const qilin_model_desc *d = p->desc;
    const qilin_gpu_plan *gp = &p->gpus[g];
    double touched = expert_touched(d, sh->tokens);
    double routed_share = d->n_experts > 0 ? (double)d->top_k / d->n_experts : 0;
    for (int i = 0; i < gp->n_slices; i++) {
        const qilin_shard_slice *s = &gp->slices[i];
        const qilin_tensor_spec *t = &d->tensors[s->spec];
        double bytes = (double)s->bytes, elems = slice_elems(t, s);
        double uses = t->n_dims >= 2 ? sh->tokens : 0; /* token rows multiplied by it */
        if (is_routed_expert(t->slot)) {
            bytes *= touched;
            uses = sh->tokens * routed_share;
        } else if (t->slot == QILIN_W_LM_HEAD) {
            uses = sh->seqs;
        } else if (t->slot == QILIN_W_EMBED) {
            if (d->tied_embeddings) { /* the lm_head reads it whole */
                uses = sh->seqs;
            } else { /* a lookup: the rows of the step's tokens */
                bytes *= fmin(1.0, sh->tokens / (d->vocab > 0 ? d->vocab : 1));
                uses = 0;
            }
        }
        out->weight_bytes += bytes;
        double flops = 2.0 * elems * uses;
        if (s->format == QILIN_WFMT_FP8_BLOCK && has_fp8)
            out->flops_fp8 += flops;
        else
            out->flops_bf16 += flops;
    }
}

/* Attention FLOPs over GPU g's query heads. */
static double gpu_attention_flops(const qilin_plan *p, int g, const step_shape *sh) {
    const qilin_model_desc *d = p->desc;
    double per_pair;
    if (d->attn == QILIN_ATTN_MLA) /* absorbed: scores over r + dr, values over r */
        per_pair = 2.0 * (2.0 * d->kv_lora_rank + d->qk_rope_dim);
    else
        per_pair = 2.0 * (d->head_dim + (d->head_dim_v > 0 ? d->head_dim_v : d->head_dim));
    return per_pair * sh->attn_pairs * p->gpus[g].n_q_heads * d->n_layers;
}

/* ---- collectives, as host/forward_layers.c issues them ------------------- */

typedef struct comm_cost {
    int calls;
    double bytes; /* sent per GPU */
} comm_cost;

static void all_reduce(comm_cost *c, int n, double bytes) { /* ring: 2(n-1)/n of the buffer */
    c->calls++;
    c->bytes += 2.0 * (n - 1) / n * bytes;
}
static void all_gather(comm_cost *c, int n, double chunk) { /* each GPU's chunk to n-1 others */
    c->calls++;
    c->bytes += (double)(n - 1) * chunk;
}
static void all_to_all(comm_cost *c, int n, double chunk) { /* chunk per destination */
    c->calls++;
    c->bytes += (double)(n - 1) * chunk;
}

static comm_cost step_comm(const qilin_plan *p, const step_shape *sh, int act_bytes) {
    const qilin_model_desc *d = p->desc;
    comm_cost c = {0, 0};
    int n = p->n_gpus;
    if (n <= 1) return c;
    double row = (double)d->hidden * act_bytes;
    all_reduce(&c, n, sh->tokens * row); /* vocab-parallel embedding */
    bool a2a = p->opt.ep && p->opt.ep_all_to_all;
    for (int l = 0; l < d->n_layers; l++) {
        if (d->block == QILIN_BLOCK_SEQUENTIAL) all_reduce(&c, n, sh->tokens * row); /* o_proj */
        all_reduce(&c, n, sh->tokens * row); /* down projections (parallel blocks: both) */
        if (a2a && d->layer_ffn[l] == QILIN_FFN_MOE) {
            /* each GPU routes ceil(T/n) rows; k choices spread evenly over n GPUs */
            double rows = ceil(ceil(sh->tokens / n) * d->top_k / n);
            all_gather(&c, n, (double)n * sizeof(int)); /* the count matrix */
            all_to_all(&c, n, rows * row);              /* rows out */
            all_to_all(&c, n, rows * sizeof(int));      /* their expert ids */
            all_to_all(&c, n, rows * row);              /* results back */
        }
    }
    double vocab_cols = ceil((double)d->vocab / n);
    all_gather(&c, n, sh->seqs * vocab_cols * 4.0); /* fp32 logits columns */
    return c;
}

/* ---- the step ------------------------------------------------------------ */

static qilin_status predict(const qilin_plan *p, const qilin_gpu_perf *gpu, const step_shape *sh,
                            int kv_elem_bytes, int act_elem_bytes, qilin_step_prediction *out) {
    memset(out, 0, sizeof *out);
    if (!p || !gpu) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "predict: no plan or no GPU figures");
    if (kv_elem_bytes < 1 || kv_elem_bytes > 4 || act_elem_bytes < 1 || act_elem_bytes > 4)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "predict: element bytes must be 1..4 (KV %d, activations %d)", kv_elem_bytes,
                           act_elem_bytes);
    const qilin_model_desc *d = p->desc;
    bool has_fp8 = gpu->fp8_flops_per_s > 0;
    double kv_per_pos =
        (double)qilin_kv_bytes_per_token_layer(d, p->opt.tp, kv_elem_bytes) * (double)d->n_layers;
    comm_cost c = step_comm(p, sh, act_elem_bytes);
    double t_comm = c.bytes / gpu->link_bytes_per_s + c.calls * gpu->link_latency_s;
    for (int g = 0; g < p->n_gpus; g++) {
        qilin_step_prediction r;
        memset(&r, 0, sizeof r);
        gpu_weights(p, g, sh, has_fp8, &r);
        r.kv_bytes = kv_per_pos * sh->kv_positions;
        r.bytes = r.weight_bytes + r.kv_bytes;
        r.attn_flops = gpu_attention_flops(p, g, sh);
        r.flops_bf16 += r.attn_flops;
        r.flops = r.flops_bf16 + r.flops_fp8;
        r.t_memory = r.bytes / gpu->hbm_bytes_per_s;
        r.t_math = r.flops_bf16 / gpu->bf16_flops_per_s + (has_fp8 ? r.flops_fp8 / gpu->fp8_flops_per_s : 0);
        r.t_comm = t_comm;
        r.t_step = fmax(r.t_memory, r.t_math) + t_comm;
        if (g == 0 || r.t_step > out->t_step) *out = r;
    }
    out->tokens = (int64_t)sh->tokens;
    out->seqs = (int64_t)sh->seqs;
    out->experts_touched = d->n_experts * expert_touched(d, sh->tokens);
    out->n_collectives = c.calls;
    out->comm_bytes = c.bytes;
    out->bound = out->t_math > out->t_memory ? "math" : "memory";
    return QILIN_OK;
}

qilin_status qilin_predict_decode(const qilin_plan *p, const qilin_gpu_perf *gpu, int64_t batch,
                                  int64_t context, int kv_elem_bytes, int act_elem_bytes,
                                  qilin_step_prediction *out) {
    if (batch < 1 || context < 1 || batch > (1 << 30) || context > (1 << 30)) {
        memset(out, 0, sizeof *out);
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "predict: batch %lld and context %lld must be 1..2^30",
                           (long long)batch, (long long)context);
    }
    step_shape sh = {(double)batch, (double)batch, (double)batch * context, (double)batch * context};
    QILIN_TRY(predict(p, gpu, &sh, kv_elem_bytes, act_elem_bytes, out));
    out->context = context;
    out->tokens_per_s = (double)batch / out->t_step;
    return QILIN_OK;
}

qilin_status qilin_predict_prefill(const qilin_plan *p, const qilin_gpu_perf *gpu, int64_t prompt,
                                   int kv_elem_bytes, int act_elem_bytes, qilin_step_prediction *out) {
    if (prompt < 1 || prompt > (1 << 30)) {
        memset(out, 0, sizeof *out);
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "predict: prompt %lld must be 1..2^30",
                           (long long)prompt);
    }
    double T = (double)prompt;
    step_shape sh = {T, 1, T, T * (T + 1) / 2};
    QILIN_TRY(predict(p, gpu, &sh, kv_elem_bytes, act_elem_bytes, out));
    out->context = prompt;
    out->tokens_per_s = T / out->t_step;
    return QILIN_OK;
}
