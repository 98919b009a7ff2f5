/* sampling.h — next-token choice on the device (sampling.cu).
 *
 * Per row (one request): logits fp32 [vocab]; repetition penalty over the
 * row's history (HF rule: a positive logit is divided by the penalty, a
 * negative one multiplied), then temperature; temperature 0 = greedy (argmax,
 * lowest id on ties). Otherwise softmax, then the filters in the order
 * transformers applies them — top-k, top-p (smallest set whose mass >= p,
 * keeping at least one), min-p (drop tokens below min_p * max prob) — and a
 * draw from the renormalised distribution with a counter-based RNG keyed by
 * (seed, step): the same seed and step give the same token whatever else is
 * in the batch. */
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
} qilin_sampling_params;

typedef struct qilin_sample_args {
    int *out_ids;                 /* [rows] int32 */
    float *out_probs;             /* [rows] prob of the chosen token after filtering, or NULL */
    const float *logits;          /* [rows, vocab], row stride ld; not modified */
    int64_t ld;
    int rows, vocab;
    const qilin_sampling_params *params; /* [rows], device */
    const int *history;           /* token ids for the repetition penalty, device, or NULL */
    const int *history_start;     /* [rows + 1] offsets into history, device, or NULL */
    void *workspace;              /* qilin_sample_workspace bytes */
    size_t workspace_bytes;
} qilin_sample_args;
qilin_status qilin_sample(const qilin_sample_args *args, qilin_stream *stream);
size_t qilin_sample_workspace(int rows, int vocab);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_SAMPLING_H */
