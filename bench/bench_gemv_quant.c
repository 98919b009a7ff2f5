/* bench_gemv_quant.c — decode GEMV straight from quantized weights
 * (gemv_quant.h): FP8 e4m3 [n, k] + f32 scales per 128x128 block at
 * DeepSeek-V3 shapes, INT4 group-32 pack-quantized at Kimi K2-Thinking's
 * expert shapes; m = 1, 4, 8, against the bf16 GEMV (gemv.h) on the same
 * shape. All are bound by reading W: bytes = W (1 byte a weight for FP8, 1/2
 * for INT4, 2 for bf16; plus the scales) + x + y, and the `x bf16` column is
 * the speed-up the smaller weights buy (2 or 4 at best). Before timing, each
 * shape checks the quantized GEMV against the bf16 GEMV run on
 * host/quant.c's bf16 dequantization of the same weights.
 *
 *   bench_gemv_quant [--reps N] [--tiny]
 *
 * --tiny (default in the sim build) runs small shapes only (one with k not a
 * multiple of 16: the scalar path): the emulator proves the harness and the
 * agreement, not speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/gemv.h"
#include "cuda/gemv_quant.h"
#include "host/quant.h"

typedef enum { FMT_FP8, FMT_INT4 } fmt;

typedef struct shape {
    fmt format;
    const char *layer;
    int n, k; /* W is [n, k] */
} shape;

static const shape kShapes[] = {
    {FMT_FP8, "DeepSeek-V3 q_a+kv_a (7168 -> 2112)", 2112, 7168},
    {FMT_FP8, "DeepSeek-V3 q_b (1536 -> 24576)", 24576, 1536},
    {FMT_FP8, "DeepSeek-V3 kv_b (512 -> 32768)", 32768, 512},
    {FMT_FP8, "DeepSeek-V3 o (16384 -> 7168)", 7168, 16384},
    {FMT_FP8, "DeepSeek-V3 dense gate_up (7168 -> 36864)", 36864, 7168},
    {FMT_FP8, "DeepSeek-V3 expert gate_up (7168 -> 4096)", 4096, 7168},
    {FMT_FP8, "DeepSeek-V3 expert down (2048 -> 7168)", 7168, 2048},
    {FMT_INT4, "Kimi-K2-Thinking expert gate_up (7168 -> 4096)", 4096, 7168},
    {FMT_INT4, "Kimi-K2-Thinking expert down (2048 -> 7168)", 7168, 2048},
};
static const shape kTinyShapes[] = {{FMT_FP8, "96 -> 200", 200, 96},
                                    {FMT_FP8, "200 -> 160 (scalar path)", 160, 200},
                                    {FMT_INT4, "96 -> 200", 200, 96},
                                    {FMT_INT4, "200 -> 160 (group 40, scalar path)", 160, 200}};
enum { kInt4Group = 32 }; /* Kimi K2-Thinking's; 40 for the tiny scalar-path shape */
static const int kRowsM[] = {1, 4, 8};

typedef struct run {
    fmt format;
    void *x, *y, *w_bf16;
    void *w_q;   /* e4m3 bytes or packed INT4 words */
    void *scale; /* f32 block scales or bf16 group scales */
    int m, n, k, group;
    int use_q;
} run;

static qilin_status launch(void *ctx, qilin_stream *stream) {
    const run *r = (const run *)ctx;
    if (r->use_q && r->format == FMT_FP8) {
        qilin_gemv_fp8_args g = {.y = r->y, .x = r->x, .w = r->w_q, .w_scale = r->scale, .m = r->m, .n = r->n,
                                 .k = r->k, .ldx = r->k, .ldw = r->k, .ld_scale = (r->k + 127) / 128, .ldy = r->n,
                                 .dtype = QILIN_BF16, .y_dtype = QILIN_BF16};
        return qilin_gemv_fp8(&g, stream);
    }
    if (r->use_q) {
        qilin_gemv_int4_args g = {.y = r->y, .x = r->x, .w_packed = r->w_q, .w_scale = r->scale, .m = r->m,
                                  .n = r->n, .k = r->k, .group_size = r->group, .ldx = r->k, .ldw = (r->k + 7) / 8,
                                  .ld_scale = r->k / r->group, .ldy = r->n, .dtype = QILIN_BF16,
                                  .y_dtype = QILIN_BF16, .scale_dtype = QILIN_BF16};
        return qilin_gemv_int4(&g, stream);
    }
    qilin_gemv_args g = {.y = r->y, .x = r->x, .w = r->w_bf16, .m = r->m, .n = r->n, .k = r->k, .ldx = r->k,
                         .ldw = r->k, .ldy = r->n, .dtype = QILIN_BF16, .y_dtype = QILIN_BF16};
    return qilin_gemv(&g, stream);
}

static int upload(void *dst, const void *src, size_t bytes) {
    return qilin_memcpy_h2d(dst, src, bytes, NULL) == QILIN_OK && qilin_stream_synchronize(NULL) == QILIN_OK;
}

/* Bytes of the quantized W's data and scales. */
static void q_bytes(const run *r, size_t *data, size_t *scales) {
    if (r->format == FMT_FP8) {
        *data = (size_t)r->n * r->k;
        *scales = (size_t)((r->n + 127) / 128) * ((r->k + 127) / 128) * 4;
    } else {
        *data = (size_t)r->n * ((r->k + 7) / 8) * 4;
        *scales = (size_t)r->n * (r->k / r->group) * 2;
    }
}

/* Random codes (e4m3 never NaN; all 16 nibbles), scales 2^-9..2^-8 (f32 for
 * FP8, bf16 for INT4), x bf16 in [-1, 1) (never zero), uploaded; W also as
 * host/quant.c's bf16 dequantization. */
static int make_inputs(run *r, int max_m, uint64_t seed) {
    size_t nw = (size_t)r->n * r->k, nd, ns;
    q_bytes(r, &nd, &ns);
    size_t nx = (size_t)max_m * r->k;
    uint8_t *codes = malloc(nd), *scales = malloc(ns);
    uint16_t *wb = malloc(nw * 2), *xb = malloc(nx * 2);
    int ok = codes && scales && wb && xb;
    for (size_t i = 0; ok && i < nd; i++) {
        uint8_t c = (uint8_t)bench_xorshift(&seed);
        codes[i] = r->format == FMT_FP8 && (c & 0x7f) == 0x7f ? 0x3f : c;
    }
    for (size_t i = 0; ok && i < ns / (r->format == FMT_FP8 ? 4 : 2); i++) {
        float f = ldexpf(1.0f + (float)(bench_xorshift(&seed) % 1024) / 1024.0f, -9);
        if (r->format == FMT_FP8) memcpy(scales + 4 * i, &f, 4);
        else {
            uint16_t h = bench_bf16_from_float(f);
            memcpy(scales + 2 * i, &h, 2);
        }
    }
    for (size_t i = 0; ok && i < nx; i++) {
        float f = (float)((bench_xorshift(&seed) >> 40) & 0xFFFF) / 32768.0f - 1.0f;
        xb[i] = bench_bf16_from_float(f == 0.0f ? 0.5f : f);
    }
    quant_weight qw = {.format = r->format == FMT_FP8 ? QILIN_WF_FP8_BLOCK : QILIN_WF_INT4_GROUP, .rows = r->n,
                       .cols = r->k, .data = codes, .data_bytes = nd, .scales = scales, .scale_bytes = ns,
                       .scale_dtype = QILIN_BF16, .group_size = r->group, .name = "bench W"};
    ok = ok && quant_dequantize(&qw, 0, r->n, QILIN_BF16, wb) == QILIN_OK;
    ok = ok && upload(r->w_q, codes, nd) && upload(r->scale, scales, ns) && upload(r->w_bf16, wb, nw * 2) &&
         upload(r->x, xb, nx * 2);
    free(codes), free(scales), free(wb), free(xb);
    return ok;
}

/* The quantized GEMV and the bf16 GEMV on the dequantized W agree (bf16 rounding
 * of W and of y apart): within 2 % of the outputs' RMS plus the value. */
static int check_agree(bench_device *b, run *r) {
    size_t count = (size_t)r->m * r->n;
    uint16_t *a = malloc(count * 2), *c = malloc(count * 2);
    int ok = a && c;
    r->use_q = 1;
    ok = ok && launch(r, b->stream) == QILIN_OK && qilin_memcpy_d2h(a, r->y, count * 2, b->stream) == QILIN_OK;
    r->use_q = 0;
    ok = ok && launch(r, b->stream) == QILIN_OK && qilin_memcpy_d2h(c, r->y, count * 2, b->stream) == QILIN_OK;
    ok = ok && qilin_stream_synchronize(b->stream) == QILIN_OK;
    size_t bad = 0;
    if (ok && !bench_bf16_agree(a, c, count, &bad)) {
        fprintf(stderr, "bench_gemv_quant: quantized and bf16 GEMV disagree at m %d n %d k %d, element %zu: %g vs %g\n",
                r->m, r->n, r->k, bad, bench_bf16_to_float(a[bad]), bench_bf16_to_float(c[bad]));
        ok = 0;
    }
    free(a), free(c);
    return ok;
}

int main(int argc, char **argv) {
    int reps = 10, tiny = 0;
    const int rc = bench_parse_args(argc, argv, "bench_gemv_quant", &reps, &tiny);
    if (rc >= 0) return rc;
    bench_device b;
    if (bench_open(&b)) return 1;
    if (b.props.is_sim) tiny = 1, reps = reps < 2 ? reps : 2;
    const shape *shapes = tiny ? kTinyShapes : kShapes;
    const int n_shapes = tiny ? (int)(sizeof kTinyShapes / sizeof kTinyShapes[0]) : (int)(sizeof kShapes / sizeof kShapes[0]);
    const int max_m = kRowsM[2];
    printf("decode linear, FP8 e4m3 W with 128x128 f32 block scales or INT4 W with bf16 group-%d scales,\n"
           "vs bf16 W; x, y bf16; bytes = W (+ scales) + x + y once; reps %d (median)\n", (int)kInt4Group, reps);
    bench_header("layer / m / weights");
    int status = 0;
    for (int s = 0; s < n_shapes && !status; s++) {
        const shape *sh = &shapes[s];
        run r = {.format = sh->format, .n = sh->n, .k = sh->k, .group = sh->k % kInt4Group ? 40 : kInt4Group};
        size_t nd, ns;
        q_bytes(&r, &nd, &ns);
        if (qilin_malloc(&r.w_q, nd, "W quantized") != QILIN_OK || qilin_malloc(&r.scale, ns, "W scales") != QILIN_OK ||
            qilin_malloc(&r.w_bf16, (size_t)sh->n * sh->k * 2, "W bf16") != QILIN_OK ||
            qilin_malloc(&r.x, (size_t)max_m * sh->k * 2, "x") != QILIN_OK ||
            qilin_malloc(&r.y, (size_t)max_m * sh->n * 2, "y") != QILIN_OK)
            return bench_fail("buffers");
        if (!make_inputs(&r, max_m, 1 + (uint64_t)s)) return bench_fail("inputs");
        for (int i = 0; i < 3 && !status; i++) {
            r.m = kRowsM[i];
            if (!check_agree(&b, &r)) {
                status = 1;
                break;
            }
            const double xy = 2.0 * ((double)r.m * sh->k + (double)r.m * sh->n), wn = (double)sh->n * sh->k;
            const double flops = 2.0 * r.m * wn;
            char what[128], extra[64];
            r.use_q = 0;
            const double us_bf16 = bench_time_us(&b, launch, &r, reps);
            r.use_q = 1;
            const double us_q = bench_time_us(&b, launch, &r, reps);
            if (us_bf16 < 0 || us_q < 0) return bench_fail("timing");
            snprintf(what, sizeof what, "%s m=%d bf16", sh->layer, r.m);
            bench_row(&b, what, us_bf16, 2.0 * wn + xy, flops, "");
            snprintf(what, sizeof what, "%s m=%d %s", sh->layer, r.m, sh->format == FMT_FP8 ? "fp8" : "int4");
            snprintf(extra, sizeof extra, "%.2f x bf16", us_bf16 / us_q);
            bench_row(&b, what, us_q, (double)nd + (double)ns + xy, flops, extra);
        }
        qilin_free(r.w_q), qilin_free(r.scale), qilin_free(r.w_bf16), qilin_free(r.x), qilin_free(r.y);
    }
    bench_close(&b);
    return status;
}
