/* gemv_stage.cuh — the step every decode GEMV shares (gemv.cu, gemv_quant.cu):
 * one chunk of x's rows staged in shared memory, where each warp then reads
 * it back for every weight vector it streams; and the fixed-order reduction
 * of the warps' sums into y. */
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

/* The end of every GEMV: each warp's sums reduced across its lanes into
 * partial[warp], then, after a barrier, each output (row, i) of the block's
 * `groups` row groups is the sum of its group's ksplit warps in a fixed order
 * (deterministic), plus bias, rounded once to T or stored as f32. */
template <class T, int M, int kWarps, int kRows>
__device__ inline void gemv_reduce_store(float (*partial)[kRows][M], const float (&acc)[kRows][M], int groups,
                                         int ksplit, const T *bias, void *y, int64_t ldy, bool y_f32, int m, int n,
                                         int block) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int i = 0; i < M; i++) {
            float s = warp_reduce_sum(acc[r][i]);
            if (lane == 0) partial[warp][r][i] = s;
        }
    __syncthreads();
    for (int idx = threadIdx.x; idx < groups * kRows * M; idx += blockDim.x) {
        int g = idx / (kRows * M), r = idx / M % kRows, i = idx % M;
        int row = (block * groups + g) * kRows + r;
        if (row >= n || i >= m) continue;
        float s = bias ? to_float(bias[row]) : 0.0f;
        for (int p = 0; p < ksplit; p++) s += partial[g * ksplit + p][r][i]; /* fixed order */
        if (y_f32) static_cast<float *>(y)[(size_t)i * ldy + row] = s;
        else static_cast<T *>(y)[(size_t)i * ldy + row] = from_float<T>(s);
    }
}

/* The same for a kernel whose block `blockIdx.x` owns row groups from row 0. */
template <class T, int M, int kWarps, int kRows>
__device__ inline void gemv_reduce_store(float (*partial)[kRows][M], const float (&acc)[kRows][M], int groups,
                                         int ksplit, const T *bias, void *y, int64_t ldy, bool y_f32, int m, int n) {
    gemv_reduce_store<T, M, kWarps, kRows>(partial, acc, groups, ksplit, bias, y, ldy, y_f32, m, n, (int)blockIdx.x);
}

#endif /* QILIN_GEMV_STAGE_CUH */
