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

/* ---- activation.cu ---------------------------------------------------------
 * The FFN activations, fp32 arithmetic, one rounding to dtype at the end.
 *   silu(x)      = x / (1 + exp(-x))
 *   gelu_erf(x)  = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))      exact GELU
 *   gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * (Hugging Face's "gelu" is gelu_erf; "gelu_new"/"gelu_pytorch_tanh" are
 * gelu_tanh.) */
typedef enum qilin_act {
    QILIN_ACT_SILU = 0,
    QILIN_ACT_GELU_ERF,
    QILIN_ACT_GELU_TANH,
} qilin_act;

/* Gated activation (SwiGLU, GeGLU): out[t, j] = act(in[t, j]) * in[t, d + j],
 * the Hugging Face / vLLM layout where each row of the fused gate_up
 * projection is [gate | up]. */
typedef struct qilin_act_and_mul_args {
    void *out;            /* [tokens, d] */
    const void *in;       /* [tokens, 2 * d]: gate in [0, d), up in [d, 2d) */
    int tokens, d;
    qilin_act act;
    qilin_dtype dtype;    /* f32, bf16 or f16: in and out alike */
} qilin_act_and_mul_args;

qilin_status qilin_act_and_mul(const qilin_act_and_mul_args *args, qilin_stream *stream);

/* Elementwise activation, out[i] = act(in[i]): GPT-NeoX's and GPT-J's MLP. */
typedef struct qilin_activation_args {
    void *out;            /* [n]; may alias in (in place) */
    const void *in;       /* [n] */
    size_t n;
    qilin_act act;
    qilin_dtype dtype;    /* f32, bf16 or f16: in and out alike */
} qilin_activation_args;

qilin_status qilin_activation(const qilin_activation_args *args, qilin_stream *stream);

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
