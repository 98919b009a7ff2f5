/* cmd_serve.c — `qilin serve`: an OpenAI-compatible HTTP server on a model
 * (runtime/serve/serve.h has the server, runtime/README.md the endpoints).
 *
 *   qilin serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]
 *               [--served-model-name NAME] [--chat-template FILE]
 *               [--max-num-seqs N] [--max-num-batched-tokens N] [--max-model-len N]
 *               [--tensor-parallel-size N | --tp N] [--dtype float32|bfloat16|float16]
 *               [--max-waiting N] [--grace-seconds S] [--tool-call-parser NAME]
 *               [--gpu-memory-utilization F | --kv-cache-tokens N]
 *
 * Engine flags are spelled as vLLM spells them. The paged KV cache holds
 * --kv-cache-tokens positions, or what --gpu-memory-utilization of the
 * GPU leaves (host/forward.h), by default --max-num-seqs × --max-model-len;
 * the engine's sequences share its blocks. SIGINT or
 * SIGTERM: stop accepting, let in-flight requests finish for --grace-seconds,
 * cancel the rest, exit 0. The flags are checked (host, port, ...) before
 * the model loads. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "host/forward.h"
#include "runtime/chat.h"
#include "runtime/serve/serve.h"
#include "runtime/tokenizer.h"

typedef struct serve_args {
    const char *model, *chat_template;
    int max_num_seqs, max_num_batched_tokens, max_model_len;
    double grace;
    qilin_model_options opt;
    qilin_server_options so;
} serve_args;

static int usage(FILE *to) {
    fprintf(to,
            "usage: qilin serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]\n"
            "                   [--served-model-name NAME] [--chat-template FILE]\n"
            "                   [--max-num-seqs N] [--max-num-batched-tokens N] [--max-model-len N]\n"
            "                   [--tensor-parallel-size N | --tp N] [--dtype float32|bfloat16|float16]\n"
            "                   [--max-waiting N] [--grace-seconds S]\n"
            "                   [--gpu-memory-utilization F | --kv-cache-tokens N]\n"
            "                   [--tool-call-parser auto|hermes|deepseek|kimi_k2|llama3|mistral|none]\n"
            "  --max-num-seqs        sequences in one step (default 8)\n"
            "  --gpu-memory-utilization  the paged KV cache takes what the memory plan fits in this fraction\n"
            "                        of the GPU's memory after weights and step buffers (as vLLM)\n"
            "  --kv-cache-tokens     or: the paged KV cache's positions (default: max-num-seqs x max-model-len)\n"
            "  --max-model-len       context per sequence (default min(max_position_embeddings, %d))\n"
            "  --max-waiting         requests queued beyond the running ones before 429 (default 256)\n"
            "  --grace-seconds       at SIGINT/SIGTERM, how long in-flight requests may finish (default 5)\n"
            "  --tool-call-parser    how the model writes tool calls (default auto: from its vocabulary)\n"
            "  endpoints: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
            "             GET /v1/models, /health, /metrics, / (a chat page)\n",
            QILIN_DEFAULT_CTX);
    return to == stdout ? 0 : 2;
}

static int flag(serve_args *a, const char *f, const char *v) {
    static const char *const texts[] = {"--model", "--host", "--api-key", "--served-model-name",
                                        "--chat-template", "--tool-call-parser"};
    const char **dest[] = {&a->model,           &a->so.host,       &a->so.api_key,
                           &a->so.model_name, &a->chat_template, &a->so.tool_parser};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        if (!strcmp(f, texts[i])) return *dest[i] = v, 0;
    static const char *const ints[] = {"--port",          "--max-num-seqs", "--max-num-batched-tokens",
                                       "--max-model-len", "--tp",           "--tensor-parallel-size",
                                       "--max-waiting"};
    int *idest[] = {&a->so.port, &a->max_num_seqs, &a->max_num_batched_tokens, &a->max_model_len,
                    &a->opt.tp,  &a->opt.tp,       &a->so.max_waiting};
    const int lo[] = {0, 1, 1, 1, 1, 1, 1},
              hi[] = {65535, 65536, INT_MAX, INT_MAX, CLI_MAX_GPUS, CLI_MAX_GPUS, 1 << 20};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (!strcmp(f, ints[i])) return cli_int("serve", f, v, lo[i], hi[i], idest[i]);
    if (!strcmp(f, "--grace-seconds")) return cli_double("serve", f, v, 0, 86400, &a->grace);
    if (!strcmp(f, "--gpu-memory-utilization"))
        return cli_double("serve", f, v, 0.01, 1, &a->opt.gpu_memory_utilization);
    if (!strcmp(f, "--kv-cache-tokens")) {
        uint64_t n = 0;
        if (cli_u64("serve", f, v, &n)) return -1;
        if (n < 1 || n > ((uint64_t)1 << 40))
            return fprintf(stderr, "qilin serve: --kv-cache-tokens %s: must be from 1 to 2^40\n", v), -1;
        a->opt.kv_cache_tokens = (int64_t)n;
        return 0;
    }
    if (!strcmp(f, "--dtype")) {
        if (!cli_dtype(v, &a->opt.dtype)) return 0;
        return fprintf(stderr, "qilin serve: --dtype %s: use float32, bfloat16 or float16\n", v), -1;
    }
    return cli_unknown("serve", f);
}

/* 0 parsed, 1 --help, -1 bad arguments (after a message). */
static int parse(int argc, char **argv, serve_args *a) {
    memset(a, 0, sizeof *a);
    qilin_model_options_default(&a->opt);
    a->so.port = 8000, a->grace = 5;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) return 1;
        if (argv[i][0] != '-') return cli_unknown("serve", argv[i]);
        if (i + 1 == argc) return fprintf(stderr, "qilin serve: %s needs a value\n", argv[i]), -1;
        if (flag(a, argv[i], argv[i + 1])) return -1;
        i++;
    }
    if (!a->model) return fprintf(stderr, "qilin serve: --model DIR is required\n"), -1;
    if (!a->so.model_name) a->so.model_name = a->model;
    a->so.model_path = a->model, a->so.grace_seconds = a->grace;
    if (a->max_num_seqs) a->opt.max_seqs = a->max_num_seqs;
    if (a->max_model_len) a->opt.max_ctx = a->max_model_len;
    if (a->max_num_batched_tokens) a->opt.max_batch_tokens = a->max_num_batched_tokens;
    return 0;
}

/* The template: --chat-template FILE, else the model's own; none is not an
 * error (chat requests are then refused with the reason). */
static qilin_chat_template *load_template(const serve_args *a, const qilin_tokenizer *t, qilin_status *st) {
    qilin_chat_template *tpl = NULL;
    *st = QILIN_OK;
    if (a->chat_template)
        *st = qilin_chat_template_load(NULL, a->chat_template, &tpl);
    else if (qilin_chat_template_load(a->model, NULL, &tpl) != QILIN_OK && qilin_tokenizer_chat_template(t))
        *st = qilin_chat_template_parse(qilin_tokenizer_chat_template(t), a->model, &tpl);
    if (!tpl && *st == QILIN_OK)
        fprintf(stderr, "qilin serve: no chat template: /v1/chat/completions is refused\n");
    return tpl;
}

/* Blocks until SIGINT or SIGTERM (blocked in every thread, so they arrive here). */
static int wait_for_signal(const sigset_t *set) {
    int sig = 0;
    sigwait(set, &sig);
    return sig;
}

int qilin_cmd_serve(int argc, char **argv) {
    serve_args a;
    int parsed = parse(argc, argv, &a);
    if (parsed) return usage(parsed > 0 ? stdout : stderr);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT), sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: they inherit the mask */
    qilin_tokenizer *t = NULL;
    qilin_chat_template *tpl = NULL;
    qilin_model *m = NULL;
    qilin_server *s = NULL;
    qilin_status st = qilin_server_check_options(&a.so); /* before the (slow) load */
    if (st == QILIN_OK) st = qilin_tokenizer_load(a.model, &t);
    if (st == QILIN_OK) tpl = load_template(&a, t, &st);
    if (st == QILIN_OK) st = qilin_model_load(a.model, &a.opt, &m);
    if (st == QILIN_OK) cli_report_gpus("serve", m);
    if (st == QILIN_OK) st = qilin_server_start(m, t, tpl, &a.so, &s);
    int rc = 0;
    if (st != QILIN_OK) {
        rc = cli_fail("serve", st);
    } else {
        const qilin_model_options *mo = qilin_model_get_options(m);
        fprintf(stderr,
                "qilin serve: %s on http://%s:%d (up to %d sequences of %d tokens; KV cache %lld positions in "
                "blocks of %d); Ctrl-C stops\n",
                a.so.model_name, a.so.host ? a.so.host : "127.0.0.1", qilin_server_port(s), mo->max_seqs,
                mo->max_ctx, (long long)mo->kv_cache_tokens, mo->kv_block_size);
        int sig = wait_for_signal(&set);
        fprintf(stderr, "qilin serve: %s: stopping (in-flight requests get %g s)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", a.grace);
        qilin_server_stop(s);
    }
    qilin_model_free(m);
    qilin_chat_template_free(tpl);
    qilin_tokenizer_free(t);
    return rc;
}
