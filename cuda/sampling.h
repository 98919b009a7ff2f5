/* sampling.h — next-token choice on the device (sampling.cu).
 *
 * Per row (one request): logits fp32 [vocab]; repetition penalty over the
 * row's history (HF rule: a positive logit is divided by the penalty, a
 * negative one multiplied; each distinct history token once; ids outside
 * [0, vocab) ignored), then temperature; temperature 0 = greedy (argmax,
 * lowest id on ties). Otherwise softmax, then the filters in the order
 * transformers applies them (generation/utils.py: repetition penalty
 * processor, then the Temperature, TopK, TopP, MinP warpers) — top-k,
 * top-p (smallest set whose mass >= p, keeping at least one), min-p (drop
 * tokens below min_p * max prob) — and a draw from the renormalised
 * distribution with a counter-based RNG (Philox-4x32-10) keyed by
 * (seed, step): the same seed and step give the same token whatever else is
 * in the batch.
 *
 * Ties: tokens are ranked by (value desc, id asc), and every filter keeps a
 * prefix of that ranking. So top-k keeps exactly k tokens (transformers keeps
 * every token tied with the k-th; here the lowest ids win) and top_k = 1 is
 * greedy; top-p's boundary ties also go to the lowest ids.
 * NaN logits are never chosen; a row whose logits are all -inf yields id 0
 * (prob 0); a +inf logit is chosen outright (the lowest such id).
 *
 * Parameters live in device memory, so qilin_sample cannot check them: a row
 * with invalid parameters gets id -1 (and prob NaN). Check them on the host
 * with qilin_sampling_params_check before the upload. */
#ifndef QILIN_SAMPLING_H
#define QILIN_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qilin_sampling_params {
    float temperature;            /* 0 = greedy */
    int top_k;                    /* 0 = off */
    float top_p;                  /* 1 = off */
    float min_p;                  /* 0 = off */
    float repetition_penalty;     /* 1 = off */
    uint64_t seed;
    uint64_t step;                /* the request's token counter, advanced by the caller */
    /* OpenAI's penalties over the row's generated tokens (qilin_apply_penalties);
     * 0 = off. Last, so positional initialisers that stop at step keep them off. */
    float presence_penalty;       /* subtracted once from every token generated so far */
    float frequency_penalty;      /* subtracted once per time a token was generated */
} qilin_sampling_params;

/* Host-side check of one row's parameters: temperature finite and >= 0,
 * top_k >= 0, top_p in (0, 1], min_p in [0, 1], repetition_penalty finite and
 * > 0, presence_penalty and frequency_penalty finite. QILIN_OK, or QILIN_ERR_INVALID_ARGUMENT with the reason in `why`
 * (QILIN_SAMPLING_WHY_BYTES, may be NULL) and in qilin_last_error(). */
#define QILIN_SAMPLING_WHY_BYTES 128
qilin_status qilin_sampling_params_check(const qilin_sampling_params *p, char *why);

typedef struct qilin_sample_args {
    int *out_ids;                 /* [rows] int32 */
    float *out_probs;             /* [rows] prob of the chosen token after filtering (1 for greedy), or NULL */
    const float *logits;          /* [rows, vocab], row stride ld; not modified */
    int64_t ld;
    int rows, vocab;
    const qilin_sampling_params *params; /* [rows], device */
    const int *history;           /* token ids for the repetition penalty, device, or NULL */
    const int *history_start;     /* [rows + 1] offsets into history, device, or NULL */
    void *workspace;              /* qilin_sample_workspace bytes (0 today: may be NULL) */
    size_t workspace_bytes;
} qilin_sample_args;
qilin_status qilin_sample(const qilin_sample_args *args, qilin_stream *stream);

/* The penalties as vLLM applies them, in place on the logits, before
 * qilin_sample (which then gets no history): per row, first the repetition
 * penalty over each distinct id of history[history_start[r],
 * history_start[r + 1]) (the HF rule above), then for each distinct id of
 * the generated part history[output_start[r], history_start[r + 1]) seen c
 * times: logit -= frequency_penalty * c, then logit -= presence_penalty.
 * Rows without penalties (or with invalid parameters: qilin_sample flags
 * them) are untouched; ids outside [0, vocab) are ignored. Deterministic. */
typedef struct qilin_penalty_args {
    float *logits;                /* [rows, vocab], row stride ld; modified */
    int64_t ld;
    int rows, vocab;
    const qilin_sampling_params *params; /* [rows], device */
    const int *history;           /* device */
    const int *history_start;     /* [rows + 1], device */
    const int *output_start;      /* [rows], device: where each row's generated ids begin */
} qilin_penalty_args;
qilin_status qilin_apply_penalties(const qilin_penalty_args *args, qilin_stream *stream);
size_t qilin_sample_workspace(int rows, int vocab);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_SAMPLING_H */
