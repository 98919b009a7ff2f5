/* forward.h — a model on one device and its forward pass.
 *
 * qilin_model_load reads a checkpoint (config.json + safetensors), uploads
 * the weights in the activation dtype (bf16 by default; f32 for checking
 * numerics against references), and allocates a contiguous KV cache of
 * max_seqs slots × max_ctx positions per layer. qilin_forward runs one step
 * over a batch of sequences, each with its own number of new tokens (a
 * prefill, a chunk of one, or one decode token) appended at its own
 * position, and returns fp32 logits. The sequence of launches per
 * architecture is in forward.c; models.md describes the math. */
#ifndef QILIN_HOST_FORWARD_H
#define QILIN_HOST_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "cuda/dtype.h"
#include "cuda/sampling.h"
#include "cuda/status.h"
#include "host/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_mla_mode {
    QILIN_MLA_AUTO = 0,  /* naive form for batches with prefill, absorbed for pure decode */
    QILIN_MLA_ABSORBED,  /* always the absorbed (latent-space) form */
    QILIN_MLA_NAIVE,     /* always up-project the cached latents */
} qilin_mla_mode;

typedef struct qilin_model_options {
    qilin_dtype dtype;        /* activations, weights and KV cache: QILIN_BF16 (default), F16, F32 */
    int device;               /* 0 */
    int max_seqs;             /* KV slots; default 8 */
    int max_ctx;              /* positions per slot; default min(max_position, 4096) */
    int max_batch_tokens;     /* new tokens per step; default 512 */
    qilin_mla_mode mla_mode;
    bool progress;            /* progress bar on stderr while loading */
} qilin_model_options;

/* Defaults for every field: fills *o. */
void qilin_model_options_default(qilin_model_options *o);

typedef struct qilin_model qilin_model;

qilin_status qilin_model_load(const char *path, const qilin_model_options *options, qilin_model **out);
void qilin_model_free(qilin_model *m); /* NULL does nothing */
const qilin_model_desc *qilin_model_get_desc(const qilin_model *m);
const qilin_model_options *qilin_model_get_options(const qilin_model *m);

/* One step. Sequence i owns KV slot slot[i] (distinct within the batch), has
 * start_pos[i] tokens already cached there and appends n_tokens[i] >= 1 new
 * ones; tokens holds the new ids of all sequences back to back. logits
 * receives fp32 rows (host memory): every new token of every sequence in
 * order when all_logits, else one row per sequence (its last token). */
typedef struct qilin_batch {
    int n_seqs;
    const int *slot, *start_pos, *n_tokens;
    const int *tokens;
    bool all_logits;
} qilin_batch;

qilin_status qilin_forward(qilin_model *m, const qilin_batch *batch, float *logits);

/* Called with each new token of sequence `seq`, in order; return false to end
 * that sequence there (EOS, a stop string, the caller's own limit). */
typedef bool (*qilin_token_fn)(void *user, int seq, int token);

/* Continues n_seqs prompts (KV slots 0..n_seqs-1) by up to max_new tokens
 * each: every prompt is prefilled in chunks of max_batch_tokens and gives its
 * first token, then the live sequences decode together, one token each per
 * step, sampled on the device with params[i] (temperature 0 = greedy; step
 * j of a sequence uses params[i].step + j). A prompt whose length plus
 * max_new exceeds max_ctx is refused before anything runs. */
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
