/* forward.h — a model on one or several devices and its forward pass.
 *
 * qilin_model_load reads a checkpoint (config.json + safetensors), uploads
 * the weights in the activation dtype (bf16 by default; f32 for checking
 * numerics against references), and allocates each layer's KV cache as a
 * pool of blocks of kv_block_size positions (kv_cache_tokens in all, by
 * default max_seqs × max_ctx). A sequence's KV lives in the blocks its block
 * table lists (qilin_batch.blocks), in any order, possibly shared with other
 * sequences for a common prefix; the attention kernels read through the
 * tables. Without tables, sequence slot s is the identity table of blocks
 * s·B .. s·B + B − 1 (B = ceil(max_ctx / kv_block_size)), which with the
 * default sizes is exactly the old contiguous slot. With tp > 1 every GPU
 * holds its KV heads' share of every block (MLA: the whole latent).
 * qilin_forward runs one step
 * over a batch of sequences, each with its own number of new tokens (a
 * prefill, a chunk of one, or one decode token) appended at its own
 * position, and returns fp32 logits. The sequence of launches per
 * architecture is in forward_layers.c; models.md describes the math.
 *
 * With tp > 1 the model is split over devices device .. device + tp - 1 by
 * the sharding plan (plan.h), one worker thread per device; the split is
 * invisible in the results (logits keep the one-GPU layout). Collectives
 * per step: one all-reduce after the vocab-parallel embedding, per layer one
 * after attention and one after the MLP/MoE (sequential blocks) or a single
 * one of their sum (GPT-NeoX/GPT-J parallel blocks), and one all-gather of
 * the logits. Expert parallelism (ep) adds none in QILIN_EP_REPLICATED mode;
 * QILIN_EP_ALL_TO_ALL adds, per MoE layer, an all-gather of the dispatch
 * counts and three all-to-alls (forward_layers.c says when each pays off).
 *
 * Several nodes (nodes > 1, one process each, e.g. two 8-GPU machines for
 * DeepSeek-V3 at tp 16): every node loads its own GPUs' slices; node 0 is
 * the model its caller drives, the others call qilin_model_follow
 * (forward_nodes.c has the protocol). qilin_model_gpu_bytes then covers
 * this process's GPUs (0 .. tp / nodes - 1).
 *
 * Thread safety: one thread at a time per model; the model's worker threads
 * are its own. */
#ifndef QILIN_HOST_FORWARD_H
#define QILIN_HOST_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "cuda/dtype.h"
#include "cuda/sampling.h"
#include "cuda/status.h"
#include "host/model.h"
#include "host/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_mla_mode {
    QILIN_MLA_AUTO = 0,  /* naive form for batches with prefill, absorbed for pure decode */
    QILIN_MLA_ABSORBED,  /* always the absorbed (latent-space) form */
    QILIN_MLA_NAIVE,     /* always up-project the cached latents */
} qilin_mla_mode;

/* How MoE tokens reach the GPUs that own their experts under expert
 * parallelism (forward_layers.c has the trade-off). */
typedef enum qilin_ep_dispatch {
    QILIN_EP_REPLICATED = 0, /* every GPU routes every token (tensor-parallel attention left all
                                tokens on every GPU), runs its own experts; partial sums ride
                                the FFN's all-reduce: no extra collective */
    QILIN_EP_ALL_TO_ALL,     /* each GPU routes its share of the tokens and sends each row to
                                its experts' owner by all-to-all; results come back the same
                                way (what data-parallel attention needs) */
} qilin_ep_dispatch;

typedef struct qilin_model_options {
    qilin_dtype dtype;        /* activations, weights and KV cache: QILIN_BF16 (default), F16, F32 */
    int device;               /* 0; with tp > 1 the first of devices device .. device + tp - 1 */
    int max_seqs;             /* KV slots; default 8 */
    int max_ctx;              /* positions per slot; default qilin_model_default_ctx; more than the
                                 model's max_position_embeddings is refused */
    int max_batch_tokens;     /* new tokens per step; default 512 */
    qilin_mla_mode mla_mode;
    bool progress;            /* progress bar on stderr while loading */
    int tp;                   /* tensor-parallel GPUs; default 1 */
    bool ep;                  /* MoE: whole experts per GPU (expert parallelism)
                                 instead of every expert split by its intermediate size */
    qilin_ep_dispatch ep_dispatch; /* with ep; default QILIN_EP_REPLICATED */
    /* Several processes (one per node) sharing the tp GPUs: node n drives
     * global ranks n * tp / nodes .. (n + 1) * tp / nodes - 1 on its devices
     * device .. device + tp / nodes - 1. See qilin_model_follow. */
    int nodes;               /* default 1 */
    int node_rank;           /* 0 (the leader, which calls qilin_forward) .. nodes - 1 */
    const char *coordinator; /* "host:port" where node 0 listens (cluster.h) */
    /* Weights from config.json alone (host/random_weights.h): seeded random
     * values in the release's format; `path` needs no weight files. */
    bool random_weights;
    uint64_t random_seed;
    int layers;              /* > 0: keep the first `layers` layers only (qilin_model_desc_keep_layers) */
    double comm_timeout_s;   /* with tp > 1: the deadline of every wait on a collective and of the
                                communicators' start-up, in seconds; 0 = QILIN_COMM_TIMEOUT_DEFAULT_S
                                (600). A peer that never arrives fails the step instead of hanging */
    bool no_graphs;          /* run every decode step eagerly instead of replaying a captured graph
                                (also QILIN_NO_GRAPHS=1 in the environment); forward_layers.c */
    /* The paged KV cache (resolved at load: qilin_model_get_options shows the values used). */
    int kv_block_size;       /* positions per KV block; 0 = 64 for MLA (FlashMLA's page: two 32-key
                                tiles), 32 otherwise (the decode kernels' key tile), halved until it
                                divides max_ctx so the default pool is exactly max_seqs × max_ctx */
    int64_t kv_cache_tokens; /* positions in each layer's pool, rounded up to whole blocks; 0 =
                                max_seqs × max_ctx. Memory: kv_cache_tokens × the plan's KV bytes per
                                token (qilin_plan_memory's kv_tokens is what fits) */
    double gpu_memory_utilization; /* vLLM's: 0 = off (kv_cache_tokens sizes the pool); in (0, 1]: the
                                pool takes every KV token the memory plan (qilin_plan_memory) fits in
                                this fraction of the first GPU's memory after weights, step buffers and
                                the reserve — refused when not even one max_ctx sequence fits, and
                                together with kv_cache_tokens */
} qilin_model_options;

/* Defaults for every field: fills *o. */
void qilin_model_options_default(qilin_model_options *o);
/* The context a model gets when max_ctx is 0: min(max_position_embeddings,
 * QILIN_DEFAULT_CTX), or QILIN_DEFAULT_CTX when the config does not say. */
enum { QILIN_DEFAULT_CTX = 4096 };
int qilin_model_default_ctx(const qilin_model_desc *d);

typedef struct qilin_model qilin_model;

qilin_status qilin_model_load(const char *path, const qilin_model_options *options, qilin_model **out);
void qilin_model_free(qilin_model *m); /* NULL does nothing */
const qilin_model_desc *qilin_model_get_desc(const qilin_model *m);
const qilin_model_options *qilin_model_get_options(const qilin_model *m);

/* Device bytes the model allocated on its GPU `gpu` (0 .. tp - 1): weights,
 * KV cache and per-step buffers; 0 for a GPU it does not use. */
uint64_t qilin_model_gpu_bytes(const qilin_model *m, int gpu);
/* Of which weights: the checkpoint tensors as uploaded (FP8 scales
 * included), what the model's plan counts. */
uint64_t qilin_model_weight_bytes(const qilin_model *m, int gpu);
/* The sharding plan the model was loaded with, in the formats it uploaded
 * (what host/predict.h needs to predict its steps); valid while m lives. */
const qilin_plan *qilin_model_get_plan(const qilin_model *m);

/* Collectives issued by GPU 0 since the model was loaded. */
typedef struct qilin_forward_stats {
    uint64_t steps;           /* forward steps (each qilin_forward, each prefill chunk / decode step) */
    uint64_t all_reduce, all_gather;
    uint64_t all_to_all;      /* QILIN_EP_ALL_TO_ALL: 3 per MoE layer (rows, ids, results back) */
    uint64_t graph_captures;  /* decode steps captured into a graph (then replayed) */
    uint64_t graph_replays;   /* decode steps run by replaying a graph (captures included) */
} qilin_forward_stats;
void qilin_model_forward_stats(const qilin_model *m, qilin_forward_stats *out);

/* Tokens (rows: token × choice) routed to each of the n_experts routed
 * experts of `layer` in the last step, gathered from the GPUs that own them;
 * counts has desc->n_experts entries. A layer without routed experts is
 * QILIN_ERR_INVALID_ARGUMENT. */
qilin_status qilin_model_expert_counts(qilin_model *m, int layer, int *counts);

/* One step. Sequence i has start_pos[i] tokens already cached and appends
 * n_tokens[i] >= 1 new ones; tokens holds the new ids of all sequences back
 * to back. Its KV: with blocks set, blocks[i] is its block table (pool
 * indices, position p in block blocks[i][p / kv_block_size]) covering
 * positions 0 .. start_pos[i] + n_tokens[i] - 1; the blocks its new tokens
 * are written to must appear in no other sequence's table of the batch
 * (blocks only read may be shared). Without blocks, slot[i] (distinct within
 * the batch) names its identity table (above). logits receives fp32 rows
 * (host memory): every new token of every sequence in order when
 * all_logits, else one row per sequence (its last token). With nodes > 1
 * the tables travel to the other nodes with the step (their pools are node
 * 0's: same block size and tokens). */
typedef struct qilin_batch {
    int n_seqs;
    const int *slot, *start_pos, *n_tokens;
    const int *tokens;
    bool all_logits;
    const int *const *blocks; /* NULL: slots */
} qilin_batch;

/* The KV pool the model allocated: blocks per layer and positions per block. */
void qilin_model_kv_pool(const qilin_model *m, int *num_blocks, int *block_size);

qilin_status qilin_forward(qilin_model *m, const qilin_batch *batch, float *logits);

/* Samples one id for each of the first `rows` sequences of the last
 * qilin_forward step (from their last token's logits, left on the device)
 * with the device sampler qilin_generate_stream uses: params[r] for row r
 * (its step included), and the penalties' history of row r at
 * history[history_start[r] .. history_start[r + 1]) (history NULL: none;
 * each at most max_ctx ids). Refused after a failed step or an all_logits
 * one, for rows beyond that step's sequences, and for parameters
 * qilin_sampling_params_check refuses. Lets a caller that builds its own
 * batches (the engine, runtime/engine.h) sample exactly as generation does. */
qilin_status qilin_sample_last(qilin_model *m, int rows, const qilin_sampling_params *params, const int *history,
                               const int *history_start, int *ids);
/* The same with presence/frequency penalties: row r's generated ids are
 * history[output_start[r] .. history_start[r + 1]) (output_start NULL: none
 * generated, as qilin_sample_last). Penalties are applied in place on the
 * step's device logits (qilin_apply_penalties), so sample a step once. */
qilin_status qilin_sample_last_ex(qilin_model *m, int rows, const qilin_sampling_params *params, const int *history,
                                  const int *history_start, const int *output_start, int *ids);

/* Several nodes: on every node but 0, after qilin_model_load, runs the
 * steps node 0 sends (each qilin_forward, prefill chunk and decode step of
 * node 0's caller) until node 0 frees its model, then returns QILIN_OK. A
 * failure (this node's step, node 0 gone) is returned after telling node 0,
 * whose call fails with this node's message. Then free the model. */
qilin_status qilin_model_follow(qilin_model *m);

/* Called with each new token of sequence `seq`, in order; return false to end
 * that sequence there (EOS, a stop string, the caller's own limit). */
typedef bool (*qilin_token_fn)(void *user, int seq, int token);

/* Continues n_seqs prompts (KV slots 0..n_seqs-1) by up to max_new tokens
 * each: every prompt is prefilled in chunks of max_batch_tokens and gives its
 * first token, then the live sequences decode together, one token each per
 * step, sampled on the device with params[i] (temperature 0 = greedy; step
 * j of a sequence uses params[i].step + j). A prompt whose length plus
 * max_new exceeds max_ctx, and parameters qilin_sampling_params_check
 * refuses (NaN or negative temperature, top_p outside (0, 1], ...), are
 * refused before anything runs. */
qilin_status qilin_generate_stream(qilin_model *m, int n_seqs, const int *const *prompts, const int *prompt_lens,
                                   const qilin_sampling_params *params, int max_new, qilin_token_fn on_token,
                                   void *user);

/* qilin_generate_stream for exactly n_new tokens each: out[i * n_new + j] is
 * the j-th new token of sequence i (EOS handling is the caller's). */
qilin_status qilin_generate(qilin_model *m, int n_seqs, const int *const *prompts, const int *prompt_lens,
                            const qilin_sampling_params *params, int n_new, int *out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_HOST_FORWARD_H */
