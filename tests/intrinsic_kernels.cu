/* intrinsic_kernels.cu — kernels that exercise one CUDA intrinsic family each.
 *
 * Compiled by nvcc in the cuda build and by the host compiler against the
 * emulator in the sim build: the tests in test_sim_intrinsics.cpp compare
 * both against the intrinsics' definitions, so on a GPU they also check that
 * the emulator and the hardware agree. Launchers are declared in
 * intrinsic_kernels.h. */
#include "cuda/common.cuh"
#include "cuda/kernel.h"
#include "cuda/tensor_core.cuh"
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

/* ---- tensor-core instructions (cuda/tensor_core.cuh) ------------------------ */

/* One warp: every lane loads its fragment registers as given, runs one mma
 * (in place on the accumulator when in_place: D aliasing C is the common
 * use), and stores D's registers. */
template <int kKind> __global__ void mma_kernel(const uint32_t *a, const uint32_t *b, const uint32_t *c, uint32_t *d,
                                                int in_place) {
    const int l = threadIdx.x;
    uint32_t ra[4], rb[2], rc[4], rd[4];
    for (int i = 0; i < 4; i++) ra[i] = a[4 * l + i], rc[i] = c[4 * l + i];
    for (int i = 0; i < 2; i++) rb[i] = b[2 * l + i];
    if (kKind == MMA_S8) {
        int32_t *acc = reinterpret_cast<int32_t *>(rc), *out = in_place ? acc : reinterpret_cast<int32_t *>(rd);
        mma_m16n8k32_s8(out, ra, rb, acc);
        if (in_place) memcpy(rd, rc, sizeof rd);
    } else {
        float *acc = reinterpret_cast<float *>(rc), *out = in_place ? acc : reinterpret_cast<float *>(rd);
        switch (kKind) {
        case MMA_BF16: mma_m16n8k16_bf16(out, ra, rb, acc); break;
        case MMA_F16: mma_m16n8k16_f16(out, ra, rb, acc); break;
        case MMA_E4M3: mma_m16n8k32_e4m3(out, ra, rb, acc); break;
        default: mma_m16n8k32_e5m2(out, ra, rb, acc); break;
        }
        if (in_place) memcpy(rd, rc, sizeof rd);
    }
    for (int i = 0; i < 4; i++) d[4 * l + i] = rd[i];
}

qilin_status launch_mma(int kind, const uint32_t *a, const uint32_t *b, const uint32_t *c, uint32_t *d, int in_place) {
    switch (kind) {
    case MMA_BF16: return QILIN_LAUNCH((mma_kernel<MMA_BF16>), dim3(1), dim3(32), 0, nullptr, a, b, c, d, in_place);
    case MMA_F16: return QILIN_LAUNCH((mma_kernel<MMA_F16>), dim3(1), dim3(32), 0, nullptr, a, b, c, d, in_place);
    case MMA_E4M3: return QILIN_LAUNCH((mma_kernel<MMA_E4M3>), dim3(1), dim3(32), 0, nullptr, a, b, c, d, in_place);
    case MMA_E5M2: return QILIN_LAUNCH((mma_kernel<MMA_E5M2>), dim3(1), dim3(32), 0, nullptr, a, b, c, d, in_place);
    default: return QILIN_LAUNCH((mma_kernel<MMA_S8>), dim3(1), dim3(32), 0, nullptr, a, b, c, d, in_place);
    }
}

/* A warp whose last lane leaves before the mma: the sim reports it. */
__global__ void mma_missing_lane_kernel(uint32_t *d) {
    if (threadIdx.x == 31) return;
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float acc[4] = {0, 0, 0, 0};
    mma_m16n8k16_bf16(acc, a, b, acc);
    d[threadIdx.x] = __float_as_uint(acc[0]);
}

qilin_status launch_mma_missing_lane(uint32_t *d) {
    return QILIN_LAUNCH(mma_missing_lane_kernel, dim3(1), dim3(32), 0, nullptr, d);
}

/* Four 8x8 matrices of 16-bit elements copied to shared memory with a row
 * pitch of 24 elements (48 bytes: rows stay 16-byte aligned but are not
 * contiguous); lane 8i + j gives the address of row perm[j] of matrix i, so
 * the result also shows that each lane's address is honoured. misalign adds
 * 8 bytes to lane 5's address. */
template <int kNum, bool kTrans>
__global__ void ldmatrix_kernel(const uint16_t *m, const int *perm, uint32_t *r, int misalign) {
    __shared__ __align__(16) uint16_t tile[4 * 8 * 24];
    for (int i = threadIdx.x; i < 4 * 64; i += 32) tile[(i / 64) * 8 * 24 + (i % 64) / 8 * 24 + i % 8] = m[i];
    __syncwarp();
    const int l = threadIdx.x, mat = (l / 8) % kNum, row = perm[l % 8];
    const unsigned char *addr = reinterpret_cast<const unsigned char *>(tile + mat * 8 * 24 + row * 24);
    if (misalign && l == 5) addr += 8;
    uint32_t out[4] = {0, 0, 0, 0};
    if (kNum == 1) kTrans ? ldmatrix_x1_trans(out, addr) : ldmatrix_x1(out, addr);
    if (kNum == 2) kTrans ? ldmatrix_x2_trans(out, addr) : ldmatrix_x2(out, addr);
    if (kNum == 4) kTrans ? ldmatrix_x4_trans(out, addr) : ldmatrix_x4(out, addr);
    for (int i = 0; i < 4; i++) r[4 * l + i] = out[i];
}

qilin_status launch_ldmatrix(int num, int trans, const uint16_t *m, const int *perm, uint32_t *r, int misalign) {
#define QILIN_LDM(n, t)                                                                                     \
    if (num == n && trans == t)                                                                             \
        return QILIN_LAUNCH((ldmatrix_kernel<n, t>), dim3(1), dim3(32), 0, nullptr, m, perm, r, misalign);
    QILIN_LDM(1, 0) QILIN_LDM(2, 0) QILIN_LDM(4, 0) QILIN_LDM(1, 1) QILIN_LDM(2, 1) QILIN_LDM(4, 1)
#undef QILIN_LDM
    return QILIN_ERR_INVALID_ARGUMENT;
}

/* cp.async: thread t copies bytes [t * kBytes, (t + 1) * kBytes) of src into
 * dynamic shared memory, reading src_bytes[t] of them (zero-filling the
 * rest), in three commit groups (t % 3); after wait_all and a barrier every
 * thread stores the neighbour's chunk (thread t + 1), so the barrier's role
 * is checked too. With early_read, thread t instead reads its own group-0
 * chunk after cp_async_wait<2> — complete — and records its group-2 chunk
 * too, which the sim keeps poisoned until the wait. */
template <int kBytes, bool kCg>
__global__ void cp_async_kernel(const unsigned char *src, const int *src_bytes, unsigned char *out, int early_read) {
    QILIN_DYNAMIC_SMEM(unsigned char, smem);
    const int t = threadIdx.x, n = blockDim.x;
    for (int group = 0; group < 3; group++) {
        if (t % 3 == group) {
            if (kCg)
                cp_async_cg16(smem + t * kBytes, src + t * kBytes, src_bytes[t]);
            else
                cp_async_ca<kBytes>(smem + t * kBytes, src + t * kBytes, src_bytes[t]);
        }
        cp_async_commit();
    }
    if (early_read) {
        cp_async_wait<2>(); /* group 0 (threads t % 3 == 0) complete, groups 1 and 2 may not be */
        for (int i = 0; i < kBytes; i++) out[t * kBytes + i] = smem[t * kBytes + i];
        cp_async_wait_all();
        return;
    }
    cp_async_wait_all();
    __syncthreads();
    const int from = (t + 1) % n;
    for (int i = 0; i < kBytes; i++) out[t * kBytes + i] = smem[from * kBytes + i];
}

qilin_status launch_cp_async(int bytes, int cg, const unsigned char *src, const int *src_bytes, unsigned char *out,
                             int threads, int early_read) {
    size_t smem = (size_t)threads * bytes;
    if (cg) return QILIN_LAUNCH((cp_async_kernel<16, true>), dim3(1), dim3(threads), smem, nullptr, src, src_bytes, out, early_read);
    if (bytes == 4) return QILIN_LAUNCH((cp_async_kernel<4, false>), dim3(1), dim3(threads), smem, nullptr, src, src_bytes, out, early_read);
    if (bytes == 8) return QILIN_LAUNCH((cp_async_kernel<8, false>), dim3(1), dim3(threads), smem, nullptr, src, src_bytes, out, early_read);
    return QILIN_LAUNCH((cp_async_kernel<16, false>), dim3(1), dim3(threads), smem, nullptr, src, src_bytes, out, early_read);
}

/* One cp.async of 16 bytes from src to shared memory (or to dst_global when
 * it is not NULL: a misuse), then the chunk is stored to out. */
__global__ void cp_async_one_kernel(const unsigned char *src, unsigned char *dst_global, unsigned char *out) {
    __shared__ __align__(16) unsigned char chunk[16];
    cp_async_cg16(dst_global ? dst_global : chunk, src);
    cp_async_wait_all();
    for (int i = 0; i < 16; i++) out[i] = chunk[i];
}

qilin_status launch_cp_async_one(const unsigned char *src, unsigned char *dst_global, unsigned char *out) {
    return QILIN_LAUNCH(cp_async_one_kernel, dim3(1), dim3(1), 0, nullptr, src, dst_global, out);
}

/* A two-stage cp.async -> ldmatrix -> mma pipeline, the shape of every
 * tensor-core GEMM: out (rows x 8, fp32) = A (rows x K, bf16, row-major) .
 * W^T (W: 8 x K bf16, row-major), rows = 16 per warp, K a multiple of 16.
 * Each 16-wide K step of A and W goes to shared memory through cp.async, one
 * 16-byte chunk per thread (rows * 2 chunks for A, 16 for W), one stage
 * ahead. The planted bugs the tests require the sim to catch:
 *   PIPE_NO_WAIT         the consumer reads a stage without cp_async_wait;
 *   PIPE_NO_WAR_BARRIER  no barrier between a stage's ldmatrix and the
 *                        cp.async that overwrites it one step later. */
template <int kBug> __global__ void mma_pipeline_kernel(const __nv_bfloat16 *A, const __nv_bfloat16 *W, float *out, int K) {
    QILIN_DYNAMIC_SMEM(__nv_bfloat16, smem);
    const int rows = blockDim.x / 2, warp = threadIdx.x / 32, l = threadIdx.x % 32;
    const int stage_elems = (rows + 8) * 16; /* A tile rows x 16, then W tile 8 x 16 */
    const int steps = K / 16;
    auto load = [&](int step) {
        __nv_bfloat16 *stage = smem + (step % 2) * stage_elems;
        for (int c = threadIdx.x; c < (rows + 8) * 2; c += blockDim.x) {
            const int r = c / 2, half = c % 2;
            const __nv_bfloat16 *src = r < rows ? A + (size_t)r * K : W + (size_t)(r - rows) * K;
            cp_async_cg16(stage + r * 16 + half * 8, src + step * 16 + half * 8);
        }
        cp_async_commit();
    };
    float acc[4] = {0, 0, 0, 0};
    load(0);
    for (int step = 0; step < steps; step++) {
        if (step + 1 < steps) load(step + 1);
        if (kBug != PIPE_NO_WAIT) {
            if (step + 1 < steps)
                cp_async_wait<1>();
            else
                cp_async_wait<0>();
        }
        __syncthreads();
        const __nv_bfloat16 *stage = smem + (step % 2) * stage_elems;
        const int mat = l / 8, j = l % 8;
        uint32_t a[4], b[2];
        /* matrices: rows 0-7 / 8-15 of this warp x k 0-7 / 8-15, in a[0..3] order */
        ldmatrix_x4(a, stage + (warp * 16 + (mat & 1) * 8 + j) * 16 + (mat >> 1) * 8);
        ldmatrix_x2(b, stage + (rows + j) * 16 + (mat & 1) * 8); /* W rows = B columns: no transpose */
        mma_m16n8k16_bf16(acc, a, b, acc);
        if (kBug != PIPE_NO_WAR_BARRIER) __syncthreads();
    }
    const int g = l / 4, t = l % 4, row0 = warp * 16 + g;
    out[row0 * 8 + 2 * t] = acc[0];
    out[row0 * 8 + 2 * t + 1] = acc[1];
    out[(row0 + 8) * 8 + 2 * t] = acc[2];
    out[(row0 + 8) * 8 + 2 * t + 1] = acc[3];
}

qilin_status launch_mma_pipeline(int bug, const __nv_bfloat16 *A, const __nv_bfloat16 *W, float *out, int rows, int K) {
    if (rows % 16 || K % 16) return QILIN_ERR_INVALID_ARGUMENT;
    const dim3 block(rows * 2);
    const size_t smem = 2 * (size_t)(rows + 8) * 16 * sizeof(__nv_bfloat16);
    switch (bug) {
    case PIPE_OK: return QILIN_LAUNCH((mma_pipeline_kernel<PIPE_OK>), dim3(1), block, smem, nullptr, A, W, out, K);
    case PIPE_NO_WAIT: return QILIN_LAUNCH((mma_pipeline_kernel<PIPE_NO_WAIT>), dim3(1), block, smem, nullptr, A, W, out, K);
    default: return QILIN_LAUNCH((mma_pipeline_kernel<PIPE_NO_WAR_BARRIER>), dim3(1), block, smem, nullptr, A, W, out, K);
    }
}
