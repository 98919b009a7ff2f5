/* gemm_gguf.cu — linear layers on GGUF block-quantized weights
 * (gemm_gguf.h): the blocks stay as the file stores them in device memory
 * and are decoded in registers (GEMV) or into shared-memory tiles (GEMM),
 * never materialised as a whole bf16 copy. gguf_block.cuh decodes.
 *
 * GEMV (decode, m <= 8): bounded by reading W once. A block of 8 warps owns
 * 8 weight rows, one per warp; lane l takes the row's 32-weight groups l,
 * l + 32, ... (a group lies in one block: Q8_0 / Q4_0 blocks are one group,
 * K-quant blocks eight), decodes it with two 16-weight calls and multiplies
 * it into all m rows of x (read from global memory: x is tiny and stays in
 * L1/L2), then the warp sums its lanes with shuffles, in a fixed order. The
 * 32 lanes of a warp read 32 consecutive groups, i.e. one contiguous run of
 * the row's bytes. Not done yet: k-splitting over warps for short grids and
 * 16-byte loads of the quants (gemv_quant.cu's FP8 GEMV does both).
 *
 * GEMM (prefill, bf16 / f16 activations): gemm_tile.cuh's tiling, shared
 * with gemm_fp8.cu — a block computes 64 x 64 of y with 4 warps as 2 x 2,
 * each 32 x 32 = 2 m16 tiles x 4 n8 tiles of mma.sync m16n8k16, fp32
 * accumulators. Per k-slab of 32
 * columns (exactly one group, so one block's scale context) the block stages
 * x[64][32] as is and W[64][32] decoded to fp32 and rounded once to the
 * activation dtype (two threads per row, 16 weights each) in padded shared
 * tiles, and multiplies. The rounding of the dequantized weight to bf16 is
 * the one error this adds over the float reference (2^-9 relative per
 * weight; the tests' bf16 dot tolerance covers it). Staging is synchronous:
 * a cp.async pipeline of the raw blocks is the next step.
 *
 * f32 activations (the fp32 reference mode): CUDA cores, 32 x 32 tiles with
 * W decoded to f32 (exactly host/quant.c's values), exact fp32 FMA.
 *
 * Embedding lookup on a GGUF table (a quantized token_embd stays in its
 * blocks too): one block of threads per token, 16 weights per thread per
 * step, decoded and stored in the activation dtype. */
#include <cstring>

#include "common.cuh"
#include "gemm_gguf.h"
#include "gemv.h"
#include "gemm_tile.cuh"
#include "gguf_block.cuh"

extern "C" const char *qilin_gguf_format_name(qilin_gguf_format f) {
    switch (f) {
    case QILIN_GGUF_Q8_0:
        return "Q8_0";
    case QILIN_GGUF_Q4_0:
        return "Q4_0";
    case QILIN_GGUF_Q4_K:
        return "Q4_K";
    case QILIN_GGUF_Q5_K:
        return "Q5_K";
    case QILIN_GGUF_Q6_K:
        return "Q6_K";
    }
    return "?";
}

namespace {

using namespace gemm_tile;

/* ---- GEMV ---------------------------------------------------------------- */

constexpr int kGemvWarps = 8;

template <class T, int M>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_gguf_kernel(void *y, const T *x, const uint8_t *w, const T *bias, qilin_gguf_format f, int m, int n,
                     int k, int64_t ldx, int64_t ldw, int64_t ldy, bool y_f32) {
    const int lane = threadIdx.x & 31, row = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    if (row >= n) return; /* warp-uniform; no block-wide barrier below */
    const uint8_t *wrow = w + (size_t)row * ldw;
    float acc[M];
#pragma unroll
    for (int i = 0; i < M; i++) acc[i] = 0.0f;
    for (int c = lane * 32; c < k; c += 32 * 32) {
        float wv[32];
        gguf_row_decode16(f, wrow, c, wv);
        gguf_row_decode16(f, wrow, c + 16, wv + 16);
#pragma unroll
        for (int i = 0; i < M; i++) {
            if (i >= m) break;
            const T *xr = x + (size_t)i * ldx + c;
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < 32; e++) dot = fmaf(wv[e], to_float(xr[e]), dot);
            acc[i] += dot;
        }
    }
#pragma unroll
    for (int i = 0; i < M; i++) {
        const float v = warp_reduce_sum(acc[i]);
        if (lane == 0 && i < m) store_y<T>(y, ldy, y_f32, i, row, v + (bias ? to_float(bias[row]) : 0.0f));
    }
}

template <class T, int M> qilin_status launch_gemv_gguf(const qilin_gemm_gguf_args *a, qilin_stream *stream) {
    dim3 grid((a->n + kGemvWarps - 1) / kGemvWarps), block(kGemvWarps * 32);
    const long long bytes =
        (long long)a->n * (a->k / gguf_block_elems(a->format)) * gguf_block_bytes(a->format) +
        (long long)a->m * a->k * (long long)sizeof(T);
    return QILIN_LAUNCH_BYTES(bytes, (gemv_gguf_kernel<T, M>), grid, block, 0, stream, a->y, (const T *)a->x,
                              a->w, (const T *)a->bias, a->format, a->m, a->n, a->k, a->ldx, a->ldw, a->ldy,
                              a->y_dtype == QILIN_F32);
}

/* ---- GEMM, tensor cores (bf16 / f16) -------------------------------------- */

template <class T>
__global__ void __launch_bounds__(kThreads)
    gemm_gguf_mma_kernel(void *y, const T *x, const uint8_t *w, const T *bias, qilin_gguf_format f, int m,
                         int n, int k, int64_t ldx, int64_t ldw, int64_t ldy, bool y_f32) {
    __shared__ Tiles<T> sm;
    const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
    const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
    const bool busy = wm * 32 < m - m0; /* warp-uniform: some of its 32 x rows exist */
    float acc[2][4][4] = {};
    /* thread t decodes weights [16 (t % 2), + 16) of the slab in row t / 2 */
    const int wr = threadIdx.x / 2, wh = threadIdx.x % 2;
    for (int k0 = 0; k0 < k; k0 += kBK) { /* k % 32 == 0: every slab is whole */
#pragma unroll 4
        for (int i = 0; i < kBM * kBK / kThreads; i++) {
            const int idx = threadIdx.x + i * kThreads, r = idx / kBK, c = idx % kBK;
            sm.x[r][c] = m0 + r < m ? x[(size_t)(m0 + r) * ldx + k0 + c] : from_float<T>(0.0f);
        }
        float wv[16];
        if (n0 + wr < n)
            gguf_row_decode16(f, w + (size_t)(n0 + wr) * ldw, k0 + 16 * wh, wv);
        else
#pragma unroll
            for (int e = 0; e < 16; e++) wv[e] = 0.0f;
#pragma unroll
        for (int e = 0; e < 16; e++) sm.w[wr][16 * wh + e] = from_float<T>(wv[e]);
        __syncthreads();
        if (busy) mma_slab(acc, sm, wm, wn);
        __syncthreads(); /* the slab is consumed before the next one is staged */
    }
    store_acc(acc, y, ldy, y_f32, bias, m0, n0, wm, wn, m, n);
}

/* ---- GEMM, f32 ------------------------------------------------------------ */

__global__ void __launch_bounds__(kFThreads)
    gemm_gguf_f32_kernel(float *y, const float *x, const uint8_t *w, const float *bias, qilin_gguf_format f,
                         int m, int n, int k, int64_t ldx, int64_t ldw, int64_t ldy) {
    __shared__ float xs[kFT][kFT + 1], wt[kFT][kFT + 1];
    const int tx = threadIdx.x % kFT, ty = threadIdx.x / kFT;
    const int m0 = blockIdx.y * kFT, n0 = blockIdx.x * kFT;
    float acc[kFRows] = {};
    for (int k0 = 0; k0 < k; k0 += kFT) {
#pragma unroll
        for (int q = 0; q < kFRows; q++) {
            const int r = ty + q * (kFThreads / kFT);
            xs[r][tx] = m0 + r < m ? x[(size_t)(m0 + r) * ldx + k0 + tx] : 0.0f;
        }
        if (threadIdx.x < 2 * kFT) { /* 64 threads decode the tile's 32 rows, 16 weights each */
            const int r = threadIdx.x / 2, h = threadIdx.x % 2;
            float wv[16];
            if (n0 + r < n)
                gguf_row_decode16(f, w + (size_t)(n0 + r) * ldw, k0 + 16 * h, wv);
            else
#pragma unroll
                for (int e = 0; e < 16; e++) wv[e] = 0.0f;
#pragma unroll
            for (int e = 0; e < 16; e++) wt[r][16 * h + e] = wv[e];
        }
        __syncthreads();
        fma_slab32(acc, xs, wt, tx, ty);
        __syncthreads();
    }
    store_acc32(acc, y, ldy, bias, m0, n0, tx, ty, m, n);
}

template <class T> qilin_status launch_gemm_gguf(const qilin_gemm_gguf_args *a, qilin_stream *stream) {
    const T *x = (const T *)a->x, *bias = (const T *)a->bias;
    if constexpr (std::is_same<T, float>::value) {
        dim3 grid((a->n + kFT - 1) / kFT, (a->m + kFT - 1) / kFT);
        return QILIN_LAUNCH(gemm_gguf_f32_kernel, grid, dim3(kFThreads), 0, stream, (float *)a->y, x, a->w,
                            bias, a->format, a->m, a->n, a->k, a->ldx, a->ldw, a->ldy);
    } else {
        dim3 grid((a->n + kBN - 1) / kBN, (a->m + kBM - 1) / kBM);
        return QILIN_LAUNCH((gemm_gguf_mma_kernel<T>), grid, dim3(kThreads), 0, stream, a->y, x, a->w, bias,
                            a->format, a->m, a->n, a->k, a->ldx, a->ldw, a->ldy, a->y_dtype == QILIN_F32);
    }
}

/* What both launchers check; *done when there is nothing to compute. */
/* Whether *f names a format, read as the int a C caller may have put there
 * (loading an enum outside its range is undefined in C++: UBSan's
 * -fsanitize=enum stops at it before any check could run). */
bool format_known(const qilin_gguf_format *f) {
    static_assert(sizeof(qilin_gguf_format) == sizeof(int), "the format is an int in C");
    int raw;
    std::memcpy(&raw, f, sizeof raw);
    return raw >= QILIN_GGUF_Q8_0 && raw <= QILIN_GGUF_Q6_K;
}

int format_int(const qilin_gguf_format *f) {
    int raw;
    std::memcpy(&raw, f, sizeof raw);
    return raw;
}

qilin_status check_args(const char *op, const qilin_gemm_gguf_args *a, int max_m, bool *done) {
    *done = false;
    if (!a || !a->y || !a->x || !a->w)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: y, x and w must be set", op);
    if (!format_known(&a->format))
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: unknown GGUF format %d", op, format_int(&a->format));
    const int be = gguf_block_elems(a->format);
    if (a->m < 0 || a->m > max_m || a->n < 0 || a->k < 1)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: bad shape m=%d (at most %d) n=%d k=%d", op, a->m,
                           max_m, a->n, a->k);
    if (a->k % be != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: k=%d is not a multiple of %s's %d-weight block",
                           op, a->k, qilin_gguf_format_name(a->format), be);
    const int64_t row_bytes = (int64_t)(a->k / be) * gguf_block_bytes(a->format);
    if (a->ldx < a->k || a->ldw < row_bytes || a->ldy < a->n)
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "%s: strides ldx=%lld must be >= k=%d, ldw=%lld bytes >= a row's %lld, ldy=%lld >= n=%d", op,
            (long long)a->ldx, a->k, (long long)a->ldw, (long long)row_bytes, (long long)a->ldy, a->n);
    if (a->y_dtype != a->dtype && a->y_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: y_dtype %s with dtype %s (same dtype, or f32)", op,
                           qilin_dtype_name(a->y_dtype), qilin_dtype_name(a->dtype));
    *done = a->m == 0 || a->n == 0;
    return QILIN_OK;
}

/* ---- embedding ------------------------------------------------------------ */

template <class O>
__global__ void embedding_gguf_kernel(O *out, const uint8_t *table, const int *ids, qilin_gguf_format f,
                                      int dim, int vocab, int64_t ldw) {
    const int t = blockIdx.x, id = ids[t];
    const bool valid = id >= 0 && id < vocab;
    O *dst = out + (size_t)t * dim;
    for (int c = threadIdx.x * 16; c < dim; c += blockDim.x * 16) {
        float v[16];
        if (valid)
            gguf_row_decode16(f, table + (size_t)id * ldw, c, v);
        else
#pragma unroll
            for (int e = 0; e < 16; e++) v[e] = 0.0f;
#pragma unroll
        for (int e = 0; e < 16; e++) dst[c + e] = from_float<O>(v[e]);
    }
}

} // namespace

extern "C" qilin_status qilin_embedding_gguf(const qilin_embedding_gguf_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->table || !a->ids)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_embedding_gguf: out, table and ids must be set");
    if (!format_known(&a->format))
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_embedding_gguf: unknown GGUF format %d",
                           format_int(&a->format));
    const int be = gguf_block_elems(a->format);
    if (a->tokens < 0 || a->dim < 1 || a->dim % be || a->vocab < 0 ||
        a->ldw < (int64_t)(a->dim / be) * gguf_block_bytes(a->format))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_embedding_gguf: tokens=%d dim=%d (a multiple of %s's %d) vocab=%d ldw=%lld",
                           a->tokens, a->dim, qilin_gguf_format_name(a->format), be, a->vocab,
                           (long long)a->ldw);
    if (a->tokens == 0) return QILIN_OK;
    const int threads = a->dim / 16 < 128 ? (a->dim / 16 + 31) / 32 * 32 : 128;
    return with_dtype("qilin_embedding_gguf", a->out_dtype, [&](auto tag) {
        using O = typename decltype(tag)::type;
        return QILIN_LAUNCH(embedding_gguf_kernel<O>, dim3(a->tokens), dim3(threads), 0, stream, (O *)a->out,
                            a->table, a->ids, a->format, a->dim, a->vocab, a->ldw);
    });
}

extern "C" qilin_status qilin_gemv_gguf(const qilin_gemm_gguf_args *a, qilin_stream *stream) {
    bool done;
    QILIN_TRY(check_args("qilin_gemv_gguf", a, QILIN_GEMV_MAX_M, &done));
    if (done) return QILIN_OK;
    return with_dtype("qilin_gemv_gguf", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a->m == 1) return launch_gemv_gguf<T, 1>(a, stream);
        if (a->m == 2) return launch_gemv_gguf<T, 2>(a, stream);
        if (a->m <= 4) return launch_gemv_gguf<T, 4>(a, stream);
        return launch_gemv_gguf<T, 8>(a, stream);
    });
}

extern "C" qilin_status qilin_gemm_gguf(const qilin_gemm_gguf_args *a, qilin_stream *stream) {
    bool done;
    QILIN_TRY(check_args("qilin_gemm_gguf", a, 65535 * kBM, &done));
    if (done) return QILIN_OK;
    return with_dtype("qilin_gemm_gguf", a->dtype,
                      [&](auto tag) { return launch_gemm_gguf<typename decltype(tag)::type>(a, stream); });
}
