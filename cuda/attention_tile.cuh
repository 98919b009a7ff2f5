/* attention_tile.cuh — the tiled online-softmax attention block shared by
 * attention.cu (prefill and split-KV decode) and mla.cu (absorbed MLA), and
 * the merge of split partials.
 *
 * One block owns M query rows of one sequence and one KV head. Rows pack
 * (query token, head of the KV group): row = i * group + g, so the heads that
 * share a KV head (GQA), or all heads for MLA's single latent "KV head", read
 * each key/value tile once. Per key tile of BK positions:
 *   1. the block loads K [BK, dk] and V [BK, dv] (16-byte groups, converted
 *      to fp32) into shared memory; Q [M, dk] was loaded once, pre-multiplied
 *      by scale * log2(e) so the softmax runs on exp2;
 *   2. scores: thread (ty, tx) computes an RM x RK register tile, rows
 *      ty*RM.., keys tx + TX*j (interleaved so the TX lanes of a row read
 *      different K rows: with the row pitch dk + 4 they fall in different
 *      banks); masks (causal, window, chunk); the row's running max and sum
 *      are updated with TX-lane shuffles and P = exp2(s - m) goes to shared
 *      memory with the row's rescale factor alpha;
 *   3. PV: thread (dy, dx) owns RO rows x NC four-wide value chunks
 *      (chunk dx + DX*j, interleaved so a quarter warp reads 128 contiguous
 *      bytes) and accumulates acc = acc*alpha + P V in fp32 registers.
 * The block's keys can be restricted to one chunk of the sequence (split-KV):
 * then it writes the unnormalised acc and (m, l) per row to a workspace and
 * merge_splits_kernel combines the chunks.
 *
 * Key and query rows may come in two pieces (MLA: latent ++ rope part) and
 * the value may be the first dv key elements (MLA: V = latent), so one kernel
 * serves both families. Plain SIMT fp32 FMA: it runs in the emulator; a
 * tensor-core sibling for sm_90 would compute the same function. */
#ifndef QILIN_ATTENTION_TILE_CUH
#define QILIN_ATTENTION_TILE_CUH

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstdio>

#include "attention.h"
#include "common.cuh"

namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFullMask = 0xffffffffu;

/* Work split of a block. Score stage: TX threads along keys (lanes of one
 * warp), TY along rows; PV stage: DX threads along four-wide value chunks,
 * DY along rows. DV_MAX bounds head_dim_v (registers: RO * NC * 4 floats).
 * MIN_BLOCKS: blocks per SM the shared memory allows at the largest head
 * dims, the register budget handed to ptxas (without it ptxas for sm_80
 * guesses an occupancy target and spills). */
template <int M_, int BK_, int THREADS_, int TX_, int DX_, int DV_MAX_, int MIN_BLOCKS_> struct Shape {
    static constexpr int M = M_, BK = BK_, THREADS = THREADS_, DV_MAX = DV_MAX_, MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int TX = TX_, TY = THREADS / TX, RK = BK / TX, RM = M / TY;
    static constexpr int DX = DX_, DY = THREADS / DX, RO = M / DY, NC = DV_MAX / (4 * DX);
    static_assert(TX * RK == BK && TY * RM == M, "score tile must cover M x BK");
    static_assert(DX * DY == THREADS && DY * RO == M && NC * 4 * DX == DV_MAX, "PV tile must cover M x DV_MAX");
    static_assert(32 % TX == 0 && DX % 8 == 0 && BK % 32 == 0, "a row's score lanes share a warp");
};

/* Everything a block needs; addresses are in elements. */
struct TileParams {
    /* query row (token t, head h) = qa[t*qa_ts + h*qa_hs + 0..da) ++ qb[t*qb_ts + h*qb_hs + 0..db) */
    const void *qa, *qb;
    int64_t qa_ts, qa_hs, qb_ts, qb_hs;
    /* key (position t of sequence b, kv head g) = ka[blk, t % bs, g][0..da) ++ kb[blk, t % bs, g][0..db)
     * with blk = seq_slot[b * table_stride + t / bs] (kv_row) */
    const void *ka, *kb;
    qilin_kv_layout ka_l, kb_l;
    /* value = va[s, t, g][0..dv), or the first dv key elements when va is NULL */
    const void *va;
    qilin_kv_layout va_l;
    int da, db, dv;
    void *out; /* [tokens, heads, dv] */
    int64_t out_ts, out_hs;
    const int *q_start, *kv_len, *seq_slot; /* seq_slot: the block tables, [n_seqs, table_stride] */
    int table_stride, block_size;           /* block_size > 0 (a huge one: one block per sequence) */
    int group;      /* query heads per KV head: rows pack (token, head of the group) */
    int n_heads;    /* all query heads: the workspace record index */
    int window;     /* 0 = none */
    float qscale;   /* softmax scale * log2(e) */
    int q_tiles;    /* blocks along a sequence's rows; blockIdx.x = q_tile + q_tiles * split */
    int n_splits;
    int chunk_len;  /* keys per split (the last split takes the rest) */
    float *ws_acc;  /* [tokens, n_splits, n_heads, dv] unnormalised, or NULL: write out */
    float2 *ws_ml;  /* [tokens, n_splits, n_heads] (max in log2 units, sum) */
    int vec;        /* every row start is 16-byte aligned */
};

/* ---- shared memory -------------------------------------------------------- */
struct SmemLayout {
    int ldq, ldk, ldv, ldp; /* row pitches in floats; +4 keeps float4 rows in distinct banks */
    int q, k, v, p, alpha, l, m, floats;
};

template <class S> __host__ __device__ inline SmemLayout smem_layout(int dk, int dv, bool v_in_k) {
    SmemLayout L;
    L.ldq = L.ldk = dk + 4;
    L.ldv = v_in_k ? L.ldk : dv + 4;
    L.ldp = S::BK + S::TX; /* the 32/TX rows a warp writes land in disjoint banks */
    int o = 0;
    L.q = o, o += S::M * L.ldq;
    L.k = o, o += S::BK * L.ldk;
    L.v = v_in_k ? L.k : o;
    if (!v_in_k) o += S::BK * L.ldv;
    L.p = o, o += S::M * L.ldp;
    L.alpha = o, o += S::M;
    L.l = o, o += S::M;
    L.m = o, o += S::M;
    L.floats = o;
    return L;
}

/* One 16-byte group of T (Vec16<T>::n elements, a multiple of 4) to floats
 * times `scale` at dst (16-byte aligned); element loads when !vec. */
template <class T> __device__ inline void group_to_smem(float *dst, const T *src, bool vec, float scale) {
    constexpr int V = Vec16<T>::n;
    Vec16<T> raw;
    if (vec) {
        raw = *reinterpret_cast<const Vec16<T> *>(src);
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) raw.v[k] = src[k];
    }
#pragma unroll
    for (int k = 0; k < V; k += 4) {
        float4 f;
        f.x = to_float(raw.v[k]) * scale;
        f.y = to_float(raw.v[k + 1]) * scale;
        f.z = to_float(raw.v[k + 2]) * scale;
        f.w = to_float(raw.v[k + 3]) * scale;
        store_vec<float4>(dst + k, f);
    }
}

template <class T> __device__ inline void zero_group(float *dst) {
#pragma unroll
    for (int k = 0; k < Vec16<T>::n; k += 4) store_vec<float4>(dst + k, float4{0.f, 0.f, 0.f, 0.f});
}

/* Four results rounded to T; one 8- or 16-byte store when vec. */
template <class T> __device__ inline void store4(T *dst, float4 v, bool vec) {
    struct alignas(4 * sizeof(T)) Four {
        T v[4];
    } o;
    o.v[0] = from_float<T>(v.x);
    o.v[1] = from_float<T>(v.y);
    o.v[2] = from_float<T>(v.z);
    o.v[3] = from_float<T>(v.w);
    if (vec) {
        store_vec<Four>(dst, o);
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) dst[k] = o.v[k];
    }
}

/* Sequence b's block table: its position t lives in block table[t / block_size]. */
__device__ inline const int *seq_table(const TileParams &p, int b) {
    return p.seq_slot + (int64_t)b * p.table_stride;
}

/* Row of position t, KV head g, through the sequence's block table; a tile
 * may straddle blocks, so every row looks its block up. */
__device__ inline const void *kv_row(const void *base, const qilin_kv_layout &l, const int *table, int bs, int t,
                                     int g, size_t elem) {
    const int blk = t / bs;
    int64_t off = (int64_t)table[blk] * l.slot_stride + (int64_t)(t - blk * bs) * l.pos_stride +
                  (int64_t)g * l.head_stride;
    return (const char *)base + off * (int64_t)elem;
}

/* Q rows [row0, row0 + M) of the block, scaled; rows past `rows` are zero. */
template <class T, class S>
__device__ inline void load_queries(float *sq, int ldq, const TileParams &p, int q0, int row0, int rows, int kvh) {
    constexpr int V = Vec16<T>::n;
    const int gpr = (p.da + p.db) / V;
    for (int idx = threadIdx.x; idx < S::M * gpr; idx += S::THREADS) {
        const int r = idx / gpr, d = idx % gpr * V, row = row0 + r;
        float *dst = sq + r * ldq + d;
        if (row >= rows) {
            zero_group<T>(dst);
            continue;
        }
        const int64_t tok = q0 + row / p.group, h = (int64_t)kvh * p.group + row % p.group;
        const T *src = d < p.da ? (const T *)p.qa + tok * p.qa_ts + h * p.qa_hs + d
                                : (const T *)p.qb + tok * p.qb_ts + h * p.qb_hs + (d - p.da);
        group_to_smem(dst, src, p.vec, p.qscale);
    }
}

/* K (and V unless it aliases K) of positions t0 .. t0 + n - 1; the rest of
 * the tile is zero so masked keys contribute exactly nothing. */
template <class T, class S>
__device__ inline void load_kv_tile(float *smem, const SmemLayout &L, const TileParams &p, const int *table, int kvh,
                                    int t0, int n) {
    constexpr int V = Vec16<T>::n;
    const int gk = (p.da + p.db) / V, gv = p.va ? p.dv / V : 0, g = gk + gv;
    for (int idx = threadIdx.x; idx < S::BK * g; idx += S::THREADS) {
        const int r = idx / g, c = idx % g;
        const bool is_k = c < gk;
        const int d = (is_k ? c : c - gk) * V;
        float *dst = is_k ? smem + L.k + r * L.ldk + d : smem + L.v + r * L.ldv + d;
        if (r >= n) {
            zero_group<T>(dst);
            continue;
        }
        const T *src;
        if (!is_k)
            src = (const T *)kv_row(p.va, p.va_l, table, p.block_size, t0 + r, kvh, sizeof(T)) + d;
        else if (d < p.da)
            src = (const T *)kv_row(p.ka, p.ka_l, table, p.block_size, t0 + r, kvh, sizeof(T)) + d;
        else
            src = (const T *)kv_row(p.kb, p.kb_l, table, p.block_size, t0 + r, kvh, sizeof(T)) + (d - p.da);
        group_to_smem(dst, src, p.vec, 1.0f);
    }
}

/* Per-thread running state: (m, l) of the score-stage rows, acc of the PV rows. */
template <class S> struct State {
    float m[S::RM], l[S::RM];
    float acc[S::RO][S::NC][4];
};

/* Scores of the tile at t0, masked to [lim_lo, lim_hi) per row; online
 * softmax update; P and alpha to shared memory. */
template <class S>
__device__ inline void scores_softmax(State<S> &st, float *smem, const SmemLayout &L, int dk, int t0,
                                      const int *lim_lo, const int *lim_hi) {
    const int tx = threadIdx.x % S::TX, ty = threadIdx.x / S::TX;
    const float *q = smem + L.q + ty * S::RM * L.ldq, *k = smem + L.k + tx * L.ldk;
    float s[S::RM][S::RK];
#pragma unroll
    for (int i = 0; i < S::RM; i++)
#pragma unroll
        for (int j = 0; j < S::RK; j++) s[i][j] = 0.0f;
    for (int d = 0; d < dk; d += 4) {
        float4 qv[S::RM], kv[S::RK];
#pragma unroll
        for (int i = 0; i < S::RM; i++) qv[i] = load_vec<float4>(q + i * L.ldq + d);
#pragma unroll
        for (int j = 0; j < S::RK; j++) kv[j] = load_vec<float4>(k + j * S::TX * L.ldk + d);
#pragma unroll
        for (int i = 0; i < S::RM; i++)
#pragma unroll
            for (int j = 0; j < S::RK; j++) {
                float a = s[i][j];
                a = fmaf(qv[i].x, kv[j].x, a);
                a = fmaf(qv[i].y, kv[j].y, a);
                a = fmaf(qv[i].z, kv[j].z, a);
                s[i][j] = fmaf(qv[i].w, kv[j].w, a);
            }
    }
#pragma unroll
    for (int i = 0; i < S::RM; i++) {
        const int row = ty * S::RM + i;
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < S::RK; j++) {
            const int t = t0 + tx + j * S::TX;
            if (t < lim_lo[i] || t >= lim_hi[i]) s[i][j] = -INFINITY;
            mx = fmaxf(mx, s[i][j]);
        }
#pragma unroll
        for (int o = S::TX / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, o));
        const float m_new = fmaxf(st.m[i], mx);
        const float base = m_new == -INFINITY ? 0.0f : m_new; /* a row with nothing visible yet stays 0 */
        const float alpha = exp2f(st.m[i] - base);
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < S::RK; j++) {
            const float e = exp2f(s[i][j] - base);
            sum += e;
            smem[L.p + row * L.ldp + tx + j * S::TX] = e;
        }
#pragma unroll
        for (int o = S::TX / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(kFullMask, sum, o);
        st.l[i] = st.l[i] * alpha + sum;
        st.m[i] = m_new;
        if (tx == 0) smem[L.alpha + row] = alpha;
    }
}

/* acc = acc * alpha + P V for the thread's rows and value chunks. */
template <class S> __device__ inline void accumulate_pv(State<S> &st, const float *smem, const SmemLayout &L, int dv) {
    const int dx = threadIdx.x % S::DX, dy = threadIdx.x / S::DX;
    const float *P = smem + L.p + dy * S::RO * L.ldp, *Vt = smem + L.v;
#pragma unroll
    for (int r = 0; r < S::RO; r++) {
        const float a = smem[L.alpha + dy * S::RO + r];
#pragma unroll
        for (int j = 0; j < S::NC; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) st.acc[r][j][e] *= a;
    }
    for (int k = 0; k < S::BK; k += 4) {
        float4 pr[S::RO];
#pragma unroll
        for (int r = 0; r < S::RO; r++) pr[r] = load_vec<float4>(P + r * L.ldp + k);
#pragma unroll
        for (int j = 0; j < S::NC; j++) {
            const int c = (dx + j * S::DX) * 4;
            if (c >= dv) continue;
            const float4 v0 = load_vec<float4>(Vt + (k + 0) * L.ldv + c);
            const float4 v1 = load_vec<float4>(Vt + (k + 1) * L.ldv + c);
            const float4 v2 = load_vec<float4>(Vt + (k + 2) * L.ldv + c);
            const float4 v3 = load_vec<float4>(Vt + (k + 3) * L.ldv + c);
#pragma unroll
            for (int r = 0; r < S::RO; r++) {
                float *a = st.acc[r][j];
                a[0] = fmaf(pr[r].w, v3.x, fmaf(pr[r].z, v2.x, fmaf(pr[r].y, v1.x, fmaf(pr[r].x, v0.x, a[0]))));
                a[1] = fmaf(pr[r].w, v3.y, fmaf(pr[r].z, v2.y, fmaf(pr[r].y, v1.y, fmaf(pr[r].x, v0.y, a[1]))));
                a[2] = fmaf(pr[r].w, v3.z, fmaf(pr[r].z, v2.z, fmaf(pr[r].y, v1.z, fmaf(pr[r].x, v0.z, a[2]))));
                a[3] = fmaf(pr[r].w, v3.w, fmaf(pr[r].z, v2.w, fmaf(pr[r].y, v1.w, fmaf(pr[r].x, v0.w, a[3]))));
            }
        }
    }
}

/* Normalised rows to out, or (acc, m, l) to the split's workspace records. */
template <class T, class S>
__device__ inline void write_rows(const State<S> &st, const float *smem, const SmemLayout &L, const TileParams &p,
                                  int q0, int row0, int rows, int kvh, int split) {
    const int dx = threadIdx.x % S::DX, dy = threadIdx.x / S::DX;
#pragma unroll
    for (int r = 0; r < S::RO; r++) {
        const int row = row0 + dy * S::RO + r;
        if (row >= rows) continue;
        const int64_t tok = q0 + row / p.group, h = (int64_t)kvh * p.group + row % p.group;
        const float l = smem[L.l + dy * S::RO + r];
        if (p.ws_acc) {
            const int64_t rec = (tok * p.n_splits + split) * p.n_heads + h;
            if (dx == 0) p.ws_ml[rec] = float2{smem[L.m + dy * S::RO + r], l};
#pragma unroll
            for (int j = 0; j < S::NC; j++) {
                const int c = (dx + j * S::DX) * 4;
                const float *a = st.acc[r][j];
                if (c < p.dv) store_vec<float4>(p.ws_acc + rec * p.dv + c, float4{a[0], a[1], a[2], a[3]});
            }
        } else {
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            T *o = (T *)p.out + tok * p.out_ts + h * p.out_hs;
#pragma unroll
            for (int j = 0; j < S::NC; j++) {
                const int c = (dx + j * S::DX) * 4;
                const float *a = st.acc[r][j];
                if (c < p.dv) store4(o + c, float4{a[0] * inv, a[1] * inv, a[2] * inv, a[3] * inv}, p.vec);
            }
        }
    }
}

/* Grid: (q_tiles * n_splits, kv heads, sequences); S::THREADS threads;
 * smem_layout(...).floats * 4 bytes of dynamic shared memory. */
template <class T, class S> __global__ void __launch_bounds__(S::THREADS, S::MIN_BLOCKS) attention_tile_kernel(const TileParams p) {
    QILIN_DYNAMIC_SMEM(float, smem);
    const int b = blockIdx.z, kvh = blockIdx.y;
    const int qtile = blockIdx.x % p.q_tiles, split = blockIdx.x / p.q_tiles;
    const int q0 = p.q_start[b], n_q = p.q_start[b + 1] - q0, kv_len = p.kv_len[b];
    const int rows = n_q * p.group, row0 = qtile * S::M;
    if (row0 >= rows) return; /* whole block: no barrier is skipped by part of it */
    const int pos0 = kv_len - n_q; /* position of the sequence's first new token */
    const int row_end = min(row0 + S::M, rows);

    /* keys any row of the block may see, cut to this split's chunk */
    int lo = p.window > 0 ? max(0, pos0 + row0 / p.group - p.window + 1) : 0;
    int hi = min(kv_len, pos0 + (row_end - 1) / p.group + 1);
    const int64_t c0 = (int64_t)split * p.chunk_len;
    if (c0 > lo) lo = (int)c0; /* c0 < max_kv_len + BK: fits */
    if (split + 1 < p.n_splits && c0 + p.chunk_len < hi) hi = (int)(c0 + p.chunk_len);

    const int ty = threadIdx.x / S::TX;
    int lim_lo[S::RM], lim_hi[S::RM];
#pragma unroll
    for (int i = 0; i < S::RM; i++) {
        const int row = row0 + ty * S::RM + i, pos = pos0 + row / p.group;
        const bool valid = row < rows;
        lim_lo[i] = max(lo, p.window > 0 ? pos - p.window + 1 : 0);
        lim_hi[i] = valid ? min(hi, pos + 1) : 0;
    }

    const SmemLayout L = smem_layout<S>(p.da + p.db, p.dv, p.va == nullptr);
    const int *table = seq_table(p, b);
    load_queries<T, S>(smem + L.q, L.ldq, p, q0, row0, rows, kvh);

    State<S> st;
#pragma unroll
    for (int i = 0; i < S::RM; i++) st.m[i] = -INFINITY, st.l[i] = 0.0f;
#pragma unroll
    for (int r = 0; r < S::RO; r++)
#pragma unroll
        for (int j = 0; j < S::NC; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) st.acc[r][j][e] = 0.0f;

    for (int t0 = lo; t0 < hi; t0 += S::BK) {
        load_kv_tile<T, S>(smem, L, p, table, kvh, t0, min(S::BK, hi - t0));
        __syncthreads();
        scores_softmax<S>(st, smem, L, p.da + p.db, t0, lim_lo, lim_hi);
        __syncthreads();
        accumulate_pv<S>(st, smem, L, p.dv);
        __syncthreads();
    }

    if (threadIdx.x % S::TX == 0) {
#pragma unroll
        for (int i = 0; i < S::RM; i++) {
            smem[L.l + ty * S::RM + i] = st.l[i];
            smem[L.m + ty * S::RM + i] = st.m[i];
        }
    }
    __syncthreads();
    write_rows<T, S>(st, smem, L, p, q0, row0, rows, kvh, split);
}

/* out[t, h] = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s over the
 * splits of token t. Grid (n_heads, max_q_len, n_seqs); block (dv/4 threads
 * up to 128, G split groups): thread (x, y) strides over the value in
 * four-wide chunks and sums the splits y, y + G, ..., so G partials are read
 * at once instead of one after another (a batch-1 plan has up to 256
 * splits); the G sums are then added in the fixed order y = 0..G-1 through
 * shared memory, so the result does not depend on timing. */
constexpr int kMergeMaxGroups = 8, kMergeMaxThreads = 512;
template <class T> __global__ void __launch_bounds__(kMergeMaxThreads) merge_splits_kernel(const TileParams p) {
    __shared__ float4 part[kMergeMaxThreads];
    const int h = blockIdx.x, i = blockIdx.y, b = blockIdx.z;
    const int q0 = p.q_start[b], n_q = p.q_start[b + 1] - q0;
    if (i >= n_q) return; /* whole block */
    const int64_t tok = q0 + i, rec0 = tok * p.n_splits * p.n_heads + h;
    float mmax = -INFINITY;
    for (int s = 0; s < p.n_splits; s++) mmax = fmaxf(mmax, p.ws_ml[rec0 + (int64_t)s * p.n_heads].x);
    float denom = 0.0f;
    for (int s = 0; s < p.n_splits; s++) {
        const float2 ml = p.ws_ml[rec0 + (int64_t)s * p.n_heads];
        if (ml.x != -INFINITY) denom += exp2f(ml.x - mmax) * ml.y;
    }
    const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;
    T *o = (T *)p.out + tok * p.out_ts + h * p.out_hs;
    const int x = threadIdx.x, y = threadIdx.y, G = blockDim.y;
    for (int c0 = 0; c0 < p.dv; c0 += blockDim.x * 4) { /* same trip count in every thread: barriers below */
        const int c = c0 + x * 4;
        float4 sum{0.f, 0.f, 0.f, 0.f};
        if (c < p.dv)
            for (int s = y; s < p.n_splits; s += G) {
                const int64_t rec = rec0 + (int64_t)s * p.n_heads;
                const float m = p.ws_ml[rec].x;
                if (m == -INFINITY) continue; /* an empty chunk: its acc is 0, skip the read */
                const float w = exp2f(m - mmax);
                const float4 a = load_vec<float4>(p.ws_acc + rec * p.dv + c);
                sum.x += w * a.x, sum.y += w * a.y, sum.z += w * a.z, sum.w += w * a.w;
            }
        part[y * blockDim.x + x] = sum;
        __syncthreads();
        if (y == 0 && c < p.dv) {
            for (int g = 1; g < G; g++) {
                const float4 q = part[g * blockDim.x + x];
                sum.x += q.x, sum.y += q.y, sum.z += q.z, sum.w += q.w;
            }
            store4(o + c, float4{sum.x * inv, sum.y * inv, sum.z * inv, sum.w * inv}, p.vec);
        }
        __syncthreads(); /* part is rewritten by the next pass */
    }
}

/* Launches the merge of a split launch: dv/4 column threads (a multiple of
 * 32, at most 128) times up to 8 split groups, at most 512 threads. */
template <class T> inline qilin_status launch_merge(const TileParams &p, int max_q_len, int n_seqs, qilin_stream *stream) {
    int threads = (p.dv / 4 + 31) / 32 * 32;
    if (threads > 128) threads = 128;
    int groups = kMergeMaxThreads / threads;
    if (groups > kMergeMaxGroups) groups = kMergeMaxGroups;
    if (groups > p.n_splits) groups = p.n_splits;
    dim3 mgrid((unsigned)p.n_heads, (unsigned)max_q_len, (unsigned)n_seqs);
    return QILIN_LAUNCH((merge_splits_kernel<T>), mgrid, dim3((unsigned)threads, (unsigned)groups), 0, stream, p);
}

/* ---- host-side planning --------------------------------------------------- */

/* The split plan fills the device: a decode step at batch 1 has one block
 * per KV head (or per MLA row tile), far fewer than the SMs, so the keys are
 * cut into chunks until about two blocks per SM run. A chunk may be as short
 * as kMinChunk keys (half a 32-key tile; the kernels mask a partial tile),
 * because an idle SM costs more than a short split: a split's fixed cost is
 * its Q load and one (max, sum, dv floats) partial per row, which the merge
 * reads back from L2. kMaxSplits bounds the merge's loop, kMaxPartials the
 * workspace: (token, head, split) records. Below one wave only when the
 * keys run out: blocks_per_split x ceil(max_kv_len / kMinChunk) < SMs
 * (e.g. MLA at TP 8, batch 1, 1K keys: 64 blocks of 16 keys). */
constexpr int kMinChunk = 16;
constexpr int kMaxSplits = 256;
constexpr int64_t kMaxPartials = 16384;

/* The most splits a launch with `rows` (token, head) outputs may use: what
 * the workspace functions size for. */
inline int max_splits(int64_t rows, int max_kv_len) {
    if (rows <= 0 || max_kv_len <= 0) return 1;
    int64_t s = (max_kv_len + kMinChunk - 1) / kMinChunk;
    if (s > kMaxSplits) s = kMaxSplits;
    if (s > kMaxPartials / rows) s = kMaxPartials / rows;
    return s < 1 ? 1 : (int)s;
}

inline size_t ws_ml_bytes(int64_t records) { return ((size_t)records * sizeof(float2) + 255) / 256 * 256; }
inline size_t workspace_bytes(int64_t rows, int dv, int splits) {
    if (splits <= 1) return 0;
    const int64_t rec = rows * splits;
    return ws_ml_bytes(rec) + (size_t)rec * dv * sizeof(float);
}

/* The workspace every launch with at most `rows` outputs may need: a launch
 * with fewer rows may split more (max_splits), so sizing for `rows` alone
 * would starve decode (one token, many splits) whenever the workspace was
 * sized for a long prefill chunk. The largest over row counts <= rows. */
inline size_t max_workspace_bytes(int64_t rows, int dv, int max_kv_len) {
    size_t best = 0;
    if (rows <= 0) return 0;
    for (int s = 2; s <= max_splits(1, max_kv_len); s++) {
        int64_t r = kMaxPartials / s < rows ? kMaxPartials / s : rows;
        if (r < 1 || max_splits(r, max_kv_len) < s) continue;
        size_t b = workspace_bytes(r, dv, s);
        if (b > best) best = b;
    }
    return best;
}

struct SplitPlan {
    int n_splits, chunk_len;
};

/* The device's SM count, read once per device (the plan runs before every
 * decode launch; the count does not change while the process runs). */
inline qilin_status device_sm_count(int *sms) {
    static std::atomic<int> cached[64];
    int device = 0;
    QILIN_TRY(qilin_device_get(&device));
    if (device >= 0 && device < 64 && (*sms = cached[device].load(std::memory_order_relaxed)) > 0) return QILIN_OK;
    qilin_device_props props;
    QILIN_TRY(qilin_device_get_props(device, &props));
    *sms = props.sm_count > 0 ? props.sm_count : 1;
    if (device >= 0 && device < 64) cached[device].store(*sms, std::memory_order_relaxed);
    return QILIN_OK;
}

/* Keys per split: whole 32-key tiles when a split has at least one, else
 * kMinChunk granules (a half tile). */
inline int64_t split_chunk(int max_kv_len, int64_t splits, int bk) {
    const int64_t chunk = (max_kv_len + splits - 1) / splits;
    const int64_t grain = chunk >= bk ? bk : kMinChunk;
    return (chunk + grain - 1) / grain * grain;
}

/* Splits so that about two blocks per SM run, each over at least kMinChunk
 * keys, within the workspace given. `blocks_per_split` is the grid without
 * splitting. */
inline qilin_status plan_splits(SplitPlan *plan, const char *who, int64_t rows, int max_kv_len, int64_t blocks_per_split,
                                int bk, int dv, const void *workspace, size_t workspace_bytes_given) {
    plan->n_splits = 1;
    plan->chunk_len = INT_MAX;
    if ((uintptr_t)workspace % 16 != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: workspace must be 16-byte aligned", who);
    int sms = 1;
    QILIN_TRY(device_sm_count(&sms));
    const int64_t target = 2 * (int64_t)sms;
    int64_t s = (target + blocks_per_split - 1) / blocks_per_split;
    if (s > max_splits(rows, max_kv_len)) s = max_splits(rows, max_kv_len);
    while (s > 1 && (!workspace || workspace_bytes(rows, dv, (int)s) > workspace_bytes_given)) s--;
    if (s > 1) {
        const int64_t chunk = split_chunk(max_kv_len, s, bk);
        plan->chunk_len = (int)chunk;
        plan->n_splits = (int)((max_kv_len + chunk - 1) / chunk);
    }
    if (getenv("QILIN_PRINT_PLANS"))
        fprintf(stderr, "%s plan: rows=%lld max_kv_len=%d blocks/split=%lld sms=%d -> splits=%d chunk=%d\n", who,
                (long long)rows, max_kv_len, (long long)blocks_per_split, sms, plan->n_splits,
                plan->n_splits > 1 ? plan->chunk_len : max_kv_len);
    return QILIN_OK;
}

inline void set_workspace(TileParams *p, void *workspace, int64_t rows, int splits) {
    if (splits <= 1) {
        p->ws_ml = nullptr;
        p->ws_acc = nullptr;
        return;
    }
    p->ws_ml = (float2 *)workspace;
    p->ws_acc = (float *)((char *)workspace + ws_ml_bytes(rows * splits));
}

/* Dynamic shared memory of a shape, checked against what the device allows. */
template <class S>
inline qilin_status tile_smem_bytes(size_t *bytes, const char *who, int dk, int dv, bool v_in_k) {
    *bytes = (size_t)smem_layout<S>(dk, dv, v_in_k).floats * sizeof(float);
    int device = 0;
    qilin_device_props props;
    QILIN_TRY(qilin_device_get(&device));
    QILIN_TRY(qilin_device_get_props(device, &props));
    if (*bytes > props.shared_mem_per_block_optin)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: head dims %d/%d need %zu bytes of shared memory, device allows %zu",
                           who, dk, dv, *bytes, props.shared_mem_per_block_optin);
    return QILIN_OK;
}

/* Launches the tile kernel (and the merge when split) for one shape. */
template <class T, class S>
inline qilin_status launch_tiles(TileParams p, int n_kv_heads, int n_seqs, int max_q_len, size_t smem,
                                 qilin_stream *stream) {
    dim3 grid((unsigned)(p.q_tiles * p.n_splits), (unsigned)n_kv_heads, (unsigned)n_seqs);
    QILIN_TRY(QILIN_LAUNCH((attention_tile_kernel<T, S>), grid, dim3(S::THREADS), smem, stream, p));
    if (p.n_splits <= 1) return QILIN_OK;
    return launch_merge<T>(p, max_q_len, n_seqs, stream);
}

} // namespace attn

#endif /* QILIN_ATTENTION_TILE_CUH */
