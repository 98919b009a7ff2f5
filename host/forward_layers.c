/* forward_layers.c — one forward step on one GPU's shard, as a sequence of
 * kernel launches and collectives (models.md has the math).
 *
 * Data flow of one step over T new tokens (all sequences back to back):
 *
 *   ids -> embedding -> R (the residual stream, [T, hidden])
 *   per layer:
 *     N = norm1(R)                       (fused: R += X of the previous sub-layer)
 *     X = attention(N) | MLA(N)          (writes this step's K/V into the cache)
 *     sequential blocks:  N = norm2(R += X);  X = ffn(N)
 *     parallel blocks:    X += ffn(norm2(R) or N);  R += X at the next norm
 *   N = final_norm(R += X) -> lm_head -> fp32 logits
 *
 * Tensor parallelism (Megatron): every GPU holds the whole residual stream
 * R and the replicated norms; attention runs on its heads (q/k/v column
 * slices, its KV heads in the cache), o_proj on its input columns, so X is
 * a partial sum; the MLP runs on its intermediate columns (gate/up column,
 * down row), MoE experts on theirs (or on its whole experts with expert
 * parallelism), again a partial sum. All-reduces: after the vocab-parallel
 * embedding, after attention and after the FFN (sequential blocks) or once
 * after both (parallel blocks); the lm_head's vocab columns are
 * all-gathered. Row-parallel biases are added on rank 0 only. With one GPU
 * the collectives are skipped and this is the single-device forward.
 *
 * Expert parallelism (opt->ep): GPU g holds experts [e0, e0 + E) whole.
 * Two ways bring tokens to them (opt->ep_dispatch):
 *   replicated (default): the router runs on every GPU over every token
 *     (attention is tensor-parallel, so each GPU already has all tokens'
 *     activations: the "dispatch" needs no communication), each GPU
 *     computes the assignments to its own experts (others' ids are shifted
 *     out of range and skipped by the kernel), and the per-token partial
 *     sums are completed by the same all-reduce that closes every FFN: no
 *     extra collective, 2 per layer as in "tp" mode.
 *   all-to-all: GPU r routes only its share of the rows, [r S, (r + 1) S)
 *     with S = ceil(T / n), sends each (row, choice) to the GPU owning the
 *     expert and gets the result back (moe_dispatch.h: count, an all-gather
 *     of the n x n counts read on the host, which sets the equal chunk size
 *     of the all-to-alls, pack, all-to-all of rows and ids, the experts,
 *     all-to-all back, combine); its rows of the routed sum are complete,
 *     the others zero, so the FFN's all-reduce (which also carries the
 *     tensor-parallel shared expert) still closes the layer: 2 all-reduces,
 *     plus 1 all-gather and 3 all-to-alls per MoE layer, and one host sync.
 * With tensor-parallel attention the replicated form is cheaper: the
 * all-to-all moves about top_k rows per token each way (padded to the
 * largest chunk) and waits for a host sync, where replicated adds nothing
 * to the all-reduce every FFN has anyway; what all-to-all saves (the router
 * and the row grouping over all T rows on every GPU) is small. It is the
 * path that data-parallel attention (each GPU with its own tokens, no
 * all-reduce to ride on) and multi-node expert parallelism (experts spread
 * wider than the tensor-parallel group) need.
 *
 * The residual add rides in the norm kernels (qilin_rmsnorm/qilin_layernorm
 * with `residual`), rounded to the activation dtype as Hugging Face adds.
 * Linear layers: qilin_gemv for up to QILIN_GEMV_MAX_M rows (decode), cuBLAS
 * (qilin_gemm) otherwise; weights kept FP8 go through qilin_gemv_fp8 /
 * qilin_gemm_fp8 instead (linear_slot). At decode the projections that read
 * the same input and are plain weights share one launch (qilin_gemv_multi):
 * q, k, v; MLA's q_a (or q), latent and rope key.
 *
 * The step's index arrays (token ids, positions, each token's KV block,
 * sequence starts, block tables, ...) are one device block at fixed addresses, filled by one asynchronous
 * copy from a pinned staging buffer; nothing in a step synchronises the
 * stream except the all-to-all dispatch's count exchange. Decode steps are
 * replayed from captured graphs (the section at the end of this file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "host/forward_impl.h"

/* ---- building blocks ---------------------------------------------------- */

/* A row-parallel layer's bias is added once: on rank 0, before the all-reduce. */
static const void *row_bias(const shard *m, const void *bias) { return m->rank == 0 ? bias : NULL; }

/* x = sum over GPUs of x (in place); nothing with one GPU. */
static qilin_status all_reduce(shard *m, void *x, size_t n) {
    if (m->n_ranks == 1) return QILIN_OK;
    m->stats.all_reduce++;
    return qilin_comm_all_reduce_sum(m->comm, x, x, n, m->opt->dtype, m->stream);
}

/* y[rows, out] = x[rows, in] W[out, in]^T (+ bias), x row stride ldx, y row
 * stride ldy; y in the activation dtype or f32 (y_f32). */
static qilin_status linear(shard *m, void *y, int64_t ldy, const void *x, int64_t ldx, const void *w,
                           const void *bias, int rows, int out, int in, bool y_f32) {
    qilin_dtype dt = m->opt->dtype;
    if (rows <= QILIN_GEMV_MAX_M) {
        qilin_gemv_args g = {.y = y,
                             .x = x,
                             .w = w,
                             .bias = bias,
                             .m = rows,
                             .n = out,
                             .k = in,
                             .ldx = ldx,
                             .ldw = in,
                             .ldy = ldy,
                             .dtype = dt,
                             .y_dtype = y_f32 ? QILIN_F32 : dt};
        return qilin_gemv(&g, m->stream);
    }
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR,
                         .trans_a = QILIN_OP_N,
                         .trans_b = QILIN_OP_T,
                         .m = rows,
                         .n = out,
                         .k = in,
                         .ab_type = dt,
                         .c_type = y_f32 ? QILIN_F32 : dt,
                         .a = x,
                         .lda = ldx,
                         .b = w,
                         .ldb = in,
                         .c = y,
                         .ldc = ldy,
                         .batch = 1,
                         .alpha = 1.0f,
                         .beta = 0.0f};
    QILIN_TRY(qilin_gemm(m->blas, &g, m->stream));
    if (!bias) return QILIN_OK;
    if (y_f32) { /* fp32 output (logits): the bias add needs an fp32 copy of the bias */
        if (bias != m->global[QILIN_W_LM_HEAD_BIAS] || !m->lm_head_bias_f32)
            return qilin_error(QILIN_ERR_INTERNAL, "linear: an fp32 output with a bias other than lm_head's");
        bias = m->lm_head_bias_f32;
    }
    qilin_add_bias_args b = {
        .x = y, .bias = bias, .rows = rows, .cols = out, .ld = ldy, .dtype = y_f32 ? QILIN_F32 : dt};
    return qilin_add_bias(&b, m->stream);
}

/* y = x W^T (+ bias) from GGUF blocks: the GEMV for up to QILIN_GEMV_MAX_M
 * rows, the GEMM beyond; y in the activation dtype or fp32 (logits). */
static qilin_status linear_gguf(shard *m, const gguf_slot *q, const void *w, void *y, int64_t ldy,
                                const void *x, int64_t ldx, const void *bias, int rows, int out, int in,
                                bool y_f32) {
    qilin_dtype dt = m->opt->dtype;
    qilin_gemm_gguf_args g = {.y = y,
                              .x = x,
                              .w = w,
                              .bias = bias,
                              .m = rows,
                              .n = out,
                              .k = in,
                              .ldx = ldx,
                              .ldw = q->ldw,
                              .ldy = ldy,
                              .format = q->format,
                              .dtype = dt,
                              .y_dtype = y_f32 ? QILIN_F32 : dt};
    return rows <= QILIN_GEMV_MAX_M ? qilin_gemv_gguf(&g, m->stream) : qilin_gemm_gguf(&g, m->stream);
}

/* Whether layer L's weight `slot` stays quantized on the device (FP8 or
 * GGUF blocks): such a weight goes through linear_slot one matrix at a
 * time, never the fused or stacked plain-weight launches. */
static bool kept_quantized(const layer *L, int slot) { return L->fp8[slot].scale || L->gguf[slot].on; }

/* linear() on layer L's weight `slot`: straight from the FP8 bytes and
 * block scales when the weight was kept FP8 (forward_load.c's stays_fp8):
 * the FP8 GEMV for up to QILIN_GEMV_MAX_M rows when the slice starts on the
 * 128 grid (the GEMV has no block offsets), the FP8 GEMM otherwise; in the
 * activation dtype otherwise. y in the activation dtype. */
static qilin_status linear_slot(shard *m, const layer *L, int slot, void *y, int64_t ldy, const void *x,
                                int64_t ldx, const void *bias, int rows, int out, int in) {
    const fp8_slot *f = &L->fp8[slot];
    qilin_dtype dt = m->opt->dtype;
    if (L->gguf[slot].on) /* GGUF blocks as stored (forward_load.c's stays_gguf) */
        return linear_gguf(m, &L->gguf[slot], L->w[slot], y, ldy, x, ldx, bias, rows, out, in, false);
    if (!f->scale) return linear(m, y, ldy, x, ldx, L->w[slot], bias, rows, out, in, false);
    if (rows <= QILIN_GEMV_MAX_M && f->row_off == 0 && f->col_off == 0) {
        qilin_gemv_fp8_args g = {.y = y,
                                 .x = x,
                                 .w = L->w[slot],
                                 .w_scale = f->scale,
                                 .bias = bias,
                                 .m = rows,
                                 .n = out,
                                 .k = in,
                                 .ldx = ldx,
                                 .ldw = in,
                                 .ld_scale = f->ld_scale,
                                 .ldy = ldy,
                                 .dtype = dt,
                                 .y_dtype = dt};
        return qilin_gemv_fp8(&g, m->stream);
    }
    qilin_gemm_fp8_args g = {.y = y,
                             .x = x,
                             .w = L->w[slot],
                             .w_scale = f->scale,
                             .bias = bias,
                             .m = rows,
                             .n = out,
                             .k = in,
                             .row_off = f->row_off,
                             .col_off = f->col_off,
                             .ldx = ldx,
                             .ldw = in,
                             .ld_scale = f->ld_scale,
                             .ldy = ldy,
                             .dtype = dt,
                             .y_dtype = dt};
    return qilin_gemm_fp8(&g, m->stream);
}

/* out = norm(x) with the layer's norm kind; with residual: residual += x first. */
static qilin_status norm(shard *m, void *out, void *residual, const void *x, const void *w, const void *b,
                         int rows, int dim, float eps) {
    if (m->desc->norm == QILIN_NORM_LAYER) {
        qilin_layernorm_args a = {.out = out,
                                  .residual = residual,
                                  .x = x,
                                  .weight = w,
                                  .bias = b,
                                  .rows = rows,
                                  .dim = dim,
                                  .eps = eps,
                                  .dtype = m->opt->dtype};
        return qilin_layernorm(&a, m->stream);
    }
    qilin_rmsnorm_args a = {.out = out,
                            .residual = residual,
                            .x = x,
                            .weight = w,
                            .rows = rows,
                            .dim = dim,
                            .eps = eps,
                            .dtype = m->opt->dtype};
    return qilin_rmsnorm(&a, m->stream);
}

static char *slot_ptr(void *base, int64_t elems, size_t es) { return (char *)base + (size_t)elems * es; }

/* ---- attention ---------------------------------------------------------- */

static qilin_status rope(shard *m, const step *s, void *q, int64_t q_ts, int64_t q_hs, int nq, void *k,
                         int64_t k_ts, int64_t k_hs, int nk) {
    const qilin_model_desc *d = m->desc;
    if (d->rope.rot_dim <= 0) return QILIN_OK;
    qilin_rope_args r = {.q = q,
                         .q_token_stride = q_ts,
                         .q_head_stride = q_hs,
                         .n_q_heads = nq,
                         .k = k,
                         .k_token_stride = k_ts,
                         .k_head_stride = k_hs,
                         .n_k_heads = nk,
                         .positions = m->d_positions,
                         .inv_freq = m->inv_freq,
                         .cos_sin_scale = m->cos_sin_scale,
                         .tokens = s->T,
                         .rot_dim = d->rope.rot_dim,
                         .pairing = d->rope.pairing,
                         .dtype = m->opt->dtype};
    return qilin_rope(&r, m->stream);
}

/* q, k, v = N W_q^T, N W_k^T, N W_v^T (+ biases), rows of nh hd, nkv hd,
 * nkv hdv: at decode one launch over the three weights (qilin_gemv_multi),
 * otherwise one linear each. The fused launch reads plain weights in the
 * activation dtype only: a quantized weight format must take the
 * three-linear path. */
static qilin_status qkv_projections(shard *m, layer *L, void *q, void *k, void *v, int T) {
    int H = m->desc->hidden, nq = m->nh * m->desc->head_dim, nk = m->nkv * m->desc->head_dim,
        nv = m->nkv * m->desc->head_dim_v;
    bool fp8 = kept_quantized(L, QILIN_W_Q) || kept_quantized(L, QILIN_W_K) || kept_quantized(L, QILIN_W_V);
    if (T > QILIN_GEMV_MAX_M || fp8) {
        QILIN_TRY(linear_slot(m, L, QILIN_W_Q, q, nq, m->N, H, L->w[QILIN_W_Q_BIAS], T, nq, H));
        QILIN_TRY(linear_slot(m, L, QILIN_W_K, k, nk, m->N, H, L->w[QILIN_W_K_BIAS], T, nk, H));
        return linear_slot(m, L, QILIN_W_V, v, nv, m->N, H, L->w[QILIN_W_V_BIAS], T, nv, H);
    }
    qilin_gemv_multi_args g = {.x = m->N,
                               .m = T,
                               .k = H,
                               .ldx = H,
                               .n_outputs = 3,
                               .out = {{q, L->w[QILIN_W_Q], L->w[QILIN_W_Q_BIAS], nq, H, nq},
                                       {k, L->w[QILIN_W_K], L->w[QILIN_W_K_BIAS], nk, H, nk},
                                       {v, L->w[QILIN_W_V], L->w[QILIN_W_V_BIAS], nv, H, nv}},
                               .dtype = m->opt->dtype,
                               .y_dtype = m->opt->dtype};
    return qilin_gemv_multi(&g, m->stream);
}

/* Standard attention: Q, K, V projections (fused for GPT-NeoX), optional
 * per-head q/k RMSNorm (Qwen3), RoPE, cache append, attention, o_proj -> X. */
static qilin_status gqa_attention(shard *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden, nh = m->nh, nkv = m->nkv, hd = d->head_dim, hdv = d->head_dim_v;
    size_t es = m->es;
    void *q, *k, *v;
    int64_t q_ts, q_hs, k_ts, k_hs, v_ts, v_hs;
    if (L->w[QILIN_W_QKV]) { /* GPT-NeoX: per head [q k v] */
        QILIN_TRY(linear(m, m->B1, 3 * nh * hd, m->N, H, L->w[QILIN_W_QKV], L->w[QILIN_W_QKV_BIAS], T,
                         3 * nh * hd, H, false));
        q = m->B1, k = slot_ptr(m->B1, hd, es), v = slot_ptr(m->B1, 2 * hd, es);
        q_ts = k_ts = v_ts = 3 * nh * hd;
        q_hs = k_hs = v_hs = 3 * hd;
    } else {
        q = m->B1, k = m->B2, v = m->B4;
        q_ts = nh * hd, k_ts = nkv * hd, v_ts = nkv * hdv;
        q_hs = k_hs = hd, v_hs = hdv;
        QILIN_TRY(qkv_projections(m, L, q, k, v, T));
        if (d->qk_norm) { /* Qwen3: RMSNorm over each head's dims, before RoPE */
            QILIN_TRY(norm(m, q, NULL, q, L->w[QILIN_W_Q_NORM], NULL, T * nh, hd, d->norm_eps));
            QILIN_TRY(norm(m, k, NULL, k, L->w[QILIN_W_K_NORM], NULL, T * nkv, hd, d->norm_eps));
        }
    }
    QILIN_TRY(rope(m, s, q, q_ts, q_hs, nh, k, k_ts, k_hs, nkv));
    qilin_kv_append_args ap = {.k_cache = L->k_cache,
                               .v_cache = L->v_cache,
                               .k_layout = m->k_layout,
                               .v_layout = m->v_layout,
                               .k = k,
                               .k_token_stride = k_ts,
                               .k_head_stride = k_hs,
                               .v = v,
                               .v_token_stride = v_ts,
                               .v_head_stride = v_hs,
                               .token_slot = m->d_token_slot,
                               .positions = m->d_positions,
                               .tokens = T,
                               .n_kv_heads = nkv,
                               .head_dim = hd,
                               .head_dim_v = hdv,
                               .max_ctx = m->opt->max_ctx,
                               .block_size = m->kv_block_size,
                               .dtype = m->opt->dtype};
    QILIN_TRY(qilin_kv_append(&ap, m->stream));
    void *o = m->B3;
    qilin_attention_args a = {.out = o,
                              .out_token_stride = (int64_t)nh * hdv,
                              .out_head_stride = hdv,
                              .q = q,
                              .q_token_stride = q_ts,
                              .q_head_stride = q_hs,
                              .k_cache = L->k_cache,
                              .v_cache = L->v_cache,
                              .k_layout = m->k_layout,
                              .v_layout = m->v_layout,
                              .q_start = m->d_q_start,
                              .kv_len = m->d_kv_len,
                              .seq_slot = m->d_seq_slot,
                              .table_stride = m->table_stride,
                              .block_size = m->kv_block_size,
                              .n_seqs = s->n_seqs,
                              .tokens = T,
                              .max_q_len = s->max_q,
                              .max_kv_len = s->max_kv,
                              .n_heads = nh,
                              .n_kv_heads = nkv,
                              .head_dim = hd,
                              .head_dim_v = hdv,
                              .scale = d->attn_scale,
                              .sliding_window = d->sliding_window,
                              .dtype = m->opt->dtype,
                              .workspace = m->attn_ws,
                              .workspace_bytes = m->attn_ws_bytes};
    QILIN_TRY(s->decode ? qilin_attention_decode(&a, m->stream) : qilin_attention_prefill(&a, m->stream));
    return linear_slot(m, L, QILIN_W_O, m->X, H, o, (int64_t)nh * hdv, row_bias(m, L->w[QILIN_W_O_BIAS]), T,
                       H, nh * hdv);
}

/* Per-head GEMM against kv_b [nh (dn + dv), r], batched over heads:
 * C_h[T, n] = A_h[T, k] op(B_h) with B_h = kv_b rows h (dn + dv) + row0 on. */
static qilin_status per_head_gemm(shard *m, void *c, int64_t ldc, int64_t stride_c, const void *a,
                                  int64_t lda, int64_t stride_a, const void *kv_b, int row0, bool trans_b,
                                  int T, int n, int k) {
    const qilin_model_desc *d = m->desc;
    int r = d->kv_lora_rank, per_head = d->qk_nope_dim + d->v_head_dim;
    qilin_gemm_desc g = {.layout = QILIN_ROW_MAJOR,
                         .trans_a = QILIN_OP_N,
                         .trans_b = trans_b ? QILIN_OP_T : QILIN_OP_N,
                         .m = T,
                         .n = n,
                         .k = k,
                         .ab_type = m->opt->dtype,
                         .c_type = m->opt->dtype,
                         .a = a,
                         .lda = lda,
                         .stride_a = stride_a,
                         .b = slot_ptr((void *)kv_b, (int64_t)row0 * r, m->es),
                         .ldb = r,
                         .stride_b = (int64_t)per_head * r,
                         .c = c,
                         .ldc = ldc,
                         .stride_c = stride_c,
                         .batch = m->nh,
                         .alpha = 1.0f,
                         .beta = 0.0f};
    return qilin_gemm(m->blas, &g, m->stream);
}

/* Positions [p0, p0 + n) of a sequence, held by consecutive physical
 * blocks from `block` on: up-projects their latents with kv_b into rows p0..
 * of mla_kvb and assembles their per-head keys [k_nope ; k_pe] in mla_k. */
static qilin_status mla_naive_run(shard *m, layer *L, int block, int p0, int n) {
    const qilin_model_desc *d = m->desc;
    int nh = m->nh, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim, r = d->kv_lora_rank;
    size_t es = m->es;
    int kvw = nh * (dn + dv);
    const void *latent = slot_ptr(L->k_cache, (int64_t)block * m->latent_layout.slot_stride, es);
    const void *pe = slot_ptr(L->v_cache, (int64_t)block * m->pe_layout.slot_stride, es);
    void *kvb = slot_ptr(m->mla_kvb, (int64_t)p0 * kvw, es);
    QILIN_TRY(linear(m, kvb, kvw, latent, r, L->w[QILIN_W_KV_B], NULL, n, kvw, r, false));
    qilin_mla_expand_k_args e = {.k = slot_ptr(m->mla_k, (int64_t)p0 * nh * (dn + dr), es),
                                 .kv = kvb,
                                 .k_pe = pe,
                                 .pe_stride = dr,
                                 .n = n,
                                 .n_heads = nh,
                                 .dn = dn,
                                 .dv = dv,
                                 .dr = dr,
                                 .dtype = m->opt->dtype};
    return qilin_mla_expand_k(&e, m->stream);
}

/* Naive MLA for sequence b (rows q_row .. q_row + n_q of q): up-project its
 * cached latents with kv_b, assemble per-head keys [k_nope ; k_pe], run the
 * ordinary attention kernel with head_dim dn + dr, head_dim_v dv. The
 * latents are read one run of physically consecutive blocks at a time (a
 * slot's identity table is one run: one GEMM, as before paging). */
static qilin_status mla_naive_seq(shard *m, layer *L, const step *s, int b, int q_row, const void *q,
                                  void *o) {
    const qilin_model_desc *d = m->desc;
    int nh = m->nh, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim;
    int kv_len = s->kv_len[b], n_q = s->b->n_tokens[b], bs = s->block_size;
    size_t es = m->es;
    int kvw = nh * (dn + dv);
    const int *table = s->tables + (size_t)b * s->table_stride;
    for (int j = 0; j * bs < kv_len;) {
        int run = 1;
        while ((j + run) * bs < kv_len && table[j + run] == table[j] + run) run++;
        int p0 = j * bs, end = (j + run) * bs < kv_len ? (j + run) * bs : kv_len;
        QILIN_TRY(mla_naive_run(m, L, table[j], p0, end - p0));
        j += run;
    }
    int64_t q_ts = (int64_t)nh * (dn + dr);
    int *one = m->d_single + 4 * b; /* {0, n_q, kv_len, 0}: q_start[2], kv_len, slot */
    qilin_attention_args a = {.out = slot_ptr(o, (int64_t)q_row * nh * dv, es),
                              .out_token_stride = (int64_t)nh * dv,
                              .out_head_stride = dv,
                              .q = slot_ptr((void *)q, q_row * q_ts, es),
                              .q_token_stride = q_ts,
                              .q_head_stride = dn + dr,
                              .k_cache = m->mla_k,
                              .v_cache = slot_ptr(m->mla_kvb, dn, es),
                              .k_layout = {0, (int64_t)nh * (dn + dr), dn + dr},
                              .v_layout = {0, kvw, dn + dv},
                              .q_start = one,
                              .kv_len = one + 2,
                              .seq_slot = one + 3,
                              .n_seqs = 1,
                              .tokens = n_q,
                              .max_q_len = n_q,
                              .max_kv_len = kv_len,
                              .n_heads = nh,
                              .n_kv_heads = nh,
                              .head_dim = dn + dr,
                              .head_dim_v = dv,
                              .scale = d->attn_scale,
                              .dtype = m->opt->dtype,
                              .workspace = m->attn_ws,
                              .workspace_bytes = m->attn_ws_bytes};
    return qilin_attention_prefill(&a, m->stream);
}

/* The products of N that MLA starts with: the latent c = N W_kv_a[0:r]^T,
 * the rope key k_pe = N W_kv_a[r:r+dr]^T, and q_a = N W_q_a^T into B3 (with
 * q_lora_rank > 0) or else q = N W_q^T into B1. At decode one launch
 * (qilin_gemv_multi, plain weights in the activation dtype only). */
static qilin_status mla_input_projections(shard *m, layer *L, void *c, void *k_pe, int T) {
    const qilin_model_desc *d = m->desc;
    int H = d->hidden, r = d->kv_lora_rank, dr = d->qk_rope_dim;
    bool lora = d->q_lora_rank > 0;
    void *q_out = lora ? m->B3 : m->B1;
    int q_slot = lora ? QILIN_W_Q_A : QILIN_W_Q;
    const void *w_q = L->w[q_slot];
    int nq = lora ? d->q_lora_rank : m->nh * (d->qk_nope_dim + dr);
    const void *w_kv_a = L->w[QILIN_W_KV_A], *w_pe = slot_ptr((void *)w_kv_a, (int64_t)r * H, m->es);
    /* kv_a is never kept FP8 (plan.h's qilin_slot_stays_fp8); q / q_a may be */
    if (T > QILIN_GEMV_MAX_M || kept_quantized(L, q_slot) || kept_quantized(L, QILIN_W_KV_A)) {
        QILIN_TRY(linear_slot(m, L, q_slot, q_out, nq, m->N, H, NULL, T, nq, H));
        QILIN_TRY(linear(m, c, r, m->N, H, w_kv_a, NULL, T, r, H, false));
        return linear(m, k_pe, dr, m->N, H, w_pe, NULL, T, dr, H, false);
    }
    qilin_gemv_multi_args g = {.x = m->N,
                               .m = T,
                               .k = H,
                               .ldx = H,
                               .n_outputs = 3,
                               .out = {{q_out, w_q, NULL, nq, H, nq}, {c, w_kv_a, NULL, r, H, r},
                                       {k_pe, w_pe, NULL, dr, H, dr}},
                               .dtype = m->opt->dtype,
                               .y_dtype = m->opt->dtype};
    return qilin_gemv_multi(&g, m->stream);
}

/* Multi-head latent attention (DeepSeek V2/V3, Kimi K2), models.md §7.4-7.5. */
static qilin_status mla_attention(shard *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden, nh = m->nh, dn = d->qk_nope_dim, dr = d->qk_rope_dim, dv = d->v_head_dim;
    int r = d->kv_lora_rank, qw = nh * (dn + dr);
    size_t es = m->es;
    void *q = m->B1;
    /* kv_a_proj_with_mqa rows [0, r) give the latent, [r, r + dr) the rope key:
     * two products over the two row ranges keep both outputs contiguous. */
    void *c = m->B2, *k_pe = slot_ptr(m->B2, (int64_t)T * r, es);
    QILIN_TRY(mla_input_projections(m, L, c, k_pe, T));
    if (d->q_lora_rank > 0) {
        void *qa = m->B3; /* q_a x, from mla_input_projections */
        QILIN_TRY(norm(m, qa, NULL, qa, L->w[QILIN_W_Q_A_NORM], NULL, T, d->q_lora_rank, d->mla_norm_eps));
        QILIN_TRY(linear_slot(m, L, QILIN_W_Q_B, q, qw, qa, d->q_lora_rank, NULL, T, qw, d->q_lora_rank));
    }
    QILIN_TRY(norm(m, c, NULL, c, L->w[QILIN_W_KV_A_NORM], NULL, T, r, d->mla_norm_eps));
    QILIN_TRY(rope(m, s, slot_ptr(q, dn, es), qw, dn + dr, nh, k_pe, dr, dr, 1));
    qilin_mla_append_args ap = {.latent_cache = L->k_cache,
                                .pe_cache = L->v_cache,
                                .latent_layout = m->latent_layout,
                                .pe_layout = m->pe_layout,
                                .latent = c,
                                .k_pe = k_pe,
                                .latent_stride = r,
                                .pe_stride = dr,
                                .token_slot = m->d_token_slot,
                                .positions = m->d_positions,
                                .tokens = T,
                                .r = r,
                                .dr = dr,
                                .max_ctx = m->opt->max_ctx,
                                .block_size = m->kv_block_size,
                                .dtype = m->opt->dtype};
    QILIN_TRY(qilin_mla_append(&ap, m->stream));

    void *o = m->B3; /* [T, nh dv] */
    bool absorbed =
        m->opt->mla_mode == QILIN_MLA_ABSORBED || (m->opt->mla_mode == QILIN_MLA_AUTO && s->decode);
    if (absorbed) {
        void *q_lat = m->B3, *o_lat = m->B4;
        /* q_lat[t, h] = W_UK[h]^T q_nope[t, h]: [T, dn] x [dn, r] per head */
        QILIN_TRY(per_head_gemm(m, q_lat, (int64_t)nh * r, r, q, qw, dn + dr, L->w[QILIN_W_KV_B], 0, false, T,
                                r, dn));
        qilin_mla_attention_args a = {.out = o_lat,
                                      .out_token_stride = (int64_t)nh * r,
                                      .out_head_stride = r,
                                      .q_lat = q_lat,
                                      .q_lat_token_stride = (int64_t)nh * r,
                                      .q_lat_head_stride = r,
                                      .q_pe = slot_ptr(q, dn, es),
                                      .q_pe_token_stride = qw,
                                      .q_pe_head_stride = dn + dr,
                                      .latent_cache = L->k_cache,
                                      .pe_cache = L->v_cache,
                                      .latent_layout = m->latent_layout,
                                      .pe_layout = m->pe_layout,
                                      .q_start = m->d_q_start,
                                      .kv_len = m->d_kv_len,
                                      .seq_slot = m->d_seq_slot,
                                      .table_stride = m->table_stride,
                                      .block_size = m->kv_block_size,
                                      .n_seqs = s->n_seqs,
                                      .tokens = T,
                                      .max_q_len = s->max_q,
                                      .max_kv_len = s->max_kv,
                                      .n_heads = nh,
                                      .r = r,
                                      .dr = dr,
                                      .scale = d->attn_scale,
                                      .dtype = m->opt->dtype,
                                      .workspace = m->attn_ws,
                                      .workspace_bytes = m->attn_ws_bytes};
        QILIN_TRY(qilin_mla_attention(&a, m->stream));
        /* o[t, h] = W_UV[h] o_lat[t, h]: [T, r] x [dv, r]^T per head */
        QILIN_TRY(per_head_gemm(m, o, (int64_t)nh * dv, dv, o_lat, (int64_t)nh * r, r, L->w[QILIN_W_KV_B], dn,
                                true, T, dv, r));
    } else {
        for (int b = 0, row = 0; b < s->n_seqs; row += s->b->n_tokens[b], b++)
            QILIN_TRY(mla_naive_seq(m, L, s, b, row, q, o));
    }
    return linear_slot(m, L, QILIN_W_O, m->X, H, o, (int64_t)nh * dv, NULL, T, H, nh * dv);
}

/* ---- feed-forward ------------------------------------------------------- */

/* out = down(act(gate x) * up x) with gate_up stacked [2F, H] (or, kept
 * FP8, gate and up as two matrices writing the two halves of B1's rows);
 * out row stride H. `shared`: the shared experts' weights. */
static qilin_status gated_mlp(shard *m, const layer *L, bool shared, void *out, const void *x, int T, int F) {
    int H = m->desc->hidden;
    int gate = shared ? QILIN_W_SHARED_GATE : QILIN_W_GATE, up = shared ? QILIN_W_SHARED_UP : QILIN_W_UP;
    int down = shared ? QILIN_W_SHARED_DOWN : QILIN_W_DOWN;
    if (!L->fp8[gate].scale != !L->fp8[up].scale || L->gguf[gate].on != L->gguf[up].on)
        return qilin_error(
            QILIN_ERR_UNSUPPORTED,
            "%s: gate and up projections stored in different formats (one FP8 or GGUF-quantized)",
            m->desc->source);
    if (kept_quantized(L, gate)) {
        QILIN_TRY(linear_slot(m, L, gate, m->B1, 2 * F, x, H, NULL, T, F, H));
        QILIN_TRY(linear_slot(m, L, up, slot_ptr(m->B1, F, m->es), 2 * F, x, H, NULL, T, F, H));
    } else {
        const void *gate_up = shared ? L->shared_gate_up : L->gate_up;
        QILIN_TRY(linear(m, m->B1, 2 * F, x, H, gate_up, NULL, T, 2 * F, H, false));
    }
    qilin_act_and_mul_args a = {
        .out = m->B2, .in = m->B1, .tokens = T, .d = F, .act = m->desc->act, .dtype = m->opt->dtype};
    QILIN_TRY(qilin_act_and_mul(&a, m->stream));
    return linear_slot(m, L, down, out, H, m->B2, F, NULL, T, H, F);
}

/* GPT-NeoX / GPT-J: out = fc_out(act(fc_in x + b)) + b. */
static qilin_status plain_mlp(shard *m, layer *L, void *out, const void *x, int T) {
    int H = m->desc->hidden, F = m->F;
    QILIN_TRY(linear_slot(m, L, QILIN_W_UP, m->B1, F, x, H, L->w[QILIN_W_UP_BIAS], T, F, H));
    qilin_activation_args a = {
        .out = m->B1, .in = m->B1, .n = (size_t)T * F, .act = m->desc->act, .dtype = m->opt->dtype};
    QILIN_TRY(qilin_activation(&a, m->stream));
    return linear_slot(m, L, QILIN_W_DOWN, out, H, m->B1, F, row_bias(m, L->w[QILIN_W_DOWN_BIAS]), T, H, F);
}

/* Router logits and top-k choices of `rows` rows of x (topk_ids, topk_w). */
static qilin_status route(shard *m, layer *L, const void *x, int rows) {
    const qilin_model_desc *d = m->desc;
    int H = d->hidden, E = d->n_experts;
    QILIN_TRY(linear(m, m->router_logits, E, x, H, L->w[QILIN_W_ROUTER], NULL, rows, E, H, true));
    qilin_moe_route_args r = {.topk_ids = m->topk_ids,
                              .topk_weights = m->topk_w,
                              .logits = m->router_logits,
                              .correction_bias = L->router_bias,
                              .tokens = rows,
                              .n_experts = E,
                              .top_k = d->top_k,
                              .n_group = d->n_group > 0 ? d->n_group : 1,
                              .topk_group = d->topk_group > 0 ? d->topk_group : 1,
                              .score = d->moe_score,
                              .group_score = d->moe_group_score,
                              .renormalize = d->norm_topk_prob,
                              .routed_scale = d->routed_scale};
    return qilin_moe_route(&r, m->stream);
}

/* This GPU's experts over `tokens` rows of x, top_k choices each (ids
 * local to this GPU, others skipped), into out; counts: rows per expert. */
static qilin_status run_experts(shard *m, layer *L, void *out, const void *x, const int *ids, const float *weights,
                                int tokens, int top_k, int *counts) {
    qilin_moe_experts_args e = {.out = out,
                                .accumulate = false,
                                .x = x,
                                .topk_ids = ids,
                                .topk_weights = weights,
                                .gate_up = L->exp_gate_up,
                                .down = L->exp_down,
                                .tokens = tokens,
                                .top_k = top_k,
                                .n_experts = m->E,
                                .hidden = m->desc->hidden,
                                .ffn_dim = m->Fe,
                                .act = m->desc->act,
                                .dtype = m->opt->dtype,
                                .expert_counts = counts,
                                .workspace = m->moe_ws,
                                .workspace_bytes = m->moe_ws_bytes,
                                .wq = (qilin_moe_wq)L->exp_wq, /* kept FP8 / INT4 (forward_load.c) */
                                .gate_up_scale = L->exp_gate_up_scale,
                                .down_scale = L->exp_down_scale,
                                .gate_up_row_off = L->exp_row_off,
                                .down_col_off = L->exp_col_off,
                                .group = L->exp_group};
    return qilin_moe_experts(&e, m->stream);
}

/* Expert parallelism by all-to-all (QILIN_EP_ALL_TO_ALL): this rank routes
 * its share of the T rows, [row0, row0 + rows) with S = ceil(T / n) per
 * rank (possibly empty), sends each (row, choice) to the owner of its expert
 * and gets the results back; out = the routed sum on the share rows, zeros
 * elsewhere (the caller's all-reduce assembles each row from its router).
 * Every rank issues the same collectives with the same counts: the chunk C
 * is the largest entry of the all-gathered count matrix. */
static qilin_status moe_all_to_all(shard *m, int l, void *out, const void *x, int T) {
    layer *L = &m->layers[l];
    const qilin_model_desc *d = m->desc;
    int H = d->hidden, k = d->top_k, n = m->n_ranks, E = m->E;
    int S = (T + n - 1) / n, row0 = m->rank * S < T ? m->rank * S : T;
    int rows = (row0 + S < T ? row0 + S : T) - row0;
    const void *xs = slot_ptr((void *)x, (int64_t)row0 * H, m->es);
    if (rows > 0) QILIN_TRY(route(m, L, xs, rows));
    qilin_moe_dispatch_count_args c = {.pos = m->a2a_pos,
                                       .counts = m->a2a_counts,
                                       .topk_ids = m->topk_ids,
                                       .rows = rows,
                                       .top_k = k,
                                       .n_ranks = n,
                                       .experts_per_rank = E};
    QILIN_TRY(qilin_moe_dispatch_count(&c, m->stream));
    m->stats.all_gather++;
    QILIN_TRY(qilin_comm_all_gather(m->comm, m->a2a_counts, m->a2a_matrix, (size_t)n, QILIN_I32, m->stream));
    /* The chunk size is a launch and collective argument, so the matrix comes
     * to the host: one stream synchronisation per MoE layer in this mode. */
    QILIN_TRY(qilin_memcpy_d2h(m->a2a_matrix_host, m->a2a_matrix, (size_t)n * n * sizeof(int), m->stream));
    QILIN_TRY(qilin_comm_wait(m->comm, m->stream)); /* a poll with a deadline: a peer may never arrive */
    int C = 0;
    for (int i = 0; i < n * n; i++) C = m->a2a_matrix_host[i] > C ? m->a2a_matrix_host[i] : C;
    if (C > m->ws.ep_chunk)
        return qilin_error(QILIN_ERR_INTERNAL,
                           "layer %d: %d rows for one GPU exceed the all-to-all chunk of %d", l, C,
                           m->ws.ep_chunk);
    int *counts = m->expert_counts + (size_t)l * m->E;
    if (C == 0) { /* no valid choice on any rank: all ranks see the same matrix and skip alike */
        QILIN_TRY(qilin_memset(counts, 0, (size_t)m->E * sizeof(int), m->stream));
        return qilin_memset(out, 0, (size_t)T * H * m->es, m->stream);
    }
    qilin_dtype dt = m->opt->dtype;
    qilin_moe_dispatch_pack_args p = {.send = m->a2a_send,
                                      .send_ids = m->a2a_send_ids,
                                      .x = xs,
                                      .topk_ids = m->topk_ids,
                                      .pos = m->a2a_pos,
                                      .counts = m->a2a_counts,
                                      .rows = rows,
                                      .top_k = k,
                                      .n_ranks = n,
                                      .experts_per_rank = E,
                                      .hidden = H,
                                      .chunk = C,
                                      .dtype = dt};
    QILIN_TRY(qilin_moe_dispatch_pack(&p, m->stream));
    m->stats.all_to_all += 2;
    size_t chunk_elems = (size_t)C * H;
    QILIN_TRY(qilin_comm_all_to_all(m->comm, m->a2a_send, m->a2a_recv, chunk_elems, dt, m->stream));
    QILIN_TRY(
        qilin_comm_all_to_all(m->comm, m->a2a_send_ids, m->a2a_recv_ids, (size_t)C, QILIN_I32, m->stream));
    /* n C received rows, one expert each (weight 1: the source applies the
     * routing weights); padding rows have id -1 and are skipped. The results
     * go to the send buffer, free again, and travel back to their sources. */
    QILIN_TRY(run_experts(m, L, m->a2a_send, m->a2a_recv, m->a2a_recv_ids, m->a2a_ones, n * C, 1, counts));
    m->stats.all_to_all++;
    QILIN_TRY(qilin_comm_all_to_all(m->comm, m->a2a_send, m->a2a_recv, chunk_elems, dt, m->stream));
    qilin_moe_dispatch_combine_args cb = {.out = out,
                                          .back = m->a2a_recv,
                                          .topk_ids = m->topk_ids,
                                          .pos = m->a2a_pos,
                                          .topk_weights = m->topk_w,
                                          .tokens = T,
                                          .row0 = row0,
                                          .rows = rows,
                                          .top_k = k,
                                          .n_ranks = n,
                                          .experts_per_rank = E,
                                          .hidden = H,
                                          .chunk = C,
                                          .dtype = dt};
    return qilin_moe_dispatch_combine(&cb, m->stream);
}

/* Routed experts (this GPU's part: every expert's Fe columns, or its own E
 * whole experts, or by all-to-all the rows sent to those), plus the shared
 * expert's Fs columns; out is a partial sum completed by the caller's
 * all-reduce. The router runs replicated (all-to-all: on this GPU's rows). */
static qilin_status moe(shard *m, int l, void *out, const void *x, int T) {
    layer *L = &m->layers[l];
    const qilin_model_desc *d = m->desc;
    int H = d->hidden;
    if (m->ws.ep_chunk > 0) {
        QILIN_TRY(moe_all_to_all(m, l, out, x, T));
    } else {
        QILIN_TRY(route(m, L, x, T));
        const int *ids = m->topk_ids;
        if (m->opt->ep) { /* other GPUs' experts become out-of-range ids, which the kernel skips */
            qilin_moe_local_ids_args li = {
                .out = m->topk_local, .ids = m->topk_ids, .n = T * d->top_k, .first = m->e0};
            QILIN_TRY(qilin_moe_local_ids(&li, m->stream));
            ids = m->topk_local;
        }
        QILIN_TRY(run_experts(m, L, out, x, ids, m->topk_w, T, d->top_k, m->expert_counts + (size_t)l * m->E));
    }
    if (!L->shared_gate_up && !kept_quantized(L, QILIN_W_SHARED_GATE)) return QILIN_OK;
    void *shared = m->B3;
    QILIN_TRY(gated_mlp(m, L, true, shared, x, T, m->Fs));
    if (L->w[QILIN_W_SHARED_EXPERT_GATE]) { /* Qwen2-MoE: out += sigmoid(x . w_g) * shared */
        void *g = m->B4;
        QILIN_TRY(linear(m, g, 1, x, H, L->w[QILIN_W_SHARED_EXPERT_GATE], NULL, T, 1, H, false));
        qilin_sigmoid_gate_add_args a = {
            .out = out, .y = shared, .gate = g, .tokens = T, .dim = H, .dtype = m->opt->dtype};
        return qilin_sigmoid_gate_add(&a, m->stream);
    }
    qilin_add_args a = {.out = out, .a = out, .b = shared, .n = (size_t)T * H, .dtype = m->opt->dtype};
    return qilin_add(&a, m->stream);
}

static qilin_status ffn(shard *m, int l, void *out, const void *x, int T) {
    layer *L = &m->layers[l];
    switch (m->desc->layer_ffn[l]) {
    case QILIN_FFN_GATED:
        return gated_mlp(m, L, false, out, x, T, m->F);
    case QILIN_FFN_PLAIN:
        return plain_mlp(m, L, out, x, T);
    case QILIN_FFN_MOE:
        return moe(m, l, out, x, T);
    }
    return qilin_error(QILIN_ERR_INTERNAL, "layer %d: unknown FFN kind", l);
}

/* ---- one step ----------------------------------------------------------- */

static qilin_status layer_forward(shard *m, int l, const step *s) {
    const qilin_model_desc *d = m->desc;
    layer *L = &m->layers[l];
    int T = s->T, H = d->hidden;
    float eps = d->norm_eps;
    /* N = norm1(R), where R first absorbs the previous layer's output X */
    QILIN_TRY(norm(m, m->N, l > 0 ? m->R : NULL, l > 0 ? m->X : m->R, L->w[QILIN_W_ATTN_NORM],
                   L->w[QILIN_W_ATTN_NORM_BIAS], T, H, eps));
    QILIN_TRY(d->attn == QILIN_ATTN_MLA ? mla_attention(m, l, s) : gqa_attention(m, l, s));
    if (d->block != QILIN_BLOCK_SEQUENTIAL) {
        /* parallel residual: X = attn + ffn, both reading the block input (HF
         * adds the two branches first, then the residual: so does the next norm) */
        const void *ffn_in = m->N;
        if (d->block == QILIN_BLOCK_PARALLEL) { /* GPT-NeoX: a second norm of R */
            QILIN_TRY(
                norm(m, m->B4, NULL, m->R, L->w[QILIN_W_FFN_NORM], L->w[QILIN_W_FFN_NORM_BIAS], T, H, eps));
            ffn_in = m->B4;
        }
        QILIN_TRY(ffn(m, l, m->B3, ffn_in, T)); /* uses B1, B2 only */
        qilin_add_args a = {.out = m->X, .a = m->X, .b = m->B3, .n = (size_t)T * H, .dtype = m->opt->dtype};
        QILIN_TRY(qilin_add(&a, m->stream));
        return all_reduce(m, m->X, (size_t)T * H); /* both branches' partial sums at once */
    }
    QILIN_TRY(all_reduce(m, m->X, (size_t)T * H)); /* attention's o_proj partial sums */
    QILIN_TRY(norm(m, m->N, m->R, m->X, L->w[QILIN_W_FFN_NORM], L->w[QILIN_W_FFN_NORM_BIAS], T, H, eps));
    QILIN_TRY(ffn(m, l, m->X, m->N, T));
    return all_reduce(m, m->X, (size_t)T * H); /* the down projections' partial sums */
}

/* ---- the step's index arrays ------------------------------------------- */

/* Regions of the step block, in ints, each at a fixed offset sized for the
 * largest step (max_seqs S, max_batch_tokens T, table rows of W entries):
 * the device pointers never move, so a captured step reads the next step's
 * values from the same addresses. The per-sequence and per-token regions
 * come first and the block tables (S rows of W) last, so a small step copies
 * a prefix that ends with its own sequences' rows (upload_step). */
enum { STEP_Q_START, STEP_KV_LEN, STEP_SINGLE, STEP_ROWS, STEP_TOKENS, STEP_POSITIONS, STEP_TOKEN_SLOT,
       STEP_SEQ_SLOT, STEP_REGIONS };

static size_t step_region_ints(int region, int T, int S, int W) {
    switch (region) {
    case STEP_Q_START: return (size_t)S + 1;
    case STEP_SINGLE: return (size_t)S * 4;
    case STEP_KV_LEN:
    case STEP_ROWS: return (size_t)S;
    case STEP_SEQ_SLOT: return (size_t)S * (size_t)W;
    default: return (size_t)T;
    }
}

/* Offset of `region` in the block laid out for S sequences, T tokens, table
 * rows of W; each region starts on a 16-int (64-byte) boundary. */
static size_t step_offset(int region, int T, int S, int W) {
    size_t off = 0;
    for (int r = 0; r < region; r++) off += (step_region_ints(r, T, S, W) + 15) / 16 * 16;
    return off;
}

static int *step_region(int *block, int region, const shard *g) {
    return block + step_offset(region, g->opt->max_batch_tokens, g->opt->max_seqs, g->table_stride);
}

qilin_status step_buffers_alloc(shard *g) {
    int T = g->opt->max_batch_tokens, S = g->opt->max_seqs;
    size_t bytes = step_offset(STEP_REGIONS, T, S, g->table_stride) * sizeof(int);
    QILIN_TRY(shard_alloc(g, (void **)&g->step_dev, bytes, "step index arrays"));
    QILIN_TRY(qilin_host_alloc_pinned((void **)&g->step_host, bytes));
    QILIN_TRY(qilin_event_create_untimed(&g->step_copied)); /* orders only */
    g->d_q_start = step_region(g->step_dev, STEP_Q_START, g);
    g->d_kv_len = step_region(g->step_dev, STEP_KV_LEN, g);
    g->d_seq_slot = step_region(g->step_dev, STEP_SEQ_SLOT, g);
    g->d_single = step_region(g->step_dev, STEP_SINGLE, g);
    g->d_rows = step_region(g->step_dev, STEP_ROWS, g);
    g->d_tokens = step_region(g->step_dev, STEP_TOKENS, g);
    g->d_positions = step_region(g->step_dev, STEP_POSITIONS, g);
    g->d_token_slot = step_region(g->step_dev, STEP_TOKEN_SLOT, g);
    decode_graphs_init(g);
    return QILIN_OK;
}

void step_buffers_free(shard *g) {
    decode_graphs_free(g);
    qilin_event_destroy(g->step_copied);
    qilin_host_free_pinned(g->step_host);
    qilin_free(g->step_dev);
    g->step_copied = NULL, g->step_host = NULL, g->step_dev = NULL;
}

static void put_ints(int *dst, const int *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

/* Padding sequences S .. P - 1 of a decode step replayed in the graph of a
 * larger batch P: one query each, on token id 0 at position 0, that writes
 * no KV (token slot -1: kv_append skips it) and attends to no key (kv_len 0:
 * the attention kernels write zeros for a query without keys), so its rows
 * stay finite and no sequence's cache is touched. Only with one GPU (ids
 * relative to v0 = 0). Their logits rows come after the real ones. */
static void put_padding(shard *m, int *h, int S, int P, bool last_rows) {
    for (int i = S; i < P; i++) {
        step_region(h, STEP_Q_START, m)[i + 1] = i + 1;
        step_region(h, STEP_KV_LEN, m)[i] = 0; /* reads no table entry */
        int *one = step_region(h, STEP_SINGLE, m) + 4 * i;
        one[0] = 0, one[1] = 1, one[2] = 0, one[3] = 0;
        if (last_rows) step_region(h, STEP_ROWS, m)[i] = i;
        step_region(h, STEP_TOKENS, m)[i] = 0;
        step_region(h, STEP_POSITIONS, m)[i] = 0;
        step_region(h, STEP_TOKEN_SLOT, m)[i] = -1;
    }
}

/* Uploads the step's index arrays: written into the pinned staging buffer
 * and sent by one asynchronous copy, with no stream synchronisation (the
 * next step waits, on the host, only for this copy before it overwrites the
 * staging buffer). Token ids are made relative to this GPU's vocab rows:
 * ids of other GPUs' rows fall outside [0, nv) and the embedding kernel
 * writes zeros for them, so the all-reduce that follows assembles every row
 * from its owner. padded_to: the sequences the device step runs (>= the
 * batch's, decode only: put_padding fills the rest). */
static qilin_status upload_step(shard *m, const step *s, int padded_to) {
    const qilin_batch *b = s->b;
    int T = s->T, S = b->n_seqs;
    if (m->step_copy_pending) QILIN_TRY(qilin_event_synchronize(m->step_copied));
    m->step_copy_pending = false;
    int *h = m->step_host;
    put_ints(step_region(h, STEP_Q_START, m), s->q_start, (size_t)S + 1);
    put_ints(step_region(h, STEP_KV_LEN, m), s->kv_len, (size_t)S);
    put_ints(step_region(h, STEP_SEQ_SLOT, m), s->tables, (size_t)S * (size_t)s->table_stride);
    put_ints(step_region(h, STEP_SINGLE, m), s->single, (size_t)S * 4);
    if (!b->all_logits) put_ints(step_region(h, STEP_ROWS, m), s->last, (size_t)S);
    int *ids = step_region(h, STEP_TOKENS, m);
    for (int t = 0; t < T; t++) ids[t] = (int)(b->tokens[t] - m->v0);
    put_ints(step_region(h, STEP_POSITIONS, m), s->pos, (size_t)T);
    put_ints(step_region(h, STEP_TOKEN_SLOT, m), s->tslot, (size_t)T);
    if (padded_to > S) { /* decode: T == S */
        put_padding(m, h, S, padded_to, !b->all_logits);
        T = padded_to;
    }
    /* the used prefix: everything up to the end of this step's table rows
     * (padding sequences read none: kv_len 0) */
    size_t ints = (size_t)(step_region(h, STEP_SEQ_SLOT, m) - h) + (size_t)S * (size_t)s->table_stride;
    QILIN_TRY(qilin_memcpy_h2d(m->step_dev, h, ints * sizeof(int), m->stream));
    QILIN_TRY(qilin_event_record(m->step_copied, m->stream));
    m->step_copy_pending = true;
    return QILIN_OK;
}

/* Logits of `rows` rows from the final hidden states x: this GPU's vocab
 * columns, all-gathered ([n_ranks, rows, Vp]) and, on rank 0, laid out as
 * full rows [rows, vocab] (the padding columns dropped). */
static qilin_status lm_head(shard *m, const void *x, int rows) {
    const qilin_model_desc *d = m->desc;
    int H = d->hidden;
    const void *w = m->global[QILIN_W_LM_HEAD], *bias = m->global[QILIN_W_LM_HEAD_BIAS];
    const gguf_slot *q = &m->gguf_global[QILIN_W_LM_HEAD];
    if (q->on && m->n_ranks == 1)
        return linear_gguf(m, q, w, m->logits, d->vocab, x, H, bias, rows, d->vocab, H, true);
    if (m->n_ranks == 1) return linear(m, m->logits, d->vocab, x, H, w, bias, rows, d->vocab, H, true);
    if (q->on)
        QILIN_TRY(linear_gguf(m, q, w, m->logits_local, m->Vp, x, H, bias, rows, (int)m->Vp, H, true));
    else
        QILIN_TRY(linear(m, m->logits_local, m->Vp, x, H, w, bias, rows, (int)m->Vp, H, true));
    m->stats.all_gather++;
    size_t count = (size_t)rows * (size_t)m->Vp;
    QILIN_TRY(qilin_comm_all_gather(m->comm, m->logits_local, m->logits_all, count, QILIN_F32, m->stream));
    if (m->rank != 0) return QILIN_OK;
    int64_t per = m->Vp;
    for (int r = 0; r < m->n_ranks; r++) {
        int64_t first = r * per, n = first + per <= d->vocab ? per : d->vocab - first;
        if (n <= 0) continue;
        qilin_gather_rows_args g = {.out = m->logits + first,
                                    .in = m->logits_all + (size_t)r * count,
                                    .rows = m->d_iota,
                                    .n = rows,
                                    .cols = (int)n,
                                    .ld_out = d->vocab,
                                    .ld_in = per,
                                    .dtype = QILIN_F32};
        QILIN_TRY(qilin_gather_rows(&g, m->stream));
    }
    return QILIN_OK;
}

/* The step's device work after the upload: what a decode graph captures. */
static qilin_status step_body(shard *m, const step *s) {
    const qilin_model_desc *d = m->desc;
    int T = s->T, H = d->hidden;
    qilin_embedding_args e = {.out = m->R,
                              .table = m->global[QILIN_W_EMBED],
                              .ids = m->d_tokens,
                              .error = NULL,
                              .tokens = T,
                              .dim = H,
                              .vocab = (int)m->nv,
                              .dtype = m->opt->dtype,
                              .out_dtype = m->opt->dtype};
    const gguf_slot *q = &m->gguf_global[QILIN_W_EMBED];
    qilin_embedding_gguf_args eq = {.out = m->R,
                                    .table = m->global[QILIN_W_EMBED],
                                    .ids = m->d_tokens,
                                    .tokens = T,
                                    .dim = H,
                                    .vocab = (int)m->nv,
                                    .ldw = q->ldw,
                                    .format = q->format,
                                    .out_dtype = m->opt->dtype};
    QILIN_TRY(q->on ? qilin_embedding_gguf(&eq, m->stream) : qilin_embedding(&e, m->stream));
    QILIN_TRY(all_reduce(m, m->R, (size_t)T * H)); /* vocab-parallel embedding: each row from its owner */
    for (int l = 0; l < d->n_layers; l++) {
        qilin_status st = layer_forward(m, l, s);
        if (st != QILIN_OK) return qilin_error_context(st, "layer %d", l);
    }
    QILIN_TRY(norm(m, m->N, m->R, m->X, m->global[QILIN_W_FINAL_NORM], m->global[QILIN_W_FINAL_NORM_BIAS], T,
                   H, d->norm_eps));
    const void *final_in = m->N;
    if (!s->b->all_logits) { /* only the last token of each sequence gets logits */
        qilin_gather_rows_args g = {.out = m->B1,
                                    .in = m->N,
                                    .rows = m->d_rows,
                                    .n = s->n_seqs,
                                    .cols = H,
                                    .ld_out = H,
                                    .ld_in = H,
                                    .dtype = m->opt->dtype};
        QILIN_TRY(qilin_gather_rows(&g, m->stream));
        final_in = m->B1;
    }
    return lm_head(m, final_in, s->rows);
}

/* ---- CUDA graphs for decode --------------------------------------------- *
 *
 * A decode step's device work (everything after the upload of its index
 * arrays) is captured once per key and replayed afterwards: one graph launch
 * instead of ~10-20 launches per layer. A replay re-reads the step block
 * (step_dev, fixed addresses, filled eagerly by upload_step before the
 * replay) and the activations and caches at their fixed addresses; what it
 * cannot re-read are the host launch arguments, all functions of the key:
 *   - n_seqs (= T = rows at decode; max_q = 1), padded up to a bucket
 *     (graph_bucket: powers of two, and min(max_seqs, max_batch_tokens)):
 *     at most 2 + log2(max_seqs) values. Padding sequences (put_padding)
 *     write no KV and attend to nothing; their rows do reach the router, so
 *     qilin_model_expert_counts after a padded step counts them too;
 *   - max_kv, which sizes the attention split plans: decode_kv_bucket
 *     rounds it to 4 buckets per octave (>= 64, <= max_ctx), eager steps
 *     included, so at most ~4 log2(max_ctx / 64) + 1 values and graphs change
 *     no result (the kernels take max_kv_len as a bound and read each
 *     sequence's own length from d_kv_len);
 *   - all_logits (whether the last-row gather is issued).
 * Graphs are off with one of: opt->no_graphs, QILIN_NO_GRAPHS=1, the launch
 * log (QILIN_LAUNCH_LOG: it logs launches as they are issued, and a replay
 * issues none, so with the log on decode stays eager and the log counts real
 * launches), several GPUs (the sim's collectives exchange on the host inside
 * the call, which a capture refuses; NCCL could be captured, not wired yet),
 * and MLA's naive form at decode (per-sequence host lengths). */
typedef struct decode_graph {
    int n_seqs, max_kv;
    bool all_logits;
    qilin_graph *graph;
} decode_graph;

int decode_kv_bucket(int max_kv, int max_ctx) {
    int bucket = 64;
    if (max_kv > 64) {
        int octave = 64; /* the largest power of two below max_kv */
        while (octave * 2 < max_kv) octave *= 2;
        int stride = octave / 4;
        bucket = (max_kv + stride - 1) / stride * stride;
    }
    return bucket < max_ctx ? bucket : max_ctx; /* max_kv <= max_ctx: still a bound */
}

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

void decode_graphs_init(shard *g) {
    g->graphs_on = !g->opt->no_graphs && !env_on("QILIN_NO_GRAPHS") && !env_on("QILIN_LAUNCH_LOG");
}

void decode_graphs_free(shard *g) {
    for (int i = 0; i < g->n_graphs; i++) qilin_graph_destroy(g->graphs[i].graph);
    free(g->graphs);
    g->graphs = NULL, g->n_graphs = 0;
}

/* The batch-size bucket a decode step runs in (its sequences padded up to
 * it: put_padding), or 0 when the step runs eagerly. Buckets: the powers of
 * two below the largest batch the step buffers hold, and that batch. */
static int graph_bucket(const shard *m, const step *s) {
    const qilin_model_desc *d = m->desc;
    if (!m->graphs_on || !s->decode || m->n_ranks != 1 || m->ws.ep_chunk > 0) return 0;
    if (d->attn == QILIN_ATTN_MLA && m->opt->mla_mode == QILIN_MLA_NAIVE) return 0;
    int limit = m->opt->max_seqs < m->opt->max_batch_tokens ? m->opt->max_seqs : m->opt->max_batch_tokens;
    int bucket = 1;
    while (bucket < s->n_seqs) bucket *= 2;
    return bucket < limit ? bucket : limit;
}

/* Captures the step's device work into a new table entry. */
static qilin_status capture(shard *m, const step *s, decode_graph **out) {
    decode_graph *grown = realloc(m->graphs, (size_t)(m->n_graphs + 1) * sizeof *grown);
    if (!grown) return qilin_error(QILIN_ERR_OUT_OF_MEMORY, "decode graph table: host memory");
    m->graphs = grown;
    QILIN_TRY(qilin_stream_begin_capture(m->stream));
    qilin_status st = step_body(m, s);
    char why[1024];
    if (st != QILIN_OK) snprintf(why, sizeof why, "%s", qilin_last_error());
    qilin_graph *graph = NULL;
    qilin_status ended = qilin_stream_end_capture(m->stream, &graph);
    if (st != QILIN_OK) {
        qilin_graph_destroy(graph);
        return qilin_error(st, "capturing the decode step of %d sequences: %s", s->n_seqs, why);
    }
    if (ended != QILIN_OK)
        return qilin_error_context(ended, "capturing the decode step of %d sequences", s->n_seqs);
    decode_graph *e = &m->graphs[m->n_graphs++];
    *e = (decode_graph){.n_seqs = s->n_seqs, .max_kv = s->max_kv, .all_logits = s->b->all_logits, .graph = graph};
    m->stats.graph_captures++;
    *out = e;
    return QILIN_OK;
}

static qilin_status step_replayed(shard *m, const step *s) {
    decode_graph *e = NULL;
    for (int i = 0; i < m->n_graphs && !e; i++) {
        decode_graph *c = &m->graphs[i];
        if (c->n_seqs == s->n_seqs && c->max_kv == s->max_kv && c->all_logits == s->b->all_logits) e = c;
    }
    if (!e) QILIN_TRY(capture(m, s, &e));
    m->stats.graph_replays++;
    return qilin_graph_launch(e->graph, m->stream);
}

qilin_status shard_step(shard *m, const step *s) {
    m->stats.steps++;
    int bucket = graph_bucket(m, s);
    QILIN_TRY(upload_step(m, s, bucket > s->n_seqs ? bucket : s->n_seqs));
    if (bucket == 0) return step_body(m, s);
    step padded = *s; /* the device runs `bucket` rows; the host reads the first n_seqs */
    padded.T = padded.n_seqs = padded.rows = bucket;
    return step_replayed(m, &padded);
}
