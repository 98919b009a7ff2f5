/* tensor_core.cuh — the warp-level matrix instructions kernels are built on:
 * mma.sync (tensor cores), ldmatrix (shared memory -> mma fragments) and
 * cp.async (global -> shared memory without passing through registers).
 *
 * Under nvcc each wrapper is one inline-PTX instruction; in the sim build it
 * is an emulator collective (cuda/sim/tensor_core_sim.cpp) that computes the
 * same thing with the same register layouts, so a kernel that gets a layout
 * wrong is wrong in both builds. tests/intrinsic_kernels.cu checks every
 * fragment element of every wrapper against a scalar reference, in the sim
 * and (cuda build, with a GPU) on the silicon.
 *
 * Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 / k32").
 * Lane l of the warp: g = l / 4 (its group), t = l % 4 (its place in the
 * group). A 32-bit register holds 2 16-bit or 4 8-bit elements, the lower
 * column (or row) in the low bits.
 *
 *   m16n8k16, bf16/f16 in, f32 accumulators:
 *     A 16x16 row-major:  a[0] = A[g  ][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
 *                         a[2] = A[g  ][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
 *     B 16x8 (k x n):     b[0] = B[2t, 2t+1][g]       b[1] = B[2t+8, 2t+9][g]
 *     C, D 16x8 f32:      c[0], c[1] = C[g][2t, 2t+1] c[2], c[3] = C[g+8][2t, 2t+1]
 *   m16n8k32, e4m3/e5m2/s8 in, f32 (s32 for s8) accumulators:
 *     A 16x32 row-major:  a[0] = A[g  ][4t .. 4t+3]   a[1] = A[g+8][4t .. 4t+3]
 *                         a[2] = A[g  ][4t+16 .. +19] a[3] = A[g+8][4t+16 .. +19]
 *     B 32x8 (k x n):     b[0] = B[4t .. 4t+3][g]     b[1] = B[4t+16 .. 4t+19][g]
 *     C, D:               as m16n8k16.
 *   "B is k x n, column-major" means a column of B (fixed n) is contiguous in
 *   k: exactly a row of a weight matrix W[n][k], so y = x W^T takes A = x and
 *   B = W with no transpose.
 *
 * ldmatrix_xN(r, row) loads N 8x8 matrices of 16-bit elements (16-byte rows)
 * from shared memory. Lanes 8i .. 8i+7 give the addresses of matrix i's rows
 * 0..7 (lanes beyond 8N give none but must still take part); every lane then
 * holds in r[i] the elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1) of
 * matrix i — the A/B fragment layout above. The _trans forms deliver the
 * transposed matrix: elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4).
 * Every row address must be 16-byte aligned.
 *
 * cp_async_* copy 4, 8 or 16 bytes from global to shared memory
 * asynchronously: the copy is complete, for the issuing thread only, after
 * cp_async_wait<n>() returns with at most n newer committed groups pending;
 * other threads may read it after that thread's wait and a __syncthreads.
 * src_bytes < the copy size reads that many bytes and zero-fills the rest
 * (src_bytes = 0 reads nothing: the way to zero-fill rows past a matrix's
 * end without an out-of-bounds address). The sim poisons the destination
 * when the copy is issued and fills it only at the wait, so a read before
 * wait + barrier sees NaNs under some schedule, and it checks that the
 * source lies in one live device allocation.
 *
 * All mma and ldmatrix wrappers are .sync.aligned: every lane of the warp
 * executes the same call (the sim fails the block, naming the kernel and
 * the call site, when a lane is missing or elsewhere). FP8 mma needs sm_89+;
 * on older GPUs it traps. */
#ifndef QILIN_TENSOR_CORE_CUH
#define QILIN_TENSOR_CORE_CUH

#include <stdint.h>

#include "kernel.h"

#if defined(QILIN_SIM)

namespace qsim {
enum class MmaKind : uint8_t { bf16_m16n8k16, f16_m16n8k16, e4m3_m16n8k32, e5m2_m16n8k32, s8_m16n8k32 };
void mma(MmaKind kind, uint32_t d[4], const uint32_t a[4], const uint32_t b[2], const uint32_t c[4],
         const char *file, int line);
void ldmatrix(int num, bool trans, uint32_t *r, const void *row, const char *file, int line);
void cp_async(void *dst, const void *src, int bytes, int src_bytes, const char *file, int line);
void cp_async_commit(const char *file, int line);
void cp_async_wait(int newer_groups, const char *file, int line);
} // namespace qsim

#define QILIN_TC_SITE , const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE()
#define QILIN_TC_SITE_ONLY const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE()
#define QILIN_TC_MMA(kind, d, a, b, c)                                                                \
    qsim::mma(qsim::MmaKind::kind, reinterpret_cast<uint32_t *>(d), a, b,                             \
              reinterpret_cast<const uint32_t *>(c), file_, line_)

#else

#define QILIN_TC_SITE
#define QILIN_TC_SITE_ONLY
/* The generic -> shared state space address ldmatrix and cp.async take. */
__device__ inline uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

#endif

/* ---- mma.sync: D = A B + C ------------------------------------------------ */

#if !defined(QILIN_SIM)
#define QILIN_MMA_F32(shape, types)                                                                  \
    asm volatile("mma.sync.aligned." shape ".row.col.f32." types ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, " \
                 "{%8,%9}, {%10,%11,%12,%13};\n"                                                     \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                    \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),      \
                   "f"(c[1]), "f"(c[2]), "f"(c[3]))
#endif

__device__ inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                         const float c[4] QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_TC_MMA(bf16_m16n8k16, d, a, b, c);
#else
    QILIN_MMA_F32("m16n8k16", "bf16.bf16");
#endif
}

__device__ inline void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                        const float c[4] QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_TC_MMA(f16_m16n8k16, d, a, b, c);
#else
    QILIN_MMA_F32("m16n8k16", "f16.f16");
#endif
}

/* True where the FP8 mma exists (sm_89+); the host asks qilin_device_* for
 * the compute capability before choosing an FP8 kernel. */
#if defined(QILIN_SIM) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890)
#define QILIN_HAS_FP8_MMA 1
#else
#define QILIN_HAS_FP8_MMA 0
#endif

__device__ inline void mma_m16n8k32_e4m3(float d[4], const uint32_t a[4], const uint32_t b[2],
                                         const float c[4] QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_TC_MMA(e4m3_m16n8k32, d, a, b, c);
#elif QILIN_HAS_FP8_MMA
    QILIN_MMA_F32("m16n8k32", "e4m3.e4m3");
#else
    (void)d, (void)a, (void)b, (void)c;
    __trap(); /* no FP8 tensor cores before sm_89: the launcher must not choose this kernel */
#endif
}

__device__ inline void mma_m16n8k32_e5m2(float d[4], const uint32_t a[4], const uint32_t b[2],
                                         const float c[4] QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_TC_MMA(e5m2_m16n8k32, d, a, b, c);
#elif QILIN_HAS_FP8_MMA
    QILIN_MMA_F32("m16n8k32", "e5m2.e5m2");
#else
    (void)d, (void)a, (void)b, (void)c;
    __trap();
#endif
}

/* Integer products wrap modulo 2^32 as the PTX instruction without .satfinite does. */
__device__ inline void mma_m16n8k32_s8(int32_t d[4], const uint32_t a[4], const uint32_t b[2],
                                       const int32_t c[4] QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_TC_MMA(s8_m16n8k32, d, a, b, c);
#else
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%10,%11,%12,%13};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]),
                   "r"(c[1]), "r"(c[2]), "r"(c[3]));
#endif
}

#undef QILIN_MMA_F32
#undef QILIN_TC_MMA

/* ---- ldmatrix ------------------------------------------------------------- */

#if defined(QILIN_SIM)
#define QILIN_LDMATRIX(n, trans) qsim::ldmatrix(n, trans, r, row, file_, line_)
#else
#define QILIN_LDMATRIX_ASM(num, trans, outs, ...)                                                    \
    asm volatile("ldmatrix.sync.aligned.m8n8." num trans ".shared.b16 " outs ";\n"                  \
                 : __VA_ARGS__ : "r"(smem_addr(row)))
#endif

__device__ inline void ldmatrix_x1(uint32_t r[1], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(1, false);
#else
    QILIN_LDMATRIX_ASM("x1", "", "{%0}, [%1]", "=r"(r[0]));
#endif
}
__device__ inline void ldmatrix_x2(uint32_t r[2], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(2, false);
#else
    QILIN_LDMATRIX_ASM("x2", "", "{%0,%1}, [%2]", "=r"(r[0]), "=r"(r[1]));
#endif
}
__device__ inline void ldmatrix_x4(uint32_t r[4], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(4, false);
#else
    QILIN_LDMATRIX_ASM("x4", "", "{%0,%1,%2,%3}, [%4]", "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]));
#endif
}
__device__ inline void ldmatrix_x1_trans(uint32_t r[1], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(1, true);
#else
    QILIN_LDMATRIX_ASM("x1", ".trans", "{%0}, [%1]", "=r"(r[0]));
#endif
}
__device__ inline void ldmatrix_x2_trans(uint32_t r[2], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(2, true);
#else
    QILIN_LDMATRIX_ASM("x2", ".trans", "{%0,%1}, [%2]", "=r"(r[0]), "=r"(r[1]));
#endif
}
__device__ inline void ldmatrix_x4_trans(uint32_t r[4], const void *row QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    QILIN_LDMATRIX(4, true);
#else
    QILIN_LDMATRIX_ASM("x4", ".trans", "{%0,%1,%2,%3}, [%4]", "=r"(r[0]), "=r"(r[1]), "=r"(r[2]),
                       "=r"(r[3]));
#endif
}

#undef QILIN_LDMATRIX
#undef QILIN_LDMATRIX_ASM

/* ---- cp.async --------------------------------------------------------------- */

/* .ca (cached in L1 too): 4, 8 or 16 bytes; .cg (L2 only, for streamed
 * tiles read once per block): 16 bytes. src_bytes in 0 .. kBytes. */
template <int kBytes>
__device__ inline void cp_async_ca(void *smem_dst, const void *gmem_src, int src_bytes = kBytes QILIN_TC_SITE) {
    static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async.ca copies 4, 8 or 16 bytes");
#if defined(QILIN_SIM)
    qsim::cp_async(smem_dst, gmem_src, kBytes, src_bytes, file_, line_);
#else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
                 "n"(kBytes), "r"(src_bytes));
#endif
}

__device__ inline void cp_async_cg16(void *smem_dst, const void *gmem_src, int src_bytes = 16 QILIN_TC_SITE) {
#if defined(QILIN_SIM)
    qsim::cp_async(smem_dst, gmem_src, 16, src_bytes, file_, line_);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
                 "r"(src_bytes));
#endif
}

/* Closes the group of this thread's copies issued since the last commit. */
__device__ inline void cp_async_commit(QILIN_TC_SITE_ONLY) {
#if defined(QILIN_SIM)
    qsim::cp_async_commit(file_, line_);
#else
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

/* Waits until at most kNewer of this thread's committed groups are pending:
 * with a pipeline of S stages, cp_async_wait<S - 2>() after committing the
 * newest stage makes the oldest one complete. */
template <int kNewer> __device__ inline void cp_async_wait(QILIN_TC_SITE_ONLY) {
    static_assert(kNewer >= 0 && kNewer <= 7, "cp.async.wait_group takes 0..7");
#if defined(QILIN_SIM)
    qsim::cp_async_wait(kNewer, file_, line_);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kNewer));
#endif
}

/* Commits the open group and waits for every copy of this thread. */
__device__ inline void cp_async_wait_all(QILIN_TC_SITE_ONLY) {
#if defined(QILIN_SIM)
    qsim::cp_async_commit(file_, line_);
    qsim::cp_async_wait(0, file_, line_);
#else
    asm volatile("cp.async.wait_all;\n" ::);
#endif
}

#undef QILIN_TC_SITE
#undef QILIN_TC_SITE_ONLY

/* ---- packing helpers for fragments ----------------------------------------- */

/* Two 16-bit elements in one register, lo in the low half. */
template <class T> __device__ inline uint32_t pack2(T lo, T hi) {
    static_assert(sizeof(T) == 2, "pack2 packs 16-bit elements");
    uint16_t l, h;
    memcpy(&l, &lo, 2);
    memcpy(&h, &hi, 2);
    return (uint32_t)l | ((uint32_t)h << 16);
}

#endif /* QILIN_TENSOR_CORE_CUH */
