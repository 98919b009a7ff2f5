/* commands.h — the `qilin` subcommands, one file each (cmd_*.c). Each takes
 * the arguments after its name (argv[0] is the subcommand) and returns the
 * process exit status; errors go to stderr as "qilin <cmd>: message". */
#ifndef QILIN_RUNTIME_COMMANDS_H
#define QILIN_RUNTIME_COMMANDS_H

int qilin_cmd_inspect(int argc, char **argv); /* cmd_inspect.c */
int qilin_cmd_plan(int argc, char **argv);    /* cmd_plan.c */
int qilin_cmd_logits(int argc, char **argv);  /* cmd_logits.c */
int qilin_cmd_run(int argc, char **argv);     /* cmd_run.c */
int qilin_cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int qilin_cmd_serve(int argc, char **argv);    /* cmd_serve.c */
int qilin_cmd_bench(int argc, char **argv);    /* cmd_bench.c */

#endif
