/* blas_check.c — validation of a GEMM descriptor, shared by the cuBLAS and the
 * sim backends (see blas_check.h). Every message starts with "gemm: " and
 * names the field at fault with its value, and for a leading dimension or a
 * stride also the shape it had to cover. */
#include "blas_check.h"

#include <stdint.h>

static const char *layout_name(qilin_layout l) { return l == QILIN_ROW_MAJOR ? "row-major" : "col-major"; }

/* op(X) is rows_op x cols_op; the stored matrix is that or its transpose. */
static qilin_blas_stored stored(qilin_op op, int64_t rows_op, int64_t cols_op) {
    qilin_blas_stored s;
    s.rows = op == QILIN_OP_N ? rows_op : cols_op;
    s.cols = op == QILIN_OP_N ? cols_op : rows_op;
    return s;
}

qilin_blas_stored qilin_blas_stored_a(const qilin_gemm_desc *d) { return stored(d->trans_a, d->m, d->k); }

qilin_blas_stored qilin_blas_stored_b(const qilin_gemm_desc *d) { return stored(d->trans_b, d->k, d->n); }

static int is_gemm_input_type(qilin_dtype t) { return t == QILIN_F32 || t == QILIN_F16 || t == QILIN_BF16; }

static qilin_status check_enums(const qilin_gemm_desc *d) {
    if (d->layout != QILIN_ROW_MAJOR && d->layout != QILIN_COL_MAJOR)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: layout = %d is not a qilin_layout",
                           (int)d->layout);
    if (d->trans_a != QILIN_OP_N && d->trans_a != QILIN_OP_T)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: trans_a = %d is not a qilin_op",
                           (int)d->trans_a);
    if (d->trans_b != QILIN_OP_N && d->trans_b != QILIN_OP_T)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: trans_b = %d is not a qilin_op",
                           (int)d->trans_b);
    return QILIN_OK;
}

static qilin_status check_sizes(const qilin_gemm_desc *d) {
    if (d->m < 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: m = %d < 0", d->m);
    if (d->n < 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: n = %d < 0", d->n);
    if (d->k < 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: k = %d < 0", d->k);
    if (d->batch < 1) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: batch = %d < 1", d->batch);
    return QILIN_OK;
}

static qilin_status check_types(const qilin_gemm_desc *d) {
    if (!is_gemm_input_type(d->ab_type))
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "gemm: ab_type = %s (%d) is not supported (f32, f16 or bf16)",
                           qilin_dtype_name(d->ab_type), (int)d->ab_type);
    if (d->c_type != d->ab_type && d->c_type != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "gemm: c_type = %s (%d) is not supported with ab_type = %s "
                           "(must be %s or f32)",
                           qilin_dtype_name(d->c_type), (int)d->c_type, qilin_dtype_name(d->ab_type),
                           qilin_dtype_name(d->ab_type));
    return QILIN_OK;
}

/* Elements spanned by one stored matrix (rows x cols, leading dimension ld),
 * or -1 when that does not fit in int64. The caller has checked ld. */
static int64_t span(qilin_layout layout, qilin_blas_stored s, int64_t ld) {
    int64_t outer = layout == QILIN_ROW_MAJOR ? s.rows : s.cols;
    int64_t inner = layout == QILIN_ROW_MAJOR ? s.cols : s.rows;
    if (outer == 0 || inner == 0) return 0;
    if (ld > (INT64_MAX - inner) / outer) return -1;
    return (outer - 1) * ld + inner;
}

/* ld must cover a full row (row-major) or column (col-major) of the stored
 * matrix; at least 1, as in BLAS, so that empty matrices have a valid ld. */
static qilin_status check_ld(const qilin_gemm_desc *d, const char *field, const char *matrix,
                             const char *trans, qilin_blas_stored s, int64_t ld) {
    int64_t inner = d->layout == QILIN_ROW_MAJOR ? s.cols : s.rows;
    int64_t need = inner > 1 ? inner : 1;
    if (ld < need)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: %s = %lld is too small: %s %s%s is %lld x %lld stored, "
                           "needs %s >= %lld",
                           field, (long long)ld, layout_name(d->layout), matrix, trans, (long long)s.rows,
                           (long long)s.cols, field, (long long)need);
    if (span(d->layout, s, ld) < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: %s = %lld is too large: %s spans more than 2^63 elements", field,
                           (long long)ld, matrix);
    return QILIN_OK;
}

static qilin_status check_lds(const qilin_gemm_desc *d) {
    qilin_blas_stored c = {d->m, d->n};
    const char *sa = d->trans_a == QILIN_OP_T ? " (trans_a=T)" : " (trans_a=N)";
    const char *sb = d->trans_b == QILIN_OP_T ? " (trans_b=T)" : " (trans_b=N)";
    QILIN_TRY(check_ld(d, "lda", "A", sa, qilin_blas_stored_a(d), d->lda));
    QILIN_TRY(check_ld(d, "ldb", "B", sb, qilin_blas_stored_b(d), d->ldb));
    QILIN_TRY(check_ld(d, "ldc", "C", "", c, d->ldc));
    return QILIN_OK;
}

/* Batches of C are disjoint when each sits in its own block (stride_c >= the
 * span of one C), or when they sit side by side inside every row (row-major;
 * columns for col-major) of a wider matrix: stride_c >= the row's length and
 * the last batch still ends within ldc. The second form is the per-head
 * output of attention, C[tokens, heads * dim] with stride_c = dim. */
static int c_batches_disjoint(const qilin_gemm_desc *d) {
    qilin_blas_stored c = {d->m, d->n};
    if (d->stride_c >= span(d->layout, c, d->ldc)) return 1;
    int64_t inner = d->layout == QILIN_ROW_MAJOR ? d->n : d->m;
    if (d->stride_c < inner) return 0;
    return d->stride_c <= (d->ldc - inner) / (d->batch - 1); /* (batch-1)*stride_c + inner <= ldc */
}

/* A and B may repeat across the batch (stride 0 broadcasts a weight); C may
 * not, or batches would race for the same outputs. */
static qilin_status check_strides(const qilin_gemm_desc *d) {
    if (d->stride_a < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: stride_a = %lld < 0", (long long)d->stride_a);
    if (d->stride_b < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: stride_b = %lld < 0", (long long)d->stride_b);
    if (d->batch == 1 || c_batches_disjoint(d)) return QILIN_OK;
    qilin_blas_stored c = {d->m, d->n};
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                       "gemm: stride_c = %lld makes the %d batches of C (%d x %d, ldc = %lld) overlap: "
                       "needs stride_c >= %lld, or batches side by side within ldc",
                       (long long)d->stride_c, d->batch, d->m, d->n, (long long)d->ldc,
                       (long long)span(d->layout, c, d->ldc));
}

static qilin_status check_pointer(const char *field, const void *p, int used, qilin_dtype t) {
    if (!used) return QILIN_OK;
    if (p == NULL)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: %s = NULL with a non-empty shape", field);
    size_t align = qilin_dtype_size(t);
    if ((uintptr_t)p % align != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: %s = %p is not aligned to its element size (%s, %zu bytes)", field, p,
                           qilin_dtype_name(t), align);
    return QILIN_OK;
}

qilin_status qilin_blas_check(const qilin_gemm_desc *d, int *noop) {
    if (d == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: desc = NULL");
    if (noop == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: noop = NULL");
    *noop = 0;
    QILIN_TRY(check_enums(d));
    QILIN_TRY(check_sizes(d));
    QILIN_TRY(check_types(d));
    QILIN_TRY(check_lds(d));
    QILIN_TRY(check_strides(d));
    int writes_c = d->m > 0 && d->n > 0;
    int reads_ab = writes_c && d->k > 0;
    QILIN_TRY(check_pointer("a", d->a, reads_ab, d->ab_type));
    QILIN_TRY(check_pointer("b", d->b, reads_ab, d->ab_type));
    QILIN_TRY(check_pointer("c", d->c, writes_c, d->c_type));
    *noop = !writes_c;
    return QILIN_OK;
}
