/* comm_check.h — argument checks shared by the two comm backends
 * (comm_nccl.c and sim/comm_sim.cpp), so both reject the same calls with the
 * same messages. Internal to cuda/.
 *
 * Messages read "<op> (rank R of N): <field> = <value> ...", e.g.
 * "broadcast (rank 1 of 4): root = 4 is out of range [0, 4)". */
#ifndef QILIN_COMM_CHECK_H
#define QILIN_COMM_CHECK_H

#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a check runs: the operation's name and the calling rank. */
typedef struct qilin_comm_site {
    const char *op;
    int rank, size;
} qilin_comm_site;

/* ndev >= 1, devices and comms non-NULL, every device exists and appears
 * once (NCCL does not support one device twice in a communicator). */
qilin_status qilin_comm_check_init(int ndev, const int *devices, qilin_comm **comms);
/* The same for qilin_comm_init_ranks, plus 0 <= first_rank, first_rank +
 * nlocal <= world, id non-NULL. */
qilin_status qilin_comm_check_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                         const int *devices, qilin_comm **comms);

/* dtype is in qilin's table (QILIN_ERR_UNSUPPORTED otherwise). */
qilin_status qilin_comm_check_dtype(qilin_comm_site s, qilin_dtype dtype);

/* A buffer of `count` x `mult` elements of dtype: non-NULL when non-empty,
 * and the byte size fits in size_t. */
qilin_status qilin_comm_check_buffer(qilin_comm_site s, const char *field, const void *p, size_t count,
                                     size_t mult, qilin_dtype dtype);

/* 0 <= value < size (a root or a peer). */
qilin_status qilin_comm_check_rank(qilin_comm_site s, const char *field, int value);

/* send and recv, `bytes` each, do not overlap (all-to-all has no in-place form). */
qilin_status qilin_comm_check_disjoint(qilin_comm_site s, const void *send, const void *recv, size_t bytes);

/* The stream belongs to the communicator's device. */
qilin_status qilin_comm_check_stream(qilin_comm_site s, int device, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_COMM_CHECK_H */
