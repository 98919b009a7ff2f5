/* dtype_io.h — storage conversions for kernel tests: read and write element i
 * of a byte buffer holding f32, bf16 or f16, so references see exactly the
 * rounded values the kernels see. */
#ifndef QILIN_TESTS_DTYPE_IO_H
#define QILIN_TESTS_DTYPE_IO_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <vector>

#include "cuda/dtype.h"

inline double value_of(const std::vector<unsigned char> &buf, size_t i, qilin_dtype t) {
    if (t == QILIN_F32) {
        float f;
        std::memcpy(&f, &buf[4 * i], 4);
        return f;
    }
    if (t == QILIN_BF16) {
        __nv_bfloat16 h;
        std::memcpy(&h, &buf[2 * i], 2);
        return __bfloat162float(h);
    }
    __half h;
    std::memcpy(&h, &buf[2 * i], 2);
    return __half2float(h);
}

inline void store(std::vector<unsigned char> &buf, size_t i, double v, qilin_dtype t) {
    if (t == QILIN_F32) {
        float f = (float)v;
        std::memcpy(&buf[4 * i], &f, 4);
    } else if (t == QILIN_BF16) {
        __nv_bfloat16 h = __float2bfloat16_rn((float)v);
        std::memcpy(&buf[2 * i], &h, 2);
    } else {
        __half h = __float2half_rn((float)v);
        std::memcpy(&buf[2 * i], &h, 2);
    }
}

/* v rounded to the storage type, as a kernel that stores an intermediate sees it. */
inline double rounded(double v, qilin_dtype t) {
    if (t == QILIN_F32) return (float)v;
    if (t == QILIN_BF16) return __bfloat162float(__float2bfloat16_rn((float)v));
    return __half2float(__float2half_rn((float)v));
}

#endif /* QILIN_TESTS_DTYPE_IO_H */
