/* embedding.cu — token embedding lookup.
 *
 *   out[t, :] = table[ids[t], :]     table [vocab, dim], ids int32 [tokens],
 *                                    out [tokens, dim] in the table's dtype
 *                                    or widened to f32
 *
 * One block per token; threads copy the row in 16-byte vectors when the row
 * is vector-aligned (dim a multiple of the table's vector width, pointers
 * 16-byte aligned), else element by element. Widening to f32 turns each
 * 16-byte load into two 16-byte stores. Nothing is fused: the scaled
 * embeddings some models use (Gemma) belong to a later step.
 *
 * A bad id (outside [0, vocab)) must not read outside the table: the row is
 * written as zeros, so nothing downstream sees uninitialised memory, and the
 * lowest bad token index + 1 is recorded in *error for the host to report;
 * the launcher cannot check ids, which live in device memory. */
#include "common.cuh"
#include "kernels.h"

/* Lowers *error to `value` unless it already holds a smaller nonzero value:
 * the lowest bad token wins whatever order the blocks run in, so the report
 * is reproducible. Bad ids are rare, so the retry loop never matters. */
static __device__ inline void record_first(int *error, int value) {
    int old = *(volatile int *)error;
    while (old == 0 || old > value) {
        int seen = atomicCAS(error, old, value);
        if (seen == old) break;
        old = seen;
    }
}

template <class T, class O, bool kVec>
__global__ void embedding_kernel(O *out, const T *table, const int *ids, int *error, int dim, int vocab) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    int t = blockIdx.x;
    int id = ids[t];
    bool valid = id >= 0 && id < vocab;
    if (!valid && error && threadIdx.x == 0) record_first(error, t + 1);
    const T *src = table + (size_t)(valid ? id : 0) * dim;
    O *dst = out + (size_t)t * dim;
    int nvec = dim / V;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        alignas(16) O o[V];
        if (valid) {
            alignas(16) T v[V];
            if constexpr (kVec)
                *reinterpret_cast<Vec16<T> *>(v) = reinterpret_cast<const Vec16<T> *>(src)[i];
            else
                v[0] = src[i];
#pragma unroll
            for (int k = 0; k < V; k++) o[k] = from_float<O>(to_float(v[k]));
        } else {
#pragma unroll
            for (int k = 0; k < V; k++) o[k] = from_float<O>(0.0f);
        }
        if constexpr (kVec) {
            /* V * sizeof(O) is 16 or 32 bytes: one or two vector stores */
            constexpr int W = Vec16<O>::n;
#pragma unroll
            for (int k = 0; k < V / W; k++)
                reinterpret_cast<Vec16<O> *>(dst)[i * (V / W) + k] = reinterpret_cast<const Vec16<O> *>(o)[k];
        } else {
            dst[i] = o[0];
        }
    }
}

template <class T, class O>
static qilin_status launch_embedding(const qilin_embedding_args *a, qilin_stream *stream) {
    constexpr int V = Vec16<T>::n;
    bool vec = a->dim % V == 0 && ((uintptr_t)a->out | (uintptr_t)a->table) % 16 == 0;
    int work = vec ? a->dim / V : a->dim;
    int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    dim3 grid(a->tokens), block(threads);
    O *out = (O *)a->out;
    const T *table = (const T *)a->table;
    if (vec)
        return QILIN_LAUNCH((embedding_kernel<T, O, true>), grid, block, 0, stream, out, table, a->ids,
                            a->error, a->dim, a->vocab);
    return QILIN_LAUNCH((embedding_kernel<T, O, false>), grid, block, 0, stream, out, table, a->ids, a->error,
                        a->dim, a->vocab);
}

extern "C" qilin_status qilin_embedding(const qilin_embedding_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->table || !a->ids)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "embedding: out, table and ids must be set");
    if (a->tokens < 0 || a->dim <= 0 || a->vocab <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "embedding: bad shape tokens=%d dim=%d vocab=%d",
                           a->tokens, a->dim, a->vocab);
    if (a->out_dtype != a->dtype && a->out_dtype != QILIN_F32)
        return qilin_error(QILIN_ERR_UNSUPPORTED,
                           "embedding: out_dtype %s from a %s table (same dtype, or f32)",
                           qilin_dtype_name(a->out_dtype), qilin_dtype_name(a->dtype));
    if (a->tokens == 0) return QILIN_OK;
    bool widen = a->out_dtype == QILIN_F32;
    switch (a->dtype) {
    case QILIN_F32:
        return launch_embedding<float, float>(a, stream);
    case QILIN_BF16:
        return widen ? launch_embedding<__nv_bfloat16, float>(a, stream)
                     : launch_embedding<__nv_bfloat16, __nv_bfloat16>(a, stream);
    case QILIN_F16:
        return widen ? launch_embedding<__half, float>(a, stream)
                     : launch_embedding<__half, __half>(a, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "embedding: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}
