/* test_gemv.cpp — cuda/gemv.cu against a float64 reference: m = 1..8 rows
 * of x, odd n and k (k not a multiple of the vector width takes the scalar
 * path), every dtype, with and without bias, y in dtype or widened to f32,
 * row strides larger than k and n (aligned: vector path; odd: scalar path),
 * k long enough to be staged in several chunks, and n small enough that k
 * is split across warps. */
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/matmul_check.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

struct Case {
    qilin_dtype dtype;
    int m, n, k;
    bool bias = true, y_f32 = false;
    int pad_x = 0, pad_w = 0, pad_y = 0; /* leading dimension = k + pad (n + pad for y) */
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_m" + std::to_string(c.m) + "_n" +
                    std::to_string(c.n) + "_k" + std::to_string(c.k);
    if (!c.bias) s += "_nobias";
    if (c.y_f32) s += "_yf32";
    if (c.pad_x || c.pad_w || c.pad_y)
        s += "_ld" + std::to_string(c.pad_x) + "_" + std::to_string(c.pad_w) + "_" + std::to_string(c.pad_y);
    return s;
}

class Gemv : public testing::TestWithParam<Case> {};

TEST_P(Gemv, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const qilin_dtype yt = c.y_f32 ? QILIN_F32 : c.dtype;
    const size_t es = qilin_dtype_size(c.dtype), ys = qilin_dtype_size(yt);
    const int64_t ldx = c.k + c.pad_x, ldw = c.k + c.pad_w, ldy = c.n + c.pad_y;
    std::mt19937 rng(4242 + c.m * 7 + c.n * 131 + c.k);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> x((size_t)c.m * ldx * es), w((size_t)c.n * ldw * es), b((size_t)c.n * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    for (size_t i = 0; i < w.size() / es; i++) store(w, i, normal(rng), c.dtype);
    for (int i = 0; i < c.n; i++) store(b, i, normal(rng), c.dtype);

    std::vector<double> want((size_t)c.m * c.n);
    for (int i = 0; i < c.m; i++)
        for (int r = 0; r < c.n; r++) {
            double s = c.bias ? value_of(b, r, c.dtype) : 0.0;
            for (int j = 0; j < c.k; j++)
                s += value_of(x, (size_t)i * ldx + j, c.dtype) * value_of(w, (size_t)r * ldw + j, c.dtype);
            want[(size_t)i * c.n + r] = s;
        }

    DeviceBuffer<unsigned char> dx(x.size()), dw(w.size()), db(b.size()), dy((size_t)c.m * ldy * ys);
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dy.poison());
    qilin_gemv_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w = dw.ptr;
    a.bias = c.bias ? db.ptr : nullptr;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.ldx = ldx;
    a.ldw = ldw;
    a.ldy = ldy;
    a.dtype = c.dtype;
    a.y_dtype = yt;
    QILIN_ASSERT_OK(qilin_gemv(&a, nullptr));

    expect_matmul_rows(dy.download(), c.m, c.n, ldy, yt, want);
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        for (int m = 1; m <= QILIN_GEMV_MAX_M; m++)
            for (int n : {1, 3, 37})
                for (int k : {7, 64, 1000}) v.push_back({t, m, n, k, (m + n + k) % 2 == 0});
        for (int m : {1, 3, 8}) {
            v.push_back({t, m, 4097, 64});
            v.push_back({t, m, 3, 4104});                  /* long k, split across warps */
            v.push_back({t, m, 37, 4096 + 8, false, true}); /* y widened to f32 */
        }
        v.push_back({t, 5, 33, 1000, true, false, 8, 8, 3});  /* aligned strides: vector path */
        v.push_back({t, 2, 33, 1000, true, false, 5, 3, 1});  /* odd strides: scalar path */
        v.push_back({t, 8, 20, 18432 + 8});                   /* several x chunks */
    }
    v.push_back({QILIN_BF16, 1, 4097, 4104, true, true}); /* a logits-like shape */
    v.push_back({QILIN_BF16, 7, 700, 2048, false});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Gemv, testing::ValuesIn(cases()), case_name);

TEST(GemvErrors, BadArgumentsNameTheProblem) {
    float buf[16];
    qilin_gemv_args a = {};
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("qilin_gemv"), std::string::npos);
    a.y = buf;
    a.x = buf;
    a.w = buf;
    a.m = 9;
    a.n = 2;
    a.k = 2;
    a.ldx = a.ldw = a.ldy = 2;
    a.dtype = a.y_dtype = QILIN_F32;
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("m=9"), std::string::npos) << qilin_last_error();
    a.m = 1;
    a.ldw = 1;
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("ldw=1"), std::string::npos) << qilin_last_error();
    a.ldw = 2;
    a.dtype = QILIN_BF16;
    a.y_dtype = QILIN_F16;
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("y_dtype f16"), std::string::npos) << qilin_last_error();
    a.dtype = a.y_dtype = QILIN_I32;
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i32"), std::string::npos) << qilin_last_error();
    a.dtype = a.y_dtype = QILIN_F32;
    a.m = 0; /* nothing to do */
    EXPECT_EQ(qilin_gemv(&a, nullptr), QILIN_OK);
}

/* qilin_gemv_multi: q, k and v (or MLA's q_a and kv_a) in one launch. Each
 * output against the float64 reference and against qilin_gemv run on it
 * alone; odd row counts so the outputs' block ranges split unevenly, an
 * empty output, a missing bias, poisoned y with padding columns that must
 * stay untouched, and both the vector and the scalar path. */
struct MultiCase {
    qilin_dtype dtype;
    int m, k;
    std::vector<int> n; /* rows of each output */
    int pad_w = 0;      /* W row stride k + pad_w: odd gives the scalar path */
};

std::string multi_name(const testing::TestParamInfo<MultiCase> &info) {
    const MultiCase &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_m" + std::to_string(c.m) + "_k" + std::to_string(c.k);
    for (int n : c.n) s += "_n" + std::to_string(n);
    if (c.pad_w) s += "_ldw" + std::to_string(c.pad_w);
    return s;
}

class GemvMulti : public testing::TestWithParam<MultiCase> {};

TEST_P(GemvMulti, EachOutputMatchesReferenceAndSingleGemv) {
    QILIN_REQUIRE_DEVICES(1);
    const MultiCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype);
    const int outs = (int)c.n.size();
    const int64_t ldw = c.k + c.pad_w;
    std::mt19937 rng(977 + c.m * 13 + c.k);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned char> x((size_t)c.m * c.k * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    DeviceBuffer<unsigned char> dx(x.size());
    QILIN_ASSERT_OK(dx.upload(x));
    std::vector<std::vector<unsigned char>> w(outs), b(outs);
    using Buf = std::unique_ptr<DeviceBuffer<unsigned char>>;
    std::vector<Buf> dw, db, dy, dsingle;
    auto buf = [](size_t bytes) { return std::make_unique<DeviceBuffer<unsigned char>>(bytes); };
    qilin_gemv_multi_args a = {};
    a.x = dx.ptr, a.m = c.m, a.k = c.k, a.ldx = c.k, a.n_outputs = outs, a.dtype = a.y_dtype = c.dtype;
    for (int j = 0; j < outs; j++) {
        int n = c.n[j];
        w[j].resize((size_t)n * ldw * es), b[j].resize((size_t)n * es);
        for (size_t i = 0; i < w[j].size() / es; i++) store(w[j], i, normal(rng), c.dtype);
        for (int i = 0; i < n; i++) store(b[j], i, normal(rng), c.dtype);
        dw.push_back(buf(w[j].size())), db.push_back(buf(b[j].size()));
        dy.push_back(buf((size_t)c.m * (n + 1) * es)), dsingle.push_back(buf((size_t)c.m * (n + 1) * es));
        QILIN_ASSERT_OK(dw[j]->upload(w[j]));
        QILIN_ASSERT_OK(db[j]->upload(b[j]));
        QILIN_ASSERT_OK(dy[j]->poison());
        QILIN_ASSERT_OK(dsingle[j]->poison());
        bool bias = j != 1; /* the second output has none */
        a.out[j] = {dy[j]->ptr, dw[j]->ptr, bias ? db[j]->ptr : nullptr, n, ldw, n + 1};
    }
    QILIN_ASSERT_OK(qilin_gemv_multi(&a, nullptr));
    for (int j = 0; j < outs; j++) {
        int n = c.n[j];
        qilin_gemv_args g = {};
        g.y = dsingle[j]->ptr, g.x = dx.ptr, g.w = dw[j]->ptr, g.bias = a.out[j].bias;
        g.m = c.m, g.n = n, g.k = c.k, g.ldx = c.k, g.ldw = ldw, g.ldy = n + 1;
        g.dtype = g.y_dtype = c.dtype;
        QILIN_ASSERT_OK(qilin_gemv(&g, nullptr));
        std::vector<unsigned char> y = dy[j]->download(), single = dsingle[j]->download();
        std::vector<double> got((size_t)c.m * n), alone((size_t)c.m * n), want((size_t)c.m * n);
        for (int i = 0; i < c.m; i++)
            for (int r = 0; r < n; r++) {
                double s = a.out[j].bias ? value_of(b[j], r, c.dtype) : 0.0;
                for (int t = 0; t < c.k; t++)
                    s += value_of(x, (size_t)i * c.k + t, c.dtype) * value_of(w[j], (size_t)r * ldw + t, c.dtype);
                want[(size_t)i * n + r] = s;
                got[(size_t)i * n + r] = value_of(y, (size_t)i * (n + 1) + r, c.dtype);
                alone[(size_t)i * n + r] = value_of(single, (size_t)i * (n + 1) + r, c.dtype);
            }
        for (int i = 0; i < c.m; i++) /* the padding column of each row is left alone */
            EXPECT_TRUE(std::isnan(value_of(y, (size_t)i * (n + 1) + n, c.dtype))) << "output " << j << " row " << i;
        const Tolerance &base = c.dtype == QILIN_F32 ? kTolDotF32 : c.dtype == QILIN_BF16 ? kTolDotBF16 : kTolDotF16;
        Comparison ref = compare(got, want, scaled_tolerance(base, want));
        Comparison one = compare(got, alone, scaled_tolerance(base, want));
        printf("output %d: %s\n  vs qilin_gemv: %s\n", j, ref.summary.c_str(), one.summary.c_str());
        EXPECT_TRUE(ref.ok) << "output " << j << ": " << ref.summary;
        EXPECT_TRUE(one.ok) << "output " << j << " vs qilin_gemv: " << one.summary;
    }
}

std::vector<MultiCase> multi_cases() {
    std::vector<MultiCase> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        v.push_back({t, 1, 64, {19, 5, 5}});           /* GQA-like: q wider than k, v */
        v.push_back({t, 3, 1000, {111, 37, 37}});
        v.push_back({t, 8, 4104, {33, 1, 7}});         /* long k: split across warps */
        v.push_back({t, 2, 104, {989, 0, 3}});         /* an empty output */
        v.push_back({t, 5, 111, {17, 9}, 1});          /* two outputs, odd k: scalar path */
        v.push_back({t, 1, 18432 + 8, {3, 2, 2}});     /* several x chunks */
    }
    v.push_back({QILIN_BF16, 1, 4096, {4096 / 8, 1024 / 8, 1024 / 8}}); /* Llama-3-8B at TP 8 */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemvMulti, testing::ValuesIn(multi_cases()), multi_name);

TEST(GemvErrors, MultiBadArgumentsNameTheOutput) {
    float buf[16];
    qilin_gemv_multi_args a = {};
    EXPECT_EQ(qilin_gemv_multi(nullptr, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    a.x = buf, a.m = 1, a.k = 2, a.ldx = 2, a.dtype = a.y_dtype = QILIN_F32;
    for (int j = 0; j < QILIN_GEMV_MAX_OUTPUTS; j++) a.out[j] = {buf, buf, nullptr, 2, 2, 2};
    a.n_outputs = 0;
    EXPECT_EQ(qilin_gemv_multi(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("n_outputs=0"), std::string::npos) << qilin_last_error();
    a.n_outputs = QILIN_GEMV_MAX_OUTPUTS + 1;
    EXPECT_EQ(qilin_gemv_multi(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    a.n_outputs = 3;
    a.out[2].w = nullptr;
    EXPECT_EQ(qilin_gemv_multi(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("output 2"), std::string::npos) << qilin_last_error();
    a.out[2].w = buf;
    a.out[1].ldw = 1;
    EXPECT_EQ(qilin_gemv_multi(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("output 1"), std::string::npos) << qilin_last_error();
}

} // namespace
