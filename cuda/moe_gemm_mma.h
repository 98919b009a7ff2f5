/* moe_gemm_mma.h — the tensor-core grouped GEMM of qilin_moe_experts
 * (moe_gemm_mma.cu, kernel in moe_gemm_mma.cuh), called by moe.cu with the
 * tile table its align kernel wrote. Internal: CUDA C++ callers only. */
#ifndef QILIN_MOE_GEMM_MMA_H
#define QILIN_MOE_GEMM_MMA_H

#include "activation.h"
#include "device.h"
#include "dtype.h"
#include "status.h"

struct MoeGemmMmaArgs {
    void *c;            /* [slots, n_out]: h (gate_up) or y (down), dtype */
    const void *a;      /* x [tokens, K] (row slot / a_div) or h [slots, K] */
    const void *w;      /* gate_up [E, 2 n_out, K] or down [E, n_out, K], in format wq */
    const int2 *tiles;  /* [max_tiles] (expert or -1, valid rows) */
    const int *sorted;  /* [max_tiles, bt] slot of each tile row */
    int a_div, K, n_out, max_tiles;
    int bt;             /* rows per tile: 16 (decode, swap-AB) or 64 (prefill) */
    bool gate_up;       /* fused act(gate) * up epilogue */
    qilin_act act;
    int wq;             /* qilin_moe_wq: dense, FP8 block or INT4 group weights */
    const void *scale;  /* quantized: per-expert scales (moe_gemm_mma.cuh QuantArgs) */
    int row_off, col_off, group, rb, kb;
};

/* The shapes the tensor-core kernel takes: 16-bit dtype, K and n_out
 * multiples of 8 (whole 16-byte cp.async chunks per row) and 16-byte
 * aligned matrices. Everything else runs on the CUDA-core kernel. */
bool moe_gemm_mma_supported(qilin_dtype dtype, int hidden, int ffn_dim, const void *const *ptrs, int n_ptrs);

qilin_status moe_gemm_mma(qilin_dtype dtype, const MoeGemmMmaArgs &args, qilin_stream *stream);

#endif /* QILIN_MOE_GEMM_MMA_H */
