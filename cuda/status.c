/* status.c — names of the status codes and the thread-local error message. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { QILIN_ERROR_MESSAGE_MAX = 2048 };

static _Thread_local char error_message[QILIN_ERROR_MESSAGE_MAX];

const char *qilin_status_name(qilin_status status) {
    switch (status) {
#define QILIN_STATUS_NAME_(name, value, text) \
    case name: return #name;
        QILIN_STATUS_TABLE(QILIN_STATUS_NAME_)
#undef QILIN_STATUS_NAME_
    }
    return "QILIN_STATUS_UNKNOWN";
}

const char *qilin_status_string(qilin_status status) {
    switch (status) {
#define QILIN_STATUS_STRING_(name, value, text) \
    case name: return text;
        QILIN_STATUS_TABLE(QILIN_STATUS_STRING_)
#undef QILIN_STATUS_STRING_
    }
    return "unknown status";
}

qilin_status qilin_error(qilin_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return status;
}

qilin_status qilin_error_context(qilin_status status, const char *fmt, ...) {
    char previous[QILIN_ERROR_MESSAGE_MAX];
    memcpy(previous, error_message, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof error_message)
        snprintf(error_message + n, sizeof error_message - (size_t)n, "%s", previous);
    return status;
}

const char *qilin_last_error(void) { return error_message; }

void qilin_clear_error(void) { error_message[0] = '\0'; }
