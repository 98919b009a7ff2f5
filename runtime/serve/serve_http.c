/* serve_http.c — the HTTP side of `qilin serve` on libmicrohttpd: routes,
 * bodies (bounded), API keys, OpenAI errors, and responses, streamed as
 * Server-Sent Events exactly as OpenAI streams them:
 *
 *   data: {chunk}\n\n       one per delta; the first (chat) carries the role
 *   data: {chunk}\n\n       the last choice chunk carries finish_reason
 *   data: {usage chunk}\n\n with stream_options.include_usage: choices [] + usage
 *   data: [DONE]\n\n
 *
 * Each connection has its own thread (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler may block waiting for its job. Waits are timed so that a client
 * that went away (its socket reports a hang-up) is noticed even while its job
 * produces nothing; its job is then cancelled in the engine. */
#define _GNU_SOURCE /* POLLRDHUP: the peer closed its end */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "serve_internal.h"
#include "serve_page.h"

typedef struct http_ctx {
    char *body;
    size_t n, cap, discarded;
    bool too_large;
} http_ctx;

/* ---- responses ---- */

static enum MHD_Result send_buffer(struct MHD_Connection *c, unsigned status, char *text, size_t n,
                                   const char *content_type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) return free(text), MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text) return MHD_NO;
    return send_buffer(c, status, text, strlen(text), "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *c, const serve_error *e) {
    return send_json(c, (unsigned)e->status, serve_error_json(e));
}

__attribute__((format(printf, 4, 5))) static enum MHD_Result fail(struct MHD_Connection *c, int status,
                                                                  const char *param, const char *fmt, ...) {
    serve_error e;
    serve_fail(&e, status, param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return send_error(c, &e);
}

/* ---- waiting on a job ---- */

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The peer closed its end (or the socket failed). */
static bool hung_up(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void timed_wait(qilin_server *s, double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long ns = t.tv_nsec + (long long)(seconds * 1e9);
    t.tv_sec += ns / 1000000000, t.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&s->progress, &s->mu, &t);
}

/* Under mu: marks the job cancelled for the engine thread. */
static void cancel_job(qilin_server *s, serve_job *j) {
    if (j->state == JOB_DONE) return;
    j->cancel = true;
    pthread_cond_signal(&s->wake);
}

/* Under mu: waits until ready(j) or the client hangs up (then cancels; false). */
static bool wait_job(qilin_server *s, serve_job *j, int fd, bool (*ready)(const serve_job *, size_t),
                     size_t arg) {
    while (!ready(j, arg)) {
        timed_wait(s, 0.05);
        if (!ready(j, arg) && hung_up(fd)) {
            cancel_job(s, j);
            return false;
        }
    }
    return true;
}

static bool is_done(const serve_job *j, size_t unused) { return j->state == JOB_DONE; }
static bool is_started(const serve_job *j, size_t unused) { return j->state != JOB_QUEUED; }

/* ---- streamed responses ---- */

typedef struct sse_stream {
    qilin_server *s;
    serve_call call; /* holds a job reference */
    int fd;
    char *out; /* formatted, not yet handed to MHD */
    size_t out_n, out_off;
    bool started; /* the first read happened */
    bool finished;
    /* per choice */
    size_t text_sent[SERVE_MAX_CHOICES];     /* bytes of the job's text looked at */
    serve_stream_pos pos[SERVE_MAX_CHOICES]; /* what of the text went out as reasoning, as content */
    bool role_sent[SERVE_MAX_CHOICES], done_sent[SERVE_MAX_CHOICES];
} sse_stream;

static void put_event(sse_stream *st, json_t *v) {
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text) return;
    size_t len = strlen(text), need = st->out_n + len + sizeof "data: \n\n";
    char *bigger = realloc(st->out, need);
    if (bigger) {
        st->out = bigger;
        st->out_n += (size_t)sprintf(st->out + st->out_n, "data: %s\n\n", text);
    }
    free(text);
}

/* Under mu: the events choice i's state allows now; false once it failed. */
static bool choice_events(sse_stream *st, int i) {
    serve_call v = serve_choice(&st->call, i);
    serve_job *j = v.job;
    if (!st->role_sent[i] && v.kind == SERVE_CHAT)
        put_event(st, serve_chunk_json(st->s, &v, NULL, 0, true, NULL));
    st->role_sent[i] = true;
    if (st->done_sent[i]) return true;
    const char *finish = j->finish_reason;
    if (j->n_text > st->text_sent[i] || j->state == JOB_DONE) {
        json_t *events = json_array();
        finish = serve_stream_events(st->s, &v, &st->pos[i], j->state == JOB_DONE, events);
        size_t k;
        json_t *ev;
        json_array_foreach(events, k, ev) put_event(st, json_incref(ev));
        json_decref(events);
    }
    st->text_sent[i] = j->n_text;
    if (j->state != JOB_DONE) return true;
    st->done_sent[i] = true;
    if (j->error_status) {
        serve_error e;
        serve_fail(&e, j->error_status, NULL, "%s", j->error);
        put_event(st, serve_error_json(&e));
        return false;
    }
    put_event(st, serve_chunk_json(st->s, &v, NULL, 0, false, finish));
    return true;
}

static void cancel_choices(qilin_server *s, const serve_call *c) {
    for (int i = 0; i < c->n_choices; i++) cancel_job(s, c->choices[i]);
}

/* Under mu: the events every choice's state allows now; the usage and
 * [DONE] once all are done (or one failed: the others are cancelled). */
static void next_events(sse_stream *st) {
    st->out_n = st->out_off = 0;
    bool all_done = true, failed = false;
    for (int i = 0; i < st->call.n_choices && !failed; i++) {
        failed = !choice_events(st, i);
        all_done &= st->done_sent[i];
    }
    if (failed) cancel_choices(st->s, &st->call);
    if (!all_done && !failed) return;
    if (!failed && st->call.include_usage) put_event(st, serve_usage_chunk_json(st->s, &st->call));
    char *bigger = realloc(st->out, st->out_n + 16);
    if (bigger) st->out = bigger, st->out_n += (size_t)sprintf(st->out + st->out_n, "data: [DONE]\n\n");
    st->finished = true;
}

/* Under mu: some choice has text or an end not yet sent. */
static bool stream_has_news(const sse_stream *st) {
    for (int i = 0; i < st->call.n_choices; i++) {
        const serve_job *j = st->call.choices[i];
        if (!st->done_sent[i] && (j->state == JOB_DONE || j->n_text > st->text_sent[i])) return true;
    }
    return false;
}

/* Under mu: waits for news or the client's hang-up (then cancels; false). */
static bool wait_news(sse_stream *st) {
    while (!stream_has_news(st)) {
        timed_wait(st->s, 0.05);
        if (!stream_has_news(st) && hung_up(st->fd)) {
            cancel_choices(st->s, &st->call);
            return false;
        }
    }
    return true;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    sse_stream *st = cls;
    qilin_server *s = st->s;
    while (st->out_off == st->out_n) { /* never 0 bytes: MHD would call again at once */
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&s->mu);
        bool alive = !st->started || wait_news(st);
        st->started = true;
        if (alive) next_events(st);
        pthread_mutex_unlock(&s->mu);
        if (!alive) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out_n - st->out_off < max ? st->out_n - st->out_off : max;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the client went away): a job still going is cancelled. */
static void sse_free(void *cls) {
    sse_stream *st = cls;
    pthread_mutex_lock(&st->s->mu);
    cancel_choices(st->s, &st->call);
    st->s->n_responding--;
    pthread_cond_broadcast(&st->s->progress);
    pthread_mutex_unlock(&st->s->mu);
    for (int i = 0; i < st->call.n_choices; i++) serve_job_unref(st->s, st->call.choices[i]);
    free(st->out);
    free(st);
}

static enum MHD_Result send_stream(qilin_server *s, struct MHD_Connection *c, serve_call *call, int fd) {
    sse_stream *st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    st->s = s, st->call = *call, st->fd = fd;
    call->n_choices = 0; /* the stream holds the references now */
    pthread_mutex_lock(&s->mu);
    s->n_responding++;
    pthread_mutex_unlock(&s->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, st, sse_free);
    if (!r) return sse_free(st), MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- generation endpoints ---- */

static void unref_choices(qilin_server *s, serve_call *c) {
    for (int i = 0; i < c->n_choices; i++) serve_job_unref(s, c->choices[i]);
    c->n_choices = 0;
}

/* Under mu: waits until ready(choice) for every choice; the client's
 * hang-up cancels them all (false). */
static bool wait_choices(qilin_server *s, serve_call *c, int fd, bool (*ready)(const serve_job *, size_t)) {
    for (int i = 0; i < c->n_choices; i++)
        if (!wait_job(s, c->choices[i], fd, ready, 0)) return cancel_choices(s, c), false;
    return true;
}

static enum MHD_Result generate(qilin_server *s, struct MHD_Connection *c, serve_kind kind,
                                const http_ctx *x) {
    serve_call call;
    serve_error e;
    if (!serve_parse_generation(s, kind, x->body ? x->body : "", x->n, &call, &e)) return send_error(c, &e);
    int status = 0;
    char why[256];
    for (int i = 0; i < call.n_choices; i++) {
        if (serve_submit(s, call.choices[i], &status, why, sizeof why)) continue;
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < i; k++) cancel_job(s, call.choices[k]);
        pthread_mutex_unlock(&s->mu);
        unref_choices(s, &call);
        serve_fail(&e, status, NULL, "%s", why);
        return send_error(c, &e);
    }
    int fd = connection_fd(c);
    pthread_mutex_lock(&s->mu);
    /* a job refused by the engine answers with its status, streamed or not */
    bool alive = wait_choices(s, &call, fd, call.stream ? is_started : is_done);
    const serve_job *failed = NULL;
    for (int i = 0; alive && i < call.n_choices && !failed; i++)
        if (call.choices[i]->state == JOB_DONE && call.choices[i]->error_status) failed = call.choices[i];
    json_t *body = NULL;
    if (failed) {
        serve_fail(&e, failed->error_status, failed->error_status == 400 ? "max_tokens" : NULL, "%s",
                   failed->error);
        cancel_choices(s, &call);
    } else if (alive && !call.stream) {
        body = serve_response_json(s, &call);
    }
    pthread_mutex_unlock(&s->mu);
    if (!alive) return unref_choices(s, &call), MHD_NO;
    if (failed) return unref_choices(s, &call), send_error(c, &e);
    if (!call.stream) return unref_choices(s, &call), send_json(c, 200, body);
    return send_stream(s, c, &call, fd);
}

/* ---- routing ---- */

static bool authorized(qilin_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    const char *given = h + 7;
    size_t n = strlen(s->api_key);
    unsigned diff = strlen(given) != n;
    for (size_t i = 0; i < n && given[i]; i++) diff |= (unsigned)(given[i] ^ s->api_key[i]);
    return diff == 0;
}

static enum MHD_Result route(qilin_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             const http_ctx *x) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strncmp(url, "/v1/", 4) && !authorized(s, c))
        return fail(c, 401, NULL, "missing or wrong API key (send \"Authorization: Bearer KEY\")");
    serve_error e;
    json_t *out = NULL;
    struct {
        const char *path;
        bool post;
    } const routes[] = {
        {"/v1/chat/completions", true}, {"/v1/completions", true}, {"/tokenize", true}, {"/detokenize", true},
        {"/v1/models", false},          {"/health", false},        {"/metrics", false}, {"/", false}};
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (strcmp(url, routes[i].path)) continue;
        if (routes[i].post ? !post : !get)
            return fail(c, 405, NULL, "%s: use %s", url, routes[i].post ? "POST" : "GET");
        switch (i) {
        case 0:
            return generate(s, c, SERVE_CHAT, x);
        case 1:
            return generate(s, c, SERVE_COMPLETION, x);
        case 2:
            return serve_tokenize(s, x->body ? x->body : "", x->n, &out, &e) ? send_json(c, 200, out)
                                                                             : send_error(c, &e);
        case 3:
            return serve_detokenize(s, x->body ? x->body : "", x->n, &out, &e) ? send_json(c, 200, out)
                                                                               : send_error(c, &e);
        case 4:
            return send_json(c, 200, serve_models_json(s));
        case 5:
            return send_buffer(c, 200, strdup(""), 0, "text/plain");
        case 6: {
            char *text = NULL;
            serve_metrics_text(s, &text);
            return text ? send_buffer(c, 200, text, strlen(text), "text/plain; version=0.0.4") : MHD_NO;
        }
        default:
            return send_buffer(c, 200, strdup(serve_page_html), strlen(serve_page_html),
                               "text/html; charset=utf-8");
        }
    }
    return fail(c, 404, NULL, "no route %s %.200s", method, url);
}

/* Collects the body (at most max_body_bytes; beyond, the rest is read and
 * dropped, up to 64 times the limit, then the connection is closed) and
 * routes once it is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size,
                                  void **con_cls) {
    qilin_server *s = cls;
    http_ctx *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        *con_cls = x;
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > s->opt.max_body_bytes)
            return fail(c, 413, NULL, "the body has %s bytes; the limit is %zu", length,
                        s->opt.max_body_bytes);
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (x->too_large || x->n + n > s->opt.max_body_bytes) {
            x->too_large = true;
            x->discarded += n;
            return x->discarded > 64 * s->opt.max_body_bytes ? MHD_NO : MHD_YES;
        }
        if (x->n + n + 1 > x->cap) {
            size_t cap = (x->n + n + 1) * 2;
            char *bigger = realloc(x->body, cap);
            if (!bigger) return MHD_NO;
            x->body = bigger, x->cap = cap;
        }
        memcpy(x->body + x->n, upload, n);
        x->n += n;
        x->body[x->n] = '\0';
        return MHD_YES;
    }
    if (x->too_large)
        return fail(c, 413, NULL, "the body is over the limit of %zu bytes", s->opt.max_body_bytes);
    return route(s, c, url, method, x);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_ctx *x = *con_cls;
    if (!x) return;
    free(x->body);
    free(x);
    *con_cls = NULL;
}

/* ---- the server ---- */

static bool printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || *s == 0x7f) return false;
    return true;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static qilin_status start_http(qilin_server *s) {
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->opt.port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)s->opt.port)};
    struct sockaddr *addr = (struct sockaddr *)&a4;
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL;
    if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) == 1)
        addr = (struct sockaddr *)&a6, flags |= MHD_USE_IPv6;
    else if (inet_pton(AF_INET, s->host, &a4.sin_addr) != 1) /* qilin_server_check_options said so */
        return qilin_error(QILIN_ERR_INTERNAL, "--host %s: not a numeric IPv4 or IPv6 address", s->host);
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->opt.port, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)600, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!s->daemon)
        return qilin_error(QILIN_ERR_IO,
                           "cannot listen on %s port %d (in use, or not an address of this machine?)",
                           s->host, s->opt.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : s->opt.port;
    return QILIN_OK;
}

/* Request defaults: generation_config.json's sampling when it says
 * do_sample (as `qilin run` and vLLM take it), else OpenAI's temperature 1;
 * a file with values the sampler refuses stops the server from starting. */
static qilin_status default_sampling(qilin_server *s, const qilin_model_desc *d) {
    s->default_sp = (qilin_sampling_params){
        .temperature = 1, .top_k = 0, .top_p = 1, .min_p = 0, .repetition_penalty = 1};
    if (!d->has_gen || !d->gen.do_sample) return QILIN_OK;
    const hf_generation_config *g = &d->gen;
    if (!(fabs(g->temperature) <= 1e6 && fabs(g->top_p) <= 1 && fabs(g->min_p) <= 1 &&
          fabs(g->repetition_penalty) <= 1e6) ||
        g->top_k < 0 || g->top_k > INT_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "generation_config.json: temperature %g, top_p %g, top_k %lld, "
                           "min_p %g, repetition_penalty %g: out of the sampler's range",
                           g->temperature, g->top_p, (long long)g->top_k, g->min_p, g->repetition_penalty);
    s->default_sp = (qilin_sampling_params){.temperature = (float)g->temperature,
                                            .top_k = (int)g->top_k,
                                            .top_p = (float)g->top_p,
                                            .min_p = (float)g->min_p,
                                            .repetition_penalty = (float)g->repetition_penalty};
    if (qilin_sampling_params_check(&s->default_sp, NULL) != QILIN_OK)
        return qilin_error_context(QILIN_ERR_INVALID_ARGUMENT, "generation_config.json");
    return QILIN_OK;
}

qilin_status qilin_server_check_options(const qilin_server_options *o) {
    if (!o->model_name || !*o->model_name || strlen(o->model_name) > 200 || !printable(o->model_name))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "served model name: 1 to 200 printable characters, no quotes");
    if (o->port < 0 || o->port > 65535)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "port %d: must be from 0 to 65535", o->port);
    unsigned char addr[sizeof(struct in6_addr)];
    const char *host = o->host ? o->host : "127.0.0.1";
    if (inet_pton(AF_INET6, host, addr) != 1 && inet_pton(AF_INET, host, addr) != 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "--host %s: not a numeric IPv4 or IPv6 address", host);
    serve_tool_format f;
    if (o->tool_parser && strcmp(o->tool_parser, "auto") && !serve_tool_format_from_name(o->tool_parser, &f))
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "--tool-call-parser %s: use auto, hermes, deepseek, kimi_k2, llama3, mistral or none",
            o->tool_parser);
    return QILIN_OK;
}

qilin_status qilin_server_start(qilin_model *m, const qilin_tokenizer *t, const qilin_chat_template *tpl,
                                const qilin_server_options *o, qilin_server **out) {
    *out = NULL;
    qilin_status checked = qilin_server_check_options(o);
    if (checked != QILIN_OK) return checked;
    qilin_server *s = calloc(1, sizeof *s);
    if (!s) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "server");
    s->model = m, s->tok = t, s->tpl = tpl, s->opt = *o;
    s->host = strdup(o->host ? o->host : "127.0.0.1"), s->api_key = dup_or_null(o->api_key);
    s->model_name = strdup(o->model_name), s->model_path = dup_or_null(o->model_path);
    if (!s->opt.max_waiting) s->opt.max_waiting = 256;
    if (!s->opt.max_body_bytes) s->opt.max_body_bytes = 4u << 20;
    s->max_ctx = qilin_model_get_options(m)->max_ctx;
    s->vocab = qilin_model_get_desc(m)->vocab;
    s->tool_format = serve_tool_format_detect(t);
    if (o->tool_parser && strcmp(o->tool_parser, "auto"))
        serve_tool_format_from_name(o->tool_parser, &s->tool_format);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->progress, NULL);
    qilin_status st = default_sampling(s, qilin_model_get_desc(m));
    if (st != QILIN_OK) return qilin_server_stop(s), st;
    qilin_engine_options eo = o->engine;
    serve_engine_options(s, &eo);
    st = qilin_engine_create(m, &eo, &s->engine);
    /* the engine's running limit, for the 429 bound */
    if (!s->opt.engine.max_num_seqs) s->opt.engine.max_num_seqs = qilin_model_get_options(m)->max_seqs;
    if (st == QILIN_OK) st = start_http(s);
    if (st == QILIN_OK && pthread_create(&s->engine_thread, NULL, serve_engine_main, s) != 0)
        st = qilin_error(QILIN_ERR_INTERNAL, "cannot start the engine thread");
    else if (st == QILIN_OK)
        s->engine_started = true;
    if (st != QILIN_OK) return qilin_server_stop(s), st;
    *out = s;
    return QILIN_OK;
}

int qilin_server_port(const qilin_server *s) { return s->port; }

void qilin_server_stop(qilin_server *s) {
    if (!s) return;
    if (s->daemon) MHD_quiesce_daemon(s->daemon); /* no new connections */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->stop_deadline = serve_now() + s->opt.grace_seconds;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->engine_started) pthread_join(s->engine_thread, NULL);
    /* every job is done now: open streams get a moment to send their last events */
    pthread_mutex_lock(&s->mu);
    for (double until = serve_now() + 2; s->n_responding > 0 && serve_now() < until;) timed_wait(s, 0.05);
    pthread_mutex_unlock(&s->mu);
    if (s->daemon) MHD_stop_daemon(s->daemon); /* waits for the connection threads */
    qilin_engine_free(s->engine);
    pthread_cond_destroy(&s->progress);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s->host), free(s->api_key), free(s->model_name), free(s->model_path);
    free(s);
}
