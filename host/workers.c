/* workers.c — the per-GPU worker threads (workers.h).
 *
 * A job is published by bumping `generation` under the mutex; each worker
 * runs it once, records its status and message, and the last one to finish
 * wakes the caller. Workers sleep on a condition variable between jobs. */
#include "host/workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker {
    struct qilin_workers *pool;
    int rank;
    pthread_t thread;
    qilin_status status;
    char message[1024];
} worker;

struct qilin_workers {
    int n, started;
    worker *w;
    pthread_mutex_t mu;
    pthread_cond_t job_ready, job_done;
    unsigned long generation;
    int remaining;
    bool quit;
    qilin_worker_fn fn;
    void *ctx;
};

static void *worker_main(void *arg) {
    worker *me = arg;
    qilin_workers *p = me->pool;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->job_ready, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        qilin_worker_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);

        qilin_clear_error();
        me->status = fn(me->rank, ctx);
        snprintf(me->message, sizeof me->message, "%s", me->status == QILIN_OK ? "" : qilin_last_error());

        pthread_mutex_lock(&p->mu);
        if (--p->remaining == 0) pthread_cond_signal(&p->job_done);
        pthread_mutex_unlock(&p->mu);
    }
}

qilin_status qilin_workers_create(int n, qilin_workers **out) {
    *out = NULL;
    if (n < 1) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_workers_create: %d workers", n);
    qilin_workers *p = calloc(1, sizeof *p);
    if (p) p->w = calloc((size_t)n, sizeof *p->w);
    if (!p || !p->w) {
        free(p);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_workers_create: host memory");
    }
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->job_ready, NULL);
    pthread_cond_init(&p->job_done, NULL);
    for (int r = 0; r < n; r++) {
        p->w[r] = (worker){.pool = p, .rank = r};
        if (pthread_create(&p->w[r].thread, NULL, worker_main, &p->w[r]) != 0) {
            qilin_workers_destroy(p);
            return qilin_error(QILIN_ERR_INTERNAL, "qilin_workers_create: cannot start worker thread %d", r);
        }
        p->started++;
    }
    *out = p;
    return QILIN_OK;
}

void qilin_workers_destroy(qilin_workers *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->job_ready);
    pthread_mutex_unlock(&p->mu);
    for (int r = 0; r < p->started; r++) pthread_join(p->w[r].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->job_ready);
    pthread_cond_destroy(&p->job_done);
    free(p->w);
    free(p);
}

int qilin_workers_count(const qilin_workers *p) { return p ? p->n : 0; }

qilin_status qilin_workers_run(qilin_workers *p, qilin_worker_fn fn, void *ctx) {
    pthread_mutex_lock(&p->mu);
    p->fn = fn, p->ctx = ctx, p->remaining = p->n;
    p->generation++;
    pthread_cond_broadcast(&p->job_ready);
    while (p->remaining > 0) pthread_cond_wait(&p->job_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    for (int r = 0; r < p->n; r++)
        if (p->w[r].status != QILIN_OK) {
            if (p->n == 1) return qilin_error(p->w[r].status, "%s", p->w[r].message);
            return qilin_error(p->w[r].status, "GPU %d: %s", r, p->w[r].message);
        }
    return QILIN_OK;
}
