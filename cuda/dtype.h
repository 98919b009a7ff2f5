/* dtype.h — element types shared by the device layer, BLAS and comm. */
#ifndef QILIN_DTYPE_H
#define QILIN_DTYPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*      enum                bytes  name */
#define QILIN_DTYPE_TABLE(X)          \
    X(QILIN_F32,             4, "f32")  \
    X(QILIN_F16,             2, "f16")  \
    X(QILIN_BF16,            2, "bf16") \
    X(QILIN_FP8_E4M3,        1, "fp8_e4m3") \
    X(QILIN_I32,             4, "i32")  \
    X(QILIN_I64,             8, "i64")  \
    X(QILIN_I8,              1, "i8")   \
    X(QILIN_U8,              1, "u8")

typedef enum qilin_dtype {
#define QILIN_DTYPE_ENUM_(name, bytes, text) name,
    QILIN_DTYPE_TABLE(QILIN_DTYPE_ENUM_)
#undef QILIN_DTYPE_ENUM_
    QILIN_DTYPE_COUNT
} qilin_dtype;

/* Bytes per element; 0 for a value outside the table. */
static inline size_t qilin_dtype_size(qilin_dtype t) {
    switch (t) {
#define QILIN_DTYPE_SIZE_(name, bytes, text) \
    case name: return bytes;
        QILIN_DTYPE_TABLE(QILIN_DTYPE_SIZE_)
#undef QILIN_DTYPE_SIZE_
    default: return 0;
    }
}

/* "bf16"; "?" for a value outside the table. */
static inline const char *qilin_dtype_name(qilin_dtype t) {
    switch (t) {
#define QILIN_DTYPE_NAME_(name, bytes, text) \
    case name: return text;
        QILIN_DTYPE_TABLE(QILIN_DTYPE_NAME_)
#undef QILIN_DTYPE_NAME_
    default: return "?";
    }
}

#ifdef __cplusplus
}
#endif
#endif /* QILIN_DTYPE_H */
