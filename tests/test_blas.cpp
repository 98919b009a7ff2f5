/* test_blas.cpp — qilin_gemm against a float64 reference.
 *
 * Every (layout, trans_a, trans_b, ab_type, c_type) combination runs the odd
 * shapes m, n, k in {1, 19, 111}, one larger GEMM (128 x 96 x 989) and a
 * strided batch of 3 (once with a broadcast B, stride_b = 0). Inputs are
 * seeded random values already rounded to their storage type, so the
 * reference (computed in double from the stored values) sees exactly what
 * the GEMM sees. Padding between rows/columns and batches of A and B holds
 * NaN (a read of it poisons the result); padding of C holds a sentinel that
 * must survive; with beta == 0, C starts as NaN and must not leak through.
 *
 * Tolerance per output element, from the arithmetic:
 *   (k + 2) * 2^-23 * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|)
 *       fp32 accumulation: one fp32 rounding per addition, counted as a full
 *       ulp (2^-23) because tensor-core accumulators may truncate; +2 for the
 *       alpha and beta terms;
 *   + u_out * |ref|       output rounding, half an ulp of c_type
 *                         (f32 2^-24, f16 2^-11, bf16 2^-8);
 *   + tiny_out            half the smallest subnormal step of c_type
 *                         (f16 2^-25; negligible for f32 and bf16).
 * The worst error and worst error/tolerance ratio are printed for each case. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "cuda/blas.h"
#include "tests/test_util.h"

namespace {

/* ---- host-side values of any GEMM type -------------------------------- */

double load(qilin_dtype t, const std::vector<uint8_t> &buf, size_t i) {
    switch (t) {
    case QILIN_F16: {
        __half h;
        std::memcpy(&h, buf.data() + 2 * i, 2);
        return __half2float(h);
    }
    case QILIN_BF16: {
        __nv_bfloat16 h;
        std::memcpy(&h, buf.data() + 2 * i, 2);
        return __bfloat162float(h);
    }
    default: {
        float f;
        std::memcpy(&f, buf.data() + 4 * i, 4);
        return f;
    }
    }
}

void store(qilin_dtype t, std::vector<uint8_t> &buf, size_t i, float v) {
    if (t == QILIN_F16) {
        __half h = __float2half_rn(v);
        std::memcpy(buf.data() + 2 * i, &h, 2);
    } else if (t == QILIN_BF16) {
        __nv_bfloat16 h = __float2bfloat16_rn(v);
        std::memcpy(buf.data() + 2 * i, &h, 2);
    } else {
        std::memcpy(buf.data() + 4 * i, &v, 4);
    }
}

double unit_roundoff(qilin_dtype t) {
    return t == QILIN_F16    ? std::ldexp(1.0, -11)
           : t == QILIN_BF16 ? std::ldexp(1.0, -8)
                             : std::ldexp(1.0, -24);
}

double tiny_step(qilin_dtype t) { return t == QILIN_F16 ? std::ldexp(1.0, -25) : 0.0; }

/* ---- device buffers ----------------------------------------------------- */

struct DeviceBuffer {
    void *ptr = nullptr;
    ~DeviceBuffer() { qilin_free(ptr); }
};

/* ---- one stored operand: shape, leading dimension, batch stride --------- */

struct Operand {
    int64_t rows = 0, cols = 0; /* as stored */
    int64_t ld = 0, span = 0, stride = 0;
    size_t elems = 0; /* whole buffer over the batch */
    std::vector<uint8_t> host;
};

/* Element (r, c) of stored batch b. */
size_t index_of(qilin_layout layout, const Operand &o, int b, int64_t r, int64_t c) {
    int64_t in = layout == QILIN_ROW_MAJOR ? r * o.ld + c : c * o.ld + r;
    return (size_t)(b * o.stride + in);
}

Operand make_operand(qilin_layout layout, int64_t rows, int64_t cols, int64_t pad, int batch,
                     int64_t stride_extra, bool broadcast, qilin_dtype t) {
    Operand o;
    o.rows = rows;
    o.cols = cols;
    int64_t inner = layout == QILIN_ROW_MAJOR ? cols : rows;
    int64_t outer = layout == QILIN_ROW_MAJOR ? rows : cols;
    o.ld = (inner > 1 ? inner : 1) + pad;
    o.span = outer == 0 || inner == 0 ? 0 : (outer - 1) * o.ld + inner;
    o.stride = broadcast ? 0 : o.span + stride_extra;
    o.elems = (size_t)(o.stride * (batch - 1) + o.span);
    if (o.elems == 0) o.elems = 1; /* keep a valid allocation for empty shapes */
    o.host.assign(o.elems * qilin_dtype_size(t), 0);
    return o;
}

/* ---- one GEMM case ------------------------------------------------------ */

struct Combo {
    qilin_layout layout;
    qilin_op ta, tb;
    qilin_dtype ab, c;
};

/* Failure messages print the combination, not its bytes. */
void PrintTo(const Combo &c, std::ostream *os) {
    *os << (c.layout == QILIN_ROW_MAJOR ? "row-major " : "col-major ") << (c.ta == QILIN_OP_N ? "N" : "T")
        << (c.tb == QILIN_OP_N ? "N" : "T") << " " << qilin_dtype_name(c.ab) << "->" << qilin_dtype_name(c.c);
}

struct Shape {
    int m, n, k, batch;
    int64_t pad;       /* added to every minimal leading dimension */
    bool broadcast_b;  /* stride_b = 0 */
    float alpha, beta; /* beta == 0: C starts as NaN */
};

struct Metrics {
    double max_err = 0, max_ratio = 0;
    std::string worst;
    int cases = 0;
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

/* Fills the valid elements of every batch with uniform [-1, 1) values rounded
 * to t (or with NaN when `poison_valid`), everything else with `pad_value`. */
void fill(qilin_layout layout, Operand &o, int batch, qilin_dtype t, std::mt19937 &rng, bool poison_valid,
          float pad_value) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i < o.elems; i++) store(t, o.host, i, pad_value);
    for (int b = 0; b < batch; b++)
        for (int64_t r = 0; r < o.rows; r++)
            for (int64_t c = 0; c < o.cols; c++)
                store(t, o.host, index_of(layout, o, b, r, c), poison_valid ? kNaN : u(rng));
}

class Gemm : public ::testing::TestWithParam<Combo> {
  protected:
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(1);
        QILIN_ASSERT_OK(qilin_device_set(0));
        QILIN_ASSERT_OK(qilin_blas_create(&blas_));
    }
    void TearDown() override { EXPECT_EQ(qilin_blas_destroy(blas_), QILIN_OK); }

    void run(const Shape &s, uint32_t seed, Metrics &metrics);
    qilin_blas *blas_ = nullptr;
};

/* op(X)(i, j) of stored batch b as a double. */
double op_at(const Combo &cb, const Operand &o, qilin_op op, qilin_dtype t, int b, int64_t i, int64_t j) {
    return op == QILIN_OP_N ? load(t, o.host, index_of(cb.layout, o, b, i, j))
                            : load(t, o.host, index_of(cb.layout, o, b, j, i));
}

/* Compares one batch entry with the float64 reference, updating metrics. */
void check_batch(const Combo &cb, const Shape &s, int b, const Operand &a, const Operand &bm,
                 const Operand &c0, const Operand &c1, Metrics &mt) {
    std::vector<double> av((size_t)s.m * s.k), bv((size_t)s.k * s.n);
    for (int i = 0; i < s.m; i++)
        for (int p = 0; p < s.k; p++) av[(size_t)i * s.k + p] = op_at(cb, a, cb.ta, cb.ab, b, i, p);
    for (int p = 0; p < s.k; p++)
        for (int j = 0; j < s.n; j++) bv[(size_t)j * s.k + p] = op_at(cb, bm, cb.tb, cb.ab, b, p, j);
    for (int i = 0; i < s.m; i++)
        for (int j = 0; j < s.n; j++) {
            double sum = 0, mag = 0;
            for (int p = 0; p < s.k; p++) {
                double prod = av[(size_t)i * s.k + p] * bv[(size_t)j * s.k + p];
                sum += prod;
                mag += std::fabs(prod);
            }
            size_t ci = index_of(cb.layout, c0, b, i, j);
            double old = s.beta != 0.0f ? load(cb.c, c0.host, ci) : 0.0;
            double ref = (double)s.alpha * sum + (double)s.beta * old;
            mag = std::fabs(s.alpha) * mag + std::fabs((double)s.beta * old);
            double tol = (s.k + 2) * std::ldexp(1.0, -23) * mag + unit_roundoff(cb.c) * std::fabs(ref) +
                         tiny_step(cb.c);
            double got = load(cb.c, c1.host, ci);
            double err = std::fabs(got - ref);
            bool ok = err <= tol; /* false for NaN */
            if (!ok || err > mt.max_err || (tol > 0 && err / tol > mt.max_ratio)) {
                char where[160];
                std::snprintf(where, sizeof where,
                              "m=%d n=%d k=%d batch %d (%d,%d): got %.9g ref %.9g tol %.3g", s.m, s.n, s.k, b,
                              i, j, got, ref, tol);
                if (!ok || err > mt.max_err) mt.worst = where;
                if (err > mt.max_err) mt.max_err = err;
                if (tol > 0 && err / tol > mt.max_ratio) mt.max_ratio = err / tol;
            }
            if (!ok) ADD_FAILURE() << "gemm mismatch at " << mt.worst;
            if (!ok) return; /* one report per batch entry is enough */
        }
}

/* C padding (everything that is not an output element) must be untouched. */
void check_c_padding(const Combo &cb, const Shape &s, const Operand &c0, const Operand &c1) {
    std::vector<char> is_out(c0.elems, 0);
    for (int b = 0; b < s.batch; b++)
        for (int i = 0; i < s.m; i++)
            for (int j = 0; j < s.n; j++) is_out[index_of(cb.layout, c0, b, i, j)] = 1;
    size_t esz = qilin_dtype_size(cb.c);
    for (size_t e = 0; e < c0.elems; e++)
        if (!is_out[e] && std::memcmp(&c0.host[e * esz], &c1.host[e * esz], esz) != 0) {
            ADD_FAILURE() << "gemm wrote C padding at element " << e << " (m=" << s.m << " n=" << s.n
                          << " k=" << s.k << ")";
            return;
        }
}

void Gemm::run(const Shape &s, uint32_t seed, Metrics &mt) {
    const Combo cb = GetParam();
    std::mt19937 rng(seed);
    int64_t ar = cb.ta == QILIN_OP_N ? s.m : s.k, ac = cb.ta == QILIN_OP_N ? s.k : s.m;
    int64_t br = cb.tb == QILIN_OP_N ? s.k : s.n, bc = cb.tb == QILIN_OP_N ? s.n : s.k;
    Operand a = make_operand(cb.layout, ar, ac, s.pad, s.batch, 7, false, cb.ab);
    Operand b = make_operand(cb.layout, br, bc, s.pad, s.batch, 5, s.broadcast_b, cb.ab);
    Operand c = make_operand(cb.layout, s.m, s.n, s.pad, s.batch, 11, false, cb.c);
    fill(cb.layout, a, s.batch, cb.ab, rng, false, kNaN); /* reading padding poisons C */
    fill(cb.layout, b, s.broadcast_b ? 1 : s.batch, cb.ab, rng, false, kNaN);
    fill(cb.layout, c, s.batch, cb.c, rng, s.beta == 0.0f, 12345.0f); /* sentinel padding */

    DeviceBuffer da, db, dc;
    QILIN_ASSERT_OK(qilin_malloc(&da.ptr, a.host.size(), "gemm test A"));
    QILIN_ASSERT_OK(qilin_malloc(&db.ptr, b.host.size(), "gemm test B"));
    QILIN_ASSERT_OK(qilin_malloc(&dc.ptr, c.host.size(), "gemm test C"));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(da.ptr, a.host.data(), a.host.size(), nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(db.ptr, b.host.data(), b.host.size(), nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(dc.ptr, c.host.data(), c.host.size(), nullptr));

    qilin_gemm_desc d = {};
    d.layout = cb.layout;
    d.trans_a = cb.ta;
    d.trans_b = cb.tb;
    d.m = s.m, d.n = s.n, d.k = s.k;
    d.ab_type = cb.ab, d.c_type = cb.c;
    d.a = da.ptr, d.lda = a.ld, d.stride_a = a.stride;
    d.b = db.ptr, d.ldb = b.ld, d.stride_b = b.stride;
    d.c = dc.ptr, d.ldc = c.ld, d.stride_c = c.stride;
    d.batch = s.batch;
    d.alpha = s.alpha, d.beta = s.beta;
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));

    Operand out = c;
    QILIN_ASSERT_OK(qilin_memcpy_d2h(out.host.data(), dc.ptr, out.host.size(), nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    for (int bi = 0; bi < s.batch; bi++) check_batch(cb, s, bi, a, b, c, out, mt);
    check_c_padding(cb, s, c, out);
    mt.cases++;
}

TEST_P(Gemm, Shapes) {
    const int dims[] = {1, 19, 111};
    Metrics mt;
    uint32_t seed = 1000;
    int idx = 0;
    for (int m : dims)
        for (int n : dims)
            for (int k : dims) {
                /* Alternate padded leading dimensions and beta == 0 (NaN C). */
                idx++;
                Shape s{m, n, k, 1, idx % 2 ? 5 : 0, false, 0.75f, idx % 3 ? -0.5f : 0.0f};
                run(s, seed++, mt);
                if (HasFailure()) return;
            }
    run(Shape{128, 96, 989, 1, 3, false, 1.25f, 0.25f}, seed++, mt);
    run(Shape{19, 33, 111, 3, 2, false, -0.5f, 1.0f}, seed++, mt);
    run(Shape{19, 33, 111, 3, 0, true, 0.75f, 0.0f}, seed++, mt);
    std::printf("[   gemm   ] %d GEMMs: max |err| %.3g, max err/tol %.3f (worst: %s)\n", mt.cases, mt.max_err,
                mt.max_ratio, mt.worst.c_str());
}

std::vector<Combo> all_combos() {
    const qilin_dtype pairs[][2] = {{QILIN_F32, QILIN_F32},
                                    {QILIN_F16, QILIN_F16},
                                    {QILIN_F16, QILIN_F32},
                                    {QILIN_BF16, QILIN_BF16},
                                    {QILIN_BF16, QILIN_F32}};
    std::vector<Combo> v;
    for (qilin_layout l : {QILIN_ROW_MAJOR, QILIN_COL_MAJOR})
        for (qilin_op ta : {QILIN_OP_N, QILIN_OP_T})
            for (qilin_op tb : {QILIN_OP_N, QILIN_OP_T})
                for (const auto &p : pairs) v.push_back(Combo{l, ta, tb, p[0], p[1]});
    return v;
}

std::string combo_name(const ::testing::TestParamInfo<Combo> &info) {
    const Combo &c = info.param;
    std::string s = c.layout == QILIN_ROW_MAJOR ? "row_" : "col_";
    s += c.ta == QILIN_OP_N ? "N" : "T";
    s += c.tb == QILIN_OP_N ? "N" : "T";
    return s + "_" + qilin_dtype_name(c.ab) + "_" + qilin_dtype_name(c.c);
}

INSTANTIATE_TEST_SUITE_P(Blas, Gemm, ::testing::ValuesIn(all_combos()), combo_name);

/* ---- validation, edge cases, determinism -------------------------------- */

class BlasApi : public ::testing::Test {
  protected:
    void SetUp() override {
        QILIN_REQUIRE_DEVICES(1);
        QILIN_ASSERT_OK(qilin_device_set(0));
        QILIN_ASSERT_OK(qilin_blas_create(&blas_));
        for (DeviceBuffer *b : {&a_, &b_, &c_})
            QILIN_ASSERT_OK(qilin_malloc(&b->ptr, 4096, "gemm validation"));
        /* A valid row-major 4 x 6 x 5 f32 GEMM that each test breaks once. */
        d_ = qilin_gemm_desc{};
        d_.layout = QILIN_ROW_MAJOR;
        d_.m = 4, d_.n = 6, d_.k = 5;
        d_.ab_type = QILIN_F32, d_.c_type = QILIN_F32;
        d_.a = a_.ptr, d_.lda = 5;
        d_.b = b_.ptr, d_.ldb = 6;
        d_.c = c_.ptr, d_.ldc = 6;
        d_.batch = 1;
        d_.alpha = 1.0f;
    }
    void TearDown() override { EXPECT_EQ(qilin_blas_destroy(blas_), QILIN_OK); }

    /* Expects `d` to be rejected with `status` and a message containing `needle`. */
    void expect_rejected(const qilin_gemm_desc &d, qilin_status status, const char *needle) {
        qilin_clear_error();
        qilin_status st = qilin_gemm(blas_, &d, nullptr);
        EXPECT_EQ(st, status) << qilin_status_name(st) << ": " << qilin_last_error();
        EXPECT_NE(std::string(qilin_last_error()).find(needle), std::string::npos)
            << "message '" << qilin_last_error() << "' does not name '" << needle << "'";
    }

    qilin_blas *blas_ = nullptr;
    DeviceBuffer a_, b_, c_;
    qilin_gemm_desc d_;
};

TEST_F(BlasApi, ValidationNamesTheField) {
    struct Case {
        void (*mutate)(qilin_gemm_desc &);
        qilin_status status;
        const char *needle;
    };
    const Case cases[] = {
        {[](qilin_gemm_desc &d) { d.m = -1; }, QILIN_ERR_INVALID_ARGUMENT, "m = -1"},
        {[](qilin_gemm_desc &d) { d.n = -2; }, QILIN_ERR_INVALID_ARGUMENT, "n = -2"},
        {[](qilin_gemm_desc &d) { d.k = -3; }, QILIN_ERR_INVALID_ARGUMENT, "k = -3"},
        {[](qilin_gemm_desc &d) { d.batch = 0; }, QILIN_ERR_INVALID_ARGUMENT, "batch = 0"},
        {[](qilin_gemm_desc &d) { d.layout = (qilin_layout)7; }, QILIN_ERR_INVALID_ARGUMENT, "layout = 7"},
        {[](qilin_gemm_desc &d) { d.trans_b = (qilin_op)9; }, QILIN_ERR_INVALID_ARGUMENT, "trans_b = 9"},
        {[](qilin_gemm_desc &d) { d.ab_type = QILIN_I32; }, QILIN_ERR_UNSUPPORTED, "ab_type = i32"},
        {[](qilin_gemm_desc &d) { d.ab_type = QILIN_BF16, d.c_type = QILIN_F16; }, QILIN_ERR_UNSUPPORTED,
         "c_type = f16"},
        {[](qilin_gemm_desc &d) { d.lda = 4; }, QILIN_ERR_INVALID_ARGUMENT, "lda = 4"},
        {[](qilin_gemm_desc &d) { d.trans_a = QILIN_OP_T, d.lda = 3; }, QILIN_ERR_INVALID_ARGUMENT,
         "lda = 3 is too small: row-major A (trans_a=T) is 5 x 4"},
        {[](qilin_gemm_desc &d) { d.ldb = 5; }, QILIN_ERR_INVALID_ARGUMENT, "ldb = 5"},
        {[](qilin_gemm_desc &d) { d.layout = QILIN_COL_MAJOR, d.ldc = 3; }, QILIN_ERR_INVALID_ARGUMENT,
         "ldc = 3"},
        {[](qilin_gemm_desc &d) { d.a = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "a = NULL"},
        {[](qilin_gemm_desc &d) { d.b = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "b = NULL"},
        {[](qilin_gemm_desc &d) { d.c = nullptr; }, QILIN_ERR_INVALID_ARGUMENT, "c = NULL"},
        {[](qilin_gemm_desc &d) { d.c = (char *)d.c + 2; }, QILIN_ERR_INVALID_ARGUMENT, "not aligned"},
        {[](qilin_gemm_desc &d) { d.stride_a = -1; }, QILIN_ERR_INVALID_ARGUMENT, "stride_a = -1"},
        {[](qilin_gemm_desc &d) { d.batch = 2, d.stride_c = 23; }, QILIN_ERR_INVALID_ARGUMENT,
         "stride_c = 23"},
    };
    for (const Case &c : cases) {
        qilin_gemm_desc d = d_;
        c.mutate(d);
        SCOPED_TRACE(c.needle);
        expect_rejected(d, c.status, c.needle);
    }
}

TEST_F(BlasApi, NullHandleAndDescriptor) {
    EXPECT_EQ(qilin_gemm(nullptr, &d_, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("blas = NULL"), std::string::npos);
    EXPECT_EQ(qilin_gemm(blas_, nullptr, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("desc = NULL"), std::string::npos);
    EXPECT_EQ(qilin_blas_create(nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(qilin_blas_destroy(nullptr), QILIN_OK);
}

/* m == 0 or n == 0 touches nothing (NULL pointers allowed); k == 0 scales C
 * by beta (BLAS semantics), with NULL A and B allowed. */
TEST_F(BlasApi, EmptyShapes) {
    std::vector<float> c0(24), c1(24);
    for (int i = 0; i < 24; i++) c0[i] = (float)i - 7.0f;
    QILIN_ASSERT_OK(qilin_memcpy_h2d(c_.ptr, c0.data(), 96, nullptr));
    qilin_gemm_desc d = d_;
    d.m = 0, d.a = nullptr, d.b = nullptr, d.c = nullptr;
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));
    d = d_;
    d.k = 0, d.a = nullptr, d.b = nullptr, d.beta = -2.0f;
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(c1.data(), c_.ptr, 96, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    for (int i = 0; i < 24; i++) EXPECT_EQ(c1[i], -2.0f * c0[i]) << "element " << i;
}

/* Batches of C side by side in each row (attention's per-head output
 * C[tokens, heads * dim], stride_c = dim) are legal and computed right. */
TEST_F(BlasApi, InterleavedBatchedOutput) {
    const int m = 5, n = 7, k = 9, batch = 3;
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> ha((size_t)batch * m * k), hb((size_t)batch * k * n), hc((size_t)m * n * batch);
    for (float &x : ha) x = u(rng);
    for (float &x : hb) x = u(rng);
    DeviceBuffer a, b, c;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, ha.size() * 4, "A"));
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, hb.size() * 4, "B"));
    QILIN_ASSERT_OK(qilin_malloc(&c.ptr, hc.size() * 4, "C"));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(a.ptr, ha.data(), ha.size() * 4, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(b.ptr, hb.data(), hb.size() * 4, nullptr));
    qilin_gemm_desc d = {};
    d.layout = QILIN_ROW_MAJOR, d.m = m, d.n = n, d.k = k;
    d.ab_type = d.c_type = QILIN_F32;
    d.a = a.ptr, d.lda = k, d.stride_a = (int64_t)m * k;
    d.b = b.ptr, d.ldb = n, d.stride_b = (int64_t)k * n;
    d.c = c.ptr, d.ldc = (int64_t)n * batch, d.stride_c = n;
    d.batch = batch, d.alpha = 1.0f;
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(hc.data(), c.ptr, hc.size() * 4, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    for (int h = 0; h < batch; h++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double ref = 0, mag = 0;
                for (int p = 0; p < k; p++) {
                    double prod = (double)ha[((size_t)h * m + i) * k + p] * hb[((size_t)h * k + p) * n + j];
                    ref += prod;
                    mag += std::fabs(prod);
                }
                double got = hc[(size_t)i * n * batch + (size_t)h * n + j];
                /* fp32 accumulation and output: (k + 2) * 2^-23 * sum |a b| (see the top) */
                ASSERT_NEAR(got, ref, (k + 2) * std::ldexp(1.0, -23) * mag)
                    << "batch " << h << " (" << i << "," << j << ")";
            }
}

/* The same GEMM twice gives the same bits. */
TEST_F(BlasApi, Deterministic) {
    const int m = 37, n = 45, k = 301;
    DeviceBuffer a, b, c;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, (size_t)m * k * 2, "A"));
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, (size_t)n * k * 2, "B"));
    QILIN_ASSERT_OK(qilin_malloc(&c.ptr, (size_t)m * n * 2, "C"));
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<__nv_bfloat16> ha((size_t)m * k), hb((size_t)n * k);
    for (auto &x : ha) x = __float2bfloat16_rn(u(rng));
    for (auto &x : hb) x = __float2bfloat16_rn(u(rng));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(a.ptr, ha.data(), ha.size() * 2, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_h2d(b.ptr, hb.data(), hb.size() * 2, nullptr));
    qilin_gemm_desc d = {};
    d.layout = QILIN_ROW_MAJOR, d.trans_a = QILIN_OP_N, d.trans_b = QILIN_OP_T; /* linear layer */
    d.m = m, d.n = n, d.k = k, d.ab_type = QILIN_BF16, d.c_type = QILIN_BF16;
    d.a = a.ptr, d.lda = k, d.b = b.ptr, d.ldb = k, d.c = c.ptr, d.ldc = n;
    d.batch = 1, d.alpha = 1.0f;
    std::vector<uint16_t> r1((size_t)m * n), r2((size_t)m * n);
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(r1.data(), c.ptr, r1.size() * 2, nullptr));
    QILIN_ASSERT_OK(qilin_gemm(blas_, &d, nullptr));
    QILIN_ASSERT_OK(qilin_memcpy_d2h(r2.data(), c.ptr, r2.size() * 2, nullptr));
    QILIN_ASSERT_OK(qilin_stream_synchronize(nullptr));
    EXPECT_EQ(r1, r2);
}

/* A handle belongs to the device current at its creation. */
TEST(BlasDevice, WrongDeviceIsAnError) {
    QILIN_REQUIRE_DEVICES(2);
    QILIN_ASSERT_OK(qilin_device_set(0));
    qilin_blas *blas = nullptr;
    QILIN_ASSERT_OK(qilin_blas_create(&blas));
    QILIN_ASSERT_OK(qilin_device_set(1));
    DeviceBuffer a, b, c;
    QILIN_ASSERT_OK(qilin_malloc(&a.ptr, 64, "A"));
    QILIN_ASSERT_OK(qilin_malloc(&b.ptr, 64, "B"));
    QILIN_ASSERT_OK(qilin_malloc(&c.ptr, 64, "C"));
    qilin_gemm_desc d = {};
    d.m = d.n = d.k = 2, d.ab_type = d.c_type = QILIN_F32;
    d.a = a.ptr, d.b = b.ptr, d.c = c.ptr, d.lda = d.ldb = d.ldc = 2, d.batch = 1;
    EXPECT_EQ(qilin_gemm(blas, &d, nullptr), QILIN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(qilin_last_error()).find("device 0"), std::string::npos) << qilin_last_error();
    QILIN_ASSERT_OK(qilin_device_set(0));
    EXPECT_EQ(qilin_blas_destroy(blas), QILIN_OK);
}

} // namespace
