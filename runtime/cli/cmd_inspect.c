/* cmd_inspect.c — `qilin inspect [--tensors] FILE_OR_DIR`: what a model is.
 *
 * Prints the architecture descriptor (hyper-parameters grouped as sizes,
 * attention/MLA, rope, MoE; parameter counts total and activated with their
 * definition) from a model directory, a config.json or a .gguf. When weights
 * are present (safetensors next to the config, or the GGUF itself) it binds
 * them to the descriptor and prints a summary by dtype; --tensors lists every
 * descriptor tensor with its bound dtype and shape. Exit status: 0 when the
 * descriptor (and the weights, if any) are valid, 1 otherwise, 2 on usage. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "host/checkpoint.h"
#include "host/model.h"

static int usage(FILE *to) {
    fprintf(to, "usage: qilin inspect [--tensors] MODEL_DIR | config.json | model.gguf\n");
    return to == stdout ? 0 : 2;
}

static void print_tensors(const qilin_model_desc *d, const qilin_bound_model *b) {
    printf("tensors:\n");
    for (int i = 0; i < d->n_tensors; i++) {
        const qilin_tensor_spec *s = &d->tensors[i];
        char shape[96];
        int k = snprintf(shape, sizeof shape, "[");
        for (int j = 0; j < s->n_dims && k < (int)sizeof shape; j++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", j ? ", " : "",
                          (long long)s->shape[j]);
        if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
        const qilin_bound_tensor *t = b ? &b->tensors[i] : NULL;
        printf("  %-64s %-18s %-20s %s%s\n", s->name, qilin_slot_name(s->slot), shape,
               t && t->data ? qilin_wdtype_name(t->dtype)
               : b          ? "absent"
                            : "-",
               t && t->quant == QILIN_WQ_FP8_BLOCK    ? " +block scale"
               : t && t->quant == QILIN_WQ_INT4_GROUP ? " int4 groups"
                                                      : "");
    }
}

int qilin_cmd_inspect(int argc, char **argv) {
    bool list = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) return usage(stdout);
        if (!strcmp(argv[i], "--tensors"))
            list = true;
        else if (argv[i][0] == '-')
            return cli_unknown("inspect", argv[i]), usage(stderr);
        else if (path)
            return fprintf(stderr, "qilin inspect: two models given ('%s', '%s')\n", path, argv[i]), usage(stderr);
        else
            path = argv[i];
    }
    if (!path) return usage(stderr);

    qilin_model_desc *d = NULL;
    qilin_status st = qilin_model_desc_load(path, &d);
    if (st != QILIN_OK) {
        fprintf(stderr, "qilin inspect: %s: %s\n", qilin_status_name(st), qilin_last_error());
        return 1;
    }
    qilin_model_desc_print(d, stdout);

    int rc = 0;
    qilin_checkpoint *c = NULL;
    qilin_bound_model *b = NULL;
    st = qilin_checkpoint_open(path, &c);
    if (st == QILIN_ERR_IO) {
        printf("weights: none found (%s); counts above come from the descriptor\n", qilin_last_error());
    } else if (st != QILIN_OK) {
        fprintf(stderr, "qilin inspect: weights: %s: %s\n", qilin_status_name(st), qilin_last_error());
        rc = 1;
    } else if (qilin_checkpoint_tensor_count(c) == 0) {
        printf("weights: none (%s holds no tensors); counts above come from the descriptor\n",
               qilin_checkpoint_path(c));
    } else {
        st = qilin_model_bind(d, c, &b);
        qilin_checkpoint_print_summary(c, b, stdout);
        if (st != QILIN_OK) {
            fprintf(stderr, "qilin inspect: binding the weights: %s: %s\n", qilin_status_name(st),
                    qilin_last_error());
            rc = 1;
        }
    }
    if (list) print_tensors(d, b);
    qilin_bound_model_free(b);
    qilin_checkpoint_close(c);
    qilin_model_desc_free(d);
    int out_rc = cli_check_output("inspect", stdout, "stdout");
    return rc ? rc : out_rc;
}
