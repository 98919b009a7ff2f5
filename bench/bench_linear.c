/* bench_linear.c — the dense linear layer y = x W^T (bf16) at real model
 * shapes, both ways the forward pass can run it: our GEMV (gemv.h, m <= 8)
 * and cuBLAS (blas.h). It is the evidence for where the forward switches
 * (QILIN_GEMV_MAX_M) and for keeping cuBLAS above it: at m <= 8 the layer is
 * bound by reading W, so both should sit near the bandwidth line and the
 * `x cuBLAS` column says who is closer; from m ~ 64 on it turns compute-bound
 * and cuBLAS's tensor-core kernels are the bar.
 *
 *   bench_linear [--reps N] [--tiny]
 *
 * --tiny (default in the sim build) runs small shapes only: the emulator
 * proves the harness and checks GEMV against cuBLAS, not speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/blas.h"
#include "cuda/gemv.h"

typedef struct shape {
    const char *model, *layer;
    int n, k; /* W is [n, k] */
} shape;

static const shape kShapes[] = {
    {"Llama-3-8B", "qkv (4096 -> 6144)", 6144, 4096},
    {"Llama-3-8B", "o (4096 -> 4096)", 4096, 4096},
    {"Llama-3-8B", "gate_up (4096 -> 28672)", 28672, 4096},
    {"Llama-3-8B", "down (14336 -> 4096)", 4096, 14336},
    {"Llama-3-8B", "lm_head (4096 -> 128256)", 128256, 4096},
    {"Qwen3-30B-A3B", "qkv (2048 -> 5120)", 5120, 2048},
    {"Qwen3-30B-A3B", "o (4096 -> 2048)", 2048, 4096},
    {"DeepSeek-V3", "q_b (1536 -> 24576)", 24576, 1536},
    {"DeepSeek-V3", "o (16384 -> 7168)", 7168, 16384},
};
static const shape kTinyShapes[] = {
    {"tiny", "96 -> 200", 200, 96},
    {"tiny", "256 -> 64", 64, 256},
};
static const int kRows[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 4096};
static const int kTinyRows[] = {1, 3, 8, 16};

typedef struct run {
    qilin_blas *blas;
    void *x, *w, *y;
    int m, n, k;
    int use_gemv;
} run;

static qilin_status launch_linear(void *ctx, qilin_stream *stream) {
    const run *r = (const run *)ctx;
    if (r->use_gemv) {
        qilin_gemv_args g = {.y = r->y, .x = r->x, .w = r->w, .bias = NULL, .m = r->m, .n = r->n, .k = r->k,
                             .ldx = r->k, .ldw = r->k, .ldy = r->n, .dtype = QILIN_BF16, .y_dtype = QILIN_BF16};
        return qilin_gemv(&g, stream);
    }
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR, .trans_a = QILIN_OP_N, .trans_b = QILIN_OP_T,
                         .m = r->m, .n = r->n, .k = r->k, .ab_type = QILIN_BF16, .c_type = QILIN_BF16,
                         .a = r->x, .lda = r->k, .b = r->w, .ldb = r->k, .c = r->y, .ldc = r->n,
                         .batch = 1, .alpha = 1.0f, .beta = 0.0f};
    return qilin_gemm(r->blas, &g, stream);
}

/* Random bf16 in [-1, 1) (never zeros), uploaded. */
static int upload_random(void *dst, size_t n, uint64_t seed) {
    uint16_t *h = malloc(n * 2);
    if (!h) return 0;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float f = (float)((x >> 40) & 0xFFFF) / 32768.0f - 1.0f;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        h[i] = (uint16_t)(bits >> 16);
    }
    int ok = qilin_memcpy_h2d(dst, h, n * 2, NULL) == QILIN_OK && qilin_stream_synchronize(NULL) == QILIN_OK;
    free(h);
    return ok;
}

static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* GEMV and cuBLAS agree on y (both round one fp32 sum to bf16): checked once per shape. */
static int check_agree(bench_device *b, run *r) {
    size_t count = (size_t)r->m * r->n;
    uint16_t *a = malloc(count * 2), *c = malloc(count * 2);
    int ok = a && c;
    r->use_gemv = 1;
    ok = ok && launch_linear(r, b->stream) == QILIN_OK && qilin_memcpy_d2h(a, r->y, count * 2, b->stream) == QILIN_OK;
    r->use_gemv = 0;
    ok = ok && launch_linear(r, b->stream) == QILIN_OK && qilin_memcpy_d2h(c, r->y, count * 2, b->stream) == QILIN_OK;
    ok = ok && qilin_stream_synchronize(b->stream) == QILIN_OK;
    for (size_t i = 0; ok && i < count; i++) {
        float x = bf16_to_float(a[i]), y = bf16_to_float(c[i]);
        if (!(fabsf(x - y) <= 0.02f * (1.0f + fabsf(y)))) {
            fprintf(stderr, "bench_linear: GEMV and cuBLAS disagree at m %d n %d k %d, element %zu: %g vs %g\n", r->m,
                    r->n, r->k, i, x, y);
            ok = 0;
        }
    }
    free(a);
    free(c);
    return ok;
}

int main(int argc, char **argv) {
    int reps = 10, tiny = 0;
    const int rc = bench_parse_args(argc, argv, "bench_linear", &reps, &tiny);
    if (rc >= 0) return rc;
    bench_device b;
    if (bench_open(&b)) return 1;
    if (b.props.is_sim) tiny = 1, reps = reps < 2 ? reps : 2;
    const shape *shapes = tiny ? kTinyShapes : kShapes;
    const int n_shapes = tiny ? 2 : (int)(sizeof kShapes / sizeof kShapes[0]);
    const int *rows = tiny ? kTinyRows : kRows;
    const int n_rows = tiny ? 4 : (int)(sizeof kRows / sizeof kRows[0]);
    run r = {0};
    if (qilin_blas_create(&r.blas) != QILIN_OK) return bench_fail("cuBLAS handle");
    printf("bf16 linear y[m, n] = x[m, k] W[n, k]^T; bytes = W + x + y once; reps %d (median)\n", reps);
    bench_header("model / layer / m / kernel");
    int status = 0;
    for (int s = 0; s < n_shapes && !status; s++) {
        const shape *sh = &shapes[s];
        const int max_m = rows[n_rows - 1];
        r.n = sh->n, r.k = sh->k;
        if (qilin_malloc(&r.w, (size_t)sh->n * sh->k * 2, "W") != QILIN_OK ||
            qilin_malloc(&r.x, (size_t)max_m * sh->k * 2, "x") != QILIN_OK ||
            qilin_malloc(&r.y, (size_t)max_m * sh->n * 2, "y") != QILIN_OK)
            return bench_fail("buffers");
        if (!upload_random(r.w, (size_t)sh->n * sh->k, 1 + s) || !upload_random(r.x, (size_t)max_m * sh->k, 100 + s))
            return bench_fail("upload");
        for (int i = 0; i < n_rows && !status; i++) {
            r.m = rows[i];
            if (r.m <= QILIN_GEMV_MAX_M && !check_agree(&b, &r)) {
                status = 1;
                break;
            }
            double bytes = 2.0 * ((double)sh->n * sh->k + (double)r.m * sh->k + (double)r.m * sh->n);
            double flops = 2.0 * r.m * sh->n * sh->k;
            char what[128], extra[64] = "";
            r.use_gemv = 0;
            const double us_blas = bench_time_us(&b, launch_linear, &r, reps);
            if (us_blas < 0) return bench_fail("timing cuBLAS");
            snprintf(what, sizeof what, "%s %s m=%d cublas", sh->model, sh->layer, r.m);
            bench_row(&b, what, us_blas, bytes, flops, "");
            if (r.m <= QILIN_GEMV_MAX_M) {
                r.use_gemv = 1;
                const double us = bench_time_us(&b, launch_linear, &r, reps);
                if (us < 0) return bench_fail("timing GEMV");
                snprintf(what, sizeof what, "%s %s m=%d gemv", sh->model, sh->layer, r.m);
                snprintf(extra, sizeof extra, "%.2f x cuBLAS", us_blas / us);
                bench_row(&b, what, us, bytes, flops, extra);
            }
        }
        qilin_free(r.w), qilin_free(r.x), qilin_free(r.y);
    }
    qilin_blas_destroy(r.blas);
    bench_close(&b);
    return status;
}
