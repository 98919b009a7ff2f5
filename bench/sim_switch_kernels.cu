/* sim_switch_kernels.cu — the kernel timed by bench_sim_switch: 1024-thread
 * blocks, a barrier in a loop, a little shared-memory work between barriers
 * (the shape of a tiled kernel's main loop). */
#include "cuda/kernel.h"

__global__ void barrier_loop_bench_kernel(float *data, int iters) {
    __shared__ float tile[1024];
    int t = threadIdx.x;
    float v = data[blockIdx.x * blockDim.x + t];
    for (int i = 0; i < iters; i++) {
        tile[t] = v;
        __syncthreads();
        v += tile[(t + 1) & (blockDim.x - 1)] * 0.5f;
        __syncthreads();
    }
    data[blockIdx.x * blockDim.x + t] = v;
}

qilin_status launch_barrier_loop_bench(float *data, int blocks, int iters) {
    return QILIN_LAUNCH(barrier_loop_bench_kernel, dim3(blocks), dim3(1024), 0, nullptr, data, iters);
}
