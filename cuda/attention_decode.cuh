/* attention_decode.cuh — decode attention and absorbed MLA on tensor cores
 * (mma.sync m16n8k16, bf16/f16 in, fp32 accumulate), used by
 * qilin_attention_decode (GQA/MQA, group >= 2) and qilin_mla_attention.
 *
 * Why tensor cores pay in decode: one query token per sequence, but all the
 * query heads that share a KV head (GQA group, or MLA's 16-128 heads on one
 * latent) form the M dimension of the mma, so a block reads each K/V
 * position once from memory for the whole group (the FlashMLA argument).
 * Rows pack (query token, head of the group) exactly as attention_tile.cuh:
 * row = i * group + g, so MLA's absorbed form with n_q > 1 (chunked
 * prefill) runs the same kernel with per-row causal limits.
 *
 * One block = M rows (16 for GQA, 16/32/64 for MLA) of one sequence and one
 * KV head, over one split of the keys. Per tile of BK = 32 positions:
 *   load   K [BK, dk] (and V [BK, dv] unless it aliases the first dv key
 *          columns, MLA) with cp.async 16-byte copies into a STAGES-deep
 *          ring in shared memory, STAGES tiles in flight per block: decode
 *          is bandwidth-bound and this is what keeps HBM busy. Rows past
 *          the split's end are zero-filled (src_bytes = 0), so masked keys
 *          multiply zeros, never stale NaNs.
 *   S      S = Q K^T: warps take 16x16 units of S (ldmatrix.x4 of Q rows and
 *          K rows, two mma per 16-column step of dk), scaled by
 *          scale * log2(e) into fp32 shared memory.
 *   soft   THREADS / M threads per row: masks (causal, window, split),
 *          online max/sum in fp32 registers, P = exp2(s - m) rounded to T
 *          into shared memory as hi + lo (see tc_softmax), alpha per row.
 *   PV     warp (wm, wn) owns rows (16-row slices wm, wm + WM ..) x value
 *          columns (16-column chunks wn, wn + WN ..): acc *= alpha, then
 *          acc += P V with ldmatrix.x4 of P and ldmatrix.x4.trans of V.
 *   then a barrier (every warp is done with the stage) and the cp.async of
 *   tile i + STAGES into the same stage.
 * At the end rows are normalised and written, or (acc, m, l) goes to the
 * split-KV workspace of attention_tile.cuh and merge_splits_kernel
 * combines the splits (same records, same split plan from the SM count).
 *
 * Requirements (else the callers use the CUDA-core tile kernel): bf16/f16,
 * key and value widths multiples of 16 (mma k-steps / 16-column chunks),
 * every address and stride 16-byte aligned (cp.async), shared memory within
 * the device's limit. Scores, softmax and accumulation are fp32; P enters the PV
 * mma as hi + lo in T, so the result matches the fp32 kernel's accuracy.
 *
 * Planted bugs (kPlant, instantiated only by tests): kPlantNoWait drops the
 * cp_async_wait before a stage is read, kPlantNoStageBarrier drops the
 * barrier between the PV reads of a stage and the cp.async that refills it;
 * the emulator's poisoned cp.async destinations must make both visible. */
#ifndef QILIN_ATTENTION_DECODE_CUH
#define QILIN_ATTENTION_DECODE_CUH

#include "attention_tile.cuh"
#include "tensor_core.cuh"

namespace attn_tc {

using attn::TileParams;

enum Plant { kNoPlant = 0, kPlantNoWait = 1, kPlantNoStageBarrier = 2 };

/* M rows, BK keys per tile, STAGES tiles in flight, WARPS warps of which WM
 * split the rows in the PV stage (the rest, WN, split the value columns),
 * DV_MAX the widest value, MIN_BLOCKS for __launch_bounds__. */
template <int M_, int BK_, int STAGES_, int WARPS_, int WM_, int DV_MAX_, int MIN_BLOCKS_> struct TcShape {
    static constexpr int M = M_, BK = BK_, STAGES = STAGES_, WARPS = WARPS_, THREADS = 32 * WARPS_;
    static constexpr int WM = WM_, WN = WARPS_ / WM_, MI = M_ / 16 / WM_, NJ = DV_MAX_ / 16 / (WARPS_ / WM_);
    static constexpr int DV_MAX = DV_MAX_, MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int TPR = THREADS / M, KPT = BK / TPR; /* softmax: threads per row, keys per thread */
    static_assert(M % 16 == 0 && BK % 16 == 0 && WARPS % WM == 0, "mma tiles are 16 rows x 16 keys");
    static_assert(MI * WM * 16 == M && NJ * WN * 16 == DV_MAX, "PV warps must cover M x DV_MAX");
    static_assert(TPR * M == THREADS && TPR <= 32 && 32 % TPR == 0 && KPT * TPR == BK, "a row's lanes share a warp");
    static_assert(STAGES >= 2 && STAGES <= 8, "cp.async.wait_group takes 0..7");
};

/* Shared memory, byte offsets (16-byte aligned); pitches in elements. */
struct TcLayout {
    int ldq, ldk, ldv, lds, ldp;
    int q, stage0, stage_bytes, v_in_stage, s, p, p_lo, alpha, l, bytes;
};

template <class S> __host__ __device__ inline TcLayout tc_layout(int dk, int dv, bool v_in_k) {
    TcLayout L;
    /* +8 elements (16 bytes) per row: the 8 rows an ldmatrix reads start in
     * different banks when the row is a multiple of 128 bytes */
    L.ldq = L.ldk = dk + 8;
    L.ldv = v_in_k ? L.ldk : dv + 8;
    L.lds = S::BK + 4;
    L.ldp = S::BK + 8;
    int o = 0;
    L.q = o, o += S::M * L.ldq * 2;
    L.stage0 = o;
    L.v_in_stage = v_in_k ? 0 : S::BK * L.ldk * 2;
    L.stage_bytes = S::BK * L.ldk * 2 + (v_in_k ? 0 : S::BK * L.ldv * 2);
    o += S::STAGES * L.stage_bytes;
    L.s = o, o += S::M * L.lds * 4;
    L.p = o, o += 2 * S::M * L.ldp * 2; /* P = hi + lo, two T matrices */
    L.p_lo = L.p + S::M * L.ldp * 2;
    L.alpha = o, o += S::M * 4;
    L.l = o, o += S::M * 4;
    L.bytes = o;
    return L;
}

template <class T> __device__ inline void mma16816(float d[4], const uint32_t a[4], const uint32_t b[2]);
template <> __device__ inline void mma16816<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    mma_m16n8k16_bf16(d, a, b, d);
}
template <> __device__ inline void mma16816<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    mma_m16n8k16_f16(d, a, b, d);
}

/* Q rows [row0, row0 + M) of the block into shared memory (cp.async, in
 * the first pipeline group); rows past `rows` are zero-filled. */
template <class T, class S>
__device__ inline void tc_load_queries(char *smem, const TcLayout &L, const TileParams &p, int q0, int row0, int rows,
                                    int kvh) {
    const int gpr = (p.da + p.db) / 8;
    for (int idx = threadIdx.x; idx < S::M * gpr; idx += S::THREADS) {
        const int r = idx / gpr, d = idx % gpr * 8, row = min(row0 + r, rows - 1);
        const int64_t tok = q0 + row / p.group, h = (int64_t)kvh * p.group + row % p.group;
        const T *src = d < p.da ? (const T *)p.qa + tok * p.qa_ts + h * p.qa_hs + d
                                : (const T *)p.qb + tok * p.qb_ts + h * p.qb_hs + (d - p.da);
        cp_async_cg16(smem + L.q + (r * L.ldq + d) * 2, src, row0 + r < rows ? 16 : 0);
    }
}

/* K (and V) of positions t0 .. t0 + n - 1 into a stage; rows n .. BK-1 zero. */
template <class T, class S>
__device__ inline void tc_load_kv_tile(char *stage, const TcLayout &L, const TileParams &p, const int *table, int kvh, int t0,
                                    int n) {
    const int gk = (p.da + p.db) / 8, gv = p.va ? p.dv / 8 : 0, g = gk + gv;
    for (int idx = threadIdx.x; idx < S::BK * g; idx += S::THREADS) {
        const int r = idx / g, c = idx % g, t = t0 + min(r, n - 1); /* a valid address even when zero-filling */
        const void *src;
        char *dst;
        if (c >= gk) {
            const int d = (c - gk) * 8;
            src = (const T *)attn::kv_row(p.va, p.va_l, table, p.block_size, t, kvh, sizeof(T)) + d;
            dst = stage + L.v_in_stage + (r * L.ldv + d) * 2;
        } else {
            const int d = c * 8;
            src = d < p.da ? (const T *)attn::kv_row(p.ka, p.ka_l, table, p.block_size, t, kvh, sizeof(T)) + d
                           : (const T *)attn::kv_row(p.kb, p.kb_l, table, p.block_size, t, kvh, sizeof(T)) + (d - p.da);
            dst = stage + (r * L.ldk + d) * 2;
        }
        cp_async_cg16(dst, src, r < n ? 16 : 0);
    }
}

/* S = Q K^T * qscale (log2 units) for the block's M x BK tile, fp32 to smem. */
template <class T, class S>
__device__ inline void tc_scores(char *smem, const TcLayout &L, const char *stage, int dk, float qscale) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const T *q = (const T *)(smem + L.q), *k = (const T *)stage;
    float *s_out = (float *)(smem + L.s);
    constexpr int kRowSlices = S::M / 16, kUnits = kRowSlices * (S::BK / 16);
    for (int u = warp; u < kUnits; u += S::WARPS) {
        const int rs = u % kRowSlices, kc = u / kRowSlices;
        /* ldmatrix row addresses: Q matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15);
         * K matrices (keys 0-7, cols 0-7 | 8-15), (keys 8-15, cols 0-7 | 8-15) */
        const T *qrow = q + (rs * 16 + lane % 16) * L.ldq + (lane / 16) * 8;
        const T *krow = k + (kc * 16 + (lane / 16) * 8 + lane % 8) * L.ldk + ((lane / 8) % 2) * 8;
        float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        for (int d = 0; d < dk; d += 16) {
            uint32_t a[4], b[4];
            ldmatrix_x4(a, qrow + d);
            ldmatrix_x4(b, krow + d);
            mma16816<T>(acc[0], a, b);
            mma16816<T>(acc[1], a, b + 2);
        }
        const int g = lane / 4, t = lane % 4;
#pragma unroll
        for (int j = 0; j < 2; j++) {
            float *lo = s_out + (rs * 16 + g) * L.lds + kc * 16 + j * 8 + 2 * t, *hi = lo + 8 * L.lds;
            lo[0] = acc[j][0] * qscale, lo[1] = acc[j][1] * qscale;
            hi[0] = acc[j][2] * qscale, hi[1] = acc[j][3] * qscale;
        }
    }
}

/* The softmax thread's row: its running max/sum and visible key range. */
struct RowState {
    float m, l;
    int lim_lo, lim_hi;
};

/* Masks, online max/sum update, P and alpha to smem. P goes as two T
 * matrices, hi = P rounded to T and lo = (P - hi) rounded: hi + lo carries
 * P to ~2^-17 (bf16) / 2^-22 (f16), so P V is as accurate as the fp32
 * CUDA-core kernel's at the price of a second mma per PV step. */
template <class T, class S> __device__ inline void tc_softmax(RowState &rs, char *smem, const TcLayout &L, int t0) {
    const int row = threadIdx.x / S::TPR, j0 = threadIdx.x % S::TPR;
    const float *s_in = (const float *)(smem + L.s) + row * L.lds;
    T *p_hi = (T *)(smem + L.p) + row * L.ldp, *p_lo = (T *)(smem + L.p_lo) + row * L.ldp;
    float sv[S::KPT], mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < S::KPT; k++) {
        const int c = j0 + k * S::TPR, t = t0 + c;
        sv[k] = t < rs.lim_lo || t >= rs.lim_hi ? -INFINITY : s_in[c];
        mx = fmaxf(mx, sv[k]);
    }
#pragma unroll
    for (int o = S::TPR / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(attn::kFullMask, mx, o));
    const float m_new = fmaxf(rs.m, mx);
    const float base = m_new == -INFINITY ? 0.0f : m_new; /* nothing visible yet: P = 0, alpha = 0 */
    const float alpha = exp2f(rs.m - base);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < S::KPT; k++) {
        const float e = exp2f(sv[k] - base);
        const T hi = from_float<T>(e);
        sum += e;
        p_hi[j0 + k * S::TPR] = hi;
        p_lo[j0 + k * S::TPR] = from_float<T>(e - to_float(hi));
    }
#pragma unroll
    for (int o = S::TPR / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(attn::kFullMask, sum, o);
    rs.l = rs.l * alpha + sum;
    rs.m = m_new;
    if (j0 == 0) ((float *)(smem + L.alpha))[row] = alpha;
}

/* acc = acc * alpha + P V for the warp's rows and value columns. */
template <class T, class S>
__device__ inline void tc_accumulate_pv(float (&acc)[S::MI][S::NJ][2][4], const char *smem, const TcLayout &L,
                                     const char *stage, int dv) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp / S::WN, wn = warp % S::WN;
    const int g = lane / 4;
    const float *alpha = (const float *)(smem + L.alpha);
#pragma unroll
    for (int i = 0; i < S::MI; i++) {
        const float a_lo = alpha[(wm + i * S::WM) * 16 + g], a_hi = alpha[(wm + i * S::WM) * 16 + g + 8];
#pragma unroll
        for (int j = 0; j < S::NJ; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                acc[i][j][h][0] *= a_lo, acc[i][j][h][1] *= a_lo;
                acc[i][j][h][2] *= a_hi, acc[i][j][h][3] *= a_hi;
            }
    }
    const T *P = (const T *)(smem + L.p), *P_lo = (const T *)(smem + L.p_lo), *V = (const T *)(stage + L.v_in_stage);
#pragma unroll
    for (int kk = 0; kk < S::BK; kk += 16) {
        uint32_t a[S::MI][4], a_lo[S::MI][4];
#pragma unroll
        for (int i = 0; i < S::MI; i++) {
            const int off = ((wm + i * S::WM) * 16 + lane % 16) * L.ldp + kk + (lane / 16) * 8;
            ldmatrix_x4(a[i], P + off);
            ldmatrix_x4(a_lo[i], P_lo + off);
        }
        /* V matrices (keys 0-7 | 8-15) x (cols 0-7 | 8-15), transposed: B fragments */
        const T *vrow = V + (kk + ((lane / 8) % 2) * 8 + lane % 8) * L.ldv + (lane / 16) * 8;
#pragma unroll
        for (int j = 0; j < S::NJ; j++) {
            const int n0 = (wn + j * S::WN) * 16;
            if (n0 >= dv) break; /* warp-uniform */
            uint32_t b[4];
            ldmatrix_x4_trans(b, vrow + n0);
#pragma unroll
            for (int i = 0; i < S::MI; i++) {
                mma16816<T>(acc[i][j][0], a_lo[i], b);
                mma16816<T>(acc[i][j][1], a_lo[i], b + 2);
                mma16816<T>(acc[i][j][0], a[i], b);
                mma16816<T>(acc[i][j][1], a[i], b + 2);
            }
        }
    }
}

/* Normalised rows to out, or unnormalised acc to the split's workspace. */
template <class T, class S>
__device__ inline void tc_write_rows(const float (&acc)[S::MI][S::NJ][2][4], const char *smem, const TcLayout &L,
                                  const TileParams &p, int q0, int row0, int rows, int kvh, int split) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp / S::WN, wn = warp % S::WN;
    const int g = lane / 4, t = lane % 4;
    const float *lsum = (const float *)(smem + L.l);
#pragma unroll
    for (int i = 0; i < S::MI; i++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int r = (wm + i * S::WM) * 16 + g + 8 * half, row = row0 + r;
            if (row >= rows) continue;
            const int64_t tok = q0 + row / p.group, h = (int64_t)kvh * p.group + row % p.group;
            const float l = lsum[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
            float *ws = p.ws_acc ? p.ws_acc + ((tok * p.n_splits + split) * p.n_heads + h) * p.dv : nullptr;
            T *o = (T *)p.out + tok * p.out_ts + h * p.out_hs;
#pragma unroll
            for (int j = 0; j < S::NJ; j++) {
                const int n0 = (wn + j * S::WN) * 16;
                if (n0 >= p.dv) break;
#pragma unroll
                for (int nh = 0; nh < 2; nh++) {
                    const int c = n0 + nh * 8 + 2 * t;
                    const float v0 = acc[i][j][nh][2 * half], v1 = acc[i][j][nh][2 * half + 1];
                    if (ws) {
                        store_vec<float2>(ws + c, float2{v0, v1});
                    } else {
                        struct alignas(2 * sizeof(T)) Two {
                            T v[2];
                        } two = {{from_float<T>(v0 * inv), from_float<T>(v1 * inv)}};
                        store_vec<Two>(o + c, two);
                    }
                }
            }
        }
}

/* Grid: (q_tiles * n_splits, kv heads, sequences); S::THREADS threads;
 * tc_layout<S>(...).bytes of dynamic shared memory. */
template <class T, class S, int kPlant = kNoPlant>
__global__ void __launch_bounds__(S::THREADS, S::MIN_BLOCKS) attention_decode_tc_kernel(const TileParams p) {
    QILIN_DYNAMIC_SMEM(char, smem);
    const int b = blockIdx.z, kvh = blockIdx.y;
    const int qtile = blockIdx.x % p.q_tiles, split = blockIdx.x / p.q_tiles;
    const int q0 = p.q_start[b], n_q = p.q_start[b + 1] - q0, kv_len = p.kv_len[b];
    const int rows = n_q * p.group, row0 = qtile * S::M;
    if (row0 >= rows) return; /* whole block: no barrier is skipped by part of it */
    const int pos0 = kv_len - n_q;
    const int row_end = min(row0 + S::M, rows);

    /* keys any row of the block may see, cut to this split's chunk */
    int lo = p.window > 0 ? max(0, pos0 + row0 / p.group - p.window + 1) : 0;
    int hi = min(kv_len, pos0 + (row_end - 1) / p.group + 1);
    const int64_t c0 = (int64_t)split * p.chunk_len;
    if (c0 > lo) lo = (int)c0;
    if (split + 1 < p.n_splits && c0 + p.chunk_len < hi) hi = (int)(c0 + p.chunk_len);
    const int n_tiles = hi > lo ? (hi - lo + S::BK - 1) / S::BK : 0;

    RowState rs;
    {
        const int row = row0 + threadIdx.x / S::TPR, pos = pos0 + row / p.group;
        rs.m = -INFINITY, rs.l = 0.0f;
        rs.lim_lo = max(lo, p.window > 0 ? pos - p.window + 1 : 0);
        rs.lim_hi = row < rows ? min(hi, pos + 1) : 0;
    }

    const int dk = p.da + p.db;
    const TcLayout L = tc_layout<S>(dk, p.dv, p.va == nullptr);
    const int *table = attn::seq_table(p, b);
    char *stages = smem + L.stage0;

    /* prologue: Q and the first STAGES tiles, one commit group per stage */
    tc_load_queries<T, S>(smem, L, p, q0, row0, rows, kvh);
    for (int s = 0; s < S::STAGES; s++) {
        const int t0 = lo + s * S::BK;
        if (s < n_tiles) tc_load_kv_tile<T, S>(stages + s * L.stage_bytes, L, p, table, kvh, t0, min(S::BK, hi - t0));
        cp_async_commit();
    }

    float acc[S::MI][S::NJ][2][4];
#pragma unroll
    for (int i = 0; i < S::MI; i++)
#pragma unroll
        for (int j = 0; j < S::NJ; j++)
#pragma unroll
            for (int e = 0; e < 8; e++) acc[i][j][e / 4][e % 4] = 0.0f;

    for (int it = 0; it < n_tiles; it++) {
        char *stage = stages + (it % S::STAGES) * L.stage_bytes;
        const int t0 = lo + it * S::BK;
        /* STAGES + it groups committed; tile it is group it (Q rides in group 0) */
        if (kPlant != kPlantNoWait) cp_async_wait<S::STAGES - 1>();
        __syncthreads();
        tc_scores<T, S>(smem, L, stage, dk, p.qscale);
        __syncthreads();
        tc_softmax<T, S>(rs, smem, L, t0);
        __syncthreads();
        tc_accumulate_pv<T, S>(acc, smem, L, stage, p.dv);
        /* every warp's ldmatrix of this stage is done before it is refilled */
        if (kPlant != kPlantNoStageBarrier) __syncthreads();
        const int next = it + S::STAGES;
        if (next < n_tiles) {
            const int tn = lo + next * S::BK;
            tc_load_kv_tile<T, S>(stage, L, p, table, kvh, tn, min(S::BK, hi - tn));
        }
        cp_async_commit();
    }
    cp_async_wait<0>(); /* nothing in flight at exit (also when n_tiles == 0) */

    const int row = threadIdx.x / S::TPR;
    if (threadIdx.x % S::TPR == 0) {
        ((float *)(smem + L.l))[row] = rs.l;
        if (p.ws_acc && row0 + row < rows) {
            const int r = row0 + row;
            const int64_t tok = q0 + r / p.group, h = (int64_t)kvh * p.group + r % p.group;
            p.ws_ml[(tok * p.n_splits + split) * p.n_heads + h] = float2{rs.m, rs.l};
        }
    }
    __syncthreads();
    tc_write_rows<T, S>(acc, smem, L, p, q0, row0, rows, kvh, split);
}

/* ---- host side -------------------------------------------------------------- */

/* Shared memory of a shape, or 0 when the device does not allow it. */
template <class S> inline qilin_status tc_smem_bytes(size_t *bytes, int dk, int dv, bool v_in_k) {
    *bytes = (size_t)tc_layout<S>(dk, dv, v_in_k).bytes;
    int device = 0;
    qilin_device_props props;
    QILIN_TRY(qilin_device_get(&device));
    QILIN_TRY(qilin_device_get_props(device, &props));
    if (*bytes > props.shared_mem_per_block_optin) *bytes = 0;
    return QILIN_OK;
}

/* What the tensor-core kernel needs of the arguments beyond the tile kernel's. */
inline bool tc_args_ok(const TileParams &p, int dv_max) {
    return p.vec && (p.da + p.db) % 16 == 0 && p.dv % 16 == 0 && p.dv <= dv_max && p.da % 8 == 0;
}

/* Plans the splits (rows = outputs of the launch), launches the kernel and,
 * when split, the merge. p.q_tiles must be set. */
template <class T, class S, int kPlant = kNoPlant>
inline qilin_status launch_decode_tc(TileParams p, const char *who, int64_t rows, int max_kv_len, int n_kv_heads,
                                     int n_seqs, int max_q_len, size_t smem, void *workspace, size_t workspace_bytes,
                                     qilin_stream *stream) {
    attn::SplitPlan plan;
    const int64_t blocks = (int64_t)p.q_tiles * n_kv_heads * n_seqs;
    QILIN_TRY(attn::plan_splits(&plan, who, rows, max_kv_len, blocks, S::BK, p.dv, workspace, workspace_bytes));
    p.n_splits = plan.n_splits, p.chunk_len = plan.chunk_len;
    attn::set_workspace(&p, workspace, rows, plan.n_splits);
    dim3 grid((unsigned)(p.q_tiles * p.n_splits), (unsigned)n_kv_heads, (unsigned)n_seqs);
    /* declared bytes (launch log): every sequence's keys and values at the longest length, an upper bound */
    const long long kv_bytes = (long long)n_seqs * max_kv_len * n_kv_heads * (p.da + p.db + (p.va ? p.dv : 0)) * (long long)sizeof(T);
    QILIN_TRY(QILIN_LAUNCH_BYTES(kv_bytes, (attention_decode_tc_kernel<T, S, kPlant>), grid, dim3(S::THREADS), smem, stream, p));
    if (p.n_splits <= 1) return QILIN_OK;
    return attn::launch_merge<T>(p, max_q_len, n_seqs, stream);
}

/* GQA decode: 16 rows (the group, padded), head dims up to 256. */
using GqaShape = TcShape<16, 32, 4, 4, 1, 256, 1>;
/* Absorbed MLA, value = latent up to 512: 16, 32 or 64 rows of heads. */
using Mla16Shape = TcShape<16, 32, 3, 4, 1, 512, 1>;
using Mla32Shape = TcShape<32, 32, 3, 8, 2, 512, 1>;
using Mla64Shape = TcShape<64, 32, 2, 16, 4, 512, 1>;

} // namespace attn_tc

#endif /* QILIN_ATTENTION_DECODE_CUH */
