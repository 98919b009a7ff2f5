/* kernel.h — the portability header every kernel source in cuda/ includes.
 *
 * The same .cu file is compiled by nvcc for the GPU and by the host C++
 * compiler for the SIMT emulator (cuda/sim/). Kernels therefore write:
 *
 *   QILIN_DYNAMIC_SMEM(float, tile);              // extern __shared__ float tile[]
 *   return QILIN_LAUNCH(my_kernel, grid, block, smem_bytes, stream, args...);
 *
 * instead of `extern __shared__` and `<<<>>>`. Everything else — __global__,
 * __shared__, threadIdx, __syncthreads, __shfl_xor_sync, atomics, bf16 — is
 * plain CUDA and means the same in both builds. QILIN_LAUNCH returns a
 * qilin_status naming the kernel and the launch site on failure. Templated
 * kernels go in parentheses: QILIN_LAUNCH((k<float, 4>), ...).
 *
 * Every launch goes to the launch log when QILIN_LAUNCH_LOG is set
 * (launch_log.h); QILIN_LAUNCH_BYTES(bytes, kernel, ...) launches the same
 * and also declares the bytes the kernel is meant to read, for the log. */
#ifndef QILIN_KERNEL_H
#define QILIN_KERNEL_H

#include "device.h"
#include "launch_log.h"
#include "status.h"

#if defined(QILIN_SIM)
#include "sim/sim.h"
#else
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#endif

#include <utility>

/* One launch's line in the launch log (launch_log.h); QILIN_OK when it is off. */
static inline qilin_status qilin_log_launch_(const char *name, dim3 grid, dim3 block, size_t smem_bytes,
                                             long long bytes) {
    const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
    return qilin_launch_log(name, g, b, smem_bytes, bytes);
}

/* Which compiler built this translation unit, for reports and the
 * same-source test: "nvcc" or "sim (host C++)". */
#if defined(__CUDACC__)
#define QILIN_KERNEL_COMPILER "nvcc"
#else
#define QILIN_KERNEL_COMPILER "sim (host C++)"
#endif

#if defined(QILIN_SIM)

#define QILIN_DYNAMIC_SMEM(type, name) type *name = reinterpret_cast<type *>(qsim::dynamic_smem())

template <typename... Params, typename... Args>
static inline qilin_status qilin_launch_(const char *name, const char *file, int line, long long bytes,
                                         void (*kernel)(Params...), dim3 grid, dim3 block,
                                         size_t smem_bytes, qilin_stream *stream, Args &&...args) {
    QILIN_TRY(qilin_log_launch_(name, grid, block, smem_bytes, bytes));
    /* The arguments are copied now, as <<<>>> does: the sim may run the
     * kernel later, on the stream's device worker. */
    std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
    qsim::launch_on_stream(name, file, line, grid, block, smem_bytes, stream,
                           [kernel, params] { std::apply(kernel, params); });
    return qilin_check_launch(name, file, line);
}

#else /* nvcc */

#define QILIN_DYNAMIC_SMEM(type, name)                              \
    extern __shared__ __align__(16) unsigned char qilin_dynamic_smem_[]; \
    type *name = reinterpret_cast<type *>(qilin_dynamic_smem_)

template <typename... Params, typename... Args>
static inline qilin_status qilin_launch_(const char *name, const char *file, int line, long long bytes,
                                         void (*kernel)(Params...), dim3 grid, dim3 block,
                                         size_t smem_bytes, qilin_stream *stream, Args &&...args) {
    QILIN_TRY(qilin_log_launch_(name, grid, block, smem_bytes, bytes));
    if (smem_bytes > 48 * 1024) { /* beyond the default limit a kernel must opt in */
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem_bytes);
        if (e != cudaSuccess)
            return qilin_error(QILIN_ERR_KERNEL, "%s:%d: kernel %s: %zu bytes of shared memory: %s (%s)",
                               file, line, name, smem_bytes, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    cudaStream_t s = (cudaStream_t)qilin_stream_native(stream);
    kernel<<<grid, block, smem_bytes, s>>>(std::forward<Args>(args)...);
    return qilin_check_launch(name, file, line);
}

#endif

#define QILIN_LAUNCH(kernel, grid, block, smem_bytes, stream, ...) \
    qilin_launch_(#kernel, __FILE__, __LINE__, -1, kernel, grid, block, smem_bytes, stream, __VA_ARGS__)
/* The same, declaring the bytes the kernel is meant to read (the log's "bytes"). */
#define QILIN_LAUNCH_BYTES(bytes, kernel, grid, block, smem_bytes, stream, ...)                          \
    qilin_launch_(#kernel, __FILE__, __LINE__, (long long)(bytes), kernel, grid, block, smem_bytes, stream, \
                  __VA_ARGS__)

#endif /* QILIN_KERNEL_H */
