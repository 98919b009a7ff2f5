/* intrinsic_kernels.cu — kernels that exercise one CUDA intrinsic family each.
 *
 * Compiled by nvcc in the cuda build and by the host compiler against the
 * emulator in the sim build: the tests in test_sim_intrinsics.cpp compare
 * both against the intrinsics' definitions, so on a GPU they also check that
 * the emulator and the hardware agree. Launchers are declared in
 * intrinsic_kernels.h. */
#include "cuda/common.cuh"
#include "cuda/kernel.h"
#include "tests/intrinsic_kernels.h"

/* ---- shuffles ------------------------------------------------------------ */

template <class T>
__global__ void shfl_kernel(const T *in, T *out, int mode, int arg, int width) {
    int t = threadIdx.x;
    T v = in[t];
    T r;
    if (mode == SHFL_IDX) r = __shfl_sync(0xffffffffu, v, arg, width);
    else if (mode == SHFL_UP) r = __shfl_up_sync(0xffffffffu, v, (unsigned)arg, width);
    else if (mode == SHFL_DOWN) r = __shfl_down_sync(0xffffffffu, v, (unsigned)arg, width);
    else r = __shfl_xor_sync(0xffffffffu, v, arg, width);
    out[t] = r;
}

qilin_status launch_shfl_f32(const float *in, float *out, int threads, int mode, int arg, int width) {
    return QILIN_LAUNCH((shfl_kernel<float>), dim3(1), dim3(threads), 0, nullptr, in, out, mode, arg, width);
}
qilin_status launch_shfl_f64(const double *in, double *out, int threads, int mode, int arg, int width) {
    return QILIN_LAUNCH((shfl_kernel<double>), dim3(1), dim3(threads), 0, nullptr, in, out, mode, arg, width);
}
qilin_status launch_shfl_i32(const int *in, int *out, int threads, int mode, int arg, int width) {
    return QILIN_LAUNCH((shfl_kernel<int>), dim3(1), dim3(threads), 0, nullptr, in, out, mode, arg, width);
}

/* ---- votes: full warps, then the low half of each warp on its own -------- */

__global__ void vote_kernel(const int *pred, unsigned *out) {
    int t = threadIdx.x, lane = t & 31;
    int p = pred[t];
    unsigned *o = out + 6 * t;
    o[0] = __ballot_sync(0xffffffffu, p);
    o[1] = (unsigned)__any_sync(0xffffffffu, p);
    o[2] = (unsigned)__all_sync(0xffffffffu, p);
    if (lane < 16) {
        o[3] = __ballot_sync(0x0000ffffu, p);
        o[4] = (unsigned)__any_sync(0x0000ffffu, p);
        o[5] = (unsigned)__all_sync(0x0000ffffu, p);
    } else {
        o[3] = o[4] = o[5] = 0xdeadbeefu;
    }
}

qilin_status launch_vote(const int *pred, unsigned *out, int threads) {
    return QILIN_LAUNCH(vote_kernel, dim3(1), dim3(threads), 0, nullptr, pred, out);
}

/* match_any / reduce_*: one output row of 8 words per thread. */
__global__ void warp_misc_kernel(const unsigned *in, unsigned *out) {
    int t = threadIdx.x;
    unsigned v = in[t];
    unsigned *o = out + 8 * t;
    o[0] = __match_any_sync(0xffffffffu, v & 3u);
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    o[1] = __reduce_add_sync(0xffffffffu, v);
    o[2] = __reduce_min_sync(0xffffffffu, v);
    o[3] = __reduce_max_sync(0xffffffffu, v);
    o[4] = (unsigned)__reduce_max_sync(0xffffffffu, (int)v);
    o[5] = __reduce_and_sync(0xffffffffu, v);
    o[6] = __reduce_or_sync(0xffffffffu, v);
    o[7] = __reduce_xor_sync(0xffffffffu, v);
#endif
}

qilin_status launch_warp_misc(const unsigned *in, unsigned *out, int threads) {
    return QILIN_LAUNCH(warp_misc_kernel, dim3(1), dim3(threads), 0, nullptr, in, out);
}

/* __activemask inside a branch taken by the lanes whose bit is set in `taken`;
 * __syncwarp over the same lanes. */
__global__ void activemask_kernel(unsigned taken, unsigned *out) {
    int lane = threadIdx.x & 31;
    unsigned m = 0;
    if (taken >> lane & 1) {
        m = __activemask();
        __syncwarp(m);
    }
    out[threadIdx.x] = m;
}

qilin_status launch_activemask(unsigned taken, unsigned *out) {
    return QILIN_LAUNCH(activemask_kernel, dim3(1), dim3(32), 0, nullptr, taken, out);
}

/* ---- block barriers with predicates -------------------------------------- */

__global__ void syncthreads_pred_kernel(const int *pred, int *out) {
    int t = threadIdx.x;
    int p = pred[blockIdx.x * blockDim.x + t];
    int c = __syncthreads_count(p);
    int a = __syncthreads_and(p);
    int o = __syncthreads_or(p);
    if (t == 0) {
        out[3 * blockIdx.x + 0] = c;
        out[3 * blockIdx.x + 1] = a;
        out[3 * blockIdx.x + 2] = o;
    }
}

qilin_status launch_syncthreads_pred(const int *pred, int *out, int blocks, int threads) {
    return QILIN_LAUNCH(syncthreads_pred_kernel, dim3(blocks), dim3(threads), 0, nullptr, pred, out);
}

/* ---- atomics on global and shared memory ---------------------------------- */

/* out: [0] int add, [1] unsigned add, [2] float add (of small integers: exact),
 * [3] int max, [4] int min, [5] unsigned max, [6] unsigned min,
 * [7] float max, [8] float min (CAS helpers), [9] CAS counter, [10] exch count,
 * [11..] per-block shared-memory sums. */
__device__ float atomic_max_f32(float *p, float v) {
    int *ip = reinterpret_cast<int *>(p);
    int old = *ip, assumed;
    do {
        assumed = old;
        if (__int_as_float(assumed) >= v) break;
        old = atomicCAS(ip, assumed, __float_as_int(v));
    } while (old != assumed);
    return __int_as_float(old);
}
__device__ float atomic_min_f32(float *p, float v) {
    int *ip = reinterpret_cast<int *>(p);
    int old = *ip, assumed;
    do {
        assumed = old;
        if (__int_as_float(assumed) <= v) break;
        old = atomicCAS(ip, assumed, __float_as_int(v));
    } while (old != assumed);
    return __int_as_float(old);
}

__global__ void atomics_kernel(const int *vals, int n, int *gi, unsigned *gu, float *gf, int *block_sums) {
    __shared__ int block_sum;
    __shared__ unsigned exch_slot;
    if (threadIdx.x == 0) {
        block_sum = 0;
        exch_slot = 0;
    }
    __syncthreads();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        int v = vals[i];
        atomicAdd(&gi[0], v);
        atomicAdd(&gu[1], (unsigned)(v & 0xff));
        atomicAdd(&gf[2], (float)(v & 0xff));
        atomicMax(&gi[3], v);
        atomicMin(&gi[4], v);
        atomicMax(&gu[5], (unsigned)v);
        atomicMin(&gu[6], (unsigned)v);
        atomic_max_f32(&gf[7], (float)v * 0.5f);
        atomic_min_f32(&gf[8], (float)v * 0.5f);
        int old = gi[9], seen;
        do { /* increment through CAS */
            seen = old;
            old = atomicCAS(&gi[9], seen, seen + 1);
        } while (old != seen);
        atomicSub(&gi[10], 1);
        atomicAdd(&block_sum, v & 0xff);
        atomicExch(&exch_slot, 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) block_sums[blockIdx.x] = block_sum + (int)exch_slot * 1000000;
}

qilin_status launch_atomics(const int *vals, int n, int *gi, unsigned *gu, float *gf, int *block_sums,
                            int blocks, int threads) {
    return QILIN_LAUNCH(atomics_kernel, dim3(blocks), dim3(threads), 0, nullptr, vals, n, gi, gu, gf,
                        block_sums);
}

/* ---- bit and float intrinsics: one row of 16 words per input ------------- */

__global__ void bits_kernel(const unsigned *in, unsigned *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned x = __ldg(&in[i]), y = __ldcg(&in[(i + 1) % n]); /* read-only and L2-only loads */
    unsigned *o = out + 16 * i;
    o[0] = (unsigned)__popc(x);
    o[1] = (unsigned)__clz((int)x);
    o[2] = (unsigned)__ffs((int)x);
    o[3] = __brev(x);
    o[4] = __byte_perm(x, y, y & 0x7777u);
    o[5] = __umulhi(x, y);
    o[6] = (unsigned)__mulhi((int)x, (int)y);
    o[7] = __funnelshift_l(x, y, y & 31u);
    o[8] = __funnelshift_r(x, y, y & 31u);
    o[9] = (unsigned)__popcll(((unsigned long long)x << 32) | y);
    o[10] = (unsigned)__clzll((long long)(((unsigned long long)x << 32) | y));
    float f = (float)(int)x * 1e-6f;
    o[11] = (unsigned)__float2int_rn(f);
    o[12] = __float_as_uint(f);
    o[13] = (unsigned)__float2int_rz(f);
    o[14] = (unsigned)__float2int_rd(f);
    o[15] = (unsigned)__float2int_ru(f);
}

qilin_status launch_bits(const unsigned *in, unsigned *out, int n) {
    return QILIN_LAUNCH(bits_kernel, dim3((n + 127) / 128), dim3(128), 0, nullptr, in, out, n);
}

/* Math intrinsics of our kernels, against libm in double on the host. */
__global__ void math_kernel(const float *in, float *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = in[i];
    float *o = out + 8 * i;
    o[0] = __expf(x);
    o[1] = rsqrtf(fabsf(x) + 1.0f);
    o[2] = __fdividef(x, 3.0f);
    o[3] = tanhf(x);
    o[4] = __logf(fabsf(x) + 1.0f);
    o[5] = exp2f(x);
    o[6] = __saturatef(x);
    o[7] = __fmaf_rn(x, x, 1.0f);
}

qilin_status launch_math(const float *in, float *out, int n) {
    return QILIN_LAUNCH(math_kernel, dim3((n + 63) / 64), dim3(64), 0, nullptr, in, out, n);
}

/* ---- grid geometry and shared memory -------------------------------------- */

/* Every thread of a 3-D grid of 3-D blocks writes its global linear index
 * (computed from the built-ins) into the slot it owns, plus its block's
 * thread count read back through dynamic shared memory. */
__global__ void geometry_kernel(int *out) {
    QILIN_DYNAMIC_SMEM(int, scratch);
    __shared__ int block_threads;
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int nt = blockDim.x * blockDim.y * blockDim.z;
    int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    scratch[t] = 1;
    if (t == 0) block_threads = 0;
    __syncthreads();
    atomicAdd(&block_threads, scratch[(t + 1) % nt]);
    __syncthreads();
    out[2 * (b * nt + t)] = b * nt + t;
    out[2 * (b * nt + t) + 1] = block_threads;
}

qilin_status launch_geometry(int *out, dim3 grid, dim3 block) {
    size_t smem = (size_t)block.x * block.y * block.z * sizeof(int);
    return QILIN_LAUNCH(geometry_kernel, grid, block, smem, nullptr, out);
}

/* ---- barriers: a planted race and its fix ---------------------------------- */

/* Reverses a block's worth of values through shared memory. Without the
 * barrier a thread may read its mirror slot before the owner has written it. */
template <bool with_barrier> __global__ void reverse_kernel(const float *in, float *out) {
    __shared__ float tile[1024];
    int t = threadIdx.x, n = blockDim.x;
    tile[t] = in[blockIdx.x * n + t];
    if (with_barrier) __syncthreads();
    out[blockIdx.x * n + t] = tile[n - 1 - t];
}

qilin_status launch_reverse(const float *in, float *out, int blocks, int threads, bool with_barrier) {
    if (with_barrier)
        return QILIN_LAUNCH((reverse_kernel<true>), dim3(blocks), dim3(threads), 0, nullptr, in, out);
    return QILIN_LAUNCH((reverse_kernel<false>), dim3(blocks), dim3(threads), 0, nullptr, in, out);
}

/* A barrier inside a loop, 1024 threads: a rotating sum through shared memory. */
__global__ void barrier_loop_kernel(float *data, int iters) {
    __shared__ float buf[2][1024];
    int t = threadIdx.x, n = blockDim.x;
    buf[0][t] = data[blockIdx.x * n + t];
    __syncthreads();
    for (int i = 0; i < iters; i++) {
        float *src = buf[i & 1], *dst = buf[(i + 1) & 1];
        dst[t] = src[t] + src[(t + 1) % n];
        __syncthreads();
    }
    data[blockIdx.x * n + t] = buf[iters & 1][t];
}

qilin_status launch_barrier_loop(float *data, int blocks, int threads, int iters) {
    return QILIN_LAUNCH(barrier_loop_kernel, dim3(blocks), dim3(threads), 0, nullptr, data, iters);
}

/* Threads of the upper half exit before the barrier the lower half waits at. */
__global__ void divergent_barrier_kernel(int *out) {
    if (threadIdx.x >= blockDim.x / 2) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

qilin_status launch_divergent_barrier(int *out, int threads) {
    return QILIN_LAUNCH(divergent_barrier_kernel, dim3(1), dim3(threads), 0, nullptr, out);
}

/* Lane 31 exits while the other lanes shuffle with a full mask. */
__global__ void exited_lane_kernel(int *out) {
    if (threadIdx.x == 31) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

qilin_status launch_exited_lane(int *out) {
    return QILIN_LAUNCH(exited_lane_kernel, dim3(1), dim3(32), 0, nullptr, out);
}

/* Multi-block reduction: per-block tree in shared memory, warp shuffles for
 * the last 32, one atomicAdd per block. */
__global__ void reduce_sum_kernel(const float *in, int n, float *total) {
    __shared__ float partial[32];
    float s = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) s += in[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (lane == 0) atomicAdd(total, s);
    }
}

qilin_status launch_reduce_sum(const float *in, int n, float *total, int blocks, int threads) {
    return QILIN_LAUNCH(reduce_sum_kernel, dim3(blocks), dim3(threads), 0, nullptr, in, n, total);
}

qilin_status launch_bad_shape(int *out) {
    return QILIN_LAUNCH(divergent_barrier_kernel, dim3(1), dim3(1025), 0, nullptr, out);
}

__global__ void trap_kernel(int *out) {
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1;
}

qilin_status launch_trap(int *out) { return QILIN_LAUNCH(trap_kernel, dim3(1), dim3(8), 0, nullptr, out); }

/* ---- vector accesses: one float4 (or one Vec16) per thread at in + offset -- */

__global__ void vector_load_kernel(const float *in, float *out, int offset, int through_vec16) {
    int t = threadIdx.x;
    float4 v;
    if (through_vec16) {
        Vec16<float> w;
        load_elems<float, true>(w.v, in + offset, t);
        v = float4{w.v[0], w.v[1], w.v[2], w.v[3]};
    } else {
        v = load_vec<float4>(in + offset + 4 * t);
    }
    store_vec<float4>(out + 4 * t, v);
}

qilin_status launch_vector_load(const float *in, float *out, int offset, int threads, int through_vec16) {
    return QILIN_LAUNCH(vector_load_kernel, dim3(1), dim3(threads), 0, nullptr, in, out, offset, through_vec16);
}

/* ---- a kernel on a given stream: out[i] = value ---------------------------- */

__global__ void fill_kernel(float *out, int n, float value) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = value;
}

qilin_status launch_fill(float *out, int n, float value, qilin_stream *stream) {
    return QILIN_LAUNCH(fill_kernel, dim3(4), dim3(128), 0, stream, out, n, value);
}

const char *intrinsic_kernels_compiler(void) { return QILIN_KERNEL_COMPILER " compiled " __FILE__; }
