/* cmd_logits.c — `qilin logits` and `qilin run` by token ids (first-light issue). */
#include <stdio.h>

#include "commands.h"

int qilin_cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "qilin logits: not implemented yet\n");
    return 2;
}

int qilin_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "qilin run: not implemented yet\n");
    return 2;
}
