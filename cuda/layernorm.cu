/* layernorm.cu — LayerNorm (GPT-NeoX, GPT-J), optionally fused with the
 * residual add.
 *
 *   h   = x (+ residual; residual := h)                     [rows, dim]
 *   out = (h - mean(h)) / sqrt(var(h) + eps) * weight (+ bias)
 *         fp32 arithmetic, dtype storage; var is the biased (1/dim) variance
 *
 * One block per row, the same structure as rmsnorm.cu: threads stride over
 * the row in 16-byte vectors when the row is vector-aligned (dim a multiple of
 * the vector width, pointers 16-byte aligned), else element by element.
 *
 * Mean and variance are computed in two passes — first the mean, then the sum
 * of squared deviations from it — rather than as E[h^2] - E[h]^2 in one pass.
 * The one-pass form cancels catastrophically when |mean| is large against the
 * spread (residual streams of GPT-style models carry large per-channel
 * offsets), and Welford's update would need a three-value (count, mean, M2)
 * merge in every warp and block reduction. The two-pass form is exact up to
 * fp32 rounding and costs one more read of a row that is still in L1/L2
 * (rows are at most tens of KB), which a bandwidth-bound kernel barely
 * notices. So the row is read three times: sum, squared deviations, output. */
#include "common.cuh"
#include "kernels.h"

template <class T, bool kVec>
__global__ void layernorm_kernel(T *out, T *residual, const T *x, const T *weight, const T *bias, int dim,
                                 float eps) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    size_t row = (size_t)blockIdx.x * dim;
    const T *xr = x + row;
    T *rr = residual ? residual + row : nullptr;
    T *orow = out + row;
    int nvec = dim / V;

    /* pass 1: the residual add (rounded to dtype, as the model adds) and the sum */
    float sum = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) T h[V];
        load_add_residual<T, kVec>(h, xr, rr, i);
#pragma unroll
        for (int k = 0; k < V; k++) sum += to_float(h[k]);
    }
    float mean = block_reduce_sum(sum) / (float)dim;

    /* pass 2: squared deviations; each thread re-reads only what it wrote itself */
    const T *hr = rr ? rr : xr;
    float sqdev = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) T h[V];
        load_elems<T, kVec>(h, hr, i);
#pragma unroll
        for (int k = 0; k < V; k++) {
            float d = to_float(h[k]) - mean;
            sqdev += d * d;
        }
    }
    float inv_std = rsqrtf(block_reduce_sum(sqdev) / (float)dim + eps);

    /* pass 3: normalise, scale, shift; out may alias x — every read of the
     * row happened before the barrier in block_reduce_sum */
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) T h[V], w[V], b[V], o[V];
        load_elems<T, kVec>(h, hr, i);
        load_elems<T, kVec>(w, weight, i);
        if (bias) load_elems<T, kVec>(b, bias, i);
#pragma unroll
        for (int k = 0; k < V; k++) {
            float v = (to_float(h[k]) - mean) * inv_std * to_float(w[k]);
            if (bias) v += to_float(b[k]);
            o[k] = from_float<T>(v);
        }
        store_elems<T, kVec>(orow, o, i);
    }
}

template <class T> static qilin_status launch_layernorm(const qilin_layernorm_args *a, qilin_stream *stream) {
    constexpr int V = Vec16<T>::n;
    uintptr_t bits = (uintptr_t)a->out | (uintptr_t)a->residual | (uintptr_t)a->x | (uintptr_t)a->weight |
                     (uintptr_t)a->bias;
    bool vec = a->dim % V == 0 && bits % 16 == 0;
    int work = vec ? a->dim / V : a->dim;
    int threads = work >= 512 ? 512 : (work + 31) / 32 * 32;
    dim3 grid(a->rows), block(threads);
    T *out = (T *)a->out, *res = (T *)a->residual;
    const T *x = (const T *)a->x, *w = (const T *)a->weight, *b = (const T *)a->bias;
    if (vec)
        return QILIN_LAUNCH((layernorm_kernel<T, true>), grid, block, 0, stream, out, res, x, w, b, a->dim,
                            a->eps);
    return QILIN_LAUNCH((layernorm_kernel<T, false>), grid, block, 0, stream, out, res, x, w, b, a->dim,
                        a->eps);
}

extern "C" qilin_status qilin_layernorm(const qilin_layernorm_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->x || !a->weight)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "layernorm: out, x and weight must be set");
    if (a->rows < 0 || a->dim <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "layernorm: bad shape rows=%d dim=%d", a->rows,
                           a->dim);
    if (!(a->eps >= 0.0f))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "layernorm: eps must be >= 0, got %g", (double)a->eps);
    if (a->rows == 0) return QILIN_OK;
    switch (a->dtype) {
    case QILIN_F32:
        return launch_layernorm<float>(a, stream);
    case QILIN_BF16:
        return launch_layernorm<__nv_bfloat16>(a, stream);
    case QILIN_F16:
        return launch_layernorm<__half>(a, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "layernorm: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}
