/* test_activation.cpp — cuda/activation.cu against float64 references: the
 * gated form (act(gate) * up over [tokens, 2d] rows laid out [gate | up])
 * and the elementwise form (also in place), for silu and both GELUs, on odd
 * shapes, every storage dtype, and misaligned pointers that take the scalar
 * path. Inputs reach |x| ~ 8, so the GELU tails are exercised. */
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

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

const Tolerance &storage_tolerance(qilin_dtype t) {
    return t == QILIN_F32 ? kTolF32 : t == QILIN_BF16 ? kTolBF16 : kTolF16;
}
const char *act_name(qilin_act a) {
    return a == QILIN_ACT_SILU ? "silu" : a == QILIN_ACT_GELU_ERF ? "gelu_erf" : "gelu_tanh";
}

/* The definitions, in float64; erfc keeps the exact GELU's negative tail
 * accurate (1 + erf cancels there). */
double act_ref(qilin_act a, double x) {
    switch (a) {
    case QILIN_ACT_SILU:
        return x / (1.0 + std::exp(-x));
    case QILIN_ACT_GELU_ERF:
        return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    default:
        return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
}

/* ---- gated: act(gate) * up ------------------------------------------------- */
struct GatedCase {
    qilin_dtype dtype;
    int tokens, d;
    qilin_act act;
    bool misaligned = false;
};

std::string gated_name(const testing::TestParamInfo<GatedCase> &info) {
    const GatedCase &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_tokens" + std::to_string(c.tokens) + "_d" +
           std::to_string(c.d) + "_" + act_name(c.act) + (c.misaligned ? "_misaligned" : "");
}

class ActAndMul : public testing::TestWithParam<GatedCase> {};

TEST_P(ActAndMul, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const GatedCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), n_out = (size_t)c.tokens * c.d, n_in = 2 * n_out;
    const size_t skew = c.misaligned ? 1 : 0; /* elements: one off 16-byte alignment */
    std::mt19937 rng(777 + c.tokens * 31 + c.d + (int)c.act);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> in((n_in + skew) * es);
    for (int t = 0; t < c.tokens; t++)
        for (int j = 0; j < 2 * c.d; j++)
            store(in, skew + (size_t)t * 2 * c.d + j, j < c.d ? 2.5 * normal(rng) : normal(rng), c.dtype);

    std::vector<double> want(n_out);
    for (int t = 0; t < c.tokens; t++)
        for (int j = 0; j < c.d; j++) {
            size_t g = skew + (size_t)t * 2 * c.d + j;
            want[(size_t)t * c.d + j] =
                act_ref(c.act, value_of(in, g, c.dtype)) * value_of(in, g + c.d, c.dtype);
        }

    DeviceBuffer<unsigned char> din(in.size()), dout((n_out + skew) * es);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    qilin_act_and_mul_args a = {};
    a.out = dout.ptr + skew * es;
    a.in = din.ptr + skew * es;
    a.tokens = c.tokens;
    a.d = c.d;
    a.act = c.act;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_act_and_mul(&a, nullptr));

    std::vector<unsigned char> out = dout.download();
    std::vector<double> got(n_out);
    for (size_t i = 0; i < n_out; i++) got[i] = value_of(out, skew + i, c.dtype);
    Comparison cmp = compare(got, want, storage_tolerance(c.dtype));
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<GatedCase> gated_cases() {
    std::vector<GatedCase> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16})
        for (qilin_act act : {QILIN_ACT_SILU, QILIN_ACT_GELU_ERF, QILIN_ACT_GELU_TANH})
            for (int tokens : {1, 19})
                for (int d : {1, 19, 111, 989, 4096}) v.push_back({t, tokens, d, act});
    v.push_back({QILIN_BF16, 111, 989, QILIN_ACT_SILU});
    v.push_back({QILIN_BF16, 111, 1408, QILIN_ACT_SILU}); /* DeepSeek-V2-Lite's expert width */
    v.push_back({QILIN_BF16, 19, 4096, QILIN_ACT_SILU, true});
    v.push_back({QILIN_F32, 19, 4096, QILIN_ACT_GELU_TANH, true});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ActAndMul, testing::ValuesIn(gated_cases()), gated_name);

/* ---- elementwise ------------------------------------------------------------ */
struct PlainCase {
    qilin_dtype dtype;
    size_t n;
    qilin_act act;
    bool in_place = false, misaligned = false;
};

std::string plain_name(const testing::TestParamInfo<PlainCase> &info) {
    const PlainCase &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_n" + std::to_string(c.n) + "_" + act_name(c.act) +
           (c.in_place ? "_inplace" : "") + (c.misaligned ? "_misaligned" : "");
}

class Activation : public testing::TestWithParam<PlainCase> {};

TEST_P(Activation, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const PlainCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), skew = c.misaligned ? 1 : 0;
    std::mt19937 rng(99 + (unsigned)c.n + (int)c.act);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> in((c.n + skew) * es);
    for (size_t i = 0; i < c.n; i++) store(in, skew + i, 2.5 * normal(rng), c.dtype);
    std::vector<double> want(c.n);
    for (size_t i = 0; i < c.n; i++) want[i] = act_ref(c.act, value_of(in, skew + i, c.dtype));

    DeviceBuffer<unsigned char> din(in.size()), dout(in.size());
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    qilin_activation_args a = {};
    a.in = din.ptr + skew * es;
    a.out = c.in_place ? din.ptr + skew * es : dout.ptr + skew * es;
    a.n = c.n;
    a.act = c.act;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_activation(&a, nullptr));

    std::vector<unsigned char> out = c.in_place ? din.download() : dout.download();
    std::vector<double> got(c.n);
    for (size_t i = 0; i < c.n; i++) got[i] = value_of(out, skew + i, c.dtype);
    Comparison cmp = compare(got, want, storage_tolerance(c.dtype));
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<PlainCase> plain_cases() {
    std::vector<PlainCase> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16})
        for (qilin_act act : {QILIN_ACT_GELU_ERF, QILIN_ACT_GELU_TANH})
            for (size_t n : {(size_t)1, (size_t)19, (size_t)19 * 111, (size_t)989, (size_t)19 * 4096})
                v.push_back({t, n, act});
    v.push_back({QILIN_BF16, 111 * 989, QILIN_ACT_GELU_ERF, true}); /* vector body + a 3-element tail */
    v.push_back({QILIN_F16, 19 * 4096, QILIN_ACT_GELU_TANH, true});
    v.push_back({QILIN_BF16, 19 * 4096, QILIN_ACT_GELU_TANH, false, true});
    v.push_back({QILIN_F32, 989, QILIN_ACT_SILU});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Activation, testing::ValuesIn(plain_cases()), plain_name);

TEST(ActivationErrors, BadArgumentsNameTheProblem) {
    float buf[8];
    qilin_act_and_mul_args g = {};
    EXPECT_EQ(qilin_act_and_mul(&g, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("act_and_mul"), std::string::npos);
    g.out = buf;
    g.in = buf;
    g.tokens = 1;
    g.d = 0;
    EXPECT_EQ(qilin_act_and_mul(&g, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("d=0"), std::string::npos) << qilin_last_error();
    g.d = 4;
    const int seven = 7; /* what a C caller could pass; a C++ cast to the enum would be undefined */
    std::memcpy(&g.act, &seven, sizeof seven);
    EXPECT_EQ(qilin_act_and_mul(&g, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("act=7"), std::string::npos) << qilin_last_error();
    g.act = QILIN_ACT_SILU;
    g.dtype = QILIN_FP8_E4M3;
    EXPECT_EQ(qilin_act_and_mul(&g, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("fp8_e4m3"), std::string::npos) << qilin_last_error();

    qilin_activation_args e = {};
    e.out = buf;
    e.in = buf;
    e.n = 8;
    e.dtype = QILIN_I8;
    EXPECT_EQ(qilin_activation(&e, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i8"), std::string::npos) << qilin_last_error();
}

} // namespace
