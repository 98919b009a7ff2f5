/* test_elementwise.cpp — cuda/elementwise.cu: add_bias, add, sigmoid_gate_add,
 * cast and gather_rows against plain references, every dtype (every dtype
 * pair for cast), odd shapes, padded row strides whose padding must come back
 * untouched, misaligned pointers that take the scalar path, in-place
 * aliasing for add, and special values (inf, NaN, overflow, subnormals) for
 * cast. */
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

const Tolerance kExact = {0, 0, "a copy or a single conversion: exact"};

const Tolerance &tol_for(qilin_dtype t) {
    return t == QILIN_F32 ? kTolF32 : t == QILIN_BF16 ? kTolBF16 : kTolF16;
}

const qilin_dtype kDtypes[] = {QILIN_F32, QILIN_BF16, QILIN_F16};

/* Random values away from zero, in the storage type. */
std::vector<unsigned char> random_buffer(size_t n, qilin_dtype t, std::mt19937 &rng, double scale = 1.0) {
    std::uniform_real_distribution<double> mag(0.05, 2.0);
    std::vector<unsigned char> b(n * qilin_dtype_size(t));
    for (size_t i = 0; i < n; i++) store(b, i, (rng() & 1 ? 1 : -1) * mag(rng) * scale, t);
    return b;
}

std::vector<double> values(const std::vector<unsigned char> &b, size_t off, size_t n, qilin_dtype t) {
    std::vector<double> v(n);
    for (size_t i = 0; i < n; i++) v[i] = value_of(b, off + i, t);
    return v;
}

/* Bytes [from, to) of two buffers are identical. */
bool same_bytes(const std::vector<unsigned char> &x, const std::vector<unsigned char> &y, size_t from,
                size_t to) {
    return memcmp(x.data() + from, y.data() + from, to - from) == 0;
}

/* ---- add_bias ------------------------------------------------------------------ */

struct RowCase {
    qilin_dtype dtype;
    int rows, cols, pad;
    bool misaligned;
};

std::string row_case_name(const testing::TestParamInfo<RowCase> &info) {
    const RowCase &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_rows" + std::to_string(c.rows) + "_cols" +
           std::to_string(c.cols) + "_pad" + std::to_string(c.pad) + (c.misaligned ? "_misaligned" : "");
}

std::vector<RowCase> row_cases() {
    std::vector<RowCase> v;
    for (qilin_dtype t : kDtypes)
        for (int rows : {1, 19})
            for (int cols : {1, 19, 111, 4096})
                for (int pad : {0, 8}) v.push_back({t, rows, cols, pad, false});
    for (qilin_dtype t : kDtypes) v.push_back({t, 3, 128, 0, true});
    return v;
}

class AddBias : public testing::TestWithParam<RowCase> {};

TEST_P(AddBias, AddsBiasAndLeavesPaddingAlone) {
    QILIN_REQUIRE_DEVICES(1);
    const RowCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), skew = c.misaligned ? 1 : 0;
    const int64_t ld = c.cols + c.pad;
    const size_t n = (size_t)c.rows * ld + skew;
    std::mt19937 rng(11 + c.rows * 7 + c.cols);
    std::vector<unsigned char> x = random_buffer(n, c.dtype, rng),
                               bias = random_buffer(c.cols + skew, c.dtype, rng);
    std::vector<double> want, got;
    for (int r = 0; r < c.rows; r++)
        for (int j = 0; j < c.cols; j++)
            want.push_back(rounded(
                value_of(x, skew + r * ld + j, c.dtype) + value_of(bias, skew + j, c.dtype), c.dtype));

    DeviceBuffer<unsigned char> dx(x.size()), db(bias.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(db.upload(bias));
    qilin_add_bias_args a = {dx.ptr + skew * es, db.ptr + skew * es, c.rows, c.cols, ld, c.dtype};
    QILIN_ASSERT_OK(qilin_add_bias(&a, nullptr));
    std::vector<unsigned char> out = dx.download();
    for (int r = 0; r < c.rows; r++) {
        for (int j = 0; j < c.cols; j++) got.push_back(value_of(out, skew + r * ld + j, c.dtype));
        size_t pad0 = (skew + r * ld + c.cols) * es;
        EXPECT_TRUE(same_bytes(out, x, pad0, pad0 + c.pad * es)) << "padding of row " << r << " changed";
    }
    /* one fp32 add of two storage values, rounded once: the double sum rounds the same */
    Comparison cmp = compare(got, want, kExact);
    printf("add_bias: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AddBias, testing::ValuesIn(row_cases()), row_case_name);

/* ---- add ------------------------------------------------------------------------ */

struct AddCase {
    qilin_dtype dtype;
    size_t n;
    bool three; /* c set */
    int alias;  /* 0: out separate, 1: out == a, 2: out == b, 3: out == c */
    bool misaligned;
};

std::string add_case_name(const testing::TestParamInfo<AddCase> &info) {
    const AddCase &c = info.param;
    static const char *alias[] = {"", "_out_is_a", "_out_is_b", "_out_is_c"};
    return std::string(qilin_dtype_name(c.dtype)) + "_n" + std::to_string(c.n) + (c.three ? "_abc" : "_ab") +
           alias[c.alias] + (c.misaligned ? "_misaligned" : "");
}

class Add : public testing::TestWithParam<AddCase> {};

TEST_P(Add, MatchesFloat64Sum) {
    QILIN_REQUIRE_DEVICES(1);
    const AddCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), skew = c.misaligned ? 1 : 0, n = c.n + skew;
    std::mt19937 rng(99 + c.n + c.alias);
    std::vector<unsigned char> in[3] = {random_buffer(n, c.dtype, rng), random_buffer(n, c.dtype, rng),
                                        random_buffer(n, c.dtype, rng)};
    std::vector<double> want(c.n);
    for (size_t i = 0; i < c.n; i++) {
        double s = value_of(in[0], skew + i, c.dtype) + value_of(in[1], skew + i, c.dtype);
        if (c.three) s += value_of(in[2], skew + i, c.dtype);
        want[i] = s;
    }
    DeviceBuffer<unsigned char> d0(n * es), d1(n * es), d2(n * es), dout(n * es);
    QILIN_ASSERT_OK(d0.upload(in[0]));
    QILIN_ASSERT_OK(d1.upload(in[1]));
    QILIN_ASSERT_OK(d2.upload(in[2]));
    QILIN_ASSERT_OK(dout.poison());
    unsigned char *bufs[4] = {dout.ptr, d0.ptr, d1.ptr, d2.ptr};
    qilin_add_args a = {};
    a.out = bufs[c.alias] + skew * es;
    a.a = d0.ptr + skew * es;
    a.b = d1.ptr + skew * es;
    a.c = c.three ? d2.ptr + skew * es : nullptr;
    a.n = c.n;
    a.dtype = c.dtype;
    QILIN_ASSERT_OK(qilin_add(&a, nullptr));
    DeviceBuffer<unsigned char> *outs[4] = {&dout, &d0, &d1, &d2};
    std::vector<unsigned char> out = outs[c.alias]->download();
    Comparison cmp = compare(values(out, skew, c.n, c.dtype), want, tol_for(c.dtype));
    printf("add: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<AddCase> add_cases() {
    std::vector<AddCase> v;
    for (qilin_dtype t : kDtypes)
        for (size_t n : {(size_t)1, (size_t)19, (size_t)989, (size_t)4099})
            for (bool three : {false, true}) v.push_back({t, n, three, 0, false});
    for (qilin_dtype t : kDtypes) {
        v.push_back({t, 1001, true, 1, false});
        v.push_back({t, 1001, true, 2, false});
        v.push_back({t, 1001, true, 3, false});
        v.push_back({t, 1001, false, 1, true});
        v.push_back({t, 1001, true, 0, true});
    }
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Add, testing::ValuesIn(add_cases()), add_case_name);

/* ---- sigmoid_gate_add ------------------------------------------------------------ */

class SigmoidGateAdd : public testing::TestWithParam<RowCase> {};

TEST_P(SigmoidGateAdd, MatchesFloat64Reference) {
    QILIN_REQUIRE_DEVICES(1);
    const RowCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), skew = c.misaligned ? 1 : 0;
    const size_t n = (size_t)c.rows * c.cols + skew;
    std::mt19937 rng(5 + c.rows * 3 + c.cols);
    std::vector<unsigned char> out0 = random_buffer(n, c.dtype, rng), y = random_buffer(n, c.dtype, rng),
                               gate = random_buffer(c.rows, c.dtype, rng, 3.0);
    std::vector<double> want(n - skew);
    for (int t = 0; t < c.rows; t++) {
        double g = 1.0 / (1.0 + exp(-value_of(gate, t, c.dtype)));
        for (int j = 0; j < c.cols; j++) {
            size_t i = (size_t)t * c.cols + j;
            want[i] = value_of(out0, skew + i, c.dtype) + g * value_of(y, skew + i, c.dtype);
        }
    }
    DeviceBuffer<unsigned char> dout(out0.size()), dy(y.size()), dg(gate.size());
    QILIN_ASSERT_OK(dout.upload(out0));
    QILIN_ASSERT_OK(dy.upload(y));
    QILIN_ASSERT_OK(dg.upload(gate));
    qilin_sigmoid_gate_add_args a = {
        dout.ptr + skew * es, dy.ptr + skew * es, dg.ptr, c.rows, c.cols, c.dtype};
    QILIN_ASSERT_OK(qilin_sigmoid_gate_add(&a, nullptr));
    Comparison cmp = compare(values(dout.download(), skew, n - skew, c.dtype), want, tol_for(c.dtype));
    printf("sigmoid_gate_add: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<RowCase> gate_cases() {
    std::vector<RowCase> v;
    for (qilin_dtype t : kDtypes)
        for (int rows : {1, 17})
            for (int cols : {19, 128, 2048}) v.push_back({t, rows, cols, 0, false});
    for (qilin_dtype t : kDtypes) v.push_back({t, 3, 64, 0, true});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SigmoidGateAdd, testing::ValuesIn(gate_cases()), row_case_name);

/* ---- cast ------------------------------------------------------------------------ */

struct CastCase {
    qilin_dtype in, out;
    size_t n;
    bool misaligned;
};

std::string cast_case_name(const testing::TestParamInfo<CastCase> &info) {
    const CastCase &c = info.param;
    return std::string(qilin_dtype_name(c.in)) + "_to_" + qilin_dtype_name(c.out) + "_n" +
           std::to_string(c.n) + (c.misaligned ? "_misaligned" : "");
}

class Cast : public testing::TestWithParam<CastCase> {};

TEST_P(Cast, RoundsOnceToNearestEven) {
    QILIN_REQUIRE_DEVICES(1);
    const CastCase c = GetParam();
    const size_t ies = qilin_dtype_size(c.in), oes = qilin_dtype_size(c.out), skew = c.misaligned ? 1 : 0;
    const size_t n = c.n + skew;
    std::mt19937 rng(3 + c.n);
    std::vector<unsigned char> in = random_buffer(n, c.in, rng, 100.0);
    /* specials where they fit: overflow to f16 inf, a bf16/f16 subnormal, inf, NaN, ties */
    const double specials[] = {INFINITY, -INFINITY, NAN, 70000.0, -1e-6, 3e-39, 1.0 + 1.0 / 256, 65520.0};
    for (size_t k = 0; k < sizeof specials / sizeof *specials && k < c.n; k++)
        store(in, skew + (k * 37) % c.n, specials[k], c.in);
    std::vector<double> want(c.n);
    for (size_t i = 0; i < c.n; i++) want[i] = rounded(value_of(in, skew + i, c.in), c.out);

    DeviceBuffer<unsigned char> din(in.size()), dout(n * oes);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(dout.poison());
    qilin_cast_args a = {dout.ptr + skew * oes, din.ptr + skew * ies, c.n, c.in, c.out};
    QILIN_ASSERT_OK(qilin_cast(&a, nullptr));
    Comparison cmp = compare(values(dout.download(), skew, c.n, c.out), want, kExact);
    printf("cast: %s\n", cmp.summary.c_str());
    EXPECT_TRUE(cmp.ok) << cmp.summary;
}

std::vector<CastCase> cast_cases() {
    std::vector<CastCase> v;
    for (qilin_dtype i : kDtypes)
        for (qilin_dtype o : kDtypes) {
            for (size_t n : {(size_t)1, (size_t)37, (size_t)4099}) v.push_back({i, o, n, false});
            v.push_back({i, o, 77, true});
        }
    return v;
}

INSTANTIATE_TEST_SUITE_P(Pairs, Cast, testing::ValuesIn(cast_cases()), cast_case_name);

/* ---- gather_rows ----------------------------------------------------------------- */

struct GatherCase {
    qilin_dtype dtype;
    int n, cols, pad;
    bool misaligned;
};

std::string gather_case_name(const testing::TestParamInfo<GatherCase> &info) {
    const GatherCase &c = info.param;
    return std::string(qilin_dtype_name(c.dtype)) + "_n" + std::to_string(c.n) + "_cols" +
           std::to_string(c.cols) + "_pad" + std::to_string(c.pad) + (c.misaligned ? "_misaligned" : "");
}

class GatherRows : public testing::TestWithParam<GatherCase> {};

TEST_P(GatherRows, CopiesTheChosenRows) {
    QILIN_REQUIRE_DEVICES(1);
    const GatherCase c = GetParam();
    const size_t es = qilin_dtype_size(c.dtype), skew = c.misaligned ? 1 : 0;
    const int in_rows = 41;
    const int64_t ld_in = c.cols + c.pad + 8, ld_out = c.cols + c.pad;
    std::mt19937 rng(17 + c.n + c.cols);
    std::vector<unsigned char> in = random_buffer(in_rows * ld_in + skew, c.dtype, rng);
    std::vector<int> rows(c.n);
    for (int i = 0; i < c.n; i++) rows[i] = (int)(rng() % in_rows); /* repeats allowed */
    if (c.n > 1) rows[c.n - 1] = in_rows - 1;
    const size_t out_n = (size_t)c.n * ld_out + skew;
    std::vector<unsigned char> poison(out_n * es, 0xFF);

    DeviceBuffer<unsigned char> din(in.size()), dout(out_n * es);
    DeviceBuffer<int> drows(c.n);
    QILIN_ASSERT_OK(din.upload(in));
    QILIN_ASSERT_OK(drows.upload(rows));
    QILIN_ASSERT_OK(dout.poison());
    qilin_gather_rows_args a = {
        dout.ptr + skew * es, din.ptr + skew * es, drows.ptr, c.n, c.cols, ld_out, ld_in, c.dtype};
    QILIN_ASSERT_OK(qilin_gather_rows(&a, nullptr));
    std::vector<unsigned char> out = dout.download();
    size_t wrong = 0;
    for (int i = 0; i < c.n; i++) {
        size_t o = (skew + i * ld_out) * es, s = (skew + rows[i] * ld_in) * es;
        wrong += memcmp(&out[o], &in[s], c.cols * es) != 0;
        EXPECT_TRUE(same_bytes(out, poison, o + c.cols * es, o + ld_out * es))
            << "padding of row " << i << " written";
    }
    EXPECT_EQ(wrong, 0u);
}

std::vector<GatherCase> gather_cases() {
    std::vector<GatherCase> v;
    for (qilin_dtype t : kDtypes)
        for (int n : {1, 5, 33})
            for (int cols : {19, 64, 4096}) v.push_back({t, n, cols, n == 5 ? 8 : 0, false});
    for (qilin_dtype t : kDtypes) v.push_back({t, 7, 128, 0, true});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GatherRows, testing::ValuesIn(gather_cases()), gather_case_name);

/* ---- errors ---------------------------------------------------------------------- */

TEST(ElementwiseErrors, BadArgumentsNameTheProblem) {
    float buf[64];
    int rows[2] = {0, 1};
    auto expect = [](qilin_status got, qilin_status want, const char *needle) {
        EXPECT_EQ(got, want) << needle;
        EXPECT_NE(std::string(qilin_last_error()).find(needle), std::string::npos) << qilin_last_error();
    };
    qilin_add_bias_args ab = {buf, buf, 2, 8, 4, QILIN_F32};
    expect(qilin_add_bias(&ab, nullptr), QILIN_ERR_INVALID_ARGUMENT, "ld=4");
    ab.ld = 8;
    ab.cols = 0;
    expect(qilin_add_bias(&ab, nullptr), QILIN_ERR_INVALID_ARGUMENT, "cols=0");
    ab.cols = 8;
    ab.dtype = QILIN_I8;
    expect(qilin_add_bias(&ab, nullptr), QILIN_ERR_UNSUPPORTED, "i8");
    ab.bias = nullptr;
    expect(qilin_add_bias(&ab, nullptr), QILIN_ERR_INVALID_ARGUMENT, "bias");

    qilin_add_args ad = {buf, buf, nullptr, nullptr, 4, QILIN_F32};
    expect(qilin_add(&ad, nullptr), QILIN_ERR_INVALID_ARGUMENT, "add: out, a and b");
    ad.b = buf;
    ad.dtype = QILIN_FP8_E4M3;
    expect(qilin_add(&ad, nullptr), QILIN_ERR_UNSUPPORTED, "fp8_e4m3");

    qilin_sigmoid_gate_add_args sg = {buf, buf, buf, -1, 8, QILIN_BF16};
    expect(qilin_sigmoid_gate_add(&sg, nullptr), QILIN_ERR_INVALID_ARGUMENT, "tokens=-1");
    sg.tokens = 1;
    sg.gate = nullptr;
    expect(qilin_sigmoid_gate_add(&sg, nullptr), QILIN_ERR_INVALID_ARGUMENT, "gate");

    qilin_cast_args ca = {buf, buf, 4, QILIN_F32, QILIN_I32};
    expect(qilin_cast(&ca, nullptr), QILIN_ERR_UNSUPPORTED, "out_dtype");
    ca.in_dtype = QILIN_U8;
    ca.out_dtype = QILIN_F32;
    expect(qilin_cast(&ca, nullptr), QILIN_ERR_UNSUPPORTED, "in_dtype");

    qilin_gather_rows_args gr = {buf, buf, rows, 2, 8, 4, 8, QILIN_F32};
    expect(qilin_gather_rows(&gr, nullptr), QILIN_ERR_INVALID_ARGUMENT, "ld_out=4");
    gr.ld_out = 8;
    gr.rows = nullptr;
    expect(qilin_gather_rows(&gr, nullptr), QILIN_ERR_INVALID_ARGUMENT, "rows");
    gr.rows = rows;
    gr.n = 0;
    EXPECT_EQ(qilin_gather_rows(&gr, nullptr), QILIN_OK) << "n = 0 is a no-op";
}

} // namespace
