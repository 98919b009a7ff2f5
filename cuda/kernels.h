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

/* One header per kernel family; this one gathers them. */
#include "activation.h"
#include "attention.h"
#include "elementwise.h"
#include "gemv.h"
#include "gemm_gguf.h"
#include "gemm_quant.h"
#include "gemv_quant.h"
#include "mla.h"
#include "moe.h"
#include "moe_dispatch.h"
#include "rope.h"
#include "sampling.h"

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

/* ---- layernorm.cu ----------------------------------------------------------
 * out = (x - mean(x)) / sqrt(var(x) + eps) * weight (+ bias), per row, in fp32
 * arithmetic, var the biased (1/dim) variance: GPT-NeoX's and GPT-J's
 * LayerNorm. With `residual` set, first h = x + residual, residual := h
 * (rounded to dtype) and h is normalised, exactly as qilin_rmsnorm fuses it. */
typedef struct qilin_layernorm_args {
    void *out;            /* [rows, dim] */
    void *residual;       /* [rows, dim] in/out, or NULL */
    const void *x;        /* [rows, dim]; may alias out */
    const void *weight;   /* [dim] */
    const void *bias;     /* [dim], or NULL for none */
    int rows, dim;
    float eps;
    qilin_dtype dtype;    /* f32, bf16 or f16: x, out, residual, weight and bias alike */
} qilin_layernorm_args;

qilin_status qilin_layernorm(const qilin_layernorm_args *args, qilin_stream *stream);

/* ---- embedding.cu ----------------------------------------------------------
 * out[t, :] = table[ids[t], :]. An id outside [0, vocab) reads nothing: its
 * row of out is written as zeros and, when `error` is set, *error becomes the
 * lowest such token index + 1 (atomically; 0 means every id was valid). The
 * launcher cannot see ids (device memory), so it returns QILIN_OK regardless:
 * the caller zeroes *error before the launch, reads it back after, and
 * reports e.g. "token 17 has id 200000, vocabulary is 151936" from its own
 * copy of the ids. */
typedef struct qilin_embedding_args {
    void *out;            /* [tokens, dim] in out_dtype */
    const void *table;    /* [vocab, dim] in dtype */
    const int *ids;       /* [tokens] int32 */
    int *error;           /* device int, or NULL: first bad token + 1; never cleared by the kernel */
    int tokens, dim, vocab;
    qilin_dtype dtype;    /* table: f32, bf16 or f16 */
    qilin_dtype out_dtype; /* dtype, or f32 to widen; set it: f32 is the enum's zero */
} qilin_embedding_args;

qilin_status qilin_embedding(const qilin_embedding_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_KERNELS_H */
