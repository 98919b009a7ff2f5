/* device.h — qilin's device layer: devices, memory, copies, streams, events.
 *
 * The only door from host/ and runtime/ to a GPU. Two implementations share
 * this header: device_cuda.c (CUDA runtime) and sim/device_sim.cpp (the CPU
 * emulator, where device memory is host memory and work on a stream runs
 * later, in stream order, on a worker thread per device — sim/streams.h — so
 * a missing synchronisation shows as on a GPU).
 *
 * Threading: the current device is per host thread (qilin_device_set), as in
 * CUDA. Allocation accounting is per device and safe from any thread.
 * Every function returns a status; on failure qilin_last_error() names the
 * operation, the device, the sizes and, in the cuda build, CUDA's own error
 * name and string. */
#ifndef QILIN_DEVICE_H
#define QILIN_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_stream qilin_stream; /* NULL means the calling thread's default stream */
typedef struct qilin_event qilin_event;

typedef struct qilin_device_props {
    int index;
    char name[128];
    int is_sim;                        /* 1 for an emulated device */
    int cc_major, cc_minor;            /* compute capability, e.g. 9.0 */
    int sm_count;
    int max_threads_per_block;
    size_t shared_mem_per_block_optin; /* bytes a block may opt in to */
    size_t shared_mem_per_sm;          /* bytes of shared memory per SM (all its blocks) */
    size_t l2_bytes;
    size_t total_mem_bytes;
    double peak_bandwidth_gbs;         /* GB/s (1e9 bytes/s) */
    int peak_bandwidth_measured;       /* 1: measured by qilin_device_measure_bandwidth,
                                          0: datasheet (memory clock x bus width x 2) */
} qilin_device_props;

/* Number of devices; 0 (and QILIN_OK) when there are none. In the sim the
 * count is QILIN_SIM_DEVICES (default 8). */
qilin_status qilin_device_count(int *count);
qilin_status qilin_device_get_props(int device, qilin_device_props *props);
/* Measures device-to-device copy bandwidth (read + write bytes / time) and
 * records it as the device's peak for later qilin_device_get_props calls. */
qilin_status qilin_device_measure_bandwidth(int device, double *gbs);

/* 1 when the device layer runs in dry-run (the sim's QILIN_SIM_DRY_RUN: kernels
 * and copies are not executed, so weights need no values); always 0 in the
 * cuda build, where there is no way to turn it on. */
int qilin_device_dry_run(void);

/* Binds the calling thread to `device`. */
qilin_status qilin_device_set(int device);
qilin_status qilin_device_get(int *device);
/* Waits for all work on the current device. */
qilin_status qilin_device_synchronize(void);

/* Device memory on the current device, with accounting. `what` names the
 * buffer in error messages ("layer 3 wq"); it may be NULL. Freeing NULL is a
 * no-op. Allocation is 256-byte aligned; 0 bytes gives NULL and QILIN_OK.
 * Accounting counts the bytes requested. Over budget: QILIN_ERR_OUT_OF_MEMORY
 * naming `what`, the bytes, the device and its free/total memory. Freeing a
 * pointer qilin_malloc did not return (or freeing twice) is
 * QILIN_ERR_INVALID_ARGUMENT; any thread may free, whatever its device. */
qilin_status qilin_malloc(void **ptr, size_t bytes, const char *what);
qilin_status qilin_free(void *ptr);
/* Bytes currently allocated through qilin_malloc on `device`, and the peak. */
qilin_status qilin_memory_used(int device, size_t *allocated, size_t *peak);
/* Free and total bytes as the driver (or the sim's budget) sees them. */
qilin_status qilin_memory_info(int device, size_t *free_bytes, size_t *total_bytes);

/* Page-locked host memory for fast asynchronous copies. */
qilin_status qilin_host_alloc_pinned(void **ptr, size_t bytes);
qilin_status qilin_host_free_pinned(void *ptr);

/* Asynchronous copies and memset, ordered on `stream`. The host buffer of a
 * copy may be read or written until the stream is synchronised (a pageable
 * host-to-device source is staged at the call, as CUDA's driver does). */
qilin_status qilin_memcpy_h2d(void *dst, const void *src, size_t bytes, qilin_stream *stream);
qilin_status qilin_memcpy_d2h(void *dst, const void *src, size_t bytes, qilin_stream *stream);
qilin_status qilin_memcpy_d2d(void *dst, const void *src, size_t bytes, qilin_stream *stream);
qilin_status qilin_memset(void *dst, int byte_value, size_t bytes, qilin_stream *stream);

/* Streams belong to the device current at creation. */
qilin_status qilin_stream_create(qilin_stream **stream);
qilin_status qilin_stream_destroy(qilin_stream *stream); /* NULL is a no-op */
qilin_status qilin_stream_synchronize(qilin_stream *stream);
/* The native handle (cudaStream_t in the cuda build, the sim's stream object
 * in the sim) for kernel launchers; the per-thread default stream for NULL. */
void *qilin_stream_native(qilin_stream *stream);
/* The device a stream belongs to (the current device for NULL; -1 if the
 * CUDA runtime cannot say). */
int qilin_stream_device(qilin_stream *stream);

qilin_status qilin_event_create(qilin_event **event);
/* An event that only orders work or is waited on (cudaEventDisableTiming: no
 * timestamp is taken, so recording and waiting cost less);
 * qilin_event_elapsed_ms refuses it. */
qilin_status qilin_event_create_untimed(qilin_event **event);
qilin_status qilin_event_destroy(qilin_event *event); /* NULL is a no-op */
qilin_status qilin_event_record(qilin_event *event, qilin_stream *stream);
qilin_status qilin_event_synchronize(qilin_event *event);
/* Milliseconds between two recorded events; QILIN_ERR_INVALID_ARGUMENT if
 * either was never recorded. */
qilin_status qilin_event_elapsed_ms(qilin_event *start, qilin_event *stop, float *ms);

/* ---- graphs: capture a stream's work once, replay it many times ----------
 *
 * Between qilin_stream_begin_capture(s) and qilin_stream_end_capture(s) the
 * work issued to s (kernel launches, async copies whose host side is pinned
 * memory, memsets) is recorded, not run; qilin_graph_launch replays it, in
 * order, on any stream of the same device. A replay reads the buffers at the
 * addresses recorded (and kernel arguments as they were at capture), so what
 * changes from one replay to the next must be written into those buffers
 * (e.g. by an h2d copy from a pinned buffer that the capture recorded: it
 * reads the pinned buffer when replayed).
 *
 * While the calling thread captures, calls that cannot be part of a graph
 * fail with QILIN_ERR_INVALID_ARGUMENT naming the call and the stream, do
 * nothing, and invalidate the capture: stream, event and device
 * synchronisation, event records on the capturing stream, qilin_malloc /
 * qilin_free / pinned allocation and freeing, and copies whose host side is
 * pageable memory. qilin_stream_end_capture then fails naming the first such
 * call and returns no graph; the stream runs work eagerly again either way.
 * Work on other streams (and from other threads) is not captured. One
 * capture per thread at a time; the default stream (NULL) cannot capture.
 * The cuda build uses cudaStreamCaptureModeThreadLocal: only the capturing
 * thread's unsafe calls are refused, so the other ranks' threads (one per
 * GPU) can capture or allocate at the same time. */
typedef struct qilin_graph qilin_graph;
qilin_status qilin_stream_begin_capture(qilin_stream *stream);
qilin_status qilin_stream_end_capture(qilin_stream *stream, qilin_graph **graph);
/* 1 while the calling thread captures (on any stream), else 0. */
int qilin_capturing(void);
qilin_status qilin_graph_launch(qilin_graph *graph, qilin_stream *stream);
qilin_status qilin_graph_destroy(qilin_graph *graph); /* NULL is a no-op */
/* Nodes recorded (kernels, copies, memsets). */
size_t qilin_graph_nodes(const qilin_graph *graph);

/* Called by every kernel launcher after a launch: turns a launch error into a
 * status naming the kernel and file:line. With QILIN_SYNC_LAUNCHES=1 in the
 * environment it also synchronises, so an asynchronous fault names the kernel
 * that caused it rather than a later call. */
qilin_status qilin_check_launch(const char *kernel, const char *file, int line);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_DEVICE_H */
