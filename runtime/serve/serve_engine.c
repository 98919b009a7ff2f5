/* serve_engine.c — the engine thread: takes queued jobs into the engine,
 * steps it, turns each new token into text for its job, cancels the jobs
 * whose client went away or whose stop string appeared, and keeps the
 * metrics /metrics reports. It is the only thread that calls the engine.
 *
 * A job is shared by its HTTP thread and (from the moment it is queued until
 * it is done) the engine thread: a reference count under the server mutex,
 * so either side may let go first. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/device.h"
#include "serve_internal.h"

double serve_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void serve_job_free(serve_job *j) {
    if (!j) return;
    if (j->stream_ready) qilin_text_stream_free(&j->stream);
    for (int i = 0; i < j->n_stops; i++) free(j->stops[i]);
    free(j->prompt);
    free(j->text);
    free(j->lps);
    free(j);
}

void serve_job_unref(qilin_server *s, serve_job *j) {
    pthread_mutex_lock(&s->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) serve_job_free(j);
}

bool serve_submit(qilin_server *s, serve_job *j, int *http_status, char *why, size_t why_cap) {
    pthread_mutex_lock(&s->mu);
    int limit = s->opt.engine.max_num_seqs + s->opt.max_waiting;
    bool ok = false;
    if (s->stopping) {
        *http_status = 503, snprintf(why, why_cap, "the server is shutting down");
    } else if (s->n_jobs >= limit) {
        *http_status = 429;
        snprintf(why, why_cap,
                 "the server has %d requests in flight (%d running + %d waiting at most): try again later",
                 s->n_jobs, s->opt.engine.max_num_seqs, s->opt.max_waiting);
    } else {
        j->refs++, j->state = JOB_QUEUED, j->next = NULL;
        if (s->queue_tail)
            s->queue_tail->next = j;
        else
            s->queue_head = j;
        s->queue_tail = j;
        s->n_queued++, s->n_jobs++;
        pthread_cond_signal(&s->wake);
        ok = true;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* ---- metrics ---- */

static const double bucket_bounds[SERVE_BUCKETS] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                                    0.25,  0.5,   1.0,  2.5,  5.0,  10.0, 20.0, 60.0};

static void observe(serve_histogram *h, double seconds) {
    int b = 0;
    while (b < SERVE_BUCKETS && seconds > bucket_bounds[b]) b++;
    h->counts[b]++, h->n++, h->sum += seconds;
}

/* Under mu: a job is over (finished, cancelled or failed). */
static void finish_job(qilin_server *s, serve_job *j, const char *reason) {
    double now = serve_now();
    j->state = JOB_DONE;
    j->finish_reason = reason;
    s->n_jobs--;
    serve_metrics *m = &s->metrics;
    if (!strcmp(reason, "stop"))
        m->finished_stop++;
    else if (!strcmp(reason, "length"))
        m->finished_length++;
    else
        m->finished_abort++;
    if (j->error_status == 0 && strcmp(reason, "abort")) observe(&m->e2e, now - j->t_arrival);
    pthread_cond_broadcast(&s->progress);
}

/* ---- the token callback (engine thread, inside qilin_engine_step) ---- */

static serve_job *find_active(qilin_server *s, int64_t id) {
    for (serve_job *j = s->active; j; j = j->next_active)
        if (j->engine_id == id) return j;
    return NULL;
}

static void append_text(void *user, const char *text, size_t n) {
    serve_job *j = user;
    if (j->n_text + n + 1 > j->cap_text) {
        size_t cap = (j->n_text + n + 1) * 2;
        char *bigger = realloc(j->text, cap);
        if (!bigger) return; /* the text is cut short; the request still ends */
        j->text = bigger, j->cap_text = cap;
    }
    memcpy(j->text + j->n_text, text, n);
    j->n_text += n;
    j->text[j->n_text] = '\0';
}

static void on_token(void *user, int64_t id, int token, qilin_engine_finish finished) {
    qilin_server *s = user;
    serve_job *j = find_active(s, id);
    if (!j) return;
    double now = serve_now();
    pthread_mutex_lock(&s->mu);
    if (j->n_tokens++ == 0) {
        j->t_first = now;
        observe(&s->metrics.ttft, now - j->t_arrival);
    } else {
        observe(&s->metrics.itl, now - j->t_last);
    }
    j->t_last = now;
    s->metrics.generation_tokens++;
    bool more = true;
    qilin_status st = j->end_after_step ? QILIN_OK : qilin_text_stream_push(&j->stream, token, &more);
    if (st != QILIN_OK) {
        j->error_status = 500, snprintf(j->error, sizeof j->error, "detokenizing: %s", qilin_last_error());
        j->end_after_step = true;
    } else if (!j->end_after_step && (!more || finished != QILIN_ENGINE_RUNNING)) {
        qilin_text_stream_finish(&j->stream);
        j->end_after_step = true;
        /* the stream ended on a stop id or string: "stop"; else the engine's limit */
        j->finish_reason =
            j->stream.finish != QILIN_FINISH_NONE || finished == QILIN_ENGINE_STOPPED ? "stop" : "length";
    }
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
}

static void on_logprobs(void *user, int64_t id, const qilin_token_logprobs *lp) {
    qilin_server *s = user;
    serve_job *j = find_active(s, id);
    if (!j) return;
    pthread_mutex_lock(&s->mu);
    if (j->n_lps == j->cap_lps) {
        int cap = j->cap_lps ? 2 * j->cap_lps : 16;
        serve_logprob *bigger = realloc(j->lps, (size_t)cap * sizeof *bigger);
        if (bigger) j->lps = bigger, j->cap_lps = cap;
    }
    if (j->n_lps < j->cap_lps) { /* out of memory: the entry is missing, the text is not */
        serve_logprob *e = &j->lps[j->n_lps++];
        e->token = lp->token, e->logprob = lp->logprob, e->n_top = lp->n_top;
        memcpy(e->top_ids, lp->top_ids, (size_t)lp->n_top * sizeof *lp->top_ids);
        memcpy(e->top_logprobs, lp->top_logprobs, (size_t)lp->n_top * sizeof *lp->top_logprobs);
    }
    pthread_mutex_unlock(&s->mu);
}

void serve_engine_options(qilin_server *s, qilin_engine_options *o) {
    o->on_token = on_token, o->on_logprobs = on_logprobs, o->user = s;
}

/* ---- the loop ---- */

static void add_job(qilin_server *s, serve_job *j) {
    qilin_text_stream_init(&j->stream, s->tok, j->keep_special ? 0 : QILIN_DECODE_SKIP_SPECIAL, j->stop_ids,
                           (size_t)j->n_stop_ids, (const char *const *)j->stops, (size_t)j->n_stops,
                           append_text, j);
    qilin_text_stream_set_model_vocab(&j->stream, s->vocab);
    j->stream_ready = true;
    qilin_status st = qilin_text_stream_prompt(&j->stream, j->prompt, (size_t)j->prompt_len, false);
    qilin_engine_request r = {.prompt = j->prompt,
                              .prompt_len = j->prompt_len,
                              .params = j->sp,
                              .max_new_tokens = j->max_new,
                              .stop_ids = j->stop_ids,
                              .n_stop_ids = j->n_stop_ids,
                              .logprobs = j->logprobs,
                              .top_logprobs = j->top_logprobs};
    if (st == QILIN_OK) st = qilin_engine_add(s->engine, &r, &j->engine_id);
    pthread_mutex_lock(&s->mu);
    s->n_queued--;
    if (st != QILIN_OK) {
        j->error_status = st == QILIN_ERR_INVALID_ARGUMENT ? 400 : 500;
        snprintf(j->error, sizeof j->error, "%s", qilin_last_error());
        finish_job(s, j, "abort");
        pthread_mutex_unlock(&s->mu);
        serve_job_unref(s, j);
        return;
    }
    j->state = JOB_RUNNING;
    s->metrics.prompt_tokens += (uint64_t)j->prompt_len;
    pthread_mutex_unlock(&s->mu);
    j->next_active = s->active, s->active = j;
}

/* Jobs that ended in the last step, were cancelled by their client, or
 * (cancel_all) everything: out of the engine and the active list. */
static void retire_jobs(qilin_server *s, bool cancel_all, const char *failure) {
    for (serve_job **p = &s->active; *p;) {
        serve_job *j = *p;
        pthread_mutex_lock(&s->mu);
        bool cancel = cancel_all || j->cancel || failure;
        bool done = j->end_after_step || cancel;
        if (done) {
            if (failure && !j->error_status)
                j->error_status = 500, snprintf(j->error, sizeof j->error, "%s", failure);
            finish_job(s, j, j->end_after_step && j->finish_reason ? j->finish_reason : "abort");
        }
        pthread_mutex_unlock(&s->mu);
        if (!done) {
            p = &j->next_active;
            continue;
        }
        qilin_engine_cancel(s->engine, j->engine_id); /* a finished request is left as it is */
        qilin_engine_release(s->engine, j->engine_id);
        *p = j->next_active;
        serve_job_unref(s, j);
    }
}

static void snapshot_stats(qilin_server *s) {
    qilin_engine_stats es;
    qilin_engine_get_stats(s->engine, &es);
    pthread_mutex_lock(&s->mu);
    s->stats.engine = es;
    s->stats.running = es.running, s->stats.waiting = es.waiting;
    s->stats.queued = s->n_queued, s->stats.jobs = s->n_jobs;
    pthread_mutex_unlock(&s->mu);
}

/* Waits for work; returns the queued jobs (taken off the queue) and whether to stop now. */
static serve_job *wait_for_work(qilin_server *s, bool *stop_now) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        bool any_cancel = false;
        for (serve_job *j = s->active; j && !any_cancel; j = j->next_active) any_cancel = j->cancel;
        bool idle = qilin_engine_idle(s->engine) && !s->active;
        *stop_now = s->stopping && (idle || serve_now() >= s->stop_deadline);
        if (*stop_now || s->queue_head || any_cancel || (!idle && !s->paused)) break;
        pthread_cond_wait(&s->wake, &s->mu);
    }
    serve_job *taken = s->stopping ? NULL : s->queue_head;
    if (taken) s->queue_head = s->queue_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    return taken;
}

void *serve_engine_main(void *arg) {
    qilin_server *s = arg;
    bool stop_now = false;
    /* the current device is per thread (CUDA): this thread runs the model's steps */
    qilin_device_set(qilin_model_get_options(s->model)->device);
    while (!stop_now) {
        serve_job *taken = wait_for_work(s, &stop_now);
        while (taken) {
            serve_job *next = taken->next;
            add_job(s, taken);
            taken = next;
        }
        retire_jobs(s, stop_now, NULL);
        if (stop_now) break;
        pthread_mutex_lock(&s->mu);
        bool paused = s->paused;
        pthread_mutex_unlock(&s->mu);
        if (!paused && !qilin_engine_idle(s->engine)) {
            qilin_status st = qilin_engine_step(s->engine);
            if (st != QILIN_OK) {
                char why[512];
                snprintf(why, sizeof why, "engine step failed: %s: %s", qilin_status_name(st),
                         qilin_last_error());
                fprintf(stderr, "qilin serve: %s\n", why);
                retire_jobs(s, true, why);
            }
        }
        retire_jobs(s, false, NULL);
        snapshot_stats(s);
    }
    /* jobs queued but never added: answered 503 */
    pthread_mutex_lock(&s->mu);
    serve_job *left = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
    for (serve_job *j = left; j; j = j->next) {
        s->n_queued--;
        j->error_status = 503, snprintf(j->error, sizeof j->error, "the server is shutting down");
        finish_job(s, j, "abort");
    }
    pthread_mutex_unlock(&s->mu);
    while (left) {
        serve_job *next = left->next;
        serve_job_unref(s, left);
        left = next;
    }
    snapshot_stats(s);
    return NULL;
}

void qilin_server_pause(qilin_server *s, bool paused) {
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

void qilin_server_get_stats(qilin_server *s, qilin_server_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->jobs = s->n_jobs, out->queued = s->n_queued; /* live, not the last snapshot */
    pthread_mutex_unlock(&s->mu);
}

/* ---- Prometheus text ---- */

typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

__attribute__((format(printf, 2, 3))) static void put(text_buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *bigger = realloc(b->p, cap);
        if (!bigger) return;
        b->p = bigger, b->cap = cap;
    }
}

static void put_histogram(text_buf *b, const char *name, const char *help, const serve_histogram *h,
                          const char *label) {
    put(b, "# HELP qilin:%s %s\n# TYPE qilin:%s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i <= SERVE_BUCKETS; i++) {
        cumulative += h->counts[i];
        if (i < SERVE_BUCKETS)
            put(b, "qilin:%s_bucket{%s,le=\"%g\"} %llu\n", name, label, bucket_bounds[i],
                (unsigned long long)cumulative);
        else
            put(b, "qilin:%s_bucket{%s,le=\"+Inf\"} %llu\n", name, label, (unsigned long long)cumulative);
    }
    put(b, "qilin:%s_sum{%s} %.9g\nqilin:%s_count{%s} %llu\n", name, label, h->sum, name, label,
        (unsigned long long)h->n);
}

static void put_value(text_buf *b, const char *name, const char *type, const char *help, const char *label,
                      double v) {
    put(b, "# HELP qilin:%s %s\n# TYPE qilin:%s %s\nqilin:%s{%s} %.17g\n", name, help, name, type, name,
        label, v);
}

void serve_metrics_text(qilin_server *s, char **out) {
    pthread_mutex_lock(&s->mu);
    serve_metrics m = s->metrics;
    qilin_server_stats st = s->stats;
    st.queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
    char label[300];
    snprintf(label, sizeof label, "model_name=\"%s\"", s->model_name); /* the name was checked printable */
    const qilin_engine_stats *e = &st.engine;
    double usage = e->num_blocks ? (double)(e->num_blocks - e->free_blocks) / e->num_blocks : 0;
    text_buf b = {0};
    put_value(&b, "num_requests_running", "gauge", "Requests in the engine's running batch.", label,
              st.running);
    put_value(&b, "num_requests_waiting", "gauge", "Requests waiting for the engine (queued included).",
              label, st.waiting + st.queued);
    put_value(&b, "kv_cache_usage_perc", "gauge", "Fraction of KV blocks in use (1 = full).", label, usage);
    put_value(&b, "prefix_cache_queries_total", "counter",
              "Full prompt blocks looked up in the prefix cache.", label, (double)e->prefix_lookups);
    put_value(&b, "prefix_cache_hits_total", "counter", "Full prompt blocks found in the prefix cache.",
              label, (double)e->prefix_hits);
    put_value(&b, "prefix_cache_hit_rate", "gauge", "prefix_cache_hits / prefix_cache_queries.", label,
              e->prefix_lookups ? (double)e->prefix_hits / (double)e->prefix_lookups : 0);
    put_value(&b, "num_preemptions_total", "counter", "Sequences preempted for KV blocks.", label,
              (double)e->preemptions);
    put_value(&b, "prompt_tokens_total", "counter", "Prompt tokens of the requests admitted.", label,
              (double)m.prompt_tokens);
    put_value(&b, "generation_tokens_total", "counter", "Tokens generated.", label,
              (double)m.generation_tokens);
    put(&b, "# HELP qilin:request_success_total Requests finished, by reason.\n"
            "# TYPE qilin:request_success_total counter\n");
    put(&b, "qilin:request_success_total{%s,finished_reason=\"stop\"} %llu\n", label,
        (unsigned long long)m.finished_stop);
    put(&b, "qilin:request_success_total{%s,finished_reason=\"length\"} %llu\n", label,
        (unsigned long long)m.finished_length);
    put(&b, "qilin:request_success_total{%s,finished_reason=\"abort\"} %llu\n", label,
        (unsigned long long)m.finished_abort);
    put_histogram(&b, "time_to_first_token_seconds", "Time from arrival to the first token.", &m.ttft, label);
    put_histogram(&b, "inter_token_latency_seconds", "Time between consecutive tokens of a request.", &m.itl,
                  label);
    put_histogram(&b, "e2e_request_latency_seconds", "Time from arrival to the last token.", &m.e2e, label);
    *out = b.p;
}
