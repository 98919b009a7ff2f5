/* comm_check.c — argument checks shared by the comm backends (comm_check.h). */
#include "comm_check.h"

#include <stdint.h>

qilin_status qilin_comm_check_init(int ndev, const int *devices, qilin_comm **comms) {
    if (ndev < 1) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_init_all: ndev = %d < 1", ndev);
    if (devices == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_init_all: devices = NULL");
    if (comms == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_init_all: comms = NULL");
    int count = 0;
    QILIN_TRY(qilin_device_count(&count));
    for (int r = 0; r < ndev; r++) {
        if (devices[r] < 0 || devices[r] >= count)
            return qilin_error(QILIN_ERR_NO_DEVICE,
                               "comm_init_all: devices[%d] = %d but there are %d device(s)", r, devices[r],
                               count);
        for (int q = 0; q < r; q++)
            if (devices[q] == devices[r])
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                   "comm_init_all: devices[%d] = devices[%d] = %d: one device "
                                   "cannot hold two ranks",
                                   q, r, devices[r]);
    }
    return QILIN_OK;
}

qilin_status qilin_comm_check_init_ranks(const qilin_comm_id *id, int world, int first_rank, int nlocal,
                                         const int *devices, qilin_comm **comms) {
    if (id == NULL) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "comm_init_ranks: id = NULL");
    if (world < 1 || nlocal < 1 || first_rank < 0 || first_rank > world - nlocal)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "comm_init_ranks: ranks %d .. %d of world %d (nlocal %d) are not a range of "
                           "0 .. world - 1",
                           first_rank, first_rank + nlocal - 1, world, nlocal);
    return qilin_comm_check_init(nlocal, devices, comms);
}

qilin_status qilin_comm_check_dtype(qilin_comm_site s, qilin_dtype dtype) {
    if ((int)dtype < 0 || (int)dtype >= (int)QILIN_DTYPE_COUNT)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s (rank %d of %d): dtype = %d is not a qilin_dtype", s.op,
                           s.rank, s.size, (int)dtype);
    return QILIN_OK;
}

qilin_status qilin_comm_check_buffer(qilin_comm_site s, const char *field, const void *p, size_t count,
                                     size_t mult, qilin_dtype dtype) {
    size_t esz = qilin_dtype_size(dtype);
    if (count > 0 && (mult == 0 || count > SIZE_MAX / mult / esz))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s (rank %d of %d): %s of %zu x %zu %s elements overflows size_t", s.op, s.rank,
                           s.size, field, count, mult, qilin_dtype_name(dtype));
    if (count > 0 && p == NULL)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s (rank %d of %d): %s = NULL with count = %zu", s.op,
                           s.rank, s.size, field, count);
    return QILIN_OK;
}

qilin_status qilin_comm_check_rank(qilin_comm_site s, const char *field, int value) {
    if (value < 0 || value >= s.size)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s (rank %d of %d): %s = %d is out of range [0, %d)",
                           s.op, s.rank, s.size, field, value, s.size);
    return QILIN_OK;
}

qilin_status qilin_comm_check_disjoint(qilin_comm_site s, const void *send, const void *recv, size_t bytes) {
    uintptr_t a = (uintptr_t)send, b = (uintptr_t)recv;
    if (bytes > 0 && a < b + bytes && b < a + bytes)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s (rank %d of %d): send and recv overlap (%zu bytes each); "
                           "there is no in-place form",
                           s.op, s.rank, s.size, bytes);
    return QILIN_OK;
}

qilin_status qilin_comm_check_stream(qilin_comm_site s, int device, qilin_stream *stream) {
    int sdev = qilin_stream_device(stream);
    if (sdev != device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s (rank %d of %d): stream belongs to device %d but the rank's "
                           "device is %d (call qilin_device_set(%d) on this thread, or pass a "
                           "stream of that device)",
                           s.op, s.rank, s.size, sdev, device, device);
    return QILIN_OK;
}
