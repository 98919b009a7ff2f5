/* fuzz_util.h — shared by the libFuzzer targets: hand an input to a reader
 * that takes a path, and check invariants loudly (abort, which libFuzzer
 * reports as a crash with the input saved). */
#ifndef QILIN_FUZZ_UTIL_H
#define QILIN_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cuda/status.h"

/* Fails the run with a message when `cond` is false. */
#define FUZZ_CHECK(cond, ...)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d): ", #cond, __FILE__, __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* A failing reader returns a status from the table and leaves a message. */
static inline void fuzz_check_failure(qilin_status s) {
    FUZZ_CHECK(s == QILIN_ERR_FORMAT || s == QILIN_ERR_IO || s == QILIN_ERR_UNSUPPORTED ||
                   s == QILIN_ERR_INVALID_ARGUMENT,
               "unexpected status %s: %s", qilin_status_name(s), qilin_last_error());
    FUZZ_CHECK(qilin_last_error()[0] != '\0', "status %s without a message", qilin_status_name(s));
}

static inline void fuzz_write_all(int fd, const uint8_t *data, size_t size) {
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) abort();
        done += (size_t)n;
    }
}

/* The input as a file: one memfd per process, rewritten for every input;
 * returns its /proc/self/fd path. */
static inline const char *fuzz_input_path(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("qilin_fuzz_input", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    fuzz_write_all(fd, data, size);
    return path;
}

#endif /* QILIN_FUZZ_UTIL_H */
