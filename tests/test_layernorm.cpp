/* test_layernorm.cpp — cuda/layernorm.cu against a float64 reference: with
 * and without the fused residual add and the bias, on odd shapes, every
 * storage dtype, rows whose mean is large against their spread (where a
 * one-pass variance would cancel), and misaligned rows that take the scalar
 * path. */
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

struct Case {
    qilin_dtype dtype;
    int rows, dim;
    bool residual, bias = true, offset = false, misaligned = false;
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_rows" + std::to_string(c.rows) + "_dim" +
           std::to_string(c.dim) + (c.residual ? "_residual" : "") + (c.bias ? "" : "_nobias") +
           (c.offset ? "_offset" : "") + (c.misaligned ? "_misaligned" : "");
}

const Tolerance &storage_tolerance(qilin_dtype t) {
    return t == QILIN_F32 ? kTolF32 : t == QILIN_BF16 ? kTolBF16 : kTolF16;
}
class Layernorm : public testing::TestWithParam<Case> {};

TEST_P(Layernorm, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), n = (size_t)c.rows * c.dim;
    const size_t skew = c.misaligned ? 1 : 0; /* elements: one off 16-byte alignment */
    const float eps = 1e-5f;
    std::mt19937 rng(4321 + c.rows * 31 + c.dim + c.offset);
    std::normal_distribution<double> normal(0.0, 1.0);
    const double centre = c.offset ? 24.0 : 0.3; /* |mean| / std = 24: a one-pass variance loses ~9 bits */
    std::vector<unsigned char> x((n + skew) * es), res((n + skew) * es), w((c.dim + skew) * es),
        b((c.dim + skew) * es);
    for (size_t i = 0; i < n; i++) store(x, skew + i, normal(rng) * (c.offset ? 0.5 : 2.0) + centre, c.dtype);
    for (size_t i = 0; i < n; i++) store(res, skew + i, normal(rng) * 0.5, c.dtype);
    for (int i = 0; i < c.dim; i++) store(w, skew + i, 1.0 + 0.2 * normal(rng), c.dtype);
    for (int i = 0; i < c.dim; i++) store(b, skew + i, 0.1 * normal(rng), c.dtype);

    std::vector<double> want(n), want_res(n);
    for (int r = 0; r < c.rows; r++) {
        std::vector<double> h(c.dim);
        double sum = 0, sq = 0;
        for (int i = 0; i < c.dim; i++) {
            size_t k = (size_t)r * c.dim + i;
            h[i] = value_of(x, skew + k, c.dtype);
            if (c.residual) {
                /* the kernel adds in fp32 and stores h in dtype */
                h[i] = rounded((double)((float)h[i] + (float)value_of(res, skew + k, c.dtype)), c.dtype);
                want_res[k] = h[i];
            }
            sum += h[i];
        }
        double mean = sum / c.dim;
        for (int i = 0; i < c.dim; i++) sq += (h[i] - mean) * (h[i] - mean);
        double inv_std = 1.0 / std::sqrt(sq / c.dim + eps);
        for (int i = 0; i < c.dim; i++)
            want[(size_t)r * c.dim + i] = (h[i] - mean) * inv_std * value_of(w, skew + i, c.dtype) +
                                          (c.bias ? value_of(b, skew + i, c.dtype) : 0.0);
    }

    DeviceBuffer<unsigned char> dx(x.size()), dres(res.size()), dw(w.size()), db(b.size()), dout(x.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(dres.upload(res));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dout.poison());
    const size_t off = skew * es;
    qilin_layernorm_args a = {};
    a.out = dout.ptr + off;
    a.residual = c.residual ? dres.ptr + off : nullptr;
    a.x = dx.ptr + off;
    a.weight = dw.ptr + off;
    a.bias = c.bias ? db.ptr + off : nullptr;
    a.rows = c.rows;
    a.dim = c.dim;
    a.eps = eps;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_layernorm(&a, nullptr));

    std::vector<unsigned char> out = dout.download(), res_out = dres.download();
    std::vector<double> got(n), got_res(n);
    for (size_t i = 0; i < n; i++) {
        got[i] = value_of(out, skew + i, c.dtype);
        got_res[i] = value_of(res_out, skew + i, c.dtype);
    }
    const Tolerance &tol = !c.offset              ? storage_tolerance(c.dtype)
                           : c.dtype == QILIN_F32 ? kTolLayernormOffsetF32
                                                  : kTolLayernormOffsetBF16;
    Comparison cmp = compare(got, want, tol);
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
    if (c.residual) {
        Comparison cr =
            compare(got_res, want_res, Tolerance{0, 0, "the residual sum is rounded once, exactly"});
        EXPECT_TRUE(cr.ok) << "residual: " << cr.summary;
    }
}

/* The emulator runs every thread as a fiber and this kernel crosses four
 * barriers, so many-row cases stay narrow: every dim runs as one row, and
 * the multi-row cases cover both paths (dim 256 vector, 19/111/989 scalar). */
std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        for (int dim : {1, 19, 111, 989, 4096})
            for (bool r : {false, true}) v.push_back({t, 1, dim, r});
        for (int dim : {19, 111, 256})
            for (bool r : {false, true}) v.push_back({t, 19, dim, r});
    }
    v.push_back({QILIN_BF16, 19, 989, true});
    v.push_back({QILIN_F16, 111, 111, true});
    v.push_back({QILIN_BF16, 111, 256, true});
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16}) {
        v.push_back({t, 19, 111, true, false});       /* GPT-J's ln_f has a bias, but not every caller */
        v.push_back({t, 1, 4096, false, true, true}); /* mean far from zero */
    }
    v.push_back({QILIN_BF16, 1, 4096, true, true, false, true}); /* scalar path on a vector-sized row */
    v.push_back({QILIN_BF16, 19, 256, true, true, false, true});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Layernorm, testing::ValuesIn(cases()), case_name);

TEST(LayernormErrors, BadArgumentsNameTheProblem) {
    qilin_layernorm_args a = {};
    EXPECT_EQ(qilin_layernorm(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("layernorm"), std::string::npos);
    float buf[4];
    a.out = buf;
    a.x = buf;
    a.weight = buf;
    a.rows = 1;
    a.dim = 4;
    a.dtype = QILIN_I32;
    EXPECT_EQ(qilin_layernorm(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i32"), std::string::npos) << qilin_last_error();
    a.dtype = QILIN_F32;
    a.dim = 0;
    EXPECT_EQ(qilin_layernorm(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("dim=0"), std::string::npos) << qilin_last_error();
    a.dim = 4;
    a.eps = -1.0f;
    EXPECT_EQ(qilin_layernorm(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("eps"), std::string::npos) << qilin_last_error();
}

} // namespace
