/* activation.cu — the FFN activations: gated (SwiGLU/GeGLU) and elementwise.
 *
 *   act_and_mul: out[t, j] = act(in[t, j]) * in[t, d + j]
 *                in [tokens, 2d] as [gate | up] per row (Hugging Face / vLLM),
 *                out [tokens, d]
 *   activation:  out[i] = act(in[i]), [n], in place allowed
 *   act ∈ {silu, gelu (erf), gelu (tanh approximation)}
 *
 * fp32 arithmetic and one rounding to dtype at the end (Hugging Face rounds
 * act(gate) to dtype before the multiply; vLLM's fused kernel, which this
 * follows, does not). Both kernels are grid-stride loops over 16-byte vectors
 * when the data is vector-aligned, else over elements; the gated kernel
 * strides over tokens in grid.y and over the row in grid.x, so no index is
 * ever divided. Nothing is fused beyond the multiply: these are pure
 * bandwidth kernels, one read and one write of every element. The activation
 * is a run-time switch, uniform across the grid, not a template parameter:
 * it costs nothing next to the memory traffic and keeps the instantiations to
 * dtype x vector path. */
#include <cstring>

#include "common.cuh"
#include "kernels.h"

template <class T, bool kVec>
__global__ void act_and_mul_kernel(T *out, const T *in, int tokens, int d, qilin_act act) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    int nvec = d / V;
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        const T *gate = in + (size_t)t * 2 * d, *up = gate + d;
        T *orow = out + (size_t)t * d;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
            alignas(16) T g[V], u[V], o[V];
            if constexpr (kVec) {
                *reinterpret_cast<Vec16<T> *>(g) = reinterpret_cast<const Vec16<T> *>(gate)[i];
                *reinterpret_cast<Vec16<T> *>(u) = reinterpret_cast<const Vec16<T> *>(up)[i];
            } else {
                g[0] = gate[i];
                u[0] = up[i];
            }
#pragma unroll
            for (int k = 0; k < V; k++) o[k] = from_float<T>(act_apply(act, to_float(g[k])) * to_float(u[k]));
            if constexpr (kVec)
                reinterpret_cast<Vec16<T> *>(orow)[i] = *reinterpret_cast<Vec16<T> *>(o);
            else
                orow[i] = o[0];
        }
    }
}

template <class T, bool kVec>
__global__ void activation_kernel(T *out, const T *in, size_t n, qilin_act act) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    size_t nvec = n / V, stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = tid; i < nvec; i += stride) {
        alignas(16) T v[V];
        if constexpr (kVec)
            *reinterpret_cast<Vec16<T> *>(v) = reinterpret_cast<const Vec16<T> *>(in)[i];
        else
            v[0] = in[i];
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = from_float<T>(act_apply(act, to_float(v[k])));
        if constexpr (kVec)
            reinterpret_cast<Vec16<T> *>(out)[i] = *reinterpret_cast<Vec16<T> *>(v);
        else
            out[i] = v[0];
    }
    /* the n % V elements after the last whole vector */
    for (size_t i = nvec * V + tid; i < n; i += stride)
        out[i] = from_float<T>(act_apply(act, to_float(in[i])));
}

/* ---- launchers ------------------------------------------------------------- */

/* The act field as an int: a C caller may pass any int, and loading an
 * out-of-range value as the C++ enum would itself be undefined. */
static int act_code(const qilin_act *act) {
    static_assert(sizeof(qilin_act) == sizeof(int), "qilin_act is an int-sized C enum");
    int v;
    memcpy(&v, act, sizeof v);
    return v;
}
static bool act_valid(int act) {
    return act == QILIN_ACT_SILU || act == QILIN_ACT_GELU_ERF || act == QILIN_ACT_GELU_TANH;
}

/* Enough blocks to cover the work once, capped: past a few waves of the
 * largest GPU the grid-stride loop does the rest with fewer block launches. */
static unsigned blocks_for(size_t work, int threads) {
    size_t b = (work + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 8192 ? 8192 : b);
}

extern "C" qilin_status qilin_act_and_mul(const qilin_act_and_mul_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->in)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "act_and_mul: out and in must be set");
    if (a->tokens < 0 || a->d <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "act_and_mul: bad shape tokens=%d d=%d", a->tokens,
                           a->d);
    if (!act_valid(act_code(&a->act)))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "act_and_mul: unknown act=%d", act_code(&a->act));
    if (a->tokens == 0) return QILIN_OK;
    return with_dtype("act_and_mul", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        bool vec = a->d % V == 0 && ((uintptr_t)a->out | (uintptr_t)a->in) % 16 == 0;
        int work = vec ? a->d / V : a->d;
        int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
        dim3 grid(blocks_for(work, threads), a->tokens < 65535 ? a->tokens : 65535), block(threads);
        T *out = (T *)a->out;
        const T *in = (const T *)a->in;
        if (vec)
            return QILIN_LAUNCH((act_and_mul_kernel<T, true>), grid, block, 0, stream, out, in, a->tokens,
                                a->d, a->act);
        return QILIN_LAUNCH((act_and_mul_kernel<T, false>), grid, block, 0, stream, out, in, a->tokens, a->d,
                            a->act);
    });
}

extern "C" qilin_status qilin_activation(const qilin_activation_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->in)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "activation: out and in must be set");
    if (!act_valid(act_code(&a->act)))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "activation: unknown act=%d", act_code(&a->act));
    if (a->n == 0) return QILIN_OK;
    return with_dtype("activation", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        /* alignment alone picks the vector path: the kernel finishes the tail */
        bool vec = ((uintptr_t)a->out | (uintptr_t)a->in) % 16 == 0;
        int threads = 256;
        dim3 grid(blocks_for(vec ? a->n / V : a->n, threads)), block(threads);
        T *out = (T *)a->out;
        const T *in = (const T *)a->in;
        if (vec)
            return QILIN_LAUNCH((activation_kernel<T, true>), grid, block, 0, stream, out, in, a->n, a->act);
        return QILIN_LAUNCH((activation_kernel<T, false>), grid, block, 0, stream, out, in, a->n, a->act);
    });
}
