/* test_gemm_gguf.cpp — cuda/gemm_gguf.cu (GEMV and GEMM on GGUF blocks)
 * against a float64 reference of the weights dequantized by host/quant.c.
 *
 * The tensor-core GEMM's reference rounds each dequantized weight to the
 * activation dtype first, as the kernel does (gemm_gguf.h says so).
 * Weights: seeded normal values quantized by host/quant.c (valid blocks of
 * every format), stored with padded row strides whose pad bytes decode to
 * NaN if read. y poisoned first (its row padding must stay poisoned). Shapes
 * with partial tiles (m = 1..8 for the GEMV, 9 / 70 / 130 for the GEMM, n not
 * a multiple of 8 or 64), every activation dtype, y in dtype or f32, bias.
 * A second test checks the device decoding itself: random bytes (every bit
 * pattern of quants, scales and mins; finite fp16 d / dmin) run through the
 * f32 GEMM with x = identity, so y[i, r] = W[r, i] — compared with
 * host/quant.c's decoding weight by weight. A third compares both decoders
 * with known values: tests/fixtures/gguf/blocks.gguf holds random blocks of
 * each format and gguf-py's dequantization of them
 * (scripts/make_gguf_model_fixtures.py). */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "host/gguf.h"
#include "host/quant.h"
#include "tests/compare.h"
#include "tests/dtype_io.h"
#include "tests/matmul_check.h"
#include "tests/sim_test_kernels.h"
#include "tests/test_util.h"

namespace {

struct Format {
    qilin_gguf_format dev;
    qilin_wformat host;
};
const Format kFormats[] = {{QILIN_GGUF_Q8_0, QILIN_WF_Q8_0},
                           {QILIN_GGUF_Q4_0, QILIN_WF_Q4_0},
                           {QILIN_GGUF_Q4_K, QILIN_WF_Q4_K},
                           {QILIN_GGUF_Q5_K, QILIN_WF_Q5_K},
                           {QILIN_GGUF_Q6_K, QILIN_WF_Q6_K}};

struct Case {
    Format fmt;
    bool gemv;
    qilin_dtype dtype;
    int m, n, k;
    bool bias = false, y_f32 = false;
    int pad = 0; /* added to ldx and ldy (elements) and ldw (bytes) */
};

std::string case_name(const testing::TestParamInfo<Case> &info) {
    const Case &c = info.param;
    std::string s = std::string(qilin_gguf_format_name(c.fmt.dev)) + (c.gemv ? "_gemv_" : "_gemm_") +
                    qilin_dtype_name(c.dtype) + "_m" + std::to_string(c.m) + "_n" + std::to_string(c.n) +
                    "_k" + std::to_string(c.k);
    if (c.bias) s += "_bias";
    if (c.y_f32) s += "_yf32";
    if (c.pad) s += "_pad" + std::to_string(c.pad);
    return s;
}

/* A quantized [n, k] weight with rows ldw bytes apart (pad bytes 0xff). */
struct Weight {
    std::vector<uint8_t> bytes; /* padded, as uploaded */
    std::vector<float> deq;     /* [n, k] host/quant.c's dequantization */
    int64_t ldw;
};

Weight make_weight(const Format &f, int n, int k, int pad, std::mt19937 &rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> src((size_t)n * k);
    for (auto &v : src) v = normal(rng);
    quant_weight qw = {};
    qw.format = f.host;
    qw.rows = n;
    qw.cols = k;
    qw.name = "test gguf weight";
    size_t data_bytes = 0, scale_bytes = 0;
    EXPECT_EQ(quant_sizes(&qw, &data_bytes, &scale_bytes), QILIN_OK) << qilin_last_error();
    std::vector<uint8_t> packed(data_bytes);
    qw.data_bytes = data_bytes;
    EXPECT_EQ(quant_quantize(src.data(), &qw, packed.data(), nullptr), QILIN_OK) << qilin_last_error();
    Weight w;
    w.deq.resize(src.size());
    EXPECT_EQ(quant_dequantize(&qw, 0, n, QILIN_F32, w.deq.data()), QILIN_OK) << qilin_last_error();
    const size_t row = data_bytes / (size_t)n;
    w.ldw = (int64_t)row + pad;
    w.bytes.assign((size_t)n * w.ldw, 0xff);
    for (int r = 0; r < n; r++) std::memcpy(&w.bytes[(size_t)r * w.ldw], &packed[(size_t)r * row], row);
    return w;
}

class GemmGguf : public testing::TestWithParam<Case> {};

TEST_P(GemmGguf, MatchesFloat64OfHostDequantization) {
    QILIN_REQUIRE_DEVICES(1);
    const Case c = GetParam();
    const qilin_dtype yt = c.y_f32 ? QILIN_F32 : c.dtype;
    const size_t es = qilin_dtype_size(c.dtype), ys = qilin_dtype_size(yt);
    const int64_t ldx = c.k + c.pad, ldy = c.n + c.pad;
    std::mt19937 rng(7 * c.m + 131 * c.n + c.k + 1000 * (int)c.fmt.dev);
    std::normal_distribution<double> normal(0.0, 1.0);
    Weight w = make_weight(c.fmt, c.n, c.k, c.pad, rng);

    std::vector<unsigned char> x((size_t)c.m * ldx * es), b((size_t)c.n * es);
    for (size_t i = 0; i < x.size() / es; i++) store(x, i, normal(rng), c.dtype);
    for (int i = 0; i < c.n; i++) store(b, i, normal(rng), c.dtype);
    /* the tensor-core GEMM multiplies W rounded once to the activation dtype
     * (gemm_gguf.h); the GEMV and the f32 GEMM use it as decoded */
    if (!c.gemv && c.dtype != QILIN_F32) {
        std::vector<unsigned char> rounded(w.deq.size() * es);
        for (size_t i = 0; i < w.deq.size(); i++) store(rounded, i, w.deq[i], c.dtype);
        for (size_t i = 0; i < w.deq.size(); i++) w.deq[i] = (float)value_of(rounded, i, c.dtype);
    }
    std::vector<double> want((size_t)c.m * c.n);
    for (int i = 0; i < c.m; i++)
        for (int r = 0; r < c.n; r++) {
            double acc = c.bias ? value_of(b, r, c.dtype) : 0.0;
            for (int j = 0; j < c.k; j++)
                acc += value_of(x, (size_t)i * ldx + j, c.dtype) * (double)w.deq[(size_t)r * c.k + j];
            want[(size_t)i * c.n + r] = acc;
        }

    DeviceBuffer<unsigned char> dx(x.size()), db(b.size()), dy((size_t)c.m * ldy * ys);
    DeviceBuffer<uint8_t> dw(w.bytes.size());
    QILIN_ASSERT_OK(dx.upload(x));
    QILIN_ASSERT_OK(db.upload(b));
    QILIN_ASSERT_OK(dw.upload(w.bytes));
    QILIN_ASSERT_OK(dy.poison());
    qilin_gemm_gguf_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w = dw.ptr;
    a.bias = c.bias ? db.ptr : nullptr;
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.ldx = ldx;
    a.ldw = w.ldw;
    a.ldy = ldy;
    a.format = c.fmt.dev;
    a.dtype = c.dtype;
    a.y_dtype = yt;
    QILIN_ASSERT_OK(c.gemv ? qilin_gemv_gguf(&a, nullptr) : qilin_gemm_gguf(&a, nullptr));
    expect_matmul_rows(dy.download(), c.m, c.n, ldy, yt, want);
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (const Format &f : kFormats) {
        const bool k_quant = f.dev >= QILIN_GGUF_Q4_K;
        const int k1 = k_quant ? 256 : 96, k2 = k_quant ? 768 : 1088; /* 1 / 3 blocks; 3 / 34 blocks */
        for (qilin_dtype t : {QILIN_F32, QILIN_BF16, QILIN_F16}) {
            v.push_back({f, true, t, 1, 19, k2});
            v.push_back({f, true, t, 5, 37, k1, true, false, 3}); /* odd m, bias, odd strides */
            v.push_back({f, false, t, 9, 70, k1, false, true});   /* partial tiles, y f32 */
            v.push_back({f, false, t, 70, 131, k2, true});        /* two row tiles, ragged n, bias */
        }
        v.push_back({f, true, QILIN_BF16, 8, 200, k2, false, true, 5});
        v.push_back({f, false, QILIN_BF16, 130, 64, k1, false, false, 7}); /* three row tiles, exact n */
    }
    return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmGguf, testing::ValuesIn(cases()), case_name);

/* The device decoder vs host/quant.c's on arbitrary bytes: y = I W^T = W^T. */
TEST(GemmGgufDecode, RandomBlocksDecodeAsTheHostDoes) {
    QILIN_REQUIRE_DEVICES(1);
    for (const Format &f : kFormats) {
        SCOPED_TRACE(qilin_gguf_format_name(f.dev));
        const int n = 6;
        size_t bb = 0;
        const int be = qilin_wformat_block(f.host, &bb), k = 2 * be;
        std::mt19937 rng(99 + (int)f.dev);
        std::vector<uint8_t> bytes((size_t)n * (k / be) * bb);
        for (auto &v : bytes) v = (uint8_t)rng();
        /* d / dmin: finite fp16 of moderate size (exponent 5..20); Q6_K's d is last */
        const int d_at = f.host == QILIN_WF_Q6_K ? 208 : 0,
                  n_d = f.dev >= QILIN_GGUF_Q4_K && f.dev != QILIN_GGUF_Q6_K ? 2 : 1;
        for (size_t blk = 0; blk < bytes.size() / bb; blk++)
            for (int j = 0; j < n_d; j++) {
                uint16_t h = (uint16_t)((rng() & 0x83ffu) | (5 + rng() % 16) << 10);
                bytes[blk * bb + d_at + 2 * j] = (uint8_t)h;
                bytes[blk * bb + d_at + 2 * j + 1] = (uint8_t)(h >> 8);
            }
        quant_weight qw = {};
        qw.format = f.host;
        qw.rows = n;
        qw.cols = k;
        qw.data = bytes.data();
        qw.data_bytes = bytes.size();
        qw.name = "random blocks";
        std::vector<float> want((size_t)n * k);
        QILIN_ASSERT_OK(quant_dequantize(&qw, 0, n, QILIN_F32, want.data()));
        std::vector<float> eye((size_t)k * k, 0.0f);
        for (int i = 0; i < k; i++) eye[(size_t)i * k + i] = 1.0f;
        DeviceBuffer<float> dx(eye.size()), dy((size_t)k * n);
        DeviceBuffer<uint8_t> dw(bytes.size());
        QILIN_ASSERT_OK(dx.upload(eye));
        QILIN_ASSERT_OK(dw.upload(bytes));
        QILIN_ASSERT_OK(dy.poison());
        qilin_gemm_gguf_args a = {};
        a.y = dy.ptr;
        a.x = dx.ptr;
        a.w = dw.ptr;
        a.m = k;
        a.n = n;
        a.k = k;
        a.ldx = k;
        a.ldw = (int64_t)(bytes.size() / n);
        a.ldy = n;
        a.format = f.dev;
        a.dtype = a.y_dtype = QILIN_F32;
        QILIN_ASSERT_OK(qilin_gemm_gguf(&a, nullptr));
        std::vector<float> got = dy.download();
        /* the device may fuse d*sc*q - dmin*m into one FMA: a rounding of the
         * terms, at most an ulp of the block's largest magnitude */
        float wmax = 0.0f;
        for (float w : want) wmax = std::fmax(wmax, std::fabs(w));
        int bad = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < k; i++) {
                const float w = want[(size_t)r * k + i], g = got[(size_t)i * n + r];
                if (!(std::fabs(g - w) <= 1e-6f * wmax))
                    if (bad++ < 5) ADD_FAILURE() << "W[" << r << "][" << i << "] = " << g << ", host " << w;
            }
        EXPECT_EQ(bad, 0);
    }
}

/* y = I W^T through the f32 GEMM: every weight of w as the device decodes it, [k, n]. */
std::vector<float> device_decode(qilin_gguf_format f, const uint8_t *bytes, size_t nbytes, int n, int k) {
    std::vector<float> eye((size_t)k * k, 0.0f);
    for (int i = 0; i < k; i++) eye[(size_t)i * k + i] = 1.0f;
    DeviceBuffer<float> dx(eye.size()), dy((size_t)k * n);
    DeviceBuffer<uint8_t> dw(nbytes);
    EXPECT_EQ(dx.upload(eye), QILIN_OK);
    EXPECT_EQ(dw.upload(std::vector<uint8_t>(bytes, bytes + nbytes)), QILIN_OK);
    EXPECT_EQ(dy.poison(), QILIN_OK);
    qilin_gemm_gguf_args a = {};
    a.y = dy.ptr;
    a.x = dx.ptr;
    a.w = dw.ptr;
    a.m = k;
    a.n = n;
    a.k = k;
    a.ldx = k;
    a.ldw = (int64_t)(nbytes / n);
    a.ldy = n;
    a.format = f;
    a.dtype = a.y_dtype = QILIN_F32;
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_OK) << qilin_last_error();
    return dy.download();
}

/* host/quant.c and the device both decode gguf-py's known values: the
 * host exactly (the same fp32 operations in the same order), the device
 * within an ulp of the largest weight (it may fuse a multiply-add). */
TEST(GemmGgufDecode, KnownValuesFromGgufPy) {
    QILIN_REQUIRE_DEVICES(1);
    gguf_file *file = nullptr;
    const std::string path = std::string(QILIN_SOURCE_DIR) + "/tests/fixtures/gguf/blocks.gguf";
    ASSERT_EQ(gguf_open(path.c_str(), &file), QILIN_OK) << qilin_last_error();
    const char *names[] = {"q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};
    for (int i = 0; i < 5; i++) {
        SCOPED_TRACE(names[i]);
        const gguf_tensor *t = gguf_find_tensor(file, names[i]);
        const gguf_tensor *ref = gguf_find_tensor(file, (std::string(names[i]) + ".f32").c_str());
        ASSERT_TRUE(t && ref && ref->type == GGUF_DT_F32);
        quant_weight w;
        QILIN_ASSERT_OK(quant_weight_from_gguf(t, &w));
        ASSERT_EQ(w.format, kFormats[i].host);
        ASSERT_EQ((size_t)(w.rows * w.cols) * 4, ref->nbytes);
        std::vector<float> want((size_t)(w.rows * w.cols)), host(want.size());
        std::memcpy(want.data(), ref->data, ref->nbytes);
        QILIN_ASSERT_OK(quant_dequantize(&w, 0, w.rows, QILIN_F32, host.data()));
        float wmax = 0.0f;
        int host_bad = 0, dev_bad = 0;
        for (float v : want) wmax = std::fmax(wmax, std::fabs(v));
        std::vector<float> dev =
            device_decode(kFormats[i].dev, (const uint8_t *)t->data, t->nbytes, (int)w.rows, (int)w.cols);
        for (int64_t r = 0; r < w.rows; r++)
            for (int64_t c = 0; c < w.cols; c++) {
                const float v = want[(size_t)(r * w.cols + c)], h = host[(size_t)(r * w.cols + c)],
                            d = dev[(size_t)(c * w.rows + r)];
                if (h != v && host_bad++ < 3)
                    ADD_FAILURE() << "host W[" << r << "][" << c << "] = " << h << ", gguf-py " << v;
                if (!(std::fabs(d - v) <= 1e-6f * wmax) && dev_bad++ < 3)
                    ADD_FAILURE() << "device W[" << r << "][" << c << "] = " << d << ", gguf-py " << v;
            }
        printf("%s: %lld x %lld weights, host mismatches %d, device mismatches %d (max |w| %g)\n", names[i],
               (long long)w.rows, (long long)w.cols, host_bad, dev_bad, wmax);
    }
    gguf_close(file);
}

/* Embedding rows from a GGUF table: each row as host/quant.c decodes it (f32
 * out: within an ulp of the row's largest weight; bf16: that rounded), ids
 * outside [0, vocab) zero rows, output row padding untouched. */
TEST(EmbeddingGguf, RowsAreTheDecodedTableRows) {
    QILIN_REQUIRE_DEVICES(1);
    for (const Format &f : kFormats)
        for (qilin_dtype t : {QILIN_F32, QILIN_BF16}) {
            SCOPED_TRACE(std::string(qilin_gguf_format_name(f.dev)) + " " + qilin_dtype_name(t));
            const int vocab = 11, dim = f.dev >= QILIN_GGUF_Q4_K ? 512 : 96;
            std::mt19937 rng(5 + (int)f.dev);
            Weight w = make_weight(f, vocab, dim, 3, rng);
            const std::vector<int> ids = {3, 0, 10, -1, 11, 3, 7};
            const int T = (int)ids.size();
            DeviceBuffer<int> did(ids.size());
            DeviceBuffer<uint8_t> dw(w.bytes.size());
            DeviceBuffer<unsigned char> dout((size_t)T * dim * qilin_dtype_size(t));
            QILIN_ASSERT_OK(did.upload(ids));
            QILIN_ASSERT_OK(dw.upload(w.bytes));
            QILIN_ASSERT_OK(dout.poison());
            qilin_embedding_gguf_args a = {};
            a.out = dout.ptr;
            a.table = dw.ptr;
            a.ids = did.ptr;
            a.tokens = T;
            a.dim = dim;
            a.vocab = vocab;
            a.ldw = w.ldw;
            a.format = f.dev;
            a.out_dtype = t;
            QILIN_ASSERT_OK(qilin_embedding_gguf(&a, nullptr));
            std::vector<unsigned char> got = dout.download(), rounded(qilin_dtype_size(t));
            int bad = 0;
            for (int i = 0; i < T; i++) {
                const bool valid = ids[i] >= 0 && ids[i] < vocab;
                float rmax = 0.0f;
                for (int c = 0; valid && c < dim; c++)
                    rmax = std::fmax(rmax, std::fabs(w.deq[(size_t)ids[i] * dim + c]));
                for (int c = 0; c < dim; c++) {
                    double want = valid ? w.deq[(size_t)ids[i] * dim + c] : 0.0;
                    store(rounded, 0, want, t);
                    want = value_of(rounded, 0, t);
                    const double g = value_of(got, (size_t)i * dim + c, t);
                    const double tol = t == QILIN_F32 ? 1e-6 * rmax : std::fabs(want) / 128;
                    if (!(std::fabs(g - want) <= tol) && bad++ < 3)
                        ADD_FAILURE() << "token " << i << " (id " << ids[i] << ") col " << c << ": " << g
                                      << " want " << want;
                }
            }
            EXPECT_EQ(bad, 0);
        }
}

TEST(GemmGgufErrors, BadArgumentsNameTheProblem) {
    float buf[64];
    uint8_t wbuf[64];
    qilin_gemm_gguf_args a = {};
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("y, x and w"), std::string::npos) << qilin_last_error();
    a.y = buf;
    a.x = buf;
    a.w = wbuf;
    a.m = 2;
    a.n = 1;
    a.k = 48;
    a.ldx = 48;
    a.ldw = 34;
    a.ldy = 1;
    a.format = QILIN_GGUF_Q8_0;
    a.dtype = a.y_dtype = QILIN_F32;
    EXPECT_EQ(qilin_gemv_gguf(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("k=48 is not a multiple of Q8_0's 32"), std::string::npos)
        << qilin_last_error();
    a.k = 64;
    a.ldx = 64;
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT); /* a row is 2 blocks = 68 bytes */
    EXPECT_NE(std::string(qilin_last_error()).find("ldw=34"), std::string::npos) << qilin_last_error();
    a.ldw = 68;
    a.m = 9;
    EXPECT_EQ(qilin_gemv_gguf(&a, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("m=9"), std::string::npos) << qilin_last_error();
    a.format = (qilin_gguf_format)17;
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(qilin_last_error()).find("unknown GGUF format 17"), std::string::npos)
        << qilin_last_error();
    a.format = QILIN_GGUF_Q8_0;
    a.dtype = QILIN_BF16;
    a.y_dtype = QILIN_F16;
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_ERR_UNSUPPORTED);
    a.dtype = a.y_dtype = QILIN_F32;
    a.m = 0;
    EXPECT_EQ(qilin_gemm_gguf(&a, nullptr), QILIN_OK);
}

} // namespace
