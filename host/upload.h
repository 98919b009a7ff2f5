/* upload.h — the weight upload engine: copies byte ranges of memory-mapped
 * checkpoint files to device memory on one or more devices.
 *
 * Pipeline, per device (one worker thread each, so devices load in
 * parallel): the worker reads source bytes into the next pinned staging
 * buffer (a plain memcpy from the mapping, which is what faults the pages in
 * from the page cache or the disk), issues an asynchronous H2D copy of what it
 * read on the device's own stream, and goes on reading into the next buffer
 * while the copy runs. Each buffer carries an event recorded after its last
 * copy; the worker waits on that event before it refills the buffer. Small
 * jobs share a buffer (one event per buffer, not per tensor); a job larger
 * than a buffer spans several.
 *
 * A job is 1-D (rows <= 1: `width` contiguous bytes) or 2-D: `rows` rows of
 * `width` bytes, src_pitch apart in the source and dst_pitch apart on the
 * device — a row-parallel slice of a [out, in] weight is rows = out, width =
 * the slice's columns in bytes, src_pitch = the full row. Rows are packed in
 * the staging buffer, so a packed destination (dst_pitch == width, the usual
 * case) costs one H2D copy per buffer; a pitched destination costs one copy
 * per row (the device layer has no 2-D copy).
 *
 * Every job is checked before any byte moves: the copy must lie inside
 * [src, src + src_size) (a job that overruns its source is
 * QILIN_ERR_INVALID_ARGUMENT naming it), pitches must be >= width, and the
 * device must exist. Device-side bounds are checked by the device layer (the
 * sim checks every copy against its allocation).
 *
 * Thread safety: an engine runs one qilin_upload_run at a time. The calling
 * thread's current device is not changed. */
#ifndef QILIN_HOST_UPLOAD_H
#define QILIN_HOST_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_upload_job {
    const void *src;   /* the source region, e.g. one tensor's bytes in the mapping */
    size_t src_size;   /* bytes readable from src; the copy must stay inside */
    size_t src_offset; /* first byte of the copy, from src */
    void *dst;         /* device pointer on `device` */
    int device;
    size_t width;     /* bytes per row (1-D: all bytes) */
    size_t rows;      /* 0 or 1: 1-D; > 1: 2-D */
    size_t src_pitch; /* 2-D: bytes between row starts in src */
    size_t dst_pitch; /* 2-D: bytes between row starts in dst (== width: packed) */
    const char *what; /* names the job in messages (a tensor name); may be NULL */
} qilin_upload_job;

/* Bytes a job moves: width · max(rows, 1). */
size_t qilin_upload_job_bytes(const qilin_upload_job *j);

typedef struct qilin_upload_progress {
    uint64_t done, total; /* bytes */
    double seconds;       /* since the run started */
} qilin_upload_progress;

typedef struct qilin_upload_options {
    size_t staging_bytes; /* bytes per staging buffer (64 MiB) */
    int staging_buffers;  /* buffers per device, >= 2 (3) */
    int progress;         /* -1: bar on stderr when stderr is a terminal (default);
                             0: never; 1: always */
    /* Optional; called from the worker threads, one call at a time, about
     * every 100 ms and once at the end. */
    void (*on_progress)(void *user, const qilin_upload_progress *p);
    void *user;
} qilin_upload_options;

void qilin_upload_options_default(qilin_upload_options *o);

typedef struct qilin_upload_stats {
    uint64_t bytes;      /* copied to devices */
    uint64_t copies;     /* H2D copies issued */
    int devices;         /* devices written */
    double seconds;      /* wall time of the run, until every copy finished */
    double gbps;         /* bytes / seconds / 1e9 */
    double read_seconds; /* summed over workers: reading the source into staging */
    double wait_seconds; /* summed over workers: waiting for a staging buffer */
} qilin_upload_stats;

typedef struct qilin_upload_engine qilin_upload_engine;

/* Staging buffers, streams and events are created per device on first use
 * and kept until destroy. Options are copied; NULL means defaults. */
qilin_status qilin_upload_engine_create(const qilin_upload_options *opt, qilin_upload_engine **out);
/* Waits for nothing (runs have finished when they return); NULL does nothing. */
void qilin_upload_engine_destroy(qilin_upload_engine *e);

/* Copies all jobs; jobs for one device are copied in the order given. Returns
 * when every copy has completed. On error no further copies are issued, the
 * ones in flight are waited for, and the first error is returned (its
 * message names the job and the device). `stats` may be NULL. */
qilin_status qilin_upload_run(qilin_upload_engine *e, const qilin_upload_job *jobs, size_t n,
                              qilin_upload_stats *stats);

/* create + run + destroy. */
qilin_status qilin_upload(const qilin_upload_job *jobs, size_t n, const qilin_upload_options *opt,
                          qilin_upload_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_UPLOAD_H */
