/* rope.h — rotary position embedding (rope.cu).
 *
 * Frequencies are computed once on the host (qilin_rope_inv_freq) from the
 * model's rope settings and uploaded; the kernel rotates q and k in place
 * for each token at its own position. Pairing is a property of the weight
 * layout (models.md §1.4): HALF_SPLIT rotates (x[j], x[j + rot/2]) — Llama,
 * Qwen, Mixtral, GPT-NeoX in HF layout; INTERLEAVED rotates (x[2j], x[2j+1])
 * — GPT-J, DeepSeek V2/V3, Kimi K2. Only the first rot_dim dims of each head
 * are rotated (partial rotary); the rest pass through untouched. */
#ifndef QILIN_ROPE_H
#define QILIN_ROPE_H

#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qilin_rope_pairing {
    QILIN_ROPE_HALF_SPLIT = 0,
    QILIN_ROPE_INTERLEAVED,
} qilin_rope_pairing;

typedef enum qilin_rope_scaling {
    QILIN_ROPE_SCALING_NONE = 0,
    QILIN_ROPE_SCALING_LINEAR, /* inv_freq / factor */
    QILIN_ROPE_SCALING_LLAMA3, /* models.md §1.5 (a) */
    QILIN_ROPE_SCALING_YARN,   /* models.md §1.5 (b) */
} qilin_rope_scaling;

/* Everything that decides the frequencies; the model descriptor fills it
 * from config.json or GGUF metadata. Unused fields are ignored. */
typedef struct qilin_rope_config {
    qilin_rope_pairing pairing;
    int rot_dim;                  /* even, <= head dim */
    double theta;                 /* rope_theta */
    qilin_rope_scaling scaling;
    double factor;                /* linear, llama3, yarn */
    double original_max_position; /* llama3, yarn: original_max_position_embeddings */
    double low_freq_factor;       /* llama3 (1) */
    double high_freq_factor;      /* llama3 (4) */
    double beta_fast, beta_slow;  /* yarn; 0 = default (32, 1) */
    double mscale, mscale_all_dim; /* yarn; 0 = absent */
    double attention_factor;      /* yarn: explicit override; 0 = derive */
} qilin_rope_config;

/* Fills inv_freq[rot_dim / 2] and *cos_sin_scale, the factor that multiplies
 * cos and sin (YaRN's attention factor; 1 otherwise). For DeepSeek-style
 * configs where mscale == mscale_all_dim that factor is exactly 1 and the
 * softmax scale carries mscale² instead — see qilin_yarn_mscale. */
qilin_status qilin_rope_inv_freq(const qilin_rope_config *config, float *inv_freq,
                                 float *cos_sin_scale);

/* YaRN's get_mscale(s, m): 1 for s <= 1, else 0.1 m ln(s) + 1. */
double qilin_yarn_mscale(double factor, double m);

/* Rotates the first rot_dim dims of every head of q and k, in place, for
 * token t at positions[t]: angle a_j = positions[t] * inv_freq[j], computed in
 * fp32 (as transformers does), cos/sin multiplied by cos_sin_scale.
 * q and k are strided views so fused projections need no copy: element d of
 * head h of token t is at q + t * q_token_stride + h * q_head_stride + d. */
typedef struct qilin_rope_args {
    void *q;                      /* may be NULL (n_q_heads ignored) */
    int64_t q_token_stride, q_head_stride; /* elements */
    int n_q_heads;
    void *k;                      /* may be NULL (n_k_heads ignored) */
    int64_t k_token_stride, k_head_stride;
    int n_k_heads;
    const int *positions;         /* [tokens] int32, device */
    const float *inv_freq;        /* [rot_dim / 2] fp32, device */
    float cos_sin_scale;
    int tokens, rot_dim;
    qilin_rope_pairing pairing;
    qilin_dtype dtype;            /* f32, bf16 or f16 */
} qilin_rope_args;

qilin_status qilin_rope(const qilin_rope_args *args, qilin_stream *stream);

#ifdef __cplusplus
}
#endif
#endif /* QILIN_ROPE_H */
