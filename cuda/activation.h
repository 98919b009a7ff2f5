/* activation.h — the FFN activations (activation.cu). */
#ifndef QILIN_ACTIVATION_H
#define QILIN_ACTIVATION_H

#include <stddef.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif /* QILIN_ACTIVATION_H */
