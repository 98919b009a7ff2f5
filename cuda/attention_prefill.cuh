/* attention_prefill.cuh — causal prefill attention on tensor cores, in the
 * FlashAttention-2 form (bf16 / f16 inputs, fp32 softmax and accumulation);
 * the contract is qilin_attention_prefill's in attention.h.
 *
 * One block owns BM = 16 * WARPS rows of one sequence and one KV head. Rows
 * pack (query token, head of the KV group): row = i * group + g, as in
 * attention_tile.cuh, so the heads that share a KV head (GQA/MQA) share every
 * K/V tile a block loads: with group 4 and BM 64 a block reads K/V once for
 * 64 (token, head) rows instead of four times. The cost is a causal range
 * per block that spans BM / group tokens, which is small. Each warp owns 16
 * consecutive rows. Per key tile of BN positions:
 *   1. K [BN, dk] and V [BN, dv] arrive by cp.async into one of two stages
 *      (the next tile is issued before the current one is computed: double
 *      buffering); rows past the block's last visible key and columns past
 *      dk / dv are zero-filled (src-size 0), so no address outside the cache
 *      is read and the padded dims contribute exact zeros;
 *   2. S = Q K^T on mma.m16n8k16: Q fragments by ldmatrix (kept in registers
 *      when dk <= 128: loaded once before the pipeline starts, in the space
 *      of K's stage 0; re-read from shared memory otherwise), K fragments by
 *      ldmatrix (K rows are the "column-major B" the instruction wants);
 *   3. mask (causal, sliding window, rows past the sequence), online softmax
 *      in fp32 on the accumulator registers: each row lives in one lane quad,
 *      so the row max is two shuffles; the rescale of O and the running sum
 *      stay per lane (the sum is reduced across the quad once, at the end);
 *   4. O += P V on mma: the S accumulators are exactly the A fragments of P
 *      (rounded to the input dtype), V fragments by ldmatrix.trans.
 * A warp whose 16 rows see none of a tile (the causal diagonal, the window)
 * skips its mma work for that tile but keeps the barriers.
 *
 * Shared memory rows are padded by 16 bytes so the 8 rows an ldmatrix reads
 * fall in distinct banks. Head dims are bucketed (DK, DV maxima, multiples of
 * 16); loops run to the actual dims rounded up to 16, so one instantiation
 * serves e.g. 40, 64 in the 64 bucket or 80, 96, 128 in the 128 bucket.
 *
 * Roof: at prefill lengths the kernel is bound by the tensor cores
 * (4 * BM * BN * d flops per K/V tile against (BN * 2 d) * 2 bytes loaded
 * once per BM rows); FlashAttention-2 reaches 50-70 % of the bf16 peak on
 * A100/H100 with this structure, which is the target. Not here: the Hopper
 * wgmma/TMA form (FlashAttention-3) and a split over the keys for short
 * batches of long contexts.
 *
 * Plant (tests only) removes one synchronisation, to prove the emulator
 * catches it: no_wait drops the cp.async wait before a stage is read,
 * no_barrier drops the barrier between reading a stage and overwriting it. */
#ifndef QILIN_ATTENTION_PREFILL_CUH
#define QILIN_ATTENTION_PREFILL_CUH

#include <climits>
#include <cmath>

#include "attention.h"
#include "common.cuh"
#include "tensor_core.cuh"

namespace attn_mma {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFullMask = 0xffffffffu;

enum class Plant { none, no_wait, no_barrier };

/* Everything a block needs; addresses in elements. */
struct Params {
    const void *q; /* query row (token t, head h) at q + t*q_ts + h*q_hs */
    int64_t q_ts, q_hs;
    const void *k, *v; /* (position t of sequence b, kv head g) at cache + blk*slot + (t % bs)*pos + g*head,
                          blk = seq_slot[b * table_stride + t / bs] */
    qilin_kv_layout kl, vl;
    void *out; /* [tokens, heads, dv] at out + t*out_ts + h*out_hs */
    int64_t out_ts, out_hs;
    const int *q_start, *kv_len, *seq_slot; /* seq_slot: the block tables */
    int table_stride, block_size;
    int dk, dv;   /* actual head dims, multiples of 8 */
    int group;    /* query heads per KV head */
    int window;   /* 0 = none */
    int q_tiles;  /* blocks along the longest sequence's rows */
    float qscale; /* softmax scale * log2(e): the softmax runs on exp2 */
};

/* A head-dim bucket: DK, DV maxima (multiples of 16), BN keys per tile,
 * WARPS warps (BM = 16 * WARPS rows). Pitches are padded by 8 elements.
 * EXACT: the dims are exactly DK and DV, so the loops over them carry no
 * run-time bound and ptxas can overlap the next ldmatrix with the mma (a
 * bound check between k-steps is a branch it does not schedule across). */
template <int DK_, int DV_, int BN_, int WARPS_, bool EXACT_ = false> struct Bucket {
    static constexpr int DK = DK_, DV = DV_, BN = BN_, WARPS = WARPS_;
    static constexpr bool EXACT = EXACT_;
    using Exact = Bucket<DK_, DV_, BN_, WARPS_, true>;
    static constexpr int BM = 16 * WARPS, THREADS = 32 * WARPS;
    static constexpr int LDK = DK + 8, LDV = DV + 8;
    /* Q in registers for the whole block (dk <= 128): its shared memory is
     * then K's stage 0, used before the first K tile arrives */
    static constexpr bool Q_IN_REGS = DK <= 128;
    static constexpr int Q_ELEMS = BM * LDK, K_ELEMS = BN * LDK, V_ELEMS = BN * LDV;
    static constexpr size_t SMEM_BYTES = (size_t)((Q_IN_REGS ? 0 : Q_ELEMS) + 2 * K_ELEMS + 2 * V_ELEMS) * 2;
    static_assert(DK % 16 == 0 && DV % 16 == 0 && BN % 16 == 0, "mma tiles are 16 wide");
    static_assert(!Q_IN_REGS || BM <= BN, "Q in K's stage 0 must fit");
};

/* Buckets (shared memory: 36 / 70 / 112 / 101 KB; A100 holds 2 blocks of
 * the first two per SM, H100 3 / 2). */
using BucketD64 = Bucket<64, 64, 64, 4>;
using BucketD128 = Bucket<128, 128, 64, 4>;
using BucketD192 = Bucket<192, 128, 64, 4>; /* DeepSeek's naive MLA prefill: dk 192, dv 128 */
using BucketD256 = Bucket<256, 256, 32, 4>;

__device__ inline const void *cache_row(const void *base, const qilin_kv_layout &l, const int *table, int bs, int t,
                                        int g) {
    const int blk = t / bs;
    return (const uint16_t *)base + (int64_t)table[blk] * l.slot_stride + (int64_t)(t - blk * bs) * l.pos_stride +
           (int64_t)g * l.head_stride;
}

/* Q rows row0 .. row0+BM of the block to shared memory; rows past the
 * sequence and dims in [dk, dk16) are zero-filled. */
template <class B>
__device__ inline void load_q(uint16_t *sq, const Params &p, int q0, int row0, int rows, int kvh, int dk16) {
    constexpr int CH = B::DK / 8; /* 16-byte chunks per row */
    for (int idx = threadIdx.x; idx < B::BM * CH; idx += B::THREADS) {
        const int r = idx / CH, d = (idx % CH) * 8, row = row0 + r;
        if (d >= dk16) continue;
        const bool ok = row < rows && d < p.dk;
        const uint16_t *src = (const uint16_t *)p.q;
        if (ok) src += (q0 + row / p.group) * p.q_ts + ((int64_t)kvh * p.group + row % p.group) * p.q_hs + d;
        cp_async_cg16(sq + r * B::LDK + d, src, ok ? 16 : 0);
    }
}

/* Key/value positions t0 .. t0+BN to one stage; positions >= hi and dims
 * past dk / dv are zero-filled. */
template <class B>
__device__ inline void load_kv(uint16_t *sk, uint16_t *sv, const Params &p, const int *table, int kvh, int t0, int hi,
                               int dk16, int dv16) {
    constexpr int CK = B::DK / 8, CV = B::DV / 8;
    for (int idx = threadIdx.x; idx < B::BN * CK; idx += B::THREADS) {
        const int r = idx / CK, d = (idx % CK) * 8, t = t0 + r;
        if (d >= dk16) continue;
        const bool ok = t < hi && d < p.dk;
        const void *src = ok ? (const void *)((const uint16_t *)cache_row(p.k, p.kl, table, p.block_size, t, kvh) + d) : p.k;
        cp_async_cg16(sk + r * B::LDK + d, src, ok ? 16 : 0);
    }
    for (int idx = threadIdx.x; idx < B::BN * CV; idx += B::THREADS) {
        const int r = idx / CV, d = (idx % CV) * 8, t = t0 + r;
        if (d >= dv16) continue;
        const bool ok = t < hi && d < p.dv;
        const void *src = ok ? (const void *)((const uint16_t *)cache_row(p.v, p.vl, table, p.block_size, t, kvh) + d) : p.v;
        cp_async_cg16(sv + r * B::LDV + d, src, ok ? 16 : 0);
    }
}

template <class T> __device__ inline void mma16816(float d[4], const uint32_t a[4], const uint32_t b[2]);
template <>
__device__ inline void mma16816<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    mma_m16n8k16_bf16(d, a, b, d);
}
template <> __device__ inline void mma16816<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    mma_m16n8k16_f16(d, a, b, d);
}

/* The A fragment of Q rows 16w .. 16w+15, dims k0 .. k0+15 of the block. */
template <class B> __device__ inline void q_fragment(uint32_t a[4], const uint16_t *sq, int warp, int k0) {
    const int lane = threadIdx.x % 32;
    ldmatrix_x4(a, sq + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * B::LDK + k0 + (lane >> 4) * 8);
}

/* Running softmax state of the lane's two rows (g and g + 8 of its warp) and
 * its O accumulators: o[n] holds columns 8n + 2t, +1 of both rows. */
template <class B> struct RowState {
    float m[2], l[2];
    float o[B::DV / 8][4];
};

/* S = Q K^T for the warp's 16 rows and the stage's BN keys, in the
 * accumulator layout: s[n] = keys 8n + 2t, +1 of rows g (0, 1) and g+8 (2, 3). */
template <class T, class B>
__device__ inline void scores(float (&s)[B::BN / 8][4],
                              const uint32_t (&qf)[B::Q_IN_REGS ? B::DK / 16 : 1][4], const uint16_t *sq,
                              const uint16_t *sk, int warp, int dk16) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int n = 0; n < B::BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < B::DK / 16; kk++) {
        if (!B::EXACT && kk * 16 >= dk16) break;
        uint32_t a[4];
        if constexpr (B::Q_IN_REGS) {
            a[0] = qf[kk][0], a[1] = qf[kk][1], a[2] = qf[kk][2], a[3] = qf[kk][3];
        } else {
            q_fragment<B>(a, sq, warp, kk * 16);
        }
#pragma unroll
        for (int nn = 0; nn < B::BN / 16; nn++) {
            uint32_t b[4];
            ldmatrix_x4(b, sk + (nn * 16 + (lane & 7) + (lane >> 4) * 8) * B::LDK + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma16816<T>(s[2 * nn], a, b);
            mma16816<T>(s[2 * nn + 1], a, b + 2);
        }
    }
}

/* Masks s to the rows' visible keys (kMask: the tile is not wholly visible
 * to every row of the warp), updates (m, l), rescales O and leaves
 * P = exp2(s - m) in s. */
template <class B, bool kMask>
__device__ inline void online_softmax(RowState<B> &st, float (&s)[B::BN / 8][4], float qscale, int t0,
                                      const int lim_lo[2], const int lim_hi[2], int dv16) {
    const int t4 = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < B::BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int t = t0 + n * 8 + 2 * t4 + e;
                float v = s[n][2 * i + e] * qscale;
                if (kMask && (t < lim_lo[i] || t >= lim_hi[i])) v = -INFINITY;
                s[n][2 * i + e] = v;
                mx = fmaxf(mx, v);
            }
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
        const float m_new = fmaxf(st.m[i], mx);
        const float base = m_new == -INFINITY ? 0.0f : m_new; /* a row with nothing visible yet stays 0 */
        const float alpha = exp2f(st.m[i] - base);
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < B::BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float pv = exp2f(s[n][2 * i + e] - base);
                s[n][2 * i + e] = pv;
                sum += pv;
            }
        st.l[i] = st.l[i] * alpha + sum; /* this lane's part of the row sum */
        st.m[i] = m_new;
#pragma unroll
        for (int n = 0; n < B::DV / 8; n++) {
            if (!B::EXACT && n * 8 >= dv16) break;
            st.o[n][2 * i] *= alpha;
            st.o[n][2 * i + 1] *= alpha;
        }
    }
}

/* O += P V: P's accumulator registers, rounded to T, are the A fragments. */
template <class T, class B>
__device__ inline void accumulate_pv(RowState<B> &st, const float (&s)[B::BN / 8][4], const uint16_t *sv,
                                     int dv16) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < B::BN / 16; kk++) {
        uint32_t a[4];
        a[0] = pack2(from_float<T>(s[2 * kk][0]), from_float<T>(s[2 * kk][1]));
        a[1] = pack2(from_float<T>(s[2 * kk][2]), from_float<T>(s[2 * kk][3]));
        a[2] = pack2(from_float<T>(s[2 * kk + 1][0]), from_float<T>(s[2 * kk + 1][1]));
        a[3] = pack2(from_float<T>(s[2 * kk + 1][2]), from_float<T>(s[2 * kk + 1][3]));
#pragma unroll
        for (int nn = 0; nn < B::DV / 16; nn++) {
            if (!B::EXACT && nn * 16 >= dv16) break;
            uint32_t b[4];
            ldmatrix_x4_trans(b, sv + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * B::LDV + nn * 16 +
                                     (lane >> 4) * 8);
            mma16816<T>(st.o[2 * nn], a, b);
            mma16816<T>(st.o[2 * nn + 1], a, b + 2);
        }
    }
}

/* Normalised rows to out: each lane stores pairs of columns. */
template <class T, class B>
__device__ inline void write_out(RowState<B> &st, const Params &p, int q0, int row_base, int rows, int kvh) {
    const int t4 = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = st.l[i];
        l += __shfl_xor_sync(kFullMask, l, 1);
        l += __shfl_xor_sync(kFullMask, l, 2);
        const int row = row_base + 8 * i;
        if (row >= rows) continue;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T *o = (T *)p.out + (q0 + row / p.group) * p.out_ts +
               ((int64_t)kvh * p.group + row % p.group) * p.out_hs;
#pragma unroll
        for (int n = 0; n < B::DV / 8; n++) {
            const int c = n * 8 + 2 * t4;
            if (!B::EXACT && n * 8 >= p.dv) break;
            *reinterpret_cast<uint32_t *>(o + c) =
                pack2(from_float<T>(st.o[n][2 * i] * inv), from_float<T>(st.o[n][2 * i + 1] * inv));
        }
    }
}

/* Grid (q_tiles, kv heads, sequences), B::THREADS threads, B::SMEM_BYTES of
 * dynamic shared memory. Tiles run heaviest first (blockIdx.x 0 is the last
 * row tile: the longest causal range). Launch bounds (threads, 1): without
 * the block count ptxas for sm_90a capped the 192 bucket at 168 registers
 * and spilled; with it every bucket fits in 142-246 registers, 0 spills. */
template <class T, class B, Plant kPlant>
__global__ void __launch_bounds__(B::THREADS, 1) attention_prefill_mma_kernel(const Params p) {
    QILIN_DYNAMIC_SMEM(uint16_t, smem);
    uint16_t *sk = smem + (B::Q_IN_REGS ? 0 : B::Q_ELEMS), *sv = sk + 2 * B::K_ELEMS;
    uint16_t *sq = B::Q_IN_REGS ? sk : smem;
    const int b = blockIdx.z, kvh = blockIdx.y, qtile = p.q_tiles - 1 - (int)blockIdx.x;
    const int q0 = p.q_start[b], n_q = p.q_start[b + 1] - q0, kv_len = p.kv_len[b];
    const int rows = n_q * p.group, row0 = qtile * B::BM;
    if (row0 >= rows) return;      /* whole block: no barrier is skipped by part of it */
    const int pos0 = kv_len - n_q; /* position of the sequence's first new token */
    const int row_end = min(row0 + B::BM, rows);
    const int lo = p.window > 0 ? max(0, pos0 + row0 / p.group - p.window + 1) : 0;
    const int hi = min(kv_len, pos0 + (row_end - 1) / p.group + 1);
    const int n_tiles = hi > lo ? (hi - lo + B::BN - 1) / B::BN : 0;
    const int dk16 = (p.dk + 15) / 16 * 16, dv16 = (p.dv + 15) / 16 * 16;
    const int *table = p.seq_slot + (int64_t)b * p.table_stride;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    /* visible keys [lim_lo, lim_hi) of the lane's rows, and of the warp */
    const int row_base = row0 + warp * 16 + lane / 4;
    int lim_lo[2], lim_hi[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = row_base + 8 * i, pos = pos0 + row / p.group;
        lim_lo[i] = p.window > 0 ? pos - p.window + 1 : 0;
        lim_hi[i] = row < rows ? pos + 1 : 0;
    }
    const int wrow0 = row0 + warp * 16, wrow1 = min(wrow0 + 15, rows - 1);
    const int warp_lo = p.window > 0 ? pos0 + wrow0 / p.group - p.window + 1 : 0;
    const int warp_hi = wrow0 < rows ? pos0 + wrow1 / p.group + 1 : 0;
    /* keys every row of the warp sees: a tile inside needs no mask */
    const int all_lo = p.window > 0 ? pos0 + wrow1 / p.group - p.window + 1 : 0;
    const int all_hi = wrow0 + 15 < rows ? pos0 + wrow0 / p.group + 1 : 0;

    load_q<B>(sq, p, q0, row0, rows, kvh, dk16);
    uint32_t qf[B::Q_IN_REGS ? B::DK / 16 : 1][4];
    if constexpr (B::Q_IN_REGS) {
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < B::DK / 16; kk++)
            if (B::EXACT || kk * 16 < dk16) q_fragment<B>(qf[kk], sq, warp, kk * 16);
        __syncthreads(); /* sq is K's stage 0: every warp has its Q before tile 0 lands there */
    }
    if (n_tiles > 0) load_kv<B>(sk, sv, p, table, kvh, lo, hi, dk16, dv16);
    cp_async_commit();

    RowState<B> st;
    st.m[0] = st.m[1] = -INFINITY;
    st.l[0] = st.l[1] = 0.0f;
#pragma unroll
    for (int n = 0; n < B::DV / 8; n++) st.o[n][0] = st.o[n][1] = st.o[n][2] = st.o[n][3] = 0.0f;

    for (int j = 0; j < n_tiles; j++) {
        const int t0 = lo + j * B::BN, stage = j & 1;
        if (j + 1 < n_tiles)
            load_kv<B>(sk + (stage ^ 1) * B::K_ELEMS, sv + (stage ^ 1) * B::V_ELEMS, p, table, kvh, t0 + B::BN,
                       hi, dk16, dv16);
        cp_async_commit();
        if constexpr (kPlant != Plant::no_wait) cp_async_wait<1>(); /* tile j (and Q) landed */
        __syncthreads();
        if (t0 < warp_hi && t0 + B::BN > warp_lo) { /* warp-uniform */
            float s[B::BN / 8][4];
            scores<T, B>(s, qf, sq, sk + stage * B::K_ELEMS, warp, dk16);
            if (t0 >= all_lo && t0 + B::BN <= all_hi)
                online_softmax<B, false>(st, s, p.qscale, t0, lim_lo, lim_hi, dv16);
            else
                online_softmax<B, true>(st, s, p.qscale, t0, lim_lo, lim_hi, dv16);
            accumulate_pv<T, B>(st, s, sv + stage * B::V_ELEMS, dv16);
        }
        if constexpr (kPlant != Plant::no_barrier)
            __syncthreads(); /* stage read before tile j+2 overwrites it */
    }
    cp_async_wait<0>(); /* no copy outlives the block (Q when there was no tile) */
    write_out<T, B>(st, p, q0, row_base, rows, kvh);
}

/* ---- host side ------------------------------------------------------------ */

/* The mma path serves bf16/f16 with 16-byte aligned rows (cp.async copies 16
 * bytes): q, caches and out at 16-byte addresses, every stride a multiple of 8
 * elements. Anything else goes to the CUDA-core tile kernel. */
inline bool aligned_for_mma(const qilin_attention_args *a) {
    const uintptr_t ptrs =
        (uintptr_t)a->q | (uintptr_t)a->k_cache | (uintptr_t)a->v_cache | (uintptr_t)a->out;
    const int64_t strides = a->k_layout.slot_stride | a->k_layout.pos_stride | a->k_layout.head_stride |
                            a->v_layout.slot_stride | a->v_layout.pos_stride | a->v_layout.head_stride |
                            a->q_token_stride | a->q_head_stride | a->out_token_stride | a->out_head_stride;
    return ptrs % 16 == 0 && strides % 8 == 0;
}

inline Params make_params(const qilin_attention_args *a, int bm) {
    Params p = {};
    p.q = a->q, p.q_ts = a->q_token_stride, p.q_hs = a->q_head_stride;
    p.k = a->k_cache, p.v = a->v_cache, p.kl = a->k_layout, p.vl = a->v_layout;
    p.out = a->out, p.out_ts = a->out_token_stride, p.out_hs = a->out_head_stride;
    p.q_start = a->q_start, p.kv_len = a->kv_len, p.seq_slot = a->seq_slot;
    p.table_stride = qilin_kv_table_stride(a->table_stride, a->block_size);
    p.block_size = qilin_kv_block_span(a->block_size);
    p.dk = a->head_dim, p.dv = a->head_dim_v;
    p.group = a->n_heads / a->n_kv_heads;
    p.window = a->sliding_window;
    p.qscale = a->scale * kLog2e;
    p.q_tiles = (int)(((int64_t)a->max_q_len * p.group + bm - 1) / bm);
    return p;
}

/* Launches one bucket (T: __nv_bfloat16 or __half) as given; the caller
 * checked the arguments (check_attention), alignment, shared memory and, for
 * an EXACT bucket, that the dims are the bucket's. */
template <class T, class B, Plant kPlant = Plant::none>
inline qilin_status launch_prefill_mma(const qilin_attention_args *a, qilin_stream *stream) {
    const Params p = make_params(a, B::BM);
    dim3 grid((unsigned)p.q_tiles, (unsigned)a->n_kv_heads, (unsigned)a->n_seqs);
    return QILIN_LAUNCH((attention_prefill_mma_kernel<T, B, kPlant>), grid, dim3(B::THREADS), B::SMEM_BYTES,
                        stream, p);
}

/* The bucket's EXACT form when the dims are its own, else the bounded one. */
template <class T, class B>
inline qilin_status launch_bucket(const qilin_attention_args *a, qilin_stream *stream) {
    if (a->head_dim == B::DK && a->head_dim_v == B::DV)
        return launch_prefill_mma<T, typename B::Exact>(a, stream);
    return launch_prefill_mma<T, B>(a, stream);
}

} // namespace attn_mma

#endif /* QILIN_ATTENTION_PREFILL_CUH */
