/* gguf.h — strict, zero-copy reader for llama.cpp GGUF files (versions 2 and 3).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 * kv_count × (string key, u32 type, value), tensor_count × (string name,
 * u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset), padding to
 * general.alignment (default 32), then the data section. Strings are u64
 * length + bytes (not NUL-terminated); arrays are u32 element type, u64 count,
 * elements. ne[0] is the fastest-varying dimension.
 *
 * The file is mmap'd read-only and fully validated at open: every count,
 * length and offset is checked against the file size before anything is
 * allocated, keys and tensor names are unique, tensor data lies inside the
 * file without overlap. String values and tensor data point into the mapping
 * and live until gguf_close. Errors are QILIN_ERR_FORMAT naming the file and
 * what was being read; QILIN_ERR_IO when the file cannot be opened.
 *
 * Thread safety: read-only queries on an open handle may run concurrently. */
#ifndef QILIN_HOST_GGUF_H
#define QILIN_HOST_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
/*      enum              id  name     scalar C type */
#define GGUF_TYPE_TABLE(X)                        \
    X(GGUF_TYPE_UINT8,     0, "uint8",   uint8_t)  \
    X(GGUF_TYPE_INT8,      1, "int8",    int8_t)   \
    X(GGUF_TYPE_UINT16,    2, "uint16",  uint16_t) \
    X(GGUF_TYPE_INT16,     3, "int16",   int16_t)  \
    X(GGUF_TYPE_UINT32,    4, "uint32",  uint32_t) \
    X(GGUF_TYPE_INT32,     5, "int32",   int32_t)  \
    X(GGUF_TYPE_FLOAT32,   6, "float32", float)    \
    X(GGUF_TYPE_BOOL,      7, "bool",    bool)     \
    X(GGUF_TYPE_STRING,    8, "string",  gguf_str) \
    X(GGUF_TYPE_ARRAY,     9, "array",   gguf_array) \
    X(GGUF_TYPE_UINT64,   10, "uint64",  uint64_t) \
    X(GGUF_TYPE_INT64,    11, "int64",   int64_t)  \
    X(GGUF_TYPE_FLOAT64,  12, "float64", double)
/* clang-format on */

typedef enum gguf_type {
#define GGUF_TYPE_ENUM_(name, id, text, ctype) name = id,
    GGUF_TYPE_TABLE(GGUF_TYPE_ENUM_)
#undef GGUF_TYPE_ENUM_
} gguf_type;

/* "uint32"; "?" outside the table. */
const char *gguf_type_name(gguf_type t);

/* clang-format off */
/* ggml tensor types with a known block layout (ids from ggml.h).
 *      enum              id  name    elements/block  bytes/block */
#define GGUF_DTYPE_TABLE(X)                  \
    X(GGUF_DT_F32,      0, "F32",     1,   4)  \
    X(GGUF_DT_F16,      1, "F16",     1,   2)  \
    X(GGUF_DT_Q4_0,     2, "Q4_0",   32,  18)  \
    X(GGUF_DT_Q4_1,     3, "Q4_1",   32,  20)  \
    X(GGUF_DT_Q5_0,     6, "Q5_0",   32,  22)  \
    X(GGUF_DT_Q5_1,     7, "Q5_1",   32,  24)  \
    X(GGUF_DT_Q8_0,     8, "Q8_0",   32,  34)  \
    X(GGUF_DT_Q8_1,     9, "Q8_1",   32,  36)  \
    X(GGUF_DT_Q2_K,    10, "Q2_K",  256,  84)  \
    X(GGUF_DT_Q3_K,    11, "Q3_K",  256, 110)  \
    X(GGUF_DT_Q4_K,    12, "Q4_K",  256, 144)  \
    X(GGUF_DT_Q5_K,    13, "Q5_K",  256, 176)  \
    X(GGUF_DT_Q6_K,    14, "Q6_K",  256, 210)  \
    X(GGUF_DT_Q8_K,    15, "Q8_K",  256, 292)  \
    X(GGUF_DT_I8,      24, "I8",      1,   1)  \
    X(GGUF_DT_I16,     25, "I16",     1,   2)  \
    X(GGUF_DT_I32,     26, "I32",     1,   4)  \
    X(GGUF_DT_I64,     27, "I64",     1,   8)  \
    X(GGUF_DT_F64,     28, "F64",     1,   8)  \
    X(GGUF_DT_BF16,    30, "BF16",    1,   2)
/* clang-format on */

typedef enum gguf_dtype {
#define GGUF_DTYPE_ENUM_(name, id, text, blck, bytes) name = id,
    GGUF_DTYPE_TABLE(GGUF_DTYPE_ENUM_)
#undef GGUF_DTYPE_ENUM_
} gguf_dtype;

/* Elements and bytes per block; both 0 for a type not in the table. */
int gguf_dtype_block(gguf_dtype t, size_t *block_bytes);
const char *gguf_dtype_name(gguf_dtype t);

typedef struct gguf_str {
    const char *data; /* into the mapping; NOT NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_array {
    gguf_type type; /* element type (never ARRAY) */
    uint64_t count;
    const void *data;     /* raw little-endian elements, possibly unaligned; NULL for strings */
    const gguf_str *strs; /* for arrays of strings, count entries */
} gguf_array;

typedef struct gguf_kv {
    const char *key; /* NUL-terminated copy */
    gguf_type type;
    union {
        uint64_t u; /* UINT8..UINT64 */
        int64_t i;  /* INT8..INT64 */
        double f;   /* FLOAT32, FLOAT64 */
        bool b;
        gguf_str str;
        gguf_array arr;
    } v;
} gguf_kv;

enum { GGUF_MAX_DIMS = 4 };

typedef struct gguf_tensor {
    const char *name; /* NUL-terminated copy */
    gguf_dtype type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    const void *data;          /* into the mapping */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

qilin_status gguf_open(const char *path, gguf_file **out);
void gguf_close(gguf_file *f); /* NULL does nothing */

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* absolute byte offset of the data section */

int64_t gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);         /* file order */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key); /* NULL if absent */

/* Typed getters: QILIN_ERR_FORMAT naming the file and key when it is absent
 * or has another type (the message names the actual type). No conversions. */
qilin_status gguf_get_u8(const gguf_file *f, const char *key, uint8_t *v);
qilin_status gguf_get_i8(const gguf_file *f, const char *key, int8_t *v);
qilin_status gguf_get_u16(const gguf_file *f, const char *key, uint16_t *v);
qilin_status gguf_get_i16(const gguf_file *f, const char *key, int16_t *v);
qilin_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *v);
qilin_status gguf_get_i32(const gguf_file *f, const char *key, int32_t *v);
qilin_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *v);
qilin_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *v);
qilin_status gguf_get_f32(const gguf_file *f, const char *key, float *v);
qilin_status gguf_get_f64(const gguf_file *f, const char *key, double *v);
qilin_status gguf_get_bool(const gguf_file *f, const char *key, bool *v);
qilin_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *v);
/* An array whose elements have type `elem` (a type mismatch names both). */
qilin_status gguf_get_array(const gguf_file *f, const char *key, gguf_type elem, gguf_array *v);

/* Element i of a numeric array, widened (no range check on i: callers loop
 * to count). Integers read as int64 (uint64 above INT64_MAX wraps), floats as double. */
int64_t gguf_array_int(const gguf_array *a, uint64_t i);
double gguf_array_float(const gguf_array *a, uint64_t i);

int64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i); /* file order */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
qilin_status gguf_get_tensor(const gguf_file *f, const char *name, const gguf_tensor **out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_GGUF_H */
