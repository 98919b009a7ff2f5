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
 * Paged cache: one layer's cache is a pool of blocks of block_size
 * positions. Position t of sequence b lives in block
 *   blk = seq_slot[b * table_stride + t / block_size]   (its block table)
 * at offset t % block_size; element d of KV head g there is at
 *   cache + blk*slot_stride + (t % block_size)*pos_stride + g*head_stride + d
 * (elements; slot_stride is the block stride). Tables may list blocks in any
 * physical order, share them between sequences (a common prefix) and hold
 * entries only for positions < kv_len[b]: nothing else is read. block_size 0
 * is the contiguous special case: one block per sequence holds all its
 * positions, seq_slot[b] names it (a "slot"), table_stride is ignored.
 * Any block_size >= 1 works (a key tile may straddle blocks: each row looks
 * its block up); multiples of the kernels' 32/64-key tiles keep one lookup
 * per tile row group in one block. q/out are [tokens, heads, dim] with
 * strides so that fused QKV outputs need no copy.
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

/* What the kernels use for a block_size argument: positions per block, or
 * one block spanning every position (2^30) for the contiguous case 0; and
 * the table stride, 1 in that case (the table is the slot array). */
static inline int qilin_kv_block_span(int block_size) { return block_size > 0 ? block_size : 1 << 30; }
static inline int qilin_kv_table_stride(int table_stride, int block_size) {
    return block_size > 0 ? table_stride : 1;
}

typedef struct qilin_kv_layout {
    int64_t slot_stride, pos_stride, head_stride; /* elements */
} qilin_kv_layout;

/* Writes the K and V rows of new tokens into the cache: token t goes to
 * block token_slot[t] at offset positions[t] % block_size (block_size 0: slot
 * token_slot[t] at position positions[t]); the caller looks the block up in
 * the sequence's table. A token with a negative slot or a position outside
 * [0, max_ctx) is skipped (padding). */
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
    int block_size;               /* positions per block; 0 = one slot of max_ctx positions */
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
    const int *seq_slot;          /* [n_seqs, table_stride] int32 block tables, device; [n_seqs] slots when
                                     block_size is 0 */
    int table_stride, block_size; /* entries per table row; positions per block (0 = contiguous slots) */
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
