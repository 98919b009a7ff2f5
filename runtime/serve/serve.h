/* serve.h — `qilin serve`: an OpenAI-compatible HTTP server over the serving
 * engine (runtime/engine.h), on libmicrohttpd.
 *
 * Threads: one engine thread owns the engine (the only one that calls
 * qilin_engine_add/step/cancel); HTTP connections run one thread each
 * (libmicrohttpd's thread-per-connection mode). They meet in a job queue
 * under one mutex: an HTTP thread validates and tokenizes a request, queues a
 * job and waits on a condition variable; the engine thread adds queued jobs
 * to the engine, steps it, detokenizes each new token into its job (stop
 * strings, text_stream.h) and wakes the waiters. A waiter whose client went
 * away marks its job cancelled; the engine thread cancels it in the engine
 * before the next step, which frees its KV blocks.
 *
 * Endpoints (runtime/README.md lists their shapes): POST /v1/chat/completions,
 * POST /v1/completions, GET /v1/models, GET /health, POST /tokenize,
 * POST /detokenize, GET /metrics. Errors are OpenAI error objects naming the
 * field at fault. */
#ifndef QILIN_RUNTIME_SERVE_H
#define QILIN_RUNTIME_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "cuda/status.h"
#include "host/forward.h"
#include "runtime/chat.h"
#include "runtime/engine.h"
#include "runtime/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_server qilin_server;

typedef struct qilin_server_options {
    const char *host;            /* address to listen on; NULL: 127.0.0.1 */
    int port;                    /* 0: any free port (qilin_server_port says which) */
    const char *api_key;         /* NULL: no key; else every /v1/ path needs "Authorization: Bearer KEY" */
    const char *model_name;      /* the name clients send as "model" (required) */
    const char *model_path;      /* shown by /v1/models as "root"; may be NULL */
    int max_waiting;             /* requests queued beyond those running before 429; 0: 256 */
    size_t max_body_bytes;       /* request bodies over this are 413; 0: 4 MiB */
    double grace_seconds;        /* at stop: in-flight requests get this long to finish, then are cancelled */
    const char *tool_parser;     /* how generated tool calls read: hermes, deepseek, kimi_k2, llama3,
                                    mistral, none; NULL or "auto": from the vocabulary's marker tokens */
    qilin_engine_options engine; /* on_token and user are the server's */
} qilin_server_options;

/* Starts listening and the engine thread. Borrows m, t and tpl (tpl may be
 * NULL: chat completions are then refused with 400 naming the missing
 * template) until qilin_server_stop returns. */
qilin_status qilin_server_start(qilin_model *m, const qilin_tokenizer *t, const qilin_chat_template *tpl,
                                const qilin_server_options *o, qilin_server **out);
int qilin_server_port(const qilin_server *s); /* the port it listens on */
/* The checks qilin_server_start makes on o before it touches the model
 * (host, port, served model name, tool parser): `qilin serve` runs them
 * before loading the model, so a typo costs no load. */
qilin_status qilin_server_check_options(const qilin_server_options *o);
/* Stops accepting, lets in-flight requests finish for grace_seconds, cancels
 * the rest, joins every thread and frees the server. NULL does nothing. */
void qilin_server_stop(qilin_server *s);

/* While paused the engine thread takes, refuses and cancels requests but
 * runs no step: tests hold requests in flight whatever the device's speed. */
void qilin_server_pause(qilin_server *s, bool paused);

/* What the engine thread last saw after its last step (for tests and
 * /metrics); jobs and queued are current. */
typedef struct qilin_server_stats {
    int running, waiting; /* in the engine */
    int queued;           /* accepted, not yet handed to the engine */
    int jobs;             /* accepted and not yet finished, in total */
    qilin_engine_stats engine;
} qilin_server_stats;
void qilin_server_get_stats(qilin_server *s, qilin_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_RUNTIME_SERVE_H */
