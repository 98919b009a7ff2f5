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

/* The separator between a context and the message it prefixes: none when the
 * context already ends in ": " (older callers spell it), " " after a bare
 * ':', else ": ", so "layer 0" + "head_dim=20" reads "layer 0: head_dim=20". */
static const char *context_separator(const char *context, size_t n, const char *message) {
    if (!message[0]) return "";
    if (n >= 2 && context[n - 2] == ':' && context[n - 1] == ' ') return "";
    if (n >= 1 && context[n - 1] == ':') return " ";
    return ": ";
}

qilin_status qilin_error_context(qilin_status status, const char *fmt, ...) {
    char previous[QILIN_ERROR_MESSAGE_MAX], context[QILIN_ERROR_MESSAGE_MAX];
    memcpy(previous, error_message, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    if (n < 0) return status; /* a bad format: keep the inner message */
    size_t len = (size_t)n < sizeof context ? (size_t)n : sizeof context - 1, at = 0;
    const char *parts[3] = {context, context_separator(context, len, previous), previous};
    for (int i = 0; i < 3; i++) /* joined, truncated to the buffer */
        for (const char *c = parts[i]; *c && at + 1 < sizeof error_message; c++) error_message[at++] = *c;
    error_message[at] = '\0';
    return status;
}

const char *qilin_last_error(void) { return error_message; }

void qilin_clear_error(void) { error_message[0] = '\0'; }
