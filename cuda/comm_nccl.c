/* comm_nccl.c — qilin's collectives on NCCL (cuda build).
 *
 * qilin_comm_init_all is ncclCommInitAll over the given devices (one process,
 * one communicator per GPU); qilin_comm_init_ranks is ncclCommInitRank per
 * local GPU inside one group (several processes, the id from
 * ncclGetUniqueId); each qilin_comm wraps one ncclComm_t with its rank,
 * size and device. qilin_comm_abort is ncclCommAbort; later calls on the
 * rank fail with the abort's reason instead of touching NCCL. Collectives map one to one (sums are ncclSum);
 * group start/end are NCCL's (per host thread); all-to-all is a group of one
 * send and one receive per peer. Arguments are checked first (comm_check.c,
 * shared with the sim) so that a bad call gets a message naming the field
 * instead of an NCCL "invalid argument" or a hang. */
#include "comm.h"

#include <nccl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_check.h"

enum { ABORT_NONE = 0, ABORT_CLAIMED = 1, ABORT_DONE = 2 };

struct qilin_comm {
    ncclComm_t nccl;
    int rank, size, device;
    /* ABORT_NONE, then ABORT_CLAIMED by the one thread whose compare-and-swap
     * won (it writes `reason`), then ABORT_DONE: reason readable. Every rank of
     * a tensor-parallel group tends to fail at the same check at once, and a
     * watcher thread may abort too: exactly one of them calls ncclCommAbort. */
    atomic_int aborted;
    char reason[256];
};

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
    int aborted = atomic_load(&comm->aborted);
    if (aborted != ABORT_NONE)
        return qilin_error(QILIN_ERR_COMM, "%s (rank %d of %d): communicator aborted: %s", op, comm->rank,
                           comm->size, aborted == ABORT_DONE ? comm->reason : "(abort in progress)");
    s->op = op;
    s->rank = comm->rank;
    s->size = comm->size;
    QILIN_TRY(nccl_type(*s, dtype, t));
    return qilin_comm_check_stream(*s, comm->device, stream);
}

static cudaStream_t native(qilin_stream *stream) { return (cudaStream_t)qilin_stream_native(stream); }

/* Wraps the raw communicators; on failure destroys them all. */
static qilin_status wrap_all(int ndev, const int *devices, ncclComm_t *raw, qilin_comm **comms) {
    for (int r = 0; r < ndev; r++) {
        comms[r] = (qilin_comm *)calloc(1, sizeof **comms);
        if (comms[r] == NULL) {
            for (int q = 0; q < ndev; q++) {
                if (q < r) free(comms[q]);
                ncclCommDestroy(raw[q]);
                comms[q] = NULL;
            }
            return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "comm_init_all: out of host memory");
        }
        comms[r]->nccl = raw[r];
        comms[r]->rank = r;
        comms[r]->size = ndev;
        comms[r]->device = devices[r];
    }
    return QILIN_OK;
}

static qilin_status init_raw(int ndev, const int *devices, ncclComm_t *raw) {
    NCCL_TRY(ncclCommInitAll(raw, ndev, devices));
    return QILIN_OK;
}

qilin_status qilin_comm_init_all(int ndev, const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init(ndev, devices, comms));
    for (int r = 0; r < ndev; r++) comms[r] = NULL;
    ncclComm_t *raw = (ncclComm_t *)calloc((size_t)ndev, sizeof *raw);
    if (raw == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "comm_init_all: out of host memory");
    /* ncclCommInitAll visits every device; keep the caller's current one. */
    int previous = -1;
    qilin_status st = qilin_device_get(&previous);
    if (st == QILIN_OK) st = init_raw(ndev, devices, raw);
    if (st == QILIN_OK) st = wrap_all(ndev, devices, raw, comms);
    if (previous >= 0) {
        qilin_status rst = qilin_device_set(previous);
        if (st == QILIN_OK) st = rst;
    }
    free(raw);
    return st;
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

/* ncclCommInitRank for each local GPU, in one group so that one thread can
 * create several ranks that wait for one another. */
static qilin_status init_ranks_raw(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, ncclComm_t *raw) {
    ncclUniqueId uid;
    memcpy(&uid, id->bytes, sizeof uid);
    NCCL_TRY(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < nlocal && r == ncclSuccess; i++) {
        qilin_status st = qilin_device_set(devices[i]);
        if (st != QILIN_OK) {
            ncclGroupEnd();
            return st;
        }
        r = ncclCommInitRank(&raw[i], world, uid, first_rank + i);
    }
    ncclResult_t end = ncclGroupEnd();
    if (r != ncclSuccess) return nccl_fail(r, "ncclCommInitRank", __FILE__, __LINE__);
    if (end != ncclSuccess) return nccl_fail(end, "ncclGroupEnd() after ncclCommInitRank", __FILE__, __LINE__);
    return QILIN_OK;
}

qilin_status qilin_comm_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, qilin_comm **comms) {
    QILIN_TRY(qilin_comm_check_init_ranks(id, world, first_rank, nlocal, devices, comms));
    for (int i = 0; i < nlocal; i++) comms[i] = NULL;
    ncclComm_t *raw = (ncclComm_t *)calloc((size_t)nlocal, sizeof *raw);
    if (raw == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "comm_init_ranks: out of host memory");
    int previous = -1;
    qilin_status st = qilin_device_get(&previous);
    if (st == QILIN_OK) st = init_ranks_raw(id, world, first_rank, nlocal, devices, raw);
    if (st == QILIN_OK) st = wrap_all(nlocal, devices, raw, comms);
    for (int i = 0; st == QILIN_OK && i < nlocal; i++) comms[i]->rank = first_rank + i, comms[i]->size = world;
    if (previous >= 0) {
        qilin_status rst = qilin_device_set(previous);
        if (st == QILIN_OK) st = rst;
    }
    free(raw);
    return st;
}

qilin_status qilin_comm_destroy(qilin_comm *comm) {
    if (comm == NULL) return QILIN_OK;
    ncclComm_t nccl = comm->nccl;
    int aborted = atomic_load(&comm->aborted);
    free(comm);
    if (!aborted) NCCL_TRY(ncclCommDestroy(nccl));
    return QILIN_OK;
}

void qilin_comm_abort(qilin_comm *comm, const char *reason) {
    if (comm == NULL) return;
    int expected = ABORT_NONE;
    if (!atomic_compare_exchange_strong(&comm->aborted, &expected, ABORT_CLAIMED)) return; /* another thread's */
    snprintf(comm->reason, sizeof comm->reason, "%s", reason ? reason : "aborted");
    ncclComm_t nccl = comm->nccl;
    atomic_store(&comm->aborted, ABORT_DONE);
    ncclCommAbort(nccl); /* frees it; the rank's stuck kernels end */
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
    NCCL_TRY(ncclAllReduce(send, recv, count, t, ncclSum, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_all_gather(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("all_gather", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, (size_t)s.size, dtype));
    NCCL_TRY(ncclAllGather(send, recv, count, t, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_reduce_scatter_sum(qilin_comm *comm, const void *send, void *recv, size_t recv_count,
                                           qilin_dtype dtype, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("reduce_scatter_sum", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_buffer(s, "send", send, recv_count, (size_t)s.size, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, recv_count, 1, dtype));
    NCCL_TRY(ncclReduceScatter(send, recv, recv_count, t, ncclSum, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_broadcast(qilin_comm *comm, const void *send, void *recv, size_t count,
                                  qilin_dtype dtype, int root, qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("broadcast", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "root", root));
    if (comm->rank == root) QILIN_TRY(qilin_comm_check_buffer(s, "send", send, count, 1, dtype));
    QILIN_TRY(qilin_comm_check_buffer(s, "recv", recv, count, 1, dtype));
    NCCL_TRY(ncclBroadcast(send, recv, count, t, root, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_send(qilin_comm *comm, const void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("send", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    NCCL_TRY(ncclSend(buf, count, t, peer, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_recv(qilin_comm *comm, void *buf, size_t count, qilin_dtype dtype, int peer,
                             qilin_stream *stream) {
    qilin_comm_site s;
    ncclDataType_t t = ncclFloat32; /* set by check_call */
    QILIN_TRY(check_call("recv", comm, dtype, stream, &s, &t));
    QILIN_TRY(qilin_comm_check_rank(s, "peer", peer));
    QILIN_TRY(qilin_comm_check_buffer(s, "buf", buf, count, 1, dtype));
    NCCL_TRY(ncclRecv(buf, count, t, peer, comm->nccl, native(stream)));
    return QILIN_OK;
}

qilin_status qilin_comm_group_start(void) {
    NCCL_TRY(ncclGroupStart());
    return QILIN_OK;
}

qilin_status qilin_comm_group_end(void) {
    NCCL_TRY(ncclGroupEnd());
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
    if (end != ncclSuccess) return nccl_fail(end, "ncclGroupEnd()", __FILE__, __LINE__);
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
    return all_to_all_group(comm, (const char *)send, (char *)recv, count, t, chunk, native(stream));
}
