/* gemm_quant.h — the prefill linear layer (any number of rows) on FP8
 * block-scaled weights that stay FP8 in device memory (gemm_fp8.cu).
 *
 *   W[r, c] = e4m3(w[r, c]) * w_scale[(r + row_off) / 128, (c + col_off) / 128]
 *   y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])
 *
 * w: e4m3fn bytes [n, k], row stride ldw bytes (any alignment); w_scale:
 * f32, row stride ld_scale. row_off / col_off (0..127) place w[0, 0] inside
 * its 128x128 scale block: a tensor-parallel slice of a checkpoint matrix
 * that starts mid-block (a TP degree that does not divide the 128 grid)
 * keeps the scale rows/columns that cover it and says where it starts. Edge
 * blocks may be ragged. y in dtype or f32; x, y any stride >= their width.
 * e4m3 codes 0x7f/0xff are NaN. m >= 0; m <= 8 is better served by
 * qilin_gemv_fp8 (same numbers up to fp32 summation order). */
#ifndef QILIN_GEMM_QUANT_H
#define QILIN_GEMM_QUANT_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_gemm_fp8_args {
    void *y;              /* [m, n], row stride ldy, y_dtype */
    const void *x;        /* [m, k], row stride ldx, dtype */
    const uint8_t *w;     /* [n, k] e4m3fn, row stride ldw (bytes) */
    const float *w_scale; /* [ceil((row_off + n)/128), ceil((col_off + k)/128)], row stride ld_scale */
    const void *bias;     /* [n] dtype, or NULL */
    int m, n, k;
    int row_off, col_off;            /* 0..127: w[0, 0]'s place in its scale block */
    int64_t ldx, ldw, ld_scale, ldy; /* elements */
    qilin_dtype dtype;               /* activations: f32, bf16 or f16 */
    qilin_dtype y_dtype;             /* dtype, or f32; set it: f32 is the enum's zero */
} qilin_gemm_fp8_args;

/* bf16/f16: tensor cores (bf16/f16 mma.sync, fp32 accumulation); f32: CUDA
 * cores in fp32 (the fp32 reference mode, no tf32). */
qilin_status qilin_gemm_fp8(const qilin_gemm_fp8_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_GEMM_QUANT_H */
