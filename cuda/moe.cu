/* moe.cu — Mixture-of-Experts routing and expert dispatch (moe.h).
 *
 * qilin_moe_route: one warp per token, up to 4 tokens per block. The warp
 * keeps the token's scores and selection scores in shared memory ([E] fp32
 * each), computes softmax (max and sum by warp reductions) or sigmoid, adds
 * the correction bias for selection only, ranks groups with one lane per
 * group (max, or the sum of the two largest) and masks every expert of a
 * dropped group to -inf, then picks top_k experts by repeated warp argmax
 * over (score, -index), so ties go to the lower index and every lane agrees.
 * A picked expert is marked NaN, which no later round selects (a NaN logit
 * is therefore never picked either; a token with fewer than top_k
 * selectable experts gets id -1, weight 0, which qilin_moe_experts counts
 * as a bad id). Lane j holds pick j: weights are the unbiased scores,
 * renormalised by their sum (+ 1e-20, as Hugging Face's V3 router) when
 * asked, times routed_scale.
 *
 * qilin_moe_experts: four launches, no host synchronisation.
 *   1. align (one block): count the slots (token, j) per expert with
 *      warp-aggregated shared atomics, scan the per-expert tile counts
 *      ceil(count / BM) in one warp, write the tile -> (expert, valid rows)
 *      table and the expert-sorted slot list (each expert's segment padded
 *      to a multiple of BM, as vLLM's moe_align_block_size), count bad ids.
 *      The order of slots inside a segment depends on atomics; it does not
 *      change any result, since every row of the GEMMs is computed
 *      independently of its position.
 *   2. grouped GEMM gate_up with the act-and-mul fused into the epilogue:
 *      a block owns BM sorted rows (gathered from x through the slot list)
 *      and 64 output columns, for which it reads the 64 matching gate rows
 *      and 64 up rows of its expert's weight, and writes
 *      h[slot] = act(gate) * up (the qilin_act_and_mul semantics, one
 *      rounding to dtype; vLLM rounds gate_up to dtype first).
 *   3. grouped GEMM down: the same kernel over h, 128 output columns per
 *      block, y[slot] = h[slot] . down_e^T.
 *   4. combine: one block per token, out[t] (+)= sum_j w_j y[t k + j] in the
 *      fixed order j = 0..k-1, fp32, one rounding; bad ids are skipped.
 * Workspace (qilin_moe_experts_workspace): the tile table, the sorted slot
 * list, h [tokens k, ffn_dim] and y [tokens k, hidden] in dtype, both
 * indexed by slot, so the down GEMM gathers h rows through the same list
 * and the combine reads each token's k rows contiguously.
 * The grid of the GEMMs is an upper bound computable on the host,
 * ceil(tokens k / BM) + min(E, tokens k) row tiles; tiles past the used
 * ones read expert -1 and exit at once.
 *
 * CUDA-core GEMM tile (fp32 accumulation): 256 threads, BK = 32, 128 weight
 * rows per block, BM = 64 rows when experts average >= 32 rows (prefill),
 * else BM = 16 (decode: one token's k rows land in k different experts).
 * Both operands are staged in shared memory as fp32, transposed to [k][row]
 * with an XOR swizzle so the transposing stores and the float4 reads are
 * free of bank conflicts; the next k-slab is loaded into registers (16-byte
 * loads along k) while the current one is multiplied. Each thread owns
 * TM = BM/16 rows x 8 columns; a warp whose rows are all padding skips the
 * multiply, so a decode tile costs its weight read, not BM rows of math.
 *
 * Which GEMM kernel (qilin_moe_gemm, moe.h): bf16 and f16 with hidden and
 * ffn_dim multiples of 8 and 16-byte aligned matrices run the grouped GEMMs
 * on tensor cores (moe_gemm_mma.cuh: mma.sync m16n8k16, ldmatrix, a 3-4
 * stage cp.async pipeline; 64-row prefill tiles with the tokens as M,
 * 16-row decode tiles swap-AB with the weights as M) over the same tile
 * table. The CUDA-core kernel below stays for fp32 (exact fp32 FMA: no tf32,
 * so fp32 mode keeps matching the fp32 references), for widths that are not
 * multiples of 8 and for misaligned matrices (no 16-byte cp.async there).
 * Quantized experts (qilin_moe_wq: FP8 128 x 128 blocks, INT4 groups) run
 * only on the tensor-core kernel, which dequantizes each k-slab in shared
 * memory (moe_gemm_mma.cuh). Decode tiles are one-warp blocks over 8 gate
 * + 8 up (or 16 down) weight rows, so a decode step fills the SMs by
 * column blocks rather than split-K (no partial-sum workspace, no extra
 * launch). Not here yet: wgmma with TMA and a warp-specialised pipeline on
 * sm_90a, and split-K for a model whose routed tiles x column blocks stay
 * under a wave (Mixtral at 1 token: 2 tiles x 1792 gate_up column blocks
 * fills; none of the seed models underfills today). */
#include <cmath>
#include <cstring>

#include "common.cuh"
#include "kernels.h"
#include "moe_gemm_mma.h"

namespace {

constexpr int kMaxExperts = 2048; /* shared-memory bound of route and align */
constexpr int kMaxTopK = 32;      /* one lane per pick */
constexpr int kRouteWarps = 4;
constexpr int kGemmThreads = 256;
constexpr int kBK = 32;           /* k per shared-memory slab */
constexpr int kBW = 128;          /* weight rows per block */
constexpr int kFp8Block = 128;    /* FP8 experts: rows and columns per scale */


/* An enum field as an int: a C caller may pass any int, and loading an
 * out-of-range value as the C++ enum would itself be undefined. */
template <class E> int enum_code(const E *v) {
    static_assert(sizeof(E) == sizeof(int), "an int-sized C enum");
    int c;
    memcpy(&c, v, sizeof c);
    return c;
}

} // namespace

/* ---- routing --------------------------------------------------------------- */

/* (v, i) is better than (bv, bi): larger value, then lower index; i < 0 is
 * no candidate. Callers never pass NaN with i >= 0, so this is a total order
 * and a butterfly reduction leaves every lane with the same winner. */
static __device__ inline bool route_better(float v, int i, float bv, int bi) {
    if (i < 0) return false;
    if (bi < 0) return true;
    return v > bv || (v == bv && i < bi);
}

static __device__ inline void warp_argmax(float &v, int &i) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, offset);
        int oi = __shfl_xor_sync(0xffffffffu, i, offset);
        if (route_better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

/* Scores into score[] (unbiased) and sel[] (selection: + bias). */
static __device__ void route_scores(const qilin_moe_route_args &a, const float *lg, float *score, float *sel) {
    int lane = threadIdx.x & 31, E = a.n_experts;
    if (a.score == QILIN_MOE_SOFTMAX) {
        float m = -INFINITY;
        for (int e = lane; e < E; e += 32) m = fmaxf(m, lg[e]);
        m = warp_reduce_max(m);
        float s = 0.0f;
        for (int e = lane; e < E; e += 32) {
            float p = expf(lg[e] - m);
            score[e] = p;
            s += p;
        }
        s = warp_reduce_sum(s);
        for (int e = lane; e < E; e += 32) sel[e] = score[e] = score[e] / s;
    } else {
        for (int e = lane; e < E; e += 32) {
            float p = 1.0f / (1.0f + expf(-lg[e]));
            score[e] = p;
            sel[e] = a.correction_bias ? p + a.correction_bias[e] : p;
        }
    }
    __syncwarp();
}

/* Keeps the topk_group best groups (lane g scores group g) and sets the
 * selection score of every expert in the others to -inf. */
static __device__ void route_mask_groups(const qilin_moe_route_args &a, float *sel) {
    int lane = threadIdx.x & 31, G = a.n_experts / a.n_group;
    float gs = -INFINITY;
    if (lane < a.n_group) {
        const float *g = sel + lane * G;
        if (a.group_score == QILIN_MOE_GROUP_MAX) {
            gs = g[0];
            for (int i = 1; i < G; i++) gs = fmaxf(gs, g[i]);
        } else {
            float m1 = -INFINITY, m2 = -INFINITY;
            for (int i = 0; i < G; i++) {
                float v = g[i];
                if (v > m1) {
                    m2 = m1;
                    m1 = v;
                } else if (v > m2) {
                    m2 = v;
                }
            }
            gs = m1 + m2;
        }
    }
    bool candidate = lane < a.n_group && gs == gs;
    unsigned kept = 0;
    for (int r = 0; r < a.topk_group; r++) {
        float v = gs;
        int i = candidate ? lane : -1;
        warp_argmax(v, i);
        if (i < 0) break;
        kept |= 1u << i;
        if (lane == i) candidate = false;
    }
    __syncwarp(); /* every lane has read its group before any is masked */
    for (int e = lane; e < a.n_experts; e += 32)
        if (!((kept >> (e / G)) & 1u)) sel[e] = -INFINITY;
    __syncwarp();
}

__global__ void moe_route_kernel(qilin_moe_route_args a) {
    QILIN_DYNAMIC_SMEM(float, smem);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int t = blockIdx.x * (blockDim.x >> 5) + warp;
    if (t >= a.tokens) return; /* warp-uniform */
    const int E = a.n_experts, k = a.top_k;
    float *score = smem + (size_t)warp * 2 * E, *sel = score + E;
    route_scores(a, a.logits + (size_t)t * E, score, sel);
    if (a.n_group > 1) route_mask_groups(a, sel);

    int my_id = -1;
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int bi = -1;
        for (int e = lane; e < E; e += 32) { /* ascending e: ties keep the lower index */
            float v = sel[e];
            if (v == v /* not NaN */ && (bi < 0 || v > bv)) {
                bv = v;
                bi = e;
            }
        }
        warp_argmax(bv, bi);
        if (bi >= 0 && (bi & 31) == lane) sel[bi] = NAN; /* only the owning lane reads it again */
        if (lane == j) my_id = bi;
    }
    float w = lane < k && my_id >= 0 ? score[my_id] : 0.0f;
    if (a.renormalize) w = w / (warp_reduce_sum(w) + 1e-20f);
    w *= a.routed_scale;
    if (lane < k) {
        a.topk_ids[(size_t)t * k + lane] = my_id;
        a.topk_weights[(size_t)t * k + lane] = w;
    }
}

extern "C" qilin_status qilin_moe_route(const qilin_moe_route_args *a, qilin_stream *stream) {
    if (!a || !a->topk_ids || !a->topk_weights || !a->logits)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: topk_ids, topk_weights and logits must be set");
    if (a->tokens < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: tokens=%d must be >= 0", a->tokens);
    if (a->n_experts < 1 || a->n_experts > kMaxExperts)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: n_experts=%d must be in [1, %d]",
                           a->n_experts, kMaxExperts);
    if (a->top_k < 1 || a->top_k > kMaxTopK || a->top_k > a->n_experts)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: top_k=%d must be in [1, min(n_experts=%d, %d)]",
                           a->top_k, a->n_experts, kMaxTopK);
    if (a->n_group < 1 || a->n_group > 32 || a->n_experts % a->n_group != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_moe_route: n_group=%d must be in [1, 32] and divide n_experts=%d", a->n_group,
                           a->n_experts);
    if (a->topk_group < 1 || a->topk_group > a->n_group)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: topk_group=%d must be in [1, n_group=%d]",
                           a->topk_group, a->n_group);
    int score = enum_code(&a->score), group_score = enum_code(&a->group_score);
    if (score != QILIN_MOE_SOFTMAX && score != QILIN_MOE_SIGMOID)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: unknown score=%d", score);
    if (group_score != QILIN_MOE_GROUP_MAX && group_score != QILIN_MOE_GROUP_TOP2_SUM)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: unknown group_score=%d", group_score);
    if (a->n_group > 1 && group_score == QILIN_MOE_GROUP_TOP2_SUM && a->n_experts / a->n_group < 2)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_moe_route: group_score top2_sum needs >= 2 experts per group (n_experts=%d, n_group=%d)",
                           a->n_experts, a->n_group);
    if (a->correction_bias && score != QILIN_MOE_SIGMOID)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: correction_bias is for sigmoid scores only");
    if (!std::isfinite(a->routed_scale))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_route: routed_scale=%g must be finite",
                           (double)a->routed_scale);
    if (a->tokens == 0) return QILIN_OK;
    size_t warp_smem = (size_t)2 * a->n_experts * sizeof(float);
    int warps = (int)(48 * 1024 / warp_smem);
    warps = warps < 1 ? 1 : warps > kRouteWarps ? kRouteWarps : warps;
    if (warps > a->tokens) warps = a->tokens;
    dim3 grid((a->tokens + warps - 1) / warps), block(32 * warps);
    return QILIN_LAUNCH(moe_route_kernel, grid, block, warps * warp_smem, stream, *a);
}

/* ---- experts: align -------------------------------------------------------- */

/* Slots (t, j) of one warp that go to the same expert, and where this lane
 * ranks among them. key < -1 for lanes past the end. */
struct Peers {
    unsigned mask;
    int leader, rank;
};
static __device__ inline Peers warp_peers(int key) {
    int lane = threadIdx.x & 31;
    Peers p;
    p.mask = __match_any_sync(0xffffffffu, key);
    p.leader = __ffs(p.mask) - 1;
    p.rank = __popc(p.mask & ((1u << lane) - 1u));
    return p;
}

__global__ void __launch_bounds__(1024) moe_align_kernel(int2 *tiles, int *sorted, int *expert_counts, int *bad_ids, const int *ids,
                                 int total, int E, int bm, int max_tiles) {
    QILIN_DYNAMIC_SMEM(int, smem);
    int *count = smem, *cursor = smem + E, *tile_start = smem + 2 * E; /* [E], [E], [E + 1] */
    __shared__ int bad;
    const int tid = threadIdx.x, lane = tid & 31, nt = blockDim.x;
    for (int e = tid; e < E; e += nt) count[e] = 0;
    if (tid == 0) bad = 0;
    __syncthreads();

    for (int base = 0; base < total; base += nt) { /* uniform trip count: whole warps match */
        int s = base + tid, e = s < total ? ids[s] : -1;
        bool valid = s < total && e >= 0 && e < E;
        Peers p = warp_peers(valid ? e : s < total ? -1 : -2);
        if (lane == p.leader && s < total) atomicAdd(valid ? &count[e] : &bad, __popc(p.mask));
    }
    __syncthreads();

    if (tid < 32) { /* exclusive scan of tiles per expert: lane-serial chunks, then a warp scan */
        int per = (E + 31) / 32, lo = min(E, lane * per), hi = min(E, lo + per), sum = 0;
        for (int e = lo; e < hi; e++) sum += (count[e] + bm - 1) / bm;
        int incl = sum;
        for (int o = 1; o < 32; o <<= 1) {
            int v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        int run = incl - sum;
        for (int e = lo; e < hi; e++) {
            tile_start[e] = run;
            cursor[e] = run * bm;
            run += (count[e] + bm - 1) / bm;
        }
        if (lane == 31) tile_start[E] = incl;
    }
    if (expert_counts)
        for (int e = tid; e < E; e += nt) expert_counts[e] = count[e];
    if (tid == 0 && bad_ids && bad) atomicAdd(bad_ids, bad);
    __syncthreads();

    const int used = tile_start[E];
    for (int t = tid; t < max_tiles; t += nt) {
        int2 info = make_int2(-1, 0);
        if (t < used) { /* the last expert whose first tile is <= t owns t */
            int lo = 0, hi = E - 1;
            while (lo < hi) {
                int mid = (lo + hi + 1) / 2;
                if (tile_start[mid] <= t) lo = mid;
                else hi = mid - 1;
            }
            info = make_int2(lo, min(bm, count[lo] - (t - tile_start[lo]) * bm));
        }
        tiles[t] = info;
    }

    for (int base = 0; base < total; base += nt) {
        int s = base + tid, e = s < total ? ids[s] : -1;
        bool valid = s < total && e >= 0 && e < E;
        Peers p = warp_peers(valid ? e : s < total ? -1 : -2);
        int pos = 0;
        if (lane == p.leader && valid) pos = atomicAdd(&cursor[e], __popc(p.mask));
        pos = __shfl_sync(0xffffffffu, pos, p.leader) + p.rank;
        if (valid) sorted[pos] = s;
    }
}

/* ---- experts: grouped GEMM ------------------------------------------------- */

template <class T, bool kVec> struct GemmLoad {
    static constexpr int V = kVec ? Vec16<T>::n : 1; /* elements per global load */
    static constexpr int KV = kBK / V;                /* loads per row per slab */
    static constexpr int RPW = 32 / KV > 4 ? 32 / KV : 4;
    /* XOR applied to a column of a [k][width] fp32 tile: the lanes of one
     * warp store RPW rows x KV loads, and the XOR sends the KV loads of a row
     * to different banks; it is a multiple of 4, so float4 groups stay whole. */
    static __device__ constexpr int swizzle(int k, int width) { return (((k / V) * RPW) & 31) & (width - 1); }
};

template <int BM> struct alignas(16) GemmSmem {
    float a[kBK][BM];
    float w[kBK][kBW];
};

/* Blocks per SM the register budget is set for: two (<= 128 registers, no
 * spills) on the 16-bit vector paths; a decode step's grid has about two
 * tiles per SM anyway. The scalar and fp32 paths, which the target models
 * never take, may use more registers rather than spill. */
template <class T, bool kVec> constexpr int gemm_min_blocks() { return kVec && sizeof(T) == 2 ? 2 : 1; }

/* C[slot, n0 + c] for the block's rows. kGateUp: a = x (row slot / top_k),
 * weight rows [gate n0..n0+63 | up n_out+n0..], C = h, cols = 64;
 * else a = h (row slot), weight rows n0..n0+127, C = y, cols = 128. */
template <class T, int BM, bool kGateUp, bool kVec>
__global__ void __launch_bounds__(kGemmThreads, (gemm_min_blocks<T, kVec>()))
    moe_gemm_kernel(T *c, const T *a, const T *w, const int2 *tiles, const int *sorted, int a_div, int K,
                    int n_out, qilin_act act) {
    using L = GemmLoad<T, kVec>;
    constexpr int V = L::V, KV = L::KV, TM = BM / 16;
    constexpr int AITEMS = (BM * KV + kGemmThreads - 1) / kGemmThreads, WITEMS = kBW * KV / kGemmThreads;
    __shared__ GemmSmem<BM> sm;

    const int2 info = tiles[blockIdx.x];
    if (info.x < 0) return; /* a tile past the used ones */
    const int expert = info.x, valid = info.y, tid = threadIdx.x;
    const int *rows = sorted + (size_t)blockIdx.x * BM;
    const int n0 = blockIdx.y * (kGateUp ? kBW / 2 : kBW);

    /* the rows each thread loads, fixed for the whole k loop (-1: none) */
    int arow[AITEMS];
#pragma unroll
    for (int i = 0; i < AITEMS; i++) {
        int idx = tid + i * kGemmThreads, r = idx / KV;
        arow[i] = idx < BM * KV && r < valid ? rows[r] / a_div : -1;
    }
    int wrow[WITEMS];
    const T *wexp = w + (size_t)expert * (kGateUp ? 2 * (size_t)n_out : (size_t)n_out) * K;
#pragma unroll
    for (int i = 0; i < WITEMS; i++) {
        int rr = (tid + i * kGemmThreads) / KV;
        int col = n0 + (kGateUp ? (rr & (kBW / 2 - 1)) : rr);
        wrow[i] = col >= n_out ? -1 : kGateUp && rr >= kBW / 2 ? n_out + col : col;
    }

    alignas(16) T ra[AITEMS][V];
    alignas(16) T rw[WITEMS][V];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < AITEMS; i++) {
            int kk = k0 + ((tid + i * kGemmThreads) % KV) * V;
            if (arow[i] >= 0 && kk < K) {
                load_elems<T, kVec>(ra[i], a + (size_t)arow[i] * K + kk, 0);
            } else {
#pragma unroll
                for (int v = 0; v < V; v++) ra[i][v] = from_float<T>(0.0f);
            }
        }
#pragma unroll
        for (int i = 0; i < WITEMS; i++) {
            int kk = k0 + ((tid + i * kGemmThreads) % KV) * V;
            if (wrow[i] >= 0 && kk < K) {
                load_elems<T, kVec>(rw[i], wexp + (size_t)wrow[i] * K + kk, 0);
            } else {
#pragma unroll
                for (int v = 0; v < V; v++) rw[i][v] = from_float<T>(0.0f);
            }
        }
    };
    auto stage = [&]() {
#pragma unroll
        for (int i = 0; i < AITEMS; i++) {
            int idx = tid + i * kGemmThreads, r = idx / KV, k = (idx % KV) * V;
            if (idx < BM * KV)
#pragma unroll
                for (int v = 0; v < V; v++) sm.a[k + v][r ^ L::swizzle(k + v, BM)] = to_float(ra[i][v]);
        }
#pragma unroll
        for (int i = 0; i < WITEMS; i++) {
            int idx = tid + i * kGemmThreads, r = idx / KV, k = (idx % KV) * V;
#pragma unroll
            for (int v = 0; v < V; v++) sm.w[k + v][r ^ L::swizzle(k + v, kBW)] = to_float(rw[i][v]);
        }
    };

    const int tx = tid & 15, ty = tid >> 4;
    const bool active = (tid >> 5) * 2 * TM < valid; /* warp-uniform: some row of the warp is real */
    float acc[TM][8];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    /* The vector path loads the next slab into registers during the
     * multiply; the scalar path, V times the loads per slab, loads just in time
     * rather than hold them all in registers. */
    if constexpr (kVec) load(0);
    for (int k0 = 0; k0 < K; k0 += kBK) {
        if constexpr (!kVec) load(k0);
        stage();
        __syncthreads();
        if (kVec && k0 + kBK < K) load(k0 + kBK); /* in flight during the multiply */
        if (active) {
#pragma unroll
            for (int kk = 0; kk < kBK; kk++) {
                float av[TM];
                if constexpr (TM == 4) {
                    float4 t4 = load_vec<float4>(&sm.a[kk][(4 * ty) ^ L::swizzle(kk, BM)]);
                    av[0] = t4.x, av[1] = t4.y, av[2] = t4.z, av[3] = t4.w;
                } else {
#pragma unroll
                    for (int i = 0; i < TM; i++) av[i] = sm.a[kk][(TM * ty + i) ^ L::swizzle(kk, BM)];
                }
                int sw = L::swizzle(kk, kBW);
                float4 b0 = load_vec<float4>(&sm.w[kk][(4 * tx) ^ sw]);
                float4 b1 = load_vec<float4>(&sm.w[kk][(kBW / 2 + 4 * tx) ^ sw]);
                float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                for (int i = 0; i < TM; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
            }
        }
        __syncthreads();
    }
    if (!active) return;

    /* epilogue: 4 (gate_up) or 2 x 4 (down) consecutive columns per row */
    struct alignas(4 * sizeof(T)) Quad {
        T v[4];
    };
    const bool quad_ok = n_out % 4 == 0;
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int r = TM * ty + i;
        if (r >= valid) continue;
        T *crow = c + (size_t)rows[r] * n_out;
#pragma unroll
        for (int half = 0; half < (kGateUp ? 1 : 2); half++) {
            int col = n0 + half * (kBW / 2) + 4 * tx;
            Quad q;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float v = kGateUp ? act_apply(act, acc[i][j]) * acc[i][4 + j] : acc[i][4 * half + j];
                q.v[j] = from_float<T>(v);
            }
            if (quad_ok && col + 3 < n_out) {
                *reinterpret_cast<Quad *>(crow + col) = q;
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (col + j < n_out) crow[col + j] = q.v[j];
            }
        }
    }
}

/* ---- experts: combine ------------------------------------------------------- */

template <class T, bool kVec>
__global__ void moe_combine_kernel(T *out, const T *y, const int *ids, const float *weights, int top_k, int hidden,
                                   int E, bool accumulate) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    const int t = blockIdx.x, nvec = hidden / V;
    T *orow = out + (size_t)t * hidden;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        float acc[V];
#pragma unroll
        for (int v = 0; v < V; v++) acc[v] = 0.0f;
        for (int j = 0; j < top_k; j++) {
            int slot = t * top_k + j, e = ids[slot];
            if (e < 0 || e >= E) continue;
            float wj = weights[slot];
            alignas(16) T yv[V];
            load_elems<T, kVec>(yv, y + (size_t)slot * hidden, i);
#pragma unroll
            for (int v = 0; v < V; v++) acc[v] = fmaf(wj, to_float(yv[v]), acc[v]);
        }
        alignas(16) T o[V];
        if (accumulate) load_elems<T, kVec>(o, orow, i);
#pragma unroll
        for (int v = 0; v < V; v++) o[v] = from_float<T>(accumulate ? to_float(o[v]) + acc[v] : acc[v]);
        store_elems<T, kVec>(orow, o, i);
    }
}

/* ---- experts: plan and launch ---------------------------------------------- */

namespace {

/* Tile height, grid bound and workspace layout: a pure function of the
 * shapes, shared by qilin_moe_experts_workspace and the launcher. */
struct MoePlan {
    int bm = 0, max_tiles = 0;
    size_t off_sorted = 0, off_h = 0, off_y = 0, bytes = 0;
};

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

MoePlan moe_plan(int tokens, int top_k, int n_experts, int hidden, int ffn_dim, size_t es) {
    MoePlan p;
    long long total = (long long)tokens * top_k;
    p.bm = total >= 32LL * n_experts ? 64 : 16;
    long long tiles = (total + p.bm - 1) / p.bm + (total < n_experts ? total : n_experts);
    p.max_tiles = (int)tiles;
    p.off_sorted = align256((size_t)tiles * sizeof(int2));
    p.off_h = p.off_sorted + align256((size_t)tiles * p.bm * sizeof(int));
    p.off_y = p.off_h + align256((size_t)total * ffn_dim * es);
    p.bytes = p.off_y + align256((size_t)total * hidden * es);
    return p;
}

/* The two grouped GEMMs on tensor cores (moe_gemm_mma.cu), with the
 * scale geometry of quantized experts (moe.h). */
qilin_status launch_gemms_mma(const qilin_moe_experts_args *a, const MoePlan &p, const int2 *tiles,
                              const int *sorted, void *h, void *y, qilin_stream *stream) {
    const int wq = enum_code(&a->wq), H = a->hidden, F = a->ffn_dim, B = kFp8Block;
    MoeGemmMmaArgs g = {h, a->x, a->gate_up, tiles, sorted, a->top_k, H, F, p.max_tiles, p.bm, true, a->act, wq, nullptr, 0, 0, 0, 0, 0};
    g.scale = a->gate_up_scale;
    if (wq == QILIN_MOE_W_FP8_BLOCK) {
        g.row_off = a->gate_up_row_off, g.rb = (a->gate_up_row_off + F + B - 1) / B, g.kb = (H + B - 1) / B;
    } else if (wq == QILIN_MOE_W_INT4_GROUP) {
        g.group = a->group, g.kb = (H + a->group - 1) / a->group;
    }
    qilin_status st = moe_gemm_mma(a->dtype, g, stream);
    if (st != QILIN_OK) return st;
    g = {y, h, a->down, tiles, sorted, 1, F, H, p.max_tiles, p.bm, false, a->act, wq, nullptr, 0, 0, 0, 0, 0};
    g.scale = a->down_scale;
    g.col_off = a->down_col_off;
    if (wq == QILIN_MOE_W_FP8_BLOCK) {
        g.rb = (H + B - 1) / B, g.kb = (a->down_col_off + F + B - 1) / B;
    } else if (wq == QILIN_MOE_W_INT4_GROUP) {
        g.group = a->group, g.kb = (a->down_col_off + F + a->group - 1) / a->group;
    }
    return moe_gemm_mma(a->dtype, g, stream);
}

/* Quantized experts' own rules (moe.h); "" when they hold. */
const char *quantized_experts_problem(const qilin_moe_experts_args *a, int wq) {
    if (wq == QILIN_MOE_W_DENSE) return "";
    if (!a->gate_up_scale || !a->down_scale) return "gate_up_scale and down_scale must be set";
    if ((uintptr_t)a->gate_up % 4 || (uintptr_t)a->down % 4 || (uintptr_t)a->gate_up_scale % 4 ||
        (uintptr_t)a->down_scale % 4)
        return "quantized weights and scales must be 4-byte aligned";
    if (a->down_col_off < 0 || a->down_col_off % 8) return "down_col_off must be a non-negative multiple of 8";
    if (wq == QILIN_MOE_W_FP8_BLOCK) {
        if (a->gate_up_row_off < 0 || a->gate_up_row_off >= kFp8Block || a->down_col_off >= kFp8Block)
            return "gate_up_row_off and down_col_off must be in [0, 128)";
        return "";
    }
    if (a->group < 8 || a->group % 8 || a->group > (1 << 20)) return "group must be a positive multiple of 8";
    if (a->down_col_off >= a->group) return "down_col_off must be below group";
    return "";
}

template <class T, int BM, bool kVec>
qilin_status launch_gemms_cuda_cores(const qilin_moe_experts_args *a, const MoePlan &p, const int2 *tiles,
                                     const int *sorted, T *h, T *y, qilin_stream *stream) {
    dim3 block(kGemmThreads);
    dim3 grid_up(p.max_tiles, (a->ffn_dim + kBW / 2 - 1) / (kBW / 2));
    qilin_status st = QILIN_LAUNCH((moe_gemm_kernel<T, BM, true, kVec>), grid_up, block, 0, stream, h,
                                   (const T *)a->x, (const T *)a->gate_up, tiles, sorted, a->top_k, a->hidden,
                                   a->ffn_dim, a->act);
    if (st != QILIN_OK) return st;
    dim3 grid_down(p.max_tiles, (a->hidden + kBW - 1) / kBW);
    return QILIN_LAUNCH((moe_gemm_kernel<T, BM, false, kVec>), grid_down, block, 0, stream, y, (const T *)h,
                        (const T *)a->down, tiles, sorted, 1, a->ffn_dim, a->hidden, a->act);
}

template <class T, int BM, bool kVec>
qilin_status launch_experts(const qilin_moe_experts_args *a, const MoePlan &p, bool mma, qilin_stream *stream) {
    unsigned char *ws = (unsigned char *)a->workspace;
    int2 *tiles = (int2 *)ws;
    int *sorted = (int *)(ws + p.off_sorted);
    T *h = (T *)(ws + p.off_h), *y = (T *)(ws + p.off_y);
    const int total = a->tokens * a->top_k, E = a->n_experts;

    int work = total > p.max_tiles ? total : p.max_tiles;
    work = work > E ? work : E;
    int threads = work >= 1024 ? 1024 : (work + 31) / 32 * 32;
    size_t align_smem = (size_t)(3 * E + 1) * sizeof(int);
    qilin_status st = QILIN_LAUNCH(moe_align_kernel, dim3(1), dim3(threads), align_smem, stream, tiles, sorted,
                                   a->expert_counts, a->bad_ids, a->topk_ids, total, E, p.bm, p.max_tiles);
    if (st != QILIN_OK) return st;

    st = mma ? launch_gemms_mma(a, p, tiles, sorted, h, y, stream)
             : launch_gemms_cuda_cores<T, BM, kVec>(a, p, tiles, sorted, h, y, stream);
    if (st != QILIN_OK) return st;

    constexpr int V = kVec ? Vec16<T>::n : 1;
    int cwork = a->hidden / V, cthreads = cwork >= 256 ? 256 : (cwork + 31) / 32 * 32;
    return QILIN_LAUNCH((moe_combine_kernel<T, kVec>), dim3(a->tokens), dim3(cthreads), 0, stream, (T *)a->out,
                        (const T *)y, a->topk_ids, a->topk_weights, a->top_k, a->hidden, E, a->accumulate);
}

} // namespace

extern "C" size_t qilin_moe_experts_workspace(int tokens, int top_k, int n_experts, int hidden, int ffn_dim,
                                              qilin_dtype dtype) {
    if (tokens <= 0 || top_k <= 0 || n_experts <= 0 || hidden <= 0 || ffn_dim <= 0) return 0;
    return moe_plan(tokens, top_k, n_experts, hidden, ffn_dim, qilin_dtype_size(dtype)).bytes;
}

extern "C" qilin_status qilin_moe_experts(const qilin_moe_experts_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->x || !a->topk_ids || !a->topk_weights || !a->gate_up || !a->down)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_moe_experts: out, x, topk_ids, topk_weights, gate_up and down must be set");
    if (a->tokens < 0 || a->hidden < 1 || a->ffn_dim < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: bad shape tokens=%d hidden=%d ffn_dim=%d",
                           a->tokens, a->hidden, a->ffn_dim);
    if (a->top_k < 1 || a->top_k > kMaxTopK)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: top_k=%d must be in [1, %d]", a->top_k,
                           kMaxTopK);
    if (a->n_experts < 1 || a->n_experts > kMaxExperts)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: n_experts=%d must be in [1, %d]",
                           a->n_experts, kMaxExperts);
    if ((long long)a->tokens * a->top_k > (1LL << 30))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: tokens=%d x top_k=%d slots is too many",
                           a->tokens, a->top_k);
    /* grid.y: column blocks of the finest kernel (the tensor-core decode tile: 8 gate_up, 16 down columns) */
    if ((a->ffn_dim + 7) / 8 > 65535 || (a->hidden + 15) / 16 > 65535)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: hidden=%d or ffn_dim=%d is too large",
                           a->hidden, a->ffn_dim);
    int gemm = enum_code(&a->gemm);
    if (gemm != QILIN_MOE_GEMM_AUTO && gemm != QILIN_MOE_GEMM_CUDA_CORES && gemm != QILIN_MOE_GEMM_TENSOR_CORES)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: unknown gemm=%d", gemm);
    int wq = enum_code(&a->wq);
    if (wq != QILIN_MOE_W_DENSE && wq != QILIN_MOE_W_FP8_BLOCK && wq != QILIN_MOE_W_INT4_GROUP)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: unknown wq=%d", wq);
    const char *qproblem = quantized_experts_problem(a, wq);
    if (*qproblem)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: %s weights: %s",
                           wq == QILIN_MOE_W_FP8_BLOCK ? "FP8" : "INT4", qproblem);
    int act = enum_code(&a->act);
    if (act != QILIN_ACT_SILU && act != QILIN_ACT_GELU_ERF && act != QILIN_ACT_GELU_TANH)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: unknown act=%d", act);
    if (a->tokens == 0)
        return a->expert_counts
                   ? qilin_memset(a->expert_counts, 0, (size_t)a->n_experts * sizeof(int), stream)
                   : QILIN_OK;
    return with_dtype("qilin_moe_experts", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        MoePlan p = moe_plan(a->tokens, a->top_k, a->n_experts, a->hidden, a->ffn_dim, sizeof(T));
        if (!a->workspace || a->workspace_bytes < p.bytes)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                               "qilin_moe_experts: workspace has %zu bytes, needs %zu (qilin_moe_experts_workspace)",
                               a->workspace ? a->workspace_bytes : (size_t)0, p.bytes);
        if ((uintptr_t)a->workspace % 16 != 0)
            return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_experts: workspace must be 16-byte aligned");
        constexpr int V = Vec16<T>::n;
        uintptr_t bits = (uintptr_t)a->out | (uintptr_t)a->x | (uintptr_t)a->gate_up | (uintptr_t)a->down;
        bool vec = a->hidden % V == 0 && a->ffn_dim % V == 0 && bits % 16 == 0;
        /* what cp.async reads 16 bytes at a time (out: the combine; quantized weights: 4-byte words) */
        const void *ptrs[] = {a->x, a->workspace, a->gate_up, a->down};
        bool mma_ok = moe_gemm_mma_supported(a->dtype, a->hidden, a->ffn_dim, ptrs, wq == QILIN_MOE_W_DENSE ? 4 : 2);
        if (gemm == QILIN_MOE_GEMM_TENSOR_CORES && !mma_ok)
            return qilin_error(QILIN_ERR_UNSUPPORTED,
                               "qilin_moe_experts: gemm=tensor cores needs bf16/f16, hidden=%d and ffn_dim=%d "
                               "multiples of 8 and 16-byte aligned matrices (dtype %s)",
                               a->hidden, a->ffn_dim, qilin_dtype_name(a->dtype));
        if (wq != QILIN_MOE_W_DENSE && (!mma_ok || gemm == QILIN_MOE_GEMM_CUDA_CORES))
            return qilin_error(QILIN_ERR_UNSUPPORTED,
                               "qilin_moe_experts: %s experts run on tensor cores only: dtype bf16/f16 (got %s), "
                               "hidden=%d and ffn_dim=%d multiples of 8, x and workspace 16-byte aligned, gemm not "
                               "CUDA cores",
                               wq == QILIN_MOE_W_FP8_BLOCK ? "FP8" : "INT4", qilin_dtype_name(a->dtype), a->hidden,
                               a->ffn_dim);
        bool mma = mma_ok && gemm != QILIN_MOE_GEMM_CUDA_CORES;
        if (p.bm == 64)
            return vec ? launch_experts<T, 64, true>(a, p, mma, stream)
                       : launch_experts<T, 64, false>(a, p, mma, stream);
        return vec ? launch_experts<T, 16, true>(a, p, mma, stream) : launch_experts<T, 16, false>(a, p, mma, stream);
    });
}

__global__ void moe_local_ids_kernel(int *out, const int *ids, int n, int first) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = ids[i] - first;
}

extern "C" qilin_status qilin_moe_local_ids(const qilin_moe_local_ids_args *a, qilin_stream *stream) {
    if (!a || (a->n > 0 && (!a->out || !a->ids)) || a->n < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_moe_local_ids: out and ids must be set, n >= 0");
    if (a->n == 0) return QILIN_OK;
    int threads = 256, blocks = (a->n + threads - 1) / threads;
    if (blocks > 1024) blocks = 1024;
    return QILIN_LAUNCH(moe_local_ids_kernel, dim3(blocks), dim3(threads), 0, stream, a->out, a->ids, a->n, a->first);
}
