/* bench_gemm_quant.c — linear layers straight from quantized weights at
 * prefill and decode sizes: FP8 e4m3 with 128x128 block scales
 * (qilin_gemm_fp8, DeepSeek-V3 shapes) and GGUF Q8_0 / Q4_K / Q6_K blocks
 * (qilin_gemv_gguf for m <= 8, qilin_gemm_gguf beyond; Llama-3-8B shapes,
 * what a Q4_K_M file holds), each beside cuBLAS bf16 on host/quant.c's
 * dequantization of the same weights (`x cuBLAS`: > 1 means the quantized
 * kernel is faster). Before timing, each shape checks that the two agree.
 *
 *   bench_gemm_quant [--reps N] [--tiny]
 *
 * Columns as bench/README.md defines them: bytes = W as stored (data +
 * scales) + x + y once; TFLOP/s = 2 m n k. Prefill (m = 4096) is bound by
 * the tensor cores (% of the bf16 peak: the FP8 GEMM dequantizes to bf16
 * mma), decode (m = 1, 8) by reading W (% of the measured bandwidth).
 * --tiny (default in the sim build) runs small shapes that prove the
 * harness and the agreement, not speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/blas.h"
#include "cuda/gemm_gguf.h"
#include "cuda/gemm_quant.h"
#include "cuda/gemv.h"
#include "host/quant.h"

typedef struct shape {
    qilin_wformat format;
    const char *layer;
    int n, k; /* W is [n, k] */
} shape;

static const shape kShapes[] = {
    {QILIN_WF_FP8_BLOCK, "DeepSeek-V3 q_b (1536 -> 24576)", 24576, 1536},
    {QILIN_WF_FP8_BLOCK, "DeepSeek-V3 o (16384 -> 7168)", 7168, 16384},
    {QILIN_WF_FP8_BLOCK, "DeepSeek-V3 dense gate_up (7168 -> 36864)", 36864, 7168},
    {QILIN_WF_Q4_K, "Llama-3-8B gate_up Q4_K (4096 -> 28672)", 28672, 4096},
    {QILIN_WF_Q6_K, "Llama-3-8B down Q6_K (14336 -> 4096)", 4096, 14336},
    {QILIN_WF_Q8_0, "Llama-3-8B qkv Q8_0 (4096 -> 6144)", 6144, 4096},
};
static const shape kTinyShapes[] = {
    {QILIN_WF_FP8_BLOCK, "200 -> 160", 160, 200},
    {QILIN_WF_Q4_K, "256 -> 96 Q4_K", 96, 256},
    {QILIN_WF_Q8_0, "96 -> 64 Q8_0", 64, 96},
};
static const int kRows[] = {1, 8, 4096};
static const int kTinyRows[] = {1, 8, 40};

typedef struct run {
    qilin_blas *blas;
    qilin_wformat format;
    void *x, *y, *w_bf16, *w_q, *scale;
    int64_t ldw_q; /* GGUF: bytes per stored row */
    int m, n, k;
    int use_q;
} run;

static qilin_gguf_format gguf_of(qilin_wformat f) {
    return f == QILIN_WF_Q8_0 ? QILIN_GGUF_Q8_0 : f == QILIN_WF_Q4_K ? QILIN_GGUF_Q4_K : QILIN_GGUF_Q6_K;
}

static qilin_status launch(void *ctx, qilin_stream *stream) {
    const run *r = (const run *)ctx;
    if (r->use_q && r->format == QILIN_WF_FP8_BLOCK) {
        qilin_gemm_fp8_args g = {.y = r->y, .x = r->x, .w = r->w_q, .w_scale = r->scale, .m = r->m, .n = r->n,
                                 .k = r->k, .ldx = r->k, .ldw = r->k, .ld_scale = (r->k + 127) / 128, .ldy = r->n,
                                 .dtype = QILIN_BF16, .y_dtype = QILIN_BF16};
        return qilin_gemm_fp8(&g, stream);
    }
    if (r->use_q) {
        qilin_gemm_gguf_args g = {.y = r->y, .x = r->x, .w = r->w_q, .m = r->m, .n = r->n, .k = r->k,
                                  .ldx = r->k, .ldw = r->ldw_q, .ldy = r->n, .format = gguf_of(r->format),
                                  .dtype = QILIN_BF16, .y_dtype = QILIN_BF16};
        return r->m <= QILIN_GEMV_MAX_M ? qilin_gemv_gguf(&g, stream) : qilin_gemm_gguf(&g, stream);
    }
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR, .trans_a = QILIN_OP_N, .trans_b = QILIN_OP_T,
                         .m = r->m, .n = r->n, .k = r->k, .ab_type = QILIN_BF16, .c_type = QILIN_BF16,
                         .a = r->x, .lda = r->k, .b = r->w_bf16, .ldb = r->k, .c = r->y, .ldc = r->n,
                         .batch = 1, .alpha = 1.0f, .beta = 0.0f};
    return qilin_gemm(r->blas, &g, stream);
}

static int upload(void *dst, const void *src, size_t bytes) {
    return qilin_memcpy_h2d(dst, src, bytes, NULL) == QILIN_OK && qilin_stream_synchronize(NULL) == QILIN_OK;
}

/* W ~ N(0, 1) quantized by host/quant.c into the format (and its bf16
 * dequantization for cuBLAS), x bf16 in [-1, 1) (never zero); all uploaded.
 * *data / *scales: the stored bytes. */
static int make_inputs(run *r, int max_m, uint64_t seed, size_t *data, size_t *scales) {
    const size_t nw = (size_t)r->n * r->k, nx = (size_t)max_m * r->k;
    quant_weight qw = {.format = r->format, .rows = r->n, .cols = r->k, .name = "bench W"};
    if (quant_sizes(&qw, data, scales) != QILIN_OK) return 0;
    qw.data_bytes = *data, qw.scale_bytes = *scales;
    float *src = malloc(nw * sizeof(float));
    uint8_t *codes = malloc(*data), *sc = malloc(*scales ? *scales : 1);
    uint16_t *wb = malloc(nw * 2), *xb = malloc(nx * 2);
    int ok = src && codes && sc && wb && xb;
    for (size_t i = 0; ok && i < nw; i++) { /* Irwin-Hall: four uniforms, ~N(0, 1) */
        uint64_t u = bench_xorshift(&seed);
        float s = 0.0f;
        for (int q = 0; q < 4; q++) s += (float)((u >> (16 * q)) & 0xffff) / 65536.0f;
        src[i] = (s - 2.0f) * 1.7320508f;
    }
    for (size_t i = 0; ok && i < nx; i++) {
        float f = (float)((bench_xorshift(&seed) >> 40) & 0xFFFF) / 32768.0f - 1.0f;
        xb[i] = bench_bf16_from_float(f == 0.0f ? 0.5f : f);
    }
    uint8_t *sc_or_null = *scales ? sc : NULL; /* GGUF blocks carry their scales inside */
    ok = ok && quant_quantize(src, &qw, codes, sc_or_null) == QILIN_OK;
    qw.data = codes, qw.scales = sc_or_null;
    ok = ok && quant_dequantize(&qw, 0, r->n, QILIN_BF16, wb) == QILIN_OK;
    ok = ok && upload(r->w_q, codes, *data) && upload(r->w_bf16, wb, nw * 2) && upload(r->x, xb, nx * 2);
    if (ok && *scales) ok = upload(r->scale, sc, *scales);
    r->ldw_q = (int64_t)(*data / (size_t)r->n);
    free(src), free(codes), free(sc), free(wb), free(xb);
    return ok;
}

/* The quantized kernel and cuBLAS on the dequantized W agree within 2 % of
 * the outputs' RMS plus the value (both round y to bf16; the GEMM rounds W
 * to bf16 too). */
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
        fprintf(stderr, "bench_gemm_quant: %s and cuBLAS disagree at m %d n %d k %d, element %zu: %g vs %g\n",
                qilin_wformat_name(r->format), r->m, r->n, r->k, bad, bench_bf16_to_float(a[bad]), bench_bf16_to_float(c[bad]));
        ok = 0;
    }
    free(a), free(c);
    return ok;
}

int main(int argc, char **argv) {
    int reps = 10, tiny = 0;
    const int rc = bench_parse_args(argc, argv, "bench_gemm_quant", &reps, &tiny);
    if (rc >= 0) return rc;
    bench_device b;
    if (bench_open(&b)) return 1;
    if (b.props.is_sim) tiny = 1, reps = reps < 2 ? reps : 2;
    const shape *shapes = tiny ? kTinyShapes : kShapes;
    const int n_shapes = tiny ? (int)(sizeof kTinyShapes / sizeof *kTinyShapes) : (int)(sizeof kShapes / sizeof *kShapes);
    const int *rows = tiny ? kTinyRows : kRows, max_m = rows[2];
    qilin_blas *blas = NULL;
    if (qilin_blas_create(&blas) != QILIN_OK) return bench_fail("cuBLAS handle");
    printf("linear layers from quantized W (FP8 e4m3 + 128x128 f32 block scales; GGUF blocks) vs cuBLAS bf16\n"
           "on the same W dequantized; x, y bf16; bytes = W as stored + x + y once; reps %d (median)\n", reps);
    bench_header("layer / m / kernel");
    int status = 0;
    for (int s = 0; s < n_shapes && !status; s++) {
        const shape *sh = &shapes[s];
        run r = {.blas = blas, .format = sh->format, .n = sh->n, .k = sh->k};
        quant_weight qw = {.format = sh->format, .rows = sh->n, .cols = sh->k, .name = "bench W"};
        size_t nd = 0, ns = 0;
        if (quant_sizes(&qw, &nd, &ns) != QILIN_OK) return bench_fail("sizes");
        if (qilin_malloc(&r.w_q, nd, "W quantized") != QILIN_OK ||
            qilin_malloc(&r.scale, ns ? ns : 4, "W scales") != QILIN_OK ||
            qilin_malloc(&r.w_bf16, (size_t)sh->n * sh->k * 2, "W bf16") != QILIN_OK ||
            qilin_malloc(&r.x, (size_t)max_m * sh->k * 2, "x") != QILIN_OK ||
            qilin_malloc(&r.y, (size_t)max_m * sh->n * 2, "y") != QILIN_OK)
            return bench_fail("buffers");
        if (!make_inputs(&r, max_m, 1 + (uint64_t)s, &nd, &ns)) return bench_fail("inputs");
        for (int i = 0; i < 3 && !status; i++) {
            r.m = rows[i];
            if (!check_agree(&b, &r)) {
                status = 1;
                break;
            }
            const double xy = 2.0 * ((double)r.m * sh->k + (double)r.m * sh->n), wn = (double)sh->n * sh->k;
            const double flops = 2.0 * r.m * wn;
            char what[160], extra[64];
            r.use_q = 0;
            const double us_blas = bench_time_us(&b, launch, &r, reps);
            r.use_q = 1;
            const double us_q = bench_time_us(&b, launch, &r, reps);
            if (us_blas < 0 || us_q < 0) return bench_fail("timing");
            snprintf(what, sizeof what, "%s m=%d cuBLAS bf16", sh->layer, r.m);
            bench_row(&b, what, us_blas, 2.0 * wn + xy, flops, "");
            snprintf(what, sizeof what, "%s m=%d %s %s", sh->layer, r.m, qilin_wformat_name(sh->format),
                     sh->format == QILIN_WF_FP8_BLOCK || r.m > QILIN_GEMV_MAX_M ? "gemm" : "gemv");
            snprintf(extra, sizeof extra, "%.2f x cuBLAS", us_blas / us_q);
            bench_row(&b, what, us_q, (double)nd + (double)ns + xy, flops, extra);
        }
        qilin_free(r.w_q), qilin_free(r.scale), qilin_free(r.w_bf16), qilin_free(r.x), qilin_free(r.y);
    }
    qilin_blas_destroy(blas);
    bench_close(&b);
    return status;
}
