/* cli.c — see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "host/forward.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail(const char *cmd, qilin_status st) {
    fprintf(stderr, "qilin %s: %s: %s\n", cmd, qilin_status_name(st), qilin_last_error());
    return 1;
}

/* Whole-string strtoll/strtoull/strtod: no leading space (strto* would skip
 * it) and nothing after the number. */
static bool whole(const char *s, const char *end) {
    return end != s && !*end && !isspace((unsigned char)s[0]);
}

int cli_int(const char *cmd, const char *flag, const char *s, int min, int max, int *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!whole(s, end)) return fprintf(stderr, "qilin %s: %s %s: not a whole number\n", cmd, flag, s), -1;
    if (errno == ERANGE || v < min || v > max)
        return fprintf(stderr, "qilin %s: %s %s: must be from %d to %d\n", cmd, flag, s, min, max), -1;
    *out = (int)v; /* in [min, max]: exact */
    return 0;
}

int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!whole(s, end) || s[0] == '-') /* strtoull negates "-1" into 2^64 - 1 */
        return fprintf(stderr, "qilin %s: %s %s: not a whole number from 0 to %llu\n", cmd, flag, s,
                       (unsigned long long)UINT64_MAX),
               -1;
    if (errno == ERANGE)
        return fprintf(stderr, "qilin %s: %s %s: larger than %llu\n", cmd, flag, s,
                       (unsigned long long)UINT64_MAX),
               -1;
    *out = v;
    return 0;
}

int cli_double(const char *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!whole(s, end)) return fprintf(stderr, "qilin %s: %s %s: not a number\n", cmd, flag, s), -1;
    if (!isfinite(v)) return fprintf(stderr, "qilin %s: %s %s: not a finite number\n", cmd, flag, s), -1;
    if (v < min || v > max)
        return fprintf(stderr, "qilin %s: %s %s: must be from %g to %g\n", cmd, flag, s, min, max), -1;
    *out = v;
    return 0;
}

int cli_bytes(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1073741824.0},    {"B", 1},
                 {"KB", 1e3},           {"MB", 1e6},
                 {"GB", 1e9},           {"TB", 1e12},
                 {"KiB", 1024.0},       {"MiB", 1048576.0},
                 {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
                 {"K", 1024.0},         {"M", 1048576.0},
                 {"G", 1073741824.0},   {"T", 1099511627776.0}};
    char *end;
    double v = strtod(s, &end);
    if (end == s || isspace((unsigned char)s[0]) || !isfinite(v))
        return fprintf(stderr, "qilin %s: %s %s: not a size (e.g. 80GiB, 141GB)\n", cmd, flag, s), -1;
    while (*end == ' ') end++;
    double scale = -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0] && scale < 0; i++)
        if (!strcmp(end, units[i].unit)) scale = units[i].scale;
    if (scale < 0)
        return fprintf(stderr, "qilin %s: %s %s: not a size (e.g. 80GiB, 141GB)\n", cmd, flag, s), -1;
    double bytes = v * scale; /* compared as double before any conversion: 1e30 never wraps */
    if (max > CLI_MAX_BYTES) max = CLI_MAX_BYTES;
    if (!(bytes >= (double)min))
        return fprintf(stderr, "qilin %s: %s %s: must be at least %llu bytes\n", cmd, flag, s,
                       (unsigned long long)min),
               -1;
    if (bytes > (double)max)
        return fprintf(stderr, "qilin %s: %s %s: too large (at most %.0f GiB)\n", cmd, flag, s,
                       (double)max / 1073741824.0),
               -1;
    *out = (uint64_t)bytes; /* in [min, max], max <= CLI_MAX_BYTES: representable */
    return 0;
}

bool cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int cli_unknown(const char *cmd, const char *f) {
    if (f[0] == '-')
        fprintf(stderr, "qilin %s: unknown flag %s (qilin %s --help lists the flags)\n", cmd, f, cmd);
    else
        fprintf(stderr, "qilin %s: unexpected argument '%s' (qilin %s --help lists the flags)\n", cmd, f,
                cmd);
    return -1;
}

/* errno of the first failed cli_write: by the end, later calls may have
 * changed errno, and stdio keeps only a flag. */
static int first_write_errno;

bool cli_write(FILE *f, const char *text, size_t n) {
    if (ferror(f)) return false;
    errno = 0;
    if ((n == 0 || fwrite(text, 1, n, f) == n) && fflush(f) == 0) return true;
    if (!first_write_errno) first_write_errno = errno;
    return false;
}

int cli_check_output(const char *cmd, FILE *f, const char *what) {
    errno = 0;
    if (fflush(f) == 0 && !ferror(f)) return 0;
    int err = first_write_errno ? first_write_errno : errno;
    fprintf(stderr, "qilin %s: writing %s: %s\n", cmd, what, err ? strerror(err) : "write error");
    return 1;
}

int cli_dtype(const char *s, qilin_dtype *t) {
    if (!strcmp(s, "float32") || !strcmp(s, "f32") || !strcmp(s, "fp32"))
        *t = QILIN_F32;
    else if (!strcmp(s, "bfloat16") || !strcmp(s, "bf16"))
        *t = QILIN_BF16;
    else if (!strcmp(s, "float16") || !strcmp(s, "f16") || !strcmp(s, "fp16"))
        *t = QILIN_F16;
    else
        return -1;
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
            fprintf(stderr, "qilin %s: --ids: '%s' is not a comma-separated list of token ids (at '%s')\n",
                    cmd, s, p);
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
    if (!strcmp(flag, "--coordinator")) return opt->coordinator = value, 1;
    if (!strcmp(flag, "--comm-timeout"))
        return cli_double(cmd, flag, value, 0.001, 1e7, &opt->comm_timeout_s) ? -1 : 1;
    if (!strcmp(flag, "--device")) return cli_int(cmd, flag, value, 0, CLI_MAX_GPUS - 1, &opt->device) ? -1 : 1;
    if (!strcmp(flag, "--nodes")) return cli_int(cmd, flag, value, 1, CLI_MAX_GPUS, &opt->nodes) ? -1 : 1;
    if (!strcmp(flag, "--node-rank"))
        return cli_int(cmd, flag, value, 0, CLI_MAX_GPUS - 1, &opt->node_rank) ? -1 : 1;
    return 0;
}

int cli_weights_flag(const char *cmd, const char *flag, const char *value, struct qilin_model_options *opt) {
    if (!strcmp(flag, "--layers")) return cli_int(cmd, flag, value, 1, QILIN_MAX_LAYERS, &opt->layers) ? -1 : 1;
    if (!strcmp(flag, "--weights-seed")) return cli_u64(cmd, flag, value, &opt->random_seed) ? -1 : 1;
    return 0;
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
