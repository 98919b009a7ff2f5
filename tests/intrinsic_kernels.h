/* intrinsic_kernels.h — launchers of tests/intrinsic_kernels.cu. */
#ifndef QILIN_TESTS_INTRINSIC_KERNELS_H
#define QILIN_TESTS_INTRINSIC_KERNELS_H

#include <vector_types.h>

#include "cuda/device.h"

enum { SHFL_IDX = 0, SHFL_UP = 1, SHFL_DOWN = 2, SHFL_XOR = 3 };

qilin_status launch_shfl_f32(const float *in, float *out, int threads, int mode, int arg, int width);
qilin_status launch_shfl_f64(const double *in, double *out, int threads, int mode, int arg, int width);
qilin_status launch_shfl_i32(const int *in, int *out, int threads, int mode, int arg, int width);
qilin_status launch_vote(const int *pred, unsigned *out, int threads);
qilin_status launch_warp_misc(const unsigned *in, unsigned *out, int threads);
qilin_status launch_activemask(unsigned taken, unsigned *out);
qilin_status launch_syncthreads_pred(const int *pred, int *out, int blocks, int threads);
qilin_status launch_atomics(const int *vals, int n, int *gi, unsigned *gu, float *gf, int *block_sums,
                            int blocks, int threads);
qilin_status launch_bits(const unsigned *in, unsigned *out, int n);
qilin_status launch_math(const float *in, float *out, int n);
qilin_status launch_geometry(int *out, dim3 grid, dim3 block);
qilin_status launch_reverse(const float *in, float *out, int blocks, int threads, bool with_barrier);
qilin_status launch_barrier_loop(float *data, int blocks, int threads, int iters);
qilin_status launch_divergent_barrier(int *out, int threads);
qilin_status launch_exited_lane(int *out);
qilin_status launch_reduce_sum(const float *in, int n, float *total, int blocks, int threads);
qilin_status launch_bad_shape(int *out);
qilin_status launch_trap(int *out);
/* out[4t..4t+3] = in[offset + 4t ..]: one 16-byte vector load per thread,
 * through load_vec<float4> or (through_vec16) Vec16's load_elems; misaligned
 * unless offset is a multiple of 4 (the sim reports it, a GPU faults). */
qilin_status launch_vector_load(const float *in, float *out, int offset, int threads, int through_vec16);
/* out[0..n) = value, on `stream`. */
qilin_status launch_fill(float *out, int n, float value, qilin_stream *stream);

/* ---- tensor-core instructions (cuda/tensor_core.cuh) ---- */
#include <stdint.h>
#include <cuda_bf16.h>
enum { MMA_BF16 = 0, MMA_F16, MMA_E4M3, MMA_E5M2, MMA_S8 };
/* One warp's mma: a[32][4], b[32][2], c[32][4] are each lane's fragment
 * registers; d[32][4] receives D's (f32 bits, s32 for MMA_S8). */
qilin_status launch_mma(int kind, const uint32_t *a, const uint32_t *b, const uint32_t *c, uint32_t *d, int in_place);
qilin_status launch_mma_missing_lane(uint32_t *d);
/* m: 4 matrices of 8x8 16-bit elements (row-major, back to back); lane 8i+j
 * reads row perm[j] of matrix i % num; r[32][4] receives each lane's
 * registers. misalign: lane 5's address is 8 bytes off. */
qilin_status launch_ldmatrix(int num, int trans, const uint16_t *m, const int *perm, uint32_t *r, int misalign);
/* threads chunks of `bytes` (cg: 16 through .cg) from src; thread t reads
 * src_bytes[t] of its chunk; out receives thread t+1's chunk (see the kernel). */
qilin_status launch_cp_async(int bytes, int cg, const unsigned char *src, const int *src_bytes, unsigned char *out,
                             int threads, int early_read);
qilin_status launch_cp_async_one(const unsigned char *src, unsigned char *dst_global, unsigned char *out);
enum { PIPE_OK = 0, PIPE_NO_WAIT, PIPE_NO_WAR_BARRIER };
/* out (rows x 8 f32) = A (rows x K bf16) . W^T (W 8 x K bf16) through a
 * two-stage cp.async / ldmatrix / mma pipeline, optionally with a planted bug. */
qilin_status launch_mma_pipeline(int bug, const __nv_bfloat16 *A, const __nv_bfloat16 *W, float *out, int rows, int K);

const char *intrinsic_kernels_compiler(void);

#endif /* QILIN_TESTS_INTRINSIC_KERNELS_H */
