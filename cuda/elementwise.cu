/* elementwise.cu — the small glue ops between GEMMs.
 *
 *   add_bias          x[r, c] += bias[c]                      rows of stride ld
 *   add               out = a + b (+ c)                       flat, out may alias
 *   sigmoid_gate_add  out[t, :] += sigmoid(gate[t]) * y[t, :] Qwen2-MoE shared expert
 *   cast              out = (out_dtype) in                    f32 / bf16 / f16
 *   gather_rows       out[i, :] = in[rows[i], :]              rows in device memory
 *
 * All arithmetic in fp32 with one rounding to the storage type at the end
 * (Hugging Face rounds after each bf16 op; the difference is at most that
 * rounding). Pure bandwidth kernels: every element is read and written once.
 * Each kernel moves 16-byte vectors when every pointer and row stride allows
 * (the `kVec` instantiation), else single elements. The row kernels put rows
 * in grid.y and the row's vectors in grid.x, so no index is ever divided; the
 * flat kernels are grid-stride loops with a scalar tail. gather_rows trusts
 * its row ids: they come from the orchestrator's own sequence bookkeeping,
 * and the args carry no row count of `in` to check them against. */
#include <cstring>

#include "common.cuh"
#include "kernels.h"

/* ---- row kernels ------------------------------------------------------------- */

template <class T, bool kVec>
__global__ void add_bias_kernel(T *x, const T *bias, int rows, int cols, int64_t ld) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    int nvec = cols / V;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        T *row = x + r * ld;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
            alignas(16) T v[V], b[V];
            load_elems<T, kVec>(v, row, i);
            load_elems<T, kVec>(b, bias, i);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = from_float<T>(to_float(v[k]) + to_float(b[k]));
            store_elems<T, kVec>(row, v, i);
        }
    }
}

template <class T, bool kVec>
__global__ void sigmoid_gate_add_kernel(T *out, const T *y, const T *gate, int tokens, int dim) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    int nvec = dim / V;
    for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
        float g = 1.0f / (1.0f + expf(-to_float(gate[t])));
        T *orow = out + (size_t)t * dim;
        const T *yrow = y + (size_t)t * dim;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
            alignas(16) T o[V], v[V];
            load_elems<T, kVec>(o, orow, i);
            load_elems<T, kVec>(v, yrow, i);
#pragma unroll
            for (int k = 0; k < V; k++) o[k] = from_float<T>(to_float(o[k]) + g * to_float(v[k]));
            store_elems<T, kVec>(orow, o, i);
        }
    }
}

template <class T, bool kVec>
__global__ void gather_rows_kernel(T *out, const T *in, const int *rows, int n, int cols, int64_t ld_out,
                                   int64_t ld_in) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    int nvec = cols / V;
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        const T *src = in + rows[r] * ld_in;
        T *dst = out + r * ld_out;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
            alignas(16) T v[V];
            load_elems<T, kVec>(v, src, i);
            store_elems<T, kVec>(dst, v, i);
        }
    }
}

/* ---- flat kernels ------------------------------------------------------------ */

/* out = a + b (+ c). Each thread reads all its inputs before it writes, so
 * out may alias any of them. */
template <class T, bool kVec>
__global__ void add_kernel(T *out, const T *a, const T *b, const T *c, size_t n) {
    constexpr int V = kVec ? Vec16<T>::n : 1;
    size_t nvec = n / V, stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = tid; i < nvec; i += stride) {
        alignas(16) T x[V], y[V];
        float s[V];
        load_elems<T, kVec>(x, a, i);
        load_elems<T, kVec>(y, b, i);
#pragma unroll
        for (int k = 0; k < V; k++) s[k] = to_float(x[k]) + to_float(y[k]);
        if (c) {
            load_elems<T, kVec>(y, c, i);
#pragma unroll
            for (int k = 0; k < V; k++) s[k] += to_float(y[k]);
        }
#pragma unroll
        for (int k = 0; k < V; k++) x[k] = from_float<T>(s[k]);
        store_elems<T, kVec>(out, x, i);
    }
    for (size_t i = nvec * V + tid; i < n; i += stride)
        out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]) + (c ? to_float(c[i]) : 0.0f));
}

/* Moves kGroup elements per thread and step: one 16-byte load of the narrower
 * side's vector, one or two of the wider side's. */
template <class I, class O, bool kVec> __global__ void cast_kernel(O *out, const I *in, size_t n) {
    constexpr int G = kVec ? (Vec16<I>::n > Vec16<O>::n ? Vec16<I>::n : Vec16<O>::n) : 1;
    size_t ngroups = n / G, stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = tid; i < ngroups; i += stride) {
        alignas(16) I v[G];
        alignas(16) O o[G];
        if constexpr (kVec) {
#pragma unroll
            for (int k = 0; k < G / Vec16<I>::n; k++)
                reinterpret_cast<Vec16<I> *>(v)[k] =
                    reinterpret_cast<const Vec16<I> *>(in)[i * (G / Vec16<I>::n) + k];
        } else {
            v[0] = in[i];
        }
#pragma unroll
        for (int k = 0; k < G; k++) o[k] = from_float<O>(to_float(v[k]));
        if constexpr (kVec) {
#pragma unroll
            for (int k = 0; k < G / Vec16<O>::n; k++)
                reinterpret_cast<Vec16<O> *>(out)[i * (G / Vec16<O>::n) + k] =
                    reinterpret_cast<const Vec16<O> *>(o)[k];
        } else {
            out[i] = o[0];
        }
    }
    for (size_t i = ngroups * G + tid; i < n; i += stride) out[i] = from_float<O>(to_float(in[i]));
}

/* ---- launchers --------------------------------------------------------------- */

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* Enough blocks to cover the work once, capped: past a few waves of the
 * largest GPU the grid-stride loop does the rest with fewer block launches. */
static unsigned blocks_for(size_t work, int threads) {
    size_t b = (work + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 8192 ? 8192 : b);
}

/* Grid and block for a [rows, row work units] kernel: threads over the row,
 * rows in grid.y (capped, the kernels stride over the rest). */
static void row_grid(int rows, int work, dim3 *grid, dim3 *block) {
    int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    *block = dim3(threads);
    *grid = dim3(blocks_for(work, threads), rows < 65535 ? rows : 65535);
}

extern "C" qilin_status qilin_add_bias(const qilin_add_bias_args *a, qilin_stream *stream) {
    if (!a || !a->x || !a->bias)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "add_bias: x and bias must be set");
    if (a->rows < 0 || a->cols <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "add_bias: bad shape rows=%d cols=%d", a->rows,
                           a->cols);
    if (a->ld < a->cols)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "add_bias: ld=%lld is below cols=%d", (long long)a->ld,
                           a->cols);
    if (a->rows == 0) return QILIN_OK;
    return with_dtype("add_bias", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        bool vec = a->cols % V == 0 && a->ld % V == 0 && aligned16(a->x) && aligned16(a->bias);
        dim3 grid, block;
        row_grid(a->rows, vec ? a->cols / V : a->cols, &grid, &block);
        T *x = (T *)a->x;
        const T *bias = (const T *)a->bias;
        if (vec)
            return QILIN_LAUNCH((add_bias_kernel<T, true>), grid, block, 0, stream, x, bias, a->rows, a->cols,
                                a->ld);
        return QILIN_LAUNCH((add_bias_kernel<T, false>), grid, block, 0, stream, x, bias, a->rows, a->cols,
                            a->ld);
    });
}

extern "C" qilin_status qilin_add(const qilin_add_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->a || !a->b)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "add: out, a and b must be set");
    if (a->n == 0) return QILIN_OK;
    return with_dtype("add", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        /* alignment alone picks the vector path: the kernel finishes the tail */
        bool vec = aligned16(a->out) && aligned16(a->a) && aligned16(a->b) && aligned16(a->c);
        int threads = 256;
        dim3 grid(blocks_for(vec ? a->n / V : a->n, threads)), block(threads);
        T *out = (T *)a->out;
        const T *x = (const T *)a->a, *y = (const T *)a->b, *z = (const T *)a->c;
        if (vec) return QILIN_LAUNCH((add_kernel<T, true>), grid, block, 0, stream, out, x, y, z, a->n);
        return QILIN_LAUNCH((add_kernel<T, false>), grid, block, 0, stream, out, x, y, z, a->n);
    });
}

extern "C" qilin_status qilin_sigmoid_gate_add(const qilin_sigmoid_gate_add_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->y || !a->gate)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "sigmoid_gate_add: out, y and gate must be set");
    if (a->tokens < 0 || a->dim <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "sigmoid_gate_add: bad shape tokens=%d dim=%d",
                           a->tokens, a->dim);
    if (a->tokens == 0) return QILIN_OK;
    return with_dtype("sigmoid_gate_add", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        bool vec = a->dim % V == 0 && aligned16(a->out) && aligned16(a->y);
        dim3 grid, block;
        row_grid(a->tokens, vec ? a->dim / V : a->dim, &grid, &block);
        T *out = (T *)a->out;
        const T *y = (const T *)a->y, *gate = (const T *)a->gate;
        if (vec)
            return QILIN_LAUNCH((sigmoid_gate_add_kernel<T, true>), grid, block, 0, stream, out, y, gate,
                                a->tokens, a->dim);
        return QILIN_LAUNCH((sigmoid_gate_add_kernel<T, false>), grid, block, 0, stream, out, y, gate,
                            a->tokens, a->dim);
    });
}

template <class I, class O> static qilin_status launch_cast(const qilin_cast_args *a, qilin_stream *stream) {
    constexpr int G = Vec16<I>::n > Vec16<O>::n ? Vec16<I>::n : Vec16<O>::n;
    bool vec = aligned16(a->out) && aligned16(a->in);
    int threads = 256;
    dim3 grid(blocks_for(vec ? a->n / G : a->n, threads)), block(threads);
    O *out = (O *)a->out;
    const I *in = (const I *)a->in;
    if (vec) return QILIN_LAUNCH((cast_kernel<I, O, true>), grid, block, 0, stream, out, in, a->n);
    return QILIN_LAUNCH((cast_kernel<I, O, false>), grid, block, 0, stream, out, in, a->n);
}

extern "C" qilin_status qilin_cast(const qilin_cast_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->in)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "cast: out and in must be set");
    if (a->n == 0) return QILIN_OK;
    /* the input switch here, the output switch in with_dtype: 3 x 3 pairs */
    auto to = [&](auto in_tag) {
        using I = typename decltype(in_tag)::type;
        return with_dtype("cast (out_dtype)", a->out_dtype, [&](auto out_tag) {
            using O = typename decltype(out_tag)::type;
            return launch_cast<I, O>(a, stream);
        });
    };
    return with_dtype("cast (in_dtype)", a->in_dtype, to);
}

extern "C" qilin_status qilin_gather_rows(const qilin_gather_rows_args *a, qilin_stream *stream) {
    if (!a || !a->out || !a->in || !a->rows)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gather_rows: out, in and rows must be set");
    if (a->n < 0 || a->cols <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gather_rows: bad shape n=%d cols=%d", a->n, a->cols);
    if (a->ld_out < a->cols || a->ld_in < a->cols)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gather_rows: ld_out=%lld and ld_in=%lld must be >= cols=%d", (long long)a->ld_out,
                           (long long)a->ld_in, a->cols);
    if (a->n == 0) return QILIN_OK;
    return with_dtype("gather_rows", a->dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        constexpr int V = Vec16<T>::n;
        bool vec = a->cols % V == 0 && a->ld_out % V == 0 && a->ld_in % V == 0 && aligned16(a->out) &&
                   aligned16(a->in);
        dim3 grid, block;
        row_grid(a->n, vec ? a->cols / V : a->cols, &grid, &block);
        T *out = (T *)a->out;
        const T *in = (const T *)a->in;
        if (vec)
            return QILIN_LAUNCH((gather_rows_kernel<T, true>), grid, block, 0, stream, out, in, a->rows, a->n,
                                a->cols, a->ld_out, a->ld_in);
        return QILIN_LAUNCH((gather_rows_kernel<T, false>), grid, block, 0, stream, out, in, a->rows, a->n,
                            a->cols, a->ld_out, a->ld_in);
    });
}
