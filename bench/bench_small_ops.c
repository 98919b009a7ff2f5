/* bench_small_ops.c — the per-step kernels between the matmuls, at model
 * shapes: RMSNorm fused with the residual add (qilin_rmsnorm with a
 * residual: the form every layer runs twice) at Llama-3-8B (4096) and
 * DeepSeek-V3 (7168) widths, and the device sampler (qilin_sample) over
 * Llama-3 (128256) and DeepSeek-V3 (129280) vocabularies, greedy and
 * top-p 0.9 at temperature 0.8. All are bound by memory: RMSNorm moves x
 * and the residual in and out (4 passes of rows x dim), sampling reads the
 * fp32 logits once at least (top-p reads them more: its % of bandwidth says
 * how many times). Before timing, RMSNorm is checked against a float64
 * reference and greedy sampling against the host argmax.
 *
 *   bench_small_ops [--reps N] [--tiny]
 *
 * --tiny (default in the sim build): small widths and vocabularies that
 * prove the harness and the checks, not speed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/kernels.h"
#include "cuda/sampling.h"

/* ---- RMSNorm + residual ---------------------------------------------------- */

typedef struct norm_run {
    void *out, *residual, *x, *weight;
    int rows, dim;
} norm_run;

static qilin_status launch_norm(void *ctx, qilin_stream *stream) {
    const norm_run *r = (const norm_run *)ctx;
    qilin_rmsnorm_args a = {.out = r->out, .residual = r->residual, .x = r->x, .weight = r->weight,
                            .rows = r->rows, .dim = r->dim, .eps = 1e-6f, .dtype = QILIN_BF16};
    return qilin_rmsnorm(&a, stream);
}

static void random_bf16(uint16_t *h, size_t n, uint64_t *seed) {
    for (size_t i = 0; i < n; i++) {
        float f = (float)((bench_xorshift(seed) >> 40) & 0xFFFF) / 32768.0f - 1.0f;
        h[i] = bench_bf16_from_float(f == 0.0f ? 0.25f : f);
    }
}

/* One run of the kernel on fresh inputs vs float64: residual' = x + residual
 * (rounded to bf16), out = residual' / rms(residual') * weight; within 2
 * bf16 ulps (2^-7 relative) plus 1e-3. */
static int check_norm(bench_device *b, norm_run *r, uint64_t seed) {
    const size_t n = (size_t)r->rows * r->dim;
    uint16_t *x = malloc(n * 2), *res = malloc(n * 2), *w = malloc((size_t)r->dim * 2), *out = malloc(n * 2),
             *res_out = malloc(n * 2);
    int ok = x && res && w && out && res_out;
    if (ok) random_bf16(x, n, &seed), random_bf16(res, n, &seed), random_bf16(w, (size_t)r->dim, &seed);
    ok = ok && qilin_memcpy_h2d(r->x, x, n * 2, b->stream) == QILIN_OK &&
         qilin_memcpy_h2d(r->residual, res, n * 2, b->stream) == QILIN_OK &&
         qilin_memcpy_h2d(r->weight, w, (size_t)r->dim * 2, b->stream) == QILIN_OK &&
         launch_norm(r, b->stream) == QILIN_OK && qilin_memcpy_d2h(out, r->out, n * 2, b->stream) == QILIN_OK &&
         qilin_memcpy_d2h(res_out, r->residual, n * 2, b->stream) == QILIN_OK &&
         qilin_stream_synchronize(b->stream) == QILIN_OK;
    for (int row = 0; ok && row < r->rows; row++) {
        double ss = 0.0;
        const size_t o = (size_t)row * r->dim;
        for (int i = 0; i < r->dim; i++) {
            double v = bench_bf16_to_float(bench_bf16_from_float(bench_bf16_to_float(x[o + i]) +
                                                                 bench_bf16_to_float(res[o + i])));
            ss += v * v;
        }
        const double inv = 1.0 / sqrt(ss / r->dim + 1e-6);
        for (int i = 0; ok && i < r->dim; i++) {
            double v = bench_bf16_to_float(bench_bf16_from_float(bench_bf16_to_float(x[o + i]) +
                                                                 bench_bf16_to_float(res[o + i])));
            double want = v * inv * bench_bf16_to_float(w[i]), got = bench_bf16_to_float(out[o + i]);
            if (!(fabs(got - want) <= fabs(want) * 0.0079 + 1e-3) || bench_bf16_to_float(res_out[o + i]) != v) {
                fprintf(stderr, "bench_small_ops: rmsnorm row %d col %d: %g, want %g (residual %g, want %g)\n",
                        row, i, got, want, bench_bf16_to_float(res_out[o + i]), v);
                ok = 0;
            }
        }
    }
    free(x), free(res), free(w), free(out), free(res_out);
    return ok;
}

/* ---- sampling ---------------------------------------------------------------- */

typedef struct sample_run {
    float *logits;
    int *ids;
    qilin_sampling_params *params; /* device, [rows] */
    void *ws;
    size_t ws_bytes;
    int rows, vocab;
} sample_run;

static qilin_status launch_sample(void *ctx, qilin_stream *stream) {
    const sample_run *r = (const sample_run *)ctx;
    qilin_sample_args a = {.out_ids = r->ids, .logits = r->logits, .ld = r->vocab, .rows = r->rows,
                           .vocab = r->vocab, .params = r->params, .workspace = r->ws,
                           .workspace_bytes = r->ws_bytes};
    return qilin_sample(&a, stream);
}

/* Random logits N(0, 2)-ish (never all equal), uploaded; argmax per row into want[]. */
static int make_logits(sample_run *r, uint64_t seed, int *want) {
    const size_t n = (size_t)r->rows * r->vocab;
    float *h = malloc(n * sizeof(float));
    if (!h) return 0;
    for (int row = 0; row < r->rows; row++) {
        int best = 0;
        for (int v = 0; v < r->vocab; v++) {
            uint64_t u = bench_xorshift(&seed);
            float s = 0.0f;
            for (int q = 0; q < 4; q++) s += (float)((u >> (16 * q)) & 0xffff) / 65536.0f;
            float f = (s - 2.0f) * 3.4641016f; /* std 2 */
            h[(size_t)row * r->vocab + v] = f;
            if (f > h[(size_t)row * r->vocab + best]) best = v;
        }
        want[row] = best;
    }
    int ok = qilin_memcpy_h2d(r->logits, h, n * sizeof(float), NULL) == QILIN_OK &&
             qilin_stream_synchronize(NULL) == QILIN_OK;
    free(h);
    return ok;
}

static int set_params(sample_run *r, const qilin_sampling_params *p) {
    qilin_sampling_params *h = malloc((size_t)r->rows * sizeof *h);
    if (!h) return 0;
    for (int i = 0; i < r->rows; i++) h[i] = *p, h[i].step = (uint64_t)i;
    int ok = qilin_memcpy_h2d(r->params, h, (size_t)r->rows * sizeof *h, NULL) == QILIN_OK &&
             qilin_stream_synchronize(NULL) == QILIN_OK;
    free(h);
    return ok;
}

static int check_greedy(bench_device *b, sample_run *r, const int *want) {
    int *got = malloc((size_t)r->rows * sizeof(int));
    int ok = got && launch_sample(r, b->stream) == QILIN_OK &&
             qilin_memcpy_d2h(got, r->ids, (size_t)r->rows * sizeof(int), b->stream) == QILIN_OK &&
             qilin_stream_synchronize(b->stream) == QILIN_OK;
    for (int i = 0; ok && i < r->rows; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "bench_small_ops: greedy row %d of vocab %d chose %d, argmax %d\n", i, r->vocab, got[i],
                    want[i]);
            ok = 0;
        }
    free(got);
    return ok;
}

int main(int argc, char **argv) {
    int reps = 10, tiny = 0;
    const int rc = bench_parse_args(argc, argv, "bench_small_ops", &reps, &tiny);
    if (rc >= 0) return rc;
    bench_device b;
    if (bench_open(&b)) return 1;
    if (b.props.is_sim) tiny = 1, reps = reps < 2 ? reps : 2;
    printf("per-step kernels between the matmuls, bf16 activations, fp32 logits; reps %d (median)\n", reps);
    bench_header("op / shape");

    const int dims[] = {4096, 7168}, tiny_dims[] = {200, 96};
    const int rows[] = {1, 64, 4096}, tiny_rows[] = {1, 5, 33};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 3; i++) {
            norm_run r = {.rows = tiny ? tiny_rows[i] : rows[i], .dim = tiny ? tiny_dims[d] : dims[d]};
            const size_t n = (size_t)r.rows * r.dim;
            if (qilin_malloc(&r.out, n * 2, "out") != QILIN_OK || qilin_malloc(&r.x, n * 2, "x") != QILIN_OK ||
                qilin_malloc(&r.residual, n * 2, "residual") != QILIN_OK ||
                qilin_malloc(&r.weight, (size_t)r.dim * 2, "weight") != QILIN_OK)
                return bench_fail("rmsnorm buffers");
            if (!check_norm(&b, &r, 11 + (uint64_t)(d * 3 + i))) return 1;
            const double us = bench_time_us(&b, launch_norm, &r, reps);
            if (us < 0) return bench_fail("timing");
            char what[96];
            snprintf(what, sizeof what, "rmsnorm + residual dim=%d rows=%d", r.dim, r.rows);
            bench_row(&b, what, us, 4.0 * n * 2 + r.dim * 2.0, 0.0, "");
            qilin_free(r.out), qilin_free(r.x), qilin_free(r.residual), qilin_free(r.weight);
        }

    const int vocabs[] = {128256, 129280}, tiny_vocabs[] = {1000, 517};
    const int srows[] = {1, 64}, tiny_srows[] = {1, 7};
    const qilin_sampling_params greedy = {.temperature = 0.0f, .top_p = 1.0f, .repetition_penalty = 1.0f},
                                top_p = {.temperature = 0.8f, .top_p = 0.9f, .repetition_penalty = 1.0f,
                                         .seed = 42};
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < 2; i++) {
            sample_run r = {.rows = tiny ? tiny_srows[i] : srows[i], .vocab = tiny ? tiny_vocabs[v] : vocabs[v]};
            r.ws_bytes = qilin_sample_workspace(r.rows, r.vocab);
            int *want = malloc((size_t)r.rows * sizeof(int));
            if (!want || qilin_malloc((void **)&r.logits, (size_t)r.rows * r.vocab * 4, "logits") != QILIN_OK ||
                qilin_malloc((void **)&r.ids, (size_t)r.rows * 4, "ids") != QILIN_OK ||
                qilin_malloc((void **)&r.params, (size_t)r.rows * sizeof(qilin_sampling_params), "params") !=
                    QILIN_OK ||
                (r.ws_bytes && qilin_malloc(&r.ws, r.ws_bytes, "sampler workspace") != QILIN_OK))
                return bench_fail("sampling buffers");
            if (!make_logits(&r, 29 + (uint64_t)(2 * v + i), want) || !set_params(&r, &greedy)) return 1;
            if (!check_greedy(&b, &r, want)) return 1;
            const double bytes = (double)r.rows * r.vocab * 4;
            char what[96];
            for (int kind = 0; kind < 2; kind++) {
                if (kind == 1 && !set_params(&r, &top_p)) return 1;
                const double us = bench_time_us(&b, launch_sample, &r, reps);
                if (us < 0) return bench_fail("timing");
                snprintf(what, sizeof what, "sample %s vocab=%d rows=%d", kind ? "top-p 0.9" : "greedy", r.vocab,
                         r.rows);
                bench_row(&b, what, us, bytes, 0.0, "");
            }
            qilin_free(r.logits), qilin_free(r.ids), qilin_free(r.params), qilin_free(r.ws), free(want);
        }
    bench_close(&b);
    return 0;
}
