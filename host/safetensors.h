/* safetensors.h — strict, zero-copy reader for Hugging Face .safetensors files
 * and sharded checkpoints (model.safetensors.index.json).
 *
 * A file is mmap'd read-only; every st_tensor's `data` points into the mapping
 * and stays valid until the owning st_file / st_checkpoint is closed. The whole
 * header is validated at open (dtype, shape × dtype size = byte span, offsets
 * in bounds, spans sorted, contiguous and non-overlapping, unique names,
 * __metadata__ an object of strings), so later lookups cannot fail on a bad
 * file. Errors are QILIN_ERR_FORMAT (malformed) or QILIN_ERR_IO (cannot
 * read), with a message naming the file and the tensor.
 *
 * Thread safety: open/close are not concurrent with other calls on the same
 * handle; all read-only queries on an open handle may run concurrently. */
#ifndef QILIN_HOST_SAFETENSORS_H
#define QILIN_HOST_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
/*      enum         bytes  name in the header */
#define ST_DTYPE_TABLE(X)        \
    X(ST_F64,          8, "F64")     \
    X(ST_F32,          4, "F32")     \
    X(ST_F16,          2, "F16")     \
    X(ST_BF16,         2, "BF16")    \
    X(ST_F8_E4M3,      1, "F8_E4M3") \
    X(ST_I64,          8, "I64")     \
    X(ST_I32,          4, "I32")     \
    X(ST_I16,          2, "I16")     \
    X(ST_I8,           1, "I8")      \
    X(ST_U8,           1, "U8")      \
    X(ST_BOOL,         1, "BOOL")
/* clang-format on */

typedef enum st_dtype {
#define ST_DTYPE_ENUM_(name, bytes, text) name,
    ST_DTYPE_TABLE(ST_DTYPE_ENUM_)
#undef ST_DTYPE_ENUM_
        ST_DTYPE_COUNT
} st_dtype;

/* Bytes per element; 0 outside the table. */
size_t st_dtype_size(st_dtype t);
/* "BF16" as spelled in headers; "?" outside the table. */
const char *st_dtype_name(st_dtype t);

enum { ST_MAX_DIMS = 8 };

typedef struct st_tensor {
    const char *name; /* NUL-terminated, owned by the file handle */
    const char *file; /* path of the file holding the data */
    st_dtype dtype;
    int ndim;                   /* 0 (scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* row-major, shape[ndim-1] fastest */
    const void *data;           /* into the read-only mapping */
    size_t nbytes;              /* = product(shape) * st_dtype_size(dtype) */
} st_tensor;

/* ---- one .safetensors file ---- */

typedef struct st_file st_file;

/* Maps and validates `path`. On success *out owns the mapping; on failure
 * *out is NULL and nothing is left open. */
qilin_status st_open(const char *path, st_file **out);
/* Unmaps; NULL does nothing. Every pointer obtained from `f` dies with it. */
void st_close(st_file *f);

const char *st_path(const st_file *f);
int st_tensor_count(const st_file *f);
/* Tensors in data order (ascending offset), 0 <= i < st_tensor_count. */
const st_tensor *st_tensor_at(const st_file *f, int i);
/* NULL when absent (for optional tensors). */
const st_tensor *st_find(const st_file *f, const char *name);
/* Like st_find, but a missing tensor is QILIN_ERR_FORMAT naming it and the file. */
qilin_status st_get(const st_file *f, const char *name, const st_tensor **out);

/* __metadata__ (string → string): count, i-th pair, lookup (NULL if absent). */
int st_metadata_count(const st_file *f);
void st_metadata_at(const st_file *f, int i, const char **key, const char **value);
const char *st_metadata_get(const st_file *f, const char *key);

/* ---- a checkpoint: one file, or shards named by an index ---- */

typedef struct st_checkpoint st_checkpoint;

/* `path` may be a directory (holding model.safetensors.index.json, else
 * model.safetensors), an index .json file, or a single .safetensors file.
 * With an index, every shard is opened once and every tensor of weight_map
 * must be present in the shard it names; tensors are the weight_map's. */
qilin_status st_checkpoint_open(const char *path, st_checkpoint **out);
void st_checkpoint_close(st_checkpoint *c);

int st_checkpoint_tensor_count(const st_checkpoint *c);
/* Sorted by name. */
const st_tensor *st_checkpoint_tensor_at(const st_checkpoint *c, int i);
const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name);
qilin_status st_checkpoint_get(const st_checkpoint *c, const char *name, const st_tensor **out);
int st_checkpoint_file_count(const st_checkpoint *c);
const st_file *st_checkpoint_file_at(const st_checkpoint *c, int i);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_SAFETENSORS_H */
