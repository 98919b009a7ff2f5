/* gguf_block.cuh — decoding GGUF (ggml) weight blocks on the device, shared
 * by the GGUF GEMV and GEMM (gemm_gguf.cu). The layouts are written out in
 * host/quant.h, whose C decoder is the reference these are tested against
 * (tests/test_gemm_gguf.cpp).
 *
 * The unit is 16 consecutive weights [e0, e0 + 16) of one block, e0 a
 * multiple of 16: 16 weights share one scale in every format here (Q6_K's
 * sub-blocks are 16 wide, the others' 32), so a caller decodes a half or a
 * whole 32-column group with one or two calls and no format needs a
 * per-weight scale lookup. Values are computed in fp32 the way host/quant.c
 * does: d·q (Q8_0, Q4_0), (d·sc)·q − dmin·m (Q4_K, Q5_K), d·sc·q (Q6_K).
 * Bytes are read one at a time: blocks (18, 34, 144, 176, 210 bytes) have
 * no alignment in a row. */
#ifndef QILIN_GGUF_BLOCK_CUH
#define QILIN_GGUF_BLOCK_CUH

#include <stdint.h>

#include "gemm_gguf.h"
#include "kernel.h"

/* IEEE binary16 bits -> f32, exactly: the 15 magnitude bits under the f32
 * exponent field scaled by 2^112 give normals and subnormals alike; the top
 * exponent (31) is infinity or NaN. */
__device__ inline float gguf_f16(const uint8_t *p) {
    uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    float mag = __uint_as_float((h & 0x7fffu) << 13) * 0x1p112f;
    if ((h & 0x7c00u) == 0x7c00u) mag = __uint_as_float(0x7f800000u | (h & 0x3ffu) << 13);
    return (h & 0x8000u) ? -mag : mag;
}

/* The 6-bit scale and min of K-quant sub-block s (0..7) from its 12 bytes. */
__device__ inline void gguf_k_scale_min(const uint8_t *sc12, int s, int *sc, int *m) {
    if (s < 4) {
        *sc = sc12[s] & 63;
        *m = sc12[s + 4] & 63;
    } else {
        *sc = (sc12[s + 4] & 15) | (sc12[s - 4] >> 6) << 4;
        *m = (sc12[s + 4] >> 4) | (sc12[s] >> 6) << 4;
    }
}

/* out[0..15] = weights e0 .. e0 + 15 of the block at b (e0 % 16 == 0, e0 <
 * the format's block size). */
__device__ inline void gguf_decode16(qilin_gguf_format f, const uint8_t *b, int e0, float out[16]) {
    switch (f) {
    case QILIN_GGUF_Q8_0: {
        const float d = gguf_f16(b);
#pragma unroll
        for (int i = 0; i < 16; i++) out[i] = d * (float)(int8_t)b[2 + e0 + i];
        return;
    }
    case QILIN_GGUF_Q4_0: { /* weights 0..15 are the low nibbles of qs[0..15], 16..31 the high */
        const float d = gguf_f16(b);
        const int shift = e0 >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 16; i++) out[i] = d * (float)(((b[2 + i] >> shift) & 15) - 8);
        return;
    }
    case QILIN_GGUF_Q4_K:
    case QILIN_GGUF_Q5_K: {
        /* sub-block s = e0 / 32 lives in chunk s / 2: the low nibbles of
         * qs[32c ..] for even s, the high ones for odd s; Q5_K's fifth bit is
         * bit s of qh[l] */
        const bool q5 = f == QILIN_GGUF_Q5_K;
        const float d = gguf_f16(b), dmin = gguf_f16(b + 2);
        const uint8_t *qh = b + 16, *qs = b + (q5 ? 48 : 16);
        const int s = e0 / 32, l0 = e0 % 32, shift = (s & 1) * 4;
        int sc, m;
        gguf_k_scale_min(b + 4, s, &sc, &m);
        const float ds = d * (float)sc, dm = dmin * (float)m;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const int l = l0 + i;
            int u = (qs[32 * (s / 2) + l] >> shift) & 15;
            if (q5) u |= ((qh[l] >> s) & 1) << 4;
            out[i] = ds * (float)u - dm;
        }
        return;
    }
    case QILIN_GGUF_Q6_K: {
        /* half h = e / 128, quarter q of it, lane l: low 4 bits from
         * ql[64h + l + 32(q & 1)] (high nibble for q >= 2), high 2 bits from
         * qh[32h + l] >> 2q; the scale of weights e .. e + 15 is scales[e / 16] */
        const int h = e0 / 128, q = (e0 % 128) / 32, l0 = e0 % 32;
        const uint8_t *ql = b + 64 * h + 32 * (q & 1), *qh = b + 128 + 32 * h;
        const float d = gguf_f16(b + 208) * (float)(int8_t)b[192 + e0 / 16];
        const int nshift = q >= 2 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const int l = l0 + i;
            const int u = ((ql[l] >> nshift) & 15) | ((qh[l] >> (2 * q)) & 3) << 4;
            out[i] = d * (float)(u - 32);
        }
        return;
    }
    }
}

/* Weights per block and bytes per block of a format (0 outside the enum). */
__host__ __device__ inline int gguf_block_elems(qilin_gguf_format f) {
    return f == QILIN_GGUF_Q8_0 || f == QILIN_GGUF_Q4_0 ? 32 : f <= QILIN_GGUF_Q6_K ? 256 : 0;
}
__host__ __device__ inline int gguf_block_bytes(qilin_gguf_format f) {
    switch (f) {
    case QILIN_GGUF_Q8_0:
        return 34;
    case QILIN_GGUF_Q4_0:
        return 18;
    case QILIN_GGUF_Q4_K:
        return 144;
    case QILIN_GGUF_Q5_K:
        return 176;
    case QILIN_GGUF_Q6_K:
        return 210;
    }
    return 0;
}

/* Weights c .. c + 15 of row w_row (c % 16 == 0). */
__device__ inline void gguf_row_decode16(qilin_gguf_format f, const uint8_t *w_row, int c, float out[16]) {
    const int be = gguf_block_elems(f);
    gguf_decode16(f, w_row + (size_t)(c / be) * gguf_block_bytes(f), c % be, out);
}

#endif /* QILIN_GGUF_BLOCK_CUH */
