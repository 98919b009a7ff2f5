/* cli.h — small helpers the `qilin` subcommands share: error printing,
 * typed number, size, dtype and --ids flags, a monotonic clock, reading a whole stream. */
#ifndef QILIN_RUNTIME_CLI_H
#define QILIN_RUNTIME_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda/dtype.h"
#include "cuda/status.h"
#include "runtime/tokenizer.h"

/* Prints "qilin CMD: STATUS: message" to stderr; returns 1 (the exit status). */
int cli_fail(const char *cmd, qilin_status st);
enum { CLI_MAX_GPUS = 1024 };             /* --tp, --nodes */
#define CLI_MAX_BYTES (UINT64_C(1) << 60) /* 1 EiB: the largest size a flag may give */

/* Typed flag values: each parses the whole string (no leading space, no
 * trailing text), checks its range, and on failure prints "qilin CMD: FLAG
 * VALUE: why" and returns -1 (0 on success). No value is ever coerced.
 *   cli_int:    a base-10 integer in [min, max] ("2.5", "nan", "2^40" refused)
 *   cli_u64:    a base-10 integer in [0, UINT64_MAX] (--seed)
 *   cli_double: a finite number in [min, max] ("nan", "inf" refused)
 *   cli_bytes:  a size in [min, max] bytes: a number with B, KB/MB/GB/TB
 *               (powers of 1000), KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024),
 *               or bare (GiB): "80GiB", "141 GB", "1.5T"; negative, NaN and
 *               sizes past max (at most CLI_MAX_BYTES) refused */
int cli_int(const char *cmd, const char *flag, const char *s, int min, int max, int *out);
int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out);
int cli_double(const char *cmd, const char *flag, const char *s, double min, double max, double *out);
int cli_bytes(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "-h" or "--help": the command prints its usage to stdout and exits 0. */
bool cli_is_help(const char *arg);
/* An argument the command does not know: prints "qilin CMD: unknown flag F
 * (qilin CMD --help lists the flags)" (or "unexpected argument" when F does
 * not start with '-') and returns -1. */
int cli_unknown(const char *cmd, const char *f);
/* Writes and flushes (streamed output shows as it comes); false once `f`
 * has failed, and the first failure's errno is kept for cli_check_output. */
bool cli_write(FILE *f, const char *text, size_t n);
/* Checks that everything written to `f` (named `what`, e.g. "stdout") reached
 * it: fflush, then ferror. Prints "qilin CMD: writing WHAT: reason" and
 * returns 1 when not (the exit status), 0 when it did. */
int cli_check_output(const char *cmd, FILE *f, const char *what);
/* float32|f32|fp32, bfloat16|bf16, float16|f16|fp16; -1 otherwise. */
int cli_dtype(const char *s, qilin_dtype *t);
double cli_now(void); /* seconds, monotonic */
/* "1,2,3" (--ids) -> appended to *out; prints "qilin CMD: --ids: ..." and returns -1 on a malformed list. */
int cli_parse_ids(const char *cmd, const char *s, qilin_ids *out);
/* With more than one GPU: one stderr line per GPU with the bytes the model
 * holds there (weights, KV cache, step buffers). `m` is a qilin_model *. */
struct qilin_model;
void cli_report_gpus(const char *cmd, const struct qilin_model *m);
/* --nodes N, --node-rank R, --coordinator HOST:PORT, --device N (the first
 * GPU this process uses) and --comm-timeout SECONDS (the deadline of every
 * wait on a collective, tp > 1) into *opt (a
 * qilin_model_options *): 1 when `flag` is one of them, 0 when not, -1 (after
 * a message) on a bad value. */
struct qilin_model_options;
int cli_node_flag(const char *cmd, const char *flag, const char *value, struct qilin_model_options *opt);
/* Nodes other than 0 of a multi-node model: loads it, runs node 0's steps
 * until node 0 ends, frees it; returns the exit status. */
/* --layers N (keep the first N layers) and --weights-seed S (--random-weights'
 * seed, default 0): 1 taken, 0 not one of them, -1 bad value (after a message). */
int cli_weights_flag(const char *cmd, const char *flag, const char *value, struct qilin_model_options *opt);
#define CLI_WEIGHTS_USAGE                                                                                    \
    "  --random-weights  weights from config.json alone: seeded random values in the release's format\n" \
    "                    (bf16, FP8 block, INT4 group); the directory needs no weight files\n"           \
    "  --weights-seed S  their seed (default 0); --layers N  keep the first N layers only\n"

int cli_follow(const char *cmd, const char *model, const struct qilin_model_options *opt);
/* Reads f to EOF into a malloc'd NUL-terminated buffer; NULL on a read error or no memory. */
char *cli_read_all(FILE *f, size_t *len);

#endif
