/* moe_mma_planted.cu — the tensor-core MoE GEMM (cuda/moe_gemm_mma.cuh)
 * instantiated with planted pipeline bugs: test_moe checks that the
 * emulator's asynchronous cp.async catches each under some seed while the
 * production instantiation passes under all. */
#include <vector>

#include "cuda/moe_gemm_mma.cuh"
#include "tests/moe_mma_planted.h"

namespace {

template <int BT, moe_mma::Planted kBug>
qilin_status launch(__nv_bfloat16 *h, const __nv_bfloat16 *x, const __nv_bfloat16 *w, const int2 *tiles,
                    const int *sorted, int K, int n_out) {
    using C = moe_mma::Cfg<BT>;
    dim3 grid(1, (n_out + C::kHalf - 1) / C::kHalf), block(C::kThreads);
    return QILIN_LAUNCH((moe_mma::moe_gemm_mma_kernel<__nv_bfloat16, BT, true, moe_mma::WQ::dense, kBug>), grid,
                        block, 0, nullptr, h, x, (const void *)w, moe_mma::QuantArgs{}, tiles, sorted, 1, K, n_out,
                        QILIN_ACT_SILU);
}

template <int BT>
qilin_status launch_bug(MoePlantedBug bug, __nv_bfloat16 *h, const __nv_bfloat16 *x, const __nv_bfloat16 *w,
                        const int2 *tiles, const int *sorted, int K, int n_out) {
    using P = moe_mma::Planted;
    switch (bug) {
    case MoePlantedBug::none: return launch<BT, P::none>(h, x, w, tiles, sorted, K, n_out);
    case MoePlantedBug::no_wait: return launch<BT, P::no_wait>(h, x, w, tiles, sorted, K, n_out);
    default: return launch<BT, P::no_war_barrier>(h, x, w, tiles, sorted, K, n_out);
    }
}

} // namespace

qilin_status launch_planted_moe_gate_up(MoePlantedBug bug, int bt, void *h, const void *x, const void *w,
                                        int *tiles, int *sorted, int rows, int K, int n_out) {
    int table[2] = {0, rows}; /* one tile of expert 0 with `rows` valid rows */
    std::vector<int> order(bt);
    for (int i = 0; i < bt; i++) order[i] = i;
    qilin_status st = qilin_memcpy_h2d(tiles, table, sizeof table, nullptr);
    if (st == QILIN_OK) st = qilin_memcpy_h2d(sorted, order.data(), order.size() * sizeof(int), nullptr);
    if (st != QILIN_OK) return st;
    auto *hh = (__nv_bfloat16 *)h;
    auto *xx = (const __nv_bfloat16 *)x, *ww = (const __nv_bfloat16 *)w;
    auto *tt = (const int2 *)tiles;
    return bt == 16 ? launch_bug<16>(bug, hh, xx, ww, tt, sorted, K, n_out)
                    : launch_bug<64>(bug, hh, xx, ww, tt, sorted, K, n_out);
}
