/* engine.h — continuous batching over one loaded model (runtime/engine/).
 *
 * Requests (prompt ids, sampling parameters, a token limit, stop ids) are
 * added at any time and get an id. Each qilin_engine_step is one forward
 * step of the model over a batch the scheduler builds afresh:
 *   1. running sequences, oldest admitted first: one decode token each, or
 *      the next chunk (at most prefill_chunk tokens) of a prompt still being
 *      prefilled, while the step's token budget (max_num_batched_tokens)
 *      lasts;
 *   2. then waiting requests, first come first served, admitted while a
 *      sequence (max_num_seqs) and the budget remain, each with its first
 *      prompt chunk after its prefix-cache hit.
 * So long prompts are prefilled in chunks interleaved with other sequences'
 * decodes, and requests join and leave the batch at any step. Every
 * sequence whose computed tokens reach its last one samples its next token
 * with its own parameters on the device sampler qilin_generate_stream uses
 * (params.step + the number of tokens it generated so far; the repetition
 * penalty over prompt + generated ids), so in fp32 greedy a request gives
 * the tokens it gives alone through qilin_generate_stream.
 *
 * KV memory is the model's paged KV pool (host/forward.h: kv_block_size,
 * kv_cache_tokens), managed in blocks by a block manager
 * (engine/kv_blocks.h): each sequence holds a block table for the positions
 * it has computed or is about to compute, and qilin_forward's attention
 * kernels read and write its KV through that table. Full blocks are keyed
 * by their tokens and shared between sequences with a common prefix (prefix
 * caching, hit rate in the stats): a sequence admitted with a hit skips the
 * prefill of the shared blocks (prefill_tokens counts only what was
 * computed); released blocks stay cached until the pool needs them (LRU).
 * When a running sequence needs a block and the pool is empty, the most
 * recently admitted running sequence is preempted: its blocks are released
 * and it goes back to the waiting queue (at its arrival place) to be
 * recomputed from its prompt and the tokens it already generated (less
 * whatever of it is still cached), so the oldest sequences always finish. A
 * request that could never fit (more blocks than the whole pool, or more
 * positions than the model's context) is refused when added.
 *
 * Thread safety: one thread at a time per engine, and the model is the
 * engine's while it exists (no qilin_forward or qilin_generate on it
 * meanwhile). The token callback must not call back into the engine. */
#ifndef QILIN_RUNTIME_ENGINE_H
#define QILIN_RUNTIME_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "cuda/sampling.h"
#include "cuda/status.h"
#include "host/forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_engine qilin_engine;

typedef enum qilin_engine_finish {
    QILIN_ENGINE_RUNNING = 0, /* not finished: waiting or running */
    QILIN_ENGINE_LENGTH,      /* reached max_new_tokens */
    QILIN_ENGINE_STOPPED,     /* generated one of its stop ids (delivered, as the last token) */
    QILIN_ENGINE_CANCELLED,   /* qilin_engine_cancel */
} qilin_engine_finish;
const char *qilin_engine_finish_name(qilin_engine_finish r);

/* Called once per generated token, in order per request; `finished` is
 * not QILIN_ENGINE_RUNNING on the request's last token. Cancelled requests
 * get no call. To stop a request from here, note it and cancel it after the
 * step (a request gets at most one token per step). */
typedef void (*qilin_engine_token_fn)(void *user, int64_t request_id, int token, qilin_engine_finish finished);

/* Log-probabilities of a generated token under the model's distribution:
 * log-softmax of the step's raw fp32 logits (before the repetition penalty,
 * temperature and the top-k/top-p/min-p filters, as vLLM reports them by
 * default). top_ids / top_logprobs: the n_top most likely ids, most likely
 * first (ties: lowest id first); valid during the callback only. */
typedef struct qilin_token_logprobs {
    int token;
    float logprob;
    int n_top;
    const int *top_ids;
    const float *top_logprobs;
} qilin_token_logprobs;
/* Called just before on_token for a token whose request asked for logprobs. */
typedef void (*qilin_engine_logprobs_fn)(void *user, int64_t request_id, const qilin_token_logprobs *lp);

/* The same on one row of logits (host memory): *logprob of token (-inf
 * outside [0, vocab) or when no logit is finite) and the top k (k <= vocab)
 * into top_ids / top_logprobs. Pure; the engine's reference and its code. */
void qilin_log_softmax_top(const float *logits, int vocab, int token, int k, float *logprob, int *top_ids,
                           float *top_logprobs);

typedef struct qilin_engine_options {
    int max_num_seqs;           /* sequences running at once; 0 = the model's max_seqs (its KV slots), the most */
    int max_num_batched_tokens; /* new tokens per step; 0 = the model's max_batch_tokens, the most */
    int prefill_chunk;          /* most prompt tokens of one sequence per step; 0 = max_num_batched_tokens */
    int block_size;             /* 0 or the model's kv_block_size (the pool's blocks are the model's) */
    int num_blocks;             /* blocks 0 .. num_blocks - 1 of the model's pool; 0 = all of them */
    bool no_prefix_caching;     /* key no blocks */
    qilin_engine_token_fn on_token; /* may be NULL: then poll */
    qilin_engine_logprobs_fn on_logprobs; /* may be NULL; only requests with logprobs set call it */
    void *user;
} qilin_engine_options;

void qilin_engine_options_default(qilin_engine_options *o); /* all zero: the defaults above */

/* The engine borrows m (the caller frees it after qilin_engine_free).
 * Options beyond the model's limits are refused with the numbers. */
qilin_status qilin_engine_create(qilin_model *m, const qilin_engine_options *options, qilin_engine **out);
void qilin_engine_free(qilin_engine *e); /* NULL does nothing; drops every request */

typedef struct qilin_engine_request {
    const int *prompt;              /* copied */
    int prompt_len;                 /* >= 1 */
    qilin_sampling_params params;   /* step: the counter of the request's first new token */
    int max_new_tokens;             /* >= 1 */
    const int *stop_ids;            /* copied; may be NULL when n_stop_ids is 0 */
    int n_stop_ids;
    bool logprobs;                  /* report each token's logprob (on_logprobs); steps with such a
                                       request copy their logits to the host, the others do not */
    int top_logprobs;               /* with logprobs: that many alternatives, 0 .. QILIN_MAX_TOP_LOGPROBS */
} qilin_engine_request;
enum { QILIN_MAX_TOP_LOGPROBS = 20 };

/* Queues a request; *id receives its id (1, 2, ... in order of addition).
 * Refused (QILIN_ERR_INVALID_ARGUMENT, nothing queued, the message naming
 * the request's would-be id and the numbers) for an empty prompt, ids
 * outside the vocabulary, bad sampling parameters, max_new_tokens < 1,
 * prompt_len + max_new_tokens over the model's context, or more KV blocks
 * than the whole pool holds. */
qilin_status qilin_engine_add(qilin_engine *e, const qilin_engine_request *r, int64_t *id);

/* Ends a waiting or running request now (its blocks are freed);
 * its tokens so far stay readable by qilin_engine_poll. An unknown or
 * released id is QILIN_ERR_INVALID_ARGUMENT; a finished one is left as it is
 * (QILIN_OK). */
qilin_status qilin_engine_cancel(qilin_engine *e, int64_t id);

/* A request's generated tokens so far (*tokens valid until the next call
 * into the engine), their count, and its state. */
qilin_status qilin_engine_poll(const qilin_engine *e, int64_t id, const int **tokens, int *n_tokens,
                               qilin_engine_finish *finished);

/* Forgets a finished or cancelled request (finished requests are kept for
 * qilin_engine_poll until released or until the engine is freed). */
qilin_status qilin_engine_release(qilin_engine *e, int64_t id);

/* One engine iteration: schedule, one qilin_forward, sample, deliver
 * tokens. Nothing to do is QILIN_OK (and no step counted). A failed forward
 * or sampling call returns its status with no request's progress advanced
 * (the step can be retried; a multi-GPU model refuses further steps). */
qilin_status qilin_engine_step(qilin_engine *e);

/* Steps until no request is waiting or running. */
qilin_status qilin_engine_run(qilin_engine *e);

bool qilin_engine_idle(const qilin_engine *e);

typedef struct qilin_engine_stats {
    uint64_t steps;
    uint64_t batched_seqs;     /* sum over steps of the sequences in the batch */
    uint64_t batched_tokens;   /* sum over steps of the new tokens in the batch */
    uint64_t prefill_tokens;   /* prompt tokens computed (recomputation after preemption included) */
    uint64_t decode_tokens;    /* generated tokens fed back */
    uint64_t preemptions;
    uint64_t requests_added, requests_finished, requests_cancelled;
    int waiting, running;      /* now */
    /* the block pool */
    int num_blocks, block_size, free_blocks, cached_blocks;
    uint64_t prefix_lookups, prefix_hits, evictions; /* full prompt blocks looked up at admission, found */
} qilin_engine_stats;
void qilin_engine_get_stats(const qilin_engine *e, qilin_engine_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_RUNTIME_ENGINE_H */
