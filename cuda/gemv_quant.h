/* gemv_quant.h — the decode-time linear layer on weights that stay quantized
 * (gemv_quant.cu): the contract of qilin_gemv (gemv.h) with W read in its
 * checkpoint format and dequantized in registers, never materialised.
 *
 * FP8 block-scaled (DeepSeek-V3/R1, Kimi K2 base; host/quant.h's FP8_BLOCK):
 *   W[r, c] = e4m3(w[r, c]) * w_scale[r / 128, c / 128]
 *   y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]),   m <= QILIN_GEMV_MAX_M
 * w: e4m3fn bytes [n, k], row stride ldw bytes; w_scale: f32
 * [ceil(n/128), ceil(k/128)] (`weight_scale_inv`, a multiplier), row stride
 * ld_scale; edge blocks may be ragged. e4m3 codes 0x7f/0xff are NaN, as in
 * host/quant.c. fp32 accumulation; y in dtype or f32.
 * (INT4 groups below: same contract, per-row group scales.) */
#ifndef QILIN_GEMV_QUANT_H
#define QILIN_GEMV_QUANT_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "gemv.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { QILIN_FP8_BLOCK = 128 }; /* rows and columns per scale */

typedef struct qilin_gemv_fp8_args {
    void *y;                  /* [m, n], row stride ldy, y_dtype */
    const void *x;            /* [m, k], row stride ldx, dtype */
    const uint8_t *w;         /* [n, k] e4m3fn, row stride ldw (bytes) */
    const float *w_scale;     /* [ceil(n/128), ceil(k/128)], row stride ld_scale */
    const void *bias;         /* [n] dtype, or NULL */
    int m, n, k;
    int64_t ldx, ldw, ld_scale, ldy; /* elements */
    qilin_dtype dtype;        /* activations: f32, bf16 or f16 */
    qilin_dtype y_dtype;      /* dtype, or f32; set it: f32 is the enum's zero */
} qilin_gemv_fp8_args;
qilin_status qilin_gemv_fp8(const qilin_gemv_fp8_args *args, qilin_stream *stream);

/* INT4 symmetric groups, compressed-tensors `pack-quantized` (Kimi
 * K2-Thinking's routed experts; host/quant.h's INT4_GROUP):
 *   W[r, c] = (u - 8) * w_scale[r, c / group_size],
 *   u = nibble c % 8 of w_packed[r, c / 8] (nibble 0 = bits 0-3)
 * w_packed: I32 [n, ceil(k/8)], row stride ldw (words); nibbles past k in a
 * row's last word are ignored. w_scale: scale_dtype (f32, f16 or bf16)
 * [n, k / group_size], row stride ld_scale; group_size divides k. */
typedef struct qilin_gemv_int4_args {
    void *y;                  /* [m, n], row stride ldy, y_dtype */
    const void *x;            /* [m, k], row stride ldx, dtype */
    const int32_t *w_packed;  /* [n, ceil(k/8)], row stride ldw (int32 words) */
    const void *w_scale;      /* [n, k / group_size], row stride ld_scale, scale_dtype */
    const void *bias;         /* [n] dtype, or NULL */
    int m, n, k, group_size;
    int64_t ldx, ldw, ld_scale, ldy; /* elements */
    qilin_dtype dtype;        /* activations: f32, bf16 or f16 */
    qilin_dtype y_dtype;      /* dtype, or f32; set it: f32 is the enum's zero */
    qilin_dtype scale_dtype;  /* f32, f16 or bf16; set it: f32 is the enum's zero */
} qilin_gemv_int4_args;
qilin_status qilin_gemv_int4(const qilin_gemv_int4_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_GEMV_QUANT_H */
