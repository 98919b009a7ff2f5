/* mla.h — multi-head latent attention, DeepSeek V2/V3 and Kimi K2 (mla.cu);
 * models.md §7.4–7.5.
 *
 * The cache of one layer holds, per position, the normalised latent c (r =
 * kv_lora_rank values) and the rotated shared rope key k_pe (dr values), in
 * two arrays with the qilin_kv_layout convention of attention.h (head_stride
 * unused: one "KV head"), paged through block tables the same way.
 *
 * Absorbed form (decode; also correct for any n_q): the caller has computed
 * q_lat[t, h] = W_UK[h]^T q_nope[t, h] (r values) and the rotated q_pe; the
 * kernel is MQA with key [c ; k_pe] (r + dr) and value c (r):
 *   s[h, t'] = (q_lat . c_t' + q_pe . k_pe_t') * scale,  o_lat = sum p c_t'
 * and the caller up-projects o[h] = W_UV[h] o_lat[h].
 * Naive (prefill) form: the caller up-projects the cached latents of a
 * sequence with kv_b_proj, qilin_mla_expand_k assembles per-head keys
 * [k_nope ; k_pe], and qilin_attention_prefill runs with head_dim = dn + dr,
 * head_dim_v = dv. Both forms agree up to rounding. */
#ifndef QILIN_MLA_H
#define QILIN_MLA_H

#include <stddef.h>
#include <stdint.h>

#include "attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends c (already RMS-normalised) and k_pe (already rotated) of new tokens. */
typedef struct qilin_mla_append_args {
    void *latent_cache, *pe_cache;
    qilin_kv_layout latent_layout, pe_layout;
    const void *latent;           /* [tokens, r], row stride latent_stride */
    const void *k_pe;             /* [tokens, dr], row stride pe_stride */
    int64_t latent_stride, pe_stride;
    const int *token_slot, *positions; /* [tokens] int32, device: block (or slot) and position */
    int tokens, r, dr, max_ctx;
    int block_size;               /* as in qilin_kv_append_args: 0 = slots of max_ctx positions */
    qilin_dtype dtype;
} qilin_mla_append_args;
qilin_status qilin_mla_append(const qilin_mla_append_args *args, qilin_stream *stream);

typedef struct qilin_mla_attention_args {
    void *out;                    /* o_lat [tokens, n_heads, r] strided */
    int64_t out_token_stride, out_head_stride;
    const void *q_lat;            /* [tokens, n_heads, r] strided */
    int64_t q_lat_token_stride, q_lat_head_stride;
    const void *q_pe;             /* [tokens, n_heads, dr] strided, rotated */
    int64_t q_pe_token_stride, q_pe_head_stride;
    const void *latent_cache, *pe_cache;
    qilin_kv_layout latent_layout, pe_layout;
    const int *q_start, *kv_len, *seq_slot; /* as in qilin_attention_args: block tables */
    int table_stride, block_size; /* as in qilin_attention_args (FlashMLA pages: 64 positions) */
    int n_seqs, tokens, max_q_len, max_kv_len;
    int n_heads, r, dr;
    float scale;                  /* (dn + dr)^-1/2 * mscale^2 (YaRN) */
    qilin_dtype dtype;
    void *workspace;              /* qilin_mla_attention_workspace bytes */
    size_t workspace_bytes;
} qilin_mla_attention_args;

/* Causal absorbed attention; sequences are split along their length for long
 * contexts (partials merged through the workspace, which may be NULL or
 * smaller: fewer splits). r is a multiple of 8 up to 512, dr a multiple of 8
 * up to 128; n_q(b) may be 0. */
qilin_status qilin_mla_attention(const qilin_mla_attention_args *args, qilin_stream *stream);
size_t qilin_mla_attention_workspace(int tokens, int n_heads, int r, int max_kv_len);

/* k[t, h, 0:dn] = kv[t, h*(dn+dv) + 0:dn] (the k_nope part of kv_b_proj's
 * output), k[t, h, dn:dn+dr] = k_pe[t, :] for t < n — per-head keys for the
 * naive prefill form. k is [n, n_heads, dn + dr] contiguous. */
typedef struct qilin_mla_expand_k_args {
    void *k;
    const void *kv;               /* [n, n_heads * (dn + dv)] */
    const void *k_pe;             /* [n, dr], row stride pe_stride */
    int64_t pe_stride;
    int n, n_heads, dn, dv, dr;
    qilin_dtype dtype;
} qilin_mla_expand_k_args;
qilin_status qilin_mla_expand_k(const qilin_mla_expand_k_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_MLA_H */
