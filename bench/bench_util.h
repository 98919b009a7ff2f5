/* bench_util.h — what every kernel benchmark needs, once: the device's peaks,
 * timing of a launch on a stream (median of repetitions, an L2 flush before
 * each so every repetition reads from HBM), and the row format of
 * bench/README.md. Header-only C (static functions), for bench_*.c. */
#ifndef QILIN_BENCH_UTIL_H
#define QILIN_BENCH_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device.h"

/* A kernel benchmark's context on device 0. */
typedef struct bench_device {
    qilin_device_props props;
    double gbs;          /* measured copy bandwidth (GB/s) */
    double bf16_tflops;  /* datasheet dense bf16 tensor-core peak (0 when unknown: the sim) */
    qilin_stream *stream;
    void *flush;         /* 2 x L2 bytes, written before each repetition */
    size_t flush_bytes;
    qilin_event *start, *stop;
} bench_device;

static inline int bench_fail(const char *what) {
    fprintf(stderr, "bench: %s: %s\n", what, qilin_last_error());
    return 1;
}

/* Dense bf16 tensor-core peaks from the datasheets, by compute capability
 * and SM count: H100 SXM (132 SMs) 989 TFLOP/s, H100 PCIe (114) 756,
 * H200 = H100 SXM, A100 (108) 312. */
static inline double bench_bf16_peak(const qilin_device_props *p) {
    if (p->is_sim) return 0.0;
    if (p->cc_major == 9) return p->sm_count >= 132 ? 989.0 : 756.0;
    if (p->cc_major == 8 && p->cc_minor == 0) return 312.0;
    return 0.0;
}

static inline int bench_open(bench_device *b) {
    memset(b, 0, sizeof *b);
    if (qilin_device_get_props(0, &b->props) != QILIN_OK) return bench_fail("device 0");
    if (qilin_device_measure_bandwidth(0, &b->gbs) != QILIN_OK) return bench_fail("measuring bandwidth");
    b->bf16_tflops = bench_bf16_peak(&b->props);
    if (qilin_stream_create(&b->stream) != QILIN_OK) return bench_fail("stream");
    b->flush_bytes = b->props.is_sim ? 0 : 2 * b->props.l2_bytes;
    if (b->flush_bytes && qilin_malloc(&b->flush, b->flush_bytes, "L2 flush buffer") != QILIN_OK)
        return bench_fail("L2 flush buffer");
    if (qilin_event_create(&b->start) != QILIN_OK || qilin_event_create(&b->stop) != QILIN_OK)
        return bench_fail("events");
    printf("device: %s (cc %d.%d, %d SMs), measured copy bandwidth %.0f GB/s, bf16 tensor-core peak %s\n",
           b->props.name, b->props.cc_major, b->props.cc_minor, b->props.sm_count, b->gbs,
           b->bf16_tflops > 0 ? "" : "unknown (figures are about the harness, not speed)");
    if (b->bf16_tflops > 0) printf("  (%.0f TFLOP/s dense, datasheet)\n", b->bf16_tflops);
    return 0;
}

static inline void bench_close(bench_device *b) {
    qilin_event_destroy(b->start);
    qilin_event_destroy(b->stop);
    qilin_free(b->flush);
    qilin_stream_destroy(b->stream);
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* bf16 bits of a finite float, rounded to nearest even, and back. */
static inline uint16_t bench_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float bench_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Whether bf16 results got[] agree with want[] (a reference path's) within
 * 2 % of want's RMS plus |want| per element: the bound the quantized
 * benchmarks check before timing. 0 with *bad at the first element outside. */
static inline int bench_bf16_agree(const uint16_t *got, const uint16_t *want, size_t count, size_t *bad) {
    double ss = 0.0;
    for (size_t i = 0; i < count; i++) ss += (double)bench_bf16_to_float(want[i]) * bench_bf16_to_float(want[i]);
    const double rms = sqrt(ss / (double)(count ? count : 1));
    for (size_t i = 0; i < count; i++) {
        double x = bench_bf16_to_float(got[i]), y = bench_bf16_to_float(want[i]);
        if (!(fabs(x - y) <= 0.02 * (rms + fabs(y)))) return *bad = i, 0;
    }
    return 1;
}

/* xorshift64: the benchmarks' seeded random stream (*s must not be 0). */
static inline uint64_t bench_xorshift(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* Median microseconds of `reps` runs of launch(ctx) on b->stream, after one
 * warm-up, each preceded by an L2 flush. Negative on failure. */
typedef qilin_status (*bench_launch_fn)(void *ctx, qilin_stream *stream);
static inline double bench_time_us(bench_device *b, bench_launch_fn launch, void *ctx, int reps) {
    enum { MAX_REPS = 64 };
    double us[MAX_REPS];
    if (reps > MAX_REPS) reps = MAX_REPS;
    if (reps < 1) reps = 1;
    if (launch(ctx, b->stream) != QILIN_OK || qilin_stream_synchronize(b->stream) != QILIN_OK) return -1.0;
    for (int r = 0; r < reps; r++) {
        if (b->flush_bytes && qilin_memset(b->flush, r & 0xFF, b->flush_bytes, b->stream) != QILIN_OK) return -1.0;
        float ms = 0.0f;
        if (qilin_event_record(b->start, b->stream) != QILIN_OK || launch(ctx, b->stream) != QILIN_OK ||
            qilin_event_record(b->stop, b->stream) != QILIN_OK || qilin_event_synchronize(b->stop) != QILIN_OK ||
            qilin_event_elapsed_ms(b->start, b->stop, &ms) != QILIN_OK)
            return -1.0;
        us[r] = 1e3 * ms;
    }
    return bench_median(us, reps);
}

/* One result row: time, bytes moved at least, FLOPs; prints GB/s, TFLOP/s,
 * whichever fraction of peak binds (the larger one), then `extra` (may be ""). */
static inline void bench_row(const bench_device *b, const char *what, double us, double bytes, double flops,
                      const char *extra) {
    double gbs = bytes / (us * 1e3), tflops = flops / (us * 1e6);
    double bw_frac = b->gbs > 0 ? gbs / b->gbs : 0.0, fl_frac = b->bf16_tflops > 0 ? tflops / b->bf16_tflops : 0.0;
    printf("%-48s %10.1f %9.1f %8.2f   %5.1f %% of %-9s %s\n", what, us, gbs, tflops,
           100.0 * (bw_frac >= fl_frac ? bw_frac : fl_frac), bw_frac >= fl_frac ? "bandwidth" : "bf16 peak", extra);
}

/* The flags of the shape-table benchmarks: --reps N, --tiny, --help/-h.
 * Returns -1 to go on, else the exit status (usage printed on stderr). */
static inline int bench_parse_args(int argc, char **argv, const char *name, int *reps, int *tiny) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            *reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tiny"))
            *tiny = 1;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--tiny]\n", name);
            return !(strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0);
        }
    }
    return -1;
}

static inline void bench_header(const char *first) {
    printf("%-48s %10s %9s %8s   %s\n", first, "us", "GB/s", "TFLOP/s", "% of peak");
}

#endif /* QILIN_BENCH_UTIL_H */
