/* quant.h — weight formats on the CPU: sizes, validation, dequantisation to
 * f32/bf16/f16, quantisation (for tests and for building quantised weights),
 * and the scalar conversions (fp16, bf16, fp8 e4m3fn) they rest on. This is
 * the reference that kernel tests compare against and the path a loader uses
 * to check a tensor before upload.
 *
 * A weight is a matrix W[rows, cols] = [out, in]; quantisation blocks run
 * along a row (the `in` dimension, GGUF's ne[0]). Layouts:
 *
 *   F32/F16/BF16  data: elements [rows, cols].
 *   FP8_BLOCK     data: e4m3fn bytes [rows, cols]; scales: F32 [ceil(rows/128),
 *                 ceil(cols/128)] (`weight_scale_inv`, a multiplier despite the
 *                 name): W[r, c] = fp8(data[r, c]) · scales[r/128, c/128].
 *                 Edge blocks may be ragged.
 *   INT4_GROUP    compressed-tensors pack-quantized, symmetric: data: I32
 *                 [rows, ceil(cols/8)], column c in nibble c%8 of word c/8
 *                 (nibble 0 = bits 0-3); scales [rows, cols/group_size] in
 *                 scale_dtype (F32, F16 or BF16): W[r, c] = (u − 8) · scale.
 *                 Nibbles past cols in a row's last word are ignored.
 *   GGUF blocks   data: rows × (cols/block) blocks, row-major; cols must be a
 *                 multiple of the block (32 for Q8_0/Q4_0, 256 for K-quants).
 *                 d and dmin are fp16, little-endian. With u = unsigned codes:
 *     Q8_0  34 B: d, qs[32] int8.               w[j] = d·qs[j]
 *     Q4_0  18 B: d, qs[16].                    w[j] = d·((qs[j] & 15) − 8),
 *                                               w[j+16] = d·((qs[j] >> 4) − 8)
 *     Q4_K 144 B: d, dmin, scales[12], qs[128]. 8 sub-blocks of 32 with 6-bit
 *           scale sc_s and min m_s: s < 4: sc = scales[s] & 63,
 *           m = scales[s+4] & 63; s >= 4: sc = (scales[s+4] & 15) |
 *           (scales[s-4] >> 6) << 4, m = (scales[s+4] >> 4) | (scales[s] >> 6) << 4.
 *           Chunk c = 0..3 of 64 elements uses qs[32c .. 32c+31]: element
 *           64c+l (l < 32) = d·sc_{2c}·(qs[32c+l] & 15) − dmin·m_{2c};
 *           element 64c+32+l = d·sc_{2c+1}·(qs[32c+l] >> 4) − dmin·m_{2c+1}.
 *     Q5_K 176 B: d, dmin, scales[12], qh[32], qs[128]. As Q4_K, plus a fifth
 *           (high, value 16) bit per weight from qh: in chunk c, element
 *           64c+l takes bit 2c of qh[l], element 64c+32+l takes bit 2c+1 of
 *           qh[l]: u = (qs[32c+l] & 15) | ((qh[l] >> 2c) & 1) << 4, and
 *           u = (qs[32c+l] >> 4) | ((qh[l] >> (2c+1)) & 1) << 4.
 *     Q6_K 210 B: ql[128], qh[64], scales[16] int8, d. Two halves of 128;
 *           half h uses ql[64h..], qh[32h..], scales[8h..]. For l < 32,
 *           is = l/16: q1 = (ql[l] & 15) | (qh[l] & 3) << 4,
 *           q2 = (ql[l+32] & 15) | (qh[l] >> 2 & 3) << 4,
 *           q3 = (ql[l] >> 4) | (qh[l] >> 4 & 3) << 4,
 *           q4 = (ql[l+32] >> 4) | (qh[l] >> 6 & 3) << 4, each minus 32;
 *           y[l] = d·sc[is]·q1, y[l+32] = d·sc[is+2]·q2, y[l+64] = d·sc[is+4]·q3,
 *           y[l+96] = d·sc[is+6]·q4 (relative to the half).
 *
 * Dequantisation computes in fp32 as (d·sc)·q − dmin·m (K-quants), d·q (the
 * others), then rounds once to the output dtype.
 *
 * Errors: QILIN_ERR_INVALID_ARGUMENT naming the weight and the parameter at
 * fault (shape, group_size, buffer size, row range, output dtype);
 * QILIN_ERR_UNSUPPORTED for a GGUF/safetensors type with no format here;
 * QILIN_ERR_FORMAT when a checkpoint tensor's dtype or shape does not fit
 * the format it is supposed to hold.
 *
 * Thread safety: all functions are reentrant. */
#ifndef QILIN_HOST_QUANT_H
#define QILIN_HOST_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/dtype.h"
#include "cuda/status.h"
#include "host/gguf.h"
#include "host/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
/*      enum                   name       cols/block  bytes/block (data only)  ggml type or -1 */
#define QILIN_WFORMAT_TABLE(X)                                            \
    X(QILIN_WF_F32,        "f32",            1,   4, GGUF_DT_F32)          \
    X(QILIN_WF_F16,        "f16",            1,   2, GGUF_DT_F16)          \
    X(QILIN_WF_BF16,       "bf16",           1,   2, GGUF_DT_BF16)         \
    X(QILIN_WF_FP8_BLOCK,  "fp8_e4m3_b128",  1,   1, -1)                   \
    X(QILIN_WF_INT4_GROUP, "int4_group",     8,   4, -1)                   \
    X(QILIN_WF_Q8_0,       "q8_0",          32,  34, GGUF_DT_Q8_0)         \
    X(QILIN_WF_Q4_0,       "q4_0",          32,  18, GGUF_DT_Q4_0)         \
    X(QILIN_WF_Q4_K,       "q4_k",         256, 144, GGUF_DT_Q4_K)         \
    X(QILIN_WF_Q5_K,       "q5_k",         256, 176, GGUF_DT_Q5_K)         \
    X(QILIN_WF_Q6_K,       "q6_k",         256, 210, GGUF_DT_Q6_K)
/* clang-format on */

typedef enum qilin_wformat {
#define QILIN_WFORMAT_ENUM_(name, text, blck, bytes, ggml) name,
    QILIN_WFORMAT_TABLE(QILIN_WFORMAT_ENUM_)
#undef QILIN_WFORMAT_ENUM_
        QILIN_WF_COUNT
} qilin_wformat;

enum { QUANT_FP8_BLOCK = 128, QUANT_K_BLOCK = 256 };

/* "q4_k"; "?" outside the table. */
const char *qilin_wformat_name(qilin_wformat f);
/* Columns per block and data bytes per block (INT4: 8 columns per I32 word;
 * FP8: 1, 1); 0 and *block_bytes = 0 outside the table. */
int qilin_wformat_block(qilin_wformat f, size_t *block_bytes);

/* A weight matrix in some format; pointers are borrowed. */
typedef struct quant_weight {
    qilin_wformat format;
    int64_t rows, cols;      /* [out, in] */
    const void *data;        /* layout per format, see above */
    size_t data_bytes;       /* size of the data buffer, checked */
    const void *scales;      /* FP8_BLOCK, INT4_GROUP only; NULL otherwise */
    size_t scale_bytes;      /* size of the scales buffer, checked */
    qilin_dtype scale_dtype; /* INT4_GROUP: QILIN_F32, QILIN_F16 or QILIN_BF16 */
    int64_t group_size;      /* INT4_GROUP: columns per scale, divides cols */
    const char *name;        /* for messages; NULL reads "weight" */
} quant_weight;

/* Bytes the data and the scales of `w` need (format, rows, cols, and for
 * INT4 group_size and scale_dtype are read; the buffers are not). Rejects a
 * bad shape or group size with a message naming the parameter. */
qilin_status quant_sizes(const quant_weight *w, size_t *data_bytes, size_t *scale_bytes);
/* quant_sizes plus: buffers non-NULL and data_bytes/scale_bytes equal to
 * what the shape needs. */
qilin_status quant_check(const quant_weight *w);

/* Rows [row0, row0 + nrows) of W, dequantised into out[nrows, cols] of
 * out_dtype (QILIN_F32, QILIN_BF16 or QILIN_F16, round to nearest even).
 * Validates `w` with quant_check first. */
qilin_status quant_dequantize(const quant_weight *w, int64_t row0, int64_t nrows, qilin_dtype out_dtype,
                              void *out);

/* Quantises src[rows, cols] (f32, all finite) into `data` and `scales`
 * (capacities w->data_bytes / w->scale_bytes, which must equal quant_sizes;
 * scales NULL for formats without a scale tensor) for w->format, rows, cols
 * (group_size, scale_dtype for INT4); on success points w->data/w->scales at
 * them. Scale choice (simple and sound, not llama.cpp's search):
 *   Q8_0   d = amax/127, q = round(x/d).                |err| <= d/2
 *   Q4_0   d = amax/7, q = round(x/d) in -7..7.          |err| <= d/2
 *   INT4   scale = amax/7 per group (rounded to scale_dtype), q in -7..7.
 *   FP8    s = amax/448 per 128x128 block (1 for an all-zero block),
 *          q = e4m3(x/s).            |err| <= 2^-4·|x| + 2^-10·s
 *   Q4_K/Q5_K  per sub-block lo = min(0, min x), S_s = (max x − lo)/Q
 *          (Q = 15 / 31), M_s = −lo; d = max S_s/63, dmin = max M_s/63;
 *          sc = round(S_s/d), m = round(M_s/dmin), u = round((x + dmin·m)/(d·sc))
 *          clamped to 0..Q.
 *   Q6_K   per sub-block S_s = amax/31, d = max S_s/127, sc = round(S_s/d),
 *          q = round(x/(d·sc)) clamped to −32..31.
 *   K-quants: |err| <= d·sc/2, plus the distance from x to the block's
 *   representable range where rounding sc/m to integers shrank it.
 * Non-finite input or a scale overflowing fp16: INVALID_ARGUMENT naming the
 * element or block. F32/F16/BF16 just store (round to nearest even). */
qilin_status quant_quantize(const float *src, quant_weight *w, void *data, void *scales);

/* ---- describing checkpoint tensors ---- */

/* A GGUF tensor as a weight: cols = ne[0], rows = ne[1]·ne[2]·ne[3] (expert
 * stacks are rows of consecutive matrices). UNSUPPORTED for ggml types other
 * than F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K. */
qilin_status quant_weight_from_gguf(const gguf_tensor *t, quant_weight *w);
/* An F32/F16/BF16 safetensors tensor as a weight: cols = last dim, rows =
 * product of the others (1 for a vector). */
qilin_status quant_weight_from_st(const st_tensor *t, quant_weight *w);
/* DeepSeek-style FP8: `weight` F8_E4M3 [out, in], `scale_inv` F32
 * [ceil(out/128), ceil(in/128)]. FORMAT naming the tensor on a mismatch. */
qilin_status quant_weight_fp8(const st_tensor *weight, const st_tensor *scale_inv, quant_weight *w);
/* compressed-tensors pack-quantized INT4: `packed` I32 [out, ceil(in/8)],
 * `scale` F32/F16/BF16 [out, in/group_size], `shape` (I32 or I64 [2] =
 * {out, in}) gives `in`; without it (NULL) in = 8·packed columns. */
qilin_status quant_weight_int4(const st_tensor *packed, const st_tensor *scale, const st_tensor *shape,
                               int64_t group_size, quant_weight *w);

/* ---- scalar conversions (round to nearest even) ---- */

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f); /* overflow -> inf, NaN stays NaN (quiet) */
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f); /* overflow -> inf, NaN stays NaN (quiet) */
/* e4m3fn (torch.float8_e4m3fn): 0x7f/0xff are NaN, no infinities, max 448. */
float quant_fp8_e4m3_to_f32(uint8_t b);
/* Saturating: |x| > 448 (and ±inf) -> ±448; NaN -> 0x7f (0xff if its sign is set). */
uint8_t quant_f32_to_fp8_e4m3(float f);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_QUANT_H */
