/* blas_sim.cpp — qilin_gemm on the CPU (sim build).
 *
 * Same contract as blas_cublas.c, checked by the same qilin_blas_check: C =
 * alpha * op(A) op(B) + beta * C per batch, inputs f32/f16/bf16, C in the
 * input type or f32, fp32 accumulation, C rounded to nearest-even once at the
 * end. When beta == 0 C is not read (BLAS semantics), so poisoned outputs stay
 * harmless. The GEMM is work on the stream (sim/streams.h): it runs later, in
 * stream order, on the device's worker in deferred mode; the handle's packing
 * buffers are only touched there, and qilin_blas_destroy waits for the
 * device, as cublasDestroy synchronises.
 *
 * Speed matters because whole-model tests run prefill GEMMs through here, so
 * this is a small packed GEMM: op(A) is converted to fp32 in panels of MR rows
 * (MC rows at a time), op(B) in panels of NR columns, both k-contiguous, and a
 * fixed-size MR x NR micro-kernel runs over them with its accumulators in
 * registers and an inner loop over NR columns that the compiler vectorises.
 * Each C element is summed over k in order 0..k-1 by one loop, so results are
 * deterministic and independent of blocking. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/blas.h"
#include "cuda/blas_check.h"
#include "sim_api.h"
#include "streams.h"

namespace {

constexpr int MR = 4;  /* rows of op(A) per micro-kernel */
constexpr int NR = 8;  /* columns of op(B) per micro-kernel: 2 SSE / 1 AVX vector */
constexpr int MC = 64; /* rows of op(A) packed at a time: MC x k fp32 stays in L2 */
static_assert(MC % MR == 0, "the A packing buffer holds MC rows in whole MR panels");

/* Element (i, j) of a strided matrix: base[i * rs + j * cs]. */
struct View {
    const char *base;
    int64_t rs, cs;
};

/* op(X) of a stored matrix with leading dimension ld: row-major stores (r, c)
 * at r * ld + c, col-major at c * ld + r; a transpose swaps the strides. */
View make_view(const void *p, qilin_layout layout, qilin_op op, int64_t ld) {
    int64_t rs = layout == QILIN_ROW_MAJOR ? ld : 1;
    int64_t cs = layout == QILIN_ROW_MAJOR ? 1 : ld;
    if (op == QILIN_OP_T) std::swap(rs, cs);
    return View{static_cast<const char *>(p), rs, cs};
}

inline float to_f32(float x) { return x; }
inline float to_f32(__half x) { return __half2float(x); }
inline float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

/* Packs rows [i0, i0+rows) of op(A) (m x k) as ceil(rows/MR) panels, each k
 * steps of MR values; rows past the end are zero. */
template <typename T> void pack_a(View a, int i0, int rows, int k, float *out) {
    const T *x = reinterpret_cast<const T *>(a.base);
    for (int r0 = 0; r0 < rows; r0 += MR, out += (size_t)k * MR)
        for (int r = 0; r < MR; r++) {
            if (r0 + r >= rows) {
                for (int p = 0; p < k; p++) out[(size_t)p * MR + r] = 0.0f;
                continue;
            }
            const T *row = x + (int64_t)(i0 + r0 + r) * a.rs;
            for (int p = 0; p < k; p++) out[(size_t)p * MR + r] = to_f32(row[p * a.cs]);
        }
}

/* Packs columns [j0, j0+NR) of op(B) (k x n) as k steps of NR values;
 * columns past n are zero. */
template <typename T> void pack_b(View b, int j0, int n, int k, float *out) {
    const T *x = reinterpret_cast<const T *>(b.base);
    for (int c = 0; c < NR; c++) {
        if (j0 + c >= n) {
            for (int p = 0; p < k; p++) out[(size_t)p * NR + c] = 0.0f;
            continue;
        }
        const T *col = x + (int64_t)(j0 + c) * b.cs;
        for (int p = 0; p < k; p++) out[(size_t)p * NR + c] = to_f32(col[p * b.rs]);
    }
}

void pack_a_any(qilin_dtype t, View a, int i0, int rows, int k, float *out) {
    switch (t) {
    case QILIN_F16:
        pack_a<__half>(a, i0, rows, k, out);
        break;
    case QILIN_BF16:
        pack_a<__nv_bfloat16>(a, i0, rows, k, out);
        break;
    default:
        pack_a<float>(a, i0, rows, k, out);
        break;
    }
}

void pack_b_any(qilin_dtype t, View b, int j0, int n, int k, float *out) {
    switch (t) {
    case QILIN_F16:
        pack_b<__half>(b, j0, n, k, out);
        break;
    case QILIN_BF16:
        pack_b<__nv_bfloat16>(b, j0, n, k, out);
        break;
    default:
        pack_b<float>(b, j0, n, k, out);
        break;
    }
}

/* acc[r][c] = sum over p in order of ap[p][r] * bp[p][c]. */
void micro_kernel(int k, const float *ap, const float *bp, float acc[MR][NR]) {
    float s[MR][NR] = {};
    for (int p = 0; p < k; p++, ap += MR, bp += NR)
        for (int r = 0; r < MR; r++) {
            float a = ap[r];
            for (int c = 0; c < NR; c++) s[r][c] += a * bp[c];
        }
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) acc[r][c] = s[r][c];
}

/* Writes the valid part of a tile: C = alpha * acc + beta * C, rounded once. */
template <typename T>
void store_tile(char *cbase, int64_t crs, int64_t ccs, int rows, int cols, const float acc[MR][NR],
                float alpha, float beta) {
    T *c = reinterpret_cast<T *>(cbase);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            T *dst = c + r * crs + j * ccs;
            float v = alpha * acc[r][j];
            if (beta != 0.0f) v += beta * to_f32(*dst);
            if constexpr (sizeof(T) == 4)
                *dst = v;
            else if constexpr (std::is_same_v<T, __half>)
                *dst = __float2half_rn(v);
            else
                *dst = __float2bfloat16_rn(v);
        }
}

void store_any(qilin_dtype t, char *cbase, int64_t crs, int64_t ccs, int rows, int cols,
               const float acc[MR][NR], float alpha, float beta) {
    switch (t) {
    case QILIN_F16:
        store_tile<__half>(cbase, crs, ccs, rows, cols, acc, alpha, beta);
        break;
    case QILIN_BF16:
        store_tile<__nv_bfloat16>(cbase, crs, ccs, rows, cols, acc, alpha, beta);
        break;
    default:
        store_tile<float>(cbase, crs, ccs, rows, cols, acc, alpha, beta);
        break;
    }
}

} // namespace

/* Packing buffers live in the handle so that steady-state GEMMs allocate
 * nothing; a handle is used from one thread at a time (blas.h). */
struct qilin_blas {
    int device = 0;
    std::vector<float> a_pack, b_pack;
};

namespace {

/* One batch entry. a, b, c already point at this batch's matrices. */
void gemm_one(qilin_blas *h, const qilin_gemm_desc *d, const void *a, const void *b, void *c) {
    const int m = d->m, n = d->n, k = d->k;
    View va = make_view(a, d->layout, d->trans_a, d->lda);
    View vb = make_view(b, d->layout, d->trans_b, d->ldb);
    size_t csz = qilin_dtype_size(d->c_type);
    int64_t crs = d->layout == QILIN_ROW_MAJOR ? d->ldc : 1;
    int64_t ccs = d->layout == QILIN_ROW_MAJOR ? 1 : d->ldc;
    float acc[MR][NR];
    for (int i0 = 0; i0 < m; i0 += MC) {
        int rows = m - i0 < MC ? m - i0 : MC;
        /* k == 0: A and B may be NULL and are never read; C = beta * C. */
        if (k > 0) pack_a_any(d->ab_type, va, i0, rows, k, h->a_pack.data());
        for (int j0 = 0; j0 < n; j0 += NR) {
            if (k > 0) pack_b_any(d->ab_type, vb, j0, n, k, h->b_pack.data());
            int cols = n - j0 < NR ? n - j0 : NR;
            for (int r0 = 0; r0 < rows; r0 += MR) {
                micro_kernel(k, h->a_pack.data() + (size_t)(r0 / MR) * k * MR, h->b_pack.data(), acc);
                int i = i0 + r0;
                char *ct = static_cast<char *>(c) + (i * crs + j0 * ccs) * (int64_t)csz;
                store_any(d->c_type, ct, crs, ccs, rows - r0 < MR ? rows - r0 : MR, cols, acc, d->alpha,
                          d->beta);
            }
        }
    }
}

qilin_status reserve(qilin_blas *h, const qilin_gemm_desc *d) {
    size_t kk = d->k > 0 ? (size_t)d->k : 1;
    try {
        h->a_pack.resize(kk * MC);
        h->b_pack.resize(kk * NR);
    } catch (const std::bad_alloc &) {
        return qilin_error(QILIN_ERR_OUT_OF_MEMORY,
                           "gemm: no host memory for the sim's packing buffers (k = %d)", d->k);
    }
    return QILIN_OK;
}

qilin_status check_device(const qilin_blas *h, qilin_stream *stream) {
    int current = -1;
    QILIN_TRY(qilin_device_get(&current));
    if (current != h->device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: handle belongs to device %d but device %d is current", h->device, current);
    int sdev = qilin_stream_device(stream);
    if (sdev != h->device)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "gemm: stream belongs to device %d, handle to device %d", sdev, h->device);
    return QILIN_OK;
}

qilin_status run_gemm(qilin_blas *blas, const qilin_gemm_desc *desc) {
    QILIN_TRY(reserve(blas, desc));
    size_t ab = qilin_dtype_size(desc->ab_type), cb = qilin_dtype_size(desc->c_type);
    const char *a = static_cast<const char *>(desc->a);
    const char *b = static_cast<const char *>(desc->b);
    char *c = static_cast<char *>(desc->c);
    for (int i = 0; i < desc->batch; i++) {
        gemm_one(blas, desc, a, b, c);
        if (i + 1 == desc->batch) break; /* no offset past the last batch (a, b may be NULL) */
        if (desc->k > 0) a += desc->stride_a * (int64_t)ab, b += desc->stride_b * (int64_t)ab;
        c += desc->stride_c * (int64_t)cb;
    }
    return QILIN_OK;
}

} // namespace

extern "C" qilin_status qilin_blas_create(qilin_blas **blas) {
    if (blas == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "blas_create: blas = NULL");
    *blas = nullptr;
    int device = 0;
    QILIN_TRY(qilin_device_get(&device));
    qilin_blas *h = new (std::nothrow) qilin_blas;
    if (h == nullptr) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "blas_create: out of host memory");
    h->device = device;
    *blas = h;
    return QILIN_OK;
}

extern "C" qilin_status qilin_blas_destroy(qilin_blas *blas) {
    if (blas == nullptr) return QILIN_OK;
    qilin_status st = qsim::wait_device(blas->device, false); /* queued GEMMs use its buffers */
    delete blas;
    return st;
}

extern "C" qilin_status qilin_gemm(qilin_blas *blas, const qilin_gemm_desc *desc, qilin_stream *stream) {
    if (blas == nullptr) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "gemm: blas = NULL");
    int noop = 0;
    QILIN_TRY(qilin_blas_check(desc, &noop));
    if (noop) return QILIN_OK;
    QILIN_TRY(check_device(blas, stream));
    if (qsim_dry_run()) return QILIN_OK; /* checked above; no values to compute in dry-run */
    return qsim::submit_to(stream, "gemm", [blas, d = *desc] { return run_gemm(blas, &d); });
}
