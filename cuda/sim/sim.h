/* sim.h — what a CUDA kernel sees when it is compiled as C++ for the emulator.
 *
 * Included by cuda/kernel.h when QILIN_SIM is defined, never by kernels
 * directly. It supplies the CUDA built-ins (threadIdx, __syncthreads, warp
 * collectives, atomics, the intrinsics our kernels use) on top of the
 * scheduler in scheduler.cpp, and takes the vector, bf16, fp16 and fp8 types
 * straight from the CUDA headers, which work in host C++.
 *
 * Execution model: a launch's blocks run on QILIN_SIM_THREADS host threads (pool.h: the
 * launching thread — the device's stream worker in deferred mode, see streams.h — and helpers),
 * each thread one block at a time; a block's threads are fibers. A fiber runs until it reaches
 * a scheduling point — a block barrier, a warp collective, __activemask, or its end — and the
 * scheduler picks the next runnable fiber at random, seeded per block from the launch's seed
 * (QILIN_SIM_SEED, qsim_set_seed) and the block index alone, so the thread count changes no
 * schedule. A missing barrier shows up as a wrong answer under some seed. Shared memory is per
 * block: `__shared__` becomes a static thread-local (one instance per host thread, which runs
 * one block at a time). Atomics are real atomics and __threadfence a real fence (across blocks). */
#ifndef QILIN_SIM_SIM_H
#define QILIN_SIM_SIM_H

#include <vector_types.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../device.h"
#include "../status.h"
#include "sim_api.h"

/* ---- qualifiers -------------------------------------------------------- */
#undef __shared__
#define __shared__ static thread_local
#undef __constant__
#define __constant__
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif

/* ---- thread identity, set by the scheduler before every resume ---------- */
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
static constexpr int warpSize = 32;

namespace qsim {

/* Warp collective kinds; `shfl_*` follow PTX shfl.sync's modes. */
enum class WarpOp : uint8_t {
    sync, shfl_idx, shfl_up, shfl_down, shfl_bfly, ballot, any, all,
    match_any, match_all, reduce_add, reduce_min, reduce_max,
    reduce_and, reduce_or, reduce_xor, reduce_min_signed, reduce_max_signed,
    mma, ldmatrix, /* tensor_core.cuh: `value` points to the lane's operands */
};

/* One lane's part of a warp collective; blocks until every lane of `mask`
 * has arrived, then returns this lane's result. `b` and `c` are the PTX shfl
 * operands (lane/delta/xor mask, clamp|segment mask). For match_all the
 * returned word holds the mask and bit 32 the predicate. */
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, unsigned b, unsigned c,
                         const char *file, int line);
/* Block barrier; `pred` is combined as count / and / or over the block. */
int block_barrier(int pred, int mode, const char *file, int line);
enum { barrier_plain = 0, barrier_count = 1, barrier_and = 2, barrier_or = 3 };
unsigned active_mask(const char *file, int line);
[[noreturn]] void trap(const char *file, int line);
/* Fails the block, naming the kernel and thread, when a vector access of
 * `align` bytes (its natural alignment) at p is misaligned: x86 forgives it,
 * a GPU faults. Outside a kernel it does nothing. */
void check_aligned(const void *p, size_t align, const char *access, const char *file, int line);
/* Fails the block, naming the kernel, the thread and `file:line`, with the
 * printf-style message: a misuse a GPU would fault on or silently garble
 * (tensor_core.cuh's checks). Outside a kernel it aborts. */
[[noreturn]] void fault(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void *dynamic_smem();

/* Runs `body` for every thread of every block of the grid. Returns the status
 * (also kept for qsim_take_launch_status) naming `kernel` on failure. */
qilin_status launch(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                    size_t dynamic_smem_bytes, const std::function<void()> &body);
/* QILIN_LAUNCH's entry: runs `body`'s grid in order on `stream` (streams.h):
 * later on the device's worker in deferred mode, now otherwise. Returns (and
 * keeps for qsim_take_launch_status) what is known at the launch. */
qilin_status launch_on_stream(const char *kernel, const char *file, int line, dim3 grid, dim3 block,
                              size_t dynamic_smem_bytes, qilin_stream *stream, std::function<void()> body);

template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes per lane");
    static_assert(std::is_trivially_copyable<T>::value, "warp collective on a non-trivial type");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}
template <class T> inline T from_bits(uint64_t bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}
inline unsigned shfl_c(int width, bool clamp_up) {
    return ((unsigned)(32 - width) << 8) | (clamp_up ? 0u : 0x1fu);
}

} // namespace qsim

/* ---- barriers and warp collectives ------------------------------------- */
#define QSIM_SITE const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE()

inline void __syncthreads(QSIM_SITE) { qsim::block_barrier(0, qsim::barrier_plain, file_, line_); }
inline int __syncthreads_count(int p, QSIM_SITE) {
    return qsim::block_barrier(p != 0, qsim::barrier_count, file_, line_);
}
inline int __syncthreads_and(int p, QSIM_SITE) {
    return qsim::block_barrier(p != 0, qsim::barrier_and, file_, line_);
}
inline int __syncthreads_or(int p, QSIM_SITE) {
    return qsim::block_barrier(p != 0, qsim::barrier_or, file_, line_);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, QSIM_SITE) {
    qsim::warp_collective(qsim::WarpOp::sync, mask, 0, 0, 0, file_, line_);
}
inline unsigned __activemask(QSIM_SITE) { return qsim::active_mask(file_, line_); }

template <class T> inline T __shfl_sync(unsigned mask, T var, int src, int width = warpSize, QSIM_SITE) {
    return qsim::from_bits<T>(qsim::warp_collective(qsim::WarpOp::shfl_idx, mask, qsim::to_bits(var),
                                                    (unsigned)src, qsim::shfl_c(width, false), file_, line_));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, QSIM_SITE) {
    return qsim::from_bits<T>(qsim::warp_collective(qsim::WarpOp::shfl_up, mask, qsim::to_bits(var),
                                                    delta, qsim::shfl_c(width, true), file_, line_));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, QSIM_SITE) {
    return qsim::from_bits<T>(qsim::warp_collective(qsim::WarpOp::shfl_down, mask, qsim::to_bits(var),
                                                    delta, qsim::shfl_c(width, false), file_, line_));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, QSIM_SITE) {
    return qsim::from_bits<T>(qsim::warp_collective(qsim::WarpOp::shfl_bfly, mask, qsim::to_bits(var),
                                                    (unsigned)lane_mask, qsim::shfl_c(width, false),
                                                    file_, line_));
}
inline unsigned __ballot_sync(unsigned mask, int p, QSIM_SITE) {
    return (unsigned)qsim::warp_collective(qsim::WarpOp::ballot, mask, p != 0, 0, 0, file_, line_);
}
inline int __any_sync(unsigned mask, int p, QSIM_SITE) {
    return (int)qsim::warp_collective(qsim::WarpOp::any, mask, p != 0, 0, 0, file_, line_);
}
inline int __all_sync(unsigned mask, int p, QSIM_SITE) {
    return (int)qsim::warp_collective(qsim::WarpOp::all, mask, p != 0, 0, 0, file_, line_);
}
template <class T> inline unsigned __match_any_sync(unsigned mask, T v, QSIM_SITE) {
    return (unsigned)qsim::warp_collective(qsim::WarpOp::match_any, mask, qsim::to_bits(v), 0, 0,
                                           file_, line_);
}
template <class T> inline unsigned __match_all_sync(unsigned mask, T v, int *pred, QSIM_SITE) {
    uint64_t r = qsim::warp_collective(qsim::WarpOp::match_all, mask, qsim::to_bits(v), 0, 0, file_, line_);
    *pred = (int)(r >> 32);
    return (unsigned)r;
}
#define QSIM_WARP_REDUCE(name, op, T)                                                            \
    inline T name(unsigned mask, T v, QSIM_SITE) {                                               \
        return (T)qsim::warp_collective(qsim::WarpOp::op, mask, (uint64_t)(uint32_t)v, 0, 0,     \
                                        file_, line_);                                           \
    }
QSIM_WARP_REDUCE(__reduce_add_sync, reduce_add, unsigned)
QSIM_WARP_REDUCE(__reduce_add_sync, reduce_add, int)
QSIM_WARP_REDUCE(__reduce_min_sync, reduce_min, unsigned)
QSIM_WARP_REDUCE(__reduce_min_sync, reduce_min_signed, int)
QSIM_WARP_REDUCE(__reduce_max_sync, reduce_max, unsigned)
QSIM_WARP_REDUCE(__reduce_max_sync, reduce_max_signed, int)
QSIM_WARP_REDUCE(__reduce_and_sync, reduce_and, unsigned)
QSIM_WARP_REDUCE(__reduce_or_sync, reduce_or, unsigned)
QSIM_WARP_REDUCE(__reduce_xor_sync, reduce_xor, unsigned)
#undef QSIM_WARP_REDUCE

[[noreturn]] inline void __trap(QSIM_SITE) { qsim::trap(file_, line_); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#undef QSIM_SITE

/* ---- atomics (global and shared memory alike: it is all host memory) --- */
#define QSIM_ATOMIC_FETCH(name, builtin, T) \
    inline T name(T *p, T v) { return builtin(p, v, __ATOMIC_RELAXED); }
#define QSIM_ATOMIC_INT_TYPES(X, name, builtin) \
    X(name, builtin, int) X(name, builtin, unsigned) X(name, builtin, unsigned long long)
QSIM_ATOMIC_INT_TYPES(QSIM_ATOMIC_FETCH, atomicAdd, __atomic_fetch_add)
QSIM_ATOMIC_INT_TYPES(QSIM_ATOMIC_FETCH, atomicAnd, __atomic_fetch_and)
QSIM_ATOMIC_INT_TYPES(QSIM_ATOMIC_FETCH, atomicOr, __atomic_fetch_or)
QSIM_ATOMIC_INT_TYPES(QSIM_ATOMIC_FETCH, atomicXor, __atomic_fetch_xor)
QSIM_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, int)
QSIM_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, unsigned)
#undef QSIM_ATOMIC_INT_TYPES
#undef QSIM_ATOMIC_FETCH

template <class T> inline T atomicExch(T *p, T v) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomicExch on 4- or 8-byte types");
    T old;
    __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
    return old;
}
template <class T> inline T atomicCAS(T *p, T compare, T v) {
    static_assert(std::is_integral<T>::value, "atomicCAS on integers");
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare; /* the old value either way */
}
inline unsigned short atomicCAS(unsigned short *p, unsigned short compare, unsigned short v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
/* Read-modify-write through compare-and-swap, for the ops without a builtin. */
template <class T, class F> inline T qsim_atomic_update(T *p, F f) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, f(old), true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
#define QSIM_ATOMIC_MINMAX(T)                                                                \
    inline T atomicMax(T *p, T v) { return qsim_atomic_update(p, [v](T o) { return o > v ? o : v; }); } \
    inline T atomicMin(T *p, T v) { return qsim_atomic_update(p, [v](T o) { return o < v ? o : v; }); }
QSIM_ATOMIC_MINMAX(int)
QSIM_ATOMIC_MINMAX(unsigned)
QSIM_ATOMIC_MINMAX(long long)
QSIM_ATOMIC_MINMAX(unsigned long long)
#undef QSIM_ATOMIC_MINMAX
inline float atomicAdd(float *p, float v) {
    static_assert(sizeof(float) == sizeof(uint32_t), "float is 32-bit");
    uint32_t *u = reinterpret_cast<uint32_t *>(p);
    return qsim::from_bits<float>(qsim_atomic_update(u, [v](uint32_t o) {
        return (uint32_t)qsim::to_bits(qsim::from_bits<float>(o) + v);
    }));
}
inline double atomicAdd(double *p, double v) {
    uint64_t *u = reinterpret_cast<uint64_t *>(p);
    return qsim::from_bits<double>(qsim_atomic_update(u, [v](uint64_t o) {
        return qsim::to_bits(qsim::from_bits<double>(o) + v);
    }));
}
inline unsigned atomicInc(unsigned *p, unsigned limit) {
    return qsim_atomic_update(p, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned *p, unsigned limit) {
    return qsim_atomic_update(p, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

/* ---- loads with cache hints: plain loads on the CPU --------------------- */
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldca(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline T __ldlu(const T *p) { return *p; }
template <class T> inline T __ldcv(const T *p) { return *p; }
template <class T> inline void __stwb(T *p, T v) { *p = v; }
template <class T> inline void __stcg(T *p, T v) { *p = v; }
template <class T> inline void __stcs(T *p, T v) { *p = v; }
template <class T> inline void __stwt(T *p, T v) { *p = v; }

/* ---- integer and bit intrinsics ----------------------------------------- */
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
    return (x >> 16) | (x << 16);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t bytes = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((bytes >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
    return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { return (int)((int64_t)((a << 8) >> 8) * ((b << 8) >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFF) * (b & 0xFFFFFF); }
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (s & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (s & 31));
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

/* ---- float intrinsics: the fast forms compute the exact function here ---- */
inline int __float_as_int(float x) { return qsim::from_bits<int>(qsim::to_bits(x)); }
inline float __int_as_float(int x) { return qsim::from_bits<float>((uint32_t)x); }
inline unsigned __float_as_uint(float x) { return qsim::from_bits<unsigned>(qsim::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return qsim::from_bits<float>(x); }
inline long long __double_as_longlong(double x) { return qsim::from_bits<long long>(qsim::to_bits(x)); }
inline double __longlong_as_double(long long x) { return qsim::from_bits<double>((uint64_t)x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)truncf(x); }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }

#endif /* QILIN_SIM_SIM_H */
