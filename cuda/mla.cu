/* mla.cu — multi-head latent attention (DeepSeek V2/V3, Kimi K2); the
 * contract is in mla.h, the maths in models.md §7.4–7.5.
 *
 * qilin_mla_append: the latent c and rope key k_pe of new tokens into the two
 * caches — qilin_kv_append's bitwise row copy with one "KV head" whose key is
 * c (r values) and whose value is k_pe (dr values).
 *
 * qilin_mla_attention (absorbed form): MQA over the latent cache, key
 * [c ; k_pe] (r + dr), value c, query [q_lat ; q_pe]. It runs the tiled
 * online-softmax block of attention_tile.cuh with rows = (query token, head)
 * packed flat along the sequence — every head of a token (and of the next
 * tokens, in chunked prefill) shares each loaded latent tile — and the value
 * tile aliasing the first r key columns, so a position's 576 values are read
 * from memory once per block. Shape: 32 rows, 32-key tiles, 256 threads;
 * each thread accumulates 4 rows x 16 of the r <= 512 latent dims in fp32
 * (64 registers); shared memory (32 + 32) x (r + dr + 4) floats, 155 KB at
 * r = 512, dr = 64. Long sequences are split along their length (grid x =
 * row tiles x splits) when that fills the GPU better; partials go through
 * the workspace and the merge of attention_tile.cuh. Causal for n_q > 1.
 * bf16/f16 run the tensor-core kernel of attention_decode.cuh instead (rows
 * of 16/32/64 heads on mma.sync, the latent tile through a cp.async ring,
 * same split plan and merge) when r and r + dr are multiples of 16 and the
 * rows are aligned; fp32 (exact mode) always runs the CUDA-core block.
 *
 * qilin_mla_expand_k: per-head keys [k_nope ; k_pe] for the naive prefill
 * form, one block per position, bitwise 16-byte group copies. */
#include <cmath>

#include "attention_decode.cuh"
#include "attention_tile.cuh"
#include "kernels.h"

using attn::TileParams;
using MlaShape = attn::Shape<32, 32, 256, 16, 32, 512, 1>; /* 155 KB of shared memory at r = 512 */

extern "C" qilin_status qilin_mla_append(const qilin_mla_append_args *a, qilin_stream *stream) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_mla_append: args is NULL");
    if (a->tokens < 0 || a->r <= 0 || a->dr <= 0 || a->max_ctx <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_mla_append: bad shape tokens=%d r=%d dr=%d max_ctx=%d",
                           a->tokens, a->r, a->dr, a->max_ctx);
    if (a->tokens == 0) return QILIN_OK;
    if (!a->latent_cache || !a->pe_cache || !a->latent || !a->k_pe || !a->token_slot || !a->positions)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_mla_append: latent_cache, pe_cache, latent, k_pe, token_slot and positions must be set");
    if (a->latent_stride < 0 || a->pe_stride < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_mla_append: latent_stride and pe_stride must be >= 0");
    qilin_kv_append_args k = {};
    k.k_cache = a->latent_cache, k.v_cache = a->pe_cache;
    k.k_layout = a->latent_layout, k.v_layout = a->pe_layout;
    k.k_layout.head_stride = k.v_layout.head_stride = 0; /* one head: unused */
    k.k = a->latent, k.k_token_stride = a->latent_stride;
    k.v = a->k_pe, k.v_token_stride = a->pe_stride;
    k.token_slot = a->token_slot, k.positions = a->positions;
    k.tokens = a->tokens, k.n_kv_heads = 1, k.head_dim = a->r, k.head_dim_v = a->dr, k.max_ctx = a->max_ctx;
    k.block_size = a->block_size;
    k.dtype = a->dtype;
    qilin_status st = qilin_kv_append(&k, stream);
    if (st != QILIN_OK) return qilin_error_context(st, "qilin_mla_append");
    return QILIN_OK;
}

/* ---- absorbed attention ------------------------------------------------------- */

static qilin_status check_mla(const qilin_mla_attention_args *a) {
    const char *who = "qilin_mla_attention";
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: args is NULL", who);
    if (a->n_seqs < 0 || a->tokens < 0 || a->max_q_len < 0 || a->max_kv_len < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: bad batch n_seqs=%d tokens=%d max_q_len=%d max_kv_len=%d",
                           who, a->n_seqs, a->tokens, a->max_q_len, a->max_kv_len);
    if (a->n_heads <= 0) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: n_heads=%d must be > 0", who, a->n_heads);
    if (a->r <= 0 || a->r % 8 != 0 || a->r > MlaShape::DV_MAX)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: r=%d must be a multiple of 8 in [8, %d]", who, a->r,
                           MlaShape::DV_MAX);
    if (a->dr <= 0 || a->dr % 8 != 0 || a->dr > 128)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: dr=%d must be a multiple of 8 in [8, 128]", who, a->dr);
    if (!std::isfinite(a->scale))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: scale must be finite, got %g", who, (double)a->scale);
    const qilin_kv_layout &l = a->latent_layout, &e = a->pe_layout;
    if (l.slot_stride < 0 || l.pos_stride < 0 || e.slot_stride < 0 || e.pos_stride < 0 || a->out_token_stride < 0 ||
        a->out_head_stride < 0 || a->q_lat_token_stride < 0 || a->q_lat_head_stride < 0 || a->q_pe_token_stride < 0 ||
        a->q_pe_head_stride < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: strides must be >= 0", who);
    if (a->block_size < 0 || (a->block_size > 0 && a->table_stride < (a->max_kv_len + a->block_size - 1) / a->block_size))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: block_size=%d must be >= 0 and table_stride=%d hold max_kv_len=%d positions", who,
                           a->block_size, a->table_stride, a->max_kv_len);
    if (a->dtype != QILIN_F32 && a->dtype != QILIN_BF16 && a->dtype != QILIN_F16)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: dtype %s is not supported (f32, bf16, f16)", who,
                           qilin_dtype_name(a->dtype));
    if (a->n_seqs == 0 || a->tokens == 0 || a->max_q_len == 0) return QILIN_OK;
    if (!a->out || !a->q_lat || !a->q_pe || !a->latent_cache || !a->pe_cache || !a->q_start || !a->kv_len ||
        !a->seq_slot)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: out, q_lat, q_pe, latent_cache, pe_cache, q_start, kv_len and seq_slot must be set", who);
    return QILIN_OK;
}

static TileParams mla_params(const qilin_mla_attention_args *a) {
    TileParams p = {};
    p.qa = a->q_lat, p.qa_ts = a->q_lat_token_stride, p.qa_hs = a->q_lat_head_stride;
    p.qb = a->q_pe, p.qb_ts = a->q_pe_token_stride, p.qb_hs = a->q_pe_head_stride;
    p.ka = a->latent_cache, p.ka_l = a->latent_layout;
    p.kb = a->pe_cache, p.kb_l = a->pe_layout;
    p.ka_l.head_stride = p.kb_l.head_stride = 0;
    p.va = nullptr; /* value = the latent, the first r key columns */
    p.da = a->r, p.db = a->dr, p.dv = a->r;
    p.out = a->out, p.out_ts = a->out_token_stride, p.out_hs = a->out_head_stride;
    p.q_start = a->q_start, p.kv_len = a->kv_len, p.seq_slot = a->seq_slot;
    p.table_stride = qilin_kv_table_stride(a->table_stride, a->block_size);
    p.block_size = qilin_kv_block_span(a->block_size);
    p.group = a->n_heads, p.n_heads = a->n_heads;
    p.window = 0;
    p.qscale = a->scale * attn::kLog2e;
    p.q_tiles = (int)(((int64_t)a->max_q_len * a->n_heads + MlaShape::M - 1) / MlaShape::M);
    p.n_splits = 1, p.chunk_len = INT_MAX;
    const int V = 16 / (int)qilin_dtype_size(a->dtype);
    const uintptr_t ptrs = (uintptr_t)a->q_lat | (uintptr_t)a->q_pe | (uintptr_t)a->latent_cache |
                           (uintptr_t)a->pe_cache | (uintptr_t)a->out;
    const int64_t strides = a->latent_layout.slot_stride | a->latent_layout.pos_stride | a->pe_layout.slot_stride |
                            a->pe_layout.pos_stride | a->q_lat_token_stride | a->q_lat_head_stride |
                            a->q_pe_token_stride | a->q_pe_head_stride | a->out_token_stride | a->out_head_stride;
    p.vec = ptrs % 16 == 0 && strides % V == 0;
    return p;
}

/* One tensor-core shape: *used = false when its shared memory does not fit. */
template <class T, class S>
static qilin_status mla_tc_shape(const qilin_mla_attention_args *a, TileParams p, qilin_stream *stream, bool *used) {
    size_t smem = 0;
    QILIN_TRY(attn_tc::tc_smem_bytes<S>(&smem, a->r + a->dr, a->r, true));
    *used = smem != 0;
    if (!*used) return QILIN_OK;
    p.q_tiles = (int)(((int64_t)a->max_q_len * a->n_heads + S::M - 1) / S::M);
    return attn_tc::launch_decode_tc<T, S>(p, "qilin_mla_attention", (int64_t)a->tokens * a->n_heads, a->max_kv_len,
                                          1, a->n_seqs, a->max_q_len, smem, a->workspace, a->workspace_bytes, stream);
}

/* bf16/f16 on tensor cores (attention_decode.cuh): the heads of a token (and
 * of the next tokens) are the mma rows, tiles of 64 rows when a sequence has
 * more than 32 of them (128 heads at TP 1: each latent tile read twice),
 * else 32 or 16. The shape (r + dr, r multiples of 16, aligned) and shared
 * memory must fit, else the CUDA-core kernel runs; fp32 always does. */
template <class T>
static qilin_status mla_tc(const qilin_mla_attention_args *a, const TileParams &p, qilin_stream *stream, bool *used) {
    *used = false;
    if (!attn_tc::tc_args_ok(p, attn_tc::Mla64Shape::DV_MAX)) return QILIN_OK;
    const int64_t rows = (int64_t)a->max_q_len * a->n_heads;
    if (rows > 32) QILIN_TRY((mla_tc_shape<T, attn_tc::Mla64Shape>(a, p, stream, used)));
    if (!*used && rows > 16) QILIN_TRY((mla_tc_shape<T, attn_tc::Mla32Shape>(a, p, stream, used)));
    if (!*used) QILIN_TRY((mla_tc_shape<T, attn_tc::Mla16Shape>(a, p, stream, used)));
    return QILIN_OK;
}
template <>
qilin_status mla_tc<float>(const qilin_mla_attention_args *, const TileParams &, qilin_stream *, bool *used) {
    *used = false;
    return QILIN_OK;
}

template <class T> static qilin_status launch_mla(const qilin_mla_attention_args *a, qilin_stream *stream) {
    const char *who = "qilin_mla_attention";
    TileParams p = mla_params(a);
    bool used = false;
    QILIN_TRY(mla_tc<T>(a, p, stream, &used));
    if (used) return QILIN_OK;
    size_t smem = 0;
    QILIN_TRY(attn::tile_smem_bytes<MlaShape>(&smem, who, a->r + a->dr, a->r, true));
    const int64_t rows = (int64_t)a->tokens * a->n_heads;
    attn::SplitPlan plan;
    QILIN_TRY(attn::plan_splits(&plan, who, rows, a->max_kv_len, (int64_t)p.q_tiles * a->n_seqs, MlaShape::BK, a->r,
                                a->workspace, a->workspace_bytes));
    p.n_splits = plan.n_splits, p.chunk_len = plan.chunk_len;
    attn::set_workspace(&p, a->workspace, rows, plan.n_splits);
    return attn::launch_tiles<T, MlaShape>(p, 1, a->n_seqs, a->max_q_len, smem, stream);
}

extern "C" qilin_status qilin_mla_attention(const qilin_mla_attention_args *a, qilin_stream *stream) {
    QILIN_TRY(check_mla(a));
    if (a->n_seqs == 0 || a->tokens == 0 || a->max_q_len == 0) return QILIN_OK;
    switch (a->dtype) {
    case QILIN_F32: return launch_mla<float>(a, stream);
    case QILIN_BF16: return launch_mla<__nv_bfloat16>(a, stream);
    default: return launch_mla<__half>(a, stream);
    }
}

extern "C" size_t qilin_mla_attention_workspace(int tokens, int n_heads, int r, int max_kv_len) {
    if (tokens <= 0 || n_heads <= 0 || r <= 0) return 0;
    const int64_t rows = (int64_t)tokens * n_heads;
    return attn::max_workspace_bytes(rows, r, max_kv_len);
}

/* ---- naive-form keys -------------------------------------------------------------- */

struct ExpandParams {
    void *k;
    const void *kv, *k_pe;
    int64_t pe_stride;
    int n_heads, dn, dv, dr;
};

template <class E, bool kVec> __global__ void mla_expand_k_kernel(const ExpandParams p) {
    constexpr int V = kVec ? Vec16<E>::n : 1;
    const int64_t t = blockIdx.x;
    const int dk = p.dn + p.dr, gpr = dk / V;
    E *k = (E *)p.k + t * p.n_heads * dk;
    const E *kv = (const E *)p.kv + t * p.n_heads * (p.dn + p.dv), *pe = (const E *)p.k_pe + t * p.pe_stride;
    for (int idx = threadIdx.x; idx < p.n_heads * gpr; idx += blockDim.x) {
        const int h = idx / gpr, d = idx % gpr * V;
        alignas(16) E tmp[V]; /* read and written as Vec16 when kVec */
        if (d < p.dn)
            load_elems<E, kVec>(tmp, kv + (int64_t)h * (p.dn + p.dv) + d, 0);
        else
            load_elems<E, kVec>(tmp, pe + (d - p.dn), 0);
        store_elems<E, kVec>(k + (int64_t)h * dk + d, tmp, 0);
    }
}

template <class E> static qilin_status launch_expand(const qilin_mla_expand_k_args *a, qilin_stream *stream) {
    constexpr int V = Vec16<E>::n;
    ExpandParams p = {a->k, a->kv, a->k_pe, a->pe_stride, a->n_heads, a->dn, a->dv, a->dr};
    const uintptr_t ptrs = (uintptr_t)a->k | (uintptr_t)a->kv | (uintptr_t)a->k_pe;
    const bool vec = ptrs % 16 == 0 && (a->dn | a->dv | a->dr | a->pe_stride) % V == 0;
    const int work = a->n_heads * (a->dn + a->dr) / (vec ? V : 1);
    const int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    if (vec) return QILIN_LAUNCH((mla_expand_k_kernel<E, true>), dim3(a->n), dim3(threads), 0, stream, p);
    return QILIN_LAUNCH((mla_expand_k_kernel<E, false>), dim3(a->n), dim3(threads), 0, stream, p);
}

extern "C" qilin_status qilin_mla_expand_k(const qilin_mla_expand_k_args *a, qilin_stream *stream) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_mla_expand_k: args is NULL");
    if (a->n < 0 || a->n_heads <= 0 || a->dn <= 0 || a->dv <= 0 || a->dr <= 0 || a->pe_stride < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_mla_expand_k: bad shape n=%d n_heads=%d dn=%d dv=%d dr=%d pe_stride=%lld", a->n,
                           a->n_heads, a->dn, a->dv, a->dr, (long long)a->pe_stride);
    if (a->n == 0) return QILIN_OK;
    if (!a->k || !a->kv || !a->k_pe)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_mla_expand_k: k, kv and k_pe must be set");
    switch (a->dtype) {
    case QILIN_F32: return launch_expand<uint32_t>(a, stream);
    case QILIN_BF16:
    case QILIN_F16: return launch_expand<uint16_t>(a, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_mla_expand_k: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}
