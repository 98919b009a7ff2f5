/* serve_internal.h — what the server's files share: the server, its jobs
 * (one per generation request), the engine thread's queue and metrics.
 *
 * Locking: everything mutable in qilin_server and serve_job is guarded by
 * server->mu except the fields marked "engine thread" (touched only there)
 * and the fields marked "immutable" (set before the job is queued). */
#ifndef QILIN_RUNTIME_SERVE_INTERNAL_H
#define QILIN_RUNTIME_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "serve.h"
#include "runtime/text_stream.h"
#include "tool_calls.h"

enum { SERVE_MAX_STOPS = 16, SERVE_MAX_STOP_IDS = 32, SERVE_MAX_CHOICES = 16 };

typedef enum serve_job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE } serve_job_state;

/* One generated token's logprobs (engine.h, qilin_token_logprobs). */
typedef struct serve_logprob {
    int token;
    float logprob;
    int n_top;
    int top_ids[QILIN_MAX_TOP_LOGPROBS];
    float top_logprobs[QILIN_MAX_TOP_LOGPROBS];
} serve_logprob;

typedef struct serve_job {
    /* immutable */
    int32_t *prompt;
    int prompt_len;
    qilin_sampling_params sp;
    int max_new;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    int32_t stop_ids[SERVE_MAX_STOP_IDS];
    int n_stop_ids;
    double t_arrival;
    bool keep_special; /* special tokens stay in the text (tool-call markers are special tokens) */
    bool logprobs;     /* report logprobs: chat logprobs: true, completions logprobs: N */
    int top_logprobs;  /* with logprobs: alternatives per token, 0 .. 20 */
    /* guarded by mu */
    serve_job_state state;
    bool cancel; /* the client went away */
    char *text;  /* visible text so far */
    size_t n_text, cap_text;
    int n_tokens;       /* generated, stop ids included */
    serve_logprob *lps; /* with logprobs: one per generated token, stop ids included */
    int n_lps, cap_lps;
    const char *finish_reason; /* "stop", "length", "abort" once done */
    int error_status;          /* 0, or the HTTP status of a failure */
    char error[512];
    int refs;               /* the HTTP side and, while it holds it, the engine thread */
    struct serve_job *next; /* the queue */
    /* engine thread */
    int64_t engine_id;
    qilin_text_stream stream;
    bool stream_ready, end_after_step;
    double t_first, t_last;
    struct serve_job *next_active;
} serve_job;

/* Prometheus histogram with fixed bucket bounds (seconds). */
enum { SERVE_BUCKETS = 16 };
typedef struct serve_histogram {
    uint64_t counts[SERVE_BUCKETS + 1]; /* the last: +Inf */
    uint64_t n;
    double sum;
} serve_histogram;

typedef struct serve_metrics {
    uint64_t prompt_tokens, generation_tokens;
    uint64_t finished_stop, finished_length, finished_abort;
    serve_histogram ttft, itl, e2e;
} serve_metrics;

struct qilin_server {
    qilin_model *model;
    const qilin_tokenizer *tok;
    const qilin_chat_template *tpl;
    qilin_server_options opt;
    char *host, *api_key, *model_name, *model_path; /* copies */
    int max_ctx, vocab;
    serve_tool_format
        tool_format; /* how this model writes tool calls; NONE: requests with tools are refused */
    qilin_sampling_params
        default_sp; /* generation_config.json's when it samples, else OpenAI's (temperature 1) */
    struct MHD_Daemon *daemon;
    int port;
    pthread_t engine_thread;
    bool engine_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* the engine thread: new job, cancel, stop */
    pthread_cond_t progress; /* HTTP threads: some job has new text or finished */
    serve_job *queue_head, *queue_tail;
    int n_queued, n_jobs;
    int n_responding; /* generation responses not yet fully handed to MHD (streams open) */
    bool stopping;
    bool paused; /* qilin_server_pause */
    double stop_deadline;
    qilin_server_stats stats; /* the engine thread's last snapshot */
    serve_metrics metrics;
    uint64_t next_response_id, seed_counter;
    qilin_engine *engine; /* engine thread */
    serve_job *active;    /* engine thread: jobs added to the engine */
};

double serve_now(void);

/* serve_engine.c */
void *serve_engine_main(void *server);
void serve_engine_options(qilin_server *s, qilin_engine_options *o); /* the token callback */
/* Queues a job (refs: the caller's one becomes two). Returns false, with
 * *http_status 429 or 503 set, when the queue is full or the server stops. */
bool serve_submit(qilin_server *s, serve_job *j, int *http_status, char *why, size_t why_cap);
void serve_job_unref(qilin_server *s, serve_job *j); /* takes mu itself */
void serve_job_free(serve_job *j);
void serve_metrics_text(qilin_server *s, char **out); /* Prometheus text, malloc'd */

/* serve_openai.c: request bodies into jobs, jobs into response bodies. */
typedef struct serve_error {
    int status;       /* HTTP */
    const char *type; /* OpenAI's: invalid_request_error, ... */
    char param[64];   /* the field, "" when none */
    char message[1024];
} serve_error;
json_t *serve_error_json(const serve_error *e);
/* Fills e and returns false. */
bool serve_fail(serve_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef enum serve_kind { SERVE_CHAT, SERVE_COMPLETION } serve_kind;
typedef struct serve_call {
    serve_kind kind;
    bool stream, include_usage;
    bool reasoning; /* chat on a model with a </think> token: <think>...</think> goes to reasoning_content */
    bool opens_think;        /* the rendered prompt leaves the model inside <think> */
    serve_tool_format tools; /* the content is parsed for tool calls; NONE: no tools, or tool_choice none */
    serve_job *job;          /* the choice this call renders: choices[index] */
    int index;               /* the choice's index in the response */
    int n_choices; /* n: each choice its own job over the same prompt (the prefix cache shares it) */
    serve_job *choices[SERVE_MAX_CHOICES]; /* owned (one ref each) */
    char id[48];
    long long created;
} serve_call;
/* Parses and validates a body into jobs ready to submit (one per choice). */
bool serve_parse_generation(qilin_server *s, serve_kind kind, const char *body, size_t n, serve_call *call,
                            serve_error *e);
/* c viewed as choice i (job and index set). */
serve_call serve_choice(const serve_call *c, int i);
/* The whole (non-streamed) response of finished jobs (every choice). */
json_t *serve_response_json(qilin_server *s, const serve_call *c);
/* One streamed chunk: `delta` text (may be NULL: none), `finish` (NULL: not yet), role on the first. */
json_t *serve_chunk_json(qilin_server *s, const serve_call *c, const char *delta, size_t n, bool role,
                         const char *finish);
json_t *serve_usage_chunk_json(qilin_server *s, const serve_call *c); /* usage summed over the choices */
json_t *serve_reasoning_chunk_json(qilin_server *s, const serve_call *c, const char *text, size_t n);
/* The streamed tool calls: one chunk, a delta with every call at its index. */
json_t *serve_tool_calls_chunk_json(qilin_server *s, const serve_call *c, const serve_tool_calls *calls);

/* Under mu: the chunks for the reasoning and content of c's job that grew
 * since pos, appended to the JSON array events. With tools, content that
 * may still become a tool call is held back; once final, the calls go out as
 * one tool_calls delta (or, when they do not parse, the held text as
 * content). Returns the finish reason the last chunk carries once final
 * ("tool_calls" when calls went out and the job stopped by itself). */
typedef struct serve_stream_pos {
    size_t reasoning_sent, content_sent; /* offsets in the job's text */
    int lps_sent;                        /* logprobs entries sent */
    size_t lps_offset;                   /* completions' text_offset of the next entry */
} serve_stream_pos;
const char *serve_stream_events(qilin_server *s, const serve_call *c, serve_stream_pos *pos, bool final,
                                json_t *events);

/* The reasoning / content split of generated text t[0..n): reasoning is
 * t[*r_begin, *r_end) (inside <think>...</think>; a block opened by the
 * prompt when opens_think, else one the text opens after optional
 * whitespace), content t[*c_begin, *c_end) (after </think> and the
 * whitespace after it, or the whole text when there is no block). Unless
 * final, a suffix that may still become a tag is left out of both, so the
 * ranges only grow as text is appended (streaming sends the growth). */
void serve_split_reasoning(const char *t, size_t n, bool opens_think, bool final, size_t *r_begin,
                           size_t *r_end, size_t *c_begin, size_t *c_end);
bool serve_tokenize(qilin_server *s, const char *body, size_t n, json_t **out, serve_error *e);
bool serve_detokenize(qilin_server *s, const char *body, size_t n, json_t **out, serve_error *e);
json_t *serve_models_json(qilin_server *s);

#endif
