/* test_rope.cpp — cuda/rope.cu.
 *
 * qilin_rope_inv_freq against the formulas of models.md §1.4–1.5 evaluated in
 * double here (base, linear, llama3, YaRN) and against the numbers table of
 * §1.5 (DeepSeek-V3 low/high 10/23, softmax scales, Kimi K2, Qwen YaRN).
 * qilin_rope against a float64 rotation that takes the same fp32 angle, for
 * both pairings, every dtype, partial rotary (every element outside the
 * rotated dims must come back bit for bit), strided views (GPT-NeoX per-head
 * [q k v], [all q | all k | all v], DeepSeek MLA's rope slice), k NULL,
 * misaligned views (scalar path), non-monotonic positions up to 2^20, and the
 * inv_freq of each scaling type. Plus the GGUF identity: HALF_SPLIT on HF
 * weights equals INTERLEAVED on llama.cpp's permuted weights, bit for bit. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

/* ---- inv_freq -------------------------------------------------------------- */

qilin_rope_config base_config(int rot_dim, double theta) {
    qilin_rope_config c = {};
    c.pairing = QILIN_ROPE_HALF_SPLIT;
    c.rot_dim = rot_dim;
    c.theta = theta;
    return c;
}

qilin_rope_config deepseek_v3_config() {
    qilin_rope_config c = base_config(64, 1e4);
    c.pairing = QILIN_ROPE_INTERLEAVED;
    c.scaling = QILIN_ROPE_SCALING_YARN;
    c.factor = 40;
    c.original_max_position = 4096;
    c.beta_fast = 32;
    c.beta_slow = 1;
    c.mscale = 1;
    c.mscale_all_dim = 1;
    return c;
}

qilin_rope_config llama31_config() {
    qilin_rope_config c = base_config(128, 5e5);
    c.scaling = QILIN_ROPE_SCALING_LLAMA3;
    c.factor = 8;
    c.low_freq_factor = 1;
    c.high_freq_factor = 4;
    c.original_max_position = 8192;
    return c;
}

qilin_rope_config qwen_yarn_config() {
    qilin_rope_config c = base_config(128, 1e6);
    c.scaling = QILIN_ROPE_SCALING_YARN;
    c.factor = 4;
    c.original_max_position = 32768; /* beta and mscale keys absent */
    return c;
}

std::vector<double> ref_base(int d, double theta) {
    std::vector<double> f(d / 2);
    for (int j = 0; j < d / 2; j++) f[j] = pow(theta, -2.0 * j / d);
    return f;
}

/* models.md §1.5 (a), in double. */
std::vector<double> ref_llama3(const qilin_rope_config &c) {
    std::vector<double> f = ref_base(c.rot_dim, c.theta);
    double lo_wl = c.original_max_position / c.low_freq_factor,
           hi_wl = c.original_max_position / c.high_freq_factor;
    for (double &inv : f) {
        double wl = 2 * M_PI / inv;
        if (wl < hi_wl) continue;
        if (wl > lo_wl) {
            inv /= c.factor;
            continue;
        }
        double s =
            (c.original_max_position / wl - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
        inv = (1 - s) * inv / c.factor + s * inv;
    }
    return f;
}

/* models.md §1.5 (b) steps 1-4, in double; returns low/high too. */
std::vector<double> ref_yarn(const qilin_rope_config &c, double *low_out, double *high_out) {
    int d = c.rot_dim;
    double bf = c.beta_fast > 0 ? c.beta_fast : 32, bs = c.beta_slow > 0 ? c.beta_slow : 1;
    auto corr = [&](double r) {
        return d * log(c.original_max_position / (2 * M_PI * r)) / (2 * log(c.theta));
    };
    double low = std::max(floor(corr(bf)), 0.0), high = std::min(ceil(corr(bs)), (double)d - 1);
    *low_out = low;
    *high_out = high;
    if (low == high) high += 0.001;
    std::vector<double> f = ref_base(d, c.theta);
    for (int j = 0; j < d / 2; j++) {
        double r = std::clamp((j - low) / (high - low), 0.0, 1.0);
        f[j] = f[j] / c.factor * r + f[j] * (1 - r);
    }
    return f;
}

/* fp32 pow/reciprocal as transformers computes them differ from the double
 * formula by a few ulp at most. */
void expect_close(const std::vector<float> &got, const std::vector<double> &want, double rel,
                  const char *what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < want.size(); j++)
        EXPECT_NEAR(got[j], want[j], rel * want[j]) << what << " inv_freq[" << j << "]";
}

std::vector<float> inv_freq_of(const qilin_rope_config &c, float *scale) {
    std::vector<float> f(c.rot_dim / 2, NAN);
    qilin_status st = qilin_rope_inv_freq(&c, f.data(), scale);
    EXPECT_EQ(st, QILIN_OK) << qilin_last_error();
    return f;
}

TEST(RopeInvFreq, BaseAndLinearMatchDoubleFormula) {
    for (double theta : {1e4, 5e5, 1e6})
        for (int d : {24, 64, 128}) {
            qilin_rope_config c = base_config(d, theta);
            float scale = 0;
            std::vector<float> f = inv_freq_of(c, &scale);
            expect_close(f, ref_base(d, theta), 4e-7, "base");
            EXPECT_EQ(scale, 1.0f);
            EXPECT_EQ(f[0], 1.0f);
            c.scaling = QILIN_ROPE_SCALING_LINEAR;
            c.factor = 4;
            std::vector<float> lf = inv_freq_of(c, &scale);
            for (int j = 0; j < d / 2; j++) EXPECT_EQ(lf[j], f[j] / 4.0f) << "linear " << j;
            EXPECT_EQ(scale, 1.0f);
        }
}

TEST(RopeInvFreq, Llama3MatchesDoubleFormula) {
    qilin_rope_config c = llama31_config();
    float scale = 0;
    std::vector<float> f = inv_freq_of(c, &scale);
    std::vector<double> want = ref_llama3(c), base = ref_base(c.rot_dim, c.theta);
    expect_close(f, want, 1e-6, "llama3");
    EXPECT_EQ(scale, 1.0f);
    int kept = 0, divided = 0, smoothed = 0;
    for (int j = 0; j < c.rot_dim / 2; j++) {
        double wl = 2 * M_PI / base[j];
        if (wl < 8192 / 4.0) {
            kept++;
            EXPECT_NEAR(f[j], base[j], 4e-7 * base[j]);
        } else if (wl > 8192) {
            divided++;
            EXPECT_NEAR(f[j], base[j] / 8, 4e-7 * base[j] / 8);
        } else {
            smoothed++;
            EXPECT_TRUE(f[j] < base[j] && f[j] > base[j] / 8) << j;
        }
    }
    printf("llama3: %d kept, %d smoothed, %d divided by 8\n", kept, smoothed, divided);
    EXPECT_GT(kept, 0);
    EXPECT_GT(divided, 0);
    EXPECT_GT(smoothed, 0);
}

/* The whole §1.5 table: low/high through the ramp's exact ends, the YaRN
 * frequencies, the cos/sin factor (1 when mscale == mscale_all_dim) and the
 * MLA softmax scale through qilin_yarn_mscale. */
TEST(RopeInvFreq, YarnMatchesModelsTable) {
    struct Row {
        const char *name;
        double theta, factor, beta_fast, beta_slow, mscale;
        int low, high;
        double mscale2, softmax_scale;
    } rows[] = {
        {"DeepSeek-V3", 1e4, 40, 32, 1, 1.0, 10, 23, 1.873854, 0.1352338},
        {"DeepSeek-V2-Lite", 1e4, 40, 32, 1, 0.707, 10, 23, 1.589626, 0.1147214},
        {"Kimi-K2", 5e4, 32, 1, 1, 1.0, 19, 20, 1.813260, 0.1308608},
        {"Kimi-K2-0905", 5e4, 64, 1, 1, 1.0, 19, 20, 2.004740, 0.1446796},
    };
    for (const Row &r : rows) {
        SCOPED_TRACE(r.name);
        qilin_rope_config c = deepseek_v3_config();
        c.theta = r.theta;
        c.factor = r.factor;
        c.beta_fast = r.beta_fast;
        c.beta_slow = r.beta_slow;
        c.mscale = c.mscale_all_dim = r.mscale;
        float scale = 0;
        std::vector<float> f = inv_freq_of(c, &scale);
        double low = -1, high = -1;
        std::vector<double> want = ref_yarn(c, &low, &high), base = ref_base(64, c.theta);
        EXPECT_EQ(low, r.low);
        EXPECT_EQ(high, r.high);
        expect_close(f, want, 1e-6, r.name);
        for (int j = 0; j < 32; j++) {
            /* the ramp is 0 (original frequency) up to low, 1 (divided by s) from high on */
            if (j <= r.low)
                EXPECT_NEAR(f[j], base[j], 4e-7 * base[j]) << j;
            else if (j >= r.high)
                EXPECT_NEAR(f[j], base[j] / r.factor, 4e-7 * base[j] / r.factor) << j;
            else
                EXPECT_TRUE(f[j] < base[j] && f[j] > base[j] / r.factor) << j;
        }
        EXPECT_EQ(scale, 1.0f) << "mscale == mscale_all_dim: cos/sin are not scaled";
        double m = qilin_yarn_mscale(r.factor, r.mscale);
        EXPECT_NEAR(m * m, r.mscale2, 1e-6);
        EXPECT_NEAR(m * m / sqrt(192.0), r.softmax_scale, 1e-7);
    }
}

TEST(RopeInvFreq, YarnAttentionFactor) {
    float scale = 0;
    qilin_rope_config c = qwen_yarn_config();
    std::vector<float> f = inv_freq_of(c, &scale);
    double low, high;
    expect_close(f, ref_yarn(c, &low, &high), 1e-6, "qwen yarn");
    EXPECT_NEAR(scale, 0.1 * log(4.0) + 1, 1e-7); /* 1.13863: no mscale keys */
    EXPECT_NEAR(scale, 1.13863, 1e-5);
    c.mscale = 1.0;
    c.mscale_all_dim = 0.5;
    inv_freq_of(c, &scale);
    EXPECT_NEAR(scale, qilin_yarn_mscale(4, 1.0) / qilin_yarn_mscale(4, 0.5), 1e-7);
    c.attention_factor = 0.75; /* explicit override wins */
    inv_freq_of(c, &scale);
    EXPECT_EQ(scale, 0.75f);
    EXPECT_EQ(qilin_yarn_mscale(1.0, 1.0), 1.0);
    EXPECT_EQ(qilin_yarn_mscale(0.5, 1.0), 1.0);
}

TEST(RopeInvFreq, BadConfigsNameTheProblem) {
    float f[64], scale;
    struct Bad {
        void (*mutate)(qilin_rope_config &);
        const char *needle;
    } bad[] = {
        {[](qilin_rope_config &c) { c.rot_dim = 63; }, "rot_dim"},
        {[](qilin_rope_config &c) { c.rot_dim = 0; }, "rot_dim"},
        {[](qilin_rope_config &c) { c.theta = 0; }, "theta"},
        {[](qilin_rope_config &c) { c.theta = NAN; }, "theta"},
        {[](qilin_rope_config &c) { c.factor = 0; }, "factor"},
        {[](qilin_rope_config &c) { c.original_max_position = -1; }, "original_max_position"},
        {[](qilin_rope_config &c) { c.mscale = -1; }, "mscale"},
        {[](qilin_rope_config &c) { c.beta_fast = INFINITY; }, "beta_fast"},
        {[](qilin_rope_config &c) {
             int v = 9;
             memcpy(&c.scaling, &v, sizeof v);
         },
         "scaling=9"},
    };
    for (const Bad &b : bad) {
        qilin_rope_config c = deepseek_v3_config();
        b.mutate(c);
        EXPECT_EQ(qilin_rope_inv_freq(&c, f, &scale), QILIN_ERR_INVALID_ARGUMENT) << b.needle;
        EXPECT_NE(std::string(qilin_last_error()).find(b.needle), std::string::npos) << qilin_last_error();
    }
    qilin_rope_config c = llama31_config();
    c.high_freq_factor = c.low_freq_factor;
    EXPECT_EQ(qilin_rope_inv_freq(&c, f, &scale), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("high_freq_factor"), std::string::npos)
        << qilin_last_error();
    EXPECT_EQ(qilin_rope_inv_freq(nullptr, f, &scale), QILIN_ERR_INVALID_ARGUMENT);
}

/* ---- the rotation ------------------------------------------------------------ */

enum Layout {
    kSeparate,   /* q [t, nq, hd], k [t, nk, hd] */
    kNeoxFused,  /* [t, nh, 3 hd]: per head [q k v] (GPT-NeoX query_key_value) */
    kQkvBlocks,  /* [t, (nq + 2 nk) hd]: [all q | all k | all v] */
    kMisaligned, /* kSeparate one element off 16-byte alignment: the scalar path */
    kMla,        /* q [t, nq, 192], rope slice at 128; k_pe [t, 64] */
};
enum Scaling { kNone, kLinear, kLlama3, kYarnDeepseek, kYarnQwen };

struct Case {
    qilin_dtype dtype;
    qilin_rope_pairing pairing;
    Layout layout;
    Scaling scaling;
    int tokens, nq, nk, head_dim, rot_dim; /* nk = 0: k NULL */
    const char *label;
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) +
           (c.pairing == QILIN_ROPE_HALF_SPLIT ? "_half_" : "_interleaved_") + c.label + "_t" +
           std::to_string(c.tokens) + "_q" + std::to_string(c.nq) + "_k" + std::to_string(c.nk) + "_hd" +
           std::to_string(c.head_dim) + "_rot" + std::to_string(c.rot_dim);
}

qilin_rope_config scaling_config(Scaling s, int rot_dim) {
    qilin_rope_config c;
    switch (s) {
    case kLinear:
        c = base_config(rot_dim, 1e4);
        c.scaling = QILIN_ROPE_SCALING_LINEAR;
        c.factor = 2;
        break;
    case kLlama3:
        c = llama31_config();
        break;
    case kYarnDeepseek:
        c = deepseek_v3_config();
        break;
    case kYarnQwen:
        c = qwen_yarn_config();
        break;
    default:
        c = base_config(rot_dim, 1e4);
        break;
    }
    c.rot_dim = rot_dim;
    return c;
}

/* Where q and k live inside one buffer, in elements. */
struct Views {
    size_t total, q_off, k_off;
    int64_t q_tok, q_head, k_tok, k_head;
};

Views views_of(const Case &c) {
    Views v = {};
    int hd = c.head_dim;
    size_t t = c.tokens;
    switch (c.layout) {
    case kNeoxFused:
        v = {t * c.nq * 3 * hd,      0,     (size_t)hd, (int64_t)c.nq * 3 * hd, 3 * hd,
             (int64_t)c.nq * 3 * hd, 3 * hd};
        break;
    case kQkvBlocks: {
        int64_t row = (int64_t)(c.nq + 2 * c.nk) * hd;
        v = {t * row, 0, (size_t)c.nq * hd, row, hd, row, hd};
        break;
    }
    case kMla:
        v = {t * c.nq * 192 + t * 64, 128, t * c.nq * 192, (int64_t)c.nq * 192, 192, 64, 64};
        break;
    default:
        v = {t * (c.nq + c.nk) * hd, 0, t * c.nq * hd, (int64_t)c.nq * hd, hd, (int64_t)c.nk * hd, hd};
        break;
    }
    if (c.layout == kMisaligned) v.q_off += 1, v.k_off += 1, v.total += 1;
    return v;
}

/* Non-monotonic, with the large positions that exercise sincosf's range
 * reduction (pair 0's angle is the position itself). */
std::vector<int> positions_for(int tokens, std::mt19937 &rng) {
    std::vector<int> special = {100000, 0, 123457, 7, 65535, (1 << 20) + 3, 1, 99999, 4096, 163839};
    std::vector<int> p(tokens);
    std::uniform_int_distribution<int> any(0, 200000);
    for (int t = 0; t < tokens; t++) p[t] = t < (int)special.size() ? special[t] : any(rng);
    std::shuffle(p.begin(), p.end(), rng);
    return p;
}

/* The rotation of one element pair in double, from the kernel's fp32 angle and
 * cos/sin rounded to the storage type. */
void ref_rotate(double u, double v, float angle, double scale, qilin_dtype t, double *u2, double *v2) {
    double c = rounded(cos((double)angle) * scale, t), s = rounded(sin((double)angle) * scale, t);
    *u2 = u * c - v * s;
    *v2 = u * s + v * c;
}

class Rope : public testing::TestWithParam<Case> {};

TEST_P(Rope, MatchesFloat64RotationAndKeepsTheRest) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype);
    const Views v = views_of(c);
    std::mt19937 rng(4321 + c.tokens * 131 + c.head_dim * 7 + c.rot_dim + c.layout);
    std::uniform_real_distribution<double> mag(0.05, 1.5);
    std::vector<unsigned char> buf(v.total * es);
    for (size_t i = 0; i < v.total; i++) store(buf, i, (rng() & 1 ? 1 : -1) * mag(rng), c.dtype);
    std::vector<int> pos = positions_for(c.tokens, rng);
    qilin_rope_config cfg = scaling_config(c.scaling, c.rot_dim);
    float scale = 0;
    std::vector<float> inv = inv_freq_of(cfg, &scale);

    /* reference: every element keeps its bits unless rotated */
    std::vector<double> want(v.total), got(v.total);
    std::vector<char> rotated(v.total, 0);
    for (size_t i = 0; i < v.total; i++) want[i] = value_of(buf, i, c.dtype);
    int half = c.rot_dim / 2;
    for (int t = 0; t < c.tokens; t++)
        for (int h = 0; h < c.nq + c.nk; h++) {
            bool isq = h < c.nq;
            size_t head0 =
                isq ? v.q_off + t * v.q_tok + h * v.q_head : v.k_off + t * v.k_tok + (h - c.nq) * v.k_head;
            for (int j = 0; j < half; j++) {
                size_t a = head0 + (c.pairing == QILIN_ROPE_HALF_SPLIT ? j : 2 * j);
                size_t b = head0 + (c.pairing == QILIN_ROPE_HALF_SPLIT ? j + half : 2 * j + 1);
                float angle = (float)pos[t] * inv[j];
                ref_rotate(value_of(buf, a, c.dtype), value_of(buf, b, c.dtype), angle, scale, c.dtype,
                           &want[a], &want[b]);
                rotated[a] = rotated[b] = 1;
            }
        }

    DeviceBuffer<unsigned char> dbuf(buf.size());
    DeviceBuffer<int> dpos(c.tokens);
    DeviceBuffer<float> dinv(inv.size());
    QILIN_ASSERT_OK(dbuf.upload(buf));
    QILIN_ASSERT_OK(dpos.upload(pos));
    QILIN_ASSERT_OK(dinv.upload(inv));
    qilin_rope_args a = {};
    a.q = dbuf.ptr + v.q_off * es;
    a.q_token_stride = v.q_tok;
    a.q_head_stride = v.q_head;
    a.n_q_heads = c.nq;
    if (c.nk > 0) {
        a.k = dbuf.ptr + v.k_off * es;
        a.k_token_stride = v.k_tok;
        a.k_head_stride = v.k_head;
        a.n_k_heads = c.nk;
    } else {
        a.n_k_heads = 99; /* ignored with k NULL */
    }
    a.positions = dpos.ptr;
    a.inv_freq = dinv.ptr;
    a.cos_sin_scale = scale;
    a.tokens = c.tokens;
    a.rot_dim = c.rot_dim;
    a.pairing = c.pairing;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_rope(&a, nullptr));
    std::vector<unsigned char> out = dbuf.download();

    std::vector<double> got_rot, want_rot;
    size_t changed_outside = 0, first_bad = 0;
    for (size_t i = 0; i < v.total; i++) {
        if (rotated[i]) {
            got_rot.push_back(value_of(out, i, c.dtype));
            want_rot.push_back(want[i]);
        } else if (memcmp(&out[i * es], &buf[i * es], es) != 0) {
            if (!changed_outside++) first_bad = i;
        }
    }
    EXPECT_EQ(changed_outside, 0u) << "elements outside the rotated dims changed, first at " << first_bad;
    const Tolerance &tol = c.dtype == QILIN_F32    ? kTolRopeF32
                           : c.dtype == QILIN_BF16 ? kTolRopeBF16
                                                   : kTolRopeF16;
    Comparison cmp = compare(got_rot, want_rot, tol);
    printf("rotated (scale %.6f): %s\n", scale, cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16})
        for (qilin_rope_pairing p : {QILIN_ROPE_HALF_SPLIT, QILIN_ROPE_INTERLEAVED}) {
            v.push_back({t, p, kSeparate, kNone, 17, 4, 2, 64, 64, "separate"});
            v.push_back({t, p, kSeparate, kNone, 3, 3, 1, 80, 32, "partial"});
            v.push_back({t, p, kNeoxFused, kNone, 5, 3, 3, 96, 24, "neox_fused"});
            v.push_back({t, p, kQkvBlocks, kLlama3, 7, 4, 2, 128, 128, "qkv_blocks_llama3"});
            v.push_back({t, p, kMisaligned, kYarnQwen, 3, 2, 1, 64, 64, "misaligned_yarn_qwen"});
            v.push_back({t, p, kSeparate, kLinear, 33, 5, 0, 64, 64, "k_null_linear"});
            v.push_back({t, p, kMla, kYarnDeepseek, 3, 4, 1, 192, 64, "mla_yarn_deepseek"});
            v.push_back({t, p, kSeparate, kNone, 3, 2, 2, 256, 64, "gptj"});
        }
    v.push_back({QILIN_BF16, QILIN_ROPE_HALF_SPLIT, kSeparate, kNone, 127, 1, 1, 128, 128, "long"});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Rope, testing::ValuesIn(cases()), case_name);

/* llama.cpp permutes HF Llama q/k rows per head so that HF's pair
 * (j, j + hd/2) lands on (2j, 2j + 1) and runs interleaved ("NORM") rope
 * (models.md §1.4). Same pairs, same angles, same arithmetic: HALF_SPLIT on
 * the HF layout must equal INTERLEAVED on the GGUF layout bit for bit. */
TEST(Rope, GgufPermutedInterleavedEqualsHfHalfSplit) {
    QILIN_REQUIRE_DEVICES(1);
    const int tokens = 5, heads = 3, hd = 128, half = hd / 2;
    const qilin_dtype t = QILIN_BF16;
    const size_t n = (size_t)tokens * heads * hd;
    std::mt19937 rng(77);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> hf(n * 2), gguf(n * 2);
    for (size_t i = 0; i < n; i++) store(hf, i, 0.01 + normal(rng), t);
    auto gguf_index = [&](size_t i) { /* HF element s*half + j of a head -> 2j + s */
                                      size_t head0 = i / hd * hd, d = i % hd;
                                      return head0 + 2 * (d % half) + d / half;
    };
    for (size_t i = 0; i < n; i++) memcpy(&gguf[gguf_index(i) * 2], &hf[i * 2], 2);
    std::vector<int> pos = positions_for(tokens, rng);
    float scale;
    std::vector<float> inv = inv_freq_of(llama31_config(), &scale);

    std::vector<unsigned char> result[2];
    for (int k = 0; k < 2; k++) {
        DeviceBuffer<unsigned char> dq(n * 2);
        DeviceBuffer<int> dpos(tokens);
        DeviceBuffer<float> dinv(inv.size());
        QILIN_ASSERT_OK(dq.upload(k == 0 ? hf : gguf));
        QILIN_ASSERT_OK(dpos.upload(pos));
        QILIN_ASSERT_OK(dinv.upload(inv));
        qilin_rope_args a = {};
        a.q = dq.ptr;
        a.q_token_stride = heads * hd;
        a.q_head_stride = hd;
        a.n_q_heads = heads;
        a.positions = dpos.ptr;
        a.inv_freq = dinv.ptr;
        a.cos_sin_scale = scale;
        a.tokens = tokens;
        a.rot_dim = hd;
        a.pairing = k == 0 ? QILIN_ROPE_HALF_SPLIT : QILIN_ROPE_INTERLEAVED;
        a.dtype = t;
        QILIN_ASSERT_OK(qilin_rope(&a, nullptr));
        result[k] = dq.download();
    }
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += memcmp(&result[0][i * 2], &result[1][gguf_index(i) * 2], 2) != 0;
    EXPECT_EQ(differ, 0u);
    EXPECT_NE(memcmp(result[0].data(), hf.data(), n * 2), 0) << "nothing was rotated";
}

TEST(RopeErrors, BadArgumentsNameTheProblem) {
    float buf[1024];
    int pos[4] = {0, 1, 2, 3};
    qilin_rope_args a = {};
    EXPECT_EQ(qilin_rope(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("q and k"), std::string::npos) << qilin_last_error();
    auto good = [&] {
        qilin_rope_args g = {};
        g.q = buf;
        g.q_token_stride = 128;
        g.q_head_stride = 64;
        g.n_q_heads = 2;
        g.positions = pos;
        g.inv_freq = buf;
        g.cos_sin_scale = 1;
        g.tokens = 4;
        g.rot_dim = 64;
        g.dtype = QILIN_F32;
        return g;
    };
    struct Bad {
        void (*mutate)(qilin_rope_args &);
        qilin_status status;
        const char *needle;
    } bad[] = {
        {[](qilin_rope_args &g) { g.rot_dim = 63; }, QILIN_ERR_INVALID_ARGUMENT, "rot_dim"},
        {[](qilin_rope_args &g) { g.tokens = -1; }, QILIN_ERR_INVALID_ARGUMENT, "tokens"},
        {[](qilin_rope_args &g) { g.positions = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "positions"},
        {[](qilin_rope_args &g) { g.cos_sin_scale = 0; }, QILIN_ERR_INVALID_ARGUMENT, "cos_sin_scale"},
        {[](qilin_rope_args &g) { g.n_q_heads = 0; }, QILIN_ERR_INVALID_ARGUMENT, "n_q_heads"},
        {[](qilin_rope_args &g) { g.q_head_stride = 32; }, QILIN_ERR_INVALID_ARGUMENT, "q_head_stride"},
        {[](qilin_rope_args &g) { g.q_token_stride = 0; }, QILIN_ERR_INVALID_ARGUMENT, "q_token_stride"},
        {[](qilin_rope_args &g) {
             g.k = g.q;
             g.n_k_heads = 1;
             g.k_token_stride = 8;
         },
         QILIN_ERR_INVALID_ARGUMENT, "k_token_stride"},
        {[](qilin_rope_args &g) {
             int v = 5;
             memcpy(&g.pairing, &v, sizeof v);
         },
         QILIN_ERR_INVALID_ARGUMENT, "pairing=5"},
        {[](qilin_rope_args &g) { g.dtype = QILIN_I32; }, QILIN_ERR_UNSUPPORTED, "i32"},
    };
    for (const Bad &b : bad) {
        a = good();
        b.mutate(a);
        EXPECT_EQ(qilin_rope(&a, nullptr), b.status) << b.needle;
        EXPECT_NE(std::string(qilin_last_error()).find(b.needle), std::string::npos) << qilin_last_error();
    }
    a = good();
    a.tokens = 0;
    EXPECT_EQ(qilin_rope(&a, nullptr), QILIN_OK) << "zero tokens is a no-op";
}

} // namespace
