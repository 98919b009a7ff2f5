/* cmd_logits.c — `qilin logits`: fp32 logits of every position of a prompt.
 *
 *   qilin logits --model DIR --ids 1,2,3 --out FILE [--dtype float32|bfloat16|float16]
 *                [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]
 *       writes raw little-endian fp32 [n_tokens, vocab]: the hook external
 *       conformance checks use. --tp splits the model over N GPUs (--ep: MoE
 *       experts whole per GPU; --ep-dispatch all-to-all: tokens sent to
 *       them, forward.h); the logits are the same layout. With --nodes N
 *       every node runs the same command with its --node-rank; nodes
 *       other than 0 need only --model and the parallel flags. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "host/forward.h"

static int usage(FILE *to) {
    fprintf(to, "usage: qilin logits --model DIR --ids 1,2,3 --out FILE [--dtype float32|bfloat16|float16]\n"
                "                    [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]\n"
                "                    [--nodes N --node-rank R --coordinator HOST:PORT]\n"
                "                    [--device N] [--comm-timeout SECONDS]\n"
                "                    [--random-weights [--weights-seed S]] [--layers N]\n" CLI_WEIGHTS_USAGE);
    return to == stdout ? 0 : 2;
}

/* Every byte reaches the file, or the exit status says not: fwrite's count
 * and fclose (which flushes) are both checked. */
static int write_logits(const char *path, const float *logits, size_t count) {
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(logits, sizeof *logits, count, f) != count;
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "qilin logits: writing %s: %s\n", path, strerror(errno));
    return rc;
}

typedef struct logits_args {
    const char *model, *ids, *out;
    qilin_model_options opt;
} logits_args;

/* One flag with its value: 0 taken, -1 bad (after a message). */
static int parse_flag(logits_args *a, const char *f, const char *v) {
    int node = cli_node_flag("logits", f, v, &a->opt);
    if (node) return node < 0 ? -1 : 0;
    int weights = cli_weights_flag("logits", f, v, &a->opt);
    if (weights) return weights < 0 ? -1 : 0;
    if (!strcmp(f, "--model")) return a->model = v, 0;
    if (!strcmp(f, "--ids")) return a->ids = v, 0;
    if (!strcmp(f, "--out")) return a->out = v, 0;
    if (!strcmp(f, "--tp")) return cli_int("logits", f, v, 1, CLI_MAX_GPUS, &a->opt.tp);
    if (!strcmp(f, "--dtype")) {
        if (!cli_dtype(v, &a->opt.dtype)) return 0;
        return fprintf(stderr, "qilin logits: --dtype %s: use float32, bfloat16 or float16\n", v), -1;
    }
    if (!strcmp(f, "--ep-dispatch")) {
        if (!strcmp(v, "replicated")) a->opt.ep_dispatch = QILIN_EP_REPLICATED;
        else if (!strcmp(v, "all-to-all")) a->opt.ep_dispatch = QILIN_EP_ALL_TO_ALL;
        else return fprintf(stderr, "qilin logits: --ep-dispatch %s: use replicated or all-to-all\n", v), -1;
        return 0;
    }
    return cli_unknown("logits", f);
}

/* 0 parsed, 1 --help, -1 bad arguments (after a message). */
static int parse(int argc, char **argv, logits_args *a) {
    static const char *const valued[] = {"--model", "--ids",   "--out",  "--tp",          "--dtype",
                                         "--ep-dispatch", "--nodes", "--node-rank", "--coordinator",
                                         "--comm-timeout", "--device",
                                         "--layers", "--weights-seed"};
    memset(a, 0, sizeof *a);
    qilin_model_options_default(&a->opt);
    a->opt.max_seqs = 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        bool takes_value = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) takes_value |= !strcmp(f, valued[k]);
        if (cli_is_help(f)) return 1;
        if (!strcmp(f, "--ep")) a->opt.ep = true;
        else if (!strcmp(f, "--random-weights")) a->opt.random_weights = true;
        else if (!takes_value) return cli_unknown("logits", f);
        else if (i + 1 == argc) return fprintf(stderr, "qilin logits: %s needs a value\n", f), -1;
        else if (parse_flag(a, f, argv[++i])) return -1;
    }
    if (a->model && a->opt.node_rank > 0) return 0; /* a follower needs no ids */
    if (!a->model || !a->ids || !a->out) return fprintf(stderr, "qilin logits: --model, --ids and --out are required\n"), -1;
    return 0;
}

int qilin_cmd_logits(int argc, char **argv) {
    logits_args a;
    int parsed = parse(argc, argv, &a);
    if (parsed) return usage(parsed > 0 ? stdout : stderr);
    const char *model = a.model, *ids_text = a.ids, *out = a.out;
    qilin_model_options opt = a.opt;
    if (model && opt.node_rank > 0) return cli_follow("logits", model, &opt);
    qilin_ids prompt = {0};
    if (cli_parse_ids("logits", ids_text, &prompt)) return qilin_ids_free(&prompt), 2;
    int n = (int)prompt.n, *ids = prompt.ids;
    opt.max_batch_tokens = n;
    opt.max_ctx = n;
    qilin_model *m = NULL;
    qilin_status st = qilin_model_load(model, &opt, &m);
    if (st != QILIN_OK) return qilin_ids_free(&prompt), cli_fail("logits", st);
    cli_report_gpus("logits", m);
    int vocab = qilin_model_get_desc(m)->vocab, slot = 0, start = 0, rc = 0;
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    qilin_batch b = {.n_seqs = 1, .slot = &slot, .start_pos = &start, .n_tokens = &n, .tokens = ids, .all_logits = true};
    if (!logits) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "logits buffer");
    if (st == QILIN_OK) st = qilin_forward(m, &b, logits);
    if (st != QILIN_OK) rc = cli_fail("logits", st);
    else if (!(rc = write_logits(out, logits, (size_t)n * vocab)))
        fprintf(stderr, "qilin logits: wrote %d x %d fp32 logits to %s\n", n, vocab, out);
    free(logits);
    qilin_ids_free(&prompt);
    qilin_model_free(m);
    return rc;
}
