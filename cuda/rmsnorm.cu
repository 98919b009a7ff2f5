/* rmsnorm.cu — RMSNorm, optionally fused with the residual add.
 *
 *   h   = x (+ residual; residual := h)        [rows, dim]
 *   out = h * rsqrt(mean(h^2) + eps) * weight  fp32 arithmetic, dtype storage
 *
 * One block per row. Threads stride over the row in 16-byte vectors when the
 * row is vector-aligned (dim a multiple of the vector width, pointers 16-byte
 * aligned), else element by element. The row is read twice — once for the
 * sum of squares, once to scale — and the second read hits L1/L2: rows are at
 * most tens of KB, so caching them in shared memory buys nothing measurable. */
#include "common.cuh"
#include "kernels.h"

template <class T, bool kVec>
__global__ void rmsnorm_kernel(T *out, T *residual, const T *x, const T *weight, int dim, float eps) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    size_t row = (size_t)blockIdx.x * dim;
    const T *xr = x + row;
    T *rr = residual ? residual + row : nullptr;
    T *orow = out + row;
    int nvec = dim / V;

    float sumsq = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) T h[V];
        load_add_residual<T, kVec>(h, xr, rr, i);
#pragma unroll
        for (int k = 0; k < V; k++) sumsq += to_float(h[k]) * to_float(h[k]);
    }
    float scale = rsqrtf(block_reduce_sum(sumsq) / (float)dim + eps);

    const T *hr = rr ? rr : xr; /* each thread re-reads only what it wrote itself */
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) T h[V], w[V], o[V];
        load_elems<T, kVec>(h, hr, i);
        load_elems<T, kVec>(w, weight, i);
#pragma unroll
        for (int k = 0; k < V; k++) o[k] = from_float<T>(to_float(h[k]) * scale * to_float(w[k]));
        store_elems<T, kVec>(orow, o, i);
    }
}

template <class T> static qilin_status launch_rmsnorm(const qilin_rmsnorm_args *a, qilin_stream *stream) {
    constexpr int V = Vec16<T>::n;
    uintptr_t bits = (uintptr_t)a->out | (uintptr_t)a->residual | (uintptr_t)a->x | (uintptr_t)a->weight;
    bool vec = a->dim % V == 0 && bits % 16 == 0;
    int work = vec ? a->dim / V : a->dim;
    int threads = work >= 512 ? 512 : (work + 31) / 32 * 32;
    dim3 grid(a->rows), block(threads);
    T *out = (T *)a->out, *res = (T *)a->residual;
    const T *x = (const T *)a->x, *w = (const T *)a->weight;
    /* declared bytes (launch log): the rows (and the residual's), the weight once */
    const long long bytes = ((long long)a->rows * (res ? 2 : 1) + 1) * a->dim * (long long)sizeof(T);
    if (vec)
        return QILIN_LAUNCH_BYTES(bytes, (rmsnorm_kernel<T, true>), grid, block, 0, stream, out, res, x, w, a->dim, a->eps);
    return QILIN_LAUNCH_BYTES(bytes, (rmsnorm_kernel<T, false>), grid, block, 0, stream, out, res, x, w, a->dim, a->eps);
}

extern "C" qilin_status qilin_rmsnorm(const qilin_rmsnorm_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->x || !a->weight)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rmsnorm: out, x and weight must be set");
    if (a->rows < 0 || a->dim <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rmsnorm: bad shape rows=%d dim=%d", a->rows, a->dim);
    if (!(a->eps >= 0.0f))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rmsnorm: eps must be >= 0, got %g", (double)a->eps);
    if (a->rows == 0) return QILIN_OK;
    switch (a->dtype) {
    case QILIN_F32: return launch_rmsnorm<float>(a, stream);
    case QILIN_BF16: return launch_rmsnorm<__nv_bfloat16>(a, stream);
    case QILIN_F16: return launch_rmsnorm<__half>(a, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "rmsnorm: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}

extern "C" const char *qilin_rmsnorm_build_info(void) { return QILIN_KERNEL_COMPILER " compiled " __FILE__; }
