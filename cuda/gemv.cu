/* gemv.cu — the decode-time linear layer (gemv.h):
 *
 *   y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])     m <= 8, W [n, k] row-major,
 *                                                      fp32 accumulation, y in
 *                                                      dtype or f32 (logits)
 *
 * Bound by reading W once. A block is 8 warps; `ksplit` consecutive warps
 * form a group that owns 2 rows of W and splits k between them (ksplit = 1
 * when n is large: one warp per 2 rows; up to 8 when n is small, e.g. a
 * router's 256 rows, so that enough loads are in flight to fill the GPU).
 * The block stages x in shared memory in chunks of k (all m rows, dtype,
 * at most 32 KB, so k = 18432 and beyond just takes more chunks); each lane
 * then streams its W rows with 16-byte loads, two per row in flight, and
 * reuses every W vector for all m rows of x read back from shared memory.
 * At the end each warp reduces its 2 x M sums with shuffles, the group's
 * warps add their partials in a fixed order (deterministic), bias is added
 * and the result rounded once.
 *
 * m is rounded up to M in {1, 2, 4, 8} (the x rows past m are staged as
 * zeros): few instantiations, and the extra multiply-adds are free in a
 * bandwidth-bound kernel. Rows, k not a multiple of the vector width, or a
 * pointer or stride off 16-byte alignment take the scalar path (one element
 * per load): correct, slower, never used by the target models.
 *
 * One launch may compute up to QILIN_GEMV_MAX_OUTPUTS products of the same
 * x (qilin_gemv_multi: q, k and v at decode): output j owns a contiguous
 * range of blocks, each block reads its output's pointers, and the k split
 * is chosen from the total row count. qilin_gemv is the one-output case. */
#include <cstring>

#include "common.cuh"
#include "gemv_stage.cuh"
#include "kernels.h"

namespace {

constexpr int kWarps = 8, kRows = 2, kUnroll = 2; /* warps per block, W rows per group, vectors per row in flight */
constexpr size_t kChunkBytes = 32 * 1024;         /* staged x per block */
constexpr int kTargetBlocks = 256;                /* ~2 per SM on an H100: below it, split k across warps */


constexpr int kMaxOut = QILIN_GEMV_MAX_OUTPUTS;

/* The outputs of one launch (qilin_gemv: one; qilin_gemv_multi: up to 3):
 * output j owns blocks [first_block[j], first_block[j + 1]). */
struct GemvOutputs {
    void *y[kMaxOut];
    const void *w[kMaxOut], *bias[kMaxOut];
    int n[kMaxOut];
    int64_t ldw[kMaxOut], ldy[kMaxOut];
    int first_block[kMaxOut + 1];
    int count;
};

/* a[j] for a block-uniform j, read with constant indices so the kernel
 * parameters are not copied to local memory */
template <class V>
__device__ inline V pick(const V (&a)[kMaxOut], int j) {
    V v = a[0];
#pragma unroll
    for (int i = 1; i < kMaxOut; i++)
        if (j == i) v = a[i];
    return v;
}

} // namespace

template <class T, int M, bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(GemvOutputs out, const T *x, int m, int k, int64_t ldx, bool y_f32, int chunk, int ksplit) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    QILIN_DYNAMIC_SMEM(T, xs); /* [M][chunk] */
    __shared__ float partial[kWarps][kRows][M];
    int j = 0; /* this block's output */
#pragma unroll
    for (int i = 1; i < kMaxOut; i++)
        if (i < out.count && (int)blockIdx.x >= out.first_block[i]) j = i;
    int first = 0;
#pragma unroll
    for (int i = 1; i < kMaxOut; i++)
        if (j == i) first = out.first_block[i];
    const int block = (int)blockIdx.x - first;
    void *y = pick(out.y, j);
    const T *w = (const T *)pick(out.w, j), *bias = (const T *)pick(out.bias, j);
    const int n = pick(out.n, j);
    const int64_t ldw = pick(out.ldw, j), ldy = pick(out.ldy, j);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int groups = kWarps / ksplit, group = warp / ksplit, part = warp % ksplit;
    const int row0 = (block * groups + group) * kRows;

    const T *wrow[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) wrow[r] = row0 + r < n ? w + (size_t)(row0 + r) * ldw : nullptr;
    float acc[kRows][M];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int i = 0; i < M; i++) acc[r][i] = 0.0f;

    for (int c0 = 0; c0 < k; c0 += chunk) {
        const int len = k - c0 < chunk ? k - c0 : chunk;
        const int nv = len / V; /* k % V == 0 on the vector path */
        __syncthreads(); /* the previous chunk is consumed */
        gemv_stage_x<T, M, kVec>(xs, x, m, ldx, c0, len, chunk);
        __syncthreads();
        if (!wrow[0]) continue; /* warp-uniform: no row of this group exists */
        const int stride = 32 * ksplit;
        for (int v0 = part * 32 + lane; v0 < nv; v0 += stride * kUnroll) {
            alignas(16) T wv[kRows][kUnroll][V];
#pragma unroll
            for (int r = 0; r < kRows; r++)
#pragma unroll
                for (int u = 0; u < kUnroll; u++) {
                    int v = v0 + u * stride;
                    if (wrow[r] && v < nv) {
                        load_elems<T, kVec>(wv[r][u], wrow[r] + c0, v);
                    } else {
#pragma unroll
                        for (int e = 0; e < V; e++) wv[r][u][e] = from_float<T>(0.0f);
                    }
                }
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                int v = v0 + u * stride;
                if (v >= nv) break;
#pragma unroll
                for (int i = 0; i < M; i++) {
                    alignas(16) T xv[V];
                    load_elems<T, kVec>(xv, xs + (size_t)i * chunk, v);
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        float xf = to_float(xv[e]);
#pragma unroll
                        for (int r = 0; r < kRows; r++) acc[r][i] = fmaf(to_float(wv[r][u][e]), xf, acc[r][i]);
                    }
                }
            }
        }
    }

    gemv_reduce_store<T, M, kWarps, kRows>(partial, acc, groups, ksplit, bias, y, ldy, y_f32, m, n, block);
}

namespace {

template <class T, int M>
qilin_status launch_gemv(const qilin_gemv_multi_args *a, qilin_stream *stream) {
    constexpr int VW = Vec16<T>::n;
    uintptr_t bits = (uintptr_t)a->x;
    bool vec = a->k % VW == 0 && (a->ldx * sizeof(T)) % 16 == 0;
    long long n_total = 0;
    for (int j = 0; j < a->n_outputs; j++) {
        bits |= (uintptr_t)a->out[j].w;
        vec = vec && (a->out[j].ldw * sizeof(T)) % 16 == 0;
        n_total += a->out[j].n;
    }
    vec = vec && bits % 16 == 0;
    const int V = vec ? VW : 1, step = 32 * V;
    /* x chunk: all of k when it fits, else the most whole warp steps that do */
    int kr = (a->k + V - 1) / V * V;
    int fit = (int)(kChunkBytes / (M * sizeof(T))) / step * step;
    int chunk = kr < fit ? kr : fit;
    /* split k across warps while the grid is short of blocks and k is long */
    int ksplit = 1;
    while (ksplit < kWarps && (n_total + kRows * kWarps / ksplit - 1) / (kRows * kWarps / ksplit) < kTargetBlocks &&
           a->k >= 2 * ksplit * step * kUnroll)
        ksplit *= 2;
    int rows_per_block = kRows * kWarps / ksplit;
    GemvOutputs out = {};
    out.count = a->n_outputs;
    for (int j = 0; j < a->n_outputs; j++) {
        const qilin_gemv_output &o = a->out[j];
        out.y[j] = o.y, out.w[j] = o.w, out.bias[j] = o.bias, out.n[j] = o.n;
        out.ldw[j] = o.ldw, out.ldy[j] = o.ldy;
        out.first_block[j + 1] = out.first_block[j] + (o.n + rows_per_block - 1) / rows_per_block;
    }
    for (int j = a->n_outputs + 1; j <= kMaxOut; j++) out.first_block[j] = out.first_block[a->n_outputs];
    dim3 grid(out.first_block[a->n_outputs]), block(kWarps * 32);
    size_t smem = (size_t)M * chunk * sizeof(T);
    bool y_f32 = a->y_dtype == QILIN_F32;
    const T *x = (const T *)a->x;
    /* what the launch must read at least: every W and x once (the launch log's "bytes") */
    long long bytes = (n_total + a->m) * a->k * (long long)sizeof(T);
    if (vec)
        return QILIN_LAUNCH_BYTES(bytes, (gemv_kernel<T, M, true>), grid, block, smem, stream, out, x, a->m, a->k,
                                  a->ldx, y_f32, chunk, ksplit);
    return QILIN_LAUNCH_BYTES(bytes, (gemv_kernel<T, M, false>), grid, block, smem, stream, out, x, a->m, a->k,
                              a->ldx, y_f32, chunk, ksplit);
}

/* Checks one output's pointers and shape (j: its index in messages). */
qilin_status check_output(const char *fn, const qilin_gemv_output *o, int j, int k) {
    if (!o->y || !o->w)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: output %d: y and w must be set", fn, j);
    if (o->n < 0 || o->ldw < k || o->ldy < o->n)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: output %d: n=%d, strides ldw=%lld must be >= k=%d and ldy=%lld >= n", fn, j, o->n,
                           (long long)o->ldw, k, (long long)o->ldy);
    return QILIN_OK;
}

qilin_status run_gemv(const char *fn, const qilin_gemv_multi_args *a, qilin_stream *stream) {
    if (!a->x) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: x must be set", fn);
    if (a->m < 0 || a->m > QILIN_GEMV_MAX_M)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: m=%d must be in [0, %d] (larger m: qilin_gemm)", fn,
                           a->m, (int)QILIN_GEMV_MAX_M);
    if (a->k < 1 || a->ldx < a->k)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: bad shape k=%d, ldx=%lld", fn, a->k,
                           (long long)a->ldx);
    if (a->n_outputs < 1 || a->n_outputs > QILIN_GEMV_MAX_OUTPUTS)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: n_outputs=%d must be in [1, %d]", fn, a->n_outputs,
                           (int)QILIN_GEMV_MAX_OUTPUTS);
    long long n_total = 0;
    for (int j = 0; j < a->n_outputs; j++) {
        QILIN_TRY(check_output(fn, &a->out[j], j, a->k));
        n_total += a->out[j].n;
    }
    if (n_total > INT32_MAX / 2)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: %lld output rows in one launch", fn, n_total);
    if (a->y_dtype != a->dtype && a->y_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: y_dtype %s with dtype %s (same dtype, or f32)", fn,
                           qilin_dtype_name(a->y_dtype), qilin_dtype_name(a->dtype));
    if (a->m == 0 || n_total == 0) return QILIN_OK;
    return with_dtype(fn, a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->m == 1) return launch_gemv<T, 1>(a, stream);
        if (a->m == 2) return launch_gemv<T, 2>(a, stream);
        if (a->m <= 4) return launch_gemv<T, 4>(a, stream);
        return launch_gemv<T, 8>(a, stream);
    });
}

} // namespace

extern "C" qilin_status qilin_gemv(const qilin_gemv_args *a, qilin_stream *stream) {
    if (!a || !a->y || !a->x || !a->w)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv: y, x and w must be set");
    if (a->n < 0 || a->k < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv: bad shape n=%d k=%d", a->n, a->k);
    if (a->ldx < a->k || a->ldw < a->k || a->ldy < a->n)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_gemv: strides ldx=%lld ldw=%lld must be >= k=%d and ldy=%lld >= n=%d",
                           (long long)a->ldx, (long long)a->ldw, a->k, (long long)a->ldy, a->n);
    qilin_gemv_multi_args g = {};
    g.x = a->x, g.m = a->m, g.k = a->k, g.ldx = a->ldx, g.dtype = a->dtype, g.y_dtype = a->y_dtype;
    g.n_outputs = 1;
    g.out[0].y = a->y, g.out[0].w = a->w, g.out[0].bias = a->bias, g.out[0].n = a->n;
    g.out[0].ldw = a->ldw, g.out[0].ldy = a->ldy;
    return run_gemv("qilin_gemv", &g, stream);
}

extern "C" qilin_status qilin_gemv_multi(const qilin_gemv_multi_args *a, qilin_stream *stream) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_multi: args is NULL");
    return run_gemv("qilin_gemv_multi", a, stream);
}
