/* moe_gemm_mma.cu — launcher of the tensor-core MoE grouped GEMM
 * (kernel and its design in moe_gemm_mma.cuh): one dtype switch, one
 * tile-height switch, grid (tiles, column blocks). fp32 never comes here:
 * the fp32 mode stays on moe.cu's CUDA-core kernel, exact fp32 FMA with no
 * tf32 rounding, so it keeps matching the fp32 references. */
#include "moe_gemm_mma.cuh"
#include "moe_gemm_mma.h"

bool moe_gemm_mma_supported(qilin_dtype dtype, int hidden, int ffn_dim, const void *const *ptrs, int n_ptrs) {
    if (dtype != QILIN_BF16 && dtype != QILIN_F16) return false;
    if (hidden % moe_mma::kChunk != 0 || ffn_dim % moe_mma::kChunk != 0) return false;
    for (int i = 0; i < n_ptrs; i++)
        if ((uintptr_t)ptrs[i] % 16 != 0) return false;
    return true;
}

namespace {

template <class T, int BT>
qilin_status launch_mma(const MoeGemmMmaArgs &g, qilin_stream *stream) {
    const int cols = g.gate_up ? moe_mma::kHalf : moe_mma::kBW;
    dim3 grid(g.max_tiles, (g.n_out + cols - 1) / cols), block(moe_mma::kThreads);
    T *c = (T *)g.c;
    const T *a = (const T *)g.a, *w = (const T *)g.w;
    /* declared bytes (launch log): each tile slot reads its expert's [n_out, K] weights once, an upper bound
     * (slots past the routed rows exit at once; tiles of one expert share its weights through L2) */
    const long long bytes = (long long)g.max_tiles * (g.gate_up ? 2 : 1) * g.n_out * g.K * (long long)sizeof(T);
    if (g.gate_up)
        return QILIN_LAUNCH_BYTES(bytes, (moe_mma::moe_gemm_mma_kernel<T, BT, true>), grid, block, 0, stream, c, a, w,
                                  g.tiles, g.sorted, g.a_div, g.K, g.n_out, g.act);
    return QILIN_LAUNCH_BYTES(bytes, (moe_mma::moe_gemm_mma_kernel<T, BT, false>), grid, block, 0, stream, c, a, w,
                              g.tiles, g.sorted, g.a_div, g.K, g.n_out, g.act);
}

template <class T> qilin_status launch_bt(const MoeGemmMmaArgs &g, qilin_stream *stream) {
    if (g.bt == 64) return launch_mma<T, 64>(g, stream);
    if (g.bt == 16) return launch_mma<T, 16>(g, stream);
    return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "moe_gemm_mma: tile height %d is not 16 or 64", g.bt);
}

} // namespace

qilin_status moe_gemm_mma(qilin_dtype dtype, const MoeGemmMmaArgs &g, qilin_stream *stream) {
    switch (dtype) {
    case QILIN_BF16: return launch_bt<__nv_bfloat16>(g, stream);
    case QILIN_F16: return launch_bt<__half>(g, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "moe_gemm_mma: dtype %s has no tensor-core path (bf16, f16)",
                           qilin_dtype_name(dtype));
    }
}
