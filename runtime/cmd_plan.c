/* cmd_plan.c — `qilin plan` (model-zoo issue). */
#include <stdio.h>

#include "commands.h"

int qilin_cmd_plan(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "qilin plan: not implemented yet\n");
    return 2;
}
