/* attention.cu — KV-cache append and causal softmax attention (MHA, GQA, MQA)
 * over a per-sequence cache; the contract is in attention.h.
 *
 * qilin_kv_append: one block per new token copies its K and V rows (all KV
 * heads) into the cache in 16-byte groups; the copy is bitwise, so it is
 * templated on the element size only. The caller resolves each token's
 * block (token_slot) from its sequence's block table; the kernel takes the
 * offset in the block. Tokens whose slot or position is out of range are
 * skipped.
 *
 * qilin_attention_prefill, bf16/f16: the tensor-core FlashAttention-2 kernel
 * of attention_prefill.cuh when every row is 16-byte aligned and the head
 * dims' bucket fits the device's shared memory (prefill_mma below).
 *
 * qilin_attention_prefill otherwise (f32, the exact mode; misaligned strides)
 * and qilin_attention_decode: the tiled online-softmax
 * block of attention_tile.cuh. A block owns M rows = (query token, head of
 * one KV group) of one sequence, so GQA heads load each K/V tile once.
 *   prefill: M = 64 rows, 32-key tiles, 256 threads; grid (row tiles, KV
 *            heads, sequences); the whole causal range in one block.
 *   decode:  M = 8 rows (groups up to 8 heads) or 16, 32-key tiles, 128
 *            threads; the keys are also split into chunks (flash-decoding)
 *            so that about two blocks per SM run even for one long sequence:
 *            each writes an unnormalised partial and (max, sum) per row to
 *            the workspace and merge_splits_kernel combines them. The split
 *            count comes from the SM count, max_kv_len and the workspace.
 *   decode, bf16/f16 with GQA group >= 2: the tensor-core kernel of
 *            attention_decode.cuh instead (16-row mma tiles of the group,
 *            cp.async ring), same split plan and merge; shapes it does not
 *            take (dims not multiples of 16, unaligned) and fp32 stay here.
 * head_dim and head_dim_v are any multiples of 8 up to 256 (instantiated
 * for head_dim_v <= 128 and <= 256; unused value chunks are skipped).
 * Scores, softmax and accumulation are fp32; the output is rounded once.
 *
 * Paging: every kernel finds a key row through the sequence's block table
 * (kv_row / cache_row: one table load, one division by the block size per
 * row), so tiles may straddle blocks and any block size works; block_size 0
 * (contiguous slots) is a block spanning 2^30 positions. With blocks that
 * are a multiple of the 32-key tiles (the forward's defaults: 32 for GQA,
 * 64 for MLA, FlashMLA's page) a tile's rows share one table entry, which
 * the L1 serves after its first load; the row addresses are computed per row
 * in both cases, so the cost over contiguous slots is that integer work,
 * small beside the 16-byte loads it feeds (not measured on a GPU yet). */
#include <cmath>

#include "attention_decode.cuh"
#include "attention_prefill.cuh"
#include "attention_tile.cuh"
#include "kernels.h"

using attn::Shape;
using attn::TileParams;

/* rows, keys per tile, threads, score lanes per row, PV lanes, max head_dim_v,
 * blocks per SM (shared memory at head_dim 128 / 256: prefill 79 / 144 KB,
 * decode 38-42 / 74-82 KB) */
using PrefillShape128 = Shape<64, 32, 256, 8, 16, 128, 2>;
using PrefillShape256 = Shape<64, 32, 256, 8, 16, 256, 1>;
using Decode8Shape128 = Shape<8, 32, 128, 16, 16, 128, 4>;
using Decode8Shape256 = Shape<8, 32, 128, 16, 16, 256, 2>;
using Decode16Shape128 = Shape<16, 32, 128, 8, 16, 128, 4>;
using Decode16Shape256 = Shape<16, 32, 128, 8, 16, 256, 2>;

/* ---- append ----------------------------------------------------------------- */

/* Copies `dim` elements of one head row; groups of 16 bytes when kVec. */
template <class E, bool kVec> __device__ inline void copy_head_rows(E *dst_base, const qilin_kv_layout &l, int slot,
                                                                    int off, const E *src, int64_t token_stride,
                                                                    int64_t head_stride, int t, int heads, int dim) {
    constexpr int V = kVec ? Vec16<E>::n : 1;
    const int gpr = dim / V;
    for (int idx = threadIdx.x; idx < heads * gpr; idx += blockDim.x) {
        const int g = idx / gpr, i = idx % gpr;
        const E *s = src + t * token_stride + g * head_stride;
        E *d = dst_base + (int64_t)slot * l.slot_stride + (int64_t)off * l.pos_stride + (int64_t)g * l.head_stride;
        alignas(16) E tmp[V]; /* read and written as Vec16 when kVec */
        load_elems<E, kVec>(tmp, s, i);
        store_elems<E, kVec>(d, tmp, i);
    }
}

struct AppendParams {
    void *k_cache, *v_cache;
    qilin_kv_layout kl, vl;
    const void *k, *v;
    int64_t k_ts, k_hs, v_ts, v_hs;
    const int *token_slot, *positions;
    int n_kv_heads, head_dim, head_dim_v, max_ctx, block_size; /* block_size: qilin_kv_block_span */
};

template <class E, bool kVec> __global__ void kv_append_kernel(const AppendParams p) {
    const int t = blockIdx.x, slot = p.token_slot[t], pos = p.positions[t];
    if (slot < 0 || pos < 0 || pos >= p.max_ctx) return;
    const int off = pos % p.block_size; /* offset in its block */
    copy_head_rows<E, kVec>((E *)p.k_cache, p.kl, slot, off, (const E *)p.k, p.k_ts, p.k_hs, t, p.n_kv_heads,
                            p.head_dim);
    copy_head_rows<E, kVec>((E *)p.v_cache, p.vl, slot, off, (const E *)p.v, p.v_ts, p.v_hs, t, p.n_kv_heads,
                            p.head_dim_v);
}

static bool layout_ok(const qilin_kv_layout &l) { return l.slot_stride >= 0 && l.pos_stride >= 0 && l.head_stride >= 0; }

static int64_t layout_bits(const qilin_kv_layout &l) { return l.slot_stride | l.pos_stride | l.head_stride; }

template <class E> static qilin_status launch_append(const qilin_kv_append_args *a, qilin_stream *stream) {
    constexpr int V = Vec16<E>::n;
    AppendParams p = {a->k_cache, a->v_cache, a->k_layout, a->v_layout, a->k, a->v,
                      a->k_token_stride, a->k_head_stride, a->v_token_stride, a->v_head_stride,
                      a->token_slot, a->positions, a->n_kv_heads, a->head_dim, a->head_dim_v, a->max_ctx,
                      qilin_kv_block_span(a->block_size)};
    const uintptr_t ptrs = (uintptr_t)a->k_cache | (uintptr_t)a->v_cache | (uintptr_t)a->k | (uintptr_t)a->v;
    const int64_t strides = layout_bits(a->k_layout) | layout_bits(a->v_layout) | a->k_token_stride |
                            a->k_head_stride | a->v_token_stride | a->v_head_stride;
    const bool vec = ptrs % 16 == 0 && strides % V == 0 && a->head_dim % V == 0 && a->head_dim_v % V == 0;
    const int work = a->n_kv_heads * (a->head_dim > a->head_dim_v ? a->head_dim : a->head_dim_v) / (vec ? V : 1);
    const int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    if (vec) return QILIN_LAUNCH((kv_append_kernel<E, true>), dim3(a->tokens), dim3(threads), 0, stream, p);
    return QILIN_LAUNCH((kv_append_kernel<E, false>), dim3(a->tokens), dim3(threads), 0, stream, p);
}

extern "C" qilin_status qilin_kv_append(const qilin_kv_append_args *a, qilin_stream *stream) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_kv_append: args is NULL");
    if (a->tokens < 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 || a->head_dim_v <= 0 || a->max_ctx <= 0 ||
        a->block_size < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_kv_append: bad shape tokens=%d n_kv_heads=%d head_dim=%d head_dim_v=%d max_ctx=%d "
                           "block_size=%d",
                           a->tokens, a->n_kv_heads, a->head_dim, a->head_dim_v, a->max_ctx, a->block_size);
    if (a->tokens == 0) return QILIN_OK;
    if (!a->k_cache || !a->v_cache || !a->k || !a->v || !a->token_slot || !a->positions)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "qilin_kv_append: k_cache, v_cache, k, v, token_slot and positions must be set");
    if (!layout_ok(a->k_layout) || !layout_ok(a->v_layout) || a->k_token_stride < 0 || a->k_head_stride < 0 ||
        a->v_token_stride < 0 || a->v_head_stride < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "qilin_kv_append: strides must be >= 0");
    switch (a->dtype) {
    case QILIN_F32: return launch_append<uint32_t>(a, stream);
    case QILIN_BF16:
    case QILIN_F16: return launch_append<uint16_t>(a, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "qilin_kv_append: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}

/* ---- attention ---------------------------------------------------------------- */

static qilin_status check_attention(const qilin_attention_args *a, const char *who) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: args is NULL", who);
    if (a->n_seqs < 0 || a->tokens < 0 || a->max_q_len < 0 || a->max_kv_len < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: bad batch n_seqs=%d tokens=%d max_q_len=%d max_kv_len=%d",
                           who, a->n_seqs, a->tokens, a->max_q_len, a->max_kv_len);
    if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: n_heads=%d must be a positive multiple of n_kv_heads=%d",
                           who, a->n_heads, a->n_kv_heads);
    if (a->head_dim <= 0 || a->head_dim % 8 != 0 || a->head_dim > 256)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: head_dim=%d must be a multiple of 8 in [8, 256]", who,
                           a->head_dim);
    if (a->head_dim_v <= 0 || a->head_dim_v % 8 != 0 || a->head_dim_v > 256)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: head_dim_v=%d must be a multiple of 8 in [8, 256]", who,
                           a->head_dim_v);
    if (!std::isfinite(a->scale))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: scale must be finite, got %g", who, (double)a->scale);
    if (a->sliding_window < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: sliding_window=%d must be >= 0", who, a->sliding_window);
    if (a->block_size < 0 || (a->block_size > 0 && a->table_stride < (a->max_kv_len + a->block_size - 1) / a->block_size))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: block_size=%d must be >= 0 and table_stride=%d hold max_kv_len=%d positions", who,
                           a->block_size, a->table_stride, a->max_kv_len);
    if (!layout_ok(a->k_layout) || !layout_ok(a->v_layout) || a->q_token_stride < 0 || a->q_head_stride < 0 ||
        a->out_token_stride < 0 || a->out_head_stride < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "%s: strides must be >= 0", who);
    if (a->dtype != QILIN_F32 && a->dtype != QILIN_BF16 && a->dtype != QILIN_F16)
        return qilin_error(QILIN_ERR_UNSUPPORTED, "%s: dtype %s is not supported (f32, bf16, f16)", who,
                           qilin_dtype_name(a->dtype));
    if (a->n_seqs == 0 || a->tokens == 0 || a->max_q_len == 0) return QILIN_OK;
    if (!a->out || !a->q || !a->k_cache || !a->v_cache || !a->q_start || !a->kv_len || !a->seq_slot)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: out, q, k_cache, v_cache, q_start, kv_len and seq_slot must be set", who);
    return QILIN_OK;
}

static TileParams tile_params(const qilin_attention_args *a) {
    TileParams p = {};
    p.qa = a->q;
    p.qa_ts = a->q_token_stride, p.qa_hs = a->q_head_stride;
    p.ka = a->k_cache, p.ka_l = a->k_layout;
    p.va = a->v_cache, p.va_l = a->v_layout;
    p.da = a->head_dim, p.db = 0, p.dv = a->head_dim_v;
    p.out = a->out;
    p.out_ts = a->out_token_stride, p.out_hs = a->out_head_stride;
    p.q_start = a->q_start, p.kv_len = a->kv_len, p.seq_slot = a->seq_slot;
    p.table_stride = qilin_kv_table_stride(a->table_stride, a->block_size);
    p.block_size = qilin_kv_block_span(a->block_size);
    p.group = a->n_heads / a->n_kv_heads;
    p.n_heads = a->n_heads;
    p.window = a->sliding_window;
    p.qscale = a->scale * attn::kLog2e;
    p.n_splits = 1;
    p.chunk_len = INT_MAX;
    const int V = 16 / (int)qilin_dtype_size(a->dtype);
    const uintptr_t ptrs = (uintptr_t)a->q | (uintptr_t)a->k_cache | (uintptr_t)a->v_cache | (uintptr_t)a->out;
    const int64_t strides = layout_bits(a->k_layout) | layout_bits(a->v_layout) | a->q_token_stride |
                            a->q_head_stride | a->out_token_stride | a->out_head_stride;
    p.vec = ptrs % 16 == 0 && strides % V == 0;
    return p;
}

/* One dtype and shape: smem check, split plan (decode), launch. */
template <class T, class S>
static qilin_status run_tiles(const qilin_attention_args *a, TileParams p, bool decode, const char *who,
                              qilin_stream *stream) {
    size_t smem = 0;
    QILIN_TRY(attn::tile_smem_bytes<S>(&smem, who, a->head_dim, a->head_dim_v, false));
    const int q_len = decode ? 1 : a->max_q_len;
    p.q_tiles = (q_len * p.group + S::M - 1) / S::M;
    if (decode) {
        const int64_t rows = (int64_t)a->n_seqs * a->n_heads;
        const int64_t blocks = (int64_t)p.q_tiles * a->n_kv_heads * a->n_seqs;
        attn::SplitPlan plan;
        QILIN_TRY(attn::plan_splits(&plan, who, rows, a->max_kv_len, blocks, S::BK, a->head_dim_v, a->workspace,
                                    a->workspace_bytes));
        p.n_splits = plan.n_splits;
        p.chunk_len = plan.chunk_len;
        attn::set_workspace(&p, a->workspace, rows, plan.n_splits);
    }
    return attn::launch_tiles<T, S>(p, a->n_kv_heads, a->n_seqs, q_len, smem, stream);
}

/* Decode on tensor cores (attention_decode.cuh) when the GQA group is at
 * least 2 heads: the group fills rows of a 16-row mma tile and each K/V
 * tile is read once for it. Group 1 (MHA) stays on the CUDA-core kernel:
 * there each K/V row meets one query row, about 2 FLOP per byte read, far
 * below what CUDA cores deliver per byte of HBM bandwidth, so tensor cores
 * (15 of 16 mma rows padding) cannot make it faster; both kernels read K/V
 * once (not measured on a GPU yet). Sets *used = false (and launches
 * nothing) when the shape or alignment does not fit the kernel. */
template <class T>
static qilin_status decode_tc(const qilin_attention_args *a, TileParams p, const char *who, qilin_stream *stream,
                              bool *used) {
    using S = attn_tc::GqaShape;
    *used = false;
    if (p.group < 2 || !attn_tc::tc_args_ok(p, S::DV_MAX)) return QILIN_OK;
    size_t smem = 0;
    QILIN_TRY(attn_tc::tc_smem_bytes<S>(&smem, a->head_dim, a->head_dim_v, false));
    if (smem == 0) return QILIN_OK;
    *used = true;
    p.q_tiles = (p.group + S::M - 1) / S::M;
    return attn_tc::launch_decode_tc<T, S>(p, who, (int64_t)a->n_seqs * a->n_heads, a->max_kv_len, a->n_kv_heads,
                                          a->n_seqs, 1, smem, a->workspace, a->workspace_bytes, stream);
}

/* fp32 is the exact mode: it keeps the CUDA-core fp32 FMA kernel (no tf32). */
static qilin_status decode_on_tensor_cores(const qilin_attention_args *a, const char *who, qilin_stream *stream,
                                          bool *used) {
    *used = false;
    switch (a->dtype) {
    case QILIN_BF16: return decode_tc<__nv_bfloat16>(a, tile_params(a), who, stream, used);
    case QILIN_F16: return decode_tc<__half>(a, tile_params(a), who, stream, used);
    default: return QILIN_OK;
    }
}

template <class T>
static qilin_status dispatch_shape(const qilin_attention_args *a, bool decode, const char *who, qilin_stream *stream) {
    TileParams p = tile_params(a);
    const bool wide = a->head_dim_v > 128;
    if (!decode)
        return wide ? run_tiles<T, PrefillShape256>(a, p, false, who, stream)
                    : run_tiles<T, PrefillShape128>(a, p, false, who, stream);
    if (p.group <= 8)
        return wide ? run_tiles<T, Decode8Shape256>(a, p, true, who, stream)
                    : run_tiles<T, Decode8Shape128>(a, p, true, who, stream);
    return wide ? run_tiles<T, Decode16Shape256>(a, p, true, who, stream)
                : run_tiles<T, Decode16Shape128>(a, p, true, who, stream);
}

static qilin_status attention(const qilin_attention_args *a, bool decode, const char *who, qilin_stream *stream) {
    switch (a->dtype) {
    case QILIN_F32: return dispatch_shape<float>(a, decode, who, stream);
    case QILIN_BF16: return dispatch_shape<__nv_bfloat16>(a, decode, who, stream);
    default: return dispatch_shape<__half>(a, decode, who, stream);
    }
}

/* Prefill of bf16/f16 runs on tensor cores (attention_prefill.cuh) when its
 * rows are 16-byte aligned and the head dims' bucket fits the device's shared
 * memory; f32 (the exact mode), misaligned strides and a bucket too big for
 * the device (e.g. dk > 128 on 99 KB sm_86/89 parts) keep the CUDA-core tile
 * kernel. *served says which ran. */
template <class T>
static qilin_status prefill_mma(const qilin_attention_args *a, qilin_stream *stream, bool *served) {
    using namespace attn_mma;
    *served = false;
    if (!aligned_for_mma(a)) return QILIN_OK;
    int device = 0;
    qilin_device_props props;
    QILIN_TRY(qilin_device_get(&device));
    QILIN_TRY(qilin_device_get_props(device, &props));
    const int dk = a->head_dim, dv = a->head_dim_v;
    auto fits = [&](size_t bytes) { return bytes <= props.shared_mem_per_block_optin; };
    *served = true;
    if (dk <= 64 && dv <= 64 && fits(BucketD64::SMEM_BYTES)) return launch_bucket<T, BucketD64>(a, stream);
    if (dk <= 128 && dv <= 128 && fits(BucketD128::SMEM_BYTES)) return launch_bucket<T, BucketD128>(a, stream);
    if (dk <= 192 && dv <= 128 && fits(BucketD192::SMEM_BYTES)) return launch_bucket<T, BucketD192>(a, stream);
    if (fits(BucketD256::SMEM_BYTES)) return launch_bucket<T, BucketD256>(a, stream);
    *served = false;
    return QILIN_OK;
}

extern "C" qilin_status qilin_attention_prefill(const qilin_attention_args *a, qilin_stream *stream) {
    const char *who = "qilin_attention_prefill";
    QILIN_TRY(check_attention(a, who));
    if (a->n_seqs == 0 || a->tokens == 0 || a->max_q_len == 0) return QILIN_OK;
    bool served = false;
    if (a->dtype == QILIN_BF16) QILIN_TRY(prefill_mma<__nv_bfloat16>(a, stream, &served));
    if (a->dtype == QILIN_F16) QILIN_TRY(prefill_mma<__half>(a, stream, &served));
    if (served) return QILIN_OK;
    return attention(a, false, who, stream);
}

extern "C" qilin_status qilin_attention_decode(const qilin_attention_args *a, qilin_stream *stream) {
    const char *who = "qilin_attention_decode";
    QILIN_TRY(check_attention(a, who));
    if (a->max_q_len > 1 || a->tokens != a->n_seqs)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "%s: one query per sequence: max_q_len=%d must be <= 1 and tokens=%d equal n_seqs=%d", who,
                           a->max_q_len, a->tokens, a->n_seqs);
    if (a->n_seqs == 0 || a->max_q_len == 0) return QILIN_OK;
    bool used = false;
    QILIN_TRY(decode_on_tensor_cores(a, who, stream, &used));
    if (used) return QILIN_OK;
    return attention(a, true, who, stream);
}

extern "C" size_t qilin_attention_decode_workspace(int n_seqs, int n_heads, int head_dim_v, int max_kv_len) {
    if (n_seqs <= 0 || n_heads <= 0 || head_dim_v <= 0) return 0;
    const int64_t rows = (int64_t)n_seqs * n_heads;
    return attn::max_workspace_bytes(rows, head_dim_v, max_kv_len);
}
