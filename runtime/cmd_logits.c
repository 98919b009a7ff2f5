/* cmd_logits.c — `qilin logits` and `qilin run` by token ids.
 *
 *   qilin logits --model DIR --ids 1,2,3 --out FILE [--dtype float32|bfloat16|float16]
 *       writes fp32 logits of every position, raw little-endian [n_tokens, vocab]:
 *       the hook external conformance checks use.
 *   qilin run --model DIR --ids 1,2,3 -n N [--temperature T --top-k K --top-p P
 *             --min-p P --repetition-penalty R --seed S] [--dtype ...]
 *       continues the ids by N tokens (greedy unless a temperature is given)
 *       and prints the new ids, then prompt and generation tokens/s. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "host/forward.h"

typedef struct args {
    const char *model, *ids, *out;
    int n;
    qilin_model_options opt;
    qilin_sampling_params sp;
} args;

static int usage(const char *cmd) {
    fprintf(stderr,
            "usage: qilin %s --model DIR --ids 1,2,3 %s [--dtype float32|bfloat16|float16]\n", cmd,
            !strcmp(cmd, "logits") ? "--out FILE"
                                   : "-n N [--temperature T] [--top-k K] [--top-p P] [--min-p P]"
                                     " [--repetition-penalty R] [--seed S]");
    return 2;
}

static int parse_dtype(const char *s, qilin_dtype *t) {
    if (!strcmp(s, "float32") || !strcmp(s, "f32") || !strcmp(s, "fp32")) *t = QILIN_F32;
    else if (!strcmp(s, "bfloat16") || !strcmp(s, "bf16")) *t = QILIN_BF16;
    else if (!strcmp(s, "float16") || !strcmp(s, "f16") || !strcmp(s, "fp16")) *t = QILIN_F16;
    else return -1;
    return 0;
}

static int parse_number(const char *cmd, const char *flag, const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "qilin %s: %s: '%s' is not a number\n", cmd, flag, s);
        return -1;
    }
    return 0;
}

static int parse_args(const char *cmd, int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    qilin_model_options_default(&a->opt);
    a->opt.max_seqs = 1;
    a->sp = (qilin_sampling_params){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0, .repetition_penalty = 1,
                                    .seed = 0};
    a->n = 16;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!v) {
            fprintf(stderr, "qilin %s: %s needs a value\n", cmd, f);
            return -1;
        }
        i++;
        if (!strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--ids")) a->ids = v;
        else if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--dtype")) {
            if (parse_dtype(v, &a->opt.dtype)) {
                fprintf(stderr, "qilin %s: --dtype %s: use float32, bfloat16 or float16\n", cmd, v);
                return -1;
            }
        } else if (parse_number(cmd, f, v, &x)) {
            return -1;
        } else if (!strcmp(f, "-n")) a->n = (int)x;
        else if (!strcmp(f, "--temperature")) a->sp.temperature = (float)x;
        else if (!strcmp(f, "--top-k")) a->sp.top_k = (int)x;
        else if (!strcmp(f, "--top-p")) a->sp.top_p = (float)x;
        else if (!strcmp(f, "--min-p")) a->sp.min_p = (float)x;
        else if (!strcmp(f, "--repetition-penalty")) a->sp.repetition_penalty = (float)x;
        else if (!strcmp(f, "--seed")) a->sp.seed = (uint64_t)x;
        else {
            fprintf(stderr, "qilin %s: unknown option %s\n", cmd, f);
            return -1;
        }
    }
    if (!a->model || !a->ids) return -1;
    return 0;
}

/* "1,2,3" -> ids; returns the count, -1 on a malformed list. */
static int parse_ids(const char *cmd, const char *s, int **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || v < 0 || v > 0x7fffffff) {
            fprintf(stderr, "qilin %s: --ids: '%s' is not a comma-separated list of token ids (at '%s')\n", cmd, s, p);
            free(ids);
            return -1;
        }
        ids[i] = (int)v;
        p = end + (*end == ',');
    }
    *out = ids;
    return n;
}

static int fail(const char *cmd, qilin_status st) {
    fprintf(stderr, "qilin %s: %s: %s\n", cmd, qilin_status_name(st), qilin_last_error());
    return 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int qilin_cmd_logits(int argc, char **argv) {
    args a;
    if (parse_args("logits", argc, argv, &a) || !a.out) return usage("logits");
    int *ids = NULL, n = parse_ids("logits", a.ids, &ids);
    if (n < 0) return 2;
    a.opt.max_batch_tokens = n;
    a.opt.max_ctx = n;
    qilin_model *m = NULL;
    qilin_status st = qilin_model_load(a.model, &a.opt, &m);
    if (st != QILIN_OK) return free(ids), fail("logits", st);
    int vocab = qilin_model_get_desc(m)->vocab, slot = 0, start = 0;
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    qilin_batch b = {.n_seqs = 1, .slot = &slot, .start_pos = &start, .n_tokens = &n, .tokens = ids, .all_logits = true};
    int rc = 0;
    if (!logits) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "logits buffer");
    if (st == QILIN_OK) st = qilin_forward(m, &b, logits);
    if (st != QILIN_OK) {
        rc = fail("logits", st);
    } else {
        FILE *f = fopen(a.out, "wb");
        if (!f || fwrite(logits, sizeof *logits, (size_t)n * vocab, f) != (size_t)n * vocab) {
            fprintf(stderr, "qilin logits: writing %s: %s\n", a.out, strerror(errno));
            rc = 1;
        }
        if (f && fclose(f) && !rc) fprintf(stderr, "qilin logits: closing %s: %s\n", a.out, strerror(errno)), rc = 1;
        if (!rc) fprintf(stderr, "qilin logits: wrote %d x %d fp32 logits to %s\n", n, vocab, a.out);
    }
    free(logits);
    free(ids);
    qilin_model_free(m);
    return rc;
}

int qilin_cmd_run(int argc, char **argv) {
    args a;
    if (parse_args("run", argc, argv, &a) || a.n < 0) return usage("run");
    int *ids = NULL, n = parse_ids("run", a.ids, &ids);
    if (n < 0) return 2;
    a.opt.max_batch_tokens = n;
    if (a.opt.max_ctx == 0) a.opt.max_ctx = n + a.n;
    qilin_model *m = NULL;
    qilin_status st = qilin_model_load(a.model, &a.opt, &m);
    if (st != QILIN_OK) return free(ids), fail("run", st);
    int *out = malloc(((size_t)a.n + 1) * sizeof *out), rc = 0;
    const int *prompts[1] = {ids};
    double t0 = now();
    if (!out) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "output ids");
    if (st == QILIN_OK) st = qilin_generate(m, 1, prompts, &n, &a.sp, a.n, out);
    double t1 = now();
    if (st != QILIN_OK) {
        rc = fail("run", st);
    } else {
        for (int i = 0; i < a.n; i++) printf("%s%d", i ? "," : "", out[i]);
        printf("\n");
        fprintf(stderr, "qilin run: %d prompt + %d generated tokens in %.3f s (%.1f tokens/s overall)\n", n, a.n,
                t1 - t0, (n + a.n) / (t1 - t0));
    }
    free(out);
    free(ids);
    qilin_model_free(m);
    return rc;
}
