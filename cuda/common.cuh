/* common.cuh — device helpers shared by the kernel families: dtype
 * conversion, warp and block reductions. Header-only, included after
 * kernel.h; the conversions are __host__ __device__ so CPU references decode
 * exactly as the kernels do. */
#ifndef QILIN_COMMON_CUH
#define QILIN_COMMON_CUH

#include "activation.h"
#include "dtype.h"
#include "kernel.h"
#include "status.h"

/* ---- element conversion: fp32 is the arithmetic type of every kernel ---- */
__host__ __device__ inline float to_float(float v) { return v; }
__host__ __device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__host__ __device__ inline float to_float(__half v) { return __half2float(v); }

template <class T> __host__ __device__ inline T from_float(float v);
template <> __host__ __device__ inline float from_float<float>(float v) { return v; }
template <> __host__ __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}
template <> __host__ __device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }

/* A vector access must be naturally aligned (8 bytes for an 8-byte vector,
 * 16 for a 16-byte one): a GPU faults on a misaligned one, x86 does not, so
 * the sim checks the address and fails the block naming the kernel, the
 * thread and the access. Free on the GPU. */
#if defined(QILIN_SIM)
#define QILIN_CHECK_ALIGNED(p, bytes, access, file, line) qsim::check_aligned((p), (bytes), (access), (file), (line))
#define QILIN_VEC_SITE , const char *file = __builtin_FILE(), int line = __builtin_LINE()
#else
#define QILIN_CHECK_ALIGNED(p, bytes, access, file, line) ((void)0)
#define QILIN_VEC_SITE
#endif

/* 16 bytes of T: the unit of a coalesced vector load. In the sim every copy
 * of one checks both addresses (the load's and, for an assignment, the
 * store's), so `*reinterpret_cast<Vec16<T> *>(p)` is checked wherever it is. */
template <class T> struct alignas(16) Vec16 {
    static constexpr int n = 16 / sizeof(T);
    T v[n];
#if defined(QILIN_SIM)
    Vec16() = default;
    Vec16(const Vec16 &o, const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
        QILIN_CHECK_ALIGNED(&o, 16, "load", file, line);
        std::memcpy(v, o.v, sizeof v);
    }
    Vec16 &operator=(const Vec16 &o) {
        QILIN_CHECK_ALIGNED(&o, 16, "load", "a Vec16 assignment", 0);
        QILIN_CHECK_ALIGNED(this, 16, "store", "a Vec16 assignment", 0);
        std::memcpy(v, o.v, sizeof v);
        return *this;
    }
#endif
};

/* A vector of type V (float4, uint4, ...) at p, and the store of one. */
template <class V> __device__ inline V load_vec(const void *p QILIN_VEC_SITE) {
    QILIN_CHECK_ALIGNED(p, sizeof(V), "load", file, line);
    return *reinterpret_cast<const V *>(p);
}
template <class V> __device__ inline void store_vec(void *p, const V &v QILIN_VEC_SITE) {
    QILIN_CHECK_ALIGNED(p, sizeof(V), "store", file, line);
    *reinterpret_cast<V *>(p) = v;
}

/* Element group i of a row: the i-th 16-byte vector when kVec, else the i-th
 * element. Kernels that stride over rows in groups use these so one body
 * serves the aligned (vector) and the unaligned (scalar) instantiation. */
template <class T, bool kVec> __device__ inline void load_elems(T *dst, const T *src, int i QILIN_VEC_SITE) {
    if constexpr (kVec) {
        /* Checked before a Vec16 reference to it exists: binding one to a misaligned
         * address is itself undefined (UBSan reports it before the copy could). */
        QILIN_CHECK_ALIGNED(src + (size_t)i * Vec16<T>::n, 16, "load", file, line);
        *reinterpret_cast<Vec16<T> *>(dst) = reinterpret_cast<const Vec16<T> *>(src)[i];
    } else {
        dst[0] = src[i];
    }
}
template <class T, bool kVec> __device__ inline void store_elems(T *dst, const T *src, int i QILIN_VEC_SITE) {
    if constexpr (kVec) {
        QILIN_CHECK_ALIGNED(dst + (size_t)i * Vec16<T>::n, 16, "store", file, line);
        reinterpret_cast<Vec16<T> *>(dst)[i] = *reinterpret_cast<const Vec16<T> *>(src);
    } else {
        dst[i] = src[0];
    }
}

/* h = group i of x, plus group i of residual when there is one; the sum is
 * rounded to T (the model adds in the activation dtype) and written back to
 * residual: the fused residual add in front of the norms. */
template <class T, bool kVec> __device__ inline void load_add_residual(T *h, const T *x, T *residual, int i) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    load_elems<T, kVec>(h, x, i);
    if (!residual) return;
    alignas(16) T r[V];
    load_elems<T, kVec>(r, residual, i);
#pragma unroll
    for (int k = 0; k < V; k++) h[k] = from_float<T>(to_float(h[k]) + to_float(r[k]));
    store_elems<T, kVec>(residual, h, i);
}

/* ---- reductions ------------------------------------------------------------ */
__device__ inline float warp_reduce_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ inline float warp_reduce_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

/* Sum over the block, returned to every thread. blockDim.x must be a multiple
 * of 32. Ends with a barrier so the helper can be called again at once. */
__device__ inline float block_reduce_sum(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_reduce_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < nwarps ? partial[lane] : 0.0f;
    v = warp_reduce_sum(v);
    __syncthreads();
    return v;
}

/* ---- dtype dispatch ------------------------------------------------------- */
template <class T> struct dtype_tag { using type = T; };

/* A family's one dtype switch: calls launch(dtype_tag<T>{}) for f32, bf16
 * and f16; any other dtype is UNSUPPORTED naming `op`. */
template <class F> inline qilin_status with_dtype(const char *op, qilin_dtype t, F &&launch) {
    switch (t) {
    case QILIN_F32: return launch(dtype_tag<float>{});
    case QILIN_BF16: return launch(dtype_tag<__nv_bfloat16>{});
    case QILIN_F16: return launch(dtype_tag<__half>{});
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: dtype %s is not supported (f32, bf16, f16)", op,
                           qilin_dtype_name(t));
    }
}

/* ---- activations (activation.h) ------------------------------------------- */
/* Both GELUs are written in forms without cancellation in the negative tail,
 * where 1 + erf(..) and 1 + tanh(..) lose every significant bit:
 * x * Phi(x) through normcdff (erfc-based), and 0.5 (1 + tanh(u)) as the
 * identical 1 / (1 + exp(-2u)). Shared by activation.cu and moe.cu's fused
 * SwiGLU epilogue. */
__device__ inline float act_apply(qilin_act act, float x) {
    switch (act) {
    case QILIN_ACT_SILU:
        return x / (1.0f + expf(-x));
    case QILIN_ACT_GELU_ERF:
        return x * normcdff(x);
    default: {
        const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
        float u = k * (x + 0.044715f * x * x * x);
        return x / (1.0f + expf(-2.0f * u));
    }
    }
}

#endif /* QILIN_COMMON_CUH */
