/* blas_check.h — validation of a qilin_gemm_desc, shared by both BLAS backends
 * (blas_cublas.c and sim/blas_sim.cpp) so that they accept and reject exactly
 * the same descriptors with the same messages.
 *
 * Internal to cuda/: nothing above cuda/ includes this. */
#ifndef QILIN_BLAS_CHECK_H
#define QILIN_BLAS_CHECK_H

#include <stdint.h>

#include "blas.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shape of one stored operand: `rows` x `cols` as it sits in memory (before
 * op()), in the descriptor's layout. */
typedef struct qilin_blas_stored {
    int64_t rows, cols;
} qilin_blas_stored;

qilin_blas_stored qilin_blas_stored_a(const qilin_gemm_desc *d); /* op(A) is m x k */
qilin_blas_stored qilin_blas_stored_b(const qilin_gemm_desc *d); /* op(B) is k x n */

/* Checks every field of `d`; on failure returns QILIN_ERR_INVALID_ARGUMENT
 * (QILIN_ERR_UNSUPPORTED for a type combination) with a message naming the
 * field and its value. On success *noop is 1 when there is nothing to compute
 * (m == 0 or n == 0). k == 0 is not a no-op: C = beta * C, as in BLAS. When
 * beta == 0, C is not read (it may hold NaN), as in BLAS. */
qilin_status qilin_blas_check(const qilin_gemm_desc *d, int *noop);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_BLAS_CHECK_H */
