/* forward_impl.h — what the forward-pass files share (internal to host/).
 *
 * A model is split over n GPUs by the sharding plan (plan.h); each GPU holds
 * a `shard`: its slices of the weights, its KV cache (local KV heads, or the
 * whole MLA latent), its per-step buffers, stream, BLAS handle and
 * communicator rank. A shard is touched only by its own worker thread
 * (workers.h). Local sizes (nh, nkv, F, ...) are this GPU's part of the
 * model's; with one GPU they equal the model's.
 *
 *   forward.c         the public API: load, free, qilin_forward, generation
 *   forward_load.c    a shard's weights (per plan slice) and buffers
 *   forward_layers.c  one step on one shard: embedding, layers, lm_head and
 *                     the collectives between them
 *   forward_nodes.c   several processes: bootstrap, steps sent to the
 *                     other nodes, qilin_model_follow
 *
 * With several nodes a process holds only its own GPUs' shards: shards[i]
 * is global rank first_rank + i; shard.rank and n_ranks are global. */
#ifndef QILIN_HOST_FORWARD_IMPL_H
#define QILIN_HOST_FORWARD_IMPL_H

#include <stdatomic.h>
#include <stdint.h>

#include "cuda/attention.h"
#include "cuda/blas.h"
#include "cuda/comm.h"
#include "cuda/gemm_gguf.h"
#include "host/checkpoint.h"
#include "host/forward.h"
#include "host/plan.h"
#include "host/workers.h"

/* A linear layer kept FP8 e4m3 with 128x128 block scales (w[slot] holds
 * this GPU's slice of the bytes, [out, in] packed): the scale rows and
 * columns covering the slice, and where the slice starts inside its block
 * (a TP split need not fall on the 128 grid). scale NULL: not FP8. */
typedef struct fp8_slot {
    float *scale;
    int row_off, col_off;
    int64_t ld_scale;
} fp8_slot;

/* A linear layer kept in its GGUF block format (w[slot] holds this GPU's
 * rows x whole blocks, as the file stores them, ldw bytes per row). on
 * false: not GGUF-quantized. */
typedef struct gguf_slot {
    bool on;
    qilin_gguf_format format;
    int64_t ldw;
} gguf_slot;

typedef struct layer {
    void *w[QILIN_SLOT_COUNT]; /* device pointers, activation dtype (or e4m3, fp8[slot]; GGUF blocks,
                                  gguf[slot]); NULL when absent */
    fp8_slot fp8[QILIN_SLOT_COUNT];
    gguf_slot gguf[QILIN_SLOT_COUNT];
    void *gate_up;                /* dense gated MLP [2F, H] */
    void *shared_gate_up;         /* shared experts [2Fs, H] */
    void *exp_gate_up, *exp_down; /* routed experts [E, 2Fe, H], [E, H, Fe] (dtype, or exp_wq's format) */
    /* routed experts kept quantized (qilin_moe_experts' wq, scale layouts in cuda/moe.h): the format,
     * scales, where this GPU's ffn slice starts in its FP8 block / INT4 group, the INT4 group */
    int exp_wq;
    void *exp_gate_up_scale, *exp_down_scale;
    int exp_row_off, exp_col_off, exp_group;
    float *router_bias;           /* [E_total] fp32 (the router is replicated) */
    void *k_cache,
        *v_cache; /* GQA: [blocks, block_size, nkv, hd(v)]; MLA: latent [blocks, block_size, r], pe [.., dr] */
} layer;

typedef struct shard {
    int rank, n_ranks, device;
    const qilin_model_desc *desc;
    const qilin_model_options *opt;
    const qilin_gpu_plan *gp;
    size_t es; /* bytes per activation element */
    qilin_blas *blas;
    qilin_stream *stream;
    qilin_comm *comm; /* NULL with one GPU */
    int n_sms;

    /* this GPU's part: heads, intermediate sizes, experts [e0, e0 + E), vocab rows */
    int nh, nkv, F, Fs, Fe, E, e0;
    int64_t v0, nv, Vp; /* vocab rows [v0, v0 + nv), Vp allocated (padded) */

    void *global[QILIN_W_LAYER_FIRST]; /* embed, final norm (+bias), lm_head (+bias) */
    gguf_slot gguf_global[QILIN_W_LAYER_FIRST]; /* embed / lm_head kept in GGUF blocks (vocab rows) */
    float *lm_head_bias_f32; /* GPT-J's lm_head bias again in fp32, for the GEMM path's fp32 logits */
    layer *layers;
    float *inv_freq;
    float cos_sin_scale;
    qilin_kv_layout k_layout, v_layout, latent_layout, pe_layout; /* slot_stride: one block */
    int kv_block_size, table_stride; /* positions per block; table entries per sequence (max_ctx's blocks) */
    int64_t kv_blocks;               /* blocks in each layer's pool */

    /* per-step buffers, sized for max_batch_tokens rows */
    qilin_workspace_plan ws; /* buffer sizes (plan_workspace.c) */
    int width;               /* widest intermediate row */
    void *R, *X, *N, *B1, *B2, *B3, *B4;
    float *router_logits, *topk_w;
    float *logits;              /* [T, vocab] fp32: the full rows (rank 0 only when n_ranks > 1) */
    float *logits_local;        /* [T, Vp] this GPU's vocab columns (n_ranks > 1) */
    float *logits_all;          /* [n_ranks, T, Vp] after the all-gather (n_ranks > 1) */
    int *topk_ids, *topk_local; /* topk_local: ids relative to e0 (expert parallelism) */
    int *expert_counts;         /* [n_layers, E] rows routed to each local expert in the last step */
    /* The step's index arrays: regions of one device block (step_dev) at
     * fixed offsets, filled each step from one pinned staging buffer
     * (step_host, same layout) by one asynchronous copy (step_buffers_*). */
    int *d_tokens, *d_positions, *d_token_slot, *d_q_start, *d_kv_len, *d_seq_slot, *d_rows;
    /* d_seq_slot: the block tables [max_seqs, table_stride]; d_token_slot: each token's block */
    int *d_single; /* [max_seqs][4]: {0, n_q, kv_len, 0} for one-sequence launches */
    int *d_iota;   /* [max_batch_tokens] 0, 1, ... (rank 0 with several GPUs) */
    int *step_dev, *step_host;
    qilin_event *step_copied; /* recorded after each upload: step_host is free once it completes */
    bool step_copy_pending;
    /* decode steps captured once per key and replayed (forward_layers.c) */
    bool graphs_on;
    struct decode_graph *graphs;
    int n_graphs;
    void *attn_ws, *moe_ws, *mla_kvb, *mla_k;
    /* all-to-all expert dispatch (QILIN_EP_ALL_TO_ALL), chunk = ws.ep_chunk rows per rank */
    void *a2a_send, *a2a_recv;              /* [n_ranks, chunk, hidden] */
    int *a2a_send_ids, *a2a_recv_ids;       /* [n_ranks, chunk] local expert ids, -1 padding */
    float *a2a_ones;                        /* [n_ranks chunk] 1.0f: the experts' top-1 weights */
    int *a2a_pos, *a2a_counts, *a2a_matrix; /* [S, top_k]; [n_ranks]; [n_ranks, n_ranks] gathered */
    int *a2a_matrix_host;                   /* host copy of a2a_matrix (malloc) */
    size_t attn_ws_bytes, moe_ws_bytes;
    int *d_sample_ids;
    qilin_sampling_params *d_params;
    int *d_history, *d_history_start; /* repetition-penalty history [max_seqs max_ctx], offsets [max_seqs + 1] */
    void *sample_ws;
    size_t sample_ws_bytes;

    uint64_t bytes;            /* device bytes this shard allocated */
    uint64_t weight_bytes;     /* of which checkpoint tensors as uploaded (what the plan counts) */
    uint64_t copy_bytes;       /* weights load_weights uploaded twice (GPT-J's fp32 lm_head bias) */
    qilin_forward_stats stats; /* collectives issued by this shard */
} shard;

struct qilin_model {
    qilin_model_desc *desc;
    qilin_model_options opt;
    qilin_plan *plan;
    int n;          /* this process's GPUs: opt.tp / opt.nodes */
    int first_rank; /* global rank of shards[0] */
    shard *shards;
    qilin_comm **comms;
    qilin_workers *workers;
    /* several nodes (forward_nodes.c) */
    struct qilin_cluster *cluster;
    atomic_int peer_failed; /* set by the cluster's watcher thread ... */
    char peer_failure[512]; /* ... after writing the peer's message here */
    atomic_int broken;      /* a step failed (set by a worker or a node): the GPUs' caches no longer agree */
    int sample_rows;        /* sequences of the last successful step whose logits rank 0 holds, one row each
                               (0 after a failed step or an all_logits one): what qilin_sample_last may sample */
};

/* What one step needs to know about its batch: host arrays, shared
 * read-only by the workers, which upload them to their own devices. */
typedef struct step {
    int T, n_seqs, max_q, max_kv, rows;
    bool decode; /* every sequence has one new token */
    const qilin_batch *b;
    int *kv_len, *pos, *tslot, *q_start, *single, *last; /* last: each sequence's last row */
    int *tables; /* [n_seqs, table_stride]: each sequence's blocks (-1 past its last) */
    int table_stride, block_size;
} step;

/* forward_load.c */
qilin_status shard_alloc(shard *g, void **p, size_t bytes, const char *what);
qilin_status shard_load(shard *g, const qilin_plan *plan, const qilin_bound_model *bound, const char *where);
void shard_free(shard *g);

/* forward.c: one step on every local GPU (checked, then run). */
qilin_status forward_run_step(qilin_model *m, const qilin_batch *b, float *host_logits);

/* forward_nodes.c */
qilin_status nodes_start(qilin_model *m, const int *devices); /* bootstrap, comm ranks, watcher */
qilin_status nodes_ready(qilin_model *m);                     /* after load: every node loaded */
qilin_status nodes_send_step(qilin_model *m, const qilin_batch *b);
qilin_status nodes_explain(qilin_model *m, qilin_status st); /* a failure's message; marks broken */
void nodes_end(qilin_model *m);

/* forward_layers.c: the step's index buffers (device block, pinned
 * staging, event); free releases what alloc made and is safe after a
 * partial alloc. */
qilin_status step_buffers_alloc(shard *g);
void step_buffers_free(shard *g);

/* forward_layers.c: the whole step on one shard; leaves `s->rows` rows of
 * fp32 logits (full vocabulary) in g->logits on rank 0. */
qilin_status shard_step(shard *g, const step *s);

/* forward_layers.c: the max_kv a decode step plans its attention for: the
 * longest context rounded up to a bucket (at most max_ctx), so that decode
 * steps whose contexts differ a little share one split plan, and one graph. */
int decode_kv_bucket(int max_kv, int max_ctx);
/* forward_layers.c: whether this shard replays decode graphs (options and
 * environment), and releasing its graphs. */
void decode_graphs_init(shard *g);
void decode_graphs_free(shard *g);

#endif /* QILIN_HOST_FORWARD_IMPL_H */
