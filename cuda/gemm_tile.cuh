/* gemm_tile.cuh — the tiles the dequantizing GEMMs share (gemm_fp8.cu,
 * gemm_gguf.cu). Each kernel stages its own weight format into shared
 * memory; what happens after the staging is the same and lives here.
 *
 * Tensor cores (bf16 / f16): a block of 4 warps computes a 64 x 64 tile of
 * y as 2 x 2 warps of 32 x 32, each 2 m16 tiles x 4 n8 tiles of mma.sync
 * m16n8k16 with fp32 accumulators, over k-slabs of 32 columns staged as
 * x[64][32] and W[64][32] (activation dtype) in padded shared tiles (row
 * stride 40 elements: conflict-free ldmatrix, the MoE GEMM's layout, whose
 * fragment loaders it reuses).
 *
 * CUDA cores (f32, the reference mode): a 32 x 32 tile with 256 threads,
 * 4 rows each, exact fp32 FMA (no tf32). */
#ifndef QILIN_GEMM_TILE_CUH
#define QILIN_GEMM_TILE_CUH

#include "common.cuh"
#include "moe_gemm_mma.cuh"

namespace gemm_tile {

constexpr int kThreads = 128, kBM = 64, kBN = 64, kBK = 32;
constexpr int kLd = moe_mma::kLd; /* 40: the fragment loaders' row stride */
static_assert(kBK + 8 == kLd, "slab width and padded row stride");

template <class T> struct alignas(16) Tiles {
    T x[kBM][kLd];
    T w[kBN][kLd];
};

/* y[r, c] = v in y's dtype: f32, or the activation dtype T. */
template <class T> __device__ inline void store_y(void *y, int64_t ldy, bool y_f32, int r, int c, float v) {
    if (y_f32)
        static_cast<float *>(y)[(size_t)r * ldy + c] = v;
    else
        static_cast<T *>(y)[(size_t)r * ldy + c] = from_float<T>(v);
}

/* acc += this warp's 32 x 32 share of the staged slab x . W^T (warp wm, wn of the 2 x 2). */
template <class T> __device__ inline void mma_slab(float (&acc)[2][4][4], const Tiles<T> &sm, int wm, int wn) {
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
        uint32_t a[2][4], b[4][2];
#pragma unroll
        for (int i = 0; i < 2; i++) moe_mma::load_a(a[i], &sm.x[wm * 32 + i * 16], kk);
#pragma unroll
        for (int j = 0; j < 4; j += 2) moe_mma::load_b2(b[j], b[j + 1], &sm.w[wn * 32 + 8 * j], kk);
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) moe_mma::mma_bf16_or_f16<T>(acc[i][j], a[i], b[j]);
    }
}

/* The warp's accumulators (+ bias) into y, rows < m and columns < n only.
 * C fragment: lane (g, t) holds rows g, g + 8 x columns 2t, 2t + 1 of each
 * 16 x 8 tile. */
template <class T>
__device__ inline void store_acc(const float (&acc)[2][4][4], void *y, int64_t ldy, bool y_f32, const T *bias,
                                 int m0, int n0, int wm, int wn, int m, int n) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = m0 + wm * 32 + 16 * i + g + 8 * (e >> 1),
                          c = n0 + wn * 32 + 8 * j + 2 * t + (e & 1);
                if (r >= m || c >= n) continue;
                float v = acc[i][j][e];
                if (bias) v += to_float(bias[c]);
                store_y<T>(y, ldy, y_f32, r, c, v);
            }
}

/* ---- f32 ------------------------------------------------------------------ */

constexpr int kFT = 32, kFThreads = 256, kFRows = kFT * kFT / kFThreads; /* 4 rows per thread */

/* Thread (tx, ty): acc[q] += x row ty + 8q of the slab . weight row tx. */
__device__ inline void fma_slab32(float (&acc)[kFRows], const float (&xs)[kFT][kFT + 1],
                                  const float (&wt)[kFT][kFT + 1], int tx, int ty) {
#pragma unroll 8
    for (int c = 0; c < kFT; c++) {
        const float wv = wt[tx][c];
#pragma unroll
        for (int q = 0; q < kFRows; q++) acc[q] = fmaf(xs[ty + q * (kFThreads / kFT)][c], wv, acc[q]);
    }
}

__device__ inline void store_acc32(const float (&acc)[kFRows], float *y, int64_t ldy, const float *bias, int m0,
                                   int n0, int tx, int ty, int m, int n) {
#pragma unroll
    for (int q = 0; q < kFRows; q++) {
        const int r = m0 + ty + q * (kFThreads / kFT), c = n0 + tx;
        if (r < m && c < n) y[(size_t)r * ldy + c] = acc[q] + (bias ? bias[c] : 0.0f);
    }
}

} // namespace gemm_tile

#endif /* QILIN_GEMM_TILE_CUH */
