/* device_cuda.c — the device layer (device.h) on the CUDA runtime C API.
 *
 * Every CUDA call goes through CUDA_TRY, which turns a failure into
 * QILIN_ERR_DEVICE with the statement, file:line, CUDA's error name and string
 * and the device/sizes involved. Allocation accounting (bytes allocated and the
 * peak, per device) lives in a pointer -> (bytes, device) side table guarded by
 * one mutex, so qilin_free knows the size of any pointer without a header in
 * device memory. Peak bandwidth comes from the memory clock and bus width (or a
 * datasheet table when the driver does not report them) until
 * qilin_device_measure_bandwidth replaces it with a measured value. */
#define _POSIX_C_SOURCE 200809L

#include "device.h"

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DEVICE_MAX = 64 };

/* ---- errors -------------------------------------------------------------- */

/* Records a CUDA failure. The runtime's last error is reset here because
 * qilin_check_launch reads it with cudaGetLastError: a failed cudaMalloc must
 * not later be reported as a failed kernel launch. */
#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static qilin_status
cuda_fail(cudaError_t err, const char *op, const char *stmt, const char *file, int line, const char *ctx_fmt,
          ...) {
    char ctx[256];
    va_list ap;
    va_start(ap, ctx_fmt);
    vsnprintf(ctx, sizeof ctx, ctx_fmt, ap);
    va_end(ap);
    (void)cudaGetLastError();
    return qilin_error(QILIN_ERR_DEVICE, "%s: %s failed at %s:%d [%s]: %s: %s", op, stmt, file, line, ctx,
                       cudaGetErrorName(err), cudaGetErrorString(err));
}

/* CUDA_TRY(stmt, "device %d", d): returns QILIN_ERR_DEVICE from the calling
 * function when stmt does not return cudaSuccess. The context format is
 * mandatory so that every message says which device or sizes were involved. */
#define CUDA_TRY(stmt, ...)                                                                                  \
    do {                                                                                                     \
        cudaError_t cuda_try_err_ = (stmt);                                                                  \
        if (cuda_try_err_ != cudaSuccess)                                                                    \
            return cuda_fail(cuda_try_err_, __func__, #stmt, __FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

/* For an error already in hand (when cleanup must run before returning). */
#define CUDA_FAIL(err, stmt_text, ...)                                                                       \
    cuda_fail((err), __func__, (stmt_text), __FILE__, __LINE__, __VA_ARGS__)

#define INVALID(...) qilin_error(QILIN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* ---- capture state (device.h's graphs) ------------------------------------ */

/* The capture the calling thread has open and the first non-capturable call
 * made during it. qilin refuses those calls itself, before CUDA sees them,
 * so the messages name the qilin call and both builds behave the same; CUDA
 * (thread-local capture mode) still catches anything that slips past. */
static _Thread_local struct {
    qilin_stream *stream;
    int open;
    qilin_status failure;
    char failure_message[512];
} thread_capture;

static qilin_status refuse_in_capture(const char *op, const char *why) {
    if (!thread_capture.open) return QILIN_OK;
    qilin_status st = INVALID("%s: not capturable (%s) while stream %p is capturing a graph "
                              "(qilin_stream_begin_capture); the capture is now invalid",
                              op, why, (void *)thread_capture.stream);
    if (thread_capture.failure == QILIN_OK) {
        thread_capture.failure = st;
        snprintf(thread_capture.failure_message, sizeof thread_capture.failure_message, "%s",
                 qilin_last_error());
    }
    return st;
}

/* ---- shared state -------------------------------------------------------- */

typedef struct alloc_entry {
    void *ptr; /* NULL marks an empty slot */
    size_t bytes;
    int device;
} alloc_entry;

typedef struct device_state {
    size_t allocated, peak;   /* bytes through qilin_malloc */
    double measured_gbs;      /* 0 until qilin_device_measure_bandwidth ran */
    int props_cached;         /* props holds the driver's answer */
    qilin_device_props props; /* datasheet bandwidth, never the measured one */
} device_state;

/* One mutex for the side table, the accounting, the cached properties and
 * the measured bandwidths: all are touched rarely compared with the work
 * they describe. */
static pthread_mutex_t state_mutex = PTHREAD_MUTEX_INITIALIZER;
static device_state devices[DEVICE_MAX];
static alloc_entry *alloc_slots; /* open addressing, linear probing, power-of-two size */
static size_t alloc_capacity, alloc_count;

/* ---- pointer side table (call with state_mutex held) --------------------- */

static size_t alloc_hash(const void *ptr, size_t capacity) {
    /* Allocations are 256-byte aligned, so the low bits carry nothing. */
    uint64_t h = ((uint64_t)(uintptr_t)ptr >> 8) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (capacity - 1);
}

static size_t alloc_find_slot(const void *ptr) {
    size_t i = alloc_hash(ptr, alloc_capacity);
    while (alloc_slots[i].ptr != NULL && alloc_slots[i].ptr != ptr) i = (i + 1) & (alloc_capacity - 1);
    return i;
}

static int alloc_grow(void) {
    size_t capacity = alloc_capacity ? alloc_capacity * 2 : 256;
    alloc_entry *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL) return 0;
    alloc_entry *old = alloc_slots;
    size_t old_capacity = alloc_capacity;
    alloc_slots = slots;
    alloc_capacity = capacity;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].ptr != NULL) alloc_slots[alloc_find_slot(old[i].ptr)] = old[i];
    free(old);
    return 1;
}

static int alloc_insert(void *ptr, size_t bytes, int device) {
    if (2 * (alloc_count + 1) > alloc_capacity && !alloc_grow()) return 0;
    alloc_slots[alloc_find_slot(ptr)] = (alloc_entry){ptr, bytes, device};
    alloc_count++;
    return 1;
}

/* Removes ptr and returns its entry; entry.ptr is NULL when it was unknown.
 * Deletion shifts later members of the probe run back so no tombstones are
 * needed. */
static alloc_entry alloc_remove(const void *ptr) {
    alloc_entry none = {NULL, 0, 0};
    if (alloc_capacity == 0) return none;
    size_t mask = alloc_capacity - 1, hole = alloc_find_slot(ptr);
    alloc_entry found = alloc_slots[hole];
    if (found.ptr == NULL) return none;
    for (size_t j = (hole + 1) & mask; alloc_slots[j].ptr != NULL; j = (j + 1) & mask) {
        size_t home = alloc_hash(alloc_slots[j].ptr, alloc_capacity);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            alloc_slots[hole] = alloc_slots[j];
            hole = j;
        }
    }
    alloc_slots[hole].ptr = NULL;
    alloc_count--;
    return found;
}

/* ---- devices ------------------------------------------------------------- */

qilin_status qilin_device_count(int *count) {
    if (count == NULL) return INVALID("qilin_device_count: count is NULL");
    *count = 0;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorStubLibrary) {
        /* No GPU or no driver is a normal configuration (CI, work machines):
         * report zero devices, and leave the reason for skip messages. */
        (void)cudaGetLastError();
        return qilin_error(QILIN_OK, "no CUDA device: %s: %s", cudaGetErrorName(err),
                           cudaGetErrorString(err));
    }
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaGetDeviceCount(&n)", "counting devices");
    *count = n < DEVICE_MAX ? n : DEVICE_MAX;
    return QILIN_OK;
}

static qilin_status check_device(int device, const char *op) {
    int n = 0;
    QILIN_TRY(qilin_device_count(&n));
    if (device < 0 || device >= n)
        return qilin_error(QILIN_ERR_NO_DEVICE, "%s: device %d does not exist (%d CUDA device(s))", op,
                           device, n);
    return QILIN_OK;
}

/* Datasheet bandwidth for GPUs whose driver does not report the memory clock.
 * Longer (more specific) names come first. */
static double datasheet_gbs(const char *name) {
    static const struct {
        const char *pattern;
        double gbs;
    } table[] = {
        {"H200", 4800.0},           {"H100 NVL", 3900.0},       {"H100 PCIe", 2000.0}, {"H100", 3350.0},
        {"A100-SXM4-80GB", 2039.0}, {"A100 80GB PCIe", 1935.0}, {"A100", 1555.0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(name, table[i].pattern) != NULL) return table[i].gbs;
    return 0.0;
}

static double peak_gbs_from_clock(int device, const char *name) {
    int clock_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess ||
        clock_khz <= 0 || bus_bits <= 0) {
        (void)cudaGetLastError(); /* an unsupported attribute is not a launch error */
        return datasheet_gbs(name);
    }
    /* Double data rate: two transfers per clock, bus_bits / 8 bytes each. */
    return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

/* The properties that never change, from the driver. */
static qilin_status query_props(int device, qilin_device_props *props) {
    struct cudaDeviceProp p;
    CUDA_TRY(cudaGetDeviceProperties(&p, device), "device %d", device);
    memset(props, 0, sizeof *props);
    props->index = device;
    snprintf(props->name, sizeof props->name, "%.*s", (int)sizeof props->name - 1, p.name);
    props->cc_major = p.major;
    props->cc_minor = p.minor;
    props->sm_count = p.multiProcessorCount;
    props->max_threads_per_block = p.maxThreadsPerBlock;
    props->shared_mem_per_block_optin = p.sharedMemPerBlockOptin;
    props->shared_mem_per_sm = p.sharedMemPerMultiprocessor;
    props->l2_bytes = (size_t)p.l2CacheSize;
    props->total_mem_bytes = p.totalGlobalMem;
    props->peak_bandwidth_gbs = peak_gbs_from_clock(device, p.name);
    return QILIN_OK;
}

qilin_status qilin_device_get_props(int device, qilin_device_props *props) {
    if (props == NULL) return INVALID("qilin_device_get_props: props is NULL");
    QILIN_TRY(check_device(device, "qilin_device_get_props"));
    /* cudaGetDeviceProperties queries every attribute (slow since CUDA 12),
     * and planners ask often, so the answer is cached per device. */
    pthread_mutex_lock(&state_mutex);
    int cached = devices[device].props_cached;
    if (cached) *props = devices[device].props;
    pthread_mutex_unlock(&state_mutex);
    if (!cached) {
        QILIN_TRY(query_props(device, props));
        pthread_mutex_lock(&state_mutex);
        devices[device].props = *props;
        devices[device].props_cached = 1;
        pthread_mutex_unlock(&state_mutex);
    }
    pthread_mutex_lock(&state_mutex);
    double measured = devices[device].measured_gbs;
    pthread_mutex_unlock(&state_mutex);
    if (measured > 0.0) {
        props->peak_bandwidth_gbs = measured;
        props->peak_bandwidth_measured = 1;
    }
    return QILIN_OK;
}

qilin_status qilin_device_set(int device) {
    QILIN_TRY(check_device(device, "qilin_device_set"));
    CUDA_TRY(cudaSetDevice(device), "device %d", device);
    return QILIN_OK;
}

qilin_status qilin_device_get(int *device) {
    if (device == NULL) return INVALID("qilin_device_get: device is NULL");
    CUDA_TRY(cudaGetDevice(device), "querying the current device");
    return QILIN_OK;
}

qilin_status qilin_device_synchronize(void) {
    QILIN_TRY(refuse_in_capture("qilin_device_synchronize", "a synchronisation"));
    int device = -1;
    (void)cudaGetDevice(&device);
    CUDA_TRY(cudaDeviceSynchronize(), "device %d", device);
    return QILIN_OK;
}

/* ---- bandwidth measurement ----------------------------------------------- */

enum { BW_WARMUP = 2, BW_REPS = 9 };

typedef struct bw_resources {
    void *src, *dst;
    cudaStream_t stream;
    cudaEvent_t start, stop;
} bw_resources;

static void bw_release(bw_resources *r) {
    if (r->src) cudaFree(r->src);
    if (r->dst) cudaFree(r->dst);
    if (r->stream) cudaStreamDestroy(r->stream);
    if (r->start) cudaEventDestroy(r->start);
    if (r->stop) cudaEventDestroy(r->stop);
    (void)cudaGetLastError();
}

static int compare_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Times BW_REPS copies of r->src to r->dst (each between its own pair of
 * event records) after BW_WARMUP untimed ones and returns the median. */
static qilin_status bw_time(const bw_resources *r, size_t bytes, int device, float *median_ms) {
    float ms[BW_REPS];
    for (int i = 0; i < BW_WARMUP; i++)
        CUDA_TRY(cudaMemcpyAsync(r->dst, r->src, bytes, cudaMemcpyDeviceToDevice, r->stream),
                 "device %d, %zu bytes", device, bytes);
    for (int i = 0; i < BW_REPS; i++) {
        CUDA_TRY(cudaEventRecord(r->start, r->stream), "device %d", device);
        CUDA_TRY(cudaMemcpyAsync(r->dst, r->src, bytes, cudaMemcpyDeviceToDevice, r->stream),
                 "device %d, %zu bytes", device, bytes);
        CUDA_TRY(cudaEventRecord(r->stop, r->stream), "device %d", device);
        CUDA_TRY(cudaEventSynchronize(r->stop), "device %d", device);
        CUDA_TRY(cudaEventElapsedTime(&ms[i], r->start, r->stop), "device %d", device);
    }
    qsort(ms, BW_REPS, sizeof ms[0], compare_float);
    *median_ms = ms[BW_REPS / 2];
    return QILIN_OK;
}

/* Copy size: 1 GiB, or less on small or busy devices (two buffers must fit
 * in a quarter of the free memory), never below 1 MiB. */
static size_t bw_bytes(size_t free_bytes, size_t total_bytes) {
    size_t bytes = (size_t)1 << 30;
    if (bytes > total_bytes / 8) bytes = total_bytes / 8;
    if (bytes > free_bytes / 8) bytes = free_bytes / 8;
    bytes &= ~(((size_t)1 << 20) - 1);
    return bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes;
}

/* Measures on the current device, which is `device`. */
static qilin_status bw_measure_current(int device, double *gbs) {
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "device %d", device);
    size_t bytes = bw_bytes(free_bytes, total_bytes);
    bw_resources r = {0};
    cudaError_t err = cudaMalloc(&r.src, bytes);
    if (err == cudaSuccess) err = cudaMalloc(&r.dst, bytes);
    if (err == cudaSuccess) err = cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking);
    if (err == cudaSuccess) err = cudaEventCreate(&r.start);
    if (err == cudaSuccess) err = cudaEventCreate(&r.stop);
    float ms = 0.0f;
    qilin_status st = err == cudaSuccess ? bw_time(&r, bytes, device, &ms)
                                         : CUDA_FAIL(err, "allocating copy buffers, stream and events",
                                                     "device %d, 2 x %zu bytes", device, bytes);
    bw_release(&r);
    if (st != QILIN_OK) return st;
    if (!(ms > 0.0f))
        return qilin_error(QILIN_ERR_DEVICE, "copies of %zu bytes timed at %g ms", bytes, (double)ms);
    /* A device-to-device copy reads and writes every byte. */
    *gbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    return QILIN_OK;
}

int qilin_device_dry_run(void) { return 0; } /* a real GPU always runs what it is given */

qilin_status qilin_device_measure_bandwidth(int device, double *gbs) {
    if (gbs == NULL) return INVALID("qilin_device_measure_bandwidth: gbs is NULL");
    QILIN_TRY(check_device(device, "qilin_device_measure_bandwidth"));
    int previous = 0;
    CUDA_TRY(cudaGetDevice(&previous), "querying the current device");
    CUDA_TRY(cudaSetDevice(device), "device %d", device);
    double measured = 0.0;
    qilin_status st = bw_measure_current(device, &measured);
    cudaError_t err = cudaSetDevice(previous);
    if (st != QILIN_OK)
        return qilin_error_context(st, "qilin_device_measure_bandwidth (device %d): ", device);
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaSetDevice(previous)", "device %d", previous);
    pthread_mutex_lock(&state_mutex);
    devices[device].measured_gbs = measured;
    pthread_mutex_unlock(&state_mutex);
    *gbs = measured;
    return QILIN_OK;
}

/* ---- memory -------------------------------------------------------------- */

static qilin_status out_of_memory(const char *what, size_t bytes, int device) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0, allocated = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
    pthread_mutex_lock(&state_mutex);
    allocated = devices[device].allocated;
    pthread_mutex_unlock(&state_mutex);
    return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                       "qilin_malloc: out of device memory allocating '%s' (%zu bytes) on device "
                       "%d: %zu of %zu bytes free, %zu allocated through qilin_malloc",
                       what ? what : "unnamed buffer", bytes, device, free_bytes, total_bytes, allocated);
}

qilin_status qilin_malloc(void **ptr, size_t bytes, const char *what) {
    if (ptr == NULL) return INVALID("qilin_malloc: ptr is NULL (allocating '%s')", what ? what : "");
    *ptr = NULL;
    if (bytes == 0) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_malloc", "an allocation"));
    int device = 0;
    CUDA_TRY(cudaGetDevice(&device), "querying the current device");
    if (device < 0 || device >= DEVICE_MAX)
        return qilin_error(QILIN_ERR_NO_DEVICE, "qilin_malloc: device %d is beyond qilin's %d", device,
                           DEVICE_MAX);
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) return out_of_memory(what, bytes, device);
    if (err != cudaSuccess)
        return CUDA_FAIL(err, "cudaMalloc(&p, bytes)", "'%s', %zu bytes, device %d",
                         what ? what : "unnamed buffer", bytes, device);
    pthread_mutex_lock(&state_mutex);
    int inserted = alloc_insert(p, bytes, device);
    if (inserted) {
        device_state *d = &devices[device];
        d->allocated += bytes;
        if (d->allocated > d->peak) d->peak = d->allocated;
    }
    pthread_mutex_unlock(&state_mutex);
    if (!inserted) {
        cudaFree(p);
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "qilin_malloc: out of host memory for the allocation table ('%s')",
                           what ? what : "unnamed buffer");
    }
    *ptr = p;
    return QILIN_OK;
}

qilin_status qilin_free(void *ptr) {
    if (ptr == NULL) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_free", "a free, which waits for the device"));
    pthread_mutex_lock(&state_mutex);
    alloc_entry e = alloc_remove(ptr);
    if (e.ptr != NULL) devices[e.device].allocated -= e.bytes;
    pthread_mutex_unlock(&state_mutex);
    if (e.ptr == NULL)
        return INVALID("qilin_free: %p was not allocated by qilin_malloc, or was already freed", ptr);
    CUDA_TRY(cudaFree(ptr), "%zu bytes on device %d", e.bytes, e.device);
    return QILIN_OK;
}

qilin_status qilin_memory_used(int device, size_t *allocated, size_t *peak) {
    QILIN_TRY(check_device(device, "qilin_memory_used"));
    pthread_mutex_lock(&state_mutex);
    if (allocated) *allocated = devices[device].allocated;
    if (peak) *peak = devices[device].peak;
    pthread_mutex_unlock(&state_mutex);
    return QILIN_OK;
}

qilin_status qilin_memory_info(int device, size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes == NULL || total_bytes == NULL)
        return INVALID("qilin_memory_info: free_bytes or total_bytes is NULL");
    QILIN_TRY(check_device(device, "qilin_memory_info"));
    /* cudaMemGetInfo answers for the current device only. */
    int previous = 0;
    CUDA_TRY(cudaGetDevice(&previous), "querying the current device");
    if (previous != device) CUDA_TRY(cudaSetDevice(device), "device %d", device);
    cudaError_t err = cudaMemGetInfo(free_bytes, total_bytes);
    cudaError_t restore = previous != device ? cudaSetDevice(previous) : cudaSuccess;
    if (err != cudaSuccess)
        return CUDA_FAIL(err, "cudaMemGetInfo(free_bytes, total_bytes)", "device %d", device);
    CUDA_TRY(restore, "restoring device %d", previous);
    return QILIN_OK;
}

qilin_status qilin_host_alloc_pinned(void **ptr, size_t bytes) {
    if (ptr == NULL) return INVALID("qilin_host_alloc_pinned: ptr is NULL");
    *ptr = NULL;
    if (bytes == 0) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_host_alloc_pinned", "an allocation"));
    cudaError_t err = cudaMallocHost(ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "qilin_host_alloc_pinned: cannot pin %zu bytes of host memory: %s", bytes,
                           cudaGetErrorString(err));
    }
    if (err != cudaSuccess) *ptr = NULL;
    CUDA_TRY(err, "%zu bytes", bytes);
    return QILIN_OK;
}

qilin_status qilin_host_free_pinned(void *ptr) {
    if (ptr == NULL) return QILIN_OK;
    QILIN_TRY(refuse_in_capture("qilin_host_free_pinned", "a free, which waits for the device"));
    CUDA_TRY(cudaFreeHost(ptr), "%p", ptr);
    return QILIN_OK;
}

/* ---- streams, copies ----------------------------------------------------- */

struct qilin_stream {
    int device;
    cudaStream_t s;
};

static cudaStream_t native(qilin_stream *stream) {
    /* The per-thread default stream, not the legacy NULL stream, so that the
     * default stream of one worker thread does not serialise the others. */
    return stream ? stream->s : cudaStreamPerThread;
}

/* Whether host memory p is page-locked (cudaMallocHost or registered). */
static int is_pinned(const void *p) {
    struct cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return attr.type == cudaMemoryTypeHost;
}

static qilin_status copy(const char *op, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                         qilin_stream *stream) {
    if (bytes == 0) return QILIN_OK;
    if (dst == NULL || src == NULL)
        return INVALID("%s: %s is NULL (%zu bytes)", op, dst == NULL ? "dst" : "src", bytes);
    if (thread_capture.open && stream == thread_capture.stream && kind != cudaMemcpyDeviceToDevice &&
        !is_pinned(kind == cudaMemcpyHostToDevice ? src : dst))
        return refuse_in_capture(op, "its host buffer is pageable memory; a graph's copy needs pinned memory "
                                     "(qilin_host_alloc_pinned)");
    cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, native(stream));
    if (err != cudaSuccess)
        return cuda_fail(err, op, "cudaMemcpyAsync(dst, src, bytes, kind, stream)", __FILE__, __LINE__,
                         "dst %p, src %p, %zu bytes", dst, src, bytes);
    return QILIN_OK;
}

qilin_status qilin_memcpy_h2d(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy(__func__, dst, src, bytes, cudaMemcpyHostToDevice, stream);
}

qilin_status qilin_memcpy_d2h(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy(__func__, dst, src, bytes, cudaMemcpyDeviceToHost, stream);
}

qilin_status qilin_memcpy_d2d(void *dst, const void *src, size_t bytes, qilin_stream *stream) {
    return copy(__func__, dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
}

qilin_status qilin_memset(void *dst, int byte_value, size_t bytes, qilin_stream *stream) {
    if (bytes == 0) return QILIN_OK;
    if (dst == NULL) return INVALID("qilin_memset: dst is NULL (%zu bytes)", bytes);
    CUDA_TRY(cudaMemsetAsync(dst, byte_value, bytes, native(stream)), "dst %p, %zu bytes", dst, bytes);
    return QILIN_OK;
}

qilin_status qilin_stream_create(qilin_stream **stream) {
    if (stream == NULL) return INVALID("qilin_stream_create: stream is NULL");
    *stream = NULL;
    qilin_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_stream_create: out of host memory");
    cudaError_t err = cudaGetDevice(&s->device);
    /* Non-blocking: qilin never uses the legacy NULL stream, and libraries
     * that do must not serialise our streams. */
    if (err == cudaSuccess) err = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
        int device = s->device;
        free(s);
        return CUDA_FAIL(err, "cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)", "device %d", device);
    }
    *stream = s;
    return QILIN_OK;
}

qilin_status qilin_stream_destroy(qilin_stream *stream) {
    if (stream == NULL) return QILIN_OK;
    cudaError_t err = cudaStreamDestroy(stream->s);
    int device = stream->device;
    free(stream);
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaStreamDestroy(stream)", "device %d", device);
    return QILIN_OK;
}

qilin_status qilin_stream_synchronize(qilin_stream *stream) {
    QILIN_TRY(refuse_in_capture("qilin_stream_synchronize", "a synchronisation"));
    CUDA_TRY(cudaStreamSynchronize(native(stream)), "device %d", qilin_stream_device(stream));
    return QILIN_OK;
}

void *qilin_stream_native(qilin_stream *stream) { return (void *)native(stream); }

int qilin_stream_device(qilin_stream *stream) {
    if (stream != NULL) return stream->device;
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess) (void)cudaGetLastError();
    return device;
}

/* ---- events -------------------------------------------------------------- */

struct qilin_event {
    cudaEvent_t e;
    int device;
    int recorded; /* tracked here so both builds report an unrecorded event the same way */
    bool untimed; /* qilin_event_create_untimed: no timestamps */
};

static qilin_status event_create(qilin_event **event, bool timing, const char *op) {
    if (event == NULL) return INVALID("%s: event is NULL", op);
    *event = NULL;
    qilin_event *ev = calloc(1, sizeof *ev);
    if (ev == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    ev->untimed = !timing;
    cudaError_t err = cudaGetDevice(&ev->device);
    if (err == cudaSuccess) err = cudaEventCreateWithFlags(&ev->e, timing ? cudaEventDefault : cudaEventDisableTiming);
    if (err != cudaSuccess) {
        int device = ev->device;
        free(ev);
        return CUDA_FAIL(err, "cudaEventCreateWithFlags(&e)", "device %d", device);
    }
    *event = ev;
    return QILIN_OK;
}

qilin_status qilin_event_create(qilin_event **event) { return event_create(event, true, "qilin_event_create"); }

qilin_status qilin_event_create_untimed(qilin_event **event) {
    return event_create(event, false, "qilin_event_create_untimed");
}

qilin_status qilin_event_destroy(qilin_event *event) {
    if (event == NULL) return QILIN_OK;
    cudaError_t err = cudaEventDestroy(event->e);
    int device = event->device;
    free(event);
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaEventDestroy(event)", "device %d", device);
    return QILIN_OK;
}

qilin_status qilin_event_record(qilin_event *event, qilin_stream *stream) {
    if (event == NULL) return INVALID("qilin_event_record: event is NULL");
    if (thread_capture.open && stream == thread_capture.stream)
        QILIN_TRY(refuse_in_capture("qilin_event_record", "an event record on the capturing stream"));
    CUDA_TRY(cudaEventRecord(event->e, native(stream)), "event of device %d, stream of device %d",
             event->device, qilin_stream_device(stream));
    event->recorded = 1;
    return QILIN_OK;
}

qilin_status qilin_event_synchronize(qilin_event *event) {
    if (event == NULL) return INVALID("qilin_event_synchronize: event is NULL");
    QILIN_TRY(refuse_in_capture("qilin_event_synchronize", "a synchronisation"));
    CUDA_TRY(cudaEventSynchronize(event->e), "device %d", event->device);
    return QILIN_OK;
}

qilin_status qilin_event_elapsed_ms(qilin_event *start, qilin_event *stop, float *ms) {
    if (start == NULL || stop == NULL || ms == NULL)
        return INVALID("qilin_event_elapsed_ms: start, stop or ms is NULL");
    if (!start->recorded || !stop->recorded)
        return INVALID("qilin_event_elapsed_ms: the %s event was never recorded",
                       start->recorded ? "stop" : "start");
    if (start->untimed || stop->untimed)
        return INVALID("qilin_event_elapsed_ms: the %s event was made by qilin_event_create_untimed (no timestamps)",
                       start->untimed ? "start" : "stop");
    CUDA_TRY(cudaEventElapsedTime(ms, start->e, stop->e), "device %d", start->device);
    return QILIN_OK;
}

/* ---- graphs (device.h) ----------------------------------------------------- */

struct qilin_graph {
    cudaGraphExec_t exec;
    int device;
    size_t nodes;
};

qilin_status qilin_stream_begin_capture(qilin_stream *stream) {
    if (stream == NULL)
        return INVALID("qilin_stream_begin_capture: the default stream cannot capture; create one");
    if (thread_capture.open)
        return INVALID("qilin_stream_begin_capture: this thread is already capturing stream %p (one capture "
                       "per thread)",
                       (void *)thread_capture.stream);
    /* Thread-local mode: CUDA refuses unsafe calls (cudaMalloc, synchronisation)
     * made by this thread only; other ranks' threads keep working. */
    CUDA_TRY(cudaStreamBeginCapture(stream->s, cudaStreamCaptureModeThreadLocal), "stream of device %d",
             stream->device);
    memset(&thread_capture, 0, sizeof thread_capture);
    thread_capture.stream = stream;
    thread_capture.open = 1;
    return QILIN_OK;
}

int qilin_capturing(void) { return thread_capture.open; }

qilin_status qilin_stream_end_capture(qilin_stream *stream, qilin_graph **graph) {
    if (graph == NULL) return INVALID("qilin_stream_end_capture: graph is NULL");
    *graph = NULL;
    if (!thread_capture.open || thread_capture.stream != stream)
        return INVALID("qilin_stream_end_capture: stream %p is not capturing on this thread", (void *)stream);
    qilin_status failure = thread_capture.failure;
    char message[512];
    snprintf(message, sizeof message, "%s", thread_capture.failure_message);
    thread_capture.open = 0;
    thread_capture.stream = NULL;
    cudaGraph_t g = NULL;
    cudaError_t err = cudaStreamEndCapture(stream->s, &g); /* ends it even when invalidated */
    if (failure != QILIN_OK) {
        if (g) (void)cudaGraphDestroy(g);
        (void)cudaGetLastError();
        return qilin_error(failure, "qilin_stream_end_capture: the capture of stream %p was invalidated by: %s",
                           (void *)stream, message);
    }
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaStreamEndCapture(stream, &graph)", "device %d", stream->device);
    qilin_graph *q = calloc(1, sizeof *q);
    size_t nodes = 0;
    err = q ? cudaGraphGetNodes(g, NULL, &nodes) : cudaSuccess;
    if (q && err == cudaSuccess) err = cudaGraphInstantiate(&q->exec, g, 0);
    (void)cudaGraphDestroy(g); /* the executable graph keeps what it needs */
    if (q == NULL) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "qilin_stream_end_capture: out of host memory");
    if (err != cudaSuccess) {
        free(q);
        return CUDA_FAIL(err, "cudaGraphInstantiate(&exec, graph, 0)", "device %d, %zu nodes", stream->device,
                         nodes);
    }
    q->device = stream->device;
    q->nodes = nodes;
    *graph = q;
    return QILIN_OK;
}

qilin_status qilin_graph_launch(qilin_graph *graph, qilin_stream *stream) {
    if (graph == NULL) return INVALID("qilin_graph_launch: graph is NULL");
    int device = qilin_stream_device(stream);
    if (device != graph->device)
        return INVALID("qilin_graph_launch: the graph was captured on device %d, the stream belongs to device %d",
                       graph->device, device);
    CUDA_TRY(cudaGraphLaunch(graph->exec, native(stream)), "device %d, %zu nodes", graph->device, graph->nodes);
    return QILIN_OK;
}

qilin_status qilin_graph_destroy(qilin_graph *graph) {
    if (graph == NULL) return QILIN_OK;
    cudaError_t err = cudaGraphExecDestroy(graph->exec);
    int device = graph->device;
    free(graph);
    if (err != cudaSuccess) return CUDA_FAIL(err, "cudaGraphExecDestroy(exec)", "device %d", device);
    return QILIN_OK;
}

size_t qilin_graph_nodes(const qilin_graph *graph) { return graph ? graph->nodes : 0; }

/* ---- launch checking ----------------------------------------------------- */

static pthread_once_t sync_launches_once = PTHREAD_ONCE_INIT;
static int sync_launches;

static void read_sync_launches(void) {
    const char *v = getenv("QILIN_SYNC_LAUNCHES");
    sync_launches = v != NULL && strcmp(v, "1") == 0;
}

qilin_status qilin_check_launch(const char *kernel, const char *file, int line) {
    kernel = kernel ? kernel : "?";
    file = file ? file : "?";
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return qilin_error(QILIN_ERR_KERNEL, "kernel %s (launched at %s:%d) failed to launch: %s: %s", kernel,
                           file, line, cudaGetErrorName(err), cudaGetErrorString(err));
    pthread_once(&sync_launches_once, read_sync_launches);
    if (!sync_launches || thread_capture.open) return QILIN_OK;
    err = cudaDeviceSynchronize();
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return qilin_error(QILIN_ERR_KERNEL,
                           "kernel %s (launched at %s:%d) faulted (QILIN_SYNC_LAUNCHES=1): %s: %s", kernel,
                           file, line, cudaGetErrorName(err), cudaGetErrorString(err));
    }
    return QILIN_OK;
}
