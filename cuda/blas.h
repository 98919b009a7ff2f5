/* blas.h — dense GEMM through cuBLAS(Lt) in the cuda build, a CPU GEMM in the sim.
 *
 *   C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C[m,n]     (per batch)
 *
 * Layout is explicit: `layout` says how A, B and C are stored (row-major: the
 * leading dimension is the distance between rows; column-major: between
 * columns), `trans_a/trans_b` apply op() to the stored matrix. Accumulation
 * is fp32 for every input type. A and B share a type (f32, f16 or bf16); C is
 * that type or f32. Strided-batched: batch b uses a + b*stride_a, etc.;
 * stride 0 for A or B reuses one matrix for every batch, while the batches of
 * C may not overlap (disjoint blocks, or side by side within ldc as in a
 * per-head output [tokens, heads * dim] with stride_c = dim).
 *
 * Edge cases follow BLAS: m == 0 or n == 0 does nothing; k == 0 sets
 * C = beta * C; beta == 0 never reads C (it may hold NaN). A and B may be
 * NULL when k == 0, C when m or n is 0.
 *
 * The common linear layer Y[tokens,out] = X[tokens,in] * W[out,in]^T is
 * layout=ROW_MAJOR, trans_a=NO, trans_b=TRANS, m=tokens, n=out, k=in. */
#ifndef QILIN_BLAS_H
#define QILIN_BLAS_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_blas qilin_blas; /* one per device; use from one thread at a time */

typedef enum qilin_layout { QILIN_ROW_MAJOR, QILIN_COL_MAJOR } qilin_layout;
typedef enum qilin_op { QILIN_OP_N, QILIN_OP_T } qilin_op;

typedef struct qilin_gemm_desc {
    qilin_layout layout;
    qilin_op trans_a, trans_b;
    int m, n, k;
    qilin_dtype ab_type;      /* f32, f16 or bf16 */
    qilin_dtype c_type;       /* ab_type or f32 */
    const void *a; int64_t lda; int64_t stride_a; /* strides in elements */
    const void *b; int64_t ldb; int64_t stride_b;
    void *c;       int64_t ldc; int64_t stride_c;
    int batch;                /* >= 1 */
    float alpha, beta;
} qilin_gemm_desc;

/* Creates a handle (and its workspace) on the current device. */
qilin_status qilin_blas_create(qilin_blas **blas);
qilin_status qilin_blas_destroy(qilin_blas *blas); /* NULL is a no-op */

/* Validates the descriptor (shapes, leading dimensions, types: an error names
 * the bad field) and enqueues the GEMM on `stream`. */
qilin_status qilin_gemm(qilin_blas *blas, const qilin_gemm_desc *desc, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_BLAS_H */
