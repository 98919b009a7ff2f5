/* gemv.h — the decode-time linear layer (gemv.cu): few rows of x times a
 * large weight, bound by reading W once at full memory bandwidth.
 *   y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]),   m <= QILIN_GEMV_MAX_M
 * W row-major [n, k] (the HF [out, in] layout), fp32 accumulation; each warp
 * streams rows of W with 16-byte loads and reuses them for all m rows of x.
 * Prefill (large m) goes through qilin_gemm (blas.h) instead. */
#ifndef QILIN_GEMV_H
#define QILIN_GEMV_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { QILIN_GEMV_MAX_M = 8 };

typedef struct qilin_gemv_args {
    void *y;                      /* [m, n], row stride ldy, y_dtype */
    const void *x;                /* [m, k], row stride ldx, dtype */
    const void *w;                /* [n, k], row stride ldw, dtype */
    const void *bias;             /* [n] dtype, or NULL */
    int m, n, k;
    int64_t ldx, ldw, ldy;        /* elements */
    qilin_dtype dtype;            /* f32, bf16 or f16 */
    qilin_dtype y_dtype;          /* dtype, or f32 (logits); set it: f32 is the enum's zero */
} qilin_gemv_args;
qilin_status qilin_gemv(const qilin_gemv_args *args, qilin_stream *stream);

/* Several products of the same x in one launch (q, k and v of attention;
 * MLA's q_a and kv_a): y_j[m, n_j] = x[m, k] W_j[n_j, k]^T (+ bias_j) for
 * j < n_outputs. Each W_j stays where it is (no concatenated copy); the
 * grid is the concatenation of each output's blocks, so the launch reads
 * every W_j once as qilin_gemv would, and saves n_outputs - 1 launches.
 * The results equal one qilin_gemv per output up to the order of the fp32
 * additions (the k split is chosen from the sum of the n_j). */
enum { QILIN_GEMV_MAX_OUTPUTS = 3 };
typedef struct qilin_gemv_output {
    void *y;          /* [m, n], row stride ldy, y_dtype */
    const void *w;    /* [n, k], row stride ldw, dtype */
    const void *bias; /* [n] dtype, or NULL */
    int n;
    int64_t ldw, ldy; /* elements */
} qilin_gemv_output;
typedef struct qilin_gemv_multi_args {
    const void *x; /* [m, k], row stride ldx, dtype */
    int m, k;
    int64_t ldx;
    int n_outputs; /* 1 .. QILIN_GEMV_MAX_OUTPUTS */
    qilin_gemv_output out[QILIN_GEMV_MAX_OUTPUTS];
    qilin_dtype dtype;   /* f32, bf16 or f16 */
    qilin_dtype y_dtype; /* dtype, or f32; set it: f32 is the enum's zero */
} qilin_gemv_multi_args;
qilin_status qilin_gemv_multi(const qilin_gemv_multi_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_GEMV_H */
