/* bench_engine.c — offline throughput of the serving engine (runtime/engine.h).
 *
 *   bench_engine --model DIR [--requests N] [--prompt-len P] [--max-new M]
 *                [--max-seqs S] [--batch-tokens T] [--chunk C] [--blocks B]
 *                [--shared-prefix K] [--dtype float32|bfloat16] [--sequential]
 *
 * N requests of P random prompt ids (seeded; the first K ids common to all,
 * so prefix caching has something to find), M greedy new tokens each (no
 * stop ids), all submitted at once; the engine steps until idle. Reports
 * requests/s and output tokens/s, and what shows continuous batching at
 * work: engine steps, mean sequences and tokens per step, preemptions,
 * prefix-cache hits. --sequential also runs the same requests one at a time
 * through qilin_generate_stream and reports the speedup and whether the
 * tokens agree. In the sim build the times say nothing about a GPU; the step
 * counts and batch sizes are the point there. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host/forward.h"
#include "runtime/engine.h"

typedef struct args {
    const char *model;
    int requests, prompt_len, max_new, max_seqs, batch_tokens, chunk, blocks, shared;
    qilin_dtype dtype;
    bool sequential;
} args;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what) {
    fprintf(stderr, "bench_engine: %s: %s\n", what, qilin_last_error());
    return 1;
}

static int parse(int argc, char **argv, args *a) {
    *a = (args){.requests = 64, .prompt_len = 32, .max_new = 32, .max_seqs = 8, .batch_tokens = 256,
                .shared = 16, .dtype = QILIN_BF16};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *num = !strcmp(f, "--requests")        ? &a->requests
                   : !strcmp(f, "--prompt-len")    ? &a->prompt_len
                   : !strcmp(f, "--max-new")       ? &a->max_new
                   : !strcmp(f, "--max-seqs")      ? &a->max_seqs
                   : !strcmp(f, "--batch-tokens")  ? &a->batch_tokens
                   : !strcmp(f, "--chunk")         ? &a->chunk
                   : !strcmp(f, "--blocks")        ? &a->blocks
                   : !strcmp(f, "--shared-prefix") ? &a->shared
                                                   : NULL;
        if (!strcmp(f, "--sequential")) {
            a->sequential = true;
            continue;
        }
        if (!v) return fprintf(stderr, "bench_engine: %s needs a value\n", f), -1;
        i++;
        if (!strcmp(f, "--model")) {
            a->model = v;
        } else if (!strcmp(f, "--dtype")) {
            if (!strcmp(v, "float32")) a->dtype = QILIN_F32;
            else if (!strcmp(v, "bfloat16")) a->dtype = QILIN_BF16;
            else return fprintf(stderr, "bench_engine: --dtype %s: use float32 or bfloat16\n", v), -1;
        } else if (num) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 0 || x > 1 << 24) return fprintf(stderr, "bench_engine: %s %s: not a count\n", f, v), -1;
            *num = (int)x;
        } else {
            return fprintf(stderr, "bench_engine: unknown flag %s\n", f), -1;
        }
    }
    if (!a->model) return fprintf(stderr, "bench_engine: --model DIR is required\n"), -1;
    if (a->requests < 1 || a->prompt_len < 1 || a->max_new < 1 || a->max_seqs < 1 || a->batch_tokens < 1)
        return fprintf(stderr, "bench_engine: --requests, --prompt-len, --max-new, --max-seqs, --batch-tokens: >= 1\n"), -1;
    return 0;
}

/* Prompts: the first `shared` ids common, the rest per request (xorshift). */
static int *make_prompts(const args *a, int vocab) {
    int *p = malloc((size_t)a->requests * (size_t)a->prompt_len * sizeof *p);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int r = 0; p && r < a->requests; r++)
        for (int i = 0; i < a->prompt_len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int common = (int)((uint64_t)(i * 7919 + 1) % (uint64_t)(vocab - 1)) + 1;
            p[(size_t)r * (size_t)a->prompt_len + (size_t)i] = i < a->shared ? common : (int)(x % (uint64_t)(vocab - 1)) + 1;
        }
    return p;
}

static bool collect(void *user, int seq, int token) {
    int **at = user;
    *(*at)++ = token;
    return true;
}

/* The same requests one at a time; *agree: same tokens as the engine's. */
static int run_sequential(qilin_model *m, const args *a, const int *prompts, const int *engine_out, double *secs,
                          bool *agree) {
    qilin_sampling_params greedy = {0, 0, 1, 0, 1, 0, 0, 0, 0};
    int *out = malloc((size_t)a->requests * (size_t)a->max_new * sizeof *out), *at = out;
    if (!out) return fprintf(stderr, "bench_engine: out of memory\n"), 1;
    double t0 = now_s();
    for (int r = 0; r < a->requests; r++) {
        const int *p = prompts + (size_t)r * (size_t)a->prompt_len;
        if (qilin_generate_stream(m, 1, &p, &a->prompt_len, &greedy, a->max_new, collect, &at) != QILIN_OK)
            return free(out), fail("qilin_generate_stream");
    }
    *secs = now_s() - t0;
    *agree = memcmp(out, engine_out, (size_t)a->requests * (size_t)a->max_new * sizeof *out) == 0;
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    args a;
    if (parse(argc, argv, &a)) return 2;
    qilin_model_options mo;
    qilin_model_options_default(&mo);
    mo.dtype = a.dtype, mo.max_seqs = a.max_seqs, mo.max_batch_tokens = a.batch_tokens;
    mo.max_ctx = a.prompt_len + a.max_new;
    qilin_model *m = NULL;
    if (qilin_model_load(a.model, &mo, &m) != QILIN_OK) return fail(a.model);
    qilin_engine_options eo;
    qilin_engine_options_default(&eo);
    eo.prefill_chunk = a.chunk, eo.num_blocks = a.blocks;
    qilin_engine *e = NULL;
    int *prompts = make_prompts(&a, (int)qilin_model_get_desc(m)->vocab);
    int *out = malloc((size_t)a.requests * (size_t)a.max_new * sizeof *out);
    int64_t *ids = malloc((size_t)a.requests * sizeof *ids);
    if (!prompts || !out || !ids) return fprintf(stderr, "bench_engine: out of memory\n"), 1;
    if (qilin_engine_create(m, &eo, &e) != QILIN_OK) return fail("qilin_engine_create");
    double t0 = now_s();
    for (int r = 0; r < a.requests; r++) {
        qilin_engine_request q = {.prompt = prompts + (size_t)r * (size_t)a.prompt_len, .prompt_len = a.prompt_len,
                                  .params = {0, 0, 1, 0, 1, 0, 0, 0, 0}, .max_new_tokens = a.max_new};
        if (qilin_engine_add(e, &q, &ids[r]) != QILIN_OK) return fail("qilin_engine_add");
    }
    if (qilin_engine_run(e) != QILIN_OK) return fail("qilin_engine_run");
    double secs = now_s() - t0;
    for (int r = 0; r < a.requests; r++) {
        const int *t;
        int n;
        qilin_engine_finish why;
        if (qilin_engine_poll(e, ids[r], &t, &n, &why) != QILIN_OK || n != a.max_new) return fail("poll");
        memcpy(out + (size_t)r * (size_t)a.max_new, t, (size_t)n * sizeof *t);
    }
    qilin_engine_stats s;
    qilin_engine_get_stats(e, &s);
    double out_tokens = (double)a.requests * a.max_new;
    printf("engine: %d requests x (%d prompt + %d new), max %d seqs, %d tokens/step: %.3f s, %.2f requests/s, "
           "%.1f output tokens/s\n",
           a.requests, a.prompt_len, a.max_new, a.max_seqs, a.batch_tokens, secs, a.requests / secs,
           out_tokens / secs);
    printf("engine: %llu steps, mean %.2f seqs and %.1f tokens per step; prefill %llu, decode %llu tokens; "
           "%llu preemptions; prefix hits %llu of %llu blocks (%d blocks of %d)\n",
           (unsigned long long)s.steps, (double)s.batched_seqs / (double)s.steps,
           (double)s.batched_tokens / (double)s.steps, (unsigned long long)s.prefill_tokens,
           (unsigned long long)s.decode_tokens, (unsigned long long)s.preemptions,
           (unsigned long long)s.prefix_hits, (unsigned long long)s.prefix_lookups, s.num_blocks, s.block_size);
    qilin_engine_free(e);
    int rc = 0;
    if (a.sequential) {
        double seq_secs = 0;
        bool agree = false;
        rc = run_sequential(m, &a, prompts, out, &seq_secs, &agree);
        if (!rc)
            printf("sequential: %.3f s, %.1f output tokens/s; engine speedup %.2fx; tokens %s\n", seq_secs,
                   out_tokens / seq_secs, seq_secs / secs, agree ? "identical" : "DIFFER");
    }
    free(prompts), free(out), free(ids);
    qilin_model_free(m);
    return rc;
}
