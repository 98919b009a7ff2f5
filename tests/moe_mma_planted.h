/* moe_mma_planted.h — launches of the tensor-core MoE GEMM kernel with a
 * planted pipeline bug (tests/moe_mma_planted.cu), for test_moe. */
#ifndef QILIN_TESTS_MOE_MMA_PLANTED_H
#define QILIN_TESTS_MOE_MMA_PLANTED_H

#include "cuda/status.h"

enum class MoePlantedBug { none, no_wait, no_war_barrier };

/* gate_up GEMM of one bf16 expert: h [rows, n_out] = act(x w_gate^T) * (x w_up^T)
 * with x [rows, K], w [2 n_out, K], rows <= bt (16: swap-AB decode tile,
 * 64: prefill tile). tiles/sorted: device buffers of 2 and bt ints, filled here. */
qilin_status launch_planted_moe_gate_up(MoePlantedBug bug, int bt, void *h, const void *x, const void *w,
                                        int *tiles, int *sorted, int rows, int K, int n_out);

#endif
