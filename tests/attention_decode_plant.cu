/* attention_decode_plant.cu — instantiates the tensor-core decode kernel with
 * its planted bugs (attention_decode.cuh, kPlant); only tests link this. */
#include "tests/attention_decode_plant.h"

#include "cuda/attention_decode.cuh"

qilin_status attention_decode_planted(const qilin_attention_args *a, DecodePlant plant) {
    using S = attn_tc::GqaShape;
    attn::TileParams p = {};
    p.qa = a->q, p.qa_ts = a->q_token_stride, p.qa_hs = a->q_head_stride;
    p.ka = a->k_cache, p.ka_l = a->k_layout;
    p.va = a->v_cache, p.va_l = a->v_layout;
    p.da = a->head_dim, p.dv = a->head_dim_v;
    p.out = a->out, p.out_ts = a->out_token_stride, p.out_hs = a->out_head_stride;
    p.q_start = a->q_start, p.kv_len = a->kv_len, p.seq_slot = a->seq_slot;
    p.table_stride = qilin_kv_table_stride(a->table_stride, a->block_size);
    p.block_size = qilin_kv_block_span(a->block_size);
    p.group = a->n_heads / a->n_kv_heads, p.n_heads = a->n_heads;
    p.window = a->sliding_window;
    p.qscale = a->scale * attn::kLog2e;
    p.vec = 1;
    p.q_tiles = (p.group + S::M - 1) / S::M;
    if (a->dtype != QILIN_BF16 || !attn_tc::tc_args_ok(p, S::DV_MAX))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "attention_decode_planted: bf16, dims multiples of 16");
    size_t smem = 0;
    QILIN_TRY(attn_tc::tc_smem_bytes<S>(&smem, a->head_dim, a->head_dim_v, false));
    const int64_t rows = (int64_t)a->n_seqs * a->n_heads;
    switch (plant) {
    case kDecodeNoCpAsyncWait:
        return attn_tc::launch_decode_tc<__nv_bfloat16, S, attn_tc::kPlantNoWait>(
            p, "planted", rows, a->max_kv_len, a->n_kv_heads, a->n_seqs, 1, smem, nullptr, 0, nullptr);
    case kDecodeNoStageBarrier:
        return attn_tc::launch_decode_tc<__nv_bfloat16, S, attn_tc::kPlantNoStageBarrier>(
            p, "planted", rows, a->max_kv_len, a->n_kv_heads, a->n_seqs, 1, smem, nullptr, 0, nullptr);
    default:
        return attn_tc::launch_decode_tc<__nv_bfloat16, S>(p, "planted", rows, a->max_kv_len, a->n_kv_heads,
                                                           a->n_seqs, 1, smem, nullptr, 0, nullptr);
    }
}
