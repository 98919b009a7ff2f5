/* moe_dispatch.cu — all-to-all dispatch of MoE rows (moe_dispatch.h).
 *
 * count (one block): the assignments s = row * top_k + j are walked in
 * chunks of blockDim.x, in order. Within a warp, __match_any_sync groups the
 * lanes with the same destination, a lane's rank in its group is the
 * popcount of the lower lanes; the group leader writes the group size into
 * a [warps][n] table in shared memory (one writer per entry). One thread
 * per destination then turns its column into an exclusive scan over the
 * warps on top of the destination's running count, so a lane's position is
 * table[warp][d] + rank: (row, choice) order, the same on every run, with
 * no atomics. Shared memory: (n + warps n) ints, at most 33 KiB.
 *
 * pack (one block per row, plus one per destination): the row's top_k
 * targets are resolved once into shared memory, then each thread loads a
 * 16-byte vector of x once and stores it into every target row of `send`.
 * The extra blocks mark the padding ids [counts[d], chunk) with -1.
 *
 * combine (one block per token): rows of this rank's share sum their k
 * returned rows in the order j = 0..k-1 in fp32 and round once; every other
 * token is written as zeros, so the caller's all-reduce (which also carries
 * the tensor-parallel shared expert) assembles each token from the one rank
 * that routed it.
 *
 * Vector path: hidden a multiple of 16 bytes and 16-byte aligned buffers;
 * otherwise one element per thread (the same kernel, kVec = false). */
#include <climits>

#include "common.cuh"
#include "kernels.h"

namespace {

constexpr int kMaxRanks = 256; /* count's shared table: (1 + 32) x 256 ints */
constexpr int kMaxTopK = 32;   /* one thread per choice resolves the targets */
constexpr int kMaxExpertsPerRank = 2048;

int round_threads(long long work, int cap) {
    long long t = (work + 31) / 32 * 32;
    return t < 32 ? 32 : t > cap ? cap : (int)t;
}

/* The checks the three launchers share: the expert layout and top_k. */
qilin_status check_layout(const char *op, int rows, int top_k, int n_ranks, int experts_per_rank) {
    if (rows < 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: rows=%d must be >= 0", op, rows);
    if (top_k < 1 || top_k > kMaxTopK)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: top_k=%d must be in [1, %d]", op, top_k,
                           kMaxTopK);
    if (n_ranks < 1 || n_ranks > kMaxRanks)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: n_ranks=%d must be in [1, %d]", op, n_ranks,
                           kMaxRanks);
    if (experts_per_rank < 1 || experts_per_rank > kMaxExpertsPerRank)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: experts_per_rank=%d must be in [1, %d]", op,
                           experts_per_rank, kMaxExpertsPerRank);
    if ((long long)rows * top_k > (1LL << 30))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: rows=%d x top_k=%d assignments is too many", op,
                           rows, top_k);
    return QILIN_OK;
}

qilin_status check_rows(const char *op, int hidden, int chunk, int n_ranks) {
    if (hidden < 1 || chunk < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: hidden=%d must be >= 1, chunk=%d >= 0", op,
                           hidden, chunk);
    if ((long long)n_ranks * chunk > INT_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: n_ranks=%d x chunk=%d rows is too many", op,
                           n_ranks, chunk);
    return QILIN_OK;
}

} // namespace

/* ---- count ----------------------------------------------------------------- */

/* Up to kCountThreads threads per block: without the bound ptxas may use more
 * registers per thread than a 1024-thread block can have (64), and that launch
 * would fail on the GPU only. */
static const int kCountThreads = 1024;

__global__ void __launch_bounds__(kCountThreads) moe_dispatch_count_kernel(qilin_moe_dispatch_count_args a) {
    QILIN_DYNAMIC_SMEM(int, smem);
    const int n = a.n_ranks, nt = blockDim.x, nw = nt >> 5, tid = threadIdx.x, lane = tid & 31,
              warp = tid >> 5;
    int *run = smem, *table = smem + n; /* [n], [nw][n] */
    const int total = a.rows * a.top_k, E = a.experts_per_rank, limit = n * E;
    for (int d = tid; d < n; d += nt) run[d] = 0;
    for (int base = 0; base < total; base += nt) { /* uniform trip count: whole warps match */
        for (int i = tid; i < nw * n; i += nt) table[i] = 0;
        __syncthreads();
        const int s = base + tid, e = s < total ? a.topk_ids[s] : -1;
        const int d = e >= 0 && e < limit ? e / E : -1;
        const unsigned peers = __match_any_sync(0xffffffffu, d);
        const int rank = __popc(peers & ((1u << lane) - 1u));
        if (d >= 0 && lane == __ffs(peers) - 1) table[warp * n + d] = __popc(peers);
        __syncthreads();
        for (int dd = tid; dd < n; dd += nt) { /* exclusive scan over warps, after the earlier chunks */
            int r = run[dd];
            for (int w = 0; w < nw; w++) {
                int c = table[w * n + dd];
                table[w * n + dd] = r;
                r += c;
            }
            run[dd] = r;
        }
        __syncthreads();
        if (s < total) a.pos[s] = d >= 0 ? table[warp * n + d] + rank : -1;
        __syncthreads(); /* the table is cleared next */
    }
    for (int d = tid; d < n; d += nt) a.counts[d] = run[d]; /* each thread reads its own entries */
}

extern "C" qilin_status qilin_moe_dispatch_count(const qilin_moe_dispatch_count_args *a,
                                                 qilin_stream *stream) {
    if (!a || !a->pos || !a->counts || !a->topk_ids)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_moe_dispatch_count: pos, counts and topk_ids must be set");
    QILIN_TRY(check_layout("qilin_moe_dispatch_count", a->rows, a->top_k, a->n_ranks, a->experts_per_rank));
    int threads = round_threads((long long)a->rows * a->top_k, kCountThreads);
    size_t smem = (size_t)(1 + threads / 32) * (size_t)a->n_ranks * sizeof(int);
    return QILIN_LAUNCH(moe_dispatch_count_kernel, dim3(1), dim3(threads), smem, stream, *a);
}

/* ---- pack ------------------------------------------------------------------ */

template <class T, bool kVec> __global__ void moe_dispatch_pack_kernel(qilin_moe_dispatch_pack_args a) {
    const int b = blockIdx.x, tid = threadIdx.x, nt = blockDim.x, k = a.top_k, C = a.chunk,
              E = a.experts_per_rank;
    if (b >= a.rows) { /* destination b - rows: its padding ids */
        const int d = b - a.rows, used = min(a.counts[d], C);
        for (int i = max(used, 0) + tid; i < C; i += nt) a.send_ids[(size_t)d * C + i] = -1;
        return;
    }
    __shared__ long long target[kMaxTopK]; /* row of send, or -1 */
    if (tid < k) {
        const int s = b * k + tid, e = a.topk_ids[s], p = a.pos[s];
        long long r = -1;
        if (e >= 0 && e < a.n_ranks * E && p >= 0 && p < C) {
            const int d = e / E;
            r = (long long)d * C + p;
            a.send_ids[r] = e - d * E;
        }
        target[tid] = r;
    }
    __syncthreads();
    constexpr int V = kVec ? Vec16<T>::n : 1;
    const int nvec = a.hidden / V;
    const T *xrow = static_cast<const T *>(a.x) + (size_t)b * a.hidden;
    T *send = static_cast<T *>(a.send);
    for (int i = tid; i < nvec; i += nt) {
        alignas(16) T v[V];
        load_elems<T, kVec>(v, xrow, i);
        for (int j = 0; j < k; j++)
            if (target[j] >= 0) store_elems<T, kVec>(send + (size_t)target[j] * a.hidden, v, i);
    }
}

extern "C" qilin_status qilin_moe_dispatch_pack(const qilin_moe_dispatch_pack_args *a, qilin_stream *stream) {
    if (!a || !a->send || !a->send_ids || !a->x || !a->topk_ids || !a->pos || !a->counts)
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "qilin_moe_dispatch_pack: send, send_ids, x, topk_ids, pos and counts must be set");
    QILIN_TRY(check_layout("qilin_moe_dispatch_pack", a->rows, a->top_k, a->n_ranks, a->experts_per_rank));
    QILIN_TRY(check_rows("qilin_moe_dispatch_pack", a->hidden, a->chunk, a->n_ranks));
    return with_dtype("qilin_moe_dispatch_pack", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->chunk == 0) return QILIN_OK; /* nothing is sent */
        constexpr int V = Vec16<T>::n;
        const bool vec = a->hidden % V == 0 && ((uintptr_t)a->send | (uintptr_t)a->x) % 16 == 0;
        const int threads = round_threads(vec ? a->hidden / V : a->hidden, 256);
        const dim3 grid(a->rows + a->n_ranks), block(threads);
        return vec ? QILIN_LAUNCH((moe_dispatch_pack_kernel<T, true>), grid, block, 0, stream, *a)
                   : QILIN_LAUNCH((moe_dispatch_pack_kernel<T, false>), grid, block, 0, stream, *a);
    });
}

/* ---- combine --------------------------------------------------------------- */

template <class T, bool kVec> __global__ void moe_dispatch_combine_kernel(qilin_moe_dispatch_combine_args a) {
    const int t = blockIdx.x, tid = threadIdx.x, nt = blockDim.x, r = t - a.row0, k = a.top_k, C = a.chunk,
              E = a.experts_per_rank;
    const bool mine = r >= 0 && r < a.rows; /* block-uniform */
    __shared__ long long source[kMaxTopK];  /* row of back, or -1 */
    __shared__ float weight[kMaxTopK];
    if (mine && tid < k) {
        const int s = r * k + tid, e = a.topk_ids[s], p = a.pos[s];
        long long row = -1;
        if (e >= 0 && e < a.n_ranks * E && p >= 0 && p < C) row = (long long)(e / E) * C + p;
        source[tid] = row;
        weight[tid] = a.topk_weights[s];
    }
    __syncthreads();
    constexpr int V = kVec ? Vec16<T>::n : 1;
    const int nvec = a.hidden / V;
    const T *back = static_cast<const T *>(a.back);
    T *orow = static_cast<T *>(a.out) + (size_t)t * a.hidden;
    for (int i = tid; i < nvec; i += nt) {
        float acc[V];
#pragma unroll
        for (int v = 0; v < V; v++) acc[v] = 0.0f;
        for (int j = 0; mine && j < k; j++) {
            if (source[j] < 0) continue;
            alignas(16) T y[V];
            load_elems<T, kVec>(y, back + (size_t)source[j] * a.hidden, i);
#pragma unroll
            for (int v = 0; v < V; v++) acc[v] = fmaf(weight[j], to_float(y[v]), acc[v]);
        }
        alignas(16) T o[V];
#pragma unroll
        for (int v = 0; v < V; v++) o[v] = from_float<T>(acc[v]);
        store_elems<T, kVec>(orow, o, i);
    }
}

extern "C" qilin_status qilin_moe_dispatch_combine(const qilin_moe_dispatch_combine_args *a,
                                                   qilin_stream *stream) {
    if (!a || !a->out || !a->back || !a->topk_ids || !a->pos || !a->topk_weights)
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "qilin_moe_dispatch_combine: out, back, topk_ids, pos and topk_weights must be set");
    QILIN_TRY(check_layout("qilin_moe_dispatch_combine", a->rows, a->top_k, a->n_ranks, a->experts_per_rank));
    QILIN_TRY(check_rows("qilin_moe_dispatch_combine", a->hidden, a->chunk, a->n_ranks));
    if (a->tokens < 0 || a->row0 < 0 || (long long)a->row0 + a->rows > a->tokens)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_moe_dispatch_combine: rows [%d, %d + %d) must lie in tokens=%d", a->row0,
                           a->row0, a->rows, a->tokens);
    return with_dtype("qilin_moe_dispatch_combine", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->tokens == 0) return QILIN_OK;
        constexpr int V = Vec16<T>::n;
        const bool vec = a->hidden % V == 0 && ((uintptr_t)a->out | (uintptr_t)a->back) % 16 == 0;
        const int threads = round_threads(vec ? a->hidden / V : a->hidden, 256);
        const dim3 grid(a->tokens), block(threads);
        return vec ? QILIN_LAUNCH((moe_dispatch_combine_kernel<T, true>), grid, block, 0, stream, *a)
                   : QILIN_LAUNCH((moe_dispatch_combine_kernel<T, false>), grid, block, 0, stream, *a);
    });
}
