/* comm.h — collectives between GPUs: NCCL in the cuda build, an exchange
 * between emulated devices in the sim (in-process, and over loopback TCP
 * between processes on one machine), same semantics.
 *
 * One communicator handle per rank; rank r belongs to devices[r] and is used by
 * one host thread (the one driving that device). Every rank calls each
 * collective in the same order. Buffers are device memory on the rank's
 * device; counts are in elements. Operations are ordered on `stream`.
 *
 * Sums are computed in fp32 for f16/bf16 in the sim; NCCL sums in the element
 * type, so tests compare with a tolerance for 16-bit types. */
#ifndef QILIN_COMM_H
#define QILIN_COMM_H

#include <stddef.h>

#include "device.h"
#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_comm qilin_comm;

/* Creates `ndev` communicators, one per entry of `devices` (rank = index);
 * comms must hold ndev pointers. Call from one thread; then hand comms[r] to
 * the thread that drives devices[r]. */
qilin_status qilin_comm_init_all(int ndev, const int *devices, qilin_comm **comms);

/* Several processes (one per node): the process that will hold global rank
 * 0 makes a unique id, sends it to the others by its own means (cluster.h),
 * and every process creates its own ranks' communicators from it.
 * NCCL: ncclGetUniqueId / ncclCommInitRank. Sim: the id names a loopback
 * listener in the id's process, which the others connect to; it works for
 * processes on one machine only. */
#define QILIN_COMM_ID_BYTES 128
typedef struct qilin_comm_id {
    unsigned char bytes[QILIN_COMM_ID_BYTES];
} qilin_comm_id;
qilin_status qilin_comm_get_unique_id(qilin_comm_id *id);

/* This process's nlocal ranks first_rank .. first_rank + nlocal - 1 of a
 * communicator of `world` ranks, on devices[0 .. nlocal - 1]; every process
 * passes the same id and world, and the call returns once all world ranks
 * have joined (or fails after the timeout). comms must hold nlocal
 * pointers; comms[i] is global rank first_rank + i. */
qilin_status qilin_comm_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                   const int *devices, qilin_comm **comms);

qilin_status qilin_comm_destroy(qilin_comm *comm); /* NULL is a no-op */

/* Faults end in errors within a deadline, never in hangs or double frees.
 *
 * Ownership: the first thread that issues an operation, waits or aborts on a
 * communicator owns it (NCCL forbids using one communicator from several
 * threads at once); an operation issued from another thread while the owner
 * is inside one fails with QILIN_ERR_COMM.
 *
 * qilin_comm_request_abort: any thread (a failing peer's worker, a cluster
 * watcher) asks the owner to stop: it only sets a shared flag with `reason`
 * (the first reason wins) and wakes the owner if it is stuck waiting. The
 * owner's next operation or qilin_comm_wait fails with QILIN_ERR_COMM naming
 * the reason, and aborts the communicator itself, once.
 *
 * qilin_comm_abort: the owner ends the communicator (NCCL: ncclCommAbort);
 * later operations fail with `reason`. From another thread, or a second time,
 * it is an error and touches nothing. The handle must still be destroyed.
 *
 * qilin_comm_wait: the owner waits for the work issued to `stream` (which
 * includes this communicator's collectives) by polling the stream, the
 * communicator's asynchronous error (ncclCommGetAsyncError) and the abort
 * flag, for at most the communicator's timeout. A failure aborts the
 * communicator (once) and returns QILIN_ERR_COMM naming this rank and why.
 *
 * qilin_comm_set_timeout: the deadline, in seconds, of every wait on this
 * communicator (qilin_comm_wait, and the sim's rendezvous); set by the owner
 * before use. Start-up (qilin_comm_init_*) takes its deadline from
 * qilin_comm_set_init_timeout (process-wide, default QILIN_COMM_TIMEOUT_DEFAULT_S). */
#define QILIN_COMM_TIMEOUT_DEFAULT_S 600.0
void qilin_comm_request_abort(qilin_comm *comm, const char *reason);
qilin_status qilin_comm_abort(qilin_comm *comm, const char *reason);
qilin_status qilin_comm_wait(qilin_comm *comm, qilin_stream *stream);
qilin_status qilin_comm_set_timeout(qilin_comm *comm, double seconds);
qilin_status qilin_comm_set_init_timeout(double seconds);

/* Test hooks (sim build only; the cuda build returns QILIN_ERR_UNSUPPORTED):
 * inject an asynchronous error into one communicator (its owner's next
 * operation or wait fails with `message`, as after ncclCommGetAsyncError), or
 * make a rank vanish: it stops arriving at collectives without destroying
 * its communicator, so its peers wait until their deadline. */
qilin_status qilin_comm_sim_inject_error(qilin_comm *comm, const char *message);
qilin_status qilin_comm_sim_vanish(qilin_comm *comm);
int qilin_comm_rank(const qilin_comm *comm);
int qilin_comm_size(const qilin_comm *comm);

/* recv[i] = sum over ranks of send[i]; send == recv is allowed. */
qilin_status qilin_comm_all_reduce_sum(qilin_comm *comm, const void *send, void *recv,
                                       size_t count, qilin_dtype dtype, qilin_stream *stream);
/* recv[r*count + i] = send of rank r [i]; recv holds size*count elements. */
qilin_status qilin_comm_all_gather(qilin_comm *comm, const void *send, void *recv,
                                   size_t count, qilin_dtype dtype, qilin_stream *stream);
/* recv[i] = sum over ranks of send[rank*recv_count + i]; send holds size*recv_count. */
qilin_status qilin_comm_reduce_scatter_sum(qilin_comm *comm, const void *send, void *recv,
                                           size_t recv_count, qilin_dtype dtype,
                                           qilin_stream *stream);
/* recv on every rank = send of `root` (send is read on root only). */
qilin_status qilin_comm_broadcast(qilin_comm *comm, const void *send, void *recv, size_t count,
                                  qilin_dtype dtype, int root, qilin_stream *stream);

/* Point-to-point. Between qilin_comm_group_start/end, sends and receives are
 * issued together and may not block one another (the all-to-all pattern).
 * Outside a group a send may wait until the peer posts the matching receive
 * (NCCL does; the sim's sends are eager and do not), so exchanges in which
 * both sides send must be grouped. A receive must name the same count and
 * dtype as the send (the sim checks; NCCL does not). Group state belongs to
 * the calling host thread; groups nest. */
qilin_status qilin_comm_send(qilin_comm *comm, const void *buf, size_t count, qilin_dtype dtype,
                             int peer, qilin_stream *stream);
qilin_status qilin_comm_recv(qilin_comm *comm, void *buf, size_t count, qilin_dtype dtype,
                             int peer, qilin_stream *stream);
qilin_status qilin_comm_group_start(void);
qilin_status qilin_comm_group_end(void);

/* All-to-all of equal chunks: recv[p*count + i] = send of rank p [rank*count + i]. */
qilin_status qilin_comm_all_to_all(qilin_comm *comm, const void *send, void *recv, size_t count,
                                   qilin_dtype dtype, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_COMM_H */
