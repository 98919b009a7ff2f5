/* gemm_fp8.cu — the prefill linear layer on FP8 block-scaled weights
 * (gemm_quant.h): W stays e4m3 in device memory and is dequantized one
 * shared-memory tile at a time, never as a whole bf16 copy.
 *
 * bf16 / f16 activations (sm_80+; the tiles of gemm_tile.cuh, shared with
 * gemm_gguf.cu): a block computes a 64 x 64 tile of y
 * (64 rows of x times 64 weight rows) with 4 warps as 2 x 2, each 32 x 32 =
 * 2 m16 tiles x 4 n8 tiles of mma.sync m16n8k16 with fp32 accumulators.
 * Per k-slab of 32 columns the block stages x[64][32] as is and W[64][32]
 * as its e4m3 values (exact in bf16 and f16) in padded shared tiles (row
 * stride 40 elements: conflict-free ldmatrix, the MoE GEMM's layout, whose
 * fragment loaders it reuses) and multiplies the slab into a partial sum.
 * The slabs run on the checkpoint's column grid (the slice's column c is
 * global column c + col_off), so each lies in one 128-column scale block;
 * when the block changes, and at the end, the partial sums are scaled by
 * their weight row's block scale and added to the fp32 accumulators: the
 * block scale applied once per 128-k chunk, products exact, sums fp32 —
 * closer to the float reference than the dequantize-at-load path (which
 * rounded e4m3 * scale to bf16). Rows need no grid: each accumulator looks
 * up its own row's block, so a slice starting mid-block (row_off) works.
 * Loads are plain (any alignment, any ldw), staged synchronously: a
 * cp.async pipeline of the FP8 bytes (half the bytes of the bf16 tile it
 * replaces) is the next step.
 *
 * Native FP8 (sm_89 / sm_90, not written yet): keep the W tile as e4m3 in
 * shared memory, quantize each x row per 1 x 128 group to e4m3 with its own
 * scale while staging, multiply with mma m16n8k32 e4m3 (tensor_core.cuh
 * has it), and apply x_scale * w_scale to each 128-k partial sum before
 * adding it to the fp32 accumulators; it would go beside the bf16 kernel
 * here, chosen by the launcher on the device's compute capability.
 *
 * f32 activations (the fp32 reference mode): CUDA cores, a classic 32 x 32
 * shared-memory tile with W dequantized to f32 (e4m3 * scale, as
 * host/quant.c does), exact fp32 FMA, no tf32. */
#include "common.cuh"
#include "fp8_decode.cuh"
#include "gemm_quant.h"
#include "gemm_tile.cuh"

namespace {

using namespace gemm_tile;

/* The dequantized weight W[r, c] (0 outside [n, k]). */
__device__ inline float fp8_weight(const uint8_t *w, const float *ws, int r, int c, int n, int k, int64_t ldw,
                                   int64_t lds, int roff, int coff) {
    if (r >= n || c >= k) return 0.0f;
    float scale = ws[(size_t)((r + roff) / 128) * lds + (c + coff) / 128];
    return fp8_e4m3_to_float(w[(size_t)r * ldw + c]) * scale;
}

/* acc += part * (the block scale of each accumulator's weight row, block column kb); part = 0. */
__device__ inline void flush_block(float (&acc)[2][4][4], float (&part)[2][4][4], const float *ws,
                                   int64_t lds, int kb, int n0, int n, int roff) {
    const int lane = threadIdx.x & 31, t = lane & 3, wn = (threadIdx.x >> 5) & 1;
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int c = n0 + wn * 32 + 8 * j + 2 * t + h;
            const float scale = c < n ? ws[(size_t)((c + roff) / 128) * lds + kb] : 0.0f;
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int e = h; e < 4; e += 2) {
                    acc[i][j][e] = fmaf(part[i][j][e], scale, acc[i][j][e]);
                    part[i][j][e] = 0.0f;
                }
        }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    gemm_fp8_mma_kernel(void *y, const T *x, const uint8_t *w, const float *ws, const T *bias, int m, int n,
                        int k, int roff, int coff, int64_t ldx, int64_t ldw, int64_t lds, int64_t ldy,
                        bool y_f32) {
    __shared__ Tiles<T> sm;
    const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
    const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
    const bool busy = wm * 32 < m - m0; /* warp-uniform: some of its 32 x rows exist */
    float acc[2][4][4] = {}, part[2][4][4] = {};
    /* slabs on the checkpoint's column grid (global column kg = local + coff),
     * so each lies in one 128-column block; columns before coff are zero */
    int kb_cur = coff / 128;
    for (int kg0 = coff / kBK * kBK; kg0 < coff + k; kg0 += kBK) {
        if (kg0 / 128 != kb_cur) {
            flush_block(acc, part, ws, lds, kb_cur, n0, n, roff);
            kb_cur = kg0 / 128;
        }
#pragma unroll 4
        for (int i = 0; i < kBM * kBK / kThreads; i++) {
            const int idx = threadIdx.x + i * kThreads, r = idx / kBK, c = idx % kBK, lc = kg0 + c - coff;
            const bool in_k = lc >= 0 && lc < k;
            sm.x[r][c] = m0 + r < m && in_k ? x[(size_t)(m0 + r) * ldx + lc] : from_float<T>(0.0f);
            /* e4m3 is exact in bf16 and f16: the block scale comes at the flush */
            sm.w[r][c] =
                from_float<T>(n0 + r < n && in_k ? fp8_e4m3_to_float(w[(size_t)(n0 + r) * ldw + lc]) : 0.0f);
        }
        __syncthreads();
        if (busy) mma_slab(part, sm, wm, wn);
        __syncthreads(); /* the slab is consumed before the next one is staged */
    }
    flush_block(acc, part, ws, lds, kb_cur, n0, n, roff);
    store_acc(acc, y, ldy, y_f32, bias, m0, n0, wm, wn, m, n);
}

__global__ void __launch_bounds__(kFThreads)
    gemm_fp8_f32_kernel(float *y, const float *x, const uint8_t *w, const float *ws, const float *bias, int m,
                        int n, int k, int roff, int coff, int64_t ldx, int64_t ldw, int64_t lds,
                        int64_t ldy) {
    __shared__ float xs[kFT][kFT + 1], wt[kFT][kFT + 1];
    const int tx = threadIdx.x % kFT, ty = threadIdx.x / kFT;
    const int m0 = blockIdx.y * kFT, n0 = blockIdx.x * kFT;
    float acc[kFRows] = {};
    for (int k0 = 0; k0 < k; k0 += kFT) {
#pragma unroll
        for (int q = 0; q < kFRows; q++) {
            const int r = ty + q * (kFThreads / kFT), gc = k0 + tx;
            xs[r][tx] = m0 + r < m && gc < k ? x[(size_t)(m0 + r) * ldx + gc] : 0.0f;
            wt[r][tx] = fp8_weight(w, ws, n0 + r, gc, n, k, ldw, lds, roff, coff);
        }
        __syncthreads();
        fma_slab32(acc, xs, wt, tx, ty);
        __syncthreads();
    }
    store_acc32(acc, y, ldy, bias, m0, n0, tx, ty, m, n);
}

template <class T> qilin_status launch_gemm_fp8(const qilin_gemm_fp8_args *a, qilin_stream *stream) {
    const T *x = (const T *)a->x, *bias = (const T *)a->bias;
    const bool y_f32 = a->y_dtype == QILIN_F32;
    if constexpr (std::is_same<T, float>::value) {
        dim3 grid((a->n + kFT - 1) / kFT, (a->m + kFT - 1) / kFT);
        return QILIN_LAUNCH(gemm_fp8_f32_kernel, grid, dim3(kFThreads), 0, stream, (float *)a->y, x, a->w,
                            a->w_scale, bias, a->m, a->n, a->k, a->row_off, a->col_off, a->ldx, a->ldw,
                            a->ld_scale, a->ldy);
    } else {
        dim3 grid((a->n + kBN - 1) / kBN, (a->m + kBM - 1) / kBM);
        return QILIN_LAUNCH((gemm_fp8_mma_kernel<T>), grid, dim3(kThreads), 0, stream, a->y, x, a->w,
                            a->w_scale, bias, a->m, a->n, a->k, a->row_off, a->col_off, a->ldx, a->ldw,
                            a->ld_scale, a->ldy, y_f32);
    }
}

} // namespace

extern "C" qilin_status qilin_gemm_fp8(const qilin_gemm_fp8_args *a, qilin_stream *stream) {
    if (!a || !a->y || !a->x || !a->w || !a->w_scale)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemm_fp8: y, x, w and w_scale must be set");
    if (a->m < 0 || a->n < 0 || a->k < 1 || a->m > 65535 * kBM)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_gemm_fp8: bad shape m=%d n=%d k=%d", a->m, a->n,
                           a->k);
    if (a->row_off < 0 || a->row_off >= 128 || a->col_off < 0 || a->col_off >= 128)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_gemm_fp8: row_off=%d col_off=%d must be in [0, 128)", a->row_off,
                           a->col_off);
    const int64_t kblocks = (a->col_off + a->k + 127) / 128;
    if (a->ldx < a->k || a->ldw < a->k || a->ldy < a->n || a->ld_scale < kblocks)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_gemm_fp8: strides ldx=%lld ldw=%lld must be >= k=%d, ldy=%lld >= n=%d and "
                           "ld_scale=%lld >= ceil((col_off + k)/128)=%lld",
                           (long long)a->ldx, (long long)a->ldw, a->k, (long long)a->ldy, a->n,
                           (long long)a->ld_scale, (long long)kblocks);
    if (a->y_dtype != a->dtype && a->y_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "qilin_gemm_fp8: y_dtype %s with dtype %s (same dtype, or f32)",
                           qilin_dtype_name(a->y_dtype), qilin_dtype_name(a->dtype));
    if (a->m == 0 || a->n == 0) return QILIN_OK;
    return with_dtype("qilin_gemm_fp8", a->dtype,
                      [&](auto tag) { return launch_gemm_fp8<typename decltype(tag)::type>(a, stream); });
}
