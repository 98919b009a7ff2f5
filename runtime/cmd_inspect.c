/* cmd_inspect.c — `qilin inspect` (model-zoo issue). */
#include <stdio.h>

#include "commands.h"

int qilin_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "qilin inspect: not implemented yet\n");
    return 2;
}
