/* moe_gemm_mma.cuh — the MoE grouped GEMM tile on tensor cores (bf16, f16):
 * mma.sync m16n8k16 with fp32 accumulators, ldmatrix from padded shared
 * tiles, and a cp.async pipeline of kStages k-slabs. A template in a header
 * so that tests can instantiate the planted-bug variants (Planted) next to
 * the production one (moe_gemm_mma.cu instantiates only Planted::none).
 *
 * Work of one block (as moe.cu's CUDA-core kernel, same tile table): BT
 * sorted rows of one expert (tiles[blockIdx.x] = (expert, valid rows),
 * sorted[] the slot of each row) times kBW weight rows, in two halves.
 * gate_up: half 0 = gate rows n0 .., half 1 = the matching up rows
 * n_out + n0 .., so the thread holding gate column j also holds up column j
 * and the epilogue writes h = act(gate) * up with no exchange. down: the
 * kBW rows n0 .. (y columns).
 *
 * Two orientations of the same shared tiles (both [row][k], k contiguous:
 * a weight row W[n][k] is at once an A row (row-major m x k) and a B column
 * (col-major k x n), so swapping the operands needs no transpose):
 *   BT = 64 (prefill, experts average >= 32 rows): tokens are the M side.
 *     4 warps as 2 x 2 over kBW = 128 weight rows; warp (wm, wn) owns 32
 *     rows x (32 gate + 32 up) or 32 x (32 + 32) down columns: 2 m16 tiles
 *     x 8 n8 tiles = 16 mma per k16 for 6 ldmatrix.x4 (64 fp32 accumulators
 *     per thread). 3 stages (45 KiB of the 48 KiB static limit).
 *   BT = 16 (decode: an expert gets a handful of rows): swap-AB, weights
 *     are the M side and the tokens the N side (n8 tiles, DeepGEMM's
 *     "masked" decode argument): an m16 tile of tokens would be mostly
 *     padding, while 16 weight rows are always real. One warp per block
 *     over one m16 tile of kBW = 16 weight rows (8 gate + 8 up, or 16 down)
 *     x 16 tokens: an eighth of the prefill block's columns, so a decode
 *     step whose routed rows make few tiles still launches a wave (issue
 *     14: DeepSeek-V3 gate_up at TP 8 had 8 routed tiles x 4 column blocks
 *     = 32 working blocks on 132 SMs, now 8 x 32 = 256; Qwen3-30B-A3B
 *     gate_up 8 x 12 -> 8 x 96). Gate row g and up row g + 8 share the
 *     m16 tile, so the accumulators of gate column j and up column j are
 *     in the same thread (C rows g and g + 8) and the epilogue needs no
 *     exchange. 8 stages: decode is a stream of weight bytes, and the bytes
 *     in flight per SM are what keep HBM busy (8 slabs x 16 rows x 64 bytes
 *     = 8 KiB per block; 20 KiB of static shared memory, so several blocks
 *     fit an SM). The second n8 tile of tokens is skipped (block-uniform)
 *     when the tile has <= 8 rows, so a 1-row expert costs its weight read
 *     plus 2 mma per k32 slab.
 * K (hidden for gate_up, ffn for down) must be a multiple of 8 (16-byte
 * cp.async chunks) and x / h 16-byte aligned: the launcher sends other
 * shapes to the CUDA-core kernel. Rows past the tile's valid count, weight
 * rows past n_out and the k tail past K are zero-filled by cp.async
 * (src_bytes = 0 with the matrix base as a harmless in-bounds address), so
 * padding contributes exact zeros and nothing is read out of bounds.
 *
 * Quantized experts (WQ::fp8, WQ::int4; moe.h qilin_moe_wq): the weights
 * stay in the checkpoint's layout (FP8: e4m3 bytes [n, K]; INT4:
 * compressed-tensors int32 words [n, K / 8], 8 nibbles along k, value =
 * nibble - 8). The pipeline carries the raw slab (32 bytes or 16 bytes per
 * weight row, as 4-byte cp.async words: row strides need only be 4-byte
 * aligned, which any K % 8 == 0 gives); after the slab has landed, each
 * thread converts the words it copied to dtype — w * scale in fp32, one
 * rounding, as host/quant.c's dequantization to dtype — into one shared
 * dtype tile, a barrier, and the same ldmatrix + mma.sync as dtype
 * weights. FP8 scales are f32 per 128 x 128 block (row_off / col_off place
 * a tensor-parallel slice that starts mid-block), INT4 scales bf16 per
 * group of k (a multiple of 8, so a word has one scale). Not repacked
 * (Marlin-style interleaving pays when the dequantized values go straight
 * into mma fragments; here they pass through shared memory, where the
 * checkpoint's row-major words give plain coalesced copies). Known gaps:
 * the scale is folded into the weight before the multiply (as the bf16
 * dequantize-at-load path did) instead of scaling fp32 partial sums per
 * 128-k block as gemm_fp8.cu does; the 4-byte copies are 4x the cp.async
 * instructions of 16-byte ones (a 16-byte variant for K % 32 == 0 is the
 * next step); no native FP8 mma (sm_89+).
 *
 * Pipeline (one barrier per k-slab, two with quantized weights): wait for
 * the oldest slab (this thread's copies), barrier (everyone's copies
 * visible, and everyone has finished the ldmatrix of the slab read last
 * iteration), then issue the copy of slab kt + kStages - 1 into that freed
 * slot, [quantized: dequantize slab kt into the dtype tile, barrier,] then
 * multiply slot kt % kStages. An empty group is committed when nothing is
 * left to load so that wait<kStages - 2> always means "slab kt has landed".
 *
 * Where CUDA cores might still win: nowhere by design for 16-bit inputs
 * (decode is a weight stream either way), but that is unmeasured until
 * bench_moe_gemm runs on a GPU. Known gaps: on sm_90a mma.sync reaches
 * roughly two thirds of the wgmma peak (a wgmma + TMA variant is the next
 * step); at batch 1 the grid is sized for the worst routing (top_k + 1
 * tiles), so one tile's worth of column blocks exits at once. */
#ifndef QILIN_MOE_GEMM_MMA_CUH
#define QILIN_MOE_GEMM_MMA_CUH

#include <type_traits>

#include "common.cuh"
#include "fp8_decode.cuh"
#include "tensor_core.cuh"

namespace moe_mma {

/* Bugs planted by tests only, to prove the emulator catches them: a
 * missing cp.async wait, and the slot overwrite issued before the barrier
 * that separates it from the other warps' ldmatrix of the same slot. */
enum class Planted { none, no_wait, no_war_barrier };

/* How the expert weights are stored (moe.h qilin_moe_wq): dtype as the
 * activations, FP8 e4m3 with 128 x 128 block scales (f32), or INT4
 * compressed-tensors words (8 nibbles per little-endian int32 along k,
 * value = nibble - 8) with one bf16 scale per group of k. */
enum class WQ { dense, fp8, int4 };

constexpr int kBK = 32;       /* k per slab: two m16n8k16 steps */
constexpr int kChunk = 8;     /* 16-bit elements per 16-byte cp.async */
constexpr int kChunksPerRow = kBK / kChunk;
constexpr int kFp8Block = 128;
/* Row stride 40 elements = 80 bytes: the 8 row addresses of one ldmatrix
 * matrix fall in 8 distinct 16-byte bank groups (80 r mod 128 is a
 * permutation of 16 * {0..7}), so ldmatrix is conflict-free. */
constexpr int kLd = kBK + 8;

/* Decode (BT = 16, swap-AB) blocks are one warp over one m16 tile of weight
 * rows: 8 gate + 8 up rows (gate_up) or 16 rows (down), an eighth of the
 * prefill block's columns, so that a decode step with few routed tiles
 * still launches a wave of blocks (DeepSeek-V3's gate_up at TP 8: 8 routed
 * tiles x 32 column blocks), with 8 stages so that each block keeps 8 slabs
 * of weights in flight. */
template <int BT> struct Cfg {
    static_assert(BT == 16 || BT == 64, "tile heights of moe_plan");
    static constexpr bool kSwap = BT == 16;
    static constexpr int kWarps = kSwap ? 1 : 4;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBW = kSwap ? 16 : 128; /* weight rows per block */
    static constexpr int kHalf = kBW / 2;
    static constexpr int kStages = kSwap ? 8 : 3;
    static constexpr int kMT = kSwap ? 1 : 2; /* m16 tiles per warp */
    static constexpr int kNT = kSwap ? 2 : 8; /* n8 tiles per warp */
};

/* Quantized weights: k elements per 32-bit word, words per row per slab. */
template <WQ Q> struct Fmt {
    static constexpr int kPerWord = Q == WQ::int4 ? 8 : 4;
    static constexpr int kSlabWords = Q == WQ::dense ? 1 : kBK / kPerWord;
};

/* Scales of quantized weights (unused for dense). fp8: f32 per expert
 * [parts][rb][kb] (parts = 2 for gate_up: gate blocks, then up blocks);
 * int4: bf16 per expert [rows][kb] (rows = 2 n_out for gate_up, gate rows
 * first). row_off / col_off: where the slice's row 0 / column 0 sits in its
 * 128-block (fp8 rows, fp8 columns) or group (int4 columns). */
struct QuantArgs {
    const void *scale;
    int row_off, col_off, group, rb, kb;
};

template <class T, int BT, WQ Q> struct alignas(16) Smem {
    static constexpr int S = Cfg<BT>::kStages, W = Cfg<BT>::kBW;
    static constexpr bool kQ = Q != WQ::dense;
    T x[S][BT][kLd];
    T w[kQ ? 1 : S][W][kLd];                        /* quantized: the current slab, dequantized */
    uint32_t q[kQ ? S : 1][kQ ? W : 1][Fmt<Q>::kSlabWords]; /* quantized: raw slabs in flight */
};

template <class T> __device__ inline void mma_bf16_or_f16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        mma_m16n8k16_bf16(d, a, b, d);
    else
        mma_m16n8k16_f16(d, a, b, d);
}

/* The row of the expert's weight matrix behind block row rr (-1: past n_out). */
template <int BT, bool kGateUp> __device__ inline int weight_row(int rr, int n0, int n_out) {
    constexpr int H = Cfg<BT>::kHalf;
    int col = n0 + (kGateUp ? rr % H : rr);
    return col >= n_out ? -1 : kGateUp && rr >= H ? n_out + col : col;
}

/* The global rows one thread copies each slab, fixed for the whole k loop
 * (-1: a padding row, zero-filled). */
template <class T, int BT, bool kGateUp, WQ Q> struct SlabLoader {
    static constexpr int kThreads = Cfg<BT>::kThreads, kBW = Cfg<BT>::kBW;
    static constexpr int kXItems = (BT * kChunksPerRow + kThreads - 1) / kThreads;
    static constexpr int kSW = Fmt<Q>::kSlabWords, kPW = Fmt<Q>::kPerWord;
    static constexpr int kWItems = Q == WQ::dense ? kBW * kChunksPerRow / kThreads : kBW * kSW / kThreads;
    const T *a;
    const void *w;
    const void *scale; /* this expert's scales (quantized) */
    QuantArgs qa;
    int K, n_out, xrow[kXItems], wrow[kWItems];

    __device__ SlabLoader(const T *a_, const void *wexp, const void *sexp, const QuantArgs &qa_, const int *rows,
                          int valid, int a_div, int K_, int n0, int n_out_)
        : a(a_), w(wexp), scale(sexp), qa(qa_), K(K_), n_out(n_out_) {
#pragma unroll
        for (int i = 0; i < kXItems; i++) {
            int idx = threadIdx.x + i * kThreads, r = idx / kChunksPerRow;
            xrow[i] = idx < BT * kChunksPerRow && r < valid ? rows[r] / a_div : -1;
        }
#pragma unroll
        for (int i = 0; i < kWItems; i++) {
            int per_row = Q == WQ::dense ? kChunksPerRow : kSW;
            wrow[i] = weight_row<BT, kGateUp>((threadIdx.x + i * kThreads) / per_row, n0, n_out);
        }
    }

    /* One 16-byte chunk: real bytes when the row exists and k0 + c is inside K. */
    __device__ static void chunk(T *dst, const T *base, int row, int kk, int K) {
        bool real = row >= 0 && kk < K;
        cp_async_cg16(dst, real ? base + (size_t)row * K + kk : base, real ? 16 : 0);
    }

    /* Bytes of one quantized weight row. */
    __device__ size_t row_bytes() const { return Q == WQ::int4 ? (size_t)K / 2 : (size_t)K; }

    __device__ void load(Smem<T, BT, Q> &sm, int slot, int k0) const {
#pragma unroll
        for (int i = 0; i < kXItems; i++) {
            int idx = threadIdx.x + i * kThreads, c = idx % kChunksPerRow * kChunk;
            if (idx < BT * kChunksPerRow) chunk(&sm.x[slot][idx / kChunksPerRow][c], a, xrow[i], k0 + c, K);
        }
#pragma unroll
        for (int i = 0; i < kWItems; i++) {
            int idx = threadIdx.x + i * kThreads;
            if constexpr (Q == WQ::dense) {
                int c = idx % kChunksPerRow * kChunk;
                chunk(&sm.w[slot][idx / kChunksPerRow][c], (const T *)w, wrow[i], k0 + c, K);
            } else { /* one 32-bit word of kPW weights; K % 8 == 0, so a word is all inside K or all past it */
                int word = idx % kSW, kk = k0 + word * kPW;
                bool real = wrow[i] >= 0 && kk < K;
                const uint8_t *src = (const uint8_t *)w + (real ? wrow[i] * row_bytes() + (size_t)kk / kPW * 4 : 0);
                cp_async_ca<4>(&sm.q[slot][idx / kSW][word], src, real ? 4 : 0);
            }
        }
    }

    /* The scale of weight row `row` at column k (quantized formats). */
    __device__ float scale_at(int row, int k) const {
        if constexpr (Q == WQ::fp8) {
            int part = kGateUp && row >= n_out, r = row - part * n_out;
            const float *s = (const float *)scale;
            return s[(size_t)(part * qa.rb + (r + qa.row_off) / kFp8Block) * qa.kb + (k + qa.col_off) / kFp8Block];
        } else {
            const __nv_bfloat16 *s = (const __nv_bfloat16 *)scale;
            return to_float(s[(size_t)row * qa.kb + (k + qa.col_off) / qa.group]);
        }
    }

    /* Quantized: the raw slab in slot `slot` -> sm.w[0] in T (w * scale,
     * rounded once; zeros for padding rows and past K). The words a thread
     * converts are the ones it copied, so each needs only its own wait. */
    __device__ void dequant(Smem<T, BT, Q> &sm, int slot, int k0) const {
        static_assert(Q != WQ::dense, "dense slabs are multiplied as copied");
#pragma unroll
        for (int i = 0; i < kWItems; i++) {
            int idx = threadIdx.x + i * kThreads, rr = idx / kSW, word = idx % kSW, kk = k0 + word * kPW;
            uint32_t out[kPW / 2];
            if (wrow[i] < 0 || kk >= K) {
#pragma unroll
                for (int e = 0; e < kPW / 2; e++) out[e] = 0;
            } else {
                uint32_t v = sm.q[slot][rr][word];
                float s = scale_at(wrow[i], kk); /* group % 8 == 0 and col_off % 8 == 0: one scale per word */
                float f[kPW];
#pragma unroll
                for (int e = 0; e < kPW; e++)
                    f[e] = Q == WQ::fp8 ? fp8_e4m3_to_float((v >> (8 * e)) & 0xffu) * s
                                        : (float)((int)((v >> (4 * e)) & 15u) - 8) * s;
#pragma unroll
                for (int e = 0; e < kPW / 2; e++) out[e] = pack2(from_float<T>(f[2 * e]), from_float<T>(f[2 * e + 1]));
            }
            uint32_t *dst = reinterpret_cast<uint32_t *>(&sm.w[0][rr][word * kPW]);
#pragma unroll
            for (int e = 0; e < kPW / 2; e++) dst[e] = out[e];
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

/* acc += one slab: x tile xt [BT][kLd], weight tile wt [kBW][kLd].
 * Prefill: A = tokens, B = weights. Decode (swap-AB): A = weights (m16
 * tile i = half i), B = tokens. */
template <class T, int BT>
__device__ inline void multiply_slab(float (&acc)[Cfg<BT>::kMT][Cfg<BT>::kNT][4], const T (*xt)[kLd],
                                     const T (*wt)[kLd], int valid) {
    constexpr int kHalf = Cfg<BT>::kHalf;
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
        uint32_t a[2][4], b[Cfg<BT>::kNT][2];
        if constexpr (Cfg<BT>::kSwap) { /* the block's 16 weight rows x 16 tokens */
            load_a(a[0], wt, kk);
            load_b2(b[0], b[1], xt, kk);
            mma_bf16_or_f16<T>(acc[0][0], a[0], b[0]);
            if (valid > 8) mma_bf16_or_f16<T>(acc[0][1], a[0], b[1]); /* block-uniform */
        } else {
            const int wm = warp >> 1, wn = warp & 1;
            if (wm * 32 >= valid) return; /* warp-uniform: all its rows are padding */
#pragma unroll
            for (int i = 0; i < 2; i++) load_a(a[i], xt + wm * 32 + i * 16, kk);
#pragma unroll
            for (int j = 0; j < 8; j += 2) /* n8 tiles j, j + 1: half j / 4, rows 8 (j % 4) .. + 15 */
                load_b2(b[j], b[j + 1], wt + (j >> 2) * kHalf + wn * 32 + 8 * (j & 3), kk);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) mma_bf16_or_f16<T>(acc[i][j], a[i], b[j]);
        }
    }
}

/* Where accumulator element (i, j, e) sits: the tile row r (token) and the
 * weight row rr of the block (0 .. kBW-1; rows kHalf.. are half 1, the up
 * rows of gate_up). Layout of C: lane (g, t) holds (g, 2t), (g, 2t+1),
 * (g+8, 2t), (g+8, 2t+1). Decode: the m16 tile's rows are the weight rows,
 * so gate row g (e = 0, 1) and its up partner g + 8 (e + 2) sit in the same
 * thread; prefill: the up partner is n8 tile j + 4. */
template <int BT> struct AccMap {
    int r, rr;
    bool half1;
    __device__ AccMap(int i, int j, int e) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
        const int m = g + 8 * (e >> 1), n = 2 * t + (e & 1);
        if constexpr (Cfg<BT>::kSwap) {
            rr = m;
            r = 8 * j + n;
            half1 = e >= 2;
        } else {
            r = (warp >> 1) * 32 + 16 * i + m;
            rr = (warp & 1) * 32 + 8 * (j & 3) + n + (j >> 2) * Cfg<BT>::kHalf;
            half1 = j >= 4;
        }
        (void)i;
    }
};

/* h[slot, n0 + c] = act(gate) * up (gate_up) or y[slot, n0 + c] (down). */
template <class T, int BT, bool kGateUp>
__device__ inline void store_tile(T *c, const float (&acc)[Cfg<BT>::kMT][Cfg<BT>::kNT][4], const int *rows,
                                  int valid, int n0, int n_out, qilin_act act) {
    constexpr bool kSwap = Cfg<BT>::kSwap;
#pragma unroll
    for (int i = 0; i < Cfg<BT>::kMT; i++)
#pragma unroll
        for (int j = 0; j < Cfg<BT>::kNT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                AccMap<BT> p(i, j, e);
                if (kGateUp && p.half1) continue; /* consumed with its gate partner */
                const int col = n0 + p.rr;
                if (p.r >= valid || col >= n_out) continue;
                float v = acc[i][j][e];
                if constexpr (kGateUp)
                    v = act_apply(act, v) * (kSwap ? acc[i][j][(e + 2) & 3] : acc[i][(j + 4) % Cfg<BT>::kNT][e]);
                c[(size_t)rows[p.r] * n_out + col] = from_float<T>(v);
            }
}

/* C[slot, n0 + c] for the block's rows. kGateUp: a = x (row slot / top_k,
 * a_div = top_k), w = gate_up, C = h, kHalf columns per column block; else
 * a = h, w = down, C = y, kBW columns. w: T (dense) or the quantized bytes,
 * experts back to back; qa: their scales (quantized). Block (tile, y) runs
 * column blocks y, y + gridDim.y, ..: the launcher caps gridDim.y so that a
 * decode grid of one-warp blocks stays a few thousand blocks (each then
 * streams several column blocks' weights) while still filling the SMs. */
template <class T, int BT, bool kGateUp, WQ Q = WQ::dense, Planted kBug = Planted::none>
__global__ void __launch_bounds__(Cfg<BT>::kThreads)
    moe_gemm_mma_kernel(T *c, const T *a, const void *w, QuantArgs qa, const int2 *tiles, const int *sorted,
                        int a_div, int K, int n_out, qilin_act act) {
    constexpr int S = Cfg<BT>::kStages, kCols = kGateUp ? Cfg<BT>::kHalf : Cfg<BT>::kBW;
    constexpr bool kQ = Q != WQ::dense;
    __shared__ Smem<T, BT, Q> sm;
    const int2 info = tiles[blockIdx.x];
    if (info.x < 0) return; /* a tile past the used ones */
    const int expert = info.x, valid = info.y;
    const int *rows = sorted + (size_t)blockIdx.x * BT;
    const size_t rows_per_expert = kGateUp ? 2 * (size_t)n_out : (size_t)n_out;
    const size_t expert_bytes = rows_per_expert * (Q == WQ::dense ? K * sizeof(T) : Q == WQ::fp8 ? K : K / 2);
    const void *wexp = (const uint8_t *)w + (size_t)expert * expert_bytes;
    const size_t scale_elems = Q == WQ::fp8 ? (size_t)(kGateUp ? 2 : 1) * qa.rb * qa.kb : rows_per_expert * qa.kb;
    const void *sexp = !kQ ? nullptr
                       : Q == WQ::fp8 ? (const void *)((const float *)qa.scale + expert * scale_elems)
                                      : (const void *)((const __nv_bfloat16 *)qa.scale + expert * scale_elems);
    const int nk = (K + kBK - 1) / kBK, n_cb = (n_out + kCols - 1) / kCols;

    for (int cb = blockIdx.y; cb < n_cb; cb += gridDim.y) {
        const int n0 = cb * kCols;
        const SlabLoader<T, BT, kGateUp, Q> loader(a, wexp, sexp, qa, rows, valid, a_div, K, n0, n_out);
        float acc[Cfg<BT>::kMT][Cfg<BT>::kNT][4] = {};
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
            if constexpr (kQ) {
                loader.dequant(sm, kt % S, kt * kBK); /* sm.w[0]: every warp finished slab kt - 1 (barrier above) */
                __syncthreads();
                multiply_slab<T, BT>(acc, sm.x[kt % S], sm.w[0], valid);
            } else {
                multiply_slab<T, BT>(acc, sm.x[kt % S], sm.w[kt % S], valid);
            }
        }
        store_tile<T, BT, kGateUp>(c, acc, rows, valid, n0, n_out, act);
        if constexpr (!Cfg<BT>::kSwap) break; /* prefill: the grid has every column block (no loop state: no spills) */
        __syncthreads(); /* the next column block's prologue refills slots the last slabs were read from */
    }
}

} // namespace moe_mma

#endif /* QILIN_MOE_GEMM_MMA_CUH */
