/* quant.c — CPU weight formats: sizes and validation, block decoders, row
 * dequantisation, quantisers and the fp16/bf16/fp8 scalar conversions (see
 * quant.h for every layout and the scale choices).
 *
 * Decoding goes one row at a time into an fp32 scratch row, then one rounding
 * to the output dtype; a block decoder writes exactly its block's elements.
 * All multi-byte fields are read byte by byte as little-endian, so unaligned
 * tensor data (GGUF blocks are 2-byte aligned at best) is fine. */
#include "host/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Scalar conversions                                                  */
/* ------------------------------------------------------------------ */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float quant_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    int e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) return bits_f32(sign | 0x7f800000u | (uint32_t)m << 13);
    float mag = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 1024), e - 25);
    return sign ? -mag : mag;
}

uint16_t quant_f32_to_f16(float f) {
    uint32_t x = f32_bits(f), ax = x & 0x7fffffffu;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* NaN, quieted */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) /* below 2^-14: fp16 subnormal, units of 2^-24 (exact scaling) */
        return (uint16_t)(sign | (uint16_t)nearbyintf(bits_f32(ax) * 16777216.0f));
    /* Normal: drop 13 mantissa bits with round-to-nearest-even, rebias 127 -> 15. */
    uint32_t r = (ax + 0xfffu + ((ax >> 13) & 1)) >> 13;
    return (uint16_t)(sign | (r - (112u << 10)));
}

float quant_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t quant_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* NaN, quieted */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float quant_fp8_e4m3_to_f32(uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    float mag = e == 0 ? ldexpf((float)m, -9) : ldexpf((float)(8 + m), e - 10);
    return (b & 0x80) ? -mag : mag;
}

uint8_t quant_f32_to_fp8_e4m3(float f) {
    uint8_t sign = (uint8_t)((f32_bits(f) >> 24) & 0x80);
    if (isnan(f)) return (uint8_t)(sign | 0x7f);
    float a = fabsf(f);
    if (a >= 448.0f) return (uint8_t)(sign | 0x7e);
    if (a < 0.015625f) /* below 2^-6, subnormal: code = a / 2^-9 rounded; 8 is the smallest normal */
        return (uint8_t)(sign | (uint8_t)nearbyintf(ldexpf(a, 9)));
    int e;
    frexpf(a, &e);                                     /* a = frac · 2^e, frac in [0.5, 1) */
    e -= 1;                                            /* a in [2^e, 2^(e+1)), e in -6..8 */
    int m = (int)nearbyintf(ldexpf(a, -e) * 8.0f) - 8; /* 0..8, exact products */
    if (m == 8) {
        m = 0;
        e++;
    }
    unsigned code = (unsigned)(e + 7) << 3 | (unsigned)m;
    return (uint8_t)(sign | (code > 0x7e ? 0x7e : code));
}

/* ------------------------------------------------------------------ */
/* Format table, sizes, validation                                     */
/* ------------------------------------------------------------------ */

const char *qilin_wformat_name(qilin_wformat f) {
    switch (f) {
#define QUANT_NAME_(name, text, blck, bytes, ggml)                                                           \
    case name:                                                                                               \
        return text;
        QILIN_WFORMAT_TABLE(QUANT_NAME_)
#undef QUANT_NAME_
    default:
        return "?";
    }
}

int qilin_wformat_block(qilin_wformat f, size_t *block_bytes) {
    switch (f) {
#define QUANT_BLOCK_(name, text, blck, bytes, ggml)                                                          \
    case name:                                                                                               \
        *block_bytes = bytes;                                                                                \
        return blck;
        QILIN_WFORMAT_TABLE(QUANT_BLOCK_)
#undef QUANT_BLOCK_
    default:
        *block_bytes = 0;
        return 0;
    }
}

static const char *wname(const quant_weight *w) { return w->name ? w->name : "weight"; }

/* *out = a·b·c, false on size_t overflow. */
static int mul3(uint64_t a, uint64_t b, uint64_t c, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    uint64_t ab = a * b;
    if (ab != 0 && c > SIZE_MAX / ab) return 0;
    *out = (size_t)(ab * c);
    return 1;
}

static size_t scale_dtype_size(qilin_dtype t) {
    return t == QILIN_F32 ? 4 : (t == QILIN_F16 || t == QILIN_BF16) ? 2 : 0;
}

qilin_status quant_sizes(const quant_weight *w, size_t *data_bytes, size_t *scale_bytes) {
    const char *n = wname(w), *fmt = qilin_wformat_name(w->format);
    size_t bb;
    int blck = qilin_wformat_block(w->format, &bb);
    if (blck == 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: unknown weight format %d", n, w->format);
    if (w->rows <= 0 || w->cols <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: %s shape [rows = %lld, cols = %lld] must be positive", n, fmt,
                           (long long)w->rows, (long long)w->cols);
    uint64_t rows = (uint64_t)w->rows, cols = (uint64_t)w->cols, srows = 0, scols = 0, ss = 0;
    uint64_t units = (cols + (uint64_t)blck - 1) / (uint64_t)blck; /* INT4 rounds up to whole words */
    if (w->format != QILIN_WF_INT4_GROUP && cols % (uint64_t)blck != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: cols = %lld is not a multiple of the %s block size %d", n, (long long)w->cols,
                           fmt, blck);
    if (w->format == QILIN_WF_FP8_BLOCK) {
        srows = (rows + QUANT_FP8_BLOCK - 1) / QUANT_FP8_BLOCK;
        scols = (cols + QUANT_FP8_BLOCK - 1) / QUANT_FP8_BLOCK;
        ss = 4;
    } else if (w->format == QILIN_WF_INT4_GROUP) {
        if (w->group_size <= 0 || cols % (uint64_t)w->group_size != 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "%s: group_size = %lld does not divide cols = %lld", n,
                               (long long)w->group_size, (long long)w->cols);
        ss = scale_dtype_size(w->scale_dtype);
        if (ss == 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: scale_dtype %s is not f32, f16 or bf16", n,
                               qilin_dtype_name(w->scale_dtype));
        srows = rows;
        scols = cols / (uint64_t)w->group_size;
    }
    if (!mul3(rows, units, bb, data_bytes) || !mul3(srows, scols, ss, scale_bytes))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: %s [%lld, %lld] overflows size_t", n, fmt,
                           (long long)w->rows, (long long)w->cols);
    return QILIN_OK;
}

qilin_status quant_check(const quant_weight *w) {
    size_t db = 0, sb = 0;
    QILIN_TRY(quant_sizes(w, &db, &sb));
    const char *n = wname(w), *fmt = qilin_wformat_name(w->format);
    if (!w->data || w->data_bytes != db)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: data is %zu bytes%s; %s [%lld, %lld] needs %zu",
                           n, w->data_bytes, w->data ? "" : " (NULL)", fmt, (long long)w->rows,
                           (long long)w->cols, db);
    if (sb == 0 ? w->scales != NULL || w->scale_bytes != 0 : !w->scales || w->scale_bytes != sb)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: scales is %zu bytes%s; %s [%lld, %lld] needs %zu",
                           n, w->scale_bytes, w->scales ? "" : " (NULL)", fmt, (long long)w->rows,
                           (long long)w->cols, sb);
    return QILIN_OK;
}

/* ------------------------------------------------------------------ */
/* Block decoders                                                      */
/* ------------------------------------------------------------------ */

static float load_f16(const uint8_t *p) { return quant_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void decode_q8_0(const uint8_t *b, float *y) {
    float d = load_f16(b);
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

static void decode_q4_0(const uint8_t *b, float *y) {
    float d = load_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 15) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* 6-bit scale and min of sub-block s from the 12-byte K-quant packing. */
static void k_scale_min(const uint8_t *sc12, int s, int *sc, int *m) {
    if (s < 4) {
        *sc = sc12[s] & 63;
        *m = sc12[s + 4] & 63;
    } else {
        *sc = (sc12[s + 4] & 15) | (sc12[s - 4] >> 6) << 4;
        *m = (sc12[s + 4] >> 4) | (sc12[s] >> 6) << 4;
    }
}

/* Q4_K (qh == NULL) and Q5_K share everything but the fifth bit. */
static void decode_q45_k(const uint8_t *b, float *y, int q5) {
    float d = load_f16(b), dmin = load_f16(b + 2);
    const uint8_t *sc12 = b + 4, *qh = b + 16, *qs = b + (q5 ? 48 : 16);
    for (int c = 0; c < 4; c++) {
        int sc1, m1, sc2, m2;
        k_scale_min(sc12, 2 * c, &sc1, &m1);
        k_scale_min(sc12, 2 * c + 1, &sc2, &m2);
        float d1 = d * (float)sc1, o1 = dmin * (float)m1, d2 = d * (float)sc2, o2 = dmin * (float)m2;
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 15, hi = qs[32 * c + l] >> 4;
            if (q5) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            y[64 * c + l] = d1 * (float)lo - o1;
            y[64 * c + 32 + l] = d2 * (float)hi - o2;
        }
    }
}

static void decode_q6_k(const uint8_t *b, float *y) {
    float d = load_f16(b + 208);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(b + 192 + 8 * h);
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 15) | (qh[l] & 3) << 4) - 32;
            int q2 = ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32;
            int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32;
            int q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
            o[l] = d * (float)sc[is] * (float)q1;
            o[l + 32] = d * (float)sc[is + 2] * (float)q2;
            o[l + 64] = d * (float)sc[is + 4] * (float)q3;
            o[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static float load_scale(const uint8_t *p, qilin_dtype t) {
    if (t == QILIN_F32) return bits_f32(load_u32(p));
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return t == QILIN_F16 ? quant_f16_to_f32(h) : quant_bf16_to_f32(h);
}

/* Row r of a validated weight into y[cols]. */
static void decode_row(const quant_weight *w, int64_t r, float *y) {
    const uint8_t *data = w->data, *sc = w->scales;
    size_t bb;
    int blck = qilin_wformat_block(w->format, &bb);
    size_t cols = (size_t)w->cols, ur = (size_t)r;
    const uint8_t *row = data + ur * ((cols + (size_t)blck - 1) / (size_t)blck) * bb;
    switch (w->format) {
    case QILIN_WF_F32:
        for (size_t c = 0; c < cols; c++) y[c] = bits_f32(load_u32(row + 4 * c));
        break;
    case QILIN_WF_F16:
        for (size_t c = 0; c < cols; c++) y[c] = load_f16(row + 2 * c);
        break;
    case QILIN_WF_BF16:
        for (size_t c = 0; c < cols; c++)
            y[c] = quant_bf16_to_f32((uint16_t)(row[2 * c] | row[2 * c + 1] << 8));
        break;
    case QILIN_WF_FP8_BLOCK: {
        size_t scols = (cols + QUANT_FP8_BLOCK - 1) / QUANT_FP8_BLOCK;
        const uint8_t *srow = sc + 4 * scols * (ur / QUANT_FP8_BLOCK);
        for (size_t c = 0; c < cols; c++)
            y[c] = quant_fp8_e4m3_to_f32(row[c]) * bits_f32(load_u32(srow + 4 * (c / QUANT_FP8_BLOCK)));
        break;
    }
    case QILIN_WF_INT4_GROUP: {
        size_t g = (size_t)w->group_size, ss = scale_dtype_size(w->scale_dtype);
        const uint8_t *srow = sc + ur * (cols / g) * ss;
        for (size_t c = 0; c < cols; c++) {
            int u = (int)(load_u32(row + 4 * (c / 8)) >> (4 * (c % 8)) & 15);
            y[c] = (float)(u - 8) * load_scale(srow + ss * (c / g), w->scale_dtype);
        }
        break;
    }
    default:
        for (size_t k = 0; k < cols / (size_t)blck; k++) {
            const uint8_t *b = row + k * bb;
            float *o = y + k * (size_t)blck;
            if (w->format == QILIN_WF_Q8_0)
                decode_q8_0(b, o);
            else if (w->format == QILIN_WF_Q4_0)
                decode_q4_0(b, o);
            else if (w->format == QILIN_WF_Q6_K)
                decode_q6_k(b, o);
            else
                decode_q45_k(b, o, w->format == QILIN_WF_Q5_K);
        }
        break;
    }
}

static void store_row(const float *y, size_t n, qilin_dtype t, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        if (t == QILIN_F32) {
            memcpy(out + 4 * i, &y[i], 4);
            continue;
        }
        uint16_t h = t == QILIN_F16 ? quant_f32_to_f16(y[i]) : quant_f32_to_bf16(y[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

qilin_status quant_dequantize(const quant_weight *w, int64_t row0, int64_t nrows, qilin_dtype out_dtype,
                              void *out) {
    QILIN_TRY(quant_check(w));
    const char *n = wname(w);
    if (row0 < 0 || nrows < 0 || row0 > w->rows || nrows > w->rows - row0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: row range [%lld, +%lld) outside the %lld rows", n,
                           (long long)row0, (long long)nrows, (long long)w->rows);
    size_t os = scale_dtype_size(out_dtype);
    if (os == 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: output dtype %s is not f32, f16 or bf16", n,
                           qilin_dtype_name(out_dtype));
    if (!out && nrows > 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: output buffer is NULL", n);
    size_t cols = (size_t)w->cols;
    float *y = malloc(cols * sizeof *y);
    if (!y) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: scratch row of %zu floats", n, cols);
    for (int64_t r = 0; r < nrows; r++) {
        decode_row(w, row0 + r, y);
        store_row(y, cols, out_dtype, (uint8_t *)out + (size_t)r * cols * os);
    }
    free(y);
    return QILIN_OK;
}

/* ------------------------------------------------------------------ */
/* Quantisers                                                          */
/* ------------------------------------------------------------------ */

static int iround(float v) { return (int)nearbyintf(v); }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void store_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* x rounded to fp16 and stored at p; returns the stored value, NaN-free.
 * *ok cleared when it overflows. */
static float put_f16(uint8_t *p, float x, int *ok) {
    uint16_t h = quant_f32_to_f16(x);
    store_f16(p, h);
    float r = quant_f16_to_f32(h);
    if (!isfinite(r)) *ok = 0;
    return r;
}

static float amax_of(const float *x, int n) {
    float a = 0;
    for (int i = 0; i < n; i++) a = fmaxf(a, fabsf(x[i]));
    return a;
}

static int encode_q8_0(const float *x, uint8_t *b) {
    int ok = 1;
    float d = put_f16(b, amax_of(x, 32) / 127.0f, &ok);
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)(d > 0 ? clampi(iround(x[j] / d), -127, 127) : 0);
    return ok;
}

static int encode_q4_0(const float *x, uint8_t *b) {
    int ok = 1;
    float d = put_f16(b, amax_of(x, 32) / 7.0f, &ok);
    for (int j = 0; j < 16; j++) {
        int lo = d > 0 ? clampi(iround(x[j] / d), -8, 7) : 0;
        int hi = d > 0 ? clampi(iround(x[j + 16] / d), -8, 7) : 0;
        b[2 + j] = (uint8_t)((lo + 8) | (hi + 8) << 4);
    }
    return ok;
}

/* Q4_K (q5 = 0) and Q5_K: asymmetric sub-blocks of 32, see quant.h. */
static int encode_q45_k(const float *x, uint8_t *b, int q5) {
    const int qmax = q5 ? 31 : 15;
    float scale[8], off[8], smax = 0, omax = 0;
    for (int s = 0; s < 8; s++) {
        float lo = 0, hi = -INFINITY;
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * s + l]);
            hi = fmaxf(hi, x[32 * s + l]);
        }
        scale[s] = (hi - lo) / (float)qmax;
        off[s] = -lo;
        smax = fmaxf(smax, scale[s]);
        omax = fmaxf(omax, off[s]);
    }
    int ok = 1, sc[8], m[8];
    float d = put_f16(b, smax / 63.0f, &ok), dmin = put_f16(b + 2, omax / 63.0f, &ok);
    for (int s = 0; s < 8; s++) {
        sc[s] = d > 0 ? clampi(iround(scale[s] / d), 0, 63) : 0;
        m[s] = dmin > 0 ? clampi(iround(off[s] / dmin), 0, 63) : 0;
    }
    uint8_t *sc12 = b + 4, *qh = b + 16, *qs = b + (q5 ? 48 : 16);
    for (int s = 0; s < 4; s++) {
        sc12[s] = (uint8_t)(sc[s] | (sc[s + 4] >> 4) << 6);
        sc12[s + 4] = (uint8_t)(m[s] | (m[s + 4] >> 4) << 6);
        sc12[s + 8] = (uint8_t)((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
    }
    if (q5) memset(qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int u[2];
            for (int k = 0; k < 2; k++) {
                int s = 2 * c + k;
                float S = d * (float)sc[s], o = dmin * (float)m[s];
                u[k] = S > 0 ? clampi(iround((x[32 * s + l] + o) / S), 0, qmax) : 0;
            }
            qs[32 * c + l] = (uint8_t)((u[0] & 15) | (u[1] & 15) << 4);
            if (q5) qh[l] |= (uint8_t)((u[0] >> 4) << (2 * c) | (u[1] >> 4) << (2 * c + 1));
        }
    return ok;
}

static int encode_q6_k(const float *x, uint8_t *b) {
    float scale[16], smax = 0;
    for (int s = 0; s < 16; s++) {
        scale[s] = amax_of(x + 16 * s, 16) / 31.0f;
        smax = fmaxf(smax, scale[s]);
    }
    int ok = 1, u[256];
    float d = put_f16(b + 208, smax / 127.0f, &ok);
    for (int s = 0; s < 16; s++) {
        int sc = d > 0 ? clampi(iround(scale[s] / d), 0, 127) : 0;
        b[192 + s] = (uint8_t)(int8_t)sc;
        float S = d * (float)sc;
        for (int l = 0; l < 16; l++)
            u[16 * s + l] = (S > 0 ? clampi(iround(x[16 * s + l] / S), -32, 31) : 0) + 32;
    }
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        const int *v = u + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((v[l] & 15) | (v[l + 64] & 15) << 4);
            ql[l + 32] = (uint8_t)((v[l + 32] & 15) | (v[l + 96] & 15) << 4);
            qh[l] =
                (uint8_t)(v[l] >> 4 | (v[l + 32] >> 4) << 2 | (v[l + 64] >> 4) << 4 | (v[l + 96] >> 4) << 6);
        }
    }
    return ok;
}

static void encode_fp8_blocks(const float *src, const quant_weight *w, uint8_t *q, uint8_t *scales) {
    size_t rows = (size_t)w->rows, cols = (size_t)w->cols, B = QUANT_FP8_BLOCK;
    size_t srows = (rows + B - 1) / B, scols = (cols + B - 1) / B;
    for (size_t br = 0; br < srows; br++)
        for (size_t bc = 0; bc < scols; bc++) {
            size_t r1 = br * B + B < rows ? br * B + B : rows, c1 = bc * B + B < cols ? bc * B + B : cols;
            float amax = 0;
            for (size_t r = br * B; r < r1; r++)
                for (size_t c = bc * B; c < c1; c++) amax = fmaxf(amax, fabsf(src[r * cols + c]));
            float s = amax > 0 ? amax / 448.0f : 1.0f;
            memcpy(scales + 4 * (br * scols + bc), &s, 4);
            for (size_t r = br * B; r < r1; r++)
                for (size_t c = bc * B; c < c1; c++)
                    q[r * cols + c] = quant_f32_to_fp8_e4m3(src[r * cols + c] / s);
        }
}

/* Rounds a scale to `t` and stores it; returns the stored value. */
static float put_scale(uint8_t *p, float x, qilin_dtype t, int *ok) {
    if (t == QILIN_F32) {
        memcpy(p, &x, 4);
        return x;
    }
    if (t == QILIN_F16) return put_f16(p, x, ok);
    uint16_t h = quant_f32_to_bf16(x);
    store_f16(p, h);
    return quant_bf16_to_f32(h);
}

static qilin_status encode_int4(const float *src, const quant_weight *w, uint8_t *q, uint8_t *scales) {
    size_t rows = (size_t)w->rows, cols = (size_t)w->cols, g = (size_t)w->group_size;
    size_t words = (cols + 7) / 8, ss = scale_dtype_size(w->scale_dtype);
    memset(q, 0, rows * words * 4);
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < cols / g; k++) {
            const float *x = src + r * cols + k * g;
            float amax = 0;
            for (size_t j = 0; j < g; j++) amax = fmaxf(amax, fabsf(x[j]));
            int ok = 1;
            float s = put_scale(scales + (r * (cols / g) + k) * ss, amax / 7.0f, w->scale_dtype, &ok);
            if (!ok)
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: row %zu group %zu: scale %g overflows %s",
                                   wname(w), r, k, amax / 7.0, qilin_dtype_name(w->scale_dtype));
            for (size_t j = 0; j < g; j++) {
                size_t c = k * g + j;
                int u = (s > 0 ? clampi(iround(x[j] / s), -8, 7) : 0) + 8;
                q[r * words * 4 + c / 2] |= (uint8_t)(u << (4 * (c % 2))); /* little-endian nibble order */
            }
        }
    return QILIN_OK;
}

static qilin_status encode_blocks(const float *src, const quant_weight *w, uint8_t *data) {
    size_t bb;
    size_t blck = (size_t)qilin_wformat_block(w->format, &bb);
    size_t cols = (size_t)w->cols, nb = cols / blck;
    for (size_t r = 0; r < (size_t)w->rows; r++)
        for (size_t k = 0; k < nb; k++) {
            const float *x = src + r * cols + k * blck;
            uint8_t *b = data + (r * nb + k) * bb;
            int ok = w->format == QILIN_WF_Q8_0   ? encode_q8_0(x, b)
                     : w->format == QILIN_WF_Q4_0 ? encode_q4_0(x, b)
                     : w->format == QILIN_WF_Q6_K ? encode_q6_k(x, b)
                                                  : encode_q45_k(x, b, w->format == QILIN_WF_Q5_K);
            if (!ok)
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                   "%s: row %zu block %zu: %s scale overflows fp16", wname(w), r, k,
                                   qilin_wformat_name(w->format));
        }
    return QILIN_OK;
}

qilin_status quant_quantize(const float *src, quant_weight *w, void *data, void *scales) {
    quant_weight t = *w;
    t.data = data;
    t.scales = scales;
    QILIN_TRY(quant_check(&t));
    if (!src) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: source is NULL", wname(w));
    size_t cols = (size_t)w->cols, n = (size_t)w->rows * cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(src[i]))
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: source[%zu, %zu] = %g is not finite",
                               wname(w), i / cols, i % cols, src[i]);
    switch (w->format) {
    case QILIN_WF_F32:
    case QILIN_WF_F16:
    case QILIN_WF_BF16:
        store_row(src, n,
                  w->format == QILIN_WF_F32   ? QILIN_F32
                  : w->format == QILIN_WF_F16 ? QILIN_F16
                                              : QILIN_BF16,
                  data);
        break;
    case QILIN_WF_FP8_BLOCK:
        encode_fp8_blocks(src, w, data, scales);
        break;
    case QILIN_WF_INT4_GROUP:
        QILIN_TRY(encode_int4(src, w, data, scales));
        break;
    default:
        QILIN_TRY(encode_blocks(src, w, data));
        break;
    }
    *w = t;
    return QILIN_OK;
}

/* ------------------------------------------------------------------ */
/* Checkpoint tensors                                                  */
/* ------------------------------------------------------------------ */

/* *out = product of n dims; FORMAT (naming the tensor) past 2^48 elements,
 * which also keeps later index arithmetic far from overflow. A checkpoint
 * tensor with a zero dimension may carry any value in the others. */
static qilin_status dim_product(const int64_t *dims, int n, const char *file, const char *name,
                                int64_t *out) {
    uint64_t p = 1;
    for (int d = 0; d < n; d++) {
        if (dims[d] < 0 || (dims[d] != 0 && p > ((uint64_t)1 << 48) / (uint64_t)dims[d]))
            return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s': dimensions too large for a weight", file,
                               name);
        p *= (uint64_t)dims[d];
    }
    *out = (int64_t)p;
    return QILIN_OK;
}

qilin_status quant_weight_from_gguf(const gguf_tensor *t, quant_weight *w) {
    int f = -1;
#define QUANT_FROM_GGML_(name, text, blck, bytes, ggml)                                                      \
    if ((int)(ggml) >= 0 && (int)t->type == (int)(ggml)) f = name;
    QILIN_WFORMAT_TABLE(QUANT_FROM_GGML_)
#undef QUANT_FROM_GGML_
    if (f < 0)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: ggml type %s (%u) has no dequantiser", t->name,
                           gguf_dtype_name(t->type), (unsigned)t->type);
    memset(w, 0, sizeof *w);
    w->format = (qilin_wformat)f;
    w->name = t->name;
    w->cols = t->ne[0];
    QILIN_TRY(dim_product(t->ne + 1, GGUF_MAX_DIMS - 1, "gguf", t->name, &w->rows));
    w->data = t->data;
    w->data_bytes = t->nbytes;
    return quant_check(w);
}

qilin_status quant_weight_from_st(const st_tensor *t, quant_weight *w) {
    memset(w, 0, sizeof *w);
    if (t->dtype == ST_F32)
        w->format = QILIN_WF_F32;
    else if (t->dtype == ST_F16)
        w->format = QILIN_WF_F16;
    else if (t->dtype == ST_BF16)
        w->format = QILIN_WF_BF16;
    else
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, not F32, F16 or BF16", t->file,
                           t->name, st_dtype_name(t->dtype));
    w->name = t->name;
    /* rows = product of all dims but the last, cols = the last */
    w->cols = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    QILIN_TRY(dim_product(t->shape, t->ndim > 0 ? t->ndim - 1 : 0, t->file, t->name, &w->rows));
    w->data = t->data;
    w->data_bytes = t->nbytes;
    return quant_check(w);
}

static qilin_status expect_2d(const st_tensor *t, st_dtype dt, int64_t rows, int64_t cols, const char *role) {
    if (t->dtype != dt || t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s' (%s) is %s [%lld, %lld]%s, expected %s [%lld, %lld]", t->file,
                           t->name, role, st_dtype_name(t->dtype), t->ndim > 0 ? (long long)t->shape[0] : 0,
                           t->ndim > 1 ? (long long)t->shape[1] : 0, t->ndim == 2 ? "" : " (not 2-D)",
                           st_dtype_name(dt), (long long)rows, (long long)cols);
    return QILIN_OK;
}

qilin_status quant_weight_fp8(const st_tensor *weight, const st_tensor *scale_inv, quant_weight *w) {
    memset(w, 0, sizeof *w);
    if (weight->dtype != ST_F8_E4M3 || weight->ndim != 2)
        return qilin_error(QILIN_ERR_FORMAT, "%s: tensor '%s' is %s with %d dims, expected 2-D F8_E4M3",
                           weight->file, weight->name, st_dtype_name(weight->dtype), weight->ndim);
    int64_t rows = 0, cols = 0, B = QUANT_FP8_BLOCK;
    QILIN_TRY(dim_product(weight->shape, 1, weight->file, weight->name, &rows));
    QILIN_TRY(dim_product(weight->shape + 1, 1, weight->file, weight->name, &cols));
    QILIN_TRY(expect_2d(scale_inv, ST_F32, (rows + B - 1) / B, (cols + B - 1) / B, "weight_scale_inv"));
    *w = (quant_weight){.format = QILIN_WF_FP8_BLOCK,
                        .rows = rows,
                        .cols = cols,
                        .data = weight->data,
                        .data_bytes = weight->nbytes,
                        .scales = scale_inv->data,
                        .scale_bytes = scale_inv->nbytes,
                        .name = weight->name};
    return quant_check(w);
}

static qilin_status int4_in_features(const st_tensor *shape, int64_t *out_rows, int64_t *in) {
    if ((shape->dtype != ST_I32 && shape->dtype != ST_I64) || shape->ndim != 1 || shape->shape[0] != 2)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s' (weight_shape) is %s with %d dims, expected I32/I64 [2]",
                           shape->file, shape->name, st_dtype_name(shape->dtype), shape->ndim);
    const uint8_t *p = shape->data;
    int64_t v[2];
    for (int i = 0; i < 2; i++) {
        if (shape->dtype == ST_I32) {
            v[i] = (int32_t)load_u32(p + 4 * i);
        } else {
            uint64_t x = (uint64_t)load_u32(p + 8 * i) | (uint64_t)load_u32(p + 8 * i + 4) << 32;
            v[i] = (int64_t)x;
        }
    }
    *out_rows = v[0];
    *in = v[1];
    return QILIN_OK;
}

qilin_status quant_weight_int4(const st_tensor *packed, const st_tensor *scale, const st_tensor *shape,
                               int64_t group_size, quant_weight *w) {
    memset(w, 0, sizeof *w);
    if (packed->dtype != ST_I32 || packed->ndim != 2)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s' (weight_packed) is %s with %d dims, expected 2-D I32",
                           packed->file, packed->name, st_dtype_name(packed->dtype), packed->ndim);
    int64_t rows = 0, cols = 0;
    QILIN_TRY(dim_product(packed->shape, 1, packed->file, packed->name, &rows));
    QILIN_TRY(dim_product(packed->shape + 1, 1, packed->file, packed->name, &cols));
    cols *= 8;
    if (shape) {
        int64_t srows = 0;
        QILIN_TRY(int4_in_features(shape, &srows, &cols));
        if (srows != rows || cols <= 0 || (cols + 7) / 8 != packed->shape[1])
            return qilin_error(QILIN_ERR_FORMAT,
                               "%s: tensor '%s' (weight_shape) says [%lld, %lld], which does not match "
                               "weight_packed '%s' [%lld, %lld]",
                               shape->file, shape->name, (long long)srows, (long long)cols, packed->name,
                               (long long)rows, (long long)packed->shape[1]);
    }
    if (group_size <= 0 || cols % group_size != 0)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s': group_size = %lld does not divide in_features = %lld",
                           packed->file, packed->name, (long long)group_size, (long long)cols);
    qilin_dtype sd = scale->dtype == ST_F32 ? QILIN_F32 : scale->dtype == ST_F16 ? QILIN_F16 : QILIN_BF16;
    if (scale->dtype != ST_F32 && scale->dtype != ST_F16 && scale->dtype != ST_BF16)
        return qilin_error(QILIN_ERR_FORMAT,
                           "%s: tensor '%s' (weight_scale) is %s, expected F32, F16 or BF16", scale->file,
                           scale->name, st_dtype_name(scale->dtype));
    QILIN_TRY(expect_2d(scale, scale->dtype, rows, cols / group_size, "weight_scale"));
    *w = (quant_weight){.format = QILIN_WF_INT4_GROUP,
                        .rows = rows,
                        .cols = cols,
                        .data = packed->data,
                        .data_bytes = packed->nbytes,
                        .scales = scale->data,
                        .scale_bytes = scale->nbytes,
                        .scale_dtype = sd,
                        .group_size = group_size,
                        .name = packed->name};
    return quant_check(w);
}
