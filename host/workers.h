/* workers.h — one host thread per GPU, driven in lock step.
 *
 * Tensor parallelism needs one host thread per device: the current device is
 * per thread, and every rank must reach each collective on its own thread
 * (comm.h). qilin_workers_run hands the same job to every worker and waits
 * for all of them, so the caller sees a plain synchronous call; the workers
 * keep their device binding between jobs.
 *
 * Errors: each job returns a status; the lowest failing rank's status and
 * message become the caller's (qilin_last_error on the calling thread).
 * Thread safety: one caller at a time per pool. */
#ifndef QILIN_HOST_WORKERS_H
#define QILIN_HOST_WORKERS_H

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_workers qilin_workers;

/* fn(rank, ctx) runs on worker `rank`'s thread. */
typedef qilin_status (*qilin_worker_fn)(int rank, void *ctx);

qilin_status qilin_workers_create(int n, qilin_workers **out);
void qilin_workers_destroy(qilin_workers *w); /* NULL does nothing; joins the threads */
int qilin_workers_count(const qilin_workers *w);

/* Runs fn(r, ctx) on every worker r and returns when all have finished. */
qilin_status qilin_workers_run(qilin_workers *w, qilin_worker_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_WORKERS_H */
