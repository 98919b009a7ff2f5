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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "host/forward.h"

static int usage(void) {
    fprintf(stderr, "usage: qilin logits --model DIR --ids 1,2,3 --out FILE [--dtype float32|bfloat16|float16]\n"
                    "                    [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]\n"
                    "                    [--nodes N --node-rank R --coordinator HOST:PORT]\n");
    return 2;
}

static int write_logits(const char *path, const float *logits, size_t count) {
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(logits, sizeof *logits, count, f) != count;
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "qilin logits: writing %s: %s\n", path, strerror(errno));
    return rc;
}

int qilin_cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_text = NULL, *out = NULL;
    qilin_model_options opt;
    qilin_model_options_default(&opt);
    opt.max_seqs = 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x = 0;
        if (!strcmp(f, "--ep")) opt.ep = true;
        else if (!v) return usage();
        else if ((x = cli_node_flag("logits", f, v, &opt)) != 0) {
            if (x < 0) return usage();
            i++;
        }
        else if (!strcmp(f, "--model")) model = v, i++;
        else if (!strcmp(f, "--ids")) ids_text = v, i++;
        else if (!strcmp(f, "--out")) out = v, i++;
        else if (!strcmp(f, "--dtype") && !cli_dtype(v, &opt.dtype)) i++;
        else if (!strcmp(f, "--tp") && !cli_number("logits", f, v, &x)) opt.tp = (int)x, i++;
        else if (!strcmp(f, "--ep-dispatch") && !strcmp(v, "replicated")) opt.ep_dispatch = QILIN_EP_REPLICATED, i++;
        else if (!strcmp(f, "--ep-dispatch") && !strcmp(v, "all-to-all")) opt.ep_dispatch = QILIN_EP_ALL_TO_ALL, i++;
        else return fprintf(stderr, "qilin logits: bad option %s %s\n", f, v), usage();
    }
    if (model && opt.node_rank > 0) return cli_follow("logits", model, &opt);
    if (!model || !ids_text || !out) return usage();
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
