// test_quant.cpp — the CPU weight formats of host/quant.h:
//  * scalar conversions: every fp8 e4m3fn pattern against the formula,
//    rounding ties, saturation and NaN; fp16/bf16 against CUDA's host code;
//  * hand-built blocks of every format, with expected values written out in
//    the test (including K-quant sub-blocks >= 4, whose 6-bit scales straddle
//    bytes, and the Q5_K high bits);
//  * quantise -> dequantise round trips on seeded random rows (never zeros)
//    within each format's bound, derived below from the stored scales;
//  * ragged FP8 edge blocks, INT4 shapes that do not fill the last word;
//  * rejection of bad shapes, sizes and arguments with a message naming them.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "host/quant.h"
#include "test_util.h"

namespace {

using Bytes = std::vector<uint8_t>;

float f16(uint16_t h) { return quant_f16_to_f32(h); }

void put16(Bytes &b, size_t at, uint16_t v) {
    b[at] = (uint8_t)v;
    b[at + 1] = (uint8_t)(v >> 8);
}
void put32(Bytes &b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) b[at + i] = (uint8_t)(v >> (8 * i));
}
void putf32(Bytes &b, size_t at, float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    put32(b, at, u);
}

quant_weight weight(qilin_wformat f, int64_t rows, int64_t cols, const Bytes &data,
                    const Bytes *scales = nullptr, qilin_dtype sd = QILIN_F32, int64_t group = 0) {
    quant_weight w{};
    w.format = f;
    w.rows = rows;
    w.cols = cols;
    w.data = data.data();
    w.data_bytes = data.size();
    if (scales) {
        w.scales = scales->data();
        w.scale_bytes = scales->size();
    }
    w.scale_dtype = sd;
    w.group_size = group;
    w.name = "test.weight";
    return w;
}

std::vector<float> dequant(const quant_weight &w) {
    std::vector<float> y((size_t)(w.rows * w.cols), NAN);
    qilin_status s = quant_dequantize(&w, 0, w.rows, QILIN_F32, y.data());
    EXPECT_EQ(s, QILIN_OK) << qilin_last_error();
    return y;
}

void expect_error(qilin_status got, qilin_status want, std::initializer_list<const char *> what) {
    EXPECT_EQ(got, want) << qilin_status_name(got) << ": " << qilin_last_error();
    std::string msg = qilin_last_error();
    for (const char *w : what)
        EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
}

// ---------------------------------------------------------------- conversions

double fp8_formula(int b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double mag = e == 0 ? (m / 8.0) * std::ldexp(1.0, -6) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
    return s ? -mag : mag;
}

/* Random finite e4m3 bytes (0x7f / 0xff are NaN): every weight differs from
 * its neighbours, so a dequantiser that reads the wrong element, row or
 * column is seen, not only one that picks the wrong scale. */
Bytes random_fp8(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    Bytes b(n);
    for (uint8_t &x : b) {
        do x = (uint8_t)(rng() & 0xff);
        while ((x & 0x7f) == 0x7f);
    }
    return b;
}

TEST(QuantConvert, Fp8DecodeEveryPattern) {
    for (int b = 0; b < 256; b++) {
        float got = quant_fp8_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) {
            EXPECT_TRUE(std::isnan(got)) << b;
            continue;
        }
        EXPECT_EQ((double)got, fp8_formula(b)) << "pattern 0x" << std::hex << b;
        EXPECT_EQ(std::signbit(got), b >= 0x80) << b;
    }
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9)); // smallest subnormal
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6)); // smallest normal
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x38), 1.0f);
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x7e), 448.0f);
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0xfe), -448.0f);
    EXPECT_EQ(quant_fp8_e4m3_to_f32(0x78), 256.0f); // e = 15 is finite in e4m3fn
}

TEST(QuantConvert, Fp8EncodeRoundTripsEveryValue) {
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7f) == 0x7f) continue;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(quant_fp8_e4m3_to_f32((uint8_t)b)), b) << b;
    }
}

TEST(QuantConvert, Fp8EncodeTiesSaturationNan) {
    // Midpoints between neighbours k, k+1 go to the even code; just off the
    // midpoint they go to the nearer one. Covers subnormals and the top binade.
    for (int k = 0; k < 0x7e; k++) {
        float lo = quant_fp8_e4m3_to_f32((uint8_t)k), hi = quant_fp8_e4m3_to_f32((uint8_t)(k + 1));
        float mid = (lo + hi) / 2; // exact: dyadic with few bits
        int even = (k % 2 == 0) ? k : k + 1;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(mid), even) << "between codes " << k << " and " << k + 1;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(-mid), 0x80 | even) << k;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(std::nextafter(mid, 0.0f)), k) << k;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(std::nextafter(mid, 1000.0f)), k + 1) << k;
    }
    EXPECT_EQ(quant_f32_to_fp8_e4m3(std::ldexp(1.0f, -10)), 0x00); // half the smallest subnormal: tie to 0
    EXPECT_EQ(quant_f32_to_fp8_e4m3(3 * std::ldexp(1.0f, -10)), 0x02); // 1.5 subnormal units: tie to 2
    EXPECT_EQ(quant_f32_to_fp8_e4m3(1e-30f), 0x00);
    EXPECT_EQ(quant_f32_to_fp8_e4m3(-1e-30f), 0x80);
    for (float big : {448.0f, 449.0f, 464.0f, 480.0f, 1e6f, 3e38f, INFINITY}) {
        EXPECT_EQ(quant_f32_to_fp8_e4m3(big), 0x7e) << big;
        EXPECT_EQ(quant_f32_to_fp8_e4m3(-big), 0xfe) << big;
    }
    EXPECT_EQ(quant_f32_to_fp8_e4m3(NAN), 0x7f);
    EXPECT_EQ(quant_f32_to_fp8_e4m3(-NAN), 0xff);
}

TEST(QuantConvert, Fp8EncodeMatchesCudaSatfinite) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> expo(-14, 10), sign(-1, 1);
    int checked = 0;
    for (int i = 0; i < 200000; i++) {
        float x = std::copysign(std::exp2(expo(rng)), sign(rng));
        uint8_t want = (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
        ASSERT_EQ(quant_f32_to_fp8_e4m3(x), want) << "x = " << x;
        checked++;
    }
    printf("fp8 encode: %d values agree with cuda_fp8.h (satfinite)\n", checked);
}

uint16_t bits16(__half h) { return __half_raw(h).x; }
uint16_t bits16(__nv_bfloat16 h) { return __nv_bfloat16_raw(h).x; }

TEST(QuantConvert, Half16DecodeEveryPattern) {
    for (uint32_t b = 0; b < 65536; b++) {
        uint16_t u = (uint16_t)b;
        __half_raw hr;
        __nv_bfloat16_raw br;
        hr.x = br.x = u;
        __half h(hr);
        __nv_bfloat16 bh(br);
        float want = __half2float(h), got = quant_f16_to_f32(u);
        if (std::isnan(want))
            EXPECT_TRUE(std::isnan(got)) << b;
        else
            ASSERT_EQ(got, want) << "f16 pattern " << b;
        float bwant = __bfloat162float(bh), bgot = quant_bf16_to_f32(u);
        if (std::isnan(bwant))
            EXPECT_TRUE(std::isnan(bgot)) << b;
        else
            ASSERT_EQ(bgot, bwant) << "bf16 pattern " << b;
    }
}

TEST(QuantConvert, Half16EncodeMatchesCuda) {
    std::mt19937 rng(11);
    std::vector<float> xs = {0.0f,
                             -0.0f,
                             65504.0f,
                             65519.99f,
                             65520.0f,
                             1e10f,
                             -1e10f,
                             INFINITY,
                             -INFINITY,
                             std::ldexp(1.0f, -24),
                             std::ldexp(1.0f, -25),
                             std::ldexp(3.0f, -26),
                             std::ldexp(1.0f, -14),
                             3.4e38f,
                             1e-40f};
    for (int i = 0; i < 300000; i++) {
        uint32_t u = rng();
        float f;
        std::memcpy(&f, &u, 4);
        xs.push_back(f);
        xs.push_back(std::ldexp((float)(rng() & 0xffffff), -(int)(rng() % 60))); // dense near the f16 range
    }
    for (float x : xs) {
        if (std::isnan(x)) {
            EXPECT_TRUE(std::isnan(quant_f16_to_f32(quant_f32_to_f16(x))));
            EXPECT_TRUE(std::isnan(quant_bf16_to_f32(quant_f32_to_bf16(x))));
            continue;
        }
        ASSERT_EQ(quant_f32_to_f16(x), bits16(__float2half_rn(x))) << "f16 of " << x;
        ASSERT_EQ(quant_f32_to_bf16(x), bits16(__float2bfloat16_rn(x))) << "bf16 of " << x;
    }
}

// ---------------------------------------------------------- hand-built blocks

TEST(QuantBlocks, Q8_0) {
    // Two rows of two blocks; d = 0.5, 1.0, -2.0, 0.25.
    const uint16_t d[4] = {0x3800, 0x3c00, 0xc000, 0x3400};
    const float dv[4] = {0.5f, 1.0f, -2.0f, 0.25f};
    Bytes b(4 * 34);
    for (int k = 0; k < 4; k++) {
        put16(b, 34 * k, d[k]);
        for (int j = 0; j < 32; j++) b[34 * k + 2 + j] = (uint8_t)(int8_t)(j - 16);
        b[34 * k + 2] = 0x80; // -128
        b[34 * k + 33] = 127;
    }
    std::vector<float> y = dequant(weight(QILIN_WF_Q8_0, 2, 64, b));
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 32; j++) {
            int q = j == 0 ? -128 : j == 31 ? 127 : j - 16;
            EXPECT_EQ(y[32 * k + j], dv[k] * q) << k << "," << j;
        }
    EXPECT_EQ(y[0], -64.0f);
    EXPECT_EQ(y[64 + 32 + 31], 31.75f);
}

TEST(QuantBlocks, Q4_0) {
    Bytes b(18);
    put16(b, 0, 0x3400); // d = 0.25
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    std::vector<float> y = dequant(weight(QILIN_WF_Q4_0, 1, 32, b));
    for (int j = 0; j < 16; j++) {
        EXPECT_EQ(y[j], 0.25f * (j - 8)) << j;
        EXPECT_EQ(y[j + 16], 0.25f * (7 - j)) << j;
    }
    EXPECT_EQ(y[0], -2.0f);
    EXPECT_EQ(y[15], 1.75f);
    EXPECT_EQ(y[16], 1.75f);
    EXPECT_EQ(y[31], -2.0f);
}

// Shared by Q4_K and Q5_K: d = 0.5, dmin = 0.25, and these 6-bit scales/mins,
// packed by hand into 12 bytes:
//   bytes 0-3:  sc[s] | (sc[s+4] >> 4) << 6  -> 0x81 0x82 0xC3 0xC4
//   bytes 4-7:  m[s]  | (m[s+4] >> 4) << 6   -> 0x45 0x46 0xC7 0xC8
//   bytes 8-11: (sc[s+4] & 15) | (m[s+4] & 15) << 4 -> 0x11 0xFF 0x0C 0xFF
const int kSc[8] = {1, 2, 3, 4, 33, 47, 60, 63};
const int kMin[8] = {5, 6, 7, 8, 17, 31, 48, 63};
const uint8_t kScales12[12] = {0x81, 0x82, 0xC3, 0xC4, 0x45, 0x46, 0xC7, 0xC8, 0x11, 0xFF, 0x0C, 0xFF};
uint8_t kq_qs(int i) { return (uint8_t)(i * 37 + 11); }
uint8_t kq_qh(int l) { return (uint8_t)(l * 29 + 3); }

void k_header(Bytes &b) {
    put16(b, 0, 0x3800);
    put16(b, 2, 0x3400);
    std::memcpy(&b[4], kScales12, 12);
}

TEST(QuantBlocks, Q4_K) {
    Bytes b(144);
    k_header(b);
    for (int i = 0; i < 128; i++) b[16 + i] = kq_qs(i);
    std::vector<float> y = dequant(weight(QILIN_WF_Q4_K, 1, 256, b));
    for (int e = 0; e < 256; e++) {
        int c = e / 64, l = e % 32, hi = (e % 64) >= 32, s = e / 32;
        int u = hi ? kq_qs(32 * c + l) >> 4 : kq_qs(32 * c + l) & 15;
        EXPECT_EQ(y[e], 0.5f * kSc[s] * u - 0.25f * kMin[s]) << "element " << e;
    }
    EXPECT_EQ(y[0], 4.25f);     // qs[0] = 11: 0.5·1·11 − 0.25·5
    EXPECT_EQ(y[160], 86.25f);  // sub-block 5, qs[64] = 0x4B: 0.5·47·4 − 0.25·31
    EXPECT_EQ(y[255], 173.25f); // sub-block 7, qs[127] = 0x66: 0.5·63·6 − 0.25·63
}

TEST(QuantBlocks, Q5_K) {
    Bytes b(176);
    k_header(b);
    for (int l = 0; l < 32; l++) b[16 + l] = kq_qh(l);
    for (int i = 0; i < 128; i++) b[48 + i] = kq_qs(i);
    std::vector<float> y = dequant(weight(QILIN_WF_Q5_K, 1, 256, b));
    for (int e = 0; e < 256; e++) {
        int c = e / 64, l = e % 32, hi = (e % 64) >= 32, s = e / 32;
        int u = hi ? kq_qs(32 * c + l) >> 4 : kq_qs(32 * c + l) & 15;
        u |= ((kq_qh(l) >> (2 * c + hi)) & 1) << 4;
        EXPECT_EQ(y[e], 0.5f * kSc[s] * u - 0.25f * kMin[s]) << "element " << e;
    }
    EXPECT_EQ(y[0], 12.25f);    // qh[0] = 3, bit 0 set: u = 11 + 16
    EXPECT_EQ(y[130], 342.25f); // chunk 2 low: qh[2] = 0x3D bit 4 set, qs[66] = 0x95: u = 21, sub-block 4
    EXPECT_EQ(y[160], 86.25f);  // chunk 2 high: qh[0] bit 5 clear: u = 4, sub-block 5
    EXPECT_EQ(y[255], 677.25f); // chunk 3 high: qh[31] = 0x86 bit 7 set: u = 22, sub-block 7
}

TEST(QuantBlocks, Q6_K) {
    const int8_t sc[16] = {1, -2, 3, -4, 5, -6, 7, -8, 127, -128, 10, -10, 20, -20, 30, -30};
    auto ql = [](int i) { return (uint8_t)(i * 13 + 7); };
    auto qh = [](int i) { return (uint8_t)(i * 53 + 1); };
    Bytes b(210);
    for (int i = 0; i < 128; i++) b[i] = ql(i);
    for (int i = 0; i < 64; i++) b[128 + i] = qh(i);
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)sc[i];
    put16(b, 208, 0x3000); // d = 0.125
    std::vector<float> y = dequant(weight(QILIN_WF_Q6_K, 1, 256, b));
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
        uint8_t lo = ql(64 * h + l + 32 * (k & 1));
        int u = (k >= 2 ? lo >> 4 : lo & 15) | ((qh(32 * h + l) >> (2 * k)) & 3) << 4;
        EXPECT_EQ(y[e], 0.125f * sc[e / 16] * (u - 32)) << "element " << e;
    }
    EXPECT_EQ(y[0], -1.125f); // ql[0] = 7, qh[0] bits 0-1 = 1: u = 23, q = -9, sc 1
    EXPECT_EQ(y[200],
              -55.0f); // half 1, k = 2: ql[72] = 0xAF high 10, qh[40] = 0x49 bits 4-5 = 0; sc[12] = 20
    EXPECT_EQ(y[255],
              93.75f); // half 1, k = 3: ql[127] = 0x7A high 7, qh[63] = 0x0C bits 6-7 = 0; sc[15] = -30
}

TEST(QuantBlocks, Fp8SingleBlock) {
    Bytes q = {0x38, 0x01, 0x7e, 0xb8, 0x00, 0x40};
    Bytes s(4);
    putf32(s, 0, 2.0f);
    std::vector<float> y = dequant(weight(QILIN_WF_FP8_BLOCK, 2, 3, q, &s));
    std::vector<float> want = {2.0f, std::ldexp(1.0f, -8), 896.0f, -2.0f, 0.0f, 4.0f};
    EXPECT_EQ(y, want);
}

TEST(QuantBlocks, Fp8RaggedScaleGrid) {
    // 130 x 260: scale grid [2, 3], the last row and column of blocks ragged.
    const int rows = 130, cols = 260;
    Bytes q = random_fp8((size_t)rows * cols, 5);
    Bytes s(6 * 4);
    const float sv[6] = {1.0f, 2.0f, 3.0f, 0.5f, -4.0f, 0.125f};
    for (int i = 0; i < 6; i++) putf32(s, 4 * i, sv[i]);
    std::vector<float> y = dequant(weight(QILIN_WF_FP8_BLOCK, rows, cols, q, &s));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) /* powers of two and 3: exact in fp32 */
            ASSERT_EQ(y[(size_t)r * cols + c],
                      (float)(fp8_formula(q[(size_t)r * cols + c]) * sv[(r / 128) * 3 + c / 128]))
                << r << "," << c;
}

void int4_hand(qilin_dtype sd) {
    // 2 x 12, group 4: three scales per row; the last word's nibbles 4-7 are padding (set to 0xF, ignored).
    Bytes q(2 * 2 * 4);
    put32(q, 0, 0x76543210u);  // row 0, cols 0-7: u = 0..7 -> q = -8..-1
    put32(q, 4, 0xFFFFBA98u);  // row 0, cols 8-11: u = 8..11 -> q = 0..3
    put32(q, 8, 0x88888888u);  // row 1, cols 0-7: q = 0
    put32(q, 12, 0xFFFF0F01u); // row 1, cols 8-11: u = 1, 0, 15, 0 -> q = -7, -8, 7, -8
    const float sv[6] = {1.0f, 0.5f, 2.0f, -1.0f, 0.25f, 0.125f};
    size_t ss = sd == QILIN_F32 ? 4 : 2;
    Bytes s(6 * ss);
    for (int i = 0; i < 6; i++) {
        if (sd == QILIN_F32)
            putf32(s, 4 * i, sv[i]);
        else
            put16(s, 2 * i, sd == QILIN_F16 ? quant_f32_to_f16(sv[i]) : quant_f32_to_bf16(sv[i]));
    }
    std::vector<float> y = dequant(weight(QILIN_WF_INT4_GROUP, 2, 12, q, &s, sd, 4));
    std::vector<float> want = {-8, -7, -6, -5, -2, -1.5, -1, -0.5, 0,      2,  4,     6,
                               0,  0,  0,  0,  0,  0,    0,  0,    -0.875, -1, 0.875, -1};
    EXPECT_EQ(y, want) << qilin_dtype_name(sd);
}

TEST(QuantBlocks, Int4PackedBf16Scales) { int4_hand(QILIN_BF16); }
TEST(QuantBlocks, Int4PackedF16Scales) { int4_hand(QILIN_F16); }
TEST(QuantBlocks, Int4PackedF32Scales) { int4_hand(QILIN_F32); }

TEST(QuantBlocks, PlainFormatsAndOutputDtypes) {
    Bytes f32(12), f16b(6), bf16b(6);
    const float v[3] = {1.5f, -2.25f, 1.0f / 3};
    for (int i = 0; i < 3; i++) {
        putf32(f32, 4 * i, v[i]);
        put16(f16b, 2 * i, quant_f32_to_f16(v[i]));
        put16(bf16b, 2 * i, quant_f32_to_bf16(v[i]));
    }
    EXPECT_EQ(dequant(weight(QILIN_WF_F32, 1, 3, f32)), std::vector<float>(v, v + 3));
    std::vector<float> h = dequant(weight(QILIN_WF_F16, 3, 1, f16b));
    std::vector<float> bh = dequant(weight(QILIN_WF_BF16, 1, 3, bf16b));
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(h[i], __half2float(__float2half_rn(v[i])));
        EXPECT_EQ(bh[i], __bfloat162float(__float2bfloat16_rn(v[i])));
    }
    // Output as bf16 / f16: one rounding of the fp32 value.
    quant_weight w = weight(QILIN_WF_F32, 1, 3, f32);
    uint16_t out[3];
    QILIN_ASSERT_OK(quant_dequantize(&w, 0, 1, QILIN_BF16, out));
    for (int i = 0; i < 3; i++) EXPECT_EQ(out[i], quant_f32_to_bf16(v[i]));
    QILIN_ASSERT_OK(quant_dequantize(&w, 0, 1, QILIN_F16, out));
    for (int i = 0; i < 3; i++) EXPECT_EQ(out[i], quant_f32_to_f16(v[i]));
}

// ------------------------------------------------------------- round trips

struct RoundTripCase {
    qilin_wformat format;
    int64_t rows, cols, group;
    qilin_dtype scale_dtype;
};

std::string case_name(const testing::TestParamInfo<RoundTripCase> &info) {
    const RoundTripCase &c = info.param;
    std::string n = std::string(qilin_wformat_name(c.format)) + "_rows" + std::to_string(c.rows) + "_cols" +
                    std::to_string(c.cols);
    if (c.format == QILIN_WF_INT4_GROUP)
        n += "_g" + std::to_string(c.group) + "_" + qilin_dtype_name(c.scale_dtype);
    return n;
}

// Seeded rows with a per-row magnitude spread over 3 decades, a few outliers,
// and no exact zeros.
std::vector<float> random_matrix(int64_t rows, int64_t cols, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1), lg(-2, 1);
    std::vector<float> x((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        float mag = std::pow(10.0f, lg(rng));
        for (int64_t c = 0; c < cols; c++) {
            float v = u(rng);
            if (std::fabs(v) < 1e-3f) v = 1e-3f;
            if (rng() % 97 == 0) v *= 8; // outlier
            x[(size_t)(r * cols + c)] = v * mag;
        }
    }
    return x;
}

// Scale and representable range of element i of a K-quant row, read from the
// stored bytes (test-side decoding of d, dmin, sc, m).
struct ElemRange {
    double step, lo, hi, slack; // step: d·sc; [lo, hi]: representable; slack: the derived clamp bound
};

ElemRange k_range(qilin_wformat f, const uint8_t *block, int e) {
    if (f == QILIN_WF_Q6_K) {
        double d = f16((uint16_t)(block[208] | block[209] << 8));
        double S = d * (int8_t)block[192 + e / 16];
        return {S, -32 * S, 31 * S, 15.5 * d};
    }
    double d = f16((uint16_t)(block[0] | block[1] << 8)), dmin = f16((uint16_t)(block[2] | block[3] << 8));
    const uint8_t *p = block + 4;
    int s = e / 32, sc, m;
    if (s < 4) {
        sc = p[s] & 63;
        m = p[s + 4] & 63;
    } else {
        sc = (p[s + 4] & 15) | (p[s - 4] >> 6) << 4;
        m = (p[s + 4] >> 4) | (p[s] >> 6) << 4;
    }
    int qmax = f == QILIN_WF_Q5_K ? 31 : 15;
    double S = d * sc, M = dmin * m;
    return {S, -M, qmax * S - M, qmax / 2.0 * d + dmin / 2};
}

// The error each format promises for element (r, c) (see quant.h).
double bound(const quant_weight &w, const std::vector<float> &x, int64_t r, int64_t c, double *clamp_dist) {
    const uint8_t *data = (const uint8_t *)w.data, *sc = (const uint8_t *)w.scales;
    double xv = x[(size_t)(r * w.cols + c)];
    *clamp_dist = 0;
    size_t bb;
    int blck = qilin_wformat_block(w.format, &bb);
    const uint8_t *block = data + ((size_t)r * (size_t)(w.cols / blck) + (size_t)(c / blck)) * bb;
    switch (w.format) {
    case QILIN_WF_F32:
        return 0;
    case QILIN_WF_F16:
        return std::fabs(xv) * std::ldexp(1.0, -11) + std::ldexp(1.0, -25);
    case QILIN_WF_BF16:
        return std::fabs(xv) * std::ldexp(1.0, -8);
    case QILIN_WF_Q8_0:
    case QILIN_WF_Q4_0:
        return f16((uint16_t)(block[0] | block[1] << 8)) / 2 * (1 + 1e-5);
    case QILIN_WF_FP8_BLOCK: {
        int64_t scols = (w.cols + 127) / 128;
        float s;
        std::memcpy(&s, sc + 4 * ((r / 128) * scols + c / 128), 4);
        return (std::ldexp(std::fabs(xv), -4) + std::ldexp((double)s, -10)) * (1 + 1e-6);
    }
    case QILIN_WF_INT4_GROUP: {
        size_t ss = w.scale_dtype == QILIN_F32 ? 4 : 2;
        const uint8_t *p =
            sc + ((size_t)r * (size_t)(w.cols / w.group_size) + (size_t)(c / w.group_size)) * ss;
        double s;
        if (ss == 4) {
            float f;
            std::memcpy(&f, p, 4);
            s = f;
        } else {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            s = w.scale_dtype == QILIN_F16 ? quant_f16_to_f32(h) : quant_bf16_to_f32(h);
        }
        return s / 2 * (1 + 1e-5);
    }
    default: {
        ElemRange er = k_range(w.format, block, (int)(c % 256));
        double lo = std::min(er.lo, er.hi), hi = std::max(er.lo, er.hi);
        *clamp_dist = std::max({0.0, xv - hi, lo - xv});
        EXPECT_LE(*clamp_dist, er.slack * (1 + 1e-5) + 1e-6) << "clamp at (" << r << ", " << c << ")";
        return std::fabs(er.step) / 2 * (1 + 1e-5) + *clamp_dist + 1e-6 * std::fabs(xv);
    }
    }
}

class RoundTrip : public testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTrip, WithinFormatBound) {
    const RoundTripCase &p = GetParam();
    quant_weight w{};
    w.format = p.format;
    w.rows = p.rows;
    w.cols = p.cols;
    w.group_size = p.group;
    w.scale_dtype = p.scale_dtype;
    w.name = "rt";
    QILIN_ASSERT_OK(quant_sizes(&w, &w.data_bytes, &w.scale_bytes));
    Bytes data(w.data_bytes, 0xCD), scales(w.scale_bytes, 0xCD);
    std::vector<float> x = random_matrix(p.rows, p.cols, (unsigned)(p.rows * 1000 + p.cols));
    QILIN_ASSERT_OK(quant_quantize(x.data(), &w, data.data(), w.scale_bytes ? scales.data() : nullptr));
    ASSERT_EQ(w.data, data.data());

    std::vector<float> y = dequant(w);
    // Besides the per-element bound: rounding to nearest leaves errors spread
    // over the bound, not piled at it. An error uniform in [-b, b] has mean
    // square b²/3; the sum of squares may exceed that by at most 2x.
    double se = 0, sb = 0, sx = 0, worst = 0, clamps = 0;
    for (int64_t r = 0; r < p.rows; r++)
        for (int64_t c = 0; c < p.cols; c++) {
            size_t i = (size_t)(r * p.cols + c);
            double cd, b = bound(w, x, r, c, &cd), err = std::fabs((double)y[i] - x[i]);
            ASSERT_LE(err, b) << "(" << r << ", " << c << "): x = " << x[i] << " got " << y[i];
            worst = std::max(worst, b > 0 ? err / b : 0.0);
            clamps += cd > 0;
            se += err * err;
            sb += b * b / 3;
            sx += (double)x[i] * x[i];
        }
    printf("%s [%lld, %lld]: rel RMS error %.3g, worst err/bound %.3f, sum err² / sum b²/3 = %.3f, clamped "
           "%.0f\n",
           qilin_wformat_name(p.format), (long long)p.rows, (long long)p.cols, std::sqrt(se / sx), worst,
           sb > 0 ? se / sb : 0.0, clamps);
    EXPECT_LE(se, 2 * sb);

    // A row range and the 16-bit outputs agree with the full fp32 result.
    int64_t r0 = p.rows / 3, n = p.rows - r0;
    std::vector<float> part((size_t)(n * p.cols));
    QILIN_ASSERT_OK(quant_dequantize(&w, r0, n, QILIN_F32, part.data()));
    EXPECT_TRUE(std::equal(part.begin(), part.end(), y.begin() + r0 * p.cols));
    std::vector<uint16_t> h((size_t)(n * p.cols));
    QILIN_ASSERT_OK(quant_dequantize(&w, r0, n, QILIN_BF16, h.data()));
    for (size_t i = 0; i < h.size(); i++) ASSERT_EQ(h[i], quant_f32_to_bf16(part[i])) << i;
    QILIN_ASSERT_OK(quant_dequantize(&w, r0, n, QILIN_F16, h.data()));
    for (size_t i = 0; i < h.size(); i++) ASSERT_EQ(h[i], quant_f32_to_f16(part[i])) << i;
}

std::vector<RoundTripCase> round_trip_cases() {
    std::vector<RoundTripCase> v;
    for (qilin_wformat f : {QILIN_WF_F32, QILIN_WF_F16, QILIN_WF_BF16})
        for (int64_t cols : {1, 19, 111}) v.push_back({f, 7, cols, 0, QILIN_F32});
    for (qilin_wformat f : {QILIN_WF_Q8_0, QILIN_WF_Q4_0})
        for (auto rc : {std::pair<int64_t, int64_t>{1, 32}, {5, 96}, {19, 224}})
            v.push_back({f, rc.first, rc.second, 0, QILIN_F32});
    for (qilin_wformat f : {QILIN_WF_Q4_K, QILIN_WF_Q5_K, QILIN_WF_Q6_K})
        for (auto rc : {std::pair<int64_t, int64_t>{1, 256}, {3, 512}, {19, 768}})
            v.push_back({f, rc.first, rc.second, 0, QILIN_F32});
    // FP8: one element, ragged edges in both directions (576x7168-like, scaled down).
    for (auto rc : {std::pair<int64_t, int64_t>{1, 1}, {200, 300}, {129, 7}, {64, 385}})
        v.push_back({QILIN_WF_FP8_BLOCK, rc.first, rc.second, 0, QILIN_F32});
    // INT4: columns not a multiple of 8, odd groups, every scale dtype.
    v.push_back({QILIN_WF_INT4_GROUP, 3, 36, 12, QILIN_BF16});
    v.push_back({QILIN_WF_INT4_GROUP, 5, 40, 8, QILIN_F16});
    v.push_back({QILIN_WF_INT4_GROUP, 2, 96, 32, QILIN_BF16});
    v.push_back({QILIN_WF_INT4_GROUP, 1, 7, 7, QILIN_F32});
    v.push_back({QILIN_WF_INT4_GROUP, 19, 111, 37, QILIN_BF16});
    return v;
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip, testing::ValuesIn(round_trip_cases()), case_name);

TEST(QuantRoundTrip, Fp8BlockScalesAreBlockAmaxOver448) {
    const int rows = 200, cols = 300;
    std::vector<float> x = random_matrix(rows, cols, 3);
    quant_weight w{};
    w.format = QILIN_WF_FP8_BLOCK;
    w.rows = rows;
    w.cols = cols;
    QILIN_ASSERT_OK(quant_sizes(&w, &w.data_bytes, &w.scale_bytes));
    ASSERT_EQ(w.scale_bytes, 2u * 3u * 4u); // [ceil(200/128), ceil(300/128)]
    Bytes q(w.data_bytes), s(w.scale_bytes);
    QILIN_ASSERT_OK(quant_quantize(x.data(), &w, q.data(), s.data()));
    for (int br = 0; br < 2; br++)
        for (int bc = 0; bc < 3; bc++) {
            float amax = 0;
            for (int r = br * 128; r < std::min(rows, br * 128 + 128); r++)
                for (int c = bc * 128; c < std::min(cols, bc * 128 + 128); c++)
                    amax = std::max(amax, std::fabs(x[r * cols + c]));
            float got;
            std::memcpy(&got, &s[4 * (br * 3 + bc)], 4);
            EXPECT_EQ(got, amax / 448.0f) << br << "," << bc;
        }
    // The block maximum itself encodes as ±448 exactly.
    for (size_t i = 0; i < x.size(); i++) {
        int r = (int)i / cols, c = (int)i % cols;
        float sv;
        std::memcpy(&sv, &s[4 * ((r / 128) * 3 + c / 128)], 4);
        if (std::fabs(x[i]) == sv * 448.0f) {
            EXPECT_EQ(q[i] & 0x7f, 0x7e) << i;
        }
    }
}

// --------------------------------------------------------------- rejection

TEST(QuantReject, ShapesAndGroups) {
    Bytes b(1000);
    quant_weight w = weight(QILIN_WF_Q4_K, 2, 300, b);
    size_t db, sb;
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT,
                 {"test.weight", "cols = 300", "q4_k", "256"});
    w = weight(QILIN_WF_Q8_0, 2, 40, b);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"cols = 40", "q8_0", "32"});
    w = weight(QILIN_WF_Q6_K, 0, 256, b);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"rows = 0"});
    w = weight(QILIN_WF_F32, 3, -1, b);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"cols = -1"});
    w = weight(QILIN_WF_INT4_GROUP, 2, 36, b, &b, QILIN_BF16, 8);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"group_size = 8", "cols = 36"});
    w = weight(QILIN_WF_INT4_GROUP, 2, 36, b, &b, QILIN_BF16, 0);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"group_size = 0"});
    w = weight(QILIN_WF_INT4_GROUP, 2, 32, b, &b, QILIN_I32, 32);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"scale_dtype i32"});
    w = weight((qilin_wformat)QILIN_WF_COUNT, 2, 32, b);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"unknown weight format"});
    w = weight(QILIN_WF_F32, INT64_MAX / 2, INT64_MAX / 2, b);
    expect_error(quant_sizes(&w, &db, &sb), QILIN_ERR_INVALID_ARGUMENT, {"overflows"});
}

TEST(QuantReject, BufferSizes) {
    Bytes q(143), s4(4), s8(8);
    quant_weight w = weight(QILIN_WF_Q4_K, 1, 256, q);
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT,
                 {"test.weight", "data is 143 bytes", "needs 144"});
    Bytes q144(144);
    w = weight(QILIN_WF_Q4_K, 1, 256, q144, &s4);
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT, {"scales is 4 bytes", "needs 0"});
    Bytes f8(200 * 300);
    w = weight(QILIN_WF_FP8_BLOCK, 200, 300, f8, &s8);
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT, {"scales is 8 bytes", "needs 24"});
    w = weight(QILIN_WF_FP8_BLOCK, 200, 300, f8);
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT, {"scales is 0 bytes (NULL)", "needs 24"});
    Bytes i4(2 * 5 * 4), sc(2 * 3 * 2);
    w = weight(QILIN_WF_INT4_GROUP, 2, 36, i4, &sc, QILIN_BF16, 12);
    QILIN_ASSERT_OK(quant_check(&w));
    w.data_bytes = 2 * 4 * 4; // as if cols were rounded down to whole words
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT, {"data is 32 bytes", "needs 40"});
    w = weight(QILIN_WF_Q4_K, 1, 256, q144);
    w.data = nullptr;
    expect_error(quant_check(&w), QILIN_ERR_INVALID_ARGUMENT, {"(NULL)"});
}

TEST(QuantReject, DequantizeArguments) {
    Bytes q(2 * 34);
    quant_weight w = weight(QILIN_WF_Q8_0, 2, 32, q);
    float out[64];
    expect_error(quant_dequantize(&w, 1, 2, QILIN_F32, out), QILIN_ERR_INVALID_ARGUMENT,
                 {"row range [1, +2)", "2 rows"});
    expect_error(quant_dequantize(&w, -1, 1, QILIN_F32, out), QILIN_ERR_INVALID_ARGUMENT, {"row range"});
    expect_error(quant_dequantize(&w, 0, 1, QILIN_I32, out), QILIN_ERR_INVALID_ARGUMENT,
                 {"output dtype i32"});
    expect_error(quant_dequantize(&w, 0, 1, QILIN_F32, nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 {"output buffer"});
    QILIN_ASSERT_OK(quant_dequantize(&w, 2, 0, QILIN_F32, out)); // empty range at the end
}

TEST(QuantReject, QuantizeInputs) {
    std::vector<float> x(64, 1.0f);
    x[32 + 2] = NAN;
    quant_weight w{};
    w.format = QILIN_WF_Q8_0;
    w.rows = 2;
    w.cols = 32;
    w.name = "blk.0.attn_q.weight";
    w.data_bytes = 68;
    Bytes q(68);
    expect_error(quant_quantize(x.data(), &w, q.data(), nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 {"blk.0.attn_q.weight", "source[1, 2]", "not finite"});
    EXPECT_EQ(w.data, nullptr); // untouched on failure
    x[34] = 1e10f;              // d = 1e10/127 overflows fp16
    expect_error(quant_quantize(x.data(), &w, q.data(), nullptr), QILIN_ERR_INVALID_ARGUMENT,
                 {"row 1 block 0", "overflows fp16"});
    w.format = QILIN_WF_INT4_GROUP;
    w.group_size = 32;
    w.scale_dtype = QILIN_F16;
    w.data_bytes = 2 * 4 * 4;
    w.scale_bytes = 2 * 2;
    Bytes q4(w.data_bytes), s(w.scale_bytes);
    expect_error(quant_quantize(x.data(), &w, q4.data(), s.data()), QILIN_ERR_INVALID_ARGUMENT,
                 {"row 1 group 0", "overflows f16"});
    w.data_bytes = 3; // wrong capacity
    expect_error(quant_quantize(x.data(), &w, q4.data(), s.data()), QILIN_ERR_INVALID_ARGUMENT,
                 {"data is 3 bytes"});
}

// ------------------------------------------------------- checkpoint tensors

TEST(QuantTensors, FromGgufFlattensExpertStacks) {
    // ne = [256, 2, 3]: three stacked [2, 256] matrices = 6 rows of Q6_K.
    Bytes q(6 * 210);
    gguf_tensor t{};
    t.name = "blk.0.ffn_up_exps.weight";
    t.type = GGUF_DT_Q6_K;
    t.n_dims = 3;
    t.ne[0] = 256;
    t.ne[1] = 2;
    t.ne[2] = 3;
    t.ne[3] = 1;
    t.data = q.data();
    t.nbytes = q.size();
    quant_weight w;
    QILIN_ASSERT_OK(quant_weight_from_gguf(&t, &w));
    EXPECT_EQ(w.format, QILIN_WF_Q6_K);
    EXPECT_EQ(w.rows, 6);
    EXPECT_EQ(w.cols, 256);
    t.type = GGUF_DT_Q2_K;
    expect_error(quant_weight_from_gguf(&t, &w), QILIN_ERR_UNSUPPORTED, {"blk.0.ffn_up_exps.weight", "Q2_K"});
    t.type = GGUF_DT_Q6_K;
    t.nbytes -= 1;
    expect_error(quant_weight_from_gguf(&t, &w), QILIN_ERR_INVALID_ARGUMENT,
                 {"blk.0.ffn_up_exps.weight", "needs 1260"});
    t.ne[0] = 0; // a zero dimension may carry anything in the others
    t.ne[1] = INT64_MAX;
    t.ne[2] = INT64_MAX;
    expect_error(quant_weight_from_gguf(&t, &w), QILIN_ERR_FORMAT, {"too large"});
}

st_tensor st(const char *name, st_dtype dt, std::vector<int64_t> shape, const Bytes &data) {
    st_tensor t{};
    t.name = name;
    t.file = "model-00001.safetensors";
    t.dtype = dt;
    t.ndim = (int)shape.size();
    for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
    t.data = data.data();
    t.nbytes = data.size();
    return t;
}

TEST(QuantTensors, Fp8WithScaleInv) {
    Bytes q = random_fp8(200 * 300, 6), s(2 * 3 * 4);
    for (int i = 0; i < 6; i++) putf32(s, 4 * i, (float)(i + 1));
    st_tensor w8 = st("l.kv_a_proj_with_mqa.weight", ST_F8_E4M3, {200, 300}, q);
    st_tensor sc = st("l.kv_a_proj_with_mqa.weight_scale_inv", ST_F32, {2, 3}, s);
    quant_weight w;
    QILIN_ASSERT_OK(quant_weight_fp8(&w8, &sc, &w));
    std::vector<float> y = dequant(w);
    for (int r = 0; r < 200; r++)
        for (int c = 0; c < 300; c++) /* scale 1..6 times a 4-bit mantissa: exact in fp32 */
            ASSERT_EQ(y[(size_t)r * 300 + c], (float)(fp8_formula(q[(size_t)r * 300 + c]) * ((r / 128) * 3 + c / 128 + 1)))
                << r << "," << c;
    st_tensor bad = st("l.kv_a_proj_with_mqa.weight_scale_inv", ST_F32, {2, 2}, s);
    expect_error(quant_weight_fp8(&w8, &bad, &w), QILIN_ERR_FORMAT,
                 {"model-00001.safetensors", "weight_scale_inv", "[2, 2]", "expected F32 [2, 3]"});
    bad = st("l.kv_a_proj_with_mqa.weight_scale_inv", ST_BF16, {2, 3}, s);
    expect_error(quant_weight_fp8(&w8, &bad, &w), QILIN_ERR_FORMAT, {"is BF16"});
    st_tensor notfp8 = st("l.kv_a_proj_with_mqa.weight", ST_BF16, {200, 300}, q);
    expect_error(quant_weight_fp8(&notfp8, &sc, &w), QILIN_ERR_FORMAT,
                 {"l.kv_a_proj_with_mqa.weight", "F8_E4M3"});
}

TEST(QuantTensors, Int4PackQuantized) {
    // [out 2, in 36], group 12: packed I32 [2, 5], scale BF16 [2, 3], shape I64 {2, 36}.
    Bytes packed(2 * 5 * 4), scale(2 * 3 * 2), shape64(16), shape32(8);
    std::mt19937 rng(7);
    for (uint8_t &b : packed) b = (uint8_t)(rng() & 0xff);
    const float sv[6] = {1.0f, -0.5f, 2.0f, 0.25f, -4.0f, 8.0f}; /* bf16-exact */
    for (int i = 0; i < 6; i++) put16(scale, 2 * i, quant_f32_to_bf16(sv[i]));
    put32(shape64, 0, 2);
    put32(shape64, 8, 36);
    put32(shape32, 0, 2);
    put32(shape32, 4, 36);
    st_tensor p = st("e.17.gate_proj.weight_packed", ST_I32, {2, 5}, packed);
    st_tensor s = st("e.17.gate_proj.weight_scale", ST_BF16, {2, 3}, scale);
    st_tensor sh = st("e.17.gate_proj.weight_shape", ST_I64, {2}, shape64);
    quant_weight w;
    QILIN_ASSERT_OK(quant_weight_int4(&p, &s, &sh, 12, &w));
    EXPECT_EQ(w.cols, 36);
    std::vector<float> y = dequant(w);
    for (int r = 0; r < 2; r++) /* column c is nibble c % 8 of word c / 8, q = u - 8, group c / 12 */
        for (int c = 0; c < 36; c++) {
            uint32_t word = 0;
            for (int k = 0; k < 4; k++) word |= (uint32_t)packed[(size_t)(r * 5 + c / 8) * 4 + k] << (8 * k);
            int u = (int)((word >> (4 * (c % 8))) & 15u);
            EXPECT_EQ(y[(size_t)r * 36 + c], (float)(u - 8) * sv[r * 3 + c / 12]) << r << "," << c;
        }
    sh = st("e.17.gate_proj.weight_shape", ST_I32, {2}, shape32);
    QILIN_ASSERT_OK(quant_weight_int4(&p, &s, &sh, 12, &w));
    Bytes scale5(2 * 5 * 2);
    st_tensor s5 = st("e.17.gate_proj.weight_scale", ST_BF16, {2, 5}, scale5);
    QILIN_ASSERT_OK(quant_weight_int4(&p, &s5, nullptr, 8, &w)); // in = 8 · 5 without a shape
    EXPECT_EQ(w.cols, 40);
    expect_error(quant_weight_int4(&p, &s, &sh, 8, &w), QILIN_ERR_FORMAT,
                 {"group_size = 8", "in_features = 36"});
    put32(shape32, 4, 48);
    expect_error(quant_weight_int4(&p, &s, &sh, 12, &w), QILIN_ERR_FORMAT,
                 {"weight_shape", "[2, 48]", "[2, 5]"});
    put32(shape32, 4, 36);
    st_tensor s2 = st("e.17.gate_proj.weight_scale", ST_BF16, {2, 4}, scale);
    expect_error(quant_weight_int4(&p, &s2, &sh, 12, &w), QILIN_ERR_FORMAT,
                 {"weight_scale", "expected BF16 [2, 3]"});
    st_tensor s3 = st("e.17.gate_proj.weight_scale", ST_I8, {2, 3}, scale);
    expect_error(quant_weight_int4(&p, &s3, &sh, 12, &w), QILIN_ERR_FORMAT, {"is I8"});
}

TEST(QuantTensors, FromSafetensorsPlain) {
    Bytes b(2 * 3 * 4 * 2);
    st_tensor t = st("model.embed_tokens.weight", ST_BF16, {2, 3, 4}, b);
    quant_weight w;
    QILIN_ASSERT_OK(quant_weight_from_st(&t, &w));
    EXPECT_EQ(w.rows, 6);
    EXPECT_EQ(w.cols, 4);
    Bytes norm(32);
    t = st("model.norm.weight", ST_F32, {8}, norm);
    QILIN_ASSERT_OK(quant_weight_from_st(&t, &w));
    EXPECT_EQ(w.rows, 1);
    t = st("x", ST_I64, {2}, b);
    expect_error(quant_weight_from_st(&t, &w), QILIN_ERR_UNSUPPORTED, {"'x'", "I64"});
}

} // namespace
