/* moe_gemm_mma.cu — launcher of the tensor-core MoE grouped GEMM
 * (kernel and its design in moe_gemm_mma.cuh): one dtype switch, one
 * tile-height switch, grid (tiles, column blocks). fp32 never comes here:
 * the fp32 mode stays on moe.cu's CUDA-core kernel, exact fp32 FMA with no
 * tf32 rounding, so it keeps matching the fp32 references. */
#include "moe_gemm_mma.cuh"
#include "moe.h"
#include "moe_gemm_mma.h"

bool moe_gemm_mma_supported(qilin_dtype dtype, int hidden, int ffn_dim, const void *const *ptrs, int n_ptrs) {
    if (dtype != QILIN_BF16 && dtype != QILIN_F16) return false;
    if (hidden % moe_mma::kChunk != 0 || ffn_dim % moe_mma::kChunk != 0) return false;
    for (int i = 0; i < n_ptrs; i++)
        if ((uintptr_t)ptrs[i] % 16 != 0) return false;
    return true;
}

namespace {

template <class T, int BT, moe_mma::WQ Q>
qilin_status launch_mma(const MoeGemmMmaArgs &g, qilin_stream *stream) {
    using C = moe_mma::Cfg<BT>;
    const int cols = g.gate_up ? C::kHalf : C::kBW, n_cb = (g.n_out + cols - 1) / cols;
    /* decode: at most ~kDecodeBlocks one-warp blocks (more than a wave on any target GPU: 132 SMs hold
     * several each); a block loops over the column blocks beyond gridDim.y */
    constexpr int kDecodeBlocks = 1024;
    int cb_grid = n_cb;
    if (C::kSwap && (long long)g.max_tiles * n_cb > kDecodeBlocks) {
        int per_tile = (kDecodeBlocks + g.max_tiles - 1) / g.max_tiles;
        cb_grid = per_tile < n_cb ? per_tile : n_cb;
    }
    dim3 grid(g.max_tiles, cb_grid), block(C::kThreads);
    T *c = (T *)g.c;
    const T *a = (const T *)g.a;
    moe_mma::QuantArgs qa = {g.scale, g.row_off, g.col_off, g.group, g.rb, g.kb};
    /* declared bytes (launch log): each tile slot reads its expert's [n_out, K] weights once, an upper bound
     * (slots past the routed rows exit at once; tiles of one expert share its weights through L2); scales
     * not counted (1/16384 of FP8 bytes, 1/16 of INT4's) */
    const double per_weight = Q == moe_mma::WQ::dense ? (double)sizeof(T) : Q == moe_mma::WQ::fp8 ? 1.0 : 0.5;
    const long long bytes = (long long)((double)g.max_tiles * (g.gate_up ? 2 : 1) * g.n_out * g.K * per_weight);
    if (g.gate_up)
        return QILIN_LAUNCH_BYTES(bytes, (moe_mma::moe_gemm_mma_kernel<T, BT, true, Q>), grid, block, 0, stream, c,
                                  a, g.w, qa, g.tiles, g.sorted, g.a_div, g.K, g.n_out, g.act);
    return QILIN_LAUNCH_BYTES(bytes, (moe_mma::moe_gemm_mma_kernel<T, BT, false, Q>), grid, block, 0, stream, c, a,
                              g.w, qa, g.tiles, g.sorted, g.a_div, g.K, g.n_out, g.act);
}

template <class T, int BT> qilin_status launch_wq(const MoeGemmMmaArgs &g, qilin_stream *stream) {
    switch (g.wq) {
    case QILIN_MOE_W_DENSE: return launch_mma<T, BT, moe_mma::WQ::dense>(g, stream);
    case QILIN_MOE_W_FP8_BLOCK: return launch_mma<T, BT, moe_mma::WQ::fp8>(g, stream);
    case QILIN_MOE_W_INT4_GROUP: return launch_mma<T, BT, moe_mma::WQ::int4>(g, stream);
    default: return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "moe_gemm_mma: unknown weight format %d", g.wq);
    }
}

template <class T> qilin_status launch_bt(const MoeGemmMmaArgs &g, qilin_stream *stream) {
    if (g.bt == 64) return launch_wq<T, 64>(g, stream);
    if (g.bt == 16) return launch_wq<T, 16>(g, stream);
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
