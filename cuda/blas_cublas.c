/* blas_cublas.c — qilin_gemm on cuBLAS (cuda build).
 *
 * One cublasHandle_t per qilin_blas, bound to the device current at creation,
 * with a workspace we allocate ourselves (qilin_malloc) so that the memory is
 * accounted for and no allocation happens inside a GEMM (CUDA graph capture).
 *
 * Every GEMM is one cublasGemmStridedBatchedEx_64 call with CUBLAS_COMPUTE_32F:
 * fp32 accumulation for f32/f16/bf16 inputs, C in the input type or f32.
 * Reduced-precision split-K reductions are disallowed so that the fp32
 * accumulation promise also holds for f16/bf16 outputs.
 *
 * Layout: cuBLAS is column-major. A row-major C[m,n] is, read column-major,
 * C^T[n,m] = op(B)^T op(A)^T, so a row-major GEMM is issued as a column-major
 * one with the operands swapped (B first), m and n swapped and the same op
 * flags; the leading dimensions carry over unchanged. */
#include "blas.h"

#include <cublas_v2.h>
#include <stdlib.h>

#include "blas_check.h"

/* cuBLAS's documented recommendation for Hopper (Ampere needs 4 MiB). */
enum { BLAS_WORKSPACE_BYTES = 32 << 20 };

struct qilin_blas {
    cublasHandle_t handle;
    int device;
    void *workspace;
    cudaStream_t stream; /* last stream bound to the handle */
    int stream_bound;    /* 0 until the first GEMM binds one */
};

static qilin_status blas_fail(cublasStatus_t st, const char *stmt, const char *file, int line) {
    return qilin_error(QILIN_ERR_BLAS, "%s failed at %s:%d: %s (%s)", stmt, file, line,
                       cublasGetStatusName(st), cublasGetStatusString(st));
}

/* Runs a cuBLAS call; on failure records the statement, file:line and cuBLAS's
 * error name and string, and returns QILIN_ERR_BLAS from the caller. */
#define BLAS_TRY(stmt)                                                                                       \
    do {                                                                                                     \
        cublasStatus_t blas_try_st_ = (stmt);                                                                \
        if (blas_try_st_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return blas_fail(blas_try_st_, #stmt, __FILE__, __LINE__);                                       \
    } while (0)

static qilin_status blas_setup(qilin_blas *b) {
    cublasHandle_t h = NULL; /* assigned only on success: destroy must not see garbage */
    BLAS_TRY(cublasCreate(&h));
    b->handle = h;
    BLAS_TRY(cublasSetMathMode(
        b->handle, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    BLAS_TRY(cublasSetPointerMode(b->handle, CUBLAS_POINTER_MODE_HOST));
    QILIN_TRY(qilin_malloc(&b->workspace, BLAS_WORKSPACE_BYTES, "cuBLAS workspace"));
    return QILIN_OK;
}

qilin_status qilin_blas_create(qilin_blas **blas) {
    if (blas == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "blas_create: blas = NULL");
    *blas = NULL;
    qilin_blas *b = (qilin_blas *)calloc(1, sizeof *b);
    if (b == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "blas_create: out of host memory");
    qilin_status st = qilin_device_get(&b->device);
    if (st == QILIN_OK) st = blas_setup(b);
    if (st != QILIN_OK) {
        qilin_blas_destroy(b); /* frees what setup got to; st is the error to report */
        return st;
    }
    *blas = b;
    return QILIN_OK;
}

qilin_status qilin_blas_destroy(qilin_blas *blas) {
    if (blas == NULL) return QILIN_OK;
    /* cuBLAS frees the handle's resources on its own device; make it current. */
    int previous = -1;
    qilin_status st = qilin_device_get(&previous);
    if (st == QILIN_OK && previous != blas->device) st = qilin_device_set(blas->device);
    /* cublasDestroy synchronises the device, so no queued GEMM still uses the
     * workspace when it is freed below. */
    cublasStatus_t cst = blas->handle ? cublasDestroy(blas->handle) : CUBLAS_STATUS_SUCCESS;
    qilin_status fst = qilin_free(blas->workspace);
    if (previous >= 0 && previous != blas->device) qilin_device_set(previous);
    free(blas);
    if (cst != CUBLAS_STATUS_SUCCESS)
        return blas_fail(cst, "cublasDestroy(blas->handle)", __FILE__, __LINE__);
    return st != QILIN_OK ? st : fst;
}

static cudaDataType_t cuda_type(qilin_dtype t) {
    switch (t) {
    case QILIN_F16:
        return CUDA_R_16F;
    case QILIN_BF16:
        return CUDA_R_16BF;
    default:
        return CUDA_R_32F; /* qilin_blas_check admits only f32 otherwise */
    }
}

static cublasOperation_t cublas_op(qilin_op op) { return op == QILIN_OP_T ? CUBLAS_OP_T : CUBLAS_OP_N; }

/* A handle is tied to its device: calling it with another device current, or
 * on another device's stream, is undefined in cuBLAS; here it is an error. */
static qilin_status check_device(const qilin_blas *b, qilin_stream *stream) {
    int current = -1;
    QILIN_TRY(qilin_device_get(&current));
    if (current != b->device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: handle belongs to device %d but device %d is current", b->device, current);
    int sdev = qilin_stream_device(stream);
    if (sdev != b->device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: stream belongs to device %d, handle to device %d", sdev, b->device);
    return QILIN_OK;
}

/* cublasSetStream resets the handle's workspace to cuBLAS's own pool, so the
 * workspace is re-attached after every stream change. */
static qilin_status bind_stream(qilin_blas *b, qilin_stream *stream) {
    cudaStream_t s = (cudaStream_t)qilin_stream_native(stream);
    if (b->stream_bound && s == b->stream) return QILIN_OK;
    BLAS_TRY(cublasSetStream(b->handle, s));
    BLAS_TRY(cublasSetWorkspace(b->handle, b->workspace, BLAS_WORKSPACE_BYTES));
    b->stream = s;
    b->stream_bound = 1;
    return QILIN_OK;
}

/* Issues the column-major GEMM that computes the descriptor's C (see the
 * header comment for the row-major swap). */
static qilin_status gemm_col_major(qilin_blas *b, const qilin_gemm_desc *d) {
    int row = d->layout == QILIN_ROW_MAJOR;
    const void *a1 = row ? d->b : d->a, *a2 = row ? d->a : d->b;
    int64_t ld1 = row ? d->ldb : d->lda, ld2 = row ? d->lda : d->ldb;
    long long st1 = row ? d->stride_b : d->stride_a, st2 = row ? d->stride_a : d->stride_b;
    qilin_op op1 = row ? d->trans_b : d->trans_a, op2 = row ? d->trans_a : d->trans_b;
    int64_t m = row ? d->n : d->m, n = row ? d->m : d->n;
    cudaDataType_t ab = cuda_type(d->ab_type), c = cuda_type(d->c_type);
    BLAS_TRY(cublasGemmStridedBatchedEx_64(b->handle, cublas_op(op1), cublas_op(op2), m, n, d->k, &d->alpha,
                                           a1, ab, ld1, st1, a2, ab, ld2, st2, &d->beta, d->c, c, d->ldc,
                                           d->stride_c, d->batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return QILIN_OK;
}

qilin_status qilin_gemm(qilin_blas *blas, const qilin_gemm_desc *desc, qilin_stream *stream) {
    if (blas == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: blas = NULL");
    int noop = 0;
    QILIN_TRY(qilin_blas_check(desc, &noop));
    if (noop) return QILIN_OK;
    QILIN_TRY(check_device(blas, stream));
    QILIN_TRY(bind_stream(blas, stream));
    return gemm_col_major(blas, desc);
}
