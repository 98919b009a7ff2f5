/* bench_decode_attention.c — decode attention (qilin_attention_decode, GQA)
 * and absorbed MLA (qilin_mla_attention) at real model shapes, bf16: the
 * tensor-core kernel of cuda/attention_decode.cuh with split-KV.
 *
 *   bench_decode_attention [--reps N] [--only gqa|mla]
 *
 * Shapes (GPU): Llama-3-8B (32 query / 8 KV heads, head_dim 128) and
 * Qwen3-30B-A3B (32 / 4, 128) at batch 1/16/64 x context 1K/8K/32K;
 * DeepSeek-V3 MLA (r 512, dr 64) at 128 heads (TP 1) and 16 heads (TP 8),
 * batch 1/16/64 x context 1K/8K. The emulator runs tiny shapes instead, to
 * prove the harness. Every sequence has the same context length.
 *
 * Each shape is checked once: the output of sequence 0 (all heads) against a
 * float64 softmax on the host. Then per repetition: an L2 flush (memset of
 * 2x the L2), the call between two events; the median is reported.
 * GB/s counts the KV bytes the kernel must read (every position of every
 * sequence once: K and V per KV head, or latent + rope key for MLA; queries
 * and outputs are < 1 % and left out); % is of the device's measured copy
 * bandwidth (qilin_device_measure_bandwidth). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/attention.h"
#include "cuda/device.h"
#include "cuda/mla.h"

enum { PATTERN = 1 << 22, MAX_REPS = 64 };

/* Random bf16 values in [-1, 1); device buffers are tiled with this pattern,
 * so the host reference can read any element back. */
static uint16_t *g_pattern;

/* element i of a buffer filled from pattern offset `shift` */
static double elem(size_t i, size_t shift) { return (double)bench_bf16_to_float(g_pattern[(i + shift) % PATTERN]); }

#define CHECK(call)                                                                                   \
    do {                                                                                              \
        qilin_status st_ = (call);                                                                    \
        if (st_ != QILIN_OK) {                                                                        \
            fprintf(stderr, "bench_decode_attention: %s failed: %s\n", #call, qilin_last_error());    \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

static void *dev_fill(size_t elems, size_t shift, const char *what) {
    void *p = NULL;
    CHECK(qilin_malloc(&p, elems * 2, what));
    size_t done = 0;
    while (done < elems) {
        const size_t start = (done + shift) % PATTERN;
        size_t n = PATTERN - start;
        if (n > elems - done) n = elems - done;
        CHECK(qilin_memcpy_h2d((char *)p + done * 2, g_pattern + start, n * 2, NULL));
        done += n;
    }
    return p;
}

static int *dev_ints(const int *v, int n) {
    int *p = NULL;
    CHECK(qilin_malloc((void **)&p, (size_t)n * sizeof(int), "ints"));
    CHECK(qilin_memcpy_h2d(p, v, (size_t)n * sizeof(int), NULL));
    return p;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* One shape: which op, heads, dims, batch, context. */
typedef struct {
    const char *model;
    int mla;                       /* 0: GQA decode, 1: absorbed MLA */
    int n_heads, n_kv_heads, d, dv; /* MLA: d = r + dr, dv = r */
    int batch, ctx;
} Shape;

/* Float64 attention of sequence 0, every head: q [heads, d], keys from kc
 * (element (t, g, i) at (t*nkv + g)*ldk + i) and values from vc. */
static void reference(double *out, const Shape *s, size_t q_shift, size_t k_shift, size_t v_shift, int ldk, int ldv,
                      double scale) {
    const int group = s->n_heads / s->n_kv_heads;
    double *p = malloc((size_t)s->ctx * sizeof(double));
    for (int h = 0; h < s->n_heads; h++) {
        const int g = h / group;
        double mx = -INFINITY;
        for (int t = 0; t < s->ctx; t++) {
            double dot = 0.0;
            const size_t k0 = ((size_t)t * s->n_kv_heads + g) * ldk;
            for (int i = 0; i < s->d; i++) dot += elem((size_t)h * s->d + i, q_shift) * elem(k0 + i, k_shift);
            p[t] = dot * scale;
            if (p[t] > mx) mx = p[t];
        }
        double sum = 0.0;
        for (int t = 0; t < s->ctx; t++) sum += p[t] = exp(p[t] - mx);
        for (int i = 0; i < s->dv; i++) {
            double acc = 0.0;
            for (int t = 0; t < s->ctx; t++) acc += p[t] * elem(((size_t)t * s->n_kv_heads + g) * ldv + i, v_shift);
            out[(size_t)h * s->dv + i] = acc / sum;
        }
    }
    free(p);
}

static void run_shape(const Shape *s, int reps, double measured_gbs, void *flush, size_t flush_bytes) {
    const size_t slot_pos = (size_t)s->ctx;
    const int B = s->batch;
    /* caches: one slot per sequence, [slot, pos, kv head, dim]; MLA: latent
     * and rope key interleaved in one [slot, pos, r + dr] buffer */
    const int r = s->dv, dr = s->d - s->dv;
    const size_t k_elems = (size_t)B * slot_pos * s->n_kv_heads * s->d;
    const size_t v_elems = s->mla ? 0 : (size_t)B * slot_pos * s->n_kv_heads * s->dv;
    const size_t k_shift = 12345, v_shift = 777, q_shift = 4242;
    void *kc = dev_fill(k_elems, k_shift, "k cache");
    void *vc = s->mla ? NULL : dev_fill(v_elems, v_shift, "v cache");
    void *q = dev_fill((size_t)B * s->n_heads * s->d, q_shift, "q");
    void *out = NULL;
    CHECK(qilin_malloc(&out, (size_t)B * s->n_heads * s->dv * 2, "out"));
    int *q_start_h = malloc((B + 1) * sizeof(int)), *kv_len_h = malloc(B * sizeof(int)), *slot_h = malloc(B * sizeof(int));
    for (int b = 0; b <= B; b++) q_start_h[b] = b;
    for (int b = 0; b < B; b++) kv_len_h[b] = s->ctx, slot_h[b] = b;
    int *q_start = dev_ints(q_start_h, B + 1), *kv_len = dev_ints(kv_len_h, B), *seq_slot = dev_ints(slot_h, B);
    const double scale = 1.0 / sqrt((double)(s->mla ? 192 : s->d));

    qilin_attention_args ga;
    qilin_mla_attention_args ma;
    size_t ws_bytes;
    memset(&ga, 0, sizeof ga);
    memset(&ma, 0, sizeof ma);
    if (s->mla) {
        ws_bytes = qilin_mla_attention_workspace(B, s->n_heads, r, s->ctx);
        ma.out = out, ma.out_token_stride = (int64_t)s->n_heads * r, ma.out_head_stride = r;
        /* q = [q_lat ; q_pe] per head, one [tokens, heads, r + dr] buffer */
        ma.q_lat = q, ma.q_lat_token_stride = (int64_t)s->n_heads * s->d, ma.q_lat_head_stride = s->d;
        ma.q_pe = (char *)q + (size_t)r * 2, ma.q_pe_token_stride = (int64_t)s->n_heads * s->d, ma.q_pe_head_stride = s->d;
        ma.latent_cache = kc, ma.pe_cache = (char *)kc + (size_t)r * 2;
        ma.latent_layout = ma.pe_layout = (qilin_kv_layout){(int64_t)slot_pos * s->d, s->d, 0};
        ma.q_start = q_start, ma.kv_len = kv_len, ma.seq_slot = seq_slot;
        ma.n_seqs = B, ma.tokens = B, ma.max_q_len = 1, ma.max_kv_len = s->ctx;
        ma.n_heads = s->n_heads, ma.r = r, ma.dr = dr, ma.scale = (float)scale, ma.dtype = QILIN_BF16;
    } else {
        ws_bytes = qilin_attention_decode_workspace(B, s->n_heads, s->dv, s->ctx);
        ga.out = out, ga.out_token_stride = (int64_t)s->n_heads * s->dv, ga.out_head_stride = s->dv;
        ga.q = q, ga.q_token_stride = (int64_t)s->n_heads * s->d, ga.q_head_stride = s->d;
        ga.k_cache = kc, ga.v_cache = vc;
        ga.k_layout = (qilin_kv_layout){(int64_t)slot_pos * s->n_kv_heads * s->d, (int64_t)s->n_kv_heads * s->d, s->d};
        ga.v_layout = (qilin_kv_layout){(int64_t)slot_pos * s->n_kv_heads * s->dv, (int64_t)s->n_kv_heads * s->dv, s->dv};
        ga.q_start = q_start, ga.kv_len = kv_len, ga.seq_slot = seq_slot;
        ga.n_seqs = B, ga.tokens = B, ga.max_q_len = 1, ga.max_kv_len = s->ctx;
        ga.n_heads = s->n_heads, ga.n_kv_heads = s->n_kv_heads, ga.head_dim = s->d, ga.head_dim_v = s->dv;
        ga.scale = (float)scale, ga.dtype = QILIN_BF16;
    }
    void *ws = NULL;
    if (ws_bytes) CHECK(qilin_malloc(&ws, ws_bytes, "workspace"));
    ga.workspace = ma.workspace = ws;
    ga.workspace_bytes = ma.workspace_bytes = ws_bytes;
#define CALL() CHECK(s->mla ? qilin_mla_attention(&ma, NULL) : qilin_attention_decode(&ga, NULL))

    /* check sequence 0 once */
    CALL();
    CHECK(qilin_stream_synchronize(NULL));
    const size_t n0 = (size_t)s->n_heads * s->dv;
    uint16_t *got = malloc(n0 * 2);
    double *want = malloc(n0 * sizeof(double));
    CHECK(qilin_memcpy_d2h(got, out, n0 * 2, NULL));
    CHECK(qilin_stream_synchronize(NULL));
    /* MLA: the key is the interleaved [c ; k_pe] row, the value its first r */
    reference(want, s, q_shift, k_shift, s->mla ? k_shift : v_shift, s->d, s->mla ? s->d : s->dv, scale);
    double max_err = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < n0; i++) {
        const double e = fabs(bench_bf16_to_float(got[i]) - want[i]);
        if (!(e <= max_err)) max_err = isnan(e) ? INFINITY : e;
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
    }
    const int ok = max_err <= 1e-2 * max_ref + 1e-3;

    qilin_event *e0, *e1;
    CHECK(qilin_event_create(&e0));
    CHECK(qilin_event_create(&e1));
    float ms[MAX_REPS];
    for (int i = 0; i < 2; i++) CALL(); /* warm-up */
    for (int i = 0; i < reps; i++) {
        if (flush) CHECK(qilin_memset(flush, i & 0xff, flush_bytes, NULL));
        CHECK(qilin_event_record(e0, NULL));
        CALL();
        CHECK(qilin_event_record(e1, NULL));
        CHECK(qilin_event_synchronize(e1));
        CHECK(qilin_event_elapsed_ms(e0, e1, &ms[i]));
    }
    qsort(ms, reps, sizeof(float), cmp_float);
    const double us = ms[reps / 2] * 1e3;
    const double bytes = 2.0 * (double)(k_elems + v_elems);
    const double gbs = bytes / (us * 1e-6) / 1e9;
    printf("%-4s %-14s %4d/%-4d %4d %5d %7s %10.1f %8.1f %6.1f%%  %s (max err %.2g of %.2g)\n", s->mla ? "mla" : "gqa",
           s->model, s->n_heads, s->n_kv_heads, B, s->ctx, ws_bytes ? "yes" : "no", us, gbs,
           measured_gbs > 0 ? 100.0 * gbs / measured_gbs : 0.0, ok ? "ok" : "WRONG", max_err, max_ref);
    fflush(stdout);
    if (!ok) exit(1);
#undef CALL
    qilin_event_destroy(e0);
    qilin_event_destroy(e1);
    free(got), free(want), free(q_start_h), free(kv_len_h), free(slot_h);
    qilin_free(kc), qilin_free(vc), qilin_free(q), qilin_free(out), qilin_free(ws);
    qilin_free(q_start), qilin_free(kv_len), qilin_free(seq_slot);
}

int main(int argc, char **argv) {
    int reps = 20;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else return fprintf(stderr, "usage: bench_decode_attention [--reps N] [--only gqa|mla]\n"), 2;
    }
    if (reps < 1 || reps > MAX_REPS) return fprintf(stderr, "--reps must be in 1..%d\n", MAX_REPS), 2;
    int device = 0;
    qilin_device_props props;
    CHECK(qilin_device_set(device));
    CHECK(qilin_device_get_props(device, &props));
    double measured = 0.0;
    CHECK(qilin_device_measure_bandwidth(device, &measured));
    printf("device %s, %d SMs, measured copy bandwidth %.0f GB/s\n", props.name, props.sm_count, measured);

    g_pattern = malloc((size_t)PATTERN * 2);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < PATTERN; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        g_pattern[i] = bench_bf16_from_float((float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0));
    }

    Shape shapes[64];
    int n = 0;
    if (props.is_sim) {
        if (reps > 2) reps = 2;
        shapes[n++] = (Shape){"tiny-gqa", 0, 8, 2, 64, 64, 1, 100};
        shapes[n++] = (Shape){"tiny-gqa", 0, 8, 2, 64, 64, 2, 300};
        shapes[n++] = (Shape){"tiny-mla", 1, 16, 1, 576, 512, 1, 70};
        shapes[n++] = (Shape){"tiny-mla", 1, 128, 1, 576, 512, 1, 40};
    } else {
        const int batches[3] = {1, 16, 64}, gqa_ctx[3] = {1024, 8192, 32768}, mla_ctx[2] = {1024, 8192};
        for (int m = 0; m < 2; m++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 3; c++)
                    shapes[n++] = m == 0 ? (Shape){"llama3-8b", 0, 32, 8, 128, 128, batches[b], gqa_ctx[c]}
                                         : (Shape){"qwen3-30b-a3b", 0, 32, 4, 128, 128, batches[b], gqa_ctx[c]};
        for (int m = 0; m < 2; m++)
            for (int b = 0; b < 3; b++)
                for (int c = 0; c < 2; c++)
                    shapes[n++] = (Shape){m == 0 ? "deepseek-v3" : "deepseek-v3-tp8", 1, m == 0 ? 128 : 16, 1, 576,
                                          512, batches[b], mla_ctx[c]};
    }
    size_t flush_bytes = props.is_sim ? 0 : 2 * props.l2_bytes;
    void *flush = NULL;
    if (flush_bytes) CHECK(qilin_malloc(&flush, flush_bytes, "L2 flush"));
    printf("%-4s %-14s %9s %4s %5s %7s %10s %8s %7s\n", "op", "model", "heads/kv", "B", "ctx", "ws", "us", "GB/s",
           "% bw");
    for (int i = 0; i < n; i++) {
        if (only && strcmp(only, shapes[i].mla ? "mla" : "gqa")) continue;
        run_shape(&shapes[i], reps, measured, flush, flush_bytes);
    }
    qilin_free(flush);
    free(g_pattern);
    return 0;
}
