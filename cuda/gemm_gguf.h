/* gemm_gguf.h — linear layers on GGUF (ggml) block-quantized weights that
 * stay in their file format in device memory (gemm_gguf.cu): a decode GEMV
 * (m <= QILIN_GEMV_MAX_M rows of x) and a prefill GEMM (any m).
 *
 *   W[r, c] = weight c % B of block c / B of row r (host/quant.h's layouts)
 *   y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])
 *
 * w: n rows of k / B blocks each (B = 32 for Q8_0 / Q4_0, 256 for the
 * K-quants), rows ldw bytes apart, blocks packed as the file stores them (no
 * alignment). k must be a multiple of B: a GGUF row is whole blocks, and a
 * tensor-parallel slice of the columns is cut on block boundaries by the
 * loader (which refuses a split that would cut a block). fp32 accumulation;
 * y in dtype or f32; x, y any stride >= their width. */
#ifndef QILIN_GEMM_GGUF_H
#define QILIN_GEMM_GGUF_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_gguf_format {
    QILIN_GGUF_Q8_0 = 0, /* 34 B / 32: fp16 d, int8 q[32] */
    QILIN_GGUF_Q4_0,     /* 18 B / 32: fp16 d, 4-bit q - 8 */
    QILIN_GGUF_Q4_K,     /* 144 B / 256: fp16 d, dmin; 6-bit scales/mins per 32; 4-bit q */
    QILIN_GGUF_Q5_K,     /* 176 B / 256: as Q4_K with a fifth bit per weight */
    QILIN_GGUF_Q6_K,     /* 210 B / 256: 6-bit q - 32, int8 scale per 16, fp16 d */
} qilin_gguf_format;

/* "Q4_K"; "?" outside the enum. */
const char *qilin_gguf_format_name(qilin_gguf_format f);

typedef struct qilin_gemm_gguf_args {
    void *y;               /* [m, n], row stride ldy, y_dtype */
    const void *x;         /* [m, k], row stride ldx, dtype */
    const uint8_t *w;      /* [n, k / B blocks], row stride ldw bytes */
    const void *bias;      /* [n] dtype, or NULL */
    int m, n, k;           /* k a multiple of the block size B */
    int64_t ldx, ldw, ldy; /* ldx, ldy elements; ldw bytes >= (k / B) * block bytes */
    qilin_gguf_format format;
    qilin_dtype dtype;   /* activations: f32, bf16 or f16 */
    qilin_dtype y_dtype; /* dtype, or f32; set it: f32 is the enum's zero */
} qilin_gemm_gguf_args;

/* m <= QILIN_GEMV_MAX_M: one warp per weight row, CUDA cores, W read once. */
qilin_status qilin_gemv_gguf(const qilin_gemm_gguf_args *args, qilin_stream *stream);
/* Any m >= 0: bf16/f16 activations on tensor cores (mma.sync m16n8k16 on
 * W tiles dequantized into shared memory, rounded to the activation dtype),
 * f32 on CUDA cores in fp32 (no tf32). */
qilin_status qilin_gemm_gguf(const qilin_gemm_gguf_args *args, qilin_stream *stream);

/* Embedding rows from a GGUF block table (a quantized token_embd, which a
 * tied model also multiplies as its lm_head through qilin_gemm_gguf):
 *   out[t, :] = row ids[t] of the table, decoded
 * An id outside [0, vocab) gives a zero row (a vocab-parallel GPU's ids are
 * local: the rows other GPUs own are zeros here and summed in). */
typedef struct qilin_embedding_gguf_args {
    void *out;              /* [tokens, dim] in out_dtype */
    const uint8_t *table;   /* [vocab, dim / B blocks], row stride ldw bytes */
    const int *ids;         /* [tokens] int32, device */
    int tokens, dim, vocab; /* dim a multiple of the block size B */
    int64_t ldw;            /* bytes */
    qilin_gguf_format format;
    qilin_dtype out_dtype; /* f32, bf16 or f16 */
} qilin_embedding_gguf_args;
qilin_status qilin_embedding_gguf(const qilin_embedding_gguf_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_GEMM_GGUF_H */
