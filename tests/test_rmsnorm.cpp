/* test_rmsnorm.cpp — cuda/rmsnorm.cu against a float64 reference, with and
 * without the fused residual add, on odd shapes, every storage dtype, and
 * misaligned rows that take the scalar path. */
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
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
    bool residual;
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_rows" + std::to_string(c.rows) + "_dim" +
           std::to_string(c.dim) + (c.residual ? "_residual" : "");
}


class Rmsnorm : public testing::TestWithParam<Case> {};

TEST_P(Rmsnorm, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), n = (size_t)c.rows * c.dim;
    const float eps = 1e-5f;
    std::mt19937 rng(1234 + c.rows * 31 + c.dim);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> x(n * es), res(n * es), w(c.dim * es);
    for (size_t i = 0; i < n; i++) store(x, i, normal(rng) * 2.0 + 0.3, c.dtype);
    for (size_t i = 0; i < n; i++) store(res, i, normal(rng), c.dtype);
    for (int i = 0; i < c.dim; i++) store(w, i, 1.0 + 0.2 * normal(rng), c.dtype);

    /* reference: h rounded to the storage type when fused, as the kernel must */
    std::vector<double> want(n), want_res(n);
    for (int r = 0; r < c.rows; r++) {
        double ss = 0;
        std::vector<double> h(c.dim);
        for (int i = 0; i < c.dim; i++) {
            size_t k = (size_t)r * c.dim + i;
            h[i] = value_of(x, k, c.dtype);
            if (c.residual) {
                std::vector<unsigned char> tmp(es);
                store(tmp, 0, (double)((float)h[i] + (float)value_of(res, k, c.dtype)), c.dtype);
                h[i] = value_of(tmp, 0, c.dtype);
                want_res[k] = h[i];
            }
            ss += h[i] * h[i];
        }
        double scale = 1.0 / std::sqrt(ss / c.dim + eps);
        for (int i = 0; i < c.dim; i++) want[(size_t)r * c.dim + i] = h[i] * scale * value_of(w, i, c.dtype);
    }

    DeviceBuffer<unsigned char> dx(n * es), dres(n * es), dw(c.dim * es), dout(n * es);
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(dres.upload(res));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(dout.poison());
    qilin_rmsnorm_args a = {};
    a.out = dout.ptr;
    a.residual = c.residual ? dres.ptr : nullptr;
    a.x = dx.ptr;
    a.weight = dw.ptr;
    a.rows = c.rows;
    a.dim = c.dim;
    a.eps = eps;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_rmsnorm(&a, nullptr));

    std::vector<unsigned char> out = dout.download(), res_out = dres.download();
    std::vector<double> got(n), got_res(n);
    for (size_t i = 0; i < n; i++) {
        got[i] = value_of(out, i, c.dtype);
        got_res[i] = value_of(res_out, i, c.dtype);
    }
    const Tolerance &tol = c.dtype == QILIN_F32 ? kTolF32 : c.dtype == QILIN_BF16 ? kTolBF16 : kTolF16;
    Comparison cmp = compare(got, want, tol);
    printf("out: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
    if (c.residual) {
        Comparison cr = compare(got_res, want_res, Tolerance{0, 0, "the residual sum is rounded once, exactly"});
        EXPECT_TRUE(cr.ok) << "residual: " << cr.summary;
    }
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16})
        for (int rows : {1, 19})
            for (int dim : {1, 19, 111, 989, 4096})
                for (bool r : {false, true}) v.push_back({t, rows, dim, r});
    v.push_back({QILIN_BF16, 111, 7168, true}); /* DeepSeek-V3's hidden size */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Rmsnorm, testing::ValuesIn(cases()), case_name);

TEST(RmsnormErrors, BadArgumentsNameTheProblem) {
    qilin_rmsnorm_args a = {};
    EXPECT_EQ(qilin_rmsnorm(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("rmsnorm"), std::string::npos);
    float buf[4];
    a.out = buf;
    a.x = buf;
    a.weight = buf;
    a.rows = 1;
    a.dim = 4;
    a.dtype = QILIN_I32;
    EXPECT_EQ(qilin_rmsnorm(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i32"), std::string::npos) << qilin_last_error();
    a.dtype = QILIN_F32;
    a.dim = -3;
    EXPECT_EQ(qilin_rmsnorm(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("dim=-3"), std::string::npos) << qilin_last_error();
}

} // namespace
