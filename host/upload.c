/* upload.c — the weight upload engine (see upload.h): per device a worker
 * thread, a stream, and a ring of pinned staging buffers with one event each;
 * reads from the source overlap the H2D copies of the previous buffers. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#include "host/upload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/device.h"

enum { REPORT_NS = 100 * 1000 * 1000 };

typedef struct device_res {
    bool ready;
    qilin_stream *stream;
    void **buf;
    qilin_event **ev;
    bool *pending; /* ev[i] recorded after buffer i's copies and not yet waited for */
    int n;
} device_res;

struct qilin_upload_engine {
    qilin_upload_options opt;
    int n_devices;
    device_res *dev; /* n_devices entries */
};

typedef struct run_state {
    qilin_upload_engine *e;
    const qilin_upload_job *jobs;
    size_t n;
    uint64_t total;
    _Atomic uint64_t done;
    atomic_bool abort;
    _Atomic int64_t last_report_ns;
    int64_t t0_ns;
    pthread_mutex_t mu; /* serialises progress output */
    bool bar, bar_printed;
} run_state;

typedef struct worker {
    run_state *rs;
    int device;
    pthread_t thread;
    bool wanted;  /* some job writes this device */
    bool started; /* its thread runs */
    qilin_status status;
    char msg[1024];
    uint64_t bytes, copies;
    double read_s, wait_s;
} worker;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

size_t qilin_upload_job_bytes(const qilin_upload_job *j) { return j->width * (j->rows > 1 ? j->rows : 1); }

void qilin_upload_options_default(qilin_upload_options *o) {
    memset(o, 0, sizeof *o);
    o->staging_bytes = (size_t)64 << 20;
    o->staging_buffers = 3;
    o->progress = -1;
}

/* ---- engine ------------------------------------------------------------- */

qilin_status qilin_upload_engine_create(const qilin_upload_options *opt, qilin_upload_engine **out) {
    *out = NULL;
    qilin_upload_options o;
    if (opt)
        o = *opt;
    else
        qilin_upload_options_default(&o);
    if (o.staging_bytes == 0 || o.staging_buffers < 2 || o.staging_buffers > 64)
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "upload engine: need staging_bytes > 0 and 2..64 staging buffers (got %zu bytes, %d)",
            o.staging_bytes, o.staging_buffers);
    int n = 0;
    QILIN_TRY(qilin_device_count(&n));
    qilin_upload_engine *e = calloc(1, sizeof *e);
    if (e && n > 0) e->dev = calloc((size_t)n, sizeof *e->dev);
    if (!e || (n > 0 && !e->dev)) {
        free(e);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "upload engine for %d devices", n);
    }
    e->opt = o;
    e->n_devices = n;
    *out = e;
    return QILIN_OK;
}

static void release(device_res *r) {
    for (int i = 0; i < r->n; i++) {
        if (r->ev) qilin_event_destroy(r->ev[i]);
        if (r->buf) qilin_host_free_pinned(r->buf[i]);
    }
    qilin_stream_destroy(r->stream);
    free(r->buf);
    free(r->ev);
    free(r->pending);
    memset(r, 0, sizeof *r);
}

void qilin_upload_engine_destroy(qilin_upload_engine *e) {
    if (!e) return;
    for (int d = 0; d < e->n_devices; d++) release(&e->dev[d]);
    free(e->dev);
    free(e);
}

/* Runs on the worker thread, whose current device is `device`. */
static qilin_status setup(device_res *r, const qilin_upload_options *o, int device) {
    if (r->ready) return QILIN_OK;
    int n = o->staging_buffers;
    r->buf = calloc((size_t)n, sizeof *r->buf);
    r->ev = calloc((size_t)n, sizeof *r->ev);
    r->pending = calloc((size_t)n, sizeof *r->pending);
    if (!r->buf || !r->ev || !r->pending) {
        release(r);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "upload: staging tables for device %d", device);
    }
    r->n = n;
    qilin_status s = qilin_stream_create(&r->stream);
    for (int i = 0; s == QILIN_OK && i < n; i++) {
        s = qilin_host_alloc_pinned(&r->buf[i], o->staging_bytes);
        if (s == QILIN_OK) s = qilin_event_create_untimed(&r->ev[i]); /* orders only */
    }
    if (s != QILIN_OK) {
        release(r);
        return qilin_error_context(s, "upload: staging for device %d (%d x %zu bytes): ", device, n,
                                   o->staging_bytes);
    }
    r->ready = true;
    return QILIN_OK;
}

/* ---- progress ----------------------------------------------------------- */

static void report(run_state *rs, bool final) {
    uint64_t done = atomic_load(&rs->done);
    double secs = (double)(now_ns() - rs->t0_ns) * 1e-9;
    qilin_upload_progress p = {done, rs->total, secs};
    if (rs->e->opt.on_progress) rs->e->opt.on_progress(rs->e->opt.user, &p);
    if (!rs->bar || (final && !rs->bar_printed && rs->total == 0)) return;
    double gbs = secs > 0 ? (double)done / secs * 1e-9 : 0;
    double frac = rs->total ? (double)done / (double)rs->total : 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    char eta[32] = "";
    if (!final && gbs > 0)
        snprintf(eta, sizeof eta, "  ETA %.0f s", (double)(rs->total - done) / (gbs * 1e9));
    bool gb = rs->total >= 1000000000ull;
    double unit = gb ? 1e-9 : 1e-6;
    fprintf(stderr, "\rloading [%s] %7.2f / %.2f %s  %6.2f GB/s%s%s", bar, (double)done * unit,
            (double)rs->total * unit, gb ? "GB" : "MB", gbs, eta, final ? "\n" : "   ");
    fflush(stderr);
    rs->bar_printed = true;
}

static void progress_add(run_state *rs, uint64_t bytes) {
    atomic_fetch_add(&rs->done, bytes);
    int64_t t = now_ns(), last = atomic_load(&rs->last_report_ns);
    if (t - last < REPORT_NS) return;
    if (!atomic_compare_exchange_strong(&rs->last_report_ns, &last, t)) return; /* another worker reports */
    pthread_mutex_lock(&rs->mu);
    report(rs, false);
    pthread_mutex_unlock(&rs->mu);
}

/* ---- the copy loop ------------------------------------------------------ */

/* Copies bytes [pos, pos + k) of segment `seg` of job j into out. A packed
 * job is one segment (its rows back to back); a pitched one has a segment per
 * row. */
static void gather(const qilin_upload_job *j, bool packed, size_t seg, size_t pos, size_t k, char *out) {
    const char *base = (const char *)j->src + j->src_offset;
    if (j->rows <= 1) {
        memcpy(out, base + pos, k);
        return;
    }
    if (!packed) {
        memcpy(out, base + seg * j->src_pitch + pos, k);
        return;
    }
    size_t row = pos / j->width, col = pos % j->width;
    while (k > 0) {
        size_t n = j->width - col < k ? j->width - col : k;
        memcpy(out, base + row * j->src_pitch + col, n);
        out += n;
        k -= n;
        row++;
        col = 0;
    }
}

typedef struct ring {
    device_res *r;
    int b;       /* current buffer */
    size_t fill; /* bytes used in it */
} ring;

/* Closes the current buffer (an event after its copies) and makes the next
 * one free, waiting for its previous copies if they are still running. */
static qilin_status next_buffer(ring *g, worker *w) {
    device_res *r = g->r;
    QILIN_TRY(qilin_event_record(r->ev[g->b], r->stream));
    r->pending[g->b] = true;
    g->b = (g->b + 1) % r->n;
    g->fill = 0;
    if (r->pending[g->b]) {
        int64_t t = now_ns();
        QILIN_TRY(qilin_event_synchronize(r->ev[g->b]));
        w->wait_s += (double)(now_ns() - t) * 1e-9;
        r->pending[g->b] = false;
    }
    return QILIN_OK;
}

static qilin_status copy_job(const qilin_upload_job *j, ring *g, worker *w, size_t cap) {
    size_t rows = j->rows > 1 ? j->rows : 1;
    bool packed = rows == 1 || j->dst_pitch == j->width;
    size_t nseg = packed ? 1 : rows, seg_len = packed ? rows * j->width : j->width;
    for (size_t s = 0; s < nseg; s++) {
        char *dst = (char *)j->dst + (packed ? 0 : s * j->dst_pitch);
        for (size_t pos = 0; pos < seg_len;) {
            if (atomic_load(&w->rs->abort)) return QILIN_OK;
            if (g->fill == cap) QILIN_TRY(next_buffer(g, w));
            size_t k = seg_len - pos < cap - g->fill ? seg_len - pos : cap - g->fill;
            char *stage = (char *)g->r->buf[g->b] + g->fill;
            int64_t t = now_ns();
            gather(j, packed, s, pos, k, stage);
            w->read_s += (double)(now_ns() - t) * 1e-9;
            QILIN_TRY(qilin_memcpy_h2d(dst + pos, stage, k, g->r->stream));
            g->fill += k;
            pos += k;
            w->bytes += k;
            w->copies++;
            progress_add(w->rs, k);
        }
    }
    return QILIN_OK;
}

static qilin_status worker_run(worker *w) {
    run_state *rs = w->rs;
    qilin_upload_engine *e = rs->e;
    device_res *r = &e->dev[w->device];
    QILIN_TRY(qilin_device_set(w->device));
    QILIN_TRY(setup(r, &e->opt, w->device));
    ring g = {r, 0, 0};
    qilin_status s = QILIN_OK;
    for (size_t i = 0; i < rs->n && s == QILIN_OK && !atomic_load(&rs->abort); i++) {
        const qilin_upload_job *j = &rs->jobs[i];
        if (j->device != w->device || qilin_upload_job_bytes(j) == 0) continue;
        s = copy_job(j, &g, w, e->opt.staging_bytes);
        if (s != QILIN_OK)
            s = qilin_error_context(s, "upload of %s (job %zu) to device %d: ", j->what ? j->what : "?", i,
                                    w->device);
    }
    /* Always drain, so no copy still reads a buffer after we return. */
    qilin_status sync = qilin_stream_synchronize(r->stream);
    for (int i = 0; i < r->n; i++) r->pending[i] = false;
    return s != QILIN_OK ? s : sync;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    w->status = worker_run(w);
    if (w->status != QILIN_OK) {
        snprintf(w->msg, sizeof w->msg, "%s", qilin_last_error());
        atomic_store(&w->rs->abort, true);
    }
    return NULL;
}

/* ---- validation and the run --------------------------------------------- */

static qilin_status validate(const qilin_upload_job *jobs, size_t n, int n_devices) {
    for (size_t i = 0; i < n; i++) {
        const qilin_upload_job *j = &jobs[i];
        const char *name = j->what ? j->what : "(unnamed)";
        size_t rows = j->rows > 1 ? j->rows : 1;
        if (j->width != 0 && rows > SIZE_MAX / j->width)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "upload job %zu (%s): %zu rows of %zu bytes overflow", i, name, rows,
                               j->width);
        if (j->width == 0) continue;
        if (!j->src || !j->dst)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "upload job %zu (%s): %s is NULL", i, name,
                               j->src ? "dst" : "src");
        if (j->device < 0 || j->device >= n_devices)
            return qilin_error(QILIN_ERR_NO_DEVICE,
                               "upload job %zu (%s): device %d does not exist (%d devices)", i, name,
                               j->device, n_devices);
        size_t span = j->width;
        if (rows > 1) {
            if (j->src_pitch < j->width || j->dst_pitch < j->width)
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                                   "upload job %zu (%s): pitches (src %zu, dst %zu) are smaller than the row "
                                   "width %zu",
                                   i, name, j->src_pitch, j->dst_pitch, j->width);
            if ((rows - 1) > (SIZE_MAX - j->width) / j->src_pitch)
                return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "upload job %zu (%s): source span overflows",
                                   i, name);
            span = (rows - 1) * j->src_pitch + j->width;
        }
        if (j->src_offset > j->src_size || span > j->src_size - j->src_offset)
            return qilin_error(
                QILIN_ERR_INVALID_ARGUMENT,
                "upload job %zu (%s) overruns its source: bytes [%zu, %zu) of a %zu-byte region", i, name,
                j->src_offset, j->src_offset + span, j->src_size);
    }
    return QILIN_OK;
}

qilin_status qilin_upload_run(qilin_upload_engine *e, const qilin_upload_job *jobs, size_t n,
                              qilin_upload_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!e || (n > 0 && !jobs))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_upload_run: NULL argument");
    QILIN_TRY(validate(jobs, n, e->n_devices));
    run_state rs = {.e = e, .jobs = jobs, .n = n, .t0_ns = now_ns()};
    atomic_init(&rs.done, 0);
    atomic_init(&rs.abort, false);
    atomic_init(&rs.last_report_ns, rs.t0_ns);
    pthread_mutex_init(&rs.mu, NULL);
    rs.bar = e->opt.progress > 0 || (e->opt.progress < 0 && isatty(STDERR_FILENO));

    worker *w = calloc(e->n_devices > 0 ? (size_t)e->n_devices : 1, sizeof *w);
    if (!w) {
        pthread_mutex_destroy(&rs.mu);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "upload: %d workers", e->n_devices);
    }
    for (size_t i = 0; i < n; i++) {
        size_t b = qilin_upload_job_bytes(&jobs[i]);
        rs.total += b;
        if (b) w[jobs[i].device].wanted = true;
    }
    qilin_status s = QILIN_OK;
    int used = 0;
    for (int d = 0; d < e->n_devices; d++) {
        if (!w[d].wanted) continue;
        w[d] = (worker){.rs = &rs, .device = d, .wanted = true};
        if (pthread_create(&w[d].thread, NULL, worker_main, &w[d]) != 0) {
            atomic_store(&rs.abort, true);
            s = qilin_error(QILIN_ERR_INTERNAL, "upload: cannot start a worker thread for device %d", d);
            break;
        }
        w[d].started = true;
        used++;
    }
    for (int d = 0; d < e->n_devices; d++)
        if (w[d].started) pthread_join(w[d].thread, NULL);
    uint64_t bytes = 0, copies = 0;
    double read_s = 0, wait_s = 0;
    for (int d = 0; d < e->n_devices; d++) {
        if (!w[d].started) continue;
        if (s == QILIN_OK && w[d].status != QILIN_OK) s = qilin_error(w[d].status, "%s", w[d].msg);
        bytes += w[d].bytes, copies += w[d].copies, read_s += w[d].read_s, wait_s += w[d].wait_s;
    }
    report(&rs, true);
    pthread_mutex_destroy(&rs.mu);
    free(w);
    if (stats) {
        stats->bytes = bytes;
        stats->copies = copies;
        stats->devices = used;
        stats->seconds = (double)(now_ns() - rs.t0_ns) * 1e-9;
        stats->gbps = stats->seconds > 0 ? (double)bytes / stats->seconds * 1e-9 : 0;
        stats->read_seconds = read_s;
        stats->wait_seconds = wait_s;
    }
    return s;
}

qilin_status qilin_upload(const qilin_upload_job *jobs, size_t n, const qilin_upload_options *opt,
                          qilin_upload_stats *stats) {
    qilin_upload_engine *e = NULL;
    QILIN_TRY(qilin_upload_engine_create(opt, &e));
    qilin_status s = qilin_upload_run(e, jobs, n, stats);
    qilin_upload_engine_destroy(e);
    return s;
}
