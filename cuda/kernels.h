/* kernels.h — the C launchers of every kernel family in cuda/.
 *
 * Each launcher validates its arguments, picks the grid, launches on
 * `stream` and returns a status; on failure qilin_last_error() names the
 * kernel and the argument at fault. Argument structs carry shapes and layouts
 * in their field comments. */
#ifndef QILIN_KERNELS_H
#define QILIN_KERNELS_H

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- rmsnorm.cu ------------------------------------------------------------
 * out = x / sqrt(mean(x^2) + eps) * weight, per row, in fp32 arithmetic.
 * With `residual` set, first h = x + residual, residual := h (rounded to
 * dtype, as Hugging Face adds in the activation dtype) and h is normalised:
 * the fused "add & norm" between transformer sub-layers. */
typedef struct qilin_rmsnorm_args {
    void *out;            /* [rows, dim] */
    void *residual;       /* [rows, dim] in/out, or NULL */
    const void *x;        /* [rows, dim]; may alias out */
    const void *weight;   /* [dim] */
    int rows, dim;
    float eps;
    qilin_dtype dtype;    /* f32, bf16 or f16: x, out, residual and weight alike */
} qilin_rmsnorm_args;

qilin_status qilin_rmsnorm(const qilin_rmsnorm_args *args, qilin_stream *stream);

/* Which compiler built cuda/rmsnorm.cu, and its path: the same-source check. */
const char *qilin_rmsnorm_build_info(void);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_KERNELS_H */
