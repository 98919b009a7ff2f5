/* cli.c — see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "host/forward.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail(const char *cmd, qilin_status st) {
    fprintf(stderr, "qilin %s: %s: %s\n", cmd, qilin_status_name(st), qilin_last_error());
    return 1;
}

int cli_number(const char *cmd, const char *flag, const char *s, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "qilin %s: %s: '%s' is not a number\n", cmd, flag, s);
        return -1;
    }
    return 0;
}

int cli_dtype(const char *s, qilin_dtype *t) {
    if (!strcmp(s, "float32") || !strcmp(s, "f32") || !strcmp(s, "fp32")) *t = QILIN_F32;
    else if (!strcmp(s, "bfloat16") || !strcmp(s, "bf16")) *t = QILIN_BF16;
    else if (!strcmp(s, "float16") || !strcmp(s, "f16") || !strcmp(s, "fp16")) *t = QILIN_F16;
    else return -1;
    return 0;
}

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cli_parse_ids(const char *cmd, const char *s, qilin_ids *out) {
    for (const char *p = s;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || v < 0 || v > 0x7fffffff) {
            fprintf(stderr, "qilin %s: --ids: '%s' is not a comma-separated list of token ids (at '%s')\n", cmd, s, p);
            return -1;
        }
        if (qilin_ids_push(out, (int32_t)v) != QILIN_OK) return cli_fail(cmd, QILIN_ERR_OUT_OF_MEMORY), -1;
        if (!*end) return 0;
        p = end + 1;
    }
}

char *cli_read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger, cap *= 2;
    }
    if (!buf || ferror(f)) return free(buf), NULL;
    buf[n] = '\0';
    *len = n;
    return buf;
}

void cli_report_gpus(const char *cmd, const struct qilin_model *m) {
    const qilin_model_options *o = qilin_model_get_options(m);
    int n = o->tp / o->nodes, first = o->node_rank * n;
    if (o->tp < 2) return;
    for (int g = 0; g < n; g++)
        fprintf(stderr, "qilin %s: GPU %d holds %.2f MiB (weights, KV cache, step buffers)\n", cmd, first + g,
                (double)qilin_model_gpu_bytes(m, g) / (1024.0 * 1024.0));
}

int cli_node_flag(const char *cmd, const char *flag, const char *value, struct qilin_model_options *opt) {
    double x = 0;
    if (!strcmp(flag, "--coordinator")) return opt->coordinator = value, 1;
    if (strcmp(flag, "--nodes") && strcmp(flag, "--node-rank")) return 0;
    if (cli_number(cmd, flag, value, &x)) return -1;
    if (!strcmp(flag, "--nodes")) opt->nodes = (int)x;
    else opt->node_rank = (int)x;
    return 1;
}

int cli_follow(const char *cmd, const char *model, const struct qilin_model_options *opt) {
    qilin_model *m = NULL;
    qilin_status st = qilin_model_load(model, opt, &m);
    if (st != QILIN_OK) return cli_fail(cmd, st);
    cli_report_gpus(cmd, m);
    fprintf(stderr, "qilin %s: node %d of %d loaded; following node 0\n", cmd, opt->node_rank, opt->nodes);
    st = qilin_model_follow(m);
    qilin_model_free(m);
    if (st != QILIN_OK) return cli_fail(cmd, st);
    fprintf(stderr, "qilin %s: node %d: node 0 finished\n", cmd, opt->node_rank);
    return 0;
}
