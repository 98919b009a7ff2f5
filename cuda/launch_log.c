/* launch_log.c — QILIN_LAUNCH_LOG: one JSON line per kernel launch (launch_log.h). */
#include "launch_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LOG_UNREAD, LOG_OFF, LOG_ON, LOG_FAILED };

static atomic_int log_state = LOG_UNREAD;
static atomic_llong log_step;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;        /* under log_lock */
static char log_path[512];    /* for the messages */
static char log_error[1024];  /* the first failure, kept for every later launch */

long long qilin_launch_log_next_step(void) { return atomic_fetch_add(&log_step, 1) + 1; }

long long qilin_launch_log_step(void) { return atomic_load(&log_step); }

/* Reads the variable and opens the file, once; under log_lock. */
static void log_open_locked(void) {
    if (atomic_load(&log_state) != LOG_UNREAD) return;
    const char *path = getenv("QILIN_LAUNCH_LOG");
    if (!path || !*path) {
        atomic_store(&log_state, LOG_OFF);
        return;
    }
    snprintf(log_path, sizeof log_path, "%s", path);
    log_file = fopen(path, "a");
    if (!log_file) {
        snprintf(log_error, sizeof log_error, "QILIN_LAUNCH_LOG=%s: cannot open for append: %s", path,
                 strerror(errno));
        atomic_store(&log_state, LOG_FAILED);
        return;
    }
    atomic_store(&log_state, LOG_ON);
}

/* The kernel's name without the parentheses a templated kernel is launched
 * in (QILIN_LAUNCH((k<T, 4>), ...)): its first *len characters from the result. */
static const char *bare_name(const char *name, size_t *len) {
    if (!name) name = "?";
    *len = strlen(name);
    if (*len >= 2 && name[0] == '(' && name[*len - 1] == ')') {
        *len -= 2;
        return name + 1;
    }
    return name;
}

/* The name as a JSON string body: quotes and backslashes escaped, control
 * characters dropped (names come from the source, but the line stays valid). */
static void put_json_name(FILE *f, const char *name, size_t len) {
    for (const char *c = name; c < name + len; c++) {
        if (*c == '"' || *c == '\\') fputc('\\', f);
        if ((unsigned char)*c >= 0x20) fputc(*c, f);
    }
}

qilin_status qilin_launch_log(const char *kernel, const unsigned grid[3], const unsigned block[3],
                              size_t smem_bytes, long long bytes) {
    int state = atomic_load(&log_state);
    if (state == LOG_OFF) return QILIN_OK;
    size_t name_len;
    const char *name = bare_name(kernel, &name_len);
    pthread_mutex_lock(&log_lock);
    log_open_locked();
    state = atomic_load(&log_state);
    if (state == LOG_ON) {
        fputs("{\"kernel\":\"", log_file);
        put_json_name(log_file, name, name_len);
        fprintf(log_file, "\",\"grid\":[%u,%u,%u],\"block\":[%u,%u,%u],\"smem\":%zu,\"step\":%lld", grid[0],
                grid[1], grid[2], block[0], block[1], block[2], smem_bytes, qilin_launch_log_step());
        if (bytes >= 0) fprintf(log_file, ",\"bytes\":%lld", bytes);
        fputs("}\n", log_file);
        /* Flushed per line: a crash or abort still leaves every launch before it. */
        if (fflush(log_file) != 0 || ferror(log_file)) {
            snprintf(log_error, sizeof log_error, "QILIN_LAUNCH_LOG=%s: writing failed: %s", log_path,
                     strerror(errno));
            atomic_store(&log_state, LOG_FAILED);
            state = LOG_FAILED;
        }
    }
    char why[sizeof log_error];
    if (state == LOG_FAILED) memcpy(why, log_error, sizeof why);
    pthread_mutex_unlock(&log_lock);
    if (state == LOG_FAILED)
        return qilin_error(QILIN_ERR_IO, "kernel %.*s: %s", (int)name_len, name, why);
    return QILIN_OK;
}
