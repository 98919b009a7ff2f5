/* test_gemm_fp8.cpp — cuda/gemm_fp8.cu (the prefill GEMM on FP8 block-scaled
 * weights) against a float64 reference of the weights dequantized by
 * host/quant.c: random e4m3 codes over the whole finite range (never all
 * zero), random block scales 2^-16..2^-4, random x; y poisoned first (its
 * row padding must stay poisoned); m = 9, 17, 64, 130 (partial 64-row tiles);
 * ragged 128-blocks at the n and k edges; tensor-parallel slices starting
 * mid-block (row_off / col_off: the kernel reads a sub-matrix of a larger
 * checkpoint matrix and its scale grid); padded strides; every activation
 * dtype; y in dtype or f32; bias. */
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
    int row_off = 0, col_off = 0;
    bool bias = false, y_f32 = false;
    int pad = 0; /* added to ldx, ldw and ldy */
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    std::string s = std::string(qilin_dtype_name(c.dtype)) + "_m" + std::to_string(c.m) + "_n" +
                    std::to_string(c.n) + "_k" + std::to_string(c.k);
    if (c.row_off || c.col_off) s += "_off" + std::to_string(c.row_off) + "_" + std::to_string(c.col_off);
    if (c.bias) s += "_bias";
    if (c.y_f32) s += "_yf32";
    if (c.pad) s += "_pad" + std::to_string(c.pad);
    return s;
}

uint8_t random_e4m3(std::mt19937 &rng) {
    for (;;) {
        uint8_t b = (uint8_t)(rng() & 0xff);
        if ((b & 0x7f) != 0x7f) return b;
    }
}

class GemmFp8 : public testing::TestWithParam<Case> {};

TEST_P(GemmFp8, MatchesFloat64OfHostDequantization) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const qilin_dtype yt = c.y_f32 ? QILIN_F32 : c.dtype;
    const size_t es = qilin_dtype_size(c.dtype), ys = qilin_dtype_size(yt);
    /* the checkpoint matrix the slice [row_off, +n) x [col_off, +k) is cut from */
    const int R = c.row_off + c.n, C = c.col_off + c.k, nb = (R + 127) / 128, kb = (C + 127) / 128;
    const int64_t ldx = c.k + c.pad, ldw = C + c.pad, ldy = c.n + c.pad;
    std::mt19937 rng(7 * c.m + 131 * c.n + c.k + 1000 * c.row_off + c.col_off);
    std::normal_distribution<double> normal(0.0, 1.0);

    std::vector<uint8_t> codes((size_t)R * C);
    for (auto &b : codes) b = random_e4m3(rng);
    std::vector<float> scales((size_t)nb * kb);
    for (auto &s : scales) s = std::ldexp(1.0f + (float)(rng() % 1024) / 1024.0f, (int)(rng() % 12) - 16);
    quant_weight qw = {};
    qw.format = QILIN_WF_FP8_BLOCK;
    qw.rows = R;
    qw.cols = C;
    qw.data = codes.data();
    qw.data_bytes = codes.size();
    qw.scales = scales.data();
    qw.scale_bytes = scales.size() * sizeof(float);
    qw.name = "test fp8 weight";
    std::vector<float> wf((size_t)R * C);
    QILIN_ASSERT_OK(quant_dequantize(&qw, 0, R, QILIN_F32, wf.data()));

    std::vector<unsigned char> x((size_t)c.m * ldx * es), b((size_t)c.n * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    for (int i = 0; i < c.n; i++) store(b, i, normal(rng), c.dtype);
    std::vector<uint8_t> w((size_t)R * ldw, 0x7f); /* row padding: NaN codes, never read */
    for (int r = 0; r < R; r++) std::copy_n(&codes[(size_t)r * C], C, &w[(size_t)r * ldw]);

    std::vector<double> want((size_t)c.m * c.n);
    for (int i = 0; i < c.m; i++)
        for (int r = 0; r < c.n; r++) {
            double acc = c.bias ? value_of(b, r, c.dtype) : 0.0;
            for (int j = 0; j < c.k; j++)
                acc += value_of(x, (size_t)i * ldx + j, c.dtype) *
                       (double)wf[(size_t)(c.row_off + r) * C + c.col_off + j];
            want[(size_t)i * c.n + r] = acc;
        }

    DeviceBuffer<unsigned char> dx(x.size()), db(b.size()), dy((size_t)c.m * ldy * ys);
    DeviceBuffer<uint8_t> dw(w.size());
    DeviceBuffer<float> ds(scales.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dw.upload(w));
    QILIN_ASSERT_OK(ds.upload(scales));
    QILIN_ASSERT_OK(dy.poison());
    qilin_gemm_fp8_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w = dw.ptr + (size_t)c.row_off * ldw + c.col_off;
    a.w_scale = ds.ptr;
    a.bias = c.bias ? db.ptr : nullptr;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.row_off = c.row_off;
    a.col_off = c.col_off;
    a.ldx = ldx;
    a.ldw = ldw;
    a.ld_scale = kb;
    a.ldy = ldy;
    a.dtype = c.dtype;
    a.y_dtype = yt;
    QILIN_ASSERT_OK(qilin_gemm_fp8(&a, nullptr));

    expect_matmul_rows(dy.download(), c.m, c.n, ldy, yt, want);
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
        v.push_back({t, 9, 160, 200});                       /* ragged blocks, k % 32 != 0 */
        v.push_back({t, 17, 131, 272, 0, 0, true});          /* partial tiles everywhere, bias */
        v.push_back({t, 130, 144, 160, 0, 0, false, true});  /* m = 130: three row tiles, y f32 */
        v.push_back({t, 64, 64, 64, 0, 0, false, false, 5}); /* exact tiles, odd strides */
        v.push_back({t, 33, 80, 160, 80, 0});                /* TP 2 column slice of a 160-row matrix */
        v.push_back({t, 20, 40, 72, 120, 72, true});         /* a slice straddling block row and column */
    }
    v.push_back({QILIN_BF16, 70, 264, 1040, 0, 48, false, true}); /* col_off: row-parallel slice */
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmFp8, testing::ValuesIn(cases()), case_name);

TEST(GemmFp8Errors, BadArgumentsNameTheProblem) {
    float buf[16];
    uint8_t wbuf[16];
    qilin_gemm_fp8_args a = {};
    EXPECT_EQ(qilin_gemm_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
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
    a.row_off = 128;
    EXPECT_EQ(qilin_gemm_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("row_off=128"), std::string::npos) << qilin_last_error();
    a.row_off = 0;
    a.col_off = 127;
    EXPECT_EQ(qilin_gemm_fp8(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT); /* k = 2 from 127 spans 2 blocks */
    EXPECT_NE(std::string(qilin_last_error()).find("ld_scale=1"), std::string::npos) << qilin_last_error();
    a.col_off = 0;
    a.dtype = QILIN_BF16;
    a.y_dtype = QILIN_F16;
    EXPECT_EQ(qilin_gemm_fp8(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("y_dtype f16"), std::string::npos) << qilin_last_error();
    a.dtype = a.y_dtype = QILIN_F32;
    a.m = 0;
    EXPECT_EQ(qilin_gemm_fp8(&a, nullptr), QILIN_OK);
}

} // namespace
