/* attention.h — causal softmax attention over a per-sequence KV cache
 * (attention.cu): MHA, GQA and MQA.
 *
 * A batch holds n_seqs sequences. Sequence b contributes
 * n_q(b) = q_start[b+1] - q_start[b] query tokens (rows q_start[b] ... of q
 * and out) and has kv_len[b] valid cache positions *including* those new
 * tokens (their K/V were appended with qilin_kv_append first). Query i of
 * sequence b sits at position p = kv_len[b] - n_q(b) + i and attends cache
 * positions t <= p (and t > p - sliding_window when a window is set).
 * Query head h reads KV head h / (n_heads / n_kv_heads) (HF repeat_kv).
 * Scores s = (q . k) * scale in fp32, softmax in fp32 (online, tiled), output
 * sum_t p_t v_t rounded once to dtype.
 *
 * Cache layout of one layer: element d of KV head g at position t of slot s
 * is at cache + s*slot_stride + t*pos_stride + g*head_stride + d (elements).
 * seq_slot[b] names the slot of sequence b. q/out are [tokens, heads, dim]
 * with strides so that fused QKV outputs need no copy.
 *
 * head_dim and head_dim_v are multiples of 8 up to 256 (they may differ);
 * n_q(b) may be 0 (that sequence produces nothing); max_kv_len must bound
 * every kv_len[b]. */
#ifndef QILIN_ATTENTION_H
#define QILIN_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_kv_layout {
    int64_t slot_stride, pos_stride, head_stride; /* elements */
} qilin_kv_layout;

/* Writes the K and V rows of new tokens into the cache: token t goes to slot
 * token_slot[t], position positions[t]; a token with a negative slot is
 * skipped too (padding). */
typedef struct qilin_kv_append_args {
    void *k_cache, *v_cache;
    qilin_kv_layout k_layout, v_layout;
    const void *k;                /* [tokens, n_kv_heads, head_dim] strided */
    int64_t k_token_stride, k_head_stride;
    const void *v;                /* [tokens, n_kv_heads, head_dim_v] strided */
    int64_t v_token_stride, v_head_stride;
    const int *token_slot;        /* [tokens] int32, device */
    const int *positions;         /* [tokens] int32, device */
    int tokens, n_kv_heads, head_dim, head_dim_v;
    int max_ctx;                  /* positions must be < max_ctx (checked on device: skipped) */
    qilin_dtype dtype;
} qilin_kv_append_args;
qilin_status qilin_kv_append(const qilin_kv_append_args *args, qilin_stream *stream);

typedef struct qilin_attention_args {
    void *out;                    /* [tokens, n_heads, head_dim_v] strided */
    int64_t out_token_stride, out_head_stride;
    const void *q;                /* [tokens, n_heads, head_dim] strided */
    int64_t q_token_stride, q_head_stride;
    const void *k_cache, *v_cache;
    qilin_kv_layout k_layout, v_layout;
    const int *q_start;           /* [n_seqs + 1] int32, device */
    const int *kv_len;            /* [n_seqs] int32, device */
    const int *seq_slot;          /* [n_seqs] int32, device */
    int n_seqs, tokens;
    int max_q_len, max_kv_len;    /* host-side bounds over the batch: grid sizes */
    int n_heads, n_kv_heads, head_dim, head_dim_v;
    float scale;
    int sliding_window;           /* 0 = none */
    qilin_dtype dtype;            /* q, caches, out alike: f32, bf16 or f16 */
    void *workspace;              /* decode only: qilin_attention_decode_workspace bytes */
    size_t workspace_bytes;
} qilin_attention_args;

/* Any n_q per sequence (prefill, chunked prefill, verification): query tiles
 * against key tiles in shared memory, online softmax. bf16/f16 with 16-byte
 * aligned rows run on tensor cores (attention_prefill.cuh), which round the
 * softmax weights to the dtype before P V (fp32 scores, max, sum and
 * accumulation); f32 stays exact fp32 on CUDA cores. */
qilin_status qilin_attention_prefill(const qilin_attention_args *args, qilin_stream *stream);

/* One query per sequence (q_start[b] = b): the sequence is split into
 * chunks processed by separate blocks, partial (max, sum, acc) in the
 * workspace, then merged — long contexts use the whole GPU. The workspace
 * (16-byte aligned) may be NULL or smaller than the size below: then fewer
 * chunks are used (one per sequence at worst); 0 bytes means no split. */
qilin_status qilin_attention_decode(const qilin_attention_args *args, qilin_stream *stream);
size_t qilin_attention_decode_workspace(int n_seqs, int n_heads, int head_dim_v, int max_kv_len);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_ATTENTION_H */
