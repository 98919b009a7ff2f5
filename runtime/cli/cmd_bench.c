/* cmd_bench.c — `qilin bench`: offline model throughput per batch size.
 *
 *   qilin bench --model DIR|config.json|FILE.gguf [--random-weights [--weights-seed S]] [--layers N]
 *               [--prompt 512] [--gen 128] [--batch 1,8,32,128] [--repeat 3] [--warmup 1]
 *               [--chunk 512] [--tp N] [--ep] [--dtype D] [--no-graphs] [--json FILE]
 *
 * For each batch size B: B sequences of `prompt` random token ids are
 * prefilled (packed into steps of at most `chunk` tokens, the prompts of
 * several sequences sharing a step when they fit), then `gen` decode steps
 * run with all B sequences together, one token each, every token sampled
 * greedily on the device and fed back. Reported per B (mean ± sample
 * standard deviation over `repeat` timed runs, after `warmup` untimed ones):
 *   prefill tok/s  B * prompt / prefill time (first step to the last prompt's first token)
 *   decode tok/s   B * gen / decode time (the gen steps after prefill)
 *   ms/token       decode time / gen: one decode step, the latency each sequence sees per token
 * Times are host wall-clock around whole steps: each step ends with
 * qilin_sample_last, which copies the sampled ids to the host and so waits
 * for the step's GPU work. The table (markdown) goes to stdout, progress to
 * stderr, and --json FILE gets the same figures with the device, formats,
 * commit and flags.
 *
 * Why qilin_forward + qilin_sample_last and not the engine (engine.h): a
 * benchmark needs the phases apart and the batch exact. The engine's
 * scheduler mixes prompt chunks with other sequences' decodes and ends a
 * request at EOS, so B, the step's token count and the phase of a step
 * would depend on the random weights' output. Driving qilin_forward directly
 * runs the same kernels (CUDA graphs for decode included) with the batch
 * under the benchmark's control; sampling costs what generation pays.
 *
 * In the sim the kernels run on the CPU emulator: the figures time the
 * emulator. Under QILIN_SIM_DRY_RUN=1 no kernel runs at all; bench still
 * goes through every step (a check of the harness) and says the timings are
 * meaningless, in the table and the JSON. */
#define _POSIX_C_SOURCE 200809L /* access */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "commands.h"
#include "cuda/device.h"
#include "host/forward.h"
#include "host/predict.h"

#ifndef QILIN_COMMIT
#define QILIN_COMMIT "unknown" /* set by runtime/CMakeLists.txt from git describe */
#endif

enum { MAX_BATCHES = 32, MAX_BATCH = 4096, MAX_REPEAT = 1000 };

typedef struct bench_args {
    const char *model, *json_path, *batch_list;
    int prompt, gen, repeat, warmup, chunk;
    int batches[MAX_BATCHES], n_batches, max_batch;
    qilin_model_options opt;
} bench_args;

/* Mean and sample standard deviation of one figure over the timed runs. */
typedef struct stat2 {
    double mean, sd;
} stat2;

typedef struct batch_result {
    int batch;
    int prefill_steps, prefill_tokens; /* of one run: how the prompts were packed (the packing's check) */
    stat2 prefill_tps, decode_tps, ms_per_token, prefill_s, decode_s;
    qilin_step_prediction pred_prefill, pred_decode; /* host/predict.h; zero when the GPU has no figures */
} batch_result;

static int usage(FILE *to) {
    fprintf(
        to,
        "usage: qilin bench --model DIR|config.json|FILE.gguf [--random-weights [--weights-seed S]]\n"
        "                   [--layers N] [--prompt P] [--gen G] [--batch 1,8,32,128] [--repeat R] [--warmup "
        "W]\n"
        "                   [--chunk C] [--tp N] [--ep] [--dtype float32|bfloat16|float16] [--no-graphs]\n"
        "                   [--json FILE]\n"
        "  --prompt P   prompt tokens per sequence (random ids), default 512\n"
        "  --gen G      decode steps after the prefill, default 128 (0: prefill only)\n"
        "  --batch L    comma-separated batch sizes (sequences at once), each 1 to %d, default 1,8,32,128\n"
        "  --repeat R   timed runs per batch size, default 3; --warmup W untimed runs first, default 1\n"
        "  --chunk C    most prompt tokens per prefill step, default 512 (the model's step limit is\n"
        "               max(C, largest batch))\n"
        "  --json FILE  the results as JSON too (device, formats, commit, flags, figures)\n" CLI_WEIGHTS_USAGE
        "Reports per batch size: prefill tokens/s, decode tokens/s and ms per decode step (mean ± sd over\n"
        "the timed runs) as a markdown table on stdout; progress on stderr. bench/README.md explains.\n",
        MAX_BATCH);
    return to == stdout ? 0 : 2;
}

/* "1,8,32": each a whole number 1..MAX_BATCH; an empty item, a sign, text or
 * more than MAX_BATCHES items are refused with the list and the item. */
static int parse_batches(const char *list, bench_args *a) {
    a->n_batches = 0;
    a->max_batch = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[16];
        bool digits = len > 0 && len < sizeof item;
        for (size_t i = 0; digits && i < len; i++) digits = p[i] >= '0' && p[i] <= '9';
        long v = 0;
        if (digits) {
            memcpy(item, p, len);
            item[len] = '\0';
            v = strtol(item, NULL, 10);
        }
        if (!digits || v < 1 || v > MAX_BATCH)
            return fprintf(
                       stderr,
                       "qilin bench: --batch %s: '%.*s' is not a batch size (a whole number from 1 to %d)\n",
                       list, (int)(len < 40 ? len : 40), p, MAX_BATCH),
                   -1;
        if (a->n_batches == MAX_BATCHES)
            return fprintf(stderr, "qilin bench: --batch %s: at most %d batch sizes\n", list, MAX_BATCHES),
                   -1;
        a->batches[a->n_batches++] = (int)v;
        if (v > a->max_batch) a->max_batch = (int)v;
        if (!end) return 0;
        p = end + 1;
    }
}

static int parse_flag_value(bench_args *a, const char *f, const char *v) {
    if (!strcmp(f, "--model")) return a->model = v, 0;
    if (!strcmp(f, "--json")) return a->json_path = v, 0;
    if (!strcmp(f, "--batch")) return a->batch_list = v, parse_batches(v, a);
    if (!strcmp(f, "--dtype")) {
        if (!cli_dtype(v, &a->opt.dtype)) return 0;
        return fprintf(stderr, "qilin bench: --dtype %s: use float32, bfloat16 or float16\n", v), -1;
    }
    int weights = cli_weights_flag("bench", f, v, &a->opt);
    if (weights) return weights < 0 ? -1 : 0;
    static const char *const ints[] = {"--prompt", "--gen", "--repeat", "--warmup", "--chunk", "--tp"};
    int *const dest[] = {&a->prompt, &a->gen, &a->repeat, &a->warmup, &a->chunk, &a->opt.tp};
    const int lo[] = {1, 0, 1, 0, 1, 1},
              hi[] = {INT_MAX / 2, INT_MAX / 2, MAX_REPEAT, MAX_REPEAT, INT_MAX / 2, CLI_MAX_GPUS};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (!strcmp(f, ints[i])) return cli_int("bench", f, v, lo[i], hi[i], dest[i]);
    return cli_unknown("bench", f);
}

static bool takes_value(const char *f) {
    static const char *const valued[] = {"--model",  "--json",         "--batch",  "--dtype",
                                         "--layers", "--weights-seed", "--prompt", "--gen",
                                         "--repeat", "--warmup",       "--chunk",  "--tp"};
    for (size_t i = 0; i < sizeof valued / sizeof *valued; i++)
        if (!strcmp(f, valued[i])) return true;
    return false;
}

/* 0 parsed, 1 --help, -1 bad arguments (after a message). */
static int parse(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    qilin_model_options_default(&a->opt);
    a->prompt = 512, a->gen = 128, a->repeat = 3, a->warmup = 1, a->chunk = 512;
    a->batch_list = "1,8,32,128";
    if (parse_batches(a->batch_list, a)) return -1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (cli_is_help(f)) return 1;
        if (!strcmp(f, "--random-weights"))
            a->opt.random_weights = true;
        else if (!strcmp(f, "--ep"))
            a->opt.ep = true;
        else if (!strcmp(f, "--no-graphs"))
            a->opt.no_graphs = true;
        else if (!takes_value(f))
            return cli_unknown("bench", f);
        else if (i + 1 == argc)
            return fprintf(stderr, "qilin bench: %s needs a value\n", f), -1;
        else if (parse_flag_value(a, f, argv[++i]))
            return -1;
    }
    if (!a->model) return fprintf(stderr, "qilin bench: --model DIR is required\n"), -1;
    /* the model is sized for the benchmark: every batch's sequences and context, one decode step's tokens */
    a->opt.max_seqs = a->max_batch;
    a->opt.max_ctx = a->prompt + a->gen;
    int64_t all_prompts = (int64_t)a->max_batch * a->prompt; /* a longer chunk is never filled */
    if (a->chunk > all_prompts) a->chunk = (int)all_prompts;
    a->opt.max_batch_tokens = a->chunk > a->max_batch ? a->chunk : a->max_batch;
    return 0;
}

/* ---- one timed run ---- */

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

/* Per-batch scratch: the prompts, each sequence's progress, one step's batch. */
typedef struct run_buffers {
    int *prompts; /* batch * prompt ids, sequence i at i * prompt */
    int *next;    /* each sequence's last sampled id */
    int *slot, *start, *n_tokens, *tokens, *ids;
    qilin_sampling_params *greedy;
    int prefill_steps, prefill_tokens; /* the last prefill's */
} run_buffers;

static void buffers_free(run_buffers *b) {
    free(b->prompts), free(b->next), free(b->slot), free(b->start), free(b->n_tokens), free(b->tokens);
    free(b->ids), free(b->greedy);
    memset(b, 0, sizeof *b);
}

static qilin_status buffers_init(run_buffers *b, const bench_args *a, int vocab) {
    int B = a->max_batch, T = a->opt.max_batch_tokens;
    *b = (run_buffers){.prompts = malloc((size_t)B * (size_t)a->prompt * sizeof(int)),
                       .next = malloc((size_t)B * sizeof(int)),
                       .slot = malloc((size_t)B * sizeof(int)),
                       .start = malloc((size_t)B * sizeof(int)),
                       .n_tokens = malloc((size_t)B * sizeof(int)),
                       .tokens = malloc((size_t)T * sizeof(int)),
                       .ids = malloc((size_t)B * sizeof(int)),
                       .greedy = calloc((size_t)B, sizeof *b->greedy)};
    if (!b->prompts || !b->next || !b->slot || !b->start || !b->n_tokens || !b->tokens || !b->ids ||
        !b->greedy) {
        buffers_free(b);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin bench: host buffers for %d sequences of %d tokens",
                           B, a->prompt);
    }
    uint32_t seed = 1; /* the same prompts on every run: runs differ only in timing */
    for (size_t i = 0; i < (size_t)B * (size_t)a->prompt; i++)
        b->prompts[i] = (int)((lcg(&seed) >> 8) % (uint32_t)vocab);
    for (int i = 0; i < B; i++)
        b->greedy[i] = (qilin_sampling_params){
            .temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0, .repetition_penalty = 1};
    return QILIN_OK;
}

/* One step over the batch built in b (n_seqs sequences), then greedy
 * sampling of each sequence's last token, which waits for the step. */
static qilin_status step(qilin_model *m, run_buffers *b, int n_seqs) {
    qilin_batch batch = {.n_seqs = n_seqs,
                         .slot = b->slot,
                         .start_pos = b->start,
                         .n_tokens = b->n_tokens,
                         .tokens = b->tokens};
    QILIN_TRY(qilin_forward(m, &batch, NULL));
    return qilin_sample_last(m, n_seqs, b->greedy, NULL, NULL, b->ids);
}

/* Prefills `batch` prompts in steps of at most `chunk` tokens: sequences in
 * order, each giving what is left of its prompt up to the step's budget. A
 * sequence whose prompt ends in a step takes that step's sample as its next id. */
static qilin_status prefill(qilin_model *m, const bench_args *a, run_buffers *b, int batch) {
    int seq = 0, done = 0; /* the first sequence not fully prefilled, and its tokens so far */
    b->prefill_steps = b->prefill_tokens = 0;
    while (seq < batch) {
        int n = 0, t = 0;
        for (int s = seq, pos = done; s < batch && t < a->chunk; s++, pos = 0) {
            int take = a->prompt - pos < a->chunk - t ? a->prompt - pos : a->chunk - t;
            b->slot[n] = s, b->start[n] = pos, b->n_tokens[n] = take;
            memcpy(b->tokens + t, b->prompts + (size_t)s * (size_t)a->prompt + pos,
                   (size_t)take * sizeof(int));
            t += take, n++;
        }
        QILIN_TRY(step(m, b, n));
        b->prefill_steps++, b->prefill_tokens += t;
        for (int i = 0; i < n; i++) {
            if (b->start[i] + b->n_tokens[i] == a->prompt)
                b->next[b->slot[i]] = b->ids[i], seq++, done = 0;
            else
                done = b->start[i] + b->n_tokens[i];
        }
    }
    return QILIN_OK;
}

/* gen decode steps, every sequence one token each, its last sample fed back. */
static qilin_status decode(qilin_model *m, const bench_args *a, run_buffers *b, int batch) {
    for (int j = 0; j < a->gen; j++) {
        for (int i = 0; i < batch; i++)
            b->slot[i] = i, b->start[i] = a->prompt + j, b->n_tokens[i] = 1, b->tokens[i] = b->next[i];
        QILIN_TRY(step(m, b, batch));
        memcpy(b->next, b->ids, (size_t)batch * sizeof(int));
    }
    return QILIN_OK;
}

static stat2 stats_of(const double *x, int n) {
    stat2 s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += x[i];
    s.mean /= n;
    for (int i = 0; i < n && n > 1; i++) s.sd += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

/* Warm-up and timed runs at one batch size. */
static qilin_status bench_batch(qilin_model *m, const bench_args *a, run_buffers *b, int batch,
                                batch_result *r) {
    double *x = calloc((size_t)a->repeat * 5, sizeof *x); /* per run: prefill s, decode s, and the rates */
    if (!x) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin bench: %d runs", a->repeat);
    double *pre_s = x, *dec_s = x + a->repeat, *pre_tps = x + 2 * a->repeat, *dec_tps = x + 3 * a->repeat,
           *ms = x + 4 * a->repeat;
    qilin_status st = QILIN_OK;
    for (int run = 0; run < a->warmup + a->repeat && st == QILIN_OK; run++) {
        bool timed = run >= a->warmup;
        int k = run - a->warmup;
        fprintf(stderr, "qilin bench: batch %d, %s %d/%d: prefill %d x %d tokens ...", batch,
                timed ? "run" : "warm-up", timed ? k + 1 : run + 1, timed ? a->repeat : a->warmup, batch,
                a->prompt);
        double t0 = cli_now();
        st = prefill(m, a, b, batch);
        double t1 = cli_now();
        if (st == QILIN_OK) {
            fprintf(stderr, " %.3f s; decode %d steps ...", t1 - t0, a->gen);
            st = decode(m, a, b, batch);
        }
        double t2 = cli_now();
        if (st != QILIN_OK) break;
        fprintf(stderr, " %.3f s\n", t2 - t1);
        if (!timed) continue;
        pre_s[k] = t1 - t0, dec_s[k] = t2 - t1;
        pre_tps[k] = (double)batch * a->prompt / fmax(pre_s[k], 1e-9);
        dec_tps[k] = a->gen ? (double)batch * a->gen / fmax(dec_s[k], 1e-9) : 0;
        ms[k] = a->gen ? 1e3 * dec_s[k] / a->gen : 0;
    }
    if (st != QILIN_OK)
        fprintf(stderr, " failed\n");
    else
        *r = (batch_result){.batch = batch,
                            .prefill_steps = b->prefill_steps,
                            .prefill_tokens = b->prefill_tokens,
                            .prefill_tps = stats_of(pre_tps, a->repeat),
                            .decode_tps = stats_of(dec_tps, a->repeat),
                            .ms_per_token = stats_of(ms, a->repeat),
                            .prefill_s = stats_of(pre_s, a->repeat),
                            .decode_s = stats_of(dec_s, a->repeat)};
    free(x);
    return st == QILIN_OK ? QILIN_OK : qilin_error_context(st, "qilin bench: batch %d", batch);
}

/* ---- what was measured, and on what ---- */

typedef struct bench_context {
    qilin_device_props dev;
    const char *dtype;
    char format[96], timing_note[160];
    bool meaningful;
    qilin_param_counts params;
    uint64_t weight_bytes;
    int layers;
    char flags[1024];
    const qilin_gpu_perf *perf; /* the published figures of the GPU model (NULL: none known) */
} bench_context;

/* The roofline of one batch size on the model's own plan: a decode step at
 * the mean context of the decode phase (prompt + gen / 2), a prefill of one
 * prompt. The emulator predicts for the GPU it emulates. */
static qilin_status predict(const qilin_model *m, const bench_args *a, const bench_context *c, int batch,
                            batch_result *r) {
    memset(&r->pred_prefill, 0, sizeof r->pred_prefill);
    memset(&r->pred_decode, 0, sizeof r->pred_decode);
    if (!c->perf) return QILIN_OK;
    int elem = (int)qilin_dtype_size(qilin_model_get_options(m)->dtype);
    const qilin_plan *p = qilin_model_get_plan(m);
    QILIN_TRY(qilin_predict_decode(p, c->perf, batch, a->prompt + a->gen / 2, elem, elem, &r->pred_decode));
    return qilin_predict_prefill(p, c->perf, a->prompt, elem, elem, &r->pred_prefill);
}

/* The GPU model in a device name ("NVIDIA H100 80GB HBM3", "qilin-sim
 * (emulated H200)"), or NULL. */
static const qilin_gpu_perf *perf_of(const char *device_name) {
    static const char *const models[] = {"H200", "H100", "A100"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        if (strstr(device_name, models[i])) return qilin_gpu_perf_find(models[i]);
    return NULL;
}

static void weight_format(const qilin_model_desc *d, char *out, size_t cap) {
    if (d->from_gguf)
        snprintf(out, cap, "gguf");
    else if (d->weight_block[0] > 0)
        snprintf(out, cap, "fp8 e4m3, %dx%d block scales", d->weight_block[0], d->weight_block[1]);
    else if (d->weight_group > 0)
        snprintf(out, cap, "int4, group %d", d->weight_group);
    else
        snprintf(out, cap, "unquantized");
}

static qilin_status describe(const qilin_model *m, int argc, char **argv, bench_context *c) {
    memset(c, 0, sizeof *c);
    const qilin_model_options *o = qilin_model_get_options(m);
    const qilin_model_desc *d = qilin_model_get_desc(m);
    QILIN_TRY(qilin_device_get_props(o->device, &c->dev));
    c->dtype = qilin_dtype_name(o->dtype);
    weight_format(d, c->format, sizeof c->format);
    qilin_model_param_counts(d, &c->params);
    for (int g = 0; g < o->tp; g++) c->weight_bytes += qilin_model_weight_bytes(m, g);
    c->layers = d->n_layers;
    c->meaningful = !c->dev.is_sim;
    c->perf = perf_of(c->dev.name);
    if (qilin_device_dry_run())
        snprintf(c->timing_note, sizeof c->timing_note,
                 "timings are meaningless: dry-run (QILIN_SIM_DRY_RUN=1), no kernel ran");
    else if (c->dev.is_sim)
        snprintf(c->timing_note, sizeof c->timing_note,
                 "timings are the CPU emulator's, not a GPU's: they only prove the harness");
    size_t n = 0;
    for (int i = 0; i < argc && n < sizeof c->flags; i++)
        n += (size_t)snprintf(c->flags + n, sizeof c->flags - n, "%s%s", i ? " " : "", argv[i]);
    return QILIN_OK;
}

/* 0.26 M, 30.5 B: a count readable at any model size. */
static const char *count_text(double n, char *buf, size_t cap) {
    snprintf(buf, cap, n < 1e9 ? "%.2f M" : "%.2f B", n < 1e9 ? n / 1e6 : n / 1e9);
    return buf;
}

static void print_header(const bench_args *a, const bench_context *c) {
    char total[32], active[32], bytes[32];
    printf("qilin bench: %s%s", a->model, a->opt.random_weights ? " (random weights" : "");
    if (a->opt.random_weights) printf(", seed %" PRIu64 ")", a->opt.random_seed);
    printf(", %d layers, %s params (%s activated)\n", c->layers,
           count_text((double)c->params.total, total, sizeof total),
           count_text((double)c->params.activated, active, sizeof active));
    double wb = (double)c->weight_bytes;
    snprintf(bytes, sizeof bytes, wb < 1e9 ? "%.2f MB" : "%.2f GB", wb < 1e9 ? wb / 1e6 : wb / 1e9);
    printf("device: %s%s, tp %d; dtype %s; weights %s, %s on the GPUs\n", c->dev.name,
           c->dev.is_sim ? " [CPU emulator]" : "", a->opt.tp, c->dtype, c->format, bytes);
    printf("commit %s; prompt %d, gen %d, repeat %d, warm-up %d, chunk %d, graphs %s\n", QILIN_COMMIT,
           a->prompt, a->gen, a->repeat, a->warmup, a->chunk, a->opt.no_graphs ? "off" : "on");
    printf("flags: %s\n", c->flags);
    if (c->timing_note[0]) printf("NOTE: %s\n", c->timing_note);
    if (c->perf)
        printf("roofline: host/predict.h on %s's published figures (%s); decode at context prompt + gen/2, "
               "prefill of one prompt\n",
               c->perf->name, c->perf->source);
    else
        printf("roofline: none (no published figures for %s; host/predict.h knows %s)\n", c->dev.name,
               qilin_gpu_perf_names());
    printf("\n| batch | prompt | gen | prefill tok/s | decode tok/s | ms/token | prefill s | decode s "
           "| roofline prefill tok/s | roofline decode tok/s | decode / roofline |\n"
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    fflush(stdout);
}

static void print_row(const bench_args *a, const batch_result *r) {
    printf("| %d | %d | %d | %.1f ± %.1f | %.1f ± %.1f | %.3f ± %.3f | %.3f | %.3f ", r->batch, a->prompt, a->gen,
           r->prefill_tps.mean, r->prefill_tps.sd, r->decode_tps.mean, r->decode_tps.sd, r->ms_per_token.mean,
           r->ms_per_token.sd, r->prefill_s.mean, r->decode_s.mean);
    if (r->pred_decode.tokens_per_s > 0)
        printf("| %.0f | %.0f | %.1f %% |\n", r->pred_prefill.tokens_per_s, r->pred_decode.tokens_per_s,
               100.0 * r->decode_tps.mean / r->pred_decode.tokens_per_s);
    else
        printf("| - | - | - |\n");
    fflush(stdout);
}

static json_t *stat_json(stat2 s) { return json_pack("{s:f, s:f}", "mean", s.mean, "sd", s.sd); }

/* The prediction beside the measurement (null when the GPU has no figures). */
static json_t *roofline_json(const bench_context *c, const batch_result *r) {
    if (!c->perf) return json_null();
    const qilin_step_prediction *d = &r->pred_decode;
    return json_pack("{s:s, s:f, s:f, s:f, s:f, s:s, s:I}", "gpu", c->perf->name, "prefill_tokens_per_s",
                     r->pred_prefill.tokens_per_s, "decode_tokens_per_s", d->tokens_per_s, "decode_step_s",
                     d->t_step, "decode_bytes_per_gpu", d->bytes, "decode_bound", d->bound, "decode_context",
                     (json_int_t)d->context);
}

static int write_json(const bench_args *a, const bench_context *c, const batch_result *r, int n) {
    json_t *results = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            results, json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "batch", r[i].batch,
                               "prefill_steps", r[i].prefill_steps, "prefill_tokens", r[i].prefill_tokens,
                               "prefill_tokens_per_s", stat_json(r[i].prefill_tps), "decode_tokens_per_s",
                               stat_json(r[i].decode_tps), "ms_per_token", stat_json(r[i].ms_per_token),
                               "prefill_s", stat_json(r[i].prefill_s), "decode_s", stat_json(r[i].decode_s),
                               "roofline", roofline_json(c, &r[i])));
    json_t *device = json_pack(
        "{s:s, s:i, s:b, s:i, s:i, s:i, s:I, s:f}", "name", c->dev.name, "index", a->opt.device, "emulator",
        c->dev.is_sim, "cc_major", c->dev.cc_major, "cc_minor", c->dev.cc_minor, "sms", c->dev.sm_count,
        "memory_bytes", (json_int_t)c->dev.total_mem_bytes, "bandwidth_gbs", c->dev.peak_bandwidth_gbs);
    json_t *doc =
        json_pack("{s:s, s:s, s:b, s:I, s:i, s:I, s:I, s:s, s:s, s:I, s:o, s:i, s:b, s:b, s:s, s:s, s:i, "
                  "s:i, s:i, s:i, "
                  "s:i, s:o}",
                  "command", "qilin bench", "model", a->model, "random_weights", a->opt.random_weights,
                  "weights_seed", (json_int_t)a->opt.random_seed, "layers", c->layers, "params_total",
                  (json_int_t)c->params.total, "params_activated", (json_int_t)c->params.activated, "dtype",
                  c->dtype, "weight_format", c->format, "weight_bytes", (json_int_t)c->weight_bytes, "device",
                  device, "tp", a->opt.tp, "graphs", !a->opt.no_graphs, "timings_meaningful", c->meaningful,
                  "timing_note", c->timing_note, "commit", QILIN_COMMIT, "prompt", a->prompt, "gen", a->gen,
                  "repeat", a->repeat, "warmup", a->warmup, "chunk", a->chunk, "results", results);
    if (!doc) return fprintf(stderr, "qilin bench: building the JSON failed\n"), 1;
    json_object_set_new(doc, "flags", json_string(c->flags));
    int rc = json_dump_file(doc, a->json_path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (rc) return fprintf(stderr, "qilin bench: --json %s: cannot write the file\n", a->json_path), 1;
    fprintf(stderr, "qilin bench: wrote %s\n", a->json_path);
    return 0;
}

/* The --json file must be writable before minutes of benchmarking; one
 * this check creates is removed again when the benchmark fails. */
static int check_json_path(const char *path, bool *created) {
    *created = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) return fprintf(stderr, "qilin bench: --json %s: cannot open for writing\n", path), 1;
    fclose(f);
    return 0;
}

int qilin_cmd_bench(int argc, char **argv) {
    bench_args a;
    int p = parse(argc, argv, &a);
    if (p) return p > 0 ? usage(stdout) : 2;
    bool created = false;
    if (a.json_path && check_json_path(a.json_path, &created)) return 2;
    fprintf(stderr, "qilin bench: loading %s%s ...\n", a.model,
            a.opt.random_weights ? " (random weights)" : "");
    qilin_model *m = NULL;
    qilin_status st = qilin_model_load(a.model, &a.opt, &m);
    if (st != QILIN_OK) {
        if (created) remove(a.json_path);
        return cli_fail(
            "bench", qilin_error_context(st, "sized for --prompt %d + --gen %d = %d positions, %d sequences",
                                         a.prompt, a.gen, a.prompt + a.gen, a.max_batch));
    }
    cli_report_gpus("bench", m);
    bench_context c;
    run_buffers b = {0};
    batch_result *results = calloc((size_t)a.n_batches, sizeof *results);
    int done = 0, rc = 0;
    if (!results) st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin bench: results");
    if (st == QILIN_OK) st = describe(m, argc, argv, &c);
    if (st == QILIN_OK) st = buffers_init(&b, &a, qilin_model_get_desc(m)->vocab);
    if (st == QILIN_OK) {
        if (c.timing_note[0]) fprintf(stderr, "qilin bench: NOTE: %s\n", c.timing_note);
        print_header(&a, &c);
    }
    for (; st == QILIN_OK && done < a.n_batches; done++)
        if ((st = bench_batch(m, &a, &b, a.batches[done], &results[done])) == QILIN_OK &&
            (st = predict(m, &a, &c, a.batches[done], &results[done])) == QILIN_OK)
            print_row(&a, &results[done]);
    if (st != QILIN_OK)
        rc = cli_fail("bench", st);
    else if (a.json_path)
        rc = write_json(&a, &c, results, done);
    if (!rc) rc = cli_check_output("bench", stdout, "stdout");
    if (rc && created) remove(a.json_path);
    buffers_free(&b);
    free(results);
    qilin_model_free(m);
    return rc;
}
