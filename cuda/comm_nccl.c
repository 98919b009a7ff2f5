/* comm_nccl.c — qilin's collectives on NCCL (cuda build).
 *
 * Communicators are non-blocking (ncclConfig_t.blocking = 0): qilin_comm_init_all
 * and qilin_comm_init_ranks call ncclCommInitRankConfig per local GPU inside
 * one group, then poll ncclCommGetAsyncError until every rank is ready, for at
 * most the start-up deadline (qilin_comm_set_init_timeout); on failure every
 * communicator created so far is aborted. Each qilin_comm wraps one ncclComm_t
 * with its rank, size, device, owner thread and deadline.
 *
 * Faults (comm.h): qilin_comm_request_abort only raises a flag; the owner
 * thread sees it in its next operation or in qilin_comm_wait (a poll over
 * cudaStreamQuery, ncclCommGetAsyncError, the flag and the deadline) and calls
 * ncclCommAbort itself, once. Later calls fail with the abort's reason
 * instead of touching NCCL. An NCCL call that answers ncclInProgress (allowed
 * for non-blocking communicators) is polled to completion before the next. Collectives map one to one (sums are ncclSum);
 * group start/end are NCCL's (per host thread); all-to-all is a group of one
 * send and one receive per peer. Arguments are checked first (comm_check.c,
 * shared with the sim) so that a bad call gets a message naming the field
 * instead of an NCCL "invalid argument" or a hang. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include "comm.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_check.h"

enum { ABORT_NONE = 0, ABORT_CLAIMED = 1, ABORT_DONE = 2 };

struct qilin_comm {
    ncclComm_t nccl;
    int rank, size, device;
    double timeout_s;
    atomic_int busy;         /* 1 while a thread is inside an operation */
    atomic_uintptr_t owner;  /* thread_id() of the last operation's thread; 0 at first */
    /* qilin_comm_request_abort: ABORT_NONE, then ABORT_CLAIMED by the one
     * thread whose compare-and-swap won (it writes `requested`), then
     * ABORT_DONE: requested readable. Every rank of a tensor-parallel group
     * tends to fail at the same check at once, and a watcher thread may ask
     * too: the first reason is kept. */
    atomic_int request;
    char requested[256];
    /* Owner only: set once, when the owner calls ncclCommAbort. */
    atomic_int aborted;
    char reason[512];
};

static _Atomic double init_timeout_s = QILIN_COMM_TIMEOUT_DEFAULT_S;

/* An address unique to the calling thread while it lives. */
static _Thread_local char thread_tag;
static uintptr_t thread_id(void) { return (uintptr_t)&thread_tag; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void pause_briefly(void) {
    struct timespec t = {0, 100000}; /* 0.1 ms: a poll, not a spin */
    nanosleep(&t, NULL);
}

static qilin_status nccl_fail(ncclResult_t r, const char *stmt, const char *file, int line) {
    const char *detail = ncclGetLastError(NULL);
    return qilin_error(QILIN_ERR_COMM, "%s failed at %s:%d: %s%s%s", stmt, file, line, ncclGetErrorString(r),
                       detail && detail[0] ? ": " : "", detail ? detail : "");
}

/* Runs an NCCL call; on failure records the statement, file:line and NCCL's
 * error string (plus its last-error detail), returning QILIN_ERR_COMM. */
#define NCCL_TRY(stmt)                                                                                       \
    do {                                                                                                     \
        ncclResult_t nccl_try_r_ = (stmt);                                                                   \
        if (nccl_try_r_ != ncclSuccess) return nccl_fail(nccl_try_r_, #stmt, __FILE__, __LINE__);            \
    } while (0)

/* fp8 e4m3 exists in NCCL 2.24 and later, in the header we compile against
 * and in the library we run with; reductions on it also need sm_90. */
static qilin_status fp8_type(qilin_comm_site s, ncclDataType_t *out) {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 24, 0)
    int version = 0;
    NCCL_TRY(ncclGetVersion(&version));
    if (version >= NCCL_VERSION(2, 24, 0)) {
        *out = ncclFloat8e4m3;
        return QILIN_OK;
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED,
                       "%s (rank %d of %d): dtype = fp8_e4m3 needs NCCL >= 2.24, the linked "
                       "library is version code %d",
                       s.op, s.rank, s.size, version);
#else
    return qilin_error(QILIN_ERR_UNSUPPORTED,
                       "%s (rank %d of %d): dtype = fp8_e4m3 needs NCCL >= 2.24, built "
                       "against %d",
                       s.op, s.rank, s.size, NCCL_VERSION_CODE);
#endif
}

static qilin_status nccl_type(qilin_comm_site s, qilin_dtype dtype, ncclDataType_t *out) {
    QILIN_TRY(qilin_comm_check_dtype(s, dtype));
    switch (dtype) {
    case QILIN_F32:
        *out = ncclFloat32;
        return QILIN_OK;
    case QILIN_F16:
        *out = ncclFloat16;
        return QILIN_OK;
    case QILIN_BF16:
        *out = ncclBfloat16;
        return QILIN_OK;
    case QILIN_I32:
        *out = ncclInt32;
        return QILIN_OK;
    case QILIN_I64:
        *out = ncclInt64;
        return QILIN_OK;
    case QILIN_I8:
        *out = ncclInt8;
        return QILIN_OK;
    case QILIN_U8:
        *out = ncclUint8;
        return QILIN_OK;
    case QILIN_FP8_E4M3:
        return fp8_type(s, out);
    default:
        break;
    }
    return qilin_error(QILIN_ERR_UNSUPPORTED, "%s (rank %d of %d): dtype = %s has no NCCL type", s.op, s.rank,
                       s.size, qilin_dtype_name(dtype));
}

/* Common checks of every operation: a communicator, a known dtype, a stream of
 * the rank's device. Fills the site used by later messages. */
static qilin_status check_call(const char *op, const qilin_comm *comm, qilin_dtype dtype,
                               qilin_stream *stream, qilin_comm_site *s, ncclDataType_t *t) {
    if (comm == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: comm = NULL", op);
    s->op = op;
    s->rank = comm->rank;
    s->size = comm->size;
    QILIN_TRY(nccl_type(*s, dtype, t));
    return qilin_comm_check_stream(*s, comm->device, stream);
}

static cudaStream_t native(qilin_stream *stream) { return (cudaStream_t)qilin_stream_native(stream); }

/* ---- ownership, faults and deadlines (comm.h) ---------------------------- */

/* The owner ends the communicator: ncclCommAbort, once. */
static void abort_owned(qilin_comm *comm, const char *why) {
    if (atomic_load(&comm->aborted)) return;
    snprintf(comm->reason, sizeof comm->reason, "%s", why);
    atomic_store(&comm->aborted, 1);
    ncclCommAbort(comm->nccl); /* frees it; the rank's stuck kernels end */
}

/* Fails the owner's operation `op` because of `why`, aborting first. */
static qilin_status fail_owned(qilin_comm *comm, const char *op, const char *why) {
    char copy[512];
    snprintf(copy, sizeof copy, "%s", why); /* why may be qilin_last_error's buffer */
    abort_owned(comm, copy);
    return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): %s", op, comm->rank, comm->size, copy);
}

/* A fault already known to the owner: an earlier abort, a requested one,
 * an asynchronous NCCL error. ncclInProgress (the previous call still
 * completing) is polled until it ends or the deadline passes. */
static qilin_status check_faults(qilin_comm *comm, const char *op, double until) {
    if (atomic_load(&comm->aborted))
        return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): communicator aborted: %s", op, comm->rank,
                           comm->size, comm->reason);
    for (;;) {
        if (atomic_load(&comm->request) == ABORT_DONE) {
            char why[300];
            snprintf(why, sizeof why, "aborted on request: %s", comm->requested);
            return fail_owned(comm, op, why);
        }
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(comm->nccl, &async);
        if (r != ncclSuccess) async = r;
        if (async == ncclSuccess) return QILIN_OK;
        if (async != ncclInProgress) {
            char why[300];
            const char *detail = ncclGetLastError(comm->nccl);
            snprintf(why, sizeof why, "asynchronous NCCL error: %s%s%s", ncclGetErrorString(async),
                     detail && detail[0] ? ": " : "", detail ? detail : "");
            return fail_owned(comm, op, why);
        }
        if (now_s() > until) {
            char why[128];
            snprintf(why, sizeof why, "NCCL still in progress after the %.3g s comm timeout", comm->timeout_s);
            return fail_owned(comm, op, why);
        }
        pause_briefly();
    }
}

/* Claims the communicator for the calling thread (its owner from now on);
 * an operation in progress on another thread is an error. */
static qilin_status enter(qilin_comm *comm, const char *op) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&comm->busy, &expected, 1))
        return qilin_error(QILIN_ERR_COMM,
                           "%s (rank %d of %d): issued while another thread is inside an operation on this "
                           "communicator (one thread per communicator)",
                           op, comm->rank, comm->size);
    atomic_store(&comm->owner, thread_id());
    qilin_status st = check_faults(comm, op, now_s() + comm->timeout_s);
    if (st != QILIN_OK) atomic_store(&comm->busy, 0);
    return st;
}

static void leave(qilin_comm *comm) { atomic_store(&comm->busy, 0); }

/* The outcome of one NCCL call on the owner's thread; ncclInProgress is
 * polled to its end. Releases the communicator. */
static qilin_status finish(qilin_comm *comm, const char *op, ncclResult_t r, const char *stmt) {
    qilin_status st = QILIN_OK;
    if (r == ncclInProgress) st = check_faults(comm, op, now_s() + comm->timeout_s);
    else if (r != ncclSuccess) st = nccl_fail(r, stmt, __FILE__, __LINE__);
    leave(comm);
    return st;
}

/* Runs one NCCL call on `comm` as its owner. */
#define ISSUE(comm, op, call)                                                                                \
    do {                                                                                                     \
        QILIN_TRY(enter((comm), (op)));                                                                      \
        return finish((comm), (op), (call), #call);                                                          \
    } while (0)

void qilin_comm_request_abort(qilin_comm *comm, const char *reason) {
    if (comm == NULL) return;
    int expected = ABORT_NONE;
    if (!atomic_compare_exchange_strong(&comm->request, &expected, ABORT_CLAIMED)) return; /* first reason kept */
    snprintf(comm->requested, sizeof comm->requested, "%s", reason ? reason : "no reason given");
    atomic_store(&comm->request, ABORT_DONE);
}

qilin_status qilin_comm_abort(qilin_comm *comm, const char *reason) {
    if (comm == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_abort: comm = NULL");
    uintptr_t owner = atomic_load(&comm->owner);
    if (owner != 0 && owner != thread_id())
        return qilin_error(QILIN_ERR_COMM,
                           "comm_abort (rank %d of %d): called from a thread that does not own the communicator "
                           "(use qilin_comm_request_abort)",
                           comm->rank, comm->size);
    int expected = 0;
    if (!atomic_compare_exchange_strong(&comm->busy, &expected, 1))
        return qilin_error(QILIN_ERR_COMM, "comm_abort (rank %d of %d): another thread is inside an operation",
                           comm->rank, comm->size);
    qilin_status st = QILIN_OK;
    if (atomic_load(&comm->aborted))
        st = qilin_error(QILIN_ERR_COMM, "comm_abort (rank %d of %d): the communicator was already aborted",
                         comm->rank, comm->size);
    else
        abort_owned(comm, reason ? reason : "no reason given");
    leave(comm);
    return st;
}

/* Polls until the stream's work is done, an error or abort request arrives,
 * or the deadline passes. */
static qilin_status wait_stream(qilin_comm *comm, qilin_stream *stream) {
    const double until = now_s() + comm->timeout_s;
    cudaStream_t s = native(stream);
    for (;;) {
        cudaError_t e = cudaStreamQuery(s);
        if (e != cudaSuccess && e != cudaErrorNotReady) {
            char why[300];
            snprintf(why, sizeof why, "the stream failed: %s", cudaGetErrorString(e));
            return fail_owned(comm, "comm_wait", why);
        }
        QILIN_TRY(check_faults(comm, "comm_wait", until));
        if (e == cudaSuccess) return QILIN_OK;
        if (now_s() > until) {
            char why[160];
            snprintf(why, sizeof why, "the stream's work (collectives included) did not finish within the %.3g s "
                                      "comm timeout (--comm-timeout)", comm->timeout_s);
            return fail_owned(comm, "comm_wait", why);
        }
        pause_briefly();
    }
}

qilin_status qilin_comm_wait(qilin_comm *comm, qilin_stream *stream) {
    if (comm == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_wait: comm = NULL");
    QILIN_TRY(enter(comm, "comm_wait"));
    qilin_status st = wait_stream(comm, stream);
    leave(comm);
    return st;
}

qilin_status qilin_comm_set_timeout(qilin_comm *comm, double seconds) {
    if (comm == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_timeout: comm = NULL");
    if (!(seconds > 0.0) || seconds > 1e7)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_timeout (rank %d): %g s is not in (0, 1e7]",
                           comm->rank, seconds);
    comm->timeout_s = seconds;
    return QILIN_OK;
}

qilin_status qilin_comm_set_init_timeout(double seconds) {
    if (!(seconds > 0.0) || seconds > 1e7)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_set_init_timeout: %g s is not in (0, 1e7]", seconds);
    atomic_store(&init_timeout_s, seconds);
    return QILIN_OK;
}

qilin_status qilin_comm_sim_inject_error(qilin_comm *comm, const char *message) {
    (void)comm, (void)message;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "comm_sim_inject_error: a test hook of the sim build only");
}

qilin_status qilin_comm_sim_vanish(qilin_comm *comm) {
    (void)comm;
    return qilin_error(QILIN_ERR_UNSUPPORTED, "comm_sim_vanish: a test hook of the sim build only");
}

/* Aborts every raw communicator created so far (start-up failed). */
static void abort_raw(int n, ncclComm_t *raw) {
    for (int i = 0; i < n; i++)
        if (raw[i] != NULL) ncclCommAbort(raw[i]), raw[i] = NULL;
}

/* Wraps the raw communicators (global ranks first .. first + n - 1 of world);
 * on failure aborts them all. */
static qilin_status wrap_all(int n, int first, int world, const int *devices, ncclComm_t *raw,
                             qilin_comm **comms) {
    double timeout_s = atomic_load(&init_timeout_s);
    for (int i = 0; i < n; i++) {
        comms[i] = (qilin_comm *)calloc(1, sizeof **comms);
        if (comms[i] == NULL) {
            for (int q = 0; q < i; q++) free(comms[q]), comms[q] = NULL;
            abort_raw(n, raw);
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "comm_init: out of host memory");
        }
        comms[i]->nccl = raw[i];
        comms[i]->rank = first + i;
        comms[i]->size = world;
        comms[i]->device = devices[i];
        comms[i]->timeout_s = timeout_s;
    }
    return QILIN_OK;
}

/* Polls the new communicators until every one is ready, one fails, or the
 * start-up deadline passes (a peer that never joins). */
static qilin_status wait_ready(int n, int first, int world, ncclComm_t *raw, const char *op) {
    const double timeout_s = atomic_load(&init_timeout_s), until = now_s() + timeout_s;
    for (int i = 0; i < n; i++) {
        for (;;) {
            ncclResult_t async = ncclSuccess;
            ncclResult_t r = ncclCommGetAsyncError(raw[i], &async);
            if (r != ncclSuccess) async = r;
            if (async == ncclSuccess) break;
            if (async != ncclInProgress) {
                const char *detail = ncclGetLastError(raw[i]);
                return qilin_error(QILIN_ERR_COMM, "%s: rank %d of %d failed to start: %s%s%s", op, first + i,
                                   world, ncclGetErrorString(async), detail && detail[0] ? ": " : "",
                                   detail ? detail : "");
            }
            if (now_s() > until)
                return qilin_error(QILIN_ERR_COMM,
                                   "%s: rank %d of %d not ready after the %.3g s start-up timeout (a peer never "
                                   "joined?)",
                                   op, first + i, world, timeout_s);
            pause_briefly();
        }
    }
    return QILIN_OK;
}

/* ncclCommInitRankConfig (non-blocking) for each local GPU, in one group so
 * that one thread can create several ranks that wait for one another; then
 * waits for all under the start-up deadline. On failure aborts what it made. */
static qilin_status init_ranks_raw(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, ncclComm_t *raw, const char *op) {
    ncclUniqueId uid;
    memcpy(&uid, id->bytes, sizeof uid);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_TRY(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    qilin_status st = QILIN_OK;
    for (int i = 0; i < nlocal && r == ncclSuccess && st == QILIN_OK; i++) {
        st = qilin_device_set(devices[i]);
        if (st == QILIN_OK) r = ncclCommInitRankConfig(&raw[i], world, uid, first_rank + i, &config);
        if (r == ncclInProgress) r = ncclSuccess;
    }
    ncclResult_t end = ncclGroupEnd();
    if (st == QILIN_OK && r != ncclSuccess) st = nccl_fail(r, "ncclCommInitRankConfig", __FILE__, __LINE__);
    if (st == QILIN_OK && end != ncclSuccess && end != ncclInProgress)
        st = nccl_fail(end, "ncclGroupEnd() after ncclCommInitRankConfig", __FILE__, __LINE__);
    if (st == QILIN_OK) st = wait_ready(nlocal, first_rank, world, raw, op);
    if (st != QILIN_OK) abort_raw(nlocal, raw);
    return st;
}

/* Creates and wraps this process's ranks; restores the current device. */
static qilin_status init_local(const qilin_comm_id *id, int world, int first_rank, int nlocal, const int *devices,
                               qilin_comm **comms, const char *op) {
    for (int i = 0; i < nlocal; i++) comms[i] = NULL;
    ncclComm_t *raw = (ncclComm_t *)calloc((size_t)nlocal, sizeof *raw);
    if (raw == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    int previous = -1;
    qilin_status st = qilin_device_get(&previous);
    if (st == QILIN_OK) st = init_ranks_raw(id, world, first_rank, nlocal, devices, raw, op);
    if (st == QILIN_OK) st = wrap_all(nlocal, first_rank, world, devices, raw, comms);
    if (previous >= 0) {
        qilin_status rst = qilin_device_set(previous);
        if (st == QILIN_OK) st = rst;
    }
    free(raw);
    return st;
}

qilin_status qilin_comm_init_all(int ndev, const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init(ndev, devices, comms));
    qilin_comm_id id;
    QILIN_TRY(qilin_comm_get_unique_id(&id));
    return init_local(&id, ndev, 0, ndev, devices, comms, "comm_init_all");
}

qilin_status qilin_comm_get_unique_id(qilin_comm_id *id) {
    if (id == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_get_unique_id: id = NULL");
    _Static_assert(sizeof(ncclUniqueId) <= QILIN_COMM_ID_BYTES, "qilin_comm_id holds an ncclUniqueId");
    ncclUniqueId raw;
    NCCL_TRY(ncclGetUniqueId(&raw));
    memset(id, 0, sizeof *id);
    memcpy(id->bytes, &raw, sizeof raw);
    return QILIN_OK;
}

qilin_status qilin_comm_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init_ranks(id, world, first_rank, nlocal, devices, comms));
    return init_local(id, world, first_rank, nlocal, devices, comms, "comm_init_ranks");
}

/* Finalize (flushes the rank's work), polled under the deadline, then
 * destroy; a communicator that faulted or does not finish is aborted
 * instead, so that destroying never hangs on a dead peer. */
qilin_status qilin_comm_destroy(qilin_comm *comm) {
    if (comm == NULL) return QILIN_OK;
    ncclComm_t nccl = comm->nccl;
    qilin_status st = QILIN_OK;
    if (!atomic_load(&comm->aborted)) {
        ncclResult_t async = ncclSuccess;
        bool healthy = atomic_load(&comm->request) == ABORT_NONE &&
                       ncclCommGetAsyncError(nccl, &async) == ncclSuccess && async == ncclSuccess;
        ncclResult_t r = healthy ? ncclCommFinalize(nccl) : ncclInternalError;
        const double until = now_s() + comm->timeout_s;
        while (r == ncclSuccess || r == ncclInProgress) {
            r = ncclCommGetAsyncError(nccl, &async);
            if (r == ncclSuccess) r = async;
            if (r == ncclSuccess) break;
            if (r == ncclInProgress && now_s() > until) r = ncclInternalError;
            if (r == ncclInProgress) pause_briefly();
        }
        if (r == ncclSuccess) r = ncclCommDestroy(nccl);
        else ncclCommAbort(nccl);
        if (healthy && r != ncclSuccess)
            st = qilin_error(QILIN_ERR_COMM, "comm_destroy (rank %d of %d): %s; the communicator was aborted",
                             comm->rank, comm->size, ncclGetErrorString(r));
    }
    free(comm);
    return st;
}

int qilin_comm_rank(const qilin_comm *comm) { return comm ? comm->rank : -1; }

int qilin_comm_size(const qilin_comm *comm) { return comm ? comm->size : -1; }

qilin_status qilin_comm_all_reduce_sum(qilin_comm *comm, const void *send, void *recv, size_t count,
                                       qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("all_reduce_sum", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    ISSUE(comm, s.op, ncclAllReduce(send, recv, count, t, ncclSum, comm->nccl, native(stream)));
}

qilin_status qilin_comm_all_gather(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("all_gather", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    ISSUE(comm, s.op, ncclAllGather(send, recv, count, t, comm->nccl, native(stream)));
}

qilin_status qilin_comm_reduce_scatter_sum(qilin_comm *comm, const void *send, void *recv, size_t recv_count,
                                           qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("reduce_scatter_sum", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, recv_count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, recv_count, 1, dtype));
    ISSUE(comm, s.op, ncclReduceScatter(send, recv, recv_count, t, ncclSum, comm->nccl, native(stream)));
}

qilin_status qilin_comm_broadcast(qilin_comm *comm, const void *send, void *recv, size_t count,
                                  qilin_dtype dtype, int root, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("broadcast", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "root", root));
    if (comm->rank == root) QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    ISSUE(comm, s.op, ncclBroadcast(send, recv, count, t, root, comm->nccl, native(stream)));
}

qilin_status qilin_comm_send(qilin_comm *comm, const void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("send", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    ISSUE(comm, s.op, ncclSend(buf, count, t, peer, comm->nccl, native(stream)));
}

qilin_status qilin_comm_recv(qilin_comm *comm, void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("recv", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    ISSUE(comm, s.op, ncclRecv(buf, count, t, peer, comm->nccl, native(stream)));
}

qilin_status qilin_comm_group_start(void) {
    NCCL_TRY(ncclGroupStart());
    return QILIN_OK;
}

/* With non-blocking communicators the group may answer ncclInProgress; each
 * communicator's next operation or wait polls it to its end. */
qilin_status qilin_comm_group_end(void) {
    ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, "ncclGroupEnd()", __FILE__, __LINE__);
    return QILIN_OK;
}

/* One send and one receive per peer (self included), issued as one group so
 * that none waits for another. A failure inside the group still ends it, so
 * the thread's group depth stays balanced. */
static qilin_status all_to_all_group(qilin_comm *comm, const char *send, char *recv, size_t count,
                                     ncclDataType_t t, size_t chunk, cudaStream_t stream) {
    NCCL_TRY(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    const char *failed = NULL;
    for (int p = 0; p < comm->size && r == ncclSuccess; p++) {
        r = ncclSend(send + (size_t)p * chunk, count, t, p, comm->nccl, stream);
        if (r != ncclSuccess) {
            failed = "ncclSend(all_to_all chunk)";
            break;
        }
        r = ncclRecv(recv + (size_t)p * chunk, count, t, p, comm->nccl, stream);
        if (r != ncclSuccess) failed = "ncclRecv(all_to_all chunk)";
    }
    ncclResult_t end = ncclGroupEnd();
    if (failed) return nccl_fail(r, failed, __FILE__, __LINE__);
    if (end != ncclSuccess && end != ncclInProgress) return nccl_fail(end, "ncclGroupEnd()", __FILE__, __LINE__);
    return QILIN_OK;
}

qilin_status qilin_comm_all_to_all(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("all_to_all", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    size_t chunk = count * qilin_dtype_size(dtype);
    QILIN_TRY(qilin_comm_check_disjoint(s, send, recv, chunk * (size_t)s.size));
    if (count == 0) return QILIN_OK;
    QILIN_TRY(enter(comm, s.op));
    qilin_status st = all_to_all_group(comm, (const char *)send, (char *)recv, count, t, chunk, native(stream));
    if (st == QILIN_OK) st = check_faults(comm, s.op, now_s() + comm->timeout_s); /* an ncclInProgress group */
    leave(comm);
    return st;
}
