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
const char *intrinsic_kernels_compiler(void);

#endif /* QILIN_TESTS_INTRINSIC_KERNELS_H */
