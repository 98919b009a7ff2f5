/* bench_moe_gemm.c — qilin_moe_experts (align, grouped GEMM gate_up with
 * the fused SwiGLU, grouped GEMM down, combine) at real MoE shapes, bf16,
 * on the tensor-core path against the CUDA-core path.
 *
 *   bench_moe_gemm [--reps N] [--tiny]
 *
 * Models: DeepSeek-V3 (hidden 7168, moe_intermediate 2048, 256 experts,
 * top-8), Qwen3-30B-A3B (2048, 768, 128, top-8), Mixtral-8x7B (4096,
 * 14336, 8, top-2); tokens 1, 16, 64 (decode) and 4096 (prefill). Routing:
 * k distinct uniformly random experts per token (seeded). The sim build
 * (or --tiny) runs tiny shapes only, to prove the harness.
 *
 * Per row: the median over --reps of event-timed calls, each after an L2
 * flush; TFLOP/s = 6 slots hidden ffn (three GEMMs of 2 m n k) / time;
 * GB/s = (weights of the experts the routing touches + x + out) / time;
 * % peak: TFLOP/s over the datasheet bf16 dense tensor-core peak (A100 312,
 * H100 SXM 989; unknown devices print -), GB/s over the bandwidth measured
 * by qilin_device_measure_bandwidth. Decode is judged by the second,
 * prefill by the first. x cuda: CUDA-core time / tensor-core time.
 * Check, once per shape: the two paths agree (max |diff| over max |out|). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "cuda/device.h"
#include "cuda/moe.h"

enum { MAX_REPS = 32 };

typedef struct model_shape {
    const char *name;
    int hidden, ffn, experts, top_k;
} model_shape;

typedef struct buffers {
    void *x, *out, *gate_up, *down, *ws, *flush;
    int *ids;
    float *weights;
    size_t ws_bytes, flush_bytes;
} buffers;

static int fail(const char *what) {
    fprintf(stderr, "bench_moe_gemm: %s: %s\n", what, qilin_last_error());
    return 1;
}

/* Random ids (k distinct experts per token) and weights; returns the number
 * of distinct experts touched, or -1. */
static int upload_routing(const buffers *b, const model_shape *m, int tokens, uint64_t *rng) {
    int slots = tokens * m->top_k, used = 0;
    int *ids = malloc((size_t)slots * sizeof *ids);
    float *w = malloc((size_t)slots * sizeof *w);
    char *seen = calloc((size_t)m->experts, 1);
    if (!ids || !w || !seen) return free(ids), free(w), free(seen), -1;
    for (int t = 0; t < tokens; t++)
        for (int j = 0; j < m->top_k; j++) {
            int e, dup;
            do { /* distinct within the token, as a router picks */
                e = (int)(bench_xorshift(rng) % (uint64_t)m->experts);
                dup = 0;
                for (int i = 0; i < j; i++) dup |= ids[t * m->top_k + i] == e;
            } while (dup);
            ids[t * m->top_k + j] = e;
            w[t * m->top_k + j] = 1.0f / (float)m->top_k;
            used += !seen[e];
            seen[e] = 1;
        }
    int ok = qilin_memcpy_h2d(b->ids, ids, (size_t)slots * sizeof *ids, NULL) == QILIN_OK &&
             qilin_memcpy_h2d(b->weights, w, (size_t)slots * sizeof *w, NULL) == QILIN_OK &&
             qilin_device_synchronize() == QILIN_OK;
    free(ids), free(w), free(seen);
    return ok ? used : -1;
}

static qilin_status run(const buffers *b, const model_shape *m, int tokens, qilin_moe_gemm gemm) {
    qilin_moe_experts_args a = {0};
    a.out = b->out;
    a.x = b->x;
    a.topk_ids = b->ids;
    a.topk_weights = b->weights;
    a.gate_up = b->gate_up;
    a.down = b->down;
    a.tokens = tokens;
    a.top_k = m->top_k;
    a.n_experts = m->experts;
    a.hidden = m->hidden;
    a.ffn_dim = m->ffn;
    a.act = QILIN_ACT_SILU;
    a.dtype = QILIN_BF16;
    a.workspace = b->ws;
    a.workspace_bytes = b->ws_bytes;
    a.gemm = gemm;
    return qilin_moe_experts(&a, NULL);
}

/* Median milliseconds of `reps` calls, each after an L2 flush. */
static int time_calls(const buffers *b, const model_shape *m, int tokens, qilin_moe_gemm gemm, int reps,
                      double *ms) {
    qilin_event *start = NULL, *stop = NULL;
    double t[MAX_REPS];
    int ok = qilin_event_create(&start) == QILIN_OK && qilin_event_create(&stop) == QILIN_OK;
    ok = ok && run(b, m, tokens, gemm) == QILIN_OK; /* warm-up */
    for (int r = 0; ok && r < reps; r++) {
        float e = 0;
        ok = qilin_memset(b->flush, r & 0xff, b->flush_bytes, NULL) == QILIN_OK &&
             qilin_event_record(start, NULL) == QILIN_OK && run(b, m, tokens, gemm) == QILIN_OK &&
             qilin_event_record(stop, NULL) == QILIN_OK && qilin_event_synchronize(stop) == QILIN_OK &&
             qilin_event_elapsed_ms(start, stop, &e) == QILIN_OK;
        t[r] = e;
    }
    qilin_event_destroy(start);
    qilin_event_destroy(stop);
    if (ok) *ms = bench_median(t, reps);
    return ok;
}

/* max |tensor - cuda| / max |cuda| over the output; -1 on failure. */
static double check_paths(const buffers *b, const model_shape *m, int tokens) {
    size_t n = (size_t)tokens * m->hidden;
    uint16_t *o1 = malloc(n * 2), *o2 = malloc(n * 2);
    double diff = 0, scale = 0;
    int ok = o1 && o2 && run(b, m, tokens, QILIN_MOE_GEMM_CUDA_CORES) == QILIN_OK &&
             qilin_memcpy_d2h(o1, b->out, n * 2, NULL) == QILIN_OK && qilin_device_synchronize() == QILIN_OK &&
             run(b, m, tokens, QILIN_MOE_GEMM_TENSOR_CORES) == QILIN_OK &&
             qilin_memcpy_d2h(o2, b->out, n * 2, NULL) == QILIN_OK && qilin_device_synchronize() == QILIN_OK;
    for (size_t i = 0; ok && i < n; i++) {
        double c = bench_bf16_to_float(o1[i]), t = bench_bf16_to_float(o2[i]);
        if (!isfinite(c) || !isfinite(t)) ok = 0;
        diff = fmax(diff, fabs(c - t));
        scale = fmax(scale, fabs(c));
    }
    free(o1), free(o2);
    return ok ? diff / (scale > 0 ? scale : 1) : -1;
}

static int alloc_buffers(buffers *b, const model_shape *m, int max_tokens, size_t l2_bytes, uint64_t *rng) {
    size_t xn = (size_t)max_tokens * m->hidden, wn = (size_t)m->experts * 3 * m->hidden * m->ffn;
    size_t slots = (size_t)max_tokens * m->top_k;
    memset(b, 0, sizeof *b);
    b->ws_bytes = qilin_moe_experts_workspace(max_tokens, m->top_k, m->experts, m->hidden, m->ffn, QILIN_BF16);
    b->flush_bytes = 2 * (l2_bytes ? l2_bytes : ((size_t)1 << 20));
    if (qilin_malloc(&b->x, xn * 2, "x") || qilin_malloc(&b->out, xn * 2, "out") ||
        qilin_malloc(&b->gate_up, wn / 3 * 2 * 2, "gate_up") || qilin_malloc(&b->down, wn / 3 * 2, "down") ||
        qilin_malloc(&b->ws, b->ws_bytes, "workspace") || qilin_malloc(&b->flush, b->flush_bytes, "flush") ||
        qilin_malloc((void **)&b->ids, slots * sizeof(int), "ids") ||
        qilin_malloc((void **)&b->weights, slots * sizeof(float), "weights"))
        return 0;
    /* Weights: a constant 0x3C3C (bf16 0.0115) — GBs of random bytes would
     * take longer to upload than the benchmark runs; x random in [-1, 1). */
    uint16_t *hx = malloc(xn * 2);
    if (!hx) return 0;
    for (size_t i = 0; i < xn; i++) hx[i] = bench_bf16_from_float((float)(bench_xorshift(rng) % 2000) / 1000.0f - 1.0f);
    int ok = qilin_memcpy_h2d(b->x, hx, xn * 2, NULL) == QILIN_OK &&
             qilin_memset(b->gate_up, 0x3C, wn / 3 * 2 * 2, NULL) == QILIN_OK &&
             qilin_memset(b->down, 0x3C, wn / 3 * 2, NULL) == QILIN_OK && qilin_device_synchronize() == QILIN_OK;
    free(hx);
    return ok;
}

static void free_buffers(buffers *b) {
    qilin_free(b->x), qilin_free(b->out), qilin_free(b->gate_up), qilin_free(b->down);
    qilin_free(b->ws), qilin_free(b->flush), qilin_free(b->ids), qilin_free(b->weights);
}

static void print_row(const model_shape *m, int tokens, int used, double ms_tc, double ms_cc, double peak_tf,
                      double bw) {
    double flops = 6.0 * tokens * m->top_k * (double)m->hidden * m->ffn;
    double bytes = (double)used * 3 * m->hidden * m->ffn * 2 + 2.0 * tokens * m->hidden * 2;
    double tf = flops / (ms_tc * 1e-3) / 1e12, gbs = bytes / (ms_tc * 1e-3) / 1e9;
    char pf[16] = "-", pb[16] = "-";
    if (peak_tf > 0) snprintf(pf, sizeof pf, "%.1f%%", 100 * tf / peak_tf);
    if (bw > 0) snprintf(pb, sizeof pb, "%.1f%%", 100 * gbs / bw);
    printf("%-14s %6d %8d %10.1f %9.2f %9.1f %8s %8s %10.1f %7.2f\n", m->name, tokens, used, ms_tc * 1e3, tf, gbs,
           pf, pb, ms_cc * 1e3, ms_cc / ms_tc);
}

static int bench_model(const model_shape *m, const int *tokens, int n_tokens, int reps,
                       const qilin_device_props *props, double bw) {
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)m->hidden;
    int max_tokens = 0;
    for (int i = 0; i < n_tokens; i++) max_tokens = tokens[i] > max_tokens ? tokens[i] : max_tokens;
    buffers b;
    if (!alloc_buffers(&b, m, max_tokens, props->l2_bytes, &rng)) return free_buffers(&b), fail(m->name);
    for (int i = 0; i < n_tokens; i++) {
        int used = upload_routing(&b, m, tokens[i], &rng);
        double check = used < 0 ? -1 : check_paths(&b, m, tokens[i]), ms_tc = 0, ms_cc = 0;
        if (check < 0 || check > 0.02) {
            fprintf(stderr, "bench_moe_gemm: %s tokens %d: paths disagree (rel %.3g) or failed: %s\n", m->name,
                    tokens[i], check, qilin_last_error());
            return free_buffers(&b), 1;
        }
        if (!time_calls(&b, m, tokens[i], QILIN_MOE_GEMM_TENSOR_CORES, reps, &ms_tc) ||
            !time_calls(&b, m, tokens[i], QILIN_MOE_GEMM_CUDA_CORES, reps, &ms_cc))
            return free_buffers(&b), fail("timing");
        print_row(m, tokens[i], used, ms_tc, ms_cc, bench_bf16_peak(props), bw);
    }
    free_buffers(&b);
    return 0;
}

int main(int argc, char **argv) {
    int reps = 5, tiny = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tiny")) {
            tiny = 1;
        } else {
            fprintf(stderr, "usage: bench_moe_gemm [--reps N (1..%d)] [--tiny]\n", MAX_REPS);
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) return fprintf(stderr, "bench_moe_gemm: --reps must be 1..%d\n", MAX_REPS), 2;
    qilin_device_props props;
    if (qilin_device_get_props(0, &props) != QILIN_OK) return fail("device 0");
    tiny |= props.is_sim;
    double bw = 0;
    if (tiny) reps = 1; /* the harness only: emulator times mean nothing */
    if (!tiny && qilin_device_measure_bandwidth(0, &bw) != QILIN_OK) return fail("measuring bandwidth");
    printf("device: %s%s, bf16 peak %.0f TFLOP/s (datasheet; 0 = unknown), bandwidth %.0f GB/s (measured; 0 = "
           "not measured), reps %d\n",
           props.name, props.is_sim ? " [sim]" : "", bench_bf16_peak(&props), bw, reps);
    printf("%-14s %6s %8s %10s %9s %9s %8s %8s %10s %7s\n", "model", "tokens", "experts", "us", "TFLOP/s", "GB/s",
           "%flops", "%bw", "us(cuda)", "x cuda");
    static const model_shape models[] = {
        {"DeepSeek-V3", 7168, 2048, 256, 8},
        {"Qwen3-30B-A3B", 2048, 768, 128, 8},
        {"Mixtral-8x7B", 4096, 14336, 8, 2},
    };
    static const model_shape tiny_model = {"tiny", 64, 40, 8, 2};
    static const int tokens[] = {1, 16, 64, 4096}, tiny_tokens[] = {1, 80};
    if (tiny) return bench_model(&tiny_model, tiny_tokens, 2, reps, &props, bw);
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (bench_model(&models[i], tokens, 4, reps, &props, bw)) return 1;
    return 0;
}
