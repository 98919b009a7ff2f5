/* fp8_decode.cuh — e4m3fn byte -> f32, exactly, shared by the FP8 GEMV
 * (gemv_quant.cu) and the FP8 GEMM (gemm_fp8.cu). */
#ifndef QILIN_FP8_DECODE_CUH
#define QILIN_FP8_DECODE_CUH

#include <stdint.h>

#include "kernel.h"

/* The 7 magnitude bits placed under the f32 exponent field give
 * 2^(e-127)(1 + m/8) (or m/8 * 2^-126 for e = 0); 2^120 rebiases to e4m3's
 * 2^(e-7). 0x7f/0xff are NaN (e4m3fn has no infinities). */
__device__ inline float fp8_e4m3_to_float(uint32_t b) {
    float mag = __uint_as_float((b & 0x7fu) << 20) * 0x1p120f;
    if ((b & 0x7fu) == 0x7fu) mag = __uint_as_float(0x7fc00000u);
    return (b & 0x80u) ? -mag : mag;
}

#endif /* QILIN_FP8_DECODE_CUH */
