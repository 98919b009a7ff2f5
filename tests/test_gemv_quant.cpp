/* test_gemv_quant.cpp — cuda/gemv_quant.cu against a float64 reference of
 * the weights dequantized by host/quant.c (the CPU reference dequantizer):
 * random e4m3 codes over the whole finite range (subnormals included, never
 * all zero), random positive block scales spanning 2^-16..2^-4 (checkpoint-like,
 * and y stays inside f16 range), random x;
 * y poisoned first; m = 1..8; every activation dtype; y in dtype or f32;
 * ragged 128x128 blocks at the n and k edges (n 2112 x k 7168, k = 1040),
 * k not a multiple of 16 (scalar path), padded strides (aligned and odd),
 * x staged in several chunks, seeds 1..3. */
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "host/quant.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/matmul_check.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

struct Case {
    qilin_dtype dtype;
    int m, n, k;
    int seed = 1;
    bool bias = false, y_f32 = false;
    int pad_x = 0, pad_w = 0, pad_s = 0, pad_y = 0; /* leading dimension = k + pad (n, kblocks + pad) */
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_m" + std::to_string(c.m) + "_n" +
                    std::to_string(c.n) + "_k" + std::to_string(c.k) + "_s" + std::to_string(c.seed);
    if (c.bias) s += "_bias";
    if (c.y_f32) s += "_yf32";
    if (c.pad_x || c.pad_w || c.pad_s || c.pad_y)
        s += "_ld" + std::to_string(c.pad_x) + "_" + std::to_string(c.pad_w) + "_" + std::to_string(c.pad_s) + "_" +
             std::to_string(c.pad_y);
    return s;
}

/* A random finite e4m3fn code: any byte but the NaNs 0x7f / 0xff. */
uint8_t random_e4m3(std::mt19937 &rng) {
    for (;;) {
        uint8_t b = (uint8_t)(rng() & 0xff);
        if ((b & 0x7f) != 0x7f) return b;
    }
}

class GemvFp8 : public testing::TestWithParam<Case> {};

TEST_P(GemvFp8, MatchesFloat64OfHostDequantization) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const qilin_dtype yt = c.y_f32 ? QILIN_F32 : c.dtype;
    const size_t es = qilin_dtype_size(c.dtype), ys = qilin_dtype_size(yt);
    const int nb = (c.n + 127) / 128, kb = (c.k + 127) / 128;
    const int64_t ldx = c.k + c.pad_x, ldw = c.k + c.pad_w, lds = kb + c.pad_s, ldy = c.n + c.pad_y;
    std::mt19937 rng(1000 * c.seed + c.m * 7 + c.n * 131 + c.k);
    std::normal_distribution<double> normal(0.0, 1.0);

    /* the checkpoint's tensors, contiguous, and the host dequantization */
    std::vector<uint8_t> codes((size_t)c.n * c.k);
    for (auto &b : codes) b = random_e4m3(rng);
    std::vector<float> scales((size_t)nb * kb);
    for (auto &s : scales) s = std::ldexp(1.0f + (float)(rng() % 1024) / 1024.0f, (int)(rng() % 12) - 16);
    quant_weight qw = {};
    qw.format = QILIN_WF_FP8_BLOCK;
    qw.rows = c.n;
    qw.cols = c.k;
    qw.data = codes.data();
    qw.data_bytes = codes.size();
    qw.scales = scales.data();
    qw.scale_bytes = scales.size() * sizeof(float);
    qw.name = "test fp8 weight";
    std::vector<float> wf((size_t)c.n * c.k);
    QILIN_ASSERT_OK(quant_dequantize(&qw, 0, c.n, QILIN_F32, wf.data()));

    /* the device copies, at the case's strides (padding poisoned) */
    std::vector<unsigned char> x((size_t)c.m * ldx * es), b((size_t)c.n * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    for (int i = 0; i < c.n; i++) store(b, i, normal(rng), c.dtype);
    std::vector<uint8_t> w((size_t)c.n * ldw, 0x7f);
    for (int r = 0; r < c.n; r++) std::copy_n(&codes[(size_t)r * c.k], c.k, &w[(size_t)r * ldw]);
    std::vector<float> s((size_t)nb * lds, NAN);
    for (int r = 0; r < nb; r++) std::copy_n(&scales[(size_t)r * kb], kb, &s[(size_t)r * lds]);

    std::vector<double> want((size_t)c.m * c.n);
    for (int i = 0; i < c.m; i++)
        for (int r = 0; r < c.n; r++) {
            double acc = c.bias ? value_of(b, r, c.dtype) : 0.0;
            for (int j = 0; j < c.k; j++)
                acc += value_of(x, (size_t)i * ldx + j, c.dtype) * (double)wf[(size_t)r * c.k + j];
            want[(size_t)i * c.n + r] = acc;
        }

    DeviceBuffer<unsigned char> dx(x.size()), db(b.size()), dy((size_t)c.m * ldy * ys);
    DeviceBuffer<uint8_t> dw(w.size());
    DeviceBuffer<float> ds(s.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(ds.upload(s));
    QILIN_ASSERT_OK(dy.poison());
    qilin_gemv_fp8_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w = dw.ptr;
    a.w_scale = ds.ptr;
    a.bias = c.bias ? db.ptr : nullptr;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.ldx = ldx;
    a.ldw = ldw;
    a.ld_scale = lds;
    a.ldy = ldy;
    a.dtype = c.dtype;
    a.y_dtype = yt;
    QILIN_ASSERT_OK(qilin_gemv_fp8(&a, nullptr));

    expect_matmul_rows(dy.download(), c.m, c.n, ldy, yt, want);
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        for (int m = 1; m <= QILIN_GEMV_MAX_M; m++) {
            v.push_back({t, m, 160, 200, 1 + m % 3, m % 2 == 0});  /* k % 16 != 0: scalar path */
            v.push_back({t, m, 131, 1040, 1 + m % 3, m % 3 == 0}); /* ragged blocks at both edges */
        }
        v.push_back({t, 3, 37, 4112, 2, false, true});                /* long k split across warps, y f32 */
        v.push_back({t, 5, 33, 1040, 3, true, false, 16, 32, 3, 5});  /* aligned strides: vector path */
        v.push_back({t, 2, 33, 1040, 1, true, false, 5, 3, 1, 1});    /* odd strides: scalar path */
        v.push_back({t, 8, 9, 18432 + 16, 2});                        /* x staged in several chunks */
    }
    v.push_back({QILIN_BF16, 1, 2112, 7168, 1}); /* DeepSeek-V3 q_a+kv_a-like, ragged n block */
    v.push_back({QILIN_BF16, 4, 264, 7168, 2, false, true});
    v.push_back({QILIN_F16, 8, 130, 2048 + 144, 3});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemvFp8, testing::ValuesIn(cases()), case_name);

TEST(GemvFp8Errors, BadArgumentsNameTheProblem) {
    float buf[16];
    uint8_t wbuf[16];
    qilin_gemv_fp8_args a = {};
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("w_scale"), std::string::npos) << qilin_last_error();
    a.y = buf;
    a.x = buf;
    a.w = wbuf;
    a.w_scale = buf;
    a.m = 9;
    a.n = 2;
    a.k = 2;
    a.ldx = a.ldw = a.ldy = 2;
    a.ld_scale = 1;
    a.dtype = a.y_dtype = QILIN_F32;
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("m=9"), std::string::npos) << qilin_last_error();
    a.m = 1;
    a.ld_scale = 0;
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("ld_scale=0"), std::string::npos) << qilin_last_error();
    a.ld_scale = 1;
    a.dtype = QILIN_BF16;
    a.y_dtype = QILIN_F16;
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("y_dtype f16"), std::string::npos) << qilin_last_error();
    a.dtype = a.y_dtype = QILIN_I32;
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("i32"), std::string::npos) << qilin_last_error();
    a.dtype = a.y_dtype = QILIN_F32;
    a.m = 0;
    EXPECT_EQ(qilin_gemv_fp8(&a, nullptr), QILIN_OK);
}

} // namespace

/* ---- INT4 groups: random nibbles (all 16 codes), random group scales in
 * f32/f16/bf16, group 32 (Kimi K2-Thinking) and 128 (vector path) and a
 * group of 40 with k = 200 (scalar path); padded strides. */
namespace {

struct Int4Case {
    qilin_dtype dtype, scale_dtype;
    int m, n, k, group;
    int seed = 1;
    bool bias = false, y_f32 = false;
    int pad_x = 0, pad_w = 0, pad_s = 0, pad_y = 0; /* ldw in words: ceil(k/8) + pad_w */
};

std::string int4_name(const testing::TestParamInfo<Int4Case> &info) {
    const Int4Case &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_scale" + qilin_dtype_name(c.scale_dtype) + "_m" +
                    std::to_string(c.m) + "_n" + std::to_string(c.n) + "_k" + std::to_string(c.k) + "_g" +
                    std::to_string(c.group) + "_s" + std::to_string(c.seed);
    if (c.bias) s += "_bias";
    if (c.y_f32) s += "_yf32";
    if (c.pad_x || c.pad_w || c.pad_s || c.pad_y)
        s += "_ld" + std::to_string(c.pad_x) + "_" + std::to_string(c.pad_w) + "_" + std::to_string(c.pad_s) + "_" +
             std::to_string(c.pad_y);
    return s;
}

class GemvInt4 : public testing::TestWithParam<Int4Case> {};

TEST_P(GemvInt4, MatchesFloat64OfHostDequantization) {
    QILIN_REQUIRE_DEVICES(1);
    const Int4Case c = GetParam();
    const qilin_dtype yt = c.y_f32 ? QILIN_F32 : c.dtype;
    const size_t es = qilin_dtype_size(c.dtype), ys = qilin_dtype_size(yt), ss = qilin_dtype_size(c.scale_dtype);
    const int words = (c.k + 7) / 8, ng = c.k / c.group;
    const int64_t ldx = c.k + c.pad_x, ldw = words + c.pad_w, lds = ng + c.pad_s, ldy = c.n + c.pad_y;
    std::mt19937 rng(2000 * c.seed + c.m * 7 + c.n * 131 + c.k);
    std::normal_distribution<double> normal(0.0, 1.0);

    std::vector<uint32_t> packed((size_t)c.n * words);
    for (auto &p : packed) p = (uint32_t)rng();
    std::vector<unsigned char> scales((size_t)c.n * ng * ss);
    for (size_t i = 0; i < (size_t)c.n * ng; i++)
        store(scales, i, std::ldexp(1.0 + (double)(rng() % 1024) / 1024.0, (int)(rng() % 6) - 8), c.scale_dtype);
    quant_weight qw = {};
    qw.format = QILIN_WF_INT4_GROUP;
    qw.rows = c.n;
    qw.cols = c.k;
    qw.data = packed.data();
    qw.data_bytes = packed.size() * 4;
    qw.scales = scales.data();
    qw.scale_bytes = scales.size();
    qw.scale_dtype = c.scale_dtype;
    qw.group_size = c.group;
    qw.name = "test int4 weight";
    std::vector<float> wf((size_t)c.n * c.k);
    QILIN_ASSERT_OK(quant_dequantize(&qw, 0, c.n, QILIN_F32, wf.data()));

    std::vector<unsigned char> x((size_t)c.m * ldx * es), b((size_t)c.n * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    for (int i = 0; i < c.n; i++) store(b, i, normal(rng), c.dtype);
    std::vector<uint32_t> w((size_t)c.n * ldw, 0xdeadbeefu);
    for (int r = 0; r < c.n; r++) std::copy_n(&packed[(size_t)r * words], words, &w[(size_t)r * ldw]);
    std::vector<unsigned char> s((size_t)c.n * lds * ss);
    for (size_t i = 0; i < s.size() / ss; i++) store(s, i, NAN, c.scale_dtype);
    for (int r = 0; r < c.n; r++) std::copy_n(&scales[(size_t)r * ng * ss], ng * ss, &s[(size_t)r * lds * ss]);

    std::vector<double> want((size_t)c.m * c.n);
    for (int i = 0; i < c.m; i++)
        for (int r = 0; r < c.n; r++) {
            double acc = c.bias ? value_of(b, r, c.dtype) : 0.0;
            for (int j = 0; j < c.k; j++)
                acc += value_of(x, (size_t)i * ldx + j, c.dtype) * (double)wf[(size_t)r * c.k + j];
            want[(size_t)i * c.n + r] = acc;
        }

    DeviceBuffer<unsigned char> dx(x.size()), db(b.size()), dy((size_t)c.m * ldy * ys), ds(s.size());
    DeviceBuffer<uint32_t> dw(w.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(ds.upload(s));
    QILIN_ASSERT_OK(dy.poison());
    qilin_gemv_int4_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w_packed = (const int32_t *)dw.ptr;
    a.w_scale = ds.ptr;
    a.bias = c.bias ? db.ptr : nullptr;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.group_size = c.group;
    a.ldx = ldx;
    a.ldw = ldw;
    a.ld_scale = lds;
    a.ldy = ldy;
    a.dtype = c.dtype;
    a.y_dtype = yt;
    a.scale_dtype = c.scale_dtype;
    QILIN_ASSERT_OK(qilin_gemv_int4(&a, nullptr));

    expect_matmul_rows(dy.download(), c.m, c.n, ldy, yt, want);
}

std::vector<Int4Case> int4_cases() {
    std::vector<Int4Case> v;
    const qilin_dtype st[] = {QILIN_BF16, QILIN_F16, QILIN_F32};
    int t_i = 0;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        for (int m = 1; m <= QILIN_GEMV_MAX_M; m++) {
            qilin_dtype sd = st[(m + t_i) % 3];
            v.push_back({t, sd, m, 160, 200, 40, 1 + m % 3, m % 2 == 0});   /* scalar path */
            v.push_back({t, sd, m, 131, 1056, 32, 1 + m % 3, m % 3 == 0});  /* group 32, k = 33 groups */
        }
        v.push_back({t, st[t_i], 3, 37, 4096, 128, 2, false, true});                 /* group 128, ksplit, y f32 */
        v.push_back({t, st[t_i], 5, 33, 1056, 32, 3, true, false, 16, 4, 3, 5});     /* aligned strides */
        v.push_back({t, st[t_i], 2, 33, 1056, 32, 1, true, false, 5, 3, 1, 1});      /* odd strides: scalar */
        v.push_back({t, st[t_i], 8, 9, 18432 + 32, 32, 2});                          /* several x chunks */
        t_i++;
    }
    v.push_back({QILIN_BF16, QILIN_BF16, 1, 264, 7168, 32, 1}); /* Kimi K2 expert gate-like k */
    v.push_back({QILIN_BF16, QILIN_BF16, 8, 130, 2048, 32, 3});  /* down-like */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemvInt4, testing::ValuesIn(int4_cases()), int4_name);

TEST(GemvInt4Errors, BadArgumentsNameTheProblem) {
    float buf[16];
    int32_t wbuf[4];
    qilin_gemv_int4_args a = {};
    EXPECT_EQ(qilin_gemv_int4(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("w_packed"), std::string::npos) << qilin_last_error();
    a.y = buf;
    a.x = buf;
    a.w_packed = wbuf;
    a.w_scale = buf;
    a.m = 1;
    a.n = 2;
    a.k = 64;
    a.group_size = 48;
    a.ldx = 64;
    a.ldw = 8;
    a.ldy = 2;
    a.ld_scale = 2;
    a.dtype = a.y_dtype = a.scale_dtype = QILIN_F32;
    EXPECT_EQ(qilin_gemv_int4(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("group_size=48"), std::string::npos) << qilin_last_error();
    a.group_size = 32;
    a.ldw = 7;
    EXPECT_EQ(qilin_gemv_int4(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("ldw=7"), std::string::npos) << qilin_last_error();
    a.ldw = 8;
    a.scale_dtype = QILIN_I32;
    EXPECT_EQ(qilin_gemv_int4(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("scale_dtype i32"), std::string::npos) << qilin_last_error();
    a.scale_dtype = QILIN_F32;
    a.m = 0;
    EXPECT_EQ(qilin_gemv_int4(&a, nullptr), QILIN_OK);
}

} // namespace
