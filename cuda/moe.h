/* moe.h — Mixture-of-Experts routing and expert dispatch (moe.cu);
 * models.md §1.7, §4.3, §5.3, §6.4, §7.6, §7.7.
 *
 * A MoE layer is: router logits (a GEMM with fp32 output, by the caller) ->
 * qilin_moe_route (top-k experts and their weights per token) ->
 * qilin_moe_experts (group the token rows by expert, each expert's gated FFN
 * as grouped GEMMs, weighted combine back in token order) -> plus the shared
 * expert(s), run by the caller as a dense MLP. */
#ifndef QILIN_MOE_H
#define QILIN_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "activation.h"
#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_moe_score {
    QILIN_MOE_SOFTMAX = 0,        /* Mixtral, Qwen MoE, DeepSeek-V2 */
    QILIN_MOE_SIGMOID,            /* DeepSeek-V3/R1, Kimi K2, Moonlight */
} qilin_moe_score;

typedef enum qilin_moe_group_score {
    QILIN_MOE_GROUP_MAX = 0,      /* V2 group_limited_greedy: max score in the group */
    QILIN_MOE_GROUP_TOP2_SUM,     /* V3 noaux_tc: sum of the two largest biased scores */
} qilin_moe_group_score;

/* Per token: scores = softmax(logits) or sigmoid(logits) (fp32); selection
 * on scores + correction_bias (sigmoid only; NULL = none); with n_group > 1
 * experts are split into n_group equal groups, groups ranked by group_score
 * and all but the best topk_group masked to -inf (the authors' fill value,
 * models.md §13.3); then the top_k experts by masked selection score.
 * Weights are the *unbiased* scores of the chosen experts, divided by their
 * sum when renormalize, then times routed_scale. Ties go to the lower expert
 * index. Output in descending selection score order. Limits: n_experts <=
 * 2048, top_k <= 32, n_group <= 32. */
typedef struct qilin_moe_route_args {
    int *topk_ids;                /* [tokens, top_k] int32 */
    float *topk_weights;          /* [tokens, top_k] fp32 */
    const float *logits;          /* [tokens, n_experts] fp32 */
    const float *correction_bias; /* [n_experts] fp32 or NULL */
    int tokens, n_experts, top_k;
    int n_group, topk_group;      /* 1, 1 = no grouping */
    qilin_moe_score score;
    qilin_moe_group_score group_score;
    bool renormalize;
    float routed_scale;           /* 1 = none */
} qilin_moe_route_args;
qilin_status qilin_moe_route(const qilin_moe_route_args *args, qilin_stream *stream);

/* Which kernel runs the expert GEMMs. AUTO: tensor cores (mma.sync,
 * moe_gemm_mma.cuh) for bf16 and f16 when hidden and ffn_dim are multiples
 * of 8 and x, gate_up, down and the workspace are 16-byte aligned;
 * otherwise, and always for fp32 (exact fp32 FMA, no tf32), CUDA cores. */
typedef enum qilin_moe_gemm {
    QILIN_MOE_GEMM_AUTO = 0,
    QILIN_MOE_GEMM_CUDA_CORES,    /* force the CUDA-core kernel (tests, benchmarks) */
    QILIN_MOE_GEMM_TENSOR_CORES,  /* force tensor cores; an unsupported shape is an error */
} qilin_moe_gemm;

/* How the routed experts' weights are stored (qilin_moe_experts_args.wq).
 * Quantized weights are dequantized one k-slab at a time in shared memory
 * (w * scale rounded once to dtype, as host/quant.c's dequantization to
 * dtype) and multiplied on tensor cores; they never exist as a dtype copy
 * in device memory. Layouts are the checkpoints' own, sliced along the
 * expert intermediate dim (tensor parallelism) or whole (expert
 * parallelism); nothing is repacked. */
typedef enum qilin_moe_wq {
    QILIN_MOE_W_DENSE = 0,       /* dtype, as the activations */
    QILIN_MOE_W_FP8_BLOCK,       /* e4m3fn bytes (DeepSeek-V3 / Kimi K2 FP8), f32 scales per 128 x 128 block */
    QILIN_MOE_W_INT4_GROUP,      /* compressed-tensors pack-quantized (Kimi K2-Thinking): little-endian int32
                                    words of 8 nibbles along k, value = nibble - 8, one bf16 scale per group */
} qilin_moe_wq;

/* out[t, :] (+)= sum_j topk_weights[t, j] * E_{topk_ids[t, j]}(x[t, :]) with
 * E_e(x) = down_e(act(gate_e(x)) * up_e(x)). Expert weights are stacked:
 * gate_up [n_experts, 2 * ffn_dim, hidden] (rows [0, ffn_dim) the gate,
 * [ffn_dim, 2 ffn_dim) the up projection — one GEMM for both), down
 * [n_experts, hidden, ffn_dim], row-major, dtype. Rows are grouped by expert
 * on the device (no host sync); each expert's rows run as tiles of a grouped
 * GEMM with fp32 accumulation; the combine sums each token's k results in a
 * fixed order (deterministic, no atomics). expert_counts, when set, receives
 * the rows routed to each expert (load statistics). Expert ids outside
 * [0, n_experts) are skipped and their number added to *bad_ids when set
 * (the caller zeroes it; the kernel never clears it). Limits: n_experts <=
 * 2048, top_k <= 32. */
typedef struct qilin_moe_experts_args {
    void *out;                    /* [tokens, hidden] */
    bool accumulate;              /* out += result instead of out = result */
    const void *x;                /* [tokens, hidden] */
    const int *topk_ids;          /* [tokens, top_k] */
    const float *topk_weights;    /* [tokens, top_k] */
    const void *gate_up;          /* [n_experts, 2 * ffn_dim, hidden] */
    const void *down;             /* [n_experts, hidden, ffn_dim] */
    int tokens, top_k, n_experts, hidden, ffn_dim;
    qilin_act act;                /* silu for every target model */
    qilin_dtype dtype;            /* x, out, weights alike: f32, bf16, f16 */
    int *expert_counts;           /* [n_experts] int32 device, or NULL */
    int *bad_ids;                 /* device int, or NULL */
    void *workspace;              /* qilin_moe_experts_workspace bytes */
    size_t workspace_bytes;
    qilin_moe_gemm gemm;          /* AUTO (0) unless testing or benchmarking */
    /* Quantized experts (wq != DENSE; tensor cores only: dtype bf16 or f16,
     * hidden and ffn_dim multiples of 8, weights 4-byte aligned). gate_up and
     * down then hold the quantized data in the shapes above (FP8: one byte
     * per weight; INT4: [.., K / 8] int32 words), and
     *   FP8:  gate_up_scale f32 [E, 2, ceil((gate_up_row_off + ffn_dim) / 128), ceil(hidden / 128)]
     *         (gate blocks, then up blocks), down_scale f32
     *         [E, ceil(hidden / 128), ceil((down_col_off + ffn_dim) / 128)];
     *   INT4: gate_up_scale bf16 [E, 2 ffn_dim, ceil(hidden / group)], down_scale bf16
     *         [E, hidden, ceil((down_col_off + ffn_dim) / group)].
     * gate_up_row_off (FP8) / down_col_off: where this GPU's first ffn row /
     * column sits in its 128-block or group when the tensor-parallel slice
     * starts mid-block (0..127, or 0..group-1, a multiple of 8). */
    qilin_moe_wq wq;
    const void *gate_up_scale, *down_scale;
    int gate_up_row_off, down_col_off;
    int group;                    /* INT4: k per scale, a multiple of 8 */
} qilin_moe_experts_args;
qilin_status qilin_moe_experts(const qilin_moe_experts_args *args, qilin_stream *stream);
size_t qilin_moe_experts_workspace(int tokens, int top_k, int n_experts, int hidden,
                                   int ffn_dim, qilin_dtype dtype);

/* Expert parallelism: out[i] = ids[i] - first. A GPU holding experts
 * [first, first + n) hands these local ids to qilin_moe_experts (with
 * n_experts = n), which skips every id of another GPU's experts as out of
 * range. */
typedef struct qilin_moe_local_ids_args {
    int *out;                     /* [n] int32 */
    const int *ids;               /* [n] int32, global expert ids */
    int n, first;
} qilin_moe_local_ids_args;
qilin_status qilin_moe_local_ids(const qilin_moe_local_ids_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_MOE_H */
