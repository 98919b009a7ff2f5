/* launch_log.h — the launch log: with QILIN_LAUNCH_LOG=FILE in the environment
 * every QILIN_LAUNCH (cuda/kernel.h), in both builds, appends one JSON line to
 * FILE:
 *
 *   {"kernel":"rmsnorm_kernel<T, true>","grid":[1,1,1],"block":[256,1,1],"smem":0,"step":3}
 *
 * plus "bytes": N where the launcher declares what the kernel is meant to read
 * (QILIN_LAUNCH_BYTES in kernel.h). "step" is the forward step the launch
 * belongs to: the forward pass calls qilin_launch_log_next_step() at the
 * start of each step (host/forward.c); launches before the first step log 0.
 * The step counter is per process: two models stepping at once share it.
 *
 * The variable is read and FILE opened (for append) once, at the first
 * launch. Lines are written whole under a lock, so launches from several
 * threads never interleave within a line. A log that cannot be opened or
 * written makes that launch, and every later one, return QILIN_ERR_IO
 * naming FILE (the user asked for the log; running without it would hide
 * that). Without the variable a launch costs one atomic load. */
#ifndef QILIN_LAUNCH_LOG_H
#define QILIN_LAUNCH_LOG_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts a new forward step and returns its number (1, 2, ...). */
long long qilin_launch_log_next_step(void);
/* The current step number (0 before the first). */
long long qilin_launch_log_step(void);

/* Appends one launch when the log is on; QILIN_OK when it is off. bytes < 0:
 * not declared (no "bytes" field). */
qilin_status qilin_launch_log(const char *kernel, const unsigned grid[3], const unsigned block[3],
                              size_t smem_bytes, long long bytes);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_LAUNCH_LOG_H */
