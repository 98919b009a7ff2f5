/* cli.h — small helpers the `qilin` subcommands share: error printing,
 * number, dtype and --ids flags, a monotonic clock, reading a whole stream. */
#ifndef QILIN_RUNTIME_CLI_H
#define QILIN_RUNTIME_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "cuda/dtype.h"
#include "cuda/status.h"
#include "tokenizer.h"

/* Prints "qilin CMD: STATUS: message" to stderr; returns 1 (the exit status). */
int cli_fail(const char *cmd, qilin_status st);
/* strtod of the whole string; prints "qilin CMD: FLAG: 'S' is not a number" and returns -1 otherwise. */
int cli_number(const char *cmd, const char *flag, const char *s, double *v);
/* float32|f32|fp32, bfloat16|bf16, float16|f16|fp16; -1 otherwise. */
int cli_dtype(const char *s, qilin_dtype *t);
double cli_now(void); /* seconds, monotonic */
/* "1,2,3" (--ids) -> appended to *out; prints "qilin CMD: --ids: ..." and returns -1 on a malformed list. */
int cli_parse_ids(const char *cmd, const char *s, qilin_ids *out);
/* With more than one GPU: one stderr line per GPU with the bytes the model
 * holds there (weights, KV cache, step buffers). `m` is a qilin_model *. */
struct qilin_model;
void cli_report_gpus(const char *cmd, const struct qilin_model *m);
/* --nodes N, --node-rank R, --coordinator HOST:PORT into *opt (a
 * qilin_model_options *): 1 when `flag` is one of them, 0 when not, -1 (after
 * a message) on a bad value. */
struct qilin_model_options;
int cli_node_flag(const char *cmd, const char *flag, const char *value, struct qilin_model_options *opt);
/* Nodes other than 0 of a multi-node model: loads it, runs node 0's steps
 * until node 0 ends, frees it; returns the exit status. */
int cli_follow(const char *cmd, const char *model, const struct qilin_model_options *opt);
/* Reads f to EOF into a malloc'd NUL-terminated buffer; NULL on a read error or no memory. */
char *cli_read_all(FILE *f, size_t *len);

#endif
