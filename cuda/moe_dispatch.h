/* moe_dispatch.h — all-to-all dispatch of MoE rows under expert
 * parallelism (moe_dispatch.cu).
 *
 * n ranks each hold experts_per_rank (E) whole experts; global expert e
 * lives on rank e / E as its local expert e % E. A rank routes its own rows
 * (its share of the tokens) and exchanges them with equal-chunk all-to-alls
 * (comm.h), so every destination gets a fixed `chunk` of C row slots from
 * every source:
 *
 *   qilin_moe_dispatch_count    position of each assignment (row, choice)
 *                               inside its destination's chunk, in (row,
 *                               choice) order, and per-destination counts
 *   (the caller all-gathers the counts and takes C = their maximum)
 *   qilin_moe_dispatch_pack     send rows [n, C, hidden] and the local
 *                               expert id of each [n, C] (-1: padding)
 *   (all-to-all rows and ids; the destination runs qilin_moe_experts on its
 *   n C rows with top_k 1, weight 1, padding skipped by id; all-to-all the
 *   results back)
 *   qilin_moe_dispatch_combine  out[t] = sum_j w[t, j] * returned row of
 *                               (t, j), fp32, one rounding; zeros for the
 *                               tokens outside this rank's rows
 *
 * Every result is deterministic: no atomics, fixed summation order. */
#ifndef QILIN_MOE_DISPATCH_H
#define QILIN_MOE_DISPATCH_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For assignment s = row * top_k + j with global id e = topk_ids[s] in
 * [0, n_ranks * experts_per_rank): pos[s] = the number of earlier
 * assignments (smaller s) with the same destination e / experts_per_rank;
 * other ids get pos -1 and are not counted. counts[d] = assignments to d.
 * rows = 0 is allowed (counts become zeros). Limits: n_ranks <= 256. */
typedef struct qilin_moe_dispatch_count_args {
    int *pos;                     /* [rows, top_k] */
    int *counts;                  /* [n_ranks] */
    const int *topk_ids;          /* [rows, top_k] global expert ids */
    int rows, top_k, n_ranks, experts_per_rank;
} qilin_moe_dispatch_count_args;
qilin_status qilin_moe_dispatch_count(const qilin_moe_dispatch_count_args *args, qilin_stream *stream);

/* send[d, pos[s], :] = x[row, :] and send_ids[d, pos[s]] = e - d E for every
 * counted assignment s = (row, j) (pos[s] < chunk); send_ids[d, i] = -1 for
 * i in [counts[d], chunk). Padding rows of send are left as they were (the
 * expert kernel never reads a row whose id is -1). */
typedef struct qilin_moe_dispatch_pack_args {
    void *send;                   /* [n_ranks, chunk, hidden] */
    int *send_ids;                /* [n_ranks, chunk] */
    const void *x;                /* [rows, hidden] */
    const int *topk_ids, *pos;    /* [rows, top_k] */
    const int *counts;            /* [n_ranks] */
    int rows, top_k, n_ranks, experts_per_rank, hidden, chunk;
    qilin_dtype dtype;            /* send and x: f32, bf16, f16 */
} qilin_moe_dispatch_pack_args;
qilin_status qilin_moe_dispatch_pack(const qilin_moe_dispatch_pack_args *args, qilin_stream *stream);

/* For t in [row0, row0 + rows): out[t, :] = sum over j (in order) of
 * topk_weights[s] * back[d, pos[s], :], s = (t - row0) top_k + j, counted
 * assignments only, in fp32 with one rounding to dtype; every other token
 * t < tokens gets a row of zeros. */
typedef struct qilin_moe_dispatch_combine_args {
    void *out;                    /* [tokens, hidden] */
    const void *back;             /* [n_ranks, chunk, hidden]: expert results, returned */
    const int *topk_ids, *pos;    /* [rows, top_k] */
    const float *topk_weights;    /* [rows, top_k] */
    int tokens, row0, rows, top_k, n_ranks, experts_per_rank, hidden, chunk;
    qilin_dtype dtype;            /* out and back: f32, bf16, f16 */
} qilin_moe_dispatch_combine_args;
qilin_status qilin_moe_dispatch_combine(const qilin_moe_dispatch_combine_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_MOE_DISPATCH_H */
