/* status.h — qilin's one status enum and the thread-local error message.
 *
 * Every library function that can fail returns a qilin_status. On failure it
 * also leaves a message in a thread-local buffer that names the file, tensor,
 * kernel, request or parameter at fault; qilin_last_error() reads it. The
 * table below is the single definition of the codes (an X-macro), so names,
 * strings and the enum cannot drift apart. runtime/qilin.h re-exports it. */
#ifndef QILIN_STATUS_H
#define QILIN_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/*         enum name                     value  one-line meaning */
#define QILIN_STATUS_TABLE(X)                                                       \
    X(QILIN_OK,                            0, "success")                            \
    X(QILIN_ERR_INVALID_ARGUMENT,          1, "invalid argument")                   \
    X(QILIN_ERR_OUT_OF_MEMORY,             2, "out of memory")                      \
    X(QILIN_ERR_NO_DEVICE,                 3, "no such device")                     \
    X(QILIN_ERR_DEVICE,                    4, "device error")                       \
    X(QILIN_ERR_KERNEL,                    5, "kernel failed")                      \
    X(QILIN_ERR_BLAS,                      6, "BLAS error")                         \
    X(QILIN_ERR_COMM,                      7, "communication error")                \
    X(QILIN_ERR_UNSUPPORTED,               8, "unsupported")                        \
    X(QILIN_ERR_IO,                        9, "I/O error")                          \
    X(QILIN_ERR_FORMAT,                   10, "malformed input")                    \
    X(QILIN_ERR_INTERNAL,                 11, "internal error")

typedef enum qilin_status {
#define QILIN_STATUS_ENUM_(name, value, text) name = value,
    QILIN_STATUS_TABLE(QILIN_STATUS_ENUM_)
#undef QILIN_STATUS_ENUM_
} qilin_status;

/* "QILIN_ERR_OUT_OF_MEMORY"; "QILIN_STATUS_UNKNOWN" for a value not in the table. */
const char *qilin_status_name(qilin_status status);
/* "out of memory"; "unknown status" for a value not in the table. */
const char *qilin_status_string(qilin_status status);

/* Records a formatted message for the calling thread and returns `status`, so
 * that `return qilin_error(QILIN_ERR_..., "...", ...)` is the idiom. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
qilin_status qilin_error(qilin_status status, const char *fmt, ...);

/* The calling thread's last message; "" when none. Valid until the next
 * qilin_error() or qilin_clear_error() on this thread. */
const char *qilin_last_error(void);
void qilin_clear_error(void);

/* Prefixes the calling thread's message with context ("loading layer 3")
 * while passing the status through; for callers that add where, not what.
 * Context and message are always joined by ": " (a context that already ends
 * in ": " gets nothing more); with no message the context stands alone. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
qilin_status qilin_error_context(qilin_status status, const char *fmt, ...);

/* Propagates a failing status to the caller. */
#define QILIN_TRY(expr)                                                                \
    do {                                                                               \
        qilin_status qilin_try_status_ = (expr);                                       \
        if (qilin_try_status_ != QILIN_OK) return qilin_try_status_;                   \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif /* QILIN_STATUS_H */
