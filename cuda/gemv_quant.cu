/* gemv_quant.cu — decode GEMV on quantized weights (gemv_quant.h).
 *
 * FP8 block-scaled: the structure of gemv.cu (read it first) with W as
 * e4m3 bytes. A block is 8 warps; `ksplit` consecutive warps own 2 rows of
 * W and split k between them; x is staged in shared memory in chunks of k
 * (a multiple of 512 columns, so of the 128-column scale blocks); each lane
 * streams its rows with 16-byte loads = 16 weights, two per row in flight,
 * decodes them in registers and reuses them for all m rows of x. The 16
 * weights of a load lie in one 128x128 scale block (and the group's 2 rows,
 * row0 even, in one block row), so the products are summed unscaled over
 * the 16 columns and the block scale is applied once to that partial sum:
 * one multiply per 16 weights, not per weight. Reduction as gemv.cu: warp
 * shuffles, then the group's warps in a fixed order (deterministic).
 *
 * A byte is 1/2 of a bf16 weight, so the same bandwidth-bound loop moves
 * twice the weights per byte read. k not a multiple of 16 or a pointer or
 * stride off 16-byte alignment takes the scalar path (one weight per load,
 * scaled per weight): correct, slower. */
#include <cstring>

#include "common.cuh"
#include "fp8_decode.cuh"
#include "gemv_stage.cuh"
#include "kernels.h"

namespace {

constexpr int kWarps = 8, kRows = 2, kUnroll = 2; /* warps per block, W rows per group, vectors per row in flight */
constexpr int kVecW = 16;                         /* e4m3 weights per 16-byte load */
constexpr size_t kChunkBytes = 32 * 1024;         /* staged x per block */
constexpr int kTargetBlocks = 256;                /* ~2 per SM on an H100: below it, split k across warps */
static_assert(QILIN_FP8_BLOCK % kRows == 0 && QILIN_FP8_BLOCK % kVecW == 0, "a load stays in one scale block");

} // namespace

template <class T, int M, bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_fp8_kernel(void *y, const T *x, const uint8_t *w, const float *w_scale, const T *bias, int m, int n, int k,
                    int64_t ldx, int64_t ldw, int64_t ld_scale, int64_t ldy, bool y_f32, int chunk, int ksplit) {
    constexpr int V = kVec ? kVecW : 1;           /* weights per W load */
    constexpr int XV = kVec ? Vec16<T>::n : 1;    /* x elements per shared-memory load */
    QILIN_DYNAMIC_SMEM(T, xs); /* [M][chunk] */
    __shared__ float partial[kWarps][kRows][M];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int groups = kWarps / ksplit, group = warp / ksplit, part = warp % ksplit;
    const int row0 = (blockIdx.x * groups + group) * kRows;

    const uint8_t *wrow[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) wrow[r] = row0 + r < n ? w + (size_t)(row0 + r) * ldw : nullptr;
    const float *srow = w_scale + (size_t)(row0 / QILIN_FP8_BLOCK) * ld_scale; /* both rows' block row */
    float acc[kRows][M];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int i = 0; i < M; i++) acc[r][i] = 0.0f;

    for (int c0 = 0; c0 < k; c0 += chunk) {
        const int len = k - c0 < chunk ? k - c0 : chunk;
        const int nv = len / V; /* k % 16 == 0 on the vector path */
        __syncthreads(); /* the previous chunk is consumed */
        gemv_stage_x<T, M, kVec>(xs, x, m, ldx, c0, len, chunk);
        __syncthreads();
        if (!wrow[0]) continue; /* warp-uniform: no row of this group exists */
        const int stride = 32 * ksplit;
        for (int v0 = part * 32 + lane; v0 < nv; v0 += stride * kUnroll) {
            alignas(16) uint8_t wv[kRows][kUnroll][V];
#pragma unroll
            for (int r = 0; r < kRows; r++)
#pragma unroll
                for (int u = 0; u < kUnroll; u++) {
                    int v = v0 + u * stride;
                    if (wrow[r] && v < nv) {
                        load_elems<uint8_t, kVec>(wv[r][u], wrow[r] + c0, v);
                    } else {
#pragma unroll
                        for (int e = 0; e < V; e++) wv[r][u][e] = 0;
                    }
                }
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                int v = v0 + u * stride;
                if (v >= nv) break;
                const float scale = srow[(c0 + v * V) / QILIN_FP8_BLOCK];
                float wf[kRows][V];
#pragma unroll
                for (int r = 0; r < kRows; r++)
#pragma unroll
                    for (int e = 0; e < V; e++) wf[r][e] = fp8_e4m3_to_float(wv[r][u][e]);
#pragma unroll
                for (int i = 0; i < M; i++) {
                    alignas(16) T xv[V];
#pragma unroll
                    for (int j = 0; j < V / XV; j++)
                        load_elems<T, kVec>(xv + j * XV, xs + (size_t)i * chunk + (size_t)v * V, j);
                    float dot[kRows];
#pragma unroll
                    for (int r = 0; r < kRows; r++) dot[r] = 0.0f;
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        float xf = to_float(xv[e]);
#pragma unroll
                        for (int r = 0; r < kRows; r++) dot[r] = fmaf(wf[r][e], xf, dot[r]);
                    }
#pragma unroll
                    for (int r = 0; r < kRows; r++) acc[r][i] = fmaf(scale, dot[r], acc[r][i]);
                }
            }
        }
    }

    gemv_reduce_store<T, M, kWarps, kRows>(partial, acc, groups, ksplit, bias, y, ldy, y_f32, m, n);
}

namespace {

template <class T, int M>
qilin_status launch_gemv_fp8(const qilin_gemv_fp8_args *a, qilin_stream *stream) {
    uintptr_t bits = (uintptr_t)a->x | (uintptr_t)a->w;
    bool vec = a->k % kVecW == 0 && bits % 16 == 0 && (a->ldx * sizeof(T)) % 16 == 0 && a->ldw % 16 == 0;
    const int V = vec ? kVecW : 1, step = 32 * V;
    /* x chunk: all of k when it fits, else the most whole warp steps that do
     * (a multiple of 512 on the vector path: loads never straddle a scale block) */
    int kr = (a->k + V - 1) / V * V;
    int fit = (int)(kChunkBytes / (M * sizeof(T))) / (32 * kVecW) * (32 * kVecW);
    int chunk = kr < fit ? kr : fit;
    /* split k across warps while the grid is short of blocks and k is long */
    int ksplit = 1;
    while (ksplit < kWarps && (a->n + kRows * kWarps / ksplit - 1) / (kRows * kWarps / ksplit) < kTargetBlocks &&
           a->k >= 2 * ksplit * step * kUnroll)
        ksplit *= 2;
    int rows_per_block = kRows * kWarps / ksplit;
    dim3 grid((a->n + rows_per_block - 1) / rows_per_block), block(kWarps * 32);
    size_t smem = (size_t)M * chunk * sizeof(T);
    bool y_f32 = a->y_dtype == QILIN_F32;
    const T *x = (const T *)a->x, *bias = (const T *)a->bias;
    /* what the launch must read at least: W, its scales and x once */
    long long kb = (a->k + QILIN_FP8_BLOCK - 1) / QILIN_FP8_BLOCK, nb = (a->n + QILIN_FP8_BLOCK - 1) / QILIN_FP8_BLOCK;
    long long bytes = (long long)a->n * a->k + nb * kb * 4 + (long long)a->m * a->k * (long long)sizeof(T);
    if (vec)
        return QILIN_LAUNCH_BYTES(bytes, (gemv_fp8_kernel<T, M, true>), grid, block, smem, stream, a->y, x, a->w,
                                  a->w_scale, bias, a->m, a->n, a->k, a->ldx, a->ldw, a->ld_scale, a->ldy, y_f32,
                                  chunk, ksplit);
    return QILIN_LAUNCH_BYTES(bytes, (gemv_fp8_kernel<T, M, false>), grid, block, smem, stream, a->y, x, a->w,
                              a->w_scale, bias, a->m, a->n, a->k, a->ldx, a->ldw, a->ld_scale, a->ldy, y_f32, chunk,
                              ksplit);
}

} // namespace

extern "C" qilin_status qilin_gemv_fp8(const qilin_gemv_fp8_args *a, qilin_stream *stream) {
    if (!a || !a->y || !a->x || !a->w || !a->w_scale)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_fp8: y, x, w and w_scale must be set");
    if (a->m < 0 || a->m > QILIN_GEMV_MAX_M)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_fp8: m=%d must be in [0, %d]", a->m,
                           (int)QILIN_GEMV_MAX_M);
    if (a->n < 0 || a->k < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_fp8: bad shape n=%d k=%d", a->n, a->k);
    const int64_t kblocks = (a->k + QILIN_FP8_BLOCK - 1) / QILIN_FP8_BLOCK;
    if (a->ldx < a->k || a->ldw < a->k || a->ldy < a->n || a->ld_scale < kblocks)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_gemv_fp8: strides ldx=%lld ldw=%lld must be >= k=%d, ldy=%lld >= n=%d and "
                           "ld_scale=%lld >= ceil(k/128)=%lld",
                           (long long)a->ldx, (long long)a->ldw, a->k, (long long)a->ldy, a->n,
                           (long long)a->ld_scale, (long long)kblocks);
    if (a->y_dtype != a->dtype && a->y_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_gemv_fp8: y_dtype %s with dtype %s (same dtype, or f32)",
                           qilin_dtype_name(a->y_dtype), qilin_dtype_name(a->dtype));
    if (a->m == 0 || a->n == 0) return QILIN_OK;
    return with_dtype("qilin_gemv_fp8", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->m == 1) return launch_gemv_fp8<T, 1>(a, stream);
        if (a->m == 2) return launch_gemv_fp8<T, 2>(a, stream);
        if (a->m <= 4) return launch_gemv_fp8<T, 4>(a, stream);
        return launch_gemv_fp8<T, 8>(a, stream);
    });
}

/* ---- INT4 groups (compressed-tensors pack-quantized) -------------------------
 * The same loop with 16-byte loads of 4 words = 32 weights, one group of 32
 * (group_size a multiple of 32 on the vector path), so each row's group scale
 * is applied once per load to the unscaled partial sum of (u - 8) * x. The
 * scale is per row (not shared like FP8's block row), read in its dtype. */

namespace {

constexpr int kInt4VecW = 32; /* weights per 16-byte load */

} // namespace

__device__ inline float load_scale_any(const void *p, int64_t i, qilin_dtype t) {
    if (t == QILIN_BF16) return to_float(static_cast<const __nv_bfloat16 *>(p)[i]);
    if (t == QILIN_F16) return to_float(static_cast<const __half *>(p)[i]);
    return static_cast<const float *>(p)[i];
}

template <class T, int M, bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int4_kernel(void *y, const T *x, const uint32_t *w, const void *w_scale, qilin_dtype scale_dtype,
                     const T *bias, int m, int n, int k, int group, int64_t ldx, int64_t ldw, int64_t ld_scale,
                     int64_t ldy, bool y_f32, int chunk, int ksplit) {
    constexpr int V = kVec ? kInt4VecW : 1;       /* weights per W load */
    constexpr int E = kVec ? 8 : 1;               /* weights per packed word handled at once */
    constexpr int XV = kVec ? Vec16<T>::n : 1;    /* x elements per shared-memory load */
    static_assert(E % XV == 0, "a word's x elements are whole vectors");
    QILIN_DYNAMIC_SMEM(T, xs); /* [M][chunk] */
    __shared__ float partial[kWarps][kRows][M];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int groups = kWarps / ksplit, grp = warp / ksplit, part = warp % ksplit;
    const int row0 = (blockIdx.x * groups + grp) * kRows;

    const uint32_t *wrow[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) wrow[r] = row0 + r < n ? w + (size_t)(row0 + r) * ldw : nullptr;
    float acc[kRows][M];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int i = 0; i < M; i++) acc[r][i] = 0.0f;

    for (int c0 = 0; c0 < k; c0 += chunk) {
        const int len = k - c0 < chunk ? k - c0 : chunk;
        const int nv = len / V; /* k % 32 == 0 on the vector path */
        __syncthreads(); /* the previous chunk is consumed */
        gemv_stage_x<T, M, kVec>(xs, x, m, ldx, c0, len, chunk);
        __syncthreads();
        if (!wrow[0]) continue; /* warp-uniform: no row of this group exists */
        const int stride = 32 * ksplit;
        for (int v0 = part * 32 + lane; v0 < nv; v0 += stride * kUnroll) {
            uint32_t wv[kRows][kUnroll][kVec ? 4 : 1]; /* packed words */
#pragma unroll
            for (int r = 0; r < kRows; r++)
#pragma unroll
                for (int u = 0; u < kUnroll; u++) {
                    int v = v0 + u * stride;
                    if (wrow[r] && v < nv) {
                        if constexpr (kVec) {
                            uint4 q = load_vec<uint4>(wrow[r] + c0 / 8 + (size_t)v * 4);
                            wv[r][u][0] = q.x, wv[r][u][1] = q.y, wv[r][u][2] = q.z, wv[r][u][3] = q.w;
                        } else {
                            int c = c0 + v;
                            wv[r][u][0] = wrow[r][c / 8] >> (4 * (c % 8)); /* its nibble in bits 0-3 */
                        }
                    } else {
                        /* 0x88888888: u = 8 everywhere, a zero weight */
#pragma unroll
                        for (int j = 0; j < (kVec ? 4 : 1); j++) wv[r][u][j] = 0x88888888u;
                    }
                }
#pragma unroll
            for (int u = 0; u < kUnroll; u++) {
                int v = v0 + u * stride;
                if (v >= nv) continue;
                const int gi = (c0 + v * V) / group;
                float scale[kRows], dot[kRows][M];
#pragma unroll
                for (int r = 0; r < kRows; r++) {
                    /* a missing row reads row0's scale: its weights are zero */
                    const int64_t srow = (int64_t)(row0 + r < n ? row0 + r : row0) * ld_scale;
                    scale[r] = load_scale_any(w_scale, srow + gi, scale_dtype);
#pragma unroll
                    for (int i = 0; i < M; i++) dot[r][i] = 0.0f;
                }
                /* one packed word (8 weights) at a time: 16 decoded floats live, not 64 */
#pragma unroll
                for (int j = 0; j < V / E; j++) {
                    float wf[kRows][E];
#pragma unroll
                    for (int r = 0; r < kRows; r++)
#pragma unroll
                        for (int e = 0; e < E; e++) wf[r][e] = (float)((int)(wv[r][u][j] >> (4 * e) & 15u) - 8);
#pragma unroll
                    for (int i = 0; i < M; i++) {
                        alignas(16) T xv[E];
#pragma unroll
                        for (int h = 0; h < E / XV; h++)
                            load_elems<T, kVec>(xv + h * XV, xs + (size_t)i * chunk + (size_t)v * V + j * E, h);
#pragma unroll
                        for (int e = 0; e < E; e++) {
                            float xf = to_float(xv[e]);
#pragma unroll
                            for (int r = 0; r < kRows; r++) dot[r][i] = fmaf(wf[r][e], xf, dot[r][i]);
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i < M; i++)
#pragma unroll
                    for (int r = 0; r < kRows; r++) acc[r][i] = fmaf(scale[r], dot[r][i], acc[r][i]);
            }
        }
    }

    gemv_reduce_store<T, M, kWarps, kRows>(partial, acc, groups, ksplit, bias, y, ldy, y_f32, m, n);
}

namespace {

template <class T, int M>
qilin_status launch_gemv_int4(const qilin_gemv_int4_args *a, qilin_stream *stream) {
    uintptr_t bits = (uintptr_t)a->x | (uintptr_t)a->w_packed;
    bool vec = a->k % kInt4VecW == 0 && a->group_size % kInt4VecW == 0 && bits % 16 == 0 &&
               (a->ldx * sizeof(T)) % 16 == 0 && a->ldw % 4 == 0;
    const int V = vec ? kInt4VecW : 1, step = 32 * V;
    /* x chunk: all of k when it fits, else the most whole vector-path warp steps (1024 columns) that do */
    int kr = (a->k + V - 1) / V * V;
    int fit = (int)(kChunkBytes / (M * sizeof(T))) / (32 * kInt4VecW) * (32 * kInt4VecW);
    int chunk = kr < fit ? kr : fit;
    int ksplit = 1;
    while (ksplit < kWarps && (a->n + kRows * kWarps / ksplit - 1) / (kRows * kWarps / ksplit) < kTargetBlocks &&
           a->k >= 2 * ksplit * step * kUnroll)
        ksplit *= 2;
    int rows_per_block = kRows * kWarps / ksplit;
    dim3 grid((a->n + rows_per_block - 1) / rows_per_block), block(kWarps * 32);
    size_t smem = (size_t)M * chunk * sizeof(T);
    bool y_f32 = a->y_dtype == QILIN_F32;
    const T *x = (const T *)a->x, *bias = (const T *)a->bias;
    const uint32_t *w = (const uint32_t *)a->w_packed;
    long long bytes = (long long)a->n * ((a->k + 7) / 8) * 4 +
                      (long long)a->n * (a->k / a->group_size) * (long long)qilin_dtype_size(a->scale_dtype) +
                      (long long)a->m * a->k * (long long)sizeof(T);
    if (vec)
        return QILIN_LAUNCH_BYTES(bytes, (gemv_int4_kernel<T, M, true>), grid, block, smem, stream, a->y, x, w,
                                  a->w_scale, a->scale_dtype, bias, a->m, a->n, a->k, a->group_size, a->ldx, a->ldw,
                                  a->ld_scale, a->ldy, y_f32, chunk, ksplit);
    return QILIN_LAUNCH_BYTES(bytes, (gemv_int4_kernel<T, M, false>), grid, block, smem, stream, a->y, x, w,
                              a->w_scale, a->scale_dtype, bias, a->m, a->n, a->k, a->group_size, a->ldx, a->ldw,
                              a->ld_scale, a->ldy, y_f32, chunk, ksplit);
}

} // namespace

extern "C" qilin_status qilin_gemv_int4(const qilin_gemv_int4_args *a, qilin_stream *stream) {
    if (!a || !a->y || !a->x || !a->w_packed || !a->w_scale)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_int4: y, x, w_packed and w_scale must be set");
    if (a->m < 0 || a->m > QILIN_GEMV_MAX_M)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_int4: m=%d must be in [0, %d]", a->m,
                           (int)QILIN_GEMV_MAX_M);
    if (a->n < 0 || a->k < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_int4: bad shape n=%d k=%d", a->n, a->k);
    if (a->group_size < 1 || a->k % a->group_size != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemv_int4: group_size=%d must divide k=%d",
                           a->group_size, a->k);
    if (a->scale_dtype != QILIN_F32 && a->scale_dtype != QILIN_F16 && a->scale_dtype != QILIN_BF16)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_gemv_int4: scale_dtype %s (f32, f16 or bf16)",
                           qilin_dtype_name(a->scale_dtype));
    const int64_t words = (a->k + 7) / 8, ngroups = a->k / a->group_size;
    if (a->ldx < a->k || a->ldw < words || a->ldy < a->n || a->ld_scale < ngroups)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_gemv_int4: strides ldx=%lld must be >= k=%d, ldw=%lld >= ceil(k/8)=%lld, "
                           "ldy=%lld >= n=%d and ld_scale=%lld >= k/group_size=%lld",
                           (long long)a->ldx, a->k, (long long)a->ldw, (long long)words, (long long)a->ldy, a->n,
                           (long long)a->ld_scale, (long long)ngroups);
    if (a->y_dtype != a->dtype && a->y_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_gemv_int4: y_dtype %s with dtype %s (same dtype, or f32)",
                           qilin_dtype_name(a->y_dtype), qilin_dtype_name(a->dtype));
    if (a->m == 0 || a->n == 0) return QILIN_OK;
    return with_dtype("qilin_gemv_int4", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->m == 1) return launch_gemv_int4<T, 1>(a, stream);
        if (a->m == 2) return launch_gemv_int4<T, 2>(a, stream);
        if (a->m <= 4) return launch_gemv_int4<T, 4>(a, stream);
        return launch_gemv_int4<T, 8>(a, stream);
    });
}
