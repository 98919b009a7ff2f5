/* pool_kernels.cu — kernels for tests/test_sim_pool.cpp: a block's schedule
 * made visible, blocks that trap, and blocks that meet through global atomics.
 * Valid CUDA (nvcc compiles them too); what the tests assert about schedules
 * holds in the emulator only. */
#include "cuda/kernel.h"
#include "tests/pool_kernels.h"

static __device__ unsigned long long fold(unsigned long long h, unsigned v) {
    return (h ^ v) * 0x100000001B3ull; /* FNV-1a step */
}

__global__ void schedule_hash_kernel(unsigned long long *hashes, unsigned *out, int rounds) {
    __shared__ unsigned arrivals;
    __shared__ unsigned order[1024];
    __shared__ unsigned long long hash;
    const unsigned t = threadIdx.x;
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (t == 0) {
        arrivals = 0;
        hash = 0xcbf29ce484222325ull;
    }
    unsigned value = t * 2654435761u + block;
    __syncthreads();
    for (int r = 0; r < rounds; r++) {
        order[atomicAdd(&arrivals, 1u)] = t; /* where this thread came in before the barrier */
        value += __shfl_xor_sync(0xffffffffu, value, 1 + r % 16);
        __syncthreads();
        if (t == 0) {
            for (unsigned i = 0; i < blockDim.x; i++) hash = fold(hash, order[i]);
            arrivals = 0;
        }
        __syncthreads();
    }
    if (t == 0) hashes[block] = hash;
    out[block * blockDim.x + t] = value;
}

qilin_status launch_schedule_hash(unsigned long long *hashes, unsigned *out, dim3 grid, int threads, int rounds) {
    return QILIN_LAUNCH(schedule_hash_kernel, grid, dim3(threads), 0, nullptr, hashes, out, rounds);
}

__global__ void trap_blocks_kernel(const int *traps, int *done) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    for (int i = 0; i < 4 + traps[block]; i++) __syncthreads(); /* a slow block traps late */
    if (traps[block] && threadIdx.x == 0) __trap();
    if (threadIdx.x == 0) done[block] = 1;
}

qilin_status launch_trap_blocks(const int *traps, int *done, dim3 grid, int threads) {
    return QILIN_LAUNCH(trap_blocks_kernel, grid, dim3(threads), 0, nullptr, traps, done);
}

__global__ void last_block_sum_kernel(const int *in, int *partial, unsigned *tickets, long long *total,
                                      unsigned *count) {
    __shared__ int sum;
    __shared__ bool last;
    if (threadIdx.x == 0) sum = 0;
    __syncthreads();
    atomicAdd(count, 1u);
    atomicAdd(&sum, in[blockIdx.x * blockDim.x + threadIdx.x]);
    __syncthreads();
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = sum;
        __threadfence(); /* the partial is visible before the ticket is taken */
        last = atomicAdd(tickets, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (last && threadIdx.x == 0) {
        long long s = 0;
        for (unsigned b = 0; b < gridDim.x; b++) s += ((volatile int *)partial)[b];
        *total = s;
        *tickets = 0; /* rearmed for the next launch */
    }
}

qilin_status launch_last_block_sum(const int *in, int *partial, unsigned *tickets, long long *total,
                                   unsigned *count, int blocks, int threads) {
    return QILIN_LAUNCH(last_block_sum_kernel, dim3(blocks), dim3(threads), 0, nullptr, in, partial, tickets,
                        total, count);
}
