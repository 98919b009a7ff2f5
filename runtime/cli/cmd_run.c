/* cmd_run.c — `qilin run`: generate text with a model and stream it.
 *
 *   qilin run --model DIR -p "text" [-n N]            continue a text
 *   qilin run --model DIR --chat [-p "first message"] [--system S]
 *             [--chat-template FILE] [--template-kwargs JSON] [--think show|hide]
 *                                                     chat through the model's template;
 *                                                     further turns are read from stdin,
 *                                                     one line each, until EOF
 *   qilin run --model DIR --ids 1,2,3 [-n N]          continue token ids, print ids
 *   common: [--temperature T --top-k K --top-p P --min-p P --repetition-penalty R
 *            --seed S] [--stop STR]... [--dtype float32|bfloat16|float16]
 *            [--max-ctx N] [--ignore-eos] [--tp N] [--ep [--ep-dispatch replicated|all-to-all]]
 *            [--nodes N --node-rank R --coordinator HOST:PORT]   (node R > 0 needs no prompt)
 *
 * Text streams to stdout as it is generated (a token that ends inside a UTF-8
 * character waits for the rest); with -p the prompt is printed as its ids
 * decode, through the same stream, so the output reads exactly as `qilin
 * tokenize --decode --skip-special` of prompt + generated ids. Generation
 * stops at EOS (the tokenizer's, the config's and generation_config.json's
 * ids, and in chat mode the template's end-of-turn tokens), at a --stop
 * string (not printed), or after N tokens (-n, else generation_config.json's
 * max_new_tokens, else 256 / chat 1024 / ids 16), capped by the context.
 * Sampling defaults to generation_config.json when it says do_sample, else
 * greedy; flags override. Every number is parsed whole and range-checked
 * (cli.h) and sampling values go through qilin_sampling_params_check, from
 * flags and from the file alike. A failed write to stdout ends generation
 * and the exit status is 1. Afterwards stderr gets prompt and generation
 * tokens/s: prompt = prefill up to the first new token, generation = the
 * tokens after it over the time after it.
 *
 * Every generation is one request through the serving engine (engine.h)
 * on the model's one KV slot. A chat turn still prefills the whole
 * conversation: reusing the previous turn's KV waits for device paging. */
#define _POSIX_C_SOURCE 200809L /* getline, strdup */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "runtime/chat.h"
#include "cli.h"
#include "commands.h"
#include "host/forward.h"
#include "runtime/engine.h"
#include "runtime/text_stream.h"
#include "runtime/tokenizer.h"

enum { MAX_STOPS = 16 };

typedef struct run_args {
    const char *model, *prompt, *ids, *system, *chat_template, *think, *kwargs;
    const char *stops[MAX_STOPS];
    int n_stops, n, max_ctx;
    bool chat, ignore_eos, sampling_given;
    qilin_model_options opt;
    qilin_sampling_params sp;
} run_args;

static int usage(FILE *to) {
    fprintf(to,
            "usage: qilin run --model DIR (-p TEXT | --chat [-p TEXT] [--system S] | --ids 1,2,3) [-n N]\n"
            "                 [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R]\n"
            "                 [--seed S] [--stop STR]... [--chat-template FILE] [--think show|hide]\n"
            "                 [--template-kwargs '{\"enable_thinking\": false}']\n"
            "                 [--dtype float32|bfloat16|float16] [--max-ctx N] [--ignore-eos] [--tp N] [--ep]\n"
            "                 [--ep-dispatch replicated|all-to-all]\n"
            "                 [--nodes N --node-rank R --coordinator HOST:PORT]\n"
            "                 [--device N] [--comm-timeout SECONDS]\n"
            "                 [--random-weights [--weights-seed S]] [--layers N]\n" CLI_WEIGHTS_USAGE
            "  --device   the first GPU this process uses (it uses device .. device + tp / nodes - 1); default 0\n"
            "  --comm-timeout  seconds a wait on a collective may take before the step fails (tp > 1);\n"
            "             default 600\n"
            "  -n N       new tokens at most: -n, else generation_config.json's max_new_tokens, else 256\n"
            "             (--chat: 1024, --ids: 16); the context caps it\n"
            "  --max-ctx  context tokens, at most the model's max_position_embeddings; default: prompt + N\n"
            "             for -p and --ids, else min(max_position_embeddings, %d)\n"
            "  sampling   --temperature >= 0 (0 = greedy), --top-k >= 0 (0 = off), --top-p in (0, 1],\n"
            "             --min-p in [0, 1], --repetition-penalty > 0; default: generation_config.json\n"
            "             when it says do_sample, else greedy\n",
            QILIN_DEFAULT_CTX);
    return to == stdout ? 0 : 2;
}

/* A sampling flag: sets its field, then checks the whole set the way the
 * sampler will (the other fields hold valid defaults or flags already
 * checked, so a failure is this flag's). */
static int sampling_flag(run_args *a, const char *f, const char *v) {
    static const char *const names[] = {"--temperature", "--top-p", "--min-p", "--repetition-penalty"};
    float *const fields[] = {&a->sp.temperature, &a->sp.top_p, &a->sp.min_p, &a->sp.repetition_penalty};
    bool known = !strcmp(f, "--top-k");
    if (known && cli_int("run", f, v, INT_MIN, INT_MAX, &a->sp.top_k)) return -1;
    for (size_t i = 0; i < sizeof names / sizeof *names && !known; i++) {
        double x = 0;
        if (strcmp(f, names[i])) continue;
        known = true;
        if (cli_double("run", f, v, -FLT_MAX, FLT_MAX, &x)) return -1;
        *fields[i] = (float)x; /* within float's range: no overflow to inf */
    }
    if (!known) return 0;
    char why[QILIN_SAMPLING_WHY_BYTES];
    if (qilin_sampling_params_check(&a->sp, why) != QILIN_OK)
        return fprintf(stderr, "qilin run: %s %s: %s\n", f, v, why), -1;
    a->sampling_given = true;
    return 1;
}

/* A flag with a number: 1 taken, 0 not a number flag, -1 bad value. */
static int number_flag(run_args *a, const char *f, const char *v) {
    if (!strcmp(f, "-n")) return cli_int("run", f, v, 1, INT_MAX, &a->n) ? -1 : 1;
    if (!strcmp(f, "--max-ctx")) return cli_int("run", f, v, 1, INT_MAX, &a->max_ctx) ? -1 : 1;
    if (!strcmp(f, "--tp")) return cli_int("run", f, v, 1, CLI_MAX_GPUS, &a->opt.tp) ? -1 : 1;
    if (!strcmp(f, "--seed")) return cli_u64("run", f, v, &a->sp.seed) ? -1 : 1;
    return sampling_flag(a, f, v);
}

static int parse_flag_value(run_args *a, const char *f, const char *v) {
    static const char *const text_flags[] = {"--model", "-p",      "--prompt", "--ids",
                                              "--system", "--chat-template", "--think",  "--template-kwargs"};
    const char **text_dest[] = {&a->model,  &a->prompt,        &a->prompt, &a->ids,
                                &a->system, &a->chat_template, &a->think,  &a->kwargs};
    for (size_t i = 0; i < sizeof text_flags / sizeof *text_flags; i++)
        if (!strcmp(f, text_flags[i])) return *text_dest[i] = v, 0;
    if (!strcmp(f, "--stop")) {
        if (a->n_stops == MAX_STOPS) return fprintf(stderr, "qilin run: at most %d --stop strings\n", MAX_STOPS), -1;
        a->stops[a->n_stops++] = v;
        return 0;
    }
    if (!strcmp(f, "--dtype")) {
        if (!cli_dtype(v, &a->opt.dtype)) return 0;
        return fprintf(stderr, "qilin run: --dtype %s: use float32, bfloat16 or float16\n", v), -1;
    }
    int node = cli_node_flag("run", f, v, &a->opt);
    if (node) return node < 0 ? -1 : 0;
    int weights = cli_weights_flag("run", f, v, &a->opt);
    if (weights) return weights < 0 ? -1 : 0;
    if (!strcmp(f, "--ep-dispatch")) {
        if (!strcmp(v, "replicated")) a->opt.ep_dispatch = QILIN_EP_REPLICATED;
        else if (!strcmp(v, "all-to-all")) a->opt.ep_dispatch = QILIN_EP_ALL_TO_ALL;
        else return fprintf(stderr, "qilin run: --ep-dispatch %s: use replicated or all-to-all\n", v), -1;
        return 0;
    }
    int number = number_flag(a, f, v);
    return number < 0 ? -1 : number > 0 ? 0 : cli_unknown("run", f);
}

/* Flags taking a value; the others are switches. */
static bool takes_value(const char *f) {
    static const char *const valued[] = {
        "--model", "-p",   "--prompt",      "--ids",      "--system",     "--chat-template", "--think",
        "--template-kwargs", "--stop", "--dtype", "--nodes", "--node-rank", "--coordinator", "--ep-dispatch",
        "--comm-timeout", "--device",
        "-n", "--max-ctx", "--tp", "--seed", "--temperature", "--top-k", "--top-p", "--min-p",
        "--repetition-penalty", "--layers", "--weights-seed"};
    for (size_t i = 0; i < sizeof valued / sizeof *valued; i++)
        if (!strcmp(f, valued[i])) return true;
    return false;
}

/* 0 parsed, 1 --help, -1 bad arguments (after a message). */
static int parse(int argc, char **argv, run_args *a) {
    memset(a, 0, sizeof *a);
    qilin_model_options_default(&a->opt);
    a->opt.max_seqs = 1;
    a->sp = (qilin_sampling_params){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0, .repetition_penalty = 1};
    a->n = -1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (cli_is_help(f)) return 1;
        if (!strcmp(f, "--chat")) a->chat = true;
        else if (!strcmp(f, "--ignore-eos")) a->ignore_eos = true;
        else if (!strcmp(f, "--ep")) a->opt.ep = true;
        else if (!strcmp(f, "--random-weights")) a->opt.random_weights = true;
        else if (!takes_value(f)) return cli_unknown("run", f);
        else if (i + 1 == argc) return fprintf(stderr, "qilin run: %s needs a value\n", f), -1;
        else if (parse_flag_value(a, f, argv[++i])) return -1;
    }
    if (a->model && a->opt.node_rank > 0) return 0; /* a follower needs no prompt */
    if (!a->model) return fprintf(stderr, "qilin run: --model DIR is required\n"), -1;
    if (!a->prompt && !a->ids && !a->chat) return fprintf(stderr, "qilin run: give -p TEXT, --chat or --ids\n"), -1;
    if (a->ids && (a->prompt || a->chat)) return fprintf(stderr, "qilin run: --ids goes without -p and --chat\n"), -1;
    if (a->think && strcmp(a->think, "show") && strcmp(a->think, "hide"))
        return fprintf(stderr, "qilin run: --think %s: use show or hide\n", a->think), -1;
    return 0;
}

/* The new-token limit and the context, from the model's descriptor before
 * loading: -n, else generation_config.json's max_new_tokens, else
 * `fallback`; --max-ctx, else prompt + n (chat: the model's default), never
 * past max_position_embeddings (qilin_model_load refuses an explicit
 * --max-ctx beyond it). Sums are taken in int64: no overflow. */
static qilin_status size_context(run_args *a, int64_t prompt_len, int fallback) {
    qilin_model_desc *d = NULL;
    QILIN_TRY(qilin_model_desc_load(a->model, &d));
    int64_t from_config = d->has_gen ? d->gen.max_new_tokens : -1;
    int limit = qilin_model_default_ctx(d);
    qilin_model_desc_free(d);
    if (a->n < 0) a->n = from_config > 0 ? (from_config < INT_MAX ? (int)from_config : INT_MAX) : fallback;
    if (a->max_ctx > 0) a->opt.max_ctx = a->max_ctx;
    else if (!a->chat) a->opt.max_ctx = prompt_len + a->n < limit ? (int)(prompt_len + a->n) : limit;
    return QILIN_OK;
}

static qilin_status load_model(run_args *a, int64_t prompt_len, int fallback_n, qilin_model **m) {
    QILIN_TRY(size_context(a, prompt_len, fallback_n));
    qilin_status st = qilin_model_load(a->model, &a->opt, m);
    if (st == QILIN_OK) cli_report_gpus("run", *m);
    return st;
}

/* Sampling from generation_config.json unless flags chose (HF: do_sample),
 * checked as flags are: a config's NaN or top_p 0 is refused, naming it. */
static qilin_status default_sampling(run_args *a, const qilin_model *m) {
    const qilin_model_desc *d = qilin_model_get_desc(m);
    if (a->sampling_given || !d->has_gen || !d->gen.do_sample) return QILIN_OK;
    const hf_generation_config *g = &d->gen;
    const double floats[] = {g->temperature, g->top_p, g->min_p, g->repetition_penalty};
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++)
        if (!(fabs(floats[i]) <= FLT_MAX))
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "generation_config.json of %s: temperature %g, top_p %g, min_p %g, "
                               "repetition_penalty %g: not all finite floats", a->model, g->temperature, g->top_p,
                               g->min_p, g->repetition_penalty);
    if (g->top_k < 0 || g->top_k > INT_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "generation_config.json of %s: top_k %lld: must be from 0 to %d",
                           a->model, (long long)g->top_k, INT_MAX);
    a->sp.temperature = (float)g->temperature;
    a->sp.top_p = (float)g->top_p;
    a->sp.top_k = (int)g->top_k;
    a->sp.min_p = (float)g->min_p;
    a->sp.repetition_penalty = (float)g->repetition_penalty;
    if (qilin_sampling_params_check(&a->sp, NULL) != QILIN_OK)
        return qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "generation_config.json of %s", a->model);
    return QILIN_OK;
}

/* ---- one generation, streamed ---- */

typedef struct generation {
    qilin_text_stream text;
    int max_new, n_new;
    double t_start, t_first, t_last;
    qilin_status st;
} generation;

/* ---- one request through the engine ---- */

/* Called with each new token; false ends the request there. */
typedef bool (*token_fn)(void *user, int token);

typedef struct one_request {
    token_fn fn;
    void *user;
    bool stop;
} one_request;

static void engine_token(void *user, int64_t id, int token, qilin_engine_finish finished) {
    one_request *o = user;
    if (!o->stop && !o->fn(o->user, token)) o->stop = true;
}

/* Generates up to max_new tokens after prompt through the serving engine
 * (runtime/engine.h; the model's one KV slot). The callback cannot call the
 * engine, so a request it ends is cancelled after that step, before any
 * further token (one token per step). */
static qilin_status run_request(qilin_model *m, const int *prompt, int len, const qilin_sampling_params *sp,
                                int max_new, token_fn fn, void *user) {
    one_request o = {.fn = fn, .user = user};
    qilin_engine_options eo;
    qilin_engine_options_default(&eo);
    eo.on_token = engine_token, eo.user = &o;
    qilin_engine *e = NULL;
    QILIN_TRY(qilin_engine_create(m, &eo, &e));
    qilin_engine_request r = {.prompt = prompt, .prompt_len = len, .params = *sp, .max_new_tokens = max_new};
    int64_t id = 0;
    qilin_status st = qilin_engine_add(e, &r, &id);
    while (st == QILIN_OK && !qilin_engine_idle(e)) {
        st = qilin_engine_step(e);
        if (st == QILIN_OK && o.stop) st = qilin_engine_cancel(e, id);
    }
    qilin_engine_free(e);
    return st;
}

/* Streams to stdout; a failed write (full disk, closed pipe) leaves stdout's
 * error flag set, which ends the generation (on_token) and the exit status. */
static void write_stdout(void *user, const char *text, size_t n) { cli_write(stdout, text, n); }

static bool on_token(void *user, int token) {
    generation *g = user;
    g->t_last = cli_now();
    if (g->n_new++ == 0) g->t_first = g->t_last;
    bool more = false;
    g->st = qilin_text_stream_push(&g->text, token, &more);
    return g->st == QILIN_OK && more && !ferror(stdout);
}

static void print_rates(const generation *g, int prompt_len) {
    double prefill = g->t_first - g->t_start, decode = g->t_last - g->t_first;
    fprintf(stderr, "\nqilin run: prompt %d tokens in %.3f s (%.1f tokens/s); generation %d tokens in %.3f s (%.1f tokens/s)%s\n",
            prompt_len, prefill, prefill > 0 ? prompt_len / prefill : 0.0, g->n_new, decode,
            decode > 0 ? (g->n_new - 1) / decode : 0.0,
            g->text.finish == QILIN_FINISH_EOS ? ", stopped at EOS" : g->text.finish == QILIN_FINISH_STOP ? ", stopped at a stop string" : "");
}

/* Generates from prompt ids, streaming text through `emit` (with echo, the
 * prompt's text first, so the whole reads as the decoded ids); the visible
 * generated text stays in g->text.text for the caller (chat history). */
static qilin_status generate_text(qilin_model *m, const qilin_tokenizer *t, const run_args *a, const qilin_ids *prompt,
                                  bool echo, const int32_t *stop_ids, size_t n_stop_ids, qilin_emit_fn emit, void *user,
                                  generation *g) {
    memset(g, 0, sizeof *g);
    qilin_text_stream_init(&g->text, t, QILIN_DECODE_SKIP_SPECIAL, stop_ids, n_stop_ids, a->stops, (size_t)a->n_stops,
                           emit, user);
    qilin_text_stream_set_model_vocab(&g->text, qilin_model_get_desc(m)->vocab); /* padding ids: "" */
    int ctx = qilin_model_get_options(m)->max_ctx;
    if (prompt->n >= (size_t)ctx)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "the prompt has %zu tokens; the context holds %d", prompt->n,
                           ctx);
    int len = (int)prompt->n, room = ctx - len; /* len < ctx: both fit an int */
    QILIN_TRY(qilin_text_stream_prompt(&g->text, prompt->ids, prompt->n, echo));
    g->max_new = a->n > 0 && a->n < room ? a->n : room;
    if (a->n > room)
        fprintf(stderr, "qilin run: -n %d capped to %d: the context holds %d tokens (--max-ctx)\n", a->n, room,
                qilin_model_get_options(m)->max_ctx);
    g->t_start = cli_now();
    qilin_status st = run_request(m, prompt->ids, len, &a->sp, g->max_new, on_token, g);
    if (st == QILIN_OK) st = g->st;
    if (st == QILIN_OK) st = qilin_text_stream_finish(&g->text);
    return st;
}

/* Stop ids: the tokenizer's EOS and the model config's (which includes
 * generation_config.json's), unless --ignore-eos; in chat mode also the
 * end-of-turn tokens of the known template families that this vocabulary has. */
static size_t stop_ids(const run_args *a, const qilin_model *m, const qilin_tokenizer *t, int32_t *out, size_t cap) {
    size_t n = 0;
    if (a->ignore_eos) return 0;
    const qilin_model_desc *d = qilin_model_get_desc(m);
    int32_t candidates[32];
    size_t k = 0;
    candidates[k++] = qilin_tokenizer_eos_id(t);
    for (int i = 0; i < d->n_eos && k < 16; i++) candidates[k++] = (int32_t)d->eos_ids[i];
    static const char *const end_of_turn[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
                                              "<｜end▁of▁sentence｜>", "[EOS]", "</s>", "<|endoftext|>"};
    for (size_t i = 0; a->chat && i < sizeof end_of_turn / sizeof *end_of_turn; i++)
        candidates[k++] = qilin_tokenizer_token_id(t, end_of_turn[i]);
    for (size_t i = 0; i < k && n < cap; i++) {
        bool seen = candidates[i] < 0;
        for (size_t j = 0; j < n && !seen; j++) seen = out[j] == candidates[i];
        if (!seen) out[n++] = candidates[i];
    }
    return n;
}

/* ---- token ids in, ids out (first light's interface, kept for scripts) ---- */

typedef struct id_sink {
    int *out, *n;
} id_sink;

static bool store_id(void *user, int token) {
    id_sink *s = user;
    s->out[(*s->n)++] = token;
    return true;
}

static int run_ids(run_args *a) {
    qilin_ids prompt = {0};
    if (cli_parse_ids("run", a->ids, &prompt)) return qilin_ids_free(&prompt), 2;
    qilin_model *m = NULL;
    qilin_status st = load_model(a, (int64_t)prompt.n, 16, &m);
    if (st == QILIN_OK) st = default_sampling(a, m);
    if (st != QILIN_OK) return qilin_ids_free(&prompt), qilin_model_free(m), cli_fail("run", st);
    int ctx = qilin_model_get_options(m)->max_ctx, len = 0, rc = 0, *out = NULL;
    if ((int64_t)prompt.n + a->n > ctx) /* checked before the output buffer is sized by -n */
        st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "--ids: %zu tokens + -n %d exceed the context of %d tokens",
                         prompt.n, a->n, ctx);
    else if (!(out = malloc(((size_t)a->n + 1) * sizeof *out)))
        st = qilin_error(QILIN_ERR_OUT_OF_MEMORY, "output ids");
    else
        len = (int)prompt.n; /* < ctx */
    int n_out = 0;
    id_sink sink = {.out = out, .n = &n_out};
    double t0 = cli_now();
    if (st == QILIN_OK) st = run_request(m, prompt.ids, len, &a->sp, a->n, store_id, &sink);
    double t1 = cli_now();
    if (st != QILIN_OK) {
        rc = cli_fail("run", st);
    } else {
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? "," : "", out[i]);
        printf("\n");
        fprintf(stderr, "qilin run: %d prompt + %d generated tokens in %.3f s (%.1f tokens/s overall)\n", len, a->n,
                t1 - t0, ((double)len + a->n) / (t1 - t0));
    }
    free(out);
    qilin_ids_free(&prompt);
    qilin_model_free(m);
    return rc;
}

/* Continues a text: BOS as the tokenizer adds it, special tokens in the text matched. */
static int run_completion(run_args *a, const qilin_tokenizer *t) {
    qilin_ids prompt = {0};
    qilin_status st = qilin_tokenizer_encode(t, a->prompt, strlen(a->prompt),
                                             QILIN_ENCODE_ADD_SPECIAL | QILIN_ENCODE_PARSE_SPECIAL, &prompt);
    if (st == QILIN_OK && prompt.n == 0) st = qilin_error(QILIN_ERR_INVALID_ARGUMENT, "-p: the prompt has no tokens");
    if (st != QILIN_OK) return qilin_ids_free(&prompt), cli_fail("run", st);
    qilin_model *m = NULL;
    if ((st = load_model(a, (int64_t)prompt.n, 256, &m)) == QILIN_OK) st = default_sampling(a, m);
    if (st != QILIN_OK) return qilin_ids_free(&prompt), qilin_model_free(m), cli_fail("run", st);
    int32_t stops[32];
    size_t n_stops = stop_ids(a, m, t, stops, 32);
    generation g;
    st = generate_text(m, t, a, &prompt, true, stops, n_stops, write_stdout, NULL, &g);
    int rc = st == QILIN_OK ? 0 : cli_fail("run", st);
    if (st == QILIN_OK) print_rates(&g, (int)prompt.n);
    qilin_text_stream_free(&g.text);
    qilin_ids_free(&prompt);
    qilin_model_free(m);
    return rc;
}

/* ---- chat: the model's template, turns from -p and then stdin ---- */

typedef struct chat_output {
    qilin_think_filter *think;
    qilin_status st;
} chat_output;

static void write_visible(void *user, const char *text, size_t n) {
    chat_output *o = user;
    const char *visible = NULL;
    size_t len = 0;
    if (o->st == QILIN_OK) o->st = qilin_think_filter_push(o->think, text, n, &visible, &len);
    if (o->st == QILIN_OK) write_stdout(NULL, visible, len);
}

/* The template: --chat-template FILE, else the model directory's
 * (chat_template.jinja / tokenizer_config.json), else the tokenizer's own
 * (GGUF tokenizer.chat_template). */
static qilin_status load_template(const run_args *a, const qilin_tokenizer *t, qilin_chat_template **tpl) {
    if (a->chat_template) return qilin_chat_template_load(NULL, a->chat_template, tpl);
    qilin_status st = qilin_chat_template_load(a->model, NULL, tpl);
    if (st == QILIN_OK || !qilin_tokenizer_chat_template(t)) return st;
    return qilin_chat_template_parse(qilin_tokenizer_chat_template(t), a->model, tpl);
}

static qilin_status add_message(json_t *messages, const char *role, const char *content) {
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    if (!m || json_array_append_new(messages, m))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "chat: a %s message that is not valid UTF-8", role);
    return QILIN_OK;
}

/* One turn: render the conversation, generate the reply (streamed through
 * the think filter) and append it to the conversation. */
static qilin_status chat_turn(const run_args *a, qilin_model *m, const qilin_tokenizer *t, const qilin_chat_template *tpl,
                              json_t *messages, const int32_t *stops, size_t n_stops) {
    char *msgs = json_dumps(messages, JSON_COMPACT), *prompt = NULL;
    qilin_chat_options o = {.bos_token = NULL, .eos_token = NULL, .add_generation_prompt = true,
                            .kwargs_json = a->kwargs};
    /* a template from a tokenizer_config.json knows its BOS/EOS; one from a file or GGUF takes the tokenizer's */
    if (!qilin_chat_template_bos(tpl) && *qilin_tokenizer_bos_text(t)) o.bos_token = qilin_tokenizer_bos_text(t);
    if (!qilin_chat_template_eos(tpl) && *qilin_tokenizer_eos_text(t)) o.eos_token = qilin_tokenizer_eos_text(t);
    qilin_status st = msgs ? qilin_chat_render(tpl, msgs, &o, &prompt) : qilin_error(QILIN_ERR_OUT_OF_MEMORY, "chat");
    free(msgs);
    qilin_ids ids = {0};
    if (st == QILIN_OK) st = qilin_tokenizer_encode(t, prompt, strlen(prompt), QILIN_ENCODE_PARSE_SPECIAL, &ids);
    chat_output out = {0};
    if (st == QILIN_OK) st = qilin_think_filter_create(!a->think || !strcmp(a->think, "show"),
                                                       qilin_chat_prompt_opens_think(prompt), &out.think);
    generation g;
    memset(&g, 0, sizeof g);
    if (st == QILIN_OK) st = generate_text(m, t, a, &ids, false, stops, n_stops, write_visible, &out, &g);
    const char *rest = NULL;
    size_t n_rest = 0;
    if (st == QILIN_OK) st = out.st;
    if (st == QILIN_OK) st = qilin_think_filter_finish(out.think, &rest, &n_rest);
    if (st == QILIN_OK) {
        write_stdout(NULL, rest, n_rest);
        print_rates(&g, (int)ids.n);
        st = add_message(messages, "assistant", g.text.text ? g.text.text : "");
    }
    qilin_think_filter_free(out.think);
    qilin_text_stream_free(&g.text);
    qilin_ids_free(&ids);
    free(prompt);
    return st;
}

/* Next user turn: -p first, then a line of stdin ("> " on a terminal); NULL at EOF. */
static char *next_user_message(const run_args *a, int turn, char **line, size_t *cap) {
    if (turn == 0 && a->prompt) return strdup(a->prompt);
    if (isatty(STDIN_FILENO)) fprintf(stderr, "> "), fflush(stderr);
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return NULL;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    return strdup(*line);
}

static int run_chat(run_args *a, const qilin_tokenizer *t) {
    qilin_chat_template *tpl = NULL;
    qilin_model *m = NULL;
    json_t *messages = json_array();
    qilin_status st = load_template(a, t, &tpl);
    if (st == QILIN_OK && a->system) st = add_message(messages, "system", a->system);
    if (st == QILIN_OK) st = load_model(a, 0, 1024, &m);
    int32_t stops[32];
    size_t n_stops = st == QILIN_OK ? stop_ids(a, m, t, stops, 32) : 0;
    if (st == QILIN_OK) st = default_sampling(a, m);
    char *line = NULL, *user = NULL;
    size_t cap = 0;
    for (int turn = 0; st == QILIN_OK && (user = next_user_message(a, turn, &line, &cap)); turn++) {
        st = add_message(messages, "user", user);
        if (st == QILIN_OK) st = chat_turn(a, m, t, tpl, messages, stops, n_stops);
        free(user);
    }
    int rc = st == QILIN_OK ? 0 : cli_fail("run", st);
    free(line);
    json_decref(messages);
    qilin_model_free(m);
    qilin_chat_template_free(tpl);
    return rc;
}

static int run_tokenized(run_args *a) {
    qilin_tokenizer *t = NULL;
    qilin_status st = qilin_tokenizer_load(a->model, &t);
    if (st != QILIN_OK && a->opt.random_weights) /* a config.json alone is enough for --ids */
        fprintf(stderr, "qilin run: --random-weights without a tokenizer in %s takes token ids: use --ids 1,2,3\n",
                a->model);
    if (st != QILIN_OK) return cli_fail("run", st);
    int rc = a->chat ? run_chat(a, t) : run_completion(a, t);
    qilin_tokenizer_free(t);
    return rc;
}

int qilin_cmd_run(int argc, char **argv) {
    run_args a;
    int parsed = parse(argc, argv, &a);
    if (parsed) return usage(parsed > 0 ? stdout : stderr);
    if (a.opt.node_rank > 0) return cli_follow("run", a.model, &a.opt);
    int rc = a.ids ? run_ids(&a) : run_tokenized(&a);
    int out_rc = cli_check_output("run", stdout, "stdout");
    return rc ? rc : out_rc;
}
