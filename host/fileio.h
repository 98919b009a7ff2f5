/* fileio.h — the one way qilin opens a file it reads: checkpoints, configs,
 * tokenizer files and chat templates.
 *
 * A path that names a FIFO, a directory or a device is refused with an error
 * naming the file instead of blocking in open() (a FIFO with no writer blocks
 * forever) or reading something endless (/dev/zero). The path is checked with
 * stat() first, then opened with O_NONBLOCK, which never waits for a FIFO's
 * writer, and the open descriptor is checked again with fstat(), so a file
 * swapped for a FIFO between the two calls is refused too. Symbolic links are
 * followed (the Hugging Face cache links every file into its blob store). */
#ifndef QILIN_HOST_FILEIO_H
#define QILIN_HOST_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a regular file read-only (blocking mode restored, close-on-exec);
 * *size receives its size. Missing: QILIN_ERR_IO ("cannot open: No such file
 * or directory"); not a regular file: QILIN_ERR_IO ("is a FIFO, not a regular
 * file"). */
qilin_status qilin_file_open(const char *path, int *fd, size_t *size);
/* The same as a stdio stream ("rb"). */
qilin_status qilin_file_fopen(const char *path, FILE **out);
/* Reads the whole file into a malloc'd, NUL-terminated buffer; a file larger
 * than max_bytes is QILIN_ERR_FORMAT naming the file and the limit. */
qilin_status qilin_file_read(const char *path, size_t max_bytes, char **buf, size_t *len);
/* The one entry of `dir` whose name ends in `suffix` (".gguf"), as "dir/name"
 * in out; false when there is none, more than one, or the path does not fit. */
bool qilin_file_find_single(const char *dir, const char *suffix, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_FILEIO_H */
