/* predict.h — an analytical roofline for one forward step of a planned model:
 * how many bytes each GPU must read and how many FLOPs it must do, how much
 * the GPUs must exchange, and the step time and tokens/s that implies on a
 * named GPU (`qilin plan --predict`; `qilin bench` prints measured against it).
 *
 * It is a lower bound on time, not a simulation: every byte is read once at
 * the datasheet bandwidth, every FLOP runs at the datasheet tensor-core peak,
 * and memory and math overlap perfectly within the step:
 *
 *   t_step = max(bytes / hbm_bw, flops_bf16 / peak_bf16 + flops_fp8 / peak_fp8)
 *            + Σ_collectives (wire_bytes / link_bw + link_latency)
 *
 * taken on the slowest GPU (GPU 0: it holds the vocabulary padding). The
 * collectives are those the forward pass issues (host/forward_layers.c) and
 * run after each other, not overlapped with compute.
 *
 * Bytes per GPU of a step with T new tokens in S sequences:
 *   weights  every slice of the plan in its storage format (FP8 / INT4 scales
 *            included), except: a routed expert's slice counts with the
 *            probability that at least one of the T tokens picks it,
 *            1 - (1 - k/E)^T, so the expected distinct experts touched per
 *            MoE layer is E·(1 - (1 - k/E)^T) (uniform routing, independent
 *            tokens: perf.md §2.3); the embedding counts the T rows it looks
 *            up (all of it when tied to the lm_head, which reads it whole).
 *   KV       decode: every sequence reads `context` positions of its cache
 *            (qilin_kv_bytes_per_token_layer × layers; sliding windows are
 *            not taken into account); prefill: the T new
 *            positions are written once (flash attention keeps the reads on
 *            chip).
 * FLOPs per GPU: 2 × the multiply-adds of its weight slices for each token
 * that uses them (routed experts: k/E of the tokens; lm_head: one row per
 * sequence), plus attention over the local heads: GQA 2·(hd + hd_v) per head
 * and (query, key) pair; MLA absorbed 2·(2r + dr) (perf.md §2.4). FP8
 * weights run at the FP8 rate where the GPU has one, everything else
 * (BF16, and INT4 as W4A16) at the BF16 rate.
 *
 * Thread safety: pure functions. */
#ifndef QILIN_HOST_PREDICT_H
#define QILIN_HOST_PREDICT_H

#include "cuda/status.h"
#include "host/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Published figures of one GPU model; `source` says where each comes from. */
typedef struct qilin_gpu_perf {
    const char *name;        /* "H100" */
    double hbm_bytes_per_s;  /* HBM bandwidth */
    double bf16_flops_per_s; /* dense BF16 tensor-core peak */
    double fp8_flops_per_s;  /* dense FP8 tensor-core peak; 0: no FP8 (BF16 rate used) */
    double link_bytes_per_s; /* NVLink, per direction per GPU */
    double link_latency_s;   /* one small collective */
    uint64_t memory_bytes;   /* HBM capacity */
    const char *source;
} qilin_gpu_perf;

/* The GPU named `name` (H100, H200, A100; case-insensitive), or NULL. */
const qilin_gpu_perf *qilin_gpu_perf_find(const char *name);
/* "H100, H200, A100" — for messages. */
const char *qilin_gpu_perf_names(void);

typedef struct qilin_step_prediction {
    /* the step */
    int64_t tokens, seqs, context;
    double experts_touched; /* expected distinct routed experts per MoE layer (all GPUs); 0 = dense */
    /* per GPU (the slowest) */
    double weight_bytes, kv_bytes, bytes;
    double flops_bf16, flops_fp8, flops;
    double attn_flops; /* part of flops_bf16 */
    int n_collectives;
    double comm_bytes; /* bytes each GPU sends over NVLink */
    /* times in seconds */
    double t_memory, t_math, t_comm, t_step;
    double tokens_per_s; /* decode: seqs / t_step; prefill: tokens / t_step */
    const char *bound;   /* "memory", "math" */
} qilin_step_prediction;

/* One decode step: `batch` sequences, one new token each, each reading
 * `context` positions of KV cache of kv_elem_bytes per element;
 * activations of act_elem_bytes travel in the collectives. Bad sizes (batch
 * or context < 1, element bytes outside 1..4) are QILIN_ERR_INVALID_ARGUMENT. */
qilin_status qilin_predict_decode(const qilin_plan *p, const qilin_gpu_perf *gpu, int64_t batch,
                                  int64_t context, int kv_elem_bytes, int act_elem_bytes,
                                  qilin_step_prediction *out);

/* One prefill step of a single `prompt`-token sequence (causal attention:
 * prompt·(prompt + 1)/2 query-key pairs per layer and head). */
qilin_status qilin_predict_prefill(const qilin_plan *p, const qilin_gpu_perf *gpu, int64_t prompt,
                                   int kv_elem_bytes, int act_elem_bytes, qilin_step_prediction *out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_PREDICT_H */
