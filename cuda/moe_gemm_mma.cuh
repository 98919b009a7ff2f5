/* moe_gemm_mma.cuh — the MoE grouped GEMM tile on tensor cores (bf16, f16):
 * mma.sync m16n8k16 with fp32 accumulators, ldmatrix from padded shared
 * tiles, and a cp.async pipeline of kStages k-slabs. A template in a header
 * so that tests can instantiate the planted-bug variants (Planted) next to
 * the production one (moe_gemm_mma.cu instantiates only Planted::none).
 *
 * Work of one block (as moe.cu's CUDA-core kernel, same tile table): BT
 * sorted rows of one expert (tiles[blockIdx.x] = (expert, valid rows),
 * sorted[] the slot of each row) times kBW = 128 weight rows, in two halves
 * of 64. gate_up: half 0 = gate rows n0 .. n0+63, half 1 = the matching up
 * rows n_out + n0 .., so the thread holding gate column j also holds up
 * column j and the epilogue writes h = act(gate) * up with no exchange.
 * down: the 128 rows n0 .. n0+127 (y columns).
 *
 * Two orientations of the same shared tiles (both [row][k], k contiguous:
 * a weight row W[n][k] is at once an A row (row-major m x k) and a B column
 * (col-major k x n), so swapping the operands needs no transpose):
 *   BT = 64 (prefill, experts average >= 32 rows): tokens are the M side.
 *     4 warps as 2 x 2; warp (wm, wn) owns 32 rows x (32 gate + 32 up) or
 *     32 x (32 + 32) down columns: 2 m16 tiles x 8 n8 tiles = 16 mma per
 *     k16 for 6 ldmatrix.x4 (64 fp32 accumulators per thread). 3 stages
 *     (45 KiB of the 48 KiB static limit).
 *   BT = 16 (decode: an expert gets a handful of rows): swap-AB, weights
 *     are the M side and the tokens the N side (n8 tiles, DeepGEMM's
 *     "masked" decode argument): an m16 tile of tokens would be mostly
 *     padding, while 16 weight rows are always real. Warp w owns gate rows
 *     16w.. and up rows 64 + 16w.. x 16 tokens; the second n8 tile of
 *     tokens is skipped (block-uniform) when the tile has <= 8 rows, so a
 *     1-row expert costs its weight read plus 2 mma per k16 per warp. 4
 *     stages: decode is a stream of weight bytes, and more bytes in flight
 *     per SM is what keeps HBM busy.
 * K (hidden for gate_up, ffn for down) must be a multiple of 8 (16-byte
 * cp.async chunks) and every matrix 16-byte aligned: the launcher sends
 * other shapes to the CUDA-core kernel. Rows past the tile's valid count,
 * weight rows past n_out and the k tail past K are zero-filled by cp.async
 * (src_bytes = 0 with the matrix base as a harmless in-bounds address), so
 * padding contributes exact zeros and nothing is read out of bounds.
 *
 * Pipeline (one barrier per k-slab): wait for the oldest slab (this
 * thread's copies), barrier (everyone's copies visible, and everyone has
 * finished the ldmatrix of the slab read last iteration), then issue the
 * copy of slab kt + kStages - 1 into that freed slot, then multiply slot
 * kt % kStages. An empty group is committed when nothing is left to load
 * so that wait<kStages - 2> always means "slab kt has landed".
 *
 * Where CUDA cores might still win: nowhere by design for 16-bit inputs
 * (decode is a weight stream either way, and this kernel keeps 3-4 slabs of
 * weights in flight where the CUDA-core kernel keeps one in registers), but
 * that is unmeasured until bench_moe_gemm runs on a GPU. Known gaps: on
 * sm_90a mma.sync reaches roughly two thirds of the wgmma peak (a wgmma +
 * TMA variant is the next step), and a decode GEMM with few tiles (Mixtral
 * down at 1 token: 2 tiles x 32 column blocks) leaves SMs idle where split-K
 * would not; the same holds for Qwen3-30B-A3B at batch 1 (96 / 128 blocks)
 * and DeepSeek-V3's gate_up at TP 8 (ffn 256 per rank: 8 tiles x 4 column
 * blocks = 32 blocks), both listed in tests/test_decode_fill.cpp. ptxas (sm_80 / sm_90a): 81 / 80 registers at BT = 16, 156 / 126
 * at BT = 64, no spills, 45 KiB static shared memory. */
#ifndef QILIN_MOE_GEMM_MMA_CUH
#define QILIN_MOE_GEMM_MMA_CUH

#include <type_traits>

#include "common.cuh"
#include "tensor_core.cuh"

namespace moe_mma {

/* Bugs planted by tests only, to prove the emulator catches them: a
 * missing cp.async wait, and the slot overwrite issued before the barrier
 * that separates it from the other warps' ldmatrix of the same slot. */
enum class Planted { none, no_wait, no_war_barrier };

constexpr int kThreads = 128; /* 4 warps */
constexpr int kBK = 32;       /* k per slab: two m16n8k16 steps */
constexpr int kBW = 128;      /* weight rows per block */
constexpr int kHalf = kBW / 2;
constexpr int kChunk = 8;     /* 16-bit elements per 16-byte cp.async */
constexpr int kChunksPerRow = kBK / kChunk;
/* Row stride 40 elements = 80 bytes: the 8 row addresses of one ldmatrix
 * matrix fall in 8 distinct 16-byte bank groups (80 r mod 128 is a
 * permutation of 16 * {0..7}), so ldmatrix is conflict-free. */
constexpr int kLd = kBK + 8;

template <int BT> struct Cfg {
    static_assert(BT == 16 || BT == 64, "tile heights of moe_plan");
    static constexpr bool kSwap = BT == 16;
    static constexpr int kStages = kSwap ? 4 : 3;
    static constexpr int kNT = kSwap ? 2 : 8; /* n8 tiles per warp; m16 tiles: always 2 */
};

template <class T, int BT> struct alignas(16) Smem {
    T x[Cfg<BT>::kStages][BT][kLd];
    T w[Cfg<BT>::kStages][kBW][kLd];
};

template <class T> __device__ inline void mma_bf16_or_f16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        mma_m16n8k16_bf16(d, a, b, d);
    else
        mma_m16n8k16_f16(d, a, b, d);
}

/* The global rows one thread copies each slab, fixed for the whole k loop
 * (-1: a padding row, zero-filled). */
template <class T, int BT, bool kGateUp> struct SlabLoader {
    static constexpr int kXItems = (BT * kChunksPerRow + kThreads - 1) / kThreads;
    static constexpr int kWItems = kBW * kChunksPerRow / kThreads;
    const T *a, *w;
    int K, xrow[kXItems], wrow[kWItems];

    __device__ SlabLoader(const T *a_, const T *wexp, const int *rows, int valid, int a_div, int K_, int n0,
                          int n_out)
        : a(a_), w(wexp), K(K_) {
#pragma unroll
        for (int i = 0; i < kXItems; i++) {
            int idx = threadIdx.x + i * kThreads, r = idx / kChunksPerRow;
            xrow[i] = idx < BT * kChunksPerRow && r < valid ? rows[r] / a_div : -1;
        }
#pragma unroll
        for (int i = 0; i < kWItems; i++) {
            int rr = (threadIdx.x + i * kThreads) / kChunksPerRow;
            int col = n0 + (kGateUp ? rr % kHalf : rr);
            wrow[i] = col >= n_out ? -1 : kGateUp && rr >= kHalf ? n_out + col : col;
        }
    }

    /* One 16-byte chunk: real bytes when the row exists and k0 + c is inside K. */
    __device__ static void chunk(T *dst, const T *base, int row, int kk, int K) {
        bool real = row >= 0 && kk < K;
        cp_async_cg16(dst, real ? base + (size_t)row * K + kk : base, real ? 16 : 0);
    }

    __device__ void load(Smem<T, BT> &sm, int slot, int k0) const {
#pragma unroll
        for (int i = 0; i < kXItems; i++) {
            int idx = threadIdx.x + i * kThreads, c = idx % kChunksPerRow * kChunk;
            if (idx < BT * kChunksPerRow) chunk(&sm.x[slot][idx / kChunksPerRow][c], a, xrow[i], k0 + c, K);
        }
#pragma unroll
        for (int i = 0; i < kWItems; i++) {
            int idx = threadIdx.x + i * kThreads, c = idx % kChunksPerRow * kChunk;
            chunk(&sm.w[slot][idx / kChunksPerRow][c], w, wrow[i], k0 + c, K);
        }
    }
};

/* A fragments of the m16 x k16 tile whose top row is tile[0]: lanes 0-15
 * address rows 0-15 at k, lanes 16-31 the same rows at k + 8 (matrices
 * a[0..3] = rows lo/hi x k lo/hi). */
template <class T> __device__ inline void load_a(uint32_t a[4], const T (*tile)[kLd], int kk) {
    int lane = threadIdx.x & 31;
    ldmatrix_x4(a, &tile[lane & 15][kk + (lane >> 4) * kChunk]);
}

/* B fragments of two n8 tiles (rows 0-7 and 8-15 of tile[], k-contiguous):
 * matrix i = lane / 8 is n-tile i / 2, k half i % 2. */
template <class T>
__device__ inline void load_b2(uint32_t b0[2], uint32_t b1[2], const T (*tile)[kLd], int kk) {
    int lane = threadIdx.x & 31;
    uint32_t r[4];
    ldmatrix_x4(r, &tile[(lane >> 4) * 8 + (lane & 7)][kk + ((lane >> 3) & 1) * kChunk]);
    b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}

/* acc += the slab in slot s. Prefill: A = tokens, B = weights. Decode
 * (swap-AB): A = weights (m16 tile i = half i), B = tokens. */
template <class T, int BT>
__device__ inline void multiply_slab(float (&acc)[2][Cfg<BT>::kNT][4], const Smem<T, BT> &sm, int s, int valid) {
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
        uint32_t a[2][4], b[Cfg<BT>::kNT][2];
        if constexpr (Cfg<BT>::kSwap) {
#pragma unroll
            for (int h = 0; h < 2; h++) load_a(a[h], &sm.w[s][h * kHalf + warp * 16], kk);
            load_b2(b[0], b[1], &sm.x[s][0], kk);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mma_bf16_or_f16<T>(acc[h][0], a[h], b[0]);
                if (valid > 8) mma_bf16_or_f16<T>(acc[h][1], a[h], b[1]); /* block-uniform */
            }
        } else {
            const int wm = warp >> 1, wn = warp & 1;
            if (wm * 32 >= valid) return; /* warp-uniform: all its rows are padding */
#pragma unroll
            for (int i = 0; i < 2; i++) load_a(a[i], &sm.x[s][wm * 32 + i * 16], kk);
#pragma unroll
            for (int j = 0; j < 8; j += 2) /* n8 tiles j, j + 1: half j / 4, rows 8 (j % 4) .. + 15 */
                load_b2(b[j], b[j + 1], &sm.w[s][(j >> 2) * kHalf + wn * 32 + 8 * (j & 3)], kk);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) mma_bf16_or_f16<T>(acc[i][j], a[i], b[j]);
        }
    }
}

/* Where accumulator element (i, j, e) sits: the tile row r (token) and the
 * weight row rr within the half-0 block of 64 (its half-1 partner is the
 * element with i or j one half further, see pair_of). Layout of C: lane
 * (g, t) holds (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). */
template <int BT> struct AccMap {
    int r, rr;
    __device__ AccMap(int i, int j, int e) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
        const int m = g + 8 * (e >> 1), n = 2 * t + (e & 1);
        if constexpr (Cfg<BT>::kSwap) {
            rr = warp * 16 + m; /* + i * kHalf */
            r = 8 * j + n;
        } else {
            r = (warp >> 1) * 32 + 16 * i + m;
            rr = (warp & 1) * 32 + 8 * (j & 3) + n; /* + (j >> 2) * kHalf */
        }
        (void)i;
    }
};

/* h[slot, n0 + c] = act(gate) * up (gate_up) or y[slot, n0 + c] (down). */
template <class T, int BT, bool kGateUp>
__device__ inline void store_tile(T *c, const float (&acc)[2][Cfg<BT>::kNT][4], const int *rows, int valid, int n0,
                                  int n_out, qilin_act act) {
    constexpr bool kSwap = Cfg<BT>::kSwap;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < Cfg<BT>::kNT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const bool half1 = kSwap ? i == 1 : j >= 4;
                if (kGateUp && half1) continue; /* consumed with its gate partner */
                AccMap<BT> p(i, j, e);
                const int col = n0 + p.rr + (half1 ? kHalf : 0);
                if (p.r >= valid || (kGateUp ? n0 + p.rr : col) >= n_out) continue;
                float v = acc[i][j][e];
                if constexpr (kGateUp) v = act_apply(act, v) * (kSwap ? acc[1][j][e] : acc[i][j + 4][e]);
                c[(size_t)rows[p.r] * n_out + col] = from_float<T>(v);
            }
}

/* C[slot, n0 + c] for the block's rows. kGateUp: a = x (row slot / top_k,
 * a_div = top_k), w = gate_up, C = h, 64 columns per block; else a = h,
 * w = down, C = y, 128 columns per block. */
template <class T, int BT, bool kGateUp, Planted kBug = Planted::none>
__global__ void __launch_bounds__(kThreads)
    moe_gemm_mma_kernel(T *c, const T *a, const T *w, const int2 *tiles, const int *sorted, int a_div, int K,
                        int n_out, qilin_act act) {
    constexpr int S = Cfg<BT>::kStages;
    __shared__ Smem<T, BT> sm;
    const int2 info = tiles[blockIdx.x];
    if (info.x < 0) return; /* a tile past the used ones */
    const int expert = info.x, valid = info.y;
    const int *rows = sorted + (size_t)blockIdx.x * BT;
    const int n0 = blockIdx.y * (kGateUp ? kHalf : kBW);
    const T *wexp = w + (size_t)expert * (kGateUp ? 2 * (size_t)n_out : (size_t)n_out) * K;
    const SlabLoader<T, BT, kGateUp> loader(a, wexp, rows, valid, a_div, K, n0, n_out);

    float acc[2][Cfg<BT>::kNT][4] = {};
    const int nk = (K + kBK - 1) / kBK;
    for (int s = 0; s < S - 1; s++) {
        if (s < nk) loader.load(sm, s, s * kBK);
        cp_async_commit();
    }
    auto prefetch = [&](int kt) { /* slab kt + S - 1 into the slot of slab kt - 1 */
        int next = kt + S - 1;
        if (next < nk) loader.load(sm, next % S, next * kBK);
        cp_async_commit();
    };
    for (int kt = 0; kt < nk; kt++) {
        if constexpr (kBug != Planted::no_wait) cp_async_wait<S - 2>(); /* slab kt landed (this thread's part) */
        if constexpr (kBug == Planted::no_war_barrier) {
            prefetch(kt); /* BUG: overwrites a slot other warps may still be reading */
            __syncthreads();
        } else {
            __syncthreads(); /* slab kt visible to all; slab kt - 1 read by all */
            prefetch(kt);
        }
        multiply_slab<T, BT>(acc, sm, kt % S, valid);
    }
    store_tile<T, BT, kGateUp>(c, acc, rows, valid, n0, n_out, act);
}

} // namespace moe_mma

#endif /* QILIN_MOE_GEMM_MMA_CUH */
