/* rope.cu — rotary position embedding, applied in place to q and k.
 *
 *   for token t, head h, pair j < rot_dim / 2:
 *     a = (float)positions[t] * inv_freq[j]                 fp32, as transformers
 *     c = (T)(cosf(a) * scale), s = (T)(sinf(a) * scale)    rounded to dtype, as HF's cos.to(x.dtype)
 *     (u, v) = the pair: HALF_SPLIT (x[j], x[j + rot/2]), INTERLEAVED (x[2j], x[2j+1])
 *     u' = u c - v s,  v' = u s + v c                       fp32, one rounding to dtype
 *
 * Dims past rot_dim are neither read nor written (partial rotary keeps them
 * bit for bit). q and k are strided views, so a fused QKV projection
 * ([q k v] per head as in GPT-NeoX, or [all q | all k | all v]) and the rope
 * slice of DeepSeek's MLA heads are rotated where they lie.
 *
 * Angles: positions reach 100k+ and the angle of pair 0 is then ~1e5 rad, so
 * cos/sin use the accurate sincosf (correct range reduction over the whole
 * fp32 range), never __sinf/__cosf, whose error grows with |a|. The angle
 * itself is the fp32 product, exactly what transformers computes (its
 * inv_freq @ position_ids matmul has K = 1), so our rotation differs from HF
 * only in HF's extra bf16 roundings of q*cos and rotate_half(q)*sin.
 *
 * One block per token: its threads first fill a shared table of the
 * rot_dim / 2 (cos, sin) pairs — computed once per token, shared by all
 * q and k heads — then stride over (head, group) work units. A unit is 16
 * bytes of pairs when every head start is 16-byte aligned (a Vec16 from each
 * half for HALF_SPLIT, one Vec16 of V/2 pairs for INTERLEAVED), else one
 * pair. Consecutive threads take consecutive units of a head, so loads are
 * coalesced. The kernel is bandwidth-bound: rot_dim elements of each head are
 * read and written once.
 *
 * qilin_rope_inv_freq mirrors transformers' fp32 arithmetic in
 * modeling_rope_utils.py (base ** (arange(0, d, 2) / d) in fp32, then the
 * llama3 / YaRN blends in fp32), with fp32 pow correctly rounded. */
#include <cmath>
#include <cstring>

#include "common.cuh"
#include "kernels.h"

/* ---- host: frequencies ------------------------------------------------------ */

static const double kPi = 3.14159265358979323846;

/* HF: pos_freqs = base ** (arange(0, d, 2).float() / d), all fp32. */
static float base_pos_freq(double theta, int j, int rot_dim) {
    float expo = (float)(2 * j) / (float)rot_dim;
    return (float)pow((double)(float)theta, (double)expo);
}

extern "C" double qilin_yarn_mscale(double factor, double m) {
    return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

/* HF _compute_llama3_parameters, elementwise in fp32. torch evaluates
 * `scalar / tensor` as reciprocal(tensor) * scalar, hence the shapes below. */
static float llama3_inv_freq(float inv, const qilin_rope_config *c) {
    float factor = (float)c->factor, lo = (float)c->low_freq_factor;
    float old_len = (float)c->original_max_position;
    float lo_wavelen = (float)(c->original_max_position / c->low_freq_factor);
    float hi_wavelen = (float)(c->original_max_position / c->high_freq_factor);
    float wavelen = (1.0f / inv) * (float)(2.0 * kPi);
    float scaled = wavelen > lo_wavelen ? inv / factor : inv;
    if (wavelen < hi_wavelen || wavelen > lo_wavelen) return scaled;
    float smooth = ((1.0f / wavelen) * old_len - lo) / (float)(c->high_freq_factor - c->low_freq_factor);
    return (1.0f - smooth) * scaled / factor + smooth * scaled;
}

/* HF find_correction_dim: the pair index whose wavelength makes `rotations`
 * turns over the original context. */
static double yarn_correction_dim(double rotations, int rot_dim, double theta, double orig_len) {
    return rot_dim * log(orig_len / (rotations * 2.0 * kPi)) / (2.0 * log(theta));
}

static qilin_status check_rope_config(const qilin_rope_config *c, int scaling) {
    if (c->rot_dim <= 0 || c->rot_dim % 2 != 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope_inv_freq: rot_dim must be even and > 0, got %d",
                           c->rot_dim);
    if (!(c->theta > 1.0) || !std::isfinite(c->theta))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope_inv_freq: theta must be finite and > 1, got %g",
                           c->theta);
    if (scaling == QILIN_ROPE_SCALING_NONE) return QILIN_OK;
    if (scaling != QILIN_ROPE_SCALING_LINEAR && scaling != QILIN_ROPE_SCALING_LLAMA3 &&
        scaling != QILIN_ROPE_SCALING_YARN)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope_inv_freq: unknown scaling=%d", scaling);
    if (!(c->factor > 0.0) || !std::isfinite(c->factor))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope_inv_freq: factor must be finite and > 0, got %g",
                           c->factor);
    if (scaling == QILIN_ROPE_SCALING_LINEAR) return QILIN_OK;
    if (!(c->original_max_position > 0.0) || !std::isfinite(c->original_max_position))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "rope_inv_freq: original_max_position must be finite and > 0, got %g",
                           c->original_max_position);
    if (scaling == QILIN_ROPE_SCALING_LLAMA3) {
        if (!(c->low_freq_factor > 0.0) || !(c->high_freq_factor > c->low_freq_factor) ||
            !std::isfinite(c->high_freq_factor))
            return qilin_error(
                QILIN_ERR_INVALID_ARGUMENT,
                "rope_inv_freq: llama3 needs 0 < low_freq_factor < high_freq_factor, got %g, %g",
                c->low_freq_factor, c->high_freq_factor);
        return QILIN_OK;
    }
    if (c->beta_fast < 0.0 || c->beta_slow < 0.0 || !std::isfinite(c->beta_fast) ||
        !std::isfinite(c->beta_slow))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "rope_inv_freq: beta_fast=%g beta_slow=%g (>= 0; 0 = default)", c->beta_fast,
                           c->beta_slow);
    if (c->mscale < 0.0 || c->mscale_all_dim < 0.0 || c->attention_factor < 0.0 ||
        !std::isfinite(c->mscale) || !std::isfinite(c->mscale_all_dim) || !std::isfinite(c->attention_factor))
        return qilin_error(
            QILIN_ERR_INVALID_ARGUMENT,
            "rope_inv_freq: mscale=%g mscale_all_dim=%g attention_factor=%g (>= 0; 0 = absent)", c->mscale,
            c->mscale_all_dim, c->attention_factor);
    return QILIN_OK;
}

/* HF _compute_yarn_parameters (truncate = true, the default). */
static void yarn_inv_freq(const qilin_rope_config *c, float *inv_freq, float *scale) {
    int half = c->rot_dim / 2;
    double beta_fast = c->beta_fast > 0 ? c->beta_fast : 32.0,
           beta_slow = c->beta_slow > 0 ? c->beta_slow : 1.0;
    double low = floor(yarn_correction_dim(beta_fast, c->rot_dim, c->theta, c->original_max_position));
    double high = ceil(yarn_correction_dim(beta_slow, c->rot_dim, c->theta, c->original_max_position));
    low = low > 0 ? low : 0;
    high = high < c->rot_dim - 1 ? high : c->rot_dim - 1;
    if (low == high) high += 0.001;
    float factor = (float)c->factor;
    for (int j = 0; j < half; j++) {
        float pos_freq = base_pos_freq(c->theta, j, c->rot_dim);
        float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (factor * pos_freq);
        float ramp = ((float)j - (float)low) / (float)(high - low);
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float extrapolation_factor = 1.0f - ramp;
        inv_freq[j] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
    }
    double attention = c->attention_factor;
    if (attention == 0.0)
        attention =
            c->mscale != 0.0 && c->mscale_all_dim != 0.0
                ? qilin_yarn_mscale(c->factor, c->mscale) / qilin_yarn_mscale(c->factor, c->mscale_all_dim)
                : qilin_yarn_mscale(c->factor, 1.0);
    *scale = (float)attention;
}

extern "C" qilin_status qilin_rope_inv_freq(const qilin_rope_config *config, float *inv_freq,
                                            float *cos_sin_scale) {
    if (!config || !inv_freq || !cos_sin_scale)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "rope_inv_freq: config, inv_freq and cos_sin_scale must be set");
    int scaling;
    static_assert(sizeof(qilin_rope_scaling) == sizeof(int), "qilin_rope_scaling is an int-sized C enum");
    memcpy(&scaling, &config->scaling, sizeof scaling);
    QILIN_TRY(check_rope_config(config, scaling));
    int half = config->rot_dim / 2;
    *cos_sin_scale = 1.0f;
    if (scaling == QILIN_ROPE_SCALING_YARN) {
        yarn_inv_freq(config, inv_freq, cos_sin_scale);
        return QILIN_OK;
    }
    for (int j = 0; j < half; j++) {
        float inv = 1.0f / base_pos_freq(config->theta, j, config->rot_dim);
        if (scaling == QILIN_ROPE_SCALING_LINEAR) inv = inv / (float)config->factor;
        if (scaling == QILIN_ROPE_SCALING_LLAMA3) inv = llama3_inv_freq(inv, config);
        inv_freq[j] = inv;
    }
    return QILIN_OK;
}

/* ---- device: rotation ------------------------------------------------------- */

struct RopeView {
    void *base;
    int64_t token_stride, head_stride;
    int heads;
};

template <class T> __device__ inline void rotate_pair(T &u, T &v, float c, float s) {
    float a = to_float(u), b = to_float(v);
    u = from_float<T>(a * c - b * s);
    v = from_float<T>(a * s + b * c);
}

/* Rotates work unit g of one head; cs holds cos[half] then sin[half]. */
template <class T, bool kInterleaved, bool kVec>
__device__ inline void rope_unit(T *x, int g, int half, const float *cs) {
    const float *cosv = cs, *sinv = cs + half;
    constexpr int V = Vec16<T>::n;
    if constexpr (kInterleaved && kVec) {
        alignas(16) T e[V];
        load_elems<T, true>(e, x, g);
#pragma unroll
        for (int i = 0; i < V / 2; i++) {
            int j = g * (V / 2) + i;
            rotate_pair(e[2 * i], e[2 * i + 1], cosv[j], sinv[j]);
        }
        store_elems<T, true>(x, e, g);
    } else if constexpr (kInterleaved) {
        rotate_pair(x[2 * g], x[2 * g + 1], cosv[g], sinv[g]);
    } else if constexpr (kVec) {
        alignas(16) T lo[V], hi[V];
        load_elems<T, true>(lo, x, g);
        load_elems<T, true>(hi, x + half, g);
#pragma unroll
        for (int i = 0; i < V; i++) rotate_pair(lo[i], hi[i], cosv[g * V + i], sinv[g * V + i]);
        store_elems<T, true>(x, lo, g);
        store_elems<T, true>(x + half, hi, g);
    } else {
        rotate_pair(x[g], x[g + half], cosv[g], sinv[g]);
    }
}

template <class T, bool kInterleaved, bool kVec>
__global__ void rope_kernel(RopeView q, RopeView k, const int *positions, const float *inv_freq, float scale,
                            int rot_dim) {
    QILIN_DYNAMIC_SMEM(float, cs); /* [half] cos, [half] sin, rounded to T */
    int t = blockIdx.x, half = rot_dim / 2;
    float pos = (float)positions[t];
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float s, c;
        sincosf(pos * inv_freq[j], &s, &c);
        cs[j] = to_float(from_float<T>(c * scale));
        cs[half + j] = to_float(from_float<T>(s * scale));
    }
    __syncthreads();

    constexpr int P = kVec ? (kInterleaved ? Vec16<T>::n / 2 : Vec16<T>::n) : 1; /* pairs per unit */
    int units = half / P, total = (q.heads + k.heads) * units;
    for (int w = threadIdx.x; w < total; w += blockDim.x) {
        int h = w / units, g = w - h * units;
        const RopeView &view = h < q.heads ? q : k;
        h = h < q.heads ? h : h - q.heads;
        T *x = (T *)view.base + t * view.token_stride + h * view.head_stride;
        rope_unit<T, kInterleaved, kVec>(x, g, half, cs);
    }
}

/* ---- launcher --------------------------------------------------------------- */

static qilin_status check_view(const char *name, const RopeView &v, int tokens, int rot_dim) {
    if (!v.base) return QILIN_OK;
    if (v.heads <= 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: n_%s_heads must be > 0 when %s is set, got %d",
                           name, name, v.heads);
    if (v.heads > 1 && v.head_stride < rot_dim)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "rope: %s_head_stride=%lld is below rot_dim=%d: heads would overlap", name,
                           (long long)v.head_stride, rot_dim);
    if (tokens > 1 && v.token_stride < rot_dim)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT,
                           "rope: %s_token_stride=%lld is below rot_dim=%d: tokens would overlap", name,
                           (long long)v.token_stride, rot_dim);
    return QILIN_OK;
}

template <class T>
static qilin_status launch_rope(const qilin_rope_args *a, bool interleaved, qilin_stream *stream) {
    constexpr int V = Vec16<T>::n;
    RopeView q = {a->q, a->q_token_stride, a->q_head_stride, a->q ? a->n_q_heads : 0};
    RopeView k = {a->k, a->k_token_stride, a->k_head_stride, a->k ? a->n_k_heads : 0};
    int half = a->rot_dim / 2;
    /* every head start 16-byte aligned, and whole vectors per unit */
    bool vec = (interleaved ? a->rot_dim % V == 0 : half % V == 0);
    for (const RopeView *v : {&q, &k})
        if (v->base)
            vec = vec && (uintptr_t)v->base % 16 == 0 && v->token_stride % V == 0 && v->head_stride % V == 0;
    int pairs = vec ? (interleaved ? V / 2 : V) : 1;
    int work = (q.heads + k.heads) * (half / pairs);
    int threads = work >= 256 ? 256 : (work + 31) / 32 * 32;
    dim3 grid(a->tokens), block(threads);
    size_t smem = (size_t)a->rot_dim * sizeof(float);
    const int *pos = a->positions;
    const float *inv = a->inv_freq;
    float sc = a->cos_sin_scale;
    int rd = a->rot_dim;
    if (interleaved && vec)
        return QILIN_LAUNCH((rope_kernel<T, true, true>), grid, block, smem, stream, q, k, pos, inv, sc, rd);
    if (interleaved)
        return QILIN_LAUNCH((rope_kernel<T, true, false>), grid, block, smem, stream, q, k, pos, inv, sc, rd);
    if (vec)
        return QILIN_LAUNCH((rope_kernel<T, false, true>), grid, block, smem, stream, q, k, pos, inv, sc, rd);
    return QILIN_LAUNCH((rope_kernel<T, false, false>), grid, block, smem, stream, q, k, pos, inv, sc, rd);
}

/* The largest rot_dim the (cos, sin) table may hold in default shared memory. */
static const int kMaxRotDim = 8192;

extern "C" qilin_status qilin_rope(const qilin_rope_args *a, qilin_stream *stream) {
    if (!a) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: args must be set");
    if (!a->q && !a->k) return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: q and k are both NULL");
    if (a->tokens < 0)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: tokens must be >= 0, got %d", a->tokens);
    if (a->rot_dim <= 0 || a->rot_dim % 2 != 0 || a->rot_dim > kMaxRotDim)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: rot_dim must be even, in [2, %d], got %d",
                           kMaxRotDim, a->rot_dim);
    if (!a->positions || !a->inv_freq)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: positions and inv_freq must be set");
    if (!(a->cos_sin_scale > 0.0f) || !std::isfinite(a->cos_sin_scale))
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: cos_sin_scale must be finite and > 0, got %g",
                           (double)a->cos_sin_scale);
    RopeView q = {a->q, a->q_token_stride, a->q_head_stride, a->n_q_heads};
    RopeView k = {a->k, a->k_token_stride, a->k_head_stride, a->n_k_heads};
    QILIN_TRY(check_view("q", q, a->tokens, a->rot_dim));
    QILIN_TRY(check_view("k", k, a->tokens, a->rot_dim));
    int pairing;
    static_assert(sizeof(qilin_rope_pairing) == sizeof(int), "qilin_rope_pairing is an int-sized C enum");
    memcpy(&pairing, &a->pairing, sizeof pairing);
    if (pairing != QILIN_ROPE_HALF_SPLIT && pairing != QILIN_ROPE_INTERLEAVED)
        return qilin_error(QILIN_ERR_INVALID_ARGUMENT, "rope: unknown pairing=%d", pairing);
    if (a->tokens == 0) return QILIN_OK;
    bool interleaved = pairing == QILIN_ROPE_INTERLEAVED;
    switch (a->dtype) {
    case QILIN_F32:
        return launch_rope<float>(a, interleaved, stream);
    case QILIN_BF16:
        return launch_rope<__nv_bfloat16>(a, interleaved, stream);
    case QILIN_F16:
        return launch_rope<__half>(a, interleaved, stream);
    default:
        return qilin_error(QILIN_ERR_UNSUPPORTED, "rope: dtype %s is not supported (f32, bf16, f16)",
                           qilin_dtype_name(a->dtype));
    }
}
