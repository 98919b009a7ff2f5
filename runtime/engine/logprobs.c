/* logprobs.c — the log-probabilities the engine reports with a token
 * (engine.h, qilin_token_logprobs): log-softmax of one row of fp32 logits,
 * summed in double, and its top k. NaN logits count as -inf (never ranked
 * ahead of a number); ties rank the lowest id first, as the sampler does. */
#include <math.h>

#include "runtime/engine.h"

/* True when (value a, id ia) ranks ahead of (value b, id ib). */
static bool ahead(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

static float clean(float x) { return isnan(x) ? -INFINITY : x; }

void qilin_log_softmax_top(const float *logits, int vocab, int token, int k, float *logprob, int *top_ids,
                           float *top_logprobs) {
    float max = -INFINITY;
    for (int i = 0; i < vocab; i++) max = fmaxf(max, clean(logits[i]));
    double sum = 0;
    if (isfinite(max))
        for (int i = 0; i < vocab; i++) sum += exp((double)clean(logits[i]) - (double)max);
    /* log p_i = l_i - max - log(sum); a row without a finite logit has no distribution: -inf */
    double lse = isfinite(max) ? (double)max + log(sum) : INFINITY;
    *logprob = token >= 0 && token < vocab ? (float)((double)clean(logits[token]) - lse) : -INFINITY;
    /* top k by insertion into a sorted list (k <= 20: linear is fine) */
    int n = 0;
    for (int i = 0; i < vocab && k > 0; i++) {
        float v = clean(logits[i]);
        if (n == k && !ahead(v, i, clean(logits[top_ids[n - 1]]), top_ids[n - 1])) continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && ahead(v, i, clean(logits[top_ids[at - 1]]), top_ids[at - 1])) {
            top_ids[at] = top_ids[at - 1];
            at--;
        }
        top_ids[at] = i;
    }
    for (int i = 0; i < n; i++) top_logprobs[i] = (float)((double)clean(logits[top_ids[i]]) - lse);
}
