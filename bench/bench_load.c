/* bench_load.c — weight-load bandwidth of the upload engine (host/upload.h)
 * against the page cache it reads from.
 *
 *   bench_load [size] [--file PATH] [--reps N] [--staging MiB] [--buffers N]
 *
 * size: bytes with an optional K/M/G suffix (binary), default 1G (256M in the
 * sim build). Without --file a temporary file of that size is written (random
 * bytes) and removed at the end; with --file an existing file (a checkpoint
 * shard) is used whole.
 *
 * 1. page cache: the file is read twice with read() into a 64 MiB buffer;
 *    the second pass (all pages cached) is timed, median of --reps.
 * 2. load: the file is mapped afresh (so page faults are part of the cost, as
 *    in a real load), uploaded to device 0 as one job, median of --reps; the
 *    device copy is checked once against the file.
 * Reports load GB/s and its fraction of the page-cache read bandwidth. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cuda/device.h"
#include "host/upload.h"

enum { CHUNK = 64 << 20, MAX_REPS = 16 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int fail(const char *what) {
    fprintf(stderr, "bench_load: %s: %s\n", what, qilin_last_error());
    return 1;
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) return 0;
    double m = 1;
    if (*end == 'K' || *end == 'k')
        m = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        m = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        m = 1024.0 * 1024 * 1024, end++;
    if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0) return 0;
    *out = (size_t)(v * m);
    return *out > 0;
}

static int write_temp(char *path, size_t size, char *buf) {
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + 8 <= CHUNK; i += 8) { /* one chunk of random words, repeated with a counter */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    for (size_t off = 0; off < size;) {
        size_t n = size - off < CHUNK ? size - off : CHUNK;
        memcpy(buf, &off, sizeof off); /* chunks differ */
        if (write(fd, buf, n) != (ssize_t)n) return close(fd), -1;
        off += n;
    }
    return fd;
}

static double read_pass(int fd, size_t size, char *buf) {
    double t = now_s();
    size_t total = 0;
    for (off_t off = 0; total < size;) {
        ssize_t n = pread(fd, buf, CHUNK, off);
        if (n <= 0) return -1;
        total += (size_t)n;
        off += n;
    }
    return now_s() - t;
}

static int check_device(const void *dev, const char *file, size_t size, char *buf) {
    for (size_t off = 0; off < size; off += CHUNK) {
        size_t n = size - off < CHUNK ? size - off : CHUNK;
        if (qilin_memcpy_d2h(buf, (const char *)dev + off, n, NULL) != QILIN_OK ||
            qilin_device_synchronize() != QILIN_OK)
            return fail("reading back"), 0;
        if (memcmp(buf, file + off, n) != 0) {
            fprintf(stderr, "bench_load: device copy differs from the file in bytes [%zu, %zu)\n", off,
                    off + n);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv) {
#ifdef QILIN_SIM
    size_t size = (size_t)256 << 20;
#else
    size_t size = (size_t)1 << 30;
#endif
    const char *file = NULL;
    int reps = 3;
    qilin_upload_options uo;
    qilin_upload_options_default(&uo);
    uo.progress = 0;
    for (int i = 1; i < argc; i++) {
        size_t mib;
        if (!strcmp(argv[i], "--file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--staging") && i + 1 < argc && parse_size(argv[++i], &mib))
            uo.staging_bytes = mib << 20;
        else if (!strcmp(argv[i], "--buffers") && i + 1 < argc)
            uo.staging_buffers = atoi(argv[++i]);
        else if (argv[i][0] == '-' || !parse_size(argv[i], &size)) {
            fprintf(stderr,
                    "usage: bench_load [size] [--file PATH] [--reps N] [--staging MiB] [--buffers N]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) reps = 3;

    char *buf = malloc(CHUNK);
    char path[] = "/tmp/qilin_bench_load_XXXXXX";
    int fd = -1;
    if (!buf) return fprintf(stderr, "bench_load: out of memory\n"), 1;
    if (file) {
        struct stat st;
        if ((fd = open(file, O_RDONLY)) < 0 || fstat(fd, &st) != 0)
            return fprintf(stderr, "bench_load: %s: %s\n", file, strerror(errno)), 1;
        size = (size_t)st.st_size;
    } else if ((fd = write_temp(path, size, buf)) < 0) {
        return fprintf(stderr, "bench_load: writing a %zu-byte temporary file: %s\n", size, strerror(errno)),
               1;
    }

    /* 1. page-cache read bandwidth: warm pass, then timed passes */
    double t[MAX_REPS];
    if (read_pass(fd, size, buf) < 0) return fprintf(stderr, "bench_load: read: %s\n", strerror(errno)), 1;
    for (int r = 0; r < reps; r++) t[r] = read_pass(fd, size, buf);
    double pc_gbs = (double)size / median(t, reps) * 1e-9;

    /* 2. upload to device 0 */
    qilin_device_props props;
    void *dev = NULL;
    if (qilin_device_set(0) != QILIN_OK || qilin_device_get_props(0, &props) != QILIN_OK)
        return fail("device 0");
    if (qilin_malloc(&dev, size, "bench_load destination") != QILIN_OK) return fail("device memory");
    qilin_upload_engine *eng = NULL;
    if (qilin_upload_engine_create(&uo, &eng) != QILIN_OK) return fail("upload engine");
    qilin_upload_stats st[MAX_REPS];
    double load_t[MAX_REPS], read_s = 0, wait_s = 0;
    int checked = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (pins the staging buffers) */
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) return fprintf(stderr, "bench_load: mmap: %s\n", strerror(errno)), 1;
        qilin_upload_job job = {.src = map,
                                .src_size = size,
                                .dst = dev,
                                .device = 0,
                                .width = size,
                                .what = file ? file : "temporary file"};
        qilin_upload_stats s;
        if (qilin_upload_run(eng, &job, 1, &s) != QILIN_OK) return fail("upload");
        if (!checked && !(checked = check_device(dev, map, size, buf))) return 1;
        munmap(map, size);
        if (r < 0) continue;
        st[r] = s;
        load_t[r] = s.seconds;
        read_s += s.read_seconds / reps, wait_s += s.wait_seconds / reps;
    }
    double load_gbs = (double)size / median(load_t, reps) * 1e-9;

    printf("device 0: %s%s; staging %d x %zu MiB; %d reps, median\n", props.name,
           props.is_sim ? " [sim]" : "", uo.staging_buffers, uo.staging_bytes >> 20, reps);
    printf("| bytes | page-cache read GB/s | load GB/s | %% of page cache | copies | read s | wait s |\n");
    printf("| %zu | %.2f | %.2f | %.0f%% | %llu | %.3f | %.3f |\n", size, pc_gbs, load_gbs,
           100 * load_gbs / pc_gbs, (unsigned long long)st[0].copies, read_s, wait_s);

    qilin_upload_engine_destroy(eng);
    qilin_free(dev);
    close(fd);
    if (!file) unlink(path);
    free(buf);
    return 0;
}
