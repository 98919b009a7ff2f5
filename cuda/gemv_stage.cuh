/* gemv_stage.cuh — the step every decode GEMV shares (gemv.cu, gemv_quant.cu):
 * one chunk of x's rows staged in shared memory, where each warp then reads
 * it back for every weight vector it streams. */
#ifndef QILIN_GEMV_STAGE_CUH
#define QILIN_GEMV_STAGE_CUH

#include "common.cuh"

/* xs[i * chunk + j] = x[i][c0 + j] for j < len and rows i < m; rows m .. M-1
 * (the padding up to the instantiated M) are zeros, so they multiply-add
 * nothing. 16-byte groups when kVec (len a multiple of the group), single
 * elements otherwise; every thread of the block takes part. The caller puts a
 * barrier before (the previous chunk is consumed) and after (it is complete). */
template <class T, int M, bool kVec>
__device__ inline void gemv_stage_x(T *xs, const T *x, int m, int64_t ldx, int c0, int len, int chunk) {
    constexpr int G = kVec ? Vec16<T>::n : 1;
    const int groups = len / G;
    for (int idx = threadIdx.x; idx < M * groups; idx += blockDim.x) {
        const int i = idx / groups, v = idx % groups;
        alignas(16) T t[G];
        if (i < m) {
            load_elems<T, kVec>(t, x + (size_t)i * ldx + c0, v);
        } else {
#pragma unroll
            for (int e = 0; e < G; e++) t[e] = from_float<T>(0.0f);
        }
        store_elems<T, kVec>(xs + (size_t)i * chunk, t, v);
    }
}

#endif /* QILIN_GEMV_STAGE_CUH */
