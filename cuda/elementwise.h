/* elementwise.h — the small glue ops between GEMMs (elementwise.cu).
 * fp32 arithmetic, one rounding to dtype at the end, 16-byte vector loads
 * where alignment allows. */
#ifndef QILIN_ELEMENTWISE_H
#define QILIN_ELEMENTWISE_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x[r, c] += bias[c] for r < rows, c < cols (a linear layer's bias after a
 * GEMM that has none). x row stride = ld elements (>= cols). */
typedef struct qilin_add_bias_args {
    void *x;
    const void *bias;             /* [cols] */
    int rows, cols;
    int64_t ld;
    qilin_dtype dtype;            /* f32, bf16, f16: x and bias alike */
} qilin_add_bias_args;
qilin_status qilin_add_bias(const qilin_add_bias_args *args, qilin_stream *stream);

/* out[i] = a[i] + b[i] (+ c[i] when c is set); out may alias any input.
 * GPT-NeoX / GPT-J parallel residual: attention + MLP branch outputs. */
typedef struct qilin_add_args {
    void *out;
    const void *a, *b, *c;        /* c may be NULL */
    size_t n;
    qilin_dtype dtype;
} qilin_add_args;
qilin_status qilin_add(const qilin_add_args *args, qilin_stream *stream);

/* out[t, :] += sigmoid(gate[t]) * y[t, :] — Qwen2-MoE's gated shared
 * expert. gate is the [tokens, 1] output of shared_expert_gate. */
typedef struct qilin_sigmoid_gate_add_args {
    void *out;                    /* [tokens, dim] */
    const void *y;                /* [tokens, dim] */
    const void *gate;             /* [tokens] */
    int tokens, dim;
    qilin_dtype dtype;            /* out, y and gate alike */
} qilin_sigmoid_gate_add_args;
qilin_status qilin_sigmoid_gate_add(const qilin_sigmoid_gate_add_args *args, qilin_stream *stream);

/* out[i] = (out_dtype) in[i]: f32 <-> bf16 <-> f16. */
typedef struct qilin_cast_args {
    void *out;
    const void *in;
    size_t n;
    qilin_dtype in_dtype, out_dtype;
} qilin_cast_args;
qilin_status qilin_cast(const qilin_cast_args *args, qilin_stream *stream);

/* Gathers rows: out[i, :] = in[rows[i], :] (row strides in elements). Used to
 * pick the last position of each sequence before the final norm + lm_head. */
typedef struct qilin_gather_rows_args {
    void *out;                    /* [n, cols], row stride ld_out */
    const void *in;               /* row stride ld_in */
    const int *rows;              /* [n] int32, device */
    int n, cols;
    int64_t ld_out, ld_in;
    qilin_dtype dtype;
} qilin_gather_rows_args;
qilin_status qilin_gather_rows(const qilin_gather_rows_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_ELEMENTWISE_H */
