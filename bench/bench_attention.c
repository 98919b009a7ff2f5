/* bench_attention.c — causal prefill attention (qilin_attention_prefill, bf16)
 * at real model shapes: one sequence of `seq` new tokens attending to itself.
 *
 *   bench_attention [--reps N] [--seq a,b,c] [--model NAME]
 *
 * Shapes (query heads / KV heads, head_dim / head_dim_v):
 *   llama3-8b        32 / 8,   128 / 128
 *   qwen3-30b-a3b    32 / 4,   128 / 128
 *   deepseek-v3-tp1  128 / 128, 192 / 128  (naive MLA prefill: K = nope ++ rope)
 *   deepseek-v3-tp8  16 / 16,   192 / 128
 * at seq 512, 2048, 8192 on a GPU; in the sim build tiny stand-ins (a few
 * heads, seq 80 and 200) that prove the harness, not the speed.
 *
 * Each configuration is checked once against a float64 reference on three
 * query tokens (first, middle, last) of every head, then timed: 2 warm-ups,
 * N repetitions with an L2 flush (a 256 MiB memset) before each, event
 * timing of the call alone, median. FLOPs count the causal work only: query
 * i sees i + 1 keys, so 2 * heads * (dk + dv) * seq * (seq + 1) / 2.
 * % of peak is against the dense bf16 tensor-core datasheet figure of the
 * device's compute capability (8.0: A100 312 TFLOP/s; 9.0: H100/H200 SXM
 * 989); "-" where unknown (and in the sim). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/attention.h"
#include "cuda/device.h"

typedef struct {
    const char *name;
    int n_heads, n_kv_heads, head_dim, head_dim_v;
} model_shape;

static const model_shape kModels[] = {
    {"llama3-8b", 32, 8, 128, 128},
    {"qwen3-30b-a3b", 32, 4, 128, 128},
    {"deepseek-v3-tp1", 128, 128, 192, 128},
    {"deepseek-v3-tp8", 16, 16, 192, 128},
};
/* sim: the same head dims and GQA ratios with one KV head */
static const model_shape kSimModels[] = {
    {"llama3-8b-like", 4, 1, 128, 128},
    {"qwen3-like", 8, 1, 128, 128},
    {"deepseek-v3-like", 2, 2, 192, 128},
};

enum { MAX_REPS = 64, MAX_SEQS = 8 };

static int fail(const char *what) {
    fprintf(stderr, "bench_attention: %s: %s\n", what, qilin_last_error());
    return 1;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double normal(void) { /* Box-Muller on a xorshift */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        u[i] = ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* Max |got - want| over tokens {0, seq/2, seq-1} of every head, and whether
 * each is within the bf16 tensor-core tolerance (tests/compare.h). */
static int check(const model_shape *m, int seq, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                 const uint16_t *out, float scale, double *max_err) {
    const int toks[3] = {0, seq / 2, seq - 1}, group = m->n_heads / m->n_kv_heads;
    const int hd = m->head_dim, hv = m->head_dim_v;
    double *sc = malloc((size_t)seq * sizeof *sc), *o = malloc((size_t)hv * sizeof *o);
    int ok = sc && o;
    *max_err = 0;
    for (int ti = 0; ok && ti < 3; ti++)
        for (int h = 0; h < m->n_heads; h++) {
            const int t = toks[ti], g = h / group;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= t; j++) {
                double dot = 0;
                for (int d = 0; d < hd; d++)
                    dot += (double)bench_bf16_to_float(q[((size_t)t * m->n_heads + h) * hd + d]) *
                           (double)bench_bf16_to_float(k[((size_t)j * m->n_kv_heads + g) * hd + d]);
                sc[j] = dot * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int d = 0; d < hv; d++) o[d] = 0;
            for (int j = 0; j <= t; j++) {
                const double p = exp(sc[j] - mx);
                sum += p;
                for (int d = 0; d < hv; d++)
                    o[d] += p * (double)bench_bf16_to_float(v[((size_t)j * m->n_kv_heads + g) * hv + d]);
            }
            for (int d = 0; d < hv; d++) {
                const double want = o[d] / sum, got = (double)bench_bf16_to_float(out[((size_t)t * m->n_heads + h) * hv + d]);
                const double err = fabs(got - want);
                if (!(err <= *max_err)) *max_err = err; /* NaN sticks */
                if (!(err <= 4.5 / 512 + fabs(want) / 128)) ok = 0;
            }
        }
    free(sc);
    free(o);
    return ok;
}

typedef struct {
    void *q, *k, *v, *out, *flush;
    int *meta; /* q_start[2], kv_len[1], seq_slot[1] */
    size_t flush_bytes;
} device_bufs;

static void free_bufs(device_bufs *b) {
    qilin_free(b->q), qilin_free(b->k), qilin_free(b->v), qilin_free(b->out), qilin_free(b->meta);
    b->q = b->k = b->v = b->out = NULL, b->meta = NULL; /* the flush buffer stays */
}

/* One configuration: upload, check, time. Returns 0 on success. */
static int run(const model_shape *m, int seq, int reps, const qilin_device_props *props, device_bufs *b) {
    const size_t nq = (size_t)seq * m->n_heads * m->head_dim, nk = (size_t)seq * m->n_kv_heads * m->head_dim;
    const size_t nv = (size_t)seq * m->n_kv_heads * m->head_dim_v,
                 no = (size_t)seq * m->n_heads * m->head_dim_v;
    uint16_t *hq = malloc(nq * 2), *hk = malloc(nk * 2), *hv = malloc(nv * 2), *ho = malloc(no * 2);
    if (!hq || !hk || !hv || !ho) return fprintf(stderr, "bench_attention: out of host memory\n"), 1;
    for (size_t i = 0; i < nq; i++) hq[i] = bench_bf16_from_float((float)(1.5 * normal()));
    for (size_t i = 0; i < nk; i++) hk[i] = bench_bf16_from_float((float)normal());
    for (size_t i = 0; i < nv; i++) hv[i] = bench_bf16_from_float((float)normal());
    const int meta[4] = {0, seq, seq, 0};
    int rc = 1;
    if (qilin_malloc(&b->q, nq * 2, "q") || qilin_malloc(&b->k, nk * 2, "k cache") ||
        qilin_malloc(&b->v, nv * 2, "v cache") || qilin_malloc(&b->out, no * 2, "out") ||
        qilin_malloc((void **)&b->meta, sizeof meta, "batch") || qilin_memcpy_h2d(b->q, hq, nq * 2, NULL) ||
        qilin_memcpy_h2d(b->k, hk, nk * 2, NULL) || qilin_memcpy_h2d(b->v, hv, nv * 2, NULL) ||
        qilin_memcpy_h2d(b->meta, meta, sizeof meta, NULL) || qilin_memset(b->out, 0xFF, no * 2, NULL)) {
        rc = fail("allocating and uploading");
        goto done;
    }
    qilin_attention_args a;
    memset(&a, 0, sizeof a);
    a.out = b->out, a.out_token_stride = (int64_t)m->n_heads * m->head_dim_v,
    a.out_head_stride = m->head_dim_v;
    a.q = b->q, a.q_token_stride = (int64_t)m->n_heads * m->head_dim, a.q_head_stride = m->head_dim;
    a.k_cache = b->k, a.v_cache = b->v;
    a.k_layout = (qilin_kv_layout){(int64_t)seq * m->n_kv_heads * m->head_dim,
                                   (int64_t)m->n_kv_heads * m->head_dim, m->head_dim};
    a.v_layout = (qilin_kv_layout){(int64_t)seq * m->n_kv_heads * m->head_dim_v,
                                   (int64_t)m->n_kv_heads * m->head_dim_v, m->head_dim_v};
    a.q_start = b->meta, a.kv_len = b->meta + 2, a.seq_slot = b->meta + 3;
    a.n_seqs = 1, a.tokens = seq, a.max_q_len = seq, a.max_kv_len = seq;
    a.n_heads = m->n_heads, a.n_kv_heads = m->n_kv_heads, a.head_dim = m->head_dim,
    a.head_dim_v = m->head_dim_v;
    a.scale = 1.0f / sqrtf((float)m->head_dim), a.dtype = QILIN_BF16;

    if (qilin_attention_prefill(&a, NULL) || qilin_memcpy_d2h(ho, b->out, no * 2, NULL) ||
        qilin_stream_synchronize(NULL)) {
        rc = fail("first run");
        goto done;
    }
    double max_err;
    const int ok = check(m, seq, hq, hk, hv, ho, a.scale, &max_err);

    qilin_event *e0 = NULL, *e1 = NULL;
    double ms[MAX_REPS];
    if (qilin_event_create(&e0) || qilin_event_create(&e1)) {
        rc = fail("events");
        goto done_events;
    }
    for (int i = 0; i < 2; i++)
        if (qilin_attention_prefill(&a, NULL)) {
            rc = fail("warm-up");
            goto done_events;
        }
    for (int r = 0; r < reps; r++) {
        float t = 0;
        if ((b->flush && qilin_memset(b->flush, r & 1, b->flush_bytes, NULL)) ||
            qilin_event_record(e0, NULL) || qilin_attention_prefill(&a, NULL) ||
            qilin_event_record(e1, NULL) || qilin_event_synchronize(e1) ||
            qilin_event_elapsed_ms(e0, e1, &t)) {
            rc = fail("timed run");
            goto done_events;
        }
        ms[r] = t;
    }
    const double med_ms = bench_median(ms, reps);
    const double flops = 2.0 * m->n_heads * (m->head_dim + m->head_dim_v) * (double)seq * (seq + 1) / 2.0;
    const double tflops = flops / (med_ms * 1e-3) / 1e12, peak = bench_bf16_peak(props);
    char pct[16] = "-";
    if (peak > 0) snprintf(pct, sizeof pct, "%.1f", 100.0 * tflops / peak);
    printf("| %-16s | %3d/%-3d | %3d/%-3d | %5d | %10.1f | %8.2f | %9s | %-8s %.2g |\n", m->name, m->n_heads,
           m->n_kv_heads, m->head_dim, m->head_dim_v, seq, med_ms * 1e3, tflops, pct, ok ? "ok" : "WRONG",
           max_err);
    rc = ok ? 0 : 1;
done_events:
    qilin_event_destroy(e0);
    qilin_event_destroy(e1);
done:
    free(hq), free(hk), free(hv), free(ho);
    free_bufs(b);
    return rc;
}

static int parse_seqs(const char *s, int *seqs) {
    int n = 0;
    while (*s && n < MAX_SEQS) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 20) return 0;
        seqs[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return n;
}

int main(int argc, char **argv) {
    qilin_device_props props;
    if (qilin_device_set(0) || qilin_device_get_props(0, &props)) return fail("device 0");
    int reps = props.is_sim ? 1 : 10, seqs[MAX_SEQS] = {512, 2048, 8192}, n_seqs = 3;
    const char *only = NULL;
    if (props.is_sim) seqs[0] = 80, seqs[1] = 200, n_seqs = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seq") && i + 1 < argc) {
            n_seqs = parse_seqs(argv[++i], seqs);
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_attention [--reps N] [--seq a,b,c] [--model NAME]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || n_seqs < 1) {
        fprintf(stderr, "bench_attention: --reps 1..%d, --seq a comma-separated list of positive lengths\n",
                MAX_REPS);
        return 2;
    }
    const model_shape *models = props.is_sim ? kSimModels : kModels;
    const int n_models = props.is_sim ? (int)(sizeof kSimModels / sizeof kSimModels[0])
                                      : (int)(sizeof kModels / sizeof kModels[0]);
    device_bufs b;
    memset(&b, 0, sizeof b);
    if (!props.is_sim) {
        b.flush_bytes = (size_t)256 << 20;
        if (qilin_malloc(&b.flush, b.flush_bytes, "L2 flush")) return fail("L2 flush buffer");
    }
    printf("bench_attention: %s%s, cc %d.%d, %d SMs, bf16 causal prefill, median of %d\n", props.name,
           props.is_sim ? " [sim]" : "", props.cc_major, props.cc_minor, props.sm_count, reps);
    printf("| model            | heads   | dk/dv   | seq   | us         | TFLOP/s  | %% of peak | check      "
           " |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    int failed = 0, ran = 0;
    for (int mi = 0; mi < n_models; mi++) {
        if (only && strcmp(only, models[mi].name)) continue;
        for (int si = 0; si < n_seqs; si++) failed |= run(&models[mi], seqs[si], reps, &props, &b), ran++;
    }
    if (!ran) {
        fprintf(stderr, "bench_attention: no model named %s on this build; models:", only);
        for (int mi = 0; mi < n_models; mi++) fprintf(stderr, " %s", models[mi].name);
        fprintf(stderr, "\n");
        failed = 2;
    }
    qilin_free(b.flush);
    return failed;
}
